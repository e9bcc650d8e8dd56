//! The command line without hosts: help texts, usage errors and exit codes, `mop validate` and
//! `mop inventory` on the repository's examples, secrets in inventory output.

use crate::support::{mop, run, run_mop, Output};

/// Every flag of `mop push`, as `--help` must show it.
const PUSH_FLAGS: &[&str] = &[
    "--apply",
    "--check",
    "-i, --inventory <FILE>",
    "--limit-groups <PATTERNS>",
    "--limit-hosts <PATTERNS>",
    "@FILE",
    "--serial <N>",
    "--forks <N>",
    "--host-timeout <SECS>",
    "--connect-timeout <SECS>",
    "--no-agent-cache",
    "--tags <TAGS>",
    "--skip-tags <TAGS>",
    "--start-at <NAME>",
    "--list-hosts",
    "--list-tasks",
    "-e, --extra-var <KEY=VALUE>",
    "--diff",
    "--json",
    "-v, --verbose",
    "--color <COLOR>",
    "-h, --help",
];

const EXIT_CODES: &[&str] = &[
    "Exit status:",
    "  0    success",
    "  1    some host failed or was unreachable",
    "  2    invalid input or usage",
    "  130  interrupted (Ctrl-C)",
];

fn help(args: &[&str]) -> Output {
    let output = run_mop(args);
    assert_eq!(output.exit, 0, "{}", output.describe());
    assert!(output.stderr.is_empty(), "{}", output.describe());
    output
}

#[test]
fn top_level_help_lists_commands_and_exit_codes() {
    let output = help(&["--help"]);
    for needle in [
        "inventory",
        "validate",
        "push",
        "local",
        "clean",
        "--color <COLOR>",
        "--version",
    ]
    .iter()
    .chain(EXIT_CODES)
    {
        assert!(
            output.stdout.contains(needle),
            "`mop --help` lacks `{needle}`:\n{}",
            output.stdout
        );
    }
    insta::assert_snapshot!("help_top_level", output.stdout);
}

#[test]
fn push_help_mentions_every_flag_and_the_exit_codes() {
    let output = help(&["push", "--help"]);
    for needle in PUSH_FLAGS.iter().chain(EXIT_CODES) {
        assert!(
            output.stdout.contains(needle),
            "`mop push --help` lacks `{needle}`:\n{}",
            output.stdout
        );
    }
    insta::assert_snapshot!("help_push", output.stdout);
}

#[test]
fn subcommand_helps_mention_their_flags_and_the_exit_codes() {
    let cases: &[(&str, &[&str])] = &[
        (
            "local",
            &[
                "--apply",
                "--check",
                "--tags <TAGS>",
                "--skip-tags <TAGS>",
                "--start-at <NAME>",
                "--list-hosts",
                "--list-tasks",
                "-e, --extra-var <KEY=VALUE>",
                "--diff",
                "--json",
                "-v, --verbose",
            ],
        ),
        (
            "validate",
            &[
                "-i, --inventory <FILE>",
                "--limit-groups",
                "--limit-hosts",
                "-e, --extra-var",
                "--json",
            ],
        ),
        (
            "inventory",
            &[
                "-i, --inventory <FILE>",
                "--limit-groups",
                "--limit-hosts",
                "--host <NAME>",
                "--json",
            ],
        ),
    ];
    for (command, flags) in cases {
        let output = help(&[command, "--help"]);
        for needle in flags.iter().chain(EXIT_CODES) {
            assert!(
                output.stdout.contains(needle),
                "`mop {command} --help` lacks `{needle}`:\n{}",
                output.stdout
            );
        }
        insta::assert_snapshot!(format!("help_{command}"), output.stdout);
    }
}

