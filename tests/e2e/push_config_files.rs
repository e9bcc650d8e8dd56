//! `block`, `cron` and `authorized_key` through `mop push` against a real sshd host: the first
//! apply changes, the second changes nothing, a `--check` after a manual edit reports exactly
//! that edit and writes nothing; the key then opens a real SSH login; bad input is refused by
//! `mop validate` with positions.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mop_testhosts::{TestHostsBuilder, TEST_SUDO_PASSWORD_USER};

use crate::support::{run, unique_name, wait_until, JsonRun, Sandbox};

/// The user whose crontab and `authorized_keys` the test manages: a real login user whose
/// `~/.ssh` no test sshd reads (they use their own `AuthorizedKeysFile`).
const KEY_USER: &str = TEST_SUDO_PASSWORD_USER;

const POLICY: &str = r#"
[[roles]]
name = "config files"
groups = ["web"]
sudo = true

[[roles.resources]]
name = "tuning"
type = "block"
path = "@OUT@/{{ host.name }}.conf"
create = true
insert_after = '^\[main\]'
block = """
workers = 4
timeout = 30
"""

[[roles.resources]]
type = "cron"
cron = "@JOB@"
user = "@USER@"
minute = "*/15"
hour = "2-4"
command = "/usr/bin/true @JOB@"
env = { MAILTO = "" }
state = "@STATE@"

[[roles.resources]]
type = "authorized_key"
user = "@USER@"
key = "@KEY@"
state = "@STATE@"
"#;

fn changed(run: &JsonRun) -> Vec<(String, Vec<String>)> {
    run.with_status("changed")
        .into_iter()
        .map(|event| {
            let changes = event["changes"]
                .as_array()
                .map(|changes| {
                    changes
                        .iter()
                        .filter_map(|change| change.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            (
                event["type"].as_str().unwrap_or_default().to_string(),
                changes,
            )
        })
        .collect()
}

fn crontab_of(user: &str) -> String {
    let output = run(Command::new("crontab").args(["-u", user, "-l"]));
    if output.exit != 0 {
        assert!(
            output.stderr.contains("no crontab"),
            "{}",
            output.describe()
        );
        return String::new();
    }
    output.stdout
}

fn set_crontab(user: &str, text: &str) {
    let mut child = Command::new("crontab")
        .args(["-u", user, "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run crontab");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes())
        .expect("write the crontab");
    assert!(child.wait().expect("crontab ends").success());
}

/// An sshd of this test that reads `~/.ssh/authorized_keys` with `StrictModes yes`, as a
/// production sshd does (the test hosts' sshd reads a key file of their own).
struct StrictSshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl StrictSshd {
    fn start(user: &str) -> StrictSshd {
        let dir = tempfile::tempdir().expect("sshd directory");
        let host_key = dir.path().join("host_key");
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .status()
            .expect("run ssh-keygen");
        assert!(status.success());
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1:{port}\nHostKey {}\nPidFile {}\nAuthorizedKeysFile .ssh/authorized_keys\nStrictModes yes\nUsePAM no\nPubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nAllowUsers {user}\nUseDNS no\n",
                host_key.display(),
                dir.path().join("sshd.pid").display()
            ),
        )
        .expect("write sshd_config");
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        let up = wait_until(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "the test sshd did not listen on port {port}");
        StrictSshd { child, port, dir }
    }

    /// Whether `ssh -i KEY user@127.0.0.1 true` logs in.
    fn login(&self, user: &str, key: &Path) -> bool {
        let output = run(Command::new("ssh")
            .args(["-F", "/dev/null", "-i"])
            .arg(key)
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                &format!(
                    "UserKnownHostsFile={}",
                    self.dir.path().join("known_hosts").display()
                ),
                "-p",
                &self.port.to_string(),
                &format!("{user}@127.0.0.1"),
                "true",
            ]));
        output.exit == 0
    }
}

