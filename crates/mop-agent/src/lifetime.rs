//! Ending with the controller: while it runs, the agent marks its work directory as live, and
//! when the controller's connection is gone it stops what it started and removes the directory.
//!
//! The controller starts the agent as `<agent dir>/w-<token>/mop-agent` and its probe creates
//! `<work dir>/lock`. The agent holds a shared flock on that file for as long as it runs (and
//! touches it when it starts and stops): a later run's probe removes another run's work
//! directory only when it can take that lock exclusively and the file was not touched for a few
//! minutes (`crates/mop-push/src/ssh/bootstrap.rs`).
//!
//! A dead controller is told apart from one that merely closed this agent's channel by the sshd
//! process of its connection, an ancestor of the agent: one ssh connection is one sshd session
//! process, so when the agent's stdout has no reader any more *and* that process has exited,
//! the connection is gone and nobody will clean up for the agent. It then kills its session
//! (the commands it started), removes its work directory (where it may: an agent running as a
//! third user cannot, and a later run reaps it), and exits. Run any other way (`mop local`, by
//! hand), the agent finds no work directory or no sshd and does none of this.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::os::raw::{c_int, c_short};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mop_protocol::{exit_code, CleanupRequest};

extern "C" {
    // From the C library every Rust program on Linux links anyway.
    fn flock(fd: c_int, operation: c_int) -> c_int;
    fn futimens(fd: c_int, times: *const u8) -> c_int;
    fn poll(fds: *mut PollFd, count: std::os::raw::c_ulong, timeout: c_int) -> c_int;
}

const LOCK_SH: c_int = 1;
const O_NOFOLLOW: c_int = 0o400000;
const POLLERR: c_short = 0x8;
const POLLHUP: c_short = 0x10;

#[repr(C)]
struct PollFd {
    fd: c_int,
    events: c_short,
    revents: c_short,
}

/// Set when the controller ended the session on purpose (`shutdown`, `cleanup`).
pub static ENDED_BY_CONTROLLER: AtomicBool = AtomicBool::new(false);

/// How long the sshd of the connection may take to exit after the channel broke.
const SSHD_EXIT_WAIT: Duration = Duration::from_secs(10);

/// The agent's work directory, locked, and the sshd process of its connection.
pub struct WorkDirGuard {
    request: CleanupRequest,
    lock: File,
    sshd: Option<Ancestor>,
    /// Only one of the watcher thread and the main thread cleans up.
    cleaning: Mutex<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ancestor {
    pid: u32,
    start_time: u64,
}

impl WorkDirGuard {
    /// Locks the work directory named by `argv0` and, when the agent runs under sshd, starts
    /// the thread that watches for the controller's end. `None` when not started by mop.
    pub fn start(argv0: &OsStr) -> Option<&'static WorkDirGuard> {
        let request = work_dir_of(Path::new(argv0))?;
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_NOFOLLOW)
            .open(Path::new(&request.work_dir).join("lock"))
            .ok()
            .filter(|file| file.metadata().is_ok_and(|metadata| metadata.is_file()))?;
        // SAFETY: flock(2) on a descriptor we own; blocks while a reaper holds it exclusively.
        unsafe { flock(lock.as_raw_fd(), LOCK_SH) };
        if lock.metadata().is_ok_and(|metadata| metadata.nlink() == 0) {
            // A reaper removed the directory just before we locked it: nothing to guard.
            return None;
        }
        touch(&lock);
        let guard: &'static WorkDirGuard = Box::leak(Box::new(WorkDirGuard {
            request,
            lock,
            sshd: sshd_ancestor(),
            cleaning: Mutex::new(()),
        }));
        if guard.sshd.is_some() {
            let _ = std::thread::Builder::new()
                .name("controller-watch".to_string())
                .stack_size(64 * 1024)
                .spawn(move || {
                    wait_for_hangup(std::io::stdout().as_raw_fd(), -1);
                    guard.controller_lost();
                });
        }
        Some(guard)
    }

    /// At the end of the session: when it did not end on the controller's word, the
    /// controller may be gone (checked as by the watcher); otherwise touch the lock, so the
    /// next agent of the run has time to start before anyone thinks the directory is dead.
    pub fn finish(&self) {
        if !ENDED_BY_CONTROLLER.load(Ordering::SeqCst)
            && self.sshd.is_some()
            && wait_for_hangup(std::io::stdout().as_raw_fd(), 200)
        {
            self.controller_lost();
        }
        touch(&self.lock);
    }

    /// The channel broke: if the connection is gone, clean up and exit; else return.
    fn controller_lost(&self) {
        let Some(sshd) = self.sshd else {
            return;
        };
        let _only_one = self.cleaning.lock();
        let deadline = Instant::now() + SSHD_EXIT_WAIT;
        while is_alive(sshd) {
            if ENDED_BY_CONTROLLER.load(Ordering::SeqCst) || Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Err(error) = crate::cleanup::run(&self.request) {
            // Not eprintln!: it panics when stderr is gone, as it is here.
            let _ = writeln!(
                std::io::stderr(),
                "mop-agent: the controller's connection is gone; {error}"
            );
        }
        std::process::exit(exit_code::INTERNAL);
    }
}

