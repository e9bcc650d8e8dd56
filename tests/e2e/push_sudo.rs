//! sudo on the hosts: with a password (`moptestpw`), which must never be printed, and without
//! one (`moptest`); files end up owned by root and nothing of mop stays behind.

use std::os::unix::fs::MetadataExt;

use mop_testhosts::{TestHostsBuilder, TEST_SUDO_PASSWORD, TEST_SUDO_PASSWORD_USER};

use crate::support::{assert_not_leaked, Sandbox};

const ROOT_FILE_POLICY: &str = r#"
[[roles]]
name = "as root"
groups = ["web"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}.txt"
content = "written by {{ facts.user }} on {{ host.name }}\n"
mode = "0600"
"#;

fn assert_root_files(sandbox: &Sandbox, hosts: &[&str]) {
    for host in hosts {
        let path = sandbox.out.join(format!("{host}.txt"));
        let meta = std::fs::metadata(&path)
            .unwrap_or_else(|error| panic!("`{}`: {error}", path.display()));
        assert_eq!(meta.uid(), 0, "`{}` is not owned by root", path.display());
        assert_eq!(meta.mode() & 0o7777, 0o600, "`{}` mode", path.display());
        let content = std::fs::read_to_string(&path).expect("read the file");
        assert_eq!(content, format!("written by root on {host}\n"));
    }
}

#[test]
fn sudo_with_a_password_writes_as_root_and_never_prints_the_password() {
    let sandbox = Sandbox::start_as(
        "sudo-pw",
        TestHostsBuilder::new().hosts(2).group("web"),
        TEST_SUDO_PASSWORD_USER,
    );
    sandbox.set_inventory_extra(
        "",
        &format!(
            "[groups.web.vars]\nmop_ssh_username = \"{TEST_SUDO_PASSWORD_USER}\"\nmop_sudo = true\nmop_sudo_password = \"{TEST_SUDO_PASSWORD}\"\n"
        ),
    );
    let policy = sandbox.policy("root", ROOT_FILE_POLICY);

    let json = sandbox.push(&policy, &["--apply", "-v", "--diff"]);
    json.assert_exit(0);
    assert_not_leaked(TEST_SUDO_PASSWORD, "stdout of --json", &json.stdout);
    assert_not_leaked(TEST_SUDO_PASSWORD, "stderr of --json", &json.stderr);
    for host in ["host1", "host2"] {
        assert_eq!(json.total(host, "changed"), 1, "{}", json.describe());
        let log = sandbox.host(host).log().expect("read the sshd log");
        assert!(
            log.contains(&format!(
                "Accepted publickey for {TEST_SUDO_PASSWORD_USER} "
            )),
            "mop did not log in to {host} as {TEST_SUDO_PASSWORD_USER}:\n{log}"
        );
    }
    assert_root_files(&sandbox, &["host1", "host2"]);
    sandbox.assert_hosts_clean();

    // Text output, verbose, with a change to show.
    std::fs::remove_file(sandbox.out.join("host1.txt")).expect("remove a file");
    let text = sandbox.push_text(&policy, &["--apply", "-v", "--diff"]);
    assert_eq!(text.exit, 0, "{}", text.describe());
    assert_not_leaked(TEST_SUDO_PASSWORD, "stdout of -v", &text.stdout);
    assert_not_leaked(TEST_SUDO_PASSWORD, "stderr of -v", &text.stderr);
    assert_root_files(&sandbox, &["host1", "host2"]);
    sandbox.assert_hosts_clean();

    // A wrong password fails the hosts without printing it either.
    let wrong = "not-the-sudo-password-4711";
    let refused = sandbox.push(
        &policy,
        &["--apply", "-v", "-e", &format!("mop_sudo_password={wrong}")],
    );
    refused.assert_exit(1);
    for host in ["host1", "host2"] {
        let error = refused.host_summary(host)["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            error.contains("sudo"),
            "the error for {host} should mention sudo: {error}"
        );
    }
    for secret in [wrong, TEST_SUDO_PASSWORD] {
        assert_not_leaked(secret, "stdout with a wrong password", &refused.stdout);
        assert_not_leaked(secret, "stderr with a wrong password", &refused.stderr);
    }
    sandbox.assert_hosts_clean();
}

