//! One running test host as tests see it, with helpers to reach it independently of mop.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// A running sshd that tests (and mop) can log in to.
///
/// `addr`/`port` are what a client connects to. For hosts behind the bastion they are addresses
/// inside the network namespace, reachable only through `via`; for the bastion itself they are
/// the root-namespace end of its bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestHost {
    /// Inventory name, also the `Host` alias in the run's `ssh_config`.
    pub name: String,
    /// Inventory group.
    pub group: String,
    /// Address a client connects to (see the type's docs).
    pub addr: Ipv4Addr,
    /// Port a client connects to.
    pub port: u16,
    /// The user mop logs in as ([`crate::TEST_USER`]).
    pub user: String,
    /// The jump host, by name, for hosts inside the namespace.
    pub via: Option<String>,
    /// True when `addr:port` is inside the network namespace (reachable only through `via`).
    pub in_namespace: bool,
    /// This host's sshd log (`LogLevel VERBOSE`).
    pub log_path: PathBuf,
    pub(crate) ssh_config: PathBuf,
}

impl TestHost {
    /// `ssh` to this host as [`crate::TEST_USER`] running `remote_command`: batch mode, strict host
    /// key checking against the run's `known_hosts`, jump hosts from the run's `ssh_config`.
    pub fn ssh_command(&self, remote_command: &str) -> Command {
        self.ssh_command_as(&self.user, remote_command)
    }

    /// Like [`TestHost::ssh_command`] but logging in as `user` on the final host (jump hosts
    /// still use [`crate::TEST_USER`]).
    pub fn ssh_command_as(&self, user: &str, remote_command: &str) -> Command {
        let mut command = Command::new("ssh");
        command
            .arg("-F")
            .arg(&self.ssh_config)
            .arg("-l")
            .arg(user)
            .arg("--")
            .arg(&self.name)
            .arg(remote_command);
        command
    }

    /// `sftp -b BATCH_FILE` to this host as [`crate::TEST_USER`].
    pub fn sftp_batch_command(&self, batch_file: &Path) -> Command {
        let mut command = Command::new("sftp");
        command
            .arg("-F")
            .arg(&self.ssh_config)
            .arg("-b")
            .arg(batch_file)
            .arg("--")
            .arg(&self.name);
        command
    }

    /// The full sshd log of this host.
    pub fn log(&self) -> Result<String, Error> {
        std::fs::read_to_string(&self.log_path)
            .map_err(|error| Error::io("read sshd log", &self.log_path, error))
    }

    /// How many logins sshd accepted so far ("Accepted publickey" lines in its log), so tests can
    /// check connection reuse.
    pub fn accepted_connections(&self) -> Result<usize, Error> {
        Ok(count_accepted_logins(&self.log()?))
    }
}

pub(crate) fn count_accepted_logins(log: &str) -> usize {
    log.lines()
        .filter(|line| {
            line.starts_with("Accepted publickey for ")
                || line.starts_with("Accepted password for ")
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_accepted_logins() {
        let log = "Server listening on 127.16.0.1 port 4000.\n\
                   Accepted key ED25519 SHA256:x found at /tmp/a/authorized_keys:1\n\
                   Postponed publickey for moptest from 127.0.0.1 port 1 ssh2 [preauth]\n\
                   Accepted publickey for moptest from 127.0.0.1 port 1 ssh2: ED25519 SHA256:x\n\
                   Failed publickey for moptest from 127.0.0.1 port 2 ssh2: ED25519 SHA256:y\n\
                   Accepted publickey for moptestpw from 127.0.0.1 port 3 ssh2: ED25519 SHA256:x\n";
        assert_eq!(count_accepted_logins(log), 2);
        assert_eq!(count_accepted_logins(""), 0);
    }

    #[test]
    fn ssh_command_puts_the_remote_command_after_the_alias() {
        let host = TestHost {
            name: "host1".to_owned(),
            group: "web".to_owned(),
            addr: Ipv4Addr::new(127, 16, 0, 1),
            port: 4000,
            user: "moptest".to_owned(),
            via: None,
            in_namespace: false,
            log_path: PathBuf::from("/tmp/x/host1.log"),
            ssh_config: PathBuf::from("/tmp/x/ssh_config"),
        };
        let command = host.ssh_command_as("moptestpw", "id -un");
        let args: Vec<_> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-F",
                "/tmp/x/ssh_config",
                "-l",
                "moptestpw",
                "--",
                "host1",
                "id -un"
            ]
        );
    }
}
