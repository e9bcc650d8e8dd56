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
//!
//! The value is binary and 49 bytes ([`LENGTH`]): a format byte, the sha256, the size and the
//! modification time, so that with its name it fits in the inode of ext4's default 256-byte
//! inodes. The text form of format 1 (95 bytes) did not: ext4 gave every stamped file a
//! 4 KiB attribute block of its own (8 MB more on disk for a 2,000-file tree) and read that
//! block on every lookup. A format-1 stamp is ignored, so such a file is hashed once more and
//! stamped again.

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

/// The stamp's format version, its first byte.
const FORMAT: u8 = 2;

/// Format byte, sha256, size (u64, little-endian), modification time (i64 ns, little-endian).
pub const LENGTH: usize = 1 + 32 + 8 + 8;

/// The sha256 a stamp records for `path`, if its stamp matches `meta` (taken without following
/// a symbolic link) in size and modification time.
pub fn recorded(path: &Path, meta: &Metadata) -> Option<String> {
    let path = CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut buffer = [0u8; LENGTH + 1];
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
    let (sha256, size, mtime) = parse(&buffer[..length])?;
    (size == meta.len() && mtime == mtime_ns(meta)).then(|| crate::diff::hex(&sha256))
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
    value: &[u8],
    call: impl FnOnce(*const libc::c_char, *const libc::c_void, usize) -> libc::c_int,
) {
    call(NAME.as_ptr().cast(), value.as_ptr().cast(), value.len());
}

/// The stamp for a file as `meta` describes it, or `None` while its time is not settled (or
/// `sha256` is not 64 lowercase hex digits).
fn value_for(meta: &Metadata, sha256: &str) -> Option<Vec<u8>> {
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
    let mut value = Vec::with_capacity(LENGTH);
    value.push(FORMAT);
    value.extend_from_slice(&digest_bytes(sha256)?);
    value.extend_from_slice(&meta.len().to_le_bytes());
    value.extend_from_slice(&mtime.to_le_bytes());
    Some(value)
}

fn parse(value: &[u8]) -> Option<([u8; 32], u64, i64)> {
    if value.len() != LENGTH || value[0] != FORMAT {
        return None;
    }
    let sha256 = value[1..33].try_into().ok()?;
    let size = u64::from_le_bytes(value[33..41].try_into().ok()?);
    let mtime = i64::from_le_bytes(value[41..49].try_into().ok()?);
    Some((sha256, size, mtime))
}

/// The 32 bytes of a sha256 given as 64 lowercase hex digits.
fn digest_bytes(hex: &str) -> Option<[u8; 32]> {
    let digit = |byte: u8| match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    };
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (index, pair) in hex.chunks(2).enumerate() {
        bytes[index] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(bytes)
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
        let mut good = vec![FORMAT];
        good.extend_from_slice(&digest_bytes(SHA).expect("hex"));
        good.extend_from_slice(&4u64.to_le_bytes());
        good.extend_from_slice(&(-5i64).to_le_bytes());
        assert_eq!(parse(&good), Some((digest_bytes(SHA).expect("hex"), 4, -5)));
        let mut other_format = good.clone();
        other_format[0] = 1;
        let format_one = format!("1 {SHA} 4 5").into_bytes();
        for value in [
            &b""[..],
            &good[..LENGTH - 1],
            &[&good[..], b"x"].concat(),
            &other_format,
            &format_one,
        ] {
            assert_eq!(parse(value), None, "{value:?}");
        }
        for hex in ["", "abc", &SHA.to_uppercase(), &format!("{}g", &SHA[..63])] {
            assert_eq!(digest_bytes(hex), None, "{hex}");
        }
    }

    /// With its name, the stamp fits in an ext4 inode of the default 256 bytes: the file gets
    /// no attribute block of its own (its block count does not grow; format 1 added 8 sectors).
    /// Meaningful where the temporary directory is on ext4, as on the development machine; on
    /// tmpfs attributes take no blocks at all.
    #[test]
    fn a_stamp_takes_no_block_of_its_own() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = settled_file(dir.path(), b"test");
        let blocks = meta(&path).blocks();
        record(&path, &meta(&path), SHA);
        assert_eq!(recorded(&path, &meta(&path)).as_deref(), Some(SHA));
        assert_eq!(meta(&path).blocks(), blocks, "the stamp took a block");
    }
}
