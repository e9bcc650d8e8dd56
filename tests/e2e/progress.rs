//! What an operator sees: the live progress on a real pseudo-terminal (`script` gives `mop` a
//! pty; `vt100` turns what the pty received into the screen) for a normal run, a serial
//! rollout, a failure and a Ctrl-C; none of it on a pipe or with `--json`; and what `-v` and
//! `-vv` add.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mop_testhosts::{TestHostsBuilder, TEST_SUDO_PASSWORD, TEST_SUDO_PASSWORD_USER};

use crate::support::{
    assert_not_leaked, mop_binary, repo_root, require_agent, run_mop, send_signal, wait_until,
    Sandbox,
};

/// A role whose steps take long enough to be seen running.
const SLOW_POLICY: &str = r#"
[[roles]]
name = "slow"
groups = ["web"]
@SERIAL@

[[roles.resources]]
type = "shell"
cmd = "sleep 1"

[[roles.resources]]
type = "echo"
msg = "done on {{ host.name }}"
"#;

/// `script` running `mop ARGS` on a pseudo-terminal of `columns` x `rows`; mop replaces the
/// shell (`exec`), so it is `script`'s child.
fn pty_command(args: &[&std::ffi::OsStr], columns: u16, rows: u16) -> Command {
    require_agent();
    let mut command_line = format!("stty cols {columns} rows {rows}; exec");
    for arg in std::iter::once(mop_binary().as_os_str()).chain(args.iter().copied()) {
        let text = arg.to_str().expect("test paths are utf-8");
        assert!(!text.contains('\''), "no quote in test arguments: {text}");
        command_line.push_str(&format!(" '{text}'"));
    }
    let mut command = Command::new("script");
    command
        .args(["-q", "-e", "-f", "-c", &command_line, "/dev/null"])
        .current_dir(repo_root())
        .env_remove("MOP_AGENT_BIN")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null());
    command
}

/// What `mop ARGS` wrote to a terminal of `columns` x `rows`: the raw bytes (every frame of
/// the live view) and its exit code.
fn run_in_pty(args: &[&std::ffi::OsStr], columns: u16, rows: u16) -> (Vec<u8>, i32) {
    let output = pty_command(args, columns, rows)
        .output()
        .expect("run `script` (util-linux): it gives mop a pseudo-terminal");
    (output.stdout, output.status.code().unwrap_or(-1))
}

/// The screen after the run, as the operator reads it: trailing blanks dropped, times
/// normalised.
fn final_screen(raw: &[u8], columns: u16, rows: u16) -> String {
    let mut parser = vt100::Parser::new(rows, columns, 0);
    parser.process(raw);
    let contents = parser.screen().contents();
    // The dev agent's "dynamically linked" warning names this checkout and its glibc.
    let mut in_agent_warning = false;
    let mut lines: Vec<String> = contents
        .lines()
        .filter(|line| {
            if line.starts_with("warning: the agent ") {
                in_agent_warning = true;
                return false;
            }
            let keep = !(in_agent_warning && line.starts_with("  hint: use a static agent"));
            in_agent_warning = false;
            keep
        })
        .map(|line| normalise_times(line.trim_end()))
        .map(|line| match line.find("to retry: written to ") {
            // The retry file's line names the test's temporary directory.
            Some(at) if line.contains("/tmp/mop-e2e-") => {
                format!("{}to retry: written to [retry file]", &line[..at])
            }
            _ => line,
        })
        .collect();
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines.join("\n")
}

/// Hosts work in parallel: the change lines of a role (indented by two) come in any order
/// between hosts, so each run of them is sorted (only for runs without deeper lines).
fn sort_change_lines(screen: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut block: Vec<String> = Vec::new();
    for line in screen.lines().chain(std::iter::once("")) {
        if line.starts_with("  ") {
            block.push(line.to_string());
            continue;
        }
        block.sort();
        out.append(&mut block);
        out.push(line.to_string());
    }
    out.pop();
    out.join("\n")
}

