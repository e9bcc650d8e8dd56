//! Helpers shared by the integration tests: start hosts or fail loudly, run commands.

#![allow(dead_code)]

use std::process::{Command, Output};

use mop_testhosts::{TestHosts, TestHostsBuilder};

/// Starts the hosts or fails the test with the library's own message (which says when root
/// is missing and how to run the tests); these tests never pass silently without root.
pub fn start(builder: TestHostsBuilder) -> TestHosts {
    match builder.start() {
        Ok(hosts) => hosts,
        Err(error) => panic!("cannot start test hosts:\n{error}"),
    }
}

/// Runs a command to completion, failing the test if it cannot be started.
pub fn output(mut command: Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"))
}

/// Runs a command that must succeed and returns its stdout.
pub fn stdout_of(command: Command) -> String {
    let description = format!("{command:?}");
    let output = output(command);
    assert!(
        output.status.success(),
        "{description} failed with {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Network namespaces currently present.
pub fn namespaces() -> String {
    let mut command = Command::new("ip");
    command.args(["netns", "list"]);
    stdout_of(command)
}

/// Live processes whose command line mentions `needle` (via `pgrep -f`).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut command = Command::new("pgrep");
    command.arg("-f").arg(needle);
    let output = output(command);
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .filter(|pid| *pid != std::process::id())
        .collect()
}

/// Upper bound for things that normally take well under a second; generous because CI
/// machines and parallel test binaries can be very slow (seen: 5 s for a two-hop login, and
/// over 20 s with the suite running beside eight parallel builds).
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Copies the executable `from` to `to` (mode 0755) so that running `to` right away cannot
/// fail with "Text file busy".
///
/// The copy is written by a child process (`install`), never by this one. Writing it here,
/// even through a close-on-exec descriptor, races with every other test thread that spawns a
/// process: `fork` (and `posix_spawn`, which clones without `CLONE_FILES`) duplicates the whole
/// descriptor table, close-on-exec descriptors included, and the child keeps its copy of the
/// write descriptor until its own `exec`. If this thread closes its descriptor and executes the
/// file inside that window, the kernel still sees a writer and `execve` fails with `ETXTBSY`.
/// A descriptor that only ever lived in `install`, which has exited when this returns, cannot
/// leak that way.
pub fn copy_executable(from: &std::path::Path, to: &std::path::Path) {
    let mut install = Command::new("install");
    install.args(["-m", "0755"]).arg(from).arg(to);
    let result = output(install);
    assert!(
        result.status.success(),
        "cannot copy {} to {}: {}",
        from.display(),
        to.display(),
        String::from_utf8_lossy(&result.stderr)
    );
}
