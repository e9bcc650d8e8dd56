//! Tidy tests for issue 13's "typed errors and quiet libraries": library crates never print
//! (they report through `mop_push::report`, which the binary renders), and `mop-push`'s public
//! functions return typed errors, never `Result<_, String>`.

use std::path::{Path, PathBuf};

/// Crates that are programs and may print.
const BINARIES: &[&str] = &["mop", "mop-agent", "mop-testhosts"];

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates/mop-push has a parent")
        .to_path_buf()
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The non-test part of a source file: everything before its `#[cfg(test)]` module (tests
/// sit at the end of a file by convention, and may print).
fn library_code(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

/// `(file:line, line)` for every line of library source that matches `bad`.
fn violations(crate_filter: impl Fn(&str) -> bool, bad: impl Fn(&str) -> bool) -> Vec<String> {
    let root = crates_dir();
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&root)
        .expect("crates/ is readable")
        .flatten()
        .collect();
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if crate_filter(&name) {
            rust_files(&entry.path().join("src"), &mut files);
        }
    }
    let mut found = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(&root)
            .expect("under crates/")
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(&file).expect("source is readable");
        for (index, line) in library_code(&text).lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if bad(code) {
                found.push(format!("crates/{relative}:{}: {}", index + 1, code));
            }
        }
    }
    found
}

#[test]
fn library_crates_never_print() {
    let found = violations(
        |name| !BINARIES.contains(&name),
        |code| {
            ["println!(", "eprintln!(", "print!(", "eprint!(", "dbg!("]
                .iter()
                .any(|mac| code.contains(mac))
        },
    );
    assert!(
        found.is_empty(),
        "library code prints; report through `mop_push::report` (Reporter or Diagnostics) \
         instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn mop_push_public_functions_return_typed_errors() {
    let found = public_signatures_returning_string_errors();
    assert!(
        found.is_empty(),
        "public mop-push functions return `Result<_, String>`; use a thiserror enum:\n{}",
        found.join("\n")
    );
}

/// `file:line: signature` for every `pub fn` of mop-push returning `Result<_, String>`.
fn public_signatures_returning_string_errors() -> Vec<String> {
    let root = crates_dir();
    let mut files = Vec::new();
    rust_files(&root.join("mop-push/src"), &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source is readable");
        let relative = file
            .strip_prefix(&root)
            .expect("under crates/")
            .display()
            .to_string();
        for (line, code) in string_error_signatures(library_code(&text)) {
            found.push(format!("crates/{relative}:{line}: {code}"));
        }
    }
    found
}

/// `(line, first line)` of each `pub fn` in `text` whose signature (which may span lines, up
/// to its `{` or `;`) returns `Result<_, String>`.
fn string_error_signatures(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        if !(code.starts_with("pub fn") || code.starts_with("pub async fn")) {
            continue;
        }
        let mut signature = String::new();
        for next in &lines[index..] {
            signature.push_str(next.trim());
            if next.contains('{') || next.trim_end().ends_with(';') {
                break;
            }
        }
        let returns = signature.split("->").nth(1).unwrap_or("");
        if returns.contains("Result<") && returns.contains(", String>") {
            found.push((index + 1, code.to_string()));
        }
    }
    found
}

#[test]
fn the_signature_check_sees_a_multi_line_public_function() {
    let sample = "pub(crate) fn private() -> Result<u8, String> {}\n\
                  pub async fn upload(\n    a: u8,\n) -> Result<u8, String> {\n}\n\
                  pub fn typed(\n) -> Result<u8, Error> {\n}\n";
    assert_eq!(
        string_error_signatures(sample),
        vec![(2, "pub async fn upload(".to_string())]
    );
}