fn normalise_times(line: &str) -> String {
    match line.strip_prefix("elapsed ") {
        Some(rest) => {
            let mode = rest.find(' ').map_or("", |at| &rest[at..]);
            format!("elapsed [time]{mode}")
        }
        None => line.to_string(),
    }
}

fn slow_sandbox(label: &str, hosts: usize, serial: Option<usize>) -> (Sandbox, std::path::PathBuf) {
    let sandbox = Sandbox::start(label, TestHostsBuilder::new().hosts(hosts).group("web"));
    let serial = serial.map_or(String::new(), |size| format!("serial = {size}"));
    let policy = sandbox.policy("slow", &SLOW_POLICY.replace("@SERIAL@", &serial));
    (sandbox, policy)
}

fn pty_push(
    sandbox: &Sandbox,
    policy: &Path,
    extra: &[&str],
    columns: u16,
    rows: u16,
) -> (String, String, i32) {
    let args = sandbox.push_args(policy, extra);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|arg| arg.as_os_str()).collect();
    let (raw, exit) = run_in_pty(&args, columns, rows);
    let screen = final_screen(&raw, columns, rows);
    (String::from_utf8_lossy(&raw).into_owned(), screen, exit)
}

#[test]
fn a_terminal_shows_each_host_on_its_resource_then_the_change_lines() {
    let (sandbox, policy) = slow_sandbox("progress", 2, None);
    for columns in [80, 200] {
        let (raw, screen, exit) = pty_push(
            &sandbox,
            &policy,
            &["--apply", "--color", "never"],
            columns,
            40,
        );
        assert_eq!(exit, 0, "{screen}");
        // While it ran: the role line with counts, and each host on its resource.
        assert!(raw.contains("role slow  "), "{raw:?}");
        assert!(raw.contains("running 2/2"), "{raw:?}");
        assert!(raw.contains("  host1  shell sleep 1  "), "{raw:?}");
        assert!(raw.contains("  host2  shell sleep 1  "), "{raw:?}");
        // After it: the live lines are gone, the change lines and the summary stay.
        assert!(!screen.contains("running"), "{screen}");
        insta::assert_snapshot!(
            format!("progress_normal_{columns}"),
            sort_change_lines(&screen)
        );
    }
}

#[test]
fn a_serial_rollout_counts_its_batches_and_aggregates_what_does_not_fit() {
    let (sandbox, policy) = slow_sandbox("progress-serial", 6, Some(3));
    // 10 rows leave room for 3 host lines; the 3 hosts of a batch fit, 6 do not.
    let (raw, screen, exit) = pty_push(&sandbox, &policy, &["--apply", "--color", "never"], 80, 10);
    assert_eq!(exit, 0, "{screen}");
    assert!(raw.contains("batch 1/2"), "{raw:?}");
    assert!(raw.contains("batch 2/2"), "{raw:?}");
    let (raw, _, exit) = pty_push(
        &sandbox,
        &policy,
        &["--apply", "--color", "never", "--serial", "6"],
        80,
        10,
    );
    assert_eq!(exit, 0);
    assert!(raw.contains("... and 3 more hosts running"), "{raw:?}");
    // The serial run's final screen on a taller terminal, where all of it fits.
    let (_, screen, _) = pty_push(&sandbox, &policy, &["--apply", "--color", "never"], 80, 40);
    insta::assert_snapshot!("progress_serial_80", sort_change_lines(&screen));
}

#[test]
fn a_failure_on_a_terminal_ends_with_the_failure_and_the_summary() {
    let sandbox = Sandbox::start(
        "progress-fail",
        TestHostsBuilder::new().hosts(1).group("web"),
    );
    let policy = sandbox.policy(
        "fail",
        r#"
[[roles]]
name = "broken"
groups = ["web"]

[[roles.resources]]
type = "shell"
cmd = "echo oops >&2; exit 3"
"#,
    );
    let (raw, screen, exit) = pty_push(&sandbox, &policy, &["--apply", "--color", "never"], 80, 40);
    assert_eq!(exit, 1, "{screen}");
    assert!(raw.contains("role broken  "), "{raw:?}");
    insta::assert_snapshot!("progress_failure_80", screen);
}

