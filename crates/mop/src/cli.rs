//! Command-line arguments (clap derive). The doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Exit status:
  0    success: every selected host converged (or, with --check, was checked)
  1    some host failed or was unreachable
  2    invalid input or usage: nothing was contacted
  130  interrupted (Ctrl-C): work on hosts stopped, connections closed

Docs: docs/guide.md, docs/reference/";

/// mop: agentless, push-mode configuration over SSH.
#[derive(Debug, Parser)]
#[command(
    name = "mop",
    version = crate::build_info::SHORT_VERSION,
    about,
    after_help = AFTER_HELP,
    propagate_version = true
)]
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
    #[command(
        after_help = AFTER_HELP,
        override_usage = "mop push [OPTIONS] <--apply|--check|--list-hosts|--list-tasks> <POLICY>"
    )]
    Push(PushArgs),
    /// Run every role of a policy on this machine, without SSH.
    #[command(
        after_help = AFTER_HELP,
        override_usage = "mop local [OPTIONS] <--apply|--check|--list-hosts|--list-tasks> <POLICY>"
    )]
    Local(LocalArgs),
    /// Run one command on many hosts (parallel-ssh): per-host exit code, stdout and stderr.
    #[command(after_help = ADHOC_AFTER_HELP)]
    Run(RunArgs),
    /// Copy a file or directory to many hosts over SFTP, skipping files that already match.
    #[command(after_help = ADHOC_AFTER_HELP)]
    Upload(UploadArgs),
    /// Fetch a file or directory from many hosts into LOCAL_DIR/<host>/.
    #[command(after_help = ADHOC_AFTER_HELP)]
    Download(DownloadArgs),
    /// Copy a file from one host to another, streamed through this machine.
    #[command(after_help = ADHOC_AFTER_HELP)]
    Transfer(TransferArgs),
    /// List or close the SSH connections kept open by `--persist`.
    #[command(after_help = CONNECTIONS_AFTER_HELP)]
    Connections(ConnectionsArgs),
    /// Remove the cached agents and dead agents' work directories mop left on hosts.
    #[command(after_help = ADHOC_AFTER_HELP)]
    Clean(CleanArgs),
    /// Encrypt, decrypt, view, edit and rekey vault files (age format).
    #[command(subcommand, after_help = VAULT_AFTER_HELP)]
    Vault(VaultCommand),
    /// Print a shell completion script: `mop completions bash > /etc/bash_completion.d/mop`.
    Completions(CompletionsArgs),
    /// Write man pages generated from this command line into DIR (used by `scripts/man`).
    #[command(hide = true)]
    ManPages(ManPagesArgs),
}

const VAULT_AFTER_HELP: &str = "\
Keys:
  decrypting   MOP_VAULT_IDENTITY (an age identity file or an unencrypted ssh private key),
               else ~/.ssh/id_ed25519 and ~/.ssh/id_rsa; a passphrase file is decrypted with
               MOP_VAULT_PASSWORD_FILE's first line, else asked on the terminal
  encrypting   --recipient/--recipients-file, else the nearest .mop-vault-recipients above
               the file, else a passphrase

Exit status:
  0    success
  2    invalid input, or the file could not be decrypted or written

Docs: docs/reference/vault.md";

/// `mop vault` subcommands.
#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Encrypt FILE into FILE.age (or --output); the plaintext file is left alone.
    Encrypt(VaultEncryptArgs),
    /// Decrypt a vault file into a file (FILE without `.age`, or --output), mode 0600.
    Decrypt(VaultDecryptArgs),
    /// Print a vault file's plaintext on stdout.
    View(VaultFileArg),
    /// Edit a vault file in $EDITOR; the plaintext exists only in a private temporary file.
    Edit(VaultEditArgs),
    /// Re-encrypt vault files for new recipients or a new passphrase.
    Rekey(VaultRekeyArgs),
}

