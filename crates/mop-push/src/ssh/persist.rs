//! Persistent control masters (`--persist`): the private per-user directory that holds their
//! sockets, the identity a master is keyed on, its metadata file, and `mop connections`.
//!
//! Layout of the directory (`$MOP_CONTROL_DIR`, else `$XDG_RUNTIME_DIR/mop` when that runtime
//! dir is private, else `/tmp/mop-<uid>`), one set of files per master, named by a 16-hex-digit
//! hash of the master's identity so socket paths stay far below the ~100-byte `sun_path` limit:
//! - `<key>.sock`: the master's control socket;
//! - `<key>.json`: metadata (host, user, address, via, created, idle limit, pid), written
//!   atomically after the master is up, so a metadata file always names a master that existed;
//! - `<key>.log`: the master's ssh log (`-E`);
//! - `<key>.lock`: an flock that serialises starting that master across concurrent mop runs.
//!
//! Security: a socket in this directory is trusted as "a login to that host", so the directory
//! must belong to the user and be closed to everyone else; anything else is refused.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indexmap::IndexMap;
use openssh::Session;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::PlannedHost;
use super::error::{ControlDirError, PersistDurationError};
use super::SshError;

/// Environment variable naming the connection directory explicitly.
pub const CONTROL_DIR_ENV: &str = "MOP_CONTROL_DIR";

/// `<dir>/<16 hex>.sock` plus the 17 bytes ssh appends to a socket's name while binding it must
/// fit in `sun_path` (108 bytes with its NUL on Linux).
const MAX_DIR_LEN: usize = 107 - 17 - "/0123456789abcdef.sock".len();

/// How long a liveness check of a persisted master may take before it counts as dead.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Parses a `--persist` duration: a whole number with a unit `s`, `m`, `h` or `d` (`90s`, `10m`,
/// `1h`), or several of them (`1h30m`); a bare number means seconds.
pub fn parse_persist_duration(text: &str) -> Result<Duration, PersistDurationError> {
    let invalid = || PersistDurationError {
        text: text.to_string(),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid());
    }
    if let Ok(seconds) = trimmed.parse::<u64>() {
        return checked_duration(seconds).ok_or_else(invalid);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for ch in trimmed.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(invalid()),
        };
        let value: u64 = digits.parse().map_err(|_| invalid())?;
        digits.clear();
        total = value
            .checked_mul(unit)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(invalid)?;
    }
    if !digits.is_empty() {
        return Err(invalid());
    }
    checked_duration(total).ok_or_else(invalid)
}

/// At least one second (ssh counts in seconds; 0 would mean "forever"), at most a year.
fn checked_duration(seconds: u64) -> Option<Duration> {
    (1..=366 * 86_400)
        .contains(&seconds)
        .then(|| Duration::from_secs(seconds))
}

/// Where persistent masters live for this user, before any check.
pub fn control_dir_location() -> PathBuf {
    if let Some(explicit) = std::env::var_os(CONTROL_DIR_ENV).filter(|value| !value.is_empty()) {
        return PathBuf::from(explicit);
    }
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        if runtime.is_absolute() && unsafe_reason(&runtime).is_none() {
            let candidate = runtime.join("mop");
            if candidate.as_os_str().len() <= MAX_DIR_LEN {
                return candidate;
            }
        }
    }
    PathBuf::from(format!("/tmp/mop-{}", effective_uid()))
}

/// The checked connection directory.
#[derive(Debug, Clone)]
pub(crate) struct ControlDir {
    path: PathBuf,
}

