//! `mop push`: roles in order; per role, hosts in `serial` batches; per host, the `before`
//! hook, the role through the host's agent, and the `after` hook only if the host succeeded.
//!
//! A batch finishes before the next starts; once more hosts have failed than `max_fail`
//! allows, no further batch or role starts and the summary names every host that was not
//! attempted. Whatever happens (including Ctrl-C), agents are stopped and hosts cleaned up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use mop_inventory::{Connection, Hop};
use mop_policy::{Policy, Role};
use mop_protocol::{CleanupRequest, Mode, ResourceStatus};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::hooks::{contact_when, hook_context, render_hook, run_hook};
use crate::plan::{role_plan, PlanOptions};
use crate::prepare::{ManifestFiles, PreparedRun};
use crate::report::{Diagnostics, FailureKind, HostStatus, Reporter, RunSummary};
use crate::session::{AgentSession, RoleEvent, SessionError};
use crate::ssh::{self, AgentOptions, BecomeSpec, SshError, SshHost, SshPool};
use crate::transport::AgentChild;

/// One host of a role, resolved by the caller from the inventory.
#[derive(Debug, Clone)]
pub struct PushHost {
    pub name: String,
    pub groups: Vec<String>,
    /// Resolved variables (inventory, policy and role defaults, `-e`).
    pub vars: Map<String, Value>,
    pub connection: Connection,
    pub via: Vec<Hop>,
}

/// A role and its selected hosts, in inventory order.
#[derive(Debug, Clone)]
pub struct PushRole {
    pub role_index: usize,
    pub hosts: Vec<PushHost>,
}

/// Options for a push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub plan: PlanOptions,
    /// Hosts worked on at once (`--forks`): logins, agents and roles in progress.
    pub forks: NonZeroUsize,
    /// Overrides every role's `serial`.
    pub serial: Option<NonZeroUsize>,
    /// Longest a host may take for one role (connection included) before it is failed.
    pub host_timeout: Option<Duration>,
    /// `--persist`: keep the masters this run starts for this much idle time after it.
    pub persist: Option<Duration>,
    /// `--no-agent-cache`: leave nothing on the hosts, whatever `mop_agent_cache` says.
    pub no_agent_cache: bool,
    /// `--connect-timeout`: every host's connect timeout, whatever `mop_connect_timeout` says.
    pub connect_timeout: Option<Duration>,
}

/// Why a push could not start at all.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Ssh(#[from] ssh::SshError),
}

/// What one host did in one role.
enum HostOutcome {
    Succeeded,
    /// The host failed (resource failure, hook failure, unreachable, ...).
    Failed(HostFailure),
    /// `contact_when` was false (or the host failed in an earlier role): not contacted now.
    NotContacted,
}

/// How a host's role ended badly: what the run prints when it happens, and what the summary
/// keeps of it.
struct HostFailure {
    kind: FailureKind,
    /// Printed once when it happens (may carry a `hint:` line).
    message: String,
    /// The one-line cause the summary adds to `message` (a resource's message, a hook's last
    /// line of stderr).
    detail: Option<String>,
    /// A hook's output, printed once under the failure line.
    stderr: Option<String>,
}

impl HostFailure {
    fn new(kind: FailureKind, message: impl std::fmt::Display) -> HostFailure {
        HostFailure {
            kind,
            message: message.to_string(),
            detail: None,
            stderr: None,
        }
    }

    fn status(&self) -> HostStatus {
        match self.kind {
            FailureKind::Failed => HostStatus::Failed,
            FailureKind::Unreachable => HostStatus::Unreachable,
            FailureKind::Interrupted => HostStatus::Interrupted,
            FailureKind::HookFailed => HostStatus::HookFailed,
        }
    }

    /// The first error for the summary (which puts it on one line).
    fn summary_line(&self) -> String {
        match &self.detail {
            Some(detail) => format!("{}: {detail}", self.message),
            None => self.message.clone(),
        }
    }
}

/// Which hosts are working on which role, and which (host, role position) pairs are done, so
/// Ctrl-C can tell `interrupted` from `not attempted`.
#[derive(Default)]
struct Progress {
    working: BTreeMap<String, String>,
    finished: BTreeSet<(String, usize)>,
}

type LiveSession = AgentSession<
    std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>,
    std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
>;

/// A running agent on a host, kept across roles so registered results carry over.
struct HostAgent {
    session: LiveSession,
    child: AgentChild,
    options: AgentOptions,
    stderr_task: tokio::task::JoinHandle<()>,
}

