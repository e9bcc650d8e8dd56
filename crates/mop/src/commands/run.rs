//! `mop run`: one command on many hosts; also the target resolution (`TARGET` patterns or
//! `--hosts`) shared by `mop upload` and `mop download`.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use mop_inventory::{ExtraLayers, Selection};
use mop_push::adhoc::{
    parse_env, parse_host_spec, pool_for, render_command, run_local, run_on_hosts, AdhocHost,
    HostRun, OutputLine, RunOptions, StreamKind,
};
use mop_push::ssh::SshPool;
use serde_json::{json, Map, Value};

use crate::cli::{AdhocSelection, RunArgs};
use crate::common;
use crate::exit;

/// The hosts `target` (or `--hosts`) names, in inventory order, with their variables.
pub fn resolve_targets(target: Option<&str>, selection: &AdhocSelection) -> Result<Vec<AdhocHost>> {
    let overrides = common::extra_vars(&selection.extra_vars)?;
    if !selection.hosts.is_empty() {
        if let Some(target) = target {
            bail!("both a TARGET (`{target}`) and --hosts are given\n  hint: use an inventory pattern or --hosts, not both");
        }
        let mut hosts = Vec::new();
        let mut seen = BTreeSet::new();
        for spec in &selection.hosts {
            let mut host = parse_host_spec(spec)?;
            if !seen.insert(host.name.clone()) {
                continue;
            }
            host.connection.key = selection.ssh_key.clone();
            host.connection.known_hosts_file = selection.known_hosts_file.clone();
            host.vars = overrides
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            hosts.push(host);
        }
        return Ok(hosts);
    }
    let Some(target) = target else {
        bail!("no hosts given\n  hint: name an inventory pattern (e.g. `web` or `web,db*`) or pass --hosts");
    };
    let inventory_path = common::inventory_path(selection.inventory.as_deref(), None)?;
    let inventory = common::load_inventory(&inventory_path)?;
    let mut names = BTreeSet::new();
    for pattern in target.split(',').map(str::trim) {
        if pattern.is_empty() {
            bail!("the target `{target}` has an empty pattern\n  hint: separate globs with single commas, e.g. `web,db*`");
        }
        let by_group = Selection::new(&[pattern], &[])
            .map_err(|err| anyhow!("invalid target pattern `{pattern}`: {err}"))?;
        let by_host = Selection::new(&[], &[pattern])
            .map_err(|err| anyhow!("invalid target pattern `{pattern}`: {err}"))?;
        let mut matched = false;
        for selection in [by_group, by_host] {
            let selected = inventory.select(&selection);
            if selected.unmatched.is_empty() {
                matched |= !selected.hosts.is_empty();
                names.extend(selected.hosts.iter().map(|host| host.name().to_string()));
            }
        }
        if !matched {
            bail!(
                "target pattern `{pattern}` matches no group or host in `{}`\n  hint: `mop inventory -i {}` lists the groups and hosts",
                inventory_path.display(),
                inventory_path.display()
            );
        }
    }
    let layers = ExtraLayers::none().with_overrides("-e", overrides);
    let mut hosts = Vec::new();
    let mut errors = Vec::new();
    for host in inventory.hosts().filter(|host| names.contains(host.name())) {
        match inventory.resolve(host.name(), &layers) {
            Ok(resolved) if resolved.connection.password.is_some() => errors.push(format!(
                "host `{}`: `mop_ssh_password` is set, but mop logs in with keys and ssh-agent only\n  hint: install a key for the user (ssh-copy-id) and set `mop_ssh_key`, or load it into ssh-agent",
                host.name()
            )),
            Ok(resolved) => hosts.push(AdhocHost {
                name: resolved.name,
                groups: resolved.groups,
                vars: resolved.vars.into_iter().collect::<Map<String, Value>>(),
                connection: resolved.connection,
                via: resolved.via,
            }),
            Err(err) => errors.push(format!("host `{}`: {err}", host.name())),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(hosts)
}

/// A multi-threaded runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
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
        forks: args.selection.forks.max(1),
        serial: args.serial,
    };
    let stream = args.stream;
    let on_line = move |line: OutputLine<'_>| {
        if stream {
            match line.stream {
                StreamKind::Stdout => println!("{} | {}", line.host, line.text),
                StreamKind::Stderr => eprintln!("{} | {}", line.host, line.text),
            }
        }
    };
    let runtime = runtime()?;
    let results = if args.local {
        if !args.selection.hosts.is_empty() {
            bail!("--local runs on this machine: it takes no --hosts");
        }
        let vars: Map<String, Value> = common::extra_vars(&args.selection.extra_vars)?
            .into_iter()
            .collect();
        let rendered = render_command(&command, "localhost", &[], &vars)?;
        vec![runtime.block_on(run_local(&rendered, &options, &on_line))]
    } else {
        let hosts = resolve_targets(args.target.as_deref(), &args.selection)?;
        // Every template renders before any host is contacted.
        let commands = hosts
            .iter()
            .map(|host| render_command(&command, &host.name, &host.groups, &host.vars))
            .collect::<Result<Vec<_>, _>>()?;
        let pool = pool_for(&hosts, options.forks, args.selection.persist)?;
        runtime.block_on(async {
            let results = run_on_hosts(&pool, &hosts, &commands, &options, &on_line).await;
            close_pool(pool).await;
            results
        })
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
        if args.json {
            let _ = writeln!(out, "{}", host_json(result));
        } else if args.stream {
            eprintln!("{}: {}", result.host, status_text(result));
        } else {
            let _ = writeln!(out, "=== {}: {}", result.host, status_text(result));
            let _ = out.write_all(result.stdout.as_bytes());
            if !result.stdout.is_empty() && !result.stdout.ends_with('\n') {
                let _ = writeln!(out);
            }
            if !result.stderr.is_empty() {
                let _ = writeln!(out, "--- {} stderr", result.host);
                let _ = out.write_all(result.stderr.as_bytes());
                if !result.stderr.ends_with('\n') {
                    let _ = writeln!(out);
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
