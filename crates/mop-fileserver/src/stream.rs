//! Streams one manifest entry in bounded chunks and refuses to finish if the file on disk no
//! longer has the size the manifest recorded. Content is checked end to end instead: the agent
//! verifies what it received against the manifest's sha256 before its atomic rename.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::manifest::{Entry, FileId};

/// Chunk size used by the iterator unless [`ChunkReader::with_chunk_size`] says otherwise.
pub const DEFAULT_CHUNK_SIZE: usize = 256 * 1024;

/// Streaming an entry failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("no manifest entry has id {0}")]
    UnknownId(FileId),
    #[error("cannot read `{relative}` (`{}`): {error}", .path.display())]
    Read {
        relative: String,
        path: PathBuf,
        error: io::Error,
    },
    #[error(
        "`{relative}` (`{}`) changed on disk during the run: it is now {actual} bytes, the \
         manifest says {expected}\nhint: run again once nothing is writing to it",
        .path.display()
    )]
    SizeChanged {
        relative: String,
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error(
        "`{relative}` is {size} bytes, more than the {max_bytes} bytes that may be loaded into \
         memory"
    )]
    TooLarge {
        relative: String,
        size: u64,
        max_bytes: u64,
    },
    #[error("streaming `{relative}` already failed")]
    AlreadyFailed { relative: String },
}

impl From<StreamError> for io::Error {
    fn from(error: StreamError) -> io::Error {
        io::Error::other(error)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Streaming,
    /// All bytes were read and checked; the next read reports the end.
    Verified,
    Finished,
    Failed,
}

/// Reads one manifest entry's content, at most one caller-sized buffer at a time.
///
/// The size is checked at open and at the end (a file that shrank or grew is an error); the
/// end check runs in the call that reads the last bytes, so when the file changed size that
/// call fails and its bytes are never handed out. A same-size rewrite is not this reader's to
/// catch: the receiving agent compares the stream with the manifest's sha256. Made only by
/// [`crate::Manifest::open`].
#[derive(Debug)]
pub struct ChunkReader {
    id: FileId,
    relative: String,
    path: PathBuf,
    /// The file on disk, or (for a vault file) its plaintext, decrypted once into memory.
    source: Source,
    expected_size: u64,
    bytes_read: u64,
    bytes_delivered: u64,
    chunk_size: usize,
    state: State,
}

/// Where a [`ChunkReader`] reads from.
enum Source {
    File(File),
    /// A vault file's plaintext: it never exists on the controller's disk.
    Memory(Arc<mop_vault::Plaintext>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(file) => write!(f, "File({file:?})"),
            Source::Memory(plaintext) => write!(f, "Memory({plaintext:?})"),
        }
    }
}

impl ChunkReader {
    /// Streams a vault file's decrypted content (already size-checked by the manifest).
    pub(crate) fn from_memory(
        entry: &Entry,
        path: &Path,
        plaintext: Arc<mop_vault::Plaintext>,
    ) -> ChunkReader {
        ChunkReader {
            id: entry.id,
            relative: entry.relative.clone(),
            path: path.to_path_buf(),
            source: Source::Memory(plaintext),
            expected_size: entry.size,
            bytes_read: 0,
            bytes_delivered: 0,
            chunk_size: DEFAULT_CHUNK_SIZE,
            state: State::Streaming,
        }
    }

    pub(crate) fn open(entry: &Entry, path: &Path) -> Result<ChunkReader, StreamError> {
        let read_error = |error| StreamError::Read {
            relative: entry.relative.clone(),
            path: path.to_path_buf(),
            error,
        };
        let file = File::open(path).map_err(read_error)?;
        let metadata = file.metadata().map_err(read_error)?;
        if metadata.len() != entry.size {
            return Err(StreamError::SizeChanged {
                relative: entry.relative.clone(),
                path: path.to_path_buf(),
                expected: entry.size,
                actual: metadata.len(),
            });
        }
        Ok(ChunkReader {
            id: entry.id,
            relative: entry.relative.clone(),
            path: path.to_path_buf(),
            source: Source::File(file),
            expected_size: entry.size,
            bytes_read: 0,
            bytes_delivered: 0,
            chunk_size: DEFAULT_CHUNK_SIZE,
            state: State::Streaming,
        })
    }

    /// Chunk size for the iterator (at least 1 byte).
    pub fn with_chunk_size(mut self, bytes: usize) -> ChunkReader {
        self.chunk_size = bytes.max(1);
        self
    }

    pub fn id(&self) -> FileId {
        self.id
    }

