//! The SSH transport against real sshd processes on loopback (and behind a bastion in a
//! network namespace), running the real agent: bootstrap, hello, sudo, via-chains, host keys,
//! cleanup.
//!
//! Needs root (mop-testhosts creates users and starts sshd) and the agent binary: build it
//! first with `cargo build -p mop-agent`.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mop_push::session::AgentSession;
use mop_push::ssh::{
    AgentOptions, BecomeMethod, BecomeSpec, HostKeyPolicy, Secret, SshError, SshHost, SshPool,
};
use mop_push::transport::AgentProcess;
use mop_testhosts::{
    BastionLayout, TestHost, TestHosts, TestHostsBuilder, TEST_SUDO_PASSWORD,
    TEST_SUDO_PASSWORD_USER, TEST_USER,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every test gives up instead of hanging the suite.
const TEST_DEADLINE: Duration = Duration::from_secs(120);

/// The agent the tests upload: `target/debug/mop-agent` without its debug symbols (42 MB
/// -> 7 MB; the code is the same), stripped once per test process into the target dir.
fn agent_path() -> PathBuf {
    static STRIPPED: OnceLock<PathBuf> = OnceLock::new();
    STRIPPED
        .get_or_init(|| {
            let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/mop-agent");
            assert!(
                built.is_file(),
                "the agent binary `{}` is missing\nhint: build it first with `cargo build -p mop-agent`",
                built.display()
            );
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
            let temp = dir.join(format!("mop-agent-stripped.{}", std::process::id()));
            let stripped = dir.join("mop-agent-stripped");
            let status = std::process::Command::new("strip").arg("-o").arg(&temp).arg(&built).status();
            // Renamed into place: concurrent test processes each see a complete file.
            match status {
                Ok(status) if status.success() && std::fs::rename(&temp, &stripped).is_ok() => stripped,
                _ => built,
            }
        })
        .clone()
}

fn start_hosts(builder: TestHostsBuilder) -> TestHosts {
    builder
        .start()
        .unwrap_or_else(|error| panic!("cannot start test hosts: {error}"))
}

fn ssh_host(hosts: &TestHosts, host: &TestHost) -> SshHost {
    SshHost {
        name: host.name.clone(),
        address: host.addr.to_string(),
        port: host.port,
        user: Some(host.user.clone()),
        identity_file: Some(hosts.client_key().to_path_buf()),
        known_hosts_file: Some(hosts.known_hosts().to_path_buf()),
        host_keys: HostKeyPolicy::Strict,
        connect_timeout: Some(Duration::from_secs(10)),
        via: host.via.clone(),
        ..SshHost::new(&host.name, "", 0)
    }
}

/// The first test host, logged in to as the user whose sudo needs a password.
fn password_user_host(hosts: &TestHosts) -> SshHost {
    SshHost {
        user: Some(TEST_SUDO_PASSWORD_USER.to_string()),
        ..ssh_host(hosts, &hosts.hosts()[0])
    }
}

fn all_ssh_hosts(hosts: &TestHosts) -> Vec<SshHost> {
    hosts
        .hosts()
        .iter()
        .map(|host| ssh_host(hosts, host))
        .collect()
}

/// A per-test agent directory, so concurrent tests (and other suites using `~/.mop` of the
/// shared test users) never see each other's files.
fn agent_options(test: &str) -> AgentOptions {
    AgentOptions {
        agent_dir: Some(format!("$HOME/.mop-test-{test}-{}", std::process::id())),
        ..AgentOptions::default()
    }
}

/// Where `options.agent_dir` lands for `user` (all test hosts are this machine).
fn agent_dir_of(user: &str, options: &AgentOptions) -> PathBuf {
    let dir = options
        .agent_dir
        .as_deref()
        .expect("tests set an agent dir");
    PathBuf::from(dir.replace("$HOME", &format!("/home/{user}")))
}

/// Pids of processes whose argv[0] lies under `dir`: agents started from a work dir there.
fn agent_processes_under(dir: &Path) -> Vec<u32> {
    let prefix = format!("{}/", dir.display());
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv0 = cmdline.split(|byte| *byte == 0).next().unwrap_or_default();
        if String::from_utf8_lossy(argv0).starts_with(&prefix) {
            pids.push(pid);
        }
    }
    pids
}

