//! Bringing a planned layout up: keys, ports, sshd and socat processes, readiness checks.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::layout::{Placement, PlannedHost};
use crate::netns::Namespace;
use crate::process::{kill_process_trees, ManagedProcess};
use crate::render::{sshd_config, SshdSettings};
use crate::system::{find_tool, log_tail};
use crate::Error;

/// Absolute paths of the programs a run needs.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pub(crate) sshd: PathBuf,
    pub(crate) ssh_keygen: PathBuf,
    pub(crate) socat: Option<PathBuf>,
}

impl Tools {
    pub(crate) fn find(need_socat: bool) -> Result<Tools, Error> {
        Ok(Tools {
            sshd: find_tool("sshd")?,
            ssh_keygen: find_tool("ssh-keygen")?,
            socat: if need_socat {
                Some(find_tool("socat")?)
            } else {
                None
            },
        })
    }
}

/// Everything a run owns that must go away at the end; torn down on drop, so an error half-way
/// through startup or a panicking test still cleans up.
#[derive(Debug, Default)]
pub(crate) struct Resources {
    pub(crate) processes: Vec<ManagedProcess>,
    pub(crate) namespace: Option<Namespace>,
    pub(crate) dir: Option<tempfile::TempDir>,
}

impl Resources {
    /// Kills every process tree, deletes the namespace, removes the directory. Idempotent.
    pub(crate) fn teardown(&mut self) -> Vec<String> {
        let mut problems = kill_process_trees(&mut self.processes);
        self.processes.clear();
        if let Some(namespace) = self.namespace.take() {
            if let Err(error) = namespace.delete() {
                problems.push(format!(
                    "cannot delete network namespace `{}`: {error}",
                    namespace.name
                ));
            }
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if let Err(error) = dir.close() {
                problems.push(format!("cannot remove `{}`: {error}", path.display()));
            }
        }
        problems
    }
}

impl Drop for Resources {
    fn drop(&mut self) {
        for problem in self.teardown() {
            eprintln!("mop-testhosts: teardown: {problem}");
        }
    }
}

/// Generates ed25519 key pairs in parallel: `(private key path, comment)`.
pub(crate) fn generate_keys(ssh_keygen: &Path, keys: &[(PathBuf, String)]) -> Result<(), Error> {
    let mut children: Vec<(String, std::io::Result<Child>)> = Vec::new();
    for (path, comment) in keys {
        let mut command = Command::new(ssh_keygen);
        command
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                comment.as_str(),
                "-f",
            ])
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        children.push((format!("{command:?}"), command.spawn()));
    }
    let mut first_error = None;
    for (command, child) in children {
        let result = child.and_then(Child::wait_with_output);
        let problem = match result {
            Ok(output) if output.status.success() => None,
            Ok(output) => Some((
                output.status.to_string(),
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            )),
            Err(error) => Some((format!("cannot run: {error}"), String::new())),
        };
        if let (Some((status, stderr)), None) = (problem, &first_error) {
            first_error = Some(Error::CommandFailed {
                command,
                status,
                stderr,
            });
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Reserves a free port on `addr` in the root namespace; the listener is dropped just before
/// the daemon binds, which leaves a tiny race that [`wait_for_sshds`] absorbs by retrying.
pub(crate) fn reserve_port(addr: Ipv4Addr) -> Result<TcpListener, Error> {
    TcpListener::bind(SocketAddrV4::new(addr, 0)).map_err(|error| Error::CommandFailed {
        command: format!("bind {addr}:0"),
        status: format!("cannot reserve a port: {error}"),
        stderr: String::new(),
    })
}

pub(crate) fn port_of(listener: &TcpListener) -> Result<u16, Error> {
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|error| Error::CommandFailed {
            command: "getsockname".to_owned(),
            status: error.to_string(),
            stderr: String::new(),
        })
}

/// Whether this sshd understands `PerSourcePenalties` (OpenSSH 9.8 and later).
fn sshd_has_penalties(sshd: &Path) -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER.get_or_init(|| {
        let output = Command::new(sshd).arg("-V").stdin(Stdio::null()).output();
        let text = match output {
            Ok(output) => format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(_) => return false,
        };
        openssh_version(&text).is_some_and(|version| version >= (9, 8))
    })
}

/// Parses "OpenSSH_9.2p1 ..." into (9, 2).
pub(crate) fn openssh_version(text: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find("OpenSSH_")? + "OpenSSH_".len()..];
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// One sshd to start: where its files are and what it listens on.
#[derive(Debug, Clone)]
pub(crate) struct SshdSpec {
    pub(crate) planned: PlannedHost,
    pub(crate) port: u16,
    pub(crate) host_dir: PathBuf,
    pub(crate) authorized_keys: PathBuf,
    pub(crate) password_authentication: bool,
    /// `Match User` [`crate::TEST_SUDO_PASSWORD_USER`]: `PubkeyAuthentication no`.
    pub(crate) password_only: bool,
    /// Start sshd under `setarch i686` (see [`crate::TestHostsBuilder::linux32`]).
    pub(crate) linux32: bool,
}

