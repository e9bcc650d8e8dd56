//! `mop local`'s private copy of a built-in agent, in a test binary of its own.
//!
//! It writes an executable and runs it: in a process where other tests fork at the same time,
//! a child between its fork and its exec still holds our write descriptor, and the exec fails
//! with "Text file busy". `mop local` itself writes the copy before it starts anything; alone in
//! this binary, so does the test.

use mop_push::agents::{AgentSet, EmbeddedAgent};

#[test]
fn a_built_in_agent_runs_locally_from_a_private_copy() {
    // Any executable of this machine's platform will do: this test binary (`--help` makes
    // the test harness print its usage and exit 0).
    let bytes: &'static [u8] = Box::leak(
        std::fs::read(std::env::current_exe().expect("current exe"))
            .expect("readable")
            .into_boxed_slice(),
    );
    let set = AgentSet::embedded(&[EmbeddedAgent {
        target: "x86_64-unknown-linux-gnu",
        sha256: "not checked here",
        bytes,
    }])
    .expect("an ELF executable");
    let local = set.local_executable().expect("this machine's platform");
    let mode = std::fs::metadata(&local.path)
        .expect("written")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o700
    );
    let status = std::process::Command::new(&local.path)
        .arg("--help")
        .output()
        .expect("starts");
    assert!(status.status.success(), "{status:?}");
    let path = local.path.clone();
    drop(local);
    assert!(
        !path.exists(),
        "the private copy is removed with its handle"
    );
}
