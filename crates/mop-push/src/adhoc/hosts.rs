//! The hosts of an ad hoc operation: inventory hosts or `--hosts user@host:port` specs, and the
//! connection pool that reaches them.

use mop_inventory::{Connection, Hop};
use serde_json::{Map, Value};

use crate::rollout::{ssh_hosts, PushHost, PushRole};
use crate::ssh::{SshError, SshPool, SshPoolOptions};

/// One target host, resolved by the caller (inventory) or parsed from `--hosts`.
#[derive(Debug, Clone)]
pub struct AdhocHost {
    pub name: String,
    pub groups: Vec<String>,
    /// Resolved variables, for command templates.
    pub vars: Map<String, Value>,
    pub connection: Connection,
    pub via: Vec<Hop>,
}

/// A `--hosts` entry that is not `[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid host `{spec}` in --hosts: {reason}\n  hint: write hosts as `[user@]host[:port]`, comma-separated")]
pub struct HostSpecError {
    pub spec: String,
    pub reason: String,
}

/// Parses `[user@]host[:port]` (IPv6 addresses in brackets: `[::1]:2222`). The host's name is
/// the spec as written, so two ports on one address stay two hosts.
pub fn parse_host_spec(spec: &str) -> Result<AdhocHost, HostSpecError> {
    let error = |reason: &str| HostSpecError {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = spec.trim();
    if trimmed.is_empty() {
        return Err(error("the host is empty"));
    }
    let (user, rest) = match trimmed.rsplit_once('@') {
        Some(("", _)) => return Err(error("the user before `@` is empty")),
        Some((user, rest)) => (Some(user.to_string()), rest),
        None => (None, trimmed),
    };
    let (address, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((address, after)) = bracketed.split_once(']') else {
            return Err(error("a `[` without its `]`"));
        };
        match after.strip_prefix(':') {
            Some(port) => (address, Some(port)),
            None if after.is_empty() => (address, None),
            None => return Err(error("unexpected text after `]`")),
        }
    } else {
        match rest.split_once(':') {
            Some((address, port)) => (address, Some(port)),
            None => (rest, None),
        }
    };
    if address.is_empty() {
        return Err(error("the address is empty"));
    }
    // The same grammars as `mop_host` and `mop_ssh_username` in an inventory: these values are
    // written into the run's ssh_config.
    if let Err(invalid) = mop_inventory::grammar::check_host_address(address) {
        return Err(error(&format!(
            "the address `{address}` is invalid: {invalid}"
        )));
    }
    if let Some(user) = &user {
        if let Err(invalid) = mop_inventory::grammar::check_user_name(user) {
            return Err(error(&format!("the user `{user}` is invalid: {invalid}")));
        }
    }
    let port_given = port.is_some();
    let port = match port {
        None => 22,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(error(&format!("`{text}` is not a port (1-65535)"))),
        },
    };
    let mut connection = Connection::new(address);
    connection.port = port;
    connection.port_given = port_given;
    connection.user = user;
    Ok(AdhocHost {
        name: trimmed.to_string(),
        groups: Vec::new(),
        vars: Map::new(),
        connection,
        via: Vec::new(),
    })
}

/// How an ad hoc command's pool connects: the command's flags that reach the SSH layer.
#[derive(Debug, Clone, Copy)]
pub struct PoolFlags {
    /// `--forks`: logins in progress at once.
    pub forks: std::num::NonZeroUsize,
    /// `--persist`: the masters the command starts stay up for this much idle time after it
    /// (live persisted masters are reused either way).
    pub persist: Option<std::time::Duration>,
    /// `--connect-timeout`: every host's connect timeout, whatever `mop_connect_timeout` says.
    pub connect_timeout: Option<std::time::Duration>,
}

/// A pool over `hosts` and their jump hosts, set up as `flags` say. What the operator should
/// know but that does not stop the command goes to `on_warning` (the caller prints it; this
/// library never does).
pub fn pool_for(
    hosts: &[AdhocHost],
    flags: PoolFlags,
    on_warning: &dyn Fn(&str),
) -> Result<SshPool, SshError> {
    let role = PushRole {
        role_index: 0,
        hosts: hosts
            .iter()
            .map(|host| PushHost {
                name: host.name.clone(),
                groups: host.groups.clone(),
                vars: host.vars.clone(),
                connection: host.connection.clone(),
                via: host.via.clone(),
            })
            .collect(),
    };
    if let Err(error) = crate::ssh::raise_nofile_limit() {
        on_warning(&format!("could not raise the open-files limit: {error}"));
    }
    SshPool::without_agent(
        &ssh_hosts(&[role]),
        &SshPoolOptions {
            forks: flags.forks,
            persist: flags.persist,
            connect_timeout: flags.connect_timeout,
            ..SshPoolOptions::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(spec: &str, expected: Result<(Option<&str>, &str, u16), &str>) {
        match (parse_host_spec(spec), expected) {
            (Ok(host), Ok((user, address, port))) => {
                assert_eq!(host.connection.user.as_deref(), user, "{spec}");
                assert_eq!(host.connection.address, address, "{spec}");
                assert_eq!(host.connection.port, port, "{spec}");
                assert_eq!(host.name, spec.trim());
            }
            (Err(error), Err(reason)) => assert!(
                error.to_string().contains(reason),
                "{spec}: {error} lacks {reason}"
            ),
            (got, expected) => panic!("{spec}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn host_specs() {
        check("web1", Ok((None, "web1", 22)));
        check("deploy@web1", Ok((Some("deploy"), "web1", 22)));
        check(
            "deploy@127.0.0.2:2222",
            Ok((Some("deploy"), "127.0.0.2", 2222)),
        );
        check("[::1]:2200", Ok((None, "::1", 2200)));
        check("root@[::1]", Ok((Some("root"), "::1", 22)));
        check("web1:0", Err("`0` is not a port"));
        check("web1:http", Err("`http` is not a port"));
        check("@web1", Err("the user before `@` is empty"));
        check("user@:22", Err("the address is empty"));
        check("[::1", Err("without its `]`"));
        check("", Err("the host is empty"));
        check("[fe80::1%eth0]:22", Ok((None, "fe80::1%eth0", 22)));
        check(
            "127.0.0.1'$(id)'",
            Err("the address `127.0.0.1'$(id)'` is invalid: it contains `'`"),
        );
        check(
            "a;b@web1",
            Err("the user `a;b` is invalid: it contains `;`"),
        );
        check("-oProxyCommand=x", Err("it starts with `-`"));
    }
}
