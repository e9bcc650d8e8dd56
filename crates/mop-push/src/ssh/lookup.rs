//! What the user's and the system's ssh_config say about an inventory name, the way `ssh NAME`
//! would resolve it: `HostName`, `Port`, `User`, `IdentityFile`, `ProxyJump` and
//! `UserKnownHostsFile`.
//!
//! The run's own config addresses hosts by generated aliases (`mop-h1`, see `config.rs`), so a
//! `Host web1` block of `~/.ssh/config` would never match them. Instead mop asks ssh itself:
//! `ssh -G NAME` (no connection) with a config that only includes the user's and the system's
//! files. ssh prints every option, defaults included, so the same question is asked once more
//! with an empty config (`-F /dev/null`): an option whose value differs came from ssh_config.
//! The inventory still wins: only settings it leaves unset are taken (see [`apply_settings`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mop_inventory::grammar::{self, GrammarError};

use super::config::{ConfigIncludes, SshHost};
use super::config_scan;
use super::SshError;

/// What ssh_config says for one name, limited to the options mop writes itself. Every value
/// was checked against the grammar of the place it is written to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshConfigSettings {
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    /// As the config wrote them: `%` tokens and `~` are left for ssh to expand.
    pub identity_files: Vec<String>,
    /// The `ProxyJump` chain, as the config wrote it (`[user@]host[:port]`, comma separated).
    pub proxy_jump: Option<String>,
    /// `UserKnownHostsFile`, one entry per file.
    pub known_hosts_files: Vec<String>,
}

impl SshConfigSettings {
    pub fn is_empty(&self) -> bool {
        *self == SshConfigSettings::default()
    }
}

/// Which of an [`SshHost`]'s settings the inventory gave; the others may come from ssh_config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshConfigLookup {
    /// The name `ssh NAME` would be given: the inventory name.
    pub name: String,
    /// The inventory set the port (`mop_port`); else ssh_config's port applies.
    pub port_given: bool,
}

/// Asks ssh what its configuration says about names; holds the include file and the defaults.
pub struct SshConfigReader {
    /// A config with nothing but `Include` lines for the user's and the system's files.
    include_file: tempfile::NamedTempFile,
    /// Where the user config is, for messages.
    shown_path: PathBuf,
    /// `ssh -G` with an empty config: what ssh uses when no config speaks (empty when `inert`).
    defaults: Vec<(String, String)>,
    /// No line of the configs can give a host a setting mop takes (see `config_scan`): every
    /// name gets nothing, without a process per name.
    inert: bool,
}

impl SshConfigReader {
    pub fn new(includes: &ConfigIncludes) -> Result<SshConfigReader, SshError> {
        let shown_path = includes
            .user_config
            .clone()
            .or_else(|| includes.system_config.clone())
            .unwrap_or_else(|| PathBuf::from("/dev/null"));
        let failed = |detail: String| SshError::SshConfig {
            path: shown_path.clone(),
            detail,
        };
        let mut text = String::new();
        for path in [&includes.user_config, &includes.system_config]
            .into_iter()
            .flatten()
        {
            let path = path
                .to_str()
                .ok_or_else(|| failed("the path is not UTF-8".to_string()))?;
            grammar::check_config_path(path)
                .map_err(|error| failed(format!("the path is invalid: {error}")))?;
            let _ = writeln!(text, "Include \"{path}\"");
        }
        let include_file = tempfile::Builder::new()
            .prefix("mop-ssh-config-")
            .tempfile()
            .map_err(|error| failed(format!("cannot write a temporary file: {error}")))?;
        std::fs::write(include_file.path(), text)
            .map_err(|error| failed(format!("cannot write a temporary file: {error}")))?;
        let inert = config_scan::configs_are_inert(includes);
        let defaults = if inert {
            // One `ssh -G` all the same, so a config ssh cannot read is reported here, before
            // any login, as it is when every name is looked up.
            evaluate(include_file.path(), "mop-no-such-host", &shown_path)?;
            Vec::new()
        } else {
            // The name only matters for `hostname`, which is compared with the name itself.
            evaluate(Path::new("/dev/null"), "mop-no-such-host", &shown_path)?
        };
        Ok(SshConfigReader {
            include_file,
            shown_path,
            defaults,
            inert,
        })
    }

