//! Opening and closing one ControlMaster connection per host, and reading ssh's complaints.
//!
//! The master is started by the `openssh` crate (`ssh -M -f -N -F <run config> mop-hN`) with
//! its socket in the run directory; a symlink at the host's `ControlPath` from the run config
//! then lets the `ssh -W` of hosts that jump through this one multiplex over the same master,
//! so several hosts behind one bastion share one connection to it.
//!
//! A persistent master (`--persist`) is started by mop itself (`ssh -M -f -N -S <socket>`, the
//! same flags the crate uses) so that its socket, log and config sit in the connection
//! directory instead of the run directory; sessions over it are `Session::resume_mux`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use openssh::{KnownHosts, Session, SessionBuilder};

use super::askpass::{askpass_environment, PasswordServer};
use super::config::{timeout_seconds, HostKeyPolicy, PlannedHost};
use super::error::ForceExitError;
use super::persist::{
    master_pid, resume, unix_now, ControlDir, MasterIdentity, PersistedConnection,
};
use super::shell::{quote, quote_local_path};
use super::SshError;

/// How long the TCP connect and the banner exchange may each take when the host sets no
/// `mop_connect_timeout`: Ansible's default, so a blackholed host is declared unreachable in
/// about ten seconds instead of the kernel's minute of SYN retries, while the others go on.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The overall deadline for one login: ssh's `ConnectTimeout` bounds the TCP connect and the
/// banner exchange separately, authentication adds a few round trips.
fn login_deadline(host: &PlannedHost) -> Duration {
    host.spec.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT) * 2 + Duration::from_secs(5)
}

/// How a master that mop starts itself logs in with a password (`askpass.rs`): the program
/// ssh runs as askpass (the `mop` binary) and the socket it asks.
pub(crate) struct PasswordLogin<'a> {
    pub(crate) program: &'a Path,
    pub(crate) socket: PathBuf,
}

/// Starts the master connection for `host` (its jump hosts must be up already). A host with
/// a password gets a master mop starts itself (the `openssh` crate cannot give ssh an
/// environment, and it forces `BatchMode=yes`), in the run directory all the same.
pub(crate) async fn open_session(
    host: &PlannedHost,
    config_file: &Path,
    run_dir: &Path,
    askpass: &Path,
) -> Result<Session, SshError> {
    if host.spec.password.is_some() {
        return open_password_session(host, config_file, run_dir, askpass).await;
    }
    let mut builder = SessionBuilder::default();
    // The crate repeats StrictHostKeyChecking on the command line: say the same as the config.
    builder
        .known_hosts_check(match host.spec.host_keys {
            HostKeyPolicy::Strict => KnownHosts::Strict,
            HostKeyPolicy::AcceptNew => KnownHosts::Add,
            HostKeyPolicy::Off => KnownHosts::Accept,
        })
        .config_file(config_file)
        .control_directory(run_dir);
    let deadline = login_deadline(host);
    let session = match tokio::time::timeout(deadline, builder.connect_mux(&host.alias)).await {
        Err(_elapsed) => {
            return Err(SshError::Timeout {
                host: host.spec.name.clone(),
                address: host.spec.display_address(),
                seconds: timeout_seconds(deadline),
            })
        }
        Ok(Err(error)) => return Err(classify_connect_error(host, &error_text(&error))),
        Ok(Ok(session)) => session,
    };
    if let Err(error) = link_control_path(host, session.control_socket()) {
        let _ = session.close().await;
        return Err(error);
    }
    Ok(session)
}

/// The master of a password host, in the run directory: `<alias>.master.sock` with its log
/// beside it (`<alias>.master.log`, where `lost.rs` looks), `ControlPersist=yes` as the crate
/// would; closed like the crate's masters and reaped with the run directory.
async fn open_password_session(
    host: &PlannedHost,
    config_file: &Path,
    run_dir: &Path,
    askpass: &Path,
) -> Result<Session, SshError> {
    let socket = run_dir.join(format!("{}.master.sock", host.alias));
    let log = run_dir.join(format!("{}.master.log", host.alias));
    let login = PasswordLogin {
        program: askpass,
        socket: run_dir.join(format!("{}.askpass", host.alias)),
    };
    let master = MasterCommand {
        log: &log,
        socket: &socket,
        persist: "ControlPersist=yes",
        config: config_file,
    };
    start_master(host, master, Some(&login)).await?;
    let session = resume(&socket);
    if let Err(error) = link_control_path(host, &socket) {
        let _ = force_exit_master(&socket).await;
        return Err(error);
    }
    Ok(session)
}

