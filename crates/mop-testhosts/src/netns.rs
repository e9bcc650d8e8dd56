//! The network namespace that hides the bastion's targets from the root namespace.
//!
//! Only its loopback is up; nothing routes between it and the root namespace. The bastion is
//! reached through a unix socket on the shared filesystem (see `bridge` in `hosts.rs`).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::system::{find_tool, process_alive, run, send_signal};
use crate::Error;

/// Prefix of every namespace we create: `moptest-<pid>-<n>`.
pub(crate) const NAMESPACE_PREFIX: &str = "moptest-";

static NEXT_NAMESPACE: AtomicUsize = AtomicUsize::new(0);

/// A network namespace we created; [`Namespace::delete`] removes it.
#[derive(Debug)]
pub(crate) struct Namespace {
    pub(crate) name: String,
    ip: PathBuf,
}

impl Namespace {
    /// Creates `moptest-<pid>-<n>` with its loopback up.
    pub(crate) fn create() -> Result<Namespace, Error> {
        let ip = find_tool("ip")?;
        let number = NEXT_NAMESPACE.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NAMESPACE_PREFIX}{}-{number}", std::process::id());
        run(
            &ip,
            &["netns".as_ref(), "add".as_ref(), name.as_ref()],
            None,
        )?;
        let namespace = Namespace { name, ip };
        let up: [&OsStr; 6] = [
            "-n".as_ref(),
            namespace.name.as_ref(),
            "link".as_ref(),
            "set".as_ref(),
            "lo".as_ref(),
            "up".as_ref(),
        ];
        if let Err(error) = run(&namespace.ip, &up, None) {
            let _ = namespace.delete();
            return Err(error);
        }
        Ok(namespace)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec` execs it directly,
    /// so the child's pid is the program's pid).
    pub(crate) fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(&self.ip);
        command
            .arg("netns")
            .arg("exec")
            .arg(&self.name)
            .arg(program);
        command
    }

    /// Kills whatever still runs inside, then deletes the namespace.
    pub(crate) fn delete(&self) -> Result<(), Error> {
        kill_namespace_processes(&self.ip, &self.name);
        run(
            &self.ip,
            &["netns".as_ref(), "delete".as_ref(), self.name.as_ref()],
            None,
        )?;
        Ok(())
    }
}

fn kill_namespace_processes(ip: &Path, name: &str) {
    let Ok(pids) = run(
        ip,
        &["netns".as_ref(), "pids".as_ref(), name.as_ref()],
        None,
    ) else {
        return;
    };
    for pid in pids
        .split_whitespace()
        .filter_map(|pid| pid.parse::<u32>().ok())
    {
        send_signal(pid, libc::SIGKILL);
    }
}

/// The pid encoded in a namespace name of ours, if it is one.
pub(crate) fn owner_pid(namespace: &str) -> Option<u32> {
    let rest = namespace.strip_prefix(NAMESPACE_PREFIX)?;
    let (pid, number) = rest.split_once('-')?;
    number.parse::<usize>().ok()?;
    pid.parse().ok()
}

/// Deletes namespaces left by test processes that died without cleaning up (SIGKILL, Ctrl-C).
/// Returns the names it removed.
pub(crate) fn remove_stale_namespaces() -> Result<Vec<String>, Error> {
    let ip = find_tool("ip")?;
    let listing = run(&ip, &["netns".as_ref(), "list".as_ref()], None)?;
    let mut removed = Vec::new();
    for line in listing.lines() {
        // Lines look like "moptest-12-0" or "moptest-12-0 (id: 3)".
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = owner_pid(name) else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        kill_namespace_processes(&ip, name);
        if run(
            &ip,
            &["netns".as_ref(), "delete".as_ref(), name.as_ref()],
            None,
        )
        .is_ok()
        {
            removed.push(name.to_owned());
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_only_for_our_names() {
        assert_eq!(owner_pid("moptest-1234-0"), Some(1234));
        assert_eq!(owner_pid("moptest-1234-x"), None);
        assert_eq!(owner_pid("moptest-abc-1"), None);
        assert_eq!(owner_pid("other-1234-0"), None);
    }
}
