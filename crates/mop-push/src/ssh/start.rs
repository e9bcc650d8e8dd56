//! Installing and starting the agent over a host's master: the one probe exec, the upload
//! unless cached, the start under the identity the become decisions (`run_as.rs`) settle on,
//! and the diagnosis of an agent that did not come up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openssh::Session;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

use super::bootstrap::{
    agent_command, agent_dir_expression, fused_start_marker, kill_command, parse_probe,
    place_upload_command, probe_script, sh_command, unsupported_platform, upload, upload_plan,
    ProbeAgent, ProbeRequest,
};
use super::child::{ClosingStdin, SshAgentChild};
use super::error::ChannelError;
use super::exec::{exec, exec_failure, ExecOutput};
use super::pool::HostSlot;
use super::run_as::{
    agent_stdin_line, check_become, check_outcome, check_password, check_prefixes, checks_first,
    checks_in_probe, password_line, BecomeSpec, RunAs,
};
use super::{SshError, SshPool};
use crate::transport::{AgentChild, AgentProcess};

/// How the agent is installed and run on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentOptions {
    /// Where work directories (and the cache) live; default `$HOME/.mop`.
    pub agent_dir: Option<String>,
    /// Keep the content-addressed agent on the host after the run and reuse it next time.
    pub cache: bool,
    pub sudo: Option<BecomeSpec>,
}

/// One work directory on a host, and what happened in it.
pub(super) struct Install {
    pub(super) key: InstallKey,
    pub(super) login_user: String,
    pub(super) dir: String,
    pub(super) work: String,
    /// Which of the pool's agents fits this host.
    pub(super) agent: usize,
    pub(super) agent_ready: bool,
    /// The host has `gzip`: upload the agent compressed.
    pub(super) gzip: bool,
    pub(super) failure: Option<SshError>,
    /// Sudo identities checked on this host: requested -> what to actually run.
    pub(super) sudo_checks: BTreeMap<RunAs, Result<RunAs, SshError>>,
    /// Identities agents were started under, with the stdin their sudo needs.
    pub(super) started_as: BTreeMap<RunAs, Option<Vec<u8>>>,
    /// Identities started without a sudo check first (`sudo -n`, nothing to send).
    pub(super) unchecked: BTreeSet<RunAs>,
}

/// An agent the probe started (see [`SshPool::probe`]): its channel, and its stdout after the
/// probe's own lines.
pub(super) struct StartedByProbe {
    child: openssh::Child<Arc<Session>>,
    stdout: BufReader<openssh::ChildStdout>,
}

/// The most a probe may print before its start marker or its end.
const PROBE_OUTPUT_LIMIT: usize = 64 * 1024;

/// Runs a probe that may become the agent: reads its stdout up to `marker` (the agent started:
/// the channel is handed back, positioned at the agent's first byte) or to its end (it did
/// not: its output, as [`exec`] returns it). Nothing is written to stdin here: the agent's
/// requests come later, from its caller.
async fn probe_or_start(
    session: &Arc<Session>,
    script: &str,
    marker: &str,
) -> Result<(ExecOutput, Option<StartedByProbe>), ChannelError> {
    let mut child = session
        .clone()
        .arc_raw_command(sh_command(script))
        .stdin(openssh::Stdio::piped())
        .stdout(openssh::Stdio::piped())
        .stderr(openssh::Stdio::piped())
        .spawn()
        .await
        .map_err(|error| ChannelError::ExecStart(error.to_string()))?;
    let Some(stdout) = child.stdout().take() else {
        unreachable!("stdout was requested as a pipe")
    };
    let mut stdout = BufReader::new(stdout);
    let (text, started) = read_probe_lines(&mut stdout, marker)
        .await
        .map_err(ChannelError::ExecWait)?;
    if started {
        let output = ExecOutput {
            code: None,
            stdout: String::from_utf8_lossy(&text).into_owned(),
            stderr: String::new(),
        };
        return Ok((output, Some(StartedByProbe { child, stdout })));
    }
    // The probe ended without starting the agent: the rest as `exec` collects it.
    drop(child.stdin().take());
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stderr().take() {
        let _ = pipe.read_to_end(&mut stderr).await;
    }
    let status = child
        .wait()
        .await
        .map_err(|error| ChannelError::ExecWait(error.to_string()))?;
    Ok((
        ExecOutput {
            code: status.code(),
            stdout: String::from_utf8_lossy(&text).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        },
        None,
    ))
}

