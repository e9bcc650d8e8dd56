//! `mop run`, `mop upload`, `mop download` and `mop transfer` against real loopback sshd hosts:
//! per-host output and exit codes, parallel and serial runs, templates, timeouts that kill the
//! remote process, via-chains, download naming, skip-on-match uploads and remote-to-remote
//! copies, and the errors for bad targets.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use mop_testhosts::{BastionLayout, TestHostsBuilder};
use serde_json::Value;

use crate::support::{
    chmod, processes_matching, run_mop, unique_name, wait_until, Output, Sandbox,
};

fn mop_in(sandbox: &Sandbox, args: &[&str]) -> Output {
    let mut all: Vec<OsString> = vec![
        args[0].into(),
        "-i".into(),
        sandbox.inventory.clone().into(),
    ];
    all.extend(args[1..].iter().map(Into::into));
    run_mop(all)
}

fn json_lines(output: &Output) -> Vec<Value> {
    output
        .stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not JSON ({error}): {line}\n{}", output.describe()))
        })
        .collect()
}

fn by_host<'a>(lines: &'a [Value], host: &str) -> &'a Value {
    lines
        .iter()
        .find(|line| line["host"] == host)
        .unwrap_or_else(|| panic!("no object for `{host}` in {lines:?}"))
}

#[test]
fn run_keeps_each_hosts_output_and_exit_code_apart() {
    let sandbox = Sandbox::start("run-output", TestHostsBuilder::new().hosts(3).group("web"));
    sandbox.set_inventory_extra("", "[hosts.host2.vars]\napp_port = 8081\n[hosts.host1.vars]\napp_port = 8080\n[hosts.host3.vars]\napp_port = 8082\n");
    let output = mop_in(
        &sandbox,
        &[
            "run",
            "web",
            "--json",
            "--env",
            "GREETING=hi there",
            "--",
            "echo \"$GREETING {{ app_port }}\"; echo to-stderr-{{ host.name }} >&2; [ {{ host.name }} != host2 ] || exit 7",
        ],
    );
    assert_eq!(output.exit, 1, "{}", output.describe());
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 3, "{}", output.describe());
    for (host, port, code) in [("host1", 8080, 0), ("host2", 8081, 7), ("host3", 8082, 0)] {
        let line = by_host(&lines, host);
        assert_eq!(line["exit_code"], code, "{line}");
        assert_eq!(line["stdout"], format!("hi there {port}\n"), "{line}");
        assert_eq!(line["stderr"], format!("to-stderr-{host}\n"), "{line}");
        assert!(line["elapsed_secs"].as_f64().is_some(), "{line}");
    }
    assert!(
        output
            .stderr
            .contains("3 hosts: 2 succeeded, 1 failed: host2 (exit 7)"),
        "{}",
        output.describe()
    );

    // Grouped text output: every host's block, the failing one included.
    let text = mop_in(
        &sandbox,
        &["run", "web", "--", "echo out; echo err >&2; exit 0"],
    );
    assert_eq!(text.exit, 0, "{}", text.describe());
    for host in ["host1", "host2", "host3"] {
        assert!(
            text.stdout.contains(&format!("=== {host}: exit 0")),
            "{}",
            text.describe()
        );
        assert!(
            text.stdout.contains(&format!("--- {host} stderr\nerr\n")),
            "{}",
            text.describe()
        );
    }

    // Streamed: lines prefixed with the host, stdout and stderr on their own streams.
    let stream = mop_in(
        &sandbox,
        &["run", "host1", "--stream", "--", "echo out; echo err >&2"],
    );
    assert_eq!(stream.exit, 0, "{}", stream.describe());
    assert_eq!(stream.stdout, "host1 | out\n", "{}", stream.describe());
    assert!(
        stream.stderr.contains("host1 | err\n"),
        "{}",
        stream.describe()
    );
}

/// Each host prints when its command started and ended (host clock = this machine's clock).
fn intervals(output: &Output) -> Vec<(f64, f64)> {
    let mut found: Vec<(f64, f64)> = json_lines(output)
        .iter()
        .map(|line| {
            let text = line["stdout"].as_str().unwrap_or_default();
            let numbers: Vec<f64> = text
                .split_whitespace()
                .filter_map(|word| word.parse().ok())
                .collect();
            assert_eq!(numbers.len(), 2, "{}", output.describe());
            (numbers[0], numbers[1])
        })
        .collect();
    found.sort_by(|left, right| left.0.total_cmp(&right.0));
    found
}

