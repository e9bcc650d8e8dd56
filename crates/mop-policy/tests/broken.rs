//! Broken policies and the errors they produce, snapshotted: every check of the loader, with
//! the file, line, column, context and hint the user sees.

use std::path::Path;

use mop_policy::Policy;

/// Loads `policy` (written as `site.toml` in a fresh directory next to `files`) and renders
/// every error, with the directory replaced by `<dir>`.
fn errors_of(policy: &str, files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("file in a directory"))
            .expect("create directory");
        std::fs::write(&path, text).expect("write file");
    }
    let path = dir.path().join("site.toml");
    std::fs::write(&path, policy).expect("write policy");
    let errors = match Policy::load(&path) {
        Ok(_) => panic!("policy loaded without errors:\n{policy}"),
        Err(errors) => errors,
    };
    let prefix = format!("{}/", dir.path().display());
    errors.to_string().replace(&prefix, "<dir>/")
}

fn check(name: &str, policy: &str) {
    check_with_files(name, policy, &[]);
}

fn check_with_files(name: &str, policy: &str, files: &[(&str, &str)]) {
    insta::assert_snapshot!(name, errors_of(policy, files), policy);
}

#[test]
fn toml_syntax_error() {
    check(
        "toml_syntax_error",
        r#"
[[roles]]
name = "web"
serial =
"#,
    );
}

#[test]
fn unknown_keys_everywhere_with_suggestions() {
    check(
        "unknown_keys",
        r#"
inventroy = "../inventory/example.toml"

[fileserver]
path = ["files"]

[[roles]]
name = "web"
grups = ["webservers"]
serail = 2

[[roles.resources]]
type = "file"
path = "/etc/motd"
contnet = "hello\n"
notfy = "reload"
"#,
    );
}

#[test]
fn unknown_resource_type() {
    check(
        "unknown_resource_type",
        r#"
[[roles]]
name = "web"

[[roles.resources]]
type = "flie"
path = "/etc/motd"

[[roles.resources]]
type = "frobnicate"

[[roles.resources]]
path = "/etc/issue"
"#,
    );
}

#[test]
fn duplicate_role_names() {
    check(
        "duplicate_role_names",
        r#"
[[roles]]
name = "web"

[[roles]]
name = "db"

[[roles]]
name = "web"

[[roles]]
groups = ["x"]
"#,
    );
}

#[test]
fn serial_and_max_fail() {
    check(
        "serial_and_max_fail",
        r#"
[[roles]]
name = "zero"
serial = 0
max_fail = "150%"

[[roles]]
name = "negative"
serial = -3
max_fail = -1

[[roles]]
name = "strings"
serial = "10"
max_fail = "ten"

[[roles]]
name = "float"
max_fail = 1.5
"#,
    );
}

#[test]
fn handlers_notified_missing_duplicate_and_unnamed() {
    check(
        "handlers",
        r#"
[[roles]]
name = "web"

[[roles.resources]]
type = "file"
path = "/etc/motd"
content = "hi"
notify = ["reload motd", "restart nginx"]

[[roles.handlers]]
name = "reload mtod"
type = "echo"
msg = "reloaded"

[[roles.handlers]]
name = "reload mtod"
type = "echo"
msg = "again"

[[roles.handlers]]
type = "echo"
msg = "who am i"
"#,
    );
}

#[test]
fn invalid_globs_and_wrong_types() {
    check(
        "globs_and_types",
        r#"
[[roles]]
name = "web"
groups = ["web[", "db*"]
hosts = "{a,b"
sudo = "yes"
check_host_keys = "acept-new"
tags = [1, 2]
ssh_as = ""
vars = "not a table"
resources = "none"
"#,
    );
}

#[test]
fn template_syntax_errors_name_the_template_line() {
    check(
        "template_syntax",
        r#"
[[roles]]
name = "web"
before = "drain {{ host.name"

[[roles.resources]]
type = "file"
path = "/etc/motd"
content = """
line one
{% if motd_banner %}
{{ motd_banner }
{% endif %}
"""

[[roles.resources]]
type = "shell"
cmd = "echo {{ x }"
env = { GREETING = "{% for %}" }
"#,
    );
}