    /// The settings ssh_config gives `name`; nothing for names ssh could take for an option.
    pub fn settings(&self, name: &str) -> Result<SshConfigSettings, SshError> {
        if grammar::check_host_address(name).is_err() || self.inert {
            return Ok(SshConfigSettings::default());
        }
        self.settings_given(name, &self.defaults)
    }

    /// What `ssh -G` itself says for `name`, whatever the scan concluded (for the test that
    /// holds the scan to ssh's answers).
    #[cfg(test)]
    pub(crate) fn settings_from_ssh(&self, name: &str) -> Result<SshConfigSettings, SshError> {
        let defaults = evaluate(Path::new("/dev/null"), "mop-no-such-host", &self.shown_path)?;
        self.settings_given(name, &defaults)
    }

    fn settings_given(
        &self,
        name: &str,
        defaults: &[(String, String)],
    ) -> Result<SshConfigSettings, SshError> {
        let resolved = evaluate(self.include_file.path(), name, &self.shown_path)?;
        let invalid = |what: &str, value: &str, error: GrammarError| SshError::InvalidHost {
            host: name.to_string(),
            reason: format!(
                "the {what} {value:?} that ssh_config `{}` gives it is invalid: {error}",
                self.shown_path.display()
            ),
        };
        let from_config = |option: &str| -> Vec<&str> {
            let values = values_of(&resolved, option);
            if values == values_of(defaults, option) {
                Vec::new()
            } else {
                values
            }
        };
        let mut settings = SshConfigSettings::default();
        if let Some(hostname) = values_of(&resolved, "hostname").first() {
            // ssh lowercases the name it was given; a HostName from the config keeps its case.
            if !hostname.eq_ignore_ascii_case(name) {
                grammar::check_host_address(hostname)
                    .map_err(|error| invalid("host name", hostname, error))?;
                settings.hostname = Some((*hostname).to_string());
            }
        }
        if let Some(port) = from_config("port").first() {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(|| SshError::InvalidHost {
                    host: name.to_string(),
                    reason: format!("ssh_config gives it the port {port:?}"),
                })?;
            settings.port = Some(port);
        }
        if let Some(user) = from_config("user").first() {
            grammar::check_user_name(user).map_err(|error| invalid("user name", user, error))?;
            settings.user = Some((*user).to_string());
        }
        for file in from_config("identityfile") {
            grammar::check_config_path(file)
                .map_err(|error| invalid("identity file", file, error))?;
            settings.identity_files.push(file.to_string());
        }
        for line in from_config("userknownhostsfile") {
            // ssh prints all files on one line, separated by spaces.
            for file in line.split_whitespace() {
                grammar::check_config_path(file)
                    .map_err(|error| invalid("known_hosts file", file, error))?;
                settings.known_hosts_files.push(file.to_string());
            }
        }
        if let Some(jump) = from_config("proxyjump").first() {
            if *jump != "none" {
                check_proxy_jump(jump).map_err(|error| invalid("ProxyJump", jump, error))?;
                settings.proxy_jump = Some((*jump).to_string());
            }
        }
        Ok(settings)
    }
}

/// Fills what the inventory left unset in `host` from `settings`; returns the options taken,
/// as `(option, value)` for `mop inventory --host`.
pub fn apply_settings(
    host: &mut SshHost,
    settings: &SshConfigSettings,
) -> Vec<(&'static str, String)> {
    let Some(lookup) = host.lookup.clone() else {
        return Vec::new();
    };
    let mut applied = SshConfigSettings::default();
    let mut taken = Vec::new();
    // No `mop_host`: the inventory name is the address, so ssh_config's HostName replaces it.
    if let Some(hostname) = &settings.hostname {
        if host.address == lookup.name {
            host.address = hostname.clone();
            applied.hostname = Some(hostname.clone());
            taken.push(("HostName", hostname.clone()));
        }
    }
    if let Some(port) = settings.port {
        if !lookup.port_given {
            host.port = port;
            applied.port = Some(port);
            taken.push(("Port", port.to_string()));
        }
    }
    if let Some(user) = &settings.user {
        if host.user.is_none() {
            host.user = Some(user.clone());
            applied.user = Some(user.clone());
            taken.push(("User", user.clone()));
        }
    }
    if host.identity_file.is_none() && !settings.identity_files.is_empty() {
        applied.identity_files = settings.identity_files.clone();
        taken.push(("IdentityFile", settings.identity_files.join(" ")));
    }
    if host.known_hosts_file.is_none() && !settings.known_hosts_files.is_empty() {
        applied.known_hosts_files = settings.known_hosts_files.clone();
        taken.push(("UserKnownHostsFile", settings.known_hosts_files.join(" ")));
    }
    if let Some(jump) = &settings.proxy_jump {
        if host.via.is_none() {
            applied.proxy_jump = Some(jump.clone());
            taken.push(("ProxyJump", jump.clone()));
        }
    }
    host.from_ssh_config = applied;
    taken
}

