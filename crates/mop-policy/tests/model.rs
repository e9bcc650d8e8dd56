//! The typed output of a valid policy: defaults, resolution of paths, vars precedence,
//! resource order and origins, host selection, file references.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use mop_policy::{HostKeyPolicy, MaxFail, Policy, ResourceSpec};

const POLICY: &str = r#"
inventory = "../inventory/example.toml"

[vars]
motd_banner = "managed by mop"

[fileserver]
paths = [".", "/srv/shared"]
allow = ["files/**"]
deny = ["secrets/*"]

[[roles]]
name = "web"
groups = ["web*"]
hosts = ["*.example.com"]
serial = 10
max_fail = "10%"
ssh_as = "deploy"
sudo = true
sudo_as = "root"
check_host_keys = "accept-new"
before = "lb drain {{ host.name }}"
after = "lb enable {{ host.name }}"
contact_when = "host.name != 'web3'"
fileserver_paths = ["files"]
include = "roles/web.toml"
tags = ["web", "front"]

[roles.vars]
app_port = 8080
shared = "from role"

[[roles.resources]]
type = "file"
path = "/etc/motd"
content = "{{ motd_banner }} on {{ host.name }}\n"
mode = "0644"
notify = ["reload motd"]

[[roles.handlers]]
name = "reload motd"
type = "shell"
cmd = "true"

[[roles]]
name = "everyone"

[[roles.resources]]
type = "file"
path = "/etc/issue"
source = "files/issue"
"#;

const ROLES_FILE: &str = r#"
[vars]
shared = "from roles file"
only_in_file = 1

[[resources]]
type = "file"
path = "/etc/nginx/nginx.conf"
template = "../templates/nginx.conf.j2"
notify = "reload nginx"

[[handlers]]
name = "reload nginx"
type = "echo"
msg = "reloading"
"#;

fn load() -> (tempfile::TempDir, Policy) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(policies.join("roles")).expect("roles dir");
    std::fs::write(policies.join("roles/web.toml"), ROLES_FILE).expect("roles file");
    let path = policies.join("site.toml");
    std::fs::write(&path, POLICY).expect("policy");
    let policy = Policy::load(&path).unwrap_or_else(|errors| panic!("{errors}"));
    (dir, policy)
}

#[test]
fn policy_level_settings() {
    let (dir, policy) = load();
    let policies = dir.path().join("policies");
    assert_eq!(policy.path, policies.join("site.toml"));
    assert_eq!(policy.dir, policies);
    assert_eq!(
        policy.inventory,
        Some(policies.join("../inventory/example.toml"))
    );
    assert_eq!(policy.vars["motd_banner"], "managed by mop");
    let paths: Vec<&Path> = policy
        .fileserver
        .paths
        .iter()
        .map(|spec| spec.path.as_path())
        .collect();
    assert_eq!(paths, [Path::new("."), Path::new("/srv/shared")]);
    assert_eq!(policy.fileserver.paths[1].origin.position.line, 8);
    assert_eq!(policy.fileserver.paths[1].origin.position.column, 15);
    assert_eq!(policy.fileserver.allow[0].pattern, "files/**");
    assert_eq!(policy.fileserver.deny[0].pattern, "secrets/*");
    assert_eq!(
        policy.fileserver.deny[0].origin.to_string(),
        format!("{}:10:9", policies.join("site.toml").display())
    );
}

