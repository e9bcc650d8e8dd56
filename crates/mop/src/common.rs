//! Pieces shared by the subcommands: colour choice and error printing. Loading inputs is
//! library code (`mop_push::load`).

use crate::cli::ColorChoice;
use std::io::IsTerminal;

/// Whether stdout gets ANSI colours: `--color`, then `NO_COLOR`, then "is it a terminal".
pub fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
                && std::io::stdout().is_terminal()
        }
    }
}

/// Prints an error chain to stderr as `error: ...` lines; `hint:` lines stay indented.
pub fn print_error(err: &anyhow::Error, color: bool) {
    let label = if color {
        "\x1b[1;31merror\x1b[0m"
    } else {
        "error"
    };
    eprintln!("{label}: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}
