//! Why a host could not be reached, prepared or cleaned up over SSH.
//!
//! Every message names the host (inventory name) and, for network errors, the address, and
//! carries a `hint:` line where there is something the operator can do. Messages never contain
//! a become or login password: nothing that reaches them ever held one, and remote output that
//! is quoted is passed through [`super::run_as::redact`] first when a password was in play.

use std::path::PathBuf;

/// A failure of the SSH transport for one host (or of the run's setup).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    #[error("invalid ssh settings for host {host}: {reason}")]
    InvalidHost { host: String, reason: String },

    #[error("host {host} is not part of this ssh run")]
    UnknownHost { host: String },

    #[error("cannot prepare the ssh run directory `{path}`: {detail}")]
    RunDir { path: PathBuf, detail: String },

    #[error("ssh rejects the run's configuration `{path}`: {detail}\n  hint: mop needs an OpenSSH client that knows `Match final` (tested with 9.2); check that `ssh -G somehost` works with your own ~/.ssh/config")]
    SshConfig { path: PathBuf, detail: String },

    #[error("cannot use the agent binary `{path}`: {detail}\n  hint: build the static agent with `scripts/build-agent` (or the dev agent with `cargo build -p mop-agent`)")]
    AgentBinary { path: PathBuf, detail: String },

    #[error("{host} ({address}) is unreachable: {detail}")]
    Unreachable {
        host: String,
        address: String,
        detail: String,
    },

    #[error("{host} ({address}) did not complete the ssh login within {seconds} s\n  hint: check that the host is up, or raise its connect timeout (`mop_connect_timeout`, `--connect-timeout`)")]
    Timeout {
        host: String,
        address: String,
        seconds: u64,
    },

    #[error("authentication to {host} ({address}) failed: {detail}\n  hint: check the user, the identity file, your ssh-agent and the host's authorized_keys, or give the host's login password (mop_ssh_password)")]
    AuthFailed {
        host: String,
        address: String,
        detail: String,
    },

    #[error("password login to {host} ({address}) as {user} failed: permission denied (password)\n  hint: check the host's login password (mop_ssh_password) and user (mop_ssh_username); ssh tried it once and mop does not retry it")]
    PasswordRejected {
        host: String,
        address: String,
        /// The login user, as ssh named it.
        user: String,
    },

    #[error("authentication to {host} ({address}) failed before its password was asked for: {detail}\n  hint: the host does not offer password logins to this user (sshd's PasswordAuthentication or AuthenticationMethods); use a key instead (mop_ssh_key)")]
    PasswordNotAsked {
        host: String,
        address: String,
        detail: String,
    },

    #[error("host key for {host} ({address}) does not match known_hosts\n  hint: if the host was reinstalled, remove the old key with `{remove_command}` and connect again; otherwise someone may be intercepting the connection")]
    HostKeyChanged {
        host: String,
        address: String,
        remove_command: String,
    },

    #[error("host key for {host} ({address}) is not in known_hosts and host key checking is strict\n  hint: verify the host's fingerprint and add it (e.g. `ssh-keyscan{port_flag} {bare_address} >> {known_hosts}`), or set the host's key checking to accept-new")]
    HostKeyUnknown {
        host: String,
        address: String,
        port_flag: String,
        /// The address, shell-quoted (the hint is a command to copy).
        bare_address: String,
        /// The file to add it to, shell-quoted, as the user would type it.
        known_hosts: String,
    },

    #[error("cannot reach {host} through its jump host {via}: {source}")]
    JumpFailed {
        host: String,
        via: String,
        source: Box<SshError>,
    },

    #[error("ssh to {host} ({address}) failed: {detail}")]
    Connect {
        host: String,
        address: String,
        detail: String,
    },

    #[error(
        "{host} runs {remote}, and this mop carries agents for {carried} only\n  hint: {hint}"
    )]
    UnsupportedArch {
        host: String,
        /// `uname -s` and `uname -m` as the host reported them (escaped if odd).
        remote: String,
        /// The platforms of the agents mop carries, e.g. `Linux x86_64`.
        carried: String,
        hint: String,
    },

    #[error("user {login_user} may not use sudo on {host} (no sudoers rule for it on that host)\n  hint: add a sudoers rule for {login_user} on {host}, or log in as a user that has one (mop_user)")]
    SudoNoRights { host: String, login_user: String },

    #[error("sudo on {host} needs a password for user {login_user}\n  hint: set the host's sudo password (mop_sudo_password), or allow the commands without a password (NOPASSWD) in sudoers")]
    SudoNeedsPassword { host: String, login_user: String },

    #[error("sudo on {host} rejected the sudo password of user {login_user}\n  hint: check the host's sudo password (mop_sudo_password)")]
    SudoWrongPassword { host: String, login_user: String },

    #[error("sudo on {host} refused to run the agent as {run_as}: {detail}\n  hint: check the sudoers rules of user {login_user} on that host")]
    SudoRefused {
        host: String,
        login_user: String,
        run_as: String,
        detail: String,
    },

    #[error("user {} may not use {} on {} to become {}\n  hint: {}", .0.login_user, .0.method, .0.host, .0.run_as, .0.hint)]
    BecomeNoRights(Box<BecomeFailure>),

    #[error("{} on {} needs a password for user {} to become {}\n  hint: {}", .0.method, .0.host, .0.login_user, .0.run_as, .0.hint)]
    BecomeNeedsPassword(Box<BecomeFailure>),

    #[error("{} on {} rejected the password for becoming {} (login user {}); mop tried it once and does not retry\n  hint: {}", .0.method, .0.host, .0.run_as, .0.login_user, .0.hint)]
    BecomeWrongPassword(Box<BecomeFailure>),

    #[error("{} on {} refused to run the agent as {}: {}\n  hint: {}", .0.method, .0.host, .0.run_as, .0.detail, .0.hint)]
    BecomeRefused(Box<BecomeFailure>),

    #[error("cannot become another user with {method} on {host}: {reason}\n  hint: {hint}")]
    BecomeUnsupported {
        host: String,
        method: String,
        reason: String,
        hint: String,
    },

    #[error("user {run_as} on {host} cannot reach the agent directory `{agent_dir}`\n  hint: set the host's agent directory (mop_agent_dir) to a directory that {login_user} owns and {run_as} can traverse, e.g. `/var/tmp/mop-{login_user}`")]
    AgentDirUnreachable {
        host: String,
        login_user: String,
        run_as: String,
        agent_dir: String,
    },

    #[error("cannot prepare the agent on {host}: {detail}")]
    Bootstrap { host: String, detail: String },

    #[error("cannot upload the agent to {host} ({address}) as `{path}`: {detail}")]
    UploadFailed {
        host: String,
        address: String,
        path: String,
        detail: String,
    },

    #[error("cannot start the agent on {host}: {detail}")]
    Spawn { host: String, detail: String },

    #[error("cleanup on {host} failed: {detail}\n  hint: remove `{work_dir}` on the host by hand")]
    Cleanup {
        host: String,
        work_dir: String,
        detail: String,
    },

    #[error("closing the ssh connection to {host} failed: {detail}")]
    Close { host: String, detail: String },
}