struct RunState<'a> {
    policy: &'a Policy,
    prepared: &'a PreparedRun,
    options: &'a PushOptions,
    pool: &'a SshPool,
    files: ManifestFiles,
    reporter: Mutex<Reporter>,
    diagnostics: Diagnostics,
    summary: Mutex<RunSummary>,
    agents: Mutex<HashMap<String, HostAgent>>,
    progress: Mutex<Progress>,
    /// One permit per host in progress (`--forks`).
    forks: tokio::sync::Semaphore,
}

/// Maps the inventory's view of a host (and its jump hosts) onto the SSH transport's.
pub fn ssh_hosts(roles: &[PushRole]) -> Vec<SshHost> {
    let mut hosts: Vec<SshHost> = Vec::new();
    let mut seen = BTreeSet::new();
    for host in roles.iter().flat_map(|role| &role.hosts) {
        let mut previous: Option<String> = None;
        for hop in &host.via {
            if seen.insert(hop.name.clone()) {
                hosts.push(ssh_host(&hop.name, &hop.connection, previous.clone()));
            }
            previous = Some(hop.name.clone());
        }
        if seen.insert(host.name.clone()) {
            hosts.push(ssh_host(&host.name, &host.connection, previous));
        }
    }
    hosts
}

pub fn ssh_host(name: &str, connection: &Connection, via: Option<String>) -> SshHost {
    let mut host = SshHost::new(name, &connection.address, connection.port);
    host.user = connection.user.clone();
    host.identity_file = connection.key.clone();
    host.known_hosts_file = connection.known_hosts_file.clone();
    host.host_keys = connection.check_host_keys;
    host.connect_timeout = connection
        .connect_timeout
        .map(|secs| Duration::from_secs(u64::from(secs)));
    host.via = via;
    host.password = connection
        .password
        .as_ref()
        .map(|secret| ssh::Secret::new(secret.expose()));
    // `ssh NAME` semantics: the user's ssh_config fills what the inventory leaves unset. An ad
    // hoc `user@web1:2222` is looked up as `web1`, as ssh would.
    let lookup_name = if mop_inventory::grammar::check_host_address(name).is_ok() {
        name
    } else {
        &connection.address
    };
    host.lookup = Some(ssh::SshConfigLookup {
        name: lookup_name.to_string(),
        port_given: connection.port_given,
    });
    host
}

pub(crate) fn agent_options(connection: &Connection, no_agent_cache: bool) -> AgentOptions {
    AgentOptions {
        agent_dir: connection.agent_dir.clone(),
        cache: connection.agent_cache && !no_agent_cache,
        sudo: connection.sudo.then(|| BecomeSpec {
            user: connection.sudo_user.clone(),
            password: connection
                .sudo_password
                .as_ref()
                .map(|secret| ssh::Secret::new(secret.expose())),
            method: connection.become_method,
        }),
    }
}

