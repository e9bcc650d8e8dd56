//! Source resolution against real temporary directories: roots, symlinks, `..`, protected
//! files and the rejection messages.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use mop_fileserver::{
    Denial, FileServer, FileServerConfig, FileServerError, PatternSpec, RootSpec, SourceRejected,
};

/// A policy directory with two roots (`files`, `other`), a directory outside both, and the
/// policy file itself.
struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = fs::canonicalize(dir.path()).expect("canonical temp dir");
        for sub in [
            "files/sub",
            "files/.git",
            "files/secrets",
            "other",
            "outside",
        ] {
            fs::create_dir_all(base.join(sub)).expect("mkdir");
        }
        let write = |path: &str, content: &str| {
            fs::write(base.join(path), content).expect("write fixture file");
        };
        write("site.toml", "[policy]");
        write("files/motd", "hello");
        write("files/sub/app.conf", "x=1");
        write("files/.git/config", "[core]");
        write("files/secrets/db.yml", "password: x");
        write("files/id_rsa", "KEY");
        write("files/id_rsa.pub", "PUB");
        write("other/banner", "banner");
        write("outside/passwd", "root:x");
        Fixture { _dir: dir, base }
    }

    fn config(&self) -> FileServerConfig {
        FileServerConfig {
            base_dir: self.base.clone(),
            roots: vec![
                RootSpec::new("files", "site.toml:3:10"),
                RootSpec::new(self.base.join("other"), "site.toml:3:19"),
            ],
            allow: Vec::new(),
            deny: Vec::new(),
            protected_files: vec![self.base.join("site.toml")],
        }
    }

    fn server(&self) -> FileServer {
        FileServer::new(self.config()).expect("valid file server")
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.base.join(relative)
    }
}

fn rejected(server: &FileServer, source: &str) -> SourceRejected {
    match server.resolve(source) {
        Ok(served) => panic!("`{source}` should be rejected, resolved to {served:?}"),
        Err(rejected) => rejected,
    }
}

#[test]
fn relative_source_resolves_in_the_first_root() {
    let fixture = Fixture::new();
    let served = fixture.server().resolve("sub/app.conf").expect("served");
    assert_eq!(served.absolute(), fixture.path("files/sub/app.conf"));
    assert_eq!(served.root(), fixture.path("files"));
    assert_eq!(served.relative(), "sub/app.conf");
    // The second root is only reachable by absolute path.
    assert!(matches!(
        rejected(&fixture.server(), "banner"),
        SourceRejected::Missing { .. }
    ));
}

