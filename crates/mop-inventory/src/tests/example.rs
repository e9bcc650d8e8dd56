//! The shipped `inventory/example.toml` loads and means what its comments say.

use serde_json::json;

use super::{provenance, resolve};
use crate::{Inventory, Selection};

const EXAMPLE: &str = include_str!("../../../../inventory/example.toml");

fn example() -> Inventory {
    Inventory::parse(EXAMPLE, "inventory/example.toml")
        .unwrap_or_else(|error| panic!("example inventory loads: {error}"))
}

#[test]
fn example_loads_from_disk_too() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../inventory/example.toml");
    let inventory = Inventory::load(&path).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(inventory.hosts().count(), example().hosts().count());
}

#[test]
fn rack_hosts_go_through_two_hops() {
    let inventory = example();
    let host = resolve(&inventory, "rack1-101.example.com");
    let hops: Vec<(&str, &str)> = host
        .via
        .iter()
        .map(|hop| (hop.name.as_str(), hop.connection.address.as_str()))
        .collect();
    assert_eq!(
        hops,
        [
            ("bastion.example.com", "203.0.113.5"),
            ("rack1-top.example.com", "198.51.100.10"),
        ]
    );
    assert_eq!(host.connection.user.as_deref(), Some("ops"));
    assert_eq!(host.via[0].connection.user.as_deref(), Some("deploy"));
    assert!(host.connection.agent_cache);
    assert_eq!(host.connection.agent_dir.as_deref(), Some("/var/lib/mop"));

    let top = resolve(&inventory, "rack2-top.example.com");
    assert_eq!(top.via.len(), 1);
    assert_eq!(
        provenance(&top, "mop_via"),
        ["group `rack2` (depth 2)", "host shorthand in group `rack2`"]
    );
}

#[test]
fn web1_layers() {
    let inventory = example();
    let web1 = resolve(&inventory, "web1.example.com");
    assert_eq!(web1.vars["app_port"], json!(9090));
    assert_eq!(web1.vars["weight"], json!("3"));
    assert_eq!(web1.vars["environment"], json!("production-dc1"));
    assert_eq!(web1.vars["datacenter"], json!("dc1"));
    assert_eq!(web1.connection.address, "192.0.2.11");
    assert!(web1.connection.sudo);
    assert_eq!(web1.connection.connect_timeout, Some(10));
    assert!(web1.via.is_empty());
    assert_eq!(web1.groups, ["all", "dc1", "webservers"]);
    let web2 = resolve(&inventory, "web2.example.com");
    assert_eq!(web2.vars["motd"], json!("maintenance window: sundays"));
}

#[test]
fn example_selections() {
    let inventory = example();
    let selection = Selection::new(&["fooapp"], &[]).expect("valid");
    let names: Vec<&str> = inventory
        .select(&selection)
        .hosts
        .iter()
        .map(|host| host.name())
        .collect();
    assert_eq!(names, ["rack1-101.example.com", "rack2-202.example.com"]);
    let racks = Selection::new(&["racks"], &[]).expect("valid");
    assert_eq!(inventory.select(&racks).hosts.len(), 6);
}