#[test]
fn sudo_without_a_password_writes_as_root() {
    let sandbox = Sandbox::start("sudo", TestHostsBuilder::new().hosts(2).group("web"));
    let policy = sandbox.policy(
        "root",
        &ROOT_FILE_POLICY.replace("groups = [\"web\"]", "groups = [\"web\"]\nsudo = true"),
    );
    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(0);
    assert_root_files(&sandbox, &["host1", "host2"]);
    sandbox.assert_hosts_clean();

    // The agent is cached now: the probe's exec checks the copy and starts it under `sudo -n`
    // itself, with no second exec, and it still writes as root.
    for host in ["host1", "host2"] {
        std::fs::remove_file(sandbox.out.join(format!("{host}.txt"))).expect("remove");
    }
    let steps = sandbox.push_text(&policy, &["--apply", "-vv"]);
    assert_eq!(steps.exit, 0, "{}", steps.describe());
    for host in ["host1", "host2"] {
        assert!(
            steps
                .stderr
                .contains(&format!("[{host}] agent: upload skipped: agent "))
                && steps.stderr.contains("; the probe's exec started it"),
            "{}",
            steps.describe()
        );
    }
    assert!(
        steps
            .stderr
            .contains("sudo: agent started with `sudo -n --`"),
        "{}",
        steps.describe()
    );
    assert_root_files(&sandbox, &["host1", "host2"]);
    sandbox.assert_hosts_clean();

    // Without sudo the same role runs as the login user, and cannot take over root's file.
    let plain = sandbox.policy("plain", ROOT_FILE_POLICY);
    let run = sandbox.push(&plain, &["--apply"]);
    run.assert_exit(1);
    for host in ["host1", "host2"] {
        assert_eq!(run.total(host, "failed"), 1, "{}", run.describe());
    }
    assert_root_files(&sandbox, &["host1", "host2"]);
    sandbox.assert_hosts_clean();
}

/// Without a password mop starts the agent under `sudo -n` right away (no check first); when
/// sudo refuses, the failure is still diagnosed and explained per host, and nothing stays.
#[test]
fn sudo_that_needs_a_password_nobody_gave_is_explained() {
    let sandbox = Sandbox::start_as(
        "sudo-nopw",
        TestHostsBuilder::new().hosts(2).group("web"),
        TEST_SUDO_PASSWORD_USER,
    );
    sandbox.set_inventory_extra(
        "",
        &format!("[groups.web.vars]\nmop_ssh_username = \"{TEST_SUDO_PASSWORD_USER}\"\nmop_sudo = true\n"),
    );
    let policy = sandbox.policy("root", ROOT_FILE_POLICY);
    // The second run finds the agent cached by the first, so the probe's own exec starts it:
    // the refusal is explained the same way.
    for attempt in ["first", "cached"] {
        let run = sandbox.push(&policy, &["--apply"]);
        run.assert_exit(1);
        for host in ["host1", "host2"] {
            if attempt == "cached" {
                assert_eq!(run.total(host, "agent_bytes"), 0, "{}", run.describe());
            }
            let error = run.host_summary(host)["error"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                error.contains(&format!(
                    "sudo on {host} needs a password for user {TEST_SUDO_PASSWORD_USER}"
                )),
                "{attempt} run: the error for {host} should say sudo wants a password: {error}\n{}",
                run.describe()
            );
            assert!(!sandbox.out.join(format!("{host}.txt")).exists());
        }
        sandbox.assert_hosts_clean();
    }
}

/// At the end of a run the agent (here under sudo) stops what its commands left running in the
/// background and removes its work directory itself; nothing of the run survives it.
#[test]
fn background_processes_of_a_run_do_not_outlive_it() {
    let sandbox = Sandbox::start("sudo-bg", TestHostsBuilder::new().hosts(2).group("web"));
    let marker = format!("{}", 3_000_000 + std::process::id() % 1_000_000);
    let policy = sandbox.policy(
        "background",
        &format!(
            r#"
[[roles]]
name = "leaves a process"
groups = ["web"]
sudo = true

[[roles.resources]]
type = "shell"
cmd = "sleep {marker} >/dev/null 2>&1 &"
"#
        ),
    );
    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(0);
    assert!(
        !run.stderr.contains("could not clean up"),
        "the agents should have cleaned up themselves:\n{}",
        run.describe()
    );
    let left = std::process::Command::new("pgrep")
        .args(["-af", &format!("sleep {marker}")])
        .output()
        .expect("run pgrep");
    assert!(
        left.stdout.is_empty(),
        "background commands outlived the run: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    sandbox.assert_hosts_clean();
}
