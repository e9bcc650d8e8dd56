//! The vault end to end: files encrypted with `mop vault encrypt` (one to an operator's
//! ssh-ed25519 key, one to a passphrase) give a host its sudo password (`mop_sudo_password` in
//! `group_vars/web.age.toml`) and a served key file, and their plaintext appears nowhere but
//! in the destination file: not in stdout, stderr, `--json`, `-v`, `--diff`, the retry file,
//! the process list sampled during the run, files on the controller or under the login user's
//! home.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mop_testhosts::{TestHostsBuilder, TEST_SUDO_PASSWORD, TEST_SUDO_PASSWORD_USER};

use crate::security_secrets::{assert_watch_clean, ProcessWatch};
use crate::support::{
    assert_not_leaked, mop, parse_json_run, run, send_signal, unique_name, wait_until, JsonRun,
    Output, Running, Sandbox,
};

const VAULT_POLICY: &str = r#"
[fileserver]
paths = ["files"]

[[roles]]
name = "vaulted"
groups = ["web"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}-key.pem"
source = "key.pem.age"
mode = "0600"

# A vault file inside a tree lands under its plaintext name.
[[roles.resources]]
type = "tree"
path = "@OUT@/{{ host.name }}-site"
source = "site"

[[roles.resources]]
type = "command"
cmd = "id -un"
failed_when = "host.name == 'host2'"
"#;

/// Keys and passphrase files for the run, outside the inventory and policy directories.
pub(crate) struct Keys {
    pub(crate) identity: PathBuf,
    pub(crate) public_key: String,
    pub(crate) password_file: PathBuf,
}

pub(crate) fn make_keys(dir: &Path) -> Keys {
    let keys = dir.join("keys");
    std::fs::create_dir(&keys).expect("create keys/");
    let identity = keys.join("id_ed25519");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "operator", "-f"])
        .arg(&identity)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen failed");
    let public_key = std::fs::read_to_string(identity.with_extension("pub"))
        .expect("the public key")
        .trim()
        .to_string();
    let password_file = keys.join("vault-password");
    std::fs::write(&password_file, "a passphrase for the served files\n")
        .expect("write the password file");
    Keys {
        identity,
        public_key,
        password_file,
    }
}

/// Writes `vars` (TOML) as `inventory/group_vars/web.age.toml`, encrypted with `mop vault
/// encrypt` to the operator's ssh key; the plaintext is removed. Returns the vault file.
pub(crate) fn encrypt_group_vars_to_key(sandbox: &Sandbox, keys: &Keys, vars: &str) -> PathBuf {
    let group_vars = sandbox.inventory.join("group_vars");
    std::fs::create_dir_all(&group_vars).expect("create group_vars/");
    let vault = group_vars.join("web.age.toml");
    encrypt_to_key(keys, sandbox.dir(), vars, &vault);
    vault
}

/// Writes `text` as `vault`, encrypted with `mop vault encrypt` to the operator's ssh key,
/// through a plaintext file in `scratch` that is removed afterwards.
fn encrypt_to_key(keys: &Keys, scratch: &Path, text: &str, vault: &Path) {
    let plain = scratch.join("vault.plain");
    std::fs::write(&plain, text).expect("write the plaintext");
    let encrypted = mop_with_keys(
        keys,
        &[
            "vault".into(),
            "encrypt".into(),
            plain.clone().into(),
            "-o".into(),
            vault.into(),
            "--recipient".into(),
            keys.public_key.clone().into(),
        ],
    );
    assert_eq!(encrypted.exit, 0, "{}", encrypted.describe());
    std::fs::remove_file(&plain).expect("remove the plaintext");
}

/// `mop ARGS` with the vault's keys in the environment (paths only: never key material).
pub(crate) fn mop_with_keys(keys: &Keys, args: &[OsString]) -> Output {
    let mut command = mop();
    command
        .args(args)
        .env("MOP_VAULT_IDENTITY", &keys.identity)
        .env("MOP_VAULT_PASSWORD_FILE", &keys.password_file);
    run(&mut command)
}

