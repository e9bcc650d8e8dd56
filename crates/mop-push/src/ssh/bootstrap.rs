//! Getting the agent onto a host: one probe exec, an SFTP upload unless cached, cleanup.
//!
//! The probe is a single exec (each exec costs 3-4 round trips) that reports the host's OS,
//! architecture and `$HOME`, creates the private work directory, copies a cached agent into it
//! and checks that copy's sha256, prunes old cached agents and checks sudo. The agent always
//! runs as `<work dir>/mop-agent`, a file of its own in the work directory (never the cached
//! `agent-<sha256>` itself), so `pkill -f '^<work dir>/mop-agent'` kills exactly this run's
//! agent and replacing the cached file cannot change what runs.

use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;

use openssh::Session;
use openssh_sftp_client::file::TokioCompatFile;
use openssh_sftp_client::metadata::Permissions;
use openssh_sftp_client::{Sftp, SftpOptions};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::error::{AgentDirError, AgentFileError};
use super::run_as::{become_check_line, BecomeCheck, BecomeMethod};
use super::shell::{agent_pattern, quote};
use super::SshError;

/// One agent binary on this machine, read once per run (a run may carry one per platform).
#[derive(Debug)]
pub(crate) struct LocalAgent {
    pub(crate) bytes: Arc<[u8]>,
    pub(crate) sha256: String,
    pub(crate) platform: AgentPlatform,
    /// The bytes gzip-compressed, made on the first upload to a host that has `gzip`: the
    /// agent compresses to under half, and every byte uploaded costs CPU on both ends of SSH.
    compressed: tokio::sync::OnceCell<Arc<[u8]>>,
}

/// What `uname -s`/`uname -m` must say for the agent to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgentPlatform {
    pub(crate) os: &'static str,
    /// `case` patterns for `uname -m`.
    pub(crate) machines: &'static [&'static str],
    /// For messages, e.g. `Linux x86_64`.
    pub(crate) description: String,
}

impl LocalAgent {
    /// Reads and hashes the agent file at `path`.
    pub(crate) fn load(path: &Path) -> Result<LocalAgent, SshError> {
        let failure = |detail: String| SshError::AgentBinary {
            path: path.to_path_buf(),
            detail,
        };
        let bytes = std::fs::read(path).map_err(|error| failure(error.to_string()))?;
        LocalAgent::from_bytes(bytes.into()).map_err(|error| failure(error.to_string()))
    }

    /// Hashes the agent; its bytes are uploaded as given here, so the content-addressed name
    /// always matches what lands on the host.
    pub(crate) fn from_bytes(bytes: Arc<[u8]>) -> Result<LocalAgent, AgentFileError> {
        let platform = elf_platform(&bytes)?;
        let sha256 = Sha256::digest(&bytes)
            .iter()
            .fold(String::new(), |mut hex, byte| {
                let _ = write!(hex, "{byte:02x}");
                hex
            });
        Ok(LocalAgent {
            bytes,
            sha256,
            platform,
            compressed: tokio::sync::OnceCell::new(),
        })
    }

    /// The agent gzip-compressed (computed once per run, off the async workers).
    pub(crate) async fn compressed(&self) -> Result<Arc<[u8]>, String> {
        self.compressed
            .get_or_try_init(|| async {
                let bytes = self.bytes.clone();
                tokio::task::spawn_blocking(move || gzip(&bytes))
                    .await
                    .map_err(|error| format!("compressing the agent: {error}"))?
                    .map(Arc::from)
            })
            .await
            .cloned()
    }
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 2),
        flate2::Compression::default(),
    );
    encoder
        .write_all(bytes)
        .and_then(|()| encoder.finish())
        .map_err(|error| format!("compressing the agent: {error}"))
}

/// Reads the OS and machine an ELF executable was built for from its header.
pub(crate) fn elf_platform(bytes: &[u8]) -> Result<AgentPlatform, AgentFileError> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return Err(AgentFileError::NotElf);
    }
    let machine = match bytes[5] {
        1 => u16::from_le_bytes([bytes[18], bytes[19]]),
        2 => u16::from_be_bytes([bytes[18], bytes[19]]),
        other => return Err(AgentFileError::ByteOrder(other)),
    };
    let os = match bytes[7] {
        0 | 3 => "Linux",
        9 => "FreeBSD",
        other => return Err(AgentFileError::OsAbi(other)),
    };
    let machines: &'static [&'static str] = match (machine, bytes[4], bytes[5]) {
        (62, 2, _) => &["x86_64", "amd64"],
        (3, 1, _) => &["i386", "i486", "i586", "i686"],
        (183, 2, _) => &["aarch64", "arm64"],
        (40, 1, _) => &["armv6*", "armv7*", "armv8l"],
        (243, 2, _) => &["riscv64"],
        (21, 2, 1) => &["ppc64le"],
        (22, 2, _) => &["s390x"],
        (other, class, _) => {
            return Err(AgentFileError::Machine {
                machine: other,
                class,
            });
        }
    };
    let description = format!("{os} {}", machines[0].trim_end_matches('*'));
    Ok(AgentPlatform {
        os,
        machines,
        description,
    })
}

/// The shell expression for the agent directory; `$HOME` is expanded on the host.
pub(crate) fn agent_dir_expression(agent_dir: Option<&str>) -> Result<String, AgentDirError> {
    let dir = agent_dir.unwrap_or("$HOME/.mop");
    if dir.is_empty() || dir.chars().any(char::is_control) {
        return Err(AgentDirError::Unprintable);
    }
    let home_relative = ["$HOME", "${HOME}", "~"].iter().find_map(|prefix| {
        dir.strip_prefix(prefix)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    let expression = match home_relative {
        Some(rest) => format!("\"$HOME\"{}", quote_if_any(rest.trim_end_matches('/'))),
        None if dir.starts_with('/') => quote(dir.trim_end_matches('/')),
        None => format!("\"$HOME\"/{}", quote(dir.trim_end_matches('/'))),
    };
    if expression.ends_with("\"$HOME\"") || expression == "''" {
        return Err(AgentDirError::HomeOrRoot {
            dir: dir.to_string(),
        });
    }
    Ok(expression)
}

fn quote_if_any(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        quote(text)
    }
}

/// One agent the probe may pick: the first whose platform matches the host's `uname`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbeAgent<'a> {
    pub(crate) platform: &'a AgentPlatform,
    pub(crate) sha256: &'a str,
}

