//! `mop validate`: load and validate a policy and its inventory, print roles and their hosts.

use std::io::Write;

use anyhow::{anyhow, Result};
use mop_push::load::{load_run, RunRequest};
use serde_json::json;

use crate::cli::ValidateArgs;
use crate::exit;

pub fn run(args: ValidateArgs, _color: bool) -> Result<u8> {
    let loaded = load_run(&RunRequest {
        policy: &args.policy,
        inventory: &args.selection.inventory,
        limits: &args.selection.limits(),
        extra_vars: &args.extra_vars.extra_vars,
    })?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    let policy = &loaded.policy;
    // Every served file is read and hashed once here, as a push would, so an unreadable
    // source is reported now rather than by the host that needs it.
    let stats = loaded
        .prepared
        .manifest
        .wait_all()
        .map_err(|error| anyhow!("{}: file server: {error}", policy.path.display()))?;
    let mut out = std::io::stdout().lock();
    if args.output.json {
        let roles: Vec<_> = loaded
            .roles
            .iter()
            .map(|role_hosts| {
                let role = &policy.roles[role_hosts.role_index];
                json!({
                    "name": role.name,
                    "hosts": role_hosts.hosts.iter().map(|host| host.name.as_str()).collect::<Vec<_>>(),
                    "serial": role.serial.map(|serial| serial.get()),
                    "resources": role.resources.len(),
                    "handlers": role.handlers.len(),
                })
            })
            .collect();
        let summary = json!({
            "policy": policy.path,
            "inventory": loaded.inventory.paths(),
            "roles": roles,
            "files": { "count": stats.files, "bytes": stats.bytes },
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
        return Ok(exit::SUCCESS);
    }
    writeln!(
        out,
        "policy {} is valid (inventory {})",
        policy.path.display(),
        loaded.inventory
    )?;
    for role_hosts in &loaded.roles {
        let role = &policy.roles[role_hosts.role_index];
        let names: Vec<&str> = role_hosts
            .hosts
            .iter()
            .map(|host| host.name.as_str())
            .collect();
        let serial = match role.serial {
            Some(serial) => format!(", serial {serial}"),
            None => String::new(),
        };
        writeln!(
            out,
            "role {}: {} resource{}, {} handler{}{serial}",
            role.name,
            role.resources.len(),
            if role.resources.len() == 1 { "" } else { "s" },
            role.handlers.len(),
            if role.handlers.len() == 1 { "" } else { "s" },
        )?;
        if names.is_empty() {
            writeln!(out, "  hosts: none selected")?;
        } else {
            writeln!(out, "  hosts ({}): {}", names.len(), names.join(", "))?;
        }
    }
    writeln!(out, "files served: {} ({} bytes)", stats.files, stats.bytes)?;
    Ok(exit::SUCCESS)
}
