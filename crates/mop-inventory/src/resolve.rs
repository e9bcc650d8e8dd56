//! Resolving one host: layered variables with provenance, its connection and its `mop_via` hops.

use std::fmt;

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use crate::connection::{Connection, REDACTED};
use crate::error::{closest, InventoryError, Location};
use crate::inventory::{Host, Inventory, VarTable};
use crate::magic::{self, is_secret_var};
use crate::value::{check_var_name, Problem};

/// The longest `mop_via` chain allowed, in hops.
pub const MAX_VIA_HOPS: usize = 8;

/// Which layer set a variable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SourceKind {
    /// A caller layer applied only where the inventory is silent (policy, role settings).
    Default { label: String },
    /// A group's `vars`; `all` has depth 0.
    Group { name: String, depth: usize },
    /// A host's `key=value` shorthand, in the `hosts` table of `group` (or top-level `[hosts]`).
    HostShorthand { group: Option<String> },
    /// A host's `[hosts."NAME".vars]` table.
    HostVars,
    /// `group_vars/NAME.toml` beside the inventory.
    GroupVarsFile { name: String, depth: usize },
    /// `host_vars/NAME.toml` beside the inventory.
    HostVarsFile,
    /// A caller layer that beats the inventory (`-e KEY=VALUE`).
    Override { label: String },
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceKind::Default { label } | SourceKind::Override { label } => f.write_str(label),
            SourceKind::Group { name, depth } => write!(f, "group `{name}` (depth {depth})"),
            SourceKind::HostShorthand { group: Some(group) } => {
                write!(f, "host shorthand in group `{group}`")
            }
            SourceKind::HostShorthand { group: None } => f.write_str("host shorthand"),
            SourceKind::HostVars => f.write_str("host vars"),
            SourceKind::GroupVarsFile { name, depth } => {
                write!(f, "group_vars file of `{name}` (depth {depth})")
            }
            SourceKind::HostVarsFile => f.write_str("host_vars file"),
        }
    }
}

/// One layer's setting of one variable.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Source {
    #[serde(flatten)]
    pub kind: SourceKind,
    /// Where in the inventory files; `None` for caller layers.
    pub location: Option<Location>,
    /// The value this layer gave; `"<redacted>"` for password variables.
    pub value: Value,
}

impl fmt::Display for Source {
    /// `group `webservers` (depth 1) at inventory/example.toml:14:12`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{} at {location}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

/// Variables from outside the inventory, with the label shown in provenance and errors
/// (`policy`, ``role `web` ``, `-e`).
#[derive(Clone, PartialEq)]
pub struct Layer {
    pub label: String,
    pub vars: IndexMap<String, Value>,
}

impl Layer {
    pub fn new(label: impl Into<String>, vars: IndexMap<String, Value>) -> Self {
        Layer {
            label: label.into(),
            vars,
        }
    }
}

impl fmt::Debug for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layer")
            .field("label", &self.label)
            .field("vars", &redact_vars(&self.vars))
            .finish()
    }
}

/// Caller layers around the inventory's own.
///
/// Full precedence, lowest first: `defaults` in order, `all`, other groups by depth then name,
/// `group_vars/` files in the same order, host shorthand, host vars, the `host_vars/` file,
/// `overrides` in order. So a default only shows where the inventory
/// is silent, and an override beats everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExtraLayers {
    pub defaults: Vec<Layer>,
    pub overrides: Vec<Layer>,
}

impl ExtraLayers {
    /// No caller layers: the inventory alone.
    pub fn none() -> Self {
        ExtraLayers::default()
    }

    /// Adds a layer below the inventory (later defaults beat earlier ones).
    pub fn with_defaults(
        mut self,
        label: impl Into<String>,
        vars: IndexMap<String, Value>,
    ) -> Self {
        self.defaults.push(Layer::new(label, vars));
        self
    }

    /// Adds a layer above the inventory (later overrides beat earlier ones).
    pub fn with_overrides(
        mut self,
        label: impl Into<String>,
        vars: IndexMap<String, Value>,
    ) -> Self {
        self.overrides.push(Layer::new(label, vars));
        self
    }
}

