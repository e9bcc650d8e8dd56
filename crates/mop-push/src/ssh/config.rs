//! The run's private ssh_config: one `Host` block per inventory host, then the user's own config.
//!
//! Hosts are addressed by generated aliases (`mop-h1`, `mop-h2`, ...) because inventory names
//! may contain characters that are special in ssh_config patterns. The file is passed to every
//! ssh with `-F`, which ssh forwards to the `ssh -W` it spawns for each `ProxyJump` hop: that is
//! how every hop of a via-chain gets its own inventory settings (options given on the command
//! line do not reach jump hosts).
//!
//! `-F` replaces `~/.ssh/config` and `/etc/ssh/ssh_config`, so the file ends with a
//! `Match all` block that includes both (for the names ssh is given, such as the jump hosts of
//! a `ProxyJump` from the user's config) and a `Match final` block that includes them again. In that final pass ssh matches `Host` patterns
//! against the real host name (the `HostName` we set), so the user's blocks for
//! `web1.example.com` still apply; ssh keeps the first value it obtains for each option, so
//! the inventory's settings (written first) win where both say something.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use mop_inventory::grammar::{self, GrammarError};

use super::lookup::{check_proxy_jump, SshConfigLookup, SshConfigSettings};
use super::run_as::Secret;
use super::SshError;

/// How a host's key is checked against known_hosts: the protocol crate's enum, the one the
/// inventory and policy use too.
pub use mop_protocol::HostKeyPolicy;

/// `StrictHostKeyChecking` for `policy` (`Off` also points `UserKnownHostsFile` at
/// `/dev/null`, see [`render_config`]).
fn strict_host_key_checking(policy: HostKeyPolicy) -> &'static str {
    match policy {
        HostKeyPolicy::Strict => "yes",
        HostKeyPolicy::AcceptNew => "accept-new",
        HostKeyPolicy::Off => "no",
    }
}

/// How to reach one host over SSH; the executor maps the inventory's resolved connection
/// settings onto this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshHost {
    /// Inventory name, used in messages.
    pub name: String,
    pub address: String,
    pub port: u16,
    /// `None`: whatever the user's ssh config says (else the local user name).
    pub user: Option<String>,
    /// When set, only this key is offered (`IdentitiesOnly yes`).
    pub identity_file: Option<PathBuf>,
    /// `UserKnownHostsFile`; `None` = the user's default.
    pub known_hosts_file: Option<PathBuf>,
    pub host_keys: HostKeyPolicy,
    pub connect_timeout: Option<Duration>,
    /// Name of another [`SshHost`] of the same run to jump through (its own settings apply).
    pub via: Option<String>,
    /// Look the host up in the user's and the system's ssh_config, as `ssh NAME` does, for
    /// the settings above that are left unset (`lookup.rs`); `None`: no lookup.
    pub lookup: Option<SshConfigLookup>,
    /// What the lookup filled in that has no field above (identity files, known_hosts files,
    /// a ProxyJump chain); `address`, `port` and `user` are filled in place.
    pub from_ssh_config: SshConfigSettings,
    /// `mop_ssh_password`: tried once, after keys and ssh-agent, through askpass
    /// (`askpass.rs`); never written to the config.
    pub password: Option<Secret>,
}

impl SshHost {
    /// A host with default settings: strict host keys, the user's ssh defaults otherwise.
    pub fn new(name: &str, address: &str, port: u16) -> SshHost {
        SshHost {
            name: name.to_string(),
            address: address.to_string(),
            port,
            user: None,
            identity_file: None,
            known_hosts_file: None,
            host_keys: HostKeyPolicy::Strict,
            connect_timeout: None,
            via: None,
            lookup: None,
            from_ssh_config: SshConfigSettings::default(),
            password: None,
        }
    }

    /// Whether the run's config states the port: when neither the inventory nor ssh_config
    /// for the name gave one, ssh's own rules pick it (22, or a `Port` in the user's block for
    /// the address).
    fn port_is_stated(&self) -> bool {
        match &self.lookup {
            None => true,
            Some(lookup) => lookup.port_given || self.from_ssh_config.port.is_some(),
        }
    }

    /// `address:port` (`[address]:port` for IPv6), for messages.
    pub fn display_address(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }

    /// The name ssh files this host under in known_hosts (what `ssh-keygen -R` wants).
    pub(crate) fn known_hosts_name(&self) -> String {
        if self.port == 22 {
            self.address.clone()
        } else {
            format!("[{}]:{}", self.address, self.port)
        }
    }
}

/// Where the run's config includes the user's and the system's ssh configuration from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIncludes {
    /// Default `~/.ssh/config` (ssh expands the `~`; a missing file is skipped).
    pub user_config: Option<PathBuf>,
    /// Default `/etc/ssh/ssh_config`.
    pub system_config: Option<PathBuf>,
}

/// Names a file that replaces `~/.ssh/config` for mop (as `ssh -F` would, but the system's
/// config still applies); for tests and for operators who keep a separate config for mop.
pub const SSH_CONFIG_ENV: &str = "MOP_SSH_CONFIG";

impl Default for ConfigIncludes {
    /// `~/.ssh/config` (or `$MOP_SSH_CONFIG`) and `/etc/ssh/ssh_config`.
    fn default() -> Self {
        let user_config = std::env::var_os(SSH_CONFIG_ENV)
            .filter(|path| !path.is_empty())
            .map_or_else(|| PathBuf::from("~/.ssh/config"), PathBuf::from);
        ConfigIncludes {
            user_config: Some(user_config),
            system_config: Some(PathBuf::from("/etc/ssh/ssh_config")),
        }
    }
}

/// A validated host of the run with its alias and position in its via-chain.
#[derive(Debug, Clone)]
pub(crate) struct PlannedHost {
    pub(crate) spec: SshHost,
    pub(crate) alias: String,
    /// Number of jump hosts in front of it (0 = direct).
    pub(crate) depth: usize,
    /// The control socket name other hosts' `ssh -W` use to reach it through its master.
    pub(crate) control_path: PathBuf,
}

/// Validates the hosts (unique names, known and acyclic via-chains, values ssh_config can
/// hold) and assigns aliases, in input order.
pub(crate) fn plan_hosts(
    hosts: &[SshHost],
    run_dir: &Path,
) -> Result<IndexMap<String, PlannedHost>, SshError> {
    let mut planned = IndexMap::new();
    for (index, host) in hosts.iter().enumerate() {
        validate_host(host)?;
        let alias = format!("mop-h{}", index + 1);
        let control_path = run_dir.join(format!("{alias}.sock"));
        let entry = PlannedHost {
            spec: host.clone(),
            alias,
            depth: 0,
            control_path,
        };
        if planned.insert(host.name.clone(), entry).is_some() {
            return Err(invalid(
                host,
                "the host name is used twice in this run".to_string(),
            ));
        }
    }
    let names: Vec<String> = planned.keys().cloned().collect();
    for name in names {
        let depth = chain_depth(&planned, &name)?;
        planned[&name].depth = depth;
    }
    Ok(planned)
}

fn chain_depth(planned: &IndexMap<String, PlannedHost>, name: &str) -> Result<usize, SshError> {
    let mut seen = BTreeSet::from([name.to_string()]);
    let mut depth = 0;
    let mut current = &planned[name].spec;
    while let Some(via) = &current.via {
        let Some(next) = planned.get(via) else {
            return Err(invalid(
                current,
                format!("its jump host `{via}` is not part of this run"),
            ));
        };
        if !seen.insert(via.clone()) {
            return Err(invalid(
                &planned[name].spec,
                format!("its via-chain loops back to `{via}`"),
            ));
        }
        depth += 1;
        current = &next.spec;
    }
    Ok(depth)
}

fn invalid(host: &SshHost, reason: String) -> SshError {
    SshError::InvalidHost {
        host: host.name.clone(),
        reason,
    }
}

/// Applies one of the inventory's value grammars (`mop_inventory::grammar`) to a setting.
fn check_grammar(
    host: &SshHost,
    what: &str,
    value: &str,
    grammar: fn(&str) -> Result<(), GrammarError>,
) -> Result<(), SshError> {
    grammar(value)
        .map_err(|error| invalid(host, format!("the {what} {value:?} is invalid: {error}")))
}

