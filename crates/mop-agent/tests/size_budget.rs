//! The agent's size budget (issue 14): the release agent is at most 4 MiB raw and at most
//! 1.5 MiB as mop sends it (gzip at flate2's default level, as `mop-push`'s bootstrap
//! compresses the upload).
//!
//! The test runs `scripts/build-agent`, which builds the release agent when its sources changed
//! (about a minute from scratch, a second when it is up to date) and itself fails above either
//! budget, then measures the binary it built. It never reads a stale binary.

use std::io::Write;
use std::path::Path;
use std::process::Command;

const RAW_BUDGET: usize = 4 * 1024 * 1024;
const COMPRESSED_BUDGET: usize = 3 * 1024 * 1024 / 2;

/// What mop uploads: the bytes gzip-compressed exactly as `crates/mop-push/src/ssh/bootstrap.rs`
/// does.
fn compressed_as_uploaded(bytes: &[u8]) -> usize {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 2),
        flate2::Compression::default(),
    );
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory").len()
}

#[test]
fn the_release_agent_fits_the_budget() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(root.join("scripts/build-agent"))
        .current_dir(&root)
        .output()
        .expect("scripts/build-agent runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "scripts/build-agent failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let binary = root.join("target/agent/x86_64-unknown-linux-gnu/release-agent/mop-agent");
    let bytes = std::fs::read(&binary).expect("the release agent scripts/build-agent built");
    let compressed = compressed_as_uploaded(&bytes);
    eprintln!(
        "release agent: {} bytes raw, {compressed} bytes compressed",
        bytes.len()
    );
    assert!(
        bytes.len() <= RAW_BUDGET,
        "the release agent is {} bytes, over the 4 MiB raw budget",
        bytes.len()
    );
    assert!(
        compressed <= COMPRESSED_BUDGET,
        "the release agent compresses to {compressed} bytes, over the 1.5 MiB budget"
    );
    // The script printed the same raw size it checked.
    assert!(
        stdout.contains(&format!("size: {} bytes", bytes.len())),
        "{stdout}"
    );
}
