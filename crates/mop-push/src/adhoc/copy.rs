//! `mop upload`, `mop download` and `mop transfer`: files to, from and between hosts over SFTP
//! channels of the pool's master connections.
//!
//! Uploads are staged under a temporary name and renamed into place in one exec per host (so a
//! reader never sees half a file), and a file whose sha256 already matches is not sent at all.
//! Every staged file is created exclusively (nothing, not even a symlink, may stand there) and
//! is 0600 before its first byte. With sudo, SFTP (which runs as the login user) stages inside
//! a fresh private directory (`mktemp -d` under `umask 077`), the sudo'd exec installs each
//! file beside its destination (a new `mktemp` file given the wanted mode, renamed over the
//! destination) and the directory is removed, on success, on failure, and after Ctrl-C
//! ([`remove_staging`]).

use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use super::{AdhocHost, SshPool};
use crate::ssh::{check_adhoc_become, password_line, quote, redact, BecomeSpec, RunAs, Secret};

/// Why the local side of an upload cannot be read; nothing has been sent when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum LocalSourceError {
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot list `{}`: {source}", path.display())]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is a directory\n  hint: pass --recursive to upload it with everything in it", path.display())]
    Directory { path: PathBuf },
}

fn read_error(path: &Path) -> impl FnOnce(std::io::Error) -> LocalSourceError + '_ {
    move |source| LocalSourceError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// What one host's copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyOutcome {
    pub host: String,
    /// Files written (uploaded, downloaded or transferred).
    pub files_sent: usize,
    pub bytes_sent: u64,
    /// Files left alone because their sha256 already matched.
    pub files_skipped: usize,
    /// Where the files went (remote paths for uploads, local paths for downloads).
    pub paths: Vec<String>,
    pub elapsed: Duration,
    pub error: Option<String>,
}

/// `mop upload` settings.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    pub recursive: bool,
    /// Mode of the uploaded files; default: the local file's permission bits.
    pub mode: Option<u32>,
    pub sudo: bool,
    pub sudo_as: Option<String>,
    /// Hosts worked on at once.
    pub forks: NonZeroUsize,
}

/// `mop download` settings.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    pub recursive: bool,
    /// `LOCAL_DIR/<name>_<host>` instead of `LOCAL_DIR/<host>/<name>`.
    pub suffix: bool,
    /// Read the files as root: sudo copies them into a private directory of the login user
    /// under `/tmp`, SFTP (which runs as the login user) fetches that copy, which is removed.
    pub sudo: bool,
    /// Hosts worked on at once.
    pub forks: NonZeroUsize,
}

/// One local file to upload and where it goes.
#[derive(Debug, Clone)]
struct LocalFile {
    remote: String,
    bytes: Arc<[u8]>,
    sha256: String,
    mode: u32,
}

fn hex(digest: &[u8]) -> String {
    digest.iter().fold(String::new(), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

/// The files `local` stands for, with their remote paths. A directory needs `recursive`; a
/// remote path ending in `/` takes the local file's name.
fn local_files(
    local: &Path,
    remote: &str,
    options: &UploadOptions,
) -> Result<Vec<LocalFile>, LocalSourceError> {
    let metadata = std::fs::metadata(local).map_err(read_error(local))?;
    let mut pairs = Vec::new();
    if metadata.is_dir() {
        if !options.recursive {
            return Err(LocalSourceError::Directory {
                path: local.to_path_buf(),
            });
        }
        walk(local, remote.trim_end_matches('/'), &mut pairs)?;
    } else {
        let target = if remote.ends_with('/') {
            let name = local
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("{remote}{name}")
        } else {
            remote.to_string()
        };
        pairs.push((local.to_path_buf(), target));
    }
    pairs
        .into_iter()
        .map(|(source, remote)| {
            let bytes = std::fs::read(&source).map_err(read_error(&source))?;
            let local_mode = std::fs::metadata(&source)
                .map(|metadata| std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()))
                .unwrap_or(0o644);
            Ok(LocalFile {
                sha256: hex(&Sha256::digest(&bytes)),
                bytes: bytes.into(),
                mode: options.mode.unwrap_or(local_mode & 0o7777),
                remote,
            })
        })
        .collect()
}

fn walk(
    dir: &Path,
    remote: &str,
    pairs: &mut Vec<(PathBuf, String)>,
) -> Result<(), LocalSourceError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|source| LocalSourceError::List {
            path: dir.to_path_buf(),
            source,
        })?
        .flatten()
        .collect();
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let target = format!("{remote}/{name}");
        let metadata = std::fs::metadata(&path).map_err(read_error(&path))?;
        if metadata.is_dir() {
            walk(&path, &target, pairs)?;
        } else if metadata.is_file() {
            pairs.push((path, target));
        }
    }
    Ok(())
}

