//! Loading and validating everything a run needs, before any host is contacted: the policy,
//! the inventory, `-e` variables, `--limit-*` selections, each role's hosts with their resolved
//! variables, the file server's manifest and the templates ([`load_run`]); the same for
//! `mop local` ([`load_local_run`]); and what an ad hoc TARGET means ([`resolve_targets`]).
//! Every problem is collected, not just the first.
//!
//! The `mop` binary maps its arguments onto one call here and the error onto an exit code;
//! the decisions (role selection, variable layers, protected files) live here so they are
//! unit-tested against real files.

mod inputs;
mod targets;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use mop_inventory::{ExtraLayers, InventoryError, ResolvedHost, Selection, UnmatchedPattern};
use mop_policy::{Origin, Policy, PolicyError, Position, Role};
use serde_json::{Map, Value};

use crate::adhoc::HostSpecError;
use crate::prepare::{prepare_partially, PreparedRun};

pub use inputs::{
    extra_vars, inventory_paths, limit_selection, load_inventory, unmatched_limit_errors,
    InventoryPaths, Limits,
};
pub use targets::{resolve_targets, TargetRequest};

/// Why a run could not be loaded. The texts are what the operator reads (`error: ...`).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no inventory given\n  hint: pass `-i FILE`, set `inventory = \"...\"` in the policy, or create `inventory/` here")]
    NoInventory,
    /// An inventory, `-e` or pattern error; its text names the file and place.
    #[error("{0}")]
    Inventory(InventoryError),
    #[error("cannot read the host list `{file}` given to --limit-hosts")]
    HostListUnreadable {
        file: String,
        #[source]
        error: std::io::Error,
    },
    #[error("the host list `{file}` given to --limit-hosts names no host")]
    HostListEmpty { file: String },
    #[error("no role selects any host{}\n  hint: check the roles' `groups`/`hosts` patterns against `mop inventory`", if *.limited { " within the given limits" } else { "" })]
    NoHostSelected { limited: bool },
    /// Every problem found in the policy, the hosts' variables and the templates, in order.
    #[error("{}", invalid_text(.0))]
    Invalid(Vec<String>),
    #[error("both a TARGET (`{target}`) and --hosts are given\n  hint: use an inventory pattern or --hosts, not both")]
    TargetAndHosts { target: String },
    #[error("{0}")]
    HostSpec(HostSpecError),
    #[error("no hosts given\n  hint: name an inventory pattern (e.g. `web` or `web,db*`) or pass --hosts")]
    NoTarget,
    /// Every TARGET term that matches no group or host name, one per line.
    #[error("{}", target_unmatched_text(.unmatched, .inventory))]
    TargetMatchesNothing {
        unmatched: Vec<UnmatchedPattern>,
        inventory: InventoryPaths,
    },
    #[error("the target `{target}` selects no host\n  hint: `&` keeps only hosts every `&` term matches, `!` removes hosts; `mop inventory {}` lists the groups and hosts", .inventory.as_args())]
    TargetSelectsNothing {
        target: String,
        inventory: InventoryPaths,
    },
    /// Every ad hoc host whose variables do not resolve, one per line.
    #[error("{}", .0.join("\n"))]
    Hosts(Vec<String>),
}

fn invalid_text(errors: &[String]) -> String {
    let mut text = errors.join("\n");
    if errors.len() > 1 {
        text.push_str(&format!("\n{} errors", errors.len()));
    }
    text
}

fn target_unmatched_text(unmatched: &[UnmatchedPattern], inventory: &InventoryPaths) -> String {
    let lines: Vec<String> = unmatched
        .iter()
        .map(|term| {
            let hint = term.hint.clone().unwrap_or_else(|| {
                format!(
                    "`mop inventory {}` lists the groups and hosts",
                    inventory.as_args()
                )
            });
            format!(
                "target pattern `{}` matches no group or host in `{inventory}`\n  hint: {hint}",
                term.pattern,
            )
        })
        .collect();
    lines.join("\n")
}

impl From<InventoryError> for LoadError {
    fn from(error: InventoryError) -> Self {
        LoadError::Inventory(error)
    }
}

/// What `mop push` and `mop validate` load.
#[derive(Debug, Clone, Copy)]
pub struct RunRequest<'a> {
    pub policy: &'a Path,
    /// Every `-i`, in order; else the policy's `inventory`, else `inventory/` here.
    pub inventory: &'a [PathBuf],
    pub limits: &'a Limits,
    /// `-e KEY=VALUE` arguments, later ones winning.
    pub extra_vars: &'a [String],
}

/// One role and the hosts it will touch, in inventory order.
#[derive(Debug)]
pub struct RoleHosts {
    pub role_index: usize,
    pub hosts: Vec<ResolvedHost>,
}

