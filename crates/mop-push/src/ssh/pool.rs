//! The run's SSH connections: one master per host, opened lazily, shared by every role, closed
//! explicitly; and the agent installs made through them.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use indexmap::IndexMap;
use mop_protocol::CleanupRequest;
use openssh::Session;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, OnceCell, Semaphore};

use super::bootstrap::{
    agent_command, agent_dir_expression, cleanup_script, kill_command, parse_probe, probe_script,
    sudo_check_script, unsupported_platform, upload, upload_plan, LocalAgent, ProbeAgent,
    ProbeRequest, SudoCheck,
};
use super::child::{ClosingStdin, SshAgentChild};
use super::config::{plan_hosts, render_config, ConfigIncludes, PlannedHost, SshHost};
use super::connect::{
    close_session, force_exit_master, link_control_path, open_persistent_session, open_session,
    reap_run_processes,
};
use super::exec::{exec, exec_failure};
use super::lifetime::RunGuard;
use super::persist::{
    control_dir_location, identities, open_control_dir, ControlDir, MasterIdentity,
};
use super::sudo::{check_password, classify_sudo_failure, password_line, RunAs, SudoSpec};
use super::SshError;
use crate::transport::{AgentChild, AgentProcess};

/// How long closed connections get to exit before their processes are terminated.
const STRAY_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a run waits for another mop run that is starting the same persistent master.
const PERSIST_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// How the agent is installed and run on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentOptions {
    /// Where work directories (and the cache) live; default `$HOME/.mop`.
    pub agent_dir: Option<String>,
    /// Keep the content-addressed agent on the host after the run and reuse it next time.
    pub cache: bool,
    pub sudo: Option<SudoSpec>,
}

/// Settings of the pool itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshPoolOptions {
    /// How many logins may be in progress at once (`--forks`, hosts worked on at once).
    pub forks: NonZeroUsize,
    /// Which ssh configuration the run's config includes after the inventory's settings.
    pub includes: ConfigIncludes,
    /// Where the private run directory is created; short, because control socket paths are
    /// limited to about 100 bytes.
    pub run_dir_parent: PathBuf,
    /// `--persist`: masters this run starts stay up for this much idle time after it (ssh's
    /// `ControlPersist`) and later runs reuse them. Live persisted masters are reused either way.
    pub persist: Option<std::time::Duration>,
    /// The private directory of persisted masters; `None`: [`crate::ssh::control_dir_location`].
    pub control_dir: Option<PathBuf>,
}

impl Default for SshPoolOptions {
    fn default() -> Self {
        SshPoolOptions {
            forks: crate::DEFAULT_FORKS,
            includes: ConfigIncludes::default(),
            run_dir_parent: PathBuf::from("/tmp"),
            persist: None,
            control_dir: None,
        }
    }
}

/// All SSH state of one run.
pub struct SshPool {
    hosts: IndexMap<String, HostSlot>,
    run_dir: tempfile::TempDir,
    config_path: PathBuf,
    forks: Semaphore,
    /// The agents this run may install, at most one per platform; each host gets the one its
    /// probe picks.
    agents: Vec<LocalAgent>,
    uploads: AtomicUsize,
    tokens: AtomicU64,
    /// False for pools made by [`SshPool::without_agent`] (ad hoc commands and copies).
    has_agent: bool,
    /// The directory of persisted masters, when it exists (or `--persist` created it).
    control: Option<ControlDir>,
    persist: Option<std::time::Duration>,
    /// The run directory's lock and the watchdog that reaps it if mop dies (`lifetime.rs`).
    guard: RunGuard,
}

struct HostSlot {
    planned: PlannedHost,
    /// What a persisted master for this host is keyed on.
    identity: MasterIdentity,
    /// The session is a persisted master: the run leaves it running.
    persisted: std::sync::atomic::AtomicBool,
    session: OnceCell<Result<Arc<Session>, SshError>>,
    remote: Mutex<Vec<Install>>,
    /// Agent bytes uploaded to this host (as sent: compressed when it was).
    agent_bytes: AtomicU64,
}

