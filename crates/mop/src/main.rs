//! `mop`: the command-line entry point. Thin by design: it parses arguments, calls the library
//! crates, prints, and maps outcomes to the documented exit codes.

mod cli;
mod commands;
mod common;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Exit codes, documented in `--help` and `docs/reference/cli.md`.
pub mod exit {
    /// Every selected host succeeded.
    pub const SUCCESS: u8 = 0;
    /// Some host failed or was unreachable.
    pub const HOST_FAILED: u8 = 1;
    /// Invalid input or usage; no host was contacted.
    pub const INVALID_INPUT: u8 = 2;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            common::print_error(&err, color);
            ExitCode::from(exit::INVALID_INPUT)
        }
    }
}