/// Runs the rollout and always cleans up. Returns the summary and the reporter (for the final
/// table), and whether the run was interrupted by Ctrl-C.
pub async fn run_push(
    policy: &Policy,
    prepared: &PreparedRun,
    roles: &[PushRole],
    agents: crate::agents::AgentSet,
    options: &PushOptions,
    reporter: Reporter,
) -> Result<(RunSummary, Reporter, bool), PushError> {
    let started = Instant::now();
    let diagnostics = reporter.diagnostics();
    if let Err(err) = ssh::raise_nofile_limit() {
        diagnostics.warning(&format!("could not raise the open-files limit: {err}"));
    }
    let hosts = ssh_hosts(roles);
    let mut pool = SshPool::with_agents(
        &hosts,
        agents,
        &ssh::SshPoolOptions {
            forks: options.forks,
            persist: options.persist,
            connect_timeout: options.connect_timeout,
            ..ssh::SshPoolOptions::default()
        },
    )?;
    pool.report_steps(diagnostics.clone());
    let mut summary = RunSummary {
        check: options.plan.mode == Mode::Check,
        ..RunSummary::default()
    };
    for host in roles.iter().flat_map(|role| &role.hosts) {
        summary.host_mut(&host.name);
    }
    let state = RunState {
        policy,
        prepared,
        options,
        pool: &pool,
        files: ManifestFiles(prepared.manifest.clone()),
        reporter: Mutex::new(reporter),
        diagnostics: diagnostics.clone(),
        summary: Mutex::new(summary),
        agents: Mutex::new(HashMap::new()),
        progress: Mutex::new(Progress::default()),
        forks: tokio::sync::Semaphore::new(options.forks.get()),
    };

    let interrupted = tokio::select! {
        () = rollout(&state, roles) => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    if interrupted {
        diagnostics.notice("interrupted: stopping agents and cleaning up hosts");
        mark_interrupted(&state, roles);
    }

    // Stop every agent still running, then remove what the run left on the hosts.
    let agents: Vec<(String, HostAgent)> = state
        .agents
        .lock()
        .expect("agents lock is never poisoned")
        .drain()
        .collect();
    join_all(agents.into_iter().map(|(host, agent)| {
        let pool = &pool;
        let diagnostics = &diagnostics;
        async move {
            if interrupted {
                return stop_agent(agent, true).await;
            }
            match pool.self_cleanup_request(&host).await {
                Some(request) => {
                    if finish_agent(&host, agent, request, diagnostics).await {
                        pool.cleaned_by_agent(&host).await;
                    }
                }
                None => stop_agent(agent, false).await,
            }
        }
    }))
    .await;
    let cleanup_results = join_all(hosts.iter().map(|host| {
        let pool = &pool;
        async move { (host.name.clone(), pool.cleanup(&host.name).await) }
    }))
    .await;
    let mut summary = state
        .summary
        .into_inner()
        .expect("summary lock is never poisoned");
    let reporter = state
        .reporter
        .into_inner()
        .expect("reporter lock is never poisoned");
    for (host, totals) in summary.hosts.iter_mut() {
        totals.agent_bytes = pool.agent_bytes(host);
    }
    for (host, result) in cleanup_results {
        if let Err(err) = result {
            diagnostics.warning(&format!("cleaning up {host}: {err}"));
        }
    }
    for (host, err) in pool.close_all().await {
        diagnostics.warning(&format!("closing the connection to {host}: {err}"));
    }
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok((summary, reporter, interrupted))
}

async fn stop_agent(agent: HostAgent, kill: bool) {
    // A graceful stop is `shutdown` then the agent's exit; anything else ends in a kill.
    let told_to_stop = !kill && agent.session.shutdown().await.is_ok();
    reap_agent(agent.child, agent.stderr_task, told_to_stop).await;
}

/// Waits up to 10 s for an agent that was told to stop to exit, kills it otherwise (or at once
/// when it was not told), and drains its stderr. `true` when it exited on its own.
async fn reap_agent(
    mut child: AgentChild,
    stderr_task: tokio::task::JoinHandle<()>,
    told_to_stop: bool,
) -> bool {
    let exited = told_to_stop
        && tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_ok();
    if !exited {
        let _ = child.kill().await;
    }
    let _ = stderr_task.await;
    exited
}

/// The last stop of a host's agent: it removes its own work directory and stops what it
/// started, then exits. `false` when it could not (said why on stderr) or did not exit: the
/// agent was killed and the pool's cleanup over SSH does the rest.
async fn finish_agent(
    host: &str,
    agent: HostAgent,
    request: CleanupRequest,
    diagnostics: &Diagnostics,
) -> bool {
    let answer = agent.session.clean_up_and_shut_down(request).await;
    // An agent that could not remove everything was still told to exit.
    let told_to_stop = matches!(answer, Ok(()) | Err(SessionError::CleanupIncomplete(_)));
    let exited = reap_agent(agent.child, agent.stderr_task, told_to_stop).await;
    match answer {
        Ok(()) => exited,
        Err(err @ SessionError::CleanupIncomplete(_)) => {
            diagnostics.warning(&format!("{host}: {err}; cleaning up over SSH"));
            false
        }
        Err(err) => {
            diagnostics.warning(&format!(
                "{host}: stopping the agent: {err}; cleaning up over SSH"
            ));
            false
        }
    }
}

async fn rollout(state: &RunState<'_>, roles: &[PushRole]) {
    let mut stop_reason: Option<String> = None;
    // Failed hosts and the role they failed in: later roles skip them, and say so.
    let mut failed_hosts: BTreeMap<String, String> = BTreeMap::new();
    for (position, push_role) in roles.iter().enumerate() {
        let role = &state.policy.roles[push_role.role_index];
        if let Some(reason) = &stop_reason {
            mark_not_attempted(
                state,
                push_role.hosts.iter().map(|host| host.name.as_str()),
                &role.name,
                reason,
            );
            continue;
        }
        let hosts: Vec<&PushHost> = push_role.hosts.iter().collect();
        if hosts.is_empty() {
            continue;
        }
        let serial = state
            .options
            .serial
            .or(role.serial)
            .map_or(hosts.len(), NonZeroUsize::get);
        let allowed_failures = role.max_fail.allowed(hosts.len());
        let mut role_failures = 0usize;
        let batches: Vec<&[&PushHost]> = hosts.chunks(serial).collect();
        state.reporter().role_started_in_batches(
            &role.name,
            &hosts
                .iter()
                .map(|host| host.name.clone())
                .collect::<Vec<_>>(),
            batches.len(),
        );
        for (batch_index, batch) in batches.iter().enumerate() {
            state.reporter().batch_started(batch_index + 1);
            for host in batch.iter() {
                if let Some(failed_in) = failed_hosts.get(&host.name) {
                    state.reporter().not_attempted(
                        &host.name,
                        &role.name,
                        &format!("it failed in role `{failed_in}`"),
                    );
                    state
                        .summary()
                        .host_mut(&host.name)
                        .missed_roles
                        .push(role.name.clone());
                    state.mark_finished(&host.name, position);
                }
            }
            let outcomes = join_all(batch.iter().map(|host| {
                let already_failed = failed_hosts.contains_key(&host.name);
                async move {
                    if already_failed {
                        return HostOutcome::NotContacted;
                    }
                    // `--forks` bounds the hosts in progress, not only the logins.
                    let _permit = state
                        .forks
                        .acquire()
                        .await
                        .expect("the forks semaphore is never closed");
                    state.mark_in_progress(&host.name, &role.name);
                    state.reporter().host_started(&host.name);
                    let outcome = run_host_role(state, push_role.role_index, role, host).await;
                    state.reporter().host_finished(&host.name);
                    state.mark_finished(&host.name, position);
                    outcome
                }
            }))
            .await;
            for (host, outcome) in batch.iter().zip(outcomes) {
                if let HostOutcome::Failed(failure) = outcome {
                    role_failures += 1;
                    failed_hosts.insert(host.name.clone(), role.name.clone());
                    state.reporter().host_failed(
                        &host.name,
                        &role.name,
                        failure.status(),
                        &failure.message,
                        failure.stderr.as_deref(),
                    );
                    state.summary().host_mut(&host.name).record_failure(
                        failure.kind,
                        &role.name,
                        &failure.summary_line(),
                    );
                }
            }
            if role_failures > allowed_failures {
                let reason = format!(
                    "role `{}` stopped: {role_failures} host{} failed, max_fail allows {allowed_failures}",
                    role.name,
                    if role_failures == 1 { "" } else { "s" }
                );
                let remaining = batches[batch_index + 1..]
                    .iter()
                    .flat_map(|batch| batch.iter().map(|host| host.name.as_str()));
                mark_not_attempted(state, remaining, &role.name, &reason);
                stop_reason = Some(reason);
                break;
            }
        }
    }
}

/// After Ctrl-C: hosts that were working are `interrupted`; hosts that had not started a role
/// they were selected for missed it (the first such role is named).
fn mark_interrupted(state: &RunState<'_>, roles: &[PushRole]) {
    let progress = state.progress();
    let mut summary = state.summary();
    for (host, role) in &progress.working {
        summary
            .host_mut(host)
            .record_failure(FailureKind::Interrupted, role, "stopped by Ctrl-C");
    }
    for (position, push_role) in roles.iter().enumerate() {
        let role = &state.policy.roles[push_role.role_index].name;
        for host in &push_role.hosts {
            if !progress.finished.contains(&(host.name.clone(), position)) {
                summary
                    .host_mut(&host.name)
                    .record_not_attempted(role, "interrupted before it started");
            }
        }
    }
}

fn mark_not_attempted<'a>(
    state: &RunState<'_>,
    hosts: impl Iterator<Item = &'a str>,
    role: &str,
    reason: &str,
) {
    let mut summary = state.summary();
    for host in hosts {
        summary.host_mut(host).record_not_attempted(role, reason);
    }
}