impl<'a> ProbeAgent<'a> {
    pub(crate) fn of(agent: &'a LocalAgent) -> ProbeAgent<'a> {
        ProbeAgent {
            platform: &agent.platform,
            sha256: &agent.sha256,
        }
    }
}

/// What the probe needs to know.
#[derive(Debug, Clone)]
pub(crate) struct ProbeRequest<'a> {
    /// The agents mop carries; the probe reports which one fits (`agent=<index>`) or stops.
    pub(crate) agents: &'a [ProbeAgent<'a>],
    pub(crate) agent_dir: &'a str,
    pub(crate) token: &'a str,
    pub(crate) cache: bool,
    /// The agent will run as a third user: directories 0711, binary 0755.
    pub(crate) shared: bool,
    /// The become prefix to check (`sudo -S -k -p '' ... --`, su's) and the no-password form
    /// to try first (`sudo -n ... --`), from `run_as::check_prefixes`.
    pub(crate) sudo_prefix: Option<String>,
    pub(crate) sudo_nopasswd_prefix: Option<String>,
    /// Which program the prefixes run, for the rights probe after a failure.
    pub(crate) become_method: BecomeMethod,
    /// Start the agent in the same exec when the cached copy checks out: the become prefix
    /// to start it with (empty for the login user), never one that needs a password or a
    /// check first. See [`fused_start_line`].
    pub(crate) start_prefix: Option<String>,
}