/// Whom to encrypt to.
#[derive(Debug, Args)]
pub struct VaultRecipientArgs {
    /// A public key to encrypt to: `age1...`, or an `ssh-ed25519 ...`/`ssh-rsa ...` line.
    #[arg(long = "recipient", short = 'r', value_name = "KEY")]
    pub recipients: Vec<String>,
    /// A file of public keys, one a line (`#` comments), like `.mop-vault-recipients`.
    #[arg(long, short = 'R', value_name = "PATH")]
    pub recipients_file: Option<PathBuf>,
    /// Encrypt to a passphrase (MOP_VAULT_PASSWORD_FILE, or MOP_VAULT_NEW_PASSWORD_FILE for
    /// rekey; else asked twice on the terminal).
    #[arg(long, conflicts_with_all = ["recipients", "recipients_file"])]
    pub passphrase: bool,
}

#[derive(Debug, Args)]
pub struct VaultEncryptArgs {
    /// The plaintext file.
    pub file: PathBuf,
    /// Where to write the vault file (default: FILE.age).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub recipients: VaultRecipientArgs,
}

#[derive(Debug, Args)]
pub struct VaultDecryptArgs {
    /// The vault file.
    pub file: PathBuf,
    /// Where to write the plaintext (default: FILE without `.age`).
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct VaultFileArg {
    /// The vault file.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct VaultEditArgs {
    /// The vault file (created when it does not exist).
    pub file: PathBuf,
    #[command(flatten)]
    pub recipients: VaultRecipientArgs,
}

#[derive(Debug, Args)]
pub struct VaultRekeyArgs {
    /// The vault files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub recipients: VaultRecipientArgs,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManPagesArgs {
    /// Where to write `mop.1` and one `mop-<command>.1` per command (created if missing).
    pub dir: PathBuf,
}

/// The `--persist` value parser (`90s`, `10m`, `1h`, `1h30m`).
fn persist_duration(text: &str) -> Result<std::time::Duration, String> {
    mop_push::ssh::parse_persist_duration(text).map_err(|error| error.to_string())
}

/// A path mop writes into its ssh_config (`--ssh-key`, `--known-hosts-file`): the grammar of
/// `mop_ssh_key` in an inventory.
fn ssh_config_path(text: &str) -> Result<std::path::PathBuf, String> {
    mop_inventory::grammar::check_config_path(text)
        .map(|()| std::path::PathBuf::from(text))
        .map_err(|error| error.to_string())
}

/// A user name (`--sudo-as`): the grammar of `mop_sudo_username` in an inventory.
fn user_name(text: &str) -> Result<String, String> {
    mop_inventory::grammar::check_user_name(text)
        .map(|()| text.to_string())
        .map_err(|error| error.to_string())
}

/// `--connect-timeout SECS`: the range of `mop_connect_timeout` in an inventory.
fn connect_timeout_seconds(text: &str) -> Result<std::time::Duration, String> {
    let range = mop_inventory::CONNECT_TIMEOUT_SECONDS;
    match text.parse::<u64>() {
        Ok(seconds) if range.contains(&seconds) => Ok(std::time::Duration::from_secs(seconds)),
        _ => Err(format!(
            "the connect timeout must be a whole number of seconds between {} and {}, as for \
             `mop_connect_timeout`",
            range.start(),
            range.end()
        )),
    }
}

/// `--connect-timeout`, shared by every command that logs in to hosts.
#[derive(Debug, Clone, Copy, Args)]
pub struct ConnectTimeout {
    /// How long the TCP connect and the SSH banner exchange may each take, for every host and
    /// jump host (overrides the inventory's `mop_connect_timeout`; default 10).
    #[arg(long, value_name = "SECS", value_parser = connect_timeout_seconds)]
    pub connect_timeout: Option<std::time::Duration>,
}

/// `-e KEY=VALUE`, shared by every command that resolves variables.
#[derive(Debug, Clone, Default, Args)]
pub struct ExtraVars {
    /// Set or override a variable (highest precedence); VALUE is TOML if it parses, else a string.
    #[arg(short = 'e', long = "extra-var", value_name = "KEY=VALUE")]
    pub extra_vars: Vec<String>,
}

/// `--json`, the same flag on every command that has machine output.
#[derive(Debug, Clone, Copy, Args)]
pub struct JsonOutput {
    /// Print JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// How `mop push` and `mop local` report resources.
#[derive(Debug, Clone, Copy, Args)]
pub struct ReportArgs {
    /// Show unified diffs of content changes.
    #[arg(long)]
    pub diff: bool,

