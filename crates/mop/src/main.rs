//! `mop`: the command-line entry point. Thin by design: it parses arguments, calls the library
//! crates, prints, and maps outcomes to the documented exit codes.

mod askpass;
mod build_info;
mod cli;
mod commands;
mod common;
mod pipe;
mod progress;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};

/// Exit codes, documented in `--help` and `docs/reference/cli.md`.
pub mod exit {
    /// Every selected host succeeded.
    pub const SUCCESS: u8 = 0;
    /// Some host failed or was unreachable.
    pub const HOST_FAILED: u8 = 1;
    /// Invalid input or usage; no host was contacted.
    pub const INVALID_INPUT: u8 = 2;
    /// Interrupted by Ctrl-C (SIGINT): remote work was stopped and connections closed.
    pub const INTERRUPTED: u8 = 130;

    /// The one place an error that ends a command becomes an exit code. Commands return
    /// their outcome (0, 1, 130) as `Ok`; an `Err` means the command stopped before any host
    /// was worked on: bad input (the load errors), or a run that could not start at all
    /// (no agent for the run, the SSH pool could not be set up), which the operator fixes
    /// the same way, so both are 2. The typed error and its source chain are printed whole.
    pub fn for_error(_err: &anyhow::Error) -> u8 {
        INVALID_INPUT
    }
}

fn main() -> ExitCode {
    // ssh running mop as askpass for a host's login password: nothing else happens.
    if let Some(code) = askpass::answer_if_asked() {
        return code;
    }
    // The long version names the built-in agents' digests, known only once `build_info` is
    // compiled, so it is set here rather than in the derive attributes.
    let long_version: &'static str = Box::leak(build_info::long_version().into_boxed_str());
    let matches = Cli::command().long_version(long_version).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    // `--apply`/`--check` are required unless a listing replaces the run.
    let missing_mode = match &cli.command {
        Command::Push(args) => {
            (!args.mode.given() && args.tasks.listing().is_none()).then_some("push")
        }
        Command::Local(args) => {
            (!args.mode.given() && args.tasks.listing().is_none()).then_some("local")
        }
        _ => None,
    };
    if let Some(name) = missing_mode {
        let mut command = Cli::command();
        let sub = command
            .find_subcommand_mut(name)
            .expect("push and local are subcommands")
            .clone()
            .bin_name(format!("mop {name}"));
        sub.clone().error(
            clap::error::ErrorKind::MissingRequiredArgument,
            "the following required arguments were not provided:\n  <--apply|--check>\n\n(or --list-hosts / --list-tasks to print what a run would do)",
        )
        .exit();
    }
    let color = common::use_color(cli.color);
    let result = match cli.command {
        Command::Inventory(args) => commands::inventory::run(args),
        Command::Validate(args) => commands::validate::run(args, color),
        Command::Push(args) => commands::push::run(args, color),
        Command::Local(args) => commands::local::run(args, color),
        Command::Run(args) => commands::run::run(args),
        Command::Upload(args) => commands::upload::run(args),
        Command::Download(args) => commands::download::run(args),
        Command::Transfer(args) => commands::transfer::run(args),
        Command::Connections(args) => commands::connections::run(args),
        Command::Clean(args) => commands::clean::run(args),
        Command::Vault(command) => commands::vault::run(command),
        Command::Completions(args) => commands::docs::completions(args),
        Command::ManPages(args) => commands::docs::man_pages(args),
    };
    match result {
        Err(err) if pipe::is_broken_pipe(&err) => pipe::die_of_sigpipe(),
        Ok(_) if pipe::stdout_closed() => pipe::die_of_sigpipe(),
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            common::print_error(&err, color);
            ExitCode::from(exit::for_error(&err))
        }
    }
}
