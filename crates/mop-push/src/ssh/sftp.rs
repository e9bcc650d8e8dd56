//! SFTP over a host's master connection, as the ad hoc copies (`mop upload`, `download`,
//! `transfer`) need it: open a remote file for reading or writing as a tokio stream, and the
//! copy helpers built on that. The agent upload has its own writer in `bootstrap.rs`.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use openssh::Session;
use openssh_sftp_client::file::TokioCompatFile;
use openssh_sftp_client::{Sftp, SftpOptions};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::error::ChannelError;

/// Read requests of this size (the crate's default is 4 KiB, one round trip each); sftp-server
/// answers larger ones with short reads, which the reader handles.
const READ_BUFFER: std::num::NonZeroUsize = std::num::NonZeroUsize::new(256 * 1024).unwrap();

/// One SFTP session on a host. Dropping it ends the session; see [`RemoteFiles::close`].
pub(crate) struct RemoteFiles {
    sftp: Sftp,
}

/// A remote file opened over SFTP: read it with `AsyncRead`/`AsyncBufRead`, write it with
/// `AsyncWrite` (flush before dropping it, or the tail may be lost).
pub(crate) struct RemoteFile {
    file: Pin<Box<TokioCompatFile>>,
}

impl RemoteFiles {
    pub(super) async fn start(session: Arc<Session>) -> Result<RemoteFiles, ChannelError> {
        let sftp = Sftp::from_clonable_session(session, SftpOptions::new())
            .await
            .map_err(|error| sftp_failure(&error))?;
        Ok(RemoteFiles { sftp })
    }

    /// Opens `path` for reading.
    pub(crate) async fn open(&self, path: &str) -> Result<RemoteFile, ChannelError> {
        let file = self
            .sftp
            .open(path)
            .await
            .map_err(|error| sftp_failure(&error))?;
        Ok(RemoteFile {
            file: Box::pin(TokioCompatFile::with_capacity(file, READ_BUFFER)),
        })
    }

    /// Opens `path` for reading, with its permission bits (`None` when the server gives none).
    pub(crate) async fn open_with_mode(
        &self,
        path: &str,
    ) -> Result<(RemoteFile, Option<u32>), ChannelError> {
        let mut file = self
            .sftp
            .open(path)
            .await
            .map_err(|error| sftp_failure(&error))?;
        let mode = file
            .metadata()
            .await
            .map_err(|error| sftp_failure(&error))?
            .permissions()
            .map(|permissions| permissions.as_raw().bits() & 0o7777);
        Ok((
            RemoteFile {
                file: Box::pin(TokioCompatFile::with_capacity(file, READ_BUFFER)),
            },
            mode,
        ))
    }

    /// Creates `path` for writing, exclusively: nothing may stand there yet, not even a
    /// symlink (SFTP's `EXCL` is `O_CREAT|O_EXCL` on the server). Its mode is 0600 before the
    /// first byte is written, whatever the server's umask gave it.
    pub(crate) async fn create_private(&self, path: &str) -> Result<RemoteFile, ChannelError> {
        let mut file = self
            .sftp
            .options()
            .write(true)
            .create_new(true)
            .open(path)
            .await
            .map_err(|error| sftp_failure(&error))?;
        file.set_permissions(openssh_sftp_client::metadata::Permissions::from(0o600))
            .await
            .map_err(|error| sftp_failure(&error))?;
        Ok(RemoteFile {
            file: Box::pin(TokioCompatFile::new(file)),
        })
    }

    /// Writes `bytes` to the new file `path` ([`RemoteFiles::create_private`]: created
    /// exclusively, mode 0600), flushed before this returns.
    pub(crate) async fn write_file(&self, path: &str, bytes: &[u8]) -> Result<(), ChannelError> {
        let mut remote = self.create_private(path).await?;
        let mut source = bytes;
        let copied = tokio::io::copy_buf(&mut source, &mut remote).await;
        let flushed = remote.flush().await;
        drop(remote);
        copied.map_err(|error| io_failure(&error))?;
        flushed.map_err(|error| io_failure(&error))
    }

    /// Copies the remote file `path` into the local `target` through a temporary file beside
    /// it, renamed at the end; returns the bytes copied.
    pub(crate) async fn download_to(&self, path: &str, target: &Path) -> Result<u64, ChannelError> {
        let parent = target.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|error| local_failure("cannot create", parent, &error))?;
        let mut source = self.open(path).await?;
        let temp = tempfile::NamedTempFile::new_in(parent)
            .map_err(|error| local_failure("cannot write in", parent, &error))?;
        let (std_file, temp_path) = temp.into_parts();
        let mut local = tokio::fs::File::from_std(std_file);
        let copied = tokio::io::copy_buf(&mut source, &mut local)
            .await
            .map_err(|error| io_failure(&error))?;
        local
            .flush()
            .await
            .map_err(|error| local_failure("cannot write", target, &error))?;
        drop(source);
        temp_path
            .persist(target)
            .map_err(|error| local_failure("cannot write", target, &error))?;
        Ok(copied)
    }

    /// Ends the session. Not `Sftp::close`: in openssh-sftp-client 0.15 it panics
    /// (`Arc::try_unwrap(..).unwrap()`) when a dropped file's close task still holds the
    /// connection, which a loaded machine showed for readers too. Dropping it ends the session
    /// in the background; [`super::SshPool::close_all`] gives such background ends a grace
    /// period before it calls a channel still open.
    pub(crate) async fn close(self) {
        drop(self.sftp);
    }
}

/// What an SFTP failure means in mop's words: the server's status code as plain words
/// (`permission denied`), never the crate's `Sftp server reported error kind PermDenied, msg:`.
pub(crate) fn sftp_failure(error: &openssh_sftp_client::Error) -> ChannelError {
    use openssh_sftp_client::error::SftpErrorKind;
    let text = match error {
        openssh_sftp_client::Error::SftpError(kind, _) => match kind {
            SftpErrorKind::NoSuchFile => "no such file or directory".to_string(),
            SftpErrorKind::PermDenied => "permission denied".to_string(),
            SftpErrorKind::OpUnsupported => "the sftp server does not support this".to_string(),
            _ => "the sftp server refused (it gives no reason)".to_string(),
        },
        other => other.to_string(),
    };
    ChannelError::Sftp(text)
}

/// An error of a copy over an SFTP file: the SFTP failure inside it when there is one.
fn io_failure(error: &io::Error) -> ChannelError {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<openssh_sftp_client::Error>())
    {
        Some(sftp) => sftp_failure(sftp),
        None => ChannelError::Sftp(error.to_string()),
    }
}

fn local_failure(what: &'static str, path: &Path, error: &dyn std::fmt::Display) -> ChannelError {
    ChannelError::Local {
        what,
        path: path.to_path_buf(),
        detail: error.to_string(),
    }
}

impl AsyncRead for RemoteFile {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().file.as_mut().poll_read(context, buffer)
    }
}

impl AsyncBufRead for RemoteFile {
    fn poll_fill_buf(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        self.get_mut().file.as_mut().poll_fill_buf(context)
    }

    fn consume(self: Pin<&mut Self>, amount: usize) {
        self.get_mut().file.as_mut().consume(amount);
    }
}

impl AsyncWrite for RemoteFile {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().file.as_mut().poll_write(context, bytes)
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().file.as_mut().poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().file.as_mut().poll_shutdown(context)
    }
}
