//! The bastion topology: rack hosts are reachable through the bastion chain and never directly.

mod common;

use std::process::Command;

use common::{start, stdout_of};
use mop_testhosts::{BastionLayout, TestHostsBuilder, TEST_USER};

#[test]
fn two_hop_chain_reaches_rack_hosts_and_direct_routes_fail() {
    let hosts = start(
        TestHostsBuilder::new()
            .hosts(1)
            .bastion(BastionLayout::new(1, 2)),
    );
    let names: Vec<&str> = hosts
        .hosts()
        .iter()
        .map(|host| host.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["host1", "bastion", "rack1-top", "rack1-101", "rack1-102"]
    );
    let bastion = hosts.host("bastion").expect("bastion");
    let top = hosts.host("rack1-top").expect("rack top");
    let target = hosts.host("rack1-101").expect("rack host");
    assert_eq!(top.via.as_deref(), Some("bastion"));
    assert_eq!(target.via.as_deref(), Some("rack1-top"));
    assert!(target.in_namespace && top.in_namespace && !bastion.in_namespace);

    // Explicit two-hop ProxyJump to the namespace address; jump hosts resolve via ssh_config.
    let mut jump = Command::new("ssh");
    jump.arg("-F")
        .arg(hosts.ssh_config())
        .args(["-J", "bastion,rack1-top", "-p"])
        .arg(target.port.to_string())
        .arg(format!("{TEST_USER}@{}", target.addr))
        .arg("id -un; sudo -n true && echo sudo-ok");
    assert_eq!(stdout_of(jump), format!("{TEST_USER}\nsudo-ok\n"));
    assert_eq!(target.accepted_connections().expect("log"), 1);
    assert_eq!(top.accepted_connections().expect("log"), 1);
    assert_eq!(bastion.accepted_connections().expect("log"), 1);

    // The helper goes through the same chain.
    assert_eq!(
        stdout_of(
            hosts
                .host("rack1-102")
                .expect("rack host")
                .ssh_command("id -un")
        ),
        format!("{TEST_USER}\n")
    );

    // From the root namespace only the bastion bridge and the direct host answer.
    hosts.assert_unreachable_directly(top);
    hosts.assert_unreachable_directly(target);
    assert!(hosts.is_reachable_directly(bastion));
    assert!(hosts.is_reachable_directly(hosts.host("host1").expect("host1")));

    // ssh without the jump fails too (and quickly).
    let mut direct = Command::new("ssh");
    direct.arg("-F").arg(hosts.ssh_config()).args([
        "-o",
        "ProxyJump=none",
        "-o",
        "ConnectTimeout=2",
        "--",
        "rack1-101",
        "true",
    ]);
    let output = common::output(direct);
    assert!(
        !output.status.success(),
        "direct ssh to rack1-101 must fail"
    );
    assert_eq!(target.accepted_connections().expect("log"), 1);
}

#[test]
fn known_hosts_lists_namespace_hosts_as_seen_from_the_bastion() {
    let hosts = start(
        TestHostsBuilder::new()
            .hosts(0)
            .bastion(BastionLayout::new(2, 1)),
    );
    let known_hosts = std::fs::read_to_string(hosts.known_hosts()).expect("known_hosts");
    assert_eq!(known_hosts.lines().count(), hosts.hosts().len());
    for host in hosts.hosts() {
        assert!(
            known_hosts.contains(&format!("[{}]:{} ssh-ed25519 ", host.addr, host.port)),
            "{} missing from\n{known_hosts}",
            host.name
        );
    }
    let inventory = hosts.inventory_toml();
    let parsed: toml::Table = toml::from_str(&inventory).expect("valid TOML");
    let rack2 = parsed["groups"]["rack2"]["hosts"]
        .as_table()
        .expect("rack2 group");
    let top = hosts.host("rack2-top").expect("rack2-top");
    assert_eq!(
        rack2["rack2-top"].as_str(),
        Some(
            format!(
                "mop_host={} mop_port={} mop_via=bastion",
                top.addr, top.port
            )
            .as_str()
        )
    );
    assert!(rack2["rack2-101"]
        .as_str()
        .is_some_and(|value| value.ends_with(" mop_via=rack2-top")));
    assert_eq!(
        stdout_of(
            hosts
                .host("rack2-101")
                .expect("rack host")
                .ssh_command("echo far")
        ),
        "far\n"
    );
}
