//! Persistent connections (`--persist`, `mop connections`) against real loopback sshd hosts: a
//! second command (and a push) reuses the first one's masters without a new login, the listing
//! and closing of masters, a changed inventory never reusing a master that logs in elsewhere,
//! an unsafe socket directory refused, and via-chains whose hops persist too.
//!
//! Every test uses its own socket directory (`MOP_CONTROL_DIR`) and a guard that closes its
//! masters even when an assertion fails.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mop_testhosts::{BastionLayout, TestHostsBuilder, TEST_SUDO_PASSWORD_USER, TEST_USER};
use serde_json::Value;

use crate::support::{
    agent_dir_leftovers, chmod, mop, parse_json_run, run, wait_until, Output, Sandbox, MARK_POLICY,
};

/// A private socket directory for one test; dropping it closes every master in it.
struct Masters {
    base: tempfile::TempDir,
}

impl Masters {
    fn new() -> Masters {
        Masters {
            base: tempfile::Builder::new()
                .prefix("mop-ctl-")
                .tempdir_in("/tmp")
                .expect("temp dir"),
        }
    }

    /// Not created yet: mop creates it (0700) on the first `--persist`.
    fn dir(&self) -> PathBuf {
        self.base.path().join("ctl")
    }

    fn mop(&self, sandbox: Option<&Sandbox>, args: &[&str]) -> Output {
        let mut all: Vec<OsString> = vec![args[0].into()];
        if let Some(sandbox) = sandbox {
            all.push("-i".into());
            all.push(sandbox.inventory.clone().into());
        }
        all.extend(args[1..].iter().map(Into::into));
        run(mop().env("MOP_CONTROL_DIR", self.dir()).args(all))
    }

    /// `mop connections list --json`, by host name.
    fn list(&self) -> Vec<Value> {
        let output = self.mop(None, &["connections", "list", "--json"]);
        assert_eq!(output.exit, 0, "{}", output.describe());
        output
            .stdout
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }

    fn pid_of(&self, host: &str) -> u32 {
        let list = self.list();
        let entry = list
            .iter()
            .find(|entry| entry["host"] == host)
            .unwrap_or_else(|| panic!("no persistent connection to {host} in {list:?}"));
        let pid = entry["master_pid"].as_u64().expect("a master pid");
        u32::try_from(pid).expect("a pid")
    }
}

impl Drop for Masters {
    fn drop(&mut self) {
        let output = self.mop(None, &["connections", "close"]);
        if output.exit != 0 {
            eprintln!("closing the test's masters failed: {}", output.describe());
        }
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn accepted(sandbox: &Sandbox, host: &str) -> usize {
    sandbox
        .hosts
        .host(host)
        .unwrap_or_else(|| panic!("no test host {host}"))
        .accepted_connections()
        .expect("read the sshd log")
}

fn json_lines(output: &Output) -> Vec<Value> {
    output
        .stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not JSON ({error}): {line}\n{}", output.describe()))
        })
        .collect()
}

