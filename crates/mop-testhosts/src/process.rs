//! Daemons we started (sshd, socat) and killing them together with every process they forked.
//!
//! sshd forks a process per connection and that process calls `setsid`, so killing the
//! listener's process group is not enough: we freeze the whole tree with SIGSTOP (a stopped
//! process cannot fork or exit, so nothing is reparented away while we look), walk `/proc` until
//! no new descendant shows up, then SIGKILL everything.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::system::{parse_stat, send_signal};
use crate::Error;

/// One daemon we spawned, with the log file that receives its stderr.
#[derive(Debug)]
pub(crate) struct ManagedProcess {
    /// "sshd" or "socat bridge", for messages.
    pub(crate) daemon: &'static str,
    /// The test host this daemon serves.
    pub(crate) host: String,
    /// Where its stderr goes.
    pub(crate) log: PathBuf,
    child: Option<Child>,
}

impl ManagedProcess {
    /// Spawns `command` with stdin/stdout from /dev/null and stderr appended to `log`.
    pub(crate) fn spawn(
        daemon: &'static str,
        host: &str,
        log: &Path,
        mut command: Command,
    ) -> Result<ManagedProcess, Error> {
        let log_file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|error| Error::io("create log", log, error))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|error| Error::CommandFailed {
                command: format!("{command:?}"),
                status: format!("cannot start: {error}"),
                stderr: String::new(),
            })?;
        Ok(ManagedProcess {
            daemon,
            host: host.to_owned(),
            log: log.to_path_buf(),
            child: Some(child),
        })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the process has ended (and reaps it), else `None`.
    pub(crate) fn exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().ok().flatten()
    }
}

/// Kills every given process and all of its descendants, then reaps the direct children.
/// Returns one line per problem (never panics: this runs from `Drop`).
pub(crate) fn kill_process_trees(processes: &mut [ManagedProcess]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut roots = Vec::new();
    for process in processes.iter_mut() {
        if process.exit_status().is_none() {
            roots.extend(process.pid());
        }
    }
    let frozen = freeze_trees(&roots);
    for pid in &frozen {
        send_signal(*pid, libc::SIGKILL);
    }
    for process in processes.iter_mut() {
        if let Some(mut child) = process.child.take() {
            let _ = child.kill();
            if let Err(error) = child.wait() {
                problems.push(format!(
                    "cannot reap {} for host `{}` (pid {}): {error}",
                    process.daemon,
                    process.host,
                    child.id()
                ));
            }
        }
    }
    problems
}

/// Sends SIGSTOP to the roots and their descendants until the set is closed and every member
/// is really stopped; returns all of them.
fn freeze_trees(roots: &[u32]) -> BTreeSet<u32> {
    let mut frozen: BTreeSet<u32> = BTreeSet::new();
    for pid in roots {
        send_signal(*pid, libc::SIGSTOP);
        frozen.insert(*pid);
    }
    if roots.is_empty() {
        return frozen;
    }
    for _round in 0..500 {
        let table = process_table();
        let tree = descendants(&table, roots);
        let fresh: Vec<u32> = tree.difference(&frozen).copied().collect();
        for pid in &fresh {
            send_signal(*pid, libc::SIGSTOP);
            frozen.insert(*pid);
        }
        let all_stopped = frozen.iter().all(|pid| match table.get(pid) {
            None => true,
            Some((state, _)) => matches!(state, 'T' | 't' | 'Z' | 'X'),
        });
        if fresh.is_empty() && all_stopped {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    frozen
}

/// pid -> (state, parent pid) for every process visible in /proc.
fn process_table() -> BTreeMap<u32, (char, u32)> {
    let mut table = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return table;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) {
            if let Some(parsed) = parse_stat(&stat) {
                table.insert(pid, parsed);
            }
        }
    }
    table
}

/// All live (non-zombie) descendants of `roots`, excluding the roots themselves.
fn descendants(table: &BTreeMap<u32, (char, u32)>, roots: &[u32]) -> BTreeSet<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (pid, (state, parent)) in table {
        if *state != 'Z' && *state != 'X' {
            children.entry(*parent).or_default().push(*pid);
        }
    }
    let mut found = BTreeSet::new();
    let mut queue: Vec<u32> = roots.to_vec();
    while let Some(pid) = queue.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            if found.insert(*child) {
                queue.push(*child);
            }
        }
    }
    found
}

/// Kills processes whose command line mentions `needle` (leftovers of a crashed run whose
/// state directory is `needle`). Returns how many were signalled.
pub(crate) fn kill_processes_mentioning(needle: &str) -> usize {
    let mut matches = Vec::new();
    let own_pid = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own_pid {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                matches.push(pid);
            }
        }
    }
    let frozen = freeze_trees(&matches);
    for pid in &frozen {
        send_signal(*pid, libc::SIGKILL);
    }
    matches.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_follow_the_tree_and_skip_zombies() {
        let table: BTreeMap<u32, (char, u32)> = [
            (10, ('S', 1)),
            (11, ('S', 10)),
            (12, ('S', 11)),
            (13, ('Z', 10)),
            (14, ('S', 13)),
            (20, ('S', 1)),
        ]
        .into_iter()
        .collect();
        let found: Vec<u32> = descendants(&table, &[10]).into_iter().collect();
        assert_eq!(found, vec![11, 12]);
        assert!(descendants(&table, &[20]).is_empty());
    }

    #[test]
    fn kills_a_forked_grandchild() {
        let sh = crate::system::find_tool("sh").expect("sh exists");
        let mut command = Command::new(sh);
        // The inner shell gets its own session, like an sshd connection process does.
        command.args(["-c", "setsid sleep 30 & sleep 30 & wait"]);
        let log = tempfile::NamedTempFile::new().expect("temp file");
        let mut process =
            ManagedProcess::spawn("test", "local", log.path(), command).expect("spawn sh");
        let root = process.pid().expect("running");
        let mut tree = BTreeSet::new();
        for _ in 0..200 {
            tree = descendants(&process_table(), &[root]);
            if tree.len() >= 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            tree.len() >= 2,
            "expected two sleeps under {root}: {tree:?}"
        );
        let problems = kill_process_trees(std::slice::from_mut(&mut process));
        assert!(problems.is_empty(), "{problems:?}");
        std::thread::sleep(Duration::from_millis(50));
        for pid in tree {
            assert!(!crate::system::process_alive(pid), "pid {pid} survived");
        }
    }
}