/// The probe's lines up to `marker` (then `true`: what follows is the agent's) or to the end of
/// `reader` (`false`), at most [`PROBE_OUTPUT_LIMIT`] bytes: a probe prints a dozen short
/// lines, a host that sends more is not running one.
async fn read_probe_lines<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    marker: &str,
) -> Result<(Vec<u8>, bool), String> {
    let mut text = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut *reader)
            .take(PROBE_OUTPUT_LIMIT as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|error| error.to_string())?;
        if read == 0 {
            return Ok((text, false));
        }
        if text.len() + line.len() > PROBE_OUTPUT_LIMIT {
            return Err(format!(
                "the probe printed more than {PROBE_OUTPUT_LIMIT} bytes"
            ));
        }
        if line.strip_suffix(b"\n") == Some(marker.as_bytes()) {
            return Ok((text, true));
        }
        text.extend_from_slice(&line);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InstallKey {
    pub(super) agent_dir: String,
    pub(super) cache: bool,
    pub(super) shared: bool,
}

impl SshPool {
    /// Installs the agent on `host` unless this run did already (same agent dir, cache and
    /// sudo kind), then starts it over an exec channel, under sudo when `options` say so.
    pub async fn start_agent(
        &self,
        host: &str,
        options: &AgentOptions,
    ) -> Result<AgentProcess, SshError> {
        check_password(host, options.sudo.as_ref())?;
        if !self.has_agent || self.agents.is_empty() {
            return Err(SshError::AgentBinary {
                path: PathBuf::new(),
                detail: "this connection pool was opened without an agent".to_string(),
            });
        }
        let slot = self.slot(host)?;
        self.step(host, "ssh", || {
            format!(
                "ssh -F {} {} ({})",
                self.config_path.display(),
                slot.planned.alias,
                self.config_options(host)
            )
        });
        let session = self.session(host).await?;
        let requested = RunAs::from_spec(options.sudo.as_ref());
        let key = install_key(host, options, &requested)?;
        let mut installs = slot.remote.lock().await;
        let mut started_by_probe = None;
        let index = match installs.iter().position(|install| install.key == key) {
            Some(index) => index,
            None => {
                let (install, started) = self
                    .probe(slot, &session, key, options.sudo.as_ref(), &requested)
                    .await?;
                started_by_probe = started;
                installs.push(install);
                installs.len() - 1
            }
        };
        let install = &mut installs[index];
        if let Some(failure) = &install.failure {
            return Err(failure.clone());
        }
        // A check that already failed (in the probe, or for an earlier role) fails again
        // without a second try: a wrong password is tried once.
        if let Some(Err(error)) = install.sudo_checks.get(&requested) {
            return Err(error.clone());
        }
        if requested != RunAs::Login
            && !install.sudo_checks.contains_key(&requested)
            && !requested.needs_agent_wrapper()
        {
            self.check_before_start(host, &session, install, options, &requested)
                .await;
            if let Some(Err(error)) = install.sudo_checks.get(&requested) {
                return Err(error.clone());
            }
        }
        let mut fresh_upload = None;
        if install.agent_ready {
            self.step(host, "agent", || {
                format!(
                    "upload skipped: agent {} already on the host (cached in `{}`){}",
                    short_digest(&self.agents[install.agent].sha256),
                    install.dir,
                    if started_by_probe.is_some() {
                        "; the probe's exec started it"
                    } else {
                        ""
                    }
                )
            });
        } else {
            let agent = &self.agents[install.agent];
            let mut plan = upload_plan(
                &install.dir,
                &install.work,
                &agent.sha256,
                install.key.cache,
                install.key.shared,
            );
            self.uploads.fetch_add(1, Ordering::Relaxed);
            // Compressed when the host can unpack it; a failure to compress just sends it plain.
            let compressed = if install.gzip {
                agent.compressed().await.ok()
            } else {
                None
            };
            plan.compressed = compressed.is_some();
            let bytes = compressed.unwrap_or_else(|| agent.bytes.clone());
            if let Err(detail) = upload(session.clone(), &bytes, &plan).await {
                let error = SshError::UploadFailed {
                    host: host.to_string(),
                    address: slot.planned.spec.display_address(),
                    path: plan.temp_path,
                    detail,
                };
                install.failure = Some(error.clone());
                return Err(error);
            }
            slot.agent_bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            self.step(host, "agent", || {
                format!(
                    "sent agent {} ({} bytes{}) to `{}`",
                    short_digest(&agent.sha256),
                    bytes.len(),
                    if plan.compressed { ", gzip" } else { "" },
                    install.work
                )
            });
            install.agent_ready = true;
            fresh_upload = Some(plan);
        }
        if requested != RunAs::Login && !install.sudo_checks.contains_key(&requested) {
            // doas with a password is checked through the agent binary, which must be in
            // place first: a fresh upload is moved there now rather than by the start command.
            if let Some(plan) = fresh_upload.take() {
                let output = exec(&session, &place_upload_command(&plan), None)
                    .await
                    .map_err(|detail| SshError::Bootstrap {
                        host: host.to_string(),
                        detail: detail.to_string(),
                    })?;
                if output.code != Some(0) {
                    let error = SshError::Bootstrap {
                        host: host.to_string(),
                        detail: exec_failure(&output, None),
                    };
                    install.failure = Some(error.clone());
                    return Err(error);
                }
            }
            self.check_before_start(host, &session, install, options, &requested)
                .await;
        }
        let effective = match install.sudo_checks.get(&requested) {
            None => RunAs::Login,
            Some(Ok(effective)) => effective.clone(),
            Some(Err(error)) => return Err(error.clone()),
        };
        let stdin_line = agent_stdin_line(&effective, options.sudo.as_ref());
        install
            .started_as
            .insert(effective.clone(), stdin_line.clone());
        let prefix = effective.command_prefix_in(&install.work);
        // The prefix holds no secret (a password only ever travels on stdin), so it is shown.
        self.step(host, "sudo", || match &effective {
            RunAs::Login => "none: the agent runs as the login user".to_string(),
            RunAs::Become {
                method,
                with_password,
                ..
            } => format!(
                "agent started with `{}`{}",
                prefix.trim_end(),
                if *with_password {
                    format!(" (the {method} password is sent on stdin, never shown)")
                } else {
                    " (no password)".to_string()
                }
            ),
        });
        let (mut child, stdout) = match started_by_probe {
            // The probe became the agent (a cached agent, no password, no check first): the
            // same start as below, without its exec.
            Some(StartedByProbe { child, stdout }) if stdin_line.is_none() => {
                let stdout: Pin<Box<dyn AsyncRead + Send>> = Box::pin(stdout);
                (child, stdout)
            }
            _ => {
                let mut child = session
                    .clone()
                    .arc_raw_command(agent_command(&prefix, &install.work, fresh_upload.as_ref()))
                    .stdin(openssh::Stdio::piped())
                    .stdout(openssh::Stdio::piped())
                    .stderr(openssh::Stdio::piped())
                    .spawn()
                    .await
                    .map_err(|error| SshError::Spawn {
                        host: host.to_string(),
                        detail: error.to_string(),
                    })?;
                let Some(stdout) = child.stdout().take() else {
                    unreachable!("stdout was requested as a pipe")
                };
                let stdout: Pin<Box<dyn AsyncRead + Send>> = Box::pin(stdout);
                (child, stdout)
            }
        };
        let (Some(mut stdin), Some(stderr)) = (child.stdin().take(), child.stderr().take()) else {
            unreachable!("stdin and stderr were requested as pipes")
        };
        if let Some(line) = &stdin_line {
            // sudo -S, su or the doas wrapper reads exactly this line; the rest is the agent's.
            stdin
                .write_all(line)
                .await
                .map_err(|error| SshError::Spawn {
                    host: host.to_string(),
                    detail: format!("cannot pass the become password: {error}"),
                })?;
            stdin.flush().await.map_err(|error| SshError::Spawn {
                host: host.to_string(),
                detail: format!("cannot pass the become password: {error}"),
            })?;
        }
        let killer = SshAgentChild::new(
            host,
            child,
            &session,
            kill_command(&prefix, &install.work),
            stdin_line,
        );
        Ok(AgentProcess {
            stdin: Box::pin(ClosingStdin::new(stdin)),
            stdout,
            stderr: Box::pin(stderr),
            child: AgentChild::Ssh(killer),
        })
    }

