//! `mop-agent`: the small static binary the mop controller runs on each managed host. It speaks
//! the mop protocol on stdin/stdout (stderr is diagnostics) and converges the host to the
//! role plans it receives.
//!
//! Architecture invariant: the agent depends on `mop-protocol`, `mop-template` and std-level
//! crates only (minijinja, serde, sha2, regex-lite, libc's bindings), no async runtime and no
//! CLI framework, so that one static binary stays within its budget (4 MiB raw, 1.5 MiB
//! compressed: `scripts/build-agent`) and runs on any x86_64 Linux whatever its libc.

// The workspace's agent-specific minijinja build (see the root Cargo.toml), under its usual name.
extern crate minijinja_agent as minijinja;

mod accounts;
mod channel;
mod cleanup;
mod diff;
mod dirfd;
mod facts;
mod fsutil;
mod lifetime;
mod outcome;
mod remote_log;
mod resources;
mod role;
mod session;
mod spec_render;
mod stamp;
mod system;
mod template;
mod tty_password;

const HELP: &str = "\
mop-agent: converges one host to the role plans the mop controller sends

Usage: mop-agent            serve the mop protocol on stdin/stdout
       mop-agent --version  print the agent and protocol versions
       mop-agent --help     print this help
       mop-agent --tty-password -- PROGRAM ARGS...
                            run PROGRAM (doas) on a pseudo-terminal, typing the password
                            read from the first line of stdin at its prompt

The agent is started by `mop` (uploaded over SFTP, or as a local child process by
`mop local`); it is not meant to be run by hand. Messages are length-prefixed frames on
stdin/stdout; diagnostics go to stderr. See docs/reference/protocol.md.

Exit codes:
  0  the session ended normally (`shutdown` or end of stdin)
  2  bad command-line arguments
  3  protocol error: malformed, truncated, oversized or unexpected frame
  4  the controller speaks another protocol version
  5  internal error (the agent's own stdin/stdout failed)
The agent never exits with 127 or 255, which SSH reserves.

Environment:
  MOP_AGENT_TEST_CORRUPT_TRANSFER=1  test hook: flip one byte of each received file, so the
                                     sha256 check fails and the destination stays untouched
";

/// Exit code for bad command-line arguments.
const EXIT_USAGE: i32 = 2;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        None => {
            resources::process::become_session_leader();
            resources::process::drop_controlling_terminal();
            let argv0 = std::env::args_os().next().unwrap_or_default();
            let guard = lifetime::WorkDirGuard::start(&argv0);
            let code = session::serve_stdio(&session::SessionConfig::from_env());
            if let Some(guard) = guard {
                guard.finish();
            }
            code
        }
        Some("--version" | "-V") if args.len() == 1 => {
            println!(
                "mop-agent {} (protocol {})",
                env!("CARGO_PKG_VERSION"),
                mop_protocol::PROTOCOL_VERSION
            );
            mop_protocol::exit_code::OK
        }
        Some("--tty-password") => tty_password::run(&args[1..]),
        Some("--help" | "-h") if args.len() == 1 => {
            print!("{HELP}");
            mop_protocol::exit_code::OK
        }
        Some(other) => {
            eprintln!("mop-agent: unexpected argument `{other}`\nhint: run `mop-agent --help`; the controller starts the agent without arguments");
            EXIT_USAGE
        }
    };
    std::process::exit(code);
}
