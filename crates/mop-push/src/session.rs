//! The controller side of one agent session: hello, role plans, file serving, shutdown.
//!
//! The session is transport-agnostic: it speaks the protocol over whatever stdin/stdout pair the
//! transport gave it (a local child process or an SSH exec channel).

use std::io::Read;

use mop_protocol::{
    AgentMessage, CleanupRequest, ControllerMessage, Facts, Frame, ResourceEvent, RolePlan,
    RoleSummary, PROTOCOL_VERSION,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::wire::{FrameReader, FrameWriter};

/// Serves file contents for the ids of a role plan's `files`.
pub trait FileProvider: Send + Sync {
    /// Opens the content of manifest entry `id`: its size and a reader, or why it cannot be sent.
    fn open(&self, id: u32) -> Result<(u64, Box<dyn Read + Send>), String>;
}

/// A provider for plans without served files: refuses everything.
pub struct NoFiles;

impl FileProvider for NoFiles {
    fn open(&self, id: u32) -> Result<(u64, Box<dyn Read + Send>), String> {
        Err(format!("file {id} is not served in this run"))
    }
}

/// A failure of the session itself (as opposed to a failed resource).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("agent protocol error: {0}")]
    Protocol(String),
    #[error("the agent reported an error: {0}")]
    Agent(String),
    #[error("the agent exited unexpectedly (its stderr may say why)")]
    Closed,
    #[error("agent speaks protocol version {agent}, this mop speaks {controller}")]
    VersionMismatch { agent: u32, controller: u32 },
    #[error("i/o error talking to the agent: {0}")]
    Io(#[from] std::io::Error),
}

/// The result of one role on one host, as seen by the controller.
#[derive(Debug, Clone, Default)]
pub struct RoleOutcome {
    pub summary: RoleSummary,
    /// File bytes the controller sent for this role.
    pub bytes_sent: u64,
    /// Refused requests (ids outside the plan): protocol violations by the host.
    pub refused_requests: Vec<String>,
}

/// One live agent session.
pub struct AgentSession<R, W> {
    reader: FrameReader<R>,
    writer: FrameWriter<W>,
    /// What the agent reported at hello.
    pub facts: Facts,
    pub agent_version: String,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> AgentSession<R, W> {
    /// Says hello and waits for the agent's facts.
    pub async fn start(stdout: R, stdin: W) -> Result<Self, SessionError> {
        let mut reader = FrameReader::new(stdout);
        let mut writer = FrameWriter::new(stdin);
        writer
            .send(&ControllerMessage::Hello {
                protocol_version: PROTOCOL_VERSION,
                controller_version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .await?;
        match next_message(&mut reader).await? {
            AgentMessage::Hello {
                protocol_version,
                agent_version,
                facts,
            } => {
                if protocol_version != PROTOCOL_VERSION {
                    return Err(SessionError::VersionMismatch {
                        agent: protocol_version,
                        controller: PROTOCOL_VERSION,
                    });
                }
                Ok(AgentSession {
                    reader,
                    writer,
                    facts: *facts,
                    agent_version,
                })
            }
            AgentMessage::Error { message } => Err(SessionError::Agent(message)),
            other => Err(SessionError::Protocol(format!(
                "expected hello from the agent, got {}",
                message_name(&other)
            ))),
        }
    }

    /// Runs one role: sends the plan, streams events to `on_event`, serves file requests for
    /// ids in the plan only, and returns the role's summary.
    pub async fn run_role(
        &mut self,
        plan: &RolePlan,
        files: &dyn FileProvider,
        on_event: &mut (dyn FnMut(ResourceEvent) + Send),
    ) -> Result<RoleOutcome, SessionError> {
        self.writer
            .send(&ControllerMessage::Role(Box::new(plan.clone())))
            .await?;
        let mut outcome = RoleOutcome::default();
        loop {
            match next_message(&mut self.reader).await? {
                AgentMessage::Event(event) => on_event(*event),
                AgentMessage::FileRequest { id } => {
                    if !plan.files.values().any(|entry| entry.id == id) {
                        let reason = format!("file id {id} is not part of this role's manifest");
                        outcome.refused_requests.push(reason.clone());
                        self.writer
                            .send(&ControllerMessage::FileRefused { id, reason })
                            .await?;
                        continue;
                    }
                    outcome.bytes_sent += self.send_file(id, files).await?;
                }
                AgentMessage::RoleDone(summary) => {
                    outcome.summary = summary;
                    return Ok(outcome);
                }
                AgentMessage::Error { message } => return Err(SessionError::Agent(message)),
                AgentMessage::Hello { .. } => {
                    return Err(SessionError::Protocol(
                        "unexpected second hello".to_string(),
                    ))
                }
                AgentMessage::Cleaned { .. } => {
                    return Err(SessionError::Protocol(
                        "unexpected `cleaned` during a role".to_string(),
                    ))
                }
            }
        }
    }

    /// Streams one file in bounded memory: a reader thread fills chunks into a small channel,
    /// and written chunks go back to it for reuse, so a large file costs a handful of buffers
    /// (not one fresh, zeroed allocation per chunk).
    async fn send_file(&mut self, id: u32, files: &dyn FileProvider) -> Result<u64, SessionError> {
        const CHUNKS_IN_FLIGHT: usize = 4;
        let (size, mut source) = match files.open(id) {
            Ok(opened) => opened,
            Err(reason) => {
                self.writer
                    .send(&ControllerMessage::FileRefused { id, reason })
                    .await?;
                return Ok(0);
            }
        };
        let (sender, mut receiver) = mpsc::channel::<std::io::Result<Vec<u8>>>(CHUNKS_IN_FLIGHT);
        let (recycler, mut recycled) = mpsc::channel::<Vec<u8>>(CHUNKS_IN_FLIGHT + 2);
        let reader_thread = tokio::task::spawn_blocking(move || loop {
            let mut chunk = recycled
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(mop_protocol::frame::DATA_CHUNK));
            // A no-op for a reused full-size chunk; zeroes only a new or shortened one.
            chunk.resize(mop_protocol::frame::DATA_CHUNK, 0);
            let result = read_full(&mut source, &mut chunk).map(|n| {
                chunk.truncate(n);
                chunk
            });
            let done = matches!(&result, Ok(chunk) if chunk.is_empty()) || result.is_err();
            if sender.blocking_send(result).is_err() || done {
                return;
            }
        });
        self.writer
            .send(&ControllerMessage::FileBegin { id, size })
            .await?;
        let mut sent = 0u64;
        while let Some(chunk) = receiver.recv().await {
            let chunk = chunk?;
            if chunk.is_empty() {
                break;
            }
            self.writer.send_data(&chunk).await?;
            sent += chunk.len() as u64;
            // Full or closed: the chunk is simply freed.
            let _ = recycler.try_send(chunk);
        }
        drop(receiver);
        reader_thread
            .await
            .map_err(|err| SessionError::Io(std::io::Error::other(err.to_string())))?;
        self.writer.send(&ControllerMessage::FileEnd { id }).await?;
        Ok(sent)
    }

    /// Tells the agent to exit and closes its stdin.
    pub async fn shutdown(mut self) -> Result<(), SessionError> {
        self.writer.send(&ControllerMessage::Shutdown).await?;
        self.writer.close().await?;
        Ok(())
    }

    /// Has the agent stop what it started and remove its work directory, then exit. `Ok(Err)`
    /// says what the agent could not remove; the caller then cleans up by other means.
    pub async fn clean_up_and_shut_down(
        mut self,
        request: CleanupRequest,
    ) -> Result<Result<(), String>, SessionError> {
        // Both messages at once: the agent answers the first before it reads the second.
        self.writer
            .send(&ControllerMessage::Cleanup(request))
            .await?;
        self.writer.send(&ControllerMessage::Shutdown).await?;
        let answer = next_message(&mut self.reader).await;
        self.writer.close().await?;
        match answer? {
            AgentMessage::Cleaned { error: None } => Ok(Ok(())),
            AgentMessage::Cleaned { error: Some(error) } => Ok(Err(error)),
            AgentMessage::Error { message } => Err(SessionError::Agent(message)),
            other => Err(SessionError::Protocol(format!(
                "expected `cleaned` from the agent, got `{}`",
                message_name(&other)
            ))),
        }
    }
}

fn read_full(source: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

async fn next_message<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
) -> Result<AgentMessage, SessionError> {
    match reader.read().await {
        Ok(Some(Frame::Message(message))) => Ok(message),
        Ok(Some(Frame::Data(_))) => Err(SessionError::Protocol(
            "unexpected data frame from the agent".to_string(),
        )),
        Ok(None) => Err(SessionError::Closed),
        Err(mop_protocol::FrameError::Io(err)) => Err(SessionError::Io(err)),
        Err(err) => Err(SessionError::Protocol(err.to_string())),
    }
}

fn message_name(message: &AgentMessage) -> &'static str {
    match message {
        AgentMessage::Hello { .. } => "hello",
        AgentMessage::Event(_) => "event",
        AgentMessage::FileRequest { .. } => "file_request",
        AgentMessage::RoleDone(_) => "role_done",
        AgentMessage::Cleaned { .. } => "cleaned",
        AgentMessage::Error { .. } => "error",
    }
}
