//! Helpers for the end-to-end tests: running the real `mop` binary, per-test sandboxes of real
//! sshd hosts with their inventory and policies, JSON-lines parsing and file-tree snapshots.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mop_testhosts::{TestHost, TestHosts, TestHostsBuilder, TEST_USER};
use serde_json::Value;

/// No single `mop` invocation in these tests should come anywhere near this; it only keeps a
/// hung run from hanging the whole suite.
pub const MOP_DEADLINE: Duration = Duration::from_secs(120);

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// A name no other test (in this process or a concurrent one) uses.
pub fn unique_name(label: &str) -> String {
    let number = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("{label}-{}-{number}", std::process::id())
}

/// The repository root: the working directory of every `mop` invocation.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// The `mop` binary cargo built for this test target.
pub fn mop_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mop"))
}

/// `mop` finds `mop-agent` next to itself; cargo does not build it for this test target.
pub fn require_agent() {
    let agent = mop_binary().with_file_name("mop-agent");
    assert!(
        agent.is_file(),
        "`{}` is missing: the end-to-end tests run the real agent, build it first with \
         `cargo build -p mop-agent` (or `cargo build -p mop -p mop-agent`)",
        agent.display()
    );
}

/// A `mop` command run from the repository root, without colours, with a fixed help width and
/// the agent next to the binary (never a `MOP_AGENT_BIN` from the environment).
pub fn mop() -> Command {
    require_agent();
    let mut command = Command::new(mop_binary());
    command
        .current_dir(repo_root())
        .env_remove("MOP_AGENT_BIN")
        .env_remove("CLICOLOR_FORCE")
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .stdin(Stdio::null());
    command
}

/// What a finished command printed and how it exited.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit code (128 + signal when killed by a signal).
    pub exit: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Both streams, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.exit, self.stdout, self.stderr
        )
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A spawned command whose output is collected in the background.
pub struct Running {
    pub child: Child,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

fn collect(stream: Option<impl Read + Send + 'static>) -> Option<JoinHandle<String>> {
    stream.map(|mut stream| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stream.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    })
}

impl Running {
    pub fn spawn(command: &mut Command) -> Running {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        let stdout = collect(child.stdout.take());
        let stderr = collect(child.stderr.take());
        Running {
            child,
            stdout,
            stderr,
        }
    }

    /// The exit status if the command ended within `limit`; `None` (still running) otherwise.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() >= deadline => return None,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(error) => panic!("cannot wait for the command: {error}"),
            }
        }
    }

    /// Waits up to `limit`; kills the command and panics with its output if it takes longer.
    pub fn finish(mut self, limit: Duration) -> Output {
        let status = self.wait_for(limit);
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let stdout = self
            .stdout
            .take()
            .map(|handle| handle.join().unwrap_or_default())
            .unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .map(|handle| handle.join().unwrap_or_default())
            .unwrap_or_default();
        match status {
            Some(status) => Output {
                exit: exit_code(status),
                stdout,
                stderr,
            },
            None => panic!(
                "command did not finish within {limit:?}; killed it\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
            ),
        }
    }
}

/// Runs a command to completion (at most [`MOP_DEADLINE`]).
pub fn run(command: &mut Command) -> Output {
    Running::spawn(command).finish(MOP_DEADLINE)
}

/// Runs `mop ARGS` from the repository root.
pub fn run_mop<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(mop().args(args))
}

/// A `--json` run: the exit code and every JSON line of stdout.
#[derive(Debug, Clone)]
pub struct JsonRun {
    pub exit: i32,
    pub events: Vec<Value>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `mop ARGS --json` (adding `--json` when missing) and parses every stdout line.
pub fn run_json<I, S>(args: I) -> JsonRun
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut args: Vec<std::ffi::OsString> = args
        .into_iter()
        .map(|arg| arg.as_ref().to_owned())
        .collect();
    if !args.iter().any(|arg| arg == "--json") {
        args.push("--json".into());
    }
    parse_json_run(run(mop().args(&args)))
}

