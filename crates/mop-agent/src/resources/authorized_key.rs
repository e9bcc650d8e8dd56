//! The `authorized_key` resource: SSH public keys in a user's `~/.ssh/authorized_keys`, with
//! `~/.ssh` (0700) and the file (0600) owned by the user, as sshd's `StrictModes` requires.
//!
//! The home directory belongs to the user, who could plant symlinks there, or swap them in
//! while the agent works, to make a root agent read, write or chown elsewhere. So nothing here
//! goes by path twice ([`crate::dirfd`]): the home, `~/.ssh` and `authorized_keys` are each
//! opened once without following a symlink (a symlink, or anything but a directory and a
//! regular file with one link, is refused), the file is read through its descriptor, owners
//! and modes are set through descriptors, and the new file is created exclusively inside the
//! open `~/.ssh` and renamed there, never written through.

use std::fs::Metadata;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use mop_protocol::{parse_authorized_key, AuthorizedKeySpec, Presence};

use crate::accounts::{self, UserEntry};
use crate::diff::content_diff;
use crate::dirfd::{self, Dir, Ownership};
use crate::fsutil::io_error;
use crate::outcome::{Outcome, ResourceError};

const SSH_DIR_MODE: u32 = 0o700;
const KEYS_FILE_MODE: u32 = 0o600;