/// The second line of defence: the inventory already checked these values when it read them,
/// but hosts also come from `--hosts` and `--ssh-key`, and this is the last stop before the
/// values are written into ssh_config (see `mop_inventory::grammar` for why each rule exists).
fn validate_host(host: &SshHost) -> Result<(), SshError> {
    if host.name.is_empty() {
        return Err(invalid(host, "the host name is empty".to_string()));
    }
    check_grammar(host, "address", &host.address, grammar::check_host_address)?;
    if host.port == 0 {
        return Err(invalid(host, "port 0 is not a valid ssh port".to_string()));
    }
    if let Some(user) = &host.user {
        check_grammar(host, "user name", user, grammar::check_user_name)?;
    }
    for (what, path) in [
        ("identity file", &host.identity_file),
        ("known_hosts file", &host.known_hosts_file),
    ] {
        if let Some(path) = path {
            let text = path
                .to_str()
                .ok_or_else(|| invalid(host, format!("the {what} path is not UTF-8")))?;
            check_grammar(host, what, text, grammar::check_config_path)?;
        }
    }
    let from_config = &host.from_ssh_config;
    for path in from_config
        .identity_files
        .iter()
        .chain(&from_config.known_hosts_files)
    {
        check_grammar(
            host,
            "path from ssh_config",
            path,
            grammar::check_config_path,
        )?;
    }
    if let Some(jump) = &from_config.proxy_jump {
        check_grammar(host, "ProxyJump from ssh_config", jump, check_proxy_jump)?;
    }
    if host
        .connect_timeout
        .is_some_and(|timeout| timeout.is_zero())
    {
        return Err(invalid(host, "the connect timeout is zero".to_string()));
    }
    Ok(())
}

/// A host name, address or user name for ssh_config. The grammar leaves nothing to quote; `%`
/// (an IPv6 zone) is doubled because ssh expands `%` tokens in `HostName`.
fn config_word(value: &str) -> String {
    value.replace('%', "%%")
}

/// A path for ssh_config: always double-quoted, `%` doubled (ssh expands `%` tokens in paths).
/// [`grammar::check_config_path`] has refused everything a quoted string cannot hold; inside
/// the quotes a `'`, `#` or space is plain text.
fn path_value(path: &Path) -> String {
    format!("\"{}\"", path.to_string_lossy().replace('%', "%%"))
}

/// Connect timeout in whole seconds as ssh wants it (rounded up, at least 1).
pub(crate) fn timeout_seconds(timeout: Duration) -> u64 {
    timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0)
}