#[test]
fn a_persisted_master_is_reused_by_the_next_run_and_push() {
    let sandbox = Sandbox::start(
        "persist-reuse",
        TestHostsBuilder::new().hosts(2).group("web"),
    );
    let masters = Masters::new();

    let first = masters.mop(
        Some(&sandbox),
        &["run", "web", "--persist", "60s", "--", "true"],
    );
    assert_eq!(first.exit, 0, "{}", first.describe());
    assert_eq!(accepted(&sandbox, "host1"), 1);
    assert_eq!(accepted(&sandbox, "host2"), 1);
    let mode = std::fs::metadata(masters.dir())
        .map(|metadata| std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777)
        .expect("the socket directory exists");
    assert_eq!(mode, 0o700);

    let list = masters.list();
    assert_eq!(list.len(), 2, "{list:?}");
    for (entry, host) in list.iter().zip(["host1", "host2"]) {
        assert_eq!(entry["host"], host, "{entry}");
        assert_eq!(entry["user"], TEST_USER, "{entry}");
        assert_eq!(entry["idle_limit_secs"], 60, "{entry}");
        assert!(
            entry["age_secs"].as_u64().is_some_and(|age| age < 60),
            "{entry}"
        );
        let address = sandbox.hosts.host(host).expect("host").addr.to_string();
        assert!(
            entry["address"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&address),
            "{entry}"
        );
    }
    let pid1 = masters.pid_of("host1");
    let pid2 = masters.pid_of("host2");
    assert!(alive(pid1) && alive(pid2));

    // Without --persist: reuses both masters, leaves them running.
    let second = masters.mop(Some(&sandbox), &["run", "web", "--json", "--", "whoami"]);
    assert_eq!(second.exit, 0, "{}", second.describe());
    assert!(json_lines(&second)
        .iter()
        .all(|line| line["stdout"] == format!("{TEST_USER}\n")));
    assert_eq!(accepted(&sandbox, "host1"), 1, "a second login to host1");
    assert_eq!(accepted(&sandbox, "host2"), 1, "a second login to host2");
    assert_eq!(masters.pid_of("host1"), pid1);
    assert_eq!(masters.pid_of("host2"), pid2);

    // A push reuses them too, and still removes its agent from the hosts.
    let policy = sandbox.policy("mark", MARK_POLICY);
    let push = parse_json_run(run(mop()
        .env("MOP_CONTROL_DIR", masters.dir())
        .args(sandbox.push_args(&policy, &["--apply", "--json"]))));
    push.assert_exit(0);
    assert_eq!(push.total("host1", "changed"), 1, "{}", push.describe());
    assert_eq!(accepted(&sandbox, "host1"), 1, "push logged in again");
    assert_eq!(accepted(&sandbox, "host2"), 1, "push logged in again");
    assert_eq!(masters.pid_of("host1"), pid1);
    assert_eq!(
        agent_dir_leftovers(Path::new(&sandbox.agent_dir)),
        Vec::<String>::new(),
        "the push left more than its cached agent in `{}` on the host",
        sandbox.agent_dir
    );

    // The table names what an operator needs.
    let table = masters.mop(None, &["connections", "list"]);
    assert_eq!(table.exit, 0, "{}", table.describe());
    let header = table.stdout.lines().next().unwrap_or_default();
    for column in [
        "HOST",
        "USER",
        "ADDRESS",
        "VIA",
        "AGE",
        "IDLE LIMIT",
        "MASTER PID",
    ] {
        assert!(header.contains(column), "{}", table.describe());
    }
    assert!(
        table.stdout.contains(&format!("host1  {TEST_USER}")),
        "{}",
        table.describe()
    );
    assert!(table.stdout.contains("1m00s"), "{}", table.describe());

    // Closing host1 stops only host1's master.
    let close = masters.mop(None, &["connections", "close", "host1"]);
    assert_eq!(close.exit, 0, "{}", close.describe());
    assert!(
        close.stdout.contains("closed host1"),
        "{}",
        close.describe()
    );
    assert!(
        wait_until(Duration::from_secs(5), || !alive(pid1)),
        "the master of host1 (pid {pid1}) is still running"
    );
    assert!(alive(pid2), "host2's master was closed too");
    let left: Vec<Value> = masters.list();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["host"], "host2");

    // A new run logs in to host1 again (and, without --persist, closes that master).
    let third = masters.mop(Some(&sandbox), &["run", "web", "--", "true"]);
    assert_eq!(third.exit, 0, "{}", third.describe());
    assert_eq!(accepted(&sandbox, "host1"), 2);
    assert_eq!(accepted(&sandbox, "host2"), 1);
    assert_eq!(masters.list().len(), 1);

    let unknown = masters.mop(None, &["connections", "close", "nosuchhost"]);
    assert_eq!(unknown.exit, 2, "{}", unknown.describe());
    assert!(
        unknown
            .stderr
            .contains("no persistent connection to `nosuchhost`")
            && unknown.stderr.contains("open ones: host2"),
        "{}",
        unknown.describe()
    );
}