#[test]
fn role_settings_and_defaults() {
    let (_dir, policy) = load();
    let web = policy.role("web").expect("role web");
    assert_eq!(web.groups, ["web*"]);
    assert_eq!(web.hosts, ["*.example.com"]);
    assert_eq!(web.serial, NonZeroUsize::new(10));
    assert_eq!(web.max_fail, MaxFail::Percent(10));
    assert_eq!(web.max_fail.allowed(30), 3);
    assert_eq!(web.ssh_as.as_deref(), Some("deploy"));
    assert_eq!(web.sudo, Some(true));
    assert_eq!(web.sudo_as.as_deref(), Some("root"));
    assert_eq!(web.check_host_keys, Some(HostKeyPolicy::AcceptNew));
    assert_eq!(web.before.as_deref(), Some("lb drain {{ host.name }}"));
    assert_eq!(web.contact_when.as_deref(), Some("host.name != 'web3'"));
    assert_eq!(web.tags, ["web", "front"]);
    let fileserver_paths = web.fileserver_paths.as_ref().expect("role override");
    assert_eq!(fileserver_paths[0].path, PathBuf::from("files"));
    assert_eq!(web.origin.position.line, 12);

    let everyone = &policy.roles[1];
    assert_eq!(everyone.name, "everyone");
    assert_eq!(everyone.serial, None);
    assert_eq!(everyone.max_fail, MaxFail::Count(0));
    assert_eq!(everyone.sudo, None);
    assert_eq!(everyone.check_host_keys, None);
    assert_eq!(everyone.fileserver_paths, None);
    assert!(everyone.vars.is_empty());
}

#[test]
fn included_resources_come_first_and_role_vars_win() {
    let (dir, policy) = load();
    let web = policy.role("web").expect("role web");
    let policies = dir.path().join("policies");
    assert_eq!(web.includes, vec![policies.join("roles/web.toml")]);
    assert_eq!(web.vars["shared"], "from role");
    assert_eq!(web.vars["only_in_file"], 1);
    assert_eq!(web.vars["app_port"], 8080);

    let names: Vec<String> = web
        .resources
        .iter()
        .map(|resource| resource.display_name())
        .collect();
    assert_eq!(names, ["file /etc/nginx/nginx.conf", "file /etc/motd"]);
    assert_eq!(web.resource_origins.len(), 2);
    assert_eq!(
        web.resource_origins[0].file,
        policies.join("roles/web.toml")
    );
    assert_eq!(web.resource_origins[0].position.line, 6);
    assert_eq!(web.resource_origins[1].file, policies.join("site.toml"));
    assert_eq!(web.resource_origins[1].position.line, 33);
    let handlers: Vec<Option<&str>> = web
        .handlers
        .iter()
        .map(|handler| handler.name.as_deref())
        .collect();
    assert_eq!(handlers, [Some("reload nginx"), Some("reload motd")]);
    assert_eq!(web.handler_origins[1].position.line, 40);
    assert_eq!(
        web.describe_resource(false, 1).as_deref(),
        Some("resource #1 (file /etc/motd)")
    );
    assert_eq!(
        web.describe_resource(true, 0).as_deref(),
        Some("handler `reload nginx`")
    );
    assert_eq!(web.describe_resource(false, 9), None);

    match &web.resources[1].spec {
        ResourceSpec::File(file) => assert_eq!(file.mode.map(|mode| mode.0), Some(0o644)),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(web.resources[1].notify, ["reload motd"]);
}

#[test]
fn template_and_source_references() {
    let (dir, policy) = load();
    let policies = dir.path().join("policies");
    let templates: Vec<_> = policy.template_paths().collect();
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].path, "../templates/nginx.conf.j2");
    // Relative to the roles file that names it, like `include` is to the policy.
    assert_eq!(
        templates[0].resolved,
        policies.join("roles/../templates/nginx.conf.j2")
    );
    assert_eq!(templates[0].role.name, "web");
    assert_eq!((templates[0].handler, templates[0].index), (false, 0));
    assert_eq!(templates[0].origin.position.line, 9);
    assert_eq!(templates[0].origin.position.column, 12);
    assert_eq!(
        templates[0].context(),
        "role `web`: resource #1 (file /etc/nginx/nginx.conf)"
    );

    let sources: Vec<_> = policy.source_paths().collect();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0].path, "files/issue");
    assert_eq!(sources[0].resolved, PathBuf::from("files/issue"));
    assert_eq!(sources[0].role_index, 1);
}

