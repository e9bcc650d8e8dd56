//! A running remote agent as [`crate::transport::AgentChild::Ssh`] holds it.

use std::sync::{Arc, Weak};

use openssh::Session;
use tokio::io::AsyncWriteExt;

use super::bootstrap::sh_command;

/// The exec channel of an agent, and how to kill it precisely.
pub struct SshAgentChild {
    host: String,
    child: Option<openssh::Child<Arc<Session>>>,
    exit: Option<Option<i32>>,
    /// Weak: a finished agent must not keep the connection from closing.
    session: Weak<Session>,
    /// `[sudo ...] pkill -KILL -f '^<work dir>/mop-agent$'`.
    kill_command: String,
    /// The sudo password line, when the kill runs under password sudo.
    kill_stdin: Option<Vec<u8>>,
}

impl std::fmt::Debug for SshAgentChild {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SshAgentChild")
            .field("host", &self.host)
            .field("exit", &self.exit)
            .field("kill_command", &self.kill_command)
            .finish_non_exhaustive()
    }
}

impl SshAgentChild {
    pub(crate) fn new(
        host: &str,
        child: openssh::Child<Arc<Session>>,
        session: &Arc<Session>,
        kill_command: String,
        kill_stdin: Option<Vec<u8>>,
    ) -> SshAgentChild {
        SshAgentChild {
            host: host.to_string(),
            child: Some(child),
            exit: None,
            session: Arc::downgrade(session),
            kill_command,
            kill_stdin,
        }
    }

    /// The inventory name of the host the agent runs on.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Waits for the agent to exit: its exit code, `None` if it was killed by a signal or the
    /// connection dropped (ssh's mux protocol cannot tell the two apart).
    pub async fn wait(&mut self) -> std::io::Result<Option<i32>> {
        if let Some(exit) = self.exit {
            return Ok(exit);
        }
        let Some(child) = self.child.take() else {
            return Ok(None);
        };
        let exit = match child.wait().await {
            Ok(status) => status.code(),
            Err(openssh::Error::RemoteProcessTerminated | openssh::Error::Disconnected) => None,
            Err(openssh::Error::Remote(error)) if error.kind() == std::io::ErrorKind::NotFound => {
                Some(127)
            }
            Err(error) => {
                return Err(std::io::Error::other(format!(
                    "waiting for the agent on {}: {error}",
                    self.host
                )))
            }
        };
        self.exit = Some(exit);
        Ok(exit)
    }

    /// Kills the agent on the host (`pkill -KILL` by its work-dir path, under the same sudo
    /// identity) and drops the channel.
    pub async fn kill(&mut self) -> std::io::Result<()> {
        if self.exit.is_some() {
            return Ok(());
        }
        let Some(session) = self.session.upgrade() else {
            return Err(std::io::Error::other(format!(
                "cannot kill the agent on {}: the ssh connection is closed already",
                self.host
            )));
        };
        let mut command = session.raw_command(sh_command(&self.kill_command));
        command
            .stdin(openssh::Stdio::piped())
            .stdout(openssh::Stdio::null())
            .stderr(openssh::Stdio::null());
        let mut killer = command.spawn().await.map_err(|error| {
            std::io::Error::other(format!("cannot kill the agent on {}: {error}", self.host))
        })?;
        if let (Some(stdin), Some(line)) = (killer.stdin().as_mut(), &self.kill_stdin) {
            // A failed write means sudo is gone already; the kill's exit status tells.
            let _ = stdin.write_all(line).await;
        }
        let _ = killer.stdin().take();
        let status = killer.wait().await.map_err(|error| {
            std::io::Error::other(format!("cannot kill the agent on {}: {error}", self.host))
        })?;
        self.child = None;
        self.exit.get_or_insert(None);
        // pkill: 0 = killed, 1 = nothing left to kill; both mean the agent is gone.
        match status.code() {
            Some(0 | 1) => Ok(()),
            other => Err(std::io::Error::other(format!(
                "killing the agent on {} failed (pkill exit status {other:?})",
                self.host
            ))),
        }
    }
}

/// The agent's stdin. `shutdown()` really closes the pipe (tokio's pipe writers only flush),
/// so the agent, or sudo in front of it, sees the end of its input.
pub(crate) struct ClosingStdin {
    inner: Option<openssh::ChildStdin>,
}

impl ClosingStdin {
    pub(crate) fn new(inner: openssh::ChildStdin) -> ClosingStdin {
        ClosingStdin { inner: Some(inner) }
    }
}

impl tokio::io::AsyncWrite for ClosingStdin {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.inner.as_mut() {
            Some(inner) => std::pin::Pin::new(inner).poll_write(cx, buf),
            None => std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the agent's stdin was closed",
            ))),
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => std::pin::Pin::new(inner).poll_flush(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(inner) = self.inner.as_mut() {
            std::task::ready!(std::pin::Pin::new(inner).poll_flush(cx))?;
        }
        self.inner = None;
        std::task::Poll::Ready(Ok(()))
    }
}