impl RunState<'_> {
    fn reporter(&self) -> std::sync::MutexGuard<'_, Reporter> {
        self.reporter
            .lock()
            .expect("reporter lock is never poisoned")
    }

    fn summary(&self) -> std::sync::MutexGuard<'_, RunSummary> {
        self.summary.lock().expect("summary lock is never poisoned")
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress
            .lock()
            .expect("progress lock is never poisoned")
    }

    fn mark_in_progress(&self, host: &str, role: &str) {
        self.progress()
            .working
            .insert(host.to_string(), role.to_string());
    }

    fn mark_finished(&self, host: &str, position: usize) {
        let mut progress = self.progress();
        progress.working.remove(host);
        progress.finished.insert((host.to_string(), position));
    }
}

async fn run_host_role(
    state: &RunState<'_>,
    role_index: usize,
    role: &Role,
    host: &PushHost,
) -> HostOutcome {
    let context = hook_context(&host.name, &host.groups, &host.vars);
    if let Some(expression) = &role.contact_when {
        match contact_when(expression, &context) {
            Ok(true) => {}
            Ok(false) => {
                state.reporter().note(
                    &host.name,
                    &role.name,
                    "not contacted: contact_when is false",
                );
                return HostOutcome::NotContacted;
            }
            Err(err) => return HostOutcome::Failed(HostFailure::new(FailureKind::Failed, err)),
        }
    }
    let check = state.options.plan.mode == Mode::Check;
    if let Some(before) = &role.before {
        if let Err(failure) = hook(state, role, host, "before", before, &context, check).await {
            return HostOutcome::Failed(failure);
        }
    }

    let work = run_role_on_host(state, role_index, role, host);
    let result = match state.options.host_timeout {
        Some(limit) => match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) => Err(HostFailure::new(
                FailureKind::Failed,
                format!("timed out after {}s", limit.as_secs()),
            )),
        },
        None => work.await,
    };
    match result {
        Ok(None) => {}
        Ok(Some(first_failure)) => {
            let mut failure =
                HostFailure::new(FailureKind::Failed, format!("role `{}` failed", role.name));
            failure.detail = first_failure;
            return HostOutcome::Failed(failure);
        }
        Err(failure) => return HostOutcome::Failed(failure),
    }

    if let Some(after) = &role.after {
        if let Err(failure) = hook(state, role, host, "after", after, &context, check).await {
            return HostOutcome::Failed(failure);
        }
    }
    HostOutcome::Succeeded
}

