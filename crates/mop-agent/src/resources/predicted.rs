//! Check mode predicts apply: what earlier resources of this session would have created, so a
//! later resource can tell "its parent directory will exist by then" from "apply will fail".
//!
//! In check mode nothing is created, so a `file` whose parent directory does not exist yet
//! either has it made by an earlier `directory` resource (apply succeeds) or by nobody (apply
//! fails with "parent directory ... does not exist"). The same holds for a missing `owner` or
//! `group`: an earlier `user`/`group` resource creates it, or apply fails. Anything that would
//! run a program or unpack an archive (`shell`, `command`, `package`, `service`, `git`,
//! `unarchive`, ... that would change) may create directories and accounts mop cannot see, so
//! after one the prediction stays silent rather than calling a failure that might not happen.
//!
//! A `file` whose content would be written (created, or its content changed) needs a temporary
//! file next to it: a directory the agent may not write to (its mode, a read-only mount)
//! makes apply fail with "cannot create a temporary file in ...", so check mode asks the
//! kernel the same question ([`fsutil::may_create_in`]) unless an earlier resource would have
//! changed that directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mop_protocol::{Presence, ResourceSpec};

use super::file::absolute_path;
use crate::accounts;
use crate::fsutil;
use crate::outcome::{Outcome, ResourceError};

/// What earlier resources would have created by now (check mode only).
#[derive(Debug)]
pub struct Predicted {
    /// Directories an earlier resource would have created or changed (owner, mode), or links
    /// that may stand for one.
    directories: BTreeSet<PathBuf>,
    users: BTreeSet<String>,
    groups: BTreeSet<String>,
    /// An earlier resource would have run a command: its effects are unknown.
    opaque: bool,
    /// [`fsutil::may_create_in`]; tests, which run as root, put a refusal in its place.
    may_create_in: fn(&Path) -> std::io::Result<()>,
}

impl Default for Predicted {
    fn default() -> Self {
        Predicted {
            directories: BTreeSet::new(),
            users: BTreeSet::new(),
            groups: BTreeSet::new(),
            opaque: false,
            may_create_in: fsutil::may_create_in,
        }
    }
}

impl Predicted {
    /// Fails `spec` now when apply would fail at the same point, with apply's own message.
    pub fn preflight(&self, spec: &ResourceSpec) -> Result<(), ResourceError> {
        if self.opaque {
            return Ok(());
        }
        match spec {
            ResourceSpec::File(file) if file.state.resolved() == Presence::Present => {
                let path = absolute_path(&file.path)?;
                if fsutil::symlink_metadata(path)?.is_none() && !self.parent_will_exist(path) {
                    return Err(fsutil::missing_parent(path));
                }
                self.accounts_will_exist(file.owner.as_deref(), file.group.as_deref())
            }
            ResourceSpec::Directory(directory)
                if directory.state.resolved() == Presence::Present =>
            {
                let path = absolute_path(&directory.path)?;
                let missing = std::fs::metadata(path).is_err();
                if missing && !directory.parents && !self.parent_will_exist(path) {
                    return Err(super::directory::missing_parent(path));
                }
                self.accounts_will_exist(directory.owner.as_deref(), directory.group.as_deref())
            }
            ResourceSpec::Tree(tree) => {
                absolute_path(&tree.path)?;
                self.accounts_will_exist(tree.owner.as_deref(), tree.group.as_deref())
            }
            _ => Ok(()),
        }
    }

    /// Remembers what `spec` would have created, given its check-mode outcome.
    pub fn record(&mut self, spec: &ResourceSpec, outcome: &Outcome) {
        if !outcome.changed {
            return;
        }
        match spec {
            ResourceSpec::Directory(directory)
                if directory.state.resolved() == Presence::Present =>
            {
                let path = Path::new(&directory.path);
                // With `parents`, every missing ancestor is made too; existing ones are
                // harmless in the set.
                let made = if directory.parents {
                    path.ancestors().map(Path::to_path_buf).collect()
                } else {
                    vec![path.to_path_buf()]
                };
                self.directories.extend(made);
            }
            ResourceSpec::User(user) if user.state.resolved() == Presence::Present => {
                self.users.insert(user.name.clone());
                // useradd makes a group of the user's name unless told otherwise.
                self.groups
                    .insert(user.group.clone().unwrap_or_else(|| user.name.clone()));
            }
            ResourceSpec::Group(group) if group.state.resolved() == Presence::Present => {
                self.groups.insert(group.name.clone());
            }
            // A tree makes its top (with parents) and the source's directories: the outcome
            // lists the ones added (`css/`).
            ResourceSpec::Tree(tree) => {
                let top = Path::new(&tree.path);
                self.directories
                    .extend(top.ancestors().map(Path::to_path_buf));
                let added = outcome
                    .extra
                    .get("added")
                    .and_then(|added| added.as_array());
                for path in added.into_iter().flatten().filter_map(|path| path.as_str()) {
                    if let Some(dir) = path.strip_suffix('/') {
                        self.directories.insert(top.join(dir));
                    }
                }
            }
            // A link may stand for a directory a later file goes into.
            ResourceSpec::Link(link) => {
                self.directories.insert(PathBuf::from(&link.path));
            }
            // These change file contents or kernel state, never which directories or
            // accounts exist.
            ResourceSpec::File(_)
            | ResourceSpec::Directory(_)
            | ResourceSpec::User(_)
            | ResourceSpec::Group(_)
            | ResourceSpec::Line(_)
            | ResourceSpec::Block(_)
            | ResourceSpec::Cron(_)
            | ResourceSpec::Sysctl(_)
            | ResourceSpec::Echo(_)
            | ResourceSpec::Set(_)
            | ResourceSpec::Assert(_)
            | ResourceSpec::Fail(_) => {}
            // These run programs or unpack trees (a clone, an archive, a package, `~/.ssh`,
            // a mount point): what they create is not known here, so stay silent from now on.
            // Listed without a catch-all so a new type has to choose.
            ResourceSpec::Shell(_)
            | ResourceSpec::Command(_)
            | ResourceSpec::Package(_)
            | ResourceSpec::Service(_)
            | ResourceSpec::AuthorizedKey(_)
            | ResourceSpec::Download(_)
            | ResourceSpec::Git(_)
            | ResourceSpec::Repository(_)
            | ResourceSpec::Mount(_)
            | ResourceSpec::Unarchive(_) => self.opaque = true,
        }
    }

