//! Benchmark harness (prints figures, asserts only correctness): 20 hosts in parallel through
//! the SSH transport (connect + bootstrap + hello + cleanup + close) against 20 parallel plain
//! `ssh host 'sudo -n true'` in the same run.
//!
//! Run it with `cargo run -p mop-push --example ssh_bench` (needs root
//! and `cargo build -p mop-agent`).

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mop_push::session::AgentSession;
use mop_push::ssh::{AgentOptions, BecomeMethod, BecomeSpec, HostKeyPolicy, SshHost, SshPool};
use mop_push::transport::AgentProcess;
use mop_testhosts::{TestHosts, TestHostsBuilder, TEST_USER};

const HOSTS: usize = 20;

fn agent_path() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/mop-agent");
    assert!(
        built.is_file(),
        "the agent binary `{}` is missing\nhint: build it first with `cargo build -p mop-agent`",
        built.display()
    );
    // Without debug symbols (the code is the same): closer to the size of a release agent.
    let stripped = std::env::temp_dir().join(format!("bench-agent.{}", std::process::id()));
    let status = std::process::Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&built)
        .status();
    match status {
        Ok(status) if status.success() => stripped,
        _ => built,
    }
}

fn ssh_hosts(hosts: &TestHosts) -> Vec<SshHost> {
    hosts
        .hosts()
        .iter()
        .map(|host| SshHost {
            name: host.name.clone(),
            address: host.addr.to_string(),
            port: host.port,
            user: Some(host.user.clone()),
            identity_file: Some(hosts.client_key().to_path_buf()),
            known_hosts_file: Some(hosts.known_hosts().to_path_buf()),
            host_keys: HostKeyPolicy::Strict,
            connect_timeout: Some(Duration::from_secs(10)),
            via: None,
            ..SshHost::new(&host.name, "", 0)
        })
        .collect()
}

fn plain_ssh(hosts: &TestHosts) -> Duration {
    let started = Instant::now();
    let children: Vec<_> = hosts
        .hosts()
        .iter()
        .map(|host| {
            let mut command = host.ssh_command("sudo -n true");
            command.stdin(std::process::Stdio::null());
            command.spawn().expect("ssh")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().expect("wait").success());
    }
    started.elapsed()
}

/// One run of the transport over every host; returns (total, uploads).
async fn transport_run(
    hosts: &TestHosts,
    agent: &Path,
    options: &AgentOptions,
) -> (Duration, usize) {
    let started = Instant::now();
    let pool = Arc::new(
        SshPool::new(
            &ssh_hosts(hosts),
            agent,
            NonZeroUsize::new(50).expect("50 is not zero"),
        )
        .expect("pool"),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for host in hosts.hosts() {
        let (pool, name, options) = (pool.clone(), host.name.clone(), options.clone());
        tasks.spawn(async move {
            let agent = pool.start_agent(&name, &options).await.expect("start");
            let AgentProcess {
                stdin,
                stdout,
                mut child,
                ..
            } = agent;
            let session = AgentSession::start(stdout, stdin).await.expect("hello");
            assert_eq!(session.facts.uid, 0, "sudo on {name}");
            session.shutdown().await.expect("shutdown");
            assert_eq!(child.wait().await.expect("wait"), Some(0));
            drop(child);
            pool.cleanup(&name).await.expect("cleanup");
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("host task");
    }
    let pool = Arc::into_inner(pool).expect("tasks are done");
    let uploads = pool.uploads();
    let errors = pool.close_all().await;
    assert!(errors.is_empty(), "{errors:?}");
    (started.elapsed(), uploads)
}

/// A benchmark, not a test: prints figures, asserts only that the runs worked.
/// Run with `cargo run -p mop-push --example ssh_bench` (as root: it starts sshd).
fn main() {
    mop_push::ssh::raise_nofile_limit().expect("rlimit");
    // Removes the bench's cached agents and agent copy, also when the bench fails.
    struct Leftovers(Vec<PathBuf>);
    impl Drop for Leftovers {
        fn drop(&mut self) {
            for path in &self.0 {
                let _ = std::fs::remove_dir_all(path);
                let _ = std::fs::remove_file(path);
            }
        }
    }
    let hosts = TestHostsBuilder::new()
        .hosts(HOSTS)
        .start()
        .expect("test hosts");
    let agent = agent_path();
    let mut leftovers = vec![PathBuf::from(format!(
        "/home/{TEST_USER}/.mop-bench-{}",
        std::process::id()
    ))];
    if agent.starts_with(std::env::temp_dir()) {
        leftovers.push(agent.clone());
    }
    let _leftovers = Leftovers(leftovers);
    let agent_size = std::fs::metadata(&agent).expect("agent").len();
    let options = AgentOptions {
        agent_dir: Some(format!("$HOME/.mop-bench-{}", std::process::id())),
        cache: true,
        sudo: Some(BecomeSpec {
            user: None,
            password: None,
            method: BecomeMethod::Sudo,
        }),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let plain_before = plain_ssh(&hosts);
    let (cold, cold_uploads) = runtime.block_on(transport_run(&hosts, &agent, &options));
    let (warm, warm_uploads) = runtime.block_on(transport_run(&hosts, &agent, &options));
    let plain_after = plain_ssh(&hosts);
    let without_cache = AgentOptions {
        cache: false,
        ..options.clone()
    };
    let (uncached, uncached_uploads) =
        runtime.block_on(transport_run(&hosts, &agent, &without_cache));
    // All test hosts share one home: a host probing after another finished its upload already
    // finds the cached agent, so the first run makes between 1 and 20 uploads.
    assert!((1..=HOSTS).contains(&cold_uploads), "{cold_uploads}");
    assert_eq!((warm_uploads, uncached_uploads), (0, HOSTS));
    println!(
        "{HOSTS} hosts in parallel, agent {:.1} MB, load {}",
        agent_size as f64 / 1e6,
        load()
    );
    println!(
        "  plain `ssh host 'sudo -n true'`:              {:>6} ms (before), {:>6} ms (after)",
        plain_before.as_millis(),
        plain_after.as_millis()
    );
    println!(
        "  transport, agent cached on the hosts:         {:>6} ms",
        warm.as_millis()
    );
    println!(
        "  transport, first run (upload + cache):        {:>6} ms ({cold_uploads} uploads)",
        cold.as_millis()
    );
    println!(
        "  transport, no cache (upload every run):       {:>6} ms",
        uncached.as_millis()
    );
    println!("  (transport = connect + bootstrap + sudo hello + shutdown + cleanup + close)");
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}
