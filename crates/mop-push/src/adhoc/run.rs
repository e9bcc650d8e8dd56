//! `mop run`: one command on many hosts (or on this machine), each host's exit code, stdout,
//! stderr and elapsed time kept apart; lines can be streamed as they arrive.

use std::num::NonZeroUsize;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::Semaphore;

use super::command::{is_timeout_status, remote_line, KILL_GRACE};
use super::{until_interrupted, Interrupted};
use super::{AdhocHost, SshPool};
use crate::ssh::{
    check_adhoc_become, check_password, password_line, quote, redact, BecomeSpec, RemoteProcess,
    RunAs,
};

/// How `mop run` runs its command.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run the command under sudo (`mop_sudo_password` of the host is fed to it).
    pub sudo: bool,
    /// `--sudo-as`; `None` = root.
    pub sudo_as: Option<String>,
    pub timeout: Option<Duration>,
    /// Allocate a remote terminal (stdout and stderr then arrive merged on stdout).
    pub pty: bool,
    pub env: Vec<(String, String)>,
    /// Hosts worked on at once (connections and commands).
    pub forks: NonZeroUsize,
    /// One host after another.
    pub serial: bool,
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdout,
    Stderr,
}

/// One line as it arrived, for `--stream`.
#[derive(Debug, Clone)]
pub struct OutputLine<'a> {
    pub host: &'a str,
    pub stream: StreamKind,
    pub text: &'a str,
}

/// What one host did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRun {
    pub host: String,
    /// `None` when the command never ran (connection, sudo) or was killed by a signal.
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub timed_out: bool,
    /// Why the host failed other than by a non-zero exit code.
    pub error: Option<String>,
}

impl HostRun {
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.exit_code == Some(0)
    }

    fn failed(host: &str, started: Instant, error: String) -> HostRun {
        HostRun {
            host: host.to_string(),
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            elapsed: started.elapsed(),
            timed_out: false,
            error: Some(error),
        }
    }
}