    #[command(flatten)]
    pub output: JsonOutput,

    /// Also print unchanged and skipped resources and command output; -vv also the connection
    /// and agent steps (ssh options, agent upload, sudo)
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `--forks`: one meaning for every command that reaches hosts.
#[derive(Debug, Clone, Copy, Args)]
pub struct Forks {
    /// Hosts worked on at once (logins, commands, copies, agents).
    #[arg(long, value_name = "N", default_value_t = mop_push::DEFAULT_FORKS)]
    pub forks: std::num::NonZeroUsize,
}

/// Host selection shared by commands that take an inventory.
#[derive(Debug, Clone, Args)]
pub struct InventorySelection {
    /// Inventory file, directory or script; repeat to combine several, read in order (default:
    /// the policy's `inventory`, else `inventory/` in the current directory).
    #[arg(short = 'i', long = "inventory", value_name = "FILE")]
    pub inventory: Vec<PathBuf>,

    /// Only hosts in groups these patterns select: globs, `a:b` or `a,b` (either), `&a` (and
    /// in a), `!a` (not in a), e.g. `web:&dc1:!canary`.
    #[arg(long, value_name = "PATTERNS", value_delimiter = ',')]
    pub limit_groups: Vec<String>,

    /// Only hosts these patterns select, by name: globs with `:`, `&`, `!` as for
    /// --limit-groups (`web*:!web2`); `@FILE` reads names from a retry file.
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

    #[command(flatten)]
    pub extra_vars: ExtraVars,

    #[command(flatten)]
    pub output: JsonOutput,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The policy file.
    pub policy: PathBuf,

    #[command(flatten)]
    pub selection: InventorySelection,

    #[command(flatten)]
    pub extra_vars: ExtraVars,

    #[command(flatten)]
    pub output: JsonOutput,
}

/// `--apply` or `--check`: exactly one is required, unless a listing (`--list-hosts`,
/// `--list-tasks`) is asked for instead (checked in `main`, since a clap group cannot say
/// "required unless").
#[derive(Debug, Clone, Copy, Args)]
#[group(required = false, multiple = false)]
pub struct RunMode {
    /// Change hosts to match the policy.
    #[arg(long)]
    pub apply: bool,

    /// Show what would change; change nothing (hooks are reported, not run).
    #[arg(long)]
    pub check: bool,
}

impl RunMode {
    pub fn given(&self) -> bool {
        self.apply || self.check
    }
}

/// Which resources `mop push` and `mop local` run (`--tags`, `--skip-tags`, `--start-at`),
/// and the listings that show the choice without contacting any host.
#[derive(Debug, Clone, Args)]
pub struct TaskArgs {
    /// Only resources with one of these tags (comma-separated globs; a resource has its own
    /// tags and its role's). `always` resources run anyway, `never` ones only when named.
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    pub tags: Vec<String>,

    /// Skip resources with any of these tags (comma-separated globs; beats --tags and `always`).
    #[arg(long, value_name = "TAGS", value_delimiter = ',')]
    pub skip_tags: Vec<String>,

    /// Start at this resource (its `name`, or `TYPE MAIN-ARGUMENT` as in `file /etc/motd`):
    /// earlier roles, and earlier resources of its role, are skipped.
    #[arg(long, value_name = "NAME")]
    pub start_at: Option<String>,

    /// Print the hosts each role would touch, and exit without contacting any host.
    #[arg(long)]
    pub list_hosts: bool,