/// Every regular file under `dir` (not following links) whose content holds `secret`.
pub(crate) fn files_holding(dir: &Path, secret: &[u8], skip: &[PathBuf], found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            files_holding(&path, secret, skip, found);
        } else if kind.is_file() && !skip.contains(&path) {
            let small = entry.metadata().is_ok_and(|meta| meta.len() < 4 << 20);
            if small {
                let bytes = std::fs::read(&path).unwrap_or_default();
                if bytes.windows(secret.len()).any(|window| window == secret) {
                    found.push(path);
                }
            }
        }
    }
}

#[test]
fn vault_secrets_reach_the_hosts_and_nothing_else() {
    let sandbox = Sandbox::start_as(
        "vault",
        TestHostsBuilder::new().hosts(2).group("web"),
        TEST_SUDO_PASSWORD_USER,
    );
    let keys = make_keys(sandbox.dir());
    let canary = format!("-----BEGIN CANARY----- {}", unique_name("vault-canary"));

    // The sudo password, encrypted to the operator's ssh key with `mop vault encrypt`.
    sandbox.set_inventory_extra(
        "",
        &format!(
            "[groups.web.vars]\nmop_ssh_username = \"{TEST_SUDO_PASSWORD_USER}\"\nmop_sudo = true\n"
        ),
    );
    let vars_vault = encrypt_group_vars_to_key(
        &sandbox,
        &keys,
        &format!("mop_sudo_password = \"{TEST_SUDO_PASSWORD}\"\n"),
    );

    // The served file, encrypted to the passphrase in MOP_VAULT_PASSWORD_FILE.
    let files = sandbox.dir().join("files");
    std::fs::create_dir(&files).expect("create files/");
    let plain_key = sandbox.dir().join("key.pem");
    std::fs::write(&plain_key, format!("{canary}\n")).expect("write the plaintext key");
    let encrypted = mop_with_keys(
        &keys,
        &[
            "vault".into(),
            "encrypt".into(),
            plain_key.clone().into(),
            "-o".into(),
            files.join("key.pem.age").into(),
            "--passphrase".into(),
        ],
    );
    assert_eq!(encrypted.exit, 0, "{}", encrypted.describe());
    std::fs::remove_file(&plain_key).expect("remove the plaintext key");
    let site_tls = files.join("site/tls");
    std::fs::create_dir_all(&site_tls).expect("create files/site/tls/");
    std::fs::write(files.join("site/index.html"), "hello\n").expect("write index.html");
    std::fs::copy(files.join("key.pem.age"), site_tls.join("key.pem.age"))
        .expect("copy the vault file into the tree");
    for sealed in [&vars_vault, &files.join("key.pem.age")] {
        let text = std::fs::read_to_string(sealed).expect("read the vault file");
        assert!(
            text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
            "{text}"
        );
        assert_not_leaked(&canary, "a vault file", &text);
        assert_not_leaked(TEST_SUDO_PASSWORD, "a vault file", &text);
    }

    // `mop inventory` shows the vault variable redacted.
    let inventory = mop_with_keys(
        &keys,
        &[
            "inventory".into(),
            "-i".into(),
            sandbox.inventory.clone().into(),
            "--host".into(),
            "host1".into(),
        ],
    );
    assert_eq!(inventory.exit, 0, "{}", inventory.describe());
    assert!(
        inventory.stdout.contains("mop_sudo_password"),
        "{}",
        inventory.describe()
    );
    assert_not_leaked(TEST_SUDO_PASSWORD, "mop inventory", &inventory.stdout);

    let policy = sandbox.policy("vaulted", VAULT_POLICY);
    let retry = sandbox.dir().join("vaulted.retry");
    // Every process's argv and environment are sampled all through both runs, for the canary
    // (unique to this run). Not for the sudo password: it is the same for every test process,
    // and mop-testhosts' own readiness check of concurrently starting hosts passes it in argv.
    let markers = vec![sandbox.agent_dir.clone()];
    let canary_watch = ProcessWatch::start(&canary, &markers);
    let mut args = sandbox.push_args(&policy, &["--apply", "-v", "--diff", "--json"]);
    let json: JsonRun = parse_json_run(mop_with_keys(&keys, &args));
    // Read now: the clean check run below removes it.
    let retry_text = std::fs::read_to_string(&retry)
        .unwrap_or_else(|error| panic!("no retry file `{}`: {error}", retry.display()));
    args = sandbox.push_args(&policy, &["--check", "-v", "--diff"]);
    let text = mop_with_keys(&keys, &args);
    assert_watch_clean(
        &canary_watch.finish(),
        &markers,
        "the vault push (served file)",
    );
    json.assert_exit(1);
    // Check mode runs no command, so host2's `failed_when` does not fail it there.
    assert_eq!(text.exit, 0, "{}", text.describe());

    // The file arrived with the plaintext, and sudo took the vault's password: the command
    // ran as root.
    for host in ["host1", "host2"] {
        let on_host = std::fs::read_to_string(sandbox.out.join(format!("{host}-key.pem")))
            .unwrap_or_else(|error| panic!("{host}: no key file: {error}\n{}", json.describe()));
        assert_eq!(on_host, format!("{canary}\n"), "{host}");
        let tls = sandbox.out.join(format!("{host}-site/tls"));
        let in_tree = std::fs::read_to_string(tls.join("key.pem"))
            .unwrap_or_else(|error| panic!("{host}: no tree key: {error}\n{}", json.describe()));
        assert_eq!(in_tree, format!("{canary}\n"), "{host}");
        assert!(
            !tls.join("key.pem.age").exists(),
            "{host}: plaintext under a vault name"
        );
    }
    for host in ["host1", "host2"] {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(sandbox.out.join(format!("{host}-key.pem"))).expect("stat");
        assert_eq!(
            meta.uid(),
            0,
            "{host}: the key file was not written by sudo as root"
        );
    }
    assert!(
        json.stdout.contains("secret content changed"),
        "the served vault file's diff should say only that it changed:\n{}",
        json.describe()
    );
    for secret in [canary.as_str(), TEST_SUDO_PASSWORD] {
        for (what, output) in [
            ("stdout of --json -v --diff", &json.stdout),
            ("stderr of --json -v --diff", &json.stderr),
            ("stdout of --check -v --diff", &text.stdout),
            ("stderr of --check -v --diff", &text.stderr),
            ("the retry file", &retry_text),
        ] {
            assert_not_leaked(secret, what, output);
        }
    }

    // No file on the controller or under the login user's home holds the plaintext, except
    // the destination files themselves.
    let destinations: Vec<PathBuf> = ["host1", "host2"]
        .iter()
        .flat_map(|host| {
            [
                sandbox.out.join(format!("{host}-key.pem")),
                sandbox.out.join(format!("{host}-site/tls/key.pem")),
            ]
        })
        .collect();
    let mut found = Vec::new();
    for dir in [
        sandbox.dir().to_path_buf(),
        PathBuf::from(format!("/home/{TEST_SUDO_PASSWORD_USER}")),
        std::env::temp_dir(),
    ] {
        files_holding(&dir, canary.as_bytes(), &destinations, &mut found);
    }
    found.retain(|path| !destinations.iter().any(|dest| path.ends_with(dest)));
    assert!(
        found.is_empty(),
        "the vault's plaintext was left in {found:?}"
    );
    sandbox.assert_hosts_clean();
}

