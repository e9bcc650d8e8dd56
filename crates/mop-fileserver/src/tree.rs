//! Lists a directory a `tree` resource serves: every file below it goes through exactly the
//! checks of a single `source` ([`FileServer::resolve`]), so the allow/deny rules, the built-in
//! denies, the protected files and the symlink rules hold for each one.

use std::io;
use std::path::{Path, PathBuf};

use crate::resolve::{ServedFile, SourceRejected};
use crate::rules::{relative_to_root, Denial, RelPath};
use crate::server::FileServer;

/// A served directory: what a host receives for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServedTree {
    /// Directories below the top, relative and `/`-separated, each after its parent.
    pub dirs: Vec<String>,
    /// Regular files below the top (a symlink to a file counts as that file), relative and
    /// `/`-separated, sorted, each resolved like a single `source`. The name is where the file
    /// lands on the host: a vault file's without its vault suffix (`tls/key.age` is
    /// `tls/key`), since the host receives its plaintext.
    pub files: Vec<(String, ServedFile)>,
}

/// Why (part of) a tree cannot be served. Display gives one line, plus a `hint:` line.
#[derive(Debug, thiserror::Error)]
pub enum TreeRejected {
    /// The top itself (missing, outside the roots, a broken link...).
    #[error(transparent)]
    Top(SourceRejected),
    #[error(
        "source `{requested}` is a {kind}, not a directory (`{}`)\nhint: a `tree` copies a \
         directory; send a single file with a `file` resource",
        .path.display()
    )]
    NotDirectory {
        requested: String,
        path: PathBuf,
        kind: &'static str,
    },
    /// A file below the top that a single `source` naming it would not get either.
    #[error("{}", file_message(.relative, .rejected))]
    File {
        relative: String,
        rejected: SourceRejected,
    },
    #[error("{}", denied_dir_message(.requested, .relative, .denial))]
    DeniedDirectory {
        requested: String,
        relative: String,
        denial: Denial,
    },
    #[error(
        "source `{requested}` is a symbolic link to a directory, which a tree does not follow\n\
         hint: leave it out with `exclude = [\"{relative}\"]`, or put the directory itself in \
         the tree"
    )]
    LinkedDirectory { requested: String, relative: String },
    #[error("cannot list `{}`: {error}", .path.display())]
    Unreadable { path: PathBuf, error: io::Error },
    #[error("source `{requested}` has a name that is not valid utf-8 (`{}`)", .path.display())]
    NotUtf8 { requested: String, path: PathBuf },
    #[error(
        "source `{requested}` is a vault file whose plaintext lands at `{lands_at}`, which the \
         tree also has\nhint: keep one of them, or leave one out with `exclude = [\"{relative}\"]`"
    )]
    VaultNameClash {
        requested: String,
        relative: String,
        lands_at: String,
    },
}

fn exclude_hint(relative: &str) -> String {
    format!("leave it out of the tree with `exclude = [\"{relative}\"]`")
}

fn file_message(relative: &str, rejected: &SourceRejected) -> String {
    let text = rejected.to_string();
    let (first, hint) = match text.split_once('\n') {
        Some((first, rest)) => (
            first.to_string(),
            Some(rest.trim().trim_start_matches("hint:").trim().to_string()),
        ),
        None => (text, None),
    };
    match hint {
        Some(hint) => format!("{first}\nhint: {}, or {hint}", exclude_hint(relative)),
        None => format!("{first}\nhint: {}", exclude_hint(relative)),
    }
}

fn denied_dir_message(requested: &str, relative: &str, denial: &Denial) -> String {
    format!(
        "source `{requested}` (directory `{relative}`) is {denial}\nhint: {}",
        exclude_hint(relative)
    )
}

impl FileServer {
    /// Lists the directory `source` (relative to the first root, or absolute inside some root)
    /// for a `tree` resource: its subdirectories, and its files each checked as a single
    /// `source` would be. Paths for which `excluded(relative, is_dir)` is true are left out
    /// unchecked (and a directory's content with it). Every problem is returned, not just the
    /// first. A directory that a user or built-in deny matches is refused like a file; the
    /// `allow` list names files, so it does not apply to directories.
    pub fn resolve_tree(
        &self,
        source: &str,
        excluded: &dyn Fn(&str, bool) -> bool,
    ) -> Result<ServedTree, Vec<TreeRejected>> {
        if source.is_empty() {
            return Err(vec![TreeRejected::Top(SourceRejected::Empty)]);
        }
        let (root, requested_relative) = self
            .locate(source)
            .map_err(|rejected| vec![TreeRejected::Top(rejected)])?;
        let candidate = root.canonical.join(requested_relative.as_str());
        let top = match std::fs::canonicalize(&candidate) {
            Ok(top) => top,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(vec![TreeRejected::Top(SourceRejected::Missing {
                    requested: source.to_owned(),
                    path: candidate,
                })])
            }
            Err(error) => {
                return Err(vec![TreeRejected::Top(SourceRejected::Unreadable {
                    requested: source.to_owned(),
                    path: candidate,
                    error,
                })])
            }
        };
        let Some(top_relative) = relative_to_root(&root.canonical, &top) else {
            return Err(vec![TreeRejected::Top(SourceRejected::SymlinkEscapes {
                requested: source.to_owned(),
                target: top,
                root: root.canonical.clone(),
            })]);
        };
        match std::fs::metadata(&top) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) => {
                return Err(vec![TreeRejected::NotDirectory {
                    requested: source.to_owned(),
                    path: top,
                    kind: if meta.is_file() {
                        "regular file"
                    } else {
                        "special file"
                    },
                }])
            }
            Err(error) => {
                return Err(vec![TreeRejected::Unreadable { path: top, error }]);
            }
        }
        let mut walk = Walk {
            server: self,
            source: source.trim_end_matches('/'),
            top_relative,
            excluded,
            tree: ServedTree::default(),
            errors: Vec::new(),
            vault_names: Vec::new(),
        };
        walk.directory(&top, "");
        walk.check_vault_names();
        if walk.errors.is_empty() {
            Ok(walk.tree)
        } else {
            Err(walk.errors)
        }
    }
}

