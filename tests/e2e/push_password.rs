//! Password login (`mop_ssh_password`) against real sshd hosts that refuse the login user's
//! key (`TestHostsBuilder::password_only`): a push converges, a wrong password fails once
//! with a clear message and the host is unreachable, and neither password is anywhere on the
//! controller (every process's argv and environment sampled during the runs, stdout, stderr,
//! `--json`, `-v`, `-vv`, the retry file, files left behind); `mop run`, `mop upload` and
//! `--persist` log in the same way; hosts behind a key jump host and behind a password jump
//! host; a password from a vault file.

use std::path::PathBuf;

use mop_testhosts::{BastionLayout, TestHostsBuilder, TEST_SUDO_PASSWORD, TEST_SUDO_PASSWORD_USER};

use crate::security_secrets::{assert_watch_clean, mop_with_inventory, ProcessWatch};
use crate::support::{
    assert_not_leaked, mop, parse_json_run, run, run_mop, unique_name, Output, Sandbox,
};
use crate::vault::{encrypt_group_vars_to_key, files_holding, make_keys, mop_with_keys};

/// `[hosts.NAME.vars]` logging in as the password user with `password`.
fn password_host(name: &str, password: &str) -> String {
    format!(
        "[hosts.{name}.vars]\nmop_ssh_username = \"{TEST_SUDO_PASSWORD_USER}\"\nmop_ssh_password = \"{password}\"\n"
    )
}

/// How often sshd of `host` logged a rejected password / an accepted one for the password user.
fn password_lines(sandbox: &Sandbox, host: &str) -> (usize, usize) {
    let log = sandbox.host(host).log().expect("read the sshd log");
    let failed = format!("Failed password for {TEST_SUDO_PASSWORD_USER} ");
    let accepted = format!("Accepted password for {TEST_SUDO_PASSWORD_USER} ");
    let count = |needle: &str| log.lines().filter(|line| line.contains(needle)).count();
    (count(&failed), count(&accepted))
}

const PASSWORD_POLICY: &str = r#"
[[roles]]
name = "pw"
groups = ["web"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}.txt"
content = "logged in with a password\n"

[[roles.resources]]
name = "who"
type = "shell"
cmd = "sleep 0.8; id -un"
changed_when = "false"
"#;

#[test]
fn a_password_login_converges_and_a_wrong_one_fails_once_leaking_nothing() {
    let sandbox = Sandbox::start_as(
        "password",
        TestHostsBuilder::new()
            .hosts(2)
            .group("web")
            .password_only(true),
        TEST_SUDO_PASSWORD_USER,
    );
    // host2's password is wrong, and unique: a canary no other process can hold.
    let canary = unique_name("wrong-ssh-password");
    sandbox.set_inventory_extra(
        "",
        &format!(
            "{}{}",
            password_host("host1", TEST_SUDO_PASSWORD),
            password_host("host2", &canary)
        ),
    );
    let policy = sandbox.policy("pw", PASSWORD_POLICY);
    let retry = sandbox.dir().join("pw.retry");
    let markers = vec![sandbox.agent_dir.clone()];

    let canary_watch = ProcessWatch::start(&canary, &markers);
    let password_watch = ProcessWatch::start(TEST_SUDO_PASSWORD, &markers);
    let json = sandbox.push(&policy, &["--apply", "-v"]);
    let after_first = password_lines(&sandbox, "host2");
    let text = sandbox.push_text(&policy, &["--apply", "-vv"]);
    let canary_report = canary_watch.finish();
    let password_report = password_watch.finish();

    // host1 converged through its password (its key is refused by sshd).
    json.assert_exit(1);
    assert_eq!(json.total("host1", "changed"), 1, "{}", json.describe());
    let who = json
        .resources_of("host1")
        .find(|event| event["resource"] == "who")
        .and_then(|event| event["output"]["stdout"].as_str())
        .unwrap_or_default()
        .to_string();
    assert_eq!(who.trim(), TEST_SUDO_PASSWORD_USER, "{}", json.describe());
    assert_eq!(
        std::fs::read_to_string(sandbox.out.join("host1.txt")).expect("host1's file"),
        "logged in with a password\n"
    );
    assert!(
        password_lines(&sandbox, "host1").1 >= 2,
        "host1: no password login"
    );

    // host2: unreachable, a clear message, and sshd saw exactly one password per run.
    let host2 = json.host_summary("host2");
    assert_eq!(host2["unreachable"], true, "{}", json.describe());
    let error = host2["error"].as_str().unwrap_or_default();
    let address = sandbox.host("host2").addr.to_string();
    assert!(
        error.starts_with(&format!(
            "password login to host2 ({address}:{}) as {TEST_SUDO_PASSWORD_USER} failed: permission denied (password)",
            sandbox.host("host2").port
        )),
        "{error}"
    );
    assert!(
        error.contains("hint: check the host's login password (mop_ssh_password)"),
        "{error}"
    );
    assert_eq!(
        after_first,
        (1, 0),
        "one rejected password in the first run"
    );
    assert_eq!(
        password_lines(&sandbox, "host2"),
        (2, 0),
        "one rejected password per run"
    );
    assert_eq!(text.exit, 1, "{}", text.describe());
    assert!(
        text.stderr.contains("password login to host2")
            || text.stdout.contains("password login to host2"),
        "{}",
        text.describe()
    );

    assert_watch_clean(&canary_report, &markers, "pushes with a wrong password");
    assert_watch_clean(&password_report, &markers, "pushes with a password");
    let retry_text = std::fs::read_to_string(&retry).expect("the retry file");
    for secret in [canary.as_str(), TEST_SUDO_PASSWORD] {
        for (what, output) in [
            ("stdout of --json -v", &json.stdout),
            ("stderr of --json -v", &json.stderr),
            ("stdout of -vv", &text.stdout),
            ("stderr of -vv", &text.stderr),
            ("the retry file", &retry_text),
        ] {
            assert_not_leaked(secret, what, output);
        }
    }
    // The -vv connection steps show the run's ssh options, not the password.
    assert!(
        text.stderr.contains("NumberOfPasswordPrompts 1"),
        "{}",
        text.describe()
    );
    // Nothing on the controller holds the wrong password but the inventory it came from.
    let inventory_file = sandbox.inventory.join("zz-test.toml");
    let mut found = Vec::new();
    for dir in [sandbox.dir().to_path_buf(), std::env::temp_dir()] {
        files_holding(
            &dir,
            canary.as_bytes(),
            std::slice::from_ref(&inventory_file),
            &mut found,
        );
    }
    assert!(found.is_empty(), "the password was left in {found:?}");
    sandbox.assert_hosts_clean();
}

