//! Secrets never leave the controller's memory except to sudo's stdin: hooks, `contact_when`
//! and `mop run` commands that read a secret are refused before any host is contacted, and a
//! real push and a real `mop run` with a sudo password are watched from outside (every
//! process's argv and environment, sampled all through the run) and from their outputs.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use mop_testhosts::{TestHostsBuilder, TEST_SUDO_PASSWORD, TEST_SUDO_PASSWORD_USER};

use crate::support::{assert_not_leaked, run_mop, unique_name, Sandbox};

/// Two hosts in `web` that log in as the user whose sudo needs [`TEST_SUDO_PASSWORD`], set in
/// the inventory (never on mop's command line, which is a process's argv too).
fn sudo_password_sandbox(label: &str) -> Sandbox {
    let sandbox = Sandbox::start_as(
        label,
        TestHostsBuilder::new().hosts(2).group("web"),
        TEST_SUDO_PASSWORD_USER,
    );
    sandbox.set_inventory_extra(
        "",
        &format!(
            "[groups.web.vars]\nmop_ssh_username = \"{TEST_SUDO_PASSWORD_USER}\"\nmop_sudo = true\nmop_sudo_password = \"{TEST_SUDO_PASSWORD}\"\n"
        ),
    );
    sandbox
}

fn total_logins(sandbox: &Sandbox) -> usize {
    ["host1", "host2"]
        .iter()
        .map(|host| sandbox.logins(host))
        .sum()
}

/// `mop ARGS[0] -i INVENTORY ARGS[1..]`.
pub(crate) fn mop_with_inventory(sandbox: &Sandbox, args: &[&str]) -> Vec<OsString> {
    let mut all: Vec<OsString> = vec![
        args[0].into(),
        "-i".into(),
        sandbox.inventory.clone().into(),
    ];
    all.extend(args[1..].iter().map(Into::into));
    all
}

const READS_SECRETS: &str = r#"
[[roles]]
name = "leaky"
groups = ["web"]
before = "true {{ mop_sudo_password }}"
after = "echo {{ mop_sudo_password | default('') }}"
contact_when = "mop_sudo_password != ''"

[[roles.resources]]
type = "echo"
msg = "hello"
"#;

#[test]
fn hooks_and_contact_when_that_read_a_secret_are_refused_before_any_host_is_contacted() {
    let sandbox = sudo_password_sandbox("secret-hooks");
    let policy = sandbox.policy("leaky", READS_SECRETS);
    let shown = policy.display().to_string();
    let logins_before = total_logins(&sandbox);

    let validate = run_mop(mop_with_inventory(&sandbox, &["validate", &shown]));
    let push = sandbox.push_text(&policy, &["--apply", "-v"]);
    let json_push = sandbox.push(&policy, &["--apply"]);
    for (what, exit, stderr, stdout) in [
        (
            "validate",
            validate.exit,
            &validate.stderr,
            &validate.stdout,
        ),
        ("push", push.exit, &push.stderr, &push.stdout),
        (
            "push --json",
            json_push.exit,
            &json_push.stderr,
            &json_push.stdout,
        ),
    ] {
        assert_eq!(exit, 2, "{what}: exit\n{stdout}\n{stderr}");
        for (position, field) in [
            ("5:10", "before"),
            ("6:9", "after"),
            ("7:16", "contact_when"),
        ] {
            let expected = format!(
                "{shown}:{position}: role `leaky`: field `{field}`: `mop_sudo_password` is a secret: templates and expressions cannot read it"
            );
            assert!(
                stderr.contains(&expected),
                "{what}: no `{expected}` in\n{stderr}"
            );
        }
        assert!(
            stderr.contains("hint: secrets leave the controller only on sudo's stdin"),
            "{what}: {stderr}"
        );
        assert_not_leaked(TEST_SUDO_PASSWORD, &format!("{what} stdout"), stdout);
        assert_not_leaked(TEST_SUDO_PASSWORD, &format!("{what} stderr"), stderr);
    }
    assert_eq!(
        total_logins(&sandbox),
        logins_before,
        "a refused push contacted a host"
    );
    assert!(
        !sandbox.dir().join("leaky.retry").exists(),
        "a refused push wrote a retry file"
    );
}

