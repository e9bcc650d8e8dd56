//! The SSH transport of `mop push`: one OpenSSH ControlMaster per host, the agent uploaded over
//! SFTP and run over one exec channel, sudo, and cleanup.
//!
//! Lifecycle of a run, as the executor drives it:
//! 1. [`raise_nofile_limit`] once, then [`SshPool::new`] with every host of the run: it reads
//!    and hashes the agent, creates a private run directory under `/tmp` (0700) and writes the
//!    run's ssh_config there (`config.rs` explains why it looks the way it does).
//! 2. [`SshPool::start_agent`] per role (connects lazily, at most `forks` logins at once;
//!    installs the agent once per host; returns its stdio for
//!    [`crate::session::AgentSession::start`]).
//! 3. Whatever happened (success, host failure, controller error, Ctrl-C): drop or kill the
//!    agents, [`SshPool::cleanup`] every host, then [`SshPool::close_all`]. Nothing of mop stays
//!    on a host except the cached agent (`agent-<sha256>`, the default; none with
//!    [`AgentOptions::cache`] off), which `mop clean` removes.
//!
//! Persistent masters (`--persist`, `persist.rs`): a pool first reuses a live master from the
//! user's private connection directory (no login, no jump hosts needed); with
//! [`SshPoolOptions::persist`] the masters it starts live there too and outlive the run.
//! [`SshPool::close_all`] leaves those running; cleanup on the hosts happens all the same.
//!
//! One concern per file: `pool.rs` the connection lifecycle, `askpass.rs` handing a host's
//! login password to its ssh login, `start.rs` installing and starting
//! the agent (scripts in `bootstrap.rs`), `sudo.rs` every sudo decision, `cleanup.rs` removing
//! what a run left, `exec.rs` and `sftp.rs` the channels the ad hoc commands use
//! (`SshPool::open`, `SshPool::spawn_pty`), `config.rs`/`connect.rs`/`persist.rs` the
//! ssh_config and the masters.
//!
//! Architecture invariant: this is the one SSH seam. Only this module uses the `openssh` and
//! `openssh_sftp_client` crates or spawns the `ssh` client; `tests/tidy.rs`
//! (`only_the_ssh_module_reaches_ssh`) fails on any use elsewhere in `crates/*/src`.
//!
//! Architecture invariant: this module knows nothing of the inventory; the executor maps the
//! inventory's resolved connection settings onto [`SshHost`]. The one thing it shares is the
//! pure value grammars of `mop_inventory::grammar`, which `config.rs` applies again to every
//! host before writing ssh_config (one implementation of each rule, checked twice).

mod askpass;
mod bootstrap;
mod child;
mod cleanup;
mod config;
mod config_scan;
mod connect;
mod error;
mod exec;
#[cfg(test)]
mod hostile_tests;
mod lifetime;
mod limits;
mod lookup;
mod lost;
mod persist;
mod pool;
mod run_as;
mod sftp;
mod shell;
mod start;

pub use askpass::{answer_askpass, AskpassError, ASKPASS_SOCKET_ENV};
pub(crate) use bootstrap::{
    agent_dir_expression, elf_platform, AgentPlatform, LocalAgent, STALE_WORK_DIR_GRACE_MINUTES,
};
pub use child::SshAgentChild;
pub use config::{ConfigIncludes, HostKeyPolicy, SshHost, SSH_CONFIG_ENV};
pub use error::{AgentDirError, AgentFileError, BecomeFailure, PersistDurationError, SshError};
pub(crate) use exec::{RemoteProcess, RemoteSession};
pub use limits::raise_nofile_limit;
pub use lookup::{apply_settings, SshConfigLookup, SshConfigReader, SshConfigSettings};
pub(crate) use lost::connection_lost;
pub use persist::{
    close_connections, control_dir_location, list_connections, parse_persist_duration,
    ClosedConnection, PersistedConnection, UnknownConnection, CONTROL_DIR_ENV,
};
pub use pool::{SshPool, SshPoolOptions};
pub(crate) use run_as::{
    check_adhoc_become, check_password, diagnose_refusal, is_become_refusal, password_line, redact,
    RunAs,
};
pub use run_as::{BecomeMethod, BecomeSpec, Secret};
pub(crate) use shell::{quote, quote_local_path};
pub use start::AgentOptions;
