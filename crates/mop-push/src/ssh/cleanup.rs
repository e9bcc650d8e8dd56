//! Removing what a run put on a host: this run's agents killed, work directories removed (the
//! cached agent stays), by the agent itself at the end of a clean run or by one exec here.

use mop_protocol::CleanupRequest;

use super::bootstrap::cleanup_script;
use super::exec::exec;
use super::run_as::RunAs;
use super::{SshError, SshPool};

impl SshPool {
    /// What the agent on `host` should remove itself at the end of the run, when it can do the
    /// whole cleanup alone: this run installed one work directory there and started agents in
    /// it under one identity only (so no other agent's commands can be left behind), which is
    /// the login user or root (a third user may not remove the login user's directory).
    pub async fn self_cleanup_request(&self, host: &str) -> Option<CleanupRequest> {
        let slot = self.slot(host).ok()?;
        let installs = slot.remote.lock().await;
        match installs.as_slice() {
            // An agent running as a third user cannot remove the login user's directory.
            [install]
                if install.started_as.len() == 1
                    && !install.dir.is_empty()
                    && !install.key.shared =>
            {
                Some(CleanupRequest {
                    work_dir: install.work.clone(),
                    agent_dir: install.dir.clone(),
                })
            }
            _ => None,
        }
    }

    /// Records that the agent on `host` removed everything this run put there, so
    /// [`SshPool::cleanup`] has nothing left to do.
    pub async fn cleaned_by_agent(&self, host: &str) {
        if let Ok(slot) = self.slot(host) {
            slot.remote.lock().await.clear();
        }
    }

    /// Kills this run's agents on `host` and removes its work directories (and the agent
    /// directory if that leaves it empty; a cached agent stays). Safe to call for a host that
    /// was never reached (nothing to do) and more than once.
    pub async fn cleanup(&self, host: &str) -> Result<(), SshError> {
        let slot = self.slot(host)?;
        let Some(Ok(session)) = slot.session.get() else {
            return Ok(());
        };
        let mut installs = slot.remote.lock().await;
        if installs.is_empty() {
            return Ok(());
        }
        let mut scripts = Vec::new();
        let mut stdin = Vec::new();
        for install in installs.iter() {
            let mut prefixes = vec![String::new()];
            for (run_as, line) in &install.started_as {
                if *run_as != RunAs::Login {
                    prefixes.push(run_as.command_prefix_in(&install.work));
                    stdin.extend(line.iter().flatten());
                }
            }
            scripts.push(cleanup_script(&prefixes, &install.work, &install.dir));
        }
        let works: Vec<String> = installs
            .iter()
            .map(|install| install.work.clone())
            .collect();
        let failure = |detail: String| SshError::Cleanup {
            host: host.to_string(),
            work_dir: works.join("`, `"),
            detail,
        };
        let output = exec(
            session,
            &scripts.join("; "),
            (!stdin.is_empty()).then_some(stdin),
        )
        .await
        .map_err(|error| failure(error.to_string()))?;
        if output.stdout.contains("left=yes") {
            return Err(failure(format!(
                "the work directory is still there: {}",
                output.stderr.trim()
            )));
        }
        installs.clear();
        Ok(())
    }
}
