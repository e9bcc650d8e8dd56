//! Rollouts: `serial` batches in order with `before`/`after` hooks around each host, a failing
//! host stopping later batches and roles (`max_fail = 0`), the retry file and
//! `--limit-hosts @FILE`.

use std::path::Path;

use mop_testhosts::TestHostsBuilder;

use crate::support::Sandbox;

const SERIAL_POLICY: &str = r#"
[[roles]]
name = "rolling"
groups = ["web"]
serial = 2
before = "echo \"before {{ host.name }} $MOP_HOST $MOP_ROLE\" >> @LOG@"
after = "echo \"after {{ host.name }} $MOP_HOST $MOP_ROLE\" >> @LOG@"

[[roles.resources]]
name = "record the run"
type = "shell"
cmd = "echo 'run {{ host.name }}' >> @LOG@"
"#;

/// `(what, host)` pairs from log lines such as `before host1 host1 rolling`.
fn parse_log(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words[0] != "run" {
                // The hook saw MOP_HOST and MOP_ROLE.
                assert_eq!(words.len(), 4, "unexpected hook line `{line}`");
                assert_eq!(
                    words[1], words[2],
                    "MOP_HOST differs from host.name in `{line}`"
                );
                assert_eq!(words[3], "rolling", "MOP_ROLE wrong in `{line}`");
            }
            (words[0].to_owned(), words[1].to_owned())
        })
        .collect()
}

/// Checks that the log is batch after batch: inside a batch each host has `before`, `run`,
/// `after` in that order, and every line of batch i comes before any line of batch i+1.
fn assert_batches(log: &[(String, String)], batches: &[&[&str]]) {
    let batch_of = |host: &str| {
        batches
            .iter()
            .position(|batch| batch.contains(&host))
            .unwrap_or_else(|| panic!("host `{host}` is in no batch"))
    };
    let expected_lines: usize = batches.iter().map(|batch| batch.len() * 3).sum();
    assert_eq!(log.len(), expected_lines, "log: {log:?}");
    let mut current = 0;
    for (what, host) in log {
        let batch = batch_of(host);
        assert!(
            batch >= current,
            "`{what} {host}` (batch {batch}) after batch {current} started: {log:?}"
        );
        current = batch;
    }
    for batch in batches {
        for host in *batch {
            let position = |what: &str| {
                log.iter()
                    .position(|(w, h)| w == what && h == host)
                    .unwrap_or_else(|| panic!("no `{what} {host}` in {log:?}"))
            };
            assert!(
                position("before") < position("run"),
                "{host}: run before the before hook: {log:?}"
            );
            assert!(
                position("run") < position("after"),
                "{host}: after hook before the run: {log:?}"
            );
        }
    }
}

#[test]
fn serial_batches_run_in_order_with_hooks_around_each_host() {
    let sandbox = Sandbox::start("serial", TestHostsBuilder::new().hosts(3).group("web"));
    let policy = sandbox.policy("rolling", SERIAL_POLICY);

    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(0);
    let log = parse_log(&sandbox.log_lines());
    assert_batches(&log, &[&["host1", "host2"], &["host3"]]);
    let notes: Vec<&str> = run
        .events_of("note")
        .filter_map(|event| event["message"].as_str())
        .collect();
    assert_eq!(
        notes
            .iter()
            .filter(|note| note.starts_with("ran before hook: "))
            .count(),
        3,
        "{notes:?}"
    );
    assert_eq!(
        notes
            .iter()
            .filter(|note| note.starts_with("ran after hook: "))
            .count(),
        3,
        "{notes:?}"
    );

    // `--serial 1` overrides the role: one host at a time.
    std::fs::write(&sandbox.log, "").expect("empty the log");
    let one = sandbox.push(&policy, &["--apply", "--serial", "1"]);
    one.assert_exit(0);
    let log = parse_log(&sandbox.log_lines());
    assert_batches(&log, &[&["host1"], &["host2"], &["host3"]]);

    // --check reports the hooks instead of running them.
    std::fs::write(&sandbox.log, "").expect("empty the log");
    let check = sandbox.push(&policy, &["--check"]);
    check.assert_exit(0);
    assert!(
        sandbox.log_lines().is_empty(),
        "--check ran hooks or commands: {:?}",
        sandbox.log_lines()
    );
    let would: Vec<&str> = check
        .events_of("note")
        .filter_map(|event| event["message"].as_str())
        .filter(|message| {
            message.starts_with("would run before hook: ")
                || message.starts_with("would run after hook: ")
        })
        .collect();
    assert_eq!(would.len(), 6, "{}", check.describe());
    sandbox.assert_hosts_clean();
}

const FAILING_POLICY: &str = r#"
[vars]
fixed = false

