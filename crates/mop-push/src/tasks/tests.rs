//! Tag selection as a table, and `--start-at`, the listings and the errors on real policies
//! loaded from temporary files.

use super::*;
use crate::load::{load_run, Limits, RunRequest};

fn filter(tags: &[&str], skip: &[&str]) -> TaskFilter {
    TaskFilter {
        tags: tags.iter().map(ToString::to_string).collect(),
        skip_tags: skip.iter().map(ToString::to_string).collect(),
        start_at: None,
    }
}

/// One row: `--tags`, `--skip-tags`, a resource's tags (its own and its role's), whether it runs.
fn check(tags: &[&str], skip: &[&str], resource: &[&str], expected: bool) {
    let compiled = CompiledTags::new(&filter(tags, skip)).expect("valid tags");
    let resource_tags: BTreeSet<&str> = resource.iter().copied().collect();
    assert_eq!(
        compiled.selects(&resource_tags),
        expected,
        "--tags {tags:?} --skip-tags {skip:?} on a resource tagged {resource:?}"
    );
}

#[test]
fn tag_selection_table() {
    // No filter: everything but `never`.
    check(&[], &[], &[], true);
    check(&[], &[], &["web"], true);
    check(&[], &[], &["never"], false);
    check(&[], &[], &["never", "debug"], false);
    // --tags: a match among the resource's tags; globs allowed.
    check(&["web"], &[], &["web", "base"], true);
    check(&["web"], &[], &["db"], false);
    check(&["web"], &[], &[], false);
    check(&["we*"], &[], &["web"], true);
    check(&["db", "web"], &[], &["web"], true);
    // `always`: runs whatever --tags says, unless skipped by name.
    check(&["web"], &[], &["always"], true);
    check(&[], &["always"], &["always"], false);
    check(&["web"], &["always"], &["always"], false);
    check(&[], &["web"], &["always", "web"], false);
    // `never`: only when one of its tags is asked for.
    check(&["debug"], &[], &["never", "debug"], true);
    check(&["never"], &[], &["never"], true);
    check(&["all"], &[], &["never", "debug"], false);
    check(&["web"], &[], &["never", "debug"], false);
    // --skip-tags beats --tags.
    check(&["web"], &["web"], &["web"], false);
    check(&[], &["slow"], &["web", "slow"], false);
    check(&[], &["sl*"], &["slow"], false);
    check(&[], &["slow"], &[], true);
    // Special words.
    check(&["all"], &[], &[], true);
    check(&["tagged"], &[], &[], false);
    check(&["tagged"], &[], &["x"], true);
    check(&["untagged"], &[], &[], true);
    check(&["untagged"], &[], &["x"], false);
}

const POLICY: &str = r#"
[[roles]]
name = "base"
groups = ["all"]
tags = ["base"]

[[roles.resources]]
type = "echo"
msg = "motd"
tags = ["motd"]

[[roles.resources]]
name = "debug dump"
type = "echo"
msg = "debug"
tags = ["never", "debug"]

[[roles]]
name = "web"
groups = ["web"]

[[roles.resources]]
name = "install nginx"
type = "echo"
msg = "nginx"
tags = ["web", "pkg"]

[[roles.resources]]
type = "file"
path = "/etc/app.conf"
content = "x"
tags = ["web", "config"]
notify = "restart"

[[roles.resources]]
type = "echo"
msg = "always here"
tags = ["always"]

[[roles.handlers]]
name = "restart"
type = "echo"
msg = "restart"
"#;

const INVENTORY: &str = r#"
[groups.web.hosts]
web1 = "mop_host=192.0.2.1"
web2 = "mop_host=192.0.2.2"

[groups.db.hosts]
db1 = "mop_host=192.0.2.3"
"#;

/// Loads the policy above with the filter and renders the listing, or the error, plus the
/// warnings.
fn listed(limit_hosts: &[&str], filter: &TaskFilter) -> String {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let policy = dir.path().join("site.toml");
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(&policy, POLICY).expect("write the policy");
    std::fs::write(&inventory, INVENTORY).expect("write the inventory");
    let limits = Limits {
        groups: Vec::new(),
        hosts: limit_hosts.iter().map(ToString::to_string).collect(),
    };
    let mut loaded = match load_run(&RunRequest {
        policy: &policy,
        inventory: std::slice::from_ref(&inventory),
        limits: &limits,
        extra_vars: &[],
    }) {
        Ok(loaded) => loaded,
        Err(error) => return format!("error: {error}"),
    };
    if let Err(error) = loaded.select_tasks(filter) {
        return format!("error: {error}");
    }
    let mut text = render_outline(
        &loaded.outline(),
        Listing {
            hosts: true,
            tasks: true,
        },
    );
    for warning in &loaded.warnings {
        text.push_str(&format!("warning: {warning}\n"));
    }
    text
}

#[test]
fn listing_without_filters() {
    insta::assert_snapshot!(listed(&[], &TaskFilter::default()));
}

#[test]
fn listing_with_tags_and_limits() {
    insta::assert_snapshot!(listed(&["web*:!web2"], &filter(&["config"], &[])));
}

#[test]
fn listing_with_never_asked_for_and_skip() {
    insta::assert_snapshot!(listed(&[], &filter(&["debug", "web"], &["pkg"])));
}

#[test]
fn start_at_by_name_or_label() {
    let start = |name: &str| TaskFilter {
        start_at: Some(name.to_string()),
        ..TaskFilter::default()
    };
    insta::assert_snapshot!("start_at_label", listed(&[], &start("file /etc/app.conf")));
    insta::assert_snapshot!("start_at_name", listed(&[], &start("install nginx")));
}

#[test]
fn task_errors_and_warnings() {
    let start = |name: &str| TaskFilter {
        start_at: Some(name.to_string()),
        ..TaskFilter::default()
    };
    insta::assert_snapshot!([
        listed(&[], &start("install ngnix")),
        listed(&[], &start("nothing like it")),
        listed(&[], &filter(&["nosuch"], &["always"])),
        listed(&[], &filter(&["wbe", "web"], &[])),
        listed(&[], &filter(&["web;id"], &[])),
        listed(&[], &filter(&["web[1"], &[])),
    ]
    .join("\n---\n"));
}

#[test]
fn a_role_without_resources_stays_and_an_emptied_role_leaves() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let policy = dir.path().join("site.toml");
    std::fs::write(
        &policy,
        r#"
[[roles]]
name = "hooks only"
before = "true"

[[roles]]
name = "tagged"

[[roles.resources]]
type = "echo"
msg = "x"
tags = ["x"]

[[roles]]
name = "untagged"

[[roles.resources]]
type = "echo"
msg = "y"
"#,
    )
    .expect("write the policy");
    let mut loaded = crate::load::load_local_run(&policy, &[]).expect("a valid policy");
    let warnings = loaded.select_tasks(&filter(&["x"], &[])).expect("selected");
    assert!(warnings.is_empty(), "{warnings:?}");
    let roles: Vec<&str> = loaded
        .policy
        .roles
        .iter()
        .map(|role| role.name.as_str())
        .collect();
    assert_eq!(roles, ["hooks only", "tagged"]);
    assert_eq!(
        loaded.prepared.roles.len(),
        2,
        "prepared roles stay parallel"
    );
}
