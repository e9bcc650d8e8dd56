//! Turns a resource's `source` into a file the controller may serve, touching the filesystem
//! (canonicalisation, symlink and file-type checks) and applying the pure rules.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::rules::{normalize_lexically, relative_to_root, Denial, RelPath, RelPathError};
use crate::server::{FileServer, Root};

/// A file that passed every check. Only [`FileServer::resolve`] makes one, so a manifest can
/// only ever hold files the rules allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedFile {
    absolute: PathBuf,
    root: PathBuf,
    relative: String,
}

impl ServedFile {
    /// Canonical absolute path (no symlinks, no `..`).
    pub fn absolute(&self) -> &Path {
        &self.absolute
    }

    /// Canonical root the file lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Canonical path inside the root, `/`-separated (for symlinks, the target's path).
    pub fn relative(&self) -> &str {
        &self.relative
    }
}

/// Why a `source` cannot be served. `requested` is the source as written; the caller adds
/// the resource name. Display gives one line, plus a `hint:` line where one helps.
#[derive(Debug, thiserror::Error)]
pub enum SourceRejected {
    #[error("source is empty")]
    Empty,
    #[error("source `{requested}` does not exist (looked for `{}`)", .path.display())]
    Missing { requested: String, path: PathBuf },
    #[error(
        "source `{requested}` is a broken symlink (`{}` points to `{}`, which does not exist)",
        .path.display(), .target.display()
    )]
    BrokenSymlink {
        requested: String,
        path: PathBuf,
        target: PathBuf,
    },
    #[error("{}", denied_message(.requested, .relative, .denial))]
    Denied {
        requested: String,
        /// The path inside the root the rules refused (the symlink target's path when the
        /// source itself passed but what it points to did not).
        relative: String,
        denial: Denial,
    },
    #[error(
        "source `{requested}` is a policy or inventory file (`{}`), which is never served\n\
         hint: put what the host needs in a separate file",
        .path.display()
    )]
    Protected { requested: String, path: PathBuf },
    #[error(
        "source `{requested}` is outside every file server root ({})\nhint: add its directory \
         to the file server `paths`, or move the file under a root",
        PathList(.roots)
    )]
    OutsideRoots {
        requested: String,
        roots: Vec<PathBuf>,
    },
    #[error("source `{requested}` climbs out of root `{}` through `..`", .root.display())]
    EscapesRoot { requested: String, root: PathBuf },
    #[error(
        "source `{requested}` resolves through a symlink to `{}`, outside root `{}`\nhint: a \
         symlink may only point to a file inside the same root",
        .target.display(), .root.display()
    )]
    SymlinkEscapes {
        requested: String,
        target: PathBuf,
        root: PathBuf,
    },
    #[error("source `{requested}` is a {kind}, not a regular file (`{}`)", .path.display())]
    NotRegularFile {
        requested: String,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("source `{requested}` resolves to a path that is not valid utf-8 (`{}`)", .path.display())]
    NotUtf8 { requested: String, path: PathBuf },
    #[error("cannot access source `{requested}` (`{}`): {error}", .path.display())]
    Unreadable {
        requested: String,
        path: PathBuf,
        error: io::Error,
    },
}

fn denied_message(requested: &str, relative: &str, denial: &Denial) -> String {
    let mut message = if requested == relative {
        format!("source `{requested}` is {denial}")
    } else {
        format!("source `{requested}` (root path `{relative}`) is {denial}")
    };
    if let Some(hint) = denial.hint(relative) {
        message.push_str("\nhint: ");
        message.push_str(&hint);
    }
    message
}

struct PathList<'a>(&'a [PathBuf]);

