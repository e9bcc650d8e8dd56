//! `mop local`: every role of a policy on this machine, through the real agent as a child
//! process (OpsMop's local mode: any push policy runs locally unchanged).

use std::path::Path;
use std::time::Instant;

use mop_policy::Policy;
use mop_protocol::ResourceStatus;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::plan::{merge_vars, role_plan, PlanOptions};
use crate::prepare::{ManifestFiles, PreparedRun};
use crate::report::{FailureKind, HostStatus, Reporter, RunSummary};
use crate::session::{AgentSession, RoleEvent, SessionError};
use crate::transport::{LocalTransport, TransportError};

/// The host name `mop local` reports and templates see as `host.name`.
pub const LOCAL_HOST: &str = "localhost";

/// Options for a local run.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub plan: PlanOptions,
    /// `-e` variables (highest precedence).
    pub extra_vars: Map<String, Value>,
}

/// Runs the policy's roles in order on this machine. A role that fails stops the run; the
/// summary says so. Only a failure to start the agent is an `Err`.
pub async fn run_local(
    policy: &Policy,
    prepared: &PreparedRun,
    agent: &Path,
    options: &LocalOptions,
    reporter: &mut Reporter,
) -> Result<RunSummary, TransportError> {
    let started = Instant::now();
    let mut summary = RunSummary {
        check: options.plan.mode == mop_protocol::Mode::Check,
        ..RunSummary::default()
    };
    summary.host_mut(LOCAL_HOST);
    let mut process = LocalTransport::new(agent).start_agent()?;
    let stderr = process.stderr;
    let diagnostics = reporter.diagnostics();
    let stderr_task = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            diagnostics.host_line(LOCAL_HOST, &line);
        }
    });

    let files = ManifestFiles(prepared.manifest.clone());
    // The role in progress, for the summary when the session breaks.
    let mut current_role = String::new();
    let outcome: Result<(), SessionError> = async {
        let mut session = AgentSession::start(process.stdout, process.stdin).await?;
        let groups = vec!["all".to_string()];
        for (index, role) in policy.roles.iter().enumerate() {
            reporter.role_started(&role.name, &[LOCAL_HOST.to_string()]);
            reporter.batch_started(1);
            reporter.host_started(LOCAL_HOST);
            current_role.clone_from(&role.name);
            let layers = policy.var_layers(role);
            let vars = merge_vars(
                layers
                    .iter()
                    .map(|layer| &layer.vars)
                    .chain([&options.extra_vars]),
            );
            let plan = role_plan(
                role,
                &prepared.roles[index],
                LOCAL_HOST,
                &groups,
                vars,
                false,
                options.plan,
            );
            let mut first_failure: Option<String> = None;
            let role_outcome = session
                .run_role(&plan, &files, &mut |event| {
                    if let RoleEvent::Finished(finished) = &event {
                        if finished.status == ResourceStatus::Failed
                            && !finished.ignored
                            && first_failure.is_none()
                        {
                            first_failure = Some(crate::report::failure_line(finished));
                        }
                    }
                    reporter.role_event(LOCAL_HOST, &role.name, &event)
                })
                .await?;
            reporter.role_done(
                LOCAL_HOST,
                &role.name,
                &role_outcome.summary,
                role_outcome.bytes_sent,
            );
            reporter.host_finished(LOCAL_HOST);
            summary.add_role(LOCAL_HOST, &role_outcome.summary, role_outcome.bytes_sent);
            if role_outcome.summary.role_failed {
                let message = match first_failure {
                    Some(first) => format!("role `{}` failed: {first}", role.name),
                    None => format!("role `{}` failed", role.name),
                };
                let totals = summary.host_mut(LOCAL_HOST);
                totals.record_failure(FailureKind::Failed, &role.name, &message);
                // The later roles are not run: named, as `mop push` names them.
                totals.missed_roles = policy.roles[index + 1..]
                    .iter()
                    .map(|role| role.name.clone())
                    .collect();
                break;
            }
        }
        session.shutdown().await
    }
    .await;

    if let Err(err) = outcome {
        let message = err.to_string();
        reporter.host_failed(
            LOCAL_HOST,
            &current_role,
            HostStatus::Failed,
            &message,
            None,
        );
        summary
            .host_mut(LOCAL_HOST)
            .record_failure(FailureKind::Failed, &current_role, &message);
        let _ = process.child.kill().await;
    }
    let exit = process.child.wait().await;
    let _ = stderr_task.await;
    match exit {
        Ok(Some(0)) => {}
        Ok(code) => {
            summary.host_mut(LOCAL_HOST).record_failure(
                FailureKind::Failed,
                &current_role,
                &format!("the agent exited with status {code:?}"),
            );
        }
        Err(err) => summary.host_mut(LOCAL_HOST).record_failure(
            FailureKind::Failed,
            &current_role,
            &format!("waiting for the agent: {err}"),
        ),
    }
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(summary)
}