    /// Checks `requested` before the agent starts when it must be (`run_as::checks_first`),
    /// else records it as unchecked (`sudo -n`, `doas -n` cannot hang on a prompt: the agent
    /// starts right away and is diagnosed only if it does not come up, see
    /// `diagnose_agent_start`).
    async fn check_before_start(
        &self,
        host: &str,
        session: &Session,
        install: &mut Install,
        options: &AgentOptions,
        requested: &RunAs,
    ) {
        let checked = if checks_first(requested) {
            check_become(host, session, install, options.sudo.as_ref(), requested).await
        } else {
            install.unchecked.insert(requested.clone());
            Ok(requested.clone())
        };
        install.sudo_checks.insert(requested.clone(), checked);
    }

    fn next_token(&self, host: &str) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let counter = self.tokens.fetch_add(1, Ordering::Relaxed);
        let digest = Sha256::digest(format!("{}/{nanos}/{counter}/{host}", std::process::id()));
        digest
            .iter()
            .take(6)
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// The one probe exec: platform, home, work dir, cache, and the first sudo check. When the
    /// cached agent checks out and the start needs no check or password first, the probe
    /// starts the agent too (`bootstrap::fused_start_line`) and hands it back.
    async fn probe(
        &self,
        slot: &HostSlot,
        session: &Arc<Session>,
        key: InstallKey,
        sudo: Option<&BecomeSpec>,
        requested: &RunAs,
    ) -> Result<(Install, Option<StartedByProbe>), SshError> {
        let host = slot.planned.spec.name.as_str();
        let token = self.next_token(host);
        // The probe knows the work directory only as `$work`, which the check line sets.
        let (sudo_prefix, nopasswd_prefix) = if checks_in_probe(requested) {
            check_prefixes(requested, "$work")
        } else {
            (None, None)
        };
        let agents: Vec<ProbeAgent<'_>> = self.agents.iter().map(ProbeAgent::of).collect();
        let request = ProbeRequest {
            agents: &agents,
            agent_dir: &key.agent_dir,
            token: &token,
            cache: key.cache,
            shared: key.shared,
            sudo_prefix,
            sudo_nopasswd_prefix: nopasswd_prefix,
            become_method: requested.method(),
            // The prefix holds no work path for these identities (only doas with a password,
            // which checks first, names the agent in it).
            start_prefix: (key.cache && !checks_first(requested))
                .then(|| requested.command_prefix()),
        };
        let script = probe_script(&request);
        let probed = if request.start_prefix.is_some() {
            probe_or_start(session, &script, &fused_start_marker(&token)).await
        } else {
            exec(session, &script, password_line(sudo))
                .await
                .map(|output| (output, None))
        };
        let (output, started) = probed.map_err(|detail| SshError::Bootstrap {
            host: host.to_string(),
            detail: detail.to_string(),
        })?;
        let report = parse_probe(&output.stdout);
        let Some(work) = report.work.clone() else {
            if let Some(error) = report.error {
                return Err(SshError::Bootstrap {
                    host: host.to_string(),
                    detail: format!("{error}\n  hint: set the host's agent directory (mop_agent_dir) to a directory its login user owns and only it can write"),
                });
            }
            if !report.arch.is_empty() && report.agent.is_none() && output.code == Some(0) {
                let carried: Vec<&str> = self
                    .agents
                    .iter()
                    .map(|agent| agent.platform.description.as_str())
                    .collect();
                return Err(unsupported_platform(
                    host,
                    &report.os,
                    &report.arch,
                    &carried.join(", "),
                ));
            }
            return Err(SshError::Bootstrap {
                host: host.to_string(),
                detail: exec_failure(&output, sudo),
            });
        };
        let Some(agent) = report.agent.filter(|index| *index < self.agents.len()) else {
            return Err(SshError::Bootstrap {
                host: host.to_string(),
                detail: format!(
                    "the probe did not say which agent fits the host\n{}",
                    exec_failure(&output, sudo)
                ),
            });
        };
        let mut install = Install {
            key,
            login_user: report.user.clone(),
            dir: report.dir.clone().unwrap_or_default(),
            work,
            agent,
            agent_ready: report.cached == Some(true),
            gzip: report.gzip,
            failure: None,
            sudo_checks: BTreeMap::new(),
            unchecked: BTreeSet::new(),
            started_as: BTreeMap::new(),
        };
        if let Some(check) = report.sudo.clone() {
            install.sudo_checks.insert(
                requested.clone(),
                check_outcome(host, &install, sudo, requested, check),
            );
        }
        if !report.done && report.sudo.is_none() {
            // The work dir exists (cleanup removes it) but something after it failed.
            install.failure = Some(SshError::Bootstrap {
                host: host.to_string(),
                detail: exec_failure(&output, sudo),
            });
        }
        Ok((install, started))
    }