/// Checks the connection directory at `path` (creating it 0700 when `create` and missing).
/// `Ok(None)`: it does not exist and was not to be created.
pub(crate) fn open_control_dir(path: &Path, create: bool) -> Result<Option<ControlDir>, SshError> {
    let refuse = |detail: String| SshError::RunDir {
        path: path.to_path_buf(),
        detail,
    };
    if path.as_os_str().len() > MAX_DIR_LEN {
        return Err(refuse(format!(
            "the path is {} bytes long, too long for control sockets in it (at most {MAX_DIR_LEN})\n  hint: set {CONTROL_DIR_ENV} to a shorter directory",
            path.as_os_str().len()
        )));
    }
    match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if !create {
                return Ok(None);
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|error| refuse(format!("cannot create its parent: {error}")))?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(path) {
                Ok(()) => {}
                // Another mop run created it a moment ago: the checks below judge it.
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(refuse(format!("cannot create it: {error}"))),
            }
        }
        Err(error) => return Err(refuse(format!("cannot inspect it: {error}"))),
        Ok(_) => {}
    }
    if let Some(reason) = unsafe_reason(path) {
        return Err(refuse(format!(
            "{reason}; mop keeps persistent ssh control sockets there and refuses to use it\n  hint: remove it (mop recreates it with mode 0700), or point {CONTROL_DIR_ENV} at a directory only you can access"
        )));
    }
    Ok(Some(ControlDir {
        path: path.to_path_buf(),
    }))
}

/// Why `path` is not a private directory of this user, if it is not.
fn unsafe_reason(path: &Path) -> Option<String> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) => return Some(format!("it cannot be inspected: {error}")),
    };
    if metadata.file_type().is_symlink() {
        return Some("it is a symlink".to_string());
    }
    if !metadata.is_dir() {
        return Some("it is not a directory".to_string());
    }
    if metadata.uid() != effective_uid() {
        return Some(format!(
            "it is owned by uid {}, not by you (uid {})",
            metadata.uid(),
            effective_uid()
        ));
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Some(format!(
            "it is accessible by group or others (mode {mode:04o}, needs 0700)"
        ));
    }
    None
}

impl ControlDir {
    pub(crate) fn socket(&self, key: &str) -> PathBuf {
        self.path.join(format!("{key}.sock"))
    }

    fn metadata_path(&self, key: &str) -> PathBuf {
        self.path.join(format!("{key}.json"))
    }

    pub(crate) fn log(&self, key: &str) -> PathBuf {
        self.path.join(format!("{key}.log"))
    }

    /// The transient ssh_config a master is started with (outside the run directory, so the
    /// run's cleanup of its own ssh processes never touches a persisted master).
    pub(crate) fn config(&self, key: &str) -> PathBuf {
        self.path.join(format!("{key}.conf"))
    }

    /// The live persisted master for `identity`, if there is one: its metadata must name the
    /// same identity and its socket must answer a mux alive check.
    pub(crate) async fn live_master(&self, identity: &MasterIdentity) -> Option<Session> {
        let metadata = self.read_metadata(&identity.key)?;
        if metadata.identity != identity.text {
            return None;
        }
        let socket = self.socket(&identity.key);
        alive(&socket).await.then(|| resume(&socket))
    }

    fn read_metadata(&self, key: &str) -> Option<PersistedConnection> {
        let text = std::fs::read_to_string(self.metadata_path(key)).ok()?;
        let mut metadata: PersistedConnection = serde_json::from_str(&text).ok()?;
        metadata.key = key.to_string();
        Some(metadata)
    }

    /// Writes the metadata of a master that is up (temp file + rename).
    pub(crate) fn write_metadata(
        &self,
        metadata: &PersistedConnection,
    ) -> Result<(), ControlDirError> {
        let text = serde_json::to_string_pretty(metadata)
            .map_err(|error| ControlDirError::Encode(error.to_string()))?;
        let mut temp = tempfile::Builder::new()
            .prefix(".meta-")
            .tempfile_in(&self.path)
            .map_err(|error| ControlDirError::WriteMetadata(error.to_string()))?;
        std::io::Write::write_all(&mut temp, text.as_bytes())
            .map_err(|error| ControlDirError::WriteMetadata(error.to_string()))?;
        temp.persist(self.metadata_path(&metadata.key))
            .map_err(|error| ControlDirError::WriteMetadata(error.to_string()))?;
        Ok(())
    }