/// Parses a finished `--json` run's stdout; every line must be a JSON object.
pub fn parse_json_run(output: Output) -> JsonRun {
    let events = output
        .stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap_or_else(|error| {
                panic!(
                    "stdout line is not JSON ({error}): {line}\n{}",
                    output.describe()
                )
            })
        })
        .collect();
    JsonRun {
        exit: output.exit,
        events,
        stdout: output.stdout,
        stderr: output.stderr,
    }
}

impl JsonRun {
    pub fn describe(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.exit, self.stdout, self.stderr
        )
    }

    /// Panics with the whole output unless the run exited with `expected`.
    pub fn assert_exit(&self, expected: i32) -> &Self {
        assert_eq!(
            self.exit,
            expected,
            "unexpected exit code\n{}",
            self.describe()
        );
        self
    }

    /// The final `{"summary": ...}` object, which must be the last line.
    pub fn summary(&self) -> &Value {
        let last = self
            .events
            .last()
            .unwrap_or_else(|| panic!("no JSON output\n{}", self.describe()));
        last.get("summary")
            .unwrap_or_else(|| panic!("the last line is not the summary\n{}", self.describe()))
    }

    /// One host's totals in the summary.
    pub fn host_summary(&self, host: &str) -> &Value {
        self.summary()["hosts"]
            .get(host)
            .unwrap_or_else(|| panic!("host `{host}` is not in the summary\n{}", self.describe()))
    }

    /// The hosts of the summary, in its order.
    pub fn summary_hosts(&self) -> Vec<String> {
        self.summary()["hosts"]
            .as_object()
            .unwrap_or_else(|| panic!("summary.hosts is not an object\n{}", self.describe()))
            .keys()
            .cloned()
            .collect()
    }

    /// Events with `"event": kind`.
    pub fn events_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events
            .iter()
            .filter(move |event| event["event"] == kind)
    }

    /// Resource events of one host.
    pub fn resources_of<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events_of("resource")
            .filter(move |event| event["host"] == host)
    }

    /// Resource events with this status (`ok`, `changed`, `failed`, `skipped`).
    pub fn with_status<'a>(&'a self, status: &'a str) -> Vec<&'a Value> {
        self.events_of("resource")
            .filter(|event| event["status"] == status)
            .collect()
    }

    /// Every host named by any event (resource, note, role_done, host_failed).
    pub fn event_hosts(&self) -> BTreeSet<String> {
        self.events
            .iter()
            .filter_map(|event| event.get("host").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    }

    /// A numeric field of a host's summary totals.
    pub fn total(&self, host: &str, field: &str) -> u64 {
        self.host_summary(host)[field].as_u64().unwrap_or_else(|| {
            panic!(
                "summary of `{host}` has no number `{field}`\n{}",
                self.describe()
            )
        })
    }
}

/// The name of a uid, from /etc/passwd.
fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() > 2 && fields[2] == uid.to_string()).then(|| fields[0].to_owned())
        })
        .unwrap_or_else(|| uid.to_string())
}

/// 64-bit FNV-1a: enough to tell binary contents apart in a snapshot.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Every path under `dir` (sorted), with its type, mode, owner and, for files, the content (text
/// verbatim, binary as length and hash). `dir` itself is written `[ROOT]` wherever it appears,
/// so snapshots do not depend on the temporary directory's name.
pub fn tree_snapshot(dir: &Path) -> String {
    let root_text = dir.to_string_lossy().into_owned();
    let mut lines = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut paths = Vec::new();
    while let Some(current) = stack.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(error) => panic!("cannot list `{}`: {error}", current.display()),
        };
        for entry in entries {
            let path = entry.expect("a readable directory entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("an entry that exists");
            if meta.is_dir() {
                stack.push(path.clone());
            }
            paths.push(path);
        }
    }
    paths.sort();
    for path in paths {
        let relative = path
            .strip_prefix(dir)
            .expect("walked paths are under the root")
            .to_string_lossy()
            .into_owned();
        let meta = std::fs::symlink_metadata(&path).expect("an entry that exists");
        let mode = meta.mode() & 0o7777;
        let owner = user_name(meta.uid());
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).expect("a readable link");
            let target = target.to_string_lossy().replace(&root_text, "[ROOT]");
            lines.push(format!("link {relative} -> {target}"));
        } else if meta.is_dir() {
            lines.push(format!("dir  {relative}/ {mode:04o} {owner}"));
        } else {
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|error| panic!("cannot read `{}`: {error}", path.display()));
            lines.push(format!(
                "file {relative} {mode:04o} {owner} ({} bytes)",
                bytes.len()
            ));
            match std::str::from_utf8(&bytes) {
                Ok(text) if !text.contains('\0') => {
                    for line in text.replace(&root_text, "[ROOT]").split_inclusive('\n') {
                        let shown = line.strip_suffix('\n').unwrap_or(line);
                        let marker = if line.ends_with('\n') {
                            ""
                        } else {
                            " [no newline]"
                        };
                        lines.push(format!("     | {shown}{marker}"));
                    }
                }
                _ => lines.push(format!("     | <binary, fnv1a {:016x}>", fnv1a(&bytes))),
            }
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Sets a path's permission bits.
pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|error| panic!("cannot chmod `{}`: {error}", path.display()));
}

