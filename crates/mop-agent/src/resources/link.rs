//! The `link` resource: a symbolic link, replaced atomically when it points elsewhere.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mop_protocol::{LinkSpec, Presence};

use super::file::absolute_path;
use crate::fsutil::{self, io_error};
use crate::outcome::{Outcome, ResourceError};

pub fn converge(spec: &LinkSpec, check: bool) -> Result<Outcome, ResourceError> {
    let path = absolute_path(&spec.path)?;
    let existing = fsutil::symlink_metadata(path)?;
    match spec.state.resolved() {
        Presence::Absent => match existing {
            None => Ok(Outcome::unchanged()),
            Some(meta) if meta.file_type().is_symlink() => {
                if !check {
                    fs::remove_file(path).map_err(|err| io_error("cannot remove", path, &err))?;
                }
                Ok(Outcome::changed(vec!["removed".to_string()]))
            }
            Some(_) => Err(ResourceError::new(format!(
                "`{}` is not a symbolic link; refusing to remove it\nhint: use a `file` or `directory` resource to remove it",
                path.display()
            ))),
        },
        Presence::Present => {
            let target = spec.target.as_deref().ok_or_else(|| ResourceError::new("`target` is required when the link is present"))?;
            present(path, target, existing, spec.force, check)
        }
    }
}

fn present(
    path: &Path,
    target: &str,
    existing: Option<fs::Metadata>,
    force: bool,
    check: bool,
) -> Result<Outcome, ResourceError> {
    let change = match existing {
        None => {
            if !path.parent().is_some_and(Path::is_dir) {
                if check {
                    return Ok(Outcome::changed(vec!["created (its parent directory does not exist yet)".to_string()]));
                }
                return Err(fsutil::missing_parent(path));
            }
            format!("created -> {target}")
        }
        Some(meta) if meta.file_type().is_symlink() => {
            let current = fs::read_link(path).map_err(|err| io_error("cannot read link", path, &err))?;
            if current == Path::new(target) {
                return Ok(Outcome::unchanged());
            }
            format!("target {} -> {target}", current.display())
        }
        Some(meta) if meta.is_dir() => {
            return Err(ResourceError::new(format!(
                "a directory stands where the link `{}` should be; refusing to replace it\nhint: remove it first with a `directory` resource (state = \"absent\", recursive = true)",
                path.display()
            )))
        }
        Some(_) if !force => {
            return Err(ResourceError::new(format!(
                "a file stands where the link `{}` should be\nhint: set `force = true` to replace it",
                path.display()
            )))
        }
        Some(_) => format!("replaced file with link -> {target}"),
    };
    if !check {
        replace_with_symlink(path, target)?;
    }
    Ok(Outcome::changed(vec![change]))
}

static LINK_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Creates the link under a temporary name and renames it into place, so the path is never
/// missing for a moment (a service reading it mid-change sees the old or the new target).
fn replace_with_symlink(path: &Path, target: &str) -> Result<(), ResourceError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let base = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp: PathBuf = loop {
        let candidate = dir.join(format!(
            ".{base}.mop-link-{}-{}",
            std::process::id(),
            LINK_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        match std::os::unix::fs::symlink(target, &candidate) {
            Ok(()) => break candidate,
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(io_error("cannot create a symbolic link in", dir, &err)),
        }
    };
    fs::rename(&temp, path).map_err(|err| {
        let _ = fs::remove_file(&temp);
        io_error("cannot rename a symbolic link onto", path, &err)
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::snapshot;
    use super::*;

    fn spec(path: &Path, target: &str) -> LinkSpec {
        LinkSpec {
            path: path.display().to_string(),
            target: Some(target.to_string()),
            state: Presence::Present.into(),
            force: false,
        }
    }

    #[test]
    fn creates_retargets_and_converges() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("current");
        let link = spec(&path, "releases/1");
        let before = snapshot(root.path());
        assert!(converge(&link, true).expect("check").changed);
        assert_eq!(snapshot(root.path()), before);
        assert_eq!(
            converge(&link, false).expect("apply").changes,
            vec!["created -> releases/1".to_string()]
        );
        assert_eq!(fs::read_link(&path).expect("link"), Path::new("releases/1"));
        assert_eq!(converge(&link, false).expect("again"), Outcome::unchanged());
        let retarget = spec(&path, "releases/2");
        assert_eq!(
            converge(&retarget, false).expect("retarget").changes,
            vec!["target releases/1 -> releases/2".to_string()]
        );
        assert_eq!(fs::read_link(&path).expect("link"), Path::new("releases/2"));
        assert_eq!(
            fs::read_dir(root.path()).expect("dir").count(),
            1,
            "temporary links left behind"
        );
    }

    #[test]
    fn force_replaces_a_file_but_never_a_directory() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("x");
        fs::write(&path, "file").expect("write");
        let err = converge(&spec(&path, "/etc"), false).expect_err("no force");
        assert!(err.message.contains("set `force = true`"), "{err}");
        assert_eq!(fs::read_to_string(&path).expect("still a file"), "file");
        let forced = LinkSpec {
            force: true,
            ..spec(&path, "/etc")
        };
        assert!(converge(&forced, false).expect("force").changed);
        assert!(fs::symlink_metadata(&path)
            .expect("exists")
            .file_type()
            .is_symlink());

        let dir = root.path().join("d");
        fs::create_dir(&dir).expect("mkdir");
        let err = converge(
            &LinkSpec {
                force: true,
                ..spec(&dir, "/etc")
            },
            false,
        )
        .expect_err("dir");
        assert!(err.message.contains("a directory stands"), "{err}");
        assert!(dir.is_dir());
    }

    #[test]
    fn absent_removes_only_links() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("l");
        std::os::unix::fs::symlink("/nowhere", &path).expect("symlink");
        let absent = LinkSpec {
            state: Presence::Absent.into(),
            target: None,
            ..spec(&path, "")
        };
        assert!(converge(&absent, false).expect("remove").changed);
        assert!(fs::symlink_metadata(&path).is_err());
        assert!(!converge(&absent, false).expect("again").changed);
        fs::write(&path, "x").expect("write");
        assert!(converge(&absent, false).is_err());
        assert!(path.exists());
    }
}
