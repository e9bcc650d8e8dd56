//! The end-of-run summary tells each host's fate once and truthfully: one status per host
//! (`ok`, `changed`, `failed`, `unreachable`, `interrupted`, `hook failed`, `not attempted`),
//! the role it is about and the first error, in the text table and in the JSON summary. Every
//! status here is caused for real: an sshd killed mid-role, a failing hook, Ctrl-C, `max_fail`.

use std::time::Duration;

use mop_testhosts::TestHostsBuilder;
use serde_json::Value;

use crate::support::{
    mop, parse_json_run, processes_matching, send_signal, wait_until, JsonRun, Running, Sandbox,
};

fn status(run: &JsonRun, host: &str) -> String {
    run.host_summary(host)["status"]
        .as_str()
        .unwrap_or_else(|| panic!("no status for {host}\n{}", run.describe()))
        .to_owned()
}

fn field<'a>(run: &'a JsonRun, host: &str, name: &str) -> &'a str {
    run.host_summary(host)[name].as_str().unwrap_or_default()
}

/// The parent pid of `pid`, from `/proc/PID/stat` (the field after the command in parens).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_command = &stat[stat.rfind(')')? + 2..];
    after_command.split_whitespace().nth(1)?.parse().ok()
}

/// `root` and every process below it.
fn process_tree(root: u32) -> Vec<u32> {
    let all: Vec<u32> = std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    let mut tree = vec![root];
    let mut grew = true;
    while grew {
        grew = false;
        for pid in &all {
            if !tree.contains(pid) && parent_of(*pid).is_some_and(|parent| tree.contains(&parent)) {
                tree.push(*pid);
                grew = true;
            }
        }
    }
    tree
}

/// Kills a test host's sshd with everything it started (its sessions, the agent, the agent's
/// commands), as a crashed or powered-off host would end them: the TCP connection drops.
fn kill_sshd(sandbox: &Sandbox, host: &str) {
    let host_dir = sandbox
        .host(host)
        .log_path
        .parent()
        .expect("the sshd log sits in the host's directory")
        .to_path_buf();
    let config = host_dir.join("sshd_config");
    let listeners: Vec<u32> = processes_matching(&config.to_string_lossy())
        .into_iter()
        .filter(|(_, cmdline)| cmdline.contains("sshd"))
        .map(|(pid, _)| pid)
        .collect();
    assert!(
        !listeners.is_empty(),
        "no sshd running with `{}`",
        config.display()
    );
    // Collect the whole tree first: once the listener dies its children are re-parented.
    let tree: Vec<u32> = listeners.into_iter().flat_map(process_tree).collect();
    for pid in tree {
        send_signal(pid, "-KILL");
    }
}

const SLOW_POLICY: &str = r#"
[[roles]]
name = "slow"
groups = ["web"]
serial = 2
max_fail = 1

[[roles.resources]]
name = "sleep"
type = "shell"
cmd = "sleep @SECONDS@; echo @AGENT_DIR@/slept"

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}-after-sleep"

[[roles]]
name = "later"
groups = ["web"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}-later"
"#;

/// Starts `mop push --apply --json` on the slow policy and waits until `hosts` hosts run the
/// sleep.
fn start_slow_push(sandbox: &Sandbox, seconds: u32, hosts: usize) -> Running {
    let policy = sandbox.policy(
        "slow",
        &SLOW_POLICY.replace("@SECONDS@", &seconds.to_string()),
    );
    let mut running =
        Running::spawn(mop().args(sandbox.push_args(&policy, &["--apply", "--json"])));
    let marker = format!("sleep {seconds}; echo {}/slept", sandbox.agent_dir);
    let started = wait_until(Duration::from_secs(40), || {
        processes_matching(&marker).len() >= hosts
    });
    if !started {
        let _ = running.child.kill();
        let output = running.finish(Duration::from_secs(10));
        panic!(
            "the sleep never ran on {hosts} hosts\n{}",
            output.describe()
        );
    }
    running
}

