//! Cleaning up after runs whose process died without running `Drop` (SIGKILL, Ctrl-C, abort).
//!
//! Every run directory holds an `owner` file with the pid and pid namespace of its creator;
//! a directory whose owner is gone is stale: processes mentioning it are killed and it is
//! removed. Namespaces carry the owner pid in their name (`moptest-<pid>-<n>`).

use std::path::{Path, PathBuf};

use crate::netns::remove_stale_namespaces;
use crate::process::kill_processes_mentioning;
use crate::system::{process_alive, require_root};
use crate::Error;

/// What [`cleanup_stale`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// Network namespaces deleted.
    pub namespaces: Vec<String>,
    /// Run directories removed.
    pub dirs: Vec<PathBuf>,
    /// Leftover processes killed (sshd, socat).
    pub processes: usize,
}

fn own_pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|link| link.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(crate) fn write_owner_file(run_dir: &Path) -> Result<(), Error> {
    let path = run_dir.join("owner");
    let text = format!(
        "pid {}\npidns {}\n",
        std::process::id(),
        own_pid_namespace()
    );
    std::fs::write(&path, text).map_err(|error| Error::io("write", &path, error))
}

fn parse_owner(text: &str) -> Option<(u32, &str)> {
    let mut pid = None;
    let mut pid_namespace = None;
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("pid", value)) => pid = value.parse().ok(),
            Some(("pidns", value)) => pid_namespace = Some(value),
            _ => {}
        }
    }
    Some((pid?, pid_namespace?))
}

/// Removes namespaces and run directories (under `base_dir`) of test processes that no longer
/// exist, killing their leftover sshd and socat processes.
pub fn cleanup_stale(base_dir: &Path) -> Result<CleanupReport, Error> {
    require_root()?;
    let mut report = CleanupReport::default();
    match remove_stale_namespaces() {
        Ok(removed) => report.namespaces = removed,
        Err(Error::ToolMissing { .. }) => {}
        Err(error) => return Err(error),
    }
    let Ok(entries) = std::fs::read_dir(base_dir) else {
        return Ok(report);
    };
    let our_namespace = own_pid_namespace();
    for entry in entries.flatten() {
        let is_ours = entry
            .file_name()
            .to_string_lossy()
            .starts_with("mop-testhosts-");
        let path = entry.path();
        if !is_ours || !path.is_dir() {
            continue;
        }
        let Ok(owner) = std::fs::read_to_string(path.join("owner")) else {
            continue;
        };
        let Some((pid, pid_namespace)) = parse_owner(&owner) else {
            continue;
        };
        // A run from another pid namespace (a container sharing /tmp) cannot be judged from here.
        if pid_namespace != our_namespace || pid == std::process::id() || process_alive(pid) {
            continue;
        }
        report.processes += kill_processes_mentioning(&path.to_string_lossy());
        std::fs::remove_dir_all(&path)
            .map_err(|error| Error::io("remove stale run directory", &path, error))?;
        report.dirs.push(path);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_file_round_trips() {
        assert_eq!(
            parse_owner("pid 42\npidns pid:[4026531836]\n"),
            Some((42, "pid:[4026531836]"))
        );
        assert_eq!(parse_owner("pid x\npidns a\n"), None);
        assert_eq!(parse_owner("pid 42\n"), None);
    }
}