/// One work directory on a host, and what happened in it.
struct Install {
    key: InstallKey,
    login_user: String,
    dir: String,
    work: String,
    /// Which of the pool's agents fits this host.
    agent: usize,
    agent_ready: bool,
    /// The host has `gzip`: upload the agent compressed.
    gzip: bool,
    failure: Option<SshError>,
    /// Sudo identities checked on this host: requested -> what to actually run.
    sudo_checks: BTreeMap<RunAs, Result<RunAs, SshError>>,
    /// Identities agents were started under, with the stdin their sudo needs.
    started_as: BTreeMap<RunAs, Option<Vec<u8>>>,
    /// Identities started without a sudo check first (`sudo -n`, nothing to send).
    unchecked: BTreeSet<RunAs>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct InstallKey {
    agent_dir: String,
    cache: bool,
    shared: bool,
}

impl SshPool {
    /// Prepares a run over `hosts` with the agent at `agent` and at most `forks` logins at once.
    pub fn new(hosts: &[SshHost], agent: &Path, forks: NonZeroUsize) -> Result<SshPool, SshError> {
        SshPool::with_options(
            hosts,
            agent,
            &SshPoolOptions {
                forks,
                ..SshPoolOptions::default()
            },
        )
    }

    /// Like [`SshPool::new`] with every setting spelled out.
    pub fn with_options(
        hosts: &[SshHost],
        agent: &Path,
        options: &SshPoolOptions,
    ) -> Result<SshPool, SshError> {
        let agent = LocalAgent::load(agent)?;
        SshPool::build(hosts, vec![agent], true, options)
    }

    /// A pool that installs, on each host, the agent of that host's platform among `agents`
    /// (what `mop push` uses: the agents built into mop, or `MOP_AGENT_BIN`).
    pub fn with_agents(
        hosts: &[SshHost],
        agents: crate::agents::AgentSet,
        options: &SshPoolOptions,
    ) -> Result<SshPool, SshError> {
        SshPool::build(hosts, agents.into_local_agents(), true, options)
    }

    /// A pool that only connects (no agent to install): for `mop run`, `mop upload` and
    /// friends. [`SshPool::start_agent`] on it fails.
    pub fn without_agent(hosts: &[SshHost], options: &SshPoolOptions) -> Result<SshPool, SshError> {
        SshPool::build(hosts, Vec::new(), false, options)
    }