impl SshdSpec {
    pub(crate) fn host_key(&self) -> PathBuf {
        self.host_dir.join("host_key")
    }
    pub(crate) fn log_path(&self) -> PathBuf {
        self.host_dir.join("sshd.log")
    }
    fn in_namespace(&self) -> bool {
        !matches!(self.planned.placement, Placement::Root)
    }

    /// Writes the config for the current port and starts `sshd -D -e -f CONFIG`.
    pub(crate) fn spawn(
        &self,
        tools: &Tools,
        namespace: Option<&Namespace>,
    ) -> Result<ManagedProcess, Error> {
        let config_path = self.host_dir.join("sshd_config");
        let settings = SshdSettings {
            host: &self.planned.name,
            listen_addr: self.planned.listen_addr,
            port: self.port,
            host_key: &self.host_key(),
            pid_file: &self.host_dir.join("sshd.pid"),
            authorized_keys: &self.authorized_keys,
            password_authentication: self.password_authentication,
            password_only: self.password_only,
            disable_penalties: sshd_has_penalties(&tools.sshd),
        };
        std::fs::write(&config_path, sshd_config(&settings))
            .map_err(|error| Error::io("write", &config_path, error))?;
        let mut command = match (self.in_namespace(), namespace) {
            (true, Some(namespace)) => namespace.command(&tools.sshd),
            _ if self.linux32 => {
                // setarch execs sshd in place: the pid stays the one this harness manages.
                let mut command = Command::new("setarch");
                command.arg("i686").arg(&tools.sshd);
                command
            }
            _ => Command::new(&tools.sshd),
        };
        command.arg("-D").arg("-e").arg("-f").arg(&config_path);
        ManagedProcess::spawn("sshd", &self.planned.name, &self.log_path(), command)
    }
}

/// What proves a daemon is ready.
enum Probe {
    /// An SSH banner arrives over TCP from the root namespace.
    Banner(SocketAddrV4),
    /// sshd logged that it listens (for addresses we cannot reach from here).
    LogLine(String),
}

fn banner_arrives(target: SocketAddrV4) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&target.into(), Duration::from_millis(200))
    else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .is_err()
    {
        return false;
    }
    let mut received = Vec::new();
    let mut buffer = [0u8; 64];
    while received.len() < 4 {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return false,
            Ok(count) => received.extend_from_slice(&buffer[..count]),
        }
    }
    received.starts_with(b"SSH-")
}

fn probe_ready(probe: &Probe, log: &Path) -> bool {
    match probe {
        Probe::Banner(target) => banner_arrives(*target),
        Probe::LogLine(line) => {
            std::fs::read_to_string(log).is_ok_and(|text| text.contains(line.as_str()))
        }
    }
}

const BIND_RETRIES: u32 = 3;

/// Label of the socat inside the namespace, for messages.
const INNER: &str = "socat bridge (namespace side)";

