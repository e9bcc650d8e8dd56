//! The run's SSH connections: one master per host, opened lazily, shared by every role, closed
//! explicitly. Installing and starting the agent over them is `start.rs`, sudo decisions are
//! `sudo.rs`, removing what a run left on a host is `cleanup.rs`, channels for the ad hoc
//! commands are `exec.rs` and `sftp.rs`.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use indexmap::IndexMap;
use openssh::Session;
use tokio::sync::{Mutex, OnceCell, Semaphore};

use super::bootstrap::LocalAgent;
use super::config::{
    check_config, plan_hosts, render_config, ConfigIncludes, PlannedHost, SshHost,
};
use super::connect::{
    close_session, force_exit_master, link_control_path, open_persistent_session, open_session,
    reap_run_processes,
};
use super::lifetime::RunGuard;
use super::lookup::resolve_hosts;
use super::persist::{
    control_dir_location, identities, open_control_dir, ControlDir, MasterIdentity,
};
use super::start::Install;
use super::SshError;

/// How long closed connections get to exit before their processes are terminated.
const STRAY_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a run waits for another mop run that is starting the same persistent master.
const PERSIST_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

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
    /// `--connect-timeout`: replaces every host's own `connect_timeout` (jump hosts included),
    /// whatever the inventory or the user's ssh_config says.
    pub connect_timeout: Option<std::time::Duration>,
    /// The program ssh runs as askpass for hosts with a password (`askpass.rs`): one that
    /// answers through [`crate::ssh::answer_askpass`] when [`crate::ssh::ASKPASS_SOCKET_ENV`]
    /// is set. `None`: this executable (the `mop` binary does).
    pub askpass_program: Option<PathBuf>,
}

impl Default for SshPoolOptions {
    fn default() -> Self {
        SshPoolOptions {
            forks: crate::DEFAULT_FORKS,
            includes: ConfigIncludes::default(),
            run_dir_parent: PathBuf::from("/tmp"),
            persist: None,
            control_dir: None,
            connect_timeout: None,
            askpass_program: None,
        }
    }
}

/// All SSH state of one run.
pub struct SshPool {
    pub(super) hosts: IndexMap<String, HostSlot>,
    pub(super) run_dir: tempfile::TempDir,
    pub(super) config_path: PathBuf,
    pub(super) forks: Semaphore,
    /// The agents this run may install, at most one per platform; each host gets the one its
    /// probe picks.
    pub(super) agents: Vec<LocalAgent>,
    pub(super) uploads: AtomicUsize,
    pub(super) tokens: AtomicU64,
    /// False for pools made by [`SshPool::without_agent`] (ad hoc commands and copies).
    pub(super) has_agent: bool,
    /// The directory of persisted masters, when it exists (or `--persist` created it).
    pub(super) control: Option<ControlDir>,
    pub(super) persist: Option<std::time::Duration>,
    /// The run directory's lock and the watchdog that reaps it if mop dies (`lifetime.rs`).
    pub(super) guard: RunGuard,
    /// Where `-vv` connection and agent steps go (`None`: nowhere).
    pub(super) steps: Option<crate::report::Diagnostics>,
    /// What ssh runs as askpass for hosts with a password (empty when no host has one).
    pub(super) askpass_program: PathBuf,
}