#[test]
fn mop_run_that_reads_a_secret_is_refused_before_any_host_is_contacted() {
    let sandbox = sudo_password_sandbox("secret-run");
    let logins_before = total_logins(&sandbox);
    for command in [
        "echo '{{ mop_sudo_password }}'",
        "echo {% for c in mop_sudo_password %}{{ c }}{% endfor %}",
    ] {
        for extra in [&[][..], &["--sudo", "--json"][..]] {
            let mut args = vec!["run", "web"];
            args.extend(extra);
            args.extend(["--", command]);
            let output = run_mop(mop_with_inventory(&sandbox, &args));
            assert_eq!(output.exit, 2, "{command}: {}", output.describe());
            assert!(
                output.stderr.contains(&format!(
                    "the command `{command}`: `mop_sudo_password` is a secret: templates and expressions cannot read it"
                )),
                "{command}: {}",
                output.describe()
            );
            assert!(output.stdout.is_empty(), "{}", output.describe());
            assert_not_leaked(TEST_SUDO_PASSWORD, "mop run stderr", &output.stderr);
        }
    }
    // `--local` renders with `-e` variables: the same wall.
    let local = run_mop([
        "run",
        "--local",
        "-e",
        "mop_sudo_password=local-secret-4711",
        "--",
        "echo {{ mop_sudo_password }}",
    ]);
    assert_eq!(local.exit, 2, "{}", local.describe());
    assert!(
        local.stderr.contains("`mop_sudo_password` is a secret"),
        "{}",
        local.describe()
    );
    assert!(
        !local.stdout.contains("local-secret-4711"),
        "{}",
        local.describe()
    );
    assert_eq!(
        total_logins(&sandbox),
        logins_before,
        "a refused `mop run` contacted a host"
    );
}

/// What a [`ProcessWatch`] saw.
#[derive(Debug, Default)]
pub(crate) struct WatchReport {
    /// Full passes over `/proc`.
    samples: usize,
    /// `pid argv|environ: command line` of each process that held the secret, once each.
    leaks: BTreeSet<String>,
    /// The markers that appeared in some process's argv (proof the sampling saw the run).
    seen: BTreeSet<String>,
}

/// Reads every `/proc/*/cmdline` and `/proc/*/environ` over and over on a thread until
/// stopped, looking for a secret, and noting which markers it saw in an argv.
pub(crate) struct ProcessWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<WatchReport>,
}

impl ProcessWatch {
    pub(crate) fn start(secret: &str, markers: &[String]) -> ProcessWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let secret = secret.as_bytes().to_vec();
        let markers = markers.to_vec();
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let own = std::process::id().to_string();
            let mut report = WatchReport::default();
            // One last pass after the stop request, so the end of the run is covered too.
            loop {
                let last = stopped.load(Ordering::SeqCst);
                let Ok(entries) = std::fs::read_dir("/proc") else {
                    break;
                };
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if !name.bytes().all(|byte| byte.is_ascii_digit()) || name == own {
                        continue;
                    }
                    let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                    let shown = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                    for marker in &markers {
                        if shown.contains(marker.as_str()) {
                            report.seen.insert(marker.clone());
                        }
                    }
                    if contains(&cmdline, &secret) {
                        report.leaks.insert(format!("{name} argv: {shown}"));
                    }
                    // Readable for every process here: the tests run as root.
                    if let Ok(environ) = std::fs::read(entry.path().join("environ")) {
                        if contains(&environ, &secret) {
                            report.leaks.insert(format!("{name} environ: {shown}"));
                        }
                    }
                }
                report.samples += 1;
                if last {
                    break;
                }
            }
            report
        });
        ProcessWatch { stop, thread }
    }

    pub(crate) fn finish(self) -> WatchReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the process watch thread")
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Hooks, `contact_when`, a sudo'd command that lasts long enough to be sampled, and one
/// failing host (so a retry file is written). The `before` hook dumps its whole context with
/// `debug()`, which no static check can see: only a context without secrets keeps it clean.
const WATCHED_POLICY: &str = r#"
[[roles]]
name = "watched"
groups = ["web"]
contact_when = "host.name is defined"
before = """
: @MARKER@-before; sleep 0.4; cat >> @LOG@ <<'MOP_EOF'
{{ debug() }}
MOP_EOF
"""
after = ": @MARKER@-after; sleep 0.4; echo after {{ host.name }} >> @LOG@"