struct Walk<'a> {
    server: &'a FileServer,
    source: &'a str,
    /// The top's canonical path inside its root, for the rules on directories.
    top_relative: RelPath,
    excluded: &'a dyn Fn(&str, bool) -> bool,
    tree: ServedTree,
    errors: Vec<TreeRejected>,
    /// Vault files met: `(relative, where the plaintext lands)`.
    vault_names: Vec<(String, String)>,
}

impl Walk<'_> {
    fn requested(&self, relative: &str) -> String {
        format!("{}/{relative}", self.source)
    }

    fn directory(&mut self, path: &Path, prefix: &str) {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(error) => {
                self.errors.push(TreeRejected::Unreadable {
                    path: path.to_path_buf(),
                    error,
                });
                return;
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => names.push(entry.file_name()),
                Err(error) => {
                    self.errors.push(TreeRejected::Unreadable {
                        path: path.to_path_buf(),
                        error,
                    });
                    return;
                }
            }
        }
        names.sort();
        for name in names {
            let child = path.join(&name);
            let Some(name) = name.to_str() else {
                self.errors.push(TreeRejected::NotUtf8 {
                    requested: self.requested(&format!("{prefix}{}", name.to_string_lossy())),
                    path: child,
                });
                continue;
            };
            let relative = format!("{prefix}{name}");
            let meta = match std::fs::symlink_metadata(&child) {
                Ok(meta) => meta,
                Err(error) => {
                    self.errors
                        .push(TreeRejected::Unreadable { path: child, error });
                    continue;
                }
            };
            let is_dir = meta.is_dir();
            if (self.excluded)(&relative, is_dir) {
                continue;
            }
            if is_dir {
                if let Some(denial) = self.directory_denial(&relative) {
                    self.errors.push(TreeRejected::DeniedDirectory {
                        requested: self.requested(&relative),
                        relative,
                        denial,
                    });
                    continue;
                }
                self.tree.dirs.push(relative.clone());
                self.directory(&child, &format!("{relative}/"));
                continue;
            }
            if meta.file_type().is_symlink() && std::fs::metadata(&child).is_ok_and(|m| m.is_dir())
            {
                self.errors.push(TreeRejected::LinkedDirectory {
                    requested: self.requested(&relative),
                    relative,
                });
                continue;
            }
            match self.server.resolve(&self.requested(&relative)) {
                Ok(served) => {
                    let lands_at = match mop_vault::plaintext_name(name) {
                        Some(plain) => {
                            let lands_at = format!("{prefix}{plain}");
                            self.vault_names.push((relative, lands_at.clone()));
                            lands_at
                        }
                        None => relative,
                    };
                    self.tree.files.push((lands_at, served));
                }
                Err(rejected) => self.errors.push(TreeRejected::File { relative, rejected }),
            }
        }
    }

    /// A vault file lands without its suffix: nothing else of the tree may land there too.
    /// Puts the files back in name order.
    fn check_vault_names(&mut self) {
        for (relative, lands_at) in std::mem::take(&mut self.vault_names) {
            let taken = self.tree.dirs.contains(&lands_at)
                || self
                    .tree
                    .files
                    .iter()
                    .filter(|(name, _)| *name == lands_at)
                    .count()
                    > 1;
            if taken {
                self.errors.push(TreeRejected::VaultNameClash {
                    requested: self.requested(&relative),
                    relative,
                    lands_at,
                });
            }
        }
        self.tree
            .files
            .sort_by(|(left, _), (right, _)| left.cmp(right));
    }

    /// A user or built-in deny on a directory; the allow list does not apply to directories.
    fn directory_denial(&self, relative: &str) -> Option<Denial> {
        let inside_root = if self.top_relative.as_str().is_empty() {
            relative.to_string()
        } else {
            format!("{}/{relative}", self.top_relative.as_str())
        };
        let path = RelPath::new(&inside_root).ok()?;
        match self.server.rules.check(&path) {
            Err(denial @ (Denial::DeniedByPattern { .. } | Denial::DeniedByDefault { .. })) => {
                Some(denial)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{FileServerConfig, RootSpec};
    use crate::PatternSpec;

    fn server(root: &Path, deny: &[&str]) -> FileServer {
        FileServer::new(FileServerConfig {
            base_dir: root.to_path_buf(),
            roots: vec![RootSpec::new(".", "test")],
            deny: deny
                .iter()
                .map(|pattern| PatternSpec::new(*pattern, "site.toml:1:1"))
                .collect(),
            ..FileServerConfig::default()
        })
        .expect("valid server")
    }

    fn layout(root: &Path) {
        for dir in ["static/css", "static/empty", "static/img/raw"] {
            std::fs::create_dir_all(root.join(dir)).expect("mkdir");
        }
        for file in [
            "static/index.html",
            "static/css/a.css",
            "static/img/raw/x.raw",
        ] {
            std::fs::write(root.join(file), file).expect("write");
        }
    }

    #[test]
    fn lists_dirs_and_files_in_order_and_skips_excluded_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        layout(&root);
        let tree = server(&root, &[])
            .resolve_tree("static/", &|relative, _| relative == "img/raw")
            .expect("served");
        assert_eq!(tree.dirs, ["css", "empty", "img"]);
        let files: Vec<&str> = tree.files.iter().map(|(rel, _)| rel.as_str()).collect();
        assert_eq!(files, ["css/a.css", "index.html"]);
        assert_eq!(tree.files[1].1.relative(), "static/index.html");
    }

    #[test]
    fn vault_files_land_under_their_plaintext_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        layout(&root);
        std::fs::create_dir(root.join("static/tls")).expect("mkdir");
        std::fs::write(root.join("static/tls/server.pem.age"), "sealed").expect("write");
        std::fs::write(root.join("static/app.age.toml"), "sealed").expect("write");
        let tree = server(&root, &[])
            .resolve_tree("static", &|_, _| false)
            .expect("served");
        let files: Vec<(&str, &str)> = tree
            .files
            .iter()
            .map(|(lands_at, served)| (lands_at.as_str(), served.relative()))
            .collect();
        assert_eq!(
            files,
            [
                ("app.toml", "static/app.age.toml"),
                ("css/a.css", "static/css/a.css"),
                ("img/raw/x.raw", "static/img/raw/x.raw"),
                ("index.html", "static/index.html"),
                ("tls/server.pem", "static/tls/server.pem.age"),
            ]
        );

        // Two files that would land at one name: an error naming the vault file.
        std::fs::write(root.join("static/index.html.age"), "sealed").expect("write");
        let errors = server(&root, &[])
            .resolve_tree("static", &|_, _| false)
            .expect_err("clash");
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "source `static/index.html.age` is a vault file whose plaintext lands at \
              `index.html`, which the tree also has\nhint: keep one of them, or leave one out \
              with `exclude = [\"index.html.age\"]`"
            ]
        );
    }

    #[test]
    fn every_denied_file_and_directory_is_named_with_an_exclude_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        layout(&root);
        std::fs::write(root.join("static/css/site.key"), "k").expect("write");
        std::fs::create_dir(root.join("static/.git")).expect("mkdir");
        std::os::unix::fs::symlink("/etc", root.join("static/etc")).expect("symlink");
        std::os::unix::fs::symlink("/etc/hostname", root.join("static/host")).expect("link");
        let errors = server(&root, &["*.key"])
            .resolve_tree("static", &|_, _| false)
            .expect_err("denied files");
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 4, "{messages:#?}");
        assert!(
            messages[0].contains("`static/.git`") && messages[0].contains("exclude = [\".git\"]"),
            "{}",
            messages[0]
        );
        assert!(
            messages[1].contains("`static/css/site.key`")
                && messages[1].contains("exclude = [\"css/site.key\"]"),
            "{}",
            messages[1]
        );
        assert!(
            messages[2].contains("symbolic link to a directory"),
            "{}",
            messages[2]
        );
        assert!(messages[3].contains("outside root"), "{}", messages[3]);
    }

    #[test]
    fn the_top_must_be_a_directory_inside_a_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        layout(&root);
        let server = server(&root, &[]);
        let not_dir = server
            .resolve_tree("static/index.html", &|_, _| false)
            .expect_err("a file");
        assert!(
            not_dir[0].to_string().contains("not a directory"),
            "{}",
            not_dir[0]
        );
        let missing = server
            .resolve_tree("nope", &|_, _| false)
            .expect_err("missing");
        assert!(
            missing[0].to_string().contains("does not exist"),
            "{}",
            missing[0]
        );
        let escapes = server
            .resolve_tree("../", &|_, _| false)
            .expect_err("escapes");
        assert!(
            escapes[0].to_string().contains("climbs out"),
            "{}",
            escapes[0]
        );
    }
}
