//! The run's manifest: exactly the files the selected roles use, each stat-ed and hashed once
//! (deduplicated by canonical path), with the hashing spread over a pool of std threads.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
}

/// Figures for the executor to print after building the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ManifestStats {
    pub files: usize,
    pub bytes: u64,
    /// Wall time of [`ManifestBuilder::finish`] (stat and hash).
    pub hash_time: Duration,
    /// Hashing threads used.
    pub threads: usize,
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

    /// Stats and hashes every added file on `available_parallelism` threads.
    pub fn finish(self) -> Result<Manifest, ManifestError> {
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        self.finish_with_threads(threads)
    }

    /// Like [`ManifestBuilder::finish`] with an explicit thread count (at least 1 is used).
    ///
    /// Work is split by file, largest first: SHA-256 of one file is a sequential chain, so a
    /// single huge file takes one core however many there are, while the other threads take
    /// the remaining files. The first failure stops the others from starting new files.
    pub fn finish_with_threads(self, threads: usize) -> Result<Manifest, ManifestError> {
        let started = Instant::now();
        let files = self.files;
        // Largest first, so a big file does not start last and leave the others idle.
        let mut order: Vec<usize> = (0..files.len()).collect();
        let sizes: Vec<u64> = files
            .iter()
            .map(|file| std::fs::metadata(file.absolute()).map_or(0, |metadata| metadata.len()))
            .collect();
        order.sort_by_key(|index| std::cmp::Reverse(sizes[*index]));

        let threads = threads.max(1).min(files.len().max(1));
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let mut results: Vec<Option<Result<Hashed, ManifestError>>> =
            std::iter::repeat_with(|| None).take(files.len()).collect();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        let mut buffer = vec![0u8; HASH_BUFFER_SIZE];
                        while !failed.load(Ordering::Relaxed) {
                            let position = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&index) = order.get(position) else {
                                break;
                            };
                            let file = &files[index];
                            let result = hash_one(file.absolute(), file.relative(), &mut buffer);
                            if result.is_err() {
                                failed.store(true, Ordering::Relaxed);
                            }
                            done.push((index, result));
                        }
                        done
                    })
                })
                .collect();
            for worker in workers {
                let done = worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                for (index, result) in done {
                    results[index] = Some(result);
                }
            }
        });

        let mut entries = Vec::with_capacity(files.len());
        let mut paths = Vec::with_capacity(files.len());
        let mut first_error = None;
        for (index, (file, result)) in files.into_iter().zip(results).enumerate() {
            match result {
                Some(Ok(hashed)) => {
                    entries.push(Entry {
                        id: FileId(u32::try_from(index).expect("ids fit in u32 (checked in add)")),
                        relative: file.relative().to_owned(),
                        size: hashed.size,
                        mode: hashed.mode,
                        sha256: hashed.sha256,
                    });
                    paths.push(file.absolute().to_path_buf());
                }
                Some(Err(error)) => {
                    first_error.get_or_insert(error);
                }
                // Skipped after another file failed.
                None => {}
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        let mut ids_by_sha256 = HashMap::with_capacity(entries.len());
        for entry in &entries {
            ids_by_sha256
                .entry(entry.sha256.clone())
                .or_insert(entry.id);
        }
        let stats = ManifestStats {
            files: entries.len(),
            bytes: entries.iter().map(|entry| entry.size).sum(),
            hash_time: started.elapsed(),
            threads,
        };
        Ok(Manifest {
            entries,
            paths,
            ids_by_sha256,
            stats,
        })
    }
}

struct Hashed {
    size: u64,
    mode: u32,
    sha256: String,
}

fn hash_one(path: &Path, relative: &str, buffer: &mut [u8]) -> Result<Hashed, ManifestError> {
    let read_error = |error| ManifestError::Read {
        relative: relative.to_owned(),
        path: path.to_path_buf(),
        error,
    };
    let mut file = File::open(path).map_err(read_error)?;
    // Size and mode of the file actually opened, not of whatever the path names later.
    let metadata = file.metadata().map_err(read_error)?;
    if !metadata.is_file() {
        return Err(ManifestError::NotRegularFile {
            relative: relative.to_owned(),
            path: path.to_path_buf(),
        });
    }
    let (size, sha256) = hash_reader(&mut file, buffer).map_err(read_error)?;
    if size != metadata.len() {
        return Err(ManifestError::ChangedWhileHashing {
            relative: relative.to_owned(),
            path: path.to_path_buf(),
            expected: metadata.len(),
            actual: size,
        });
    }
    Ok(Hashed {
        size,
        mode: permission_bits(&metadata),
        sha256,
    })
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

/// The hashed files of one run. Content leaves the controller only through
/// [`Manifest::open`], by id: there is no way to stream a path that is not in the manifest.
#[derive(Debug, Default)]
pub struct Manifest {
    entries: Vec<Entry>,
    /// Canonical absolute path of each entry, same index; never sent to hosts.
    paths: Vec<PathBuf>,
    ids_by_sha256: HashMap<String, FileId>,
    stats: ManifestStats,
}

impl Manifest {
    /// All entries, ordered by id (`entries()[n].id == FileId(n)`).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn entry_by_id(&self, id: FileId) -> Option<&Entry> {
        self.entries.get(usize::try_from(id.0).ok()?)
    }

    /// The entry with this SHA-256 (64 hex digits, either case); the lowest id when several
    /// files share content. Anything else, including a path, finds nothing.
    pub fn entry_by_sha256(&self, hex: &str) -> Option<&Entry> {
        if hex.len() != 64 || !hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return None;
        }
        let id = self.ids_by_sha256.get(&hex.to_ascii_lowercase())?;
        self.entry_by_id(*id)
    }

    /// The controller-side path of an entry, for the operator's messages only.
    pub fn source_path(&self, id: FileId) -> Option<&Path> {
        self.paths
            .get(usize::try_from(id.0).ok()?)
            .map(PathBuf::as_path)
    }

    /// Opens an entry's content for streaming in chunks; see [`ChunkReader`].
    pub fn open(&self, id: FileId) -> Result<ChunkReader, StreamError> {
        let entry = self.entry_by_id(id).ok_or(StreamError::UnknownId(id))?;
        let path = self.source_path(id).ok_or(StreamError::UnknownId(id))?;
        ChunkReader::open(entry, path)
    }

    /// Reads a whole entry into memory, verified like a stream, refusing entries larger than
    /// `max_bytes` before reading anything. For small files the controller itself needs (e.g.
    /// template text inlined into a role plan); content for hosts goes through [`Manifest::open`].
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

    pub fn stats(&self) -> ManifestStats {
        self.stats
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