/// Every process command line and environment on this machine that contains `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let is_process = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.parse::<u32>().is_ok());
        if !is_process {
            continue;
        }
        for file in ["cmdline", "environ"] {
            if let Ok(bytes) = std::fs::read(entry.path().join(file)) {
                let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
                if text.contains(needle) {
                    found.push(format!("{}/{file}: {text}", entry.path().display()));
                }
            }
        }
    }
    found
}

/// Collects the agent's stderr, each line prefixed with the host name, as `mop` would print it.
fn drain_stderr(host: &str, agent: &mut AgentProcess) -> tokio::task::JoinHandle<Vec<String>> {
    let mut stderr = std::mem::replace(&mut agent.stderr, Box::pin(tokio::io::empty()));
    let host = host.to_string();
    tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text.lines().map(|line| format!("{host}: {line}")).collect()
    })
}

/// Starts the agent on `host`, says hello, shuts it down; returns the facts' `(user, uid)`.
async fn hello(
    pool: &SshPool,
    host: &str,
    options: &AgentOptions,
) -> Result<(String, u32), String> {
    let mut agent = pool
        .start_agent(host, options)
        .await
        .map_err(|error| error.to_string())?;
    let stderr = drain_stderr(host, &mut agent);
    let AgentProcess {
        stdin,
        stdout,
        mut child,
        ..
    } = agent;
    let session = AgentSession::start(stdout, stdin).await;
    let session = match session {
        Ok(session) => session,
        Err(error) => {
            let lines = stderr.await.unwrap_or_default();
            return Err(format!(
                "hello with the agent on {host} failed: {error}\n{}",
                lines.join("\n")
            ));
        }
    };
    let facts = (session.facts.user.clone(), session.facts.uid);
    assert!(!session.agent_version.is_empty());
    session
        .shutdown()
        .await
        .map_err(|error| error.to_string())?;
    let code = child.wait().await.map_err(|error| error.to_string())?;
    let lines = stderr.await.unwrap_or_default();
    if code != Some(0) {
        return Err(format!(
            "the agent on {host} exited with {code:?}\n{}",
            lines.join("\n")
        ));
    }
    Ok(facts)
}

async fn close(pool: SshPool) {
    let run_dir = pool.run_dir().to_path_buf();
    let errors = pool.close_all().await;
    assert!(errors.is_empty(), "closing failed: {errors:?}");
    assert!(
        !run_dir.exists(),
        "the run directory `{}` is still there",
        run_dir.display()
    );
}

/// Runs one test's body with a deadline; afterwards (also when it panics) removes what a
/// failed test may have left in the test users' homes under its agent directory name.
fn run<F: std::future::Future<Output = ()>>(test: &str, body: F) {
    struct Leftovers(String);
    impl Drop for Leftovers {
        fn drop(&mut self) {
            for user in [TEST_USER, TEST_SUDO_PASSWORD_USER] {
                let _ = std::fs::remove_dir_all(format!(
                    "/home/{user}/.mop-test-{}-{}",
                    self.0,
                    std::process::id()
                ));
            }
        }
    }
    let _leftovers = Leftovers(test.to_string());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        tokio::time::timeout(TEST_DEADLINE, body)
            .await
            .expect("the test took longer than its deadline");
    });
}

