//! The agent cache on hosts (the default): a second push uploads nothing, a corrupted or
//! replaced cached agent is detected and re-sent, `mop_agent_cache = false` and
//! `--no-agent-cache` leave nothing, and `mop clean` removes what the default left.

use std::path::{Path, PathBuf};
use std::process::Command;

use mop_testhosts::{TestHostsBuilder, TEST_USER};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{
    agent_dir_leftovers, cached_agents, run_mop, tree_snapshot, write_inventory, JsonRun, Sandbox,
};

const POLICY: &str = r#"
[[roles]]
name = "motd"
groups = ["web"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}.motd"
content = "{{ message | default('cached') }} on {{ host.name }}\n"
"#;

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn chown_to_test_user(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", TEST_USER])
        .arg(path)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown {}", path.display());
}

/// The one cached agent in `dir`, with its bytes.
fn the_cached_agent(dir: &Path) -> (PathBuf, Vec<u8>) {
    let cached = cached_agents(dir);
    assert_eq!(cached.len(), 1, "one cached agent in `{}`", dir.display());
    let path = dir.join(&cached[0]);
    let bytes = std::fs::read(&path).expect("read the cached agent");
    (path, bytes)
}

fn push_converges(sandbox: &Sandbox, policy: &Path, message: &str) -> JsonRun {
    let run = sandbox.push(policy, &["--apply", "-e", &format!("message={message}")]);
    run.assert_exit(0);
    assert_eq!(
        std::fs::read_to_string(sandbox.out.join("host1.motd")).expect("converged"),
        format!("{message} on host1\n"),
        "{}",
        run.describe()
    );
    run
}

#[test]
fn a_default_push_caches_the_agent_and_a_bad_cache_is_sent_again() {
    let sandbox = Sandbox::start("cache", TestHostsBuilder::new().hosts(1).group("web"));
    let policy = sandbox.policy("motd", POLICY);
    let dir = Path::new(&sandbox.agent_dir);

    let first = push_converges(&sandbox, &policy, "first");
    assert!(
        first.total("host1", "agent_bytes") > 0,
        "{}",
        first.describe()
    );
    sandbox.assert_hosts_clean();
    let (cached, bytes) = the_cached_agent(dir);
    let name = cached
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        name,
        format!("agent-{}", sha256_hex(&bytes)),
        "content-addressed"
    );

    let second = push_converges(&sandbox, &policy, "second");
    assert_eq!(
        second.total("host1", "agent_bytes"),
        0,
        "the second push uploads nothing\n{}",
        second.describe()
    );

    // Corrupted in place (same size, one byte changed): detected, sent again, cache repaired.
    let mut corrupted = bytes.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    std::fs::write(&cached, &corrupted).expect("corrupt the cached agent");
    let third = push_converges(&sandbox, &policy, "third");
    assert!(
        third.total("host1", "agent_bytes") > 0,
        "{}",
        third.describe()
    );
    assert_eq!(
        std::fs::read(&cached).expect("read"),
        bytes,
        "the cache is repaired"
    );
    sandbox.assert_hosts_clean();

    // Replaced by a different executable (as the login user could): not run, sent again.
    let impostor = dir.join("impostor");
    std::fs::write(&impostor, "#!/bin/sh\necho impostor >&2\nexit 3\n").expect("write");
    chown_to_test_user(&impostor);
    crate::support::chmod(&impostor, 0o700);
    std::fs::rename(&impostor, &cached).expect("replace the cached agent");
    let fourth = push_converges(&sandbox, &policy, "fourth");
    assert!(
        fourth.total("host1", "agent_bytes") > 0,
        "{}",
        fourth.describe()
    );
    assert_eq!(std::fs::read(&cached).expect("read"), bytes);

    let fifth = push_converges(&sandbox, &policy, "fifth");
    assert_eq!(
        fifth.total("host1", "agent_bytes"),
        0,
        "{}",
        fifth.describe()
    );
    sandbox.assert_hosts_clean();
}

/// A sandbox whose agent directory is `<parent>/agents`, `parent` a private directory of the
/// login user made for this test (so a snapshot of it sees only this test's files).
fn nested_agent_dir(label: &str) -> (Sandbox, PathBuf) {
    let sandbox = Sandbox::start(label, TestHostsBuilder::new().hosts(1).group("web"));
    let parent = PathBuf::from(&sandbox.agent_dir);
    std::fs::create_dir(&parent).expect("create the parent");
    std::fs::write(parent.join("marker"), "the login user's own file\n").expect("write");
    chown_to_test_user(&parent);
    crate::support::chmod(&parent, 0o700);
    (sandbox, parent)
}

fn set_agent_dir(sandbox: &Sandbox, agent_dir: &Path, all_vars: &str) {
    write_inventory(
        &sandbox.inventory,
        &sandbox.hosts,
        &agent_dir.to_string_lossy(),
        all_vars,
        "",
    );
}