/// A validated run.
pub struct LoadedRun {
    pub policy: Policy,
    pub inventory: InventoryPaths,
    pub roles: Vec<RoleHosts>,
    pub prepared: PreparedRun,
    /// Warnings (patterns that matched nothing), printed by the caller.
    pub warnings: Vec<String>,
}

/// A validated `mop local` run: every role, no inventory.
pub struct LoadedLocalRun {
    pub policy: Policy,
    pub prepared: PreparedRun,
    pub extra_vars: Map<String, Value>,
}

pub fn load_policy(path: &Path) -> Result<Policy, LoadError> {
    Policy::load(path)
        .map_err(|errors| LoadError::Invalid(errors.iter().map(ToString::to_string).collect()))
}

/// `mop local`: the policy with every role, `-e` on top; only the policy file and its vars
/// files are protected.
pub fn load_local_run(policy_path: &Path, extra: &[String]) -> Result<LoadedLocalRun, LoadError> {
    let (policy, policy_errors) = Policy::load_partially(policy_path);
    let mut problems = Problems::new();
    problems.extend_policy(policy_errors);
    let Some(policy) = policy else {
        return Err(problems.into_error());
    };
    let extra_vars: Map<String, Value> = problems
        .or_report(extra_vars(extra))?
        .map(|vars| vars.into_iter().collect())
        .unwrap_or_default();
    let all_roles: Vec<usize> = (0..policy.roles.len()).collect();
    let mut protected = vec![policy_path.to_path_buf()];
    protected.extend(policy_vars_files(&policy));
    let (prepared, prepare_errors) = prepare_partially(&policy, &all_roles, &protected);
    problems.extend_policy(prepare_errors);
    match prepared {
        Some(prepared) if problems.is_empty() => Ok(LoadedLocalRun {
            policy,
            prepared,
            extra_vars,
        }),
        _ => Err(problems.into_error()),
    }
}

/// Loads the policy and inventory, resolves each role's hosts, and prepares the file server.
///
/// Validation is not staged: the checks that need the inventory (undefined variables), the
/// file server (sources, templates) and the templates' text run on whatever part of the
/// policy parsed, so one run reports every problem, sorted into file order.
pub fn load_run(request: &RunRequest<'_>) -> Result<LoadedRun, LoadError> {
    let (policy, policy_errors) = Policy::load_partially(request.policy);
    // Roles whose `groups`/`hosts` the policy check already rejected: the selection below
    // would say the same again.
    let roles_with_bad_patterns: BTreeSet<String> = policy_errors
        .iter()
        .filter(|error| {
            error.message.starts_with("field `groups`")
                || error.message.starts_with("field `hosts`")
        })
        .map(|error| error.context.clone())
        .collect();
    let mut problems = Problems::new();
    problems.extend_policy(policy_errors);
    let inventory_paths = inventory_paths(
        request.inventory,
        policy
            .as_ref()
            .and_then(|policy| policy.inventory.as_deref()),
    );
    let inventory = inventory_paths
        .and_then(|paths| load_inventory(&paths).map(|inventory| (paths, inventory)));
    // Without a policy only the inventory's own problems can join the report.
    let Some(policy) = policy else {
        if let Err(LoadError::Inventory(error)) = inventory {
            problems.push_text(error.to_string());
        }
        return Err(problems.into_error());
    };
    // With a broken policy, a missing inventory or a bad `-e`/`--limit` is one more line of
    // the report; with a valid one it is the error, as its own kind.
    let inventory = problems.or_report(inventory)?;
    let overrides = problems.or_report(extra_vars(request.extra_vars))?;
    let limit = problems.or_report(limit_selection(request.limits))?;
    let (Some((inventory_paths, inventory)), Some(overrides), Some(limit)) =
        (inventory, overrides, limit)
    else {
        return Err(problems.into_error());
    };

    // No template may read a secret: the policy check names each read (see crate::secrets).
    // The inventory and the policy are loaded, so every vault file's names are known here.
    let secret_vars = crate::secrets::secret_var_names();
    for error in unmatched_limit_errors(&inventory, &limit) {
        problems.push_text(error);
    }
    let warnings: Vec<String> = inventory.warnings().to_vec();
    let mut roles = Vec::new();
    for (role_index, role) in policy.roles.iter().enumerate() {
        let role_selection = match Selection::new(&role.groups, &role.hosts) {
            Ok(selection) => selection,
            Err(_) if roles_with_bad_patterns.contains(&format!("role `{}`", role.name)) => {
                continue;
            }
            Err(error) => {
                problems.push_at(
                    &role.origin,
                    format!("{}: role `{}`: {error}", role.origin, role.name),
                );
                continue;
            }
        };
        // A role term that matches no name is a typo or the wrong inventory: an error, so a
        // `!web9` that meant `!web2` cannot quietly touch web2.
        for unmatched in inventory.select(&role_selection).unmatched {
            problems.push_at(
                &role.origin,
                format!("{}: role `{}`: {unmatched}", role.origin, role.name),
            );
        }
        let selected = inventory.select(&role_selection.and(limit.clone()));
        let layers = role_layers(&policy, role, &overrides);
        let mut hosts = Vec::with_capacity(selected.hosts.len());
        for host in &selected.hosts {
            match inventory.resolve(host.name(), &layers) {
                Ok(resolved) => hosts.push(resolved),
                Err(err) => problems.push_text(format!(
                    "role `{}`: host `{}`: {err}",
                    role.name,
                    host.name()
                )),
            }
        }
        for (error, text) in undefined_variable_errors(&policy, role_index, &hosts, &secret_vars) {
            problems.push_policy_text(&error, text);
        }
        roles.push(RoleHosts { role_index, hosts });
    }
    if roles.iter().all(|role| role.hosts.is_empty()) && problems.is_empty() {
        return Err(LoadError::NoHostSelected {
            limited: !limit.is_all(),
        });
    }

    let selected_roles: Vec<usize> = roles
        .iter()
        .filter(|role| !role.hosts.is_empty())
        .map(|role| role.role_index)
        .collect();
    let mut protected = protected_files(request.policy, &inventory_paths);
    protected.extend(inventory.vars_file_paths().map(Path::to_path_buf));
    protected.extend(policy_vars_files(&policy));
    let (prepared, prepare_errors) = prepare_partially(&policy, &selected_roles, &protected);
    problems.extend_policy(prepare_errors);
    if let Some(prepared) = &prepared {
        problems.extend_policy(template_errors(&policy, prepared, &roles, &secret_vars));
    }
    match prepared {
        Some(prepared) if problems.is_empty() => Ok(LoadedRun {
            policy,
            inventory: inventory_paths,
            roles,
            prepared,
            warnings,
        }),
        _ => Err(problems.into_error()),
    }
}