pub fn converge(
    spec: &AuthorizedKeySpec,
    check: bool,
    diff: bool,
) -> Result<Outcome, ResourceError> {
    let wanted = spec
        .keys
        .iter()
        .enumerate()
        .map(|(index, line)| {
            parse_authorized_key(line)
                .map_err(|problem| ResourceError::new(format!("`keys[{index}]`: {problem}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if wanted.is_empty() {
        return Err(ResourceError::new("`keys` is empty"));
    }
    let state = spec.state.resolved();
    let user = accounts::lookup_user(&spec.user).map_err(|err| {
        ResourceError::new(format!("cannot read `{}`: {err}", accounts::PASSWD_PATH))
    })?;
    let Some(user) = user else {
        return match (check, state) {
            (_, Presence::Absent) => Ok(Outcome::unchanged()),
            // An earlier `user` resource would have created the account in apply mode.
            (true, Presence::Present) => Ok(Outcome::changed(vec![format!(
                "added {} (user `{}` does not exist yet)",
                plural(wanted.len()),
                spec.user
            )])),
            (false, Presence::Present) => Err(ResourceError::new(format!(
                "user `{}` does not exist\nhint: add a `user` resource for it before this one",
                spec.user
            ))),
        };
    };
    converge_for(spec, &wanted, &user, check, diff)
}

/// `converge` once the user's account is known.
fn converge_for(
    spec: &AuthorizedKeySpec,
    wanted: &[mop_protocol::AuthorizedKeyLine<'_>],
    user: &UserEntry,
    check: bool,
    diff: bool,
) -> Result<Outcome, ResourceError> {
    let state = spec.state.resolved();
    let home_path = Path::new(&user.home);
    let ssh_dir = home_path.join(".ssh");
    let keys_path = ssh_dir.join("authorized_keys");
    let home = open_or_missing(home_path, Dir::open, "a directory")?;
    let ssh = match &home {
        Some(home) => open_or_missing(&ssh_dir, |_| home.open_dir(".ssh"), "a directory")?,
        None => None,
    };
    let dir_meta = match &ssh {
        Some(ssh) => Some(
            ssh.metadata()
                .map_err(|err| io_error("cannot inspect", &ssh_dir, &err))?,
        ),
        None => None,
    };
    let keys_file = match &ssh {
        Some(ssh) => open_or_missing(
            &keys_path,
            |_| ssh.open_file("authorized_keys"),
            "a regular file",
        )?,
        None => None,
    };
    after_open();
    let (file_meta, old_text) = match keys_file {
        Some(mut file) => {
            let meta = file
                .metadata()
                .map_err(|err| io_error("cannot inspect", &keys_path, &err))?;
            if !meta.file_type().is_file() {
                return Err(refusal(&keys_path, "a regular file"));
            }
            if meta.nlink() > 1 {
                return Err(ResourceError::new(format!(
                    "`{}` has other hard links; refusing to read or change it through them\nhint: sshd needs a file of its own: replace it by hand",
                    keys_path.display()
                )));
            }
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .map_err(|err| io_error("cannot read", &keys_path, &err))?;
            let text = String::from_utf8(bytes).map_err(|_| {
                ResourceError::new(format!("`{}` is not UTF-8 text", keys_path.display()))
            })?;
            (Some((file, meta)), Some(text))
        }
        None => (None, None),
    };
    let mut changes = Vec::new();
    let mut lines: Vec<String> = old_text
        .as_deref()
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let identity_of = |line: &str| {
        parse_authorized_key(line)
            .ok()
            .map(|key| (key.key_type.to_string(), key.body.to_string()))
    };
    match state {
        Presence::Present => {
            for (key, text) in wanted.iter().zip(&spec.keys) {
                let text = text.trim();
                let identity = (key.key_type.to_string(), key.body.to_string());
                match lines
                    .iter()
                    .position(|line| identity_of(line).as_ref() == Some(&identity))
                {
                    Some(index) if lines[index].trim() == text => {}
                    Some(index) => {
                        lines[index] = text.to_string();
                        changes.push(format!("updated key {}", key.label()));
                    }
                    None => {
                        lines.push(text.to_string());
                        changes.push(format!("added key {}", key.label()));
                    }
                }
            }
            if spec.exclusive {
                let kept: Vec<(String, String)> = wanted
                    .iter()
                    .map(|key| (key.key_type.to_string(), key.body.to_string()))
                    .collect();
                let mut seen = Vec::new();
                lines.retain(|line| {
                    let Some(identity) = identity_of(line) else {
                        // Comments and blank lines are not keys.
                        return true;
                    };
                    let keep = kept.contains(&identity) && !seen.contains(&identity);
                    if keep {
                        seen.push(identity);
                    } else if let Ok(key) = parse_authorized_key(line) {
                        changes.push(format!("removed key {}", key.label()));
                    }
                    keep
                });
            }
        }
        Presence::Absent => {
            let removed: Vec<(String, String)> = wanted
                .iter()
                .map(|key| (key.key_type.to_string(), key.body.to_string()))
                .collect();
            lines.retain(|line| match identity_of(line) {
                Some(identity) if removed.contains(&identity) => {
                    if let Ok(key) = parse_authorized_key(line) {
                        changes.push(format!("removed key {}", key.label()));
                    }
                    false
                }
                _ => true,
            });
            if file_meta.is_none() {
                return Ok(Outcome::unchanged());
            }
        }
    }
    let mut new_text = lines.join("\n");
    if !new_text.is_empty() {
        new_text.push('\n');
    }
    let content_changed = old_text.as_deref() != Some(new_text.as_str());

    // The modes and owner sshd insists on.
    match &dir_meta {
        None => changes.insert(0, format!("created `{}` (0700)", ssh_dir.display())),
        Some(meta) => changes.extend(attribute_changes(&ssh_dir, meta, user, SSH_DIR_MODE)),
    }
    if let Some((_, meta)) = &file_meta {
        if !content_changed {
            changes.extend(attribute_changes(&keys_path, meta, user, KEYS_FILE_MODE));
        }
    }
    if changes.is_empty() && !content_changed {
        return Ok(Outcome::unchanged());
    }
    let mut outcome = Outcome::changed(changes);
    if diff && content_changed {
        outcome.diff = Some(content_diff(
            &keys_path.display().to_string(),
            old_text.as_deref().map(str::as_bytes),
            new_text.as_bytes(),
        ));
    }
    if check {
        return Ok(outcome);
    }
    let dir_ownership = Ownership {
        uid: user.uid,
        gid: user.gid,
        mode: SSH_DIR_MODE,
    };
    let ssh = match (ssh, &dir_meta) {
        (Some(ssh), Some(meta)) => {
            if !attribute_changes(&ssh_dir, meta, user, SSH_DIR_MODE).is_empty() {
                ssh.set_ownership(dir_ownership)
                    .map_err(|err| io_error("cannot set the owner and mode of", &ssh_dir, &err))?;
            }
            ssh
        }
        _ => {
            let Some(home) = &home else {
                return Err(ResourceError::new(format!(
                    "the home directory `{}` of user `{}` does not exist\nhint: create it (a `user` resource with a home, or a `directory` resource) before this one",
                    home_path.display(),
                    user.name
                )));
            };
            home.create_dir(".ssh", SSH_DIR_MODE)
                .map_err(|err| io_error("cannot create", &ssh_dir, &err))?;
            let ssh = open_or_missing(&ssh_dir, |_| home.open_dir(".ssh"), "a directory")?
                .ok_or_else(|| {
                    ResourceError::new(format!(
                        "`{}` disappeared while mop was creating it",
                        ssh_dir.display()
                    ))
                })?;
            ssh.set_ownership(dir_ownership)
                .map_err(|err| io_error("cannot set the owner and mode of", &ssh_dir, &err))?;
            ssh
        }
    };
    let file_ownership = Ownership {
        uid: user.uid,
        gid: user.gid,
        mode: KEYS_FILE_MODE,
    };
    if content_changed {
        ssh.replace_file("authorized_keys", new_text.as_bytes(), file_ownership)
            .map_err(|err| io_error("cannot replace", &keys_path, &err))?;
    } else if let Some((file, _)) = &file_meta {
        dirfd::set_ownership(file, file_ownership)
            .map_err(|err| io_error("cannot set the owner and mode of", &keys_path, &err))?;
    }
    Ok(outcome)
}

// Where tests swap entries between the opens and the reads and writes that follow.
#[cfg(test)]
thread_local! {
    static AFTER_OPEN: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
        std::cell::RefCell::new(None);
}

fn after_open() {
    #[cfg(test)]
    AFTER_OPEN.with(|hook| {
        if let Some(hook) = hook.borrow_mut().take() {
            hook();
        }
    });
}

fn plural(count: usize) -> String {
    if count == 1 {
        "1 key".to_string()
    } else {
        format!("{count} keys")
    }
}

/// What `open` gives for `path`, `None` when nothing is there; a symlink (never followed) or
/// anything but `what` is refused.
fn open_or_missing<T>(
    path: &Path,
    open: impl FnOnce(&Path) -> io::Result<T>,
    what: &str,
) -> Result<Option<T>, ResourceError> {
    match open(path) {
        Ok(opened) => Ok(Some(opened)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) if dirfd::is_not_followed(&err) => Err(refusal(path, what)),
        Err(err) => Err(io_error("cannot open", path, &err)),
    }
}

fn refusal(path: &Path, what: &str) -> ResourceError {
    ResourceError::new(format!(
        "`{}` is not {what} (a symlink or something else stands there); refusing to follow it\nhint: sshd needs a real `~/.ssh` and `authorized_keys`: replace it by hand",
        path.display()
    ))
}

fn attribute_changes(path: &Path, meta: &Metadata, user: &UserEntry, mode: u32) -> Vec<String> {
    let mut changes = Vec::new();
    if meta.uid() != user.uid || meta.gid() != user.gid {
        changes.push(format!(
            "owner of `{}` {}:{} -> {}:{}",
            path.display(),
            accounts::user_display(meta.uid()),
            accounts::group_display(meta.gid()),
            user.name,
            accounts::group_display(user.gid)
        ));
    }
    let current = meta.mode() & 0o7777;
    if current != mode {
        changes.push(format!(
            "mode of `{}` {current:04o} -> {mode:04o}",
            path.display()
        ));
    }
    changes
}

#[cfg(test)]
mod tests {
    //! These run as root, like the agent: the owner of the home is a made-up uid, and what
    //! must not happen is root following the owner's symlinks or hard links.

    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::PathBuf;

    use mop_protocol::Templated;

    use super::*;

    const OWNER: u32 = 64_123;
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKr0g2tW2hZ0xyz alice@laptop";

    fn spec(state: Presence) -> AuthorizedKeySpec {
        AuthorizedKeySpec {
            user: "alice".to_string(),
            keys: vec![KEY.to_string()],
            state: Templated::Value(state),
            exclusive: false,
        }
    }

    fn alice(home: &Path) -> UserEntry {
        UserEntry {
            name: "alice".to_string(),
            uid: OWNER,
            gid: OWNER,
            comment: String::new(),
            home: home.display().to_string(),
            shell: "/bin/sh".to_string(),
        }
    }

    fn run(home: &Path, state: Presence, check: bool) -> Result<Outcome, ResourceError> {
        let spec = spec(state);
        let wanted: Vec<_> = spec
            .keys
            .iter()
            .map(|line| parse_authorized_key(line).expect("a valid key"))
            .collect();
        converge_for(&spec, &wanted, &alice(home), check, true)
    }

    /// A home owned by the user, and beside it a directory of root's with a file the user
    /// must neither read through the agent nor get written: content, mode and owner.
    struct Scene {
        _root: tempfile::TempDir,
        home: PathBuf,
        outside: PathBuf,
        secret: PathBuf,
    }

    impl Scene {
        fn new() -> Scene {
            let root = tempfile::tempdir().expect("tempdir");
            let home = root.path().join("alice");
            let outside = root.path().join("root-only");
            fs::create_dir(&home).expect("home");
            std::os::unix::fs::chown(&home, Some(OWNER), Some(OWNER)).expect("chown the home");
            fs::create_dir(&outside).expect("outside");
            let secret = outside.join("shadow");
            fs::write(&secret, "root:secret-hash-4711\n").expect("secret");
            fs::set_permissions(&secret, fs::Permissions::from_mode(0o640)).expect("chmod");
            Scene {
                home,
                outside,
                secret,
                _root: root,
            }
        }

        /// Everything under the outside directory: names, modes, owners and contents.
        fn outside_state(&self) -> Vec<(String, u32, u32, Vec<u8>)> {
            let mut entries: Vec<_> = fs::read_dir(&self.outside)
                .expect("list")
                .map(|entry| {
                    let path = entry.expect("entry").path();
                    let meta = fs::symlink_metadata(&path).expect("stat");
                    let content = if meta.is_file() {
                        fs::read(&path).expect("read")
                    } else {
                        Vec::new()
                    };
                    (path.display().to_string(), meta.mode(), meta.uid(), content)
                })
                .collect();
            entries.sort();
            entries
        }
    }

    fn set_after_open(hook: impl FnOnce() + 'static) {
        AFTER_OPEN.with(|slot| *slot.borrow_mut() = Some(Box::new(hook)));
    }

    #[test]
    fn keys_are_added_with_the_modes_sshd_wants_and_removed() {
        let scene = Scene::new();
        let added = run(&scene.home, Presence::Present, false).expect("added");
        assert!(added.changed, "{added:?}");
        let ssh = scene.home.join(".ssh");
        let keys = ssh.join("authorized_keys");
        assert_eq!(fs::read_to_string(&keys).expect("keys"), format!("{KEY}\n"));
        for (path, mode) in [(&ssh, 0o700), (&keys, 0o600)] {
            let meta = fs::metadata(path).expect("stat");
            assert_eq!(
                (meta.mode() & 0o7777, meta.uid(), meta.gid()),
                (mode, OWNER, OWNER)
            );
        }
        assert!(
            !run(&scene.home, Presence::Present, false)
                .expect("again")
                .changed
        );
        // A wrong mode is fixed through the open file, content unchanged.
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o644)).expect("chmod");
        let fixed = run(&scene.home, Presence::Present, false).expect("fixed");
        assert!(fixed
            .changes
            .iter()
            .any(|change| change.contains("0644 -> 0600")));
        assert_eq!(fs::metadata(&keys).expect("stat").mode() & 0o7777, 0o600);
        let removed = run(&scene.home, Presence::Absent, false).expect("removed");
        assert!(removed.changed);
        assert_eq!(fs::read_to_string(&keys).expect("keys"), "");
        let leftovers: Vec<_> = fs::read_dir(&ssh)
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers, ["authorized_keys"], "no temporary file is left");
    }

    #[test]
    fn a_symlinked_ssh_dir_or_keys_file_is_refused_and_nothing_outside_is_touched() {
        // `~/.ssh` -> a root directory.
        let scene = Scene::new();
        let before = scene.outside_state();
        symlink(&scene.outside, scene.home.join(".ssh")).expect("symlink");
        for check in [true, false] {
            let error = run(&scene.home, Presence::Present, check).expect_err("refused");
            assert!(error.message.contains("refusing to follow it"), "{error}");
        }
        assert_eq!(scene.outside_state(), before);

        // `~/.ssh/authorized_keys` -> a root file, and a hard link to it.
        let scene = Scene::new();
        let before = scene.outside_state();
        let ssh = scene.home.join(".ssh");
        fs::create_dir(&ssh).expect("mkdir");
        symlink(&scene.secret, ssh.join("authorized_keys")).expect("symlink");
        for check in [true, false] {
            let error = run(&scene.home, Presence::Present, check).expect_err("refused");
            assert!(error.message.contains("refusing to follow it"), "{error}");
            assert!(!error.message.contains("secret-hash"), "{error}");
        }
        fs::remove_file(ssh.join("authorized_keys")).expect("unlink");
        fs::hard_link(&scene.secret, ssh.join("authorized_keys")).expect("hard link");
        for check in [true, false] {
            let error = run(&scene.home, Presence::Present, check).expect_err("refused");
            assert!(error.message.contains("other hard links"), "{error}");
        }
        assert_eq!(scene.outside_state(), before);
    }

    #[test]
    fn symlinks_swapped_in_after_the_checks_are_never_followed() {
        // `~/.ssh` is a real directory when it is opened, then the owner moves it away and
        // puts a symlink to a root directory in its place: the key lands in the directory
        // that was opened, and nothing is created or changed in the root directory.
        let scene = Scene::new();
        let before = scene.outside_state();
        let ssh = scene.home.join(".ssh");
        fs::create_dir(&ssh).expect("mkdir");
        fs::write(ssh.join("authorized_keys"), "").expect("empty keys");
        let (moved, outside) = (scene.home.join("moved"), scene.outside.clone());
        let ssh_for_hook = ssh.clone();
        set_after_open(move || {
            fs::rename(&ssh_for_hook, &moved).expect("move .ssh away");
            symlink(&outside, &ssh_for_hook).expect("plant the symlink");
        });
        run(&scene.home, Presence::Present, false).expect("converged");
        assert_eq!(scene.outside_state(), before, "nothing written outside");
        assert_eq!(
            fs::read_to_string(scene.home.join("moved/authorized_keys")).expect("keys"),
            format!("{KEY}\n")
        );

        // `authorized_keys` is swapped for a symlink to a root file after it was opened: the
        // diff shows what was opened, never the root file, and the root file is unchanged.
        let scene = Scene::new();
        let before = scene.outside_state();
        let ssh = scene.home.join(".ssh");
        fs::create_dir(&ssh).expect("mkdir");
        let keys = ssh.join("authorized_keys");
        fs::write(&keys, "# alice's keys\n").expect("keys");
        let secret = scene.secret.clone();
        let keys_for_hook = keys.clone();
        set_after_open(move || {
            fs::remove_file(&keys_for_hook).expect("unlink");
            symlink(&secret, &keys_for_hook).expect("plant the symlink");
        });
        let outcome = run(&scene.home, Presence::Present, false).expect("converged");
        let diff = outcome.diff.expect("a diff");
        assert!(diff.contains("# alice's keys"), "{diff}");
        assert!(!diff.contains("secret-hash"), "{diff}");
        assert_eq!(scene.outside_state(), before, "the root file is untouched");
        // The symlink was replaced by the new file (rename replaces the link itself).
        let meta = fs::symlink_metadata(&keys).expect("stat");
        assert!(meta.file_type().is_file());
        assert_eq!(meta.uid(), OWNER);
    }
}
