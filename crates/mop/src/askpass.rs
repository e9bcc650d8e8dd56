//! The hidden askpass mode: ssh runs `mop PROMPT` to read a host's login password
//! (`mop_ssh_password`) when mop started that host's master with `MOP_ASKPASS_SOCKET` set.
//!
//! The answer comes from the running mop over a unix socket in its private run directory
//! (`mop_push::ssh::answer_askpass`); only the socket's path is in the environment. This is
//! checked first thing in `main`, before clap, so no flag parsing or output of mop's own can
//! get in the way of the one line ssh reads from stdout.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// `Some(exit code)` when this process is ssh's askpass (the socket variable is set and the
/// only argument is ssh's prompt); `None`: an ordinary mop command line.
pub fn answer_if_asked() -> Option<ExitCode> {
    let socket = PathBuf::from(std::env::var_os(mop_push::ssh::ASKPASS_SOCKET_ENV)?);
    let mut arguments = std::env::args_os().skip(1);
    let (Some(prompt), None) = (arguments.next(), arguments.next()) else {
        return None;
    };
    let prompt = prompt.to_string_lossy();
    let answer = match mop_push::ssh::answer_askpass(&socket, &prompt) {
        Ok(Some(answer)) => answer,
        // No answer for this prompt (a key's passphrase, a second password prompt): ssh
        // goes on without one. Nothing is printed: ssh's own log says what failed.
        Ok(None) | Err(_) => return Some(ExitCode::FAILURE),
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&answer).and_then(|()| stdout.flush()) {
        Ok(()) => Some(ExitCode::SUCCESS),
        Err(_) => Some(ExitCode::FAILURE),
    }
}