#[test]
fn parallel_runs_overlap_and_serial_runs_do_not() {
    let sandbox = Sandbox::start("run-serial", TestHostsBuilder::new().hosts(3).group("web"));
    // Parallel: a barrier instead of timing (a loaded machine can delay one login past
    // another host's `sleep 1`). The hosts share this machine's /tmp: each command checks in
    // and waits until all three have, so all three can finish only if they ran at once; one
    // run at a time would see 1, then 2, then 3 and give up after its wait.
    let barrier = tempfile::Builder::new()
        .prefix("mop-e2e-barrier-")
        .tempdir()
        .expect("temp dir");
    std::fs::set_permissions(
        barrier.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let wait_for_all = format!(
        "d={}; mktemp -p \"$d\" >/dev/null; i=0; \
         while [ \"$(ls \"$d\" | wc -l)\" -lt 3 ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; \
         ls \"$d\" | wc -l",
        barrier.path().display()
    );
    let parallel = mop_in(&sandbox, &["run", "web", "--json", "--", &wait_for_all]);
    assert_eq!(parallel.exit, 0, "{}", parallel.describe());
    let seen: Vec<String> = json_lines(&parallel)
        .iter()
        .map(|line| {
            line["stdout"]
                .as_str()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .collect();
    assert_eq!(
        seen,
        ["3", "3", "3"],
        "every command must have seen all three running at once: {}",
        parallel.describe()
    );

    let command = "date +%s.%N; sleep 1; date +%s.%N";

    let serial = mop_in(
        &sandbox,
        &["run", "web", "--serial", "--json", "--", command],
    );
    assert_eq!(serial.exit, 0, "{}", serial.describe());
    let spans = intervals(&serial);
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "serial commands overlapped: {spans:?}"
        );
    }
}

#[test]
fn timeout_kills_the_remote_command_and_its_children() {
    let sandbox = Sandbox::start("run-timeout", TestHostsBuilder::new().hosts(1).group("web"));
    let marker = unique_name("sleeper");
    // A background grandchild and a foreground sleep, both carrying the marker.
    let command = format!("sh -c 'sleep 300; : {marker}' & sh -c 'sleep 301; : {marker}'");
    let started = Instant::now();
    let output = mop_in(
        &sandbox,
        &["run", "web", "--json", "--timeout", "1", "--", &command],
    );
    // Well under the commands' 300 s: the timeout, not the command, ended the run (the
    // bound is loose because a loaded machine can take seconds per ssh round trip).
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "{}",
        output.describe()
    );
    assert_eq!(output.exit, 1, "{}", output.describe());
    let lines = json_lines(&output);
    assert_eq!(lines[0]["timed_out"], true, "{}", output.describe());
    assert!(
        lines[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out after 1s"),
        "{}",
        output.describe()
    );
    let gone = wait_until(Duration::from_secs(30), || {
        processes_matching(&marker).is_empty()
    });
    assert!(
        gone,
        "still running on the host: {:?}",
        processes_matching(&marker)
    );
    // The same check with pgrep on the host itself.
    let pgrep = sandbox
        .host("host1")
        // `[x]yz` keeps pgrep from matching the shell that runs it.
        .ssh_command(&format!(
            "pgrep -f '[{}]{}' || echo none",
            &marker[..1],
            &marker[1..]
        ))
        .output()
        .expect("ssh pgrep");
    assert_eq!(String::from_utf8_lossy(&pgrep.stdout).trim(), "none");
}

#[test]
fn sudo_and_local_runs() {
    let sandbox = Sandbox::start("run-sudo", TestHostsBuilder::new().hosts(1).group("web"));
    let output = mop_in(
        &sandbox,
        &["run", "web", "--json", "--sudo", "--", "id -un"],
    );
    assert_eq!(output.exit, 0, "{}", output.describe());
    assert_eq!(json_lines(&output)[0]["stdout"], "root\n");

    let local = run_mop(["run", "--local", "--json", "--", "echo here; exit 4"]);
    assert_eq!(local.exit, 1, "{}", local.describe());
    let lines = json_lines(&local);
    assert_eq!(lines[0]["host"], "localhost");
    assert_eq!(lines[0]["exit_code"], 4);
    assert_eq!(lines[0]["stdout"], "here\n");
}

#[test]
fn ad_hoc_hosts_by_address() {
    let sandbox = Sandbox::start("run-hosts", TestHostsBuilder::new().hosts(1).group("web"));
    let host = sandbox.host("host1");
    let spec = format!("{}@{}:{}", mop_testhosts::TEST_USER, host.addr, host.port);
    let key = sandbox.hosts.client_key().display().to_string();
    let known = sandbox.hosts.known_hosts().display().to_string();
    let output = run_mop([
        "run",
        "--hosts",
        &spec,
        "--ssh-key",
        &key,
        "--known-hosts-file",
        &known,
        "--json",
        "--",
        "whoami",
    ]);
    assert_eq!(output.exit, 0, "{}", output.describe());
    let lines = json_lines(&output);
    assert_eq!(lines[0]["host"], spec.as_str());
    assert_eq!(
        lines[0]["stdout"],
        format!("{}\n", mop_testhosts::TEST_USER)
    );

    let bad = run_mop(["run", "--hosts", "web1:http", "--", "true"]);
    assert_eq!(bad.exit, 2, "{}", bad.describe());
    assert!(
        bad.stderr.contains("invalid host `web1:http` in --hosts"),
        "{}",
        bad.describe()
    );
}

#[test]
fn bad_targets_are_usage_errors() {
    let sandbox = Sandbox::start("run-targets", TestHostsBuilder::new().hosts(1).group("web"));
    let nothing = mop_in(&sandbox, &["run", "db*", "--", "true"]);
    assert_eq!(nothing.exit, 2, "{}", nothing.describe());
    assert!(
        nothing
            .stderr
            .contains("target pattern `db*` matches no group or host"),
        "{}",
        nothing.describe()
    );
    let invalid = mop_in(&sandbox, &["run", "web[", "--", "true"]);
    assert_eq!(invalid.exit, 2, "{}", invalid.describe());
    assert!(invalid.stderr.contains("web["), "{}", invalid.describe());
    let template = mop_in(&sandbox, &["run", "web", "--", "echo {{ no_such_var }}"]);
    assert_eq!(template.exit, 2, "{}", template.describe());
    assert!(
        template
            .stderr
            .contains("host `host1`: cannot render the command"),
        "{}",
        template.describe()
    );
    // An unreachable host fails alone; the others still report.
    let port = crate::support::closed_port();
    sandbox.set_inventory_extra(
        "",
        &format!("[groups.web.hosts]\n\"ghost\" = \"mop_host=127.0.0.1 mop_port={port}\"\n"),
    );
    let output = mop_in(&sandbox, &["run", "web", "--json", "--", "echo ok"]);
    assert_eq!(output.exit, 1, "{}", output.describe());
    let lines = json_lines(&output);
    assert_eq!(by_host(&lines, "host1")["stdout"], "ok\n");
    assert!(by_host(&lines, "ghost")["error"]
        .as_str()
        .unwrap_or_default()
        .contains("ghost"));
}

#[test]
fn run_through_a_via_chain() {
    let sandbox = Sandbox::start(
        "run-via",
        TestHostsBuilder::new()
            .hosts(0)
            .bastion(BastionLayout::new(1, 1)),
    );
    let output = mop_in(
        &sandbox,
        &[
            "run",
            "rack1-101",
            "--json",
            "--",
            "readlink /proc/self/ns/net",
        ],
    );
    assert_eq!(output.exit, 0, "{}", output.describe());
    let namespace = json_lines(&output)[0]["stdout"]
        .as_str()
        .unwrap_or_default()
        .trim()
        .to_string();
    let ours = std::fs::read_link("/proc/self/ns/net").expect("our network namespace");
    assert!(namespace.starts_with("net:["), "{namespace}");
    assert_ne!(
        namespace,
        ours.to_string_lossy(),
        "the command ran in the controller's namespace"
    );
}

fn remote_dir(label: &str) -> String {
    let dir = format!("/tmp/{}", unique_name(label));
    std::fs::create_dir_all(&dir).expect("create the remote directory");
    chmod(Path::new(&dir), 0o777);
    dir
}

#[test]
fn upload_skips_matching_files_and_download_never_collides() {
    let sandbox = Sandbox::start("files", TestHostsBuilder::new().hosts(2).group("web"));
    let remote = remote_dir("mop-upload");
    let local = sandbox.dir().join("app.conf");
    std::fs::write(&local, "port = 80\n").expect("write app.conf");
    let target = format!("{remote}/etc/app.conf");
    let local_arg = local.display().to_string();

    let first = mop_in(
        &sandbox,
        &[
            "upload", "host1", &local_arg, &target, "--mode", "640", "--json",
        ],
    );
    assert_eq!(first.exit, 0, "{}", first.describe());
    assert_eq!(
        json_lines(&first)[0]["bytes_sent"],
        10,
        "{}",
        first.describe()
    );
    assert_eq!(
        std::fs::read_to_string(&target).expect("uploaded"),
        "port = 80\n"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&target).expect("stat").permissions(),
    );
    assert_eq!(mode & 0o777, 0o640);
    let second = mop_in(
        &sandbox,
        &["upload", "host1", &local_arg, &target, "--json"],
    );
    assert_eq!(second.exit, 0, "{}", second.describe());
    let line = &json_lines(&second)[0];
    assert_eq!(line["bytes_sent"], 0, "{line}");
    assert_eq!(line["files_skipped"], 1, "{line}");
    // No staging file is left behind.
    let left: Vec<_> = std::fs::read_dir(format!("{remote}/etc"))
        .expect("list")
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");

    let downloads = sandbox.dir().join("dl");
    let dl = downloads.display().to_string();
    let output = mop_in(&sandbox, &["download", "web", &target, &dl]);
    assert_eq!(output.exit, 0, "{}", output.describe());
    for host in ["host1", "host2"] {
        assert_eq!(
            std::fs::read_to_string(downloads.join(host).join("app.conf")).expect("downloaded"),
            "port = 80\n"
        );
    }
    let output = mop_in(&sandbox, &["download", "web", &target, &dl, "--suffix"]);
    assert_eq!(output.exit, 0, "{}", output.describe());
    for host in ["host1", "host2"] {
        assert!(
            downloads.join(format!("app.conf_{host}")).is_file(),
            "{}",
            output.describe()
        );
    }
    let missing = mop_in(
        &sandbox,
        &["download", "web", &format!("{remote}/nope"), &dl],
    );
    assert_eq!(missing.exit, 1, "{}", missing.describe());
    assert!(
        missing.stdout.contains("does not exist"),
        "{}",
        missing.describe()
    );
    let _ = std::fs::remove_dir_all(&remote);
}