/// Processes (other than this one) whose command line contains `needle`, as (pid, command line).
pub fn processes_matching(needle: &str) -> Vec<(u32, String)> {
    let own = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(needle) {
            // Zombies have an empty cmdline, so anything found here is alive.
            found.push((pid, cmdline.trim_end().to_owned()));
        }
    }
    found
}

/// ssh processes started for a mop run whose run directory is gone: mop exited and left them.
/// Every ssh mop starts reads the run's config, `-F /tmp/mop-XXXXXX/...`, and the run directory
/// is removed at the end, so a live ssh naming a missing one outlived its run. (Runs still in
/// progress in parallel tests have their directory; persisted masters use their own config
/// outside `/tmp/mop-XXXXXX/`.)
pub fn orphaned_ssh_processes() -> Vec<(u32, String)> {
    processes_matching("ssh")
        .into_iter()
        .filter(|(_, cmdline)| {
            let mut words = cmdline.split(' ');
            let first = words.next().unwrap_or_default();
            if !(first == "ssh" || first.ends_with("/ssh")) {
                return false;
            }
            let mut words = cmdline.split(' ').skip_while(|word| *word != "-F").skip(1);
            let Some(config) = words.next() else {
                return false;
            };
            let Some(rest) = config.strip_prefix("/tmp/mop-") else {
                return false;
            };
            let run_dir = format!("/tmp/mop-{}", rest.split('/').next().unwrap_or_default());
            !Path::new(&run_dir).exists()
        })
        .collect()
}

/// Fails when a mop run left ssh processes behind (see [`orphaned_ssh_processes`]).
pub fn assert_no_orphaned_ssh() {
    // Processes exit asynchronously after `ssh -O exit`: give them a moment.
    let mut left = orphaned_ssh_processes();
    for _ in 0..20 {
        if left.is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        left = orphaned_ssh_processes();
    }
    panic!("ssh processes outlived their mop run: {left:?}");
}

/// The process group of `pid`, from `/proc/PID/stat` (the command name may contain spaces and
/// parentheses, so fields are counted after the last `)`).
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(2)?.parse().ok()
}

/// Sends `signal` (e.g. `-INT`, `-KILL`) to one process, by pid, with kill(1).
pub fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Polls `condition` every 100 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes the test hosts' inventory (`inventory.toml`) and this test's additions
/// (`zz-test.toml`: the agent directory and `all_vars` lines under `[groups.all.vars]`, then
/// `tables`) into `dir`, which `mop -i DIR` reads in name order.
pub fn write_inventory(
    dir: &Path,
    hosts: &TestHosts,
    agent_dir: &str,
    all_vars: &str,
    tables: &str,
) {
    std::fs::create_dir_all(dir).expect("create the inventory directory");
    hosts
        .write_inventory(&dir.join("inventory.toml"))
        .unwrap_or_else(|error| panic!("cannot write the test hosts' inventory: {error}"));
    let mut text = format!("[groups.all.vars]\nmop_agent_dir = \"{agent_dir}\"\n");
    text.push_str(all_vars);
    if !all_vars.is_empty() && !all_vars.ends_with('\n') {
        text.push('\n');
    }
    if !tables.is_empty() {
        text.push('\n');
        text.push_str(tables);
        text.push('\n');
    }
    std::fs::write(dir.join("zz-test.toml"), text).expect("write zz-test.toml");
}