#[test]
fn dot_dot_inside_the_root_is_fine_escaping_is_not() {
    let fixture = Fixture::new();
    let server = fixture.server();
    let served = server
        .resolve("sub/../motd")
        .expect("stays inside the root");
    assert_eq!(served.relative(), "motd");
    let error = rejected(&server, "../outside/passwd");
    assert!(
        matches!(error, SourceRejected::EscapesRoot { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "source `../outside/passwd` climbs out of root `{}` through `..`",
            fixture.path("files").display()
        )
    );
    assert!(matches!(
        rejected(&server, "sub/../../outside/passwd"),
        SourceRejected::EscapesRoot { .. }
    ));
}

#[test]
fn absolute_sources_must_be_inside_a_root() {
    let fixture = Fixture::new();
    let server = fixture.server();
    let inside = fixture.path("other/banner");
    let served = server
        .resolve(inside.to_str().expect("utf-8 temp path"))
        .expect("inside the second root");
    assert_eq!(served.root(), fixture.path("other"));
    assert_eq!(served.relative(), "banner");

    let outside = fixture.path("outside/passwd");
    let outside = outside.to_str().expect("utf-8 temp path");
    let error = rejected(&server, outside);
    assert!(
        matches!(error, SourceRejected::OutsideRoots { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "source `{outside}` is outside every file server root (`{}`, `{}`)\nhint: add its \
             directory to the file server `paths`, or move the file under a root",
            fixture.path("files").display(),
            fixture.path("other").display()
        )
    );
    // `..` in an absolute path is resolved lexically before the containment check.
    let sneaky = format!("{}/../outside/passwd", fixture.path("files").display());
    assert!(matches!(
        rejected(&server, &sneaky),
        SourceRejected::OutsideRoots { .. }
    ));
}

#[test]
fn absolute_source_through_a_symlinked_root_spelling() {
    let fixture = Fixture::new();
    symlink(fixture.path("files"), fixture.path("files-link")).expect("symlink");
    let mut config = fixture.config();
    config.roots = vec![RootSpec::new("files-link", "site.toml:3:10")];
    let server = FileServer::new(config).expect("valid");
    let source = fixture.path("files-link/motd");
    let served = server
        .resolve(source.to_str().expect("utf-8"))
        .expect("the root as written is accepted");
    assert_eq!(served.absolute(), fixture.path("files/motd"));
}

#[test]
fn symlinks_inside_the_root_are_followed() {
    let fixture = Fixture::new();
    symlink("sub/app.conf", fixture.path("files/current.conf")).expect("symlink");
    let served = fixture.server().resolve("current.conf").expect("served");
    assert_eq!(served.absolute(), fixture.path("files/sub/app.conf"));
    assert_eq!(served.relative(), "sub/app.conf");
}

#[test]
fn symlinks_out_of_the_root_are_rejected() {
    let fixture = Fixture::new();
    symlink(fixture.path("outside/passwd"), fixture.path("files/passwd")).expect("symlink");
    symlink(fixture.path("outside"), fixture.path("files/outdir")).expect("symlink");
    symlink(fixture.path("other/banner"), fixture.path("files/banner")).expect("symlink");
    let server = fixture.server();

    let error = rejected(&server, "passwd");
    match &error {
        SourceRejected::SymlinkEscapes { target, root, .. } => {
            assert_eq!(target, &fixture.path("outside/passwd"));
            assert_eq!(root, &fixture.path("files"));
        }
        other => panic!("expected SymlinkEscapes, got {other:?}"),
    }
    assert!(error.to_string().starts_with(&format!(
        "source `passwd` resolves through a symlink to `{}`, outside root `{}`",
        fixture.path("outside/passwd").display(),
        fixture.path("files").display()
    )));
    // Through a symlinked directory.
    assert!(matches!(
        rejected(&server, "outdir/passwd"),
        SourceRejected::SymlinkEscapes { .. }
    ));
    // Into another served root: still not the same root.
    assert!(matches!(
        rejected(&server, "banner"),
        SourceRejected::SymlinkEscapes { .. }
    ));
}

#[test]
fn missing_broken_and_non_regular_sources() {
    let fixture = Fixture::new();
    symlink("nowhere", fixture.path("files/dangling")).expect("symlink");
    let fifo = fixture.path("files/pipe");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    let server = fixture.server();

    let error = rejected(&server, "nope.txt");
    assert_eq!(
        error.to_string(),
        format!(
            "source `nope.txt` does not exist (looked for `{}`)",
            fixture.path("files/nope.txt").display()
        )
    );
    let error = rejected(&server, "dangling");
    assert!(
        matches!(error, SourceRejected::BrokenSymlink { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("points to `nowhere`"), "{error}");

    let error = rejected(&server, "sub");
    assert_eq!(
        error.to_string(),
        format!(
            "source `sub` is a directory, not a regular file (`{}`)",
            fixture.path("files/sub").display()
        )
    );
    let error = rejected(&server, "pipe");
    assert!(
        matches!(
            error,
            SourceRejected::NotRegularFile {
                kind: "named pipe",
                ..
            }
        ),
        "{error:?}"
    );
    let error = rejected(&server, "motd/inner");
    assert!(
        matches!(error, SourceRejected::Unreadable { .. }),
        "{error:?}"
    );
    assert!(matches!(rejected(&server, ""), SourceRejected::Empty));
}

#[test]
fn protected_policy_file_is_never_served() {
    let fixture = Fixture::new();
    symlink("site.toml", fixture.path("copy.toml")).expect("symlink");
    let mut config = fixture.config();
    // Default root: the policy file's directory.
    config.roots.clear();
    config.allow = vec![
        PatternSpec::new("**", "site.toml:5:9"),
        PatternSpec::new("*.toml", "site.toml:5:15"),
    ];
    let server = FileServer::new(config).expect("valid");
    assert_eq!(
        server.roots().collect::<Vec<_>>(),
        vec![fixture.base.as_path()]
    );
    for source in ["site.toml", "copy.toml", "./site.toml"] {
        let error = rejected(&server, source);
        assert!(
            matches!(error, SourceRejected::Protected { .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("is a policy or inventory file"),
            "{error}"
        );
    }
    server
        .resolve("files/motd")
        .expect("other files are served");
}

#[test]
fn default_denies_and_user_patterns() {
    let fixture = Fixture::new();
    let server = fixture.server();
    let error = rejected(&server, ".git/config");
    assert_eq!(
        error.to_string(),
        "source `.git/config` is denied by default: `.git` is a version-control directory \
         (built-in pattern `.git`)\nhint: to serve it anyway, add `.git/config` to the file \
         server `allow` list (and `**` if the list was empty, since a non-empty list serves \
         only what it matches); broad patterns like `**` never lift a built-in deny"
    );
    assert!(matches!(
        rejected(&server, "id_rsa"),
        SourceRejected::Denied {
            denial: Denial::DeniedByDefault { .. },
            ..
        }
    ));
    server
        .resolve("id_rsa.pub")
        .expect("public keys are served");

    let mut config = fixture.config();
    config.allow = vec![
        PatternSpec::new("**", "site.toml:6:10"),
        PatternSpec::new("id_rsa", "site.toml:6:16"),
    ];
    config.deny = vec![PatternSpec::new("secrets", "site.toml:7:9")];
    let server = FileServer::new(config).expect("valid");
    server.resolve("id_rsa").expect("explicitly allowed key");
    let error = rejected(&server, "secrets/db.yml");
    assert_eq!(
        error.to_string(),
        "source `secrets/db.yml` is denied by pattern `secrets` (site.toml:7:9)"
    );
    // A symlink whose own name passes still lands on a denied file.
    symlink("secrets/db.yml", fixture.path("files/public.yml")).expect("symlink");
    let error = rejected(&server, "public.yml");
    assert_eq!(
        error.to_string(),
        "source `public.yml` (root path `secrets/db.yml`) is denied by pattern `secrets` \
         (site.toml:7:9)"
    );
}

#[test]
fn allow_list_restricts_what_is_served() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.allow = vec![PatternSpec::new("sub/**", "site.toml:6:10")];
    let server = FileServer::new(config).expect("valid");
    server.resolve("sub/app.conf").expect("allowed");
    let error = rejected(&server, "motd");
    assert_eq!(
        error.to_string(),
        "source `motd` is matched by no allow pattern (`sub/**` at site.toml:6:10)\nhint: add a \
         pattern matching `motd` to the file server `allow` list"
    );
}

#[test]
fn construction_errors_name_their_origin() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config
        .roots
        .push(RootSpec::new("missing", "site.toml:3:30"));
    let error = FileServer::new(config).expect_err("missing root");
    assert!(matches!(error, FileServerError::RootMissing { .. }));
    assert_eq!(
        error.to_string(),
        format!(
            "site.toml:3:30: file server root `missing` does not exist (looked for `{}`)\nhint: \
             create the directory or fix the path; relative roots are relative to the policy \
             file's directory",
            fixture.path("missing").display()
        )
    );

    let mut config = fixture.config();
    config.roots = vec![RootSpec::new("files/motd", "site.toml:3:10")];
    let error = FileServer::new(config).expect_err("file as root");
    assert!(
        matches!(error, FileServerError::RootNotDirectory { .. }),
        "{error:?}"
    );

    let mut config = fixture.config();
    config.deny = vec![PatternSpec::new("{a,b", "policies/site.toml:7:10")];
    let error = FileServer::new(config).expect_err("invalid pattern");
    assert!(
        error
            .to_string()
            .starts_with("policies/site.toml:7:10: invalid file server pattern `{a,b`: "),
        "{error}"
    );
}

#[test]
fn served_file_paths_are_canonical() {
    let fixture = Fixture::new();
    let served = fixture.server().resolve("./sub//app.conf").expect("served");
    assert_eq!(served.relative(), "sub/app.conf");
    assert!(served.absolute().is_absolute());
    assert!(!served.absolute().components().any(|component| {
        matches!(
            component,
            std::path::Component::ParentDir | std::path::Component::CurDir
        )
    }));
    assert_eq!(
        served.absolute(),
        Path::new(&fixture.path("files/sub/app.conf"))
    );
}
