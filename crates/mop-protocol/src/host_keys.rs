//! The host key policy: how the SSH client treats unknown or changed host keys. Spelled once
//! here for the inventory (`mop_check_host_keys`) and the policy (`check_host_keys`); it never
//! crosses the wire, but this is the one crate both of them link.

use std::fmt;

use serde::Serialize;

/// `mop_check_host_keys` / `check_host_keys`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// The key must already be in `known_hosts` (OpenSSH `StrictHostKeyChecking=yes`).
    #[default]
    Strict,
    /// Unknown hosts are trusted and recorded; changed keys are refused (`accept-new`).
    AcceptNew,
    /// No checking at all (`StrictHostKeyChecking=no` with no `known_hosts`). For throwaway
    /// test hosts only.
    Off,
}

impl HostKeyPolicy {
    /// Every policy, in documentation order.
    pub const ALL: [HostKeyPolicy; 3] = [
        HostKeyPolicy::Strict,
        HostKeyPolicy::AcceptNew,
        HostKeyPolicy::Off,
    ];

    /// Every accepted spelling, in documentation order.
    pub const NAMES: &'static [&'static str] = &["strict", "accept-new", "off"];

    /// The spelling in inventories and policies.
    pub fn as_str(self) -> &'static str {
        match self {
            HostKeyPolicy::Strict => "strict",
            HostKeyPolicy::AcceptNew => "accept-new",
            HostKeyPolicy::Off => "off",
        }
    }

    /// Parses a spelling from an inventory or a policy.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|policy| policy.as_str() == name)
    }
}

impl fmt::Display for HostKeyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_serde_agree() {
        let names: Vec<&str> = HostKeyPolicy::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, HostKeyPolicy::NAMES);
        for policy in HostKeyPolicy::ALL {
            assert_eq!(HostKeyPolicy::from_name(policy.as_str()), Some(policy));
            let json = serde_json::to_value(policy).expect("serializable");
            assert_eq!(json, policy.as_str());
        }
        assert_eq!(HostKeyPolicy::from_name("yes"), None);
    }
}