/// Writes `template` to `path` with every `@KEY@` replaced by its value; leaves minijinja's
/// `{{ ... }}` alone for mop.
pub fn write_policy(path: &Path, template: &str, substitutions: &[(&str, String)]) {
    let mut text = template.to_owned();
    for (key, value) in substitutions {
        text = text.replace(&format!("@{key}@"), value);
    }
    assert!(
        !text.contains("@OUT@") && !text.contains("@LOG@") && !text.contains("@AGENT_DIR@"),
        "unsubstituted placeholder in policy:\n{text}"
    );
    std::fs::write(path, text)
        .unwrap_or_else(|error| panic!("cannot write `{}`: {error}", path.display()));
}

/// One test's world: real sshd hosts, a private directory for the inventory and policies, a
/// world-writable `out` directory for per-host effects (the ssh user is not root), a hook log,
/// and an agent directory no other test uses.
pub struct Sandbox {
    pub hosts: TestHosts,
    /// `dir/inventory`: the inventory directory given to `-i`.
    pub inventory: PathBuf,
    /// World-writable; policies put `{{ host.name }}` in paths under it.
    pub out: PathBuf,
    /// A world-writable file hooks and resources append lines to.
    pub log: PathBuf,
    /// `mop_agent_dir` for every host of this test.
    pub agent_dir: String,
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// Starts hosts and writes the inventory, logging in as [`TEST_USER`].
    pub fn start(label: &str, builder: TestHostsBuilder) -> Sandbox {
        Sandbox::start_as(label, builder, TEST_USER)
    }

    /// Starts hosts; the agent directory lives in `login_user`'s home.
    pub fn start_as(label: &str, builder: TestHostsBuilder, login_user: &str) -> Sandbox {
        require_agent();
        let hosts = builder.start().unwrap_or_else(|error| {
            panic!("cannot start the test sshd hosts (these tests need root, sshd and ssh-keygen): {error}")
        });
        let dir = tempfile::Builder::new()
            .prefix(&format!("mop-e2e-{label}-"))
            .tempdir()
            .expect("create the test directory");
        // The agent runs as the ssh user: it must reach `out` and the log.
        chmod(dir.path(), 0o755);
        let out = dir.path().join("out");
        std::fs::create_dir(&out).expect("create out/");
        chmod(&out, 0o777);
        let log = dir.path().join("log.txt");
        std::fs::write(&log, "").expect("create the log");
        chmod(&log, 0o666);
        let agent_dir = format!("/home/{login_user}/.mop-e2e-{}", unique_name(label));
        let inventory = dir.path().join("inventory");
        write_inventory(&inventory, &hosts, &agent_dir, "", "");
        Sandbox {
            hosts,
            inventory,
            out,
            log,
            agent_dir,
            dir,
        }
    }

    /// The test's private directory (policies live here; retry files land here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Rewrites this test's inventory additions (see [`write_inventory`]).
    pub fn set_inventory_extra(&self, all_vars: &str, tables: &str) {
        write_inventory(
            &self.inventory,
            &self.hosts,
            &self.agent_dir,
            all_vars,
            tables,
        );
    }

    /// Writes a policy `NAME.toml` into the test directory; `@OUT@`, `@LOG@`, `@AGENT_DIR@` and
    /// `@DIR@` are replaced by this test's paths.
    pub fn policy(&self, name: &str, template: &str) -> PathBuf {
        let path = self.dir().join(format!("{name}.toml"));
        write_policy(
            &path,
            template,
            &[
                ("OUT", self.out.to_string_lossy().into_owned()),
                ("LOG", self.log.to_string_lossy().into_owned()),
                ("AGENT_DIR", self.agent_dir.clone()),
                ("DIR", self.dir().to_string_lossy().into_owned()),
            ],
        );
        path
    }

    /// The arguments of `mop push POLICY -i INVENTORY` followed by `args`.
    pub fn push_args(&self, policy: &Path, args: &[&str]) -> Vec<std::ffi::OsString> {
        let mut all: Vec<std::ffi::OsString> = vec![
            "push".into(),
            policy.into(),
            "-i".into(),
            self.inventory.clone().into(),
        ];
        all.extend(args.iter().map(Into::into));
        all
    }