#[test]
fn a_connection_lost_mid_role_is_unreachable_with_sshs_reason() {
    let sandbox = Sandbox::start("lost", TestHostsBuilder::new().hosts(2).group("web"));
    let mut running = start_slow_push(&sandbox, 4, 2);
    kill_sshd(&sandbox, "host1");
    assert!(
        running.wait_for(Duration::from_secs(60)).is_some(),
        "mop did not finish after host1's sshd was killed"
    );
    let run = parse_json_run(running.finish(Duration::from_secs(1)));
    run.assert_exit(1);

    assert_eq!(status(&run, "host1"), "unreachable", "{}", run.describe());
    assert_eq!(run.host_summary("host1")["unreachable"], true);
    assert_eq!(field(&run, "host1", "role"), "slow");
    let error = field(&run, "host1", "error");
    assert!(
        error.starts_with("connection to host1 lost: "),
        "the error should say the connection was lost: {error}\n{}",
        run.describe()
    );
    // ssh's own words follow, not mop's guess about the agent.
    let reason = &error["connection to host1 lost: ".len()..];
    assert!(!reason.is_empty(), "{}", run.describe());
    assert!(
        !run.stdout.contains("exited unexpectedly"),
        "a lost connection was reported as an agent crash\n{}",
        run.describe()
    );
    let lost_events: Vec<&Value> = run
        .events_of("host_failed")
        .filter(|event| event["host"] == "host1")
        .collect();
    assert_eq!(lost_events.len(), 1, "{}", run.describe());
    assert_eq!(lost_events[0]["status"], "unreachable");

    // The other host went on: both roles, changed.
    assert_eq!(status(&run, "host2"), "changed", "{}", run.describe());
    assert!(sandbox.out.join("host2-later").exists());
    // host1 failed in `slow`, so `later` names it as skipped, once.
    let skipped: Vec<&Value> = run
        .events_of("not_attempted")
        .filter(|event| event["host"] == "host1")
        .collect();
    assert_eq!(skipped.len(), 1, "{}", run.describe());
    assert_eq!(skipped[0]["role"], "later");
    assert_eq!(
        run.host_summary("host1")["missed_roles"],
        serde_json::json!(["later"])
    );
}

#[test]
fn ctrl_c_marks_working_hosts_interrupted_and_waiting_ones_not_attempted() {
    let sandbox = Sandbox::start("summary-int", TestHostsBuilder::new().hosts(3).group("web"));
    // serial = 2: host1 and host2 sleep, host3 waits for the next batch.
    let mut running = start_slow_push(&sandbox, 30, 2);
    send_signal(running.child.id(), "-INT");
    assert!(
        running.wait_for(Duration::from_secs(20)).is_some(),
        "mop was still running 20 s after SIGINT"
    );
    let run = parse_json_run(running.finish(Duration::from_secs(1)));
    run.assert_exit(130);
    for host in ["host1", "host2"] {
        assert_eq!(
            status(&run, host),
            "interrupted",
            "{host}\n{}",
            run.describe()
        );
        assert_eq!(field(&run, host, "role"), "slow");
        assert_eq!(field(&run, host, "error"), "stopped by Ctrl-C");
        assert!(run.host_summary(host).get("not_attempted").is_none());
    }
    assert_eq!(status(&run, "host3"), "not_attempted", "{}", run.describe());
    assert_eq!(field(&run, "host3", "role"), "slow");
    assert_eq!(
        field(&run, "host3", "not_attempted"),
        "interrupted before it started"
    );
    sandbox.assert_hosts_clean();
}

const HOOK_POLICY: &str = r#"
[[roles]]
name = "deploy"
groups = ["web"]
before = "sh @DIR@/drain.sh {{ host.name }}"

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}-deployed"
"#;

