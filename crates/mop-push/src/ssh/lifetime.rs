//! What bounds the controller-side leftovers of a run when mop dies without cleaning up
//! (SIGKILL, OOM, a crash): a lock that marks the run directory as live, and a watchdog that
//! ends with mop.
//!
//! - Each run directory holds `lock`, flocked by mop for the life of the pool. The lock file is
//!   created under another name, locked, then renamed into place, so a `lock` that can be taken
//!   always means its owner is dead (never "not locked yet").
//! - The watchdog is a small `sh` started when the pool is built, in its own process group and
//!   deaf to terminal signals, reading a pipe that only mop holds (close-on-exec, so no ssh
//!   process inherits it). A clean end writes `done` and the watchdog exits. End of file without
//!   it means mop died however it died: the watchdog SIGTERMs the ssh processes naming the run
//!   directory (masters started with `ControlPersist`, the `ssh -W` of jump hosts, abandoned
//!   logins), SIGKILLs what is left a second later, and removes the directory. Killing a master
//!   closes its connection, which is how the agents on the hosts learn that mop is gone.
//! - A new pool also looks for run directories of earlier runs of this user in the same parent
//!   whose `lock` it can take (their owner died and their watchdog did not finish, e.g. it was
//!   killed too) and has its watchdog reap them the same way, at once.
//!
//! Persisted masters (`--persist`) name only files in the connection directory, never the run
//! directory, so neither reaper touches them.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

/// The prefix of run directories (`<parent>/mop-XXXXXX`).
pub(crate) const RUN_DIR_PREFIX: &str = "mop-";

/// The lock file inside a run directory.
const LOCK_NAME: &str = "lock";

/// The watchdog, as one POSIX sh script: `$1` is the run directory, the other arguments are
/// dead runs' directories to reap right away. Only ssh processes of this user whose command
/// line names a reaped directory are signalled; `rm -rf` does not follow symbolic links.
const WATCHDOG_SCRIPT: &str = r#"trap '' HUP INT QUIT TERM PIPE
list() {
  found=
  for p in /proc/[0-9]*; do
    [ -O "$p" ] || continue
    IFS= read -r comm 2>/dev/null <"$p/comm" || continue
    [ "$comm" = ssh ] || continue
    tr '\0' '\n' 2>/dev/null <"$p/cmdline" | grep -qF -e "$1/" || continue
    found="$found ${p#/proc/}"
  done
}
reap() {
  list "$1"
  if [ -n "$found" ]; then
    kill -TERM $found 2>/dev/null
    sleep 1
    list "$1"
    if [ -n "$found" ]; then kill -KILL $found 2>/dev/null; fi
  fi
  rm -rf -- "$1"
}
run=$1
shift
for stale in "$@"; do reap "$stale"; done
IFS= read -r line
if [ "$line" = done ]; then exit 0; fi
reap "$run"
"#;

/// Held by the pool: the run directory's lock and the watchdog's pipe.
pub(crate) struct RunGuard {
    _lock: File,
    watchdog: Option<(Child, ChildStdin)>,
}

impl RunGuard {
    /// Locks `run_dir`, finds dead runs' directories beside it, and starts the watchdog.
    /// A watchdog that cannot start is not fatal: the run works, only the crash bound is gone
    /// (and a later run reaps the directory through its lock).
    pub(crate) fn start(run_dir: &Path) -> std::io::Result<RunGuard> {
        let lock = lock_run_dir(run_dir)?;
        let stale = run_dir
            .parent()
            .map(|parent| stale_run_dirs(parent, run_dir))
            .unwrap_or_default();
        let watchdog = spawn_watchdog(run_dir, &stale).ok();
        Ok(RunGuard {
            _lock: lock,
            watchdog,
        })
    }

    /// The run ended cleanly (its directory is gone): the watchdog exits without reaping.
    pub(crate) fn finish(mut self) {
        if let Some((mut child, mut stdin)) = self.watchdog.take() {
            let _ = stdin.write_all(b"done\n");
            drop(stdin);
            // Usually exited already; if it is still reaping a dead run, it finishes alone.
            let _ = child.try_wait();
        }
    }
}