/// One SSH jump on the way to a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hop {
    /// The inventory host name of the jump host.
    pub name: String,
    /// How to reach it, from its own inventory variables (caller layers do not apply to hops).
    pub connection: Connection,
}

/// Everything known about one host after layering.
#[derive(Clone, PartialEq)]
pub struct ResolvedHost {
    pub name: String,
    /// As [`Host::groups`]: depth, then name.
    pub groups: Vec<String>,
    /// Final values, sorted by name. Holds passwords in clear: display [`Self::redacted_vars`].
    pub vars: IndexMap<String, Value>,
    /// Every layer that set each variable, lowest precedence first: the winner is last.
    pub provenance: IndexMap<String, Vec<Source>>,
    pub connection: Connection,
    /// Jump hosts, first element = the hop the controller connects to directly; the last hop
    /// connects to this host. Empty for a direct connection.
    pub via: Vec<Hop>,
}

impl ResolvedHost {
    /// `vars` with password values replaced by `"<redacted>"`.
    pub fn redacted_vars(&self) -> IndexMap<String, Value> {
        redact_vars(&self.vars)
    }

    /// The layer whose value won for `name`.
    pub fn winner(&self, name: &str) -> Option<&Source> {
        self.provenance.get(name).and_then(|sources| sources.last())
    }
}

impl fmt::Debug for ResolvedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedHost")
            .field("name", &self.name)
            .field("groups", &self.groups)
            .field("vars", &self.redacted_vars())
            .field("provenance", &self.provenance)
            .field("connection", &self.connection)
            .field("via", &self.via)
            .finish()
    }
}

impl Serialize for ResolvedHost {
    /// The JSON view: like Debug, passwords are `"<redacted>"`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            name: &'a str,
            groups: &'a [String],
            vars: IndexMap<String, Value>,
            provenance: &'a IndexMap<String, Vec<Source>>,
            connection: &'a Connection,
            via: &'a [Hop],
        }
        View {
            name: &self.name,
            groups: &self.groups,
            vars: self.redacted_vars(),
            provenance: &self.provenance,
            connection: &self.connection,
            via: &self.via,
        }
        .serialize(serializer)
    }
}

/// A copy of `vars` with password variables shown as `"<redacted>"`.
pub fn redact_vars(vars: &IndexMap<String, Value>) -> IndexMap<String, Value> {
    vars.iter()
        .map(|(name, value)| (name.clone(), shown_value(name, value)))
        .collect()
}

fn shown_value(name: &str, value: &Value) -> Value {
    if is_secret_var(name) {
        Value::from(REDACTED)
    } else {
        value.clone()
    }
}

/// A `mop_via` setting: the jump host it names and the layer that set it.
pub(crate) struct ViaLink {
    target: String,
    source: Source,
}

/// One layer ready to merge: who set it and `(name, value, location)` settings.
type MergeLayer = (SourceKind, Vec<(String, Value, Option<Location>)>);

fn table_layer(kind: SourceKind, table: &VarTable) -> MergeLayer {
    let settings = table
        .0
        .iter()
        .map(|(name, setting)| {
            (
                name.clone(),
                setting.value.clone(),
                Some(setting.location.clone()),
            )
        })
        .collect();
    (kind, settings)
}

fn error_at_source(source: &Source, problem: Problem) -> InventoryError {
    match &source.location {
        Some(location) => InventoryError::At {
            location: location.clone(),
            message: problem.message,
            hint: problem.hint,
        },
        None => InventoryError::Layer {
            label: source.kind.to_string(),
            message: problem.message,
            hint: problem.hint,
        },
    }
}

