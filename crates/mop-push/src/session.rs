//! The controller side of one agent session: hello, role plans, file serving, shutdown.
//!
//! The session is transport-agnostic: it speaks the protocol over whatever stdin/stdout pair the
//! transport gave it (a local child process or an SSH exec channel).

use std::future::Future;
use std::io::Read;
use std::pin::Pin;

use mop_protocol::{
    AgentMessage, CleanupRequest, ControllerMessage, Facts, Frame, ResourceEvent, ResourceStarted,
    RolePlan, RoleSummary, PROTOCOL_VERSION,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::wire::{FrameReader, FrameWriter};

/// What the agent says about a resource while a role runs.
#[derive(Debug, Clone)]
pub enum RoleEvent {
    /// The resource is about to run (shown by the live progress).
    Started(ResourceStarted),
    /// The resource finished.
    Finished(ResourceEvent),
}

/// The sha256 of a served file, or why there is none; see [`FileProvider::sha256`].
pub type DigestFuture<'a> = Pin<Box<dyn Future<Output = Result<String, FileError>> + Send + 'a>>;

/// Why a served file cannot be sent. The message travels to the agent in `file_refused` and
/// fails that resource, not the session.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FileError {
    /// The id is not an entry of this run's manifest.
    #[error("file id {0} is not in this run's manifest")]
    NotInManifest(u32),
    /// The run serves no files at all.
    #[error("file {0} is not served in this run")]
    NotServed(u32),
    /// Reading or hashing the source failed (the file server's own error, as text because it
    /// is shared between the hashing threads and every session that waits for the digest).
    #[error("{0}")]
    Source(String),
}

/// Serves file contents and digests for the ids of a role plan's `files`.
pub trait FileProvider: Send + Sync {
    /// Opens the content of manifest entry `id`: its size and a reader, or why it cannot be sent.
    fn open(&self, id: u32) -> Result<(u64, Box<dyn Read + Send>), FileError>;

    /// The sha256 of entry `id` if it is known already (plans carry it when it is).
    fn known_sha256(&self, id: u32) -> Option<String>;

    /// The sha256 of entry `id`, waiting for it to be computed if need be.
    fn sha256(&self, id: u32) -> DigestFuture<'_>;
}

/// A provider for plans without served files: refuses everything.
pub struct NoFiles;

impl FileProvider for NoFiles {
    fn open(&self, id: u32) -> Result<(u64, Box<dyn Read + Send>), FileError> {
        Err(FileError::NotServed(id))
    }

    fn known_sha256(&self, _id: u32) -> Option<String> {
        None
    }

    fn sha256(&self, id: u32) -> DigestFuture<'_> {
        Box::pin(std::future::ready(Err(FileError::NotServed(id))))
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
    /// The agent answered a cleanup request but could not remove everything.
    #[error("the agent could not clean up after itself ({0})")]
    CleanupIncomplete(String),
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

