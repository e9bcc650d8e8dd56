//! `mop local`: run a policy's roles on this machine through the real agent, without SSH.

use anyhow::Result;
use mop_protocol::Mode;
use mop_push::agents::AgentSet;
use mop_push::load::load_local_run;
use mop_push::local::{run_local, LocalOptions};
use mop_push::plan::PlanOptions;
use mop_push::report::ReportStyle;

use crate::cli::LocalArgs;
use crate::exit;

pub fn run(args: LocalArgs, color: bool) -> Result<u8> {
    // Served files unchanged since an earlier run are not read again to hash them.
    if let Some(warning) = mop_push::prepare::use_digest_cache() {
        eprintln!("warning: {warning}");
    }
    let mut loaded = load_local_run(&args.policy, &args.extra_vars.extra_vars)?;
    for warning in loaded.select_tasks(&args.tasks.filter())? {
        eprintln!("warning: {warning}");
    }
    if let Some(listing) = args.tasks.listing() {
        crate::common::print_outline(&loaded.outline(), listing, args.report.output.json)?;
        return Ok(exit::SUCCESS);
    }
    // The agent runs here, not on a host: a dynamically linked dev agent is fine.
    let agent = AgentSet::resolve(crate::build_info::EMBEDDED_AGENTS)?.local_executable()?;
    let options = LocalOptions {
        plan: PlanOptions {
            mode: if args.mode.apply {
                Mode::Apply
            } else {
                Mode::Check
            },
            diff: args.report.diff,
        },
        extra_vars: loaded.extra_vars,
    };
    let style = ReportStyle {
        json: args.report.output.json,
        color: color && !args.report.output.json,
        diff: args.report.diff,
        verbose: args.report.verbose >= 1,
    };
    let mut reporter = crate::progress::reporter(style, args.report.verbose >= 2);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let summary = runtime.block_on(run_local(
        &loaded.policy,
        &loaded.prepared,
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