impl Drop for StrictSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn block_cron_and_key_converge_stay_converged_and_check_reports_a_manual_edit() {
    let sandbox = Sandbox::start("cfgfiles", TestHostsBuilder::new().hosts(1).group("web"));
    let job = unique_name("job");
    let key_file = sandbox.dir().join("client_key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", &job, "-f"])
        .arg(&key_file)
        .status()
        .expect("run ssh-keygen");
    assert!(status.success());
    let public = std::fs::read_to_string(key_file.with_extension("pub")).expect("public key");
    let policy_for = |state: &str| {
        let text = POLICY
            .replace("@JOB@", &job)
            .replace("@USER@", KEY_USER)
            .replace("@KEY@", public.trim())
            .replace("@STATE@", state);
        sandbox.policy(&format!("config-{state}"), &text)
    };
    let present = policy_for("present");
    let conf = sandbox.out.join("host1.conf");
    std::fs::write(&conf, "[main]\nname = x\n[other]\n").expect("write the config");

    let sshd = StrictSshd::start(KEY_USER);
    assert!(
        !sshd.login(KEY_USER, &key_file),
        "the key logs in before mop added it"
    );

    let first = sandbox.push(&present, &["--apply"]);
    first.assert_exit(0);
    let types: Vec<String> = changed(&first).into_iter().map(|(kind, _)| kind).collect();
    assert_eq!(
        types,
        ["block", "cron", "authorized_key"],
        "{}",
        first.describe()
    );
    assert_eq!(
        std::fs::read_to_string(&conf).expect("config"),
        "[main]\n# BEGIN mop tuning\nworkers = 4\ntimeout = 30\n# END mop tuning\nname = x\n[other]\n"
    );
    let crontab = crontab_of(KEY_USER);
    let entry = format!("# mop: {job}\nMAILTO=\"\"\n*/15 2-4 * * * /usr/bin/true {job}\n");
    assert!(crontab.contains(&entry), "crontab:\n{crontab}");
    assert!(
        sshd.login(KEY_USER, &key_file),
        "the key added by mop does not log in"
    );

    let second = sandbox.push(&present, &["--apply"]);
    second.assert_exit(0);
    assert!(changed(&second).is_empty(), "{}", second.describe());

    // Manual edits: the block's body, the job's hour.
    let edited_conf = std::fs::read_to_string(&conf)
        .expect("config")
        .replace("workers = 4", "workers = 8");
    std::fs::write(&conf, &edited_conf).expect("edit the config");
    let edited_crontab = crontab_of(KEY_USER).replace(
        &format!("*/15 2-4 * * * /usr/bin/true {job}"),
        &format!("*/15 5 * * * /usr/bin/true {job}"),
    );
    set_crontab(KEY_USER, &edited_crontab);
    let check = sandbox.push(&present, &["--check", "--diff"]);
    check.assert_exit(0);
    assert_eq!(
        changed(&check),
        [
            ("block".to_string(), vec!["replaced the block".to_string()]),
            ("cron".to_string(), vec![format!("changed job `{job}`")]),
        ],
        "{}",
        check.describe()
    );
    let block_diff = check
        .with_status("changed")
        .into_iter()
        .find(|event| event["type"] == "block")
        .and_then(|event| event["diff"].as_str().map(str::to_string))
        .unwrap_or_default();
    assert!(
        block_diff.contains("-workers = 8\n+workers = 4\n"),
        "{block_diff}"
    );
    assert_eq!(std::fs::read_to_string(&conf).expect("config"), edited_conf);
    assert_eq!(crontab_of(KEY_USER), edited_crontab, "--check wrote");

    // Absent removes the job and the key; the block stays (its resource is unchanged).
    let absent = sandbox.push(&policy_for("absent"), &["--apply"]);
    absent.assert_exit(0);
    assert!(!crontab_of(KEY_USER).contains(&job));
    assert!(
        !sshd.login(KEY_USER, &key_file),
        "the removed key still logs in"
    );
}

#[test]
fn validate_refuses_bad_schedules_keys_and_markers_with_positions() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let policy = dir.path().join("broken.toml");
    std::fs::write(
        &policy,
        r##"[[roles]]
name = "web"

[[roles.resources]]
type = "cron"
cron = "backup"
hour = "24"
command = "/usr/local/bin/backup"

[[roles.resources]]
type = "authorized_key"
user = "deploy"
key = "ssh-ed25519 not base64!"

[[roles.resources]]
type = "block"
path = "/etc/x.conf"
marker = "# mop"
block = "a = 1"
"##,
    )
    .expect("write the policy");
    let output = run(crate::support::mop()
        .arg("validate")
        .arg(&policy)
        .args(["-i", "inventory/example.toml"]));
    assert_eq!(output.exit, 2, "{}", output.describe());
    let shown = policy.display().to_string();
    for expected in [
        format!("{shown}:7:8: role `web`: resource #1 (cron backup): field `hour`: invalid hour `24`: 24 is out of range (0-23)"),
        format!("{shown}:13:7: role `web`: resource #2 (authorized_key deploy): field `key`: the key body after `ssh-ed25519` is not base64"),
        format!("{shown}:18:10: role `web`: resource #3 (block /etc/x.conf): field `marker` must be one line containing `{{mark}}`"),
    ] {
        assert!(output.stderr.contains(&expected), "missing `{expected}`\n{}", output.describe());
    }
}
