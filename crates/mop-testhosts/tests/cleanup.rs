//! Teardown: drop, stop and panics kill every process (sessions included) and remove all state.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{namespaces, processes_mentioning, start};
use mop_testhosts::{BastionLayout, TestHostsBuilder};

fn wait_for_exit(child: &mut Child, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn drop_kills_sessions_and_removes_namespace_and_directory() {
    let hosts = start(
        TestHostsBuilder::new()
            .hosts(1)
            .bastion(BastionLayout::new(1, 1)),
    );
    let dir = hosts.dir().to_path_buf();
    let namespace = hosts
        .namespace()
        .expect("bastion layouts have a namespace")
        .to_owned();
    assert!(namespaces()
        .lines()
        .any(|line| line.starts_with(&namespace)));

    // Long-running sessions, direct and through the chain; the remote shells' command lines
    // mention the run directory so pgrep can find them.
    let marker = format!("sleep 600; : {}", dir.display());
    let mut sessions: Vec<Child> = ["host1", "rack1-101"]
        .iter()
        .map(|name| {
            let mut command = hosts.host(name).expect("host").ssh_command(&marker);
            command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            command.spawn().expect("ssh starts")
        })
        .collect();
    let deadline = Instant::now() + common::PATIENCE;
    while hosts
        .hosts()
        .iter()
        .filter(|h| h.name != "bastion" && h.name != "rack1-top")
        .any(|h| h.accepted_connections().unwrap_or(0) == 0)
    {
        for session in &mut sessions {
            if let Ok(Some(status)) = session.try_wait() {
                panic!("an ssh session ended before logging in: {status}");
            }
        }
        assert!(Instant::now() < deadline, "sessions did not log in");
        std::thread::sleep(Duration::from_millis(20));
    }
    let remote_shells = || {
        processes_mentioning(&dir.to_string_lossy())
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|cmdline| String::from_utf8_lossy(&cmdline).starts_with("bash"))
                    .unwrap_or(false)
            })
            .count()
    };
    let deadline = Instant::now() + common::PATIENCE;
    while remote_shells() < 2 {
        assert!(Instant::now() < deadline, "remote shells did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!processes_mentioning(&dir.to_string_lossy()).is_empty());

    drop(hosts);

    for session in &mut sessions {
        assert!(
            wait_for_exit(session, common::PATIENCE),
            "ssh client still connected after drop"
        );
    }
    let left = processes_mentioning(&dir.to_string_lossy());
    assert!(left.is_empty(), "processes survived the drop: {left:?}");
    assert!(
        !namespaces()
            .lines()
            .any(|line| line.starts_with(&namespace)),
        "namespace {namespace} survived"
    );
    assert!(!dir.exists(), "run directory {} survived", dir.display());
}

#[test]
fn stop_reports_success_and_cleans_up() {
    let hosts = start(TestHostsBuilder::new().hosts(2));
    let dir = hosts.dir().to_path_buf();
    let logs: Vec<_> = hosts
        .hosts()
        .iter()
        .map(|host| host.log_path.clone())
        .collect();
    assert!(logs.iter().all(|log| log.exists()));
    hosts.stop().expect("clean stop");
    assert!(!dir.exists());
    assert!(processes_mentioning(&dir.to_string_lossy()).is_empty());
}

#[test]
fn a_panicking_test_still_cleans_up() {
    let recorded = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let hosts = start(
            TestHostsBuilder::new()
                .hosts(1)
                .bastion(BastionLayout::new(1, 1)),
        );
        *recorded.lock().expect("not poisoned") = Some((
            hosts.dir().to_path_buf(),
            hosts.namespace().map(str::to_owned),
        ));
        panic!("deliberate panic while hosts are up");
    });
    assert!(result.is_err());
    let (dir, namespace) = recorded
        .into_inner()
        .expect("not poisoned")
        .expect("hosts started");
    let namespace = namespace.expect("namespace");
    assert!(!dir.exists());
    assert!(processes_mentioning(&dir.to_string_lossy()).is_empty());
    assert!(!namespaces()
        .lines()
        .any(|line| line.starts_with(&namespace)));
}

#[test]
fn runs_left_by_killed_processes_are_cleaned_up() {
    // A child process starts hosts and is SIGKILLed: no Drop runs.
    let base = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mop-testhosts"))
        .args([
            "up",
            "--hosts",
            "1",
            "--bastion",
            "--racks",
            "1",
            "--per-rack",
            "1",
            "--dir",
        ])
        .arg(base.path())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let ready = base.path().join("ready");
    let deadline = Instant::now() + common::PATIENCE;
    while !ready.exists() {
        assert!(
            Instant::now() < deadline,
            "mop-testhosts up did not become ready"
        );
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "mop-testhosts up exited early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let namespace = format!("moptest-{}-", child.id());
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let base_text = base.path().to_string_lossy().into_owned();
    assert!(
        !processes_mentioning(&base_text).is_empty(),
        "sshd should outlive a SIGKILLed owner"
    );
    // The namespace is not checked here: a concurrent test process's startup cleanup may
    // remove it at any moment now that its owner is dead.

    let report = mop_testhosts::cleanup_stale(base.path()).expect("cleanup");
    assert_eq!(report.dirs.len(), 1, "{report:?}");
    assert!(report.processes >= 1, "{report:?}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(processes_mentioning(&base_text).is_empty());
    assert!(!namespaces().contains(&namespace));
}

#[test]
fn failed_startup_names_the_host_and_leaves_nothing_behind() {
    let base = tempfile::tempdir().expect("temp dir");
    // A zero deadline cannot be met: at the latest the bridge's unix socket cannot exist yet
    // when it is first checked (sshds may win the race and pass their first probe).
    let error = TestHostsBuilder::new()
        .hosts(3)
        .bastion(BastionLayout::new(1, 1))
        .base_dir(base.path())
        .startup_timeout(Duration::ZERO)
        .start()
        .expect_err("a zero startup timeout cannot be met");
    let message = error.to_string();
    assert!(
        (message.starts_with("sshd for host `") || message.starts_with("socat bridge"))
            && message.contains(" did not accept connections on 127.")
            && message.contains(".log`:\n"),
        "{message}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(base.path())
        .expect("base dir")
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    assert!(processes_mentioning(&base.path().to_string_lossy()).is_empty());
}
