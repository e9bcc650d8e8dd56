//! sudo diagnosis and `download --sudo` with real sudo and the test users: a user without
//! sudo rights is told so (not "needs a password"), a user who needs a password is told to
//! set it, a wrong password is named as such, and sudo's own words never reach the operator.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;

use mop_testhosts::{
    TestHostsBuilder, TEST_NO_SUDO_USER, TEST_SUDO_PASSWORD, TEST_SUDO_PASSWORD_USER,
};

use crate::support::{run_mop, unique_name, Output, Sandbox};

const ROOT_FILE_POLICY: &str = r#"
[[roles]]
name = "as root"
groups = ["web"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}.txt"
content = "root\n"
"#;

fn mop_in(sandbox: &Sandbox, args: &[&str]) -> Output {
    let mut all: Vec<OsString> = vec![
        args[0].into(),
        "-i".into(),
        sandbox.inventory.clone().into(),
    ];
    all.extend(args[1..].iter().map(Into::into));
    run_mop(all)
}

/// sudo's raw refusal text must never be what the operator reads.
fn assert_no_raw_sudo(text: &str) {
    for raw in [
        "a password is required",
        "is not in the sudoers file",
        "may not run sudo",
        "mop-sudo-rights",
    ] {
        assert!(!text.contains(raw), "sudo's own `{raw}` leaked:\n{text}");
    }
}

fn login_as(sandbox: &Sandbox, user: &str, password: Option<&str>) {
    let password = password
        .map(|password| format!("mop_sudo_password = \"{password}\"\n"))
        .unwrap_or_default();
    sandbox.set_inventory_extra(
        "",
        &format!(
            "[groups.web.vars]\nmop_ssh_username = \"{user}\"\nmop_sudo = true\n{password}mop_agent_dir = \"/home/{user}/.mop-e2e-{}\"\n",
            unique_name("sudo")
        ),
    );
}

#[test]
fn push_tells_no_rights_from_missing_and_wrong_passwords() {
    let sandbox = Sandbox::start_as(
        "sudo-diag",
        TestHostsBuilder::new().hosts(1).group("web"),
        TEST_NO_SUDO_USER,
    );
    let policy = sandbox.policy("root", ROOT_FILE_POLICY);
    // (login user, sudo password, what the host's error must say)
    let cases = [
        (
            TEST_NO_SUDO_USER,
            None,
            format!("user {TEST_NO_SUDO_USER} may not use sudo on host1"),
        ),
        (
            TEST_NO_SUDO_USER,
            Some("some-password"),
            format!("user {TEST_NO_SUDO_USER} may not use sudo on host1"),
        ),
        (
            TEST_SUDO_PASSWORD_USER,
            None,
            format!("sudo on host1 needs a password for user {TEST_SUDO_PASSWORD_USER}"),
        ),
        (
            TEST_SUDO_PASSWORD_USER,
            Some("not-the-password-4711"),
            format!("sudo on host1 rejected the sudo password of user {TEST_SUDO_PASSWORD_USER}"),
        ),
    ];
    for (user, password, expected) in &cases {
        login_as(&sandbox, user, *password);
        let run = sandbox.push(&policy, &["--apply"]);
        run.assert_exit(1);
        let error = run.host_summary("host1")["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            error.contains(expected.as_str()),
            "{user} {password:?}: expected `{expected}`, got `{error}`\n{}",
            run.describe()
        );
        assert_no_raw_sudo(&run.stdout);
        assert_no_raw_sudo(&run.stderr);
    }
    // The right password still works for the user who has rights.
    login_as(&sandbox, TEST_SUDO_PASSWORD_USER, Some(TEST_SUDO_PASSWORD));
    sandbox.push(&policy, &["--apply"]).assert_exit(0);
}

