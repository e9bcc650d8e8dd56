//! `group_vars/` and `host_vars/` beside an inventory: precedence, provenance with file
//! positions, warnings for files naming nothing, errors collected across files.

use std::path::Path;

use serde_json::json;

use crate::{ExtraLayers, Inventory, SourceKind};

const INVENTORY: &str = r#"
[groups.all.vars]
level = "all"

[groups.dc1]
children = ["web"]

[groups.dc1.vars]
level = "dc1"

[groups.web.hosts]
"h1" = ""
"h2" = ""

[groups.web.vars]
level = "web"

[hosts.h1.vars]
level = "host vars"
"#;

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("file in a directory")).expect("create dir");
    std::fs::write(path, text).expect("write file");
}

fn level_of(inventory: &Inventory, host: &str) -> serde_json::Value {
    let resolved = inventory
        .resolve(host, &ExtraLayers::none())
        .expect("host resolves");
    resolved.vars["level"].clone()
}

#[test]
fn files_sit_between_the_inventory_layers_like_ansible() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    write(root, "inventory/hosts.toml", INVENTORY);
    // group_vars/all beats every inventory group table, even the deeper `web`.
    write(
        root,
        "inventory/group_vars/all.toml",
        "level = \"group_vars all\"\n",
    );
    let inventory = Inventory::load(&root.join("inventory/hosts.toml")).expect("loads");
    assert_eq!(level_of(&inventory, "h2"), json!("group_vars all"));
    assert_eq!(level_of(&inventory, "h1"), json!("host vars"));

    write(
        root,
        "inventory/group_vars/web.toml",
        "level = \"group_vars web\"\n",
    );
    write(
        root,
        "inventory/host_vars/h1.toml",
        "level = \"host_vars h1\"\n",
    );
    // The same directory given as the inventory finds the same files.
    let inventory = Inventory::load(&root.join("inventory")).expect("loads");
    assert_eq!(level_of(&inventory, "h2"), json!("group_vars web"));
    assert_eq!(level_of(&inventory, "h1"), json!("host_vars h1"));
    assert!(inventory.warnings().is_empty());

    let h1 = inventory.resolve("h1", &ExtraLayers::none()).expect("h1");
    let sources: Vec<String> = h1.provenance["level"]
        .iter()
        .map(|source| {
            source
                .to_string()
                .replace(&format!("{}/", root.display()), "")
        })
        .collect();
    assert_eq!(
        sources,
        [
            "group `all` (depth 0) at inventory/hosts.toml:3:9",
            "group `dc1` (depth 1) at inventory/hosts.toml:9:9",
            "group `web` (depth 2) at inventory/hosts.toml:16:9",
            "group_vars file of `all` (depth 0) at inventory/group_vars/all.toml:1:9",
            "group_vars file of `web` (depth 2) at inventory/group_vars/web.toml:1:9",
            "host vars at inventory/hosts.toml:19:9",
            "host_vars file at inventory/host_vars/h1.toml:1:9",
        ]
    );
    assert_eq!(
        h1.winner("level").map(|s| &s.kind),
        Some(&SourceKind::HostVarsFile)
    );
    let overridden = inventory
        .resolve(
            "h1",
            &ExtraLayers::none().with_overrides("-e", [("level".to_string(), json!("e"))].into()),
        )
        .expect("h1");
    assert_eq!(overridden.vars["level"], json!("e"));
}

#[test]
fn a_file_for_an_unknown_group_is_a_warning_with_a_suggestion() {
    let dir = tempfile::tempdir().expect("temporary directory");
    write(dir.path(), "hosts.toml", INVENTORY);
    write(dir.path(), "group_vars/webs.toml", "level = 1\n");
    write(dir.path(), "host_vars/nobody.toml", "level = 1\n");
    let inventory = Inventory::load(&dir.path().join("hosts.toml")).expect("loads");
    let prefix = format!("{}/", dir.path().display());
    let warnings: Vec<String> = inventory
        .warnings()
        .iter()
        .map(|warning| warning.replace(&prefix, ""))
        .collect();
    assert_eq!(
        warnings,
        [
            "`group_vars/webs.toml`: no group `webs` in the inventory, its variables are not used\n  hint: did you mean `web.toml`?",
            "`host_vars/nobody.toml`: no host `nobody` in the inventory, its variables are not used\n  hint: name the file after a host of the inventory",
        ]
    );
    assert_eq!(level_of(&inventory, "h2"), json!("web"));
}

#[test]
fn every_broken_vars_file_is_reported() {
    let dir = tempfile::tempdir().expect("temporary directory");
    write(dir.path(), "hosts.toml", INVENTORY);
    write(dir.path(), "group_vars/web.toml", "level = \n");
    write(dir.path(), "host_vars/h1.toml", "mop_port = \"ssh\"\n");
    let error = Inventory::load(&dir.path().join("hosts.toml")).expect_err("broken files");
    let text = error
        .to_string()
        .replace(&format!("{}/", dir.path().display()), "");
    insta::assert_snapshot!("broken_vars_files", text);
}

#[test]
fn mop_via_from_a_host_vars_file_is_checked() {
    let dir = tempfile::tempdir().expect("temporary directory");
    write(dir.path(), "hosts.toml", INVENTORY);
    write(dir.path(), "host_vars/h1.toml", "mop_via = \"h9\"\n");
    let error = Inventory::load(&dir.path().join("hosts.toml")).expect_err("unknown jump host");
    assert!(
        error
            .to_string()
            .contains("`mop_via` of host `h1` names `h9`"),
        "{error}"
    );
}
