//! Content stamps: the sha256 of a file mop wrote or hashed, kept in the file's own
//! `user.mop.sha256` extended attribute with the size and modification time the file had, so
//! a later run that finds both unchanged takes the recorded sha256 instead of reading the whole
//! file (a no-change run of a 50 MiB tree to 20 hosts hashed 1 GB for nothing).
//!
//! Why a stamp can be trusted:
//! - Any write through the file system moves the modification time to the time of the write.
//!   A stamp is written only when the time it records is at least [`SETTLED`] older than the
//!   host's clock, so even a write in the same clock tick as the stamp lands on another time.
//! - Putting the old time back (`touch -d`, `utimensat`) and forging the attribute both need
//!   write permission on the file (user attributes follow the file's permission bits), which
//!   already allows writing any content: a stamp gives nobody a way to hide a change they could
//!   not make anyway. A host clock stepped back by more than [`SETTLED`] is the one accident
//!   that could make a new write land on a stamped time.
//! - The stamp names the content by its sha256, which is compared with the served file's:
//!   another source of the same size and time is still seen as different.
//!
//! A file system without user extended attributes (some network or FUSE ones) keeps no stamp,
//! and its files are hashed on every run as before. Check mode reads stamps but never writes
//! one.

use std::ffi::CString;
use std::fs::{File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The attribute's name (the `user.` namespace: any file system with user attributes).
const NAME: &[u8] = b"user.mop.sha256\0";

/// How much older than the host's clock the recorded modification time must be.
pub const SETTLED: Duration = Duration::from_secs(2);

/// The stamp's format version, its first word.
const FORMAT: &str = "1";

/// The sha256 a stamp records for `path`, if its stamp matches `meta` (taken without following
/// a symbolic link) in size and modification time.
pub fn recorded(path: &Path, meta: &Metadata) -> Option<String> {
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut buffer = [0u8; 160];
    // SAFETY: both strings are NUL-terminated and outlive the call; the kernel writes at most
    // `buffer.len()` bytes into `buffer`. `l`: a symbolic link's own attributes, never its
    // target's.
    let length = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            NAME.as_ptr().cast(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    let length = usize::try_from(length).ok()?;
    let text = std::str::from_utf8(&buffer[..length]).ok()?;
    let (sha256, size, mtime) = parse(text)?;
    (size == meta.len() && mtime == mtime_ns(meta)).then(|| sha256.to_string())
}

/// Records `sha256` as the content of `path` as `meta` describes it (apply mode, after a hash
/// found the content equal). Best effort: a file system without user attributes, or a file
/// changed meanwhile, only costs the next run a hash.
pub fn record(path: &Path, meta: &Metadata, sha256: &str) {
    let (Some(value), Ok(path)) = (
        value_for(meta, sha256),
        CString::new(path.as_os_str().as_bytes()),
    ) else {
        return;
    };
    // SAFETY: NUL-terminated name and path, `value` outlives the call. `l`: never through a
    // symbolic link (user attributes cannot be set on one, so a swapped-in link just fails).
    set(&value, |name, value, size| unsafe {
        libc::lsetxattr(path.as_ptr(), name, value, size, 0)
    });
}

/// Gives a freshly written file the served file's modification time (as `scp -p` would), then
/// records its sha256 on it. Best effort, like [`record`].
pub fn record_written(file: &File, mtime: Option<i64>, sha256: &str) {
    if let Some(mtime) = mtime.and_then(system_time) {
        if file.set_modified(mtime).is_err() {
            return;
        }
    }
    let Some(value) = file
        .metadata()
        .ok()
        .and_then(|meta| value_for(&meta, sha256))
    else {
        return;
    };
    // SAFETY: NUL-terminated name, `value` outlives the call, the descriptor is open.
    set(&value, |name, value, size| unsafe {
        libc::fsetxattr(file.as_raw_fd(), name, value, size, 0)
    });
}

/// Calls one of the `setxattr` family with the attribute's name and `value`; the result is not
/// needed (best effort).
fn set(
    value: &str,
    call: impl FnOnce(*const libc::c_char, *const libc::c_void, usize) -> libc::c_int,
) {
    call(NAME.as_ptr().cast(), value.as_ptr().cast(), value.len());
}

/// The stamp for a file as `meta` describes it, or `None` while its time is not settled.
fn value_for(meta: &Metadata, sha256: &str) -> Option<String> {
    let mtime = mtime_ns(meta);
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_nanos(),
    )
    .ok()?;
    let settled = i64::try_from(SETTLED.as_nanos()).ok()?;
    if now.checked_sub(mtime)? < settled {
        return None;
    }
    Some(format!("{FORMAT} {sha256} {} {mtime}", meta.len()))
}

fn parse(text: &str) -> Option<(&str, u64, i64)> {
    let mut words = text.split(' ');
    if words.next()? != FORMAT {
        return None;
    }
    let sha256 = words.next()?;
    let size = words.next()?.parse().ok()?;
    let mtime = words.next()?.parse().ok()?;
    let well_formed = words.next().is_none()
        && sha256.len() == 64
        && sha256
            .bytes()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
    well_formed.then_some((sha256, size, mtime))
}

/// The modification time in nanoseconds since the epoch.
pub fn mtime_ns(meta: &Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

fn system_time(ns: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const OTHER: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

    fn settled_file(dir: &Path, content: &[u8]) -> std::path::PathBuf {
        let path = dir.join("f");
        std::fs::write(&path, content).expect("write");
        let old = SystemTime::now() - Duration::from_secs(60);
        File::options()
            .write(true)
            .open(&path)
            .expect("open")
            .set_modified(old)
            .expect("set mtime");
        path
    }

    fn meta(path: &Path) -> Metadata {
        std::fs::symlink_metadata(path).expect("stat")
    }

    #[test]
    fn a_stamp_holds_while_size_and_time_hold() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = settled_file(dir.path(), b"test");
        assert_eq!(recorded(&path, &meta(&path)), None, "no stamp yet");
        record(&path, &meta(&path), SHA);
        assert_eq!(recorded(&path, &meta(&path)).as_deref(), Some(SHA));
        // Any write moves the time: the stamp no longer speaks for the file.
        std::fs::write(&path, b"tesT").expect("write");
        assert_eq!(recorded(&path, &meta(&path)), None);
    }

    #[test]
    fn an_unsettled_time_gets_no_stamp() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"test").expect("write");
        record(&path, &meta(&path), SHA);
        assert_eq!(recorded(&path, &meta(&path)), None);
    }

    #[test]
    fn a_written_file_takes_the_served_time_and_its_stamp() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"test").expect("write");
        let served = 1_700_000_000_123_456_789;
        let file = File::options().write(true).open(&path).expect("open");
        record_written(&file, Some(served), SHA);
        drop(file);
        let meta = meta(&path);
        assert_eq!(mtime_ns(&meta), served);
        assert_eq!(recorded(&path, &meta).as_deref(), Some(SHA));
        // A served time that is not settled (the source was just saved) sets the time only.
        let now = mtime_ns(&std::fs::metadata(dir.path()).expect("stat"));
        let fresh = dir.path().join("g");
        std::fs::write(&fresh, b"test").expect("write");
        let file = File::options().write(true).open(&fresh).expect("open");
        record_written(&file, Some(now), OTHER);
        assert_eq!(recorded(&fresh, &super::tests::meta(&fresh)), None);
    }

    #[test]
    fn malformed_or_foreign_stamps_are_ignored() {
        for text in [
            "",
            "1",
            "2 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 4 5",
            "1 9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08 4 5",
            "1 abc 4 5",
            "1 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 4 5 6",
            "1 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 x 5",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
        assert_eq!(
            parse("1 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 4 -5"),
            Some((SHA, 4, -5))
        );
    }
}