#[test]
fn three_hosts_bootstrap_say_hello_and_leave_nothing_behind() {
    let hosts = start_hosts(TestHostsBuilder::new().hosts(3));
    let options = agent_options("three");
    run("three", async {
        let pool = Arc::new(
            SshPool::new(
                &all_ssh_hosts(&hosts),
                &agent_path(),
                NonZeroUsize::new(10).expect("10 is not zero"),
            )
            .expect("pool"),
        );
        use std::os::unix::fs::PermissionsExt;
        let run_dir_mode = std::fs::metadata(pool.run_dir())
            .expect("run dir")
            .permissions()
            .mode();
        assert_eq!(run_dir_mode & 0o777, 0o700, "the run directory is private");
        assert!(pool.run_dir().starts_with("/tmp"), "short socket paths");
        let mut tasks = tokio::task::JoinSet::new();
        for host in hosts.hosts() {
            let (pool, name, options) = (pool.clone(), host.name.clone(), options.clone());
            tasks.spawn(async move { (name.clone(), hello(&pool, &name, &options).await) });
        }
        while let Some(joined) = tasks.join_next().await {
            let (name, result) = joined.expect("task");
            assert_eq!(
                result,
                Ok((TEST_USER.to_string(), uid_of(TEST_USER))),
                "on {name}"
            );
        }
        assert_eq!(pool.uploads(), 3, "one upload per host");

        // A second agent on the same host in the same run reuses the install.
        assert_eq!(
            hello(&pool, "host1", &options).await,
            Ok((TEST_USER.to_string(), uid_of(TEST_USER)))
        );
        assert_eq!(pool.uploads(), 3, "no second upload to host1");
        for host in hosts.hosts() {
            assert_eq!(
                host.accepted_connections().expect("sshd log"),
                1,
                "one login to {}",
                host.name
            );
        }

        for host in hosts.hosts() {
            pool.cleanup(&host.name).await.expect("cleanup");
        }
        let dir = agent_dir_of(TEST_USER, &options);
        assert!(
            !dir.exists(),
            "`{}` should be gone after cleanup",
            dir.display()
        );
        assert_eq!(agent_processes_under(&dir), Vec::<u32>::new());
        let pool = Arc::into_inner(pool).expect("no task holds the pool any more");
        close(pool).await;
    });
}

fn uid_of(user: &str) -> u32 {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&user)).then(|| fields[2].parse().expect("numeric uid"))
        })
        .unwrap_or_else(|| panic!("user {user} missing"))
}

#[test]
fn cached_agent_is_reused_by_the_next_run() {
    let hosts = start_hosts(TestHostsBuilder::new().hosts(1));
    let options = AgentOptions {
        cache: true,
        ..agent_options("cache")
    };
    let dir = agent_dir_of(TEST_USER, &options);
    run("cache", async {
        let first = SshPool::new(
            &all_ssh_hosts(&hosts),
            &agent_path(),
            NonZeroUsize::new(10).expect("10 is not zero"),
        )
        .expect("pool");
        assert!(hello(&first, "host1", &options).await.is_ok());
        assert_eq!(first.uploads(), 1);
        first.cleanup("host1").await.expect("cleanup");
        let cached = format!("agent-{}", first.agent_sha256());
        let left: Vec<String> = std::fs::read_dir(&dir)
            .expect("the agent dir stays with a cached agent")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(left, [cached], "only the cached agent stays");
        close(first).await;

        let second = SshPool::new(
            &all_ssh_hosts(&hosts),
            &agent_path(),
            NonZeroUsize::new(10).expect("10 is not zero"),
        )
        .expect("pool");
        assert!(hello(&second, "host1", &options).await.is_ok());
        assert_eq!(second.uploads(), 0, "the second run found the cached agent");
        second.cleanup("host1").await.expect("cleanup");
        close(second).await;
    });
}

#[test]
fn the_channel_carries_bytes_unchanged_even_after_a_sudo_password() {
    // `cat` as the "agent": bytes in = bytes out proves the channel, and that sudo -S took the
    // password line and nothing else.
    let hosts = start_hosts(TestHostsBuilder::new().hosts(1));
    let ssh_hosts = [
        ssh_host(&hosts, &hosts.hosts()[0]),
        SshHost {
            name: "as-moptestpw".to_string(),
            ..password_user_host(&hosts)
        },
    ];
    run("cat", async {
        let pool = SshPool::new(
            &ssh_hosts,
            Path::new("/bin/cat"),
            NonZeroUsize::new(10).expect("10 is not zero"),
        )
        .expect("pool");
        let payload: Vec<u8> = (0..200_000u32).map(|n| (n % 251) as u8).collect();
        let plain = agent_options("cat");
        let sudo = AgentOptions {
            sudo: Some(BecomeSpec {
                user: None,
                password: Some(Secret::new(TEST_SUDO_PASSWORD)),
                method: BecomeMethod::Sudo,
            }),
            ..agent_options("cat")
        };
        for (host, options) in [("host1", &plain), ("as-moptestpw", &sudo)] {
            let mut agent = pool.start_agent(host, options).await.expect("start");
            let echoed = tokio::spawn({
                let mut stdout = std::mem::replace(&mut agent.stdout, Box::pin(tokio::io::empty()));
                async move {
                    let mut bytes = Vec::new();
                    stdout.read_to_end(&mut bytes).await.expect("read");
                    bytes
                }
            });
            agent.stdin.write_all(&payload).await.expect("write");
            agent.stdin.shutdown().await.expect("close stdin");
            let echoed = echoed.await.expect("task");
            assert_eq!(echoed.len(), payload.len(), "on {host}");
            assert!(echoed == payload, "bytes changed on the way through {host}");
            assert_eq!(agent.child.wait().await.expect("wait"), Some(0));
        }
        for host in ["host1", "as-moptestpw"] {
            pool.cleanup(host).await.expect("cleanup");
        }
        close(pool).await;
    });
}