#[test]
fn without_the_cache_a_push_leaves_nothing() {
    let (sandbox, parent) = nested_agent_dir("nocache");
    let agent_dir = parent.join("agents");
    let policy = sandbox.policy("motd", POLICY);
    let before = tree_snapshot(&parent);

    // `mop_agent_cache = false` in the inventory.
    set_agent_dir(&sandbox, &agent_dir, "mop_agent_cache = false");
    for message in ["one", "two"] {
        let run = push_converges(&sandbox, &policy, message);
        assert!(run.total("host1", "agent_bytes") > 0, "{}", run.describe());
        assert_eq!(tree_snapshot(&parent), before, "after push {message}");
    }

    // `--no-agent-cache` wins over an inventory that asks for the cache.
    set_agent_dir(&sandbox, &agent_dir, "mop_agent_cache = true");
    let run = sandbox.push(
        &policy,
        &["--apply", "--no-agent-cache", "-e", "message=three"],
    );
    run.assert_exit(0);
    assert!(run.total("host1", "agent_bytes") > 0, "{}", run.describe());
    assert_eq!(tree_snapshot(&parent), before, "after --no-agent-cache");

    // The default does leave the cached agent (what `mop clean` is for).
    set_agent_dir(&sandbox, &agent_dir, "");
    push_converges(&sandbox, &policy, "four");
    assert_ne!(tree_snapshot(&parent), before);
    assert_eq!(cached_agents(&agent_dir).len(), 1);
}

fn clean(sandbox: &Sandbox, extra: &[&str]) -> crate::support::Output {
    let inventory = sandbox.inventory.to_string_lossy().into_owned();
    let mut args = vec!["clean", "web", "-i", inventory.as_str()];
    args.extend_from_slice(extra);
    run_mop(args)
}

fn json_line(output: &crate::support::Output) -> Value {
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", output.describe());
    serde_json::from_str(lines[0]).expect("one JSON object per host")
}

fn names(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|item| {
            item.get("name")
                .unwrap_or(item)
                .as_str()
                .expect("a name")
                .to_string()
        })
        .collect()
}

fn work_dir(agent_dir: &Path, name: &str, lock_age_minutes: u64) -> PathBuf {
    let work = agent_dir.join(name);
    std::fs::create_dir(&work).expect("mkdir");
    std::fs::write(work.join("mop-agent"), "left by a dead agent").expect("write");
    std::fs::write(work.join("lock"), "").expect("write");
    chown_to_test_user(&work);
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(lock_age_minutes * 60);
    std::fs::File::open(work.join("lock"))
        .and_then(|file| file.set_modified(when))
        .expect("age the lock");
    work
}

#[test]
fn mop_clean_removes_what_the_default_left() {
    let (sandbox, parent) = nested_agent_dir("clean");
    let agent_dir = parent.join("agents");
    set_agent_dir(&sandbox, &agent_dir, "");
    let policy = sandbox.policy("motd", POLICY);
    let before = tree_snapshot(&parent);
    push_converges(&sandbox, &policy, "cached");
    let cached = cached_agents(&agent_dir);
    assert_eq!(cached.len(), 1);

    // A dead agent's work directory, and one whose agent is alive (it holds the lock).
    let dead = work_dir(&agent_dir, "w-0dead0", 60);
    let live = work_dir(&agent_dir, "w-011fe0", 60);
    // One process holds the lock and is the one killed below (as the agent holds it).
    let mut holder = Command::new("sh")
        .args(["-c", r#"exec 9<"$1" && flock -s 9 && exec sleep 120"#, "sh"])
        .arg(live.join("lock"))
        .spawn()
        .expect("hold the live agent's lock");
    assert!(
        crate::support::wait_until(std::time::Duration::from_secs(5), || {
            Command::new("flock")
                .args(["-x", "-n"])
                .arg(live.join("lock"))
                .arg("true")
                .status()
                .is_ok_and(|status| !status.success())
        }),
        "the lock is held"
    );

    let output = clean(&sandbox, &["--json"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(output.exit, 0, "{}", output.describe());
    let report = json_line(&output);
    assert_eq!(report["host"], "host1");
    assert_eq!(report["error"], Value::Null);
    assert_eq!(
        names(&report["removed"]),
        [cached[0].clone(), "w-0dead0".to_string()]
    );
    assert_eq!(names(&report["kept"]), ["w-011fe0"]);
    assert!(!dead.exists() && live.exists());
    assert_eq!(agent_dir_leftovers(&agent_dir), ["w-011fe0"]);
    assert!(cached_agents(&agent_dir).is_empty());

    // Once that agent is gone, its directory goes too, and with it the agent directory.
    let text = clean(&sandbox, &[]);
    assert_eq!(text.exit, 0, "{}", text.describe());
    assert!(
        text.stdout.contains("host1: removed in ") && text.stdout.contains("  w-011fe0\n"),
        "{}",
        text.describe()
    );
    assert_eq!(tree_snapshot(&parent), before, "nothing of mop's is left");

    // A bad pattern is invalid input, before any host is contacted.
    let bad = clean(&sandbox, &["--hosts", "127.0.0.1"]);
    assert_eq!(bad.exit, 2, "{}", bad.describe());
    let help = run_mop(["clean", "--help"]);
    for needle in ["--json", "--hosts <HOSTS>", "Exit status:", "invalid input"] {
        assert!(
            help.stdout.contains(needle),
            "{needle}\n{}",
            help.describe()
        );
    }

    // Nothing left: a clean run that removes nothing still succeeds.
    let again = clean(&sandbox, &["--json"]);
    assert_eq!(again.exit, 0, "{}", again.describe());
    assert_eq!(json_line(&again)["dir"], Value::Null);
}