/// Renders the run's ssh_config.
pub(crate) fn render_config(
    planned: &IndexMap<String, PlannedHost>,
    includes: &ConfigIncludes,
) -> String {
    let mut text = String::from("# generated by mop for one run; removed when the run ends\n");
    for host in planned.values() {
        let spec = &host.spec;
        let _ = writeln!(
            text,
            "\n# {}\nHost {}",
            spec.name.replace(['\n', '\r'], " "),
            host.alias
        );
        let mut line = |option: &str, value: &str| {
            let _ = writeln!(text, "  {option} {value}");
        };
        let from_config = &spec.from_ssh_config;
        line("HostName", &config_word(&spec.address));
        if spec.port_is_stated() {
            line("Port", &spec.port.to_string());
        }
        if let Some(user) = &spec.user {
            line("User", &config_word(user));
        }
        if let Some(identity) = &spec.identity_file {
            line("IdentityFile", &path_value(identity));
            line("IdentitiesOnly", "yes");
        }
        // As the user's config wrote them: `%` tokens are ssh's to expand, as they would be
        // there (and IdentitiesOnly stays the user's choice).
        for identity in &from_config.identity_files {
            line("IdentityFile", &format!("\"{identity}\""));
        }
        match spec.host_keys {
            HostKeyPolicy::Off => {
                line("UserKnownHostsFile", "/dev/null");
                line("GlobalKnownHostsFile", "/dev/null");
            }
            HostKeyPolicy::Strict | HostKeyPolicy::AcceptNew => {
                if let Some(known_hosts) = &spec.known_hosts_file {
                    line("UserKnownHostsFile", &path_value(known_hosts));
                } else if !from_config.known_hosts_files.is_empty() {
                    let files: Vec<String> = from_config
                        .known_hosts_files
                        .iter()
                        .map(|file| format!("\"{file}\""))
                        .collect();
                    line("UserKnownHostsFile", &files.join(" "));
                }
            }
        }
        line(
            "StrictHostKeyChecking",
            strict_host_key_checking(spec.host_keys),
        );
        // Always written: without it ssh waits for the kernel's SYN retries (about a minute
        // or more) before giving up on a host that drops packets.
        let timeout = spec
            .connect_timeout
            .unwrap_or(super::connect::DEFAULT_CONNECT_TIMEOUT);
        line("ConnectTimeout", &timeout_seconds(timeout).to_string());
        if let Some(via) = &spec.via {
            line("ProxyJump", &planned[via].alias);
        } else if let Some(jump) = &from_config.proxy_jump {
            // Jump hosts named by the user's config are resolved by ssh through the includes
            // at the end of this file, as `ssh NAME` would.
            line("ProxyJump", jump);
        }
        // The master for this host is started by mop (with -M -S); other ssh processes that
        // reach this host, i.e. the `ssh -W` of hosts jumping through it, reuse that master
        // through this path and never become masters themselves.
        line("ControlMaster", "no");
        line("ControlPath", &path_value(&host.control_path));
        // Every ssh but the master mop starts for a password host (`-o BatchMode=no` on its
        // command line, `askpass.rs`) stays non-interactive: `ssh -W` hops and `ssh -tt`
        // reuse masters and must never ask anything.
        line("BatchMode", "yes");
        if spec.password.is_some() {
            // Keys and ssh-agent first; the password once (askpass serves it once too), so a
            // wrong one fails the login instead of looping.
            line(
                "PreferredAuthentications",
                "publickey,password,keyboard-interactive",
            );
            line("NumberOfPasswordPrompts", "1");
        }
        // A host that dies mid-run is noticed within a minute instead of hanging the run.
        line("ServerAliveInterval", "15");
        line("ServerAliveCountMax", "4");
    }
    let mut final_includes = String::new();
    for path in [&includes.user_config, &includes.system_config]
        .into_iter()
        .flatten()
    {
        let _ = writeln!(final_includes, "  Include {}", path_value(path));
    }
    if !final_includes.is_empty() {
        // First pass, matched against the names ssh was given: what makes a jump host named
        // by the user's own `ProxyJump` (`ssh -W ... jump1`) resolve as `ssh jump1` would. Our
        // blocks come first, so their settings still win.
        text.push_str("\n# the user's and the system's own ssh configuration, matched against the names given to ssh\nMatch all\n");
        text.push_str(&final_includes);
        text.push_str("\n# the user's and the system's own ssh configuration, matched against the real host names\nMatch final\n");
        text.push_str(&final_includes);
    }
    text
}

