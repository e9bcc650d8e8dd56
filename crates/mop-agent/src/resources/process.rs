//! Running a child process to completion with a timeout: its stdout and stderr are collected
//! with `poll(2)` on one thread, and on timeout its whole process group gets SIGKILL.
//!
//! One thread and `poll` rather than a reader thread per pipe: std's thread support costs the
//! statically linked agent about 60 KiB (glibc's `pthread_create` drags in part of its dynamic
//! loader), and std already links `poll` for `Command::output`.

use std::ffi::{c_int, c_short, c_ulong};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStderr, ChildStdout, ExitStatus};
use std::time::{Duration, Instant};

/// After the child exits, how long its stdout/stderr may stay open (held by a background
/// process it started) before the agent stops waiting for more output.
pub const PIPE_GRACE: Duration = Duration::from_secs(2);
/// After a timeout kill, how long to drain what the pipes still hold.
const KILL_GRACE: Duration = Duration::from_millis(500);
/// The longest pause between checks of the child's status.
const MAX_TICK: Duration = Duration::from_millis(50);

pub const SIGKILL: i32 = 9;
const POLLIN: c_short = 0x001;

#[repr(C)]
struct PollFd {
    fd: c_int,
    events: c_short,
    revents: c_short,
}

extern "C" {
    // From the C library every Rust program on Linux links anyway (std uses both); declared
    // here rather than pulling in the `libc` crate for two functions.
    fn poll(fds: *mut PollFd, count: c_ulong, timeout_ms: c_int) -> c_int;
    fn kill(pid: c_int, signal: c_int) -> c_int;
    fn setsid() -> c_int;
}

/// Makes the agent the leader of a new session, so the controller's cleanup can kill the
/// agent and every command it started (each in its own process group) with one
/// `pkill -s <agent pid>`, even after a Ctrl-C cut the agent off mid-command. Failing (the
/// agent already leads a group, e.g. when ssh exec'd it directly) is fine: then it already
/// leads its session.
pub fn become_session_leader() {
    // SAFETY: setsid(2) takes no arguments and touches no memory of ours.
    unsafe {
        setsid();
    }
}

/// Gives up the controlling terminal the agent may have been started with. Under
/// `mop-agent --tty-password -- doas ...` the command starts in the session whose controlling
/// terminal is the wrapper's pty: Debian's doas (PAM) forks it, so the agent's own setsid
/// already leaves that session, but a doas that execs the command directly makes the agent that
/// session's leader (setsid then fails, see [`become_session_leader`]). Without a terminal, as under sudo or ssh, a command that opens
/// `/dev/tty` fails at once instead of stopping on SIGTTIN or blocking on a full pty, and the
/// wrapper's pty closing later cannot hang up the agent. A session leader that lets go of its
/// terminal sends SIGHUP to its foreground group, which is the agent's own: ignored meanwhile.
pub fn drop_controlling_terminal() {
    // SAFETY: open/ioctl/close on a path literal and an fd owned here; signal(2) swaps the
    // disposition of SIGHUP and the previous one is put back.
    unsafe {
        let terminal = libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        if terminal < 0 {
            return;
        }
        let previous = libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::ioctl(terminal, libc::TIOCNOTTY);
        libc::close(terminal);
        libc::signal(libc::SIGHUP, previous);
    }
}

/// What a finished child left behind.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The deadline passed and the process group was killed.
    pub timed_out: bool,
}

impl Finished {
    /// The exit code, or 128 + the signal that ended the process (as shells report it).
    pub fn rc(&self) -> i32 {
        self.status
            .code()
            .or_else(|| self.status.signal().map(|signal| 128 + signal))
            .unwrap_or(-1)
    }
}

enum Pipe {
    Out(ChildStdout),
    Err(ChildStderr),
}

impl Pipe {
    fn fd(&self) -> c_int {
        match self {
            Pipe::Out(pipe) => pipe.as_raw_fd(),
            Pipe::Err(pipe) => pipe.as_raw_fd(),
        }
    }

    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        match self {
            Pipe::Out(pipe) => pipe.read(buffer),
            Pipe::Err(pipe) => pipe.read(buffer),
        }
    }
}