#[test]
fn run_sudo_without_rights_is_diagnosed_in_mops_words() {
    let sandbox = Sandbox::start_as(
        "sudo-run",
        TestHostsBuilder::new().hosts(1).group("web"),
        TEST_NO_SUDO_USER,
    );
    login_as(&sandbox, TEST_NO_SUDO_USER, None);
    let output = mop_in(&sandbox, &["run", "web", "--sudo", "--", "id -u"]);
    assert_eq!(output.exit, 1, "{}", output.describe());
    let all = format!("{}{}", output.stdout, output.stderr);
    assert!(
        all.contains(&format!(
            "user {TEST_NO_SUDO_USER} may not use sudo on host1"
        )),
        "{}",
        output.describe()
    );
    assert_no_raw_sudo(&all);

    login_as(&sandbox, TEST_SUDO_PASSWORD_USER, None);
    let output = mop_in(&sandbox, &["run", "web", "--sudo", "--", "id -u"]);
    assert_eq!(output.exit, 1, "{}", output.describe());
    let all = format!("{}{}", output.stdout, output.stderr);
    assert!(all.contains("needs a password"), "{}", output.describe());
    assert_no_raw_sudo(&all);
}

#[test]
fn download_with_sudo_reads_a_root_only_file() {
    let sandbox = Sandbox::start(
        "download-sudo",
        TestHostsBuilder::new().hosts(1).group("web"),
    );
    let secret_dir = sandbox.out.join(unique_name("rootonly"));
    std::fs::create_dir(&secret_dir).expect("create the directory");
    let secret = secret_dir.join("secret.conf");
    std::fs::write(&secret, "root only\n").expect("write the root-only file");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod 0600");
    let remote = secret.display().to_string();
    let downloads = sandbox.dir().join("dl");
    let dl = downloads.display().to_string();

    // Without sudo: the login user cannot read it, said in mop's words with what to do.
    let refused = mop_in(&sandbox, &["download", "web", &remote, &dl]);
    assert_eq!(refused.exit, 1, "{}", refused.describe());
    assert!(
        refused.stdout.contains(&format!(
            "host `host1`: cannot download `{remote}`: permission denied"
        )) && refused.stdout.contains("hint: ")
            && refused.stdout.contains("--sudo"),
        "{}",
        refused.describe()
    );
    assert!(
        !refused.stdout.contains("Sftp server") && !refused.stdout.contains("PermDenied"),
        "{}",
        refused.describe()
    );

    // With sudo: fetched, and the staged copy under /tmp is gone.
    let output = mop_in(&sandbox, &["download", "web", &remote, &dl, "--sudo"]);
    assert_eq!(output.exit, 0, "{}", output.describe());
    assert_eq!(
        std::fs::read_to_string(downloads.join("host1").join("secret.conf")).expect("downloaded"),
        "root only\n"
    );
    assert!(
        !output.stderr.contains("warning"),
        "no warning on a clean download: {}",
        output.describe()
    );

    // transfer --sudo: from the root-only file into a directory only root may write.
    let protected = secret_dir.join("protected");
    std::fs::create_dir(&protected).expect("create the protected directory");
    std::fs::set_permissions(&protected, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let copy = protected.join("copy.conf");
    let source = format!("host1:{remote}");
    let destination = format!("host1:{}", copy.display());
    let refused = mop_in(&sandbox, &["transfer", &source, &destination]);
    assert_eq!(refused.exit, 1, "{}", refused.describe());
    assert!(
        refused.stdout.contains("permission denied") && !refused.stdout.contains("PermDenied"),
        "{}",
        refused.describe()
    );
    let output = mop_in(&sandbox, &["transfer", &source, &destination, "--sudo"]);
    assert_eq!(output.exit, 0, "{}", output.describe());
    assert_eq!(
        std::fs::read_to_string(&copy).expect("transferred"),
        "root only\n"
    );
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&copy).expect("stat")),
        0,
        "the transferred file belongs to root"
    );
    let _ = std::fs::remove_dir_all(&secret_dir);
}
