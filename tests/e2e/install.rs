//! The release surface: `--version`, shell completions and man pages, and the README's install
//! command giving one self-contained `mop` that pushes to a real host with no agent file beside
//! it.
//!
//! The install test builds mop the README's way (`cargo install --locked --path crates/mop`),
//! a release build that embeds the static agent. Its target directory is kept under cargo's
//! `CARGO_TARGET_TMPDIR`, so only the first run pays for the whole release build (minutes);
//! later runs rebuild what changed. It is a different target directory from the one running
//! this test, so the nested cargo never waits for this test run's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

use mop_testhosts::TestHostsBuilder;
use sha2::{Digest, Sha256};

use crate::support::{parse_json_run, repo_root, run, run_mop, Running, Sandbox};

/// The whole release build on a loaded 2-core machine takes several minutes.
const INSTALL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(40 * 60);

#[test]
fn version_names_the_version_commit_protocol_and_agents() {
    let output = run_mop(["--version"]);
    assert_eq!(output.exit, 0, "{}", output.describe());
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert_eq!(lines[0], "mop 0.0.0", "{}", output.stdout);
    let commit = lines[1].strip_prefix("commit ").expect("a commit line");
    assert!(
        commit == "unknown"
            || (commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{}",
        output.stdout
    );
    assert!(lines[2].starts_with("protocol "), "{}", output.stdout);
    // The test build is a dev build: it carries no agent and says what it uses instead.
    assert_eq!(
        lines[3..],
        ["agents: none built in (a dev build: mop uses MOP_AGENT_BIN, else mop-agent beside it)"],
        "{}",
        output.stdout
    );
    let short = run_mop(["-V"]);
    assert_eq!(
        short.stdout,
        format!("mop 0.0.0 ({})\n", commit.get(..12).unwrap_or(commit)),
        "{}",
        short.describe()
    );
}

#[test]
fn completions_for_each_shell_mention_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let output = run_mop(["completions", shell]);
        assert_eq!(output.exit, 0, "{shell}: {}", output.describe());
        for subcommand in ["push", "validate", "connections", "completions"] {
            assert!(
                output.stdout.contains(subcommand),
                "{shell} completions lack `{subcommand}`"
            );
        }
    }
    let unknown = run_mop(["completions", "tcsh"]);
    assert_eq!(unknown.exit, 2, "{}", unknown.describe());
}

#[test]
fn man_pages_are_generated_for_every_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run_mop([std::ffi::OsStr::new("man-pages"), dir.path().as_os_str()]);
    assert_eq!(output.exit, 0, "{}", output.describe());
    for page in [
        "mop.1",
        "mop-push.1",
        "mop-completions.1",
        "mop-connections-list.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|error| panic!("{page}: {error}"));
        assert!(text.contains(".TH"), "{page} is not a man page:\n{text}");
    }
    let push = std::fs::read_to_string(dir.path().join("mop-push.1")).expect("read");
    assert!(push.contains("apply") && push.contains("serial"), "{push}");
}

/// Installs mop the README's way into `root` (an empty directory), reusing `target_dir`.
fn install(root: &Path, target_dir: &Path) {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .current_dir(repo_root())
        .args(["install", "--locked", "--path", "crates/mop", "--root"])
        .arg(root)
        .env("CARGO_TARGET_DIR", target_dir)
        // Nothing from the test environment may stand in for the embedded agent.
        .env_remove("MOP_AGENT_BIN")
        .env_remove("MOP_EMBED_AGENT")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    let started = std::time::Instant::now();
    let output = Running::spawn(&mut command).finish(INSTALL_DEADLINE);
    assert_eq!(
        output.exit,
        0,
        "cargo install failed:\n{}",
        output.describe()
    );
    eprintln!(
        "cargo install took {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Every regular file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else if path.is_file() {
            files.push(path);
        }
    }
    files
}

