//! Reuse through `mop push`: a role directory outside the policy's directory used by two roles
//! with different parameters (its templates and files served with no file-server settings),
//! and where a variable set at every layer lands (`group_vars/`, `host_vars/`, `vars_files`,
//! role defaults), as `mop inventory --host` explains it.

use std::path::Path;

use mop_testhosts::TestHostsBuilder;

use crate::support::{run_mop, Sandbox};

const HOSTS: [&str; 2] = ["host1", "host2"];

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("file in a directory")).expect("create dir");
    std::fs::write(path, text).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
}

/// `shared/roles/app`: resources, a handler, defaults, a template and a file. It lives beside
/// `policies/`, so nothing of it is under the policy's directory or a served root.
fn write_app_role(sandbox: &Sandbox) {
    let role = sandbox.dir().join("shared/roles/app");
    let out = sandbox.out.display().to_string();
    write(
        &role.join("resources.toml"),
        &r#"
include = "tasks/logo.toml"

[[resources]]
type = "file"
path = "@OUT@/{{ host.name }}-{{ app_name }}.conf"
template = "app.conf.j2"
mode = "0644"
notify = "app changed"

[[handlers]]
name = "app changed"
type = "command"
cmd = "sh -c 'echo {{ app_name }} >> @OUT@/{{ host.name }}-handlers.log'"
"#
        .replace("@OUT@", &out),
    );
    write(
        &role.join("tasks/logo.toml"),
        &r#"
[[resources]]
type = "file"
path = "@OUT@/{{ host.name }}-{{ app_name }}-logo.txt"
source = "logo.txt"
mode = "0644"
"#
        .replace("@OUT@", &out),
    );
    write(
        &role.join("defaults.toml"),
        "port = 80\nbanner = \"default banner\"\n",
    );
    write(
        &role.join("templates/app.conf.j2"),
        "app={{ app_name }} port={{ port }} banner={{ banner }}\n",
    );
    write(&role.join("files/logo.txt"), "the shared logo\n");
}

const TWICE_POLICY: &str = r#"
[[roles]]
name = "blue"
groups = ["web"]
use = "../shared/roles/app"
vars = { app_name = "blue", port = 8081 }

[[roles]]
name = "green"
groups = ["web"]
use = "../shared/roles/app"
vars = { app_name = "green", banner = "green banner" }
"#;

#[test]
fn a_shared_role_used_twice_converges_both_with_its_files() {
    let sandbox = Sandbox::start("roles-twice", TestHostsBuilder::new().hosts(2).group("web"));
    write_app_role(&sandbox);
    std::fs::create_dir(sandbox.dir().join("policies")).expect("create policies/");
    let policy = sandbox.policy("policies/site", TWICE_POLICY);

    let first = sandbox.push(&policy, &["--apply"]);
    first.assert_exit(0);
    for host in HOSTS {
        let read = |name: &str| {
            std::fs::read_to_string(sandbox.out.join(format!("{host}-{name}")))
                .unwrap_or_else(|error| panic!("{host}-{name}: {error}\n{}", first.describe()))
        };
        assert_eq!(
            read("blue.conf"),
            "app=blue port=8081 banner=default banner\n"
        );
        assert_eq!(
            read("green.conf"),
            "app=green port=80 banner=green banner\n"
        );
        assert_eq!(read("blue-logo.txt"), "the shared logo\n");
        assert_eq!(read("green-logo.txt"), "the shared logo\n");
        // Each use notifies its own handler once.
        assert_eq!(read("handlers.log"), "blue\ngreen\n");
    }

    let second = sandbox.push(&policy, &["--apply"]);
    second.assert_exit(0);
    for host in HOSTS {
        assert_eq!(second.total(host, "changed"), 0, "{}", second.describe());
    }
    sandbox.assert_hosts_clean();
}

const LEVELS_POLICY: &str = r#"
vars_files = ["vars/common.toml"]

[vars]
level = "policy vars"
from_policy = "policy vars"

[[roles]]
name = "levels"
groups = ["web"]
use = "roles/levels"

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}-levels.txt"
content = "level={{ level }} from_policy={{ from_policy }} only_default={{ only_default }}\n"
mode = "0644"
"#;

