//! Ctrl-C during a push: mop stops promptly, kills its agents and removes its work directories.

use std::time::{Duration, Instant};

use mop_testhosts::TestHostsBuilder;

use crate::support::{
    agent_dir_leftovers, mop, parse_json_run, processes_matching, send_signal, wait_until, Running,
    Sandbox,
};

/// Agents run as `<agent dir>/w-<token>/mop-agent` (see the push engine's bootstrap).
fn agent_processes(work_dir_prefix: &str) -> Vec<(u32, String)> {
    processes_matching(work_dir_prefix)
        .into_iter()
        .filter(|(_, cmdline)| {
            cmdline.starts_with(work_dir_prefix) && cmdline.contains("/mop-agent")
        })
        .collect()
}

#[test]
fn ctrl_c_stops_the_agents_and_cleans_the_hosts() {
    let sandbox = Sandbox::start("interrupt", TestHostsBuilder::new().hosts(2).group("web"));
    // The shell stays the parent of `sleep` (it still has to echo), and its command line names
    // this test's agent directory, so it can be found on the host.
    let marker = format!("{}/slept", sandbox.agent_dir);
    let policy = sandbox.policy(
        "sleepy",
        r#"
[[roles]]
name = "sleepy"
groups = ["web"]

[[roles.resources]]
name = "sleep"
type = "shell"
cmd = "sleep 30; echo @AGENT_DIR@/slept"

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}-after-sleep"
"#,
    );
    let mut running =
        Running::spawn(mop().args(sandbox.push_args(&policy, &["--apply", "--json"])));
    let pid = running.child.id();

    let agent_pattern = format!("{}/w-", sandbox.agent_dir);
    let started = wait_until(Duration::from_secs(40), || {
        let commands = processes_matching(&format!("sleep 30; echo {marker}"));
        commands.len() == 2 && agent_processes(&agent_pattern).len() == 2
    });
    if !started {
        let _ = running.child.kill();
        let output = running.finish(Duration::from_secs(10));
        panic!(
            "the agents never started the sleep on both hosts\n{}",
            output.describe()
        );
    }

    send_signal(pid, "-INT");
    let signalled = Instant::now();
    let status = running.wait_for(Duration::from_secs(20));
    let waited = signalled.elapsed();
    assert!(status.is_some(), "mop was still running 20 s after SIGINT");
    let output = running.finish(Duration::from_secs(1));
    assert!(
        waited < Duration::from_secs(10),
        "mop took {waited:?} to exit after SIGINT\n{}",
        output.describe()
    );
    assert_eq!(
        output.exit,
        130,
        "an interrupted push exits 130, as every command that reaches hosts\n{}",
        output.describe()
    );
    assert!(
        output.stderr.contains("interrupted"),
        "{}",
        output.describe()
    );
    let run = parse_json_run(output);
    // Both hosts were running the sleep: interrupted, not "not attempted".
    for host in ["host1", "host2"] {
        let summary = run.host_summary(host);
        assert_eq!(
            summary["status"],
            "interrupted",
            "{host}\n{}",
            run.describe()
        );
        assert_eq!(summary["role"], "sleepy", "{host}\n{}", run.describe());
        assert_eq!(
            summary["error"],
            "stopped by Ctrl-C",
            "{host}\n{}",
            run.describe()
        );
    }

    // No agent survives, and the work directories are gone.
    let agents = agent_processes(&agent_pattern);
    assert!(
        agents.is_empty(),
        "agents still running after Ctrl-C: {agents:?}"
    );
    // Only the cached agent (the default) may stay.
    let left = agent_dir_leftovers(std::path::Path::new(&sandbox.agent_dir));
    assert!(
        left.is_empty(),
        "work directories left in `{}`: {left:?}",
        sandbox.agent_dir
    );
    assert!(
        !sandbox.out.join("host1-after-sleep").exists()
            && !sandbox.out.join("host2-after-sleep").exists(),
        "the role went on after Ctrl-C"
    );
    // The command the agents were running is stopped with them.
    let commands = processes_matching(&marker);
    assert!(
        commands.is_empty(),
        "the agents' `sleep 30` commands survived Ctrl-C: {commands:?}"
    );
    sandbox.assert_hosts_clean();
}