#[test]
fn a_changed_login_never_reuses_a_master() {
    let sandbox = Sandbox::start(
        "persist-identity",
        TestHostsBuilder::new().hosts(1).group("web"),
    );
    let masters = Masters::new();
    let first = masters.mop(
        Some(&sandbox),
        &["run", "host1", "--persist", "60s", "--", "true"],
    );
    assert_eq!(first.exit, 0, "{}", first.describe());
    assert_eq!(accepted(&sandbox, "host1"), 1);

    // Another user on the same address and port: a new login, as that user.
    let other_user = format!("mop_ssh_username={TEST_SUDO_PASSWORD_USER}");
    let second = masters.mop(
        Some(&sandbox),
        &["run", "host1", "-e", &other_user, "--json", "--", "whoami"],
    );
    assert_eq!(second.exit, 0, "{}", second.describe());
    assert_eq!(
        json_lines(&second)[0]["stdout"],
        format!("{TEST_SUDO_PASSWORD_USER}\n")
    );
    assert_eq!(
        accepted(&sandbox, "host1"),
        2,
        "the master of another user was reused"
    );

    // Another port: nothing listens there, so the run must fail rather than reuse.
    let port = crate::support::closed_port();
    let other_port = format!("mop_port={port}");
    let third = masters.mop(
        Some(&sandbox),
        &["run", "host1", "-e", &other_port, "--json", "--", "true"],
    );
    assert_eq!(third.exit, 1, "{}", third.describe());
    let error = json_lines(&third)[0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains(&format!(":{port}")) && error.contains("unreachable"),
        "{error}"
    );
    assert_eq!(masters.list().len(), 1, "only the first master persists");
}

#[test]
fn an_unsafe_socket_directory_is_refused() {
    let sandbox = Sandbox::start(
        "persist-unsafe",
        TestHostsBuilder::new().hosts(1).group("web"),
    );
    let masters = Masters::new();
    std::fs::create_dir(masters.dir()).expect("mkdir");
    chmod(&masters.dir(), 0o755);
    let refused = masters.mop(
        Some(&sandbox),
        &["run", "host1", "--persist", "60s", "--", "true"],
    );
    assert_eq!(refused.exit, 2, "{}", refused.describe());
    assert!(
        refused
            .stderr
            .contains("it is accessible by group or others (mode 0755, needs 0700)")
            && refused.stderr.contains("hint: remove it"),
        "{}",
        refused.describe()
    );
    assert_eq!(accepted(&sandbox, "host1"), 0, "a host was contacted");
    let list = masters.mop(None, &["connections", "list"]);
    assert_eq!(list.exit, 2, "{}", list.describe());

    // A symlink to a private directory is refused as well.
    chmod(&masters.dir(), 0o700);
    let real = masters.dir();
    let link = masters.base.path().join("link");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let output = run(mop()
        .env("MOP_CONTROL_DIR", &link)
        .args(["run", "-i"])
        .arg(&sandbox.inventory)
        .args(["host1", "--persist", "60s", "--", "true"]));
    assert_eq!(output.exit, 2, "{}", output.describe());
    assert!(
        output.stderr.contains("it is a symlink"),
        "{}",
        output.describe()
    );
    assert_eq!(accepted(&sandbox, "host1"), 0);
}

#[test]
fn via_chain_masters_persist_and_are_reused() {
    let sandbox = Sandbox::start(
        "persist-via",
        TestHostsBuilder::new()
            .hosts(0)
            .bastion(BastionLayout::new(1, 1)),
    );
    let masters = Masters::new();
    let chain = ["bastion", "rack1-top", "rack1-101"];
    let first = masters.mop(
        Some(&sandbox),
        &["run", "rack1-101", "--persist", "60s", "--", "true"],
    );
    assert_eq!(first.exit, 0, "{}", first.describe());
    let logins: Vec<usize> = chain.iter().map(|host| accepted(&sandbox, host)).collect();
    assert_eq!(logins, [1, 1, 1]);
    let list = masters.list();
    assert_eq!(list.len(), 3, "{list:?}");
    let behind = list
        .iter()
        .find(|entry| entry["host"] == "rack1-101")
        .expect("rack1-101 persisted");
    assert_eq!(behind["via"], serde_json::json!(["rack1-top", "bastion"]));
    let pids: Vec<u32> = chain.iter().map(|host| masters.pid_of(host)).collect();

    // The host behind the chain, and the bastion on its own, reuse their masters.
    for target in ["rack1-101", "bastion", "rack1-top,rack1-101"] {
        let again = masters.mop(Some(&sandbox), &["run", target, "--", "true"]);
        assert_eq!(again.exit, 0, "{}", again.describe());
    }
    let logins: Vec<usize> = chain.iter().map(|host| accepted(&sandbox, host)).collect();
    assert_eq!(logins, [1, 1, 1], "a persisted master was not reused");
    let now: Vec<u32> = chain.iter().map(|host| masters.pid_of(host)).collect();
    assert_eq!(now, pids);

    // Closing the bastion closes what jumps through it.
    let close = masters.mop(None, &["connections", "close", "bastion"]);
    assert_eq!(close.exit, 0, "{}", close.describe());
    assert!(
        close.stdout.contains("closed rack1-101")
            && close.stdout.contains("(it jumps through bastion)"),
        "{}",
        close.describe()
    );
    assert!(wait_until(Duration::from_secs(5), || pids
        .iter()
        .all(|pid| !alive(*pid))));
    assert!(masters.list().is_empty());
}

