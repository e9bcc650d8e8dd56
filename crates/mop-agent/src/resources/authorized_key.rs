//! The `authorized_key` resource: SSH public keys in a user's `~/.ssh/authorized_keys`, with
//! `~/.ssh` (0700) and the file (0600) owned by the user, as sshd's `StrictModes` requires.
//!
//! The home directory belongs to the user, who could plant symlinks there to make a root agent
//! write or chown elsewhere: `~/.ssh` and the file must be a real directory and a regular file
//! (or missing), and the file is replaced by a rename inside `~/.ssh`, never written through.

use std::fs::{self, Metadata};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use mop_protocol::{parse_authorized_key, AuthorizedKeySpec, Presence};

use crate::accounts::{self, UserEntry};
use crate::diff::content_diff;
use crate::fsutil::{self, io_error, FinalAttributes};
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
    let ssh_dir = Path::new(&user.home).join(".ssh");
    let keys_path = ssh_dir.join("authorized_keys");
    let dir_meta = real_or_missing(&ssh_dir, true)?;
    let file_meta = match &dir_meta {
        Some(_) => real_or_missing(&keys_path, false)?,
        None => None,
    };
    let old_text = match &file_meta {
        Some(_) => {
            let bytes = fsutil::read_optional(&keys_path)?.unwrap_or_default();
            Some(String::from_utf8(bytes).map_err(|_| {
                ResourceError::new(format!("`{}` is not UTF-8 text", keys_path.display()))
            })?)
        }
        None => None,
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
        Some(meta) => changes.extend(attribute_changes(&ssh_dir, meta, &user, SSH_DIR_MODE)),
    }
    if let Some(meta) = &file_meta {
        if !content_changed {
            changes.extend(attribute_changes(&keys_path, meta, &user, KEYS_FILE_MODE));
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
    match &dir_meta {
        None => {
            fs::create_dir(&ssh_dir).map_err(|err| io_error("cannot create", &ssh_dir, &err))?;
            fix_attributes(&ssh_dir, &user, SSH_DIR_MODE)?;
        }
        Some(meta) => {
            if !attribute_changes(&ssh_dir, meta, &user, SSH_DIR_MODE).is_empty() {
                fix_attributes(&ssh_dir, &user, SSH_DIR_MODE)?;
            }
        }
    }
    if content_changed {
        fsutil::write_atomic(
            &keys_path,
            new_text.as_bytes(),
            FinalAttributes {
                mode: KEYS_FILE_MODE,
                uid: Some(user.uid),
                gid: Some(user.gid),
            },
        )?;
    } else if file_meta.is_some() {
        fix_attributes(&keys_path, &user, KEYS_FILE_MODE)?;
    }
    Ok(outcome)
}

fn plural(count: usize) -> String {
    if count == 1 {
        "1 key".to_string()
    } else {
        format!("{count} keys")
    }
}

/// The metadata of a real directory (or regular file), `None` when missing; a symlink or
/// anything else is refused.
fn real_or_missing(path: &Path, directory: bool) -> Result<Option<Metadata>, ResourceError> {
    let Some(meta) = fsutil::symlink_metadata(path)? else {
        return Ok(None);
    };
    let expected = if directory {
        meta.is_dir()
    } else {
        meta.file_type().is_file()
    };
    if !expected {
        let what = if directory {
            "a directory"
        } else {
            "a regular file"
        };
        return Err(ResourceError::new(format!(
            "`{}` is not {what} (a symlink or something else stands there); refusing to follow it\nhint: sshd needs a real `~/.ssh` and `authorized_keys`: replace it by hand",
            path.display()
        )));
    }
    Ok(Some(meta))
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

/// Owner first (`chown` clears set-id bits), then the mode; `lchown`, and a last look for a
/// symlink, so that one swapped in since the check is not followed.
fn fix_attributes(path: &Path, user: &UserEntry, mode: u32) -> Result<(), ResourceError> {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))
        .map_err(|err| io_error("cannot change the owner of", path, &err))?;
    if fsutil::symlink_metadata(path)?.is_some_and(|meta| meta.file_type().is_symlink()) {
        return Err(ResourceError::new(format!(
            "`{}` turned into a symlink while mop was working on it; refusing to follow it",
            path.display()
        )));
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|err| io_error("cannot change the mode of", path, &err))
}