impl fmt::Display for PathList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, path) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{}`", path.display())?;
        }
        Ok(())
    }
}

impl FileServer {
    /// Checks `source` (relative to the first root, or absolute inside some root) and returns
    /// the file to serve. Both the path as written and, through symlinks, the file it lands
    /// on must be inside the same root and pass the rules. Only reads metadata.
    pub fn resolve(&self, source: &str) -> Result<ServedFile, SourceRejected> {
        if source.is_empty() {
            return Err(SourceRejected::Empty);
        }
        let requested = || source.to_owned();
        let (root, requested_relative) = self.locate(source)?;
        self.check_rules(source, &requested_relative)?;

        let candidate = root.canonical.join(requested_relative.as_str());
        let canonical = match std::fs::canonicalize(&candidate) {
            Ok(canonical) => canonical,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(missing_or_broken(source, candidate));
            }
            Err(error) => {
                return Err(SourceRejected::Unreadable {
                    requested: requested(),
                    path: candidate,
                    error,
                })
            }
        };
        let Some(canonical_relative) = relative_to_root(&root.canonical, &canonical) else {
            if canonical.starts_with(&root.canonical) {
                return Err(SourceRejected::NotUtf8 {
                    requested: requested(),
                    path: canonical,
                });
            }
            return Err(SourceRejected::SymlinkEscapes {
                requested: requested(),
                target: canonical,
                root: root.canonical.clone(),
            });
        };
        if self.protected.contains(&canonical) {
            return Err(SourceRejected::Protected {
                requested: requested(),
                path: canonical,
            });
        }
        if canonical_relative != requested_relative {
            self.check_rules(source, &canonical_relative)?;
        }
        let metadata = match std::fs::metadata(&canonical) {
            Ok(metadata) => metadata,
            Err(error) => {
                return Err(SourceRejected::Unreadable {
                    requested: requested(),
                    path: canonical,
                    error,
                })
            }
        };
        if !metadata.is_file() {
            return Err(SourceRejected::NotRegularFile {
                requested: requested(),
                path: canonical,
                kind: file_kind(&metadata.file_type()),
            });
        }
        Ok(ServedFile {
            absolute: canonical,
            root: root.canonical.clone(),
            relative: canonical_relative.into_string(),
        })
    }

    /// Picks the root and the lexical path inside it, without touching the disk.
    pub(crate) fn locate(&self, source: &str) -> Result<(&Root, RelPath), SourceRejected> {
        let path = Path::new(source);
        if path.is_absolute() {
            let normalized = normalize_lexically(path);
            // Accept the root as written (it may go through a symlink) or canonical.
            return self
                .roots
                .iter()
                .find_map(|root| {
                    relative_to_root(&root.lexical, &normalized)
                        .or_else(|| relative_to_root(&root.canonical, &normalized))
                        .map(|relative| (root, relative))
                })
                .ok_or_else(|| SourceRejected::OutsideRoots {
                    requested: source.to_owned(),
                    roots: self.roots().map(Path::to_path_buf).collect(),
                });
        }
        let first = self
            .roots
            .first()
            .expect("a file server always has at least one root");
        match RelPath::new(source) {
            Ok(relative) => Ok((first, relative)),
            Err(RelPathError::EscapesRoot | RelPathError::Absolute | RelPathError::NotUtf8) => {
                Err(SourceRejected::EscapesRoot {
                    requested: source.to_owned(),
                    root: first.canonical.clone(),
                })
            }
        }
    }

    fn check_rules(&self, source: &str, relative: &RelPath) -> Result<(), SourceRejected> {
        self.rules
            .check(relative)
            .map_err(|denial| SourceRejected::Denied {
                requested: source.to_owned(),
                relative: relative.as_str().to_owned(),
                denial,
            })
    }
}

fn missing_or_broken(source: &str, candidate: PathBuf) -> SourceRejected {
    let is_symlink = std::fs::symlink_metadata(&candidate)
        .map(|metadata| metadata.file_type().is_symlink())
        .unwrap_or(false);
    if is_symlink {
        if let Ok(target) = std::fs::read_link(&candidate) {
            return SourceRejected::BrokenSymlink {
                requested: source.to_owned(),
                path: candidate,
                target,
            };
        }
    }
    SourceRejected::Missing {
        requested: source.to_owned(),
        path: candidate,
    }
}

fn file_kind(file_type: &std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        return "directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "named pipe";
        }
        if file_type.is_socket() {
            return "socket";
        }
        if file_type.is_block_device() {
            return "block device";
        }
        if file_type.is_char_device() {
            return "character device";
        }
    }
    "special file"
}
