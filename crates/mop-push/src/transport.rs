//! The seam through which the executor reaches a host: start the agent, get its stdio.
//!
//! Two implementations: [`LocalTransport`] runs the agent as a child process on this machine
//! (`mop local`), and the SSH transport ([`crate::ssh::SshPool`]) runs it over an OpenSSH exec
//! channel (`mop push`).
//! Both run the same real agent binary; nothing here fakes the work.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncWrite};

/// A running agent's channels and a way to wait for it.
pub struct AgentProcess {
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    pub stdout: Pin<Box<dyn AsyncRead + Send>>,
    pub stderr: Pin<Box<dyn AsyncRead + Send>>,
    pub child: AgentChild,
}

/// The process behind an [`AgentProcess`].
pub enum AgentChild {
    Local(tokio::process::Child),
    /// An agent on a host, behind an SSH exec channel.
    Ssh(crate::ssh::SshAgentChild),
}

impl AgentChild {
    /// Waits for the agent to exit and returns its exit code (`None` if killed by a signal).
    pub async fn wait(&mut self) -> std::io::Result<Option<i32>> {
        match self {
            AgentChild::Local(child) => Ok(child.wait().await?.code()),
            AgentChild::Ssh(child) => child.wait().await,
        }
    }

    /// Kills the agent (used on Ctrl-C and timeouts).
    pub async fn kill(&mut self) -> std::io::Result<()> {
        match self {
            AgentChild::Local(child) => child.kill().await,
            AgentChild::Ssh(child) => child.kill().await,
        }
    }
}

/// Why the agent could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("could not start the agent `{path}`: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs the agent as a child process of `mop` on this machine.
pub struct LocalTransport {
    agent: PathBuf,
}

impl LocalTransport {
    pub fn new(agent: &Path) -> LocalTransport {
        LocalTransport {
            agent: agent.to_path_buf(),
        }
    }

    /// Starts the agent with piped stdio.
    pub fn start_agent(&self) -> Result<AgentProcess, TransportError> {
        let mut child = tokio::process::Command::new(&self.agent)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| TransportError::Spawn {
                path: self.agent.clone(),
                source,
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("all three streams were requested as pipes")
        };
        Ok(AgentProcess {
            stdin: Box::pin(stdin),
            stdout: Box::pin(stdout),
            stderr: Box::pin(stderr),
            child: AgentChild::Local(child),
        })
    }
}