/// Creates `run_dir/lock` already locked: made as `lock.new`, flocked, then renamed.
fn lock_run_dir(run_dir: &Path) -> std::io::Result<File> {
    let fresh = run_dir.join(format!("{LOCK_NAME}.new"));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&fresh)?;
    // SAFETY: flock(2) on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    std::fs::rename(&fresh, run_dir.join(LOCK_NAME))?;
    Ok(file)
}

/// What a directory entry beside the run directory looks like, for [`is_dead_run_dir`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunDirEntry<'a> {
    pub(crate) name: &'a str,
    /// From `lstat`: a symbolic link is never a run directory.
    pub(crate) is_real_dir: bool,
    pub(crate) owner: u32,
    pub(crate) lock: LockState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockState {
    /// No `lock` regular file (another version's directory, or not a run directory at all).
    Missing,
    /// Someone holds the lock: a live run.
    Held,
    /// The lock could be taken: its owner is dead.
    Free,
}

/// Whether an entry is a dead run's directory that this user may reap.
pub(crate) fn is_dead_run_dir(entry: &RunDirEntry<'_>, own_uid: u32) -> bool {
    let well_named = entry
        .name
        .strip_prefix(RUN_DIR_PREFIX)
        .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric()));
    well_named && entry.is_real_dir && entry.owner == own_uid && entry.lock == LockState::Free
}

/// Run directories in `parent` (other than `own`) whose owner died.
pub(crate) fn stale_run_dirs(parent: &Path, own: &Path) -> Vec<PathBuf> {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    let own_uid = unsafe { libc::geteuid() };
    let Ok(listing) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut stale = Vec::new();
    for entry in listing.flatten() {
        let path = entry.path();
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        if path == own || !name.starts_with(RUN_DIR_PREFIX) {
            continue;
        }
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mut candidate = RunDirEntry {
            name,
            is_real_dir: metadata.is_dir(),
            owner: metadata.uid(),
            lock: LockState::Missing,
        };
        // Only look inside what could be ours.
        if !candidate.is_real_dir || candidate.owner != own_uid {
            continue;
        }
        candidate.lock = lock_state(&path.join(LOCK_NAME));
        if is_dead_run_dir(&candidate, own_uid) {
            stale.push(path);
        }
    }
    stale
}

/// Tries the lock without waiting; a lock that could be taken is released again at once.
fn lock_state(lock: &Path) -> LockState {
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(lock)
    else {
        return LockState::Missing;
    };
    if !file.metadata().is_ok_and(|metadata| metadata.is_file()) {
        return LockState::Missing;
    }
    // SAFETY: flock(2) on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        LockState::Free
    } else {
        LockState::Held
    }
}