#[test]
fn ctrl_c_on_a_terminal_leaves_the_interrupted_hosts_and_the_summary() {
    let sandbox = Sandbox::start(
        "progress-ctrl-c",
        TestHostsBuilder::new().hosts(2).group("web"),
    );
    let policy = sandbox.policy(
        "sleepy",
        r#"
[[roles]]
name = "sleepy"
groups = ["web"]

[[roles.resources]]
type = "shell"
cmd = "sleep 60"

[[roles.resources]]
type = "echo"
msg = "never reached on {{ host.name }}"
"#,
    );
    let (columns, rows) = (80, 40);
    let args = sandbox.push_args(&policy, &["--apply", "--color", "never"]);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|arg| arg.as_os_str()).collect();
    let mut script = pty_command(&args, columns, rows)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run `script` (util-linux): it gives mop a pseudo-terminal");
    let raw = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let raw = Arc::clone(&raw);
        let mut stdout = script.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(read @ 1..) = stdout.read(&mut chunk) {
                raw.lock()
                    .expect("not poisoned")
                    .extend_from_slice(&chunk[..read]);
            }
        })
    };
    let shown =
        |needle: &str| String::from_utf8_lossy(&raw.lock().expect("not poisoned")).contains(needle);
    // Both hosts on the slow step, as the live view shows them.
    let running = wait_until(Duration::from_secs(60), || {
        shown("  host1  shell sleep 60  ") && shown("  host2  shell sleep 60  ")
    });
    // mop replaced the shell `script` started: it is the process running the binary.
    let mop = crate::support::processes_matching(&policy.display().to_string())
        .into_iter()
        .find(|(_, cmdline)| cmdline.starts_with(&mop_binary().display().to_string()));
    let Some((pid, _)) = mop.filter(|_| running) else {
        let _ = script.kill();
        let _ = script.wait();
        let _ = reader.join();
        panic!(
            "the live view never showed both hosts sleeping:\n{}",
            String::from_utf8_lossy(&raw.lock().expect("not poisoned"))
        );
    };
    send_signal(pid, "-INT");
    let ended = wait_until(Duration::from_secs(30), || {
        matches!(script.try_wait(), Ok(Some(_)))
    });
    if !ended {
        let _ = script.kill();
    }
    let status = script.wait().expect("wait for `script`");
    reader.join().expect("the reader thread ends with the pty");
    let raw = raw.lock().expect("not poisoned").clone();
    let screen = final_screen(&raw, columns, rows);
    assert!(ended, "mop was still running 30 s after SIGINT:\n{screen}");
    assert_eq!(status.code(), Some(130), "{screen}");
    // After it: no live line is left, each host says it was interrupted.
    assert!(!screen.contains("running"), "{screen}");
    for host in ["host1", "host2"] {
        assert!(
            screen
                .lines()
                .any(|line| line.contains(host) && line.contains("interrupted")),
            "{host} is not shown interrupted:\n{screen}"
        );
    }
    insta::assert_snapshot!("progress_ctrl_c_80", sort_change_lines(&screen));
    sandbox.assert_hosts_clean();
}

#[test]
fn a_pipe_or_json_gets_no_progress_and_no_escape_codes() {
    let (sandbox, policy) = slow_sandbox("progress-pipe", 1, None);
    let text = sandbox.push_text(&policy, &["--apply"]);
    let json = run_mop(sandbox.push_args(&policy, &["--apply", "--json"]));
    for (what, output) in [("text", &text), ("json", &json)] {
        for stream in [&output.stdout, &output.stderr] {
            assert!(!stream.contains('\x1b'), "{what}: {}", output.describe());
            assert!(
                !stream.contains("running 1/1"),
                "{what}: {}",
                output.describe()
            );
        }
    }
    // `TERM=dumb` on a terminal: output as on a pipe.
    let args = sandbox.push_args(&policy, &["--apply", "--color", "never"]);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|arg| arg.as_os_str()).collect();
    let mut command_line = String::from("TERM=dumb exec");
    for arg in std::iter::once(mop_binary().as_os_str()).chain(args) {
        command_line.push_str(&format!(" '{}'", arg.to_string_lossy()));
    }
    let dumb = Command::new("script")
        .args(["-q", "-e", "-c", &command_line, "/dev/null"])
        .current_dir(repo_root())
        .env_remove("MOP_AGENT_BIN")
        .output()
        .expect("run `script`");
    let dumb = String::from_utf8_lossy(&dumb.stdout);
    assert!(!dumb.contains('\x1b'), "{dumb:?}");
    assert!(dumb.contains("host1  echo  done on host1"), "{dumb:?}");
}

