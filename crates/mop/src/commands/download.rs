//! `mop download`: a file or directory from many hosts into `LOCAL_DIR/<host>/`.

use std::path::Path;

use anyhow::Result;
use mop_push::adhoc::{download_from_hosts, pool_for, DownloadOptions};

use crate::cli::DownloadArgs;
use crate::commands::run::{close_pool, resolve_targets, runtime};
use crate::commands::upload::{print_outcomes, split_args};

pub fn run(args: DownloadArgs) -> Result<u8> {
    let (target, remote, local_dir) = split_args(
        &args.args,
        !args.selection.hosts.is_empty(),
        "REMOTE LOCAL_DIR",
    )?;
    let hosts = resolve_targets(target.as_deref(), &args.selection)?;
    let options = DownloadOptions {
        recursive: args.recursive,
        suffix: args.suffix,
        forks: args.selection.forks.max(1),
    };
    let pool = pool_for(&hosts, options.forks, args.selection.persist)?;
    let outcomes = runtime()?.block_on(async {
        let outcomes =
            download_from_hosts(&pool, &hosts, &remote, Path::new(&local_dir), &options).await;
        close_pool(pool).await;
        outcomes
    });
    Ok(print_outcomes(&outcomes, args.json, "downloaded"))
}
