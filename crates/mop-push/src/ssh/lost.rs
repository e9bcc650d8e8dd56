//! Telling a lost SSH connection from an agent that died on its own, in ssh's own words.
//!
//! When the agent's channel closes mid-role, the session only sees end-of-file. If the host
//! went away (sshd killed, network gone), the host's ControlMaster notices too: it logs ssh's
//! reason (`Connection to 127.0.0.2 closed by remote host.`, `Broken pipe`, …) to the log
//! file next to its socket and exits, removing the socket. Reading that here keeps the
//! summary honest (`unreachable`, with ssh's reason) without a new channel to the host.
//!
//! Layout relied on: the pool links `<run dir>/<alias>.sock` to the master's socket; a run's
//! own master (the `openssh` crate) keeps `master` and `log` in one directory, a persistent
//! master (`--persist`) keeps `<key>.sock` and `<key>.log` side by side. This reads files only:
//! it spawns nothing and speaks no SSH.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ssh::SshPool;

/// How long the master gets to notice a dead connection after the agent's channel closed.
const NOTICE_WINDOW: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(100);

/// Words of ssh's that mean the connection itself ended (as opposed to the remote command).
const LOST_MARKERS: &[&str] = &[
    "closed by remote host",
    "Connection reset",
    "Broken pipe",
    "Connection closed",
    "Connection timed out",
    "Timeout, server",
    "client_loop:",
    "Disconnected from",
];

/// `Some(ssh's reason)` when `host`'s connection is gone, `None` when it is still up (the
/// agent itself ended) or when there is nothing to read (not an SSH host of this pool).
pub(crate) async fn connection_lost(pool: &SshPool, host: &str) -> Option<String> {
    let alias = pool.alias(host)?;
    let link = pool.run_dir().join(format!("{alias}.sock"));
    let socket = std::fs::read_link(&link).ok()?;
    let log = master_log(&socket);
    let deadline = tokio::time::Instant::now() + NOTICE_WINDOW;
    loop {
        let said = log
            .as_deref()
            .and_then(|log| std::fs::read_to_string(log).ok())
            .unwrap_or_default();
        let reason = lost_reason(&said);
        let master_gone = !socket.exists();
        if reason.is_some() || master_gone {
            // At its default log level a master says nothing when the server side just
            // vanishes; its exit is then the only word there is.
            return Some(reason.unwrap_or_else(|| {
                "the ssh connection closed (ssh's master connection exited)".to_string()
            }));
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

fn master_log(socket: &Path) -> Option<PathBuf> {
    let beside = socket.parent()?.join("log");
    if beside.exists() {
        return Some(beside);
    }
    Some(socket.with_extension("log"))
}

/// The last line of the master's log that says the connection ended, as ssh wrote it (minus
/// a trailing period and the `ssh: ` prefix).
fn lost_reason(log: &str) -> Option<String> {
    log.lines()
        .map(|line| line.trim().trim_start_matches("ssh: "))
        .rfind(|line| LOST_MARKERS.iter().any(|marker| line.contains(marker)))
        .map(|line| line.trim_end_matches('.').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_reasons_are_found_and_other_log_lines_are_not() {
        assert_eq!(lost_reason(""), None);
        assert_eq!(
            lost_reason("Warning: Permanently added '127.0.0.2' (ED25519) to the list\n"),
            None
        );
        assert_eq!(
            lost_reason(
                "Warning: Permanently added x\nConnection to 127.16.0.2 port 2201 closed by remote host.\n"
            )
            .as_deref(),
            Some("Connection to 127.16.0.2 port 2201 closed by remote host")
        );
        assert_eq!(
            lost_reason("client_loop: send disconnect: Broken pipe\r\n").as_deref(),
            Some("client_loop: send disconnect: Broken pipe")
        );
    }
}