pub(super) struct HostSlot {
    pub(super) planned: PlannedHost,
    /// What a persisted master for this host is keyed on.
    pub(super) identity: MasterIdentity,
    /// The session is a persisted master: the run leaves it running.
    pub(super) persisted: std::sync::atomic::AtomicBool,
    pub(super) session: OnceCell<Result<Arc<Session>, SshError>>,
    pub(super) remote: Mutex<Vec<Install>>,
    /// Agent bytes uploaded to this host (as sent: compressed when it was).
    pub(super) agent_bytes: AtomicU64,
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
        let overridden: Vec<SshHost>;
        let hosts = match options.connect_timeout {
            None => hosts,
            Some(timeout) => {
                overridden = hosts
                    .iter()
                    .map(|host| SshHost {
                        connect_timeout: Some(timeout),
                        ..host.clone()
                    })
                    .collect();
                &overridden
            }
        };
        let hosts = resolve_hosts(hosts, &options.includes)?;
        let planned = plan_hosts(&hosts, run_dir.path())?;
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
        let askpass_program = askpass_program(&planned, options)?;
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
            steps: None,
            askpass_program,
        })
    }

    /// `-vv`: report the connection and agent steps of each host to `diagnostics` (printed
    /// only when its steps are on).
    pub fn report_steps(&mut self, diagnostics: crate::report::Diagnostics) {
        self.steps = diagnostics.shows_steps().then_some(diagnostics);
    }

    /// One `-vv` step for a host; `message` is built only when steps are shown.
    pub(super) fn step(&self, host: &str, topic: &str, message: impl FnOnce() -> String) {
        if let Some(steps) = &self.steps {
            steps.step(host, topic, &message());
        }
    }

    /// The options the run's ssh_config gives `host` (its `Host` block, on one line), for `-vv`.
    pub(super) fn config_options(&self, host: &str) -> String {
        let Some(alias) = self.hosts.get(host).map(|slot| slot.planned.alias.clone()) else {
            return String::new();
        };
        let text = std::fs::read_to_string(&self.config_path).unwrap_or_default();
        let header = format!("Host {alias}");
        text.lines()
            .skip_while(|line| *line != header)
            .skip(1)
            .take_while(|line| line.starts_with("  "))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(", ")
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
            return open_session(
                &slot.planned,
                &self.config_path,
                self.run_dir.path(),
                &self.askpass_program,
            )
            .await
            .map(Arc::new);
        };
        let _lock = control
            .lock(&slot.identity.key, PERSIST_LOCK_WAIT)
            .await
            .map_err(|error| SshError::Connect {
                host: slot.planned.spec.name.clone(),
                address: slot.planned.spec.display_address(),
                detail: error.to_string(),
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
            &self.askpass_program,
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

    pub(super) fn slot(&self, host: &str) -> Result<&HostSlot, SshError> {
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
                    let result = match sole_owner(session, CHANNEL_GRACE).await {
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

/// The askpass program of a run with password hosts: the option's, else this executable
/// (absolute: ssh runs it from its own working directory).
fn askpass_program(
    planned: &IndexMap<String, PlannedHost>,
    options: &SshPoolOptions,
) -> Result<PathBuf, SshError> {
    let Some(first) = planned.values().find(|host| host.spec.password.is_some()) else {
        return Ok(PathBuf::new());
    };
    match &options.askpass_program {
        Some(program) => Ok(program.clone()),
        None => std::env::current_exe().map_err(|error| SshError::InvalidHost {
            host: first.spec.name.clone(),
            reason: format!(
                "its password needs mop's own executable as ssh's askpass, and it cannot be found: {error}"
            ),
        }),
    }
}

/// How long closing waits for channels that are ending in the background (a dropped SFTP
/// session, an agent's channel after Ctrl-C) before it calls one still open.
const CHANNEL_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The session itself once no channel holds it any more, or the shared handle when one still
/// does after `grace`.
async fn sole_owner(
    mut session: Arc<Session>,
    grace: std::time::Duration,
) -> Result<Session, Arc<Session>> {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        match Arc::try_unwrap(session) {
            Ok(owned) => return Ok(owned),
            Err(shared) if tokio::time::Instant::now() >= deadline => return Err(shared),
            Err(shared) => {
                session = shared;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
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

    #[test]
    fn the_connect_timeout_option_replaces_every_hosts_own() {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = SshPoolOptions {
            includes: ConfigIncludes {
                user_config: None,
                system_config: None,
            },
            run_dir_parent: dir.path().to_path_buf(),
            connect_timeout: Some(std::time::Duration::from_secs(3)),
            ..SshPoolOptions::default()
        };
        let mut jump = SshHost::new("bastion", "127.0.0.1", 22);
        jump.connect_timeout = Some(std::time::Duration::from_secs(60));
        let mut web = SshHost::new("web1", "127.0.0.2", 22);
        web.via = Some("bastion".to_string());
        let pool = SshPool::without_agent(&[jump, web], &options).expect("pool");
        let config = std::fs::read_to_string(&pool.config_path).expect("read ssh_config");
        assert_eq!(
            config.matches("ConnectTimeout 3\n").count(),
            2,
            "both hosts get the option's timeout:\n{config}"
        );
        assert!(!config.contains("ConnectTimeout 60"), "{config}");
    }
}
