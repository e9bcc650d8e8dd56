//! The static undefined-variable check: which names each string of a role can see.

use std::collections::BTreeSet;
use std::path::Path;

use mop_policy::Policy;

fn load(text: &str) -> Policy {
    Policy::from_str(text, Path::new("site.toml")).unwrap_or_else(|errors| panic!("{errors}"))
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|name| name.to_string()).collect()
}

fn undefined(policy: &Policy, role_index: usize, inventory: &[&str]) -> Vec<String> {
    policy
        .check_undefined(role_index, &names(inventory), &BTreeSet::new())
        .iter()
        .map(ToString::to_string)
        .collect()
}

const POLICY: &str = r#"
[vars]
motd_banner = "managed"

[[roles]]
name = "web"
before = "drain {{ host.name }} {{ lb_pool }}"
after = "enable {{ facts.hostname }}"
contact_when = "not maintenance"

[roles.vars]
app_port = 8080

[[roles.resources]]
type = "echo"
msg = "{{ motd_banner }} {{ app_port }} {{ facts.os.family }} {{ host.groups | join(',') }}"

[[roles.resources]]
type = "echo"
msg = """
first line
{{ uptime_out.stdout }}
"""

[[roles.resources]]
name = "uptime"
type = "command"
cmd = "uptime"
register = "uptime_out"
changed_when = "result.rc != 0"
failed_when = "{{ result.rc > 1 }}"

[[roles.resources]]
type = "set"
vars = { summary = "{{ uptime_out.stdout }} on port {{ app_prot }}" }

[[roles.resources]]
type = "assert"
that = ["summary", "result.failed", "host.nmae", "facts.os.famly"]
when = "env == 'prod'"

[[roles.handlers]]
name = "report"
type = "echo"
msg = "{{ summary }} {{ late }}"

[[roles.handlers]]
name = "late"
type = "set"
vars = { late = 1 }
"#;

#[test]
fn names_by_position_and_kind() {
    let policy = load(POLICY);
    insta::assert_snapshot!(undefined(&policy, 0, &["maintenance"]).join("\n"), @r#"
    site.toml:7:10: role `web`: field `before`: undefined variable `lb_pool`
      hint: define it under `vars` (policy, role or roles file), in the inventory, with `-e`, or with `register`/`set` in an earlier resource
    site.toml:8:9: role `web`: field `after`: undefined variable `facts`
      hint: facts are gathered on the host, so controller-side `before`, `after` and `contact_when` cannot use them
    site.toml:20:7: role `web`: resource #2 (echo first line {{ uptime_out.stdout }}): field `msg`: undefined variable `uptime_out` (template line 2)
      hint: `uptime_out` is defined by resource #3 (uptime), which runs later; move that resource before this one
    site.toml:35:20: role `web`: resource #4 (set summary): field `vars.summary`: undefined variable `app_prot`
      hint: did you mean `app_port`?
    site.toml:39:20: role `web`: resource #5 (assert summary and result.failed and host.nma...): field `that[1]`: undefined variable `result`
      hint: `result` exists only in `changed_when` and `failed_when`; use `register` to keep a result for later resources
    site.toml:39:37: role `web`: resource #5 (assert summary and result.failed and host.nma...): field `that[2]`: `host` has no attribute `nmae`
      hint: did you mean `name`?
    site.toml:39:50: role `web`: resource #5 (assert summary and result.failed and host.nma...): field `that[3]`: `facts.os` has no attribute `famly`
      hint: did you mean `family`?
    site.toml:40:8: role `web`: resource #5 (assert summary and result.failed and host.nma...): field `when`: undefined variable `env`
      hint: define it under `vars` (policy, role or roles file), in the inventory, with `-e`, or with `register`/`set` in an earlier resource
    site.toml:45:7: role `web`: handler `report`: field `msg`: undefined variable `late`
      hint: `late` is defined by handler `late`, which runs later; move that resource before this one
    "#);
}

#[test]
fn inventory_names_complete_the_scope() {
    let policy = load(POLICY);
    let errors = undefined(&policy, 0, &["maintenance", "lb_pool", "env", "app_prot"]);
    assert!(
        !errors.iter().any(|error| error.contains("`lb_pool`")),
        "{errors:#?}"
    );
    assert!(
        !errors.iter().any(|error| error.contains("`env`")),
        "{errors:#?}"
    );
    let errors = undefined(&policy, 0, &[]);
    assert!(
        errors
            .iter()
            .any(|error| error.contains("undefined variable `maintenance`")),
        "{errors:#?}"
    );
    assert!(
        undefined(&policy, 7, &[]).is_empty(),
        "out-of-range role index"
    );
}

/// Secret names are errors wherever they are read, defined or not, guarded or not: on the
/// controller (hooks, `contact_when`) and on the host (where the plan never carries them).
#[test]
fn secrets_are_named_wherever_they_are_read() {
    let policy = load(
        r#"
[[roles]]
name = "web"
before = "true {{ mop_sudo_password }}"
after = "echo {{ mop_sudo_password | default('') }} {{ host.name }}"
contact_when = "mop_ssh_password is defined"

[[roles.resources]]
type = "echo"
msg = "{{ mop_sudo_password }} {{ mop_sudo_username }}"
"#,
    );
    let secrets = names(&["mop_ssh_password", "mop_sudo_password"]);
    let errors: Vec<String> = policy
        .check_undefined(
            0,
            &names(&["mop_sudo_password", "mop_sudo_username"]),
            &secrets,
        )
        .iter()
        .map(ToString::to_string)
        .collect();
    insta::assert_snapshot!(errors.join("\n"), @r#"
    site.toml:4:10: role `web`: field `before`: `mop_sudo_password` is a secret: templates and expressions cannot read it
      hint: secrets leave the controller only on sudo's stdin; a command that needs a credential should read it itself (from a file or an agent)
    site.toml:5:9: role `web`: field `after`: `mop_sudo_password` is a secret: templates and expressions cannot read it
      hint: secrets leave the controller only on sudo's stdin; a command that needs a credential should read it itself (from a file or an agent)
    site.toml:6:16: role `web`: field `contact_when`: `mop_ssh_password` is a secret: templates and expressions cannot read it
      hint: secrets leave the controller only on sudo's stdin; a command that needs a credential should read it itself (from a file or an agent)
    site.toml:10:7: role `web`: resource #1 (echo {{ mop_sudo_password }} {{ mop_sudo_user...): field `msg`: `mop_sudo_password` is a secret: templates and expressions cannot read it
      hint: secrets leave the controller only on sudo's stdin; a command that needs a credential should read it itself (from a file or an agent)
    "#);
}

#[test]
fn earlier_roles_registered_names_and_included_vars_are_visible() {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::create_dir_all(dir.path().join("roles")).expect("roles dir");
    std::fs::write(
        dir.path().join("roles/base.toml"),
        r#"
[vars]
base_dir = "/srv"

[[resources]]
type = "echo"
msg = "{{ base_dir }} {{ role_only }} {{ from_first_role }} {{ missing_here }}"
"#,
    )
    .expect("roles file");
    let policy_path = dir.path().join("site.toml");
    std::fs::write(
        &policy_path,
        r#"
[[roles]]
name = "first"

[[roles.resources]]
type = "command"
cmd = "id -u"
register = "from_first_role"

[[roles]]
name = "second"
include = "roles/base.toml"

[roles.vars]
role_only = true
"#,
    )
    .expect("policy");
    let policy = Policy::load(&policy_path).unwrap_or_else(|errors| panic!("{errors}"));
    let errors: Vec<String> = policy
        .check_undefined(1, &BTreeSet::new(), &BTreeSet::new())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("roles/base.toml:7:7: role `second`: resource #1"),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].contains("undefined variable `missing_here`"),
        "{}",
        errors[0]
    );
}