/// A master that mop starts itself: `ssh -E LOG -S SOCKET -M -f -N -o PERSIST -o BatchMode=..
/// -F CONFIG ALIAS`, the flags the `openssh` crate uses for its own.
struct MasterCommand<'a> {
    log: &'a Path,
    socket: &'a Path,
    /// `ControlPersist=...`.
    persist: &'a str,
    config: &'a Path,
}

/// Runs a master command until ssh has logged in and gone to the background. With `password`,
/// the password is served once over its socket while the login runs (`askpass.rs`); a failed
/// login is then told apart: a password rejected, or a host that never asked for one.
async fn start_master(
    host: &PlannedHost,
    master: MasterCommand<'_>,
    password: Option<&PasswordLogin<'_>>,
) -> Result<(), SshError> {
    let MasterCommand {
        log,
        socket,
        persist,
        config,
    } = master;
    let password = password.zip(host.spec.password.as_ref());
    // Batch mode stays on (no prompt at all) unless askpass is there to answer.
    let batch_mode = if password.is_some() {
        "BatchMode=no"
    } else {
        "BatchMode=yes"
    };
    let mut command = tokio::process::Command::new("ssh");
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .arg("-E")
        .arg(log)
        .arg("-S")
        .arg(socket)
        .args(["-M", "-f", "-N", "-o", persist, "-o", batch_mode, "-F"])
        .arg(config)
        .arg(&host.alias)
        .kill_on_drop(true);
    let failed = |detail: String| SshError::Connect {
        host: host.spec.name.clone(),
        address: host.spec.display_address(),
        detail,
    };
    let server = match password {
        Some((login, secret)) => {
            let server = PasswordServer::start(&login.socket, secret).map_err(|error| {
                failed(format!(
                    "cannot listen on `{}` for the password: {error}",
                    login.socket.display()
                ))
            })?;
            for (name, value) in askpass_environment(login.program, &login.socket) {
                command.env(name, value);
            }
            Some(server)
        }
        None => None,
    };
    let deadline = login_deadline(host);
    let status = match tokio::time::timeout(deadline, command.status()).await {
        Err(_elapsed) => {
            // The login may still complete and daemonize: stop whatever it left.
            reap_run_processes(socket, Duration::ZERO).await;
            return Err(SshError::Timeout {
                host: host.spec.name.clone(),
                address: host.spec.display_address(),
                seconds: timeout_seconds(deadline),
            });
        }
        Ok(Err(error)) => return Err(failed(format!("cannot run ssh: {error}"))),
        Ok(Ok(status)) => status,
    };
    let password_asked = server.map(PasswordServer::finish);
    let host_spec_user = host.spec.user.clone();
    if status.success() {
        return Ok(());
    }
    let output = std::fs::read_to_string(log).unwrap_or_default();
    let error = classify_connect_error(host, &output);
    Err(match (error, password_asked) {
        (
            SshError::AuthFailed {
                host,
                address,
                detail,
            },
            Some(true),
        ) => {
            let user = host_user(&detail)
                .or_else(|| host_spec_user.clone())
                .unwrap_or_else(|| "?".to_string());
            SshError::PasswordRejected {
                host,
                address,
                user,
            }
        }
        (
            SshError::AuthFailed {
                host,
                address,
                detail,
            },
            Some(false),
        ) => SshError::PasswordNotAsked {
            host,
            address,
            detail,
        },
        (other, _) => other,
    })
}

/// The user of ssh's `user@host: Permission denied (...)` line.
fn host_user(detail: &str) -> Option<String> {
    let line = detail
        .split("; ")
        .find(|line| line.contains("Permission denied"))?;
    let (user, _rest) = line.split_once('@')?;
    (!user.is_empty() && !user.contains(' ')).then(|| user.to_string())
}

/// Hosts jumping through this one reach its master at the ControlPath of the run config.
pub(crate) fn link_control_path(host: &PlannedHost, socket: &Path) -> Result<(), SshError> {
    let _ = std::fs::remove_file(&host.control_path);
    std::os::unix::fs::symlink(socket, &host.control_path).map_err(|error| SshError::Connect {
        host: host.spec.name.clone(),
        address: host.spec.display_address(),
        detail: format!("cannot link `{}`: {error}", host.control_path.display()),
    })
}