/// The problems of a run being loaded, from every stage, reported together in file order:
/// by file (in the order each file first comes up, as `mop_policy` orders its own errors),
/// line and column. Problems that point at no file (a host's variables, `-e`, the inventory's own
/// errors, which name their place in their text) follow, in the order they were found.
struct Problems {
    found: Vec<Problem>,
}

struct Problem {
    place: Option<(PathBuf, Option<Position>)>,
    text: String,
}

impl Problems {
    fn new() -> Problems {
        Problems { found: Vec::new() }
    }

    fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// With problems already found, an input error joins them (`Ok(None)`); alone, it is
    /// returned as its own kind of error.
    fn or_report<T>(&mut self, result: Result<T, LoadError>) -> Result<Option<T>, LoadError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(error) if self.is_empty() => Err(error),
            Err(error) => {
                self.push_text(error.to_string());
                Ok(None)
            }
        }
    }

    fn extend_policy(&mut self, errors: impl IntoIterator<Item = PolicyError>) {
        for error in errors {
            let text = error.to_string();
            self.push_policy_text(&error, text);
        }
    }

    /// A policy error rendered as `text` (which may add to it), placed where it points.
    fn push_policy_text(&mut self, error: &PolicyError, text: String) {
        // The same problem found twice (a roles file used by two roles) is said once.
        if self.found.iter().any(|problem| problem.text == text) {
            return;
        }
        self.found.push(Problem {
            place: Some((error.file.clone(), error.position)),
            text,
        });
    }

    fn push_at(&mut self, origin: &Origin, text: String) {
        self.found.push(Problem {
            place: Some((origin.file.clone(), Some(origin.position))),
            text,
        });
    }

    fn push_text(&mut self, text: String) {
        self.found.push(Problem { place: None, text });
    }

    fn into_error(self) -> LoadError {
        let mut files: Vec<PathBuf> = Vec::new();
        for problem in &self.found {
            if let Some((file, _)) = &problem.place {
                if !files.contains(file) {
                    files.push(file.clone());
                }
            }
        }
        let mut found = self.found;
        // Stable: problems at the same place keep the order their checks ran in.
        found.sort_by_key(|problem| match &problem.place {
            Some((file, position)) => (
                files.iter().position(|known| known == file),
                position.map(|position| (position.line, position.column)),
            ),
            None => (None, None),
        });
        // `None` sorts first; problems without a place belong last.
        let (placed, unplaced): (Vec<Problem>, Vec<Problem>) = found
            .into_iter()
            .partition(|problem| problem.place.is_some());
        LoadError::Invalid(
            placed
                .into_iter()
                .chain(unplaced)
                .map(|problem| problem.text)
                .collect(),
        )
    }
}

