//! The public handle: [`TestHostsBuilder`] starts a run, [`TestHosts`] owns it until drop.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::host::TestHost;
use crate::launch::{
    generate_keys, port_of, reserve_port, start_sshds, Bridge, Resources, SshdSpec, Tools,
};
use crate::layout::{plan, BastionLayout, LayoutRequest, Placement};
use crate::netns::Namespace;
use crate::render::{inventory, known_hosts_line, ssh_config};
use crate::stale::{cleanup_stale, write_owner_file};
use crate::system::{log_tail, require_root};
use crate::users::{ensure_test_users, TEST_USER};
use crate::Error;

static NEXT_RUN: AtomicU32 = AtomicU32::new(0);

/// Unix socket paths are limited to 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// Configures and starts a set of test hosts.
///
/// ```no_run
/// use mop_testhosts::{BastionLayout, TestHostsBuilder};
/// let hosts = TestHostsBuilder::new()
///     .hosts(3)
///     .group("web")
///     .bastion(BastionLayout::new(1, 2))
///     .start()?;
/// hosts.write_inventory(&hosts.dir().join("inventory.toml"))?;
/// # Ok::<(), mop_testhosts::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TestHostsBuilder {
    hosts: usize,
    group: String,
    host_prefix: String,
    bastion: Option<BastionLayout>,
    password_authentication: bool,
    password_only: bool,
    linux32: bool,
    base_dir: Option<PathBuf>,
    startup_timeout: Duration,
}

impl Default for TestHostsBuilder {
    fn default() -> Self {
        TestHostsBuilder {
            hosts: 2,
            group: "web".to_owned(),
            host_prefix: "host".to_owned(),
            bastion: None,
            password_authentication: false,
            password_only: false,
            linux32: false,
            base_dir: None,
            startup_timeout: Duration::from_secs(20),
        }
    }
}

impl TestHostsBuilder {
    /// Two hosts `host1`, `host2` in group `web`, no bastion, key authentication only.
    pub fn new() -> TestHostsBuilder {
        TestHostsBuilder::default()
    }

    /// How many directly reachable hosts to start (may be 0 with a bastion layout).
    pub fn hosts(mut self, count: usize) -> Self {
        self.hosts = count;
        self
    }

    /// The inventory group of the directly reachable hosts.
    pub fn group(mut self, group: &str) -> Self {
        self.group = group.to_owned();
        self
    }

    /// Names of the directly reachable hosts: `{prefix}1`, `{prefix}2`, ...
    pub fn host_prefix(mut self, prefix: &str) -> Self {
        self.host_prefix = prefix.to_owned();
        self
    }

    /// Adds a bastion and racks of hosts reachable only through it.
    pub fn bastion(mut self, layout: BastionLayout) -> Self {
        self.bastion = Some(layout);
        self
    }

    /// Lets sshd accept passwords too (only [`crate::TEST_SUDO_PASSWORD_USER`] has one).
    pub fn password_authentication(mut self, enabled: bool) -> Self {
        self.password_authentication = enabled;
        self
    }

    /// sshd refuses [`crate::TEST_SUDO_PASSWORD_USER`]'s key (`PubkeyAuthentication no` for
    /// that user only) and takes its password ([`crate::TEST_SUDO_PASSWORD`]): a login as it
    /// proves the password was used. Implies [`TestHostsBuilder::password_authentication`].
    pub fn password_only(mut self, enabled: bool) -> Self {
        self.password_only = enabled;
        if enabled {
            self.password_authentication = true;
        }
        self
    }

    /// Runs the directly reachable sshds under `setarch i686`: the kernel then answers `uname -m`
    /// with `i686` in every session (a real 32-bit personality, inherited by everything sshd
    /// starts), so tests get a host of another architecture than this machine's.
    pub fn linux32(mut self, enabled: bool) -> Self {
        self.linux32 = enabled;
        self
    }

    /// Where the run directory is created (default: the system temp dir).
    pub fn base_dir(mut self, dir: &Path) -> Self {
        self.base_dir = Some(dir.to_path_buf());
        self
    }

