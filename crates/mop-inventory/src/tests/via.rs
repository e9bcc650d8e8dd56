//! `mop_via` chains: hop order, per-hop settings, unknown hosts, loops, depth.

use serde_json::json;

use super::{inventory, load_error, resolve, resolve_with, vars};
use crate::{ExtraLayers, HostKeyPolicy, MAX_VIA_HOPS};

const TREE: &str = r#"
[groups.bastions.hosts]
"bastion" = "mop_host=203.0.113.5 mop_port=2201 mop_ssh_username=jump mop_check_host_keys=accept-new"

[groups.rack1.hosts]
"rack1-top" = "mop_via=bastion mop_host=198.51.100.10"
"rack1-101" = "mop_host=198.51.100.101"

[groups.rack1.vars]
mop_via = "rack1-top"
mop_ssh_key = "keys/rack1"

[groups.other.hosts]
"direct" = ""
"#;

#[test]
fn direct_host_has_no_hops() {
    let inventory = inventory(TREE);
    let host = resolve(&inventory, "direct");
    assert!(host.via.is_empty());
    assert_eq!(host.connection.address, "direct");
    assert_eq!(host.connection.port, 22);
}

#[test]
fn one_hop() {
    let inventory = inventory(TREE);
    let top = resolve(&inventory, "rack1-top");
    let hops: Vec<&str> = top.via.iter().map(|hop| hop.name.as_str()).collect();
    assert_eq!(hops, ["bastion"]);
    let bastion = &top.via[0].connection;
    assert_eq!(bastion.address, "203.0.113.5");
    assert_eq!(bastion.port, 2201);
    assert_eq!(bastion.user.as_deref(), Some("jump"));
    assert_eq!(bastion.check_host_keys, HostKeyPolicy::AcceptNew);
    assert_eq!(bastion.key, None, "the bastion is not in rack1");
    assert_eq!(top.connection.address, "198.51.100.10");
}

#[test]
fn two_hops_outermost_first_each_with_its_own_settings() {
    let inventory = inventory(TREE);
    let host = resolve(&inventory, "rack1-101");
    let hops: Vec<&str> = host.via.iter().map(|hop| hop.name.as_str()).collect();
    assert_eq!(
        hops,
        ["bastion", "rack1-top"],
        "first hop is reached from the controller"
    );
    assert_eq!(host.via[0].connection.port, 2201);
    let top = &host.via[1].connection;
    assert_eq!(top.address, "198.51.100.10");
    assert_eq!(top.key.as_deref(), Some(std::path::Path::new("keys/rack1")));
    assert_eq!(top.check_host_keys, HostKeyPolicy::Strict);
    assert_eq!(host.connection.address, "198.51.100.101");
}

#[test]
fn caller_layers_do_not_change_hops_but_can_set_the_first_link() {
    let inventory = inventory(TREE);
    let extra = ExtraLayers::none().with_overrides(
        "-e",
        vars(&[
            ("mop_ssh_username", json!("alice")),
            ("mop_via", json!("bastion")),
        ]),
    );
    let host = resolve_with(&inventory, "direct", &extra);
    assert_eq!(host.connection.user.as_deref(), Some("alice"));
    assert_eq!(host.via.len(), 1);
    assert_eq!(host.via[0].connection.user.as_deref(), Some("jump"));

    let unknown = ExtraLayers::none().with_overrides("-e", vars(&[("mop_via", json!("nowhere"))]));
    let error = inventory
        .resolve("direct", &unknown)
        .expect_err("unknown via");
    assert_eq!(
        error.to_string(),
        "-e: `mop_via` of host `direct` names `nowhere`, which is not a host in the inventory\n  \
         hint: add `nowhere` to the inventory, e.g. under `[groups.bastions.hosts]`"
    );
}

#[test]
fn unknown_via_host_is_a_load_error() {
    let message = load_error(
        r#"
[groups.g.hosts]
"a" = "mop_via=bastoin"
"bastion" = ""
"#,
    );
    assert_eq!(
        message,
        "test.toml:3:8: `mop_via` of host `a` names `bastoin`, which is not a host in the \
         inventory\n  hint: did you mean `bastion`?"
    );
}

#[test]
fn loops_are_load_errors() {
    let message = load_error(
        r#"
[groups.g.hosts]
"a" = "mop_via=b"
"b" = "mop_via=c"
"c" = "mop_via=a"
"#,
    );
    assert!(
        message.starts_with("test.toml:5:8: `mop_via` chain of host `a` loops: a -> b -> c -> a"),
        "{message}"
    );
}

#[test]
fn group_via_that_reaches_its_own_jump_host_is_a_self_loop() {
    // Like OpsMop's rack example, but the rack top forgot its own `mop_via`.
    let message = load_error(
        r#"
[groups.rack1.hosts]
"rack1-top" = ""
"rack1-101" = ""

[groups.rack1.vars]
mop_via = "rack1-top"
"#,
    );
    assert_eq!(
        message,
        "test.toml:7:11: `mop_via` chain of host `rack1-top` loops: rack1-top -> rack1-top\n  \
         hint: a host cannot jump through itself; give `rack1-top` its own `mop_via` (or none) \
         in its shorthand or `[hosts.\"rack1-top\".vars]`"
    );
}

fn chain_inventory(hops: usize) -> String {
    let mut text = String::from("[groups.g.hosts]\n");
    for index in 0..hops {
        text.push_str(&format!("\"h{index}\" = \"mop_via=h{}\"\n", index + 1));
    }
    text.push_str(&format!("\"h{hops}\" = \"\"\n"));
    text
}

#[test]
fn eight_hops_is_the_limit() {
    let inventory = inventory(&chain_inventory(MAX_VIA_HOPS));
    let host = resolve(&inventory, "h0");
    assert_eq!(host.via.len(), MAX_VIA_HOPS);
    assert_eq!(host.via[0].name, "h8");
    assert_eq!(host.via[7].name, "h1");

    let message = load_error(&chain_inventory(MAX_VIA_HOPS + 1));
    assert!(
        message.starts_with(
            "test.toml:10:9: `mop_via` chain of host `h0` is longer than 8 hops: h0 -> h1 -> h2 \
             -> h3 -> h4 -> h5 -> h6 -> h7 -> h8 -> h9"
        ),
        "{message}"
    );
}