#[test]
fn expression_syntax_errors() {
    check(
        "expression_syntax",
        r#"
[[roles]]
name = "web"
contact_when = "host.name =="

[[roles.resources]]
type = "echo"
msg = "hi"
when = "x and"
changed_when = "result.rc ="
failed_when = "{{ result.rc != 0 }}"

[[roles.resources]]
type = "assert"
that = ["1 == 1", "a b c"]
"#,
    );
}

#[test]
fn file_content_sources_and_paths() {
    check(
        "file_rules",
        r#"
[[roles]]
name = "web"

[[roles.resources]]
type = "file"
path = "/etc/motd"
content = "hi"
template = "templates/motd.j2"

[[roles.resources]]
type = "file"
path = "/etc/old"
state = "absent"
source = "old.txt"

[[roles.resources]]
type = "file"
path = "etc/relative"
content = "x"

[[roles.resources]]
type = "file"
path = "/etc/{{ name }}"
template = "templates/{{ host.name }}.j2"
mode = "0648"

[[roles.resources]]
type = "directory"
path = "/srv/app"
mode = 0o644
owner = 1000
"#,
    );
}

#[test]
fn link_line_and_command_rules() {
    check(
        "link_line_command_rules",
        r#"
[[roles]]
name = "web"

[[roles.resources]]
type = "link"
path = "/etc/alternatives/editor"

[[roles.resources]]
type = "line"
path = "/etc/hosts"
regexp = "^127\\.0\\.0\\.1"

[[roles.resources]]
type = "line"
path = "/etc/hosts"
state = "absent"

[[roles.resources]]
type = "line"
path = "/etc/hosts"
line = "x"
regexp = "(unclosed"

[[roles.resources]]
type = "line"
path = "/etc/hosts"
line = """
two
lines"""

[[roles.resources]]
type = "shell"
cmd = "  "
timeout = 0

[[roles.resources]]
type = "command"
cmd = "sleep 1"
timeout = "5"
ignore_errors = "yes"
"#,
    );
}

#[test]
fn variable_names_register_and_set() {
    check(
        "variable_names",
        r#"
[vars]
host = "shadowed"

[[roles]]
name = "web"

[roles.vars]
facts = 1

[[roles.resources]]
type = "command"
cmd = "uptime"
register = "up-time"

[[roles.resources]]
type = "set"
vars = { result = 1, "bad name" = 2 }

[[roles.resources]]
type = "set"
vars = {}
"#,
    );
}

#[test]
fn include_missing() {
    check(
        "include_missing",
        r#"
[[roles]]
name = "web"
include = "roles/nope.toml"

[[roles]]
name = "db"
include = "roles/nope.toml"
"#,
    );
}

#[test]
fn include_unparseable_names_both_files() {
    check_with_files(
        "include_unparseable",
        r#"
[[roles]]
name = "web"
include = "roles/web.toml"
"#,
        &[(
            "roles/web.toml",
            "[[resources]]\ntype = \"file\"\npath = \n",
        )],
    );
}

#[test]
fn roles_files_are_checked_once_and_include_relative_to_themselves() {
    check_with_files(
        "include_rules",
        r#"
[[roles]]
name = "web"
include = "roles/web.toml"

[[roles]]
name = "web2"
include = "roles/web.toml"
"#,
        &[(
            "roles/web.toml",
            r#"
include = "other.toml"
roles = []
serial = 2

[[resources]]
type = "file"
path = "/etc/motd"
contnet = "x"
"#,
        )],
    );
}

#[test]
fn fileserver_settings() {
    check(
        "fileserver_settings",
        r#"
[fileserver]
paths = []
allow = "*.conf"
deny = [1]
extra = true

[[roles]]
name = "web"
fileserver_paths = [""]
"#,
    );
}

