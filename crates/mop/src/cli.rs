//! Command-line arguments (clap derive). The doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Exit status:
  0  success: every selected host converged (or, with --check, was checked)
  1  some host failed or was unreachable
  2  invalid input or usage: nothing was contacted

Docs: docs/guide.md, docs/reference/";

/// mop: agentless, push-mode configuration over SSH.
#[derive(Debug, Parser)]
#[command(name = "mop", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// When to use colours: auto (a terminal without NO_COLOR), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what the inventory resolves to: hosts, groups, variables, via-chains.
    #[command(after_help = AFTER_HELP)]
    Inventory(InventoryArgs),
    /// Load and validate a policy and its inventory; print roles and the hosts they select.
    #[command(after_help = AFTER_HELP)]
    Validate(ValidateArgs),
    /// Converge (or check) the hosts a policy selects, over SSH.
    #[command(after_help = AFTER_HELP)]
    Push(PushArgs),
    /// Run every role of a policy on this machine, without SSH.
    #[command(after_help = AFTER_HELP)]
    Local(LocalArgs),
}

/// Host selection shared by commands that take an inventory.
#[derive(Debug, Clone, Args)]
pub struct InventorySelection {
    /// Inventory file (default: the policy's `inventory`, else `inventory/` in the current directory).
    #[arg(short = 'i', long = "inventory", value_name = "FILE")]
    pub inventory: Option<PathBuf>,

    /// Only hosts in groups matching these globs (comma-separated, OR-ed).
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',')]
    pub limit_groups: Vec<String>,

    /// Only hosts matching these globs (comma-separated, OR-ed; `@FILE` reads names from a retry file).
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',')]
    pub limit_hosts: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InventoryArgs {
    #[command(flatten)]
    pub selection: InventorySelection,

    /// Show one host in detail: where each variable came from, and its via-chain.
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,

    /// Set or override a variable (highest precedence); VALUE is TOML if it parses, else a string.
    #[arg(short = 'e', long = "extra-var", value_name = "KEY=VALUE")]
    pub extra_vars: Vec<String>,

    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The policy file.
    pub policy: PathBuf,

    #[command(flatten)]
    pub selection: InventorySelection,

    /// Set or override a variable (highest precedence); VALUE is TOML if it parses, else a string.
    #[arg(short = 'e', long = "extra-var", value_name = "KEY=VALUE")]
    pub extra_vars: Vec<String>,

    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `--apply` or `--check`: exactly one is required.
#[derive(Debug, Clone, Copy, Args)]
#[group(required = true, multiple = false)]
pub struct RunMode {
    /// Change hosts to match the policy.
    #[arg(long)]
    pub apply: bool,

    /// Show what would change; change nothing (hooks are reported, not run).
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The policy file.
    pub policy: PathBuf,

    #[command(flatten)]
    pub mode: RunMode,

    #[command(flatten)]
    pub selection: InventorySelection,

    /// Override every role's `serial`: hosts per batch.
    #[arg(long, value_name = "N")]
    pub serial: Option<std::num::NonZeroUsize>,

    /// Maximum concurrent connection attempts.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub forks: usize,

    /// Fail a host that takes longer than this for one role (connection included).
    #[arg(long, value_name = "SECS")]
    pub host_timeout: Option<u64>,

    /// Set or override a variable (highest precedence); VALUE is TOML if it parses, else a string.
    #[arg(short = 'e', long = "extra-var", value_name = "KEY=VALUE")]
    pub extra_vars: Vec<String>,

    /// Show unified diffs of content changes.
    #[arg(long)]
    pub diff: bool,

    /// Print events as JSON lines and a final summary object.
    #[arg(long)]
    pub json: bool,

    /// Also print unchanged and skipped resources.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct LocalArgs {
    /// The policy file.
    pub policy: PathBuf,

    #[command(flatten)]
    pub mode: RunMode,

    /// Set or override a variable (highest precedence); VALUE is TOML if it parses, else a string.
    #[arg(short = 'e', long = "extra-var", value_name = "KEY=VALUE")]
    pub extra_vars: Vec<String>,

    /// Show unified diffs of content changes.
    #[arg(long)]
    pub diff: bool,

    /// Print events as JSON lines and a final summary object.
    #[arg(long)]
    pub json: bool,

    /// Also print unchanged and skipped resources.
    #[arg(short, long)]
    pub verbose: bool,
}