#[test]
fn sudo_without_password_runs_the_agent_as_root_or_another_user() {
    let hosts = start_hosts(TestHostsBuilder::new().hosts(1));
    run("sudo", async {
        let pool = SshPool::new(
            &all_ssh_hosts(&hosts),
            &agent_path(),
            NonZeroUsize::new(10).expect("10 is not zero"),
        )
        .expect("pool");
        let root = AgentOptions {
            sudo: Some(BecomeSpec {
                user: None,
                password: None,
                method: BecomeMethod::Sudo,
            }),
            ..agent_options("sudo")
        };
        assert_eq!(
            hello(&pool, "host1", &root).await,
            Ok(("root".to_string(), 0))
        );
        // Another user must reach the agent in the login user's home: the shared install.
        let other = AgentOptions {
            sudo: Some(BecomeSpec {
                user: Some(TEST_SUDO_PASSWORD_USER.to_string()),
                password: None,
                method: BecomeMethod::Sudo,
            }),
            ..agent_options("sudo")
        };
        assert_eq!(
            hello(&pool, "host1", &other).await,
            Ok((
                TEST_SUDO_PASSWORD_USER.to_string(),
                uid_of(TEST_SUDO_PASSWORD_USER)
            ))
        );
        pool.cleanup("host1").await.expect("cleanup under sudo");
        let dir = agent_dir_of(TEST_USER, &root);
        assert!(!dir.exists(), "`{}` should be gone", dir.display());
        close(pool).await;
    });
}

#[test]
fn sudo_password_works_and_never_shows() {
    let hosts = start_hosts(TestHostsBuilder::new().hosts(1));
    let options = AgentOptions {
        sudo: Some(BecomeSpec {
            user: None,
            password: Some(Secret::new(TEST_SUDO_PASSWORD)),
            method: BecomeMethod::Sudo,
        }),
        ..agent_options("sudopw")
    };
    run("sudopw", async {
        let pool = SshPool::new(
            &[password_user_host(&hosts)],
            &agent_path(),
            NonZeroUsize::new(10).expect("10 is not zero"),
        )
        .expect("pool");
        let mut agent = pool
            .start_agent("host1", &options)
            .await
            .expect("start under password sudo");
        let stderr = drain_stderr("host1", &mut agent);
        let AgentProcess {
            stdin,
            stdout,
            mut child,
            ..
        } = agent;
        let session = AgentSession::start(stdout, stdin)
            .await
            .expect("hello through sudo");
        assert_eq!(
            (session.facts.user.as_str(), session.facts.uid),
            ("root", 0)
        );
        // While the agent runs under sudo: no argv or environment on this machine (which is
        // also the host) holds the password.
        assert_eq!(
            processes_mentioning(TEST_SUDO_PASSWORD),
            Vec::<String>::new()
        );
        for entry in walk(pool.run_dir()) {
            let text = std::fs::read(&entry).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&text).contains(TEST_SUDO_PASSWORD),
                "`{}` holds the password",
                entry.display()
            );
        }
        session.shutdown().await.expect("shutdown");
        assert_eq!(child.wait().await.expect("wait"), Some(0));
        let lines = stderr.await.expect("stderr");
        assert!(
            lines.iter().all(|line| !line.contains(TEST_SUDO_PASSWORD)),
            "{lines:?}"
        );
        pool.cleanup("host1")
            .await
            .expect("cleanup under password sudo");
        assert!(!agent_dir_of(TEST_SUDO_PASSWORD_USER, &options).exists());
        close(pool).await;
    });
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            files.extend(walk(&path));
        } else if path.is_file() {
            files.push(path);
        }
    }
    files
}

