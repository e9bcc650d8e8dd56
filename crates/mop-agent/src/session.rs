//! One agent session: hello and facts, then any number of roles, until `shutdown` or a clean
//! end of stdin. Any protocol violation ends the session with an `error` message (when the
//! channel still works), a line on stderr, and a non-zero exit code that is never 127 or 255.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::raw::c_int;

use mop_protocol::{exit_code, AgentMessage, ControllerMessage, Facts, Frame, PROTOCOL_VERSION};

use crate::channel::{message_name, Channel, SessionError};
use crate::outcome::SystemRunner;
use crate::role::{run_role, SessionState};

/// Environment variable of the corruption test hook (see `docs/reference/protocol.md`).
pub const CORRUPT_TRANSFER_ENV: &str = "MOP_AGENT_TEST_CORRUPT_TRANSFER";

/// Session options.
#[derive(Debug, Clone, Default)]
pub struct SessionConfig {
    /// Flip one byte of every received file, to test corruption detection.
    pub corrupt_transfers: bool,
}

impl SessionConfig {
    pub fn from_env() -> SessionConfig {
        SessionConfig {
            corrupt_transfers: std::env::var(CORRUPT_TRANSFER_ENV).is_ok_and(|value| value == "1"),
        }
    }
}

/// Serves the protocol on this process's stdin/stdout and returns the exit code.
pub fn serve_stdio(config: &SessionConfig) -> i32 {
    // Own duplicates of fds 0 and 1 (close-on-exec), read and written through our own buffers:
    // the standard handles' line buffering would split frames into many small writes.
    let streams = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|stdin| Ok((stdin, std::io::stdout().as_fd().try_clone_to_owned()?)));
    let (stdin, stdout) = match streams {
        Ok(streams) => streams,
        Err(err) => {
            eprintln!("mop-agent: cannot open stdin/stdout: {err}");
            return exit_code::INTERNAL;
        }
    };
    enlarge_pipe(&stdin);
    let reader = BufReader::with_capacity(256 * 1024, File::from(stdin));
    let writer = BufWriter::with_capacity(64 * 1024, File::from(stdout));
    serve(reader, writer, config, crate::facts::gather)
}

/// Asks for a 1 MiB buffer on our stdin pipe (the default is 64 KiB): sshd can then hand over
/// a whole data frame per write, and both sides wake up a quarter as often during a transfer.
/// Best effort: stdin may not be a pipe, or the system limit may be lower.
fn enlarge_pipe(fd: &impl AsRawFd) {
    extern "C" {
        // From the C library every Rust program on Linux links anyway.
        fn fcntl(fd: c_int, command: c_int, ...) -> c_int;
    }
    const F_SETPIPE_SZ: c_int = 1031;
    // SAFETY: F_SETPIPE_SZ takes one int argument and touches nothing but the pipe's buffer.
    unsafe {
        fcntl(fd.as_raw_fd(), F_SETPIPE_SZ, 1024 * 1024 as c_int);
    }
}

/// Serves one session over any reader/writer pair; `gather_facts` runs after a valid hello.
pub fn serve<R: Read, W: Write>(
    reader: R,
    writer: W,
    config: &SessionConfig,
    gather_facts: fn() -> Facts,
) -> i32 {
    let mut channel = Channel::new(reader, writer, config.corrupt_transfers);
    match run(&mut channel, gather_facts) {
        Ok(()) => exit_code::OK,
        Err(err) => {
            // Not eprintln!, which panics when stderr is gone (the connection dropped): the
            // agent must live on to clean up (`lifetime.rs`).
            let _ = writeln!(std::io::stderr(), "mop-agent: {err}");
            // Tell the controller if the channel still works; if it does not, stderr is all.
            let _ = channel.send(&AgentMessage::Error {
                message: err.to_string(),
            });
            err.exit_code()
        }
    }
}

fn run<R: Read, W: Write>(
    channel: &mut Channel<R, W>,
    gather_facts: fn() -> Facts,
) -> Result<(), SessionError> {
    match channel.receive()? {
        None => return Ok(()),
        Some(Frame::Message(ControllerMessage::Hello {
            protocol_version, ..
        })) => {
            if protocol_version != PROTOCOL_VERSION {
                return Err(SessionError::VersionMismatch(format!(
                    "the controller speaks protocol version {protocol_version}, this agent speaks version {PROTOCOL_VERSION}\nhint: the controller uploads the agent built with it; remove the stale agent binary on the host"
                )));
            }
        }
        Some(Frame::Message(other)) => {
            return Err(SessionError::Protocol(format!(
                "expected `hello`, got `{}`",
                message_name(&other)
            )));
        }
        Some(Frame::Data(_)) => {
            return Err(SessionError::Protocol(
                "expected `hello`, got a data frame".to_string(),
            ))
        }
    }
    let facts = gather_facts();
    channel.send(&AgentMessage::Hello {
        protocol_version: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        facts: Box::new(facts.clone()),
    })?;
    let mut state = SessionState::new(facts);
    let mut runner = SystemRunner;
    loop {
        match channel.receive()? {
            None => return Ok(()),
            Some(Frame::Message(ControllerMessage::Role(plan))) => {
                let summary = run_role(&plan, &mut state, channel, &mut runner)?;
                channel.send(&AgentMessage::RoleDone(summary))?;
            }
            Some(Frame::Message(ControllerMessage::Cleanup(request))) => {
                crate::lifetime::ENDED_BY_CONTROLLER
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                let error = crate::cleanup::run(&request).err();
                channel.send(&AgentMessage::Cleaned { error })?;
            }
            Some(Frame::Message(ControllerMessage::Shutdown)) => {
                crate::lifetime::ENDED_BY_CONTROLLER
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                return Ok(());
            }
            Some(Frame::Message(other)) => {
                return Err(SessionError::Protocol(format!(
                    "unexpected `{}` between roles (expected `role` or `shutdown`)",
                    message_name(&other)
                )));
            }
            Some(Frame::Data(data)) => {
                return Err(SessionError::Protocol(format!(
                    "unexpected data frame of {} bytes outside a file transfer",
                    data.len()
                )));
            }
        }
    }
}