    /// Print the resources each role would run (after tags, limits and --start-at), and exit
    /// without contacting any host.
    #[arg(long)]
    pub list_tasks: bool,
}

impl TaskArgs {
    /// The library's view of the selection flags.
    pub fn filter(&self) -> mop_push::tasks::TaskFilter {
        mop_push::tasks::TaskFilter {
            tags: self.tags.clone(),
            skip_tags: self.skip_tags.clone(),
            start_at: self.start_at.clone(),
        }
    }

    /// The listing asked for, if any.
    pub fn listing(&self) -> Option<mop_push::tasks::Listing> {
        (self.list_hosts || self.list_tasks).then_some(mop_push::tasks::Listing {
            hosts: self.list_hosts,
            tasks: self.list_tasks,
        })
    }
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The policy file.
    pub policy: PathBuf,

    #[command(flatten)]
    pub mode: RunMode,

    #[command(flatten)]
    pub selection: InventorySelection,

    #[command(flatten)]
    pub tasks: TaskArgs,

    /// Override every role's `serial`: hosts per batch.
    #[arg(long, value_name = "N")]
    pub serial: Option<std::num::NonZeroUsize>,

    #[command(flatten)]
    pub forks: Forks,

    /// Keep each host's SSH connection open for DURATION of idle time afterwards (`90s`, `10m`,
    /// `1h`), so the next mop command to it skips the login (the agents still stop and their
    /// work directories are removed). See `mop connections`.
    #[arg(long, value_name = "DURATION", value_parser = persist_duration)]
    pub persist: Option<std::time::Duration>,

    /// Fail a host that takes longer than this for one role (connection included).
    #[arg(long, value_name = "SECS")]
    pub host_timeout: Option<u64>,

    #[command(flatten)]
    pub connect_timeout: ConnectTimeout,

    /// Leave nothing on the hosts: upload the agent for this run only instead of caching it
    /// (same as `mop_agent_cache = false`).
    #[arg(long)]
    pub no_agent_cache: bool,

    #[command(flatten)]
    pub extra_vars: ExtraVars,

    #[command(flatten)]
    pub report: ReportArgs,
}

#[derive(Debug, Args)]
pub struct LocalArgs {
    /// The policy file.
    pub policy: PathBuf,

    #[command(flatten)]
    pub mode: RunMode,

    #[command(flatten)]
    pub tasks: TaskArgs,

    #[command(flatten)]
    pub extra_vars: ExtraVars,

    #[command(flatten)]
    pub report: ReportArgs,
}

/// Which hosts an ad hoc command (`mop run`, `mop upload`, `mop download`) acts on, besides
/// the positional TARGET pattern.
#[derive(Debug, Clone, Args)]
pub struct AdhocSelection {
    /// Inventory file, directory or script; repeat to combine several, read in order (default:
    /// `inventory/` in the current directory).
    #[arg(short = 'i', long = "inventory", value_name = "FILE")]
    pub inventory: Vec<PathBuf>,

    /// Hosts not in an inventory, instead of TARGET: `[user@]host[:port]`, comma-separated.
    #[arg(long, value_name = "HOSTS", value_delimiter = ',')]
    pub hosts: Vec<String>,

    /// Private key for the --hosts hosts.
    #[arg(long, value_name = "FILE", requires = "hosts", value_parser = ssh_config_path)]
    pub ssh_key: Option<PathBuf>,

    /// known_hosts file for the --hosts hosts (default: your own).
    #[arg(long, value_name = "FILE", requires = "hosts", value_parser = ssh_config_path)]
    pub known_hosts_file: Option<PathBuf>,

    #[command(flatten)]
    pub extra_vars: ExtraVars,

    #[command(flatten)]
    pub forks: Forks,

    /// Keep each host's SSH connection open for DURATION of idle time afterwards (`90s`, `10m`,
    /// `1h`), so the next mop command to it skips the login. See `mop connections`.
    #[arg(long, value_name = "DURATION", value_parser = persist_duration)]
    pub persist: Option<std::time::Duration>,

