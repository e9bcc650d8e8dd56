//! Commands over a host's master connection: the exec helper the pool itself uses, and the
//! exec, plain-channel and pty operations it offers to the ad hoc commands (`crate::adhoc`),
//! which never see an `openssh` type or spawn `ssh` themselves.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;

use openssh::Session;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::bootstrap::sh_command;
use super::error::ChannelError;
use super::run_as::{redact, BecomeSpec};
use super::sftp::RemoteFiles;
use super::{SshError, SshPool};

/// What one exec printed.
pub(crate) struct ExecOutput {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `script` with `sh -c` over a new channel, feeding `stdin` (then EOF).
pub(super) async fn exec(
    session: &Session,
    script: &str,
    stdin: Option<Vec<u8>>,
) -> Result<ExecOutput, ChannelError> {
    let mut command = session.raw_command(sh_command(script));
    command
        .stdin(if stdin.is_some() {
            openssh::Stdio::piped()
        } else {
            openssh::Stdio::null()
        })
        .stdout(openssh::Stdio::piped())
        .stderr(openssh::Stdio::piped());
    let mut child = command
        .spawn()
        .await
        .map_err(|error| ChannelError::ExecStart(error.to_string()))?;
    if let (Some(bytes), Some(pipe)) = (stdin, child.stdin().as_mut()) {
        // A failed write means the command ended early; its output says why.
        let _ = pipe.write_all(&bytes).await;
    }
    drop(child.stdin().take());
    let output = child
        .wait_with_output()
        .await
        .map_err(|error| ChannelError::ExecWait(error.to_string()))?;
    Ok(ExecOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// An exec that did not do what was asked, in one line: its stderr (sudo password redacted)
/// and its exit status.
pub(super) fn exec_failure(output: &ExecOutput, sudo: Option<&BecomeSpec>) -> String {
    let stderr = redact(output.stderr.trim(), sudo);
    let status = output
        .code
        .map_or("killed by a signal".to_string(), |code| {
            format!("exit status {code}")
        });
    if stderr.is_empty() {
        status
    } else {
        format!(
            "{} ({status})",
            stderr.lines().collect::<Vec<_>>().join("; ")
        )
    }
}

/// How to wait for a [`RemoteProcess`]: its exit code (`None`: killed by a signal).
pub(crate) type WaitFuture =
    Pin<Box<dyn Future<Output = Result<Option<i32>, ChannelError>> + Send>>;

/// A command started on a host: its streams and how to wait for it.
pub(crate) struct RemoteProcess {
    /// Present when the command was started with stdin.
    pub(crate) stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    pub(crate) stdout: Box<dyn AsyncRead + Send + Unpin>,
    pub(crate) stderr: Box<dyn AsyncRead + Send + Unpin>,
    pub(crate) wait: WaitFuture,
}

/// One host's master connection as the ad hoc commands use it: every channel they open goes
/// over it, so via-chains, host key policy and persisted masters behave as for `mop push`.
#[derive(Clone)]
pub(crate) struct RemoteSession {
    session: Arc<Session>,
}

impl RemoteSession {
    pub(super) fn new(session: Arc<Session>) -> RemoteSession {
        RemoteSession { session }
    }

    /// Runs `script` with `sh -c`, feeding `stdin` (then EOF), and captures its output.
    pub(crate) async fn exec(
        &self,
        script: &str,
        stdin: Option<Vec<u8>>,
    ) -> Result<ExecOutput, ChannelError> {
        exec(&self.session, script, stdin).await
    }

    /// Starts the command line `line` as given (the remote login shell parses it) with piped
    /// stdout and stderr, and a stdin pipe when `with_stdin`.
    pub(crate) async fn spawn(
        &self,
        line: &str,
        with_stdin: bool,
    ) -> Result<RemoteProcess, ChannelError> {
        let mut remote = self.session.clone().arc_raw_command(line);
        remote
            .stdin(if with_stdin {
                openssh::Stdio::piped()
            } else {
                openssh::Stdio::null()
            })
            .stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped());
        let mut child = remote
            .spawn()
            .await
            .map_err(|error| ChannelError::Spawn(error.to_string()))?;
        let stdin: Option<Box<dyn AsyncWrite + Send + Unpin>> =
            child.stdin().take().map(|pipe| Box::new(pipe) as _);
        let stdout: Box<dyn AsyncRead + Send + Unpin> = Box::new(
            child
                .stdout()
                .take()
                .expect("stdout was requested as a pipe"),
        );
        let stderr: Box<dyn AsyncRead + Send + Unpin> = Box::new(
            child
                .stderr()
                .take()
                .expect("stderr was requested as a pipe"),
        );
        let wait: WaitFuture = Box::pin(async move {
            child
                .wait()
                .await
                .map(|status| status.code())
                .map_err(|error| ChannelError::Lost(error.to_string()))
        });
        Ok(RemoteProcess {
            stdin,
            stdout,
            stderr,
            wait,
        })
    }

    /// Runs the command line `line` as given with its output discarded, feeding `stdin`
    /// (then EOF), and waits for it. Best effort: what went wrong is not reported.
    pub(crate) async fn run_quietly(&self, line: &str, stdin: Option<Vec<u8>>) {
        let mut remote = self.session.clone().arc_raw_command(line);
        remote
            .stdin(if stdin.is_some() {
                openssh::Stdio::piped()
            } else {
                openssh::Stdio::null()
            })
            .stdout(openssh::Stdio::null())
            .stderr(openssh::Stdio::null());
        let Ok(mut child) = remote.spawn().await else {
            return;
        };
        if let (Some(mut pipe), Some(bytes)) = (child.stdin().take(), stdin) {
            let _ = pipe.write_all(&bytes).await;
            let _ = pipe.shutdown().await;
        }
        let _ = child.wait().await;
    }

    /// An SFTP session over this connection (it runs as the login user).
    pub(crate) async fn sftp(&self) -> Result<RemoteFiles, ChannelError> {
        RemoteFiles::start(self.session.clone()).await
    }
}

impl SshPool {
    /// The master connection of `host`, connecting first if needed (ad hoc commands run their
    /// own channels over it).
    pub(crate) async fn open(&self, host: &str) -> Result<RemoteSession, SshError> {
        self.session(host).await.map(RemoteSession::new)
    }

    /// Starts the command line `line` on `host` with a remote terminal (`ssh -tt`): the pool's
    /// own ssh_config and alias, so the host's master, via-chain and host key settings. When
    /// the channel goes away, sshd hangs up the terminal and the kernel signals the remote
    /// command's process group. stdout and stderr arrive merged on stdout.
    pub(crate) fn spawn_pty(
        &self,
        host: &str,
        line: &str,
        with_stdin: bool,
    ) -> Result<RemoteProcess, ChannelError> {
        let alias = self.alias(host).ok_or(ChannelError::NotInPool)?;
        spawn_pty_client(self.ssh_config(), alias, line, with_stdin)
    }
}

fn spawn_pty_client(
    config: &Path,
    alias: &str,
    line: &str,
    with_stdin: bool,
) -> Result<RemoteProcess, ChannelError> {
    let mut command = tokio::process::Command::new("ssh");
    command
        .arg("-F")
        .arg(config)
        .args(["-tt", "-o", "LogLevel=ERROR", alias, "--", line])
        .stdin(if with_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|error| ChannelError::SpawnSsh(error.to_string()))?;
    let stdin: Option<Box<dyn AsyncWrite + Send + Unpin>> =
        child.stdin.take().map(|pipe| Box::new(pipe) as _);
    let stdout: Box<dyn AsyncRead + Send + Unpin> =
        Box::new(child.stdout.take().expect("stdout was requested as a pipe"));
    let stderr: Box<dyn AsyncRead + Send + Unpin> =
        Box::new(child.stderr.take().expect("stderr was requested as a pipe"));
    let wait: WaitFuture = Box::pin(async move {
        child
            .wait()
            .await
            .map(|status| status.code())
            .map_err(|error| ChannelError::Lost(error.to_string()))
    });
    Ok(RemoteProcess {
        stdin,
        stdout,
        stderr,
        wait,
    })
}
