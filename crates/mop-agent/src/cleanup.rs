//! The agent's own cleanup at the end of a run: stop what it started, remove its work directory.
//!
//! Doing this in the agent saves the controller a separate SSH exec (with its own `sudo`,
//! `pgrep` and `pkill`, each scanning the process table) per host. Whatever the agent cannot do
//! here it reports, and the controller falls back to cleaning up over SSH.

use std::ffi::OsStr;
use std::os::raw::c_int;
use std::path::Path;
use std::time::{Duration, Instant};

use mop_protocol::CleanupRequest;

extern "C" {
    // From the C library every Rust program on Linux links anyway.
    fn getsid(pid: c_int) -> c_int;
    fn kill(pid: c_int, signal: c_int) -> c_int;
}

const SIGKILL: c_int = 9;

/// Stops every other process of the agent's session, removes the work directory and then the
/// agent directory if that leaves it empty. `Err` says what is left.
pub fn run(request: &CleanupRequest) -> Result<(), String> {
    let work = Path::new(&request.work_dir);
    check_request(request)?;
    let leftovers = kill_session();
    match std::fs::remove_dir_all(work) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(format!("cannot remove `{}`: {err}", work.display())),
    }
    // Not empty (a cached agent, another run's work directory) is the normal case: keep it.
    if std::fs::remove_dir(&request.agent_dir).is_err() {
        restore_private_mode(Path::new(&request.agent_dir));
    }
    if leftovers.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "processes of this run still running after SIGKILL: {}",
            leftovers
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Puts the agent directory back to 0700 when the probe made it 0711 for a third user and no
/// shared work directory (0711) is left in it; any other mode is the operator's choice.
fn restore_private_mode(agent_dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| {
        std::fs::symlink_metadata(path)
            .map(|metadata| metadata.permissions().mode() & 0o7777)
            .ok()
    };
    if mode(agent_dir) != Some(0o711) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(agent_dir) else {
        return;
    };
    let shared_left = entries.flatten().any(|entry| {
        entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with("w-"))
            && mode(&entry.path()).is_some_and(|mode| mode & 0o001 != 0)
    });
    if !shared_left {
        let _ = std::fs::set_permissions(agent_dir, std::fs::Permissions::from_mode(0o700));
    }
}

/// Only this run's work directory may go: `<agent_dir>/w-<token>`, both absolute.
pub(crate) fn check_request(request: &CleanupRequest) -> Result<(), String> {
    let work = Path::new(&request.work_dir);
    let well_formed = work.is_absolute()
        && work.parent() == Some(Path::new(&request.agent_dir))
        && work
            .file_name()
            .and_then(OsStr::to_str)
            .is_some_and(|name| {
                name.strip_prefix("w-").is_some_and(|token| {
                    !token.is_empty() && token.chars().all(|c| c.is_ascii_alphanumeric())
                })
            });
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "refusing to remove `{}`: not a work directory `w-<token>` directly under `{}`",
            request.work_dir, request.agent_dir
        ))
    }
}

/// SIGKILLs every process of the session the agent leads (the commands it started, in their
/// own process groups) and waits briefly until they are gone. Returns the pids still alive.
/// Does nothing when the agent does not lead its session (then it shares one with others).
fn kill_session() -> Vec<u32> {
    let own = std::process::id();
    // SAFETY: getsid(0) reads the caller's session id; no memory is passed.
    let session = unsafe { getsid(0) };
    if session < 0 || session as u32 != own {
        return Vec::new();
    }
    let members = || -> Vec<u32> {
        session_members(session as u32)
            .into_iter()
            .filter(|pid| *pid != own)
            .collect()
    };
    let found = members();
    if found.is_empty() {
        return found;
    }
    for pid in &found {
        // SAFETY: kill(2) with a pid and a signal number; no memory is passed.
        unsafe {
            kill(*pid as c_int, SIGKILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        // Zombies (our own children) count as gone: reap them.
        reap_children();
        let left: Vec<u32> = members()
            .into_iter()
            .filter(|pid| !is_zombie(*pid))
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pids whose session id (field 6 of `/proc/PID/stat`) is `session`.
fn session_members(session: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat_fields(*pid).is_some_and(|fields| fields.session == session))
        .collect()
}

struct StatFields {
    state: char,
    session: u32,
}

fn stat_fields(pid: u32) -> Option<StatFields> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp session ...`; comm may contain spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let _pgrp = fields.next()?;
    let session = fields.next()?.parse().ok()?;
    Some(StatFields { state, session })
}

fn is_zombie(pid: u32) -> bool {
    stat_fields(pid).is_none_or(|fields| fields.state == 'Z' || fields.state == 'X')
}

fn reap_children() {
    extern "C" {
        fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    }
    const WNOHANG: c_int = 1;
    let mut status: c_int = 0;
    // SAFETY: waitpid(-1, &status, WNOHANG) writes one int into `status`, which we own.
    while unsafe { waitpid(-1, &mut status, WNOHANG) } > 0 {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(work: &str, dir: &str) -> CleanupRequest {
        CleanupRequest {
            work_dir: work.to_string(),
            agent_dir: dir.to_string(),
        }
    }

    #[test]
    fn removes_only_a_work_directory_under_the_agent_directory() {
        let accepted = |work: &str, dir: &str| check_request(&request(work, dir)).is_ok();
        assert!(accepted("/home/u/.mop/w-1a2b3c", "/home/u/.mop"));
        assert!(!accepted("/home/u/.mop", "/home/u"));
        assert!(!accepted("/home/u/.mop/w-", "/home/u/.mop"));
        assert!(!accepted("/home/u/.mop/w-../x", "/home/u/.mop"));
        assert!(!accepted("/home/u/.mop/x/w-12", "/home/u/.mop"));
        assert!(!accepted("relative/w-12", "relative"));
        assert!(!accepted("/home/u/.mop/agent-12", "/home/u/.mop"));
    }

    #[test]
    fn removes_the_work_directory_and_an_emptied_agent_directory() {
        let base = std::env::temp_dir().join(format!("mop-cleanup-test-{}", std::process::id()));
        let dir = base.join(".mop");
        let work = dir.join("w-abc123");
        std::fs::create_dir_all(work.join("sub")).unwrap();
        std::fs::write(work.join("mop-agent"), b"x").unwrap();
        let result = run(&request(work.to_str().unwrap(), dir.to_str().unwrap()));
        assert_eq!(result, Ok(()));
        assert!(!work.exists());
        assert!(!dir.exists(), "the emptied agent directory goes too");
        // A second work directory keeps the agent directory alive.
        let other = dir.join("w-other1");
        std::fs::create_dir_all(&other).unwrap();
        let work = dir.join("w-abc124");
        std::fs::create_dir_all(&work).unwrap();
        assert_eq!(
            run(&request(work.to_str().unwrap(), dir.to_str().unwrap())),
            Ok(())
        );
        assert!(!work.exists());
        assert!(other.exists());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn reads_the_session_of_this_process() {
        let own = std::process::id();
        // SAFETY: as in kill_session.
        let session = unsafe { getsid(0) } as u32;
        assert!(session_members(session).contains(&own));
        assert!(!is_zombie(own));
    }
}