#[test]
fn push_without_apply_or_check_is_a_usage_error() {
    let output = run_mop(["push", "x.toml"]);
    assert_eq!(output.exit, 2, "{}", output.describe());
    assert!(output.stdout.is_empty(), "{}", output.describe());
    assert!(
        output.stderr.contains("<--apply|--check>"),
        "{}",
        output.describe()
    );

    let both = run_mop(["push", "x.toml", "--apply", "--check"]);
    assert_eq!(both.exit, 2, "{}", both.describe());
    assert!(
        both.stderr.contains("cannot be used with"),
        "{}",
        both.describe()
    );

    let local = run_mop(["local", "policies/local-demo.toml"]);
    assert_eq!(local.exit, 2, "{}", local.describe());
}

#[test]
fn every_command_that_logs_in_takes_a_connect_timeout_and_refuses_zero() {
    let commands: &[&[&str]] = &[
        &["push", "x.toml", "--apply"],
        &["run", "web", "--", "true"],
        &["upload", "web", "a", "b"],
        &["download", "web", "a", "b"],
        &["transfer", "a:x", "b:y"],
        &["clean", "web"],
    ];
    for command in commands {
        let help = run_mop([command[0], "--help"]);
        assert!(
            help.stdout.contains("--connect-timeout <SECS>")
                && help.stdout.contains("mop_connect_timeout"),
            "{}",
            help.describe()
        );
        for bad in ["0", "3601", "1.5", "ten"] {
            // Right after the subcommand: `mop run` takes everything after `--` as its command.
            let mut args = vec![command[0], "--connect-timeout", bad];
            args.extend_from_slice(&command[1..]);
            let output = run_mop(args);
            assert_eq!(output.exit, 2, "{command:?} {bad}: {}", output.describe());
            assert!(
                output.stderr.contains(&format!(
                    "invalid value '{bad}' for '--connect-timeout <SECS>': the connect timeout \
                     must be a whole number of seconds between 1 and 3600, as for \
                     `mop_connect_timeout`"
                )),
                "{command:?} {bad}: {}",
                output.describe()
            );
        }
    }
    let local = run_mop(["run", "--local", "--connect-timeout", "3", "--", "true"]);
    assert_eq!(local.exit, 2, "{}", local.describe());
    assert!(
        local.stderr.contains("cannot be used with"),
        "{}",
        local.describe()
    );
}

#[test]
fn unknown_flags_and_missing_files_exit_2() {
    let unknown = run_mop(["push", "policies/site.toml", "--apply", "--frobnicate"]);
    assert_eq!(unknown.exit, 2, "{}", unknown.describe());
    assert!(
        unknown.stderr.contains("--frobnicate"),
        "{}",
        unknown.describe()
    );

    let missing = run_mop(["validate", "policies/no-such-policy.toml"]);
    assert_eq!(missing.exit, 2, "{}", missing.describe());
    assert!(
        missing.stderr.contains("no-such-policy.toml"),
        "{}",
        missing.describe()
    );

    let inventory = run_mop(["inventory", "-i", "inventory/no-such.toml"]);
    assert_eq!(inventory.exit, 2, "{}", inventory.describe());
    assert!(
        inventory.stderr.contains("no-such.toml"),
        "{}",
        inventory.describe()
    );
}

#[test]
fn validate_reports_every_error_with_file_line_and_column() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let policy = dir.path().join("broken.toml");
    std::fs::write(
        &policy,
        r#"[[roles]]
name = "web"
serial = 0

[[roles.resources]]
type = "file"
path = "/etc/motd"
contnet = "x"
"#,
    )
    .expect("write the policy");
    let output = run(mop()
        .arg("validate")
        .arg(&policy)
        .args(["-i", "inventory/example.toml"]));
    assert_eq!(output.exit, 2, "{}", output.describe());
    assert!(output.stdout.is_empty(), "{}", output.describe());
    let shown = policy.display().to_string();
    let serial = output
        .stderr
        .find(&format!(
            "{shown}:3:10: role `web`: field `serial` must be at least 1"
        ))
        .unwrap_or_else(|| panic!("no serial error at 3:10\n{}", output.describe()));
    let field = output
        .stderr
        .find(&format!(
            "{shown}:8:1: role `web`: resource #1 (file /etc/motd): unknown field `contnet`"
        ))
        .unwrap_or_else(|| panic!("no unknown-field error at 8:1\n{}", output.describe()));
    assert!(
        serial < field,
        "errors are not in file order\n{}",
        output.describe()
    );
    assert!(
        output.stderr.contains("hint: did you mean `content`?"),
        "{}",
        output.describe()
    );
    let stderr = output
        .stderr
        .replace(&dir.path().display().to_string(), "[TMP]");
    insta::assert_snapshot!("validate_broken_policy", stderr);
}

