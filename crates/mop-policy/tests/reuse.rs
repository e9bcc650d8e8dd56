//! Reuse: a role directory used by several roles with different parameters, nested includes,
//! `vars_files` and the order of the variable layers a role gets.

use std::path::Path;

use mop_policy::{Policy, ResourceSpec};

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("file in a directory")).expect("create dir");
    std::fs::write(path, text).expect("write file");
}

/// A policy using `roles/app` twice, with vars files on both levels and nested includes.
fn load() -> (tempfile::TempDir, Policy) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    write(
        root,
        "roles/app/resources.toml",
        r#"
include = "tasks/main.toml"

[[resources]]
type = "file"
path = "/srv/{{ app_name }}/app.conf"
template = "app.conf.j2"
notify = "reload"

[[handlers]]
name = "reload"
type = "command"
cmd = "true"
"#,
    );
    write(
        root,
        "roles/app/tasks/main.toml",
        r#"
include = "base.toml"

[[resources]]
type = "file"
path = "/srv/{{ app_name }}/logo.txt"
source = "logo.txt"
"#,
    );
    write(
        root,
        "roles/app/tasks/base.toml",
        "[vars]\nfrom_base = true\n\n[[resources]]\ntype = \"directory\"\npath = \"/srv/{{ app_name }}\"\n",
    );
    write(
        root,
        "roles/app/defaults.toml",
        "app_name = \"default\"\nport = 80\nlevel = \"defaults\"\n",
    );
    write(root, "roles/app/templates/app.conf.j2", "port={{ port }}\n");
    write(root, "roles/app/files/logo.txt", "logo\n");
    write(root, "vars/common.toml", "level = \"policy vars file\"\n");
    write(root, "vars/blue.toml", "level = \"role vars file\"\n");
    write(
        root,
        "site.toml",
        r#"
vars_files = ["vars/common.toml"]

[vars]
level = "policy"

[[roles]]
name = "blue"
use = "roles/app"
vars = { app_name = "blue", port = 8081, level = "role" }
vars_files = ["vars/blue.toml"]

[[roles]]
name = "green"
use = "roles/app"
vars = { app_name = "green" }
"#,
    );
    let policy = Policy::load(&root.join("site.toml")).expect("policy loads");
    (dir, policy)
}

#[test]
fn a_role_directory_used_twice_is_two_roles() {
    let (dir, policy) = load();
    let role_dir = dir.path().join("roles/app");
    for name in ["blue", "green"] {
        let role = policy.role(name).expect("role");
        assert_eq!(role.role_dir.as_deref(), Some(role_dir.as_path()));
        let names: Vec<String> = role.resources.iter().map(|r| r.display_name()).collect();
        // Included files first, deepest first, then the file that includes them.
        assert_eq!(
            names,
            [
                "directory /srv/{{ app_name }}",
                "file /srv/{{ app_name }}/logo.txt",
                "file /srv/{{ app_name }}/app.conf"
            ]
        );
        assert_eq!(role.handlers.len(), 1);
        assert_eq!(role.vars["from_base"], true);
    }
    assert_eq!(policy.role("blue").expect("blue").vars["app_name"], "blue");
    assert_eq!(
        policy.role("green").expect("green").vars["app_name"],
        "green"
    );
}

#[test]
fn layers_go_from_role_defaults_to_role_vars_files() {
    let (_dir, policy) = load();
    let blue = policy.role("blue").expect("blue");
    let layers: Vec<(String, Option<serde_json::Value>)> = policy
        .var_layers(blue)
        .into_iter()
        .map(|layer| {
            let label = layer
                .label
                .replace(&format!("{}/", policy.dir.display()), "");
            (label, layer.vars.get("level").cloned())
        })
        .collect();
    let level = |text: &str| Some(serde_json::Value::from(text));
    assert_eq!(
        layers,
        [
            ("defaults of `roles/app`".to_string(), level("defaults")),
            ("policy".to_string(), level("policy")),
            (
                "vars file `vars/common.toml`".to_string(),
                level("policy vars file")
            ),
            ("role `blue`".to_string(), level("role")),
            (
                "vars file `vars/blue.toml`".to_string(),
                level("role vars file")
            ),
        ]
    );
    let green = policy.role("green").expect("green");
    let defaults = green
        .defaults
        .as_ref()
        .expect("defaults of the role directory");
    assert_eq!(defaults.vars["port"], 80);
}

#[test]
fn role_directory_templates_come_from_its_templates_dir() {
    let (dir, policy) = load();
    let templates: Vec<_> = policy
        .template_paths()
        .map(|reference| (reference.role.name.clone(), reference.resolved.clone()))
        .collect();
    let expected = dir.path().join("roles/app/templates/app.conf.j2");
    assert_eq!(
        templates,
        [
            ("blue".to_string(), expected.clone()),
            ("green".to_string(), expected)
        ]
    );
    let sources: Vec<_> = policy
        .source_paths()
        .map(|reference| reference.path)
        .collect();
    assert_eq!(sources, ["logo.txt", "logo.txt"]);
    let blue = policy.role("blue").expect("blue");
    let ResourceSpec::File(_) = &blue.resources[1].spec else {
        panic!("second resource is the file from tasks/main.toml");
    };
    assert!(blue.defined_in_role_dir(&blue.resource_origins[1].file));
}