fn spawn_watchdog(run_dir: &Path, stale: &[PathBuf]) -> std::io::Result<(Child, ChildStdin)> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG_SCRIPT)
        .arg("mop-watchdog")
        .arg(run_dir)
        .args(stale)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: Ctrl-C at the terminal reaches mop, which cleans up itself.
        .process_group(0)
        .spawn()?;
    let stdin = child.stdin.take().expect("stdin was requested as a pipe");
    Ok((child, stdin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unlocked_run_directories_of_this_user_are_dead() {
        let uid = 1000;
        let dead = |name: &str, is_real_dir: bool, owner: u32, lock: LockState| {
            is_dead_run_dir(
                &RunDirEntry {
                    name,
                    is_real_dir,
                    owner,
                    lock,
                },
                uid,
            )
        };
        assert!(dead("mop-Ab12cd", true, uid, LockState::Free));
        assert!(!dead("mop-Ab12cd", true, uid, LockState::Held), "live run");
        assert!(
            !dead("mop-Ab12cd", true, uid, LockState::Missing),
            "not ours"
        );
        assert!(!dead("mop-Ab12cd", true, 0, LockState::Free), "other user");
        assert!(!dead("mop-Ab12cd", false, uid, LockState::Free), "symlink");
        assert!(!dead("mop-", true, uid, LockState::Free));
        assert!(!dead("mop-a.b", true, uid, LockState::Free));
        assert!(!dead("other-x1", true, uid, LockState::Free));
    }

    /// Holds an flock on `dir/lock` in a separate `sh` until its stdin closes.
    ///
    /// Not in this process: another test thread that forks while this process holds a lock
    /// shares the lock with its child until the child's exec, so a lock released here could
    /// still look held to the next check (this test once failed that way under load).
    fn hold_lock_elsewhere(dir: &Path) -> Child {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec 9>>"$1/lock" && flock -x -n 9 && echo locked && read -r _"#)
            .arg("mop-test-lock")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("piped")),
            &mut line,
        )
        .expect("read");
        assert_eq!(line, "locked\n", "the helper took the lock");
        child
    }

    /// Real directories and real flocks: a directory whose lock is held is kept, a directory
    /// whose lock nobody holds is found, a symlink to it and a lockless directory are not.
    #[test]
    fn finds_dead_run_directories_beside_a_new_one() {
        let parent = tempfile::tempdir().expect("temp dir");
        let make = |name: &str| {
            let path = parent.path().join(name);
            std::fs::create_dir(&path).expect("mkdir");
            path
        };
        let live = make("mop-live01");
        let mut holder = hold_lock_elsewhere(&live);
        let dead = make("mop-dead01");
        // A lock file nobody ever locked, as a run that died leaves it.
        std::fs::write(dead.join(LOCK_NAME), "").expect("write");
        let lockless = make("mop-nolock");
        std::fs::write(lockless.join("ssh_config"), "").expect("write");
        std::os::unix::fs::symlink(&dead, parent.path().join("mop-link01")).expect("symlink");
        let own = make("mop-own001");
        let stale = stale_run_dirs(parent.path(), &own);
        assert_eq!(stale, vec![dead.clone()]);
        // The holder exits when its stdin closes; once reaped, its lock is gone.
        drop(holder.stdin.take());
        holder.wait().expect("the lock holder exits");
        let mut stale = stale_run_dirs(parent.path(), &own);
        stale.sort();
        assert_eq!(stale, vec![dead, live]);
    }

    /// `lock_run_dir` takes the lock (a second taker is refused) and the lock goes with the
    /// file.
    #[test]
    fn a_run_directory_lock_is_exclusive() {
        let parent = tempfile::tempdir().expect("temp dir");
        let dir = parent.path().join("mop-excl01");
        std::fs::create_dir(&dir).expect("mkdir");
        let lock = lock_run_dir(&dir).expect("lock");
        let again = std::fs::File::open(dir.join(LOCK_NAME)).expect("open");
        // SAFETY: flock(2) on a descriptor this test owns.
        let taken = unsafe { libc::flock(again.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_ne!(taken, 0, "a second flock on a held run lock must fail");
        drop(lock);
    }

    /// The watchdog removes the run directory when the pipe closes without `done`, and leaves
    /// it when told the run is done.
    #[test]
    fn the_watchdog_reaps_only_when_mop_did_not_finish() {
        let parent = tempfile::tempdir().expect("temp dir");
        let watchdog_of = |dir: &Path| {
            std::fs::create_dir(dir).expect("mkdir");
            let guard = RunGuard::start(dir).expect("guard");
            match guard.watchdog {
                Some(watchdog) => (guard._lock, watchdog),
                None => panic!("the watchdog did not start"),
            }
        };
        let finished = parent.path().join("mop-fine01");
        let (_lock, (mut child, mut stdin)) = watchdog_of(&finished);
        stdin.write_all(b"done\n").expect("write");
        drop(stdin);
        child.wait().expect("watchdog exits");
        let crashed = parent.path().join("mop-crash1");
        let (_lock, (mut child, stdin)) = watchdog_of(&crashed);
        drop(stdin);
        child.wait().expect("watchdog exits");
        assert!(!crashed.exists(), "the crashed run's directory is reaped");
        assert!(
            finished.exists(),
            "a finished run's directory is the pool's to remove"
        );
    }
}