#[test]
fn transfer_copies_between_two_hosts() {
    let sandbox = Sandbox::start("transfer", TestHostsBuilder::new().hosts(2).group("web"));
    let remote = remote_dir("mop-transfer");
    let source = format!("{remote}/source.bin");
    let bytes: Vec<u8> = (0..300_000u32).map(|index| (index % 251) as u8).collect();
    std::fs::write(&source, &bytes).expect("write the source");
    chmod(Path::new(&source), 0o644);
    let target = format!("{remote}/copy/target.bin");
    let output = mop_in(
        &sandbox,
        &[
            "transfer",
            &format!("host1:{source}"),
            &format!("host2:{target}"),
            "--json",
        ],
    );
    assert_eq!(output.exit, 0, "{}", output.describe());
    assert_eq!(json_lines(&output)[0]["bytes_sent"], 300_000);
    assert_eq!(std::fs::read(&target).expect("transferred"), bytes);
    let _ = std::fs::remove_dir_all(&remote);
}

#[test]
fn pty_runs_get_a_terminal_and_help_documents_exit_codes() {
    let sandbox = Sandbox::start("run-pty", TestHostsBuilder::new().hosts(1).group("web"));
    let output = mop_in(
        &sandbox,
        &["run", "web", "--pty", "--json", "--", "tty; exit 3"],
    );
    assert_eq!(output.exit, 1, "{}", output.describe());
    let line = &json_lines(&output)[0];
    assert_eq!(line["exit_code"], 3, "{line}");
    assert!(
        line["stdout"]
            .as_str()
            .unwrap_or_default()
            .starts_with("/dev/pts/"),
        "{line}"
    );

    let help = run_mop(["run", "--help"]);
    assert_eq!(help.exit, 0, "{}", help.describe());
    for needle in [
        "--timeout <SECS>",
        "--hosts <HOSTS>",
        "--serial",
        "Exit status:",
        "2    invalid input",
        "130  interrupted (Ctrl-C)",
    ] {
        assert!(
            help.stdout.contains(needle),
            "`{needle}` missing:\n{}",
            help.stdout
        );
    }
}