fn sudo_for(host: &AdhocHost, sudo: bool, sudo_as: Option<&str>) -> Option<BecomeSpec> {
    sudo.then(|| BecomeSpec {
        user: sudo_as
            .map(str::to_string)
            .or_else(|| host.connection.sudo_user.clone()),
        password: host
            .connection
            .sudo_password
            .as_ref()
            .map(|secret| Secret::new(secret.expose())),
        method: host.connection.become_method,
    })
}

fn token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    hex(&Sha256::digest(format!("{}/{nanos}", std::process::id()))[..6])
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(index) => &path[..index],
        None => ".",
    }
}

fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Uploads `local` to `remote` on every host, at most `forks` hosts at once.
pub async fn upload_to_hosts(
    pool: &SshPool,
    hosts: &[AdhocHost],
    local: &Path,
    remote: &str,
    options: &UploadOptions,
) -> Result<Vec<CopyOutcome>, LocalSourceError> {
    let files = Arc::new(local_files(local, remote, options)?);
    let limit = Semaphore::new(options.forks.get());
    let uploads = hosts.iter().map(|host| {
        let files = files.clone();
        let limit = &limit;
        async move {
            let _permit = limit
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let started = Instant::now();
            let sudo = sudo_for(host, options.sudo, options.sudo_as.as_deref());
            let mut outcome = match upload_one(pool, host, &files, sudo.as_ref()).await {
                Ok(outcome) => outcome,
                Err(detail) => CopyOutcome {
                    host: host.name.clone(),
                    error: Some(redact(&detail, sudo.as_ref())),
                    ..CopyOutcome::default()
                },
            };
            outcome.elapsed = started.elapsed();
            outcome
        }
    });
    Ok(futures_util::future::join_all(uploads).await)
}

async fn upload_one(
    pool: &SshPool,
    host: &AdhocHost,
    files: &[LocalFile],
    sudo: Option<&BecomeSpec>,
) -> Result<CopyOutcome, String> {
    let name = host.name.as_str();
    check_adhoc_become(name, sudo).map_err(|error| error.to_string())?;
    let session = pool.open(name).await.map_err(|error| error.to_string())?;
    let prefix = RunAs::from_spec(sudo).command_prefix();
    // One exec: create the parent directories, print the sha256 of files already there.
    let mut script = String::from("LC_ALL=C; export LC_ALL; ");
    let mut parents: Vec<&str> = files.iter().map(|file| parent_of(&file.remote)).collect();
    parents.dedup();
    let _ = write!(script, "{prefix}mkdir -p");
    for parent in &parents {
        let _ = write!(script, " {}", quote(parent));
    }
    script.push_str(" || exit 3; ");
    for (index, file) in files.iter().enumerate() {
        let _ = write!(
            script,
            "if [ -f {path} ]; then printf '{index} '; {prefix}sha256sum {path} 2>/dev/null || echo; fi; ",
            path = quote(&file.remote)
        );
    }
    let stdin = password_line(sudo);
    let output = session
        .exec(&script, stdin.clone())
        .await
        .map_err(|detail| format!("host `{name}`: {detail}"))?;
    if output.code != Some(0) {
        return Err(format!(
            "host `{name}`: cannot create the remote directories: {}",
            output.stderr.trim()
        ));
    }
    let mut remote_sums = std::collections::BTreeMap::new();
    for line in output.stdout.lines() {
        let mut words = line.split_whitespace();
        if let (Some(index), Some(sum)) = (words.next(), words.next()) {
            if let Ok(index) = index.parse::<usize>() {
                remote_sums.insert(index, sum.to_string());
            }
        }
    }
    let token = token();
    let mut outcome = CopyOutcome {
        host: name.to_string(),
        ..CopyOutcome::default()
    };
    let wanted: Vec<(usize, &LocalFile)> = files
        .iter()
        .enumerate()
        .filter(|(index, file)| remote_sums.get(index) != Some(&file.sha256))
        .collect();
    outcome.files_skipped = files.len() - wanted.len();
    if wanted.is_empty() {
        return Ok(outcome);
    }
    // With sudo, SFTP (the login user) stages in a fresh private directory; without, beside
    // each destination. Either way every staged file is created exclusively, 0600.
    let staging_dir = match sudo {
        Some(_) => Some(private_staging_dir(&session, name, UPLOAD_STAGING).await?),
        None => None,
    };
    let staged: Vec<(&LocalFile, String)> = wanted
        .into_iter()
        .map(|(index, file)| {
            let stage = match &staging_dir {
                Some(dir) => format!("{dir}/{index}"),
                None => format!(
                    "{}/.{}.mop-{token}",
                    parent_of(&file.remote),
                    name_of(&file.remote)
                ),
            };
            (file, stage)
        })
        .collect();
    let installed =
        send_and_install(&session, name, &staged, staging_dir.as_deref(), sudo, stdin).await;
    if installed.is_err() {
        // Remove what was staged; the destination files are untouched.
        let cleanup = match &staging_dir {
            Some(dir) => format!("rm -rf {}", quote(dir)),
            None => {
                let stages: Vec<String> = staged.iter().map(|(_, stage)| quote(stage)).collect();
                format!("rm -f {}", stages.join(" "))
            }
        };
        let _ = session.exec(&cleanup, None).await;
    }
    installed?;
    for (file, _) in &staged {
        outcome.files_sent += 1;
        outcome.bytes_sent += file.bytes.len() as u64;
        outcome.paths.push(file.remote.clone());
    }
    Ok(outcome)
}