    /// How long to wait for every daemon to listen (default 20 s; a deadline, not a delay).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Creates users if needed, starts every sshd (and the namespace and bridge for a bastion
    /// layout), and returns once all of them accept connections.
    pub fn start(self) -> Result<TestHosts, Error> {
        require_root()?;
        let started = Instant::now();
        let deadline = started + self.startup_timeout;
        let request = LayoutRequest {
            hosts: self.hosts,
            group: self.group.clone(),
            host_prefix: self.host_prefix.clone(),
            bastion: self.bastion.clone(),
        };
        let run_number = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
        let slot = std::process::id().wrapping_mul(31).wrapping_add(run_number);
        let planned = plan(&request, slot)?;
        let tools = Tools::find(self.bastion.is_some())?;
        ensure_test_users()?;
        let base_dir = match &self.base_dir {
            Some(dir) => {
                std::path::absolute(dir).map_err(|error| Error::io("resolve", dir, error))?
            }
            None => std::env::temp_dir(),
        };
        // Best effort: leftovers of killed runs must not break this one.
        let _ = cleanup_stale(&base_dir);
        std::fs::create_dir_all("/run/sshd").map_err(|error| {
            Error::io(
                "create sshd privilege separation directory",
                Path::new("/run/sshd"),
                error,
            )
        })?;

        let mut resources = Resources::default();
        let dir = make_run_dir(&base_dir)?;
        let dir_path = dir.path().to_path_buf();
        resources.dir = Some(dir);
        write_owner_file(&dir_path)?;
        let socket = dir_path.join("bastion.sock");
        if self.bastion.is_some() && socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(Error::layout(
                format!(
                    "the bridge socket path `{}` is longer than {MAX_SOCKET_PATH} bytes",
                    socket.display()
                ),
                Some("use a shorter base directory"),
            ));
        }

        // Keys: one client pair for the run, one host key per sshd.
        let client_key = dir_path.join("client_key");
        let mut keys = vec![(client_key.clone(), "mop-testhosts-client".to_owned())];
        let mut specs = Vec::new();
        let mut reservations: Vec<TcpListener> = Vec::new();
        let authorized_keys = dir_path.join("authorized_keys");
        for host in &planned {
            let host_dir = dir_path.join("hosts").join(&host.name);
            std::fs::create_dir_all(&host_dir)
                .map_err(|error| Error::io("create", &host_dir, error))?;
            let listener = reserve_port(host.listen_addr)?;
            let spec = SshdSpec {
                planned: host.clone(),
                port: port_of(&listener)?,
                host_dir,
                authorized_keys: authorized_keys.clone(),
                password_authentication: self.password_authentication,
                password_only: self.password_only,
                linux32: self.linux32,
            };
            reservations.push(listener);
            keys.push((spec.host_key(), format!("mop-testhosts-{}", host.name)));
            specs.push(spec);
        }
        let mut bridge = None;
        for host in &planned {
            if let Placement::Bastion { bridge_addr } = host.placement {
                let listener = reserve_port(bridge_addr)?;
                let bastion_spec = specs
                    .iter()
                    .find(|spec| spec.planned.name == host.name)
                    .expect("every planned host has a spec");
                bridge = Some(Bridge {
                    host: host.name.clone(),
                    socket: socket.clone(),
                    bastion_addr: host.listen_addr,
                    bastion_port: bastion_spec.port,
                    public_addr: bridge_addr,
                    public_port: port_of(&listener)?,
                    log_dir: bastion_spec.host_dir.clone(),
                });
                reservations.push(listener);
            }
        }
        generate_keys(&tools.ssh_keygen, &keys)?;
        let public_key = read_public_key(&client_key)?;
        std::fs::write(&authorized_keys, &public_key)
            .map_err(|error| Error::io("write", &authorized_keys, error))?;
        set_mode(&authorized_keys, 0o644)?;