#[test]
fn role_keys_at_top_level() {
    check(
        "role_keys_at_top_level",
        r#"
name = "web"

[[resources]]
type = "echo"
msg = "hi"

[[roles]]
name = "web"
"#,
    );
}

#[test]
fn no_roles() {
    check(
        "no_roles",
        r#"
inventory = 5

[vars]
released = "2024-05-01"
"#,
    );
}

#[test]
fn datetimes_are_refused() {
    check(
        "datetimes",
        r#"
[vars]
released = 2024-05-01

[[roles]]
name = "web"
"#,
    );
}

#[test]
fn every_error_in_one_resource_is_reported() {
    check(
        "all_errors_in_one_resource",
        r#"
[[roles]]
name = "web"

[[roles.resources]]
type = "shell"
cmd = "true"
timeout = -1
creates = 5
unlesss = "test -f /x"
env = { A = 1 }
"#,
    );
}

#[test]
fn cannot_read_policy() {
    let errors = Policy::load(Path::new("/nonexistent/mop/site.toml")).expect_err("missing file");
    assert_eq!(
        errors.to_string(),
        "/nonexistent/mop/site.toml: cannot read policy: No such file or directory (os error 2)"
    );
}

#[test]
fn filters_and_tests_the_hosts_do_not_have() {
    check(
        "host_template_names",
        r#"
[[roles]]
name = "web"

[[roles.resources]]
type = "file"
path = "/etc/app.conf"
content = "{% for k, v in settings | dictsort %}{{ k }}={{ v | to_yaml }}\n{% endfor %}{{ host.name.zfill(3) }}"
when = "port is version(80)"

[[roles.resources]]
type = "file"
path = "/etc/fine.conf"
content = "{{ settings | dictsort | list | length }} {{ 'a | to_yaml' }} {{ host.name.startswith('web') }} {{ host.name | regex_replace('[0-9]+$', '') }}"
when = "port is sameas(80)"
"#,
    );
}

#[test]
fn decimal_modes_are_rejected_where_written() {
    check(
        "decimal_modes",
        r#"
[[roles]]
name = "web"

[[roles.resources]]
type = "file"
path = "/etc/motd"
mode = 644

[[roles.resources]]
type = "directory"
path = "/srv/app"
mode = 999

[[roles.resources]]
type = "directory"
path = "/srv/hex"
mode = 0x1ed

[[roles.resources]]
type = "file"
path = "/etc/fine-octal"
mode = 0o644

[[roles.resources]]
type = "file"
path = "/etc/fine-string"
mode = "0644"
"#,
    );
}

#[test]
fn include_cycle_names_the_chain() {
    check_with_files(
        "include_cycle",
        r#"
[[roles]]
name = "web"
include = "roles/a.toml"
"#,
        &[
            ("roles/a.toml", "include = \"b.toml\"\n"),
            ("roles/b.toml", "include = [\"c.toml\", \"a.toml\"]\n"),
            ("roles/c.toml", ""),
        ],
    );
}

#[test]
fn nested_include_missing_names_the_chain() {
    check_with_files(
        "include_nested_missing",
        r#"
[[roles]]
name = "web"
include = "roles/a.toml"
"#,
        &[("roles/a.toml", "\ninclude = \"gone.toml\"\n")],
    );
}

#[test]
fn role_directories_missing_or_without_resources() {
    check_with_files(
        "role_directory_problems",
        r#"
[[roles]]
name = "web"
use = "roles/nginx"

[[roles]]
name = "proxy"
use = "roles/ngnix"
"#,
        &[("roles/nginx/defaults.toml", "port = 80\n")],
    );
}

