//! Ad hoc operations across hosts (`mop run`, `mop upload`, `mop download`, `mop transfer`):
//! one command or one file copy on many hosts, without a policy.
//!
//! Architecture invariant: nothing here opens SSH its own way. Only `crate::ssh` uses the
//! `openssh` and `openssh_sftp_client` crates or spawns `ssh` (as `lib.rs` and ARCHITECTURE.md
//! say; `tests/tidy.rs` fails on any other use). Hosts are mapped onto [`crate::ssh::SshHost`]
//! exactly as `mop push` maps them ([`crate::rollout::ssh_host`]), and every channel goes over
//! the master connection of an [`SshPool::without_agent`] through the operations the pool
//! offers (exec, `--pty`, SFTP files and copies), so via-chains, host key policy, forks and sudo
//! behave the same.

mod clean;
mod command;
mod copy;
mod hosts;
mod run;

pub use clean::{clean_script, parse_clean_output, CleanReport, KeptEntry};
pub use command::{parse_env, render_command, CommandError};
pub use copy::{
    download_from_hosts, remove_staging, transfer, upload_to_hosts, CopyOutcome, DownloadOptions,
    LocalSourceError, Transfer, UploadOptions,
};
pub use hosts::{parse_host_spec, pool_for, AdhocHost, HostSpecError, PoolFlags};
pub use run::{run_local, run_on_hosts, HostRun, OutputLine, RunOptions, StreamKind};

use crate::ssh::SshPool;

/// Ctrl-C arrived while an ad hoc command was working on hosts: its work was abandoned (and,
/// for `mop run`, its remote processes stopped); the caller closes the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Runs `work` to its end, or until Ctrl-C: then `work` is dropped, which closes its channels
/// (SFTP sessions, exec channels, `ssh -tt` clients).
pub async fn until_interrupted<T>(
    work: impl std::future::Future<Output = T>,
) -> Result<T, Interrupted> {
    tokio::select! {
        value = work => Ok(value),
        _ = tokio::signal::ctrl_c() => Err(Interrupted),
    }
}
