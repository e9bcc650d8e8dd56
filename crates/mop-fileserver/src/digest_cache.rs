//! The controller's digest cache: the sha256 of each served file mop hashed, with the identity
//! and times the file had, so a later run that finds the file unchanged takes the recorded
//! digest instead of reading it again (a no-change run of a 50 MiB tree hashed 50 MiB for
//! nothing, and a tree of gigabytes made hosts wait for digests).
//!
//! Why a record can be trusted:
//! - A record names the file by its canonical path, device and inode, and holds its size,
//!   modification time and status-change time (ctime). Any write, truncation, rename over the
//!   path, `chmod` or `touch` moves the ctime to the time of the change, and only root can set a
//!   ctime back (by stepping the clock): putting an old modification time back does not hide a
//!   change.
//! - A record is written only when the ctime it holds is at least [`SETTLED`] older than the
//!   clock when hashing began, so a change in the same clock tick as the recorded ctime cannot
//!   go unseen, and only when the file's identity and times after hashing are the ones before.
//! - Vault files are never recorded: the digest of a secret's plaintext stays out of any file.
//! - The cache file is read only when it is a regular file owned by the user running mop and
//!   writable by nobody else, in a directory with the same properties; anything unexpected in it
//!   makes mop ignore the whole file. It is rewritten through a temporary file and a rename, so
//!   concurrent runs can only lose each other's records (costing a hash), never mix them.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How much older than the clock a file's ctime must be for its digest to be recorded.
pub const SETTLED: Duration = Duration::from_secs(2);

/// The first line of the file; another first line (another format) is ignored.
const HEADER: &str = "mop-digest-cache 1";