#[test]
fn vars_files_not_toml_or_missing() {
    check_with_files(
        "vars_files_problems",
        r#"
vars_files = ["vars/common.toml", "vars/absent.toml"]

[[roles]]
name = "web"
vars_files = ["vars/role.toml"]

[[roles.resources]]
type = "file"
path = "/etc/motd"
content = "x"
"#,
        &[
            ("vars/common.toml", "port = 80\nthis is not toml\n"),
            ("vars/role.toml", "host = \"reserved\"\n"),
        ],
    );
}

#[test]
fn every_reuse_problem_at_once() {
    check_with_files(
        "reuse_problems_at_once",
        r#"
vars_files = ["vars/broken.toml"]

[[roles]]
name = "web"
use = "roles/empty"

[[roles]]
name = "db"
include = "roles/loop.toml"
"#,
        &[
            ("vars/broken.toml", "[unclosed\n"),
            ("roles/empty/templates/x.j2", "x"),
            ("roles/loop.toml", "include = \"loop.toml\"\n"),
        ],
    );
}

#[test]
fn a_broken_role_directory_used_twice_is_reported_once() {
    check_with_files(
        "role_directory_used_twice",
        r#"
[[roles]]
name = "blue"
use = "roles/app"

[[roles]]
name = "green"
use = "roles/app"
"#,
        &[
            ("roles/app/defaults.toml", "port = \n"),
            (
                "roles/app/resources.toml",
                "[[resources]]\ntype = \"nope\"\n",
            ),
        ],
    );
}

#[test]
fn loops_and_templated_choices() {
    check(
        "loops_and_templated_choices",
        r#"
[[roles]]
name = "web"

[[roles.resources]]
type = "file"
path = "/etc/app/{{ item }}.conf"
loop = 3

[[roles.resources]]
type = "directory"
path = "/srv/{{ item }}"
loop = "a,b"

[[roles.resources]]
type = "file"
path = "/srv/{{ name }}"
loop = ["x", "y"]
loop_var = "my-name"

[[roles.resources]]
type = "echo"
msg = "{{ item }} {{ loop_index }}"
label = "{{ item }}"

[[roles.resources]]
type = "file"
path = "/srv/{{ item.path }}"
state = "{{ item.state }}"
loop = [{ path = "a", state = "present" }, { path = "b", state = "absnet" }]

[[roles.resources]]
type = "service"
service = "nginx"
state = "runing"
enabled = "yes"

[[roles.resources]]
type = "directory"
path = "/srv/{{ item }}"
loop = "{{ item }}"
[[roles.resources]]
type = "file"
path = "/srv/a"
template = "templates/{{ name }}.j2"

[[roles.resources]]
type = "file"
path = "/srv/{{ item }}"
source = "files/{{ item }}-{{ name }}"
loop = ["a"]

[[roles.resources]]
type = "file"
path = "/srv/{{ item }}"
source = "files/{{ item }}"
loop = ["a", "b"]
"#,
    );
}

#[test]
fn sysctl_mount_and_unarchive_fields() {
    check(
        "sysctl_mount_unarchive",
        r#"
[[roles]]
name = "system"

[[roles.resources]]
type = "sysctl"
sysctl = "net..ipv4/../x"
file = "sysctl.d/99.conf"

[[roles.resources]]
type = "mount"
path = "/srv/cache"
fstype = "-oexec"
opts = "size=1m mode=0700"

[[roles.resources]]
type = "unarchive"
dest = "opt/app"
src = "/tmp/app.tar.gz"
source = "app.tar.gz"
format = "rar"

[[roles.resources]]
type = "unarchive"
dest = "/opt/app"
"#,
    );
}

#[test]
fn tree_fields() {
    check(
        "tree_fields",
        r#"
[[roles]]
name = "site"

[[roles.resources]]
type = "tree"
source = "files/{{ site }}"
path = "var/www"
dir_mode = "0799"
exclude = ["*.tmp", "", "../up", "{{ drafts }}"]

[[roles.resources]]
type = "tree"
source = "files/site"
path = "/"
delete = true
excludes = ["*.tmp"]

[[roles.resources]]
type = "tree"
path = "/srv/site"
"#,
    );
}
