//! sudo diagnosis and the `--sudo` copies with real sudo and the test users: a user without
//! sudo rights is told so (not "needs a password"), a user who needs a password is told to
//! set it, a wrong password is named as such, and sudo's own words never reach the operator;
//! `download --sudo` reads a root-only file, and `upload --sudo`/`transfer --sudo` stage only
//! where other local users cannot look, keep the mode, and leave nothing staged behind.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use mop_testhosts::{
    TestHostsBuilder, TEST_NO_SUDO_USER, TEST_SUDO_PASSWORD, TEST_SUDO_PASSWORD_USER,
};

use crate::support::{
    mop, run_mop, send_signal, unique_name, wait_until, Output, Running, Sandbox,
};

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

/// What a watcher saw of this test's staged copies under `/tmp`: every `.mop-*` entry that
/// held the canary (a file) or a file holding it (a directory), with its mode and owner.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Staged {
    path: String,
    mode: u32,
    uid: u32,
}

fn holds(path: &std::path::Path, canary: &[u8]) -> bool {
    use std::io::Read;
    let mut start = vec![0; canary.len()];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut start))
        .is_ok_and(|()| start == canary)
}

/// One look at `/tmp` for staged copies of the canary.
fn staged_now(canary: &[u8]) -> Vec<Staged> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = Vec::new();
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return seen;
    };
    let record = |path: &std::path::Path, meta: &std::fs::Metadata, seen: &mut Vec<Staged>| {
        seen.push(Staged {
            path: path.display().to_string(),
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
        });
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(".mop-") {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_file() && holds(&path, canary) {
            record(&path, &meta, &mut seen);
        } else if meta.is_dir() {
            for child in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                let child_path = child.path();
                let Ok(child_meta) = std::fs::symlink_metadata(&child_path) else {
                    continue;
                };
                if child_meta.is_file() && holds(&child_path, canary) {
                    record(&path, &meta, &mut seen);
                    record(&child_path, &child_meta, &mut seen);
                }
            }
        }
    }
    seen
}

/// Watches `/tmp` for staged copies of the canary until `stop` is set.
fn watch_staging(
    canary: Vec<u8>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<std::collections::BTreeSet<Staged>> {
    std::thread::spawn(move || {
        let mut seen = std::collections::BTreeSet::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            seen.extend(staged_now(&canary));
        }
        seen
    })
}

#[test]
fn sudo_copies_stage_privately_and_keep_the_mode() {
    use std::os::unix::fs::MetadataExt;
    let sandbox = Sandbox::start(
        "sudo-staging",
        TestHostsBuilder::new().hosts(1).group("web"),
    );
    let canary = format!("{}\n", unique_name("staged-canary")).into_bytes();
    // Large enough that the copies stay staged for a while the watcher can see.
    let mut content = canary.clone();
    content.resize(48 << 20, b'x');
    let local = sandbox.dir().join("secret.conf");
    std::fs::write(&local, &content).expect("write the local file");
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // Only root may write here, so both copies need sudo.
    let protected = sandbox.out.join(unique_name("protected"));
    std::fs::create_dir(&protected).expect("create the protected directory");
    std::fs::set_permissions(&protected, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let uploaded = protected.join("uploaded.conf");
    let transferred = protected.join("transferred.conf");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch_staging(canary.clone(), stop.clone());
    let upload = mop_in(
        &sandbox,
        &[
            "upload",
            "web",
            &local.display().to_string(),
            &uploaded.display().to_string(),
            "--sudo",
        ],
    );
    let transfer = mop_in(
        &sandbox,
        &[
            "transfer",
            &format!("host1:{}", uploaded.display()),
            &format!("host1:{}", transferred.display()),
            "--sudo",
        ],
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = watcher.join().expect("the watcher ends");
    assert_eq!(upload.exit, 0, "{}", upload.describe());
    assert_eq!(transfer.exit, 0, "{}", transfer.describe());

    // Both arrive as root's, with the source's 0600, and whole.
    for path in [&uploaded, &transferred] {
        let meta = std::fs::metadata(path).expect("stat the copy");
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid()),
            (0o600, 0),
            "{}",
            path.display()
        );
        assert!(
            std::fs::read(path).expect("read the copy") == content,
            "{} differs",
            path.display()
        );
    }

    // While staged, the content was in a directory only the login user may enter, in a
    // file only its owner may read (root's for a moment on the reading side, before sudo's
    // `chown`: still inside the login user's private directory).
    assert!(
        seen.iter()
            .any(|staged| staged.path.starts_with("/tmp/.mop-upload-")),
        "the watcher never saw the upload staged: {seen:?}"
    );
    for staged in &seen {
        if staged.path.matches('/').count() > 2 {
            assert_eq!(
                staged.mode, 0o600,
                "a staged file others could read: {staged:?}"
            );
        } else {
            assert!(
                staged.mode == 0o700 && staged.uid != 0,
                "a staged copy outside a private directory of the login user: {staged:?}"
            );
        }
    }
    // And nothing of it stays behind.
    assert_eq!(staged_now(&canary), Vec::new(), "staged copies were left");
    let _ = std::fs::remove_dir_all(&protected);
}

#[test]
fn ctrl_c_during_a_sudo_upload_leaves_no_staged_copy() {
    let sandbox = Sandbox::start(
        "sudo-staging-interrupt",
        TestHostsBuilder::new().hosts(1).group("web"),
    );
    let canary = format!("{}\n", unique_name("interrupted-canary")).into_bytes();
    // Large enough that SFTP is still writing the staged copy when Ctrl-C comes.
    let mut content = canary.clone();
    content.resize(256 << 20, b'y');
    let local = sandbox.dir().join("big.bin");
    std::fs::write(&local, &content).expect("write the local file");
    drop(content);
    let protected = sandbox.out.join(unique_name("protected"));
    std::fs::create_dir(&protected).expect("create the protected directory");
    let remote = protected.join("big.bin");
    let inventory = sandbox.inventory.display().to_string();
    let mut running = Running::spawn(mop().args([
        "upload",
        "-i",
        &inventory,
        "web",
        &local.display().to_string(),
        &remote.display().to_string(),
        "--sudo",
    ]));
    let deadline = Instant::now() + Duration::from_secs(60);
    let staged = loop {
        if staged_now(&canary)
            .iter()
            .any(|staged| staged.path.starts_with("/tmp/.mop-upload-"))
        {
            break true;
        }
        if Instant::now() >= deadline || running.child.try_wait().ok().flatten().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if !staged {
        let _ = running.child.kill();
        let output = running.finish(Duration::from_secs(10));
        panic!("the upload was never seen staged\n{}", output.describe());
    }
    send_signal(running.child.id(), "-INT");
    let output = running.finish(Duration::from_secs(30));
    assert_eq!(output.exit, 130, "{}", output.describe());
    assert!(
        wait_until(Duration::from_secs(5), || staged_now(&canary).is_empty()),
        "an interrupted upload left its staged copy: {:?}",
        staged_now(&canary)
    );
    let _ = std::fs::remove_dir_all(&protected);
}
