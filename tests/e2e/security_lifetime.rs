//! Nothing outlives a dead controller for long: `mop push` killed with SIGKILL mid-role leaves
//! no ssh process, no run directory and no work directory behind (issue 12, item 4).

use std::path::{Path, PathBuf};
use std::time::Duration;

use mop_testhosts::TestHostsBuilder;

use crate::support::{mop, processes_matching, send_signal, wait_until, Running, Sandbox};

/// How long the leftovers may take to go; the guarantee is a few seconds (the watchdog's
/// SIGTERM, one second, SIGKILL; sshd closing the channel; the agent's cleanup), the rest is
/// slack for a loaded test machine.
const BOUND: Duration = Duration::from_secs(20);

const SLEEPY_POLICY: &str = r#"
[[roles]]
name = "sleepy"
groups = ["web"]

[[roles.resources]]
name = "sleep"
type = "shell"
cmd = "sleep 60; echo @AGENT_DIR@/slept"
"#;

/// Starts `mop push` of a role that sleeps on the host, waits until the sleep runs, and returns
/// the running mop with its run directory (the `/tmp/mop-*` whose ssh_config names this
/// test's host, so parallel tests' runs are told apart).
fn push_until_sleeping(sandbox: &Sandbox) -> (Running, PathBuf) {
    let policy = sandbox.policy("sleepy", SLEEPY_POLICY);
    let mut running = Running::spawn(mop().args(sandbox.push_args(&policy, &["--apply"])));
    let marker = format!("sleep 60; echo {}/slept", sandbox.agent_dir);
    let port = format!("Port {}\n", sandbox.host("host1").port);
    let mut run_dir = None;
    let started = wait_until(Duration::from_secs(40), || {
        run_dir = run_dir.take().or_else(|| find_run_dir(&port));
        run_dir.is_some() && !processes_matching(&marker).is_empty()
    });
    if !started {
        let _ = running.child.kill();
        let output = running.finish(Duration::from_secs(10));
        panic!("the role never started sleeping\n{}", output.describe());
    }
    (running, run_dir.expect("found above"))
}

fn find_run_dir(port_line: &str) -> Option<PathBuf> {
    std::fs::read_dir("/tmp").ok()?.flatten().find_map(|entry| {
        let path = entry.path();
        let name = entry.file_name();
        let config = std::fs::read_to_string(path.join("ssh_config")).ok()?;
        // `mop-XXXXXX` (tempfile's random suffix), not the test hosts' `mop-testhosts-*`.
        let is_run_dir = name
            .to_str()?
            .strip_prefix("mop-")
            .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_alphanumeric()));
        (is_run_dir && config.contains(port_line)).then_some(path)
    })
}

fn ssh_naming(run_dir: &Path) -> Vec<(u32, String)> {
    processes_matching(&format!("{}/", run_dir.display()))
        .into_iter()
        .filter(|(_, cmdline)| cmdline.starts_with("ssh ") || cmdline.contains("/ssh "))
        .collect()
}

fn work_dirs(agent_dir: &str) -> Vec<String> {
    std::fs::read_dir(agent_dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("w-"))
                .collect()
        })
        .unwrap_or_default()
}

fn kill_mop(mut running: Running) {
    send_signal(running.child.id(), "-KILL");
    assert!(
        running.wait_for(Duration::from_secs(10)).is_some(),
        "mop survived SIGKILL"
    );
}

fn assert_controller_side_gone(run_dir: &Path) {
    let gone = wait_until(BOUND, || {
        ssh_naming(run_dir).is_empty() && !run_dir.exists()
    });
    assert!(
        gone,
        "after SIGKILL of mop: ssh processes {:?}, run directory `{}` exists: {}",
        ssh_naming(run_dir),
        run_dir.display(),
        run_dir.exists()
    );
}

/// The watchdog stops the masters and removes the run directory; the agent, cut off, stops
/// its `sleep` and removes its work directory itself.
#[test]
fn sigkill_mid_role_leaves_nothing_on_controller_or_host() {
    let sandbox = Sandbox::start(
        "lifetime-kill",
        TestHostsBuilder::new().hosts(1).group("web"),
    );
    let (running, run_dir) = push_until_sleeping(&sandbox);
    kill_mop(running);
    assert_controller_side_gone(&run_dir);
    let host_clean = wait_until(BOUND, || {
        work_dirs(&sandbox.agent_dir).is_empty()
            && processes_matching(&sandbox.agent_dir).is_empty()
    });
    assert!(
        host_clean,
        "after SIGKILL of mop the host still has work directories {:?} and processes {:?}",
        work_dirs(&sandbox.agent_dir),
        processes_matching(&sandbox.agent_dir)
    );
}

/// An agent that died with its controller (both SIGKILLed: no cleanup anywhere) leaves its
/// work directory; the next push to the host removes it once its lock is older than the grace.
#[test]
fn a_dead_agents_work_dir_is_removed_at_the_next_push() {
    let sandbox = Sandbox::start(
        "lifetime-next",
        TestHostsBuilder::new().hosts(1).group("web"),
    );
    let (running, run_dir) = push_until_sleeping(&sandbox);
    let agent_prefix = format!("{}/w-", sandbox.agent_dir);
    for (pid, cmdline) in processes_matching(&agent_prefix) {
        if cmdline.starts_with(&agent_prefix) && cmdline.contains("/mop-agent") {
            send_signal(pid, "-KILL");
        }
    }
    kill_mop(running);
    // What the agent started dies too (it would have been killed by the agent).
    for (pid, _) in processes_matching(&format!("{}/slept", sandbox.agent_dir)) {
        send_signal(pid, "-KILL");
    }
    assert_controller_side_gone(&run_dir);
    let left = work_dirs(&sandbox.agent_dir);
    assert_eq!(left.len(), 1, "the dead agent's work directory: {left:?}");
    // As if the grace (5 minutes without a touch) had passed.
    let lock = Path::new(&sandbox.agent_dir).join(&left[0]).join("lock");
    std::fs::File::open(&lock)
        .and_then(|file| file.set_modified(std::time::SystemTime::now() - Duration::from_secs(600)))
        .unwrap_or_else(|error| panic!("cannot age `{}`: {error}", lock.display()));

    let policy = sandbox.policy(
        "quick",
        r#"
[[roles]]
name = "quick"
groups = ["web"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}-quick"
"#,
    );
    sandbox.push(&policy, &["--apply"]).assert_exit(0);
    assert_eq!(
        work_dirs(&sandbox.agent_dir),
        Vec::<String>::new(),
        "the next push removes the dead agent's work directory"
    );
    sandbox.assert_hosts_clean();
}
