//! Pure planning: which hosts a run has, their names, groups, addresses and jump hosts.
//!
//! Root-namespace hosts get `127.S.x.y` where `S` (16..=250) is picked per run from the pid
//! and a counter, so parallel test processes rarely share addresses (ports are free-picked
//! anyway). Hosts inside the bastion's network namespace use mnemonic addresses:
//! the bastion `127.10.0.1`, rack `r`'s top `127.10.r.1`, host `rack{r}-{100+k}` `127.10.r.{100+k}`.

use std::net::Ipv4Addr;

use crate::Error;

/// The bastion topology: a bastion reachable from the root namespace, and racks of hosts
/// reachable only through it (bastion -> rack top -> rack hosts, OpsMop's connection tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BastionLayout {
    /// Inventory name of the bastion host.
    pub name: String,
    /// Inventory group holding the bastion.
    pub group: String,
    /// Prefix of rack groups and host names: `rack1`, `rack1-top`, `rack1-101`.
    pub rack_prefix: String,
    /// Number of racks, 0..=250.
    pub racks: usize,
    /// Hosts behind each rack top, 0..=150.
    pub hosts_per_rack: usize,
}

impl BastionLayout {
    /// `racks` racks of `hosts_per_rack` hosts each, with the default names
    /// (`bastion` in group `bastions`, racks `rack1`..).
    pub fn new(racks: usize, hosts_per_rack: usize) -> BastionLayout {
        BastionLayout {
            racks,
            hosts_per_rack,
            ..BastionLayout::default()
        }
    }
}

impl Default for BastionLayout {
    fn default() -> Self {
        BastionLayout {
            name: "bastion".to_owned(),
            group: "bastions".to_owned(),
            rack_prefix: "rack".to_owned(),
            racks: 1,
            hosts_per_rack: 2,
        }
    }
}

/// What the caller asked for, before any process starts.
#[derive(Debug, Clone)]
pub(crate) struct LayoutRequest {
    pub(crate) hosts: usize,
    pub(crate) group: String,
    pub(crate) host_prefix: String,
    pub(crate) bastion: Option<BastionLayout>,
}

/// Where a planned sshd runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// In the root network namespace, reachable directly.
    Root,
    /// The bastion: sshd inside the namespace, bridged to `bridge_addr` in the root namespace.
    Bastion { bridge_addr: Ipv4Addr },
    /// Inside the namespace, reachable only through `via`.
    Hidden,
}

/// One host of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlannedHost {
    pub(crate) name: String,
    pub(crate) group: String,
    /// The address sshd listens on (inside the namespace for bastion and hidden hosts).
    pub(crate) listen_addr: Ipv4Addr,
    pub(crate) via: Option<String>,
    pub(crate) placement: Placement,
}

const MAX_DIRECT_HOSTS: usize = 10_000;
const MAX_RACKS: usize = 250;
const MAX_HOSTS_PER_RACK: usize = 150;
const NAMESPACE_OCTET: u8 = 10;

/// The root-namespace address of the `index`th host of a run in `slot`.
pub(crate) fn root_address(slot: u32, index: usize) -> Ipv4Addr {
    let second = 16 + (slot % 235) as u8;
    let third = u8::try_from(index / 250).expect("index is bounded by MAX_DIRECT_HOSTS");
    let fourth = 1 + (index % 250) as u8;
    Ipv4Addr::new(127, second, third, fourth)
}

/// Names become TOML keys, ssh_config `Host` aliases and file names: keep them plain.
pub(crate) fn validate_name(kind: &str, name: &str) -> Result<(), Error> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > 64 || !starts_well || !name.chars().all(plain) {
        return Err(Error::layout(
            format!("{kind} name `{name}` must be 1-64 characters of letters, digits, `-`, `_`, `.`, starting with a letter or digit"),
            None,
        ));
    }
    Ok(())
}