/// Writes every staged file over SFTP and moves them into place in one exec (sudo'd: through
/// [`install_line`], then the staging directory is removed).
async fn send_and_install(
    session: &crate::ssh::RemoteSession,
    name: &str,
    staged: &[(&LocalFile, String)],
    staging_dir: Option<&str>,
    sudo: Option<&BecomeSpec>,
    stdin: Option<Vec<u8>>,
) -> Result<(), String> {
    let sftp = session.sftp().await.map_err(|error| {
        format!(
            "host `{name}`: cannot start sftp (is the sftp subsystem enabled in sshd?): {error}"
        )
    })?;
    let mut written = Ok(());
    for (file, stage) in staged {
        if let Err(detail) = sftp.write_file(stage, &file.bytes).await {
            written = Err(format!("host `{name}`: cannot write `{stage}`: {detail}"));
            break;
        }
    }
    // Not `sftp.close()`: openssh-sftp-client 0.15 panics in it when a dropped file's close
    // task still holds the connection (see ssh/bootstrap.rs). Writes are flushed already, and
    // the staged files are only renamed, which an open server handle does not prevent.
    drop(sftp);
    written?;
    let mut finish = String::new();
    for (file, stage) in staged {
        if sudo.is_some() {
            finish.push_str(&install_line(stage, &file.remote, file.mode));
        } else {
            let _ = write!(
                finish,
                "chmod {mode:o} {stage} && mv -f {stage} {target} || {{ rm -f {stage}; echo {message} >&2; exit 4; }}; ",
                mode = file.mode,
                stage = quote(stage),
                target = quote(&file.remote),
                message = quote(&format!("cannot move {}", file.remote)),
            );
        }
    }
    let prefix = RunAs::from_spec(sudo).command_prefix();
    let script = match staging_dir {
        Some(dir) => format!(
            "LC_ALL=C; export LC_ALL; {prefix}sh -c {}; status=$?; rm -rf {}; exit $status",
            quote(&finish),
            quote(dir)
        ),
        None => finish,
    };
    let output = session
        .exec(&script, stdin)
        .await
        .map_err(|detail| format!("host `{name}`: {detail}"))?;
    if output.code != Some(0) {
        return Err(format!(
            "host `{name}`: cannot move the uploaded files into place: {}",
            redact(output.stderr.trim(), sudo)
        ));
    }
    Ok(())
}

/// What the names of a kind of staging directory start with, after `/tmp/.mop-`.
const UPLOAD_STAGING: &str = "upload";
const TRANSFER_STAGING: &str = "transfer";

/// This process's mark in the names of its staging directories, so that an interrupted copy
/// finds its own again ([`remove_staging`]).
fn run_token() -> &'static str {
    static RUN_TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RUN_TOKEN.get_or_init(token)
}