/// Starts a master that outlives the run, for `--persist`: its socket, log and (transient)
/// config live in the connection directory, ssh's `ControlPersist` stops it after `persist` of
/// idle time. The jump hosts must be up already and the caller holds the master's lock and has
/// found no live master for `identity`. Returns a session over it (dropping that session leaves
/// the master running) and the metadata written next to it.
pub(crate) async fn open_persistent_session(
    host: &PlannedHost,
    run_config: &Path,
    control: &ControlDir,
    identity: &MasterIdentity,
    persist: Duration,
    askpass: &Path,
) -> Result<(Session, PersistedConnection), SshError> {
    let key = identity.key.as_str();
    control.clear_dead(key);
    let socket = control.socket(key);
    let log = control.log(key);
    // The run's config, copied out of the run directory: the run reaps every ssh process that
    // names its directory, and this master (and the `ssh -W` of its jump) must survive that.
    let config = control.config(key);
    let failed = |detail: String| SshError::Connect {
        host: host.spec.name.clone(),
        address: host.spec.display_address(),
        detail,
    };
    std::fs::copy(run_config, &config)
        .map_err(|error| failed(format!("cannot write `{}`: {error}", config.display())))?;
    let persist_option = format!("ControlPersist={}s", persist.as_secs().max(1));
    let master = MasterCommand {
        log: &log,
        socket: &socket,
        persist: &persist_option,
        config: &config,
    };
    let login = PasswordLogin {
        program: askpass,
        socket: socket.with_extension("askpass"),
    };
    let password = host.spec.password.is_some().then_some(&login);
    if let Err(error) = start_master(host, master, password).await {
        control.clear_dead(key);
        return Err(error);
    }
    let user = match &host.spec.user {
        Some(user) => user.clone(),
        None => effective_ssh_user(&config, &host.alias).await,
    };
    let _ = std::fs::remove_file(&config);
    let session = resume(&socket);
    let metadata = PersistedConnection {
        host: host.spec.name.clone(),
        user,
        address: host.spec.display_address(),
        via: identity.via_names.clone(),
        created: unix_now(),
        persist_secs: persist.as_secs(),
        master_pid: master_pid(&socket).await,
        identity: identity.text.clone(),
        via_keys: identity.via_keys.clone(),
        key: key.to_string(),
    };
    if let Err(error) = control.write_metadata(&metadata) {
        let _ = force_exit_master(&socket).await;
        control.clear_dead(key);
        return Err(failed(error.to_string()));
    }
    if let Err(error) = link_control_path(host, &socket) {
        let _ = force_exit_master(&socket).await;
        control.clear_dead(key);
        return Err(error);
    }
    Ok((session, metadata))
}

/// The user ssh logs in as when the inventory names none (`ssh -G`: the user's ssh config, else
/// the local user).
async fn effective_ssh_user(config: &Path, alias: &str) -> String {
    let output = tokio::process::Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args(["-G", alias])
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    output
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .find_map(|line| line.strip_prefix("user ").map(str::to_string))
        })
        .unwrap_or_else(|| "?".to_string())
}

/// The whole message of an openssh error, including what ssh printed (kept in the source).
fn error_text(error: &openssh::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Maps what ssh printed on a failed login onto an error that says what to do.
pub(crate) fn classify_connect_error(host: &PlannedHost, ssh_output: &str) -> SshError {
    let spec = &host.spec;
    let name = spec.name.clone();
    let address = spec.display_address();
    let detail = last_meaningful_lines(ssh_output);
    if ssh_output.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || ssh_output.contains("Host key for") && ssh_output.contains("has changed")
    {
        // Printed for copy-pasting into a shell: every argument is shell-quoted.
        let mut remove_command = format!("ssh-keygen -R {}", quote(&spec.known_hosts_name()));
        if let Some(file) = &spec.known_hosts_file {
            remove_command.push_str(&format!(" -f {}", quote_local_path(file)));
        }
        return SshError::HostKeyChanged {
            host: name,
            address,
            remove_command,
        };
    }
    if ssh_output.contains("Host key verification failed")
        || ssh_output.contains("host key is known for")
    {
        let port_flag = if spec.port == 22 {
            String::new()
        } else {
            format!(" -p {}", spec.port)
        };
        let known_hosts = match &spec.known_hosts_file {
            Some(file) => quote_local_path(file),
            None => "~/.ssh/known_hosts".to_string(),
        };
        return SshError::HostKeyUnknown {
            host: name,
            address,
            port_flag,
            bare_address: quote(&spec.address),
            known_hosts,
        };
    }
    if ssh_output.contains("Permission denied (")
        || ssh_output.contains("Too many authentication failures")
    {
        return SshError::AuthFailed {
            host: name,
            address,
            detail,
        };
    }
    let timed_out = [
        "Connection timed out",
        "Operation timed out",
        "banner exchange",
    ];
    if timed_out.iter().any(|needle| ssh_output.contains(needle)) {
        let seconds = timeout_seconds(spec.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT));
        return SshError::Timeout {
            host: name,
            address,
            seconds,
        };
    }
    let unreachable = [
        "Connection refused",
        "No route to host",
        "Network is unreachable",
        "Could not resolve hostname",
        "Name or service not known",
        "open failed",
        "Connection closed by",
        "Connection reset by",
        "kex_exchange_identification",
    ];
    if unreachable.iter().any(|needle| ssh_output.contains(needle)) {
        return SshError::Unreachable {
            host: name,
            address,
            detail,
        };
    }
    SshError::Connect {
        host: name,
        address,
        detail,
    }
}