impl SshError {
    /// The inventory name of the host this error is about, if it is about one host.
    pub fn host(&self) -> Option<&str> {
        match self {
            SshError::RunDir { .. } | SshError::SshConfig { .. } | SshError::AgentBinary { .. } => {
                None
            }
            SshError::InvalidHost { host, .. }
            | SshError::UnknownHost { host }
            | SshError::Unreachable { host, .. }
            | SshError::Timeout { host, .. }
            | SshError::AuthFailed { host, .. }
            | SshError::PasswordRejected { host, .. }
            | SshError::PasswordNotAsked { host, .. }
            | SshError::HostKeyChanged { host, .. }
            | SshError::HostKeyUnknown { host, .. }
            | SshError::JumpFailed { host, .. }
            | SshError::Connect { host, .. }
            | SshError::UnsupportedArch { host, .. }
            | SshError::SudoNoRights { host, .. }
            | SshError::SudoNeedsPassword { host, .. }
            | SshError::SudoWrongPassword { host, .. }
            | SshError::SudoRefused { host, .. }
            | SshError::BecomeUnsupported { host, .. }
            | SshError::AgentDirUnreachable { host, .. }
            | SshError::Bootstrap { host, .. }
            | SshError::UploadFailed { host, .. }
            | SshError::Spawn { host, .. }
            | SshError::Cleanup { host, .. }
            | SshError::Close { host, .. } => Some(host),
            SshError::BecomeNoRights(failure)
            | SshError::BecomeNeedsPassword(failure)
            | SshError::BecomeWrongPassword(failure)
            | SshError::BecomeRefused(failure) => Some(&failure.host),
        }
    }
}

