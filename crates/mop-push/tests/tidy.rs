//! Tidy tests: architecture rules of the workspace that a scan of the source can check.
//!
//! The SSH seam: only `crates/mop-push/src/ssh/` uses the `openssh` and `openssh_sftp_client`
//! crates or spawns the `ssh` client (see ARCHITECTURE.md); everything else (the executor, the
//! ad hoc commands, the binary) goes through the operations `ssh::SshPool` offers. The crate
//! `mop-testhosts` is exempt: it is test infrastructure that starts sshd and logs in to check
//! it, not part of mop. Tests (`tests/`, `crates/*/tests`) are not scanned for the same reason.

use std::path::{Path, PathBuf};

/// What marks a use of SSH outside the seam.
const SSH_SEAM_NAMES: &[&str] = &["openssh::", "openssh_sftp_client", "Command::new(\"ssh\")"];

/// Where those names may appear, relative to the workspace root.
const SSH_SEAM_ALLOWED: &[&str] = &["crates/mop-push/src/ssh/", "crates/mop-testhosts/"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// Every `.rs` file under `dir`, sorted, so failures list in a stable order.
fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

/// `file:line:col: name` for every seam name in a line of code of `text` (the file's contents,
/// `label` its path relative to the workspace root), unless the file is inside the seam.
fn seam_violations(label: &str, text: &str) -> Vec<String> {
    if SSH_SEAM_ALLOWED
        .iter()
        .any(|allowed| label.starts_with(allowed))
    {
        return Vec::new();
    }
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        // Comments may name the crates (the rule itself is stated in `adhoc/mod.rs`); code may not.
        if line.trim_start().starts_with("//") {
            continue;
        }
        for name in SSH_SEAM_NAMES {
            if let Some(column) = line.find(name) {
                found.push(format!("{label}:{}:{}: `{name}`", index + 1, column + 1));
            }
        }
    }
    found
}

#[test]
fn only_the_ssh_module_reaches_ssh() {
    let root = workspace_root();
    let mut files = Vec::new();
    let crates = std::fs::read_dir(root.join("crates")).expect("crates/ is readable");
    let mut crate_dirs: Vec<PathBuf> = crates.flatten().map(|entry| entry.path()).collect();
    crate_dirs.sort();
    for crate_dir in crate_dirs {
        rust_files(&crate_dir.join("src"), &mut files);
    }
    assert!(
        files.len() > 20,
        "the scan found only {} files: is the workspace layout still crates/*/src?",
        files.len()
    );
    let mut violations = Vec::new();
    for file in &files {
        let label = file
            .strip_prefix(&root)
            .expect("files are under the root")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(file).expect("source files are UTF-8");
        violations.extend(seam_violations(&label, &text));
    }
    assert!(
        violations.is_empty(),
        "SSH is used outside crates/mop-push/src/ssh/ (the one SSH seam, see ARCHITECTURE.md):\n{}\n\
         hint: add the operation to `ssh::SshPool` (ssh/exec.rs, ssh/sftp.rs) and call that",
        violations.join("\n")
    );
}

#[test]
fn the_seam_scan_names_file_line_and_column() {
    let stray = "fn f() {\n    let _ = tokio::process::Command::new(\"ssh\");\n}\n";
    assert_eq!(
        seam_violations("crates/mop-push/src/adhoc/run.rs", stray),
        ["crates/mop-push/src/adhoc/run.rs:2:29: `Command::new(\"ssh\")`"]
    );
    let sftp = "use openssh_sftp_client::Sftp;\nuse openssh::Session;\n";
    assert_eq!(seam_violations("crates/mop/src/main.rs", sftp).len(), 2);
    let comment = "//! only `ssh/` uses `openssh_sftp_client` or `Command::new(\"ssh\")`\n";
    assert!(seam_violations("crates/mop-push/src/adhoc/mod.rs", comment).is_empty());
    assert!(seam_violations("crates/mop-push/src/ssh/exec.rs", stray).is_empty());
    assert!(seam_violations("crates/mop-testhosts/src/host.rs", stray).is_empty());
}