/// ssh's output without carriage returns, warnings about added keys and blank lines, joined on
/// one line; the crate's own prefix ("failed to connect to the remote host: ") is dropped.
fn last_meaningful_lines(output: &str) -> String {
    let output = output
        .strip_prefix("failed to connect to the remote host: ")
        .unwrap_or(output);
    let lines: Vec<&str> = output
        .lines()
        .map(|line| line.trim().trim_start_matches("ssh: "))
        .filter(|line| !line.is_empty() && !line.starts_with("Warning: Permanently added"))
        .collect();
    let start = lines.len().saturating_sub(4);
    let joined = lines[start..].join("; ");
    if joined.is_empty() {
        "ssh exited without saying why".to_string()
    } else {
        joined
    }
}

/// Closes a master gracefully; the caller has made sure no channel uses it any more.
pub(crate) async fn close_session(name: &str, session: Session) -> Result<(), SshError> {
    match session.close().await {
        // The master is gone already (the host dropped the connection): nothing to close.
        Ok(()) | Err(openssh::Error::Disconnected) => Ok(()),
        Err(error) => Err(SshError::Close {
            host: name.to_string(),
            detail: error_text(&error),
        }),
    }
}

/// Stops a master that is still shared with a live channel (an agent the caller did not drop):
/// `ssh -O exit` ends it and every channel on it.
pub(crate) async fn force_exit_master(control_socket: &Path) -> Result<(), ForceExitError> {
    let output = tokio::process::Command::new("ssh")
        .arg("-S")
        .arg(control_socket)
        .args(["-O", "exit", "mop-master"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|error| ForceExitError::Spawn(error.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(ForceExitError::Refused(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ))
    }
}

/// Waits up to `grace` for the ssh processes of this run to exit, then terminates the rest.
///
/// After a master is told to stop, it and the `ssh -W` proxies of hosts behind it exit within
/// moments. A master whose login was abandoned (timeout, Ctrl-C) is another matter: it goes on
/// to daemonize with `ControlPersist`, out of reach of any `Session`. Both are found by the
/// unique run directory in their argv and, if still there after `grace`, killed by pid
/// (SIGTERM, then SIGKILL a second later). Returns the pids that had to be killed.
pub(crate) async fn reap_run_processes(run_dir: &Path, grace: Duration) -> Vec<u32> {
    if wait_for_exit(run_dir, grace).await {
        return Vec::new();
    }
    let stragglers = run_processes(run_dir);
    signal_all(&stragglers, libc::SIGTERM);
    if !wait_for_exit(run_dir, Duration::from_secs(1)).await {
        signal_all(&run_processes(run_dir), libc::SIGKILL);
        wait_for_exit(run_dir, Duration::from_secs(1)).await;
    }
    stragglers
}

/// Polls until no process of the run is left; false if some still are after `limit`.
///
/// A process that is exiting has already lost its command line but is not a zombie yet, so
/// each one found is followed by pid until it is a zombie or gone: when mop exits, its masters
/// have finished exiting, not just started to.
async fn wait_for_exit(run_dir: &Path, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = std::collections::BTreeSet::new();
    loop {
        seen.extend(run_processes(run_dir));
        seen.retain(|pid| still_running(*pid));
        if seen.is_empty() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `pid` exists and is not a zombie (state `Z`/`X` in `/proc/PID/stat`; the command
/// name may contain spaces and parentheses, so the state is read after the last `)`).
fn still_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next())
        .unwrap_or("");
    !matches!(state, "Z" | "X" | "")
}

fn signal_all(pids: &[u32], signal: libc::c_int) {
    for pid in pids {
        if let Ok(pid) = libc::pid_t::try_from(*pid) {
            // SAFETY: kill(2) with a pid read from /proc and a constant signal.
            unsafe { libc::kill(pid, signal) };
        }
    }
}

/// ssh processes of this user with an argument under `run_dir` (`-F`, `-S`, `-E` paths).
fn run_processes(run_dir: &Path) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    let run_dir = run_dir.to_string_lossy().into_owned();
    let own_uid = effective_uid();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if pid == std::process::id() || std::os::unix::fs::MetadataExt::uid(&metadata) != own_uid {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect();
        let is_ssh = args
            .first()
            .is_some_and(|arg0| arg0 == "ssh" || arg0.ends_with("/ssh"));
        if is_ssh && args.iter().any(|arg| arg.starts_with(&run_dir)) {
            found.push(pid);
        }
    }
    found
}

pub(super) fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::config::{plan_hosts, SshHost};

    fn planned(spec: SshHost) -> PlannedHost {
        let plan = plan_hosts(&[spec], Path::new("/tmp/mop-x")).expect("valid");
        plan.into_iter().next().expect("one host").1
    }

    fn classify(spec: SshHost, output: &str) -> String {
        classify_connect_error(&planned(spec), output).to_string()
    }

    #[test]
    fn changed_host_keys_say_how_to_fix_them() {
        let output = "failed to connect to the remote host: @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n\
            @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n\
            Host key for [127.0.1.1]:40123 has changed and you have requested strict checking.\r\n\
            Host key verification failed.\r\n";
        let spec = SshHost {
            known_hosts_file: Some("/tmp/kh".into()),
            ..SshHost::new("web1", "127.0.1.1", 40123)
        };
        assert_eq!(
            classify(spec, output),
            "host key for web1 (127.0.1.1:40123) does not match known_hosts\n  \
             hint: if the host was reinstalled, remove the old key with \
             `ssh-keygen -R '[127.0.1.1]:40123' -f /tmp/kh` and connect again; \
             otherwise someone may be intercepting the connection"
        );
    }

    #[test]
    fn still_running_is_false_for_zombies_and_gone_processes() {
        assert!(still_running(std::process::id()));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        // Not reaped yet: a zombie once it has exited.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while still_running(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!still_running(pid), "an exited, unreaped child is a zombie");
        child.wait().expect("reap");
        assert!(!still_running(pid));
    }

    #[test]
    fn the_user_of_a_rejected_password_comes_from_ssh() {
        assert_eq!(
            host_user("Warning: x; moptestpw@127.0.0.1: Permission denied (password).").as_deref(),
            Some("moptestpw")
        );
        assert_eq!(host_user("Permission denied (password)."), None);
        assert_eq!(host_user("something else"), None);
    }

    #[test]
    fn classifies_common_failures() {
        let check = |output: &str, expected: &str| {
            let message = classify(SshHost::new("web1", "127.0.1.1", 22), output);
            assert!(message.starts_with(expected), "{message}");
        };
        check(
            "No ED25519 host key is known for 127.0.1.1 and you have requested strict checking.\r\nHost key verification failed.\r\n",
            "host key for web1 (127.0.1.1:22) is not in known_hosts",
        );
        check(
            "moptest@127.0.1.1: Permission denied (publickey).\r\n",
            "authentication to web1 (127.0.1.1:22) failed: moptest@127.0.1.1: Permission denied (publickey).",
        );
        check(
            "ssh: connect to host 127.0.1.1 port 22: Connection refused\r\n",
            "web1 (127.0.1.1:22) is unreachable: connect to host 127.0.1.1 port 22: Connection refused",
        );
        check(
            "ssh: connect to host 127.0.1.1 port 22: Connection timed out\r\n",
            "web1 (127.0.1.1:22) did not complete the ssh login within 10 s",
        );
        check(
            "channel 0: open failed: connect failed: Connection refused\r\nstdio forwarding failed\r\nkex_exchange_identification: Connection closed by remote host\r\n",
            "web1 (127.0.1.1:22) is unreachable: channel 0: open failed",
        );
        check(
            "something new\r\n",
            "ssh to web1 (127.0.1.1:22) failed: something new",
        );
    }
}