/// Creates a fresh private directory for a sudo'd copy on the host, as the login user:
/// `mktemp -d` under `umask 077`, so it is new (never a name someone planted) and 0700, and
/// what SFTP stages in it is out of other local users' reach.
async fn private_staging_dir(
    session: &crate::ssh::RemoteSession,
    name: &str,
    kind: &str,
) -> Result<String, String> {
    let prefix = format!("/tmp/.mop-{kind}-{}-", run_token());
    let output = session
        .exec(&format!("umask 077; mktemp -d {prefix}XXXXXXXX"), None)
        .await
        .map_err(|detail| format!("host `{name}`: {detail}"))?;
    let dir = output.stdout.trim();
    let plain = dir
        .strip_prefix(&prefix)
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()));
    if output.code == Some(0) && plain {
        Ok(dir.to_string())
    } else {
        Err(format!(
            "host `{name}`: cannot create a private directory under `/tmp` for the copy: {}",
            output.stderr.trim()
        ))
    }
}

/// The sudo'd shell lines that install the staged file `stage` as `target` with `mode`: a new
/// file beside the target (`mktemp`: created exclusively, 0600), filled from the stage, given
/// its mode, and renamed over the target; on failure the new file is removed.
fn install_line(stage: &str, target: &str, mode: u32) -> String {
    let template = format!("{}/.{}.mop-XXXXXXXX", parent_of(target), name_of(target));
    format!(
        "tmp=$(mktemp {template}) && cat {stage} > \"$tmp\" && chmod {mode:o} \"$tmp\" && mv -f \"$tmp\" {target} || {{ [ -n \"$tmp\" ] && rm -f \"$tmp\"; echo {message} >&2; exit 4; }}; ",
        template = quote(&template),
        stage = quote(stage),
        target = quote(target),
        message = quote(&format!("cannot move {target}")),
    )
}

/// After Ctrl-C: removes the staging directories this process left on `hosts` (an upload or
/// transfer abandoned while SFTP was writing), as the login user, which owns them. Best effort
/// and bounded in time: the caller closes the pool next.
pub async fn remove_staging(pool: &SshPool, hosts: &[&AdhocHost]) {
    let token = run_token();
    let script = format!(
        "for dir in /tmp/.mop-{UPLOAD_STAGING}-{token}-* /tmp/.mop-{TRANSFER_STAGING}-{token}-*; do \
         if [ -d \"$dir\" ] && [ ! -L \"$dir\" ] && [ -O \"$dir\" ]; then rm -rf -- \"$dir\"; fi; done; exit 0"
    );
    let removals = hosts.iter().map(|host| {
        let script = &script;
        async move {
            let Ok(session) = pool.open(&host.name).await else {
                return;
            };
            let _ = session.exec(script, None).await;
        }
    });
    let _ = tokio::time::timeout(
        STAGING_REMOVAL_TIMEOUT,
        futures_util::future::join_all(removals),
    )
    .await;
}

