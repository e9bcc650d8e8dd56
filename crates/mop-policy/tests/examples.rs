//! The example policies in `policies/` load with zero errors, pass the undefined-variable
//! check against the example inventory, and name template and source files that exist.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mop_policy::{Policy, Resource, ResourceSpec};
use mop_protocol::resource_type_names;

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

fn load(name: &str) -> Policy {
    Policy::load(&policies_dir().join(name)).unwrap_or_else(|errors| panic!("{name}:\n{errors}"))
}

/// Every variable name the inventory sets in a `vars` table (a superset of what any one host
/// gets, which is what a test over all roles needs).
fn inventory_var_names(path: &Path) -> BTreeSet<String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let inventory: toml::Table =
        toml::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let mut names = BTreeSet::new();
    for section in ["groups", "hosts"] {
        let Some(entries) = inventory.get(section).and_then(toml::Value::as_table) else {
            continue;
        };
        for entry in entries.values() {
            if let Some(vars) = entry.get("vars").and_then(toml::Value::as_table) {
                names.extend(vars.keys().cloned());
            }
        }
    }
    // `group_vars/` and `host_vars/` beside the inventory file.
    let beside = path.parent().unwrap_or(Path::new("."));
    for dir in ["group_vars", "host_vars"] {
        let Ok(files) = std::fs::read_dir(beside.join(dir)) else {
            continue;
        };
        for file in files {
            let file = file.expect("directory entry").path();
            let text = std::fs::read_to_string(&file).expect("read a vars file");
            let vars: toml::Table =
                toml::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
            names.extend(vars.keys().cloned());
        }
    }
    names
}

/// The secret magic variables, from the inventory's table: no example may read them.
fn secret_var_names() -> BTreeSet<String> {
    mop_inventory::MAGIC_VARIABLES
        .iter()
        .filter(|var| var.secret)
        .map(|var| var.name.to_string())
        .collect()
}

fn all_resources(policy: &Policy) -> impl Iterator<Item = &Resource> {
    policy
        .roles
        .iter()
        .flat_map(|role| role.resources.iter().chain(&role.handlers))
}

#[test]
fn every_example_policy_validates() {
    let mut checked = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(policies_dir())
        .expect("policies directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "toml")
        })
        .collect();
    entries.sort();
    for path in entries {
        let policy =
            Policy::load(&path).unwrap_or_else(|errors| panic!("{}:\n{errors}", path.display()));
        let inventory_vars = match &policy.inventory {
            Some(inventory) => inventory_var_names(inventory),
            None => BTreeSet::new(),
        };
        for role_index in 0..policy.roles.len() {
            let errors = policy.check_undefined(role_index, &inventory_vars, &secret_var_names());
            assert!(
                errors.is_empty(),
                "{}:\n{}",
                path.display(),
                render(&errors)
            );
        }
        for reference in policy.template_paths() {
            let text = std::fs::read_to_string(&reference.resolved).unwrap_or_else(|error| {
                panic!(
                    "{}: {}: {error}",
                    reference.origin,
                    reference.resolved.display()
                )
            });
            let errors =
                policy.check_template_file(&reference, &text, &inventory_vars, &secret_var_names());
            assert!(errors.is_empty(), "{}", render(&errors));
        }
        for reference in policy.source_paths() {
            let roots = match &reference.role.fileserver_paths {
                Some(paths) => paths.iter().map(|spec| spec.path.clone()).collect(),
                None if policy.fileserver.paths.is_empty() => vec![PathBuf::from(".")],
                None => policy
                    .fileserver
                    .paths
                    .iter()
                    .map(|spec| spec.path.clone())
                    .collect::<Vec<_>>(),
            };
            let served = match &reference.role.role_dir {
                // A role directory serves its own `files/`.
                Some(role_dir) if reference.role.defined_in_role_dir(&reference.origin.file) => {
                    role_dir.join("files").join(reference.path)
                }
                _ => policy.dir.join(&roots[0]).join(reference.path),
            };
            // A `tree`'s source is a directory.
            let is_tree = matches!(reference.resource.spec, mop_protocol::ResourceSpec::Tree(_));
            assert!(
                if is_tree {
                    served.is_dir()
                } else {
                    served.is_file()
                },
                "{}: `{}` is not a {}",
                reference.origin,
                served.display(),
                if is_tree { "directory" } else { "file" }
            );
        }
        checked.push(
            path.file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned(),
        );
    }
    assert!(checked.contains(&"site.toml".to_string()), "{checked:?}");
    assert!(
        checked.contains(&"local-demo.toml".to_string()),
        "{checked:?}"
    );
}

