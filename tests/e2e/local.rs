//! `mop local` with the repository's demo policy: converge, stay converged, and `--check`
//! reports drift without touching anything.

use std::path::Path;

use crate::support::{run_json, tree_snapshot, JsonRun};

fn local(root: &Path, mode: &str) -> JsonRun {
    let root_var = format!("root={}", root.display());
    run_json(["local", "policies/local-demo.toml", mode, "-e", &root_var])
}

#[test]
fn local_demo_converges_stays_converged_and_check_reports_drift_only() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let root = dir.path().join("root");

    // First apply: everything is created.
    let first = local(&root, "--apply");
    first.assert_exit(0);
    assert!(
        first.with_status("failed").is_empty(),
        "{}",
        first.describe()
    );
    assert_eq!(first.summary_hosts(), ["localhost"]);
    assert_eq!(first.total("localhost", "failed"), 0);
    assert!(
        first.total("localhost", "changed") >= 7,
        "{}",
        first.describe()
    );
    assert_eq!(
        first.total("localhost", "changed"),
        first.with_status("changed").len() as u64,
        "summary and events disagree\n{}",
        first.describe()
    );
    // The served file went through the file server.
    assert_eq!(
        first.total("localhost", "bytes_sent"),
        50,
        "{}",
        first.describe()
    );
    let handler_ran = first.events_of("resource").any(|event| {
        event["handler"] == true
            && event["message"] == format!("motd changed under {}", root.display())
    });
    assert!(
        handler_ran,
        "the notified handler did not run\n{}",
        first.describe()
    );

    let converged = tree_snapshot(&root);
    insta::assert_snapshot!("local_demo_tree", converged);
    let motd = std::fs::read_to_string(root.join("etc/motd")).expect("motd exists");
    assert_eq!(motd, "hello from localhost\n");

    // Second apply: nothing to do.
    let second = local(&root, "--apply");
    second.assert_exit(0);
    let changed = second.with_status("changed");
    assert!(
        changed.is_empty(),
        "the second apply changed things: {changed:?}"
    );
    assert_eq!(second.total("localhost", "changed"), 0);
    assert_eq!(
        second.total("localhost", "bytes_sent"),
        0,
        "{}",
        second.describe()
    );
    assert_eq!(
        tree_snapshot(&root),
        converged,
        "the second apply changed the tree"
    );

    // Drift one file by hand: `--check` reports exactly that and writes nothing.
    std::fs::write(root.join("etc/motd"), "edited by hand\n").expect("edit motd");
    let drifted = tree_snapshot(&root);
    let check = local(&root, "--check");
    let after_check = tree_snapshot(&root);
    assert_eq!(after_check, drifted, "--check wrote to the tree");
    insta::assert_snapshot!("local_demo_tree_drifted", after_check);
    assert_eq!(check.summary()["check"], true);
    // The edited file is the one change; the handler it notifies is reported as "would run".
    let changed: Vec<&serde_json::Value> = check
        .with_status("changed")
        .into_iter()
        .filter(|event| event["handler"] != true)
        .collect();
    assert_eq!(
        changed.len(),
        1,
        "--check should report exactly one change: {changed:?}\n{}",
        check.describe()
    );
    assert_eq!(changed[0]["type"], "file");
    assert_eq!(
        changed[0]["resource"],
        format!("file {}/etc/motd", root.display())
    );
    assert_eq!(changed[0]["changes"], serde_json::json!(["content"]));
    assert_eq!(changed[0]["simulated"], true);
    assert!(
        check.with_status("failed").is_empty(),
        "{}",
        check.describe()
    );
    check.assert_exit(0);

    // Applying again repairs only that file.
    let repair = local(&root, "--apply");
    repair.assert_exit(0);
    let changed: Vec<&serde_json::Value> = repair
        .with_status("changed")
        .into_iter()
        .filter(|event| event["handler"] != true)
        .collect();
    assert_eq!(changed.len(), 1, "{}", repair.describe());
    assert_eq!(tree_snapshot(&root), converged);
}