        if bridge.is_some() {
            resources.namespace = Some(Namespace::create()?);
        }
        drop(reservations);
        let specs = start_sshds(
            specs,
            &tools,
            &mut resources,
            deadline,
            self.startup_timeout,
        )?;
        let public_bastion = match bridge {
            Some(bridge) => {
                let name = bridge.host.clone();
                let addr = bridge.public_addr;
                let port = bridge.start(&tools, &mut resources, deadline, self.startup_timeout)?;
                Some((name, addr, port))
            }
            None => None,
        };

        let known_hosts = dir_path.join("known_hosts");
        let ssh_config_path = dir_path.join("ssh_config");
        let hosts = describe_hosts(&specs, public_bastion.as_ref(), &ssh_config_path);
        let mut known_hosts_text = String::new();
        for (host, spec) in hosts.iter().zip(&specs) {
            let public_key = read_public_key(&spec.host_key())?;
            known_hosts_text.push_str(&known_hosts_line(host.addr, host.port, &public_key));
        }
        std::fs::write(&known_hosts, known_hosts_text)
            .map_err(|error| Error::io("write", &known_hosts, error))?;
        let config_text = ssh_config(&hosts, &client_key, &known_hosts);
        std::fs::write(&ssh_config_path, config_text)
            .map_err(|error| Error::io("write", &ssh_config_path, error))?;

        Ok(TestHosts {
            hosts,
            dir: dir_path,
            client_key,
            known_hosts,
            ssh_config: ssh_config_path,
            startup: started.elapsed(),
            resources,
        })
    }
}

/// The hosts as clients see them; the bastion is listed under its bridge's address.
fn describe_hosts(
    specs: &[SshdSpec],
    public_bastion: Option<&(String, Ipv4Addr, u16)>,
    ssh_config_path: &Path,
) -> Vec<TestHost> {
    specs
        .iter()
        .map(|spec| {
            let (addr, port) = match public_bastion {
                Some((name, addr, port)) if *name == spec.planned.name => (*addr, *port),
                _ => (spec.planned.listen_addr, spec.port),
            };
            TestHost {
                name: spec.planned.name.clone(),
                group: spec.planned.group.clone(),
                addr,
                port,
                user: TEST_USER.to_owned(),
                via: spec.planned.via.clone(),
                in_namespace: matches!(spec.planned.placement, Placement::Hidden),
                log_path: spec.log_path(),
                ssh_config: ssh_config_path.to_path_buf(),
            }
        })
        .collect()
}

fn make_run_dir(base_dir: &Path) -> Result<tempfile::TempDir, Error> {
    check_state_dir(base_dir)?;
    std::fs::create_dir_all(base_dir).map_err(|error| Error::io("create", base_dir, error))?;
    check_searchable(base_dir)?;
    let dir = tempfile::Builder::new()
        .prefix("mop-testhosts-")
        .tempdir_in(base_dir)
        .map_err(|error| Error::io("create run directory in", base_dir, error))?;
    // sshd reads authorized_keys as the logging-in user, who must be able to traverse here.
    set_mode(dir.path(), 0o755)?;
    Ok(dir)
}

/// Paths end up bare in sshd_config, ssh_config and socat addresses, where whitespace, quotes,
/// `%`, `#`, `,` and `:` mean something.
fn check_state_dir(dir: &Path) -> Result<(), Error> {
    let text = dir.to_string_lossy();
    let plain = |c: char| c.is_ascii_graphic() && !"\"'%#\\,:".contains(c);
    if text.chars().all(plain) {
        return Ok(());
    }
    Err(Error::layout(
        format!(
            "directory `{text}` contains a space, quote, `%`, `#`, `,`, `:` or non-ASCII character"
        ),
        Some("pick a plain directory such as /tmp/mop-demo"),
    ))
}