#[test]
fn validate_site_policy_succeeds() {
    let output = run_mop(["validate", "policies/site.toml"]);
    assert_eq!(output.exit, 0, "{}", output.describe());
    assert!(
        output
            .stdout
            .starts_with("policy policies/site.toml is valid"),
        "{}",
        output.describe()
    );
    insta::assert_snapshot!("validate_site", output.stdout);

    let json = run_mop(["validate", "policies/site.toml", "--json"]);
    assert_eq!(json.exit, 0, "{}", json.describe());
    let value: serde_json::Value =
        serde_json::from_str(&json.stdout).expect("validate --json prints JSON");
    let roles: Vec<&str> = value["roles"]
        .as_array()
        .expect("roles is a list")
        .iter()
        .filter_map(|role| role["name"].as_str())
        .collect();
    assert_eq!(roles, ["common", "webservers", "dbservers"]);
    insta::assert_snapshot!("validate_site_json", json.stdout);
}

#[test]
fn validate_limits_narrow_the_selected_hosts() {
    let output = run_mop([
        "validate",
        "policies/site.toml",
        "--limit-groups",
        "dbservers",
        "--json",
    ]);
    assert_eq!(output.exit, 0, "{}", output.describe());
    let value: serde_json::Value = serde_json::from_str(&output.stdout).expect("JSON");
    let hosts: Vec<Vec<&str>> = value["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .map(|role| {
            role["hosts"]
                .as_array()
                .expect("hosts")
                .iter()
                .filter_map(|host| host.as_str())
                .collect()
        })
        .collect();
    assert_eq!(
        hosts,
        vec![
            vec!["db1.example.com", "db2.example.com"],
            vec![],
            vec!["db1.example.com", "db2.example.com"],
        ]
    );

    let nothing = run_mop(["validate", "policies/site.toml", "--limit-hosts", "nope*"]);
    assert_eq!(nothing.exit, 2, "{}", nothing.describe());
    assert!(
        nothing
            .stderr
            .contains("--limit-hosts: host pattern `nope*` matches no host"),
        "{}",
        nothing.describe()
    );

    // Patterns that match but select nothing together still say so.
    let nothing = run_mop([
        "validate",
        "policies/site.toml",
        "--limit-groups",
        "webservers:&dbservers",
    ]);
    assert_eq!(nothing.exit, 2, "{}", nothing.describe());
    assert!(
        nothing.stderr.contains("no role selects any host"),
        "{}",
        nothing.describe()
    );
}

#[test]
fn inventory_json_of_the_example() {
    let output = run_mop(["inventory", "-i", "inventory/example.toml", "--json"]);
    assert_eq!(output.exit, 0, "{}", output.describe());
    let value: serde_json::Value =
        serde_json::from_str(&output.stdout).expect("inventory --json prints JSON");
    let names: Vec<&str> = value["hosts"]
        .as_array()
        .expect("hosts is a list")
        .iter()
        .filter_map(|host| host["name"].as_str())
        .collect();
    assert_eq!(names.len(), 12, "{names:?}");
    assert_eq!(names[0], "web1.example.com");
    insta::assert_snapshot!("inventory_example_json", output.stdout);
}