#[test]
fn a_vault_nobody_here_can_open_stops_the_run_before_any_host_is_contacted() {
    let sandbox = Sandbox::start(
        "vault-locked",
        TestHostsBuilder::new().hosts(1).group("web"),
    );
    let keys = make_keys(sandbox.dir());
    let group_vars = sandbox.inventory.join("group_vars");
    std::fs::create_dir(&group_vars).expect("create group_vars/");
    let plain = sandbox.dir().join("plain.toml");
    std::fs::write(&plain, "db_password = \"locked-canary\"\n").expect("write");
    // Encrypted to someone else's key.
    let other = sandbox.dir().join("other");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "other", "-f"])
        .arg(&other)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success());
    let other_public = std::fs::read_to_string(other.with_extension("pub")).expect("pub");
    let encrypted = mop_with_keys(
        &keys,
        &[
            "vault".into(),
            "encrypt".into(),
            plain.into(),
            "-o".into(),
            group_vars.join("web.age.toml").into(),
            "-r".into(),
            other_public.trim().into(),
        ],
    );
    assert_eq!(encrypted.exit, 0, "{}", encrypted.describe());
    let policy = sandbox.policy(
        "locked",
        "[[roles]]\nname = \"locked\"\ngroups = [\"web\"]\n\n[[roles.resources]]\ntype = \"echo\"\nmsg = \"hi\"\n",
    );
    let logins = sandbox.logins("host1");
    let output = mop_with_keys(&keys, &sandbox.push_args(&policy, &["--apply"]));
    assert_eq!(output.exit, 2, "{}", output.describe());
    assert!(
        output
            .stderr
            .contains("none of the identities tried can decrypt"),
        "{}",
        output.describe()
    );
    assert!(
        output.stderr.contains("web.age.toml"),
        "{}",
        output.describe()
    );
    assert_not_leaked("locked-canary", "stderr", &output.stderr);
    assert_eq!(sandbox.logins("host1"), logins, "a host was contacted");
}