/// Resolves every host that asks for it (see [`SshHost::lookup`]) through ssh_config.
pub(crate) fn resolve_hosts(
    hosts: &[SshHost],
    includes: &ConfigIncludes,
) -> Result<Vec<SshHost>, SshError> {
    let mut resolved = hosts.to_vec();
    if !hosts.iter().any(|host| host.lookup.is_some()) {
        return Ok(resolved);
    }
    let reader = SshConfigReader::new(includes)?;
    if reader.inert {
        return Ok(resolved);
    }
    let names: Vec<Option<&str>> = hosts
        .iter()
        .map(|host| host.lookup.as_ref().map(|lookup| lookup.name.as_str()))
        .collect();
    // One `ssh -G` per host: run them a few at a time rather than one after another before
    // the first login (20 in a row cost a web tier about 0.2 s).
    let per_thread = names.len().div_ceil(PARALLEL_LOOKUPS).max(1);
    let found: Vec<Option<Result<SshConfigSettings, SshError>>> = std::thread::scope(|scope| {
        let reader = &reader;
        let workers: Vec<_> = names
            .chunks(per_thread)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|name| name.map(|name| reader.settings(name)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("an ssh_config lookup panicked"))
            .collect()
    });
    for (host, settings) in resolved.iter_mut().zip(found) {
        if let Some(settings) = settings {
            apply_settings(host, &settings?);
        }
    }
    Ok(resolved)
}

/// How many `ssh -G` lookups run at once.
const PARALLEL_LOOKUPS: usize = 8;

/// Runs `ssh -F config -G name` and returns its `option value` lines.
fn evaluate(
    config: &Path,
    name: &str,
    shown_path: &Path,
) -> Result<Vec<(String, String)>, SshError> {
    let output = Command::new("ssh")
        .arg("-F")
        .arg(config)
        .arg("-G")
        .arg("--")
        .arg(name)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| SshError::SshConfig {
            path: shown_path.to_path_buf(),
            detail: format!("cannot run `ssh -G`: {error}"),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(SshError::SshConfig {
            path: shown_path.to_path_buf(),
            detail: stderr
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(option, value)| (option.to_ascii_lowercase(), value.to_string()))
        .collect())
}

fn values_of<'a>(lines: &'a [(String, String)], option: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|(name, _)| name == option)
        .map(|(_, value)| value.as_str())
        .collect()
}

