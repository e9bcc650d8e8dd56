//! `mop transfer SRC_HOST:PATH DST_HOST:PATH`: a remote-to-remote copy streamed through this
//! machine, with no temporary file on local disk.

use anyhow::{anyhow, bail, Result};
use mop_push::adhoc::{pool_for, transfer};

use crate::cli::{AdhocSelection, TransferArgs};
use crate::commands::run::{close_pool, resolve_targets, runtime};
use crate::commands::upload::print_outcomes;

fn split_endpoint(text: &str) -> Result<(String, String)> {
    match text.split_once(':') {
        Some((host, path)) if !host.is_empty() && !path.is_empty() => {
            Ok((host.to_string(), path.to_string()))
        }
        _ => Err(anyhow!(
            "invalid endpoint `{text}`\n  hint: write `HOST:PATH` with an inventory host name"
        )),
    }
}

pub fn run(args: TransferArgs) -> Result<u8> {
    let (source_host, source_path) = split_endpoint(&args.source)?;
    let (target_host, target_path) = split_endpoint(&args.destination)?;
    for name in [&source_host, &target_host] {
        if name.contains(['*', '?', '[', '{', ',']) {
            bail!("`{name}` is a pattern; transfer copies between two named hosts");
        }
    }
    let selection = AdhocSelection {
        inventory: args.inventory.clone(),
        hosts: Vec::new(),
        ssh_key: None,
        known_hosts_file: None,
        extra_vars: Vec::new(),
        forks: 2,
        persist: args.persist,
    };
    let hosts = resolve_targets(Some(&format!("{source_host},{target_host}")), &selection)?;
    for name in [&source_host, &target_host] {
        if !hosts.iter().any(|host| &host.name == name) {
            bail!("`{name}` is not a host of the inventory (it names a group)\n  hint: name one host on each side");
        }
    }
    let pool = pool_for(&hosts, 2, args.persist)?;
    let outcome = runtime()?.block_on(async {
        let outcome = transfer(
            &pool,
            &source_host,
            &source_path,
            &target_host,
            &target_path,
        )
        .await;
        close_pool(pool).await;
        outcome
    });
    Ok(print_outcomes(&[outcome], args.json, "transferred"))
}
