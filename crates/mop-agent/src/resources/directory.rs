//! The `directory` resource: create (with parents), owner/group/mode, remove (recursive only
//! when asked).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use mop_protocol::{DirectorySpec, Presence};

use super::file::absolute_path;
use crate::fsutil::{self, io_error, WantedAttributes};
use crate::outcome::{Outcome, ResourceError};

pub fn converge(spec: &DirectorySpec, check: bool) -> Result<Outcome, ResourceError> {
    let path = absolute_path(&spec.path)?;
    match spec.state.resolved() {
        Presence::Present => present(path, spec, check),
        Presence::Absent => absent(path, spec.recursive, check),
    }
}

fn present(path: &Path, spec: &DirectorySpec, check: bool) -> Result<Outcome, ResourceError> {
    let wanted =
        WantedAttributes::resolve(spec.owner.as_deref(), spec.group.as_deref(), spec.mode)?;
    // Follow a symlink: a link to a directory is a directory for this purpose (e.g. `/var/www`
    // pointing to `/srv/www`), and attributes apply to the target.
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let changes = wanted.changes(&meta);
            if changes.is_empty() {
                return Ok(Outcome::unchanged());
            }
            if !check {
                wanted.apply_to_path(path)?;
            }
            Ok(Outcome::changed(changes))
        }
        Ok(_) => Err(ResourceError::new(format!(
            "`{}` exists and is not a directory\nhint: remove it first with a `file` resource (state = \"absent\")",
            path.display()
        ))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => create(path, spec, &wanted, check),
        Err(err) => Err(io_error("cannot inspect", path, &err)),
    }
}

/// Apply's failure for a directory whose parent is missing (check mode says the same when no
/// earlier resource creates the parent).
pub(super) fn missing_parent(path: &Path) -> ResourceError {
    ResourceError::new(format!(
        "parent directory of `{}` does not exist\nhint: set `parents = true`, or add a `directory` resource for the parent first",
        path.display()
    ))
}

fn create(
    path: &Path,
    spec: &DirectorySpec,
    wanted: &WantedAttributes,
    check: bool,
) -> Result<Outcome, ResourceError> {
    let parent_exists = path.parent().is_some_and(Path::is_dir);
    if !parent_exists && !spec.parents {
        if check {
            return Ok(Outcome::changed(vec![format!(
                "created (its parent directory does not exist yet: `{}`)",
                path.parent()
                    .map(|parent| parent.display().to_string())
                    .unwrap_or_default()
            )]));
        }
        return Err(missing_parent(path));
    }
    if check {
        return Ok(Outcome::changed(vec!["created".to_string()]));
    }
    wanted.require_accounts()?;
    let result = if spec.parents {
        fs::create_dir_all(path)
    } else {
        fs::create_dir(path)
    };
    result.map_err(|err| io_error("cannot create directory", path, &err))?;
    // mkdir applies the umask; an explicit mode must be exact.
    let mode_wanted = wanted.mode.unwrap_or_else(fsutil::default_dir_mode);
    fs::set_permissions(path, fs::Permissions::from_mode(mode_wanted))
        .map_err(|err| io_error("cannot change the mode of", path, &err))?;
    wanted.apply_to_path(path)?;
    Ok(Outcome::changed(vec!["created".to_string()]))
}

fn absent(path: &Path, recursive: bool, check: bool) -> Result<Outcome, ResourceError> {
    let Some(meta) = fsutil::symlink_metadata(path)? else {
        return Ok(Outcome::unchanged());
    };
    if meta.file_type().is_symlink() {
        return Err(ResourceError::new(format!(
            "`{}` is a symbolic link, not a directory\nhint: remove links with a `link` resource (state = \"absent\")",
            path.display()
        )));
    }
    if !meta.is_dir() {
        return Err(ResourceError::new(format!(
            "`{}` is not a directory\nhint: remove files with a `file` resource (state = \"absent\")",
            path.display()
        )));
    }
    let mut entries = fs::read_dir(path).map_err(|err| io_error("cannot list", path, &err))?;
    let empty = entries.next().is_none();
    if !empty && !recursive {
        return Err(ResourceError::new(format!(
            "directory `{}` is not empty\nhint: set `recursive = true` to remove it with everything in it",
            path.display()
        )));
    }
    if !check {
        let result = if empty {
            fs::remove_dir(path)
        } else {
            fs::remove_dir_all(path)
        };
        result.map_err(|err| io_error("cannot remove", path, &err))?;
    }
    Ok(Outcome::changed(vec![if empty {
        "removed"
    } else {
        "removed recursively"
    }
    .to_string()]))
}

#[cfg(test)]
mod tests {
    use mop_protocol::FileMode;

    use super::super::testing::snapshot;
    use super::*;

    fn spec(path: &Path) -> DirectorySpec {
        DirectorySpec {
            path: path.display().to_string(),
            owner: None,
            group: None,
            mode: None,
            state: Presence::Present.into(),
            parents: true,
            recursive: false,
        }
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).expect("exists").permissions().mode() & 0o7777
    }

    #[test]
    fn creates_with_parents_and_exact_mode_then_converged() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("a/b/c");
        let directory = DirectorySpec {
            mode: Some(FileMode(0o2770)),
            ..spec(&path)
        };
        let before = snapshot(root.path());
        assert_eq!(
            converge(&directory, true).expect("check").changes,
            vec!["created".to_string()]
        );
        assert_eq!(snapshot(root.path()), before);
        assert!(converge(&directory, false).expect("apply").changed);
        assert_eq!(mode_of(&path), 0o2770);
        assert_eq!(
            converge(&directory, false).expect("again"),
            Outcome::unchanged()
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(
            converge(&directory, false).expect("fix").changes,
            vec!["mode 0755 -> 2770".to_string()]
        );
        assert_eq!(mode_of(&path), 0o2770);
    }

    #[test]
    fn without_parents_a_missing_parent_fails() {
        let root = tempfile::tempdir().expect("tempdir");
        let directory = DirectorySpec {
            parents: false,
            ..spec(&root.path().join("x/y"))
        };
        let err = converge(&directory, false).expect_err("no parent");
        assert!(err.message.contains("set `parents = true`"), "{err}");
        assert!(!root.path().join("x").exists());
    }

    #[test]
    fn a_file_in_the_way_fails() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("f");
        fs::write(&path, "x").expect("write");
        let err = converge(&spec(&path), false).expect_err("file");
        assert!(err.message.contains("is not a directory"), "{err}");
    }

    #[test]
    fn absent_requires_recursive_for_a_non_empty_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("data");
        fs::create_dir_all(path.join("sub")).expect("mkdir");
        fs::write(path.join("sub/file"), "x").expect("write");
        let absent = DirectorySpec {
            state: Presence::Absent.into(),
            ..spec(&path)
        };
        let err = converge(&absent, false).expect_err("not empty");
        assert!(err.message.contains("set `recursive = true`"), "{err}");
        assert!(path.join("sub/file").exists());

        let recursive = DirectorySpec {
            recursive: true,
            ..absent.clone()
        };
        let before = snapshot(root.path());
        assert!(converge(&recursive, true).expect("check").changed);
        assert_eq!(snapshot(root.path()), before);
        assert_eq!(
            converge(&recursive, false).expect("apply").changes,
            vec!["removed recursively".to_string()]
        );
        assert!(!path.exists());
        assert!(!converge(&recursive, false).expect("again").changed);

        fs::create_dir(&path).expect("mkdir");
        assert_eq!(
            converge(&absent, false).expect("empty").changes,
            vec!["removed".to_string()]
        );
    }
}
