//! Pieces shared by the subcommands: colour choice, error printing and the run outline of
//! `--list-hosts`/`--list-tasks`. Loading inputs is
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

/// `--list-hosts`/`--list-tasks` of `mop push` and `mop local`: the run's outline on stdout,
/// as text or one JSON object per role.
pub fn print_outline(
    outline: &[mop_push::tasks::RoleOutline],
    listing: mop_push::tasks::Listing,
    json: bool,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        for role in outline {
            writeln!(out, "{}", serde_json::to_string(role)?)?;
        }
    } else {
        write!(out, "{}", mop_push::tasks::render_outline(outline, listing))?;
    }
    Ok(())
}
