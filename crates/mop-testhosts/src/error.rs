//! The one error type of the library: every variant names the host, file or command involved.

use std::path::PathBuf;

/// Everything that can go wrong while preparing users, starting or stopping test hosts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The process is not root; users, sudoers, sshd and namespaces all need it.
    #[error(
        "mop-testhosts needs root to create the test users, write sudoers, start sshd and network namespaces (running as uid {uid})\n\
         hint: run the tests as root, e.g. `sudo -E env \"PATH=$PATH\" cargo test -p mop-testhosts`"
    )]
    NotRoot {
        /// The effective uid we run as.
        uid: u32,
    },

    /// A system tool (sshd, socat, ip, ...) is not installed.
    #[error(
        "`{tool}` not found in PATH, /usr/sbin, /usr/bin, /sbin or /bin\n\
         hint: run `scripts/install-test-deps` (installs openssh-server, openssh-client, sudo, socat, iproute2)"
    )]
    ToolMissing {
        /// The executable name.
        tool: String,
    },

    /// A filesystem operation failed.
    #[error("cannot {action} `{path}`: {error}")]
    Io {
        /// What we tried to do, e.g. "write".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },

    /// A helper command could not be run or exited with a failure.
    #[error("`{command}` failed ({status}){}", format_stderr(.stderr))]
    CommandFailed {
        /// The command line, for the reader.
        command: String,
        /// Exit status or spawn error.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },

    /// A daemon did not start listening before the deadline.
    #[error(
        "{daemon} for host `{host}` did not accept connections on {addr}:{port} within {waited_ms} ms\n\
         log `{log}`:\n{log_tail}"
    )]
    NotReady {
        /// "sshd" or "socat bridge".
        daemon: &'static str,
        /// The test host name.
        host: String,
        /// Listen address.
        addr: std::net::Ipv4Addr,
        /// Listen port.
        port: u16,
        /// How long we waited.
        waited_ms: u64,
        /// Its log file.
        log: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },

    /// A daemon exited while starting (bad config, port taken too often, ...).
    #[error(
        "{daemon} for host `{host}` exited during startup ({status})\n\
         log `{log}`:\n{log_tail}"
    )]
    ExitedEarly {
        /// "sshd" or "socat bridge".
        daemon: &'static str,
        /// The test host name.
        host: String,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },

    /// A daemon that was running has exited (checked by `TestHosts::check_running`).
    #[error("{daemon} for host `{host}` has exited ({status})\nlog `{log}`:\n{log_tail}")]
    Exited {
        /// "sshd" or "socat bridge".
        daemon: &'static str,
        /// The test host name.
        host: String,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },

    /// The caller asked for a layout that cannot be built.
    #[error("invalid test host setup: {reason}{}", format_hint(.hint))]
    InvalidLayout {
        /// What is wrong.
        reason: String,
        /// How to fix it, if we know.
        hint: Option<String>,
    },

    /// An existing test user does not look like ours.
    #[error("test user `{user}` exists but {problem}\nhint: remove it with `userdel -r {user}` and let mop-testhosts recreate it")]
    UserMismatch {
        /// The user name.
        user: String,
        /// What differs.
        problem: String,
    },

    /// Stopping hosts left something behind; every problem is listed.
    #[error("teardown incomplete:\n{}", .problems.join("\n"))]
    Teardown {
        /// One line per process, namespace or directory that could not be cleaned.
        problems: Vec<String>,
    },
}

fn format_stderr(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

fn format_hint(hint: &Option<String>) -> String {
    match hint {
        Some(hint) => format!("\nhint: {hint}"),
        None => String::new(),
    }
}

impl Error {
    pub(crate) fn io(action: &'static str, path: &std::path::Path, error: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.to_path_buf(),
            error,
        }
    }

    pub(crate) fn layout(reason: impl Into<String>, hint: Option<&str>) -> Self {
        Error::InvalidLayout {
            reason: reason.into(),
            hint: hint.map(str::to_owned),
        }
    }
}