    /// Why an agent started under `options` did not come up, when sudo was not checked before
    /// starting it: runs the sudo check now and returns its verdict if sudo is the problem.
    pub async fn diagnose_agent_start(
        &self,
        host: &str,
        options: &AgentOptions,
    ) -> Option<SshError> {
        let slot = self.slot(host).ok()?;
        let Some(Ok(session)) = slot.session.get() else {
            return None;
        };
        let requested = RunAs::from_spec(options.sudo.as_ref());
        let key = install_key(host, options, &requested).ok()?;
        let mut installs = slot.remote.lock().await;
        let install = installs.iter_mut().find(|install| install.key == key)?;
        if !install.unchecked.remove(&requested) {
            return None;
        }
        let checked = check_become(host, session, install, options.sudo.as_ref(), &requested).await;
        install.sudo_checks.insert(requested, checked.clone());
        checked.err()
    }
}

/// Which install an agent for `options` uses.
fn install_key(
    host: &str,
    options: &AgentOptions,
    requested: &RunAs,
) -> Result<InstallKey, SshError> {
    Ok(InstallKey {
        agent_dir: agent_dir_expression(options.agent_dir.as_deref()).map_err(|reason| {
            SshError::InvalidHost {
                host: host.to_string(),
                reason: reason.to_string(),
            }
        })?,
        cache: options.cache,
        shared: requested.needs_shared_access(),
    })
}