[[roles.resources]]
type = "command"
cmd = "sleep 0.8; id -un"
failed_when = "host.name == 'host2'"
"#;

#[test]
fn a_push_and_a_run_with_a_sudo_password_leak_it_nowhere() {
    let sandbox = sudo_password_sandbox("secret-watch");
    let marker = unique_name("secret-watch-marker");
    let policy_path = sandbox.policy("watched", &WATCHED_POLICY.replace("@MARKER@", &marker));
    let retry = sandbox.dir().join("watched.retry");
    let markers = vec![
        format!("{marker}-before"),
        format!("{marker}-after"),
        sandbox.agent_dir.clone(),
    ];

    let watch = ProcessWatch::start(TEST_SUDO_PASSWORD, &markers);
    let json = sandbox.push(&policy_path, &["--apply", "-v"]);
    let text = sandbox.push_text(&policy_path, &["--apply", "-v", "--diff"]);
    let report = watch.finish();

    json.assert_exit(1);
    assert_eq!(text.exit, 1, "{}", text.describe());
    // host1 ran everything as root; host2 failed its command, so it is in the retry file.
    let ran: Vec<&serde_json::Value> = json.resources_of("host1").collect();
    assert!(
        ran.iter().any(|event| event["status"] == "changed"),
        "{}",
        json.describe()
    );
    let retry_text = std::fs::read_to_string(&retry)
        .unwrap_or_else(|error| panic!("no retry file `{}`: {error}", retry.display()));
    assert!(retry_text.contains("host2"), "{retry_text}");
    let log = std::fs::read_to_string(&sandbox.log).expect("read the hook log");
    assert!(log.contains("after host1"), "{log}");
    assert!(
        log.contains("mop_ssh_username"),
        "the before hook's debug() dump is missing: {log}"
    );

    assert_watch_clean(&report, &markers, "mop push");
    for (what, output) in [
        ("stdout of --json -v", &json.stdout),
        ("stderr of --json -v", &json.stderr),
        ("stdout of -v", &text.stdout),
        ("stderr of -v", &text.stderr),
        ("the retry file", &retry_text),
        ("the hooks' output", &log),
    ] {
        assert_not_leaked(TEST_SUDO_PASSWORD, what, output);
    }
    sandbox.assert_hosts_clean();

    // `mop run --sudo`: the rendered command is in ssh's argv and the host's `sh -c`; the
    // password only goes to sudo's stdin.
    let run_marker = format!("{marker}-run");
    let command =
        format!(": {run_marker}; sleep 0.8; cat <<'MOP_EOF'\n{{{{ debug() }}}}\nMOP_EOF\nid -un");
    let watch = ProcessWatch::start(TEST_SUDO_PASSWORD, std::slice::from_ref(&run_marker));
    let run = run_mop(mop_with_inventory(
        &sandbox,
        &["run", "web", "--sudo", "--json", "--", &command],
    ));
    let report = watch.finish();
    assert_watch_clean(&report, std::slice::from_ref(&run_marker), "mop run");
    assert_eq!(run.exit, 0, "{}", run.describe());
    assert!(run.stdout.contains("root\\n"), "{}", run.describe());
    assert!(
        run.stdout.contains("mop_ssh_username"),
        "{}",
        run.describe()
    );
    assert_not_leaked(TEST_SUDO_PASSWORD, "stdout of mop run", &run.stdout);
    assert_not_leaked(TEST_SUDO_PASSWORD, "stderr of mop run", &run.stderr);
}

pub(crate) fn assert_watch_clean(report: &WatchReport, markers: &[String], what: &str) {
    eprintln!("{what}: {} samples of every process", report.samples);
    assert!(
        report.leaks.is_empty(),
        "during {what}, the sudo password was in these processes' argv or environment:\n{}",
        report.leaks.iter().cloned().collect::<Vec<_>>().join("\n")
    );
    // The sampling must have seen the run, or finding nothing proves nothing.
    assert!(
        report.samples >= 10,
        "only {} samples during {what}",
        report.samples
    );
    for marker in markers {
        assert!(
            report.seen.contains(marker),
            "the process watch never saw `{marker}` during {what} ({} samples): it did not \
             sample the run",
            report.samples
        );
    }
}