#[test]
fn group_vars_and_host_vars_win_where_ansible_says() {
    let sandbox = Sandbox::start(
        "roles-levels",
        TestHostsBuilder::new().hosts(2).group("web"),
    );
    // Inventory tables: `all`, the group and host1's own vars all set `level`.
    sandbox.set_inventory_extra(
        "level = \"inventory all\"",
        "[groups.web.vars]\nlevel = \"inventory web\"\n\n[hosts.host1.vars]\nlevel = \"inventory host1\"\n",
    );
    let group_vars = sandbox.inventory.join("group_vars");
    write(&group_vars.join("all.toml"), "level = \"group_vars all\"\n");
    write(&group_vars.join("web.toml"), "level = \"group_vars web\"\n");
    write(
        &sandbox.inventory.join("host_vars/host1.toml"),
        "level = \"host_vars host1\"\n",
    );
    let role = sandbox.dir().join("roles/levels");
    write(&role.join("resources.toml"), "");
    write(
        &role.join("defaults.toml"),
        "level = \"role defaults\"\nfrom_policy = \"role defaults\"\nonly_default = \"role defaults\"\n",
    );
    write(
        &sandbox.dir().join("vars/common.toml"),
        "from_policy = \"policy vars_files\"\n",
    );
    let policy = sandbox.policy("levels", LEVELS_POLICY);

    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(0);
    let read = |host: &str| {
        std::fs::read_to_string(sandbox.out.join(format!("{host}-levels.txt")))
            .unwrap_or_else(|error| panic!("{host}: {error}\n{}", run.describe()))
    };
    let tail = "from_policy=policy vars_files only_default=role defaults\n";
    assert_eq!(read("host1"), format!("level=host_vars host1 {tail}"));
    assert_eq!(read("host2"), format!("level=group_vars web {tail}"));

    // `-e` beats every file.
    let run = sandbox.push(&policy, &["--apply", "-e", "level=extra"]);
    run.assert_exit(0);
    assert!(
        read("host1").starts_with("level=extra "),
        "{}",
        read("host1")
    );

    // `mop inventory --host` names every layer, with the file and position of each.
    let shown = run_mop([
        std::ffi::OsString::from("inventory"),
        "-i".into(),
        sandbox.inventory.clone().into(),
        "--host".into(),
        "host1".into(),
    ]);
    assert_eq!(shown.exit, 0, "{}", shown.describe());
    let inventory = sandbox.inventory.display().to_string();
    let expected = [
        "  level = \"host_vars host1\"".to_string(),
        format!("      from host_vars file at {inventory}/host_vars/host1.toml:1:9"),
        format!("      overridden: host vars at {inventory}/zz-test.toml:"),
        format!("      overridden: group_vars file of `web` (depth 1) at {inventory}/group_vars/web.toml:1:9 = \"group_vars web\""),
        format!("      overridden: group_vars file of `all` (depth 0) at {inventory}/group_vars/all.toml:1:9 = \"group_vars all\""),
        format!("      overridden: group `web` (depth 1) at {inventory}/zz-test.toml:"),
        format!("      overridden: group `all` (depth 0) at {inventory}/zz-test.toml:"),
    ];
    let lines: Vec<&str> = shown.stdout.lines().collect();
    let start = lines
        .iter()
        .position(|line| line.starts_with("  level = "))
        .unwrap_or_else(|| panic!("no `level` in\n{}", shown.stdout));
    for (offset, prefix) in expected.iter().enumerate() {
        let line = lines.get(start + offset).copied().unwrap_or_default();
        assert!(
            line.starts_with(prefix.as_str()),
            "line {offset} of `level`: expected `{prefix}...`, found `{line}`\n{}",
            shown.stdout
        );
    }
    sandbox.assert_hosts_clean();
}

#[test]
fn validate_reports_every_reuse_problem_at_once_with_exit_2() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    // Documentation addresses: nothing may be contacted.
    write(
        &root.join("inventory/hosts.toml"),
        "[groups.web.hosts]\n\"web1\" = \"mop_host=192.0.2.1\"\n",
    );
    write(&root.join("inventory/group_vars/wbe.toml"), "level = 1\n");
    write(
        &root.join("vars/common.toml"),
        "port = 80\nthis is not toml\n",
    );
    write(&root.join("roles/empty/templates/x.j2"), "x\n");
    write(&root.join("roles/a.toml"), "include = \"b.toml\"\n");
    write(&root.join("roles/b.toml"), "include = \"a.toml\"\n");
    write(
        &root.join("site.toml"),
        r#"
vars_files = ["vars/common.toml"]

[[roles]]
name = "web"
groups = ["web"]
use = "roles/empty"

[[roles]]
name = "loop"
include = ["roles/a.toml", "roles/gone.toml"]
"#,
    );
    let output = run_mop([
        std::ffi::OsString::from("validate"),
        root.join("site.toml").into(),
        "-i".into(),
        root.join("inventory").into(),
    ]);
    assert_eq!(output.exit, 2, "{}", output.describe());
    let stderr = output.stderr.replace(&format!("{}/", root.display()), "");
    for expected in [
        "vars/common.toml:2:6: vars file named at site.toml:2:15: invalid TOML",
        "site.toml:7:7: role `web`: role directory `roles/empty` has no `resources.toml`",
        "roles/b.toml:1:11: include cycle: site.toml → roles/a.toml → roles/b.toml → roles/a.toml",
        "site.toml:11:28: role `loop`: cannot read roles file `roles/gone.toml`",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in\n{stderr}"
        );
    }

    // The inventory alone: the file for a group that does not exist is a warning.
    let shown = run_mop([
        std::ffi::OsString::from("inventory"),
        "-i".into(),
        root.join("inventory").into(),
    ]);
    assert_eq!(shown.exit, 0, "{}", shown.describe());
    assert!(
        shown
            .stderr
            .contains("no group `wbe` in the inventory, its variables are not used"),
        "{}",
        shown.describe()
    );
}