/// Starts every sshd and waits until all of them listen. Root-namespace sshds that lose their
/// port to another process in the reservation race are restarted on a fresh port.
/// Returns the final specs (ports may have changed); `processes[i]` belongs to `specs[i]`.
pub(crate) fn start_sshds(
    mut specs: Vec<SshdSpec>,
    tools: &Tools,
    resources: &mut Resources,
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<SshdSpec>, Error> {
    let first = resources.processes.len();
    for spec in &specs {
        let process = spec.spawn(tools, resources.namespace.as_ref())?;
        resources.processes.push(process);
    }
    let mut waiting: Vec<usize> = (0..specs.len()).collect();
    let mut retries = vec![0u32; specs.len()];
    while !waiting.is_empty() {
        let mut still_waiting = Vec::new();
        for index in waiting {
            let spec = &specs[index];
            let process = &mut resources.processes[first + index];
            if let Some(status) = process.exit_status() {
                let log = spec.log_path();
                let lost_port = std::fs::read_to_string(&log)
                    .is_ok_and(|text| text.contains("Address already in use"));
                if lost_port && !spec.in_namespace() && retries[index] < BIND_RETRIES {
                    retries[index] += 1;
                    let listener = reserve_port(spec.planned.listen_addr)?;
                    specs[index].port = port_of(&listener)?;
                    drop(listener);
                    resources.processes[first + index] =
                        specs[index].spawn(tools, resources.namespace.as_ref())?;
                    still_waiting.push(index);
                    continue;
                }
                return Err(Error::ExitedEarly {
                    daemon: "sshd",
                    host: spec.planned.name.clone(),
                    status: status.to_string(),
                    log_tail: log_tail(&log, 15),
                    log,
                });
            }
            let probe = if spec.in_namespace() {
                Probe::LogLine(format!(
                    "Server listening on {} port {}.",
                    spec.planned.listen_addr, spec.port
                ))
            } else {
                Probe::Banner(SocketAddrV4::new(spec.planned.listen_addr, spec.port))
            };
            if !probe_ready(&probe, &spec.log_path()) {
                still_waiting.push(index);
            }
        }
        waiting = still_waiting;
        if let Some(index) = waiting.first() {
            if Instant::now() >= deadline {
                let spec = &specs[*index];
                let log = spec.log_path();
                return Err(Error::NotReady {
                    daemon: "sshd",
                    host: spec.planned.name.clone(),
                    addr: spec.planned.listen_addr,
                    port: spec.port,
                    waited_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    log_tail: log_tail(&log, 15),
                    log,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(specs)
}

/// The socat pair that lets the root namespace reach the bastion sshd inside the namespace:
/// root `TCP-LISTEN` -> unix socket on the shared filesystem -> namespace `TCP` connect.
#[derive(Debug, Clone)]
pub(crate) struct Bridge {
    pub(crate) host: String,
    pub(crate) socket: PathBuf,
    pub(crate) bastion_addr: Ipv4Addr,
    pub(crate) bastion_port: u16,
    pub(crate) public_addr: Ipv4Addr,
    pub(crate) public_port: u16,
    pub(crate) log_dir: PathBuf,
}

impl Bridge {
    /// Starts both socat processes and waits for the bastion's banner through them.
    /// Returns the final public port.
    pub(crate) fn start(
        mut self,
        tools: &Tools,
        resources: &mut Resources,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<u16, Error> {
        let socat = tools
            .socat
            .as_deref()
            .expect("socat is looked up for bastion layouts");
        let namespace = resources
            .namespace
            .as_ref()
            .expect("the namespace exists before the bridge starts");
        let inner_log = self.log_dir.join("socat-namespace.log");
        let mut inner = namespace.command(socat);
        inner.arg(format!(
            "UNIX-LISTEN:{},fork,unlink-early",
            self.socket.display()
        ));
        inner.arg(format!("TCP:{}:{}", self.bastion_addr, self.bastion_port));
        let inner = ManagedProcess::spawn(INNER, &self.host, &inner_log, inner)?;
        resources.processes.push(inner);
        let inner_index = resources.processes.len() - 1;
        while !self.socket.exists() {
            self.check_alive(resources, inner_index)?;
            self.check_deadline(INNER, deadline, timeout, &inner_log)?;
            std::thread::sleep(Duration::from_millis(5));
        }

        let outer_log = self.log_dir.join("socat-root.log");
        let mut retries = 0;
        resources
            .processes
            .push(self.spawn_outer(socat, &outer_log)?);
        let outer_index = resources.processes.len() - 1;
        loop {
            self.check_alive(resources, inner_index)?;
            if let Some(status) = resources.processes[outer_index].exit_status() {
                let lost_port = std::fs::read_to_string(&outer_log)
                    .is_ok_and(|text| text.contains("Address already in use"));
                if !lost_port || retries >= BIND_RETRIES {
                    return Err(self.exited("socat bridge", status.to_string(), &outer_log));
                }
                retries += 1;
                let listener = reserve_port(self.public_addr)?;
                self.public_port = port_of(&listener)?;
                drop(listener);
                resources.processes[outer_index] = self.spawn_outer(socat, &outer_log)?;
            }
            if banner_arrives(SocketAddrV4::new(self.public_addr, self.public_port)) {
                return Ok(self.public_port);
            }
            self.check_deadline("socat bridge", deadline, timeout, &outer_log)?;
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn spawn_outer(&self, socat: &Path, log: &Path) -> Result<ManagedProcess, Error> {
        let mut outer = Command::new(socat);
        outer.arg(format!(
            "TCP-LISTEN:{},bind={},fork,reuseaddr",
            self.public_port, self.public_addr
        ));
        outer.arg(format!("UNIX-CONNECT:{}", self.socket.display()));
        ManagedProcess::spawn("socat bridge", &self.host, log, outer)
    }

    fn check_alive(&self, resources: &mut Resources, index: usize) -> Result<(), Error> {
        match resources.processes[index].exit_status() {
            Some(status) => {
                let process = &resources.processes[index];
                Err(self.exited(process.daemon, status.to_string(), &process.log))
            }
            None => Ok(()),
        }
    }

    fn exited(&self, daemon: &'static str, status: String, log: &Path) -> Error {
        Error::ExitedEarly {
            daemon,
            host: self.host.clone(),
            status,
            log: log.to_path_buf(),
            log_tail: log_tail(log, 15),
        }
    }

    fn check_deadline(
        &self,
        daemon: &'static str,
        deadline: Instant,
        timeout: Duration,
        log: &Path,
    ) -> Result<(), Error> {
        if Instant::now() < deadline {
            return Ok(());
        }
        Err(Error::NotReady {
            daemon,
            host: self.host.clone(),
            addr: self.public_addr,
            port: self.public_port,
            waited_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            log: log.to_path_buf(),
            log_tail: log_tail(log, 15),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openssh_versions() {
        assert_eq!(
            openssh_version("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.11"),
            Some((9, 2))
        );
        assert_eq!(openssh_version("OpenSSH_10.0p2, OpenSSL"), Some((10, 0)));
        assert_eq!(openssh_version("unknown option -- V"), None);
        assert!(openssh_version("OpenSSH_9.8p1").is_some_and(|v| v >= (9, 8)));
        assert!(openssh_version("OpenSSH_9.10").is_some_and(|v| v >= (9, 8)));
    }
}
