//! Hostile inventory values and arguments that reach ssh (issue 12): each is refused by the
//! real `mop` with exit 2 and a message naming the file:line or the variable, before any host
//! is contacted, and the command it carries never runs.
//!
//! The reproducer: ssh_config unescapes `\'`, and OpenSSH runs `ProxyJump` through
//! `$SHELL -c` with the target's `HostName` for `%h`, so `$(...)` in `mop_host` of a host
//! behind a jump host ran on the controller. Each test points the payload at a marker file in
//! its own temporary directory and checks that the file never appears. Only IP addresses are
//! used, and nothing listens on them: validation must fail before ssh is started.

use std::path::{Path, PathBuf};

use crate::support::{mop, run, Output};

/// A temporary directory with an inventory, a policy selecting `target`, and the marker path.
struct Setup {
    dir: tempfile::TempDir,
    marker: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let marker = dir.path().join("pwned");
        std::fs::write(
            dir.path().join("policy.toml"),
            "[[roles]]\nname = \"probe\"\nhosts = [\"target\"]\n\n[[roles.resources]]\ntype = \"file\"\npath = \"/tmp/mop-never-written\"\ncontent = \"x\"\n",
        )
        .expect("write the policy");
        Setup { dir, marker }
    }

    fn inventory(&self) -> PathBuf {
        self.dir.path().join("inventory.toml")
    }

    fn policy(&self) -> PathBuf {
        self.dir.path().join("policy.toml")
    }

    fn write_inventory(&self, text: &str) {
        std::fs::write(self.inventory(), text).expect("write the inventory");
    }

    /// The payload of the issue, writing the marker: `127.0.7.2\'$(>MARKER)\'`.
    fn payload(&self) -> String {
        format!("127.0.7.2\\'$(>{})\\'", self.marker.display())
    }

    /// The reproducer of issue 12 with this setup's marker.
    fn write_reproducer(&self) {
        let in_toml = self.payload().replace('\\', "\\\\");
        self.write_inventory(&format!(
            "[groups.g.hosts]\n\"jump\" = \"mop_host=127.0.7.1\"\n[hosts.target.vars]\nmop_host = \"{in_toml}\"\nmop_via = \"jump\"\n"
        ));
    }

    /// A clean inventory: the same hosts, valid addresses.
    fn write_clean(&self) {
        self.write_inventory(
            "[groups.g.hosts]\n\"jump\" = \"mop_host=127.0.7.1\"\n[hosts.target.vars]\nmop_host = \"127.0.7.2\"\nmop_via = \"jump\"\n",
        );
    }

    fn mop(&self, args: &[&str]) -> Output {
        run(mop().args(args))
    }

    /// Refused with exit 2, `expected` in stderr, nothing on stdout, and no marker.
    fn assert_refused(&self, output: &Output, expected: &str) {
        assert_eq!(output.exit, 2, "{}", output.describe());
        assert!(
            output.stderr.contains(expected),
            "stderr lacks {expected:?}\n{}",
            output.describe()
        );
        for contacted in ["unreachable", "host key", "ssh to", "timed out"] {
            assert!(
                !output.stderr.contains(contacted),
                "a host was contacted\n{}",
                output.describe()
            );
        }
        assert!(
            !self.marker.exists(),
            "the payload ran on the controller\n{}",
            output.describe()
        );
    }
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// The message every refusal of the reproducer's address starts with, at its file:line:col.
fn reproducer_error(setup: &Setup) -> String {
    format!(
        "{}:4:12: magic variable `mop_host` must be a host name",
        setup.inventory().display()
    )
}

#[test]
fn validate_refuses_the_reproducer_with_its_file_and_line() {
    let setup = Setup::new();
    setup.write_reproducer();
    let output = setup.mop(&[
        "validate",
        path_arg(&setup.policy()),
        "-i",
        path_arg(&setup.inventory()),
    ]);
    setup.assert_refused(&output, &reproducer_error(&setup));
    assert!(
        output
            .stderr
            .contains("hint: it contains `\\`; host names are made of letters, digits"),
        "{}",
        output.describe()
    );
}

#[test]
fn push_check_refuses_the_reproducer_before_connecting() {
    let setup = Setup::new();
    setup.write_reproducer();
    let output = setup.mop(&[
        "push",
        path_arg(&setup.policy()),
        "--check",
        "-i",
        path_arg(&setup.inventory()),
    ]);
    setup.assert_refused(&output, &reproducer_error(&setup));
}

#[test]
fn run_refuses_the_reproducer_before_connecting() {
    let setup = Setup::new();
    setup.write_reproducer();
    let output = setup.mop(&[
        "run",
        "target",
        "-i",
        path_arg(&setup.inventory()),
        "--",
        "true",
    ]);
    setup.assert_refused(&output, &reproducer_error(&setup));
}