#[test]
fn site_shows_every_resource_type_and_feature() {
    let policy = load("site.toml");
    let used: BTreeSet<&str> = all_resources(&policy)
        .map(|resource| resource.spec.type_name())
        .collect();
    let missing: Vec<&str> = resource_type_names()
        .filter(|kind| !used.contains(kind))
        .collect();
    assert!(missing.is_empty(), "site.toml does not use {missing:?}");

    assert!(policy
        .inventory
        .as_ref()
        .is_some_and(|inventory| inventory.ends_with("inventory/example.toml")));
    assert!(policy.roles.iter().any(|role| !role.includes.is_empty()));
    assert!(policy
        .roles
        .iter()
        .any(|role| role.role_dir.is_some() && !role.vars.is_empty()));
    assert!(!policy.vars_files.is_empty());
    assert!(policy.roles.iter().any(|role| role.serial.is_some()
        && role.before.is_some()
        && role.after.is_some()
        && role.contact_when.is_some()));
    assert!(all_resources(&policy).any(|resource| resource.register.is_some()));
    assert!(all_resources(&policy).any(|resource| resource.changed_when.is_some()));
    assert!(all_resources(&policy).any(|resource| resource.when.is_some()));
    assert!(all_resources(&policy).any(|resource| !resource.tags.is_empty()));
    assert!(all_resources(&policy).any(|resource| !resource.notify.is_empty()));
    assert!(all_resources(&policy).any(|resource| resource.loop_items.is_some()));
    assert!(all_resources(&policy).any(|resource| match &resource.spec {
        ResourceSpec::Service(service) => {
            matches!(service.state, Some(mop_protocol::Templated::Template(_)))
        }
        _ => false,
    }));
    assert!(policy.template_paths().count() >= 2);
    assert!(policy.source_paths().count() >= 1);
}

/// `mop local` runs this policy as root on the test machine: every path must be under
/// `{{ root }}`, and nothing may touch packages, services or accounts.
#[test]
fn local_demo_only_touches_root() {
    let policy = load("local-demo.toml");
    assert!(policy.vars.contains_key("root"));
    let under_root = |text: &str| text.starts_with("{{ root }}/");
    let mut types = BTreeSet::new();
    for resource in all_resources(&policy) {
        types.insert(resource.spec.type_name());
        match &resource.spec {
            ResourceSpec::File(spec) => assert!(under_root(&spec.path), "{}", spec.path),
            ResourceSpec::Directory(spec) => assert!(under_root(&spec.path), "{}", spec.path),
            ResourceSpec::Link(spec) => {
                assert!(under_root(&spec.path), "{}", spec.path);
                assert!(
                    spec.target.as_deref().is_some_and(under_root),
                    "{:?}",
                    spec.target
                );
            }
            ResourceSpec::Line(spec) => assert!(under_root(&spec.path), "{}", spec.path),
            ResourceSpec::Shell(spec) | ResourceSpec::Command(spec) => {
                assert!(spec.cmd.contains("{{ root }}/"), "{}", spec.cmd);
                assert!(spec.cwd.is_none());
            }
            ResourceSpec::Echo(_)
            | ResourceSpec::Set(_)
            | ResourceSpec::Assert(_)
            | ResourceSpec::Fail(_) => {}
            other => panic!("local-demo.toml must not use `{}`", other.type_name()),
        }
    }
    for kind in [
        "file",
        "directory",
        "link",
        "line",
        "shell",
        "command",
        "echo",
        "set",
        "assert",
    ] {
        assert!(
            types.contains(kind),
            "local-demo.toml does not use `{kind}`"
        );
    }
    assert!(all_resources(&policy).any(|resource| resource.register.is_some()));
    assert!(policy.roles.iter().all(|role| !role.handlers.is_empty()));
}

fn render(errors: &[mop_policy::PolicyError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