    /// Runs one role: sends the plan (with every sha256 the file server already has), streams
    /// events to `on_event`, serves file and digest requests for ids in the plan only, and
    /// returns the role's summary.
    pub async fn run_role(
        &mut self,
        plan: &RolePlan,
        files: &dyn FileProvider,
        on_event: &mut (dyn FnMut(RoleEvent) + Send),
    ) -> Result<RoleOutcome, SessionError> {
        let mut sent_plan = plan.clone();
        for entry in sent_plan.files.values_mut() {
            if entry.sha256.is_none() {
                entry.sha256 = files.known_sha256(entry.id);
            }
        }
        self.writer
            .send(&ControllerMessage::Role(Box::new(sent_plan)))
            .await?;
        let mut outcome = RoleOutcome::default();
        loop {
            match next_message(&mut self.reader).await? {
                AgentMessage::Started(started) => on_event(RoleEvent::Started(started)),
                AgentMessage::Event(event) => on_event(RoleEvent::Finished(*event)),
                AgentMessage::FileRequest { id } => {
                    if !self.refuse_unplanned(plan, id, &mut outcome).await? {
                        outcome.bytes_sent += self.send_file(id, files).await?;
                    }
                }
                AgentMessage::FileDigestRequest { id } => {
                    if !self.refuse_unplanned(plan, id, &mut outcome).await? {
                        let answer = match files.sha256(id).await {
                            Ok(sha256) => ControllerMessage::FileDigest { id, sha256 },
                            Err(reason) => ControllerMessage::FileRefused {
                                id,
                                reason: reason.to_string(),
                            },
                        };
                        self.writer.send(&answer).await?;
                    }
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

    /// Refuses (and records, as a protocol violation) a request for an id that is not in the
    /// plan; `Ok(true)` when it did.
    async fn refuse_unplanned(
        &mut self,
        plan: &RolePlan,
        id: u32,
        outcome: &mut RoleOutcome,
    ) -> Result<bool, SessionError> {
        if plan.files.values().any(|entry| entry.id == id) {
            return Ok(false);
        }
        let reason = format!("file id {id} is not part of this role's manifest");
        outcome.refused_requests.push(reason.clone());
        self.writer
            .send(&ControllerMessage::FileRefused { id, reason })
            .await?;
        Ok(true)
    }

    /// Streams one file in bounded memory: a reader thread fills chunks into a small channel,
    /// and written chunks go back to it for reuse, so a large file costs a handful of buffers
    /// (not one fresh, zeroed allocation per chunk). The stream ends with the file's sha256
    /// (which the file server computes in the background meanwhile), or with `file_refused`
    /// when reading or hashing the source failed: that fails the resource, not the session.
    async fn send_file(&mut self, id: u32, files: &dyn FileProvider) -> Result<u64, SessionError> {
        const CHUNKS_IN_FLIGHT: usize = 4;
        let (size, mut source) = match files.open(id) {
            Ok(opened) => opened,
            Err(reason) => {
                let reason = reason.to_string();
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
        let mut read_error = None;
        while let Some(chunk) = receiver.recv().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(err) => {
                    read_error = Some(err.to_string());
                    break;
                }
            };
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
        let end = match read_error {
            Some(reason) => Err(FileError::Source(reason)),
            None => files.sha256(id).await,
        };
        let end = match end {
            Ok(sha256) => ControllerMessage::FileDigest { id, sha256 },
            Err(reason) => ControllerMessage::FileRefused {
                id,
                reason: reason.to_string(),
            },
        };
        self.writer.send(&end).await?;
        Ok(sent)
    }

    /// Tells the agent to exit and closes its stdin.
    pub async fn shutdown(mut self) -> Result<(), SessionError> {
        self.writer.send(&ControllerMessage::Shutdown).await?;
        self.writer.close().await?;
        Ok(())
    }

    /// Has the agent stop what it started and remove its work directory, then exit.
    /// [`SessionError::CleanupIncomplete`] says what the agent could not remove (it was still
    /// told to exit); the caller then cleans up by other means.
    pub async fn clean_up_and_shut_down(
        mut self,
        request: CleanupRequest,
    ) -> Result<(), SessionError> {
        // Both messages at once: the agent answers the first before it reads the second.
        self.writer
            .send(&ControllerMessage::Cleanup(request))
            .await?;
        self.writer.send(&ControllerMessage::Shutdown).await?;
        let answer = next_message(&mut self.reader).await;
        self.writer.close().await?;
        match answer? {
            AgentMessage::Cleaned { error: None } => Ok(()),
            AgentMessage::Cleaned { error: Some(error) } => {
                Err(SessionError::CleanupIncomplete(error))
            }
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
        AgentMessage::Started(_) => "started",
        AgentMessage::Event(_) => "event",
        AgentMessage::FileRequest { .. } => "file_request",
        AgentMessage::FileDigestRequest { .. } => "file_digest_request",
        AgentMessage::RoleDone(_) => "role_done",
        AgentMessage::Cleaned { .. } => "cleaned",
        AgentMessage::Error { .. } => "error",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mop_protocol::frame::{decode_header, decode_json, encode_header};
    use mop_protocol::{FileEntry, Mode};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;
    use crate::prepare::tests::served;

    /// The agent's end of a session, played by the test.
    struct FakeAgent {
        stdin: DuplexStream,
        stdout: DuplexStream,
    }

    impl FakeAgent {
        async fn receive(&mut self) -> Frame<ControllerMessage> {
            let mut header = [0u8; 5];
            self.stdin.read_exact(&mut header).await.expect("header");
            let (is_data, len) = decode_header(header).expect("valid header");
            let mut body = vec![0u8; len];
            self.stdin.read_exact(&mut body).await.expect("body");
            if is_data {
                Frame::Data(body)
            } else {
                Frame::Message(decode_json(&body).expect("a controller message"))
            }
        }

        async fn message(&mut self) -> ControllerMessage {
            match self.receive().await {
                Frame::Message(message) => message,
                Frame::Data(data) => panic!("expected a message, got {} data bytes", data.len()),
            }
        }

        async fn send(&mut self, message: &AgentMessage) {
            let body = serde_json::to_vec(message).expect("serializable");
            let header = encode_header(false, body.len()).expect("small frame");
            self.stdout.write_all(&header).await.expect("write");
            self.stdout.write_all(&body).await.expect("write");
            self.stdout.flush().await.expect("flush");
        }

        /// Answers the controller's hello.
        async fn hello(&mut self) {
            assert!(matches!(
                self.message().await,
                ControllerMessage::Hello { .. }
            ));
            self.send(&AgentMessage::Hello {
                protocol_version: PROTOCOL_VERSION,
                agent_version: "test".into(),
                facts: Box::default(),
            })
            .await;
        }

        /// Requests file `id` and returns the bytes received and how the stream ended.
        async fn fetch(&mut self, id: u32) -> (Vec<u8>, ControllerMessage) {
            self.send(&AgentMessage::FileRequest { id }).await;
            match self.message().await {
                ControllerMessage::FileBegin { id: begun, .. } => assert_eq!(begun, id),
                other => return (Vec::new(), other),
            }
            let mut content = Vec::new();
            loop {
                match self.receive().await {
                    Frame::Data(data) => content.extend_from_slice(&data),
                    Frame::Message(end) => return (content, end),
                }
            }
        }
    }

    /// A controller session and the fake agent at its other end.
    fn connected() -> (FakeAgent, DuplexStream, DuplexStream) {
        let (controller_stdin, agent_stdin) = tokio::io::duplex(1 << 20);
        let (agent_stdout, controller_stdout) = tokio::io::duplex(1 << 20);
        let agent = FakeAgent {
            stdin: agent_stdin,
            stdout: agent_stdout,
        };
        (agent, controller_stdout, controller_stdin)
    }

    fn plan_with(id: u32, size: u64) -> RolePlan {
        RolePlan {
            role: "test".into(),
            mode: Mode::Apply,
            diff: false,
            vars: serde_json::Map::new(),
            resources: Vec::new(),
            handlers: Vec::new(),
            templates: BTreeMap::new(),
            files: BTreeMap::from([(
                "files/data".to_string(),
                FileEntry {
                    secret: false,
                    id,
                    sha256: None,
                    size,
                    mode: 0o644,
                    mtime_ns: None,
                },
            )]),
            trees: BTreeMap::new(),
            remote_log: false,
        }
    }

    #[tokio::test]
    async fn digests_and_content_are_served_for_planned_ids_only() {
        let content: Vec<u8> = (0..700_000u32).map(|index| (index % 249) as u8).collect();
        let expected = mop_fileserver::sha256_hex(&content);
        let (_dir, _path, files) = served(&content);
        files.0.wait_all().expect("hashed");
        let plan = plan_with(0, content.len() as u64);
        let (mut agent, stdout, stdin) = connected();

        let controller = async {
            let mut session = AgentSession::start(stdout, stdin).await.expect("hello");
            session
                .run_role(&plan, &files, &mut |_| {})
                .await
                .expect("role")
        };
        let fake = async {
            agent.hello().await;
            let sent_plan = match agent.message().await {
                ControllerMessage::Role(plan) => plan,
                other => panic!("expected the role, got {other:?}"),
            };
            agent.send(&AgentMessage::FileDigestRequest { id: 0 }).await;
            let digest = agent.message().await;
            agent.send(&AgentMessage::FileDigestRequest { id: 9 }).await;
            let unplanned_digest = agent.message().await;
            let (received, end) = agent.fetch(0).await;
            let (_, unplanned_fetch) = agent.fetch(9).await;
            agent
                .send(&AgentMessage::RoleDone(RoleSummary::default()))
                .await;
            (
                sent_plan,
                digest,
                unplanned_digest,
                received,
                end,
                unplanned_fetch,
            )
        };
        let (outcome, (sent_plan, digest, unplanned_digest, received, end, unplanned_fetch)) =
            tokio::join!(controller, fake);

        assert_eq!(
            sent_plan.files["files/data"].sha256.as_deref(),
            Some(expected.as_str()),
            "a digest known when the plan is sent goes with it"
        );
        assert_eq!(
            digest,
            ControllerMessage::FileDigest {
                id: 0,
                sha256: expected.clone()
            }
        );
        assert!(
            matches!(
                unplanned_digest,
                ControllerMessage::FileRefused { id: 9, .. }
            ),
            "{unplanned_digest:?}"
        );
        assert_eq!(received, content);
        assert_eq!(
            end,
            ControllerMessage::FileDigest {
                id: 0,
                sha256: expected
            },
            "a stream ends with the digest the agent checks it against"
        );
        assert!(matches!(
            unplanned_fetch,
            ControllerMessage::FileRefused { id: 9, .. }
        ));
        assert_eq!(outcome.bytes_sent, content.len() as u64);
        assert_eq!(
            outcome.refused_requests.len(),
            2,
            "{:?}",
            outcome.refused_requests
        );
    }

    /// Serves a file whose read fails after the first chunk.
    struct FailingFiles;

    struct FailingReader {
        served: bool,
    }

    impl Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.served {
                return Err(std::io::Error::other("the disk went away"));
            }
            self.served = true;
            buf.fill(7);
            Ok(buf.len())
        }
    }

    impl FileProvider for FailingFiles {
        fn open(&self, _id: u32) -> Result<(u64, Box<dyn Read + Send>), FileError> {
            Ok((10 << 20, Box::new(FailingReader { served: false })))
        }

        fn known_sha256(&self, _id: u32) -> Option<String> {
            None
        }

        fn sha256(&self, _id: u32) -> DigestFuture<'_> {
            Box::pin(std::future::ready(Ok("0".repeat(64))))
        }
    }

    #[tokio::test]
    async fn a_source_that_fails_part_way_ends_its_stream_not_the_session() {
        let plan = plan_with(3, 10 << 20);
        let (mut agent, stdout, stdin) = connected();
        let controller = async {
            let mut session = AgentSession::start(stdout, stdin).await.expect("hello");
            let outcome = session
                .run_role(&plan, &FailingFiles, &mut |_| {})
                .await
                .expect("the role goes on");
            session.shutdown().await.expect("shutdown");
            outcome
        };
        let fake = async {
            agent.hello().await;
            let sent_plan = match agent.message().await {
                ControllerMessage::Role(plan) => plan,
                other => panic!("expected the role, got {other:?}"),
            };
            let fetched = agent.fetch(3).await;
            agent
                .send(&AgentMessage::RoleDone(RoleSummary::default()))
                .await;
            (sent_plan, fetched, agent.message().await)
        };
        let (outcome, (sent_plan, (received, end), last)) = tokio::join!(controller, fake);
        assert_eq!(sent_plan.files["files/data"].sha256, None, "not hashed yet");
        assert_eq!(received.len(), mop_protocol::frame::DATA_CHUNK);
        match end {
            ControllerMessage::FileRefused { id: 3, reason } => {
                assert!(reason.contains("the disk went away"), "{reason}")
            }
            other => panic!("expected file_refused, got {other:?}"),
        }
        assert_eq!(outcome.bytes_sent, mop_protocol::frame::DATA_CHUNK as u64);
        assert_eq!(last, ControllerMessage::Shutdown);
    }
}