#[test]
fn host_selection() {
    let (_dir, policy) = load();
    let web = policy.role("web").expect("role web");
    assert!(web.selects("web1.example.com", &["webservers"]));
    assert!(
        !web.selects("web1.example.org", &["webservers"]),
        "hosts pattern must match too"
    );
    assert!(!web.selects("db1.example.com", &["dbservers", "dc1"]));
    // Empty `groups` and `hosts`: every host.
    assert!(policy.roles[1].selects("anything", &[] as &[&str]));

    let all = Policy::from_str(
        "[[roles]]\nname = \"a\"\ngroups = [\"all\"]\n",
        Path::new("p.toml"),
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    assert!(
        all.roles[0].selects("lonely", &[] as &[&str]),
        "every host is in `all`"
    );
    let db = Policy::from_str(
        "[[roles]]\nname = \"a\"\ngroups = [\"db*\", \"rack?\"]\n",
        Path::new("p.toml"),
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    assert!(db.roles[0].selects("x", &["rack2".to_string()]));
    assert!(!db.roles[0].selects("x", &["rack10".to_string()]));
}

#[test]
fn from_str_paths_are_relative_to_the_given_path() {
    let policy = Policy::from_str(
        "inventory = \"inv.toml\"\n[[roles]]\nname = \"a\"\n",
        Path::new("site.toml"),
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(policy.dir, PathBuf::from("."));
    assert_eq!(policy.inventory, Some(PathBuf::from("inv.toml")));
    assert!(
        policy.fileserver.paths.is_empty(),
        "default root is left to the file server"
    );
    assert!(policy.fileserver.allow.is_empty());
}

#[test]
fn datetimes_in_inline_tables_and_numbers_convert_to_json() {
    let policy = Policy::from_str(
        "[vars]\nratio = 0.5\nlist = [1, \"two\", { three = 3 }]\n[[roles]]\nname = \"a\"\n",
        Path::new("site.toml"),
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(policy.vars["ratio"], 0.5);
    assert_eq!(
        policy.vars["list"],
        serde_json::json!([1, "two", {"three": 3}])
    );
}

#[test]
fn a_loop_written_as_a_list_names_one_file_per_item() {
    let policy = mop_policy::Policy::from_str(
        r#"
[[roles]]
name = "web"

[[roles.resources]]
type = "file"
path = "/srv/t{{ item }}.conf"
template = "templates/t{{ item }}.j2"
loop = [1, 2]

[[roles.resources]]
type = "file"
path = "/srv/{{ blob.name }}"
source = "files/{{ blob.name }}"
loop = [{ name = "a" }, { name = "b" }]
loop_var = "blob"

[[roles.resources]]
type = "file"
path = "/srv/fixed"
source = "files/fixed"
"#,
        std::path::Path::new("/repo/site.toml"),
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    let templates: Vec<(&str, String)> = policy
        .template_paths()
        .map(|reference| (reference.path, reference.resolved.display().to_string()))
        .collect();
    assert_eq!(
        templates,
        [
            ("templates/t1.j2", "/repo/templates/t1.j2".to_string()),
            ("templates/t2.j2", "/repo/templates/t2.j2".to_string())
        ]
    );
    let sources: Vec<(&str, usize)> = policy
        .source_paths()
        .map(|reference| (reference.path, reference.index))
        .collect();
    assert_eq!(
        sources,
        [("files/a", 1), ("files/b", 1), ("files/fixed", 2)]
    );
}

/// Item keys and choices are rendered on the controller (after the limits check, as every
/// controller-side compile): text over the nesting limit is an error, not a crash.
#[test]
fn hostile_item_keys_fail_validation_without_crashing() {
    let deep = format!("{}item{}", "(".repeat(50_000), ")".repeat(50_000));
    for field in ["source", "state"] {
        let policy = format!(
            "[[roles]]\nname = \"r\"\n[[roles.resources]]\ntype = \"file\"\npath = \"/srv/{{{{ item }}}}\"\n{field} = \"{{{{ {deep} }}}}\"\nloop = [\"a\"]\n"
        );
        let errors = mop_policy::Policy::from_str(&policy, std::path::Path::new("/repo/site.toml"))
            .expect_err("over the nesting limit");
        assert!(errors.to_string().contains("nest"), "{errors}");
    }
}
