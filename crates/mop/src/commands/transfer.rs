//! `mop transfer SRC_HOST:PATH DST_HOST:PATH`: a remote-to-remote copy streamed through this
//! machine, with no temporary file on local disk.

use anyhow::{anyhow, bail, Result};
use mop_push::adhoc::{pool_for, remove_staging, transfer, until_interrupted, PoolFlags, Transfer};
use mop_push::load::{resolve_targets, TargetRequest};

use crate::cli::TransferArgs;
use crate::commands::run::{close_pool, print_warning, report_interrupted, runtime};
use crate::commands::upload::print_outcomes;

const TRANSFER_FORKS: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(2) {
    Some(forks) => forks,
    None => panic!("2 is not zero"),
};

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
    let target = format!("{source_host},{target_host}");
    let hosts = resolve_targets(&TargetRequest {
        target: Some(&target),
        inventory: &args.inventory,
        ..TargetRequest::default()
    })?;
    let find = |name: &str| {
        hosts.iter().find(|host| host.name == name).ok_or_else(|| {
            anyhow!("`{name}` is not a host of the inventory (it names a group)\n  hint: name one host on each side")
        })
    };
    let (source, target) = (find(&source_host)?, find(&target_host)?);
    let request = Transfer {
        source,
        source_path: &source_path,
        target,
        target_path: &target_path,
        sudo: args.sudo,
    };
    // Two hosts, both at once.
    let pool = pool_for(
        &hosts,
        PoolFlags {
            forks: TRANSFER_FORKS,
            persist: args.persist,
            connect_timeout: args.connect_timeout.connect_timeout,
        },
        &print_warning,
    )?;
    let outcome = runtime()?.block_on(async {
        let outcome = until_interrupted(transfer(&pool, &request)).await;
        if outcome.is_err() && request.sudo {
            // An abandoned copy may have left its private staging directory behind.
            remove_staging(&pool, &[request.target]).await;
        }
        close_pool(pool).await;
        outcome
    });
    match outcome {
        Ok(outcome) => Ok(print_outcomes(&[outcome], args.output.json, "transferred")),
        Err(interrupted) => Ok(report_interrupted(interrupted)),
    }
}
