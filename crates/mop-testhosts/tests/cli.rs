//! The `mop-testhosts` binary: help, `up` end to end, and the root requirement.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{output, stdout_of};
use mop_testhosts::TEST_USER;

const BINARY: &str = env!("CARGO_BIN_EXE_mop-testhosts");

#[test]
fn help_documents_commands_and_exit_codes() {
    let mut command = Command::new(BINARY);
    command.arg("--help");
    let help = stdout_of(command);
    for expected in [
        "up",
        "users",
        "cleanup",
        "Exit codes:",
        "2  invalid command line",
    ] {
        assert!(
            help.contains(expected),
            "`{expected}` missing from --help:\n{help}"
        );
    }
    let mut up_help = Command::new(BINARY);
    up_help.args(["up", "--help"]);
    let up_help = stdout_of(up_help);
    for flag in [
        "--dir",
        "--hosts",
        "--group",
        "--bastion",
        "--racks",
        "--per-rack",
        "--for",
    ] {
        assert!(up_help.contains(flag), "`{flag}` missing from up --help");
    }
    let mut bad = Command::new(BINARY);
    bad.args(["up", "--hosts", "many"]);
    assert_eq!(output(bad).status.code(), Some(2));
}

#[test]
fn up_writes_inventory_and_ready_then_tears_down() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(BINARY)
        .args([
            "up", "--hosts", "2", "--group", "app", "--for", "3", "--dir",
        ])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let ready = dir.path().join("ready");
    let deadline = Instant::now() + common::PATIENCE;
    while !ready.exists() {
        assert!(Instant::now() < deadline, "not ready in time");
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "exited before ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let inventory = std::fs::read_to_string(dir.path().join("inventory.toml")).expect("inventory");
    let parsed: toml::Table = toml::from_str(&inventory).expect("valid TOML");
    let group = parsed["groups"]["app"]["hosts"]
        .as_table()
        .expect("group app");
    assert_eq!(group.len(), 2);
    let mut ssh = Command::new("ssh");
    ssh.arg("-F")
        .arg(dir.path().join("ssh_config"))
        .args(["host2", "id -un"]);
    assert_eq!(stdout_of(ssh), format!("{TEST_USER}\n"));

    let finished = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&finished.stderr);
    assert!(
        finished.status.success(),
        "exit {}: {stderr}",
        finished.status
    );
    assert!(stderr.contains("2 host(s) up in"), "{stderr}");
    assert!(stderr.contains("host2"), "{stderr}");
    assert!(!ready.exists(), "ready must be removed at teardown");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[test]
fn sigterm_tears_down_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let child = Command::new(BINARY)
        .args(["up", "--hosts", "1", "--bastion", "--dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let deadline = Instant::now() + common::PATIENCE;
    while !dir.path().join("ready").exists() {
        assert!(Instant::now() < deadline, "not ready in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    let namespace = format!("moptest-{}-", child.id());
    assert!(common::namespaces().contains(&namespace));
    let mut kill = Command::new("kill");
    kill.args(["-TERM", &child.id().to_string()]);
    stdout_of(kill);
    let finished = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&finished.stderr);
    assert!(
        finished.status.success(),
        "exit {}: {stderr}",
        finished.status
    );
    assert!(stderr.contains("received signal 15"), "{stderr}");
    assert!(!common::namespaces().contains(&namespace));
    assert!(common::processes_mentioning(&dir.path().to_string_lossy()).is_empty());
}

/// The copy-then-run pattern above, under the condition that made it flaky: other threads
/// spawning processes all the time (as the test harness does). With an in-process copy
/// (`std::fs::copy`) some of these runs fail with "Text file busy".
#[test]
fn copied_executables_run_while_other_threads_spawn() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spawners: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = Command::new("true").status();
                }
            })
        })
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let true_binary = std::path::Path::new("/bin/true");
    let mut failures = Vec::new();
    for index in 0..200 {
        let copy = dir.path().join(format!("true-{index}"));
        common::copy_executable(true_binary, &copy);
        if let Err(error) = Command::new(&copy).status() {
            failures.push(error.to_string());
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for spawner in spawners {
        spawner.join().expect("spawner thread");
    }
    assert!(
        failures.is_empty(),
        "{} runs failed: {failures:?}",
        failures.len()
    );
}

#[test]
fn refuses_to_run_without_root_and_says_why() {
    // Run a copy of the binary as the unprivileged test user.
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let copy = dir.path().join("mop-testhosts");
    common::copy_executable(std::path::Path::new(BINARY), &copy);
    mop_testhosts::ensure_test_users().unwrap_or_else(|error| panic!("{error}"));
    let mut command = Command::new("runuser");
    command.args(["-u", TEST_USER, "--"]).arg(&copy).args([
        "up",
        "--dir",
        "/tmp/never-created-by-mop",
    ]);
    let result = output(command);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("needs root"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
}