#[test]
fn inventory_host_detail_shows_via_chain_and_provenance() {
    let output = run_mop([
        "inventory",
        "-i",
        "inventory/example.toml",
        "--host",
        "rack1-101.example.com",
    ]);
    assert_eq!(output.exit, 0, "{}", output.describe());
    let text = &output.stdout;
    let bastion = text.find("  1. bastion.example.com (deploy@203.0.113.5:22)");
    let top = text.find("  2. rack1-top.example.com (ops@198.51.100.10:22)");
    let target = text.find("  3. rack1-101.example.com (target)");
    assert!(
        bastion.is_some() && bastion < top && top < target,
        "via chain missing or out of order:\n{text}"
    );
    assert!(
        text.contains("  mop_ssh_username = \"ops\"\n      from group `racks` (depth 1) at inventory/example.toml:"),
        "{text}"
    );
    assert!(
        text.contains(
            "overridden: group `all` (depth 0) at inventory/example.toml:10:20 = \"deploy\""
        ),
        "{text}"
    );
    insta::assert_snapshot!("inventory_host_rack1_101", output.stdout);
}

#[test]
fn inventory_limits_select_hosts() {
    let output = run_mop([
        "inventory",
        "-i",
        "inventory/example.toml",
        "--limit-groups",
        "rack1",
        "--limit-hosts",
        "*-10?.example.com",
    ]);
    assert_eq!(output.exit, 0, "{}", output.describe());
    let names: Vec<&str> = output
        .stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| word.ends_with(".example.com"))
        .collect();
    assert_eq!(
        names,
        ["rack1-101.example.com", "rack1-102.example.com"],
        "{}",
        output.stdout
    );
}

#[test]
fn secrets_are_redacted_everywhere() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let inventory = dir.path().join("secrets.toml");
    std::fs::write(
        &inventory,
        r#"[groups.all.vars]
mop_sudo_password = "hunter2-sudo-secret"

[groups.web.hosts]
"web1" = "mop_host=192.0.2.1"

[hosts.web1.vars]
mop_ssh_password = "hunter2-ssh-secret"
"#,
    )
    .expect("write the inventory");
    let views: &[&[&str]] = &[
        &[],
        &["--json"],
        &["--host", "web1"],
        &["--host", "web1", "--json"],
    ];
    for view in views {
        let output = run(mop().arg("inventory").arg("-i").arg(&inventory).args(*view));
        assert_eq!(output.exit, 0, "{view:?}: {}", output.describe());
        for secret in ["hunter2-sudo-secret", "hunter2-ssh-secret", "hunter2"] {
            assert!(
                !output.stdout.contains(secret) && !output.stderr.contains(secret),
                "`mop inventory {view:?}` printed a secret:\n{}",
                output.describe()
            );
        }
        if view.contains(&"--host") {
            for name in ["mop_sudo_password", "mop_ssh_password"] {
                let shown = output.stdout.contains(&format!("{name} = \"<redacted>\""))
                    || output
                        .stdout
                        .contains(&format!("\"{name}\": \"<redacted>\""));
                assert!(
                    shown,
                    "`mop inventory {view:?}` should show `{name}` as <redacted>:\n{}",
                    output.stdout
                );
            }
        } else if view.contains(&"--json") {
            assert!(
                output
                    .stdout
                    .contains("\"mop_sudo_password\": \"<redacted>\""),
                "{}",
                output.stdout
            );
        }
    }

    // An `-e` secret is redacted too.
    let output = run(mop().arg("inventory").arg("-i").arg(&inventory).args([
        "--host",
        "web1",
        "-e",
        "mop_sudo_password=from-the-command-line",
    ]));
    assert_eq!(output.exit, 0, "{}", output.describe());
    assert!(
        !output.stdout.contains("from-the-command-line"),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains("mop_sudo_password = \"<redacted>\""),
        "{}",
        output.stdout
    );
}