type LineSink<'a> = &'a (dyn Fn(OutputLine<'_>) + Sync);

/// Runs `commands[i]` on `hosts[i]` through `pool`; results in host order. One host's failure
/// never stops or hides another's.
///
/// On Ctrl-C the commands are abandoned and every process they started on a host is stopped
/// (see [`stop_remote`]) before this returns [`Interrupted`]; the caller then closes the pool.
pub async fn run_on_hosts(
    pool: &SshPool,
    hosts: &[AdhocHost],
    commands: &[String],
    options: &RunOptions,
    on_line: LineSink<'_>,
) -> Result<Vec<HostRun>, Interrupted> {
    let limit = Arc::new(Semaphore::new(if options.serial {
        1
    } else {
        options.forks.get()
    }));
    let run_id = run_id();
    // Every remote process of this run inherits `MOP_RUN_ID`: that is how an interrupted run
    // finds them again, children included, without a pid file on the host.
    let mut tagged = options.clone();
    tagged
        .env
        .push((RUN_ID_VARIABLE.to_string(), run_id.clone()));
    let started_hosts: Mutex<Vec<&AdhocHost>> = Mutex::new(Vec::new());
    let runs = hosts.iter().zip(commands).map(|(host, command)| {
        let limit = limit.clone();
        let tagged = &tagged;
        let started_hosts = &started_hosts;
        async move {
            let _permit = limit
                .acquire()
                .await
                .expect("the semaphore is never closed");
            started_hosts
                .lock()
                .expect("started hosts lock is never poisoned")
                .push(host);
            run_one(pool, host, command, tagged, on_line).await
        }
    });
    let interrupted = match until_interrupted(futures_util::future::join_all(runs)).await {
        Ok(results) => return Ok(results),
        Err(interrupted) => interrupted,
    };
    let started_hosts = started_hosts
        .into_inner()
        .expect("started hosts lock is never poisoned");
    futures_util::future::join_all(
        started_hosts
            .into_iter()
            .map(|host| stop_remote(pool, host, &run_id, sudo_spec(host, options))),
    )
    .await;
    Err(interrupted)
}

/// The environment variable that marks the processes of one `mop run` on a host.
const RUN_ID_VARIABLE: &str = "MOP_RUN_ID";

/// Unique enough per controller: this process and the time.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// The shell script that ends every process carrying `MOP_RUN_ID=<run_id>`: TERM, a second of
/// grace, then KILL. `run_id` is digits and `-` only, so it needs no quoting inside the
/// script; the script itself is quoted for the remote shell by the caller.
fn stop_script(run_id: &str) -> String {
    let pass = |signal: &str| {
        format!(
            "for dir in /proc/[0-9]*; do grep -qs '{RUN_ID_VARIABLE}={run_id}' \"$dir/environ\" && kill -{signal} \"${{dir#/proc/}}\" 2>/dev/null; done"
        )
    };
    format!("{}; sleep 1; {}; exit 0", pass("TERM"), pass("KILL"))
}

/// Stops what an interrupted run left on `host`, as the same user (sudo included), over the
/// host's master connection. Best effort, bounded in time: the pool is closed right after.
async fn stop_remote(pool: &SshPool, host: &AdhocHost, run_id: &str, sudo: Option<BecomeSpec>) {
    // Bounded as a whole: a host interrupted while still logging in may never answer.
    let _ = tokio::time::timeout(STOP_TIMEOUT, stop_remote_now(pool, host, run_id, sudo)).await;
}

async fn stop_remote_now(pool: &SshPool, host: &AdhocHost, run_id: &str, sudo: Option<BecomeSpec>) {
    let Ok(session) = pool.open(&host.name).await else {
        return;
    };
    let mut line = RunAs::from_spec(sudo.as_ref()).command_prefix();
    line.push_str("sh -c ");
    line.push_str(&quote(&stop_script(run_id)));
    session
        .run_quietly(&line, password_line(sudo.as_ref()))
        .await;
}

/// The longest an interrupted run waits for one host's processes to be stopped.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

fn sudo_spec(host: &AdhocHost, options: &RunOptions) -> Option<BecomeSpec> {
    options.sudo.then(|| BecomeSpec {
        user: options
            .sudo_as
            .clone()
            .or_else(|| host.connection.sudo_user.clone()),
        password: host
            .connection
            .sudo_password
            .as_ref()
            .map(|secret| crate::ssh::Secret::new(secret.expose())),
        method: host.connection.become_method,
    })
}

async fn run_one(
    pool: &SshPool,
    host: &AdhocHost,
    command: &str,
    options: &RunOptions,
    on_line: LineSink<'_>,
) -> HostRun {
    let started = Instant::now();
    let sudo = sudo_spec(host, options);
    if let Err(error) = check_password(&host.name, sudo.as_ref())
        .and_then(|()| check_adhoc_become(&host.name, sudo.as_ref()))
    {
        return HostRun::failed(&host.name, started, error.to_string());
    }
    let session = match pool.open(&host.name).await {
        Ok(session) => session,
        Err(error) => return HostRun::failed(&host.name, started, error.to_string()),
    };
    let line = remote_line(command, sudo.as_ref(), &options.env, options.timeout);
    let stdin_bytes = password_line(sudo.as_ref());
    let spawned = if options.pty {
        pool.spawn_pty(&host.name, &line, stdin_bytes.is_some())
    } else {
        session.spawn(&line, stdin_bytes.is_some()).await
    };
    let spawned = match spawned {
        Ok(spawned) => spawned,
        Err(detail) => {
            return HostRun::failed(
                &host.name,
                started,
                format!("host `{}`: {detail}", host.name),
            )
        }
    };
    let mut outcome = collect(&host.name, spawned, stdin_bytes, options.timeout, on_line).await;
    outcome.stdout = redact(&outcome.stdout, sudo.as_ref());
    outcome.stderr = redact(&outcome.stderr, sudo.as_ref());
    outcome.elapsed = started.elapsed();
    // sudo refusing exits 1 like a failing command: told apart by what it printed, and said
    // in mop's words (no rights, needs a password, wrong password) instead of sudo's.
    if let Some(spec) = &sudo {
        if outcome.exit_code == Some(1)
            && outcome.stdout.is_empty()
            && crate::ssh::is_become_refusal(&outcome.stderr)
        {
            let login_user = host.connection.user.as_deref().unwrap_or("the login user");
            let run_as = RunAs::from_spec(Some(spec));
            let error = crate::ssh::diagnose_refusal(
                &session,
                &host.name,
                login_user,
                &run_as,
                Some(spec),
                &outcome.stderr,
            )
            .await;
            outcome.stderr.clear();
            outcome.error = Some(error.to_string());
        }
    }
    if let Some(timeout) = options.timeout {
        if is_timeout_status(outcome.exit_code) && outcome.elapsed >= timeout {
            outcome.timed_out = true;
        }
    }
    if outcome.timed_out && outcome.error.is_none() {
        outcome.error = Some(format!(
            "host `{}`: timed out after {}s; the remote command and its children were killed",
            host.name,
            options.timeout.map_or(0.0, |timeout| timeout.as_secs_f64())
        ));
    }
    outcome
}

/// Feeds stdin, reads both streams line by line (forwarding each line) and waits for the exit
/// status. With a timeout, the controller gives the remote `timeout` its grace and then some
/// before giving up on the channel.
async fn collect(
    host: &str,
    spawned: RemoteProcess,
    stdin_bytes: Option<Vec<u8>>,
    timeout: Option<Duration>,
    on_line: LineSink<'_>,
) -> HostRun {
    let RemoteProcess {
        stdin,
        stdout,
        stderr,
        wait,
    } = spawned;
    if let (Some(mut pipe), Some(bytes)) = (stdin, stdin_bytes) {
        // A failed write means the command ended early; its output says why.
        let _ = pipe.write_all(&bytes).await;
        let _ = pipe.shutdown().await;
    }
    let work = async {
        let (stdout, stderr) = tokio::join!(
            read_lines(host, stdout, StreamKind::Stdout, on_line),
            read_lines(host, stderr, StreamKind::Stderr, on_line)
        );
        (stdout, stderr, wait.await)
    };
    let result = match timeout {
        None => Some(work.await),
        Some(timeout) => tokio::time::timeout(timeout + KILL_GRACE + Duration::from_secs(5), work)
            .await
            .ok(),
    };
    match result {
        Some((stdout, stderr, status)) => {
            let (exit_code, error) = match status {
                Ok(code) => (code, None),
                Err(detail) => (None, Some(format!("host `{host}`: lost the command: {detail}"))),
            };
            HostRun {
                host: host.to_string(),
                exit_code,
                stdout,
                stderr,
                elapsed: Duration::ZERO,
                timed_out: false,
                error,
            }
        }
        None => HostRun {
            host: host.to_string(),
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            elapsed: Duration::ZERO,
            timed_out: true,
            error: Some(format!(
                "host `{host}`: timed out and the remote `timeout` did not end the command; the channel was closed"
            )),
        },
    }
}

async fn read_lines(
    host: &str,
    stream: Box<dyn AsyncRead + Send + Unpin>,
    kind: StreamKind,
    on_line: LineSink<'_>,
) -> String {
    let mut reader = BufReader::new(stream);
    let mut collected = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                collected.extend_from_slice(&line);
                let text = String::from_utf8_lossy(&line);
                on_line(OutputLine {
                    host,
                    stream: kind,
                    text: text.trim_end_matches(['\n', '\r']),
                });
            }
        }
    }
    String::from_utf8_lossy(&collected).into_owned()
}

