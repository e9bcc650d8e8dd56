//! Framing: every message is `[u32 big-endian length][u8 kind][body]`.
//!
//! `kind` 0 is a JSON message, `kind` 1 is raw file data belonging to the file transfer opened
//! by the preceding `file_begin` message. Raw data frames avoid base64 overhead and let either
//! side stream a large file in bounded memory. The length covers `kind` + body.

use std::io::{self, Read, Write};

use serde::{de::DeserializeOwned, Serialize};

/// Largest JSON frame either side accepts (a role plan with thousands of resources fits well
/// within this).
pub const MAX_JSON_FRAME: u32 = 64 * 1024 * 1024;
/// Largest data frame either side accepts.
pub const MAX_DATA_FRAME: u32 = 1024 * 1024;
/// Size of the data chunks the controller sends.
pub const DATA_CHUNK: usize = 256 * 1024;

const KIND_JSON: u8 = 0;
const KIND_DATA: u8 = 1;

/// One decoded frame.
#[derive(Debug)]
pub enum Frame<T> {
    Message(T),
    Data(Vec<u8>),
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The underlying channel failed.
    Io(io::Error),
    /// The peer closed the channel in the middle of a frame.
    Truncated,
    /// A length prefix larger than the limit for its kind.
    Oversized { kind: u8, len: u32 },
    /// A frame kind this version does not know.
    UnknownKind(u8),
    /// A zero-length frame (it cannot even hold a kind byte).
    Empty,
    /// A JSON frame that does not decode into a known message.
    Malformed(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Io(err) => write!(f, "channel error: {err}"),
            FrameError::Truncated => {
                write!(f, "truncated frame: the peer closed the channel mid-frame")
            }
            FrameError::Oversized { kind, len } => {
                write!(
                    f,
                    "oversized frame: kind {kind} with {len} bytes exceeds the limit"
                )
            }
            FrameError::UnknownKind(kind) => write!(f, "unknown frame kind {kind}"),
            FrameError::Empty => write!(f, "empty frame"),
            FrameError::Malformed(why) => write!(f, "malformed message: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Writes one JSON message frame. The caller flushes when a batch of frames is complete.
pub fn write_json_frame<W: Write, T: Serialize>(writer: &mut W, message: &T) -> io::Result<()> {
    let body = serde_json::to_vec(message).map_err(io::Error::other)?;
    write_frame(writer, KIND_JSON, &body)
}

/// Writes one raw data frame.
pub fn write_data_frame<W: Write>(writer: &mut W, data: &[u8]) -> io::Result<()> {
    write_frame(writer, KIND_DATA, data)
}

fn write_frame<W: Write>(writer: &mut W, kind: u8, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len() + 1)
        .map_err(|_| io::Error::other("frame body larger than 4 GiB"))?;
    let mut header = [0u8; 5];
    header[..4].copy_from_slice(&len.to_be_bytes());
    header[4] = kind;
    writer.write_all(&header)?;
    writer.write_all(body)
}

/// Encodes a frame header for async writers that cannot use [`write_json_frame`].
pub fn encode_header(kind_is_data: bool, body_len: usize) -> io::Result<[u8; 5]> {
    let len = u32::try_from(body_len + 1)
        .map_err(|_| io::Error::other("frame body larger than 4 GiB"))?;
    let mut header = [0u8; 5];
    header[..4].copy_from_slice(&len.to_be_bytes());
    header[4] = if kind_is_data { KIND_DATA } else { KIND_JSON };
    Ok(header)
}

/// Decodes a frame header into (is_data, body_len), enforcing the limits.
pub fn decode_header(header: [u8; 5]) -> Result<(bool, usize), FrameError> {
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let kind = header[4];
    let limit = match kind {
        KIND_JSON => MAX_JSON_FRAME,
        KIND_DATA => MAX_DATA_FRAME,
        other => return Err(FrameError::UnknownKind(other)),
    };
    if len - 1 > limit {
        return Err(FrameError::Oversized { kind, len });
    }
    Ok((kind == KIND_DATA, (len - 1) as usize))
}

/// Decodes a JSON body into a message.
pub fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(|err| FrameError::Malformed(err.to_string()))
}

/// Reads one frame. `Ok(None)` means the peer closed the channel cleanly between frames.
pub fn read_frame<R: Read, T: DeserializeOwned>(
    reader: &mut R,
) -> Result<Option<Frame<T>>, FrameError> {
    let mut header = [0u8; 5];
    match read_exact_or_eof(reader, &mut header)? {
        ReadOutcome::Eof => return Ok(None),
        ReadOutcome::Partial => return Err(FrameError::Truncated),
        ReadOutcome::Full => {}
    }
    let (is_data, body_len) = decode_header(header)?;
    let mut body = vec![0u8; body_len];
    match read_exact_or_eof(reader, &mut body)? {
        ReadOutcome::Full => {}
        ReadOutcome::Eof | ReadOutcome::Partial if body_len > 0 => {
            return Err(FrameError::Truncated)
        }
        _ => {}
    }
    if is_data {
        Ok(Some(Frame::Data(body)))
    } else {
        decode_json(&body).map(|message| Some(Frame::Message(message)))
    }
}

enum ReadOutcome {
    Full,
    Eof,
    Partial,
}

fn read_exact_or_eof<R: Read>(reader: &mut R, buf: &mut [u8]) -> Result<ReadOutcome, FrameError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(ReadOutcome::Eof),
            Ok(0) => return Ok(ReadOutcome::Partial),
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(FrameError::Io(err)),
        }
    }
    Ok(ReadOutcome::Full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ControllerMessage;

    fn roundtrip(message: &ControllerMessage) -> ControllerMessage {
        let mut buf = Vec::new();
        write_json_frame(&mut buf, message).expect("write to a Vec cannot fail");
        match read_frame::<_, ControllerMessage>(&mut buf.as_slice()) {
            Ok(Some(Frame::Message(message))) => message,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn json_frames_roundtrip() {
        let hello = ControllerMessage::Hello {
            protocol_version: 1,
            controller_version: "x".into(),
        };
        assert_eq!(roundtrip(&hello), hello);
    }

    #[test]
    fn data_frames_roundtrip() {
        let mut buf = Vec::new();
        write_data_frame(&mut buf, b"abc").expect("write to a Vec cannot fail");
        match read_frame::<_, ControllerMessage>(&mut buf.as_slice()) {
            Ok(Some(Frame::Data(data))) => assert_eq!(data, b"abc"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn clean_eof_is_none_and_partial_is_truncated() {
        let empty: &[u8] = &[];
        assert!(matches!(
            read_frame::<_, ControllerMessage>(&mut &*empty),
            Ok(None)
        ));
        let partial: &[u8] = &[0, 0, 0, 9, 0, b'{'];
        assert!(matches!(
            read_frame::<_, ControllerMessage>(&mut &*partial),
            Err(FrameError::Truncated)
        ));
        let half_header: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame::<_, ControllerMessage>(&mut &*half_header),
            Err(FrameError::Truncated)
        ));
    }

    #[test]
    fn oversized_unknown_and_malformed_frames_are_errors() {
        let oversized: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0];
        assert!(matches!(
            read_frame::<_, ControllerMessage>(&mut &*oversized),
            Err(FrameError::Oversized { .. })
        ));
        let unknown: &[u8] = &[0, 0, 0, 1, 7];
        assert!(matches!(
            read_frame::<_, ControllerMessage>(&mut &*unknown),
            Err(FrameError::UnknownKind(7))
        ));
        let mut garbage = Vec::new();
        write_frame(&mut garbage, KIND_JSON, b"{\"msg\":\"nope\"}")
            .expect("write to a Vec cannot fail");
        assert!(matches!(
            read_frame::<_, ControllerMessage>(&mut garbage.as_slice()),
            Err(FrameError::Malformed(_))
        ));
        let zero: &[u8] = &[0, 0, 0, 0, 0];
        assert!(matches!(
            read_frame::<_, ControllerMessage>(&mut &*zero),
            Err(FrameError::Empty)
        ));
    }
}