/// Records kept at most; past that, records this run did not use are dropped first.
const MAX_RECORDS: usize = 200_000;

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileVersion {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileVersion {
    pub(crate) fn of(metadata: &Metadata) -> FileVersion {
        let ns = |seconds: i64, nanos: i64| i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        FileVersion {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.len(),
            mtime_ns: ns(metadata.mtime(), metadata.mtime_nsec()),
            ctime_ns: ns(metadata.ctime(), metadata.ctime_nsec()),
        }
    }

    /// Whether the last change is at least [`SETTLED`] older than `now`.
    pub(crate) fn settled_at(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(UNIX_EPOCH) else {
            return false;
        };
        self.ctime_ns + SETTLED.as_nanos() as i128 <= now.as_nanos() as i128
    }
}

#[derive(Debug, Clone)]
struct Record {
    version: FileVersion,
    sha256: String,
    used: bool,
}

/// The records of one cache file, loaded once per run and saved when hashing is done.
#[derive(Debug)]
pub struct DigestCache {
    path: PathBuf,
    records: Mutex<HashMap<PathBuf, Record>>,
    /// A record was added this run: only then is the file rewritten.
    changed: AtomicBool,
}

/// The cache a run's manifests use unless they name one (set once by the `mop` binary).
static CONFIGURED: OnceLock<Option<PathBuf>> = OnceLock::new();

impl DigestCache {
    /// Makes `path` the cache of every manifest built after this (`None`: none); the first
    /// call wins.
    pub fn configure(path: Option<PathBuf>) {
        let _ = CONFIGURED.set(path);
    }

    pub(crate) fn configured() -> Option<PathBuf> {
        CONFIGURED.get().cloned().flatten()
    }

    /// The cache at `path`; empty when it does not exist yet or cannot be trusted (see the
    /// module's documentation), which costs only hashing.
    pub fn open(path: &Path) -> DigestCache {
        let records = read_records(path).unwrap_or_default();
        DigestCache {
            path: path.to_path_buf(),
            records: Mutex::new(records),
            changed: AtomicBool::new(false),
        }
    }

    /// The recorded sha256 of the file at `path` (canonical) if `version` is the recorded one.
    pub(crate) fn lookup(&self, path: &Path, version: &FileVersion) -> Option<String> {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let record = records.get_mut(path)?;
        if record.version != *version {
            return None;
        }
        record.used = true;
        Some(record.sha256.clone())
    }

    /// Records a digest just computed; the caller checked that the version is settled and did
    /// not change while it was read.
    pub(crate) fn record(&self, path: &Path, version: FileVersion, sha256: &str) {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        records.insert(
            path.to_path_buf(),
            Record {
                version,
                sha256: sha256.to_string(),
                used: true,
            },
        );
        self.changed.store(true, Ordering::Relaxed);
    }

    /// Writes the records back when this run added one (best effort: a cache that cannot be
    /// written costs the next run a hash of each file, nothing else).
    pub fn save(&self) {
        if !self.changed.load(Ordering::Relaxed) {
            return;
        }
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = write_records(&self.path, &records);
    }

    /// How many records the cache holds (for tests and figures).
    pub fn len(&self) -> usize {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A file or directory mop may trust: owned by this user, writable by nobody else, not a
/// symbolic link.
fn private(metadata: &Metadata) -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    let uid = unsafe { libc::geteuid() };
    metadata.uid() == uid && metadata.mode() & 0o022 == 0 && !metadata.file_type().is_symlink()
}

fn read_records(path: &Path) -> Option<HashMap<PathBuf, Record>> {
    let parent = path.parent()?;
    if !private(&fs::symlink_metadata(parent).ok()?) {
        return None;
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let metadata = file.metadata().ok()?;
    if !metadata.is_file() || !private(&metadata) {
        return None;
    }
    let mut lines = BufReader::new(file).split(b'\n');
    if lines.next()?.ok()? != HEADER.as_bytes() {
        return None;
    }
    let mut records = HashMap::new();
    for line in lines {
        let (path, record) = parse_line(&line.ok()?)?;
        records.insert(path, record);
    }
    Some(records)
}

/// `<dev> <ino> <size> <mtime_ns> <ctime_ns> <sha256> <path>`: the path last, as its bytes
/// (it may hold spaces; a path with a newline is never recorded).
fn parse_line(line: &[u8]) -> Option<(PathBuf, Record)> {
    let mut fields = line.splitn(7, |byte| *byte == b' ');
    let mut next = || -> Option<&[u8]> { fields.next() };
    let text = |bytes: &[u8]| std::str::from_utf8(bytes).ok().map(str::to_string);
    let dev = text(next()?)?.parse().ok()?;
    let ino = text(next()?)?.parse().ok()?;
    let size = text(next()?)?.parse().ok()?;
    let mtime_ns = text(next()?)?.parse().ok()?;
    let ctime_ns = text(next()?)?.parse().ok()?;
    let sha256 = text(next()?)?;
    if sha256.len() != 64
        || !sha256
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    {
        return None;
    }
    let path = PathBuf::from(OsStr::from_bytes(next()?));
    if !path.is_absolute() {
        return None;
    }
    Some((
        path,
        Record {
            version: FileVersion {
                dev,
                ino,
                size,
                mtime_ns,
                ctime_ns,
            },
            sha256,
            used: false,
        },
    ))
}

fn write_records(path: &Path, records: &HashMap<PathBuf, Record>) -> io::Result<()> {
    let parent = path
        .parent()
        .ok_or_else(|| io::Error::other("no directory"))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)?;
    if !private(&fs::symlink_metadata(parent)?) {
        return Err(io::Error::other("the cache directory is not private"));
    }
    let mut kept: Vec<(&PathBuf, &Record)> = records
        .iter()
        .filter(|(path, _)| !path.as_os_str().as_bytes().contains(&b'\n'))
        .collect();
    if kept.len() > MAX_RECORDS {
        // Used by this run first, then any others up to the limit.
        kept.sort_by_key(|(_, record)| !record.used);
        kept.truncate(MAX_RECORDS);
    }
    let temporary = parent.join(format!(
        ".{}.{}",
        path.file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temporary)?;
        let mut out = io::BufWriter::new(file);
        writeln!(out, "{HEADER}")?;
        for (path, record) in kept {
            let version = &record.version;
            write!(
                out,
                "{} {} {} {} {} {} ",
                version.dev,
                version.ino,
                version.size,
                version.mtime_ns,
                version.ctime_ns,
                record.sha256
            )?;
            out.write_all(path.as_os_str().as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.into_inner().map_err(io::IntoInnerError::into_error)?;
        fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

/// The identity and times of the file open as `file`, for comparing before and after reading.
pub(crate) fn version_of_open(file: &File) -> io::Result<FileVersion> {
    Ok(FileVersion::of(&file.metadata()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn settled_file(dir: &Path, name: &str, content: &[u8]) -> (PathBuf, FileVersion) {
        let path = dir.join(name);
        fs::write(&path, content).expect("write");
        let metadata = fs::metadata(&path).expect("stat");
        (path, FileVersion::of(&metadata))
    }

    #[test]
    fn records_survive_a_save_and_match_only_the_same_version() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache_path = dir.path().join("cache/digests");
        let (file, version) = settled_file(dir.path(), "a file", b"content");
        let digest = crate::sha256_hex(b"content");
        let cache = DigestCache::open(&cache_path);
        assert!(cache.is_empty());
        cache.record(&file, version, &digest);
        cache.save();
        let mode = |path: &Path| fs::metadata(path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&cache_path), 0o600);
        assert_eq!(mode(cache_path.parent().expect("dir")), 0o700);

        let again = DigestCache::open(&cache_path);
        assert_eq!(again.lookup(&file, &version), Some(digest.clone()));
        // Another size, time, inode or ctime is another file.
        let mut other = version;
        other.ctime_ns += 1;
        assert_eq!(again.lookup(&file, &other), None);
        let mut other = version;
        other.ino += 1;
        assert_eq!(again.lookup(&file, &other), None);
        assert_eq!(again.lookup(&dir.path().join("elsewhere"), &version), None);
    }

    #[test]
    fn rewriting_a_file_and_putting_its_time_back_is_still_seen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (file, before) = settled_file(dir.path(), "f", b"one");
        let modified = fs::metadata(&file)
            .expect("stat")
            .modified()
            .expect("mtime");
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&file, b"two").expect("rewrite");
        File::options()
            .write(true)
            .open(&file)
            .expect("open")
            .set_modified(modified)
            .expect("put the time back");
        let after = FileVersion::of(&fs::metadata(&file).expect("stat"));
        assert_eq!((after.size, after.mtime_ns), (before.size, before.mtime_ns));
        assert_ne!(after, before, "the ctime moved");
    }

    #[test]
    fn a_cache_file_others_can_write_or_with_a_foreign_line_is_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache_path = dir.path().join("digests");
        let (file, version) = settled_file(dir.path(), "f", b"x");
        let cache = DigestCache::open(&cache_path);
        cache.record(&file, version, &crate::sha256_hex(b"x"));
        cache.save();
        assert_eq!(DigestCache::open(&cache_path).len(), 1);

        fs::set_permissions(&cache_path, fs::Permissions::from_mode(0o622)).expect("chmod");
        assert!(
            DigestCache::open(&cache_path).is_empty(),
            "writable by others"
        );
        fs::set_permissions(&cache_path, fs::Permissions::from_mode(0o600)).expect("chmod");

        let mut text = fs::read(&cache_path).expect("read");
        text.extend_from_slice(b"1 2 3 4 5 not-a-digest /etc/passwd\n");
        fs::write(&cache_path, &text).expect("write");
        assert!(
            DigestCache::open(&cache_path).is_empty(),
            "one bad line: none"
        );

        fs::write(&cache_path, b"something else\n").expect("write");
        assert!(DigestCache::open(&cache_path).is_empty(), "another format");
    }

    #[test]
    fn a_change_within_the_settle_time_is_not_settled() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_, version) = settled_file(dir.path(), "f", b"x");
        assert!(!version.settled_at(SystemTime::now()));
        assert!(version.settled_at(SystemTime::now() + SETTLED + Duration::from_millis(10)));
    }
}