/// How long [`remove_staging`] may take, all hosts together.
const STAGING_REMOVAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Fetches `remote` from every host into `local_dir/<host>/...` (or `<name>_<host>` with
/// `suffix`), so hosts never overwrite each other.
pub async fn download_from_hosts(
    pool: &SshPool,
    hosts: &[AdhocHost],
    remote: &str,
    local_dir: &Path,
    options: &DownloadOptions,
) -> Vec<CopyOutcome> {
    let limit = Semaphore::new(options.forks.get());
    let downloads = hosts.iter().map(|host| {
        let limit = &limit;
        async move {
            let _permit = limit
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let started = Instant::now();
            let mut outcome = match download_one(pool, host, remote, local_dir, options).await {
                Ok(outcome) => outcome,
                Err(detail) => CopyOutcome {
                    host: host.name.clone(),
                    error: Some(detail),
                    ..CopyOutcome::default()
                },
            };
            outcome.elapsed = started.elapsed();
            outcome
        }
    });
    futures_util::future::join_all(downloads).await
}

/// The part of `path` below the remote directory `remote`, when it is a plain relative path
/// (only normal components: no `..`, `.`, empty or absolute parts). The listing comes from the
/// host, and a hostile host must not be able to name a local file outside the download
/// directory.
fn relative_below(remote: &str, path: &str) -> Option<String> {
    let relative = path.strip_prefix(remote)?.strip_prefix('/')?;
    let plain = !relative.is_empty()
        && relative
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    plain.then(|| relative.to_string())
}

/// Where a remote file lands locally.
fn local_target(local_dir: &Path, host: &str, base: &str, relative: &str, suffix: bool) -> PathBuf {
    let host_part = host.replace('/', "_");
    if suffix {
        let root = local_dir.join(format!("{base}_{host_part}"));
        if relative.is_empty() {
            root
        } else {
            root.join(relative)
        }
    } else {
        let root = local_dir.join(host_part).join(base);
        if relative.is_empty() {
            root
        } else {
            root.join(relative)
        }
    }
}

async fn download_one(
    pool: &SshPool,
    host: &AdhocHost,
    remote: &str,
    local_dir: &Path,
    options: &DownloadOptions,
) -> Result<CopyOutcome, String> {
    let name = host.name.as_str();
    // Root, whatever `mop_sudo_username` says: the copy is chowned to the login user.
    let sudo = sudo_for(host, options.sudo, Some("root"));
    check_adhoc_become(name, sudo.as_ref()).map_err(|error| error.to_string())?;
    let session = pool.open(name).await.map_err(|error| error.to_string())?;
    let remote = remote.trim_end_matches('/');
    let base = name_of(remote).to_string();
    let prefix = RunAs::from_spec(sudo.as_ref()).command_prefix();
    let list = r#"if [ -d "$1" ]; then echo dir; find "$1" -type f -print; elif [ -e "$1" ]; then echo file; else echo missing; fi"#;
    let listing = session
        .exec(
            &format!(
                "LC_ALL=C; export LC_ALL; {prefix}sh -c {} sh {}",
                quote(list),
                quote(remote)
            ),
            password_line(sudo.as_ref()),
        )
        .await
        .map_err(|detail| format!("host `{name}`: {detail}"))?;
    if listing.code != Some(0) {
        return Err(sudo_failure(&session, host, sudo.as_ref(), &listing.stderr).await);
    }
    let mut lines = listing.stdout.lines();
    let files: Vec<(String, String)> = match lines.next() {
        Some("file") => vec![(remote.to_string(), String::new())],
        Some("dir") if options.recursive => lines
            .map(|path| {
                relative_below(remote, path)
                    .map(|relative| (path.to_string(), relative))
                    .ok_or_else(|| {
                        format!(
                            "host `{name}` listed `{}` as a file under `{remote}`: refusing a path that would land outside the download directory",
                            crate::report::inert(path)
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
        Some("dir") => {
            return Err(format!(
                "host `{name}`: `{remote}` is a directory\n  hint: pass --recursive to download it with everything in it"
            ))
        }
        _ => return Err(format!("host `{name}`: `{remote}` does not exist")),
    };
    let stage = match &sudo {
        Some(spec) => Some(stage_for_reading(&session, host, spec, remote, false).await?),
        None => None,
    };
    let fetched = fetch_files(
        &session,
        host,
        &files,
        stage.as_deref(),
        remote,
        local_dir,
        &base,
        options,
    )
    .await;
    if let Some(stage) = &stage {
        // The copy belongs to the login user: no sudo needed to remove it.
        let _ = session
            .exec(&format!("rm -rf {}", quote(stage)), None)
            .await;
    }
    fetched
}

/// With `--sudo`: copies `remote` as root into a fresh private directory of the login user
/// (`mktemp -d`, mode 0700) and gives the copy to the login user; returns the directory.
/// `keep_mode` copies the permission bits too (`cp -p`), for a transfer that passes them on.
async fn stage_for_reading(
    session: &crate::ssh::RemoteSession,
    host: &AdhocHost,
    sudo: &BecomeSpec,
    remote: &str,
    keep_mode: bool,
) -> Result<String, String> {
    let name = host.name.as_str();
    let copy = if keep_mode {
        r#"cp -p -R -- "$1" "$2/copy" && chown -R "$3" "$2/copy""#
    } else {
        r#"cp -R -- "$1" "$2/copy" && chown -R "$3" "$2/copy""#
    };
    let prefix = RunAs::from_spec(Some(sudo)).command_prefix();
    let script = format!(
        "LC_ALL=C; export LC_ALL; umask 077; stage=$(mktemp -d /tmp/.mop-download-XXXXXXXX) || exit 3; \
         if {prefix}sh -c {} sh {} \"$stage\" \"$(id -u)\"; then echo \"$stage\"; else rm -rf \"$stage\"; exit 4; fi",
        quote(copy),
        quote(remote)
    );
    let output = session
        .exec(&script, password_line(Some(sudo)))
        .await
        .map_err(|detail| format!("host `{name}`: {detail}"))?;
    match (output.code, output.stdout.trim()) {
        (Some(0), stage) if stage.starts_with("/tmp/.mop-download-") => Ok(stage.to_string()),
        (Some(3), _) => Err(format!(
            "host `{name}`: cannot create a private directory under `/tmp` for the copy: {}",
            redact(output.stderr.trim(), Some(sudo))
        )),
        _ => Err(sudo_failure(session, host, Some(sudo), &output.stderr).await),
    }
}

/// What a failed sudo'd step says, in mop's words when sudo itself refused (sudo's own
/// "a password is required" is never shown).
async fn sudo_failure(
    session: &crate::ssh::RemoteSession,
    host: &AdhocHost,
    sudo: Option<&BecomeSpec>,
    stderr: &str,
) -> String {
    let name = host.name.as_str();
    let stderr = redact(stderr.trim(), sudo);
    match sudo {
        Some(spec) if crate::ssh::is_become_refusal(&stderr) => {
            let login_user = host.connection.user.as_deref().unwrap_or("the login user");
            let run_as = RunAs::from_spec(Some(spec));
            crate::ssh::diagnose_refusal(session, name, login_user, &run_as, Some(spec), &stderr)
                .await
                .to_string()
        }
        _ => format!("host `{name}`: {stderr}"),
    }
}

/// Fetches the listed files over SFTP, from the staged copy when there is one.
#[allow(clippy::too_many_arguments)]
async fn fetch_files(
    session: &crate::ssh::RemoteSession,
    host: &AdhocHost,
    files: &[(String, String)],
    stage: Option<&str>,
    remote: &str,
    local_dir: &Path,
    base: &str,
    options: &DownloadOptions,
) -> Result<CopyOutcome, String> {
    let name = host.name.as_str();
    let sftp = session
        .sftp()
        .await
        .map_err(|error| format!("host `{name}`: cannot start sftp: {error}"))?;
    let mut outcome = CopyOutcome {
        host: name.to_string(),
        ..CopyOutcome::default()
    };
    let mut result = Ok(());
    for (path, relative) in files {
        let target = local_target(local_dir, name, base, relative, options.suffix);
        let source = match stage {
            Some(stage) => format!("{stage}/copy{}", &path[remote.len().min(path.len())..]),
            None => path.clone(),
        };
        match sftp.download_to(&source, &target).await {
            Ok(bytes) => {
                outcome.files_sent += 1;
                outcome.bytes_sent += bytes;
                outcome.paths.push(target.display().to_string());
            }
            Err(detail) => {
                result = Err(download_error(
                    name,
                    path,
                    &detail.to_string(),
                    stage.is_some(),
                ));
                break;
            }
        }
    }
    // Its end in the background is waited for by the pool's close (see `RemoteFiles::close`).
    sftp.close().await;
    result.map(|()| outcome)
}

/// `host `db1`: cannot download `/x`: permission denied` plus what to do about it.
fn download_error(host: &str, path: &str, detail: &str, sudo: bool) -> String {
    let hint = match detail {
        "permission denied" if !sudo => {
            "\n  hint: the login user cannot read it; pass --sudo to read it as root"
        }
        "no such file or directory" => "\n  hint: it was removed while mop was copying it",
        _ => "",
    };
    format!("host `{host}`: cannot download `{path}`: {detail}{hint}")
}

/// `mop transfer`: which hosts and paths, and whether both ends work as root.
#[derive(Debug, Clone)]
pub struct Transfer<'a> {
    pub source: &'a AdhocHost,
    pub source_path: &'a str,
    pub target: &'a AdhocHost,
    pub target_path: &'a str,
    /// Read the source and write the target as root (sudo on both hosts): the source is
    /// copied by sudo into a private directory of the login user, the target is written into
    /// a fresh private staging directory and installed by sudo with the source's mode.
    pub sudo: bool,
}

/// Copies the source file to the target, streamed through this process (no temporary file on
/// local disk) and renamed into place on the target.
pub async fn transfer(pool: &SshPool, request: &Transfer<'_>) -> CopyOutcome {
    let started = Instant::now();
    let target_host = request.target.name.clone();
    let mut outcome = match transfer_inner(pool, request).await {
        Ok(bytes) => CopyOutcome {
            host: target_host,
            files_sent: 1,
            bytes_sent: bytes,
            paths: vec![request.target_path.to_string()],
            ..CopyOutcome::default()
        },
        Err(detail) => CopyOutcome {
            host: target_host,
            error: Some(detail),
            ..CopyOutcome::default()
        },
    };
    outcome.elapsed = started.elapsed();
    outcome
}

async fn transfer_inner(pool: &SshPool, request: &Transfer<'_>) -> Result<u64, String> {
    let source_host = request.source.name.as_str();
    let target_host = request.target.name.as_str();
    for host in [request.source, request.target] {
        check_adhoc_become(
            &host.name,
            sudo_for(host, request.sudo, Some("root")).as_ref(),
        )
        .map_err(|error| error.to_string())?;
    }
    let (source_session, target_session) =
        tokio::join!(pool.open(source_host), pool.open(target_host));
    let source_session = source_session.map_err(|error| error.to_string())?;
    let target_session = target_session.map_err(|error| error.to_string())?;
    let source_sudo = sudo_for(request.source, request.sudo, Some("root"));
    let target_sudo = sudo_for(request.target, request.sudo, Some("root"));
    let staged_source = match &source_sudo {
        Some(spec) => Some(
            stage_for_reading(
                &source_session,
                request.source,
                spec,
                request.source_path,
                true,
            )
            .await?,
        ),
        None => None,
    };
    let result = copy_between(
        request,
        &source_session,
        &target_session,
        staged_source.as_deref(),
        target_sudo.as_ref(),
    )
    .await;
    if let Some(stage) = &staged_source {
        let _ = source_session
            .exec(&format!("rm -rf {}", quote(stage)), None)
            .await;
    }
    result
}

async fn copy_between(
    request: &Transfer<'_>,
    source_session: &crate::ssh::RemoteSession,
    target_session: &crate::ssh::RemoteSession,
    staged_source: Option<&str>,
    target_sudo: Option<&BecomeSpec>,
) -> Result<u64, String> {
    let source_host = request.source.name.as_str();
    let target_host = request.target.name.as_str();
    let source_path = request.source_path;
    let target_path = request.target_path;
    let read_from = match staged_source {
        Some(stage) => format!("{stage}/copy"),
        None => source_path.to_string(),
    };
    let source_sftp = source_session
        .sftp()
        .await
        .map_err(|error| format!("host `{source_host}`: cannot start sftp: {error}"))?;
    let target_sftp = target_session
        .sftp()
        .await
        .map_err(|error| format!("host `{target_host}`: cannot start sftp: {error}"))?;
    let prefix = RunAs::from_spec(target_sudo).command_prefix();
    let mkdir = target_session
        .exec(
            &format!(
                "LC_ALL=C; export LC_ALL; {prefix}mkdir -p {}",
                quote(parent_of(target_path))
            ),
            password_line(target_sudo),
        )
        .await
        .map_err(|detail| format!("host `{target_host}`: {detail}"))?;
    if mkdir.code != Some(0) {
        if target_sudo.is_some() {
            return Err(
                sudo_failure(target_session, request.target, target_sudo, &mkdir.stderr).await,
            );
        }
        return Err(format!(
            "host `{target_host}`: cannot create `{}`: {}",
            parent_of(target_path),
            mkdir.stderr.trim()
        ));
    }
    // With sudo, SFTP (the login user) writes into a fresh private directory and sudo
    // installs the file; without, SFTP writes beside the target. Created exclusively, 0600.
    let staging_dir = match target_sudo {
        Some(_) => Some(private_staging_dir(target_session, target_host, TRANSFER_STAGING).await?),
        None => None,
    };
    let stage = match &staging_dir {
        Some(dir) => format!("{dir}/file"),
        None => format!(
            "{}/.{}.mop-{}",
            parent_of(target_path),
            name_of(target_path),
            token()
        ),
    };
    let copied = async {
        let (mut source, mode) = source_sftp.open_with_mode(&read_from).await.map_err(|error| {
            copy_error(source_host, "cannot open", source_path, &error.to_string(), staged_source.is_some())
        })?;
        let mut target = target_sftp.create_private(&stage).await.map_err(|error| {
            copy_error(target_host, "cannot create", &stage, &error.to_string(), target_sudo.is_some())
        })?;
        let copied = tokio::io::copy_buf(&mut source, &mut target)
            .await
            .map_err(|error| format!("copying `{source_host}:{source_path}` to `{target_host}:{stage}` failed: {error}"))?;
        target
            .flush()
            .await
            .map_err(|error| format!("host `{target_host}`: write failed: {error}"))?;
        Ok::<(u64, Option<u32>), String>((copied, mode))
    }
    .await;
    source_sftp.close().await;
    target_sftp.close().await;
    // The target gets the source's permission bits (the server gave none: 0644, SFTP's own
    // default less the usual umask).
    let finish = match (&copied, &staging_dir) {
        (Ok((_, mode)), None) => format!(
            "chmod {mode:o} {stage} && mv -f {stage} {target} || {{ rm -f {stage}; exit 4; }}",
            mode = mode.unwrap_or(0o644),
            stage = quote(&stage),
            target = quote(target_path)
        ),
        (Ok((_, mode)), Some(dir)) => format!(
            "LC_ALL=C; export LC_ALL; {prefix}sh -c {}; status=$?; rm -rf {}; exit $status",
            quote(&install_line(&stage, target_path, mode.unwrap_or(0o644))),
            quote(dir)
        ),
        (Err(_), None) => format!("rm -f {}", quote(&stage)),
        (Err(_), Some(dir)) => format!("rm -rf {}", quote(dir)),
    };
    let stdin = if copied.is_ok() {
        password_line(target_sudo)
    } else {
        None
    };
    let output = target_session
        .exec(&finish, stdin)
        .await
        .map_err(|detail| format!("host `{target_host}`: {detail}"));
    let output = match output {
        Ok(output) => output,
        Err(detail) => {
            if let Some(dir) = &staging_dir {
                let _ = target_session
                    .exec(&format!("rm -rf {}", quote(dir)), None)
                    .await;
            }
            return Err(detail);
        }
    };
    let (copied, _) = copied?;
    if output.code != Some(0) {
        return Err(format!(
            "host `{target_host}`: cannot move the file into `{target_path}`: {}",
            redact(output.stderr.trim(), target_sudo)
        ));
    }
    Ok(copied)
}

/// `host `db1`: cannot open `/x`: permission denied` plus what to do about it.
fn copy_error(host: &str, what: &str, path: &str, detail: &str, sudo: bool) -> String {
    let hint = if detail == "permission denied" && !sudo {
        "\n  hint: the login user may not do that; pass --sudo to work as root"
    } else {
        ""
    };
    format!("host `{host}`: {what} `{path}`: {detail}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_listing_cannot_name_a_file_outside_the_download() {
        assert_eq!(
            relative_below("/srv", "/srv/a/b.txt"),
            Some("a/b.txt".into())
        );
        assert_eq!(relative_below("", "/etc/x"), Some("etc/x".into()));
        for hostile in [
            "/srv/../../home/op/.bashrc",
            "/srv/a/../../x",
            "/srv/./x",
            "/srv//x",
            "/srvother/x",
            "/etc/passwd",
            "/srv",
            "/srv/",
            "../x",
        ] {
            assert_eq!(relative_below("/srv", hostile), None, "{hostile}");
        }
    }

    #[test]
    fn download_targets_never_collide() {
        let dir = Path::new("/out");
        assert_eq!(
            local_target(dir, "web1", "app.log", "", false),
            PathBuf::from("/out/web1/app.log")
        );
        assert_eq!(
            local_target(dir, "web1", "app.log", "", true),
            PathBuf::from("/out/app.log_web1")
        );
        assert_eq!(
            local_target(dir, "web2", "logs", "a/b.txt", false),
            PathBuf::from("/out/web2/logs/a/b.txt")
        );
        assert_eq!(
            local_target(dir, "web2", "logs", "a/b.txt", true),
            PathBuf::from("/out/logs_web2/a/b.txt")
        );
    }

    #[test]
    fn paths() {
        assert_eq!(parent_of("/etc/app.conf"), "/etc");
        assert_eq!(parent_of("/app.conf"), "/");
        assert_eq!(parent_of("app.conf"), ".");
        assert_eq!(name_of("/etc/app.conf"), "app.conf");
    }
}
