//! `mop inventory`: what the inventory resolves to.

use std::io::Write;

use anyhow::{bail, Result};
use mop_inventory::{ExtraLayers, Inventory, ResolvedHost};
use mop_push::{load, ssh};
use serde_json::json;

use crate::cli::InventoryArgs;
use crate::exit;

pub fn run(args: InventoryArgs) -> Result<u8> {
    let paths = load::inventory_paths(&args.selection.inventory, None)?;
    let inventory = load::load_inventory(&paths)?;
    for warning in inventory.warnings() {
        eprintln!("warning: {warning}");
    }
    let layers =
        ExtraLayers::none().with_overrides("-e", load::extra_vars(&args.extra_vars.extra_vars)?);
    let mut out = std::io::stdout().lock();

    if let Some(name) = &args.host {
        let resolved = inventory.resolve(name, &layers)?;
        let from_ssh_config = ssh_config_settings(&resolved)?;
        if args.output.json {
            let mut view = serde_json::to_value(&resolved)?;
            if let Some(object) = view.as_object_mut() {
                let settings: serde_json::Map<String, serde_json::Value> = from_ssh_config
                    .iter()
                    .map(|(option, value)| (option.to_string(), json!(value)))
                    .collect();
                object.insert("ssh_config".to_string(), settings.into());
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&view)?)?;
        } else {
            print_host_detail(&mut out, &resolved, &from_ssh_config)?;
        }
        return Ok(exit::SUCCESS);
    }

    let selection = load::limit_selection(&args.selection.limits())?;
    let unmatched = load::unmatched_limit_errors(&inventory, &selection);
    if !unmatched.is_empty() {
        return Err(load::LoadError::Invalid(unmatched).into());
    }
    let selected = inventory.select(&selection);
    if selected.hosts.is_empty() {
        bail!("no host matches the given limits");
    }
    let mut resolved_hosts = Vec::with_capacity(selected.hosts.len());
    for host in &selected.hosts {
        resolved_hosts.push(inventory.resolve(host.name(), &layers)?);
    }
    if args.output.json {
        let hosts: Vec<_> = resolved_hosts
            .iter()
            .map(|host| {
                json!({
                    "name": host.name,
                    "groups": host.groups,
                    "vars": host.redacted_vars(),
                    "via": host.via.iter().map(|hop| hop.name.as_str()).collect::<Vec<_>>(),
                })
            })
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({ "hosts": hosts }))?
        )?;
    } else {
        print_host_list(&mut out, &inventory, &resolved_hosts)?;
    }
    Ok(exit::SUCCESS)
}

fn print_host_list(
    out: &mut impl Write,
    inventory: &Inventory,
    hosts: &[ResolvedHost],
) -> Result<()> {
    let width = hosts.iter().map(|host| host.name.len()).max().unwrap_or(0);
    for host in hosts {
        let groups: Vec<&str> = host
            .groups
            .iter()
            .map(String::as_str)
            .filter(|group| *group != mop_inventory::ALL_GROUP)
            .collect();
        let target = format!("{}:{}", host.connection.address, host.connection.port);
        let mut line = format!("{:<width$}  {target}", host.name);
        if !host.via.is_empty() {
            let chain: Vec<&str> = host.via.iter().map(|hop| hop.name.as_str()).collect();
            line.push_str(&format!("  via {}", chain.join(" -> ")));
        }
        line.push_str(&format!(
            "  groups: {}",
            if groups.is_empty() {
                "-".to_string()
            } else {
                groups.join(", ")
            }
        ));
        writeln!(out, "{line}")?;
    }
    writeln!(
        out,
        "{} host{} from {}",
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" },
        inventory.sources().join(", ")
    )?;
    Ok(())
}

/// What the user's and the system's ssh_config add to `host`'s connection where the inventory
/// is silent, as `mop push` will apply it (`ssh -G`, no connection).
fn ssh_config_settings(host: &ResolvedHost) -> Result<Vec<(&'static str, String)>> {
    let via = host.via.last().map(|hop| hop.name.clone());
    let mut spec = mop_push::rollout::ssh_host(&host.name, &host.connection, via);
    let Some(lookup) = spec.lookup.clone() else {
        return Ok(Vec::new());
    };
    let reader = ssh::SshConfigReader::new(&ssh::ConfigIncludes::default())?;
    let settings = reader.settings(&lookup.name)?;
    Ok(ssh::apply_settings(&mut spec, &settings))
}

fn print_host_detail(
    out: &mut impl Write,
    host: &ResolvedHost,
    from_ssh_config: &[(&'static str, String)],
) -> Result<()> {
    writeln!(out, "host {}", host.name)?;
    writeln!(out, "groups: {}", host.groups.join(", "))?;
    let mut connection = host.connection.clone();
    for (option, value) in from_ssh_config {
        match *option {
            "HostName" => connection.address = value.clone(),
            "Port" => connection.port = value.parse().unwrap_or(connection.port),
            "User" => connection.user = Some(value.clone()),
            _ => {}
        }
    }
    let connection = &connection;
    writeln!(
        out,
        "connect: {}{}:{}{}",
        connection
            .user
            .as_deref()
            .map(|user| format!("{user}@"))
            .unwrap_or_default(),
        connection.address,
        connection.port,
        if connection.sudo {
            format!(
                " ({} to {})",
                connection.become_method,
                connection.sudo_user.as_deref().unwrap_or("root")
            )
        } else {
            String::new()
        }
    )?;
    // Shown only when ssh_config adds something, so the view stays what it was without one.
    if !from_ssh_config.is_empty() {
        let includes = ssh::ConfigIncludes::default();
        let files: Vec<String> = [includes.user_config, includes.system_config]
            .into_iter()
            .flatten()
            .map(|path| format!("`{}`", path.display()))
            .collect();
        writeln!(
            out,
            "ssh_config (from {}, where the inventory is silent):",
            files.join(", ")
        )?;
        for (option, value) in from_ssh_config {
            writeln!(out, "  {option} {value}")?;
        }
    }
    let via_from_ssh_config = from_ssh_config
        .iter()
        .any(|(option, _)| *option == "ProxyJump");
    if host.via.is_empty() && via_from_ssh_config {
        writeln!(out, "via: ProxyJump from ssh_config")?;
    } else if host.via.is_empty() {
        writeln!(out, "via: direct")?;
    } else {
        writeln!(out, "via:")?;
        for (index, hop) in host.via.iter().enumerate() {
            let hop_connection = &hop.connection;
            writeln!(
                out,
                "  {}. {} ({}{}:{})",
                index + 1,
                hop.name,
                hop_connection
                    .user
                    .as_deref()
                    .map(|user| format!("{user}@"))
                    .unwrap_or_default(),
                hop_connection.address,
                hop_connection.port
            )?;
        }
        writeln!(out, "  {}. {} (target)", host.via.len() + 1, host.name)?;
    }
    writeln!(out, "variables:")?;
    let vars = host.redacted_vars();
    for (name, value) in &vars {
        writeln!(out, "  {name} = {value}")?;
        if let Some(sources) = host.provenance.get(name) {
            for (index, source) in sources.iter().enumerate().rev() {
                let marker = if index + 1 == sources.len() {
                    "from"
                } else {
                    "overridden:"
                };
                let shown = if index + 1 == sources.len() {
                    String::new()
                } else {
                    format!(" = {}", source.value)
                };
                writeln!(out, "      {marker} {source}{shown}")?;
            }
        }
    }
    Ok(())
}
