//! Files reached through directory descriptors, never by a path resolved twice: what a
//! resource working inside a directory another user owns (a home) needs. A directory is opened
//! once (`O_NOFOLLOW`), and every later step (open, create, rename, chown, chmod) goes through
//! that descriptor with `*at` calls that do not follow a symlink either, so a symlink swapped
//! in between a check and a use is never followed.

use std::ffi::CString;
use std::fs::{File, Metadata};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// An open directory.
pub struct Dir {
    file: File,
}

/// Attributes a file or directory is given through its descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

fn c_name(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// The descriptor a successful `open`/`openat` returned, or the error it set.
fn owned(fd: libc::c_int) -> io::Result<File> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just returned to us, owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether `error` means a symlink (or something else than was asked for) stands at the
/// name: `O_NOFOLLOW` on a symlink gives `ELOOP`, `O_DIRECTORY` on a non-directory `ENOTDIR`.
pub fn is_not_followed(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR))
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Dir {
    /// Opens the directory at `path`; its last component must not be a symlink.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let name = c_name(path.as_os_str().as_bytes())?;
        // SAFETY: a valid NUL-terminated path; the result is checked.
        let fd = unsafe {
            libc::open(
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        Ok(Dir { file: owned(fd)? })
    }

    /// The directory's own metadata (`fstat`).
    pub fn metadata(&self) -> io::Result<Metadata> {
        self.file.metadata()
    }

    fn openat(&self, name: &str, flags: libc::c_int, mode: libc::c_uint) -> io::Result<File> {
        let name = c_name(name.as_bytes())?;
        // SAFETY: our open directory descriptor and a valid NUL-terminated name.
        let fd = unsafe { libc::openat(self.file.as_raw_fd(), name.as_ptr(), flags, mode) };
        owned(fd)
    }

    /// Opens the directory `name` inside this one, not following a symlink.
    pub fn open_dir(&self, name: &str) -> io::Result<Dir> {
        let file = self.openat(
            name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0,
        )?;
        Ok(Dir { file })
    }

    /// Creates the directory `name` inside this one (`mkdirat`; the umask applies to `mode`).
    pub fn create_dir(&self, name: &str, mode: u32) -> io::Result<()> {
        let c_name = c_name(name.as_bytes())?;
        // SAFETY: our open directory descriptor and a valid NUL-terminated name.
        check(unsafe { libc::mkdirat(self.file.as_raw_fd(), c_name.as_ptr(), mode) })
    }

    /// Opens the file `name` inside this one for reading: a symlink is not followed, and a
    /// fifo does not block the open. The caller checks what it got with `metadata()`.
    pub fn open_file(&self, name: &str) -> io::Result<File> {
        self.openat(
            name,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY,
            0,
        )
    }

    /// Gives the directory itself `ownership` (owner first: `chown` clears set-id bits).
    pub fn set_ownership(&self, ownership: Ownership) -> io::Result<()> {
        set_ownership(&self.file, ownership)
    }

    /// Replaces the file `name` with `content`: a new temporary file in this directory
    /// (`O_CREAT|O_EXCL|O_NOFOLLOW`, 0600), given `ownership` through its descriptor, synced,
    /// and renamed over `name` within this directory (`renameat`). On failure the temporary
    /// file is removed and `name` is left as it was.
    pub fn replace_file(&self, name: &str, content: &[u8], ownership: Ownership) -> io::Result<()> {
        let (temp_name, mut temp) = loop {
            let counter = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let temp_name = format!(".{name}.mop-{}-{counter}", std::process::id());
            match self.openat(
                &temp_name,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600,
            ) {
                Ok(file) => break (temp_name, file),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(error),
            }
        };
        let written = temp
            .write_all(content)
            .and_then(|()| set_ownership(&temp, ownership))
            .and_then(|()| temp.sync_all())
            .and_then(|()| self.rename(&temp_name, name));
        if written.is_err() {
            let _ = self.remove_file(&temp_name);
            return written;
        }
        // Best effort: some filesystems refuse fsync on directories.
        let _ = self.file.sync_all();
        Ok(())
    }

    /// Renames `from` to `to`, both inside this directory.
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (c_name(from.as_bytes())?, c_name(to.as_bytes())?);
        let fd = self.file.as_raw_fd();
        // SAFETY: our open directory descriptor and valid NUL-terminated names.
        check(unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) })
    }

    /// Removes the file `name` inside this directory (not following a symlink: `unlinkat`
    /// removes the link itself).
    fn remove_file(&self, name: &str) -> io::Result<()> {
        let name = c_name(name.as_bytes())?;
        // SAFETY: our open directory descriptor and a valid NUL-terminated name.
        check(unsafe { libc::unlinkat(self.file.as_raw_fd(), name.as_ptr(), 0) })
    }
}

/// Gives an open file or directory `ownership` through its descriptor: owner first (`chown`
/// clears set-id bits), then the mode.
pub fn set_ownership(file: &File, ownership: Ownership) -> io::Result<()> {
    std::os::unix::fs::fchown(file, Some(ownership.uid), Some(ownership.gid))?;
    file.set_permissions(std::fs::Permissions::from_mode(ownership.mode))
}