    /// Fails a check-mode write of `path`'s content where apply could not create its temporary
    /// file, with apply's message. Silent when the directory does not exist yet (an earlier
    /// resource makes it, or the parent check already failed), when an earlier resource would
    /// have changed it, or after a command.
    pub fn parent_takes_new_files(&self, path: &Path) -> Result<(), ResourceError> {
        let Some(dir) = path.parent() else {
            return Ok(());
        };
        if self.opaque || self.directories.contains(dir) || !dir.is_dir() {
            return Ok(());
        }
        (self.may_create_in)(dir).map_err(|err| fsutil::temp_file_error(dir, &err))
    }

    /// Check mode as a user who may not create files anywhere (tests run as root).
    #[cfg(test)]
    pub fn refusing_writes() -> Predicted {
        Predicted {
            may_create_in: |_| Err(std::io::Error::from_raw_os_error(13)),
            ..Predicted::default()
        }
    }

    fn parent_will_exist(&self, path: &Path) -> bool {
        match path.parent() {
            Some(parent) => parent.is_dir() || self.directories.contains(parent),
            None => true,
        }
    }

    fn accounts_will_exist(
        &self,
        owner: Option<&str>,
        group: Option<&str>,
    ) -> Result<(), ResourceError> {
        if let Some(owner) = owner {
            if matches!(accounts::resolve_uid(owner), Ok(None)) && !self.users.contains(owner) {
                return Err(fsutil::missing_user(owner));
            }
        }
        if let Some(group) = group {
            if matches!(accounts::resolve_gid(group), Ok(None)) && !self.groups.contains(group) {
                return Err(fsutil::missing_group(group));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(json: serde_json::Value) -> ResourceSpec {
        serde_json::from_value(json).expect("a valid resource")
    }

    /// Where an earlier resource may have made the directory writable, check mode does not
    /// call a failure: a `directory` resource that changes it, a link, or any command.
    #[test]
    fn an_unwritable_directory_fails_unless_an_earlier_resource_changes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("app.conf");
        let expected =
            fsutil::temp_file_error(dir.path(), &std::io::Error::from_raw_os_error(13)).message;
        let refusing = Predicted::refusing_writes();
        let err = refusing.parent_takes_new_files(&file).expect_err("refused");
        assert_eq!(err.message, expected);
        // A parent that does not exist yet is the missing-parent prediction's business.
        assert!(refusing
            .parent_takes_new_files(&dir.path().join("later/app.conf"))
            .is_ok());

        let dir_text = dir.path().display().to_string();
        let earlier = [
            serde_json::json!({"type": "directory", "path": dir_text, "mode": "0777"}),
            serde_json::json!({"type": "link", "path": dir_text, "target": "/tmp"}),
            serde_json::json!({"type": "shell", "cmd": "chmod 0777 somewhere"}),
        ];
        for spec in earlier {
            let mut predicted = Predicted::refusing_writes();
            let spec = resource(spec);
            // Unchanged, it changes nothing: the prediction stands.
            predicted.record(&spec, &Outcome::unchanged());
            assert!(predicted.parent_takes_new_files(&file).is_err(), "{spec:?}");
            predicted.record(&spec, &Outcome::changed(vec!["x".to_string()]));
            assert!(predicted.parent_takes_new_files(&file).is_ok(), "{spec:?}");
        }

        // For real: this process may write in its own temporary directory.
        assert!(Predicted::default().parent_takes_new_files(&file).is_ok());
    }
}