#[test]
fn a_failing_hook_is_its_own_status_with_its_stderr_printed_once() {
    let sandbox = Sandbox::start("hookfail", TestHostsBuilder::new().hosts(2).group("web"));
    let policy = sandbox.policy("hook", HOOK_POLICY);
    // A script, so the hook's command line does not contain the words it prints.
    std::fs::write(
        sandbox.dir().join("drain.sh"),
        "if [ \"$1\" = host1 ]; then\n  echo 'lb: drain refused' >&2\n  echo \"lb: $1 is the last one\" >&2\n  exit 3\nfi\n",
    )
    .expect("write the hook script");

    let text = sandbox.push_text(&policy, &["--apply"]);
    assert_eq!(text.exit, 1, "{}", text.describe());
    let stdout = &text.stdout;
    assert_eq!(
        stdout.matches("lb: drain refused").count(),
        1,
        "the hook's stderr is printed exactly once\n{}",
        text.describe()
    );
    assert_eq!(
        stdout.matches("lb: host1 is the last one").count(),
        2,
        "the last stderr line: once under the failure, once in the summary\n{}",
        text.describe()
    );
    assert!(
        stdout.contains("  host1  HOOK FAILED  before hook `sh ")
            && stdout.contains("/drain.sh host1` exited with 3\n"),
        "{}",
        text.describe()
    );
    assert!(
        stdout
            .contains("      stderr: lb: drain refused\n      stderr: lb: host1 is the last one\n"),
        "{}",
        text.describe()
    );
    let table_row = stdout
        .lines()
        .find(|line| line.starts_with("host1 "))
        .unwrap_or_else(|| panic!("no summary row for host1\n{}", text.describe()));
    assert!(table_row.contains("hook failed"), "{table_row}");
    assert!(
        stdout.lines().any(|line| line
            .starts_with("host1: hook failed in role `deploy`: before hook `")
            && line.ends_with("` exited with 3: lb: host1 is the last one")),
        "{}",
        text.describe()
    );
    let host2_row = stdout
        .lines()
        .find(|line| line.starts_with("host2 "))
        .unwrap_or_else(|| panic!("no summary row for host2\n{}", text.describe()));
    assert!(host2_row.contains("changed"), "{host2_row}");
    assert!(
        !stdout.lines().any(|line| line.starts_with("host2:")),
        "a changed host gets no error line\n{}",
        text.describe()
    );
    assert!(!sandbox.out.join("host1-deployed").exists());

    // The same in JSON: its own status, not unreachable, and the hook's stderr in the event.
    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(1);
    assert_eq!(status(&run, "host1"), "hook_failed", "{}", run.describe());
    assert_eq!(run.host_summary("host1")["unreachable"], false);
    assert_eq!(field(&run, "host1", "role"), "deploy");
    assert!(field(&run, "host1", "error").ends_with("exited with 3: lb: host1 is the last one"));
    let event = run
        .events_of("host_failed")
        .find(|event| event["host"] == "host1")
        .unwrap_or_else(|| panic!("no host_failed event\n{}", run.describe()));
    assert_eq!(event["status"], "hook_failed");
    assert_eq!(
        event["stderr"],
        "lb: drain refused\nlb: host1 is the last one\n"
    );
    assert_eq!(status(&run, "host2"), "ok", "{}", run.describe());
    sandbox.assert_hosts_clean();
}

const MAX_FAIL_POLICY: &str = r#"
[[roles]]
name = "first"
groups = ["web"]
max_fail = 1

[[roles.resources]]
type = "shell"
cmd = "echo '{{ host.name }} cannot start' >&2; exit 5"
when = "host.name == 'host2'"

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}-first"

[[roles]]
name = "second"
groups = ["web"]
max_fail = 1

[[roles.resources]]
type = "fail"
msg = "second stops {{ host.name }}"
when = "host.name == 'host3'"

[[roles]]
name = "third"
groups = ["web"]
serial = 1

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}-third"
"#;