/// The probe as one line of POSIX sh, to be run with `sh -c`.
pub(crate) fn probe_script(request: &ProbeRequest<'_>) -> String {
    // One `case` arm per carried agent: the host's own `uname` picks the agent (index and
    // sha256, for the cache), so a mixed fleet costs no extra round trip. The patterns and the
    // hex digest come from mop's own tables, never from input.
    let arms: Vec<String> = request
        .agents
        .iter()
        .enumerate()
        .map(|(index, agent)| {
            let patterns: Vec<String> = agent
                .platform
                .machines
                .iter()
                .map(|machine| format!("{}/{machine}", agent.platform.os))
                .collect();
            format!(
                "{}) agent={index}; sha={};;",
                patterns.join("|"),
                agent.sha256
            )
        })
        .collect();
    let dir_mode = if request.shared { "711" } else { "700" };
    // Every process the probe starts costs a fork and exec on the host before the agent can
    // start (about 1-10 ms each, more on a loaded host), so the probe asks `uname` once and
    // does the rest with shell builtins where it can.
    let mut script = vec![
        // The agent started by this same exec (see `fused_start_line`) gets the login
        // session's locale back: the shell saves it with builtins before setting its own.
        r#"lc_was=; if [ "${LC_ALL+set}" = set ]; then lc_was=set; lc_old=$LC_ALL; fi"#.to_string(),
        "LC_ALL=C; export LC_ALL".to_string(),
        // `uname -s -m` prints `Linux x86_64`.
        r#"u=$(uname -s -m); os=${u%% *}; arch=${u##* }"#.to_string(),
        // sshd sets `USER` (and `LOGNAME`) from the password database; `id -un` only when
        // neither is a plain user name. The name is only shown in messages.
        r#"user=${USER:-$LOGNAME}; case "$user" in ''|*[!A-Za-z0-9._@-]*) user=$(id -un 2>/dev/null);; esac"#.to_string(),
        r#"printf 'os=%s\narch=%s\nhome=%s\nuser=%s\n' "$os" "$arch" "$HOME" "$user""#.to_string(),
        format!(r#"case "$os/$arch" in {} *) exit 0;; esac"#, arms.join(" ")),
        r#"echo agent=$agent"#.to_string(),
        // The shell keeps the session's umask (an agent started by this exec inherits it, as
        // it does from the login shell); what is created here gets its mode explicitly.
        format!("dir={}", request.agent_dir),
        r#"if [ ! -d "$dir" ]; then (umask 077 && mkdir -p "$dir") || exit 1; fi"#.to_string(),
        r#"set -- $(ls -ldn "$dir")"#.to_string(),
        r#"case "$1" in d????-??-*) ;; *) echo "error=the agent directory $dir is writable by other users (mode $1)"; exit 0;; esac"#.to_string(),
        // `-O`: owned by the effective uid, a shell builtin (dash, bash, busybox).
        r#"if [ ! -O "$dir" ]; then echo "error=the agent directory $dir belongs to uid $3, not to $user"; exit 0; fi"#.to_string(),
    ];
    script.push(format!(r#"work="$dir"/w-{}"#, request.token));
    script.push(format!(r#"mkdir -m {dir_mode} "$work" || exit 1"#));
    // The agent holds this lock while it runs (see [`stale_work_dir_reaper`]): 0600, and
    // readable by a third user's agent.
    if request.shared {
        script.push(r#"(: > "$work"/lock && chmod 644 "$work"/lock) || exit 1"#.to_string());
    } else {
        script.push(r#"(umask 077 && : > "$work"/lock) || exit 1"#.to_string());
    }
    // A third user must traverse the agent directory; made so only once a shared work
    // directory exists in it, so a concurrent cleanup that restores 0700 when no shared work
    // directory is left cannot slip in between.
    if request.shared {
        script.push(r#"chmod 711 "$dir" || exit 1"#.to_string());
    }
    script.push(stale_work_dir_reaper());
    script.push(r#"printf 'dir=%s\nwork=%s\n' "$dir" "$work""#.to_string());
    // `command -v` is a shell builtin: no process for this.
    script.push("if command -v gzip >/dev/null 2>&1; then echo gzip=yes; fi".to_string());
    if request.cache {
        script.push(cached_agent_lines(request.shared));
    }
    if let Some(prefix) = &request.sudo_prefix {
        script.push(become_check_line(
            prefix,
            request.sudo_nopasswd_prefix.as_deref(),
            request.become_method,
        ));
    }
    script.push("echo done=yes".to_string());
    if let (true, Some(prefix)) = (request.cache, &request.start_prefix) {
        script.push(fused_start_line(request.token, prefix));
    }
    script.join("; ")
}

/// The end of a probe that starts the agent itself when the cached copy checked out, saving
/// the second exec (a session, a login shell and 3-4 round trips per host). It prints
/// `start=<token>` and becomes the agent: what follows on stdout is the agent's. Only for a
/// start that needs no check first and reads no password (`run_as::checks_first`), so
/// nothing is written to stdin before the agent runs. A probe that did not take the cache ends
/// as before, and the agent is uploaded and started by its own exec.
fn fused_start_line(token: &str, prefix: &str) -> String {
    format!(
        concat!(
            r#"if [ "$ok" = yes ]; then printf 'start=%s\n' {token}; "#,
            r#"if [ "$lc_was" = set ]; then LC_ALL=$lc_old; else unset LC_ALL; fi; "#,
            r#"exec {prefix}"$work"/mop-agent; fi"#
        ),
        token = token,
        prefix = prefix
    )
}

/// The line a fused probe prints just before it becomes the agent.
pub(crate) fn fused_start_marker(token: &str) -> String {
    format!("start={token}")
}

/// How many `agent-*` files the probe keeps in the agent directory (the most recently used).
pub(crate) const CACHED_AGENTS_KEPT: usize = 3;

/// Part of the probe when caching: takes the cached `agent-$sha` into the work directory and
/// prunes old versions.
///
/// The cached file is never run itself: it is copied into this run's fresh work directory (a
/// new inode in a directory only the login user can write), the sha256 of that copy is checked
/// against the digest mop expects, and that copy is what the start command runs. Replacing or
/// corrupting the cached file at any time, before or after the check, changes nothing about
/// what runs: a copy that does not match (or a host with neither `openssl` nor `sha256sum`) is
/// removed and the probe says `cached=no`, so the controller uploads the agent again and
/// rewrites the cache.
///
/// `openssl dgst` is asked first: it uses the CPU's SHA instructions where coreutils'
/// `sha256sum` does not (5.5 ms against 12 ms of CPU for a 2.9 MB agent here, paid by every
/// host on every run). An answer that does not match (another output format, or a real
/// mismatch) falls back to `sha256sum`, so only a corrupted cache pays for both.
///
/// `cp` gives the copy the cached file's mode (0700 as mop writes it, and it must be executable
/// to be taken) less the session's umask, in a work directory only the login user can enter. Pruning costs processes, so it runs
/// only when more than [`CACHED_AGENTS_KEPT`] `agent-*` files are present (counted with a
/// glob): the one in use is touched first, then the most recently touched are kept.
fn cached_agent_lines(shared: bool) -> String {
    let chmod = if shared {
        r#"&& chmod 755 "$work"/mop-agent "#
    } else {
        ""
    };
    format!(
        concat!(
            r#"cached="$dir"/agent-$sha; ok=no; "#,
            r#"if [ -f "$cached" ] && [ ! -L "$cached" ] && [ -x "$cached" ] "#,
            r#"&& cp "$cached" "$work"/mop-agent 2>/dev/null {chmod}; then "#,
            // From stdin: a file name is never part of the answer (GNU sha256sum escapes the
            // digest of a name with `\` or a newline).
            r#"if command -v openssl >/dev/null 2>&1; then "#,
            r#"set -- $(openssl dgst -sha256 -r < "$work"/mop-agent 2>/dev/null); "#,
            r#"if [ "$1" = "$sha" ]; then ok=yes; fi; fi; "#,
            r#"if [ $ok = no ] && command -v sha256sum >/dev/null 2>&1; then "#,
            r#"set -- $(sha256sum < "$work"/mop-agent); "#,
            r#"if [ "$1" = "$sha" ]; then ok=yes; fi; fi; fi; "#,
            r#"if [ $ok = yes ]; then echo cached=yes; "#,
            r#"else rm -f "$work"/mop-agent; echo cached=no; fi; "#,
            r#"n=0; for old in "$dir"/agent-*; do if [ -f "$old" ]; then n=$((n+1)); fi; done; "#,
            r#"if [ $n -gt {keep} ]; then touch "$cached" 2>/dev/null; "#,
            // `ls -t` lists newest first; names are `agent-<hex>`, mop's own.
            r#"kept=0; for old in $(ls -t "$dir" 2>/dev/null); do case "$old" in agent-*) "#,
            r#"kept=$((kept+1)); if [ $kept -gt {keep} ]; then rm -f -- "$dir/$old"; fi;; esac; done; fi"#
        ),
        chmod = chmod,
        keep = CACHED_AGENTS_KEPT
    )
}

/// How long a work directory's lock must have been left untouched before a dead agent's work
/// directory is removed: it covers the time between the probe and the agent's start (upload,
/// sudo check) and between two agents of one run, when no agent holds the lock.
pub(crate) const STALE_WORK_DIR_GRACE_MINUTES: u32 = 5;

/// Part of the probe: removes other runs' work directories whose agent is dead. Every live
/// agent holds a shared flock on `<work dir>/lock` (and touches it when it starts and stops),
/// so a directory is removed only when its `lock` is a regular file, was not touched for
/// [`STALE_WORK_DIR_GRACE_MINUTES`], and `flock -n` can take it exclusively; the removal runs
/// while holding that lock. Symbolic links are skipped (`w-*` and their `lock`), `rm -rf` does
/// not follow any inside, and only `w-*` entries of the agent directory are candidates. A
/// directory without a lock (another mop version's) is left alone; so is everything when the
/// host has no `flock` or `find`.
pub(crate) fn stale_work_dir_reaper() -> String {
    // Candidates are gathered with builtins; one `find` then names those untouched for the
    // grace period, so a host with many live work directories (one home shared by many
    // concurrent runs) costs one process, not one per directory.
    format!(
        concat!(
            r#"if command -v flock >/dev/null 2>&1 && command -v find >/dev/null 2>&1; then "#,
            r#"set --; for old in "$dir"/w-*; do "#,
            r#"if [ "$old" != "$work" ] && [ -d "$old" ] && [ ! -L "$old" ] && [ -f "$old"/lock ] && [ ! -L "$old"/lock ]; then "#,
            r#"set -- "$@" "$old"/lock; fi; done; "#,
            r#"if [ $# -gt 0 ]; then find "$@" -prune -mmin +{grace} 2>/dev/null | while IFS= read -r lock; do "#,
            // Only the paths given come back; the `case` keeps it so even for odd names.
            r#"case "$lock" in "$dir"/w-*/lock) flock -x -n "$lock" rm -rf -- "${{lock%/lock}}" 2>/dev/null;; esac; "#,
            r#"done; fi; fi"#
        ),
        grace = STALE_WORK_DIR_GRACE_MINUTES
    )
}

/// What the probe found out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProbeReport {
    pub(crate) os: String,
    pub(crate) arch: String,
    pub(crate) home: String,
    pub(crate) user: String,
    /// Which of the request's agents fits the host (`None`: none does).
    pub(crate) agent: Option<usize>,
    pub(crate) dir: Option<String>,
    pub(crate) work: Option<String>,
    pub(crate) cached: Option<bool>,
    /// The host can decompress a gzip-compressed upload.
    pub(crate) gzip: bool,
    pub(crate) sudo: Option<BecomeCheck>,
    pub(crate) error: Option<String>,
    pub(crate) done: bool,
}

pub(crate) fn parse_probe(output: &str) -> ProbeReport {
    let mut report = ProbeReport::default();
    let mut lines = output.lines();
    while let Some(line) = lines.next() {
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        match key {
            "os" => report.os = value.to_string(),
            "arch" => report.arch = value.to_string(),
            "home" => report.home = value.to_string(),
            "user" => report.user = value.to_string(),
            "agent" => report.agent = value.parse().ok(),
            "dir" => report.dir = Some(value.to_string()),
            "work" => report.work = Some(value.to_string()),
            "cached" => report.cached = Some(value == "yes"),
            "gzip" => report.gzip = value == "yes",
            "error" => report.error = Some(value.to_string()),
            "done" => report.done = true,
            "sudo" => {
                report.sudo = Some(match value {
                    "ok" => BecomeCheck::Ok,
                    "nopasswd" => BecomeCheck::NoPassword,
                    _ => BecomeCheck::Failed(lines.by_ref().collect::<Vec<_>>().join("\n")),
                });
            }
            _ => {}
        }
    }
    report
}

/// The refusal for a host none of the carried agents fits (the probe stopped after `uname`).
/// `os` and `arch` come from the host: shown as they are only when they look like a `uname`
/// answer, else escaped, so a hostile host cannot write into the operator's terminal.
pub(crate) fn unsupported_platform(host: &str, os: &str, arch: &str, carried: &str) -> SshError {
    let plain = |text: &str| {
        !text.is_empty()
            && text.len() <= 64
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    let shown = |text: &str| {
        if plain(text) {
            text.to_string()
        } else {
            format!("{text:?}")
        }
    };
    let hint = match crate::agents::rust_target_for(arch) {
        Some(target) if plain(arch) => format!(
            "build mop with an agent for {arch}: `rustup target add {target}`, add a \
             `[target.{target}]` table to crates/mop-agent/targets.toml and reinstall mop \
             (docs/guide.md, \"Hosts of other architectures\"); or point MOP_AGENT_BIN at an \
             agent built for it"
        ),
        _ => "mop knows no Rust target for that machine; MOP_AGENT_BIN can point at an agent \
              built for it"
            .to_string(),
    };
    SshError::UnsupportedArch {
        host: host.to_string(),
        remote: format!("{} {}", shown(os), shown(arch)),
        carried: carried.to_string(),
        hint,
    }
}

/// Where the agent goes and how it is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UploadPlan {
    /// Written first (inside the work directory, so cleanup removes leftovers).
    pub(crate) temp_path: String,
    /// Moved to this once complete and closed: always `<work>/mop-agent`.
    pub(crate) final_path: String,
    pub(crate) mode: u16,
    /// The upload is gzip-compressed; the start command decompresses it into place.
    pub(crate) compressed: bool,
    /// When caching: `<agent dir>/agent-<sha256>`, which the start command (re)writes with a
    /// copy of the installed agent for later runs (best effort: a failure only costs the next
    /// run an upload).
    pub(crate) cache_path: Option<String>,
}

pub(crate) fn upload_plan(
    dir: &str,
    work: &str,
    sha256: &str,
    cache: bool,
    shared: bool,
) -> UploadPlan {
    UploadPlan {
        temp_path: format!("{work}/.mop-agent.part"),
        final_path: format!("{work}/mop-agent"),
        mode: if shared { 0o755 } else { 0o700 },
        compressed: false,
        cache_path: cache.then(|| format!("{dir}/agent-{sha256}")),
    }
}

/// Uploads the agent over SFTP with pipelined writes to `plan.temp_path` (mode already set).
///
/// Moving it into place is left to the command that starts the agent ([`agent_command`] with
/// the plan): the `TokioCompatFile` only closes its server handle from a background task when
/// dropped, and a file still open for writing cannot be executed ("Text file busy"), so the
/// start command copies the upload to a fresh inode and renames that. Folding this into the
/// start saves a round trip.
pub(crate) async fn upload(
    session: Arc<Session>,
    bytes: &[u8],
    plan: &UploadPlan,
) -> Result<(), String> {
    // 4 MiB of writes in flight (default 640 KiB) keeps long links busy: a window of 640 KiB
    // caps a 100 ms link at about 6 MB/s.
    let options = SftpOptions::new()
        .tokio_compat_file_write_limit(NonZeroUsize::new(4 << 20).expect("non-zero"));
    let sftp = Sftp::from_clonable_session(session, options)
        .await
        .map_err(|error| {
            format!("cannot start sftp (is the sftp subsystem enabled in sshd?): {error}")
        })?;
    let written = write_file(&sftp, bytes, plan).await;
    // Not `sftp.close()`: in openssh-sftp-client 0.15 it panics (`Arc::try_unwrap(..).unwrap()`)
    // when the file's drop task still holds the connection, a race seen under load. The data
    // is complete once the flush returned, and the start command copies the upload to a fresh
    // inode, so the server's handle closing later cannot make the exec fail ("Text file busy").
    drop(sftp);
    written
}

async fn write_file(sftp: &Sftp, bytes: &[u8], plan: &UploadPlan) -> Result<(), String> {
    let mut file = sftp
        .options()
        .write(true)
        .create_new(true)
        .open(&plan.temp_path)
        .await
        .map_err(|error| format!("cannot create it: {error}"))?;
    file.set_permissions(Permissions::from(plan.mode))
        .await
        .map_err(|error| format!("cannot chmod it: {error}"))?;
    let mut remote = Box::pin(TokioCompatFile::new(file));
    let mut source = bytes;
    let copied = tokio::io::copy_buf(&mut source, &mut remote).await;
    let flushed = remote.flush().await;
    drop(remote);
    let copied = copied.map_err(|error| format!("write failed: {error}"))?;
    flushed.map_err(|error| format!("write failed: {error}"))?;
    if copied != bytes.len() as u64 {
        return Err(format!("wrote {copied} of {} bytes", bytes.len()));
    }
    Ok(())
}

/// Exit status of the start command when the uploaded agent cannot be moved into place.
pub(crate) const EXIT_MOVE_FAILED: i32 = 111;

/// The command line that starts the agent (`sudo_prefix` from [`super::run_as::RunAs`]), first
/// moving a fresh upload into place. The agent's argv[0] is always `<work>/mop-agent`.
pub(crate) fn agent_command(
    sudo_prefix: &str,
    work: &str,
    fresh_upload: Option<&UploadPlan>,
) -> String {
    let agent = quote(&format!("{work}/mop-agent"));
    match fresh_upload {
        None => format!("{sudo_prefix}{agent}"),
        Some(plan) => sh_command(&format!(
            "{}exec {sudo_prefix}{agent}",
            place_upload_lines(plan)
        )),
    }
}

/// The upload moved into place on its own, for when the agent binary must be there before the
/// start command (it wraps doas for a check, see `run_as.rs`).
pub(crate) fn place_upload_command(plan: &UploadPlan) -> String {
    sh_command(&format!("{}exit 0", place_upload_lines(plan)))
}

/// Shell that turns a fresh upload into `<work>/mop-agent` (and the cache), each line ending
/// in `; `.
fn place_upload_lines(plan: &UploadPlan) -> String {
    // A fresh inode either way (see `upload`): decompressed, or copied.
    let fresh = if plan.compressed {
        format!(
            "(umask 077 && gzip -dc {temp} > {temp}.c) && chmod {mode:o} {temp}.c",
            temp = quote(&plan.temp_path),
            mode = plan.mode
        )
    } else {
        format!("cp -p {temp} {temp}.c", temp = quote(&plan.temp_path))
    };
    // The cache is written through a temporary name and renamed, so a concurrent run never
    // copies a half-written file (it would fail the check and upload anyway). Private (0700)
    // even when the run's copy is 0755 for a third user: only the login user ever reads the
    // cache.
    let cache = match &plan.cache_path {
        Some(path) => format!(
            "{{ (umask 077 && cp {final_path} {cache}.$$) && chmod 700 {cache}.$$ && mv -f {cache}.$$ {cache}; }} 2>/dev/null || rm -f {cache}.$$; ",
            final_path = quote(&plan.final_path),
            cache = quote(path)
        ),
        None => String::new(),
    };
    format!(
        "{fresh} && mv -f {temp}.c {} && rm -f {temp} || {{ echo \"mop: cannot move the uploaded agent into place\" >&2; exit {EXIT_MOVE_FAILED}; }}; {cache}",
        quote(&plan.final_path),
        temp = quote(&plan.temp_path),
    )
}

/// One cleanup exec: kill this run's agents (as every identity they ran under, in order), then
/// remove the work directory and the agent directory if that leaves it empty.
pub(crate) fn cleanup_script(kill_prefixes: &[String], work: &str, dir: &str) -> String {
    let pattern = quote(&agent_pattern(&format!("{work}/mop-agent")));
    let mut script = String::from("LC_ALL=C; export LC_ALL; ");
    for prefix in kill_prefixes {
        let _ = write!(script, "{prefix}{}; ", kill_script(&pattern));
    }
    let _ = write!(
        script,
        "rm -rf {}; rmdir {} 2>/dev/null || {}; ",
        quote(work),
        quote(dir),
        restore_private_mode(dir)
    );
    let _ = write!(script, "if [ -e {} ]; then echo left=yes; fi", quote(work));
    script
}

/// Shell that puts the agent directory back to 0700 when the probe made it 0711 for a third
/// user and no shared work directory (0711) is left in it; other modes are the operator's.
fn restore_private_mode(dir: &str) -> String {
    let dir = quote(dir);
    format!(
        concat!(
            r#"{{ set -- $(ls -ldn {dir} 2>/dev/null); case "$1" in drwx--x--x*) shared=; "#,
            r#"for d in {dir}/w-*; do [ -d "$d" ] || continue; set -- $(ls -ldn "$d"); "#,
            r#"case "$1" in d????????x*) shared=yes;; esac; done; "#,
            r#"[ -n "$shared" ] || chmod 700 {dir};; esac; }}"#
        ),
        dir = dir
    )
}

/// The same, as killer command for one agent (used by `AgentChild::kill`).
pub(crate) fn kill_command(sudo_prefix: &str, work: &str) -> String {
    let pattern = quote(&agent_pattern(&format!("{work}/mop-agent")));
    format!("{sudo_prefix}{}", kill_script(&pattern))
}

/// Kills every session an agent leads (the agent calls setsid at start, and the commands it
/// runs sit in their own process groups inside that session), then the agents themselves.
fn kill_script(quoted_pattern: &str) -> String {
    let inner = format!(
        "for p in $(pgrep -f {quoted_pattern}); do pkill -KILL -s \"$p\"; done; pkill -KILL -f {quoted_pattern}"
    );
    format!("sh -c {}", quote(&inner))
}

/// Wraps a script for the login shell, whatever it is: `sh -c '<script>'`.
pub(crate) fn sh_command(script: &str) -> String {
    format!("sh -c {}", quote(script))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(class: u8, data: u8, osabi: u8, machine: u16) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = class;
        bytes[5] = data;
        bytes[7] = osabi;
        bytes[18..20].copy_from_slice(&machine.to_le_bytes());
        bytes
    }

    #[test]
    fn reads_the_agent_platform_from_the_elf_header() {
        let check = |bytes: &[u8], expected: &str| {
            let described = match elf_platform(bytes) {
                Ok(platform) => platform.description,
                Err(error) => error.to_string(),
            };
            assert_eq!(described, expected);
        };
        check(&elf(2, 1, 0, 62), "Linux x86_64");
        check(&elf(2, 1, 3, 183), "Linux aarch64");
        check(&elf(1, 1, 0, 40), "Linux armv6");
        check(&elf(2, 1, 9, 62), "FreeBSD x86_64");
        check(&elf(2, 1, 0, 999), "unsupported ELF machine 999 (class 2)");
        check(
            b"#!/bin/sh\necho hi\n",
            "not an ELF executable (the agent must be built for the hosts, e.g. Linux)",
        );
        let this_test = std::fs::read(std::env::current_exe().expect("exe")).expect("read");
        let platform = elf_platform(&this_test).expect("this test is an ELF binary");
        assert_eq!(platform.os, "Linux");
    }

    #[test]
    fn agent_dir_expressions() {
        let check = |input: Option<&str>, expected: &str| {
            let output = agent_dir_expression(input).unwrap_or_else(|error| error.to_string());
            assert_eq!(output, expected, "{input:?}");
        };
        check(None, r#""$HOME"/.mop"#);
        check(Some("~/.cache/mop/"), r#""$HOME"/.cache/mop"#);
        check(Some("${HOME}/my dir"), r#""$HOME"'/my dir'"#);
        check(Some("/var/tmp/mop"), "/var/tmp/mop");
        check(Some("relative"), r#""$HOME"/relative"#);
        check(Some("$HOMEx"), r#""$HOME"/'$HOMEx'"#);
        check(Some("~"), "the agent directory `~` is a home or root directory itself; use a subdirectory such as `$HOME/.mop`");
        check(Some("/"), "the agent directory `/` is a home or root directory itself; use a subdirectory such as `$HOME/.mop`");
    }

    fn platform() -> AgentPlatform {
        AgentPlatform {
            os: "Linux",
            machines: &["x86_64", "amd64"],
            description: "Linux x86_64".into(),
        }
    }

    fn probe_agent(platform: &AgentPlatform) -> ProbeAgent<'_> {
        ProbeAgent {
            platform,
            sha256: "f00d",
        }
    }

    fn request<'a>(agents: &'a [ProbeAgent<'a>]) -> ProbeRequest<'a> {
        ProbeRequest {
            agents,
            agent_dir: r#""$HOME"/.mop"#,
            token: "abc123",
            cache: false,
            shared: false,
            sudo_prefix: None,
            sudo_nopasswd_prefix: None,
            become_method: BecomeMethod::Sudo,
            start_prefix: None,
        }
    }

    /// Runs the probe with the local sh against a temporary `$HOME`.
    fn run_probe(request: &ProbeRequest<'_>, home: &Path) -> ProbeReport {
        run_probe_with_path(request, home, None)
    }

    /// The same with `PATH` set to `path` (to take programs away).
    fn run_probe_with_path(
        request: &ProbeRequest<'_>,
        home: &Path,
        path: Option<&Path>,
    ) -> ProbeReport {
        let mut command = std::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(probe_script(request))
            .env("HOME", home);
        if let Some(path) = path {
            command.env("PATH", path);
        }
        let output = command.output().expect("sh runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        parse_probe(&String::from_utf8_lossy(&output.stdout))
    }

    #[test]
    fn probe_creates_a_private_work_dir() {
        let home = tempfile::tempdir().expect("temp dir");
        let platform = platform();
        let agents = [probe_agent(&platform)];
        let report = run_probe(&request(&agents), home.path());
        let dir = home.path().join(".mop");
        let work = dir.join("w-abc123");
        assert_eq!(report.os, "Linux");
        assert!(report.gzip, "gzip is installed here: {report:?}");
        assert_eq!(report.home, home.path().to_string_lossy());
        assert_eq!(report.dir.as_deref(), Some(dir.to_string_lossy().as_ref()));
        assert_eq!(
            report.work.as_deref(),
            Some(work.to_string_lossy().as_ref())
        );
        assert!(report.done);
        assert_eq!(report.cached, None);
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| {
            std::fs::metadata(path)
                .expect("exists")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&work), 0o700);
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// A cached agent is copied into the work directory and used only when the copy's sha256
    /// is the expected one; a corrupted cache is not used (the controller uploads again).
    #[test]
    fn probe_copies_a_verified_cached_agent_and_refuses_unsafe_dirs() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().expect("temp dir");
        let platform = platform();
        let digest = sha256_hex(b"agent");
        let agents = [ProbeAgent {
            platform: &platform,
            sha256: &digest,
        }];
        let cached = ProbeRequest {
            cache: true,
            ..request(&agents)
        };
        assert_eq!(run_probe(&cached, home.path()).cached, Some(false));
        let cache_file = home.path().join(format!(".mop/agent-{digest}"));
        write_executable(&cache_file, b"agent");
        // Not executable (mop writes its cache 0700): not taken, the agent is sent again.
        std::fs::set_permissions(&cache_file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        let not_executable = ProbeRequest {
            token: "0e0e01",
            ..cached.clone()
        };
        assert_eq!(run_probe(&not_executable, home.path()).cached, Some(false));
        std::fs::set_permissions(&cache_file, std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let again = ProbeRequest {
            token: "def456",
            ..cached.clone()
        };
        assert_eq!(run_probe(&again, home.path()).cached, Some(true));
        let copy = home.path().join(".mop/w-def456/mop-agent");
        assert!(
            !std::fs::symlink_metadata(&copy)
                .expect("copied")
                .file_type()
                .is_symlink(),
            "a copy of its own, not a link to the cache"
        );
        assert_eq!(std::fs::read(&copy).expect("read"), b"agent");
        assert_eq!(mode(&copy), 0o700);
        // Corrupted (or replaced by another file): not used, nothing left in the work dir.
        std::fs::write(&cache_file, b"agenT").expect("write");
        let corrupted = ProbeRequest {
            token: "0bad01",
            ..cached.clone()
        };
        assert_eq!(run_probe(&corrupted, home.path()).cached, Some(false));
        assert!(!home.path().join(".mop/w-0bad01/mop-agent").exists());
        // An agent directory whose name sha256sum would escape (`\`) is checked all the same.
        let odd_dir = home.path().join("odd\\dir");
        std::fs::create_dir(&odd_dir).expect("mkdir");
        write_executable(&odd_dir.join(format!("agent-{digest}")), b"agent");
        let odd = ProbeRequest {
            agent_dir: r#""$HOME"/'odd\dir'"#,
            token: "0dd001",
            ..cached.clone()
        };
        assert_eq!(run_probe(&odd, home.path()).cached, Some(true));

        let shared_tmp = home.path().join("shared");
        std::fs::create_dir(&shared_tmp).expect("mkdir");
        std::fs::set_permissions(&shared_tmp, std::fs::Permissions::from_mode(0o1777))
            .expect("chmod");
        let unsafe_dir = ProbeRequest {
            agent_dir: r#""$HOME"/shared"#,
            ..request(&agents)
        };
        let report = run_probe(&unsafe_dir, home.path());
        assert!(
            report
                .error
                .as_deref()
                .is_some_and(|e| e.contains("is writable by other users")),
            "{report:?}"
        );
        assert_eq!(report.work, None);
    }

    /// The check asks `openssl` first and falls back to `sha256sum`: a host with only one of
    /// them takes a good cache and refuses a corrupted one; a host with neither uploads.
    #[test]
    fn cache_check_works_with_either_hasher_and_refuses_without_both() {
        let home = tempfile::tempdir().expect("temp dir");
        let platform = platform();
        let digest = sha256_hex(b"agent");
        let agents = [ProbeAgent {
            platform: &platform,
            sha256: &digest,
        }];
        let cache_file = home.path().join(format!(".mop/agent-{digest}"));
        std::fs::create_dir(home.path().join(".mop")).expect("mkdir");
        write_executable(&cache_file, b"agent");
        let tools = [
            "uname", "id", "mkdir", "ls", "cp", "chmod", "rm", "touch", "find", "flock", "gzip",
        ];
        let mut token = 0;
        for hashers in [&["openssl"][..], &["sha256sum"], &[]] {
            let bin = tempfile::tempdir().expect("temp dir");
            for tool in tools.iter().chain(hashers) {
                let found = ["/usr/bin", "/bin"]
                    .iter()
                    .map(|dir| Path::new(dir).join(tool))
                    .find(|path| path.exists())
                    .unwrap_or_else(|| panic!("{tool} is installed here"));
                std::os::unix::fs::symlink(found, bin.path().join(tool)).expect("link");
            }
            for (content, usable) in [(&b"agent"[..], !hashers.is_empty()), (b"agenT", false)] {
                std::fs::write(&cache_file, content).expect("write");
                token += 1;
                let name = format!("c{token:05}");
                let request = ProbeRequest {
                    cache: true,
                    token: &name,
                    ..request(&agents)
                };
                let report = run_probe_with_path(&request, home.path(), Some(bin.path()));
                assert_eq!(report.cached, Some(usable), "{hashers:?}: {report:?}");
                let copy = home.path().join(format!(".mop/w-{name}/mop-agent"));
                assert_eq!(copy.exists(), usable, "{hashers:?}");
            }
        }
    }

    #[test]
    fn probe_stops_on_another_platform() {
        let home = tempfile::tempdir().expect("temp dir");
        let other = AgentPlatform {
            os: "Linux",
            machines: &["s390x"],
            description: "Linux s390x".into(),
        };
        let agents = [probe_agent(&other)];
        let report = run_probe(&request(&agents), home.path());
        assert!(!report.arch.is_empty());
        assert_eq!(report.agent, None);
        assert!(!report.done);
        assert!(!home.path().join(".mop").exists());
        // What the operator reads: this machine's real architecture, and what mop carries.
        let error = unsupported_platform("web1", &report.os, &report.arch, "Linux s390x");
        assert!(
            error.to_string().starts_with(&format!(
                "web1 runs Linux {}, and this mop carries agents for Linux s390x only\n  hint: ",
                report.arch
            )),
            "{error}"
        );
    }

    #[test]
    fn probe_picks_the_agent_of_the_hosts_architecture() {
        // Two agents carried; the host's own `uname` picks the second one, and the cache link
        // names that agent's digest.
        let home = tempfile::tempdir().expect("temp dir");
        let other = AgentPlatform {
            os: "Linux",
            machines: &["s390x"],
            description: "Linux s390x".into(),
        };
        let this = elf_platform(
            &std::fs::read(std::env::current_exe().expect("current exe")).expect("readable"),
        )
        .expect("this test is an ELF binary");
        let agents = [
            ProbeAgent {
                platform: &other,
                sha256: "0ther",
            },
            ProbeAgent {
                platform: &this,
                sha256: "7415",
            },
        ];
        let cached = ProbeRequest {
            cache: true,
            ..request(&agents)
        };
        std::fs::create_dir(home.path().join(".mop")).expect("mkdir");
        std::fs::write(home.path().join(".mop/agent-0ther"), b"other").expect("write");
        std::fs::write(home.path().join(".mop/agent-7415"), b"this").expect("write");
        let report = run_probe(&cached, home.path());
        assert_eq!(report.agent, Some(1), "{report:?}");
        assert!(report.done, "{report:?}");
        // The cache lookup used that agent's digest (and found a file that does not match it).
        assert_eq!(report.cached, Some(false), "{report:?}");
    }

    #[test]
    fn another_architecture_is_refused_naming_it_and_how_to_build_for_it() {
        let error = unsupported_platform("pi4", "Linux", "aarch64", "Linux x86_64");
        assert_eq!(
            error.to_string(),
            "pi4 runs Linux aarch64, and this mop carries agents for Linux x86_64 only\n  \
             hint: build mop with an agent for aarch64: `rustup target add \
             aarch64-unknown-linux-gnu`, add a `[target.aarch64-unknown-linux-gnu]` table to \
             crates/mop-agent/targets.toml and reinstall mop (docs/guide.md, \"Hosts of other \
             architectures\"); or point MOP_AGENT_BIN at an agent built for it"
        );
        assert_eq!(error.host(), Some("pi4"));
        // A machine mop has no target for, and a host answering with terminal escapes.
        let odd = unsupported_platform("box", "Linux", "mips\u{1b}[2J", "Linux x86_64");
        assert_eq!(
            odd.to_string(),
            "box runs Linux \"mips\\u{1b}[2J\", and this mop carries agents for Linux x86_64 only\n  \
             hint: mop knows no Rust target for that machine; MOP_AGENT_BIN can point at an \
             agent built for it"
        );
    }

    #[test]
    fn probe_reports_sudo_failures_with_their_output() {
        let report = parse_probe("os=Linux\narch=x86_64\nhome=/h\nwork=/h/.mop/w-1\nsudo=fail\nsudo: a password is required\n");
        assert_eq!(
            report.sudo,
            Some(BecomeCheck::Failed("sudo: a password is required".into()))
        );
        assert!(!report.done);
    }

    /// The start command puts a fresh upload in place (decompressing it when compressed) and
    /// runs it; run here with `sh`, a script standing in for the agent.
    #[test]
    fn start_command_installs_plain_and_compressed_uploads() {
        use std::os::unix::fs::PermissionsExt;
        let agent = b"#!/bin/sh\necho \"agent running as $0\"\n";
        for (compressed, cache) in [(false, false), (true, false), (true, true)] {
            let home = tempfile::tempdir().expect("temp dir");
            let work = home.path().join("w-1");
            std::fs::create_dir(&work).expect("work dir");
            let work = work.to_str().expect("utf-8 path").to_string();
            let dir = home.path().to_str().expect("utf-8 path");
            let mut plan = upload_plan(dir, &work, "abc", cache, false);
            plan.compressed = compressed;
            let content = if compressed {
                gzip(agent).expect("gzip")
            } else {
                agent.to_vec()
            };
            // Through a child process: the script runs while other test threads fork.
            mop_testhosts::write_executable(Path::new(&plan.temp_path), &content, 0o700)
                .expect("upload");
            let command = agent_command("", &work, Some(&plan));
            let output = std::process::Command::new("sh")
                .arg("-c")
                .arg(&command)
                .output()
                .expect("run sh");
            assert!(output.status.success(), "{command}: {output:?}");
            assert_eq!(
                String::from_utf8_lossy(&output.stdout),
                format!("agent running as {work}/mop-agent\n")
            );
            let installed = std::fs::metadata(&plan.final_path).expect("installed agent");
            assert_eq!(installed.permissions().mode() & 0o777, 0o700);
            assert_eq!(std::fs::read(&plan.final_path).expect("read"), agent);
            let mut left: Vec<String> = std::fs::read_dir(&work)
                .expect("list")
                .map(|entry| {
                    entry
                        .expect("entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            left.sort();
            assert_eq!(left, ["mop-agent"], "compressed: {compressed}");
            // With caching, the cache holds a copy of what was installed (a separate inode).
            let cached = home.path().join("agent-abc");
            assert_eq!(cached.exists(), cache);
            if cache {
                assert_eq!(std::fs::read(&cached).expect("read"), agent);
            }
        }
    }

    /// A probe asked to start the agent does so only from a cache that checks out, after its
    /// own lines and a marker, and gives it the session's locale and umask (not the probe's
    /// `LC_ALL=C`, nor the 077 it creates its files with).
    #[test]
    fn a_probe_that_takes_the_cache_becomes_the_agent_in_the_sessions_environment() {
        let home = tempfile::tempdir().expect("temp dir");
        let platform = platform();
        let agent =
            b"#!/bin/sh\nprintf 'agent lc=%s umask=%s\\n' \"${LC_ALL-unset}\" \"$(umask)\"\n";
        let digest = sha256_hex(agent);
        let agents = [ProbeAgent {
            platform: &platform,
            sha256: &digest,
        }];
        let run = |token: &str, lc_all: Option<&str>| {
            let request = ProbeRequest {
                token,
                cache: true,
                start_prefix: Some(String::new()),
                ..request(&agents)
            };
            let mut command = std::process::Command::new("/bin/sh");
            command
                .arg("-c")
                .arg(r#"umask 027; exec /bin/sh -c "$1""#)
                .arg("sh")
                .arg(probe_script(&request))
                .env("HOME", home.path())
                .env_remove("LC_ALL");
            if let Some(lc_all) = lc_all {
                command.env("LC_ALL", lc_all);
            }
            let output = command.output().expect("sh runs");
            assert!(output.status.success(), "{output:?}");
            String::from_utf8(output.stdout).expect("utf-8")
        };
        // Nothing cached yet: the probe ends as it always did, the agent is sent.
        let first = run("0f0f01", None);
        assert!(!first.contains("start="), "{first}");
        assert_eq!(parse_probe(&first).cached, Some(false));
        write_executable(&home.path().join(format!(".mop/agent-{digest}")), agent);
        let started = run("0f0f02", None);
        let (probe, rest) = started
            .split_once(&format!("{}\n", fused_start_marker("0f0f02")))
            .unwrap_or_else(|| panic!("no start marker: {started}"));
        let report = parse_probe(probe);
        assert_eq!(report.cached, Some(true), "{probe}");
        assert!(report.done);
        assert_eq!(rest, "agent lc=unset umask=0027\n");
        let with_locale = run("0f0f03", Some("C.UTF-8"));
        assert!(
            with_locale.ends_with("start=0f0f03\nagent lc=C.UTF-8 umask=0027\n"),
            "{with_locale}"
        );
        // A cache that does not check out is not started.
        write_executable(&home.path().join(format!(".mop/agent-{digest}")), b"other");
        let corrupted = run("0f0f04", None);
        assert!(!corrupted.contains("start="), "{corrupted}");
        assert_eq!(parse_probe(&corrupted).cached, Some(false));
    }

    /// A cached agent as mop writes it: owner-only and executable.
    fn write_executable(path: &Path, bytes: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, bytes).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(path)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777
    }

    fn set_age(path: &Path, minutes: u64) {
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(minutes * 60);
        std::fs::File::open(path)
            .and_then(|file| file.set_modified(when))
            .expect("set mtime");
    }

    /// The probe's reaper removes exactly the work directories whose agent is dead: lock free
    /// and untouched for the grace. A lock held by a live agent (an flock here, as the agent
    /// takes it), a fresh lock, no lock, a symlink, or the probe's own directory are kept.
    #[test]
    fn probe_removes_only_dead_agents_work_dirs() {
        let home = tempfile::tempdir().expect("temp dir");
        let dir = home.path().join(".mop");
        let platform = platform();
        let agents = [probe_agent(&platform)];
        let work_dir = |token: &str, age: Option<u64>| {
            let work = dir.join(format!("w-{token}"));
            std::fs::create_dir_all(work.join("sub")).expect("mkdir");
            std::fs::write(work.join("mop-agent"), b"agent").expect("write");
            if let Some(minutes) = age {
                std::fs::write(work.join("lock"), b"").expect("write");
                set_age(&work.join("lock"), minutes);
            }
            work
        };
        let dead = work_dir("dead01", Some(10));
        let live = work_dir("live01", Some(10));
        let live_lock = std::fs::File::open(live.join("lock")).expect("open");
        // SAFETY: flock(2) on a descriptor the test owns.
        assert_eq!(
            unsafe {
                libc::flock(
                    std::os::fd::AsRawFd::as_raw_fd(&live_lock),
                    libc::LOCK_SH | libc::LOCK_NB,
                )
            },
            0
        );
        let fresh = work_dir("fresh1", Some(1));
        let lockless = work_dir("nolock", None);
        set_age(&lockless, 60 * 24);
        let outside = home.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::write(outside.join("lock"), b"").expect("write");
        set_age(&outside.join("lock"), 10);
        std::os::unix::fs::symlink(&outside, dir.join("w-link01")).expect("symlink");

        let report = run_probe(&request(&agents), home.path());
        assert!(report.done, "{report:?}");
        assert!(!dead.exists(), "a dead agent's work directory is removed");
        for kept in [&live, &fresh, &lockless, &outside] {
            assert!(
                kept.join("mop-agent").exists() || kept == &outside,
                "{kept:?}"
            );
            assert!(kept.exists(), "{kept:?} is kept");
        }
        assert!(outside.join("lock").exists(), "a symlink is not followed");
        let own = dir.join("w-abc123");
        assert_eq!(mode(&own.join("lock")), 0o600);
        // Once the live agent is gone, its directory goes at the next contact.
        drop(live_lock);
        let again = ProbeRequest {
            token: "def456",
            ..request(&agents)
        };
        run_probe(&again, home.path());
        assert!(!live.exists());
        assert!(fresh.exists() && own.exists(), "their locks are fresh");
    }

    /// For a third user the probe opens the agent directory to 0711; cleaning up the last
    /// shared work directory closes it again even when a cached agent keeps it non-empty.
    #[test]
    fn cleanup_restores_a_private_agent_dir() {
        let home = tempfile::tempdir().expect("temp dir");
        let platform = platform();
        let agents = [probe_agent(&platform)];
        let shared = ProbeRequest {
            shared: true,
            ..request(&agents)
        };
        let report = run_probe(&shared, home.path());
        let dir = home.path().join(".mop");
        let work = report.work.expect("work dir");
        assert_eq!(mode(&dir), 0o711);
        assert_eq!(mode(Path::new(&work)), 0o711);
        assert_eq!(mode(&Path::new(&work).join("lock")), 0o644);
        std::fs::write(dir.join("agent-f00d"), b"cached").expect("write");
        let second = run_probe(
            &ProbeRequest {
                token: "def456",
                ..shared.clone()
            },
            home.path(),
        );
        let cleanup = |work: &str| {
            let script = cleanup_script(&[], work, &dir.to_string_lossy());
            let output = std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .output()
                .expect("sh runs");
            assert!(output.status.success(), "{output:?}");
        };
        cleanup(&work);
        assert_eq!(mode(&dir), 0o711, "another shared work directory is left");
        cleanup(&second.work.expect("work dir"));
        assert_eq!(mode(&dir), 0o700);
        assert!(dir.join("agent-f00d").exists());
    }

    /// The probe keeps the most recently used cached agents (the one it uses counts as just
    /// used) and removes the others; work directories and other files are not touched.
    #[test]
    fn probe_prunes_old_cached_agents() {
        let home = tempfile::tempdir().expect("temp dir");
        let dir = home.path().join(".mop");
        std::fs::create_dir(&dir).expect("mkdir");
        let platform = platform();
        let digest = sha256_hex(b"current");
        let agents = [ProbeAgent {
            platform: &platform,
            sha256: &digest,
        }];
        write_executable(&dir.join(format!("agent-{digest}")), b"current");
        set_age(&dir.join(format!("agent-{digest}")), 60 * 24 * 30);
        for (name, days) in [
            ("agent-a1", 1),
            ("agent-b2", 2),
            ("agent-c3", 3),
            ("agent-d4", 4),
        ] {
            std::fs::write(dir.join(name), b"old").expect("write");
            set_age(&dir.join(name), 60 * 24 * days);
        }
        std::fs::write(dir.join("notes"), b"mine").expect("write");
        set_age(&dir.join("notes"), 60 * 24 * 40);
        let report = run_probe(
            &ProbeRequest {
                cache: true,
                ..request(&agents)
            },
            home.path(),
        );
        assert_eq!(report.cached, Some(true), "{report:?}");
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        left.sort();
        let mut expected = vec![
            "agent-a1".to_string(),
            "agent-b2".to_string(),
            format!("agent-{digest}"),
            "notes".to_string(),
            "w-abc123".to_string(),
        ];
        expected.sort();
        assert_eq!(left, expected);
        // Without caching the probe leaves the cache alone.
        std::fs::write(dir.join("agent-e5"), b"old").expect("write");
        run_probe(
            &ProbeRequest {
                token: "def456",
                ..request(&agents)
            },
            home.path(),
        );
        assert!(dir.join("agent-e5").exists());
    }

    #[test]
    fn cleanup_kills_by_anchored_path_then_removes() {
        let script = cleanup_script(&["sudo -n -- ".to_string()], "/h/.mop/w-1", "/h/.mop");
        assert_eq!(
            script,
            r#"LC_ALL=C; export LC_ALL; sudo -n -- sh -c 'for p in $(pgrep -f '\''^/h/\.mop/w-1/mop-agent$'\''); do pkill -KILL -s "$p"; done; pkill -KILL -f '\''^/h/\.mop/w-1/mop-agent$'\'''; rm -rf /h/.mop/w-1; rmdir /h/.mop 2>/dev/null || { set -- $(ls -ldn /h/.mop 2>/dev/null); case "$1" in drwx--x--x*) shared=; for d in /h/.mop/w-*; do [ -d "$d" ] || continue; set -- $(ls -ldn "$d"); case "$1" in d????????x*) shared=yes;; esac; done; [ -n "$shared" ] || chmod 700 /h/.mop;; esac; }; if [ -e /h/.mop/w-1 ]; then echo left=yes; fi"#
        );
    }
}
