//! Filesystem helpers shared by the file-like resources: owner/group/mode comparison and
//! setting, atomic writes through a temporary file in the destination directory, and hashing.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::raw::{c_char, c_int, c_long, c_uint};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mop_protocol::FileMode;
use sha2::{Digest, Sha256};

use crate::accounts;
use crate::outcome::ResourceError;

/// An owner or group as the policy asked for it, resolved against the host's accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    Id(u32),
    /// The account does not exist (yet): fine in check mode, where an earlier `user`/`group`
    /// resource would have created it, a failure in apply mode.
    Missing(String),
}

/// The attributes a resource asks for; `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WantedAttributes {
    pub owner: Option<Wanted>,
    pub group: Option<Wanted>,
    pub mode: Option<u32>,
}

impl WantedAttributes {
    /// Resolves `owner`/`group` names (or numeric ids) through `/etc/passwd` and `/etc/group`.
    pub fn resolve(
        owner: Option<&str>,
        group: Option<&str>,
        mode: Option<FileMode>,
    ) -> Result<WantedAttributes, ResourceError> {
        let owner = match owner {
            Some(name) => Some(match accounts::resolve_uid(name) {
                Ok(Some(uid)) => Wanted::Id(uid),
                Ok(None) => Wanted::Missing(name.to_string()),
                Err(err) => {
                    return Err(ResourceError::new(format!(
                        "cannot read `{}`: {err}",
                        accounts::PASSWD_PATH
                    )))
                }
            }),
            None => None,
        };
        let group = match group {
            Some(name) => Some(match accounts::resolve_gid(name) {
                Ok(Some(gid)) => Wanted::Id(gid),
                Ok(None) => Wanted::Missing(name.to_string()),
                Err(err) => {
                    return Err(ResourceError::new(format!(
                        "cannot read `{}`: {err}",
                        accounts::GROUP_PATH
                    )))
                }
            }),
            None => None,
        };
        Ok(WantedAttributes {
            owner,
            group,
            mode: mode.map(|mode| mode.0),
        })
    }

    /// Fails (apply mode) when an account does not exist.
    pub fn require_accounts(&self) -> Result<(Option<u32>, Option<u32>), ResourceError> {
        let uid = match &self.owner {
            Some(Wanted::Id(uid)) => Some(*uid),
            Some(Wanted::Missing(name)) => return Err(missing_user(name)),
            None => None,
        };
        let gid = match &self.group {
            Some(Wanted::Id(gid)) => Some(*gid),
            Some(Wanted::Missing(name)) => return Err(missing_group(name)),
            None => None,
        };
        Ok((uid, gid))
    }

    /// The changes needed to bring `meta` to these attributes, e.g. `mode 0644 -> 0600`.
    pub fn changes(&self, meta: &Metadata) -> Vec<String> {
        let mut changes = Vec::new();
        match &self.owner {
            Some(Wanted::Id(uid)) if *uid != meta.uid() => changes.push(format!(
                "owner {} -> {}",
                accounts::user_display(meta.uid()),
                accounts::user_display(*uid)
            )),
            Some(Wanted::Missing(name)) => changes.push(format!(
                "owner {} -> {name} (user does not exist yet)",
                accounts::user_display(meta.uid())
            )),
            _ => {}
        }
        match &self.group {
            Some(Wanted::Id(gid)) if *gid != meta.gid() => changes.push(format!(
                "group {} -> {}",
                accounts::group_display(meta.gid()),
                accounts::group_display(*gid)
            )),
            Some(Wanted::Missing(name)) => changes.push(format!(
                "group {} -> {name} (group does not exist yet)",
                accounts::group_display(meta.gid())
            )),
            _ => {}
        }
        if let Some(mode) = self.mode {
            let current = meta.mode() & 0o7777;
            if current != mode {
                changes.push(format!("mode {current:04o} -> {mode:04o}"));
            }
        }
        changes
    }

