//! `mop download`: a file or directory from many hosts into `LOCAL_DIR/<host>/`.

use std::path::Path;

use anyhow::Result;
use mop_push::adhoc::{download_from_hosts, pool_for, until_interrupted, DownloadOptions};
use mop_push::load::resolve_targets;

use crate::cli::DownloadArgs;
use crate::commands::run::{close_pool, print_warning, report_interrupted, runtime};
use crate::commands::upload::{print_outcomes, split_args};

pub fn run(args: DownloadArgs) -> Result<u8> {
    let (target, remote, local_dir) = split_args(
        &args.args,
        !args.selection.hosts.is_empty(),
        "REMOTE LOCAL_DIR",
    )?;
    let hosts = resolve_targets(&args.selection.request(target.as_deref()))?;
    let options = DownloadOptions {
        recursive: args.recursive,
        suffix: args.suffix,
        sudo: args.sudo,
        forks: args.selection.forks.forks,
    };
    let pool = pool_for(&hosts, args.selection.pool_flags(), &print_warning)?;
    let outcomes = runtime()?.block_on(async {
        let outcomes = until_interrupted(download_from_hosts(
            &pool,
            &hosts,
            &remote,
            Path::new(&local_dir),
            &options,
        ))
        .await;
        close_pool(pool).await;
        outcomes
    });
    match outcomes {
        Ok(outcomes) => Ok(print_outcomes(&outcomes, args.output.json, "downloaded")),
        Err(interrupted) => Ok(report_interrupted(interrupted)),
    }
}
