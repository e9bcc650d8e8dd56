//! Gathering the host's facts from `/proc`, `/etc` and `PATH`, without libc or NSS calls.
//!
//! Every probe is best effort: a fact that cannot be read is left empty rather than failing the
//! session, because a minimal container may lack `/etc/os-release` or `/proc/meminfo` and still
//! be a perfectly valid target.

use std::path::{Path, PathBuf};

use mop_protocol::{Facts, OsInfo};

use crate::accounts;

/// Package managers, in the order they are probed: the executable that reveals each one.
/// `dnf` comes before `yum` because Fedora/RHEL 8+ ship a `yum` shim next to `dnf`.
const PACKAGE_MANAGERS: &[(&str, &str)] = &[
    ("apt", "apt-get"),
    ("dnf", "dnf"),
    ("yum", "yum"),
    ("apk", "apk"),
    ("pacman", "pacman"),
    ("zypper", "zypper"),
];

/// Directories searched for executables in addition to `PATH` (a non-login SSH command may get
/// a `PATH` without the sbin directories).
const STANDARD_BIN_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The filesystem locations facts come from; tests point them elsewhere.
#[derive(Debug, Clone)]
pub struct FactSources {
    pub root: PathBuf,
}

impl Default for FactSources {
    fn default() -> Self {
        FactSources {
            root: PathBuf::from("/"),
        }
    }
}

