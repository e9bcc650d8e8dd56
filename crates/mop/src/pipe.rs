//! A closed stdout (`mop connections list --json | head -2`) ends mop the way it ends other
//! Unix tools: silently, killed by SIGPIPE, with no `error: Broken pipe`.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe returns `EPIPE` instead. mop keeps it
//! ignored while it works (it writes to ssh children's pipes too, and must not die there with
//! remote work half done); once the command has returned and everything is closed, a broken
//! stdout is turned back into the signal.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout found the reader gone; later lines are dropped.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Prints `line` and a newline to stdout; after the reader went away, prints nothing (the rest
/// of the work goes on, and [`finish`] reports the closed pipe).
pub fn print_line(line: &str) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    note(writeln!(out, "{line}"));
}

/// Remembers a write to stdout that found the reader gone (other errors stay ignored, as
/// before: the caller had nothing better to do with them).
pub fn note(result: std::io::Result<()>) {
    if let Err(error) = result {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
    }
}

/// Whether `err` (anywhere in its chain) is a write to a closed pipe.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Whether a [`print_line`] found stdout closed.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Ends the process by SIGPIPE, as `seq 1 1000000 | head -2` ends `seq` (status 141 under
/// `set -o pipefail`). Called from `main` only, after the command returned.
pub fn die_of_sigpipe() -> std::process::ExitCode {
    // SAFETY: plain libc calls with constant arguments; no Rust state is touched, and nothing
    // runs after the signal but the default action (terminate).
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Only reached if the signal is blocked: the shell's code for SIGPIPE.
    std::process::ExitCode::from(141)
}