/// `<agent dir>/w-<token>/mop-agent` -> the cleanup of that work directory.
fn work_dir_of(argv0: &Path) -> Option<CleanupRequest> {
    if !argv0.is_absolute() || argv0.file_name() != Some(OsStr::new("mop-agent")) {
        return None;
    }
    let work = argv0.parent()?;
    let agent_dir = work.parent()?;
    let request = CleanupRequest {
        work_dir: work.to_str()?.to_string(),
        agent_dir: agent_dir.to_str()?.to_string(),
    };
    crate::cleanup::check_request(&request).ok()?;
    Some(request)
}

/// Blocks until `fd` reports an error or hang-up (its reader is gone), or `timeout_ms` passes
/// (-1: forever). True on hang-up.
fn wait_for_hangup(fd: c_int, timeout_ms: c_int) -> bool {
    loop {
        let mut entry = PollFd {
            fd,
            events: 0,
            revents: 0,
        };
        // SAFETY: poll(2) on one pollfd that lives on our stack for the call.
        let ready = unsafe { poll(&mut entry, 1, timeout_ms) };
        if ready > 0 && entry.revents & (POLLERR | POLLHUP) != 0 {
            return true;
        }
        if ready >= 0 {
            // Timed out, or some other condition (an invalid fd reports POLLNVAL): give up.
            return false;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return false;
        }
    }
}

fn touch(lock: &File) {
    // SAFETY: futimens(2) with NULL times sets both to now; no memory of ours is written.
    // It fails without write access (an agent of a third user): the start time then counts.
    unsafe { futimens(lock.as_raw_fd(), std::ptr::null()) };
}

/// The nearest ancestor that is an sshd process (`sshd`, or `sshd-session` in OpenSSH 9.8+):
/// the per-connection process, whatever runs between it and us (sudo, a shell).
fn sshd_ancestor() -> Option<Ancestor> {
    let mut pid = std::os::unix::process::parent_id();
    for _ in 0..8 {
        if pid <= 1 {
            return None;
        }
        let stat = read_stat(pid)?;
        if stat.comm.starts_with("sshd") {
            return Some(Ancestor {
                pid,
                start_time: stat.start_time,
            });
        }
        pid = stat.parent;
    }
    None
}

struct Stat {
    comm: String,
    state: char,
    parent: u32,
    start_time: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ... starttime(22) ...`; comm may contain spaces and parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    Some(Stat {
        comm,
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// The same process (not a reused pid), not a zombie.
fn is_alive(ancestor: Ancestor) -> bool {
    read_stat(ancestor.pid).is_some_and(|stat| {
        stat.start_time == ancestor.start_time && !matches!(stat.state, 'Z' | 'X')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_work_directory_path_names_one() {
        let check = |argv0: &str| work_dir_of(Path::new(argv0)).map(|request| request.work_dir);
        assert_eq!(
            check("/home/u/.mop/w-1a2b/mop-agent").as_deref(),
            Some("/home/u/.mop/w-1a2b")
        );
        assert_eq!(check("mop-agent"), None);
        assert_eq!(check("/usr/local/bin/mop-agent"), None);
        assert_eq!(check("/home/u/.mop/w-1a2b/other"), None);
        assert_eq!(check("./w-1a2b/mop-agent"), None);
    }

    #[test]
    fn reads_this_process_and_its_parent() {
        let own = read_stat(std::process::id()).expect("own stat");
        assert_eq!(own.parent, std::os::unix::process::parent_id());
        let me = Ancestor {
            pid: std::process::id(),
            start_time: own.start_time,
        };
        assert!(is_alive(me));
        assert!(!is_alive(Ancestor {
            start_time: own.start_time + 1,
            ..me
        }));
    }

    #[test]
    fn a_pipe_without_reader_is_a_hangup() {
        let (reader, writer) = std::io::pipe().expect("pipe");
        assert!(!wait_for_hangup(writer.as_raw_fd(), 0));
        drop(reader);
        assert!(wait_for_hangup(writer.as_raw_fd(), 1000));
    }
}