#[test]
fn ad_hoc_commands_and_persisted_masters_log_in_with_a_password() {
    let sandbox = Sandbox::start_as(
        "password-adhoc",
        TestHostsBuilder::new()
            .hosts(1)
            .group("web")
            .password_only(true),
        TEST_SUDO_PASSWORD_USER,
    );
    sandbox.set_inventory_extra("", &password_host("host1", TEST_SUDO_PASSWORD));

    let ran = run_mop(mop_with_inventory(
        &sandbox,
        &["run", "host1", "--", "id -un"],
    ));
    assert_eq!(ran.exit, 0, "{}", ran.describe());
    assert!(
        ran.stdout.contains(TEST_SUDO_PASSWORD_USER),
        "{}",
        ran.describe()
    );

    let local = sandbox.dir().join("upload.txt");
    std::fs::write(&local, "uploaded over a password login\n").expect("write");
    let target = sandbox.out.join("uploaded.txt");
    let uploaded = run_mop(mop_with_inventory(
        &sandbox,
        &[
            "upload",
            "host1",
            &local.to_string_lossy(),
            &target.to_string_lossy(),
        ],
    ));
    assert_eq!(uploaded.exit, 0, "{}", uploaded.describe());
    assert_eq!(
        std::fs::read_to_string(&target).expect("the uploaded file"),
        "uploaded over a password login\n"
    );

    // A persisted master logs in with the password once; the next command reuses it.
    let control = tempfile::Builder::new()
        .prefix("mop-ctl-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let control_dir = control.path().join("ctl");
    let persisted = |args: &[&str]| -> Output {
        run(mop()
            .env("MOP_CONTROL_DIR", &control_dir)
            .args(mop_with_inventory(&sandbox, args)))
    };
    let first = persisted(&["run", "host1", "--persist", "60s", "--", "true"]);
    assert_eq!(first.exit, 0, "{}", first.describe());
    let logins = sandbox.logins("host1");
    let second = persisted(&["run", "host1", "--", "id -un"]);
    assert_eq!(second.exit, 0, "{}", second.describe());
    assert!(
        second.stdout.contains(TEST_SUDO_PASSWORD_USER),
        "{}",
        second.describe()
    );
    assert_eq!(
        sandbox.logins("host1"),
        logins,
        "the persisted master was not reused"
    );
    let closed = run(mop()
        .env("MOP_CONTROL_DIR", &control_dir)
        .args(["connections", "close"]));
    assert_eq!(closed.exit, 0, "{}", closed.describe());
    // The askpass sockets are gone with their logins: only masters' files may stay.
    let left: Vec<PathBuf> = std::fs::read_dir(&control_dir)
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    assert!(
        !left
            .iter()
            .any(|path| path.extension().is_some_and(|ext| ext == "askpass")),
        "{left:?}"
    );

    // A wrong password: `mop run` fails once, naming host and user.
    sandbox.set_inventory_extra("", &password_host("host1", "not-the-password"));
    let (failed_before, _) = password_lines(&sandbox, "host1");
    let wrong = run_mop(mop_with_inventory(
        &sandbox,
        &["run", "host1", "--", "true"],
    ));
    assert_eq!(wrong.exit, 1, "{}", wrong.describe());
    assert!(
        wrong.stdout.contains("password login to host1")
            || wrong.stderr.contains("password login to host1"),
        "{}",
        wrong.describe()
    );
    assert_eq!(password_lines(&sandbox, "host1").0, failed_before + 1);
    for output in [&ran, &uploaded, &first, &second, &wrong] {
        assert_not_leaked(TEST_SUDO_PASSWORD, "ad hoc output", &output.stdout);
        assert_not_leaked(TEST_SUDO_PASSWORD, "ad hoc output", &output.stderr);
    }
    sandbox.assert_hosts_clean();
}

#[test]
fn password_hosts_behind_a_key_jump_host_and_a_password_jump_host() {
    let sandbox = Sandbox::start_as(
        "password-via",
        TestHostsBuilder::new()
            .hosts(0)
            .bastion(BastionLayout::new(1, 1))
            .password_only(true),
        TEST_SUDO_PASSWORD_USER,
    );
    // bastion (key, as moptest) -> rack1-top (password) -> rack1-101 (password).
    sandbox.set_inventory_extra(
        "",
        &format!(
            "{}{}",
            password_host("rack1-top", TEST_SUDO_PASSWORD),
            password_host("rack1-101", TEST_SUDO_PASSWORD)
        ),
    );
    let policy = sandbox.policy(
        "rack",
        r#"
[[roles]]
name = "rack"
hosts = ["rack1-101", "rack1-top"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}.txt"
content = "behind jump hosts\n"
"#,
    );
    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(0);
    for host in ["rack1-top", "rack1-101"] {
        assert_eq!(run.total(host, "changed"), 1, "{}", run.describe());
        assert_eq!(
            password_lines(&sandbox, host),
            (0, 1),
            "{host}: one password login"
        );
    }
    let bastion = sandbox.host("bastion").log().expect("bastion log");
    assert!(
        bastion.contains("Accepted publickey for moptest "),
        "the bastion is reached with a key: {bastion}"
    );
    sandbox.assert_hosts_clean();
}

#[test]
fn a_password_from_a_vault_file_logs_in() {
    let sandbox = Sandbox::start_as(
        "password-vault",
        TestHostsBuilder::new()
            .hosts(1)
            .group("web")
            .password_only(true),
        TEST_SUDO_PASSWORD_USER,
    );
    let keys = make_keys(sandbox.dir());
    sandbox.set_inventory_extra(
        "",
        &format!("[groups.web.vars]\nmop_ssh_username = \"{TEST_SUDO_PASSWORD_USER}\"\n"),
    );
    let vault = encrypt_group_vars_to_key(
        &sandbox,
        &keys,
        &format!("mop_ssh_password = \"{TEST_SUDO_PASSWORD}\"\n"),
    );
    assert_not_leaked(
        TEST_SUDO_PASSWORD,
        "the vault file",
        &std::fs::read_to_string(&vault).expect("read the vault file"),
    );

    let policy = sandbox.policy("pw", PASSWORD_POLICY);
    let args = sandbox.push_args(&policy, &["--apply", "-v", "--json"]);
    let json = parse_json_run(mop_with_keys(&keys, &args));
    json.assert_exit(0);
    assert_eq!(json.total("host1", "changed"), 1, "{}", json.describe());
    assert_eq!(password_lines(&sandbox, "host1"), (0, 1));
    assert_not_leaked(TEST_SUDO_PASSWORD, "stdout", &json.stdout);
    assert_not_leaked(TEST_SUDO_PASSWORD, "stderr", &json.stderr);
    sandbox.assert_hosts_clean();
}