/// What a become program (doas, su) refused, for the `Become*` errors; boxed, so `SshError`
/// stays small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BecomeFailure {
    /// `doas` or `su`.
    pub method: String,
    pub host: String,
    pub login_user: String,
    /// The user it was asked to become.
    pub run_as: String,
    /// What it said, when nothing more specific fits (password redacted); else empty.
    pub detail: String,
    pub hint: String,
}

/// A `--persist` value that is not a duration mop accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{text}`: write e.g. `90s`, `10m`, `1h` or `1h30m`")]
pub struct PersistDurationError {
    pub text: String,
}

/// An agent directory (`mop_agent_dir`) mop refuses to work in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentDirError {
    #[error("the agent directory is empty or contains control characters")]
    Unprintable,
    #[error("the agent directory `{dir}` is a home or root directory itself; use a subdirectory such as `$HOME/.mop`")]
    HomeOrRoot { dir: String },
}

/// Why a file cannot be used as an agent: its ELF header names no platform mop can run it on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentFileError {
    #[error("not an ELF executable (the agent must be built for the hosts, e.g. Linux)")]
    NotElf,
    #[error("unknown ELF byte order {0}")]
    ByteOrder(u8),
    #[error("unsupported ELF OS/ABI {0}")]
    OsAbi(u8),
    #[error("unsupported ELF machine {machine} (class {class})")]
    Machine { machine: u16, class: u8 },
}

/// A failure in the private directory of persisted masters (`persist.rs`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlDirError {
    #[error("cannot encode metadata: {0}")]
    Encode(String),
    #[error("cannot write metadata: {0}")]
    WriteMetadata(String),
    #[error("cannot open `{}`: {detail}", path.display())]
    OpenLock { path: PathBuf, detail: String },
    #[error("another mop run holds `{}` (it is starting the same connection)", path.display())]
    LockBusy { path: PathBuf },
}

/// `ssh -O exit` did not stop a master.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForceExitError {
    #[error("cannot run ssh -O exit: {0}")]
    Spawn(String),
    /// What ssh printed when it refused.
    #[error("{0}")]
    Refused(String),
}

/// A channel over a host's master did not work (`exec.rs`, `sftp.rs`): callers add the host
/// and what they were doing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChannelError {
    /// The exec channel could not be opened.
    #[error("cannot run a command: {0}")]
    ExecStart(String),
    /// The exec channel broke before its exit status arrived.
    #[error("the command failed: {0}")]
    ExecWait(String),
    /// A streamed command could not be started.
    #[error("cannot run the command: {0}")]
    Spawn(String),
    /// The `ssh -tt` client could not be started.
    #[error("cannot run ssh: {0}")]
    SpawnSsh(String),
    #[error("not in the connection pool")]
    NotInPool,
    /// A started command was lost before its exit status arrived (what openssh said).
    #[error("{0}")]
    Lost(String),
    /// An SFTP request (or the copy over it) failed: what the server or the stream said.
    #[error("{0}")]
    Sftp(String),
    /// A local file of a download could not be written (`what` is e.g. "cannot create").
    #[error("{what} `{}`: {detail}", path.display())]
    Local {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
}
