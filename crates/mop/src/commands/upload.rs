//! `mop upload`: a file or directory to many hosts over SFTP.

use std::path::Path;

use anyhow::{anyhow, Result};
use mop_push::adhoc::{
    pool_for, remove_staging, until_interrupted, upload_to_hosts, CopyOutcome, UploadOptions,
};
use mop_push::load::resolve_targets;
use serde_json::json;

use crate::cli::UploadArgs;
use crate::commands::run::{close_pool, plural, print_warning, report_interrupted, runtime};
use crate::exit;

pub fn run(args: UploadArgs) -> Result<u8> {
    let (target, local, remote) =
        split_args(&args.args, !args.selection.hosts.is_empty(), "LOCAL REMOTE")?;
    let mode = match &args.mode {
        None => None,
        Some(text) => Some(
            u32::from_str_radix(text, 8)
                .ok()
                .filter(|mode| *mode <= 0o7777)
                .ok_or_else(|| {
                    anyhow!(
                        "invalid --mode `{text}`\n  hint: give an octal mode such as 0644 or 755"
                    )
                })?,
        ),
    };
    let hosts = resolve_targets(&args.selection.request(target.as_deref()))?;
    let options = UploadOptions {
        recursive: args.recursive,
        mode,
        sudo: args.sudo,
        sudo_as: args.sudo_as.clone(),
        forks: args.selection.forks.forks,
    };
    let pool = pool_for(&hosts, args.selection.pool_flags(), &print_warning)?;
    let outcomes = runtime()?.block_on(async {
        let outcomes = until_interrupted(upload_to_hosts(
            &pool,
            &hosts,
            Path::new(&local),
            &remote,
            &options,
        ))
        .await;
        if outcomes.is_err() && options.sudo {
            // Abandoned copies may have left their private staging directories behind.
            remove_staging(&pool, &hosts.iter().collect::<Vec<_>>()).await;
        }
        close_pool(pool).await;
        outcomes
    });
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes?,
        Err(interrupted) => return Ok(report_interrupted(interrupted)),
    };
    Ok(print_outcomes(&outcomes, args.output.json, "uploaded"))
}

/// `[TARGET] A B`: TARGET is absent exactly when --hosts is given.
pub fn split_args(
    args: &[String],
    with_hosts: bool,
    names: &str,
) -> Result<(Option<String>, String, String)> {
    match (args, with_hosts) {
        ([target, first, second], false) => {
            Ok((Some(target.clone()), first.clone(), second.clone()))
        }
        ([first, second], true) => Ok((None, first.clone(), second.clone())),
        (_, false) => Err(anyhow!(
            "expected TARGET {names}\n  hint: name an inventory pattern first, or pass --hosts"
        )),
        (_, true) => Err(anyhow!("expected {names} after --hosts (no TARGET)")),
    }
}

/// Prints one line (or JSON object) per host and a summary; returns the exit code.
pub fn print_outcomes(outcomes: &[CopyOutcome], as_json: bool, verb: &str) -> u8 {
    for outcome in outcomes {
        if as_json {
            crate::pipe::print_line(
                &json!({
                    "host": outcome.host,
                    "files_sent": outcome.files_sent,
                    "bytes_sent": outcome.bytes_sent,
                    "files_skipped": outcome.files_skipped,
                    "paths": outcome.paths,
                    "elapsed_secs": outcome.elapsed.as_secs_f64(),
                    "error": outcome.error,
                })
                .to_string(),
            );
        } else {
            match &outcome.error {
                Some(error) => {
                    crate::pipe::print_line(&format!("{}: FAILED: {error}", outcome.host))
                }
                None => crate::pipe::print_line(&format!(
                    "{}: {verb} {} file{} ({} bytes), {} already up to date ({:.2}s)",
                    outcome.host,
                    outcome.files_sent,
                    plural(outcome.files_sent),
                    outcome.bytes_sent,
                    outcome.files_skipped,
                    outcome.elapsed.as_secs_f64()
                )),
            }
        }
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|outcome| outcome.error.is_some())
        .map(|outcome| outcome.host.as_str())
        .collect();
    let total = outcomes.len();
    if failed.is_empty() {
        eprintln!("{total} host{}: all succeeded", plural(total));
        exit::SUCCESS
    } else {
        eprintln!(
            "{total} host{}: {} succeeded, {} failed: {}",
            plural(total),
            total - failed.len(),
            failed.len(),
            failed.join(", ")
        );
        exit::HOST_FAILED
    }
}