const READS_A_VAULT_VARIABLE: &str = r#"
[fileserver]
paths = ["files"]

[[roles]]
name = "reads-vault"
groups = ["web"]
before = "true {{ db_password }}"
contact_when = "db_password is defined"

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}.conf"
content = "{{ db_password | default('none') }}"

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}-templated.conf"
template = "files/app.conf.j2"
"#;

#[test]
fn templates_that_read_a_vault_variable_are_refused_before_any_host_is_contacted() {
    let sandbox = Sandbox::start(
        "vault-static",
        TestHostsBuilder::new().hosts(1).group("web"),
    );
    let keys = make_keys(sandbox.dir());
    let canary = unique_name("vault-static-canary");
    let group_vars = sandbox.inventory.join("group_vars");
    std::fs::create_dir(&group_vars).expect("create group_vars/");
    let plain = sandbox.dir().join("plain.toml");
    std::fs::write(&plain, format!("db_password = \"{canary}\"\n")).expect("write");
    let encrypted = mop_with_keys(
        &keys,
        &[
            "vault".into(),
            "encrypt".into(),
            plain.clone().into(),
            "-o".into(),
            group_vars.join("web.age.toml").into(),
            "-r".into(),
            keys.public_key.clone().into(),
        ],
    );
    assert_eq!(encrypted.exit, 0, "{}", encrypted.describe());
    std::fs::remove_file(&plain).expect("remove the plaintext vars");
    let files = sandbox.dir().join("files");
    std::fs::create_dir(&files).expect("create files/");
    std::fs::write(
        files.join("app.conf.j2"),
        "# app\npassword = {{ db_password }}\n",
    )
    .expect("write the template");
    let policy = sandbox.policy("reads-vault", READS_A_VAULT_VARIABLE);
    let shown = policy.display().to_string();
    let template = files.join("app.conf.j2").display().to_string();
    let logins = sandbox.logins("host1");

    let validate = mop_with_keys(
        &keys,
        &[
            "validate".into(),
            "-i".into(),
            sandbox.inventory.clone().into(),
            policy.clone().into(),
        ],
    );
    let push = mop_with_keys(&keys, &sandbox.push_args(&policy, &["--apply"]));
    for (what, output) in [("validate", &validate), ("push", &push)] {
        assert_eq!(output.exit, 2, "{what}: {}", output.describe());
        for place in [
            format!("{shown}:8:10: role `reads-vault`: field `before`: "),
            format!("{shown}:9:16: role `reads-vault`: field `contact_when`: "),
            format!("{shown}:14:11: "),
            format!("{template}:2:"),
        ] {
            assert!(
                output.stderr.lines().any(|line| line
                    .trim_start_matches("error: ")
                    .starts_with(&place)
                    && line.contains(
                        "`db_password` is a secret: templates and expressions cannot read it"
                    )),
                "{what}: no `{place}...` naming the vault variable in\n{}",
                output.stderr
            );
        }
        assert_not_leaked(&canary, &format!("{what} stdout"), &output.stdout);
        assert_not_leaked(&canary, &format!("{what} stderr"), &output.stderr);
    }
    assert_eq!(sandbox.logins("host1"), logins, "a host was contacted");
}

