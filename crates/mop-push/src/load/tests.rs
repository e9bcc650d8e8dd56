//! Loading runs from real files in temporary directories: which hosts each role gets, which
//! value each variable layer gives, what an ad hoc TARGET means, and the exact error texts.

use std::path::PathBuf;

use super::*;

/// A policy (`site.toml`) and an inventory (`inventory.toml`) written to a fresh directory.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(policy: &str, inventory: &str) -> Files {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("site.toml"), policy).expect("write the policy");
        std::fs::write(dir.path().join("inventory.toml"), inventory).expect("write the inventory");
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Loads with `-i inventory.toml` and the given limits and `-e` arguments, and describes
    /// the outcome: `role NAME: host (var=value, ...)` lines, or the error text.
    fn load(&self, limits: &Limits, extra: &[&str], show_vars: &[&str]) -> String {
        let extra: Vec<String> = extra.iter().map(ToString::to_string).collect();
        let inventory = self.path("inventory.toml");
        let loaded = load_run(&RunRequest {
            policy: &self.path("site.toml"),
            inventory: std::slice::from_ref(&inventory),
            limits,
            extra_vars: &extra,
        });
        match loaded {
            Err(error) => format!("error: {}", self.relative(&error.to_string())),
            Ok(run) => run
                .roles
                .iter()
                .map(|role_hosts| {
                    let hosts: Vec<String> = role_hosts
                        .hosts
                        .iter()
                        .map(|host| {
                            let vars: Vec<String> = show_vars
                                .iter()
                                .map(|name| {
                                    format!(
                                        "{name}={}",
                                        host.vars
                                            .get(*name)
                                            .map_or("-".to_string(), |value| { value.to_string() })
                                    )
                                })
                                .collect();
                            if vars.is_empty() {
                                host.name.clone()
                            } else {
                                format!("{} ({})", host.name, vars.join(" "))
                            }
                        })
                        .collect();
                    format!(
                        "role {}: {}",
                        run.policy.roles[role_hosts.role_index].name,
                        hosts.join(", ")
                    )
                })
                .chain(
                    run.warnings
                        .iter()
                        .map(|warning| format!("warning: {warning}")),
                )
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    fn relative(&self, text: &str) -> String {
        text.replace(&format!("{}/", self.dir.path().display()), "")
    }
}

const INVENTORY: &str = r#"
[groups.web.hosts]
web1 = "mop_host=192.0.2.1 tier=front"
web2 = "mop_host=192.0.2.2"

[groups.db.hosts]
db1 = "mop_host=192.0.2.3"

[groups.web.vars]
color = "green"
"#;

fn policy(roles: &str) -> String {
    format!(
        r#"
[vars]
color = "policy"
tier = "policy"
size = "policy"

{roles}
"#
    )
}

const WEB_AND_DB: &str = r#"
[[roles]]
name = "web"
groups = ["web"]

[roles.vars]
size = "role"
tier = "role"

[[roles.resources]]
type = "echo"
msg = "{{ color }} {{ tier }} {{ size }}"

[[roles]]
name = "db"
groups = ["db"]

[[roles.resources]]
type = "echo"
msg = "db"
"#;

fn limits(groups: &[&str], hosts: &[&str]) -> Limits {
    Limits {
        groups: groups.iter().map(ToString::to_string).collect(),
        hosts: hosts.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn roles_select_hosts_within_the_limits() {
    let files = Files::new(&policy(WEB_AND_DB), INVENTORY);
    let check = |limits: Limits, expected: &str| {
        assert_eq!(files.load(&limits, &[], &[]), expected, "{limits:?}");
    };
    check(limits(&[], &[]), "role web: web1, web2\nrole db: db1");
    check(limits(&["web"], &[]), "role web: web1, web2\nrole db: ");
    check(
        limits(&[], &["web2", "db*"]),
        "role web: web2\nrole db: db1",
    );
    check(
        limits(&["nosuch"], &["web3"]),
        "error: --limit-groups: group pattern `nosuch` matches no group\n--limit-hosts: host pattern `web3` matches no host\n  hint: did you mean `web1`?\n2 errors",
    );
    check(
        limits(&["db"], &["web*"]),
        "error: no role selects any host within the given limits\n  hint: check the roles' `groups`/`hosts` patterns against `mop inventory`",
    );
    // The pattern algebra in limits: exclusion and intersection.
    check(limits(&[], &["web*:!web2"]), "role web: web1\nrole db: ");
    check(
        limits(&["all:!db"], &["!web1"]),
        "role web: web2\nrole db: ",
    );
    check(limits(&["web:&db"], &[]), "error: no role selects any host within the given limits\n  hint: check the roles' `groups`/`hosts` patterns against `mop inventory`");
}

#[test]
fn role_patterns_use_the_algebra_and_unmatched_terms_are_errors() {
    let roles = r#"
[[roles]]
name = "web"
groups = ["web:!db"]
hosts = ["!web1"]

[[roles.resources]]
type = "echo"
msg = "x"

[[roles]]
name = "typo"
groups = ["wbe"]
hosts = ["all:!db9"]

[[roles.resources]]
type = "echo"
msg = "x"

[[roles]]
name = "bad"
hosts = ["web;x"]
"#;
    let files = Files::new(&policy(roles), INVENTORY);
    insta::assert_snapshot!(files.load(&limits(&[], &[]), &[], &[]));
    let roles = r#"
[[roles]]
name = "web"
groups = ["web:!db"]
hosts = ["!web1"]

[[roles.resources]]
type = "echo"
msg = "x"
"#;
    let files = Files::new(&policy(roles), INVENTORY);
    assert_eq!(files.load(&limits(&[], &[]), &[], &[]), "role web: web2");
}

#[test]
fn variable_layers_policy_then_role_then_inventory_then_extra_vars() {
    let files = Files::new(&policy(WEB_AND_DB), INVENTORY);
    let check = |extra: &[&str], expected: &str| {
        let loaded = files.load(&limits(&["web"], &[]), extra, &["color", "tier", "size"]);
        let web = loaded.lines().next().unwrap_or_default();
        assert_eq!(web, expected, "{extra:?}");
    };
    // Inventory beats role beats policy; the role's own vars beat the policy's.
    check(
        &[],
        r#"role web: web1 (color="green" tier="front" size="role"), web2 (color="green" tier="role" size="role")"#,
    );
    // `-e` beats everything, later ones winning.
    check(
        &["tier=cli", "color=first", "color=last"],
        r#"role web: web1 (color="last" tier="cli" size="role"), web2 (color="last" tier="cli" size="role")"#,
    );
}

#[test]
fn role_connection_settings_apply_only_where_the_inventory_is_silent() {
    let roles = r#"
[[roles]]
name = "web"
groups = ["web"]
ssh_as = "deploy"
sudo = true

[[roles.resources]]
type = "echo"
msg = "hi"
"#;
    let inventory = r#"
[groups.web.hosts]
web1 = "mop_host=192.0.2.1 mop_ssh_username=admin"
web2 = "mop_host=192.0.2.2"
"#;
    let files = Files::new(&policy(roles), inventory);
    assert_eq!(
        files.load(&Limits::default(), &[], &["mop_ssh_username", "mop_sudo"]),
        r#"role web: web1 (mop_ssh_username="admin" mop_sudo=true), web2 (mop_ssh_username="deploy" mop_sudo=true)"#
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let roles = r#"
[[roles]]
name = "web"
groups = ["web"]

[[roles.resources]]
type = "echo"
msg = "{{ nosuch }}"

[[roles.resources]]
type = "echo"
msg = "{{ missing_too }}"
"#;
    // web2 logs in with a password: loaded like any other host, the password never echoed.
    let inventory = r#"
[groups.web.hosts]
web1 = "mop_host=192.0.2.1"
web2 = "mop_host=192.0.2.2 mop_ssh_password=hunter2"
web3 = "mop_host=192.0.2.3 nosuch=1 missing_too=1"
"#;
    let files = Files::new(&policy(roles), inventory);
    let loaded = files.load(&Limits::default(), &[], &[]);
    assert!(loaded.starts_with("error: site.toml:"), "{loaded}");
    assert!(loaded.contains("`nosuch`"), "{loaded}");
    assert!(loaded.contains("`missing_too`"), "{loaded}");
    assert!(loaded.contains("(on hosts: web2, web1)"), "{loaded}");
    assert!(loaded.ends_with("\n2 errors"), "{loaded}");
    assert!(!loaded.contains("hunter2"), "{loaded}");
}

#[test]
fn a_host_with_a_login_password_is_loaded() {
    let roles = r#"
[[roles]]
name = "web"
groups = ["web"]

[[roles.resources]]
type = "echo"
msg = "hello"
"#;
    let inventory = r#"
[groups.web.hosts]
web1 = "mop_host=192.0.2.1 mop_ssh_password=hunter2"
"#;
    let files = Files::new(&policy(roles), inventory);
    let loaded = files.load(&Limits::default(), &[], &[]);
    assert!(!loaded.starts_with("error:"), "{loaded}");
    assert!(loaded.contains("web1"), "{loaded}");
    assert!(!loaded.contains("hunter2"), "{loaded}");
}

#[test]
fn retry_files_name_hosts_not_patterns() {
    let files = Files::new(&policy(WEB_AND_DB), INVENTORY);
    let retry = files.path("site.retry");
    let check = |retry_text: Option<&str>, expected: &str| {
        match retry_text {
            Some(text) => std::fs::write(&retry, text).expect("write the retry file"),
            None => {
                let _ = std::fs::remove_file(&retry);
            }
        }
        let at_file = format!("@{}", retry.display());
        assert_eq!(
            files.load(&limits(&[], &[&at_file]), &[], &[]),
            expected,
            "{retry_text:?}"
        );
    };
    check(
        Some("# failed\nweb2\n\ndb1\n"),
        "role web: web2\nrole db: db1",
    );
    check(
        Some("# nothing\n"),
        "error: the host list `site.retry` given to --limit-hosts names no host",
    );
    check(
        None,
        "error: cannot read the host list `site.retry` given to --limit-hosts",
    );
}

#[test]
fn the_policy_and_inventory_are_never_served() {
    let files = Files::new(&policy(WEB_AND_DB), INVENTORY);
    std::fs::create_dir(files.path("inventory")).expect("mkdir");
    std::fs::write(files.path("inventory/a.toml"), "").expect("write");
    let check = |inventory: &[&str], expected: &[&str]| {
        let given: Vec<PathBuf> = inventory.iter().map(|name| files.path(name)).collect();
        let paths = inventory_paths(&given, None).expect("given");
        let mut protected: Vec<String> = protected_files(&files.path("site.toml"), &paths)
            .iter()
            .map(|path| files.relative(&path.display().to_string()))
            .collect();
        protected.sort();
        assert_eq!(protected, expected, "{paths}");
    };
    check(&["inventory.toml"], &["inventory.toml", "site.toml"]);
    check(&["inventory"], &["inventory/a.toml", "site.toml"]);
    check(
        &["inventory", "inventory.toml"],
        &["inventory.toml", "inventory/a.toml", "site.toml"],
    );
}

/// Resolves an ad hoc TARGET against `INVENTORY`: host names, or the error text.
fn targets(files: &Files, target: Option<&str>, hosts: &[&str], extra: &[&str]) -> String {
    let inventory = files.path("inventory.toml");
    let hosts: Vec<String> = hosts.iter().map(ToString::to_string).collect();
    let extra: Vec<String> = extra.iter().map(ToString::to_string).collect();
    match resolve_targets(&TargetRequest {
        target,
        inventory: std::slice::from_ref(&inventory),
        hosts: &hosts,
        extra_vars: &extra,
        ..TargetRequest::default()
    }) {
        Ok(resolved) => resolved
            .iter()
            .map(|host| match host.vars.get("color") {
                Some(color) => format!("{} {color}", host.name),
                None => host.name.clone(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Err(error) => format!("error: {}", files.relative(&error.to_string())),
    }
}

#[test]
fn an_adhoc_target_names_groups_or_hosts_in_inventory_order() {
    let files = Files::new(&policy(WEB_AND_DB), INVENTORY);
    let check = |target: Option<&str>, hosts: &[&str], expected: &str| {
        assert_eq!(
            targets(&files, target, hosts, &[]),
            expected,
            "{target:?} {hosts:?}"
        );
    };
    check(Some("web"), &[], r#"web1 "green", web2 "green""#);
    check(Some("db1,web2"), &[], r#"web2 "green", db1"#);
    check(Some("web*"), &[], r#"web1 "green", web2 "green""#);
    check(Some("all"), &[], r#"web1 "green", web2 "green", db1"#);
    check(Some("web:!web2"), &[], r#"web1 "green""#);
    check(Some("all:&web:!web1"), &[], r#"web2 "green""#);
    check(
        Some("web,,db"),
        &[],
        "error: invalid pattern `web,,db`: empty term\n  hint: separate terms with single `:` or `,`, e.g. `web:&dc1:!web2`; use `*` to match everything",
    );
    check(
        Some("web,nosuch*:!wev2"),
        &[],
        "error: target pattern `nosuch*` matches no group or host in `inventory.toml`\n  hint: `mop inventory -i inventory.toml` lists the groups and hosts\ntarget pattern `!wev2` matches no group or host in `inventory.toml`\n  hint: did you mean `web2`?",
    );
    check(
        Some("web:&db"),
        &[],
        "error: the target `web:&db` selects no host\n  hint: `&` keeps only hosts every `&` term matches, `!` removes hosts; `mop inventory -i inventory.toml` lists the groups and hosts",
    );
    check(
        None,
        &[],
        "error: no hosts given\n  hint: name an inventory pattern (e.g. `web` or `web,db*`) or pass --hosts",
    );
    check(
        Some("web"),
        &["192.0.2.9"],
        "error: both a TARGET (`web`) and --hosts are given\n  hint: use an inventory pattern or --hosts, not both",
    );
    // --hosts: outside the inventory, in the given order, duplicates dropped.
    check(
        None,
        &[
            "deploy@192.0.2.9:2222",
            "192.0.2.8",
            "deploy@192.0.2.9:2222",
        ],
        "deploy@192.0.2.9:2222, 192.0.2.8",
    );
}

#[test]
fn extra_vars_reach_adhoc_hosts() {
    let files = Files::new(&policy(WEB_AND_DB), INVENTORY);
    assert_eq!(
        targets(&files, Some("web1,db1"), &[], &["color=blue"]),
        r#"web1 "blue", db1 "blue""#
    );
    assert_eq!(
        targets(&files, None, &["192.0.2.9"], &["color=blue"]),
        r#"192.0.2.9 "blue""#
    );
}

#[test]
fn vars_files_defaults_and_group_vars_take_their_places() {
    let roles = r#"
vars_files = ["vars/common.toml"]

[[roles]]
name = "web"
groups = ["web"]
use = "roles/app"
vars_files = ["vars/web.toml"]
"#;
    // `vars_files` before `[vars]`, or TOML puts it in the table.
    let files = Files::new(&format!("{roles}\n[vars]\nsize = \"policy\"\n"), INVENTORY);
    let write = |name: &str, text: &str| {
        let path = files.path(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write(
        "roles/app/resources.toml",
        "[[resources]]\ntype = \"echo\"\nmsg = \"{{ only_default }}\"\n",
    );
    write(
        "roles/app/defaults.toml",
        "only_default = \"defaults\"\nsize = \"defaults\"\ncolor = \"defaults\"\n",
    );
    write("vars/common.toml", "size = \"policy file\"\n");
    write("vars/web.toml", "tier = \"role file\"\n");
    write("group_vars/web.toml", "color = \"group_vars\"\n");
    write("group_vars/wbe.toml", "color = \"typo\"\n");
    write("host_vars/web1.toml", "tier = \"host_vars\"\n");
    let loaded = files.relative(&files.load(
        &Limits::default(),
        &[],
        &["color", "tier", "size", "only_default"],
    ));
    assert_eq!(
        loaded,
        "role web: web1 (color=\"group_vars\" tier=\"host_vars\" size=\"policy file\" only_default=\"defaults\"), \
         web2 (color=\"group_vars\" tier=\"role file\" size=\"policy file\" only_default=\"defaults\")\n\
         warning: `group_vars/wbe.toml`: no group `wbe` in the inventory, its variables are not used\n  hint: name the file after a group of the inventory"
    );
    let inventory = inventory_paths(&[files.path("inventory.toml")], None).expect("given");
    let mut protected = protected_files(&files.path("site.toml"), &inventory);
    let run = load_run(&RunRequest {
        policy: &files.path("site.toml"),
        inventory: &[files.path("inventory.toml")],
        limits: &Limits::default(),
        extra_vars: &[],
    })
    .map_err(|error| error.to_string())
    .expect("loads");
    protected.extend(policy_vars_files(&run.policy));
    let protected: Vec<String> = protected
        .iter()
        .map(|path| files.relative(&path.display().to_string()))
        .collect();
    assert_eq!(
        protected,
        [
            "site.toml",
            "inventory.toml",
            "vars/common.toml",
            "roles/app/defaults.toml",
            "vars/web.toml"
        ]
    );
}

#[test]
fn policy_and_inventory_vars_file_errors_are_reported_together() {
    let roles = r#"
vars_files = ["vars/common.toml"]

[[roles]]
name = "web"
use = "roles/missing"
"#;
    // `vars_files` before `[vars]`, or TOML puts it in the table.
    let files = Files::new(&format!("{roles}\n[vars]\nsize = \"policy\"\n"), INVENTORY);
    std::fs::create_dir_all(files.path("vars")).expect("mkdir");
    std::fs::write(files.path("vars/common.toml"), "not toml\n").expect("write");
    std::fs::create_dir_all(files.path("group_vars")).expect("mkdir");
    std::fs::write(files.path("group_vars/web.toml"), "color = \n").expect("write");
    let loaded = files.load(&Limits::default(), &[], &[]);
    assert_eq!(
        loaded,
        "error: vars/common.toml:1:5: vars file named at site.toml:2:15: invalid TOML: expected `.`, `=`\n  \
         hint: a vars file is a TOML table of variables, e.g. `http_port = 8080`\n\
         site.toml:6:7: role `web`: role directory `roles/missing` does not exist\n  \
         hint: a role directory holds `resources.toml` and optionally `defaults.toml`, `templates/` and `files/`\n\
         group_vars/web.toml:1:9: invalid TOML: invalid string; expected `\"`, `'`\n  \
         hint: a vars file is a TOML table of variables, e.g. `http_port = 8080`\n\
         3 errors"
    );
}

/// Validation is not staged: a field serde rejects (`mode`), a check on the rest of the same
/// resource (a relative `path`), the inventory-dependent undefined-variable check, the file
/// server's refusal of a `source` and a template file's own undefined variable are all in one
/// report, in file order.
#[test]
fn one_load_reports_every_stage_in_file_order() {
    let roles = r#"
[[roles]]
name = "web"
groups = ["web"]
max_fail = "lots"

[[roles.resources]]
type = "file"
path = "etc/app.conf"
content = "{{ undefined_in_content }}"
mode = "rwx"

[[roles.resources]]
type = "file"
path = "/etc/motd"
source = "missing.txt"

[[roles.resources]]
type = "file"
path = "/etc/issue"
template = "issue.j2"
owner = "{{ undefined_owner }}"

[[roles.resources]]
type = "service"
service = "nginx"
state = "runing"

[[roles.resources]]
type = "echo"
msg = "{{ undefined_in_msg }}"
"#;
    let files = Files::new(&policy(roles), INVENTORY);
    std::fs::write(files.path("issue.j2"), "{{ undefined_in_template }}\n").expect("write");
    insta::assert_snapshot!(files.load(&Limits::default(), &[], &[]));
}