/// A `ProxyJump` list: `[ssh://][user@]host[:port]`, comma separated, each part in the same
/// grammars as the inventory's own values (it is written into the run's ssh_config).
pub(crate) fn check_proxy_jump(text: &str) -> Result<(), GrammarError> {
    for hop in text.split(',') {
        let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
        let (user, rest) = match hop.rsplit_once('@') {
            Some((user, rest)) => (Some(user), rest),
            None => (None, hop),
        };
        if let Some(user) = user {
            grammar::check_user_name(user)?;
        }
        let (address, port) = if let Some(inner) = rest.strip_prefix('[') {
            match inner.split_once(']') {
                Some((address, after)) => (address, after.strip_prefix(':')),
                None => (rest, None),
            }
        } else {
            match rest.split_once(':') {
                Some((address, port)) => (address, Some(port)),
                None => (rest, None),
            }
        };
        grammar::check_host_address(address)?;
        if let Some(port) = port {
            if port.parse::<u16>().ok().filter(|port| *port > 0).is_none() {
                grammar::check_host_address(&format!("{address}:{port}"))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_for(config: &str) -> (tempfile::TempDir, SshConfigReader) {
        let dir = tempfile::tempdir().expect("temp dir");
        let user_config = dir.path().join("config");
        std::fs::write(&user_config, config).expect("write");
        let reader = SshConfigReader::new(&ConfigIncludes {
            user_config: Some(user_config),
            system_config: None,
        })
        .expect("reader");
        (dir, reader)
    }

    #[test]
    fn reads_what_ssh_config_says_and_nothing_else() {
        let (_dir, reader) = reader_for(
            "Host web1\n  HostName 127.0.8.1\n  Port 2222\n  User opsuser\n  IdentityFile /keys/web\n  IdentityFile %d/other\n  ProxyJump ops@bastion:2200,b2\n  UserKnownHostsFile /kh/one /kh/two\n",
        );
        let settings = reader.settings("web1").expect("resolves");
        assert_eq!(
            settings,
            SshConfigSettings {
                hostname: Some("127.0.8.1".into()),
                port: Some(2222),
                user: Some("opsuser".into()),
                identity_files: vec!["/keys/web".into(), "%d/other".into()],
                proxy_jump: Some("ops@bastion:2200,b2".into()),
                known_hosts_files: vec!["/kh/one".into(), "/kh/two".into()],
            }
        );
        assert!(reader.settings("db1").expect("resolves").is_empty());
        // Never handed to ssh: it would read it as an option.
        assert!(reader
            .settings("-oProxyCommand=x")
            .expect("skips")
            .is_empty());
    }

    #[test]
    fn refuses_values_that_cannot_go_into_the_run_config() {
        let (_dir, reader) = reader_for("Host web1\n  IdentityFile \"/keys/a\\\"b\"\n");
        let error = reader.settings("web1").map(drop).expect_err("refused");
        assert!(error.to_string().contains("identity file"), "{error}");
    }

    #[test]
    fn the_inventory_wins_where_both_speak() {
        let settings = SshConfigSettings {
            hostname: Some("127.0.8.1".into()),
            port: Some(2222),
            user: Some("opsuser".into()),
            identity_files: vec!["/keys/web".into()],
            proxy_jump: Some("bastion".into()),
            known_hosts_files: vec!["/kh".into()],
        };
        let lookup = |port_given| {
            Some(SshConfigLookup {
                name: "web1".into(),
                port_given,
            })
        };
        let mut silent = SshHost {
            lookup: lookup(false),
            ..SshHost::new("web1", "web1", 22)
        };
        let taken = apply_settings(&mut silent, &settings);
        assert_eq!(
            taken.iter().map(|(option, _)| *option).collect::<Vec<_>>(),
            [
                "HostName",
                "Port",
                "User",
                "IdentityFile",
                "UserKnownHostsFile",
                "ProxyJump"
            ]
        );
        assert_eq!(silent.display_address(), "127.0.8.1:2222");
        assert_eq!(silent.user.as_deref(), Some("opsuser"));

        let mut explicit = SshHost {
            lookup: lookup(true),
            user: Some("deploy".into()),
            identity_file: Some("/keys/inventory".into()),
            via: Some("jump".into()),
            ..SshHost::new("web1", "10.0.0.5", 22)
        };
        let taken = apply_settings(&mut explicit, &settings);
        assert_eq!(
            taken,
            [("UserKnownHostsFile", "/kh".to_string())],
            "only the known_hosts file was left unset"
        );
        assert_eq!(explicit.display_address(), "10.0.0.5:22");
        assert_eq!(explicit.user.as_deref(), Some("deploy"));
    }

    #[test]
    fn proxy_jump_grammar() {
        for good in [
            "bastion",
            "ops@10.0.0.1:2200,b2",
            "ssh://u@[::1]:22",
            "a_b.example",
        ] {
            assert!(check_proxy_jump(good).is_ok(), "{good}");
        }
        for bad in ["-oProxyCommand=x", "a b", "u@h:port", "h;id", "\"x"] {
            assert!(check_proxy_jump(bad).is_err(), "{bad}");
        }
    }
}