    #[command(flatten)]
    pub connect_timeout: ConnectTimeout,
}

impl InventorySelection {
    pub fn limits(&self) -> mop_push::load::Limits {
        mop_push::load::Limits {
            groups: self.limit_groups.clone(),
            hosts: self.limit_hosts.clone(),
        }
    }
}

impl AdhocSelection {
    /// How the command's pool connects (`--forks`, `--persist`, `--connect-timeout`).
    pub fn pool_flags(&self) -> mop_push::adhoc::PoolFlags {
        mop_push::adhoc::PoolFlags {
            forks: self.forks.forks,
            persist: self.persist,
            connect_timeout: self.connect_timeout.connect_timeout,
        }
    }

    /// The library's view of these flags, with TARGET.
    pub fn request<'a>(&'a self, target: Option<&'a str>) -> mop_push::load::TargetRequest<'a> {
        mop_push::load::TargetRequest {
            target,
            inventory: &self.inventory,
            hosts: &self.hosts,
            ssh_key: self.ssh_key.as_deref(),
            known_hosts_file: self.known_hosts_file.as_deref(),
            extra_vars: &self.extra_vars.extra_vars,
        }
    }
}

pub const ADHOC_AFTER_HELP: &str = "\
TARGET is an inventory pattern expression: globs, each matching group names (all hosts of a
matching group) or host names, joined by `:` or `,` (either), `&` (and) and `!` (not), e.g.
`web`, `web,db*`, `host[12]`, `web:!web2`, `db*:&dc1`.

Exit status:
  0    every host succeeded (for `mop run`: every command exited 0)
  1    some host failed, was unreachable, timed out or exited non-zero
  2    invalid input or usage (bad pattern, unknown host, TARGET matches nothing): nothing was contacted
  130  interrupted (Ctrl-C): remote commands stopped, connections closed

Docs: docs/reference/adhoc.md";

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Inventory pattern expression (groups/hosts globs); omit with --hosts.
    #[arg(value_name = "TARGET")]
    pub target: Option<String>,

    #[command(flatten)]
    pub selection: AdhocSelection,

    /// `--json`: one object per host (`dir`, `removed`, `kept`, `removed_dir`, `error`).
    #[command(flatten)]
    pub output: JsonOutput,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Inventory pattern expression (groups/hosts globs); omit with --hosts or --local.
    #[arg(value_name = "TARGET")]
    pub target: Option<String>,

    /// The command (after `--`); a minijinja template with each host's variables.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,

    #[command(flatten)]
    pub selection: AdhocSelection,

    /// One host after another instead of in parallel.
    #[arg(long)]
    pub serial: bool,

    /// Print lines as they arrive, prefixed with the host, instead of grouped per host.
    #[arg(long, conflicts_with = "json")]
    pub stream: bool,

    #[command(flatten)]
    pub output: JsonOutput,

    /// Run the command under sudo (the host's `mop_sudo_password` is fed to sudo, never shown).
    #[arg(long)]
    pub sudo: bool,

    /// The user sudo runs the command as (default root).
    #[arg(long, value_name = "USER", requires = "sudo", value_parser = user_name)]
    pub sudo_as: Option<String>,

    /// Kill the remote command (its whole process group) after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,

    /// Allocate a terminal on the host (stdout and stderr then arrive merged).
    #[arg(long)]
    pub pty: bool,

    /// Set an environment variable for the command (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,

    /// Run on this machine, without SSH (same output shape; host `localhost`).
    #[arg(long, conflicts_with_all = ["target", "pty", "persist", "connect_timeout"])]
    pub local: bool,
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// `[TARGET] LOCAL REMOTE` (TARGET is omitted with --hosts).
    #[arg(value_name = "ARGS", num_args = 2..=3, required = true)]
    pub args: Vec<String>,

    #[command(flatten)]
    pub selection: AdhocSelection,

    /// Upload a directory and everything in it.
    #[arg(short, long)]
    pub recursive: bool,

    /// Octal mode of the uploaded files (default: the local file's mode).
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,