/// Collects the output of `child` (spawned with piped stdout/stderr and `process_group(0)`)
/// and waits for it; past `deadline` its process group is killed.
pub fn finish(child: &mut Child, deadline: Option<Instant>) -> io::Result<Finished> {
    let mut pipes: [Option<Pipe>; 2] = [
        child.stdout.take().map(Pipe::Out),
        child.stderr.take().map(Pipe::Err),
    ];
    let mut outputs: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut buffer = vec![0u8; 64 * 1024];
    let mut status: Option<ExitStatus> = None;
    let mut timed_out = false;
    let mut stop_reading_at: Option<Instant> = None;
    let mut tick = Duration::from_millis(1);
    loop {
        let now = Instant::now();
        if status.is_none() && !timed_out && deadline.is_some_and(|deadline| now >= deadline) {
            kill_process_group(child.id());
            timed_out = true;
            stop_reading_at = Some(now + KILL_GRACE);
        }
        if status.is_none() {
            status = child.try_wait()?;
            if status.is_some() {
                stop_reading_at.get_or_insert(now + PIPE_GRACE);
            }
        }
        let pipes_open = pipes.iter().any(Option::is_some);
        if status.is_some() && (!pipes_open || stop_reading_at.is_some_and(|at| now >= at)) {
            break;
        }
        // Sleep until data arrives or the next check is due.
        let mut wait = tick;
        for limit in [deadline.filter(|_| !timed_out), stop_reading_at]
            .into_iter()
            .flatten()
        {
            wait = wait.min(limit.saturating_duration_since(now));
        }
        if pipes_open {
            if read_ready(&mut pipes, &mut outputs, &mut buffer, wait)? {
                tick = Duration::from_millis(1);
                continue;
            }
        } else {
            std::thread::sleep(wait);
        }
        tick = (tick * 2).min(MAX_TICK);
    }
    let [stdout, stderr] = outputs;
    Ok(Finished {
        status: status.expect("the loop ends only once the status is known"),
        stdout,
        stderr,
        timed_out,
    })
}

/// Polls the open pipes for up to `wait` and reads what is ready; closes pipes at end of
/// file. Returns whether anything was read or closed.
fn read_ready(
    pipes: &mut [Option<Pipe>; 2],
    outputs: &mut [Vec<u8>; 2],
    buffer: &mut [u8],
    wait: Duration,
) -> io::Result<bool> {
    let mut fds: Vec<PollFd> = Vec::with_capacity(2);
    let mut indices: Vec<usize> = Vec::with_capacity(2);
    for (index, pipe) in pipes.iter().enumerate() {
        if let Some(pipe) = pipe {
            fds.push(PollFd {
                fd: pipe.fd(),
                events: POLLIN,
                revents: 0,
            });
            indices.push(index);
        }
    }
    let timeout_ms = c_int::try_from(wait.as_millis()).unwrap_or(c_int::MAX);
    // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs that outlives the call, and
    // every fd in it belongs to a pipe we own and keep open until after the call.
    let ready = unsafe { poll(fds.as_mut_ptr(), fds.len() as c_ulong, timeout_ms) };
    if ready < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(err)
        };
    }
    let mut progressed = false;
    for (slot, index) in fds.iter().zip(indices) {
        if slot.revents == 0 {
            continue;
        }
        let Some(pipe) = &mut pipes[index] else {
            continue;
        };
        // Ready (data, end of file or error): one read cannot block.
        match pipe.read(buffer) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Ok(0) | Err(_) => pipes[index] = None,
            Ok(read) => outputs[index].extend_from_slice(&buffer[..read]),
        }
        progressed = true;
    }
    Ok(progressed)
}

/// Sends SIGKILL to the process group led by `leader` (spawned with `process_group(0)`, so
/// its group id is its pid).
fn kill_process_group(leader: u32) {
    let Ok(group) = c_int::try_from(leader) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and has no memory effects; a negative pid names
    // the process group, and a group that is already gone only yields ESRCH.
    unsafe {
        kill(-group, SIGKILL);
    }
}
