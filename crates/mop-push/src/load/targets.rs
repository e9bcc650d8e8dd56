//! What an ad hoc TARGET means (`mop run`, `upload`, `download`, `transfer`): a pattern
//! expression (`web:&dc1:!web2`, commas as colons) whose terms match group names (all their
//! hosts) or host names; or `--hosts` entries outside any inventory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mop_inventory::{ExtraLayers, Selection};
use serde_json::{Map, Value};

use super::{extra_vars, inventory_paths, load_inventory, LoadError};
use crate::adhoc::{parse_host_spec, AdhocHost};

/// Which hosts an ad hoc command acts on.
#[derive(Debug, Clone, Copy, Default)]
pub struct TargetRequest<'a> {
    /// The TARGET pattern expression.
    pub target: Option<&'a str>,
    /// Every `-i`, in order; else `inventory/` here.
    pub inventory: &'a [PathBuf],
    /// `--hosts` entries (`[user@]host[:port]`), instead of TARGET.
    pub hosts: &'a [String],
    /// `--ssh-key` and `--known-hosts-file`, for the `--hosts` hosts.
    pub ssh_key: Option<&'a Path>,
    pub known_hosts_file: Option<&'a Path>,
    /// `-e KEY=VALUE` arguments.
    pub extra_vars: &'a [String],
}

/// The hosts the request names, in inventory order (in `--hosts` order, duplicates dropped),
/// with their variables.
pub fn resolve_targets(request: &TargetRequest<'_>) -> Result<Vec<AdhocHost>, LoadError> {
    let overrides = extra_vars(request.extra_vars)?;
    if !request.hosts.is_empty() {
        if let Some(target) = request.target {
            return Err(LoadError::TargetAndHosts {
                target: target.to_string(),
            });
        }
        let mut hosts = Vec::new();
        let mut seen = BTreeSet::new();
        for spec in request.hosts {
            let mut host = parse_host_spec(spec).map_err(LoadError::HostSpec)?;
            if !seen.insert(host.name.clone()) {
                continue;
            }
            host.connection.key = request.ssh_key.map(Path::to_path_buf);
            host.connection.known_hosts_file = request.known_hosts_file.map(PathBuf::from);
            host.vars = overrides
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            hosts.push(host);
        }
        return Ok(hosts);
    }
    let Some(target) = request.target else {
        return Err(LoadError::NoTarget);
    };
    let inventory_paths = inventory_paths(request.inventory, None)?;
    let inventory = load_inventory(&inventory_paths)?;
    let selection = Selection::target(target)?;
    let selected = inventory.select(&selection);
    if !selected.unmatched.is_empty() {
        return Err(LoadError::TargetMatchesNothing {
            unmatched: selected.unmatched,
            inventory: inventory_paths.clone(),
        });
    }
    if selected.hosts.is_empty() {
        return Err(LoadError::TargetSelectsNothing {
            target: target.to_string(),
            inventory: inventory_paths,
        });
    }
    let names: BTreeSet<&str> = selected.hosts.iter().map(|host| host.name()).collect();
    let layers = ExtraLayers::none().with_overrides("-e", overrides);
    let mut hosts = Vec::new();
    let mut errors = Vec::new();
    for host in inventory.hosts().filter(|host| names.contains(host.name())) {
        match inventory.resolve(host.name(), &layers) {
            Ok(resolved) => hosts.push(AdhocHost {
                name: resolved.name,
                groups: resolved.groups,
                vars: resolved.vars.into_iter().collect::<Map<String, Value>>(),
                connection: resolved.connection,
                via: resolved.via,
            }),
            Err(err) => errors.push(format!("host `{}`: {err}", host.name())),
        }
    }
    if !errors.is_empty() {
        return Err(LoadError::Hosts(errors));
    }
    Ok(hosts)
}