/// sshd reads the run's authorized_keys file as the test user, so every directory above the
/// run directory must be searchable by others (a `mktemp -d` directory is 0700).
fn check_searchable(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let absolute = std::path::absolute(dir).map_err(|error| Error::io("resolve", dir, error))?;
    for ancestor in absolute.ancestors() {
        let Ok(metadata) = std::fs::metadata(ancestor) else {
            continue;
        };
        if metadata.permissions().mode() & 0o001 == 0 {
            return Err(Error::layout(
                format!(
                    "directory `{}` is not searchable by the test users (mode {:04o}): sshd reads each run's authorized_keys as that user",
                    ancestor.display(),
                    metadata.permissions().mode() & 0o7777
                ),
                Some("`chmod o+x` it, or pick a directory such as /tmp/mop-demo"),
            ));
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|error| Error::io("chmod", path, error))
}

fn read_public_key(private_key: &Path) -> Result<String, Error> {
    let mut path = private_key.as_os_str().to_owned();
    path.push(".pub");
    let path = PathBuf::from(path);
    std::fs::read_to_string(&path).map_err(|error| Error::io("read", &path, error))
}

/// A running set of test hosts. Dropping it kills every process it started (and their
/// children), deletes its network namespace and removes its directory.
///
/// All hosts are this machine: the users' homes (`/home/moptest`, ...) are shared by every host
/// and every concurrent run.
#[derive(Debug)]
pub struct TestHosts {
    hosts: Vec<TestHost>,
    dir: PathBuf,
    client_key: PathBuf,
    known_hosts: PathBuf,
    ssh_config: PathBuf,
    startup: Duration,
    resources: Resources,
}

impl TestHosts {
    /// Every host, in inventory order (direct hosts, bastion, then racks).
    pub fn hosts(&self) -> &[TestHost] {
        &self.hosts
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&TestHost> {
        self.hosts.iter().find(|host| host.name == name)
    }

    /// The run's private client key (its public half is the only authorized key).
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// known_hosts with every host's key under the address a client uses for it.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// An ssh_config with a `Host` alias per test host: `ssh -F PATH rack1-101` just works.
    pub fn ssh_config(&self) -> &Path {
        &self.ssh_config
    }

    /// The run directory (keys, configs, logs); removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The network namespace of the bastion layout, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.resources
            .namespace
            .as_ref()
            .map(|namespace| namespace.name.as_str())
    }

    /// How long [`TestHostsBuilder::start`] took.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// mop's inventory TOML for these hosts.
    pub fn inventory_toml(&self) -> String {
        inventory(&self.hosts, TEST_USER, &self.client_key, &self.known_hosts)
    }

    /// Writes [`TestHosts::inventory_toml`] to `path`.
    pub fn write_inventory(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.inventory_toml())
            .map_err(|error| Error::io("write inventory", path, error))
    }

    /// Whether a plain TCP connect from the root namespace to `host` succeeds within 2 s.
    pub fn is_reachable_directly(&self, host: &TestHost) -> bool {
        TcpStream::connect_timeout(
            &SocketAddrV4::new(host.addr, host.port).into(),
            Duration::from_secs(2),
        )
        .is_ok()
    }

    /// Panics unless `host` is unreachable by a direct TCP connect from the root namespace.
    pub fn assert_unreachable_directly(&self, host: &TestHost) {
        assert!(
            !self.is_reachable_directly(host),
            "host `{}` at {}:{} accepted a direct TCP connection from the root namespace; it should be reachable only via {:?}",
            host.name,
            host.addr,
            host.port,
            host.via
        );
    }

    /// Fails if any sshd or socat of this run has exited.
    pub fn check_running(&mut self) -> Result<(), Error> {
        for process in &mut self.resources.processes {
            if let Some(status) = process.exit_status() {
                return Err(Error::Exited {
                    daemon: process.daemon,
                    host: process.host.clone(),
                    status: status.to_string(),
                    log: process.log.clone(),
                    log_tail: log_tail(&process.log, 15),
                });
            }
        }
        Ok(())
    }

    /// Tears everything down now and reports anything that could not be cleaned.
    pub fn stop(mut self) -> Result<(), Error> {
        let problems = self.resources.teardown();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Teardown { problems })
        }
    }
}
