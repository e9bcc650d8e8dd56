//! Loading and validating everything a run needs, before any host is contacted: the policy,
//! the inventory, each role's hosts with their resolved variables, the file server's manifest
//! and the templates. Every problem is collected, not just the first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use indexmap::IndexMap;
use mop_inventory::{ExtraLayers, ResolvedHost, Selection};
use mop_policy::{Policy, PolicyError, Role};
use mop_push::prepare::{prepare, PreparedRun};
use serde_json::{Map, Value};

use crate::cli::InventorySelection;
use crate::common;

/// One role and the hosts it will touch, in inventory order.
pub struct RoleHosts {
    pub role_index: usize,
    pub hosts: Vec<ResolvedHost>,
}

/// A validated run.
pub struct LoadedRun {
    pub policy: Policy,
    pub inventory_path: PathBuf,
    pub roles: Vec<RoleHosts>,
    pub prepared: PreparedRun,
    /// Warnings (patterns that matched nothing), printed by the caller.
    pub warnings: Vec<String>,
}

/// Every error found while loading, printed one after another.
#[derive(Debug)]
pub struct LoadErrors(pub Vec<String>);

impl std::fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.join("\n"))?;
        if self.0.len() > 1 {
            write!(f, "\n{} errors", self.0.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

pub fn load_policy(path: &Path) -> Result<Policy> {
    Policy::load(path)
        .map_err(|errors| anyhow!(LoadErrors(errors.iter().map(ToString::to_string).collect())))
}

/// Loads the policy and inventory, resolves each role's hosts, and prepares the file server.
pub fn load_run(
    policy_path: &Path,
    selection: &InventorySelection,
    extra_vars: &[String],
) -> Result<LoadedRun> {
    let policy = load_policy(policy_path)?;
    let inventory_path =
        common::inventory_path(selection.inventory.as_deref(), policy.inventory.as_deref())?;
    let inventory = common::load_inventory(&inventory_path)?;
    let overrides = common::extra_vars(extra_vars)?;
    let limit = common::limit_selection(selection)?;

    // No template may read a secret: the policy check names each read (see mop_push::secrets).
    let secret_vars = mop_push::secrets::secret_var_names();
    let mut errors: Vec<String> = Vec::new();
    let mut warnings = Vec::new();
    let mut roles = Vec::new();
    for (role_index, role) in policy.roles.iter().enumerate() {
        let role_selection =
            Selection::new(&role.groups, &role.hosts).map_err(|err| anyhow!("{err}"))?;
        let selected = inventory.select(&role_selection.and(limit.clone()));
        for unmatched in &selected.unmatched {
            warnings.push(format!("role `{}`: {unmatched}", role.name));
        }
        let layers = role_layers(&policy, role, &overrides);
        let mut hosts = Vec::with_capacity(selected.hosts.len());
        for host in &selected.hosts {
            match inventory.resolve(host.name(), &layers) {
                Ok(resolved) if resolved.connection.password.is_some() => errors.push(format!(
                    "role `{}`: host `{}`: `mop_ssh_password` is set, but mop logs in with keys and ssh-agent only\n  hint: install a key for the user (ssh-copy-id) and set `mop_ssh_key`, or load it into ssh-agent",
                    role.name,
                    host.name()
                )),
                Ok(resolved) => hosts.push(resolved),
                Err(err) => errors.push(format!("role `{}`: host `{}`: {err}", role.name, host.name())),
            }
        }
        errors.extend(undefined_variable_errors(
            &policy,
            role_index,
            &hosts,
            &secret_vars,
        ));
        roles.push(RoleHosts { role_index, hosts });
    }
    if roles.iter().all(|role| role.hosts.is_empty()) && errors.is_empty() {
        bail!(
            "no role selects any host{}\n  hint: check the roles' `groups`/`hosts` patterns against `mop inventory`",
            if limit.is_all() { "" } else { " within the given limits" }
        );
    }

    let selected_roles: Vec<usize> = roles
        .iter()
        .filter(|role| !role.hosts.is_empty())
        .map(|role| role.role_index)
        .collect();
    let protected = protected_files(policy_path, &inventory_path);
    let prepared = match prepare(&policy, &selected_roles, &protected) {
        Ok(prepared) => Some(prepared),
        Err(policy_errors) => {
            errors.extend(policy_errors.iter().map(ToString::to_string));
            None
        }
    };
    if let Some(prepared) = &prepared {
        errors.extend(template_errors(&policy, prepared, &roles, &secret_vars));
    }
    match prepared {
        Some(prepared) if errors.is_empty() => Ok(LoadedRun {
            policy,
            inventory_path,
            roles,
            prepared,
            warnings,
        }),
        _ => Err(anyhow!(LoadErrors(errors))),
    }
}

/// Policy and role settings apply only where the inventory is silent; `-e` beats everything.
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
    ExtraLayers::none()
        .with_defaults("policy", to_index_map(&policy.vars))
        .with_defaults(format!("role `{}`", role.name), to_index_map(&role.vars))
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
) -> Vec<String> {
    let mut by_names: BTreeMap<BTreeSet<String>, Vec<&str>> = BTreeMap::new();
    for host in hosts {
        by_names
            .entry(host.vars.keys().cloned().collect())
            .or_default()
            .push(&host.name);
    }
    let mut found: Vec<(String, Vec<&str>)> = Vec::new();
    for (names, host_names) in &by_names {
        for error in policy.check_undefined(role_index, names, secret_vars) {
            let text = error.to_string();
            match found.iter_mut().find(|(existing, _)| *existing == text) {
                Some((_, hosts_with_error)) => hosts_with_error.extend(host_names),
                None => found.push((text, host_names.clone())),
            }
        }
    }
    found
        .into_iter()
        .map(|(text, error_hosts)| {
            if error_hosts.len() == hosts.len() {
                text
            } else {
                format!("{text}\n  (on hosts: {})", error_hosts.join(", "))
            }
        })
        .collect()
}

fn template_errors(
    policy: &Policy,
    prepared: &PreparedRun,
    roles: &[RoleHosts],
    secret_vars: &BTreeSet<String>,
) -> Vec<String> {
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
    errors.iter().map(ToString::to_string).collect()
}

/// The policy and inventory files are never served, whatever the patterns say.
pub fn protected_files(policy_path: &Path, inventory_path: &Path) -> Vec<PathBuf> {
    let mut files = vec![policy_path.to_path_buf()];
    if inventory_path.is_dir() {
        if let Ok(entries) = std::fs::read_dir(inventory_path) {
            files.extend(entries.flatten().map(|entry| entry.path()));
        }
    } else {
        files.push(inventory_path.to_path_buf());
    }
    files
}