/// Lets ssh evaluate the run's config once (`ssh -G`, no connection), so a config ssh rejects
/// (an old ssh without `Match final`, an error in the user's own config) fails the run up
/// front with ssh's words instead of every host with a login error.
pub(super) fn check_config(config_path: &Path, alias: &str) -> Result<(), SshError> {
    let output = std::process::Command::new("ssh")
        .arg("-F")
        .arg(config_path)
        .args(["-G", alias])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|error| SshError::SshConfig {
            path: config_path.to_path_buf(),
            detail: format!("cannot run ssh: {error}"),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(SshError::SshConfig {
        path: config_path.to_path_buf(),
        detail: stderr
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, via: Option<&str>) -> SshHost {
        SshHost {
            via: via.map(str::to_string),
            ..SshHost::new(name, "127.0.0.1", 2222)
        }
    }

    fn plan(hosts: &[SshHost]) -> Result<IndexMap<String, PlannedHost>, SshError> {
        plan_hosts(hosts, Path::new("/tmp/mop-test"))
    }

    #[test]
    fn plans_aliases_depths_and_control_paths() {
        let planned = plan(&[
            host("bastion", None),
            host("top", Some("bastion")),
            host("web 1", Some("top")),
        ])
        .expect("valid");
        let summary: Vec<String> = planned
            .values()
            .map(|h| {
                format!(
                    "{} {} {} {}",
                    h.spec.name,
                    h.alias,
                    h.depth,
                    h.control_path.display()
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                "bastion mop-h1 0 /tmp/mop-test/mop-h1.sock",
                "top mop-h2 1 /tmp/mop-test/mop-h2.sock",
                "web 1 mop-h3 2 /tmp/mop-test/mop-h3.sock",
            ]
        );
    }

    #[test]
    fn rejects_bad_hosts_with_reasons() {
        let check = |hosts: &[SshHost], expected: &str| {
            let message = plan(hosts).expect_err("invalid").to_string();
            assert!(message.contains(expected), "{message}");
        };
        check(
            &[host("a", None), host("a", None)],
            "host a: the host name is used twice",
        );
        check(
            &[host("a", Some("nope"))],
            "jump host `nope` is not part of this run",
        );
        check(
            &[host("a", Some("b")), host("b", Some("a"))],
            "loops back to `a`",
        );
        check(
            &[SshHost {
                port: 0,
                ..host("a", None)
            }],
            "port 0",
        );
        check(
            &[SshHost::new("a", "-oProxyCommand=x", 22)],
            "the address \"-oProxyCommand=x\" is invalid: it starts with `-`",
        );
        check(
            &[SshHost {
                user: Some("a\nHost *".into()),
                ..host("a", None)
            }],
            "the user name \"a\\nHost *\" is invalid: it contains U+000A",
        );
        check(
            &[SshHost {
                identity_file: Some("/k\"ey".into()),
                ..host("a", None)
            }],
            "the identity file \"/k\\\"ey\" is invalid: it contains `\"`",
        );
        check(
            &[SshHost {
                connect_timeout: Some(Duration::ZERO),
                ..host("a", None)
            }],
            "zero",
        );
    }

    #[test]
    fn renders_host_blocks_and_the_final_includes() {
        let bastion = SshHost {
            user: Some("ops".into()),
            identity_file: Some("/keys/my key".into()),
            known_hosts_file: Some("/kh/100%".into()),
            connect_timeout: Some(Duration::from_millis(2500)),
            ..SshHost::new("bastion", "bastion.example.com", 22)
        };
        let web = SshHost {
            host_keys: HostKeyPolicy::Off,
            via: Some("bastion".into()),
            ..SshHost::new("web1", "10.0.0.5", 2200)
        };
        let planned = plan(&[bastion, web]).expect("valid");
        let text = render_config(&planned, &ConfigIncludes::default());
        let expected = "# generated by mop for one run; removed when the run ends

# bastion
Host mop-h1
  HostName bastion.example.com
  Port 22
  User ops
  IdentityFile \"/keys/my key\"
  IdentitiesOnly yes
  UserKnownHostsFile \"/kh/100%%\"
  StrictHostKeyChecking yes
  ConnectTimeout 3
  ControlMaster no
  ControlPath \"/tmp/mop-test/mop-h1.sock\"
  BatchMode yes
  ServerAliveInterval 15
  ServerAliveCountMax 4

# web1
Host mop-h2
  HostName 10.0.0.5
  Port 2200
  UserKnownHostsFile /dev/null
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking no
  ConnectTimeout 10
  ProxyJump mop-h1
  ControlMaster no
  ControlPath \"/tmp/mop-test/mop-h2.sock\"
  BatchMode yes
  ServerAliveInterval 15
  ServerAliveCountMax 4

# the user's and the system's own ssh configuration, matched against the names given to ssh
Match all
  Include \"~/.ssh/config\"
  Include \"/etc/ssh/ssh_config\"

# the user's and the system's own ssh configuration, matched against the real host names
Match final
  Include \"~/.ssh/config\"
  Include \"/etc/ssh/ssh_config\"
";
        assert_eq!(text, expected);
    }

    /// A password host: keys first, one password prompt, batch mode still on in the file (the
    /// master's command line turns it off); the password itself is never written.
    #[test]
    fn a_password_host_asks_once_after_keys() {
        let web = SshHost {
            password: Some(Secret::new("hunter2")),
            ..SshHost::new("web1", "127.0.8.1", 22)
        };
        let planned = plan(&[web, SshHost::new("db1", "127.0.8.2", 22)]).expect("valid");
        let no_includes = ConfigIncludes {
            user_config: None,
            system_config: None,
        };
        let text = render_config(&planned, &no_includes);
        assert!(!text.contains("hunter2"), "{text}");
        let web_block = text.split("\n# db1\n").next().expect("web1's block");
        let expected = "  BatchMode yes\n  PreferredAuthentications publickey,password,keyboard-interactive\n  NumberOfPasswordPrompts 1\n";
        assert!(
            web_block.contains(expected),
            "missing {expected:?} in\n{text}"
        );
        let db_block = text.split("\n# db1\n").nth(1).expect("db1's block");
        assert!(!db_block.contains("NumberOfPasswordPrompts"), "{text}");
        assert!(!db_block.contains("PreferredAuthentications"), "{text}");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("ssh_config");
        std::fs::write(&config, &text).expect("write");
        check_config(&config, "mop-h1").expect("ssh accepts the password host's options");
    }

    /// `ssh -G` evaluates a config without connecting: check that the inventory wins, that
    /// the user's blocks for the real host name still apply, and that jump settings resolve.
    #[test]
    fn ssh_reads_the_generated_config_as_intended() {
        let dir = tempfile::tempdir().expect("temp dir");
        let user_config = dir.path().join("user_config");
        std::fs::write(
            &user_config,
            "Host 127.0.5.5\n  User from-user-config\n  Compression yes\n  Port 9999\nHost *\n  ServerAliveCountMax 9\n",
        )
        .expect("write");
        let web = SshHost {
            via: Some("bastion".into()),
            ..SshHost::new("web", "127.0.5.5", 4000)
        };
        let bastion = SshHost {
            user: Some("jump".into()),
            ..SshHost::new("bastion", "127.0.5.6", 4001)
        };
        let planned = plan(&[web, bastion]).expect("valid");
        let includes = ConfigIncludes {
            user_config: Some(user_config),
            system_config: None,
        };
        let config = dir.path().join("ssh_config");
        std::fs::write(&config, render_config(&planned, &includes)).expect("write");
        let evaluate = |alias: &str| {
            let output = std::process::Command::new("ssh")
                .arg("-F")
                .arg(&config)
                .args(["-G", alias])
                .output()
                .expect("ssh -G runs");
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        let web = evaluate("mop-h1");
        for expected in [
            "hostname 127.0.5.5\n",
            "user from-user-config\n",
            "port 4000\n",
            "compression yes\n",
            "proxyjump mop-h2\n",
            "stricthostkeychecking true\n",
            "batchmode yes\n",
            "serveralivecountmax 4\n",
        ] {
            assert!(web.contains(expected), "missing {expected:?} in\n{web}");
        }
        let bastion = evaluate("mop-h2");
        assert!(bastion.contains("user jump\n"), "{bastion}");
        assert!(bastion.contains("port 4001\n"), "{bastion}");
        assert!(bastion.contains("compression no\n"), "{bastion}");
    }

    /// A host resolved through the user's ssh_config: no forced `Port 22`, the config's
    /// identity files, known_hosts files and ProxyJump written as ssh_config wrote them.
    #[test]
    fn renders_what_ssh_config_gave() {
        let web = SshHost {
            lookup: Some(SshConfigLookup {
                name: "web1".into(),
                port_given: false,
            }),
            from_ssh_config: SshConfigSettings {
                identity_files: vec!["%d/.ssh/web".into()],
                known_hosts_files: vec!["/kh/a".into(), "/kh/b".into()],
                proxy_jump: Some("ops@jump:2200".into()),
                ..SshConfigSettings::default()
            },
            ..SshHost::new("web1", "127.0.8.1", 22)
        };
        let planned = plan(&[web]).expect("valid");
        let no_includes = ConfigIncludes {
            user_config: None,
            system_config: None,
        };
        let text = render_config(&planned, &no_includes);
        assert!(!text.contains("Port"), "{text}");
        for expected in [
            "  IdentityFile \"%d/.ssh/web\"\n",
            "  UserKnownHostsFile \"/kh/a\" \"/kh/b\"\n",
            "  ProxyJump ops@jump:2200\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains("IdentitiesOnly"), "{text}");
        let hostile = SshHost {
            from_ssh_config: SshConfigSettings {
                proxy_jump: Some("x -oProxyCommand=id".into()),
                ..SshConfigSettings::default()
            },
            ..SshHost::new("web1", "127.0.8.1", 22)
        };
        let message = plan(&[hostile]).expect_err("refused").to_string();
        assert!(message.contains("ProxyJump from ssh_config"), "{message}");
    }
}
