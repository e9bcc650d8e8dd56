//! Facts: what the agent found out about its host, visible to templates as `facts.*`.

use serde::{Deserialize, Serialize};

/// The operating system, from `/etc/os-release`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsInfo {
    /// `ID`, e.g. `debian`.
    pub id: String,
    /// `VERSION_ID`, e.g. `12`.
    pub version: String,
    /// The family: the first of `ID_LIKE`, or `ID` when there is none (e.g. `debian`, `rhel`).
    pub family: String,
    /// `PRETTY_NAME`.
    pub name: String,
}

/// Facts gathered once per agent session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub hostname: String,
    pub fqdn: String,
    pub os: OsInfo,
    pub kernel: String,
    pub arch: String,
    pub cpu_count: u32,
    pub memory_mb: u64,
    pub user: String,
    pub uid: u32,
    pub home: String,
    /// `apt`, `dnf`, `yum`, `apk`, `pacman`, `zypper`, or absent.
    pub package_manager: Option<String>,
    /// `systemd`, `openrc`, `sysvinit`, or absent.
    pub service_manager: Option<String>,
}
