//! Reaching hosts: an unreachable host and a host with the wrong key are reported by name
//! while the others' results still show, and a two-hop via-chain reaches a host the
//! controller cannot reach directly.

use std::process::Command;

use mop_testhosts::{BastionLayout, TestHostsBuilder};

use crate::support::{closed_port, run, Sandbox, MARK_POLICY};

fn files_in(sandbox: &Sandbox) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&sandbox.out)
        .expect("list out/")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn unreachable_host_is_reported_and_the_others_still_converge() {
    let sandbox = Sandbox::start("unreachable", TestHostsBuilder::new().hosts(2).group("web"));
    let port = closed_port();
    sandbox.set_inventory_extra(
        "",
        &format!("[groups.web.hosts]\n\"ghost\" = \"mop_host=127.0.0.1 mop_port={port}\"\n"),
    );
    let policy = sandbox.policy("mark", MARK_POLICY);

    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(1);
    assert_eq!(run.summary_hosts(), ["host1", "host2", "ghost"]);
    for host in ["host1", "host2"] {
        assert_eq!(run.total(host, "changed"), 1, "{}", run.describe());
        assert_eq!(run.host_summary(host)["unreachable"], false);
        assert!(
            run.host_summary(host).get("error").is_none(),
            "{}",
            run.describe()
        );
    }
    let ghost = run.host_summary("ghost");
    assert_eq!(ghost["unreachable"], true, "{}", run.describe());
    let error = ghost["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("ghost")
            && error.contains(&format!("127.0.0.1:{port}"))
            && error.contains("unreachable"),
        "the error should name the host, its address and say it is unreachable: {error}"
    );
    let failed: Vec<_> = run.events_of("host_failed").collect();
    assert_eq!(failed.len(), 1, "{}", run.describe());
    assert_eq!(failed[0]["host"], "ghost");
    assert_eq!(files_in(&sandbox), ["host1.txt", "host2.txt"]);
    let retry = std::fs::read_to_string(sandbox.dir().join("mark.retry")).expect("a retry file");
    let listed: Vec<&str> = retry
        .lines()
        .filter(|line| !line.starts_with('#'))
        .collect();
    assert_eq!(listed, ["ghost"]);

    // The text output names the host too, and still shows the others' results.
    let text = sandbox.push_text(&policy, &["--apply"]);
    assert_eq!(text.exit, 1, "{}", text.describe());
    let ghost_line = text
        .stdout
        .lines()
        .find(|line| line.contains("ghost") && line.contains("unreachable"));
    assert!(ghost_line.is_some(), "{}", text.describe());
    assert!(
        text.stdout.lines().any(|line| line.starts_with("host1 ")),
        "{}",
        text.describe()
    );
    sandbox.assert_hosts_clean();
}

#[test]
fn wrong_host_key_is_refused_naming_the_host() {
    let sandbox = Sandbox::start("hostkey", TestHostsBuilder::new().hosts(2).group("web"));
    let host2 = sandbox.host("host2").clone();

    // A known_hosts file that pins another key for host2.
    let key = sandbox.dir().join("impostor_key");
    let keygen = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "impostor", "-f"])
        .arg(&key));
    assert_eq!(keygen.exit, 0, "ssh-keygen failed: {}", keygen.describe());
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("the public key");
    let public: Vec<&str> = public.split_whitespace().take(2).collect();
    let known_hosts = sandbox.dir().join("wrong_known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[{}]:{} {}\n", host2.addr, host2.port, public.join(" ")),
    )
    .expect("write known_hosts");
    sandbox.set_inventory_extra(
        "",
        &format!(
            "[hosts.host2.vars]\nmop_known_hosts_file = \"{}\"\n",
            known_hosts.display()
        ),
    );
    let policy = sandbox.policy("mark", MARK_POLICY);

    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(1);
    assert_eq!(run.total("host1", "changed"), 1, "{}", run.describe());
    let summary = run.host_summary("host2");
    assert_eq!(summary["unreachable"], true, "{}", run.describe());
    let error = summary["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("host key") && error.contains("host2") && error.contains("does not match"),
        "the error should say host2's key does not match: {error}"
    );
    assert!(
        error.contains(&known_hosts.display().to_string()),
        "the error should name the known_hosts file: {error}"
    );
    assert_eq!(files_in(&sandbox), ["host1.txt"]);
    assert_eq!(
        sandbox.logins("host2"),
        0,
        "mop logged in to a host whose key did not match"
    );
    sandbox.assert_hosts_clean();
}

#[test]
fn via_chain_of_two_hops_reaches_a_hidden_host() {
    let sandbox = Sandbox::start(
        "via",
        TestHostsBuilder::new()
            .hosts(0)
            .bastion(BastionLayout::new(1, 1)),
    );
    let target = sandbox.host("rack1-101").clone();
    assert_eq!(target.via.as_deref(), Some("rack1-top"));
    assert_eq!(sandbox.host("rack1-top").via.as_deref(), Some("bastion"));
    sandbox.hosts.assert_unreachable_directly(&target);
    sandbox
        .hosts
        .assert_unreachable_directly(sandbox.host("rack1-top"));

    let policy = sandbox.policy(
        "rack",
        r#"
[[roles]]
name = "rack"
hosts = ["rack1-101"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}.txt"
content = "reached {{ host.name }} through its rack top\n"

[[roles.resources]]
name = "network namespace"
type = "command"
cmd = "readlink /proc/self/ns/net"
changed_when = "false"
"#,
    );
    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(0);
    assert_eq!(run.summary_hosts(), ["rack1-101"]);
    assert_eq!(run.total("rack1-101", "changed"), 1, "{}", run.describe());
    let content =
        std::fs::read_to_string(sandbox.out.join("rack1-101.txt")).expect("the file was written");
    assert_eq!(content, "reached rack1-101 through its rack top\n");

    // The agent really ran behind the bastion: in the hosts' network namespace, not ours.
    let namespace = run
        .resources_of("rack1-101")
        .find(|event| event["resource"] == "network namespace")
        .and_then(|event| event["output"]["stdout"].as_str())
        .unwrap_or_else(|| panic!("no output of the namespace command\n{}", run.describe()))
        .trim()
        .to_owned();
    let ours = std::fs::read_link("/proc/self/ns/net").expect("our network namespace");
    assert!(namespace.starts_with("net:["), "{namespace}");
    assert_ne!(
        namespace,
        ours.to_string_lossy(),
        "the agent ran in the controller's network namespace"
    );
    // Each hop was logged in to.
    for hop in ["bastion", "rack1-top", "rack1-101"] {
        assert!(
            sandbox.logins(hop) >= 1,
            "no login on `{hop}`: the chain did not go through it"
        );
    }
    sandbox.assert_hosts_clean();
}