    /// Sets owner, group and mode on an existing path (following symlinks). Ownership first:
    /// `chown` clears set-id bits, which the mode then restores.
    pub fn apply_to_path(&self, path: &Path) -> Result<(), ResourceError> {
        let (uid, gid) = self.require_accounts()?;
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::chown(path, uid, gid)
                .map_err(|err| io_error("cannot change the owner of", path, &err))?;
        }
        if let Some(mode) = self.mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(|err| io_error("cannot change the mode of", path, &err))?;
        }
        Ok(())
    }
}

/// A uniform error for a failed filesystem call, naming the path, with a hint for the usual
/// permission problem.
pub fn io_error(what: &str, path: &Path, err: &io::Error) -> ResourceError {
    let mut message = format!("{what} `{}`: {err}", path.display());
    if err.kind() == io::ErrorKind::PermissionDenied {
        message.push_str("\nhint: the agent runs as a user without the right to do this; connect as root or as a user who may");
    }
    ResourceError::new(message)
}

/// The error for a missing parent directory.
/// The failure of an `owner` naming no user (apply, and check mode when no earlier resource
/// creates it).
pub fn missing_user(name: &str) -> ResourceError {
    ResourceError::new(format!(
        "user `{name}` does not exist\nhint: add a `user` resource for it before this one"
    ))
}

/// The failure of a `group` naming no group.
pub fn missing_group(name: &str) -> ResourceError {
    ResourceError::new(format!(
        "group `{name}` does not exist\nhint: add a `group` resource for it before this one"
    ))
}

pub fn missing_parent(path: &Path) -> ResourceError {
    let parent = path.parent().unwrap_or(Path::new("/"));
    ResourceError::new(format!(
        "parent directory `{}` of `{}` does not exist\nhint: add a `directory` resource for it before this one",
        parent.display(),
        path.display()
    ))
}

/// Metadata without following a final symlink; `None` when nothing is there.
pub fn symlink_metadata(path: &Path) -> Result<Option<Metadata>, ResourceError> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io_error("cannot inspect", path, &err)),
    }
}

/// The process umask, from `/proc/self/status` (Linux 4.7+); `022` when unknown.
pub fn umask() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("Umask:"))?;
            u32::from_str_radix(line.split_whitespace().nth(1)?, 8).ok()
        })
        .unwrap_or(0o022)
}

/// The mode a new file gets when the resource does not say: `0666` less the umask.
pub fn default_file_mode() -> u32 {
    0o666 & !umask()
}

/// The mode a new directory gets when the resource does not say: `0777` less the umask.
pub fn default_dir_mode() -> u32 {
    0o777 & !umask()
}

/// The sha256 of a file, read in chunks.
pub fn file_sha256(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(&buffer[..read]);
    }
    Ok(crate::diff::hex(&hasher.finalize()))
}

/// The sha256 of the file at `path` as `meta` (taken without following links) describes it:
/// the one its stamp records while size and modification time still match (see
/// [`crate::stamp`]), else read and hashed, and then stamped unless `check` (check mode writes
/// nothing).
pub fn content_sha256(path: &Path, meta: &std::fs::Metadata, check: bool) -> io::Result<String> {
    if let Some(sha256) = crate::stamp::recorded(path, meta) {
        return Ok(sha256);
    }
    let sha256 = file_sha256(path)?;
    if !check {
        crate::stamp::record(path, meta, &sha256);
    }
    Ok(sha256)
}