#[test]
fn template_files_are_checked_with_their_own_lines() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let policy_path = dir.path().join("site.toml");
    std::fs::write(
        &policy_path,
        r#"
[vars]
banner = "hi"

[[roles]]
name = "web"

[[roles.resources]]
type = "file"
path = "/etc/motd"
template = "templates/motd.j2"
"#,
    )
    .expect("policy");
    let policy = Policy::load(&policy_path).unwrap_or_else(|errors| panic!("{errors}"));
    let reference = policy
        .template_paths()
        .next()
        .expect("one template reference");
    assert_eq!(reference.resolved, dir.path().join("templates/motd.j2"));

    let good = "{{ banner }}\n{% for group in host.groups %}{{ group }}\n{% endfor %}";
    assert!(policy
        .check_template_file(&reference, good, &BTreeSet::new(), &BTreeSet::new())
        .is_empty());

    let undefined_text = "{{ banner }}\n\n  {{ bannr }} on {{ host.name }}\n";
    let errors = policy.check_template_file(
        &reference,
        undefined_text,
        &BTreeSet::new(),
        &BTreeSet::new(),
    );
    let prefix = format!("{}/", dir.path().display());
    let rendered: Vec<String> = errors
        .iter()
        .map(|error| error.to_string().replace(&prefix, "<dir>/"))
        .collect();
    assert_eq!(
        rendered,
        vec![
            "<dir>/templates/motd.j2:3:6: template of role `web`: resource #1 (file /etc/motd): undefined variable `bannr`\n  hint: did you mean `banner`?"
        ]
    );

    let broken = "ok\n{% if banner %}\nno end\n";
    let errors = policy.check_template_file(&reference, broken, &BTreeSet::new(), &BTreeSet::new());
    let rendered: Vec<String> = errors
        .iter()
        .map(|error| error.to_string().replace(&prefix, "<dir>/"))
        .collect();
    assert_eq!(
        rendered,
        vec!["<dir>/templates/motd.j2:2:1: template of role `web`: resource #1 (file /etc/motd): syntax error: unexpected end of input, expected end of block"]
    );
}

#[test]
fn loop_names_are_seen_only_inside_their_loop() {
    let policy = load(
        r#"
[vars]
users = ["ann", "bob"]

[[roles]]
name = "web"

[[roles.resources]]
type = "echo"
msg = "{{ user }} {{ loop_index }} {{ loop_index0 }}"
loop = "{{ users }}"
loop_var = "user"
label = "{{ user | upper }}"
register = "said"

[[roles.resources]]
type = "echo"
msg = "{{ said.results | length }} {{ item }}"

[[roles.resources]]
type = "file"
path = "/srv/{{ item.name }}"
state = "{{ item.state }}"
loop = [{ name = "a", state = "present" }]
when = "item.name != 'b'"

[[roles.resources]]
type = "echo"
msg = "{{ item }}"
loop = "{{ item }}"
"#,
    );
    assert_eq!(
        undefined(&policy, 0, &[]),
        vec![
            "site.toml:18:7: role `web`: resource #2 (echo {{ said.results | length }} {{ item }}): field `msg`: `item` is used outside a loop\n  hint: `item` exists only in a resource or handler with `loop = [...]` (and not in the `loop` itself)".to_string(),
            "site.toml:30:8: role `web`: resource #4 (echo {{ item }}): field `loop`: `item` is used outside a loop\n  hint: `item` exists only in a resource or handler with `loop = [...]` (and not in the `loop` itself)".to_string(),
        ]
    );
}