#[test]
fn verbose_shows_command_output_and_very_verbose_the_connection_steps() {
    let sandbox = Sandbox::start_as(
        "verbose",
        TestHostsBuilder::new().hosts(1).group("web"),
        TEST_SUDO_PASSWORD_USER,
    );
    sandbox.set_inventory_extra(
        "",
        &format!(
            "[groups.web.vars]\nmop_ssh_username = \"{TEST_SUDO_PASSWORD_USER}\"\nmop_sudo = true\nmop_sudo_password = \"{TEST_SUDO_PASSWORD}\"\n"
        ),
    );
    let policy = sandbox.policy(
        "talk",
        r#"
[[roles]]
name = "talk"
groups = ["web"]

[[roles.resources]]
type = "shell"
cmd = "echo hello; echo warn >&2; seq 1 60"
"#,
    );
    let quiet = sandbox.push_text(&policy, &["--apply"]);
    assert!(
        !quiet.stdout.contains("stdout: hello"),
        "{}",
        quiet.describe()
    );

    let verbose = sandbox.push_text(&policy, &["--apply", "-v"]);
    assert_eq!(verbose.exit, 0, "{}", verbose.describe());
    let lines: Vec<&str> = verbose.stdout.lines().collect();
    assert!(
        lines.contains(&"      host1 stdout: hello"),
        "{}",
        verbose.describe()
    );
    assert!(
        lines.contains(&"      host1 stderr: warn"),
        "{}",
        verbose.describe()
    );
    assert!(
        lines.contains(&"      host1 stdout: 49"),
        "{}",
        verbose.describe()
    );
    assert!(
        !lines.contains(&"      host1 stdout: 50"),
        "{}",
        verbose.describe()
    );
    assert!(
        lines.contains(&"      host1 stdout: ... 11 more lines not shown (--json has them all)"),
        "{}",
        verbose.describe()
    );
    assert!(
        !verbose.stderr.contains("] ssh: "),
        "{}",
        verbose.describe()
    );

    let steps = sandbox.push_text(&policy, &["--apply", "-vv"]);
    assert_eq!(steps.exit, 0, "{}", steps.describe());
    let stderr = &steps.stderr;
    assert!(
        stderr.contains("[host1] ssh: ssh -F "),
        "{}",
        steps.describe()
    );
    assert!(
        stderr.contains("StrictHostKeyChecking"),
        "{}",
        steps.describe()
    );
    // The first run of this test uploaded the agent; this one uses the cached copy.
    assert!(
        stderr.contains("[host1] agent: upload skipped: agent "),
        "{}",
        steps.describe()
    );
    assert!(
        stderr.contains("[host1] sudo: agent started with `sudo -S -k -p ''"),
        "{}",
        steps.describe()
    );
    assert!(
        stderr.contains("the sudo password is sent on stdin, never shown"),
        "{}",
        steps.describe()
    );
    assert_not_leaked(TEST_SUDO_PASSWORD, "-vv stderr", stderr);
    assert_not_leaked(TEST_SUDO_PASSWORD, "-vv stdout", &steps.stdout);

    // A fresh agent directory: the agent is sent, and -vv says so.
    let fresh = sandbox.push_text(&policy, &["--apply", "-vv", "--no-agent-cache"]);
    assert!(
        fresh.stderr.contains("[host1] agent: sent agent "),
        "{}",
        fresh.describe()
    );
}