    /// Removes every file of the master `key` but its lock (which may be held right now).
    fn remove_entry(&self, key: &str) {
        for path in [
            self.metadata_path(key),
            self.socket(key),
            self.log(key),
            self.config(key),
        ] {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Removes what a dead master left behind so a new one can bind its socket.
    pub(crate) fn clear_dead(&self, key: &str) {
        self.remove_entry(key);
    }

    /// Takes the per-master lock, waiting at most `limit`.
    pub(crate) async fn lock(
        &self,
        key: &str,
        limit: Duration,
    ) -> Result<KeyLock, ControlDirError> {
        let path = self.lock_path(key);
        let deadline = tokio::time::Instant::now() + limit;
        let mut file = open_lock_file(&path)?;
        loop {
            // SAFETY: flock(2) on a descriptor this function owns.
            let locked = unsafe {
                libc::flock(
                    std::os::fd::AsRawFd::as_raw_fd(&file),
                    libc::LOCK_EX | libc::LOCK_NB,
                )
            } == 0;
            if locked {
                // `connections close` unlinks a lock file while holding it: a lock taken on
                // a file that is no longer at `path` guards nothing, so take the new one.
                if same_file(&file, &path) {
                    return Ok(KeyLock { _file: file });
                }
                file = open_lock_file(&path)?;
                continue;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ControlDirError::LockBusy { path });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn lock_path(&self, key: &str) -> PathBuf {
        self.path.join(format!("{key}.lock"))
    }

    /// Removes the lock file of a master that is gone, under the lock itself so a run starting
    /// that master right now keeps it (and [`ControlDir::lock`] never trusts an unlinked one).
    async fn remove_lock(&self, key: &str) {
        if let Ok(held) = self.lock(key, Duration::from_millis(200)).await {
            let _ = std::fs::remove_file(self.lock_path(key));
            drop(held);
        }
    }

    /// Every metadata entry, live or not, sorted by host name then key.
    fn entries(&self) -> Result<Vec<PersistedConnection>, String> {
        let mut entries = Vec::new();
        let listing = std::fs::read_dir(&self.path)
            .map_err(|error| format!("cannot list `{}`: {error}", self.path.display()))?;
        for entry in listing.flatten() {
            let name = entry.file_name();
            let Some(key) = name.to_str().and_then(|name| name.strip_suffix(".json")) else {
                continue;
            };
            if let Some(metadata) = self.read_metadata(key) {
                entries.push(metadata);
            }
        }
        entries.sort_by(|a, b| (&a.host, &a.key).cmp(&(&b.host, &b.key)));
        Ok(entries)
    }
}

fn open_lock_file(path: &Path) -> Result<std::fs::File, ControlDirError> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| ControlDirError::OpenLock {
            path: path.to_path_buf(),
            detail: error.to_string(),
        })
}

/// Whether the open `file` is still the one at `path`.
fn same_file(file: &std::fs::File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// Held while a master is being started; the flock is released when the file closes.
pub(crate) struct KeyLock {
    _file: std::fs::File,
}

/// What decides where and how a master logs in, and the short hash it is filed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MasterIdentity {
    pub(crate) key: String,
    pub(crate) text: String,
    /// Keys of the jump hosts' masters, nearest first.
    pub(crate) via_keys: Vec<String>,
    /// Inventory names of the jump hosts, nearest first.
    pub(crate) via_names: Vec<String>,
}

/// The identity of every planned host (each hop's identity is part of the hosts behind it).
pub(crate) fn identities(
    planned: &IndexMap<String, PlannedHost>,
) -> IndexMap<String, MasterIdentity> {
    planned
        .keys()
        .map(|name| {
            let text = identity_text(planned, name);
            let mut via_keys = Vec::new();
            let mut via_names = Vec::new();
            let mut current = planned[name].spec.via.as_deref();
            while let Some(via) = current {
                via_keys.push(key_of(&identity_text(planned, via)));
                via_names.push(via.to_string());
                current = planned[via].spec.via.as_deref();
            }
            let identity = MasterIdentity {
                key: key_of(&text),
                text,
                via_keys,
                via_names,
            };
            (name.clone(), identity)
        })
        .collect()
}

fn key_of(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A canonical, unambiguous (JSON-quoted) rendering of the login settings; the via-chain is
/// nested whole. plan_hosts has rejected loops already.
fn identity_text(planned: &IndexMap<String, PlannedHost>, name: &str) -> String {
    let spec = &planned[name].spec;
    let quote = |value: &str| serde_json::Value::String(value.to_string()).to_string();
    let path = |value: Option<&PathBuf>| match value {
        None => "null".to_string(),
        Some(path) => quote(&absolute(path).to_string_lossy()),
    };
    let policy = spec.host_keys.as_str();
    let via = match spec.via.as_deref() {
        None => "null".to_string(),
        Some(via) => identity_text(planned, via),
    };
    // What ssh_config added beyond the fields above (keys unchanged for hosts without it).
    let from_config = &spec.from_ssh_config;
    let extra = if from_config.identity_files.is_empty()
        && from_config.known_hosts_files.is_empty()
        && from_config.proxy_jump.is_none()
    {
        String::new()
    } else {
        format!(
            ",\"ssh_config\":{}",
            serde_json::json!({
                "identity_files": from_config.identity_files,
                "known_hosts": from_config.known_hosts_files,
                "proxy_jump": from_config.proxy_jump,
            })
        )
    };
    format!(
        "{{\"v\":1,\"hostname\":{},\"port\":{},\"user\":{},\"identity_file\":{},\"host_keys\":\"{policy}\",\"known_hosts\":{},\"via\":{via}{extra}}}",
        quote(&spec.address),
        spec.port,
        spec.user.as_deref().map_or("null".to_string(), quote),
        path(spec.identity_file.as_ref()),
        path(spec.known_hosts_file.as_ref()),
    )
}

/// Relative key and known_hosts paths mean different files from different directories.
fn absolute(path: &Path) -> PathBuf {
    if path.is_relative() && !path.starts_with("~") {
        if let Ok(current) = std::env::current_dir() {
            return current.join(path);
        }
    }
    path.to_path_buf()
}

/// The metadata file of one persisted master, as `mop connections list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedConnection {
    /// Inventory name of the host, from the run that started the master.
    pub host: String,
    /// The user it logged in as.
    pub user: String,
    /// `address:port`.
    pub address: String,
    /// Jump hosts, nearest first.
    pub via: Vec<String>,
    /// Seconds since the Unix epoch when the master was started.
    pub created: u64,
    /// Idle time after which ssh stops the master (ControlPersist).
    pub persist_secs: u64,
    pub master_pid: Option<u32>,
    /// What the master is keyed on.
    pub identity: String,
    /// Keys of the jump hosts' masters, nearest first.
    pub via_keys: Vec<String>,
    /// The file name stem (hash of `identity`).
    #[serde(skip)]
    pub key: String,
}

impl PersistedConnection {
    /// Seconds since the master started.
    pub fn age_secs(&self) -> u64 {
        unix_now().saturating_sub(self.created)
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A session over an existing master (dropping it leaves the master running).
pub(crate) fn resume(socket: &Path) -> Session {
    Session::resume_mux(socket.into(), None)
}

/// Whether a master answers on `socket`.
pub(crate) async fn alive(socket: &Path) -> bool {
    if !socket.exists() {
        return false;
    }
    let session = resume(socket);
    matches!(
        tokio::time::timeout(CHECK_TIMEOUT, session.check()).await,
        Ok(Ok(()))
    )
}

/// The pid of the master on `socket`, from `ssh -O check`.
pub(crate) async fn master_pid(socket: &Path) -> Option<u32> {
    let output = ssh_control(socket, "check").await.ok()?;
    let start = output.find("pid=")? + 4;
    output[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// `ssh -S SOCKET -O COMMAND`; Ok(what it printed) or Err(why it failed).
async fn ssh_control(socket: &Path, command: &str) -> Result<String, String> {
    let output = tokio::time::timeout(
        CHECK_TIMEOUT,
        tokio::process::Command::new("ssh")
            .arg("-S")
            .arg(socket)
            .args(["-O", command, "mop-master"])
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .map_err(|_| format!("`ssh -O {command}` did not answer"))?
    .map_err(|error| format!("cannot run ssh: {error}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(text.trim().to_string())
    }
}

/// The live persisted masters in the connection directory (stale entries are removed on the
/// way). An absent directory has none.
pub async fn list_connections(dir: &Path) -> Result<Vec<PersistedConnection>, SshError> {
    let Some(control) = open_control_dir(dir, false)? else {
        return Ok(Vec::new());
    };
    live_entries(&control).await
}

async fn live_entries(control: &ControlDir) -> Result<Vec<PersistedConnection>, SshError> {
    let entries = control.entries().map_err(|detail| SshError::RunDir {
        path: control.path.clone(),
        detail,
    })?;
    let checks = entries.into_iter().map(|entry| async move {
        let live = alive(&control.socket(&entry.key)).await;
        (entry, live)
    });
    let mut live = Vec::new();
    for (entry, is_live) in futures_util::future::join_all(checks).await {
        if is_live {
            live.push(entry);
        } else {
            control.remove_entry(&entry.key);
            control.remove_lock(&entry.key).await;
        }
    }
    Ok(live)
}

/// One master `mop connections close` stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedConnection {
    pub connection: PersistedConnection,
    /// Closed because it jumps through another closed master, not because it was named.
    pub through: Option<String>,
    /// Why `ssh -O exit` failed, if it did (the files are removed either way once it is dead).
    pub error: Option<String>,
    /// Not closed: a `close` without host names could not prove the master is this user's.
    pub left_open: Option<String>,
}

/// Proves a master is this user's: its socket belongs to this uid, and the process answering
/// on it is the ssh master the metadata names, running as this uid.
async fn proven_ours(control: &ControlDir, connection: &PersistedConnection) -> Result<(), String> {
    let socket = control.socket(&connection.key);
    let uid = effective_uid();
    let socket_uid = std::fs::symlink_metadata(&socket)
        .map_err(|error| format!("cannot inspect its socket: {error}"))?
        .uid();
    if socket_uid != uid {
        return Err(format!("its socket belongs to uid {socket_uid}"));
    }
    let pid = master_pid(&socket)
        .await
        .ok_or_else(|| "its master does not say its pid".to_string())?;
    if connection
        .master_pid
        .is_some_and(|recorded| recorded != pid)
    {
        return Err(format!(
            "the process on its socket (pid {pid}) is not the master mop started"
        ));
    }
    let process_uid = std::fs::metadata(format!("/proc/{pid}"))
        .map_err(|error| format!("cannot inspect its master (pid {pid}): {error}"))?
        .uid();
    if process_uid != uid {
        return Err(format!("its master (pid {pid}) runs as uid {process_uid}"));
    }
    Ok(())
}

/// No persisted master for a host named in `mop connections close`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no persistent connection to `{host}`\n  hint: {hint}")]
pub struct UnknownConnection {
    pub host: String,
    pub hint: String,
}

/// Closes the persisted masters of `hosts` (all when empty) and those that jump through them,
/// hosts behind jump hosts first. Unknown names fail before anything is closed.
pub async fn close_connections(
    dir: &Path,
    hosts: &[String],
) -> Result<Result<Vec<ClosedConnection>, UnknownConnection>, SshError> {
    let Some(control) = open_control_dir(dir, false)? else {
        return Ok(match hosts.first() {
            Some(host) => Err(UnknownConnection {
                host: host.clone(),
                hint: "there are no persistent connections".to_string(),
            }),
            None => Ok(Vec::new()),
        });
    };
    let live = live_entries(&control).await?;
    for host in hosts {
        if !live.iter().any(|entry| &entry.host == host) {
            let open: Vec<&str> = live.iter().map(|entry| entry.host.as_str()).collect();
            let hint = if open.is_empty() {
                "there are no persistent connections".to_string()
            } else {
                format!("open ones: {}", open.join(", "))
            };
            return Ok(Err(UnknownConnection {
                host: host.clone(),
                hint,
            }));
        }
    }
    let mut chosen: Vec<(PersistedConnection, Option<String>)> = live
        .iter()
        .filter(|entry| hosts.is_empty() || hosts.contains(&entry.host))
        .map(|entry| (entry.clone(), None))
        .collect();
    // Masters jumping through a closed one die with it: close and report them too.
    let named: Vec<(String, String)> = chosen
        .iter()
        .map(|(entry, _)| (entry.key.clone(), entry.host.clone()))
        .collect();
    for entry in &live {
        if chosen.iter().any(|(other, _)| other.key == entry.key) {
            continue;
        }
        if let Some((_, through)) = named.iter().find(|(key, _)| entry.via_keys.contains(key)) {
            chosen.push((entry.clone(), Some(through.clone())));
        }
    }
    chosen.sort_by_key(|(entry, _)| std::cmp::Reverse(entry.via_keys.len()));
    let mut closed = Vec::new();
    for (connection, through) in chosen {
        // Unnamed, a master is closed only when it provably is this user's: a bare `close`
        // must not stop what it merely found in the directory.
        if hosts.is_empty() {
            if let Err(reason) = proven_ours(&control, &connection).await {
                closed.push(ClosedConnection {
                    connection,
                    through,
                    error: None,
                    left_open: Some(reason),
                });
                continue;
            }
        }
        let socket = control.socket(&connection.key);
        let error = ssh_control(&socket, "exit").await.err();
        let gone = error.is_none() || !alive(&socket).await;
        if gone {
            control.remove_entry(&connection.key);
            control.remove_lock(&connection.key).await;
        }
        closed.push(ClosedConnection {
            connection,
            through,
            error,
            left_open: None,
        });
    }
    Ok(Ok(closed))
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::config::{plan_hosts, HostKeyPolicy, SshHost};

    #[test]
    fn persist_durations() {
        let check = |text: &str, expected: Option<u64>| {
            assert_eq!(
                parse_persist_duration(text).ok().map(|d| d.as_secs()),
                expected,
                "{text}"
            );
        };
        check("90s", Some(90));
        check("10m", Some(600));
        check("1h", Some(3600));
        check("1h30m", Some(5400));
        check("2d", Some(172_800));
        check("45", Some(45));
        check("0s", None);
        check("0", None);
        check("", None);
        check("10x", None);
        check("m", None);
        check("10m5", None);
        check("-5s", None);
        check("400d", None);
        check("99999999999999999999h", None);
        let message = parse_persist_duration("soon")
            .expect_err("invalid")
            .to_string();
        assert!(
            message.contains("`soon`") && message.contains("10m"),
            "{message}"
        );
    }

    fn keys(hosts: &[SshHost]) -> IndexMap<String, MasterIdentity> {
        identities(&plan_hosts(hosts, Path::new("/tmp/mop-x")).expect("valid"))
    }

    #[test]
    fn identity_covers_every_login_setting_and_the_via_chain() {
        let bastion = SshHost::new("bastion", "10.0.0.1", 22);
        let web = SshHost {
            via: Some("bastion".into()),
            ..SshHost::new("web", "10.0.0.2", 22)
        };
        let base = keys(&[bastion.clone(), web.clone()]);
        let web_key = base["web"].key.clone();
        assert_eq!(web_key.len(), 16);
        assert_eq!(base["web"].via_keys, vec![base["bastion"].key.clone()]);
        // The name alone does not matter: the same login shares a master.
        let renamed = keys(&[SshHost::new("jump", "10.0.0.1", 22)]);
        assert_eq!(renamed["jump"].key, base["bastion"].key);
        let variants: Vec<(&str, SshHost, SshHost)> = vec![
            (
                "address",
                bastion.clone(),
                SshHost {
                    address: "10.0.0.3".into(),
                    ..web.clone()
                },
            ),
            (
                "port",
                bastion.clone(),
                SshHost {
                    port: 2222,
                    ..web.clone()
                },
            ),
            (
                "user",
                bastion.clone(),
                SshHost {
                    user: Some("ops".into()),
                    ..web.clone()
                },
            ),
            (
                "key",
                bastion.clone(),
                SshHost {
                    identity_file: Some("/k".into()),
                    ..web.clone()
                },
            ),
            (
                "known_hosts",
                bastion.clone(),
                SshHost {
                    known_hosts_file: Some("/kh".into()),
                    ..web.clone()
                },
            ),
            (
                "policy",
                bastion.clone(),
                SshHost {
                    host_keys: HostKeyPolicy::Off,
                    ..web.clone()
                },
            ),
            (
                "hop port",
                SshHost {
                    port: 2200,
                    ..bastion.clone()
                },
                web.clone(),
            ),
            (
                "hop user",
                SshHost {
                    user: Some("jump".into()),
                    ..bastion.clone()
                },
                web.clone(),
            ),
            (
                "no hop",
                bastion.clone(),
                SshHost {
                    via: None,
                    ..web.clone()
                },
            ),
            (
                "ssh_config identity file",
                bastion.clone(),
                SshHost {
                    from_ssh_config: crate::ssh::SshConfigSettings {
                        identity_files: vec!["/k".into()],
                        ..Default::default()
                    },
                    ..web.clone()
                },
            ),
            (
                "ssh_config ProxyJump",
                bastion.clone(),
                SshHost {
                    via: None,
                    from_ssh_config: crate::ssh::SshConfigSettings {
                        proxy_jump: Some("jump".into()),
                        ..Default::default()
                    },
                    ..web.clone()
                },
            ),
        ];
        for (what, bastion, web) in variants {
            let changed = keys(&[bastion, web]);
            assert_ne!(changed["web"].key, web_key, "{what} must change the key");
        }
    }

    #[test]
    fn the_control_dir_must_be_private() {
        let base = tempfile::tempdir().expect("temp dir");
        let dir = base.path().join("ctl");
        assert!(open_control_dir(&dir, false)
            .expect("absent is fine")
            .is_none());
        let opened = open_control_dir(&dir, true)
            .expect("created")
            .expect("some");
        let mode = std::fs::metadata(&opened.path).expect("stat").mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(opened.socket("0123456789abcdef").as_os_str().len() < 108 - 17);

        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let error = open_control_dir(&dir, true)
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("accessible by group or others (mode 0755"),
            "{error}"
        );
        assert!(error.contains("hint: remove it"), "{error}");

        let link = base.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).expect("symlink");
        let error = open_control_dir(&link, true)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("it is a symlink"), "{error}");

        let file = base.path().join("file");
        std::fs::write(&file, "").expect("write");
        let error = open_control_dir(&file, false)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("not a directory"), "{error}");

        let long = base.path().join("x".repeat(90));
        let error = open_control_dir(&long, true)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("too long"), "{error}");
    }

    #[test]
    fn owner_must_be_the_user() {
        if effective_uid() != 0 {
            return; // only root can make a directory owned by someone else
        }
        let base = tempfile::tempdir().expect("temp dir");
        let dir = base.path().join("ctl");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .expect("mkdir");
        std::os::unix::fs::chown(&dir, Some(65534), None).expect("chown");
        let error = open_control_dir(&dir, true)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("owned by uid 65534"), "{error}");
    }

    #[tokio::test]
    async fn metadata_round_trips_and_dead_entries_are_dropped() {
        let base = tempfile::tempdir().expect("temp dir");
        let dir = base.path().join("ctl");
        let control = open_control_dir(&dir, true).expect("ok").expect("some");
        let entry = PersistedConnection {
            host: "web1".into(),
            user: "ops".into(),
            address: "127.0.0.1:22".into(),
            via: vec![],
            created: unix_now(),
            persist_secs: 60,
            master_pid: Some(1),
            identity: "{}".into(),
            via_keys: vec![],
            key: "00000000000000aa".into(),
        };
        control.write_metadata(&entry).expect("write");
        assert_eq!(control.entries().expect("list"), vec![entry.clone()]);
        // No socket answers: list drops the entry and its files.
        assert!(list_connections(&dir).await.expect("list").is_empty());
        assert!(control.entries().expect("list").is_empty());
        let unknown = close_connections(&dir, &["web1".to_string()])
            .await
            .expect("dir ok")
            .expect_err("unknown");
        assert!(unknown
            .to_string()
            .contains("no persistent connection to `web1`"));
    }
}