/// `mop run --local`: the same command shape on this machine, no SSH. The command runs in its
/// own process group, which a timeout kills as a whole.
pub async fn run_local(command: &str, options: &RunOptions, on_line: LineSink<'_>) -> HostRun {
    let host = "localhost";
    let started = Instant::now();
    let sudo = options.sudo.then(|| BecomeSpec {
        user: options.sudo_as.clone(),
        password: None,
        method: crate::ssh::BecomeMethod::Sudo,
    });
    let line = remote_line(command, sudo.as_ref(), &options.env, None);
    let mut child_command = tokio::process::Command::new("sh");
    child_command
        .arg("-c")
        .arg(&line)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match child_command.spawn() {
        Ok(child) => child,
        Err(error) => {
            return HostRun::failed(host, started, format!("cannot run `sh`: {error}"));
        }
    };
    let group = child.id();
    let stdout: Box<dyn AsyncRead + Send + Unpin> =
        Box::new(child.stdout.take().expect("stdout was requested as a pipe"));
    let stderr: Box<dyn AsyncRead + Send + Unpin> =
        Box::new(child.stderr.take().expect("stderr was requested as a pipe"));
    let work = async {
        let (stdout, stderr) = tokio::join!(
            read_lines(host, stdout, StreamKind::Stdout, on_line),
            read_lines(host, stderr, StreamKind::Stderr, on_line)
        );
        (stdout, stderr)
    };
    let (stdout, stderr, timed_out) = match options.timeout {
        None => {
            let (stdout, stderr) = work.await;
            (stdout, stderr, false)
        }
        Some(timeout) => {
            tokio::pin!(work);
            match tokio::time::timeout(timeout, &mut work).await {
                Ok((stdout, stderr)) => (stdout, stderr, false),
                Err(_) => {
                    if let Some(group) = group.and_then(|pid| i32::try_from(pid).ok()) {
                        // SAFETY: killpg only sends a signal to the group this run created.
                        unsafe {
                            libc::killpg(group, libc::SIGKILL);
                        }
                    }
                    let (stdout, stderr) = work.await;
                    (stdout, stderr, true)
                }
            }
        }
    };
    let status = child.wait().await;
    let exit_code = status.ok().and_then(|status| status.code());
    HostRun {
        host: host.to_string(),
        exit_code,
        stdout,
        stderr,
        elapsed: started.elapsed(),
        timed_out,
        error: timed_out.then(|| {
            format!(
                "timed out after {}s; the command and its children were killed",
                options.timeout.map_or(0.0, |timeout| timeout.as_secs_f64())
            )
        }),
    }
}