/// Turns a request into the list of hosts, in inventory order.
pub(crate) fn plan(request: &LayoutRequest, slot: u32) -> Result<Vec<PlannedHost>, Error> {
    if request.hosts == 0 && request.bastion.is_none() {
        return Err(Error::layout(
            "no hosts requested",
            Some(
                "ask for at least one direct host (`--hosts N`) or a bastion layout (`--bastion`)",
            ),
        ));
    }
    if request.hosts > MAX_DIRECT_HOSTS {
        return Err(Error::layout(
            format!(
                "{} hosts requested, at most {MAX_DIRECT_HOSTS} are supported",
                request.hosts
            ),
            None,
        ));
    }
    validate_name("group", &request.group)?;
    validate_name("host prefix", &request.host_prefix)?;
    let mut hosts = Vec::new();
    for index in 0..request.hosts {
        hosts.push(PlannedHost {
            name: format!("{}{}", request.host_prefix, index + 1),
            group: request.group.clone(),
            listen_addr: root_address(slot, index),
            via: None,
            placement: Placement::Root,
        });
    }
    if let Some(bastion) = &request.bastion {
        plan_bastion(bastion, slot, request.hosts, &mut hosts)?;
    }
    check_unique(&hosts, request)?;
    Ok(hosts)
}

fn plan_bastion(
    layout: &BastionLayout,
    slot: u32,
    bridge_index: usize,
    hosts: &mut Vec<PlannedHost>,
) -> Result<(), Error> {
    if layout.racks > MAX_RACKS || layout.hosts_per_rack > MAX_HOSTS_PER_RACK {
        return Err(Error::layout(
            format!(
                "{} racks of {} hosts requested, at most {MAX_RACKS} racks of {MAX_HOSTS_PER_RACK} hosts are supported",
                layout.racks, layout.hosts_per_rack
            ),
            None,
        ));
    }
    validate_name("bastion", &layout.name)?;
    validate_name("bastion group", &layout.group)?;
    validate_name("rack prefix", &layout.rack_prefix)?;
    hosts.push(PlannedHost {
        name: layout.name.clone(),
        group: layout.group.clone(),
        listen_addr: Ipv4Addr::new(127, NAMESPACE_OCTET, 0, 1),
        via: None,
        placement: Placement::Bastion {
            bridge_addr: root_address(slot, bridge_index),
        },
    });
    for rack in 1..=layout.racks {
        let rack_octet = u8::try_from(rack).expect("racks are bounded by MAX_RACKS");
        let group = format!("{}{rack}", layout.rack_prefix);
        let top = format!("{group}-top");
        hosts.push(PlannedHost {
            name: top.clone(),
            group: group.clone(),
            listen_addr: Ipv4Addr::new(127, NAMESPACE_OCTET, rack_octet, 1),
            via: Some(layout.name.clone()),
            placement: Placement::Hidden,
        });
        for member in 1..=layout.hosts_per_rack {
            let number = u8::try_from(100 + member).expect("hosts per rack are bounded");
            hosts.push(PlannedHost {
                name: format!("{group}-{number}"),
                group: group.clone(),
                listen_addr: Ipv4Addr::new(127, NAMESPACE_OCTET, rack_octet, number),
                via: Some(top.clone()),
                placement: Placement::Hidden,
            });
        }
    }
    Ok(())
}

