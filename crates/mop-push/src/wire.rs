//! Async framing over an agent's stdin/stdout, on top of `mop_protocol::frame`.

use mop_protocol::frame::{decode_header, decode_json, encode_header};
use mop_protocol::{AgentMessage, ControllerMessage, Frame, FrameError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Reads agent messages from the agent's stdout.
pub struct FrameReader<R> {
    inner: R,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader { inner }
    }

    /// Reads one frame; `Ok(None)` when the agent closed its stdout between frames.
    pub async fn read(&mut self) -> Result<Option<Frame<AgentMessage>>, FrameError> {
        let mut header = [0u8; 5];
        let mut filled = 0;
        while filled < header.len() {
            let n = self
                .inner
                .read(&mut header[filled..])
                .await
                .map_err(FrameError::Io)?;
            if n == 0 {
                return if filled == 0 {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
            filled += n;
        }
        let (is_data, len) = decode_header(header)?;
        let mut body = vec![0u8; len];
        self.inner.read_exact(&mut body).await.map_err(|err| {
            if err.kind() == std::io::ErrorKind::UnexpectedEof {
                FrameError::Truncated
            } else {
                FrameError::Io(err)
            }
        })?;
        if is_data {
            Ok(Some(Frame::Data(body)))
        } else {
            decode_json(&body).map(|message| Some(Frame::Message(message)))
        }
    }
}

/// Writes controller messages to the agent's stdin.
pub struct FrameWriter<W> {
    inner: W,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        FrameWriter { inner }
    }

    /// Writes and flushes one message.
    pub async fn send(&mut self, message: &ControllerMessage) -> std::io::Result<()> {
        let body = serde_json::to_vec(message).map_err(std::io::Error::other)?;
        let header = encode_header(false, body.len())?;
        self.inner.write_all(&header).await?;
        self.inner.write_all(&body).await?;
        self.inner.flush().await
    }

    /// Writes one data frame (not flushed: the `file_digest` message that ends the file flushes).
    pub async fn send_data(&mut self, data: &[u8]) -> std::io::Result<()> {
        let header = encode_header(true, data.len())?;
        self.inner.write_all(&header).await?;
        self.inner.write_all(data).await
    }

    /// Closes the agent's stdin.
    pub async fn close(&mut self) -> std::io::Result<()> {
        self.inner.shutdown().await
    }
}
