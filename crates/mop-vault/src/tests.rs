//! Round trips through real age files: passphrase, age keys and ssh-ed25519 keys made by
//! `ssh-keygen`, and the errors an operator meets.

use std::path::Path;
use std::process::Command;

use age::secrecy::{ExposeSecret, SecretString};

use super::*;

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write test file");
}

#[test]
fn passphrase_round_trip_and_wrong_passphrase() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = b"db_password = \"canary-passphrase\"\n";
    let sealed = encrypt(
        secret,
        &Recipients::Passphrase(SecretString::from("correct horse".to_string())),
    )
    .expect("encrypts");
    let text = String::from_utf8(sealed.clone()).expect("armored text");
    assert!(
        text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{text}"
    );
    assert!(!text.contains("canary"), "{text}");

    write(&dir.path().join("good"), "correct horse\n");
    let unlocker = Unlocker::new(Vec::new(), Some(dir.path().join("good")));
    let (plaintext, with) = unlocker
        .decrypt(&sealed, Path::new("secrets.toml.age"))
        .expect("decrypts");
    assert_eq!(plaintext.expose(), secret);
    assert_eq!(with, UnlockedWith::Passphrase);
    assert!(!format!("{plaintext:?}").contains("canary"));

    write(&dir.path().join("bad"), "wrong horse\n");
    let error = Unlocker::new(Vec::new(), Some(dir.path().join("bad")))
        .decrypt(&sealed, Path::new("secrets.toml.age"))
        .expect_err("wrong passphrase");
    assert_eq!(error.to_string(), "wrong passphrase for `secrets.toml.age`");

    let error = Unlocker::new(Vec::new(), None)
        .decrypt(&sealed, Path::new("s.age"))
        .expect_err("no passphrase source");
    assert!(
        error.to_string().contains("MOP_VAULT_PASSWORD_FILE"),
        "{error}"
    );
}

#[test]
fn ssh_ed25519_keys_share_a_vault() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut public_keys = String::from("# the team\n");
    for name in ["alice", "bob"] {
        let key = dir.path().join(name);
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen runs");
        assert!(status.success());
        public_keys
            .push_str(&std::fs::read_to_string(key.with_extension("pub")).expect("public key"));
    }
    let recipients = parse_recipients(&public_keys, "team").expect("valid keys");
    assert_eq!(recipients.len(), 2);
    let sealed = encrypt(b"canary-ssh", &Recipients::Keys(recipients)).expect("encrypts");
    for name in ["alice", "bob"] {
        let unlocker = Unlocker::new(vec![dir.path().join(name)], None);
        let (plaintext, with) = unlocker
            .decrypt(&sealed, Path::new("v.age"))
            .expect("each member decrypts");
        assert_eq!(plaintext.expose(), b"canary-ssh");
        assert_eq!(with, UnlockedWith::Identity);
    }

    let outsider = age::x25519::Identity::generate();
    write(
        &dir.path().join("outsider"),
        outsider.to_string().expose_secret(),
    );
    let error = Unlocker::new(vec![dir.path().join("outsider")], None)
        .decrypt(&sealed, Path::new("v.age"))
        .expect_err("not a recipient");
    let text = error.to_string();
    assert!(
        text.starts_with("none of the identities tried can decrypt `v.age`"),
        "{text}"
    );
    assert!(text.contains("outsider"), "{text}");
}

#[test]
fn age_keys_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let identity = age::x25519::Identity::generate();
    let identity_file = dir.path().join("key.txt");
    write(
        &identity_file,
        &format!(
            "# created for a test\n{}\n",
            identity.to_string().expose_secret()
        ),
    );
    let recipients =
        parse_recipients(&identity.to_public().to_string(), "inline").expect("valid key");
    let sealed = encrypt(b"canary-age", &Recipients::Keys(recipients)).expect("encrypts");
    let plaintext = Unlocker::new(vec![identity_file], None)
        .decrypt(&sealed, Path::new("v.age"))
        .expect("decrypts")
        .0;
    assert_eq!(plaintext.expose(), b"canary-age");
}

#[test]
fn bad_recipient_lines_are_all_reported_without_echoing_them() {
    let error = parse_recipients(
        "age1notakey\n\nAGE-SECRET-KEY-1PRIVATE\nssh-ed25519 AAAAbroken\n",
        "team/.mop-vault-recipients",
    )
    .err()
    .expect("bad lines");
    let text = error.to_string();
    assert!(
        text.contains("team/.mop-vault-recipients:1:1: not a valid"),
        "{text}"
    );
    assert!(
        text.contains("team/.mop-vault-recipients:3:1: expected"),
        "{text}"
    );
    assert!(
        text.contains("team/.mop-vault-recipients:4:1: not a usable"),
        "{text}"
    );
    assert!(!text.contains("PRIVATE"), "{text}");
    assert!(parse_recipients("# nobody\n", "r").is_err());
}

#[test]
fn plaintext_files_are_refused_naming_the_file() {
    let error = Unlocker::new(Vec::new(), None)
        .decrypt(
            b"db_password = \"x\"\n",
            Path::new("group_vars/db.age.toml"),
        )
        .expect_err("not encrypted");
    assert!(
        error
            .to_string()
            .starts_with("`group_vars/db.age.toml` is not an age file"),
        "{error}"
    );
}

#[test]
fn vault_paths() {
    for (path, expected) in [
        ("secrets.toml.age", true),
        ("group_vars/db.age.toml", true),
        ("files/key.pem.age", true),
        ("db.toml", false),
        ("agenda.toml", false),
        ("page", false),
    ] {
        assert_eq!(is_vault_path(Path::new(path)), expected, "{path}");
    }
}

#[test]
fn recipients_file_is_found_in_parents() {
    let dir = tempfile::tempdir().expect("temp dir");
    let nested = dir.path().join("a/b");
    std::fs::create_dir_all(&nested).expect("mkdir");
    assert_eq!(find_recipients_file(&nested), None);
    write(&dir.path().join("a").join(RECIPIENTS_FILE_NAME), "age1x\n");
    assert_eq!(
        find_recipients_file(&nested),
        Some(dir.path().join("a").join(RECIPIENTS_FILE_NAME))
    );
}

#[test]
fn plaintext_names_drop_the_vault_suffix() {
    assert_eq!(
        plaintext_name("tls/server.key.age").as_deref(),
        Some("tls/server.key")
    );
    assert_eq!(plaintext_name("app.age.toml").as_deref(), Some("app.toml"));
    assert_eq!(plaintext_name("app.toml"), None);
    assert_eq!(plaintext_name("notes.agenda"), None);
    for name in ["a.age", "b.age.toml", "c.toml.age"] {
        assert_eq!(
            is_vault_path(Path::new(name)),
            plaintext_name(name).is_some(),
            "{name}"
        );
    }
}
