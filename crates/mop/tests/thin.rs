//! The binary stays thin: deciding which hosts a run touches and which values their variables
//! get is library code (`mop_push::load`), unit-tested there. This test greps the commands for
//! the calls that make those decisions and fails when one comes back.

use std::path::Path;

/// Calls that decide a run's hosts or variables; `mop inventory` may use the ones it displays.
const DECISIONS: &[(&str, &[&str])] = &[
    ("Selection::new(", &[]),
    ("role_layers(", &[]),
    ("parse_host_spec(", &[]),
    ("Policy::load(", &[]),
    ("Inventory::load(", &[]),
    ("prepare(", &[]),
    ("ExtraLayers::", &["inventory.rs"]),
];

#[test]
fn commands_leave_run_decisions_to_the_library() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![
        dir.join("main.rs"),
        dir.join("common.rs"),
        dir.join("cli.rs"),
    ];
    for entry in std::fs::read_dir(dir.join("commands")).expect("read src/commands") {
        files.push(entry.expect("a directory entry").path());
    }
    let mut violations = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read a source file");
        let name = file
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        for (call, allowed) in DECISIONS {
            if text.contains(call) && !allowed.contains(&name) {
                violations.push(format!("{}: `{call}`", file.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "run logic in the binary (move it to mop_push::load):\n{}",
        violations.join("\n")
    );
}
