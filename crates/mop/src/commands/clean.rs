//! `mop clean`: removes what mop keeps on hosts between runs (cached agents, work directories
//! of dead agents) and reports per host what it removed.

use std::io::Write as _;

use anyhow::{bail, Result};
use mop_push::adhoc::{
    clean_script, parse_clean_output, pool_for, run_on_hosts, CleanReport, HostRun, RunOptions,
};
use mop_push::report::inert;
use serde_json::json;

use crate::cli::CleanArgs;
use mop_push::load::resolve_targets;

use crate::commands::run::{close_pool, plural, print_warning, report_interrupted, runtime};
use crate::exit;

pub fn run(args: CleanArgs) -> Result<u8> {
    let hosts = resolve_targets(&args.selection.request(args.target.as_deref()))?;
    // Every host's agent directory is checked before any host is contacted.
    let mut errors = Vec::new();
    let mut scripts = Vec::new();
    for host in &hosts {
        match clean_script(host.connection.agent_dir.as_deref()) {
            Ok(script) => scripts.push(script),
            Err(error) => errors.push(format!("host `{}`: {error}", host.name)),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    let options = RunOptions {
        sudo: false,
        sudo_as: None,
        timeout: None,
        pty: false,
        env: Vec::new(),
        forks: args.selection.forks.forks,
        serial: false,
    };
    let pool = pool_for(&hosts, args.selection.pool_flags(), &print_warning)?;
    let results = runtime()?.block_on(async {
        let results = run_on_hosts(&pool, &hosts, &scripts, &options, &|_| {}).await;
        close_pool(pool).await;
        results
    });
    let results = match results {
        Ok(results) => results,
        Err(interrupted) => return Ok(report_interrupted(interrupted)),
    };
    let mut failed = Vec::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for result in &results {
        let report = parse_clean_output(&result.stdout);
        let error = failure(result, &report);
        if error.is_some() {
            failed.push(result.host.clone());
        }
        if args.output.json {
            crate::pipe::note(writeln!(
                out,
                "{}",
                json!({
                    "host": result.host,
                    "dir": report.dir,
                    "removed": report.removed,
                    "kept": report.kept,
                    "removed_dir": report.removed_dir,
                    "error": error,
                })
            ));
        } else {
            print_host(&mut out, &result.host, &report, error.as_deref());
        }
    }
    let _ = out.flush();
    let total = results.len();
    if failed.is_empty() {
        eprintln!("{total} host{}: cleaned", plural(total));
        Ok(exit::SUCCESS)
    } else {
        eprintln!(
            "{total} host{}: {} failed: {}",
            plural(total),
            failed.len(),
            failed.join(", ")
        );
        Ok(exit::HOST_FAILED)
    }
}

/// Why cleaning `result`'s host failed, if it did.
fn failure(result: &HostRun, report: &CleanReport) -> Option<String> {
    if let Some(error) = &result.error {
        return Some(error.clone());
    }
    if result.exit_code == Some(0) && report.done {
        return None;
    }
    let stderr = result.stderr.trim();
    Some(match result.exit_code {
        Some(code) if stderr.is_empty() => format!("the clean script exited {code}"),
        Some(code) => format!("the clean script exited {code}: {stderr}"),
        None => "the clean script was killed".to_string(),
    })
}

fn print_host(
    out: &mut impl std::io::Write,
    host: &str,
    report: &CleanReport,
    error: Option<&str>,
) {
    if let Some(error) = error {
        crate::pipe::note(writeln!(out, "{host}: FAILED: {}", inert(error)));
        return;
    }
    let Some(dir) = &report.dir else {
        crate::pipe::note(writeln!(
            out,
            "{host}: nothing to clean (no agent directory)"
        ));
        return;
    };
    if report.removed.is_empty() {
        crate::pipe::note(writeln!(out, "{host}: nothing removed in {}", inert(dir)));
    } else {
        crate::pipe::note(writeln!(out, "{host}: removed in {}:", inert(dir)));
        for name in &report.removed {
            crate::pipe::note(writeln!(out, "  {}", inert(name)));
        }
    }
    for kept in &report.kept {
        crate::pipe::note(writeln!(
            out,
            "  kept {}: {}",
            inert(&kept.name),
            inert(&kept.reason)
        ));
    }
    if report.removed_dir {
        crate::pipe::note(writeln!(
            out,
            "  removed the empty directory {}",
            inert(dir)
        ));
    }
}
