//! `mop clean`: what a host keeps of mop between runs (cached agents, work directories of dead
//! agents) removed by one shell script per host, and its report parsed.
//!
//! The script runs as the login user over the same exec as `mop run`. It removes every regular
//! `agent-*` file of the agent directory, and each `w-*` work directory under the same rule as
//! the probe's reaper (`ssh::bootstrap::stale_work_dir_reaper`): a real directory whose `lock`
//! is a regular file untouched for the grace and free (`flock -n`), removed while holding that
//! lock, so the work directory of a live agent (or of a run just starting) is never touched.
//! Then the agent directory itself goes if that leaves it empty.

use crate::ssh::{agent_dir_expression, AgentDirError, STALE_WORK_DIR_GRACE_MINUTES};

/// The clean script for a host whose agent directory is `agent_dir` (`mop_agent_dir`; `None`:
/// `$HOME/.mop`). Errors name what is wrong with the directory.
pub fn clean_script(agent_dir: Option<&str>) -> Result<String, AgentDirError> {
    let dir = agent_dir_expression(agent_dir)?;
    Ok(format!(
        concat!(
            "LC_ALL=C; export LC_ALL; dir={dir}; ",
            r#"if [ -L "$dir" ] || [ ! -d "$dir" ]; then echo done=yes; exit 0; fi; "#,
            r#"printf 'dir=%s\n' "$dir"; "#,
            r#"for f in "$dir"/agent-*; do if [ -f "$f" ] && [ ! -L "$f" ]; then "#,
            r#"rm -f -- "$f" && echo "removed=${{f##*/}}"; fi; done; "#,
            r#"locks=; if command -v flock >/dev/null 2>&1 && command -v find >/dev/null 2>&1; then locks=yes; fi; "#,
            r#"for w in "$dir"/w-*; do if [ ! -d "$w" ] || [ -L "$w" ]; then continue; fi; name=${{w##*/}}; "#,
            r#"if [ -z "$locks" ]; then echo "kept=$name:the host has no flock or find"; "#,
            r#"elif [ ! -f "$w"/lock ] || [ -L "$w"/lock ]; then echo "kept=$name:no lock file (another mop version's work directory?)"; "#,
            r#"elif [ -z "$(find "$w"/lock -prune -mmin +{grace} 2>/dev/null)" ]; then echo "kept=$name:in use (its lock was touched less than {grace} minutes ago)"; "#,
            r#"elif flock -x -n "$w"/lock rm -rf -- "$w" 2>/dev/null && [ ! -e "$w" ]; then echo "removed=$name"; "#,
            r#"elif [ -e "$w" ]; then echo "kept=$name:in use by a live agent (or not removable by $(id -un))"; fi; done; "#,
            r#"if rmdir "$dir" 2>/dev/null; then echo removed_dir=yes; fi; echo done=yes"#
        ),
        dir = dir,
        grace = STALE_WORK_DIR_GRACE_MINUTES
    ))
}

/// What the clean script reported for one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CleanReport {
    /// The agent directory on the host; `None` when it did not exist.
    pub dir: Option<String>,
    /// Names removed from the agent directory (`agent-<sha256>`, `w-<token>`).
    pub removed: Vec<String>,
    /// Work directories left in place, with why.
    pub kept: Vec<KeptEntry>,
    /// The agent directory itself was removed (nothing else was in it).
    pub removed_dir: bool,
    /// The script ran to its end.
    #[serde(skip)]
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeptEntry {
    pub name: String,
    pub reason: String,
}

/// Parses the script's output (one `key=value` line each; anything else is ignored).
pub fn parse_clean_output(output: &str) -> CleanReport {
    let mut report = CleanReport::default();
    for line in output.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "dir" => report.dir = Some(value.to_string()),
            "removed" => report.removed.push(value.to_string()),
            "kept" => {
                let (name, reason) = value.split_once(':').unwrap_or((value, ""));
                report.kept.push(KeptEntry {
                    name: name.to_string(),
                    reason: reason.to_string(),
                });
            }
            "removed_dir" => report.removed_dir = true,
            "done" => report.done = true,
            _ => {}
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn run(home: &Path) -> CleanReport {
        let script = clean_script(None).expect("default dir");
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("HOME", home)
            .output()
            .expect("sh runs");
        assert!(output.status.success(), "{output:?}");
        parse_clean_output(&String::from_utf8_lossy(&output.stdout))
    }

    fn set_age(path: &Path, minutes: u64) {
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(minutes * 60);
        std::fs::File::open(path)
            .and_then(|file| file.set_modified(when))
            .expect("set mtime");
    }

    /// Cached agents and dead agents' work directories go; a held lock, a fresh lock, a
    /// lockless directory and other files stay, and so does the directory holding them.
    #[test]
    fn clean_removes_cached_agents_and_only_dead_work_dirs() {
        let home = tempfile::tempdir().expect("temp dir");
        assert_eq!(
            run(home.path()).dir,
            None,
            "no agent directory: nothing to do"
        );
        let dir = home.path().join(".mop");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("agent-aa"), b"agent").expect("write");
        std::fs::write(dir.join("mop.log"), b"log").expect("write");
        let work = |name: &str, lock_age: Option<u64>| {
            let path = dir.join(name);
            std::fs::create_dir(&path).expect("mkdir");
            if let Some(minutes) = lock_age {
                std::fs::write(path.join("lock"), b"").expect("write");
                set_age(&path.join("lock"), minutes);
            }
            path
        };
        work("w-dead", Some(60));
        let live = work("w-live", Some(60));
        work("w-fresh", Some(0));
        work("w-nolock", None);
        let held = std::fs::File::open(live.join("lock")).expect("open");
        // SAFETY: flock(2) on a descriptor the test owns.
        assert_eq!(
            unsafe {
                libc::flock(
                    std::os::fd::AsRawFd::as_raw_fd(&held),
                    libc::LOCK_SH | libc::LOCK_NB,
                )
            },
            0
        );
        let report = run(home.path());
        assert!(report.done);
        assert_eq!(report.removed, ["agent-aa", "w-dead"]);
        let kept: Vec<&str> = report.kept.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(kept, ["w-fresh", "w-live", "w-nolock"], "{report:?}");
        assert!(!report.removed_dir);
        assert!(dir.join("mop.log").exists() && live.exists());
        drop(held);

        // Only cached agents left: the directory goes too.
        let bare = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(bare.path().join(".mop")).expect("mkdir");
        std::fs::write(bare.path().join(".mop/agent-bb"), b"agent").expect("write");
        let report = run(bare.path());
        assert_eq!(report.removed, ["agent-bb"]);
        assert!(report.removed_dir && !bare.path().join(".mop").exists());
    }
}
