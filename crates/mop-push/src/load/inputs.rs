//! The inputs every command shares: where the inventory is, loading it, `-e` variables and
//! the `--limit-*` selection (including `@FILE` retry files).

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use mop_inventory::{Inventory, PatternKind, Selection};

use super::LoadError;

/// `--limit-groups` and `--limit-hosts` patterns (`@FILE` in the hosts reads a retry file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub groups: Vec<String>,
    pub hosts: Vec<String>,
}

/// The inventory sources of a run, in the order they are read: every `-i`, else the policy's
/// `inventory`, else `inventory/` here. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryPaths(Vec<PathBuf>);

impl InventoryPaths {
    pub fn paths(&self) -> &[PathBuf] {
        &self.0
    }

    /// `-i A -i B`, each path quoted for a command printed in a hint.
    pub fn as_args(&self) -> String {
        self.0
            .iter()
            .map(|path| format!("-i {}", crate::ssh::quote_local_path(path)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl std::fmt::Display for InventoryPaths {
    /// The paths as written, comma-separated.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<String> = self
            .0
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        formatter.write_str(&shown.join(", "))
    }
}

/// Where the inventory is: every `-i` (in order), else the policy's `inventory`, else
/// `inventory/` here.
pub fn inventory_paths(
    explicit: &[PathBuf],
    from_policy: Option<&Path>,
) -> Result<InventoryPaths, LoadError> {
    if !explicit.is_empty() {
        return Ok(InventoryPaths(explicit.to_vec()));
    }
    if let Some(path) = from_policy {
        return Ok(InventoryPaths(vec![path.to_path_buf()]));
    }
    let default = PathBuf::from("inventory");
    if default.exists() {
        Ok(InventoryPaths(vec![default]))
    } else {
        Err(LoadError::NoInventory)
    }
}

/// Reads every source of `paths` as one inventory.
pub fn load_inventory(paths: &InventoryPaths) -> Result<Inventory, LoadError> {
    Ok(Inventory::load_all(paths.paths())?)
}

/// Parses `-e KEY=VALUE` arguments, later ones winning.
pub fn extra_vars(args: &[String]) -> Result<IndexMap<String, serde_json::Value>, LoadError> {
    let mut vars = IndexMap::new();
    for arg in args {
        let (key, value) = mop_inventory::parse_extra_var(arg)?;
        vars.insert(key, value);
    }
    Ok(vars)
}

/// The `--limit-groups`/`--limit-hosts` selection; `@FILE` in the hosts list reads host names
/// (one per line, `#` comments) from a retry file, matched as names, not patterns.
pub fn limit_selection(limits: &Limits) -> Result<Selection, LoadError> {
    let mut hosts = Vec::new();
    let mut names = Vec::new();
    for pattern in &limits.hosts {
        match pattern.strip_prefix('@') {
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(|error| {
                    LoadError::HostListUnreadable {
                        file: file.to_string(),
                        error,
                    }
                })?;
                let listed: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty() && !line.starts_with('#'))
                    .map(str::to_string)
                    .collect();
                if listed.is_empty() {
                    return Err(LoadError::HostListEmpty {
                        file: file.to_string(),
                    });
                }
                names.extend(listed);
            }
            None => hosts.push(pattern.clone()),
        }
    }
    Ok(Selection::with_host_names(&limits.groups, &hosts, &names)?)
}

/// One error per `--limit-*` term that matches no group or host name at all (a typo would
/// otherwise quietly select nothing, or everything but nothing with `!`).
pub fn unmatched_limit_errors(inventory: &Inventory, limit: &Selection) -> Vec<String> {
    inventory
        .select(limit)
        .unmatched
        .iter()
        .map(|unmatched| {
            let flag = match unmatched.kind {
                PatternKind::Group => "--limit-groups",
                PatternKind::Host | PatternKind::GroupOrHost => "--limit-hosts",
            };
            format!("{flag}: {unmatched}")
        })
        .collect()
}