fn check_unique(hosts: &[PlannedHost], request: &LayoutRequest) -> Result<(), Error> {
    let mut names = std::collections::BTreeSet::new();
    for host in hosts {
        if !names.insert(host.name.as_str()) {
            return Err(Error::layout(
                format!("host name `{}` is used twice", host.name),
                Some("pick a host prefix, bastion name and rack prefix that do not overlap"),
            ));
        }
    }
    if let Some(bastion) = &request.bastion {
        let rack_group = |group: &str| {
            group
                .strip_prefix(bastion.rack_prefix.as_str())
                .is_some_and(|rest| {
                    rest.parse::<usize>()
                        .is_ok_and(|n| (1..=bastion.racks).contains(&n))
                })
        };
        let direct_clash =
            request.hosts > 0 && (request.group == bastion.group || rack_group(&request.group));
        if direct_clash || rack_group(&bastion.group) {
            return Err(Error::layout(
                "two kinds of hosts share one inventory group",
                Some("the direct hosts' group, the bastion group and the rack groups must all differ"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(hosts: usize, bastion: Option<BastionLayout>) -> LayoutRequest {
        LayoutRequest {
            hosts,
            group: "web".to_owned(),
            host_prefix: "host".to_owned(),
            bastion,
        }
    }

    #[test]
    fn direct_hosts_get_distinct_addresses_past_250() {
        let hosts = plan(&request(300, None), 7).expect("valid");
        assert_eq!(hosts[0].name, "host1");
        assert_eq!(hosts[0].listen_addr, Ipv4Addr::new(127, 23, 0, 1));
        assert_eq!(hosts[249].listen_addr, Ipv4Addr::new(127, 23, 0, 250));
        assert_eq!(hosts[250].listen_addr, Ipv4Addr::new(127, 23, 1, 1));
        let distinct: std::collections::BTreeSet<_> = hosts.iter().map(|h| h.listen_addr).collect();
        assert_eq!(distinct.len(), 300);
    }

    #[test]
    fn root_addresses_never_use_the_namespace_or_default_loopback_octets() {
        for slot in 0..1000 {
            let second = root_address(slot, 0).octets()[1];
            assert!((16..=250).contains(&second), "slot {slot} -> {second}");
        }
    }

    #[test]
    fn bastion_layout_chains_rack_hosts_through_their_top() {
        let hosts = plan(&request(1, Some(BastionLayout::new(2, 2))), 0).expect("valid");
        let summary: Vec<String> = hosts
            .iter()
            .map(|h| format!("{} {} {} {:?}", h.group, h.name, h.listen_addr, h.via))
            .collect();
        assert_eq!(
            summary,
            [
                "web host1 127.16.0.1 None",
                "bastions bastion 127.10.0.1 None",
                "rack1 rack1-top 127.10.1.1 Some(\"bastion\")",
                "rack1 rack1-101 127.10.1.101 Some(\"rack1-top\")",
                "rack1 rack1-102 127.10.1.102 Some(\"rack1-top\")",
                "rack2 rack2-top 127.10.2.1 Some(\"bastion\")",
                "rack2 rack2-101 127.10.2.101 Some(\"rack2-top\")",
                "rack2 rack2-102 127.10.2.102 Some(\"rack2-top\")",
            ]
        );
        assert_eq!(
            hosts[1].placement,
            Placement::Bastion {
                bridge_addr: Ipv4Addr::new(127, 16, 0, 2)
            }
        );
    }

    #[test]
    fn rejects_bad_requests_with_reasons() {
        let check = |request: LayoutRequest, expected: &str| {
            let message = plan(&request, 0).unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
        };
        check(request(0, None), "no hosts requested");
        check(request(MAX_DIRECT_HOSTS + 1, None), "at most");
        let mut spaced = request(1, None);
        spaced.group = "my group".to_owned();
        check(spaced, "group name `my group`");
        let mut clash = request(1, Some(BastionLayout::default()));
        clash.group = "rack1".to_owned();
        check(clash, "share one inventory group");
        let mut same_name = request(1, Some(BastionLayout::default()));
        same_name.host_prefix = "bastion".to_owned();
        same_name.hosts = 0;
        assert!(plan(&same_name, 0).is_ok());
        let mut dup = request(1, Some(BastionLayout::default()));
        dup.host_prefix = "rack1-10".to_owned();
        check(dup, "host name `rack1-101` is used twice");
        check(
            request(1, Some(BastionLayout::new(251, 1))),
            "at most 250 racks",
        );
    }
}