    /// Write the files as root (or --sudo-as USER).
    #[arg(long)]
    pub sudo: bool,

    /// The user sudo writes as (default root).
    #[arg(long, value_name = "USER", requires = "sudo", value_parser = user_name)]
    pub sudo_as: Option<String>,

    #[command(flatten)]
    pub output: JsonOutput,
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// `[TARGET] REMOTE LOCAL_DIR` (TARGET is omitted with --hosts).
    #[arg(value_name = "ARGS", num_args = 2..=3, required = true)]
    pub args: Vec<String>,

    #[command(flatten)]
    pub selection: AdhocSelection,

    /// Download a directory and everything in it.
    #[arg(short, long)]
    pub recursive: bool,

    /// Name files `LOCAL_DIR/<name>_<host>` instead of `LOCAL_DIR/<host>/<name>`.
    #[arg(long)]
    pub suffix: bool,

    /// Read the files as root, through sudo (the host's `mop_sudo_password` is fed to sudo):
    /// sudo copies them into a private directory under `/tmp`, removed afterwards.
    #[arg(long)]
    pub sudo: bool,

    #[command(flatten)]
    pub output: JsonOutput,
}

#[derive(Debug, Args)]
pub struct TransferArgs {
    /// `SRC_HOST:PATH`, an inventory host.
    #[arg(value_name = "SRC_HOST:PATH")]
    pub source: String,

    /// `DST_HOST:PATH`, an inventory host.
    #[arg(value_name = "DST_HOST:PATH")]
    pub destination: String,

    /// Inventory file, directory or script; repeat to combine several, read in order (default:
    /// `inventory/` in the current directory).
    #[arg(short = 'i', long = "inventory", value_name = "FILE")]
    pub inventory: Vec<PathBuf>,

    /// Keep both hosts' SSH connections open for DURATION of idle time afterwards (`90s`, `10m`,
    /// `1h`), so the next mop command to them skips the login. See `mop connections`.
    #[arg(long, value_name = "DURATION", value_parser = persist_duration)]
    pub persist: Option<std::time::Duration>,

    #[command(flatten)]
    pub connect_timeout: ConnectTimeout,

    /// Read the source and write the destination as root, through sudo on both hosts (their
    /// `mop_sudo_password` is fed to sudo); staging files live in private places under `/tmp`.
    #[arg(long)]
    pub sudo: bool,

    #[command(flatten)]
    pub output: JsonOutput,
}

pub const CONNECTIONS_AFTER_HELP: &str = "\
`--persist DURATION` on `mop run`, `upload`, `download`, `transfer` and `push` keeps each
host's SSH master connection open for DURATION of idle time (ssh's ControlPersist); every later
mop command to the same login (address, port, user, key, host key settings, via-chain) reuses
it, with or without --persist. Sockets live in a private directory: $MOP_CONTROL_DIR, else
$XDG_RUNTIME_DIR/mop, else /tmp/mop-<uid> (mode 0700; mop refuses one that is a symlink, owned
by someone else, or open to group or others).

Exit status:
  0  success
  1  a connection could not be closed
  2  invalid input or usage (unknown host, unsafe directory)

Docs: docs/reference/adhoc.md";

#[derive(Debug, Args)]
pub struct ConnectionsArgs {
    #[command(subcommand)]
    pub action: ConnectionsAction,
}

#[derive(Debug, Subcommand)]
pub enum ConnectionsAction {
    /// Show the open persistent connections: host, user, address, via, age, idle limit, master pid.
    #[command(after_help = CONNECTIONS_AFTER_HELP)]
    List {
        /// One JSON object per connection on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Close persistent connections (`ssh -O exit`): the named hosts' (all when none is named),
    /// and those that jump through them.
    #[command(after_help = CONNECTIONS_AFTER_HELP)]
    Close {
        /// Inventory names of the hosts, as `mop connections list` shows them.
        #[arg(value_name = "HOST")]
        hosts: Vec<String>,

        /// One JSON object per closed connection on stdout.
        #[arg(long)]
        json: bool,
    },
}
