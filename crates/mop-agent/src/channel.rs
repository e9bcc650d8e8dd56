//! The agent's end of the controller channel: framed messages over stdin/stdout, events flushed
//! one by one, and the file-transfer exchange (`file_request` -> `file_begin`, data frames,
//! `file_digest` or `file_refused`).

use std::fmt;
use std::io::{self, Read, Write};

use mop_protocol::{
    exit_code, read_frame, write_json_frame, AgentMessage, ControllerMessage, Frame, FrameError,
    ResourceEvent, ResourceStarted,
};

use crate::resources::{FetchError, Fetched, FileFetcher};
use crate::role::RoleIo;

/// Why a session ends early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// The controller broke the protocol (malformed, truncated, oversized or unexpected frame).
    Protocol(String),
    /// The controller speaks another protocol version.
    VersionMismatch(String),
    /// The agent's own channel failed (stdout closed, stdin unreadable).
    Io(String),
}

impl SessionError {
    /// The process exit code for this error (never 127 or 255).
    pub fn exit_code(&self) -> i32 {
        match self {
            SessionError::Protocol(_) => exit_code::PROTOCOL_ERROR,
            SessionError::VersionMismatch(_) => exit_code::VERSION_MISMATCH,
            SessionError::Io(_) => exit_code::INTERNAL,
        }
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Protocol(why) => write!(f, "protocol error: {why}"),
            SessionError::VersionMismatch(why) => write!(f, "protocol version mismatch: {why}"),
            SessionError::Io(why) => write!(f, "channel error: {why}"),
        }
    }
}

impl From<FrameError> for SessionError {
    fn from(err: FrameError) -> Self {
        match err {
            FrameError::Io(err) => {
                SessionError::Io(format!("cannot read from the controller: {err}"))
            }
            other => SessionError::Protocol(other.to_string()),
        }
    }
}

/// The wire name of a controller message, for error messages.
pub fn message_name(message: &ControllerMessage) -> &'static str {
    match message {
        ControllerMessage::Hello { .. } => "hello",
        ControllerMessage::Role(_) => "role",
        ControllerMessage::FileBegin { .. } => "file_begin",
        ControllerMessage::FileDigest { .. } => "file_digest",
        ControllerMessage::FileRefused { .. } => "file_refused",
        ControllerMessage::Cleanup(_) => "cleanup",
        ControllerMessage::Shutdown => "shutdown",
    }
}

/// The protocol error for a frame that is not what the exchange about file `id` expects.
fn unexpected(expected: &str, id: u32, frame: &Frame<ControllerMessage>) -> SessionError {
    SessionError::Protocol(format!(
        "expected {expected} for file {id}, got {}",
        frame_name(frame)
    ))
}

fn frame_name(frame: &Frame<ControllerMessage>) -> String {
    match frame {
        Frame::Message(message) => format!("`{}`", message_name(message)),
        Frame::Data(data) => format!("a data frame of {} bytes", data.len()),
    }
}

/// Framed messages over a reader (the controller's messages) and a writer (ours).
pub struct Channel<R: Read, W: Write> {
    reader: R,
    writer: W,
    /// Test hook `MOP_AGENT_TEST_CORRUPT_TRANSFER=1`: flip one received byte per transfer.
    corrupt_transfers: bool,
    /// A fatal error met during a file transfer, for the role runner to pick up.
    broken: Option<SessionError>,
}

impl<R: Read, W: Write> Channel<R, W> {
    pub fn new(reader: R, writer: W, corrupt_transfers: bool) -> Channel<R, W> {
        Channel {
            reader,
            writer,
            corrupt_transfers,
            broken: None,
        }
    }

    /// Sends one message and flushes, so events reach the controller as they happen.
    pub fn send(&mut self, message: &AgentMessage) -> Result<(), SessionError> {
        write_json_frame(&mut self.writer, message)
            .and_then(|()| self.writer.flush())
            .map_err(|err| SessionError::Io(format!("cannot write to the controller: {err}")))
    }

    /// The next frame; `None` when the controller closed the channel between frames.
    pub fn receive(&mut self) -> Result<Option<Frame<ControllerMessage>>, SessionError> {
        Ok(read_frame(&mut self.reader)?)
    }