impl FactSources {
    fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    fn read(&self, absolute: &str) -> Option<String> {
        std::fs::read(self.path(absolute))
            .ok()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    fn exists(&self, absolute: &str) -> bool {
        self.path(absolute).exists()
    }
}

/// Gathers the facts of the host the agent runs on.
pub fn gather() -> Facts {
    gather_from(&FactSources::default())
}

/// Gathers facts from `sources` (the real root for [`gather`]).
pub fn gather_from(sources: &FactSources) -> Facts {
    let hostname = sources
        .read("/proc/sys/kernel/hostname")
        .or_else(|| sources.read("/etc/hostname"))
        .map(|text| text.trim().to_string())
        .unwrap_or_default();
    let fqdn = sources
        .read("/etc/hosts")
        .and_then(|hosts| fqdn_from_hosts(&hosts, &hostname))
        .unwrap_or_else(|| hostname.clone());
    let os = sources
        .read("/etc/os-release")
        .or_else(|| sources.read("/usr/lib/os-release"))
        .map(|text| parse_os_release(&text))
        .unwrap_or_default();
    let kernel = sources
        .read("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_string())
        .unwrap_or_default();
    let uid = sources
        .read("/proc/self/status")
        .and_then(|status| effective_uid(&status))
        .unwrap_or(u32::MAX);
    let user_entry = accounts::read_users(&sources.path(accounts::PASSWD_PATH))
        .ok()
        .and_then(|users| users.into_iter().find(|user| user.uid == uid));
    let user = user_entry
        .as_ref()
        .map(|entry| entry.name.clone())
        .unwrap_or_else(|| uid.to_string());
    let home = std::env::var("HOME")
        .ok()
        .filter(|home| !home.is_empty())
        .or_else(|| user_entry.as_ref().map(|entry| entry.home.clone()))
        .unwrap_or_default();
    Facts {
        hostname,
        fqdn,
        os,
        kernel,
        arch: std::env::consts::ARCH.to_string(),
        cpu_count: cpu_count(sources),
        memory_mb: sources
            .read("/proc/meminfo")
            .and_then(|text| memory_mb(&text))
            .unwrap_or(0),
        user,
        uid,
        home,
        package_manager: detect_package_manager(sources),
        service_manager: detect_service_manager(sources),
    }
}

/// Parses `/etc/os-release` (shell-style `KEY=value`, values optionally quoted).
pub fn parse_os_release(text: &str) -> OsInfo {
    let mut info = OsInfo::default();
    let mut id_like = String::new();
    for line in text.lines() {
        let Some((key, raw_value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = unquote(raw_value.trim());
        match key {
            "ID" => info.id = value,
            "VERSION_ID" => info.version = value,
            "PRETTY_NAME" => info.name = value,
            "ID_LIKE" => id_like = value,
            _ => {}
        }
    }
    info.family = id_like
        .split_whitespace()
        .next()
        .map(str::to_string)
        .unwrap_or_else(|| info.id.clone());
    info
}

fn unquote(value: &str) -> String {
    let bytes = value.as_bytes();
    if bytes.len() >= 2
        && (bytes[0] == b'"' || bytes[0] == b'\'')
        && bytes[bytes.len() - 1] == bytes[0]
    {
        let inner = &value[1..value.len() - 1];
        if bytes[0] == b'"' {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(ch) = chars.next() {
                if ch == '\\' {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                } else {
                    out.push(ch);
                }
            }
            return out;
        }
        return inner.to_string();
    }
    value.to_string()
}

/// The canonical name `/etc/hosts` gives this host: the first name of a line that lists the
/// short hostname, when that name is dotted. Without NSS this is the closest to `hostname -f`.
pub fn fqdn_from_hosts(hosts: &str, hostname: &str) -> Option<String> {
    if hostname.contains('.') {
        return Some(hostname.to_string());
    }
    for line in hosts.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let Some(_address) = fields.next() else {
            continue;
        };
        let names: Vec<&str> = fields.collect();
        let lists_host = names
            .iter()
            .any(|name| *name == hostname || name.split('.').next() == Some(hostname));
        if lists_host {
            if let Some(dotted) = names
                .iter()
                .find(|name| name.starts_with(&format!("{hostname}.")))
            {
                return Some((*dotted).to_string());
            }
        }
    }
    None
}

fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn memory_mb(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn cpu_count(sources: &FactSources) -> u32 {
    if let Some(count) = sources
        .read("/sys/devices/system/cpu/online")
        .and_then(|text| count_cpu_list(text.trim()))
    {
        return count;
    }
    std::thread::available_parallelism()
        .map(|count| count.get() as u32)
        .unwrap_or(1)
}

/// Counts a kernel CPU list such as `0-3,8,10-11`.
fn count_cpu_list(list: &str) -> Option<u32> {
    let mut count = 0u32;
    for part in list.split(',').filter(|part| !part.is_empty()) {
        match part.split_once('-') {
            Some((low, high)) => {
                let (low, high): (u32, u32) = (low.parse().ok()?, high.parse().ok()?);
                count += high.checked_sub(low)? + 1;
            }
            None => {
                part.parse::<u32>().ok()?;
                count += 1;
            }
        }
    }
    (count > 0).then_some(count)
}

/// Whether an executable named `name` exists in `PATH` or the standard directories.
pub fn find_executable(sources: &FactSources, name: &str) -> Option<PathBuf> {
    let path_var = std::env::var("PATH").unwrap_or_default();
    let dirs = path_var
        .split(':')
        .filter(|dir| dir.starts_with('/'))
        .chain(STANDARD_BIN_DIRS.iter().copied());
    for dir in dirs {
        let candidate = sources.path(dir).join(name);
        if is_executable(&candidate) {
            return Some(candidate);
        }
    }
    None
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn detect_package_manager(sources: &FactSources) -> Option<String> {
    PACKAGE_MANAGERS
        .iter()
        .find(|(_, executable)| find_executable(sources, executable).is_some())
        .map(|(name, _)| (*name).to_string())
}

fn detect_service_manager(sources: &FactSources) -> Option<String> {
    if sources.exists("/run/systemd/system") {
        return Some("systemd".to_string());
    }
    if sources.exists("/sbin/openrc-run") || find_executable(sources, "rc-service").is_some() {
        return Some("openrc".to_string());
    }
    if sources.exists("/etc/init.d") {
        return Some("sysvinit".to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A detected manager is one a policy may also name (`mop_protocol::PACKAGE_MANAGERS`).
    #[test]
    fn detected_package_managers_are_the_protocol_names() {
        let detected: Vec<&str> = PACKAGE_MANAGERS.iter().map(|(name, _)| *name).collect();
        assert_eq!(detected, mop_protocol::PACKAGE_MANAGERS);
    }

    #[test]
    fn os_release_quotes_and_family() {
        let info = parse_os_release(
            "PRETTY_NAME=\"Rocky Linux 9.3 (Blue Onyx)\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n",
        );
        assert_eq!(info.id, "rocky");
        assert_eq!(info.version, "9.3");
        assert_eq!(info.family, "rhel");
        assert_eq!(info.name, "Rocky Linux 9.3 (Blue Onyx)");
        let debian = parse_os_release("ID=debian\nVERSION_ID='12'\n");
        assert_eq!(debian.family, "debian");
        assert_eq!(debian.version, "12");
    }

    #[test]
    fn fqdn_comes_from_hosts() {
        let hosts = "127.0.0.1 localhost\n127.0.1.1 web1.example.com web1 # me\n";
        assert_eq!(
            fqdn_from_hosts(hosts, "web1"),
            Some("web1.example.com".to_string())
        );
        assert_eq!(fqdn_from_hosts(hosts, "db1"), None);
        assert_eq!(fqdn_from_hosts("", "a.b"), Some("a.b".to_string()));
    }

    #[test]
    fn cpu_lists_count() {
        assert_eq!(count_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("x"), None);
    }

    #[test]
    fn fake_root_facts() {
        let root = tempfile::tempdir().expect("tempdir");
        let write = |path: &str, text: &str| {
            let full = root.path().join(path);
            std::fs::create_dir_all(full.parent().expect("has parent")).expect("mkdir");
            std::fs::write(full, text).expect("write");
        };
        write("proc/sys/kernel/hostname", "web1\n");
        write("proc/sys/kernel/osrelease", "6.1.0-test\n");
        write("etc/hosts", "127.0.1.1 web1.example.org web1\n");
        write("etc/os-release", "ID=alpine\nVERSION_ID=3.19.0\n");
        write("proc/meminfo", "MemTotal:        2048000 kB\n");
        write("etc/init.d/README", "");
        let sources = FactSources {
            root: root.path().to_path_buf(),
        };
        let facts = gather_from(&sources);
        assert_eq!(facts.hostname, "web1");
        assert_eq!(facts.fqdn, "web1.example.org");
        assert_eq!(facts.kernel, "6.1.0-test");
        assert_eq!(facts.os.id, "alpine");
        assert_eq!(facts.memory_mb, 2000);
        assert_eq!(facts.service_manager.as_deref(), Some("sysvinit"));
        assert_eq!(facts.arch, std::env::consts::ARCH);
    }

    #[test]
    fn real_host_facts_are_plausible() {
        let facts = gather();
        assert!(!facts.hostname.is_empty());
        assert!(!facts.kernel.is_empty());
        assert!(facts.cpu_count >= 1);
        assert!(facts.memory_mb > 0);
        assert_ne!(facts.uid, u32::MAX);
    }
}