/// What the final file should look like besides its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinalAttributes {
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl FinalAttributes {
    /// The wanted attributes, falling back to those of the file being replaced (so rewriting
    /// content never loosens a mode or changes an owner), or to the defaults for a new file.
    pub fn for_replacement(
        wanted: &WantedAttributes,
        existing: Option<&Metadata>,
    ) -> Result<FinalAttributes, ResourceError> {
        let (uid, gid) = wanted.require_accounts()?;
        Ok(FinalAttributes {
            mode: wanted
                .mode
                .or(existing.map(|meta| meta.mode() & 0o7777))
                .unwrap_or_else(default_file_mode),
            uid: uid.or(existing.map(MetadataExt::uid)),
            gid: gid.or(existing.map(MetadataExt::gid)),
        })
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary file next to its destination, removed on drop unless [`TempFile::persist`]
/// renamed it into place: an interrupted write never leaves a partial file visible at the
/// destination, and a failed one leaves no litter.
pub struct TempFile {
    path: PathBuf,
    file: File,
    persisted: bool,
    /// Bytes written through [`TempFile::write_streamed`], and how many of them have been
    /// handed to the kernel's writeback already.
    streamed: u64,
    flushed: u64,
}

/// How much streamed content accumulates before its writeback to disk is started.
const WRITEBACK_STEP: u64 = 8 * 1024 * 1024;

extern "C" {
    // From the C library every Rust program on Linux links anyway (std calls it too); the raw
    // syscall rather than glibc's `sync_file_range` wrapper keeps the static agent smaller.
    fn syscall(number: c_long, ...) -> c_long;
    // access(2): the kernel's own answer (modes, ACLs, read-only mounts) without writing.
    fn access(path: *const c_char, mode: c_int) -> c_int;
}

const ACCESS_WRITE: c_int = 2;
const ACCESS_SEARCH: c_int = 1;

/// Whether this process may create files in `dir` (write and search permission, a writable
/// mount), asked of the kernel without creating anything: what check mode needs to predict
/// [`TempFile::next_to`]. The error is the one creating a file there would get.
pub fn may_create_in(dir: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    // `DIR/.`: resolved as a name inside it would be, so a non-directory fails as ENOTDIR.
    let path = std::ffi::CString::new(dir.join(".").as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path holds a NUL byte"))?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call; access only reads it.
    if unsafe { access(path.as_ptr(), ACCESS_WRITE | ACCESS_SEARCH) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The failure to create the temporary file of an atomic write in `dir` (apply, and check
/// mode when it predicts one).
pub fn temp_file_error(dir: &Path, err: &io::Error) -> ResourceError {
    io_error("cannot create a temporary file in", dir, err)
}
#[cfg(target_arch = "x86_64")]
const SYS_SYNC_FILE_RANGE: Option<c_long> = Some(277);
#[cfg(target_arch = "aarch64")]
const SYS_SYNC_FILE_RANGE: Option<c_long> = Some(84);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SYS_SYNC_FILE_RANGE: Option<c_long> = None;
const SYNC_FILE_RANGE_WRITE: c_uint = 2;

impl TempFile {
    /// Creates `.NAME.mop-PID-N` (mode 0600) in the destination's directory.
    pub fn next_to(dest: &Path) -> Result<TempFile, ResourceError> {
        let dir = match dest.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(missing_parent(dest));
        }
        let base = dest
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        loop {
            let counter = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(".{base}.mop-{}-{counter}", std::process::id()));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file,
                        persisted: false,
                        streamed: 0,
                        flushed: 0,
                    })
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(temp_file_error(dir, &err)),
            }
        }
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The open temporary file, to read its metadata or set its times.
    pub fn file_ref(&self) -> &File {
        &self.file
    }

    /// Appends a chunk of a large stream, starting the disk writeback of every
    /// [`WRITEBACK_STEP`] as it fills, so the `fsync` in [`TempFile::persist`] finds most of
    /// the file already written instead of all of it dirty (a GiB took 0.8 s to sync here).
    pub fn write_streamed(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.file.write_all(chunk)?;
        self.streamed += chunk.len() as u64;
        if self.streamed - self.flushed < WRITEBACK_STEP {
            return Ok(());
        }
        if let Some(number) = SYS_SYNC_FILE_RANGE {
            let (offset, length) = (self.flushed, self.streamed - self.flushed);
            // SAFETY: plain syscall on a descriptor we own; it only starts writeback. Failure
            // (e.g. a filesystem without it) is harmless: `persist` syncs everything anyway.
            unsafe {
                syscall(
                    number,
                    self.file.as_raw_fd(),
                    offset as i64,
                    length as i64,
                    SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        self.flushed = self.streamed;
        Ok(())
    }

    /// Where the temporary file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets owner, group and mode on the temporary file, syncs it to disk and renames it over
    /// `dest` (one atomic step), then syncs the directory so the rename survives a crash.
    pub fn persist(
        mut self,
        dest: &Path,
        attributes: FinalAttributes,
    ) -> Result<(), ResourceError> {
        self.set_attributes(dest, &attributes)?;
        self.file
            .sync_all()
            .map_err(|err| io_error("cannot sync", &self.path, &err))?;
        fs::rename(&self.path, dest)
            .map_err(|err| io_error("cannot rename a temporary file onto", dest, &err))?;
        self.persisted = true;
        sync_dir(parent_dir(dest));
        Ok(())
    }

    /// Sets owner, group and mode and closes the file, to be renamed over `dest` by
    /// [`Staged::commit`] together with the other files of the batch.
    pub fn stage(
        mut self,
        dest: &Path,
        attributes: FinalAttributes,
        staged: &mut Staged,
    ) -> Result<(), ResourceError> {
        self.set_attributes(dest, &attributes)?;
        // From here the batch owns the temporary file (and removes it unless committed).
        self.persisted = true;
        staged
            .files
            .push((std::mem::take(&mut self.path), dest.to_path_buf()));
        Ok(())
    }

    fn set_attributes(
        &mut self,
        dest: &Path,
        attributes: &FinalAttributes,
    ) -> Result<(), ResourceError> {
        if attributes.uid.is_some() || attributes.gid.is_some() {
            let meta = self
                .file
                .metadata()
                .map_err(|err| io_error("cannot inspect", &self.path, &err))?;
            let needs_chown = attributes.uid.is_some_and(|uid| uid != meta.uid())
                || attributes.gid.is_some_and(|gid| gid != meta.gid());
            if needs_chown {
                std::os::unix::fs::fchown(&self.file, attributes.uid, attributes.gid)
                    .map_err(|err| io_error("cannot set the owner of", dest, &err))?;
            }
        }
        self.file
            .set_permissions(fs::Permissions::from_mode(attributes.mode))
            .map_err(|err| io_error("cannot set the mode of", dest, &err))
    }
}

/// Files written as one batch (a `tree`): each is written in full to its temporary file and
/// given its attributes ([`TempFile::stage`]), then [`Staged::commit`] syncs each filesystem
/// once, renames every file into place (each rename atomic) and syncs each directory once.
/// The crash guarantee is [`TempFile::persist`]'s (a name holds its old content or all of the
/// new, never part of it), for one journal commit per batch instead of two per file: a
/// file-and-directory fsync pair cost 7.7 ms on the ext4 the benchmarks ran on. Dropped
/// without a commit, the batch removes its temporary files and changes nothing.
#[derive(Default)]
pub struct Staged {
    /// `(temporary file, destination)` in staging order.
    files: Vec<(PathBuf, PathBuf)>,
}

impl Staged {
    /// Makes every staged file durable, then puts it in place.
    pub fn commit(mut self) -> Result<(), ResourceError> {
        let files = std::mem::take(&mut self.files);
        // One directory per filesystem is enough for syncfs.
        let mut devices: Vec<(u64, &Path)> = Vec::new();
        for (temp, _) in &files {
            let dir = parent_dir(temp);
            let meta = fs::metadata(dir).map_err(|err| io_error("cannot inspect", dir, &err))?;
            if !devices.iter().any(|(device, _)| *device == meta.dev()) {
                devices.push((meta.dev(), dir));
            }
        }
        let mut result = Ok(());
        for (_, dir) in &devices {
            result = sync_filesystem(dir);
            if result.is_err() {
                break;
            }
        }
        let mut renamed_dirs: Vec<&Path> = Vec::new();
        let mut pending = files.iter();
        if result.is_ok() {
            for (temp, dest) in pending.by_ref() {
                if let Err(err) = fs::rename(temp, dest) {
                    let _ = fs::remove_file(temp);
                    result = Err(io_error("cannot rename a temporary file onto", dest, &err));
                    break;
                }
                let dir = parent_dir(dest);
                if !renamed_dirs.contains(&dir) {
                    renamed_dirs.push(dir);
                }
            }
        }
        for (temp, _) in pending {
            let _ = fs::remove_file(temp);
        }
        for dir in renamed_dirs {
            sync_dir(dir);
        }
        result
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for (temp, _) in &self.files {
            let _ = fs::remove_file(temp);
        }
    }
}

/// Syncs a directory so the renames in it survive a crash. Best effort: some filesystems
/// refuse fsync on directories.
fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// syncfs(2) on the filesystem holding `dir`: every file written there is on disk after it.
fn sync_filesystem(dir: &Path) -> Result<(), ResourceError> {
    let handle = File::open(dir).map_err(|err| io_error("cannot open", dir, &err))?;
    // SAFETY: plain syscall on a descriptor we own for the duration of the call.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io_error(
            "cannot sync the filesystem of",
            dir,
            &io::Error::last_os_error(),
        ))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes `content` to `dest` atomically with the given attributes.
pub fn write_atomic(
    dest: &Path,
    content: &[u8],
    attributes: FinalAttributes,
) -> Result<(), ResourceError> {
    let mut temp = TempFile::next_to(dest)?;
    temp.file()
        .write_all(content)
        .map_err(|err| io_error("cannot write", temp.path(), &err))?;
    temp.persist(dest, attributes)
}

/// Writes a system configuration file (`/etc/fstab`, a file under `/etc/sysctl.d/`)
/// atomically: an existing file keeps its owner, group and mode; a new one is 0644, since such
/// files are world-readable configuration.
pub fn write_config_file(path: &Path, text: &str, existed: bool) -> Result<(), ResourceError> {
    let existing_meta = if existed {
        Some(fs::metadata(path).map_err(|err| io_error("cannot inspect", path, &err))?)
    } else {
        None
    };
    let mut wanted = WantedAttributes::default();
    if !existed {
        wanted.mode = Some(0o644);
    }
    let attributes = FinalAttributes::for_replacement(&wanted, existing_meta.as_ref())?;
    write_atomic(path, text.as_bytes(), attributes)
}

/// Reads a file that may not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, ResourceError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io_error("cannot read", path, &err)),
    }
}

/// The names in `dir`, sorted: what tests compare a directory with.
#[cfg(test)]
pub(crate) fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("readable")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        sorted_names(dir)
    }

    /// `may_create_in` answers as creating a file would, without creating one.
    #[test]
    fn may_create_in_agrees_with_creating_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("plain");
        fs::write(&file, b"x").expect("write");
        for candidate in [
            dir.path().to_path_buf(),
            dir.path().join("missing"),
            file.clone(),
        ] {
            let predicted = may_create_in(&candidate).map_err(|err| err.raw_os_error());
            let probe = candidate.join("probe");
            let created = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
                .map(drop)
                .map_err(|err| err.raw_os_error());
            assert_eq!(predicted, created, "{}", candidate.display());
            let _ = fs::remove_file(&probe);
        }
        assert!(may_create_in(dir.path()).is_ok());
        assert_eq!(entries(dir.path()), ["plain"], "nothing was left behind");
        let message = temp_file_error(
            dir.path(),
            &io::Error::from_raw_os_error(13), // EACCES
        )
        .message;
        assert_eq!(
            message,
            format!(
                "cannot create a temporary file in `{}`: Permission denied (os error 13)\nhint: \
                 the agent runs as a user without the right to do this; connect as root or as a \
                 user who may",
                dir.path().display()
            )
        );
    }

    #[test]
    fn atomic_write_sets_mode_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("conf");
        let attributes = FinalAttributes {
            mode: 0o640,
            uid: None,
            gid: None,
        };
        write_atomic(&dest, b"one", attributes).expect("writes");
        write_atomic(&dest, b"two", attributes).expect("rewrites");
        assert_eq!(fs::read(&dest).expect("readable"), b"two");
        assert_eq!(fs::metadata(&dest).expect("exists").mode() & 0o7777, 0o640);
        assert_eq!(entries(dir.path()), vec!["conf".to_string()]);
    }

    #[test]
    fn a_streamed_file_lands_whole_across_writeback_steps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("blob");
        let content: Vec<u8> = (0..WRITEBACK_STEP as usize * 2 + 123_457)
            .map(|index| (index % 251) as u8)
            .collect();
        let chunk_size = 256 * 1024 + 3;
        let mut temp = TempFile::next_to(&dest).expect("temp file");
        for chunk in content.chunks(chunk_size) {
            temp.write_streamed(chunk).expect("write");
        }
        assert_eq!(temp.streamed, content.len() as u64);
        // Writeback started twice: at the first chunk boundary past 8 MiB (chunk 32), and at
        // the first one 8 MiB after that (chunk 64); the rest waits for `persist`'s fsync.
        assert_eq!(temp.flushed, 64 * chunk_size as u64);
        let attributes = FinalAttributes {
            mode: 0o600,
            uid: None,
            gid: None,
        };
        temp.persist(&dest, attributes).expect("persist");
        assert_eq!(fs::read(&dest).expect("landed"), content);
        assert_eq!(entries(dir.path()), vec!["blob".to_string()]);
    }

    #[test]
    fn a_staged_batch_lands_on_commit_and_nothing_without_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).expect("mkdir");
        let (first, second) = (dir.path().join("a"), sub.join("b"));
        fs::write(&first, "old a").expect("write");
        let stage = |staged: &mut Staged| {
            for (dest, content, mode) in [(&first, "new a", 0o640), (&second, "new b", 0o600)] {
                let mut temp = TempFile::next_to(dest).expect("temp");
                temp.file().write_all(content.as_bytes()).expect("write");
                let attributes = FinalAttributes {
                    uid: None,
                    gid: None,
                    mode,
                };
                temp.stage(dest, attributes, staged).expect("stage");
            }
        };

        let mut dropped = Staged::default();
        stage(&mut dropped);
        assert_eq!(
            fs::read_to_string(&first).expect("read"),
            "old a",
            "not before commit"
        );
        drop(dropped);
        assert_eq!(fs::read_to_string(&first).expect("read"), "old a");
        assert_eq!(entries(dir.path()), ["a", "sub"], "temporary files removed");
        assert!(entries(&sub).is_empty());

        let mut committed = Staged::default();
        stage(&mut committed);
        committed.commit().expect("commit");
        assert_eq!(fs::read_to_string(&first).expect("read"), "new a");
        assert_eq!(fs::read_to_string(&second).expect("read"), "new b");
        assert_eq!(fs::metadata(&first).expect("stat").mode() & 0o777, 0o640);
        assert_eq!(fs::metadata(&second).expect("stat").mode() & 0o777, 0o600);
        assert_eq!(entries(dir.path()), ["a", "sub"]);
        assert_eq!(entries(&sub), ["b"]);
    }

    #[test]
    fn a_dropped_temp_file_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut temp = TempFile::next_to(&dir.path().join("x")).expect("creates");
        temp.file().write_all(b"partial").expect("writes");
        assert_eq!(entries(dir.path()).len(), 1);
        drop(temp);
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn missing_parent_is_a_clear_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = write_atomic(
            &dir.path().join("no/such/file"),
            b"x",
            FinalAttributes {
                mode: 0o644,
                uid: None,
                gid: None,
            },
        )
        .expect_err("no parent");
        assert!(err.message.contains("does not exist"), "{err}");
        assert!(
            err.message.contains("hint: add a `directory` resource"),
            "{err}"
        );
    }

    #[test]
    fn attribute_changes_are_described() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        fs::write(&path, "x").expect("writes");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let meta = fs::metadata(&path).expect("exists");
        let wanted = WantedAttributes {
            owner: Some(Wanted::Missing("ghost".into())),
            group: None,
            mode: Some(0o600),
        };
        let changes = wanted.changes(&meta);
        assert_eq!(changes.len(), 2);
        assert!(
            changes[0].ends_with("-> ghost (user does not exist yet)"),
            "{changes:?}"
        );
        assert_eq!(changes[1], "mode 0644 -> 0600");
        assert!(wanted
            .require_accounts()
            .expect_err("missing")
            .message
            .contains("user `ghost` does not exist"));
        let same = WantedAttributes {
            owner: Some(Wanted::Id(meta.uid())),
            group: Some(Wanted::Id(meta.gid())),
            mode: Some(0o644),
        };
        assert!(same.changes(&meta).is_empty());
    }

    #[test]
    fn file_hash_matches_memory_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let content = vec![7u8; 200_000];
        fs::write(&path, &content).expect("writes");
        assert_eq!(
            file_sha256(&path).expect("readable"),
            crate::diff::sha256_hex(&content)
        );
    }
}