/// Policy and role settings apply only where the inventory is silent; `-e` beats everything.
/// Lowest first: the role directory's defaults, policy `vars`, policy `vars_files`, role `vars`,
/// role `vars_files` ([`Policy::var_layers`]), the role's connection settings, then the
/// inventory (its own layers, `group_vars/` and `host_vars/` included), then `-e`.
pub fn role_layers(
    policy: &Policy,
    role: &Role,
    overrides: &IndexMap<String, Value>,
) -> ExtraLayers {
    let mut connection = IndexMap::new();
    if let Some(user) = &role.ssh_as {
        connection.insert("mop_ssh_username".to_string(), Value::from(user.clone()));
    }
    if let Some(sudo) = role.sudo {
        connection.insert("mop_sudo".to_string(), Value::from(sudo));
    }
    if let Some(user) = &role.sudo_as {
        connection.insert("mop_sudo_username".to_string(), Value::from(user.clone()));
    }
    if let Some(check) = role.check_host_keys {
        connection.insert(
            "mop_check_host_keys".to_string(),
            Value::from(check.as_str()),
        );
    }
    let mut layers = ExtraLayers::none();
    for layer in policy.var_layers(role) {
        layers = layers.with_defaults(layer.label, to_index_map(&layer.vars));
    }
    layers
        .with_defaults(
            format!("role `{}` connection settings", role.name),
            connection,
        )
        .with_overrides("-e", overrides.clone())
}

fn to_index_map(vars: &Map<String, Value>) -> IndexMap<String, Value> {
    vars.iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// Runs the static undefined-variable check once per distinct set of host variable names,
/// naming the hosts an error applies to when it is not all of them.
fn undefined_variable_errors(
    policy: &Policy,
    role_index: usize,
    hosts: &[ResolvedHost],
    secret_vars: &BTreeSet<String>,
) -> Vec<(PolicyError, String)> {
    let mut by_names: BTreeMap<BTreeSet<String>, Vec<&str>> = BTreeMap::new();
    for host in hosts {
        by_names
            .entry(host.vars.keys().cloned().collect())
            .or_default()
            .push(&host.name);
    }
    let mut found: Vec<(PolicyError, Vec<&str>)> = Vec::new();
    for (names, host_names) in &by_names {
        for error in policy.check_undefined(role_index, names, secret_vars) {
            match found.iter_mut().find(|(existing, _)| *existing == error) {
                Some((_, hosts_with_error)) => hosts_with_error.extend(host_names),
                None => found.push((error, host_names.clone())),
            }
        }
    }
    found
        .into_iter()
        .map(|(error, error_hosts)| {
            let text = if error_hosts.len() == hosts.len() {
                error.to_string()
            } else {
                format!("{error}\n  (on hosts: {})", error_hosts.join(", "))
            };
            (error, text)
        })
        .collect()
}

fn template_errors(
    policy: &Policy,
    prepared: &PreparedRun,
    roles: &[RoleHosts],
    secret_vars: &BTreeSet<String>,
) -> Vec<PolicyError> {
    let mut errors: Vec<PolicyError> = Vec::new();
    for reference in policy.template_paths() {
        let Some(text) = prepared.roles[reference.role_index]
            .templates
            .get(reference.path)
        else {
            continue;
        };
        let Some(role_hosts) = roles
            .iter()
            .find(|role| role.role_index == reference.role_index)
        else {
            continue;
        };
        let mut seen = BTreeSet::new();
        for host in &role_hosts.hosts {
            let names: BTreeSet<String> = host.vars.keys().cloned().collect();
            if seen.insert(names.clone()) {
                for error in policy.check_template_file(&reference, text, &names, secret_vars) {
                    if !errors.contains(&error) {
                        errors.push(error);
                    }
                }
            }
        }
    }
    errors
}

/// The variable files a policy reads (`vars_files`, role directories' defaults): never served,
/// like the policy itself.
fn policy_vars_files(policy: &Policy) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = policy
        .vars_files
        .iter()
        .map(|layer| layer.path.clone())
        .collect();
    for role in &policy.roles {
        files.extend(role.defaults.iter().map(|layer| layer.path.clone()));
        files.extend(role.vars_files.iter().map(|layer| layer.path.clone()));
    }
    files
}

/// The policy and inventory files are never served, whatever the patterns say.
pub fn protected_files(policy_path: &Path, inventory: &InventoryPaths) -> Vec<PathBuf> {
    let mut files = vec![policy_path.to_path_buf()];
    for path in inventory.paths() {
        if path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(path) {
                files.extend(entries.flatten().map(|entry| entry.path()));
            }
        } else {
            files.push(path.to_path_buf());
        }
    }
    files
}

#[cfg(test)]
mod tests;