#[test]
fn the_installed_mop_carries_a_static_agent_and_converges_a_host() {
    let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("install-target");
    let root = tempfile::tempdir().expect("tempdir");
    install(root.path(), &target_dir);

    // One file: no agent beside it.
    let bin = root.path().join("bin");
    let installed: Vec<String> = std::fs::read_dir(&bin)
        .expect("the install root has bin/")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(installed, ["mop"], "{}", bin.display());
    let mop = bin.join("mop");

    let version = run(Command::new(&mop).arg("--version"));
    assert_eq!(version.exit, 0, "{}", version.describe());
    let agent_line = version
        .stdout
        .lines()
        .find(|line| line.starts_with("agent x86_64-unknown-linux-gnu sha256:"))
        .unwrap_or_else(|| panic!("no built-in x86_64 agent:\n{}", version.stdout));
    let agent_sha256 = agent_line
        .split_whitespace()
        .nth(2)
        .and_then(|field| field.strip_prefix("sha256:"))
        .expect("agent <target> sha256:<hex> (<n> bytes)")
        .to_string();

    // A real host, with the defaults: the agent stays in the cache, so the test can look at
    // what was uploaded, and the second push sends none of it.
    let sandbox = Sandbox::start("install", TestHostsBuilder::new().hosts(1).group("web"));
    let policy = sandbox.policy(
        "installed",
        r#"
[[roles]]
name = "motd"
groups = ["web"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}.motd"
content = "pushed by an installed mop to {{ host.name }}\n"
"#,
    );
    let push = |args: &[&str]| {
        let mut command = Command::new(&mop);
        command
            .current_dir(sandbox.dir())
            .args(sandbox.push_args(&policy, args))
            .arg("--json")
            .env_remove("MOP_AGENT_BIN")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null());
        parse_json_run(run(&mut command))
    };
    let first = push(&["--apply"]);
    first.assert_exit(0);
    assert_eq!(first.total("host1", "changed"), 1, "{}", first.describe());
    assert!(
        !first.stderr.contains("warning:"),
        "the built-in agent is static: no warning\n{}",
        first.describe()
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.out.join("host1.motd")).expect("converged"),
        "pushed by an installed mop to host1\n"
    );
    let second = push(&["--apply"]);
    second.assert_exit(0);
    assert_eq!(second.total("host1", "changed"), 0, "{}", second.describe());
    assert!(
        first.total("host1", "agent_bytes") > 0,
        "{}",
        first.describe()
    );
    assert_eq!(
        second.total("host1", "agent_bytes"),
        0,
        "the second push uploads nothing\n{}",
        second.describe()
    );

    // What reached the host is the built-in agent, and it is a static executable.
    let uploaded: Vec<Vec<u8>> = files_under(Path::new(&sandbox.agent_dir))
        .into_iter()
        .filter_map(|path| std::fs::read(path).ok())
        .filter(|bytes| sha256_hex(bytes) == agent_sha256)
        .collect();
    assert_eq!(
        uploaded.len(),
        1,
        "the cached agent on the host is the one `mop --version` names ({agent_sha256})"
    );
    let linkage = mop_push::elf::linkage(&uploaded[0]).expect("an ELF executable");
    assert!(linkage.is_static(), "{linkage:?}");
}

#[test]
fn a_host_of_another_architecture_is_refused_naming_it() {
    // sshd runs under `setarch i686`: the kernel tells every session it is an i686 machine,
    // and this mop carries only an x86_64 agent (the dev agent here).
    let sandbox = Sandbox::start(
        "arch",
        TestHostsBuilder::new().hosts(1).group("web").linux32(true),
    );
    let uname = sandbox
        .host("host1")
        .ssh_command("uname -m")
        .output()
        .expect("ssh runs");
    assert_eq!(
        String::from_utf8_lossy(&uname.stdout),
        "i686\n",
        "{uname:?}"
    );
    let policy = sandbox.policy(
        "arch",
        r#"
[[roles]]
name = "motd"
groups = ["web"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}.motd"
content = "never written\n"
"#,
    );
    let output = sandbox.push_text(&policy, &["--apply"]);
    assert_eq!(output.exit, 1, "{}", output.describe());
    let all = format!("{}{}", output.stdout, output.stderr);
    assert!(
        all.contains("host1 runs Linux i686, and this mop carries agents for Linux x86_64 only")
            && all.contains("rustup target add i686-unknown-linux-gnu"),
        "{}",
        output.describe()
    );
    assert!(!sandbox.out.join("host1.motd").exists());
    // Refused before anything was created or uploaded on the host.
    sandbox.assert_hosts_clean();
}