    fn expect_frame(&mut self, id: u32) -> Result<Frame<ControllerMessage>, SessionError> {
        self.receive()?.ok_or_else(|| {
            SessionError::Protocol(format!(
                "the controller closed the channel during the transfer of file {id}"
            ))
        })
    }

    fn transfer(
        &mut self,
        id: u32,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
        received: &mut u64,
    ) -> Result<Result<Fetched, FetchError>, SessionError> {
        self.send(&AgentMessage::FileRequest { id })?;
        let announced = match self.expect_frame(id)? {
            Frame::Message(ControllerMessage::FileBegin { id: begun, size }) if begun == id => size,
            Frame::Message(ControllerMessage::FileRefused {
                id: refused,
                reason,
            }) if refused == id => return Ok(Err(FetchError::Refused(reason))),
            other => return Err(unexpected("`file_begin` or `file_refused`", id, &other)),
        };
        let mut sink_error = None;
        let mut corrupt_pending = self.corrupt_transfers;
        let sha256 = loop {
            match self.expect_frame(id)? {
                Frame::Data(mut data) => {
                    *received += data.len() as u64;
                    if corrupt_pending && !data.is_empty() {
                        data[0] ^= 0xff;
                        corrupt_pending = false;
                    }
                    // After a local write error keep draining, so the stream stays in step.
                    if sink_error.is_none() {
                        if let Err(err) = sink(&data) {
                            sink_error = Some(err);
                        }
                    }
                }
                Frame::Message(ControllerMessage::FileDigest { id: ended, sha256 })
                    if ended == id =>
                {
                    break sha256
                }
                // Reading or hashing the source failed part way: the resource fails, the
                // session goes on.
                Frame::Message(ControllerMessage::FileRefused {
                    id: refused,
                    reason,
                }) if refused == id => return Ok(Err(FetchError::Refused(reason))),
                other => {
                    return Err(unexpected(
                        "data, `file_digest` or `file_refused`",
                        id,
                        &other,
                    ))
                }
            }
        };
        Ok(match sink_error {
            Some(err) => Err(FetchError::Sink(err)),
            None => Ok(Fetched {
                size: announced,
                sha256,
            }),
        })
    }

    fn request_digest(&mut self, id: u32) -> Result<Result<String, FetchError>, SessionError> {
        self.send(&AgentMessage::FileDigestRequest { id })?;
        match self.expect_frame(id)? {
            Frame::Message(ControllerMessage::FileDigest { id: hashed, sha256 })
                if hashed == id =>
            {
                Ok(Ok(sha256))
            }
            Frame::Message(ControllerMessage::FileRefused {
                id: refused,
                reason,
            }) if refused == id => Ok(Err(FetchError::Refused(reason))),
            other => Err(unexpected("`file_digest` or `file_refused`", id, &other)),
        }
    }

    /// Keeps a broken channel for the role runner and turns it into a [`FetchError`].
    fn broken(&mut self, err: SessionError) -> FetchError {
        let why = err.to_string();
        self.broken = Some(err);
        FetchError::Broken(why)
    }
}

impl<R: Read, W: Write> FileFetcher for Channel<R, W> {
    fn fetch(
        &mut self,
        id: u32,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
        received: &mut u64,
    ) -> Result<Fetched, FetchError> {
        match self.transfer(id, sink, received) {
            Ok(result) => result,
            Err(err) => Err(self.broken(err)),
        }
    }

    fn digest(&mut self, id: u32) -> Result<String, FetchError> {
        match self.request_digest(id) {
            Ok(result) => result,
            Err(err) => Err(self.broken(err)),
        }
    }
}

impl<R: Read, W: Write> RoleIo for Channel<R, W> {
    fn emit(&mut self, event: ResourceEvent) -> Result<(), SessionError> {
        self.send(&AgentMessage::Event(Box::new(event)))
    }

    fn started(&mut self, started: ResourceStarted) -> Result<(), SessionError> {
        self.send(&AgentMessage::Started(started))
    }

    fn take_broken(&mut self) -> Option<SessionError> {
        self.broken.take()
    }

    fn fetcher(&mut self) -> &mut dyn FileFetcher {
        self
    }
}
