//! Real logins to directly reachable test hosts: users, sudo, SFTP, inventory.

mod common;

use std::collections::BTreeSet;

use common::{output, start, stdout_of};
use mop_testhosts::{TestHostsBuilder, TEST_SUDO_PASSWORD, TEST_SUDO_PASSWORD_USER, TEST_USER};

#[test]
fn two_hosts_accept_the_client_key_and_grant_passwordless_sudo() {
    let hosts = start(TestHostsBuilder::new().hosts(2).group("web"));
    assert_eq!(hosts.hosts().len(), 2);
    let endpoints: BTreeSet<_> = hosts
        .hosts()
        .iter()
        .map(|host| (host.addr, host.port))
        .collect();
    assert_eq!(
        endpoints.len(),
        2,
        "hosts must not share an address and port"
    );
    for host in hosts.hosts() {
        assert_eq!(
            host.accepted_connections().expect("log readable"),
            0,
            "readiness probes are not logins"
        );
        let stdout = stdout_of(host.ssh_command("id -un; sudo -n true && echo sudo-ok"));
        assert_eq!(
            stdout,
            format!("{TEST_USER}\nsudo-ok\n"),
            "on {}",
            host.name
        );
        assert_eq!(
            host.accepted_connections().expect("log readable"),
            1,
            "on {}",
            host.name
        );
        assert!(!host.in_namespace);
    }
}

#[test]
fn inventory_lists_every_host_with_its_port() {
    let hosts = start(
        TestHostsBuilder::new()
            .hosts(2)
            .group("db")
            .host_prefix("node"),
    );
    let path = hosts.dir().join("inventory.toml");
    hosts.write_inventory(&path).expect("inventory written");
    let text = std::fs::read_to_string(&path).expect("inventory readable");
    let parsed: toml::Table = toml::from_str(&text).expect("inventory is valid TOML");
    let vars = &parsed["groups"]["all"]["vars"];
    assert_eq!(vars["mop_ssh_username"].as_str(), Some(TEST_USER));
    assert_eq!(vars["mop_ssh_key"].as_str(), hosts.client_key().to_str());
    assert_eq!(
        vars["mop_known_hosts_file"].as_str(),
        hosts.known_hosts().to_str()
    );
    let group = parsed["groups"]["db"]["hosts"]
        .as_table()
        .expect("group db");
    assert_eq!(group.keys().collect::<Vec<_>>(), ["node1", "node2"]);
    for host in hosts.hosts() {
        let expected = format!("mop_host={} mop_port={}", host.addr, host.port);
        assert_eq!(group[&host.name].as_str(), Some(expected.as_str()));
    }
    let known_hosts = std::fs::read_to_string(hosts.known_hosts()).expect("known_hosts readable");
    assert_eq!(known_hosts.lines().count(), 2);
    for host in hosts.hosts() {
        assert!(known_hosts.contains(&format!("[{}]:{} ssh-ed25519 ", host.addr, host.port)));
    }
}

#[test]
fn sftp_put_and_get_round_trip() {
    let hosts = start(TestHostsBuilder::new().hosts(1));
    let host = &hosts.hosts()[0];
    let local = tempfile::tempdir().expect("temp dir");
    let original = local.path().join("original");
    let content = format!("sftp check {}\n", hosts.dir().display()).repeat(1000);
    std::fs::write(&original, &content).expect("write original");
    let remote_name = format!(
        "mop-testhosts-sftp-{}",
        hosts
            .dir()
            .file_name()
            .expect("run dir has a name")
            .to_string_lossy()
    );
    let fetched = local.path().join("fetched");
    let batch = local.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "put {} {remote_name}\nget {remote_name} {}\nrm {remote_name}\n",
            original.display(),
            fetched.display()
        ),
    )
    .expect("write batch");
    stdout_of(host.sftp_batch_command(&batch));
    assert_eq!(
        std::fs::read_to_string(&fetched).expect("fetched file"),
        content
    );
    let remote_path = format!("/home/{TEST_USER}/{remote_name}");
    assert!(
        !std::path::Path::new(&remote_path).exists(),
        "sftp rm removed {remote_path}"
    );
}

#[test]
fn password_user_needs_its_password_for_sudo() {
    let hosts = start(TestHostsBuilder::new().hosts(1));
    let host = &hosts.hosts()[0];

    let denied = output(host.ssh_command_as(TEST_SUDO_PASSWORD_USER, "sudo -n true"));
    assert!(
        !denied.status.success(),
        "sudo -n must fail for {TEST_SUDO_PASSWORD_USER}"
    );
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(
        stderr.contains("password is required"),
        "unexpected stderr: {stderr}"
    );

    // The password goes on stdin, never into an argv: other tests watch the process table
    // for it.
    let allowed = with_stdin(
        host.ssh_command_as(
            TEST_SUDO_PASSWORD_USER,
            "id -un; sudo -S -k true && echo sudo-ok",
        ),
        &format!("{TEST_SUDO_PASSWORD}\n"),
    );
    assert!(
        allowed.status.success(),
        "sudo with the password: {allowed:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&allowed.stdout),
        format!("{TEST_SUDO_PASSWORD_USER}\nsudo-ok\n")
    );

    let wrong = with_stdin(
        host.ssh_command_as(TEST_SUDO_PASSWORD_USER, "sudo -S -k true"),
        "wrong\n",
    );
    assert!(!wrong.status.success(), "a wrong password must not work");
}

/// Runs `command` with `input` on its stdin.
fn with_stdin(mut command: std::process::Command, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ssh starts");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .expect("write the password");
    child.wait_with_output().expect("ssh finishes")
}

#[test]
fn passwords_are_refused_unless_asked_for() {
    let hosts = start(TestHostsBuilder::new().hosts(1));
    let host = &hosts.hosts()[0];
    // Offer only passwords; BatchMode (from the run's ssh_config) makes ssh fail, not prompt.
    let mut command = std::process::Command::new("ssh");
    command
        .arg("-F")
        .arg(hosts.ssh_config())
        .args(["-l", TEST_SUDO_PASSWORD_USER])
        .args([
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "--",
        ])
        .arg(&host.name)
        .arg("true");
    let refused = output(command);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("Permission denied"),
        "unexpected stderr: {stderr}"
    );
    assert_eq!(host.accepted_connections().expect("log readable"), 0);
}
