//! The run's manifest: exactly the files the selected roles use, each stat-ed up front and
//! hashed once (deduplicated by canonical path) by a pool of background std threads, so hashing
//! overlaps connecting and streaming instead of preceding them.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::digest_cache::{version_of_open, DigestCache, FileVersion};
use crate::hash::{hash_reader, HASH_BUFFER_SIZE};
use crate::resolve::ServedFile;
use crate::stream::{ChunkReader, StreamError};

/// A manifest entry's id: its index in [`Manifest::entries`]. The agent asks for content by
/// id (or by sha256), never by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u32);

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the controller tells hosts about one served file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: FileId,
    /// `/`-separated path inside its root, for messages (hosts never send it back).
    pub relative: String,
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`); `0o644` where the platform has none.
    pub mode: u32,
    /// A vault file (`*.age`): `size` is its plaintext's, the content is decrypted into the
    /// controller's memory and nowhere else, and hosts must not show how it changed.
    pub secret: bool,
    /// Modification time in nanoseconds since the epoch (`None` where the platform has none):
    /// hosts give the files they write this time, as `scp -p` would.
    pub mtime_ns: Option<i64>,
}

/// Figures for the executor to print once the manifest is hashed ([`Manifest::wait_all`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ManifestStats {
    pub files: usize,
    pub bytes: u64,
    /// Wall time from [`ManifestBuilder::finish`] to the last digest.
    pub hash_time: Duration,
    /// Hashing threads used.
    pub threads: usize,
    /// Files whose digest came from the digest cache, unread.
    pub cached: usize,
}

impl ManifestStats {
    /// Bytes hashed per second of wall time, in MiB/s (0 when nothing was hashed).
    pub fn throughput_mib_per_second(&self) -> f64 {
        let seconds = self.hash_time.as_secs_f64();
        if seconds == 0.0 {
            return 0.0;
        }
        self.bytes as f64 / (1024.0 * 1024.0) / seconds
    }
}

/// A file could not be added to the manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read `{relative}` (`{}`) to hash it: {error}", .path.display())]
    Read {
        relative: String,
        path: PathBuf,
        error: io::Error,
    },
    #[error("`{relative}` (`{}`) is no longer a regular file", .path.display())]
    NotRegularFile { relative: String, path: PathBuf },
    #[error("cannot serve `{relative}`: {error}")]
    Vault {
        relative: String,
        error: mop_vault::VaultError,
    },
    #[error("cannot start the threads that hash served files: {0}")]
    Threads(io::Error),
    #[error(
        "`{relative}` (`{}`) changed while it was being hashed: it was {expected} bytes, {actual} \
         were read\nhint: run again once nothing is writing to it",
        .path.display()
    )]
    ChangedWhileHashing {
        relative: String,
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
}

/// Collects the files a run uses; nothing is read until [`ManifestBuilder::finish`].
#[derive(Debug, Default)]
pub struct ManifestBuilder {
    files: Vec<ServedFile>,
    ids_by_path: HashMap<PathBuf, FileId>,
    /// `None`: the cache [`DigestCache::configure`] set; `Some(None)`: none.
    digest_cache: Option<Option<PathBuf>>,
}

impl ManifestBuilder {
    pub fn new() -> ManifestBuilder {
        ManifestBuilder::default()
    }

    /// Registers a file and returns its id. The same file (same canonical path, whatever
    /// spelling, root or file server it was resolved through) always gets the same id, and
    /// the first registration's relative path is kept.
    pub fn add(&mut self, file: &ServedFile) -> FileId {
        if let Some(id) = self.ids_by_path.get(file.absolute()) {
            return *id;
        }
        let id =
            FileId(u32::try_from(self.files.len()).expect("a run serves fewer than 2^32 files"));
        self.ids_by_path.insert(file.absolute().to_path_buf(), id);
        self.files.push(file.clone());
        id
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Takes digests of unchanged files from the cache at `path` and records new ones there
    /// (`None`: reads every file), instead of the cache [`DigestCache::configure`] set.
    pub fn with_digest_cache(mut self, path: Option<PathBuf>) -> ManifestBuilder {
        self.digest_cache = Some(path);
        self
    }

    /// Stats every added file (size, mode, regular file) and starts hashing them in the
    /// background on `available_parallelism` threads; see [`Manifest::wait_sha256`].
    pub fn finish(self) -> Result<Manifest, ManifestError> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        self.finish_with_threads(threads)
    }

    /// Like [`ManifestBuilder::finish`] with an explicit thread count (at least 1 is used).
    ///
    /// Hashing starts at once and goes on while the caller connects to hosts and streams
    /// content: nobody waits for a digest until a host needs it. Work is split by file,
    /// largest first: SHA-256 of one file is a sequential chain, so a single huge file takes
    /// one core however many there are, while the other threads take the remaining files.
    pub fn finish_with_threads(self, threads: usize) -> Result<Manifest, ManifestError> {
        let mut manifest = self.stat_all()?;
        manifest.start_hashing(threads)?;
        Ok(manifest)
    }

    /// Stats every added file and lines up the hashing order, largest first; starts nothing.
    fn stat_all(self) -> Result<Manifest, ManifestError> {
        let started = Instant::now();
        let mut entries = Vec::with_capacity(self.files.len());
        let mut paths = Vec::with_capacity(self.files.len());
        let mut plaintexts = Vec::with_capacity(self.files.len());
        let mut versions = Vec::with_capacity(self.files.len());
        for (index, file) in self.files.iter().enumerate() {
            let (mut size, mode, mtime_ns, version) =
                stat_regular(file.absolute(), file.relative())?;
            // A vault file is decrypted here, once, before any host is contacted: a missing
            // key stops the run up front, and the plaintext stays in this process's memory.
            let plaintext = if mop_vault::is_vault_path(Path::new(file.relative())) {
                let plaintext = mop_vault::Unlocker::global()
                    .decrypt_file(file.absolute())
                    .map_err(|error| ManifestError::Vault {
                        relative: file.relative().to_owned(),
                        error,
                    })?;
                size = plaintext.expose().len() as u64;
                Some(Arc::new(plaintext))
            } else {
                None
            };
            entries.push(Entry {
                id: FileId(u32::try_from(index).expect("ids fit in u32 (checked in add)")),
                relative: file.relative().to_owned(),
                size,
                mode,
                secret: plaintext.is_some(),
                mtime_ns,
            });
            paths.push(file.absolute().to_path_buf());
            // A vault file's digest is of its plaintext: never recorded anywhere.
            versions.push(plaintext.is_none().then_some(version));
            plaintexts.push(plaintext);
        }
        let cache_path = self.digest_cache.unwrap_or_else(DigestCache::configured);
        let cache = cache_path
            .filter(|_| versions.iter().any(Option::is_some))
            .map(|path| DigestCache::open(&path));
        // Largest first, so a big file does not start last and leave the others idle.
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by_key(|index| std::cmp::Reverse(entries[*index].size));
        let digests = std::iter::repeat_with(OnceLock::new)
            .take(entries.len())
            .collect();
        let empty = entries.is_empty();
        let entries_len = entries.len();
        let shared = Arc::new(Shared {
            entries,
            paths,
            plaintexts,
            versions,
            cache,
            from_cache: AtomicUsize::new(0),
            unhashed: AtomicUsize::new(entries_len),
            order,
            next: AtomicUsize::new(0),
            digests,
            finished: Mutex::new(0),
            changed: Condvar::new(),
            cancelled: AtomicBool::new(false),
            started,
            hash_time: OnceLock::new(),
        });
        if empty {
            let _ = shared.hash_time.set(started.elapsed());
        }
        Ok(Manifest { shared, threads: 0 })
    }
}

/// A manifest's files and digests, shared with its hashing threads.
#[derive(Debug)]
struct Shared {
    entries: Vec<Entry>,
    /// Canonical absolute path of each entry, same index; never sent to hosts.
    paths: Vec<PathBuf>,
    /// Same index: the decrypted content of a vault file, `None` for a plain file.
    plaintexts: Vec<Option<Arc<mop_vault::Plaintext>>>,
    /// Same index: the file as stat-ed up front, `None` for a vault file.
    versions: Vec<Option<FileVersion>>,
    cache: Option<DigestCache>,
    /// How many digests came from `cache`.
    from_cache: AtomicUsize,
    /// Entries whose digest is not computed yet; the thread that computes the last one saves
    /// the cache before publishing it, so whoever has seen every digest sees the cache saved.
    unhashed: AtomicUsize,
    /// Entry indexes in hashing order (largest first); `next` is the first one nobody took.
    order: Vec<usize>,
    next: AtomicUsize,
    /// Per entry id: its digest or why it could not be hashed, once known.
    digests: Vec<OnceLock<Result<String, ManifestError>>>,
    /// How many digests are known; waiters sleep on `changed`.
    finished: Mutex<usize>,
    changed: Condvar,
    /// Set when the manifest is dropped: the threads stop at the next buffer.
    cancelled: AtomicBool,
    started: Instant,
    /// From `finish` to the last digest.
    hash_time: OnceLock<Duration>,
}

impl Shared {
    /// Hashes entries in `order` until none is left (or the manifest is dropped).
    fn work(&self) {
        let mut buffer = vec![0u8; HASH_BUFFER_SIZE];
        while !self.cancelled.load(Ordering::Relaxed) {
            let Some(&index) = self.order.get(self.next.fetch_add(1, Ordering::Relaxed)) else {
                return;
            };
            let (entry, path) = (&self.entries[index], &self.paths[index]);
            let cached = match (&self.cache, &self.versions[index]) {
                (Some(cache), Some(version)) => cache.lookup(path, version),
                _ => None,
            };
            let result = match (&self.plaintexts[index], cached) {
                (Some(plaintext), _) => Ok(crate::sha256_hex(plaintext.expose())),
                (None, Some(sha256)) => {
                    self.from_cache.fetch_add(1, Ordering::Relaxed);
                    Ok(sha256)
                }
                (None, None) => hash_one(
                    entry,
                    path,
                    &mut buffer,
                    &self.cancelled,
                    self.cache.as_ref().zip(self.versions[index]),
                ),
            };
            if self.cancelled.load(Ordering::Relaxed) {
                return;
            }
            if self.unhashed.fetch_sub(1, Ordering::AcqRel) == 1 {
                if let Some(cache) = &self.cache {
                    cache.save();
                }
            }
            let _ = self.digests[index].set(result);
            let mut finished = self.finished.lock().unwrap_or_else(PoisonError::into_inner);
            *finished += 1;
            if *finished == self.digests.len() {
                let _ = self.hash_time.set(self.started.elapsed());
            }
            self.changed.notify_all();
        }
    }

    /// Blocks until entry `index` has a digest (or an error).
    fn wait(&self, index: usize) -> &Result<String, ManifestError> {
        let cell = &self.digests[index];
        let mut finished = self.finished.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(result) = cell.get() {
                return result;
            }
            finished = self
                .changed
                .wait(finished)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Opens `path` and returns the size, permission bits and modification time of what it opened,
/// which must be a regular file.
fn stat_regular(
    path: &Path,
    relative: &str,
) -> Result<(u64, u32, Option<i64>, FileVersion), ManifestError> {
    let read_error = |error| ManifestError::Read {
        relative: relative.to_owned(),
        path: path.to_path_buf(),
        error,
    };
    let metadata = File::open(path)
        .and_then(|file| file.metadata())
        .map_err(read_error)?;
    if !metadata.is_file() {
        return Err(ManifestError::NotRegularFile {
            relative: relative.to_owned(),
            path: path.to_path_buf(),
        });
    }
    Ok((
        metadata.len(),
        permission_bits(&metadata),
        modified_ns(&metadata),
        FileVersion::of(&metadata),
    ))
}

/// The modification time in nanoseconds since the epoch, when it fits.
fn modified_ns(metadata: &std::fs::Metadata) -> Option<i64> {
    let modified = metadata.modified().ok()?;
    match modified.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).ok(),
        Err(before) => i64::try_from(before.duration().as_nanos())
            .ok()
            .map(|ns| -ns),
    }
}

/// Hashes one file; with a cache, records the digest when the file is the version stat-ed up
/// front, settled (see `digest_cache`), and the same after reading as before.
fn hash_one(
    entry: &Entry,
    path: &Path,
    buffer: &mut [u8],
    cancelled: &AtomicBool,
    cache: Option<(&DigestCache, FileVersion)>,
) -> Result<String, ManifestError> {
    let read_error = |error| ManifestError::Read {
        relative: entry.relative.clone(),
        path: path.to_path_buf(),
        error,
    };
    let now = std::time::SystemTime::now();
    let mut file = File::open(path).map_err(read_error)?;
    let before = version_of_open(&file).ok();
    let (size, sha256) = hash_reader(&mut file, buffer, cancelled).map_err(read_error)?;
    if let Some((cache, version)) = cache {
        let after = version_of_open(&file).ok();
        if before == Some(version) && after == before && version.settled_at(now) {
            cache.record(path, version, &sha256);
        }
    }
    if size != entry.size {
        return Err(ManifestError::ChangedWhileHashing {
            relative: entry.relative.clone(),
            path: path.to_path_buf(),
            expected: entry.size,
            actual: size,
        });
    }
    Ok(sha256)
}

#[cfg(unix)]
fn permission_bits(metadata: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn permission_bits(_metadata: &std::fs::Metadata) -> u32 {
    0o644
}

/// The files of one run, stat-ed up front and hashed in the background. Content leaves the
/// controller only through [`Manifest::open`], by id: there is no way to stream a path that
/// is not in the manifest.
#[derive(Debug)]
pub struct Manifest {
    shared: Arc<Shared>,
    /// Hashing threads started.
    threads: usize,
}

impl Drop for Manifest {
    fn drop(&mut self) {
        self.shared.cancelled.store(true, Ordering::Relaxed);
    }
}

impl Manifest {
    /// Starts `threads` hashing threads (at least 1, at most one per file).
    fn start_hashing(&mut self, threads: usize) -> Result<(), ManifestError> {
        if self.shared.entries.is_empty() {
            return Ok(());
        }
        self.threads = threads.max(1).min(self.shared.entries.len());
        for _ in 0..self.threads {
            let hashing = Arc::clone(&self.shared);
            std::thread::Builder::new()
                .name("mop-hash".to_string())
                .spawn(move || hashing.work())
                .map_err(ManifestError::Threads)?;
        }
        Ok(())
    }

    /// All entries, ordered by id (`entries()[n].id == FileId(n)`).
    pub fn entries(&self) -> &[Entry] {
        &self.shared.entries
    }

    pub fn entry_by_id(&self, id: FileId) -> Option<&Entry> {
        self.shared.entries.get(usize::try_from(id.0).ok()?)
    }

    /// The entry's SHA-256 (lowercase hex) if hashing it has already finished, without waiting.
    pub fn sha256(&self, id: FileId) -> Option<&str> {
        let index = self.index(id)?;
        match self.shared.digests[index].get() {
            Some(Ok(sha256)) => Some(sha256),
            _ => None,
        }
    }

    /// The entry's SHA-256 (lowercase hex), waiting for the hashing threads if they have not
    /// got to it yet; `None` for an unknown id. Each file is hashed once per manifest however
    /// many callers wait. Blocks: async callers use `spawn_blocking`.
    pub fn wait_sha256(&self, id: FileId) -> Option<Result<&str, &ManifestError>> {
        let index = self.index(id)?;
        Some(self.shared.wait(index).as_ref().map(String::as_str))
    }

    /// Waits until every entry is hashed; the first failure (by id) if any did not.
    pub fn wait_all(&self) -> Result<ManifestStats, &ManifestError> {
        for index in 0..self.shared.entries.len() {
            if let Err(error) = self.shared.wait(index) {
                return Err(error);
            }
        }
        Ok(ManifestStats {
            files: self.shared.entries.len(),
            bytes: self.shared.entries.iter().map(|entry| entry.size).sum(),
            hash_time: self.shared.hash_time.get().copied().unwrap_or_default(),
            threads: self.threads,
            cached: self.shared.from_cache.load(Ordering::Relaxed),
        })
    }

    /// The entry with this SHA-256 (64 hex digits, either case); the lowest id when several
    /// files share content. Anything else, including a path, finds nothing. Waits for hashing.
    pub fn entry_by_sha256(&self, hex: &str) -> Option<&Entry> {
        if hex.len() != 64 || !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return None;
        }
        let hex = hex.to_ascii_lowercase();
        self.shared
            .entries
            .iter()
            .find(|entry| matches!(self.wait_sha256(entry.id), Some(Ok(sha256)) if sha256 == hex))
    }

    /// The controller-side path of an entry, for the operator's messages only.
    pub fn source_path(&self, id: FileId) -> Option<&Path> {
        self.shared
            .paths
            .get(usize::try_from(id.0).ok()?)
            .map(PathBuf::as_path)
    }

    /// Opens an entry's content for streaming in chunks; see [`ChunkReader`].
    pub fn open(&self, id: FileId) -> Result<ChunkReader, StreamError> {
        let entry = self.entry_by_id(id).ok_or(StreamError::UnknownId(id))?;
        let path = self.source_path(id).ok_or(StreamError::UnknownId(id))?;
        let index = self.index(id).ok_or(StreamError::UnknownId(id))?;
        if let Some(plaintext) = &self.shared.plaintexts[index] {
            return Ok(ChunkReader::from_memory(entry, path, Arc::clone(plaintext)));
        }
        ChunkReader::open(entry, path)
    }

    /// Reads a whole entry into memory, size-checked like a stream, refusing entries larger
    /// than `max_bytes` before reading anything. For small files the controller itself needs
    /// (template text inlined into a role plan, which is exactly what hosts get); content for
    /// hosts goes through [`Manifest::open`].
    pub fn read_whole(&self, id: FileId, max_bytes: u64) -> Result<Vec<u8>, StreamError> {
        let entry = self.entry_by_id(id).ok_or(StreamError::UnknownId(id))?;
        if entry.size > max_bytes {
            return Err(StreamError::TooLarge {
                relative: entry.relative.clone(),
                size: entry.size,
                max_bytes,
            });
        }
        let mut reader = self.open(id)?;
        let capacity = usize::try_from(entry.size).unwrap_or(0);
        let mut content = Vec::with_capacity(capacity);
        let mut buffer = vec![0u8; capacity.clamp(1, crate::stream::DEFAULT_CHUNK_SIZE)];
        loop {
            let read = reader.read_chunk(&mut buffer)?;
            if read == 0 {
                return Ok(content);
            }
            content.extend_from_slice(&buffer[..read]);
        }
    }

    pub fn len(&self) -> usize {
        self.shared.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shared.entries.is_empty()
    }

    fn index(&self, id: FileId) -> Option<usize> {
        usize::try_from(id.0)
            .ok()
            .filter(|index| *index < self.shared.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::{FileServer, FileServerConfig, RootSpec};

    /// Stat-ing happens in `finish`, hashing after it: a file that changes size in between is
    /// reported for that entry, to whoever waits for its digest, and the other entries are
    /// fine. (Hashing runs on this thread here, so the order is certain.)
    #[test]
    fn a_file_that_changes_after_the_stat_fails_only_its_own_digest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = fs::canonicalize(dir.path()).expect("canonical");
        fs::write(root.join("big"), vec![7u8; 100_000]).expect("write");
        fs::write(root.join("small"), "small").expect("write");
        let server = FileServer::new(FileServerConfig {
            base_dir: root.clone(),
            roots: vec![RootSpec::new(".", "test")],
            ..FileServerConfig::default()
        })
        .expect("valid file server");
        let mut builder = ManifestBuilder::new();
        let big = builder.add(&server.resolve("big").expect("served"));
        let small = builder.add(&server.resolve("small").expect("served"));
        let manifest = builder.stat_all().expect("stat-ed");
        assert_eq!(
            manifest.sha256(big),
            None,
            "nothing is hashed before the threads run"
        );

        fs::write(root.join("small"), "smaller now").expect("rewrite");
        manifest.shared.work();

        assert_eq!(
            manifest
                .wait_sha256(big)
                .expect("known id")
                .expect("hashed"),
            crate::sha256_hex(&[7u8; 100_000])
        );
        let error = manifest
            .wait_sha256(small)
            .expect("known id")
            .expect_err("changed size");
        assert!(
            matches!(
                error,
                ManifestError::ChangedWhileHashing {
                    expected: 5,
                    actual: 11,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(manifest.wait_all().is_err());
    }
}