    /// The size the manifest recorded: the total a successful stream yields.
    pub fn size(&self) -> u64 {
        self.expected_size
    }

    /// Bytes handed to the caller so far (what the executor reports as sent).
    pub fn bytes_delivered(&self) -> u64 {
        self.bytes_delivered
    }

    /// Fills `buffer` with the next bytes and returns how many; `Ok(0)` means the whole
    /// entry was delivered and verified. Never returns more than the manifest size in total.
    ///
    /// # Panics
    /// If `buffer` is empty (that would make the end indistinguishable from a stall).
    pub fn read_chunk(&mut self, buffer: &mut [u8]) -> Result<usize, StreamError> {
        assert!(!buffer.is_empty(), "read_chunk needs a non-empty buffer");
        match self.state {
            State::Verified | State::Finished => {
                self.state = State::Finished;
                return Ok(0);
            }
            State::Failed => {
                return Err(StreamError::AlreadyFailed {
                    relative: self.relative.clone(),
                })
            }
            State::Streaming => {}
        }
        let result = self.read_and_verify(buffer);
        match &result {
            Ok(0) => self.state = State::Finished,
            Ok(read) => self.bytes_delivered += *read as u64,
            Err(_) => self.state = State::Failed,
        }
        result
    }

    fn read_and_verify(&mut self, buffer: &mut [u8]) -> Result<usize, StreamError> {
        let remaining = self.expected_size - self.bytes_read;
        if remaining == 0 {
            // Only an empty file gets here: otherwise the last read already verified.
            self.verify_end()?;
            return Ok(0);
        }
        let wanted = buffer
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        if let Source::Memory(plaintext) = &self.source {
            // The manifest's size is the plaintext's length: nothing can change it.
            let plaintext = Arc::clone(plaintext);
            let start = usize::try_from(self.bytes_read).unwrap_or(usize::MAX);
            let bytes = plaintext
                .expose()
                .get(start..start.saturating_add(wanted))
                .unwrap_or_default();
            buffer[..bytes.len()].copy_from_slice(bytes);
            self.bytes_read += bytes.len() as u64;
            if self.bytes_read == self.expected_size {
                self.state = State::Verified;
            }
            return Ok(bytes.len());
        }
        let mut filled = 0;
        while filled < wanted {
            let Source::File(file) = &mut self.source else {
                unreachable!("memory sources returned above");
            };
            match file.read(&mut buffer[filled..wanted]) {
                Ok(0) => {
                    return Err(StreamError::SizeChanged {
                        relative: self.relative.clone(),
                        path: self.path.clone(),
                        expected: self.expected_size,
                        actual: self.bytes_read + filled as u64,
                    })
                }
                Ok(read) => filled += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(self.read_error(error)),
            }
        }
        self.bytes_read += filled as u64;
        if self.bytes_read == self.expected_size {
            self.verify_end()?;
            self.state = State::Verified;
        }
        Ok(filled)
    }

    /// Called once every expected byte was read: the file must end here.
    fn verify_end(&mut self) -> Result<(), StreamError> {
        let mut probe = [0u8; 1];
        loop {
            let Source::File(file) = &mut self.source else {
                return Ok(());
            };
            match file.read(&mut probe) {
                Ok(0) => break,
                Ok(_) => {
                    let actual = file
                        .metadata()
                        .map_or(self.expected_size + 1, |metadata| metadata.len());
                    return Err(StreamError::SizeChanged {
                        relative: self.relative.clone(),
                        path: self.path.clone(),
                        expected: self.expected_size,
                        actual: actual.max(self.expected_size + 1),
                    });
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(self.read_error(error)),
            }
        }
        Ok(())
    }

    fn read_error(&self, error: io::Error) -> StreamError {
        StreamError::Read {
            relative: self.relative.clone(),
            path: self.path.clone(),
            error,
        }
    }
}

/// Yields chunks of at most the chunk size (256 KiB by default), then `None`; a failure is
/// yielded once, after which the iterator ends.
impl Iterator for ChunkReader {
    type Item = Result<Vec<u8>, StreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        if matches!(self.state, State::Finished | State::Failed) {
            return None;
        }
        let remaining = self.expected_size - self.bytes_read;
        let length = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .clamp(1, self.chunk_size);
        let mut chunk = vec![0u8; length];
        match self.read_chunk(&mut chunk) {
            Ok(0) => None,
            Ok(read) => {
                chunk.truncate(read);
                Some(Ok(chunk))
            }
            Err(error) => Some(Err(error)),
        }
    }
}