/// Checks a caller layer: variable names, reserved names, magic variable types.
fn checked_layer(layer: &Layer) -> Result<Vec<(String, Value, Option<Location>)>, InventoryError> {
    let layer_error = |problem: Problem| InventoryError::Layer {
        label: layer.label.clone(),
        message: problem.message,
        hint: problem.hint,
    };
    let mut settings = Vec::with_capacity(layer.vars.len());
    for (name, value) in &layer.vars {
        check_var_name(name).map_err(layer_error)?;
        let value = match magic::check_reserved(name).map_err(layer_error)? {
            Some(var) => magic::validate_typed(var, value).map_err(layer_error)?,
            None => value.clone(),
        };
        settings.push((name.clone(), value, None));
    }
    Ok(settings)
}

impl Inventory {
    /// The inventory's own layers for `host`, lowest precedence first.
    fn inventory_layers(&self, host: &Host) -> Vec<MergeLayer> {
        let mut layers = Vec::new();
        for group_name in &host.groups {
            if let Some(group) = self.groups.get(group_name) {
                let kind = SourceKind::Group {
                    name: group.name.clone(),
                    depth: group.depth,
                };
                layers.push(table_layer(kind, &group.vars));
            }
        }
        // Every group_vars file beats every inventory group table (Ansible's order).
        for group_name in &host.groups {
            if let (Some(group), Some(file)) = (
                self.groups.get(group_name),
                self.group_vars_files.get(group_name),
            ) {
                let kind = SourceKind::GroupVarsFile {
                    name: group.name.clone(),
                    depth: group.depth,
                };
                layers.push(table_layer(kind, &file.vars));
            }
        }
        for entry in &host.shorthand {
            let kind = SourceKind::HostShorthand {
                group: entry.group.clone(),
            };
            layers.push(table_layer(kind, &entry.vars));
        }
        layers.push(table_layer(SourceKind::HostVars, &host.vars));
        if let Some(file) = self.host_vars_files.get(&host.name) {
            layers.push(table_layer(SourceKind::HostVarsFile, &file.vars));
        }
        layers
    }

    /// The winning `mop_via` of `host` from the inventory alone.
    pub(crate) fn inventory_via(&self, host: &Host) -> Option<ViaLink> {
        let mut link = None;
        for (kind, settings) in self.inventory_layers(host) {
            for (name, value, location) in settings {
                if name == "mop_via" {
                    if let Value::String(target) = &value {
                        link = Some(ViaLink {
                            target: target.clone(),
                            source: Source {
                                kind: kind.clone(),
                                location,
                                value: value.clone(),
                            },
                        });
                    }
                }
            }
        }
        link
    }

    /// Follows `mop_via` from `host_name`: returns `[host_name, first jump, its jump, ...]`.
    pub(crate) fn via_chain(
        &self,
        host_name: &str,
        first_link: Option<ViaLink>,
    ) -> Result<Vec<String>, InventoryError> {
        let mut chain = vec![host_name.to_string()];
        let mut next_link = first_link;
        while let Some(link) = next_link {
            let from = chain.last().expect("chain starts with the host").clone();
            let Some(target_host) = self.hosts.get(&link.target) else {
                let mut path = chain.clone();
                path.push(link.target.clone());
                let known = self.hosts.keys().map(String::as_str);
                let hint = match closest(&link.target, known) {
                    Some(suggestion) => format!("did you mean `{suggestion}`?"),
                    None => format!(
                        "add `{}` to the inventory, e.g. under `[groups.bastions.hosts]`",
                        link.target
                    ),
                };
                let chain_note = if path.len() > 2 {
                    format!(" (chain: {})", path.join(" -> "))
                } else {
                    String::new()
                };
                return Err(error_at_source(
                    &link.source,
                    Problem::with_hint(
                        format!(
                            "`mop_via` of host `{from}` names `{}`, which is not a host in the \
                             inventory{chain_note}",
                            link.target
                        ),
                        hint,
                    ),
                ));
            };
            if chain.contains(&link.target) {
                chain.push(link.target.clone());
                let hint = if from == link.target {
                    format!(
                        "a host cannot jump through itself; give `{from}` its own `mop_via` (or \
                         none) in its shorthand or `[hosts.\"{from}\".vars]`"
                    )
                } else {
                    "remove one of the `mop_via` settings that form the loop".to_string()
                };
                return Err(error_at_source(
                    &link.source,
                    Problem::with_hint(
                        format!(
                            "`mop_via` chain of host `{host_name}` loops: {}",
                            chain.join(" -> ")
                        ),
                        hint,
                    ),
                ));
            }
            chain.push(link.target.clone());
            if chain.len() - 1 > MAX_VIA_HOPS {
                return Err(error_at_source(
                    &link.source,
                    Problem::with_hint(
                        format!(
                            "`mop_via` chain of host `{host_name}` is longer than \
                             {MAX_VIA_HOPS} hops: {}",
                            chain.join(" -> ")
                        ),
                        "shorten the chain; more hops than this is almost always a mistake",
                    ),
                ));
            }
            next_link = self.inventory_via(target_host);
        }
        Ok(chain)
    }