    /// `mop push POLICY -i INVENTORY ARGS --json`.
    pub fn push(&self, policy: &Path, args: &[&str]) -> JsonRun {
        let started = Instant::now();
        let run = run_json(self.push_args(policy, args));
        // Shown only when a test fails: where the time went.
        eprintln!(
            "mop push {} {args:?}: exit {} after {:.1}s",
            policy.display(),
            run.exit,
            started.elapsed().as_secs_f64()
        );
        run
    }

    /// `mop push POLICY -i INVENTORY ARGS` without `--json`.
    pub fn push_text(&self, policy: &Path, args: &[&str]) -> Output {
        run_mop(self.push_args(policy, args))
    }

    pub fn host(&self, name: &str) -> &TestHost {
        self.hosts
            .host(name)
            .unwrap_or_else(|| panic!("no test host `{name}`"))
    }

    /// How many logins `name`'s sshd accepted so far.
    pub fn logins(&self, name: &str) -> usize {
        self.host(name)
            .accepted_connections()
            .unwrap_or_else(|error| panic!("cannot read the sshd log of `{name}`: {error}"))
    }

    /// The lines of the log file.
    pub fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .expect("read the log")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The hosts hold nothing of mop's after a run but the agent cache (the default,
    /// `mop_agent_cache = true`): at most one cached agent (`agent-<sha256>`, a private regular
    /// file) in the agent directory and nothing else, no process mentions the directory, and
    /// no ssh process of a finished run is left on this machine.
    pub fn assert_hosts_clean(&self) {
        let left = agent_dir_leftovers(Path::new(&self.agent_dir));
        assert!(
            left.is_empty(),
            "mop left files other than its cached agent in the agent directory `{}` on the hosts: {left:?}",
            self.agent_dir
        );
        let cached = cached_agents(Path::new(&self.agent_dir));
        assert!(
            cached.len() <= 1,
            "more than one cached agent in `{}`: {cached:?}",
            self.agent_dir
        );
        let processes = processes_matching(&self.agent_dir);
        assert!(
            processes.is_empty(),
            "processes of this test's agent directory are still running after mop exited: {processes:?}"
        );
        assert_no_orphaned_ssh();
    }
}

/// The cached agents in `dir`: regular files named `agent-<64 hex digits>`, mode 0700.
pub fn cached_agents(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(is_cached_agent)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Everything in the agent directory `dir` that is not a cached agent (work directories,
/// partial files, ...); empty when `dir` does not exist.
pub fn agent_dir_leftovers(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|entry| !is_cached_agent(entry))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn is_cached_agent(entry: &std::fs::DirEntry) -> bool {
    let name = entry.file_name().to_string_lossy().into_owned();
    let Some(hex) = name.strip_prefix("agent-") else {
        return false;
    };
    let private_file = std::fs::symlink_metadata(entry.path())
        .is_ok_and(|meta| meta.is_file() && meta.mode() & 0o7777 == 0o700);
    hex.len() == 64 && hex.bytes().all(|byte| byte.is_ascii_hexdigit()) && private_file
}

impl Drop for Sandbox {
    /// Whatever a failed assertion left behind on the (shared) hosts is removed, so other runs
    /// never see it.
    fn drop(&mut self) {
        for (pid, _) in processes_matching(&self.agent_dir) {
            // A command the agent ran leads its own process group: take its children with it.
            if process_group(pid) == Some(pid) {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            send_signal(pid, "-KILL");
        }
        let _ = std::fs::remove_dir_all(&self.agent_dir);
    }
}

/// A loopback port nothing listens on: bound, then released.
pub fn closed_port() -> u16 {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    listener
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// Fails unless `text` does not contain `secret`, naming where it leaked.
pub fn assert_not_leaked(secret: &str, what: &str, text: &str) {
    assert!(
        !text.contains(secret),
        "the secret appears in {what}:\n{text}"
    );
}

/// A policy whose one resource writes `@OUT@/<host>.txt` on each host of group `web`: the
/// proof that a host was reached (replace `@OUT@` with a directory of the test's own).
pub const MARK_POLICY: &str = r#"
[[roles]]
name = "mark"
groups = ["web"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}.txt"
content = "reached {{ host.name }}\n"
"#;