    fn build(
        hosts: &[SshHost],
        agents: Vec<LocalAgent>,
        has_agent: bool,
        options: &SshPoolOptions,
    ) -> Result<SshPool, SshError> {
        let run_dir = tempfile::Builder::new()
            .prefix("mop-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(&options.run_dir_parent)
            .map_err(|error| SshError::RunDir {
                path: options.run_dir_parent.clone(),
                detail: error.to_string(),
            })?;
        let planned = plan_hosts(hosts, run_dir.path())?;
        let config_path = run_dir.path().join("ssh_config");
        std::fs::write(&config_path, render_config(&planned, &options.includes)).map_err(
            |error| SshError::RunDir {
                path: config_path.clone(),
                detail: error.to_string(),
            },
        )?;
        if let Some(first) = planned.values().next() {
            check_config(&config_path, &first.alias)?;
        }
        // With --persist the directory must be usable (or it is an error before any login);
        // without, a missing or unsafe directory only means there is nothing to reuse.
        let control_path = options
            .control_dir
            .clone()
            .unwrap_or_else(control_dir_location);
        let control = match options.persist {
            Some(_) => open_control_dir(&control_path, true)?,
            None => open_control_dir(&control_path, false).ok().flatten(),
        };
        let guard = RunGuard::start(run_dir.path()).map_err(|error| SshError::RunDir {
            path: run_dir.path().to_path_buf(),
            detail: format!("cannot lock it: {error}"),
        })?;
        let mut identities = identities(&planned);
        let hosts = planned
            .into_iter()
            .map(|(name, planned)| {
                let identity = identities
                    .swap_remove(&name)
                    .expect("every planned host has an identity");
                (
                    name,
                    HostSlot {
                        planned,
                        identity,
                        persisted: std::sync::atomic::AtomicBool::new(false),
                        session: OnceCell::new(),
                        remote: Mutex::new(Vec::new()),
                        agent_bytes: AtomicU64::new(0),
                    },
                )
            })
            .collect();
        Ok(SshPool {
            hosts,
            run_dir,
            config_path,
            forks: Semaphore::new(options.forks.get()),
            agents,
            uploads: AtomicUsize::new(0),
            tokens: AtomicU64::new(0),
            has_agent,
            control,
            persist: options.persist,
            guard,
        })
    }

    /// The hosts whose connection is a persisted master that stays up after this run.
    pub fn persisted_hosts(&self) -> Vec<&str> {
        self.hosts
            .iter()
            .filter(|(_, slot)| slot.persisted.load(Ordering::Relaxed))
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// A live persisted master for `slot`, linked at its run ControlPath for hosts behind it.
    async fn reuse_persisted(&self, slot: &HostSlot) -> Option<Arc<Session>> {
        let control = self.control.as_ref()?;
        let session = control.live_master(&slot.identity).await?;
        link_control_path(&slot.planned, &control.socket(&slot.identity.key)).ok()?;
        slot.persisted.store(true, Ordering::Relaxed);
        Some(Arc::new(session))
    }

    /// Starts `slot`'s master: persisted (under the master's lock, unless another run started
    /// it meanwhile) with `--persist`, else in the run directory.
    async fn start_master(&self, slot: &HostSlot) -> Result<Arc<Session>, SshError> {
        let (Some(control), Some(persist)) = (&self.control, self.persist) else {
            return open_session(&slot.planned, &self.config_path, self.run_dir.path())
                .await
                .map(Arc::new);
        };
        let _lock = control
            .lock(&slot.identity.key, PERSIST_LOCK_WAIT)
            .await
            .map_err(|detail| SshError::Connect {
                host: slot.planned.spec.name.clone(),
                address: slot.planned.spec.display_address(),
                detail,
            })?;
        if let Some(session) = self.reuse_persisted(slot).await {
            return Ok(session);
        }
        let (session, _metadata) = open_persistent_session(
            &slot.planned,
            &self.config_path,
            control,
            &slot.identity,
            persist,
        )
        .await?;
        slot.persisted.store(true, Ordering::Relaxed);
        Ok(Arc::new(session))
    }

    /// The run's generated ssh_config (`ssh -F <it> <alias>` reaches a host as mop does).
    pub fn ssh_config(&self) -> &Path {
        &self.config_path
    }

    /// The alias of `host` in [`SshPool::ssh_config`].
    pub fn alias(&self, host: &str) -> Option<&str> {
        self.hosts.get(host).map(|slot| slot.planned.alias.as_str())
    }

    /// The private run directory (control sockets, config), removed by [`SshPool::close_all`].
    pub fn run_dir(&self) -> &Path {
        self.run_dir.path()
    }

    /// sha256 of the pool's first agent (its only one when made from a file), as used in
    /// cached agents' names (`agent-<sha256>`).
    pub fn agent_sha256(&self) -> &str {
        self.agents
            .first()
            .map_or("", |agent| agent.sha256.as_str())
    }

    /// How many agent uploads this run made.
    pub fn uploads(&self) -> usize {
        self.uploads.load(Ordering::Relaxed)
    }

    /// Agent bytes this run uploaded to `host` (as sent); 0 when it used the cached agent.
    pub fn agent_bytes(&self, host: &str) -> u64 {
        self.hosts
            .get(host)
            .map_or(0, |slot| slot.agent_bytes.load(Ordering::Relaxed))
    }

    fn slot(&self, host: &str) -> Result<&HostSlot, SshError> {
        self.hosts.get(host).ok_or_else(|| SshError::UnknownHost {
            host: host.to_string(),
        })
    }

    /// Opens the connection to `host` (and its jump hosts) unless it is open already. A failed
    /// connect is remembered: the host is not tried again in this run.
    pub async fn connect(&self, host: &str) -> Result<(), SshError> {
        self.session(host).await.map(drop)
    }

    pub(super) fn session<'a>(
        &'a self,
        host: &'a str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Arc<Session>, SshError>> + Send + 'a>,
    > {
        Box::pin(async move {
            let slot = self.slot(host)?;
            slot.session
                .get_or_init(|| async {
                    // A live persisted master needs neither its jump hosts nor a login.
                    if let Some(session) = self.reuse_persisted(slot).await {
                        return Ok(session);
                    }
                    if let Some(via) = &slot.planned.spec.via {
                        if let Err(error) = self.session(via).await {
                            return Err(SshError::JumpFailed {
                                host: host.to_string(),
                                via: via.clone(),
                                source: Box::new(error),
                            });
                        }
                    }
                    let _permit = self
                        .forks
                        .acquire()
                        .await
                        .expect("the semaphore is never closed");
                    self.start_master(slot).await
                })
                .await
                .clone()
        })
    }

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
        let session = self.session(host).await?;
        let requested = RunAs::from_spec(options.sudo.as_ref());
        let key = install_key(host, options, &requested)?;
        let mut installs = slot.remote.lock().await;
        let index = match installs.iter().position(|install| install.key == key) {
            Some(index) => index,
            None => {
                let install = self
                    .probe(slot, &session, key, options.sudo.as_ref(), &requested)
                    .await?;
                installs.push(install);
                installs.len() - 1
            }
        };
        let install = &mut installs[index];
        if let Some(failure) = &install.failure {
            return Err(failure.clone());
        }
        if requested != RunAs::Login && !install.sudo_checks.contains_key(&requested) {
            let checked = if checks_sudo_first(&requested) {
                self.check_sudo(slot, &session, install, options.sudo.as_ref(), &requested)
                    .await
            } else {
                // `sudo -n` cannot hang on a prompt: start the agent right away and diagnose
                // only if it does not come up (see `diagnose_agent_start`).
                install.unchecked.insert(requested.clone());
                Ok(requested.clone())
            };
            install.sudo_checks.insert(requested.clone(), checked);
        }
        let effective = match install.sudo_checks.get(&requested) {
            None => RunAs::Login,
            Some(Ok(effective)) => effective.clone(),
            Some(Err(error)) => return Err(error.clone()),
        };
        let mut fresh_upload = None;
        if !install.agent_ready {
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
            install.agent_ready = true;
            fresh_upload = Some(plan);
        }
        let stdin_line = match &effective {
            RunAs::Sudo {
                with_password: true,
                ..
            } => password_line(options.sudo.as_ref()),
            _ => None,
        };
        install
            .started_as
            .insert(effective.clone(), stdin_line.clone());
        let prefix = effective.command_prefix();
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
        let (Some(mut stdin), Some(stdout), Some(stderr)) = (
            child.stdin().take(),
            child.stdout().take(),
            child.stderr().take(),
        ) else {
            unreachable!("all three streams were requested as pipes")
        };
        if let Some(line) = &stdin_line {
            // sudo -S reads exactly this line; everything after it is the agent's.
            stdin
                .write_all(line)
                .await
                .map_err(|error| SshError::Spawn {
                    host: host.to_string(),
                    detail: format!("cannot pass the sudo password: {error}"),
                })?;
            stdin.flush().await.map_err(|error| SshError::Spawn {
                host: host.to_string(),
                detail: format!("cannot pass the sudo password: {error}"),
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
            stdout: Box::pin(stdout),
            stderr: Box::pin(stderr),
            child: AgentChild::Ssh(killer),
        })
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

    /// The one probe exec: platform, home, work dir, cache, and the first sudo check.
    async fn probe(
        &self,
        slot: &HostSlot,
        session: &Session,
        key: InstallKey,
        sudo: Option<&SudoSpec>,
        requested: &RunAs,
    ) -> Result<Install, SshError> {
        let host = slot.planned.spec.name.as_str();
        let token = self.next_token(host);
        let (sudo_prefix, nopasswd_prefix) = if checks_sudo_first(requested) {
            sudo_prefixes(requested)
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
        };
        let output = exec(session, &probe_script(&request), password_line(sudo))
            .await
            .map_err(|detail| SshError::Bootstrap {
                host: host.to_string(),
                detail,
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
                self.sudo_outcome(host, &install, sudo, requested, check),
            );
        }
        if !report.done && report.sudo.is_none() {
            // The work dir exists (cleanup removes it) but something after it failed.
            install.failure = Some(SshError::Bootstrap {
                host: host.to_string(),
                detail: exec_failure(&output, sudo),
            });
        }
        Ok(install)
    }

    /// A sudo check for an identity the probe did not check (a later role asks for it).
    async fn check_sudo(
        &self,
        slot: &HostSlot,
        session: &Session,
        install: &Install,
        sudo: Option<&SudoSpec>,
        requested: &RunAs,
    ) -> Result<RunAs, SshError> {
        let host = slot.planned.spec.name.as_str();
        let (sudo_prefix, nopasswd_prefix) = sudo_prefixes(requested);
        let Some(sudo_prefix) = sudo_prefix else {
            return Ok(RunAs::Login);
        };
        let script = sudo_check_script(&install.work, &sudo_prefix, nopasswd_prefix.as_deref());
        let output = exec(session, &script, password_line(sudo))
            .await
            .map_err(|detail| SshError::Bootstrap {
                host: host.to_string(),
                detail,
            })?;
        match parse_probe(&output.stdout).sudo {
            Some(check) => self.sudo_outcome(host, install, sudo, requested, check),
            None => Err(SshError::Bootstrap {
                host: host.to_string(),
                detail: exec_failure(&output, sudo),
            }),
        }
    }

    fn sudo_outcome(
        &self,
        host: &str,
        install: &Install,
        sudo: Option<&SudoSpec>,
        requested: &RunAs,
        check: SudoCheck,
    ) -> Result<RunAs, SshError> {
        match check {
            SudoCheck::Ok => Ok(requested.clone()),
            SudoCheck::NoPassword => match requested {
                RunAs::Sudo { user, .. } => Ok(RunAs::Sudo {
                    user: user.clone(),
                    with_password: false,
                }),
                RunAs::Login => Ok(RunAs::Login),
            },
            SudoCheck::Failed(output) if output.trim().is_empty() => {
                Err(SshError::AgentDirUnreachable {
                    host: host.to_string(),
                    login_user: install.login_user.clone(),
                    run_as: requested.describe(),
                    agent_dir: install.dir.clone(),
                })
            }
            SudoCheck::Failed(output) => Err(classify_sudo_failure(
                host,
                &install.login_user,
                requested,
                sudo,
                &output,
            )),
        }
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
        let checked = self
            .check_sudo(slot, session, install, options.sudo.as_ref(), &requested)
            .await;
        install.sudo_checks.insert(requested, checked.clone());
        checked.err()
    }

    /// What the agent on `host` should remove itself at the end of the run, when it can do the
    /// whole cleanup alone: this run installed one work directory there and started agents in
    /// it under one identity only (so no other agent's commands can be left behind).
    pub async fn self_cleanup_request(&self, host: &str) -> Option<CleanupRequest> {
        let slot = self.slot(host).ok()?;
        let installs = slot.remote.lock().await;
        match installs.as_slice() {
            [install] if install.started_as.len() == 1 && !install.dir.is_empty() => {
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
                    prefixes.push(run_as.command_prefix());
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
        .map_err(failure)?;
        if output.stdout.contains("left=yes") {
            return Err(failure(format!(
                "the work directory is still there: {}",
                output.stderr.trim()
            )));
        }
        installs.clear();
        Ok(())
    }

    /// Closes every connection gracefully (hosts behind jump hosts first) except persisted
    /// masters, which stay up for their idle limit, terminates ssh
    /// processes of this run that outlived their session, and removes the run directory.
    /// Returns the failures by host, in inventory order (an empty name for the run directory).
    pub async fn close_all(self) -> Vec<(String, SshError)> {
        let SshPool {
            hosts,
            run_dir,
            guard,
            ..
        } = self;
        let order: Vec<String> = hosts.keys().cloned().collect();
        let mut by_depth: BTreeMap<usize, Vec<(String, Arc<Session>)>> = BTreeMap::new();
        for (name, slot) in hosts {
            // Persisted masters stay up; dropping a session over one leaves it running.
            if slot.persisted.load(Ordering::Relaxed) {
                continue;
            }
            if let Some(Ok(session)) = slot.session.into_inner() {
                by_depth
                    .entry(slot.planned.depth)
                    .or_default()
                    .push((name, session));
            }
        }
        let mut errors = Vec::new();
        for (_depth, sessions) in by_depth.into_iter().rev() {
            let mut closing = tokio::task::JoinSet::new();
            for (name, session) in sessions {
                closing.spawn(async move {
                    let result = match Arc::try_unwrap(session) {
                        Ok(session) => close_session(&name, session).await,
                        Err(shared) => {
                            let detail = match force_exit_master(shared.control_socket()).await {
                                Ok(()) => "an agent channel was still open when the run ended; the connection was stopped with `ssh -O exit`".to_string(),
                                Err(detail) => format!("an agent channel was still open when the run ended and `ssh -O exit` failed: {detail}"),
                            };
                            Err(SshError::Close { host: name.clone(), detail })
                        }
                    };
                    (name, result)
                });
            }
            while let Some(joined) = closing.join_next().await {
                if let Ok((name, Err(error))) = joined {
                    errors.push((name, error));
                }
            }
        }
        // Only abandoned logins (already reported as that host's failure) outlive the grace.
        reap_run_processes(run_dir.path(), STRAY_GRACE).await;
        let run_dir_path = run_dir.path().to_path_buf();
        match run_dir.close() {
            Ok(()) => guard.finish(),
            // The guard drops with this function: its watchdog gets end of file and reaps it.
            Err(error) => errors.push((
                String::new(),
                SshError::RunDir {
                    path: run_dir_path,
                    detail: format!("cannot remove it: {error}"),
                },
            )),
        }
        errors.sort_by_key(|(name, _)| {
            order
                .iter()
                .position(|host| host == name)
                .unwrap_or(usize::MAX)
        });
        errors
    }
}

/// Lets ssh evaluate the run's config once (`ssh -G`, no connection), so a config ssh rejects
/// (an old ssh without `Match final`, an error in the user's own config) fails the run up
/// front with ssh's words instead of every host with a login error.
fn check_config(config_path: &Path, alias: &str) -> Result<(), SshError> {
    let output = std::process::Command::new("ssh")
        .arg("-F")
        .arg(config_path)
        .args(["-G", alias])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|error| SshError::SshConfig {
            path: config_path.to_path_buf(),
            detail: format!("cannot run ssh: {error}"),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(SshError::SshConfig {
        path: config_path.to_path_buf(),
        detail: stderr
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// The sudo prefix to check with, and the `-n` form to try first when a password is given.
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
                reason,
            }
        })?,
        cache: options.cache,
        shared: requested.needs_shared_access(),
    })
}

/// Whether sudo must be checked before the agent starts: with a password, mop must know
/// whether sudo will ask for it (NOPASSWD hosts do not), or the agent would read it as protocol
/// bytes. Without one, `sudo -n` fails fast and a failed start is diagnosed afterwards.
fn checks_sudo_first(requested: &RunAs) -> bool {
    matches!(
        requested,
        RunAs::Sudo {
            with_password: true,
            ..
        }
    )
}

fn sudo_prefixes(requested: &RunAs) -> (Option<String>, Option<String>) {
    match requested {
        RunAs::Login => (None, None),
        RunAs::Sudo {
            user,
            with_password,
        } => {
            let nopasswd = RunAs::Sudo {
                user: user.clone(),
                with_password: false,
            };
            let first = with_password.then(|| nopasswd.command_prefix());
            (Some(requested.command_prefix()), first)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_ssh_rejects_fails_the_run_up_front() {
        let dir = tempfile::tempdir().expect("temp dir");
        let user_config = dir.path().join("user_config");
        std::fs::write(&user_config, "NoSuchOption yes\n").expect("write");
        let options = SshPoolOptions {
            includes: ConfigIncludes {
                user_config: Some(user_config),
                system_config: None,
            },
            run_dir_parent: dir.path().to_path_buf(),
            ..SshPoolOptions::default()
        };
        // Any ELF binary will do as the agent here: nothing is uploaded.
        let agent = std::env::current_exe().expect("test binary");
        let hosts = [SshHost::new("web1", "127.0.0.1", 22)];
        let error = match SshPool::with_options(&hosts, &agent, &options) {
            Ok(_) => panic!("ssh accepted a bad option"),
            Err(error) => error.to_string(),
        };
        assert!(
            error.starts_with("ssh rejects the run's configuration `"),
            "{error}"
        );
        assert!(
            error.contains("Bad configuration option: nosuchoption"),
            "{error}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read")
            .flatten()
            .collect();
        assert_eq!(
            left.len(),
            1,
            "the run directory is removed again: {left:?}"
        );
    }
}