    /// Resolves `host_name`: merges every layer (see [`ExtraLayers`] for the order), builds the
    /// connection and the jump hosts. Caller layers are checked like inventory variables.
    pub fn resolve(
        &self,
        host_name: &str,
        extra: &ExtraLayers,
    ) -> Result<ResolvedHost, InventoryError> {
        let host = self
            .hosts
            .get(host_name)
            .ok_or_else(|| self.unknown_host(host_name))?;
        let mut layers = Vec::new();
        for layer in &extra.defaults {
            let kind = SourceKind::Default {
                label: layer.label.clone(),
            };
            layers.push((kind, checked_layer(layer)?));
        }
        layers.extend(self.inventory_layers(host));
        for layer in &extra.overrides {
            let kind = SourceKind::Override {
                label: layer.label.clone(),
            };
            layers.push((kind, checked_layer(layer)?));
        }

        let mut vars: IndexMap<String, Value> = IndexMap::new();
        let mut provenance: IndexMap<String, Vec<Source>> = IndexMap::new();
        for (kind, settings) in layers {
            for (name, value, location) in settings {
                let source = Source {
                    kind: kind.clone(),
                    location,
                    value: shown_value(&name, &value),
                };
                provenance.entry(name.clone()).or_default().push(source);
                vars.insert(name, value);
            }
        }
        vars.sort_keys();
        provenance.sort_keys();

        let connection = self.connection_of(host_name, &vars)?;
        let first_link = match (vars.get("mop_via"), provenance.get("mop_via")) {
            (Some(Value::String(target)), Some(sources)) => sources.last().map(|source| ViaLink {
                target: target.clone(),
                source: source.clone(),
            }),
            _ => None,
        };
        let chain = self.via_chain(host_name, first_link)?;
        let mut via = Vec::with_capacity(chain.len().saturating_sub(1));
        for hop_name in chain.iter().skip(1).rev() {
            via.push(Hop {
                name: hop_name.clone(),
                connection: self.inventory_connection(hop_name)?,
            });
        }

        Ok(ResolvedHost {
            name: host.name.clone(),
            groups: host.groups.clone(),
            vars,
            provenance,
            connection,
            via,
        })
    }

    /// The connection of a host from the inventory alone (how hops are reached).
    fn inventory_connection(&self, host_name: &str) -> Result<Connection, InventoryError> {
        let host = self
            .hosts
            .get(host_name)
            .ok_or_else(|| self.unknown_host(host_name))?;
        let mut vars = IndexMap::new();
        for (_, settings) in self.inventory_layers(host) {
            for (name, value, _) in settings {
                vars.insert(name, value);
            }
        }
        self.connection_of(host_name, &vars)
    }

    fn connection_of(
        &self,
        host_name: &str,
        vars: &IndexMap<String, Value>,
    ) -> Result<Connection, InventoryError> {
        Connection::from_vars(host_name, vars).map_err(|problem| match self.hosts.get(host_name) {
            Some(host) => InventoryError::At {
                location: host.location().clone(),
                message: problem.message,
                hint: problem.hint,
            },
            None => InventoryError::Layer {
                label: format!("host `{host_name}`"),
                message: problem.message,
                hint: problem.hint,
            },
        })
    }
}
