//! Pieces shared by the subcommands: colour choice, error printing, loading the inventory and
//! `-e` variables, and `--limit-*` selections (including `@FILE` retry files).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indexmap::IndexMap;
use mop_inventory::{Inventory, Selection};

use crate::cli::{ColorChoice, InventorySelection};

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

/// The inventory path: `-i`, else the policy's `inventory`, else `inventory/` here.
pub fn inventory_path(explicit: Option<&Path>, from_policy: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit.or(from_policy) {
        return Ok(path.to_path_buf());
    }
    let default = PathBuf::from("inventory");
    if default.exists() {
        Ok(default)
    } else {
        bail!("no inventory given\n  hint: pass `-i FILE`, set `inventory = \"...\"` in the policy, or create `inventory/` here")
    }
}

pub fn load_inventory(path: &Path) -> Result<Inventory> {
    Inventory::load(path).map_err(|err| anyhow::anyhow!("{err}"))
}

/// Parses `-e KEY=VALUE` arguments, later ones winning.
pub fn extra_vars(args: &[String]) -> Result<IndexMap<String, serde_json::Value>> {
    let mut vars = IndexMap::new();
    for arg in args {
        let (key, value) =
            mop_inventory::parse_extra_var(arg).map_err(|err| anyhow::anyhow!("{err}"))?;
        vars.insert(key, value);
    }
    Ok(vars)
}

/// The `--limit-groups`/`--limit-hosts` selection; `@FILE` in the hosts list reads host names
/// (one per line, `#` comments) from a retry file.
pub fn limit_selection(selection: &InventorySelection) -> Result<Selection> {
    let mut hosts = Vec::new();
    for pattern in &selection.limit_hosts {
        match pattern.strip_prefix('@') {
            Some(file) => {
                let text = std::fs::read_to_string(file).with_context(|| {
                    format!("cannot read the host list `{file}` given to --limit-hosts")
                })?;
                let names: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty() && !line.starts_with('#'))
                    .map(glob_escape)
                    .collect();
                if names.is_empty() {
                    bail!("the host list `{file}` given to --limit-hosts names no host");
                }
                hosts.extend(names);
            }
            None => hosts.push(pattern.clone()),
        }
    }
    Selection::new(&selection.limit_groups, &hosts).map_err(|err| anyhow::anyhow!("{err}"))
}

/// Host names from a retry file are names, not patterns.
fn glob_escape(name: &str) -> String {
    let mut escaped = String::with_capacity(name.len());
    for ch in name.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '{' | '}') {
            escaped.push('[');
            escaped.push(ch);
            escaped.push(']');
        } else {
            escaped.push(ch);
        }
    }
    escaped
}