#[test]
fn persist_flags_and_connections_are_in_help_and_bad_durations_exit_2() {
    for command in ["run", "upload", "download", "transfer", "push"] {
        let help = run(mop().args([command, "--help"]));
        assert_eq!(help.exit, 0, "{}", help.describe());
        assert!(
            help.stdout.contains("--persist <DURATION>"),
            "{command}: {}",
            help.describe()
        );
    }
    let help = run(mop().args(["connections", "--help"]));
    assert_eq!(help.exit, 0, "{}", help.describe());
    for needle in [
        "list",
        "close",
        "MOP_CONTROL_DIR",
        "/tmp/mop-<uid>",
        "Exit status:",
    ] {
        assert!(
            help.stdout.contains(needle),
            "{needle}: {}",
            help.describe()
        );
    }
    let help = run(mop().args(["connections", "close", "--help"]));
    assert!(help.stdout.contains("[HOST]..."), "{}", help.describe());

    let masters = Masters::new();
    for bad in ["0s", "soon", "10x"] {
        let output = masters.mop(
            None,
            &[
                "run",
                "--hosts",
                "127.0.0.1",
                "--persist",
                bad,
                "--",
                "true",
            ],
        );
        assert_eq!(output.exit, 2, "{}", output.describe());
        assert!(
            output.stderr.contains(&format!("invalid duration `{bad}`")),
            "{}",
            output.describe()
        );
    }
    let empty = masters.mop(None, &["connections", "list"]);
    assert_eq!(empty.exit, 0, "{}", empty.describe());
    assert!(empty.stdout.is_empty(), "{}", empty.describe());
    assert!(
        empty.stderr.contains("no persistent connections"),
        "{}",
        empty.describe()
    );
}

#[test]
fn push_with_persist_keeps_the_masters_and_still_removes_the_agent() {
    let sandbox = Sandbox::start(
        "persist-push",
        TestHostsBuilder::new().hosts(2).group("web"),
    );
    let masters = Masters::new();
    let policy = sandbox.policy("mark", MARK_POLICY);
    let push = parse_json_run(run(mop()
        .env("MOP_CONTROL_DIR", masters.dir())
        .args(sandbox.push_args(&policy, &["--apply", "--json", "--persist", "2m"]))));
    push.assert_exit(0);
    assert_eq!(
        agent_dir_leftovers(Path::new(&sandbox.agent_dir)),
        Vec::<String>::new(),
        "the push left more than its cached agent in `{}` on the host",
        sandbox.agent_dir
    );
    let list = masters.list();
    let hosts: Vec<&str> = list
        .iter()
        .filter_map(|entry| entry["host"].as_str())
        .collect();
    assert_eq!(hosts, ["host1", "host2"]);
    assert!(
        list.iter().all(|entry| entry["idle_limit_secs"] == 120),
        "{list:?}"
    );
    let run_after = masters.mop(Some(&sandbox), &["run", "web", "--", "true"]);
    assert_eq!(run_after.exit, 0, "{}", run_after.describe());
    assert_eq!(accepted(&sandbox, "host1"), 1, "the run logged in again");
    assert_eq!(accepted(&sandbox, "host2"), 1, "the run logged in again");
}