[[roles]]
name = "prepare"
hosts = ["host4"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}-prepared"

[[roles]]
name = "first"
hosts = ["host[1-3]"]
serial = 1
max_fail = 0
before = "echo 'before {{ host.name }}' >> @LOG@"
after = "echo 'after {{ host.name }}' >> @LOG@"

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}-first"

[[roles.resources]]
type = "fail"
msg = "{{ host.name }} is broken"
when = "host.name == 'host2' and not fixed"

[[roles]]
name = "second"
hosts = ["host[1-3]"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}-second"
"#;

fn retry_hosts(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("no retry file `{}`: {error}", path.display()))
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list the directory")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn failing_host_stops_later_batches_and_roles_and_the_retry_file_reruns_them() {
    let sandbox = Sandbox::start("failing", TestHostsBuilder::new().hosts(4).group("web"));
    let policy = sandbox.policy("rollout", FAILING_POLICY);
    let retry = sandbox.dir().join("rollout.retry");

    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(1);
    let stopped = "role `first` stopped: 1 host failed, max_fail allows 0";

    // host4 finished its only role.
    assert_eq!(run.total("host4", "changed"), 1, "{}", run.describe());
    assert!(
        run.host_summary("host4").get("error").is_none(),
        "{}",
        run.describe()
    );
    assert!(
        run.host_summary("host4").get("not_attempted").is_none(),
        "{}",
        run.describe()
    );
    // host1 passed `first` but never got `second`.
    assert_eq!(run.total("host1", "changed"), 1, "{}", run.describe());
    assert_eq!(
        run.host_summary("host1")["not_attempted"],
        stopped,
        "{}",
        run.describe()
    );
    // host2 failed.
    assert_eq!(run.total("host2", "failed"), 1, "{}", run.describe());
    // The first error names the failed resource and its message, on one line.
    assert_eq!(
        run.host_summary("host2")["error"],
        "role `first` failed: fail host2 is broken",
        "{}",
        run.describe()
    );
    assert_eq!(run.host_summary("host2")["unreachable"], false);
    let failure = run
        .with_status("failed")
        .into_iter()
        .find(|event| event["host"] == "host2")
        .unwrap_or_else(|| panic!("no failed resource on host2\n{}", run.describe()));
    assert_eq!(failure["message"], "host2 is broken");
    assert_eq!(
        run.events_of("host_failed")
            .filter(|event| event["host"] == "host2")
            .count(),
        1,
        "{}",
        run.describe()
    );
    // host3's batch never started.
    assert_eq!(
        run.host_summary("host3")["not_attempted"],
        stopped,
        "{}",
        run.describe()
    );
    assert_eq!(run.total("host3", "ok") + run.total("host3", "changed"), 0);
    assert!(
        !run.event_hosts().contains("host3"),
        "host3 was attempted\n{}",
        run.describe()
    );
    assert_eq!(
        sandbox.logins("host3"),
        0,
        "host3 was contacted although its batch never started"
    );

    assert_eq!(
        files_in(&sandbox.out),
        ["host1-first", "host2-first", "host4-prepared"]
    );
    // The after hook ran for host1 only: not for the failed host2, and host3 never started.
    assert_eq!(
        sandbox.log_lines(),
        ["before host1", "after host1", "before host2"]
    );

    let mut to_retry = retry_hosts(&retry);
    to_retry.sort();
    assert_eq!(
        to_retry,
        ["host1", "host2", "host3"],
        "retry file lists failed and not-attempted hosts"
    );
    assert!(
        run.stderr.contains("rollout.retry"),
        "the retry file is not mentioned\n{}",
        run.describe()
    );
    sandbox.assert_hosts_clean();

    // Rerun just those, with the problem fixed.
    let host4_logins = sandbox.logins("host4");
    let limit = format!("@{}", retry.display());
    let rerun = sandbox.push(
        &policy,
        &["--apply", "--limit-hosts", &limit, "-e", "fixed=true"],
    );
    rerun.assert_exit(0);
    assert_eq!(rerun.summary_hosts(), ["host1", "host2", "host3"]);
    assert!(
        !rerun.event_hosts().contains("host4"),
        "{}",
        rerun.describe()
    );
    assert_eq!(
        sandbox.logins("host4"),
        host4_logins,
        "host4 was contacted by the retry run"
    );
    assert_eq!(
        files_in(&sandbox.out),
        [
            "host1-first",
            "host1-second",
            "host2-first",
            "host2-second",
            "host3-first",
            "host3-second",
            "host4-prepared"
        ]
    );
    assert!(
        !retry.exists(),
        "a clean run should remove the stale retry file"
    );
    sandbox.assert_hosts_clean();
}