/// The first 12 hex digits of a digest, enough to tell agents apart in `-vv` output.
fn short_digest(sha256: &str) -> &str {
    sha256.get(..12).unwrap_or(sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &[u8]) -> Result<(Vec<u8>, bool, Vec<u8>), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut reader = BufReader::new(input);
            let (text, started) = read_probe_lines(&mut reader, "start=abc").await?;
            let mut rest = Vec::new();
            reader.read_to_end(&mut rest).await.expect("read");
            Ok((text, started, rest))
        })
    }

    /// The agent's bytes after the marker are left for the agent protocol, whatever they are;
    /// a probe that ends without the marker gives all its lines; a host that floods is refused.
    #[test]
    fn probe_lines_end_at_the_marker_or_the_end() {
        let (text, started, rest) =
            read(b"os=Linux\ncached=yes\nstart=abc\n\0\0\0\x05{\"a\"}\nmore").expect("read");
        assert_eq!(text, b"os=Linux\ncached=yes\n");
        assert!(started);
        assert_eq!(rest, b"\0\0\0\x05{\"a\"}\nmore");

        let (text, started, rest) = read(b"cached=no\nstart=abcd\ndone=yes").expect("read");
        assert_eq!(text, b"cached=no\nstart=abcd\ndone=yes");
        assert!(!started, "only the exact marker line starts the agent");
        assert!(rest.is_empty());

        let flood = vec![b'x'; PROBE_OUTPUT_LIMIT + 10];
        assert!(read(&flood).is_err(), "one endless line");
        let lines = b"line\n".repeat(PROBE_OUTPUT_LIMIT / 5 + 1);
        assert!(read(&lines).is_err(), "too many lines");
    }
}