/// The same payload given with `-e` to an inventory that is clean: every command that takes
/// `-e` refuses it, naming the variable.
#[test]
fn extra_vars_carrying_the_payload_are_refused() {
    let setup = Setup::new();
    setup.write_clean();
    let extra = format!("mop_host={}", setup.payload());
    let (policy, inventory) = (setup.policy(), setup.inventory());
    let commands: [Vec<&str>; 3] = [
        vec![
            "validate",
            path_arg(&policy),
            "-i",
            path_arg(&inventory),
            "-e",
            &extra,
        ],
        vec![
            "push",
            path_arg(&policy),
            "--check",
            "-i",
            path_arg(&inventory),
            "-e",
            &extra,
        ],
        vec![
            "run",
            "target",
            "-i",
            path_arg(&inventory),
            "-e",
            &extra,
            "--",
            "true",
        ],
    ];
    for args in &commands {
        let output = setup.mop(args);
        setup.assert_refused(
            &output,
            "invalid extra variable `mop_host`: magic variable `mop_host` must be a host name",
        );
    }
}

/// A host without `mop_host` is reached at its inventory name: the name carries the payload.
#[test]
fn a_host_name_carrying_the_payload_is_refused() {
    let setup = Setup::new();
    let name = format!("127.0.7.2'$(>{})'", setup.marker.display());
    setup.write_inventory(&format!(
        "[groups.g.hosts]\n\"jump\" = \"mop_host=127.0.7.1\"\n\"{name}\" = \"mop_via=jump\"\n"
    ));
    let output = setup.mop(&["run", "g", "-i", path_arg(&setup.inventory()), "--", "true"]);
    setup.assert_refused(
        &output,
        &format!(
            "{}:3:1: host `{name}` has no `mop_host`, so its name is its address",
            setup.inventory().display()
        ),
    );
}

/// The CLI arguments that reach the run's ssh_config or the host's `sh -c`.
#[test]
fn cli_arguments_carrying_payloads_are_refused() {
    let setup = Setup::new();
    let marker = setup.marker.display().to_string();
    let host = format!("127.0.7.2'$(>{marker})'");
    let user = format!("u$(>{marker})@127.0.7.2");
    let key = format!("/keys/a\"$(>{marker})");
    let known_hosts = format!("/kh\n  ProxyCommand sh -c '>{marker}'");
    let cases: [(Vec<&str>, &str); 5] = [
        (
            vec!["run", "--hosts", &host, "--", "true"],
            "is invalid: it contains `'`",
        ),
        (
            vec!["run", "--hosts", &user, "--", "true"],
            "is invalid: it contains `$`",
        ),
        (
            vec![
                "run",
                "--hosts",
                "127.0.7.2",
                "--ssh-key",
                &key,
                "--",
                "true",
            ],
            "it contains `\"`, which ssh_config cannot hold in a quoted path",
        ),
        (
            vec![
                "run",
                "--hosts",
                "127.0.7.2",
                "--known-hosts-file",
                &known_hosts,
                "--",
                "true",
            ],
            "it contains the control character U+000A",
        ),
        (
            vec![
                "run",
                "--hosts",
                "127.0.7.2",
                "--sudo",
                "--sudo-as",
                "root;id",
                "--",
                "true",
            ],
            "it contains `;`",
        ),
    ];
    for (args, expected) in &cases {
        let output = setup.mop(args);
        setup.assert_refused(&output, expected);
    }
}

/// The two smaller items of issue 12: the known_hosts message says what it expects, and a sudo
/// password with a line break is refused at load time without being printed.
#[test]
fn known_hosts_paths_and_sudo_passwords_are_checked_at_load_time() {
    let setup = Setup::new();
    setup.write_inventory(
        "[groups.g.hosts]\n\"target\" = \"mop_host=127.0.7.2\"\n[hosts.target.vars]\nmop_known_hosts_file = \"/kh\\nHost *\"\n",
    );
    let (policy, inventory) = (setup.policy(), setup.inventory());
    let validate = ["validate", path_arg(&policy), "-i", path_arg(&inventory)];
    let output = setup.mop(&validate);
    setup.assert_refused(
        &output,
        &format!(
            "{}:4:24: magic variable `mop_known_hosts_file` must be a path to a file on the controller",
            setup.inventory().display()
        ),
    );
    assert!(
        !output.stderr.contains("private key"),
        "{}",
        output.describe()
    );

    setup.write_inventory(
        "[groups.g.hosts]\n\"target\" = \"mop_host=127.0.7.2\"\n[hosts.target.vars]\nmop_sudo = true\nmop_sudo_password = \"hunter2-first\\nhunter2-second\"\n",
    );
    let output = setup.mop(&validate);
    setup.assert_refused(
        &output,
        &format!(
            "{}:5:21: magic variable `mop_sudo_password` must be a single line of text, found a string\n  hint: it contains a line break",
            setup.inventory().display()
        ),
    );
    assert!(
        !output.stderr.contains("hunter2") && !output.stdout.contains("hunter2"),
        "the password was printed\n{}",
        output.describe()
    );
}
