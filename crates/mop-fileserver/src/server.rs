//! File server configuration and construction: checks patterns and canonicalises roots once.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use crate::rules::{normalize_lexically, PatternError, PatternSpec, Rules};

/// Origin given to the implicit root when the configuration lists none.
pub const DEFAULT_ROOT_ORIGIN: &str = "default root (the policy file's directory)";

/// A served root as configured, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootSpec {
    /// Absolute, or relative to [`FileServerConfig::base_dir`].
    pub path: PathBuf,
    /// Where it came from, e.g. `policies/site.toml:3:9`; used in error messages.
    pub origin: String,
}

impl RootSpec {
    pub fn new(path: impl Into<PathBuf>, origin: impl Into<String>) -> RootSpec {
        RootSpec {
            path: path.into(),
            origin: origin.into(),
        }
    }
}

/// Everything the file server needs; build one per distinct set of roots (a role that
/// overrides `paths` gets its own [`FileServer`]).
#[derive(Debug, Clone, Default)]
pub struct FileServerConfig {
    /// The policy file's directory: relative roots are joined to it, and it is the only
    /// root when `roots` is empty.
    pub base_dir: PathBuf,
    /// Served roots in order; relative sources resolve against the first.
    pub roots: Vec<RootSpec>,
    /// When not empty, only paths matching one of these are served.
    pub allow: Vec<PatternSpec>,
    /// Paths matching any of these are never served.
    pub deny: Vec<PatternSpec>,
    /// Files never served whatever the patterns say (the policy and inventory files);
    /// absolute paths, a relative one is taken from the current directory.
    pub protected_files: Vec<PathBuf>,
}

/// Why a file server cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum FileServerError {
    #[error(transparent)]
    InvalidPattern(#[from] PatternError),
    #[error(
        "{origin}: file server root `{}` does not exist (looked for `{}`)\nhint: create the \
         directory or fix the path; relative roots are relative to the policy file's directory",
        .configured.display(), .absolute.display()
    )]
    RootMissing {
        configured: PathBuf,
        absolute: PathBuf,
        origin: String,
    },
    #[error("{origin}: file server root `{}` is not a directory (`{}`)", .configured.display(), .absolute.display())]
    RootNotDirectory {
        configured: PathBuf,
        absolute: PathBuf,
        origin: String,
    },
    #[error("{origin}: cannot access file server root `{}`: {source}", .absolute.display())]
    RootUnreadable {
        absolute: PathBuf,
        origin: String,
        source: io::Error,
    },
    #[error("cannot find the current directory to resolve `{}`: {source}", .base_dir.display())]
    BaseDir {
        base_dir: PathBuf,
        source: io::Error,
    },
}

/// A canonicalised root.
#[derive(Debug, Clone)]
pub(crate) struct Root {
    /// The root as written, made absolute and lexically normalised (may contain symlinks).
    pub(crate) lexical: PathBuf,
    /// `fs::canonicalize` of it: what files are checked against.
    pub(crate) canonical: PathBuf,
}

/// Decides which files may leave the controller; see [`FileServer::resolve`].
#[derive(Debug, Clone)]
pub struct FileServer {
    pub(crate) roots: Vec<Root>,
    pub(crate) rules: Rules,
    /// Canonical (or, when they do not exist, lexically absolute) protected paths.
    pub(crate) protected: BTreeSet<PathBuf>,
}

impl FileServer {
    /// Compiles the patterns and canonicalises the roots. Fails on an invalid pattern, or on
    /// a root that is missing or not a directory, naming its origin.
    pub fn new(config: FileServerConfig) -> Result<FileServer, FileServerError> {
        let rules = Rules::new(&config.allow, &config.deny)?;
        let base_dir =
            std::path::absolute(&config.base_dir).map_err(|source| FileServerError::BaseDir {
                base_dir: config.base_dir.clone(),
                source,
            })?;
        let base_dir = normalize_lexically(&base_dir);
        let root_specs = if config.roots.is_empty() {
            vec![RootSpec::new(".", DEFAULT_ROOT_ORIGIN)]
        } else {
            config.roots
        };
        let mut roots = Vec::with_capacity(root_specs.len());
        for spec in root_specs {
            let lexical = normalize_lexically(&base_dir.join(&spec.path));
            let canonical = match std::fs::canonicalize(&lexical) {
                Ok(canonical) => canonical,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    return Err(FileServerError::RootMissing {
                        configured: spec.path,
                        absolute: lexical,
                        origin: spec.origin,
                    })
                }
                Err(source) => {
                    return Err(FileServerError::RootUnreadable {
                        absolute: lexical,
                        origin: spec.origin,
                        source,
                    })
                }
            };
            if !canonical.is_dir() {
                return Err(FileServerError::RootNotDirectory {
                    configured: spec.path,
                    absolute: canonical,
                    origin: spec.origin,
                });
            }
            roots.push(Root { lexical, canonical });
        }
        let protected = config
            .protected_files
            .iter()
            .map(|path| {
                // Callers pass absolute paths; a relative one is taken from the current
                // directory, like the command line that named it.
                let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                let absolute = normalize_lexically(&absolute);
                std::fs::canonicalize(&absolute).unwrap_or(absolute)
            })
            .collect();
        Ok(FileServer {
            roots,
            rules,
            protected,
        })
    }

    /// The canonical roots, in order; the first is where relative sources are looked up.
    pub fn roots(&self) -> impl Iterator<Item = &Path> {
        self.roots.iter().map(|root| root.canonical.as_path())
    }

    /// The compiled allow/deny rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }
}
