//! `mop local`: run a policy's roles on this machine through the real agent, without SSH.

use anyhow::{anyhow, Result};
use mop_protocol::Mode;
use mop_push::agents::AgentSet;
use mop_push::local::{run_local, LocalOptions};
use mop_push::plan::PlanOptions;
use mop_push::prepare::prepare;
use mop_push::report::{ReportStyle, Reporter};

use crate::cli::LocalArgs;
use crate::commands::load::{load_policy, LoadErrors};
use crate::common;
use crate::exit;

pub fn run(args: LocalArgs, color: bool) -> Result<u8> {
    let policy = load_policy(&args.policy)?;
    let extra_vars = common::extra_vars(&args.extra_vars)?.into_iter().collect();
    let all_roles: Vec<usize> = (0..policy.roles.len()).collect();
    let prepared = prepare(&policy, &all_roles, std::slice::from_ref(&args.policy))
        .map_err(|errors| anyhow!(LoadErrors(errors.iter().map(ToString::to_string).collect())))?;
    // The agent runs here, not on a host: a dynamically linked dev agent is fine.
    let agent = AgentSet::resolve(crate::build_info::EMBEDDED_AGENTS)?.local_executable()?;
    let options = LocalOptions {
        plan: PlanOptions {
            mode: if args.mode.apply {
                Mode::Apply
            } else {
                Mode::Check
            },
            diff: args.diff,
        },
        extra_vars,
    };
    let style = ReportStyle {
        json: args.json,
        color: color && !args.json,
        diff: args.diff,
        verbose: args.verbose,
    };
    let mut reporter = Reporter::stdout(style);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let summary = runtime.block_on(run_local(
        &policy,
        &prepared,
        &agent.path,
        &options,
        &mut reporter,
    ))?;
    reporter.finish(&summary);
    Ok(if summary.success() {
        exit::SUCCESS
    } else {
        exit::HOST_FAILED
    })
}
