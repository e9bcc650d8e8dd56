//! `mop-testhosts`: bring throwaway SSH hosts up for mop's demo and benchmarks, until signalled.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use mop_testhosts::{cleanup_stale, ensure_test_users, BastionLayout, TestHosts, TestHostsBuilder};

/// Throwaway real sshd hosts on loopback (and behind a bastion) for mop's tests, demo and
/// benchmarks. Needs root.
#[derive(Debug, Parser)]
#[command(
    name = "mop-testhosts",
    version,
    after_help = "Exit codes:\n  0  success (hosts were torn down cleanly)\n  1  error (startup failed, a daemon died, teardown incomplete)\n  2  invalid command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Start hosts, write DIR/inventory.toml, DIR/ssh_config and DIR/ready, wait for
    /// SIGINT/SIGTERM (or --for SECS), then tear everything down.
    Up(UpArgs),
    /// Create or repair the test users (`moptest`, `moptestpw`, `moptestnosudo`, `moptestsu`),
    /// their sudoers drop-in and their doas rules.
    Users,
    /// Remove namespaces, run directories and processes left by runs that were killed.
    Cleanup {
        /// Directory holding run directories (default: the system temp dir).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Directory for inventory.toml, ssh_config, ready and the run's state (created if missing).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Number of directly reachable hosts.
    #[arg(long, value_name = "N", default_value_t = 2)]
    hosts: usize,
    /// Inventory group of the directly reachable hosts.
    #[arg(long, value_name = "NAME", default_value = "web")]
    group: String,
    /// Name prefix of the directly reachable hosts (`host1`, `host2`, ...).
    #[arg(long, value_name = "PREFIX", default_value = "host")]
    host_prefix: String,
    /// Also start a bastion with racks of hosts reachable only through it.
    #[arg(long)]
    bastion: bool,
    /// Racks behind the bastion (implies --bastion).
    #[arg(long, value_name = "R")]
    racks: Option<usize>,
    /// Hosts behind each rack's top host (implies --bastion).
    #[arg(long, value_name = "K")]
    per_rack: Option<usize>,
    /// Tear down after SECS seconds instead of waiting for a signal.
    #[arg(long = "for", value_name = "SECS")]
    for_seconds: Option<u64>,
    /// Seconds to wait for every daemon to accept connections.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    startup_timeout: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Up(args) => up(&args),
        Commands::Users => users(),
        Commands::Cleanup { dir } => cleanup(dir.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mop-testhosts: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn users() -> Result<()> {
    let report = ensure_test_users()?;
    if report.changes.is_empty() {
        eprintln!("mop-testhosts: test users already in place");
    }
    for change in report.changes {
        eprintln!("mop-testhosts: {change}");
    }
    Ok(())
}

fn cleanup(dir: Option<&Path>) -> Result<()> {
    let base = dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let report = cleanup_stale(&base)?;
    eprintln!(
        "mop-testhosts: removed {} namespace(s), {} run director(ies), killed {} process(es)",
        report.namespaces.len(),
        report.dirs.len(),
        report.processes
    );
    for name in report.namespaces {
        eprintln!("  namespace {name}");
    }
    for dir in report.dirs {
        eprintln!("  directory {}", dir.display());
    }
    Ok(())
}

fn up(args: &UpArgs) -> Result<()> {
    mop_testhosts::require_root()?;
    // Blocked before anything starts: a Ctrl-C during startup is handled once hosts are up,
    // so it always leads to a full teardown. Children get a clean mask from std's spawn.
    let signals = TerminationSignals::block()?;
    // The builder validates DIR and creates it.
    let mut builder = TestHostsBuilder::new()
        .hosts(args.hosts)
        .group(&args.group)
        .host_prefix(&args.host_prefix)
        .base_dir(&args.dir)
        .startup_timeout(Duration::from_secs(args.startup_timeout));
    if args.bastion || args.racks.is_some() || args.per_rack.is_some() {
        let defaults = BastionLayout::default();
        builder = builder.bastion(BastionLayout::new(
            args.racks.unwrap_or(defaults.racks),
            args.per_rack.unwrap_or(defaults.hosts_per_rack),
        ));
    }
    let mut hosts = builder.start().context("cannot start test hosts")?;
    let outputs = Outputs::new(&args.dir);
    let outcome = outputs.write(&hosts).and_then(|()| {
        print_summary(&hosts, &outputs);
        std::fs::write(&outputs.ready, "")
            .with_context(|| format!("cannot write `{}`", outputs.ready.display()))?;
        wait(&mut hosts, &signals, args.for_seconds)
    });
    outputs.remove();
    let stopped = hosts.stop().context("teardown");
    eprintln!("mop-testhosts: stopped");
    outcome.and(stopped)
}

/// Files `up` writes into DIR; removed again at teardown (`ready` first).
struct Outputs {
    inventory: PathBuf,
    ssh_config: PathBuf,
    ready: PathBuf,
}

impl Outputs {
    fn new(dir: &Path) -> Outputs {
        Outputs {
            inventory: dir.join("inventory.toml"),
            ssh_config: dir.join("ssh_config"),
            ready: dir.join("ready"),
        }
    }

    fn write(&self, hosts: &TestHosts) -> Result<()> {
        hosts.write_inventory(&self.inventory)?;
        std::fs::copy(hosts.ssh_config(), &self.ssh_config)
            .with_context(|| format!("cannot write `{}`", self.ssh_config.display()))?;
        Ok(())
    }

    fn remove(&self) {
        for path in [&self.ready, &self.inventory, &self.ssh_config] {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn print_summary(hosts: &TestHosts, outputs: &Outputs) {
    eprintln!(
        "mop-testhosts: {} host(s) up in {:.2} s, state in `{}`",
        hosts.hosts().len(),
        hosts.startup_time().as_secs_f64(),
        hosts.dir().display()
    );
    let width = hosts
        .hosts()
        .iter()
        .map(|host| host.name.len())
        .max()
        .unwrap_or(0);
    for host in hosts.hosts() {
        let via = host
            .via
            .as_deref()
            .map(|via| format!("  via {via}"))
            .unwrap_or_default();
        eprintln!(
            "  {:width$}  {:>21}  group {}{via}",
            host.name,
            format!("{}:{}", host.addr, host.port),
            host.group
        );
    }
    if let Some(namespace) = hosts.namespace() {
        eprintln!("  network namespace {namespace}");
    }
    eprintln!("inventory:  {}", outputs.inventory.display());
    eprintln!("ssh config: {}", outputs.ssh_config.display());
    if let Some(first) = hosts.hosts().first() {
        eprintln!(
            "  try: ssh -F {} {}",
            outputs.ssh_config.display(),
            first.name
        );
    }
    eprintln!("ready:      {}", outputs.ready.display());
    eprintln!("stop with Ctrl-C or SIGTERM");
}

fn wait(
    hosts: &mut TestHosts,
    signals: &TerminationSignals,
    for_seconds: Option<u64>,
) -> Result<()> {
    let until = for_seconds.map(|seconds| Instant::now() + Duration::from_secs(seconds));
    loop {
        let mut slice = Duration::from_millis(500);
        if let Some(until) = until {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            slice = slice.min(left);
        }
        if let Some(signal) = signals.wait(slice) {
            eprintln!("mop-testhosts: received signal {signal}, tearing down");
            return Ok(());
        }
        hosts.check_running()?;
    }
}

/// SIGINT, SIGTERM and SIGHUP, blocked and collected synchronously with `sigtimedwait`.
struct TerminationSignals {
    set: libc::sigset_t,
}

impl TerminationSignals {
    fn block() -> Result<TerminationSignals> {
        // SAFETY: the set is initialised by sigemptyset before use; this runs on the main thread
        // before any other thread exists, so sigprocmask applies to the whole process.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, signal);
            }
            if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error())
                    .context("cannot block termination signals");
            }
            Ok(TerminationSignals { set })
        }
    }

    /// The signal number if one arrived within `timeout`.
    fn wait(&self, timeout: Duration) -> Option<i32> {
        let timeout = libc::timespec {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: `set` was initialised in `block`; a null siginfo pointer is allowed.
        let signal = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &timeout) };
        (signal > 0).then_some(signal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn up_parses_bastion_flags() {
        let cli = Cli::try_parse_from([
            "mop-testhosts",
            "up",
            "--dir",
            "/tmp/x",
            "--hosts",
            "3",
            "--racks",
            "2",
            "--per-rack",
            "4",
            "--for",
            "5",
        ])
        .expect("valid command line");
        let Commands::Up(args) = cli.command else {
            panic!("expected up");
        };
        assert_eq!(
            (args.hosts, args.racks, args.per_rack, args.for_seconds),
            (3, Some(2), Some(4), Some(5))
        );
        assert!(
            Cli::try_parse_from(["mop-testhosts", "up"]).is_err(),
            "--dir is required"
        );
    }
}
