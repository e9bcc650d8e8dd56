//! `mop push`: converge (or check) the hosts a policy selects, over SSH.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mop_protocol::Mode;
use mop_push::agents::AgentSet;
use mop_push::load::{load_run, RunRequest};
use mop_push::plan::PlanOptions;
use mop_push::report::{ReportStyle, RunSummary};
use mop_push::rollout::{run_push, PushHost, PushOptions, PushRole};

use crate::cli::PushArgs;
use crate::exit;

pub fn run(args: PushArgs, color: bool) -> Result<u8> {
    // Served files unchanged since an earlier run are not read again to hash them.
    if let Some(warning) = mop_push::prepare::use_digest_cache() {
        eprintln!("warning: {warning}");
    }
    let mut loaded = load_run(&RunRequest {
        policy: &args.policy,
        inventory: &args.selection.inventory,
        limits: &args.selection.limits(),
        extra_vars: &args.extra_vars.extra_vars,
    })?;
    loaded.select_tasks(&args.tasks.filter())?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    if let Some(listing) = args.tasks.listing() {
        crate::common::print_outline(&loaded.outline(), listing, args.report.output.json)?;
        return Ok(exit::SUCCESS);
    }
    let agents = AgentSet::resolve(crate::build_info::EMBEDDED_AGENTS)?;
    for warning in agents.warnings() {
        eprintln!("warning: {warning}");
    }
    let roles: Vec<PushRole> = loaded
        .roles
        .iter()
        .map(|role_hosts| PushRole {
            role_index: role_hosts.role_index,
            hosts: role_hosts
                .hosts
                .iter()
                .map(|host| PushHost {
                    name: host.name.clone(),
                    groups: host.groups.clone(),
                    vars: host
                        .vars
                        .iter()
                        .map(|(name, value)| (name.clone(), value.clone()))
                        .collect(),
                    connection: host.connection.clone(),
                    via: host.via.clone(),
                })
                .collect(),
        })
        .collect();
    let options = PushOptions {
        plan: PlanOptions {
            mode: if args.mode.apply {
                Mode::Apply
            } else {
                Mode::Check
            },
            diff: args.report.diff,
        },
        forks: args.forks.forks,
        serial: args.serial,
        host_timeout: args.host_timeout.map(std::time::Duration::from_secs),
        persist: args.persist,
        no_agent_cache: args.no_agent_cache,
        connect_timeout: args.connect_timeout.connect_timeout,
    };
    let style = ReportStyle {
        json: args.report.output.json,
        color: color && !args.report.output.json,
        diff: args.report.diff,
        verbose: args.report.verbose >= 1,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (summary, mut reporter, interrupted) = runtime.block_on(run_push(
        &loaded.policy,
        &loaded.prepared,
        &roles,
        agents,
        &options,
        crate::progress::reporter(style, args.report.verbose >= 2),
    ))?;
    reporter.finish(&summary);
    write_retry_file(&args.policy, &summary)?;
    if interrupted {
        return Ok(exit::INTERRUPTED);
    }
    Ok(if summary.success() {
        exit::SUCCESS
    } else {
        exit::HOST_FAILED
    })
}

/// After a run with failures, lists the failed and not-attempted hosts next to the policy so
/// `--limit-hosts @FILE` re-runs just those (Ansible's retry files). A clean run removes a
/// stale retry file.
fn write_retry_file(policy: &Path, summary: &RunSummary) -> Result<()> {
    let path = retry_path(policy);
    let mut hosts: Vec<&str> = summary.failed_hosts();
    hosts.extend(summary.not_attempted_hosts());
    if hosts.is_empty() {
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| {
                format!("cannot remove the stale retry file `{}`", path.display())
            })?;
        }
        return Ok(());
    }
    let mut text = String::from(
        "# hosts that failed or were not attempted; re-run with --limit-hosts @FILE\n",
    );
    for host in &hosts {
        text.push_str(host);
        text.push('\n');
    }
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write the retry file in `{}`", dir.display()))?;
    std::io::Write::write_all(&mut temp, text.as_bytes())?;
    temp.persist(&path)
        .with_context(|| format!("cannot write the retry file `{}`", path.display()))?;
    eprintln!(
        "{} host{} to retry: written to `{}` (use --limit-hosts @{})",
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" },
        path.display(),
        path.display()
    );
    Ok(())
}

fn retry_path(policy: &Path) -> PathBuf {
    let stem = policy
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "policy".to_string());
    policy.with_file_name(format!("{stem}.retry"))
}
