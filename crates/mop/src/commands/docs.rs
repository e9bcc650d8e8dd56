//! `mop completions` and the hidden `mop man-pages`: documentation generated from the clap
//! definition in `cli.rs`, so it can never disagree with `--help`.

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManPagesArgs};
use crate::exit;

pub fn completions(args: CompletionsArgs) -> Result<u8> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "mop", &mut std::io::stdout());
    Ok(exit::SUCCESS)
}

/// `mop.1` plus one page per visible command (`mop-push.1`, `mop-connections-list.1`, ...).
pub fn man_pages(args: ManPagesArgs) -> Result<u8> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create `{}`", args.dir.display()))?;
    clap_mangen::generate_to(Cli::command(), &args.dir)
        .with_context(|| format!("cannot write the man pages into `{}`", args.dir.display()))?;
    Ok(exit::SUCCESS)
}