/// An editor for `mop vault edit`: records the path it was given (and its pid) in `marker`,
/// then runs `then` (shell). Written through a child process (see `write_executable`).
fn editor_script(dir: &Path, marker: &Path, then: &str) -> PathBuf {
    let path = dir.join("editor");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n%s\\n' \"$1\" \"$$\" > '{}'\n{then}\n",
        marker.display()
    );
    mop_testhosts::write_executable(&path, script.as_bytes(), 0o755).expect("write the editor");
    path
}

/// The path and pid an editor script recorded, once it has.
fn edited(marker: &Path) -> Option<(PathBuf, u32)> {
    let text = std::fs::read_to_string(marker).ok()?;
    let mut lines = text.lines();
    let path = PathBuf::from(lines.next()?);
    let pid = lines.next()?.parse().ok()?;
    Some((path, pid))
}

fn vault_edit(keys: &Keys, vault: &Path, editor: &Path) -> Command {
    let mut command = mop();
    command
        .arg("vault")
        .arg("edit")
        .arg(vault)
        .env("MOP_VAULT_IDENTITY", &keys.identity)
        .env("MOP_VAULT_PASSWORD_FILE", &keys.password_file)
        .env_remove("VISUAL")
        .env("EDITOR", editor);
    command
}

/// `mop vault edit` decrypts into a private directory, runs the editor, encrypts the result
/// for the same recipients, and leaves no plaintext behind.
#[test]
fn vault_edit_reencrypts_the_edit_and_leaves_no_plaintext() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = make_keys(dir.path());
    let vault = dir.path().join("secrets.age.toml");
    encrypt_to_key(&keys, dir.path(), "token = \"edit-canary\"\n", &vault);
    // A file encrypted to keys is encrypted again to the team's list.
    std::fs::write(
        dir.path().join(".mop-vault-recipients"),
        format!("{}\n", keys.public_key),
    )
    .expect("write the recipients");
    let marker = dir.path().join("edited");
    let editor = editor_script(
        dir.path(),
        &marker,
        "printf 'added = \"line\"\\n' >> \"$1\"",
    );

    let edit = run(&mut vault_edit(&keys, &vault, &editor));
    assert_eq!(edit.exit, 0, "{}", edit.describe());
    let (scratch, _) = edited(&marker).expect("the editor ran");
    assert!(
        !scratch.parent().expect("a directory").exists(),
        "the temporary directory is left: {}",
        scratch.display()
    );
    let sealed = std::fs::read_to_string(&vault).expect("read the vault");
    assert!(
        sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{sealed}"
    );
    assert_not_leaked("edit-canary", "the vault file", &sealed);
    let view = mop_with_keys(
        &keys,
        &["vault".into(), "view".into(), vault.clone().into()],
    );
    assert_eq!(view.exit, 0, "{}", view.describe());
    assert_eq!(view.stdout, "token = \"edit-canary\"\nadded = \"line\"\n");
}

/// Killed while the editor runs, `mop vault edit` still leaves no plaintext: its temporary
/// directory is removed within moments of mop's death.
#[test]
fn vault_edit_killed_mid_edit_leaves_no_plaintext() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = make_keys(dir.path());
    let vault = dir.path().join("secrets.age");
    let marker = dir.path().join("edited");
    // A new file (nothing to decrypt) needs only the recipients.
    std::fs::write(
        dir.path().join(".mop-vault-recipients"),
        format!("{}\n", keys.public_key),
    )
    .expect("write the recipients");
    let editor = editor_script(
        dir.path(),
        &marker,
        "printf 'kill-canary\\n' > \"$1\"\nexec sleep 60",
    );
    let mut running = Running::spawn(&mut vault_edit(&keys, &vault, &editor));
    let mut found = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            found = edited(&marker);
            found.is_some()
        }),
        "the editor did not start"
    );
    let (scratch, editor_pid) = found.expect("recorded");
    let workspace = scratch.parent().expect("a directory").to_path_buf();
    assert!(
        workspace.exists(),
        "the temporary directory exists while editing"
    );

    send_signal(running.child.id(), "-KILL");
    let gone = wait_until(Duration::from_secs(10), || !workspace.exists());
    send_signal(editor_pid, "-KILL");
    let _ = running.wait_for(Duration::from_secs(10));
    assert!(
        gone,
        "the plaintext outlived a killed mop: {}",
        workspace.display()
    );
    assert!(!vault.exists(), "a killed edit wrote the vault file");
}