async fn hook(
    state: &RunState<'_>,
    role: &Role,
    host: &PushHost,
    which: &str,
    template: &str,
    context: &Map<String, Value>,
    check: bool,
) -> Result<(), HostFailure> {
    let command = render_hook(template, context)
        .map_err(|err| HostFailure::new(FailureKind::HookFailed, format!("{which} {err}")))?;
    if check {
        state.reporter().note(
            &host.name,
            &role.name,
            &format!("would run {which} hook: {command}"),
        );
        return Ok(());
    }
    let result = run_hook(&command, &state.policy.dir, &host.name, &role.name)
        .await
        .map_err(|err| {
            HostFailure::new(
                FailureKind::HookFailed,
                format!("{which} hook `{command}` could not run: {err}"),
            )
        })?;
    if result.rc != 0 {
        // The hook's own words: its stderr (its stdout when it wrote nothing there), printed
        // once under the failure line; the summary carries the last line.
        let output = if result.stderr.trim().is_empty() {
            result.stdout
        } else {
            result.stderr
        };
        let mut failure = HostFailure::new(
            FailureKind::HookFailed,
            format!("{which} hook `{command}` exited with {}", result.rc),
        );
        failure.detail = output
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
            .map(str::to_string);
        failure.stderr = Some(output);
        return Err(failure);
    }
    state.reporter().note(
        &host.name,
        &role.name,
        &format!("ran {which} hook: {command}"),
    );
    Ok(())
}