#[test]
fn max_fail_lets_the_rollout_go_on_and_later_roles_name_the_skipped_host() {
    let sandbox = Sandbox::start("maxfail", TestHostsBuilder::new().hosts(3).group("web"));
    let policy = sandbox.policy("maxfail", MAX_FAIL_POLICY);

    let text = sandbox.push_text(&policy, &["--apply"]);
    assert_eq!(text.exit, 1, "{}", text.describe());
    let stdout = &text.stdout;
    // The command's stderr once (under the failure line, not again in its message), the
    // `fail` message once (not as label and message).
    assert_eq!(
        stdout.matches("      stderr: host2 cannot start").count(),
        1,
        "{}",
        text.describe()
    );
    let failed_line = stdout
        .lines()
        .find(|line| line.starts_with("  host2  failed  shell"))
        .unwrap_or_else(|| panic!("no failed line for host2\n{}", text.describe()));
    assert!(
        failed_line.ends_with(": command exited with code 5"),
        "{failed_line}"
    );
    assert_eq!(
        stdout.matches("second stops host3").count(),
        2,
        "the fail message: once live, once in the summary\n{}",
        text.describe()
    );
    // `second` names host2, which failed in `first`, and `third` names host2 and host3.
    let second = stdout
        .split("role second")
        .nth(1)
        .unwrap_or_else(|| panic!("no role second\n{}", text.describe()));
    let (second, third) = second
        .split_once("role third")
        .unwrap_or_else(|| panic!("no role third\n{}", text.describe()));
    assert!(
        second.contains("  host2  not attempted  it failed in role `first`"),
        "{}",
        text.describe()
    );
    assert!(
        third.contains("  host2  not attempted  it failed in role `first`")
            && third.contains("  host3  not attempted  it failed in role `second`"),
        "{}",
        text.describe()
    );
    assert!(
        stdout.lines().any(|line| line
            .starts_with("host2: failed in role `first`: role `first` failed: shell echo ")
            && line.ends_with(
                ": command exited with code 5: host2 cannot start (then not attempted: second, third)"
            )),
        "{}",
        text.describe()
    );
    assert!(
        stdout.lines().any(|line| line
            .starts_with("host3: failed in role `second`: role `second` failed: fail ")
            && line.ends_with("second stops host3 (then not attempted: third)")),
        "{}",
        text.describe()
    );

    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(1);
    // host1 ran every role; the files exist from the text run, so nothing changed.
    assert_eq!(status(&run, "host1"), "ok", "{}", run.describe());
    assert!(sandbox.out.join("host1-third").exists());
    assert_eq!(status(&run, "host2"), "failed", "{}", run.describe());
    assert_eq!(field(&run, "host2", "role"), "first");
    assert_eq!(
        run.host_summary("host2")["missed_roles"],
        serde_json::json!(["second", "third"])
    );
    assert_eq!(status(&run, "host3"), "failed");
    assert_eq!(field(&run, "host3", "role"), "second");
    assert_eq!(
        run.events_of("not_attempted")
            .map(|event| format!("{} {}", event["role"], event["host"]))
            .collect::<Vec<_>>(),
        [
            "\"second\" \"host2\"",
            "\"third\" \"host2\"",
            "\"third\" \"host3\""
        ],
        "{}",
        run.describe()
    );
    sandbox.assert_hosts_clean();
}

#[test]
fn a_stopped_rollout_names_the_role_each_host_missed() {
    let sandbox = Sandbox::start("stopped", TestHostsBuilder::new().hosts(3).group("web"));
    let policy = sandbox.policy(
        "stopped",
        r#"
[[roles]]
name = "first"
groups = ["web"]
serial = 1

[[roles.resources]]
type = "fail"
msg = "broken"
when = "host.name == 'host2'"

[[roles]]
name = "second"
groups = ["web"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}-second"
"#,
    );
    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(1);
    let stopped = "role `first` stopped: 1 host failed, max_fail allows 0";
    // host1 finished `first` and missed only `second`; host3 was never touched.
    assert_eq!(status(&run, "host1"), "not_attempted", "{}", run.describe());
    assert_eq!(field(&run, "host1", "role"), "second");
    assert_eq!(field(&run, "host1", "not_attempted"), stopped);
    assert_eq!(status(&run, "host2"), "failed");
    assert_eq!(
        field(&run, "host2", "error"),
        "role `first` failed: fail broken"
    );
    assert_eq!(status(&run, "host3"), "not_attempted");
    assert_eq!(field(&run, "host3", "role"), "first");
    assert_eq!(field(&run, "host3", "not_attempted"), stopped);
    sandbox.assert_hosts_clean();
}
