//! `mop run`: one command on many hosts; also the runtime, pool closing and Ctrl-C handling
//! shared by `mop upload`, `mop download` and `mop transfer`.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{bail, Result};
use mop_push::adhoc::{
    parse_env, pool_for, render_command, run_local, run_on_hosts, HostRun, Interrupted, OutputLine,
    RunOptions, StreamKind,
};
use mop_push::load::{extra_vars, resolve_targets};
use mop_push::ssh::SshPool;
use serde_json::{json, Map, Value};

use crate::cli::RunArgs;
use crate::exit;

/// A multi-threaded runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// What an ad hoc command tells the operator after Ctrl-C, once its remote work is stopped
/// and its connections are closed; the exit code is [`exit::INTERRUPTED`].
pub fn report_interrupted(Interrupted: Interrupted) -> u8 {
    eprintln!("interrupted: remote work stopped and connections closed");
    exit::INTERRUPTED
}

/// Prints a warning of an ad hoc command's library code (see [`pool_for`]).
pub fn print_warning(warning: &str) {
    eprintln!("warning: {warning}");
}

/// Closes the pool's connections, warning about what did not close cleanly.
pub async fn close_pool(pool: SshPool) {
    for (host, error) in pool.close_all().await {
        if host.is_empty() {
            eprintln!("warning: {error}");
        } else {
            eprintln!("warning: host `{host}`: {error}");
        }
    }
}

pub fn run(args: RunArgs) -> Result<u8> {
    let env = parse_env(&args.env)?;
    let timeout = match args.timeout {
        None => None,
        Some(secs) if secs.is_finite() && secs > 0.0 && secs < 1e9 => {
            Some(Duration::from_secs_f64(secs))
        }
        Some(secs) => bail!("invalid --timeout `{secs}`: give a positive number of seconds"),
    };
    let command = args.command.join(" ");
    let options = RunOptions {
        sudo: args.sudo,
        sudo_as: args.sudo_as.clone(),
        timeout,
        pty: args.pty,
        env,
        forks: args.selection.forks.forks,
        serial: args.serial,
    };
    let stream = args.stream;
    let on_line = move |line: OutputLine<'_>| {
        if stream {
            match line.stream {
                StreamKind::Stdout => {
                    crate::pipe::print_line(&format!("{} | {}", line.host, line.text))
                }
                StreamKind::Stderr => eprintln!("{} | {}", line.host, line.text),
            }
        }
    };
    let runtime = runtime()?;
    let results = if args.local {
        if !args.selection.hosts.is_empty() {
            bail!("--local runs on this machine: it takes no --hosts");
        }
        let vars: Map<String, Value> = extra_vars(&args.selection.extra_vars.extra_vars)?
            .into_iter()
            .collect();
        let rendered = render_command(&command, "localhost", &[], &vars)?;
        vec![runtime.block_on(run_local(&rendered, &options, &on_line))]
    } else {
        let hosts = resolve_targets(&args.selection.request(args.target.as_deref()))?;
        // Every template renders before any host is contacted.
        let commands = hosts
            .iter()
            .map(|host| render_command(&command, &host.name, &host.groups, &host.vars))
            .collect::<Result<Vec<_>, _>>()?;
        let pool = pool_for(&hosts, args.selection.pool_flags(), &print_warning)?;
        let results = runtime.block_on(async {
            let results = run_on_hosts(&pool, &hosts, &commands, &options, &on_line).await;
            close_pool(pool).await;
            results
        });
        match results {
            Ok(results) => results,
            Err(interrupted) => return Ok(report_interrupted(interrupted)),
        }
    };
    print_results(&results, &args);
    Ok(if results.iter().all(HostRun::succeeded) {
        exit::SUCCESS
    } else {
        exit::HOST_FAILED
    })
}

fn status_text(result: &HostRun) -> String {
    let elapsed = result.elapsed.as_secs_f64();
    match (&result.error, result.exit_code) {
        (Some(error), _) => format!("FAILED after {elapsed:.2}s: {error}"),
        (None, Some(code)) => format!("exit {code} ({elapsed:.2}s)"),
        (None, None) => format!("killed by a signal ({elapsed:.2}s)"),
    }
}

pub fn host_json(result: &HostRun) -> Value {
    json!({
        "host": result.host,
        "exit_code": result.exit_code,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "elapsed_secs": result.elapsed.as_secs_f64(),
        "timed_out": result.timed_out,
        "error": result.error,
    })
}

fn print_results(results: &[HostRun], args: &RunArgs) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for result in results {
        if args.output.json {
            crate::pipe::note(writeln!(out, "{}", host_json(result)));
        } else if args.stream {
            eprintln!("{}: {}", result.host, status_text(result));
        } else {
            crate::pipe::note(writeln!(
                out,
                "=== {}: {}",
                result.host,
                status_text(result)
            ));
            crate::pipe::note(out.write_all(result.stdout.as_bytes()));
            if !result.stdout.is_empty() && !result.stdout.ends_with('\n') {
                crate::pipe::note(writeln!(out));
            }
            if !result.stderr.is_empty() {
                crate::pipe::note(writeln!(out, "--- {} stderr", result.host));
                crate::pipe::note(out.write_all(result.stderr.as_bytes()));
                if !result.stderr.ends_with('\n') {
                    crate::pipe::note(writeln!(out));
                }
            }
        }
    }
    let _ = out.flush();
    let failed: Vec<String> = results
        .iter()
        .filter(|result| !result.succeeded())
        .map(|result| match (result.exit_code, result.timed_out) {
            (_, true) => format!("{} (timed out)", result.host),
            (Some(code), false) if result.error.is_none() => {
                format!("{} (exit {code})", result.host)
            }
            _ => format!("{} (error)", result.host),
        })
        .collect();
    let total = results.len();
    if failed.is_empty() {
        eprintln!("{total} host{}: all succeeded", plural(total));
    } else {
        eprintln!(
            "{total} host{}: {} succeeded, {} failed: {}",
            plural(total),
            total - failed.len(),
            failed.len(),
            failed.join(", ")
        );
    }
}

pub fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}