/// Runs the role through the host's agent (starting one if needed). `Ok(None)` when the role
/// succeeded, `Ok(Some(first failed resource))` when it failed, `Err` when the agent could
/// not be reached, broke the protocol or lost its connection.
async fn run_role_on_host(
    state: &RunState<'_>,
    role_index: usize,
    role: &Role,
    host: &PushHost,
) -> Result<Option<Option<String>>, HostFailure> {
    let options = agent_options(&host.connection, state.options.no_agent_cache);
    let existing = state
        .agents
        .lock()
        .expect("agents lock is never poisoned")
        .remove(&host.name);
    let mut agent = match existing {
        Some(agent) if agent.options == options => agent,
        other => {
            if let Some(previous) = other {
                stop_agent(previous, false).await;
            }
            start_agent(state, &host.name, options).await?
        }
    };
    let plan = role_plan(
        role,
        &state.prepared.roles[role_index],
        &host.name,
        &host.groups,
        host.vars.clone(),
        host.connection.remote_log,
        state.options.plan,
    );
    let mut first_failure: Option<String> = None;
    let outcome = agent
        .session
        .run_role(&plan, &state.files, &mut |event| {
            if let RoleEvent::Finished(finished) = &event {
                if finished.status == ResourceStatus::Failed
                    && !finished.ignored
                    && first_failure.is_none()
                {
                    first_failure = Some(crate::report::failure_line(finished));
                }
            }
            state.reporter().role_event(&host.name, &role.name, &event)
        })
        .await;
    match outcome {
        Ok(outcome) => {
            state.reporter().role_done(
                &host.name,
                &role.name,
                &outcome.summary,
                outcome.bytes_sent,
            );
            for refused in &outcome.refused_requests {
                state
                    .diagnostics
                    .host_line(&host.name, &format!("protocol violation: {refused}"));
            }
            state
                .summary()
                .add_role(&host.name, &outcome.summary, outcome.bytes_sent);
            let failed = outcome.summary.role_failed;
            state
                .agents
                .lock()
                .expect("agents lock is never poisoned")
                .insert(host.name.clone(), agent);
            Ok(failed.then_some(first_failure))
        }
        Err(err) => {
            let lost = match err {
                SessionError::Closed | SessionError::Io(_) => {
                    crate::ssh::connection_lost(state.pool, &host.name).await
                }
                _ => None,
            };
            stop_agent(agent, true).await;
            Err(match lost {
                Some(reason) => HostFailure::new(
                    FailureKind::Unreachable,
                    format!("connection to {} lost: {reason}", host.name),
                ),
                None => HostFailure::new(FailureKind::Failed, err),
            })
        }
    }
}

/// Login failures: the host could not be reached at all (as opposed to sudo or bootstrap
/// problems on a host that was reached).
fn is_login_failure(err: &SshError) -> bool {
    matches!(
        err,
        SshError::Unreachable { .. }
            | SshError::Timeout { .. }
            | SshError::AuthFailed { .. }
            | SshError::PasswordRejected { .. }
            | SshError::PasswordNotAsked { .. }
            | SshError::HostKeyChanged { .. }
            | SshError::HostKeyUnknown { .. }
            | SshError::JumpFailed { .. }
            | SshError::Connect { .. }
    )
}

async fn start_agent(
    state: &RunState<'_>,
    host: &str,
    options: AgentOptions,
) -> Result<HostAgent, HostFailure> {
    let process = state
        .pool
        .start_agent(host, &options)
        .await
        .map_err(|err| {
            let kind = if is_login_failure(&err) {
                FailureKind::Unreachable
            } else {
                FailureKind::Failed
            };
            HostFailure::new(kind, err)
        })?;
    let host_name = host.to_string();
    let stderr = process.stderr;
    let diagnostics = state.diagnostics.clone();
    // When sudo refuses to start the agent, what it printed is diagnosed afterwards in mop's
    // words (ssh/run_as.rs); its raw lines ("a password is required") are not passed on.
    let under_sudo = options.sudo.is_some();
    let stderr_task = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if under_sudo && crate::ssh::is_become_refusal(&line) {
                continue;
            }
            diagnostics.host_line(&host_name, &line);
        }
    });
    let mut child = process.child;
    match AgentSession::start(process.stdout, process.stdin).await {
        Ok(session) => Ok(HostAgent {
            session,
            child,
            options,
            stderr_task,
        }),
        Err(err) => {
            let lost = match err {
                SessionError::Closed | SessionError::Io(_) => {
                    crate::ssh::connection_lost(state.pool, host).await
                }
                _ => None,
            };
            let _ = child.kill().await;
            let _ = stderr_task.await;
            if let Some(reason) = lost {
                return Err(HostFailure::new(
                    FailureKind::Unreachable,
                    format!("connection to {host} lost: {reason}"),
                ));
            }
            match state.pool.diagnose_agent_start(host, &options).await {
                Some(diagnosis) => Err(HostFailure::new(FailureKind::Failed, diagnosis)),
                None => Err(HostFailure::new(
                    FailureKind::Failed,
                    format!("starting the agent: {err}"),
                )),
            }
        }
    }
}