#[test]
fn sudo_failures_are_clear_and_never_print_the_password() {
    let hosts = start_hosts(TestHostsBuilder::new().hosts(1));
    let wrong_password = "not-the-password-42";
    run("sudofail", async {
        let pool = SshPool::new(
            &[password_user_host(&hosts)],
            &agent_path(),
            NonZeroUsize::new(10).expect("10 is not zero"),
        )
        .expect("pool");
        let wrong = AgentOptions {
            sudo: Some(BecomeSpec {
                user: None,
                password: Some(Secret::new(wrong_password)),
                method: BecomeMethod::Sudo,
            }),
            ..agent_options("sudofail")
        };
        let started = Instant::now();
        let error = pool
            .start_agent("host1", &wrong)
            .await
            .err()
            .expect("wrong password refused");
        assert!(
            matches!(error, SshError::SudoWrongPassword { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.starts_with("sudo on host1 rejected the sudo password of user moptestpw"),
            "{message}"
        );
        assert!(
            !message.contains(wrong_password) && !format!("{error:?}").contains(wrong_password)
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "sudo must not wait for more attempts"
        );

        let none = AgentOptions {
            sudo: Some(BecomeSpec {
                user: None,
                password: None,
                method: BecomeMethod::Sudo,
            }),
            ..agent_options("sudofail")
        };
        assert_eq!(
            pool.uploads(),
            0,
            "nothing uploaded for a host whose sudo password is refused"
        );
        // Without a password the agent starts under `sudo -n` with no check first; sudo's
        // refusal shows as an agent that never says hello, and the diagnosis explains it.
        let process = pool
            .start_agent("host1", &none)
            .await
            .expect("started under sudo -n");
        let mut child = process.child;
        assert!(AgentSession::start(process.stdout, process.stdin)
            .await
            .is_err());
        let _ = child.wait().await;
        let error = pool
            .diagnose_agent_start("host1", &none)
            .await
            .expect("a diagnosis");
        assert!(
            matches!(error, SshError::SudoNeedsPassword { .. }),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("hint: set the host's sudo password"),
            "{error}"
        );
        assert!(
            pool.diagnose_agent_start("host1", &none).await.is_none(),
            "diagnosed once"
        );

        pool.cleanup("host1").await.expect("cleanup");
        assert!(!agent_dir_of(TEST_SUDO_PASSWORD_USER, &wrong).exists());
        close(pool).await;
    });
}

#[test]
fn a_two_hop_chain_works_and_shares_the_bastion_connection() {
    let hosts = start_hosts(
        TestHostsBuilder::new()
            .hosts(0)
            .bastion(BastionLayout::new(1, 3)),
    );
    let rack_hosts: Vec<&TestHost> = hosts
        .hosts()
        .iter()
        .filter(|host| host.name.starts_with("rack1-1"))
        .collect();
    assert_eq!(rack_hosts.len(), 3);
    for host in &rack_hosts {
        hosts.assert_unreachable_directly(host);
    }
    let options = agent_options("chain");
    run("chain", async {
        let pool = Arc::new(
            SshPool::new(
                &all_ssh_hosts(&hosts),
                &agent_path(),
                NonZeroUsize::new(10).expect("10 is not zero"),
            )
            .expect("pool"),
        );
        let mut tasks = tokio::task::JoinSet::new();
        for host in &rack_hosts {
            let (pool, name, options) = (pool.clone(), host.name.clone(), options.clone());
            tasks.spawn(async move { (name.clone(), hello(&pool, &name, &options).await) });
        }
        while let Some(joined) = tasks.join_next().await {
            let (name, result) = joined.expect("task");
            assert_eq!(
                result,
                Ok((TEST_USER.to_string(), uid_of(TEST_USER))),
                "on {name}"
            );
        }
        let bastion = hosts.host("bastion").expect("bastion");
        let top = hosts.host("rack1-top").expect("rack top");
        assert_eq!(
            bastion.accepted_connections().expect("log"),
            1,
            "one login to the bastion for 3 hosts"
        );
        assert_eq!(
            top.accepted_connections().expect("log"),
            1,
            "one login to the rack top for 3 hosts"
        );
        for host in &rack_hosts {
            pool.cleanup(&host.name).await.expect("cleanup");
        }
        let pool = Arc::into_inner(pool).expect("no task holds the pool any more");
        close(pool).await;

        // Without the chain the rack hosts cannot be reached at all.
        let direct = SshHost {
            via: None,
            connect_timeout: Some(Duration::from_secs(3)),
            ..ssh_host(&hosts, rack_hosts[0])
        };
        let pool = SshPool::new(
            &[direct],
            &agent_path(),
            NonZeroUsize::new(10).expect("10 is not zero"),
        )
        .expect("pool");
        let error = pool
            .connect(&rack_hosts[0].name)
            .await
            .expect_err("no direct route");
        assert!(
            matches!(
                error,
                SshError::Unreachable { .. } | SshError::Timeout { .. }
            ),
            "{error:?}"
        );
        close(pool).await;
    });
}

#[test]
fn a_jump_host_failure_names_the_jump_host() {
    let hosts = start_hosts(
        TestHostsBuilder::new()
            .hosts(0)
            .bastion(BastionLayout::new(1, 1)),
    );
    let empty_known_hosts = hosts.dir().join("empty_known_hosts");
    std::fs::write(&empty_known_hosts, "").expect("write");
    let ssh_hosts: Vec<SshHost> = all_ssh_hosts(&hosts)
        .into_iter()
        .map(|host| match host.name.as_str() {
            "bastion" => SshHost {
                known_hosts_file: Some(empty_known_hosts.clone()),
                ..host
            },
            _ => host,
        })
        .collect();
    run("jump", async {
        let pool = SshPool::new(
            &ssh_hosts,
            &agent_path(),
            NonZeroUsize::new(10).expect("10 is not zero"),
        )
        .expect("pool");
        let error = pool
            .connect("rack1-101")
            .await
            .expect_err("bastion key unknown");
        let message = error.to_string();
        assert!(
            message.starts_with(
                "cannot reach rack1-101 through its jump host rack1-top: cannot reach rack1-top through its jump host bastion: host key for bastion"
            ),
            "{message}"
        );
        close(pool).await;
    });
}

#[test]
fn host_keys_are_checked_strictly_unless_asked_otherwise() {
    let hosts = start_hosts(TestHostsBuilder::new().hosts(1));
    let host = &hosts.hosts()[0];
    let scratch = hosts.dir().join("host-key-test");
    std::fs::create_dir_all(&scratch).expect("mkdir");
    // A known_hosts file with some other key for this host: what a reinstalled host looks like.
    let other_key = scratch.join("other_key");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other_key)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let public = std::fs::read_to_string(scratch.join("other_key.pub")).expect("public key");
    let key = public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let changed = scratch.join("changed_known_hosts");
    std::fs::write(&changed, format!("[{}]:{} {key}\n", host.addr, host.port)).expect("write");
    let unknown = scratch.join("empty_known_hosts");
    std::fs::write(&unknown, "").expect("write");
    let accept_new = scratch.join("accept_new_known_hosts");
    std::fs::write(&accept_new, "").expect("write");

    let base = ssh_host(&hosts, host);
    let ssh_hosts = [
        SshHost {
            name: "changed".into(),
            known_hosts_file: Some(changed.clone()),
            ..base.clone()
        },
        SshHost {
            name: "unknown".into(),
            known_hosts_file: Some(unknown.clone()),
            ..base.clone()
        },
        SshHost {
            name: "accept-new".into(),
            known_hosts_file: Some(accept_new.clone()),
            host_keys: HostKeyPolicy::AcceptNew,
            ..base.clone()
        },
        SshHost {
            name: "off".into(),
            known_hosts_file: Some(changed.clone()),
            host_keys: HostKeyPolicy::Off,
            ..base.clone()
        },
    ];
    run("hostkeys", async {
        let pool = SshPool::new(
            &ssh_hosts,
            &agent_path(),
            NonZeroUsize::new(10).expect("10 is not zero"),
        )
        .expect("pool");
        let error = pool
            .connect("changed")
            .await
            .expect_err("changed key refused");
        let address = format!("{}:{}", host.addr, host.port);
        assert_eq!(
            error.to_string(),
            format!(
                "host key for changed ({address}) does not match known_hosts\n  hint: if the host was reinstalled, \
                 remove the old key with `ssh-keygen -R '[{}]:{}' -f {}` and connect again; \
                 otherwise someone may be intercepting the connection",
                host.addr,
                host.port,
                changed.display()
            )
        );
        let error = pool
            .connect("unknown")
            .await
            .expect_err("unknown key refused");
        assert!(
            matches!(error, SshError::HostKeyUnknown { .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains(&format!(
                "ssh-keyscan -p {} {} >> {}",
                host.port,
                host.addr,
                unknown.display()
            )),
            "{error}"
        );

        pool.connect("accept-new")
            .await
            .expect("accept-new takes an unknown key");
        let recorded = std::fs::read_to_string(&accept_new).expect("read");
        assert_eq!(
            recorded.lines().count(),
            1,
            "the new key was recorded: {recorded}"
        );
        pool.connect("off")
            .await
            .expect("off ignores even a changed key");
        assert_eq!(
            std::fs::read_to_string(&changed)
                .expect("read")
                .lines()
                .count(),
            1,
            "off records nothing"
        );
        close(pool).await;
    });
}

#[test]
fn an_unreachable_host_fails_within_its_timeout_while_others_succeed() {
    let hosts = start_hosts(TestHostsBuilder::new().hosts(2));
    // A loopback port nobody listens on.
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let mut ssh_hosts = all_ssh_hosts(&hosts);
    ssh_hosts.push(SshHost {
        name: "down".into(),
        address: "127.0.0.1".into(),
        port: closed_port,
        connect_timeout: Some(Duration::from_secs(30)),
        ..ssh_hosts[0].clone()
    });
    let options = agent_options("down");
    run("down", async {
        let pool = Arc::new(
            SshPool::new(
                &ssh_hosts,
                &agent_path(),
                NonZeroUsize::new(10).expect("10 is not zero"),
            )
            .expect("pool"),
        );
        let mut tasks = tokio::task::JoinSet::new();
        for host in ["host1", "host2", "down"] {
            let (pool, options) = (pool.clone(), options.clone());
            tasks.spawn(async move {
                let started = Instant::now();
                (host, hello(&pool, host, &options).await, started.elapsed())
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let (host, result, elapsed) = joined.expect("task");
            if host == "down" {
                // Refused, not timed out (a timeout says so in its message): the refusal ends
                // the attempt at once. No wall-clock bound here: under load even a refusal
                // took over 3 s to come back, and speed lives in benchmarks.
                let message = result.expect_err("nothing listens there");
                assert_eq!(
                    message,
                    format!(
                        "down (127.0.0.1:{closed_port}) is unreachable: connect to host 127.0.0.1 port {closed_port}: Connection refused"
                    ),
                    "after {elapsed:?}"
                );
            } else {
                assert!(result.is_ok(), "{host}: {result:?}");
            }
        }
        // The failure is remembered: no second attempt.
        let error = pool.connect("down").await.expect_err("still down");
        assert!(matches!(error, SshError::Unreachable { .. }));
        for host in ["host1", "host2", "down"] {
            pool.cleanup(host).await.expect("cleanup");
        }
        let pool = Arc::into_inner(pool).expect("no task holds the pool any more");
        close(pool).await;
    });
}

#[test]
fn cleanup_kills_a_stuck_agent_and_kill_works_on_its_own() {
    let hosts = start_hosts(TestHostsBuilder::new().hosts(1));
    let options = AgentOptions {
        sudo: Some(BecomeSpec {
            user: None,
            password: None,
            method: BecomeMethod::Sudo,
        }),
        ..agent_options("stuck")
    };
    let dir = agent_dir_of(TEST_USER, &options);
    run("stuck", async {
        // `cat` with its stdin left open never exits by itself.
        let pool = SshPool::new(
            &all_ssh_hosts(&hosts),
            Path::new("/bin/cat"),
            NonZeroUsize::new(10).expect("10 is not zero"),
        )
        .expect("pool");
        let mut first = pool.start_agent("host1", &options).await.expect("start");
        wait_for_agents(&dir, 1).await;
        first.child.kill().await.expect("kill");
        wait_for_agents(&dir, 0).await;
        assert_eq!(first.child.wait().await.expect("wait"), None, "killed");

        let _second = pool
            .start_agent("host1", &options)
            .await
            .expect("start again");
        wait_for_agents(&dir, 1).await;
        pool.cleanup("host1").await.expect("cleanup");
        assert_eq!(
            agent_processes_under(&dir),
            Vec::<u32>::new(),
            "cleanup killed it"
        );
        assert!(!dir.exists(), "`{}` should be gone", dir.display());
        drop((first, _second));
        close(pool).await;
    });
}

/// Waits up to 5 s until exactly `count` agents run from under `dir`.
async fn wait_for_agents(dir: &Path, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while agent_processes_under(dir).len() != count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        agent_processes_under(dir).len(),
        count,
        "agents running from `{}`",
        dir.display()
    );
}

/// ssh processes whose arguments mention `run_dir` (masters, jump proxies of one run).
fn ssh_processes_of_run(run_dir: &Path) -> Vec<String> {
    processes_mentioning(&run_dir.display().to_string())
        .into_iter()
        .filter(|line| line.contains("/cmdline: ssh "))
        .collect()
}

#[test]
fn a_silent_host_times_out_and_an_abandoned_login_leaves_no_process() {
    // Accepts TCP connections (the kernel does, into the backlog) but never speaks SSH.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let silent = |name: &str, timeout: u64| SshHost {
        connect_timeout: Some(Duration::from_secs(timeout)),
        host_keys: HostKeyPolicy::Off,
        ..SshHost::new(name, "127.0.0.1", port)
    };
    run("silent", async {
        let pool = SshPool::new(
            &[silent("silent", 1), silent("patient", 60)],
            &agent_path(),
            NonZeroUsize::new(10).expect("10 is not zero"),
        )
        .expect("pool");
        let started = Instant::now();
        let error = pool.connect("silent").await.expect_err("no ssh banner");
        assert!(matches!(error, SshError::Timeout { .. }), "{error:?}");
        assert!(error.to_string().starts_with(&format!(
            "silent (127.0.0.1:{port}) did not complete the ssh login"
        )));
        // Far below the 60 s of the patient host, far above the 7 s login deadline of this one
        // (1 s connect timeout x 2 + 5 s): proves it gave up, not how fast under load.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "took {:?}",
            started.elapsed()
        );

        // What Ctrl-C does to a login in progress: its future is dropped, its ssh lives on.
        let abandoned =
            tokio::time::timeout(Duration::from_millis(500), pool.connect("patient")).await;
        assert!(abandoned.is_err(), "the login cannot have finished");
        let run_dir = pool.run_dir().to_path_buf();
        assert!(
            !ssh_processes_of_run(&run_dir).is_empty(),
            "the abandoned ssh still runs"
        );
        let errors = pool.close_all().await;
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            ssh_processes_of_run(&run_dir),
            Vec::<String>::new(),
            "close_all ended it"
        );
    });
    drop(listener);
}

#[test]
fn the_users_own_ssh_config_still_applies() {
    let hosts = start_hosts(TestHostsBuilder::new().hosts(1));
    let host = &hosts.hosts()[0];
    // The inventory names no user and no key: the user's config for the real address does.
    let user_config = hosts.dir().join("user_ssh_config");
    std::fs::write(
        &user_config,
        format!(
            "Host {}\n  User {TEST_USER}\n  IdentityFile {}\n",
            host.addr,
            hosts.client_key().display()
        ),
    )
    .expect("write");
    let spec = SshHost {
        user: None,
        identity_file: None,
        ..ssh_host(&hosts, host)
    };
    let options = mop_push::ssh::SshPoolOptions {
        includes: mop_push::ssh::ConfigIncludes {
            user_config: Some(user_config),
            system_config: None,
        },
        ..mop_push::ssh::SshPoolOptions::default()
    };
    run("userconfig", async {
        let pool = SshPool::with_options(&[spec], &agent_path(), &options).expect("pool");
        let facts = hello(&pool, "host1", &agent_options("userconfig")).await;
        assert_eq!(facts, Ok((TEST_USER.to_string(), uid_of(TEST_USER))));
        pool.cleanup("host1").await.expect("cleanup");
        close(pool).await;
    });
}
