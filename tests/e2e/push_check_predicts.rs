//! Check mode predicts apply: each case runs `--check` then `--apply` on a fresh directory of
//! a real host and pairs the outcomes. Where apply fails, check fails with the same message
//! and exit 1; where an earlier resource makes apply succeed, check passes.

use std::path::Path;

use mop_testhosts::TestHostsBuilder;

use crate::support::{unique_name, JsonRun, Sandbox};

/// One row of the table: a role body (resources) and what both modes must say.
struct Case {
    name: &'static str,
    resources: &'static str,
    /// `None`: both modes succeed. `Some(text)`: both fail, with a message containing `text`.
    failure: Option<&'static str>,
    /// Prepares the case directory (as root, before either run).
    setup: Option<fn(&Path)>,
}

/// A directory the ssh user (not root) may read but not write to.
fn locked_directory(case: &Path) {
    let locked = case.join("locked");
    std::fs::create_dir(&locked).expect("create the locked directory");
    crate::support::chmod(&locked, 0o555);
}

const CASES: &[Case] = &[
    Case {
        name: "file in a missing directory",
        resources: r#"
[[roles.resources]]
type = "file"
path = "@CASE@/missing/app.conf"
content = "x\n"
"#,
        failure: Some(
            "parent directory `@CASE@/missing` of `@CASE@/missing/app.conf` does not exist",
        ),
        setup: None,
    },
    Case {
        name: "file in a directory an earlier resource creates",
        resources: r#"
[[roles.resources]]
type = "directory"
path = "@CASE@/made"
parents = false

[[roles.resources]]
type = "file"
path = "@CASE@/made/app.conf"
content = "x\n"
"#,
        failure: None,
        setup: None,
    },
    Case {
        name: "file through a link an earlier resource creates",
        resources: r#"
[[roles.resources]]
type = "directory"
path = "@CASE@/release-1"
parents = false

[[roles.resources]]
type = "link"
path = "@CASE@/current"
target = "@CASE@/release-1"

[[roles.resources]]
type = "file"
path = "@CASE@/current/app.conf"
content = "x\n"
"#,
        failure: None,
        setup: None,
    },
    Case {
        name: "directory in a missing directory",
        resources: r#"
[[roles.resources]]
type = "directory"
path = "@CASE@/a/b"
parents = false
"#,
        failure: Some("parent directory of `@CASE@/a/b` does not exist"),
        setup: None,
    },
    Case {
        name: "file owned by a user that does not exist",
        resources: r#"
[[roles.resources]]
type = "file"
path = "@CASE@/owned.conf"
content = "x\n"
owner = "mopnosuchuser"
"#,
        failure: Some("user `mopnosuchuser` does not exist"),
        setup: None,
    },
    Case {
        name: "file of a group that does not exist",
        resources: r#"
[[roles.resources]]
type = "file"
path = "@CASE@/grouped.conf"
content = "x\n"
group = "mopnosuchgroup"
"#,
        failure: Some("group `mopnosuchgroup` does not exist"),
        setup: None,
    },
    Case {
        // A command may create what the file needs: check cannot know, so it does not call a
        // failure apply would not have.
        name: "file after a command that makes its directory",
        resources: r#"
[[roles.resources]]
type = "shell"
cmd = "mkdir @CASE@/by-shell"
creates = "@CASE@/by-shell"

[[roles.resources]]
type = "file"
path = "@CASE@/by-shell/app.conf"
content = "x\n"
"#,
        failure: None,
        setup: None,
    },
    Case {
        // The policy names a package manager this (Debian) host does not have: apply fails
        // before any program runs, and so does check.
        name: "package with a package manager that is absent",
        resources: r#"
[[roles.resources]]
type = "package"
packages = "mop-predicts-no-such-package"
manager = "pacman"
"#,
        failure: Some("package manager `pacman` is not installed on this host"),
        setup: None,
    },
    Case {
        // A served file into a directory the agent may not write to: apply cannot create the
        // temporary file it receives the file into.
        name: "served file into a directory the host user cannot write",
        resources: r#"
[[roles.resources]]
type = "file"
path = "@CASE@/locked/app.conf"
source = "app.conf"
"#,
        failure: Some("cannot create a temporary file in `@CASE@/locked`: Permission denied"),
        setup: Some(locked_directory),
    },
];

fn failures(run: &JsonRun) -> Vec<String> {
    run.with_status("failed")
        .iter()
        .map(|event| {
            event["message"]
                .as_str()
                .map_or_else(|| event.to_string(), str::to_string)
        })
        .collect()
}

#[test]
fn check_fails_where_apply_fails_and_passes_where_it_passes() {
    let sandbox = Sandbox::start("predicts", TestHostsBuilder::new().hosts(1).group("web"));
    let files = sandbox.dir().join("files");
    std::fs::create_dir_all(&files).expect("create the served directory");
    std::fs::write(files.join("app.conf"), "served\n").expect("write the served file");
    let mut table = Vec::new();
    for case in CASES {
        let dir = sandbox.out.join(unique_name("case"));
        let dir_text = dir.to_string_lossy().into_owned();
        std::fs::create_dir(&dir).expect("create the case directory");
        crate::support::chmod(&dir, 0o777);
        if let Some(setup) = case.setup {
            setup(&dir);
        }
        let resources = case.resources.replace("@CASE@", &dir_text);
        let policy = sandbox.policy(
            &unique_name("predicts"),
            &format!(
                "[fileserver]\npaths = [\"files\"]\n\n[[roles]]\nname = \"case\"\ngroups = [\"web\"]\n{resources}"
            ),
        );
        let check = sandbox.push(&policy, &["--check"]);
        let check_failures = failures(&check);
        let apply = sandbox.push(&policy, &["--apply"]);
        let apply_failures = failures(&apply);
        table.push(format!(
            "{}: check exit {} {check_failures:?} / apply exit {} {apply_failures:?}",
            case.name, check.exit, apply.exit
        ));
        match case.failure {
            None => {
                assert_eq!(check.exit, 0, "{}: {}", case.name, check.describe());
                assert_eq!(apply.exit, 0, "{}: {}", case.name, apply.describe());
            }
            Some(expected) => {
                let expected = expected.replace("@CASE@", &dir_text);
                assert_eq!(check.exit, 1, "{}: {}", case.name, check.describe());
                assert_eq!(apply.exit, 1, "{}: {}", case.name, apply.describe());
                assert_eq!(
                    check_failures, apply_failures,
                    "{}: check and apply must fail the same way",
                    case.name
                );
                assert!(
                    apply_failures.len() == 1 && apply_failures[0].contains(&expected),
                    "{}: expected `{expected}` in {apply_failures:?}",
                    case.name
                );
            }
        }
    }
    eprintln!("{}", table.join("\n"));
    sandbox.assert_hosts_clean();
}
