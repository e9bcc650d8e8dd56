//! How to reach a host: the typed view of its magic variables, and secrets that never print.

use std::fmt;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::value::Problem;

/// A password. Debug, Display and Serialize all give `<redacted>`; only [`Secret::expose`]
/// returns the text.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

/// What every display of a secret value shows instead of it.
pub const REDACTED: &str = "<redacted>";

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Secret(text.into())
    }

    /// The secret text, for handing to SSH or sudo and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// `mop_check_host_keys`: spelled once, in `mop-protocol`, for inventories and policies.
pub use mop_protocol::HostKeyPolicy;

/// Everything needed to open an SSH session to one host (or one hop on the way to it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Connection {
    /// `mop_host`, or the inventory host name when unset.
    pub address: String,
    /// `mop_port`, default 22.
    pub port: u16,
    /// Whether `mop_port` was set; when not, the user's ssh_config may give the port.
    pub port_given: bool,
    /// `mop_ssh_username`; `None` leaves it to SSH (config file, then the local user).
    pub user: Option<String>,
    /// `mop_ssh_key`, as written (no `~` expansion here).
    pub key: Option<PathBuf>,
    /// `mop_known_hosts_file`: the known_hosts file for this host (default: the user's own).
    pub known_hosts_file: Option<PathBuf>,
    /// `mop_ssh_password`.
    pub password: Option<Secret>,
    /// `mop_sudo`, default false.
    pub sudo: bool,
    /// `mop_sudo_username`; `None` means root.
    pub sudo_user: Option<String>,
    /// `mop_sudo_password`.
    pub sudo_password: Option<Secret>,
    /// `mop_check_host_keys`, default strict.
    pub check_host_keys: HostKeyPolicy,
    /// `mop_connect_timeout` in seconds; `None` leaves it to SSH.
    pub connect_timeout: Option<u32>,
    /// `mop_agent_dir`; `None` leaves it to the push engine.
    pub agent_dir: Option<String>,
    /// `mop_agent_cache`, default true: the agent stays on the host, content-addressed.
    pub agent_cache: bool,
    /// `mop_remote_log`, default false.
    pub remote_log: bool,
}

impl Connection {
    /// A connection to `address` with every default: port 22, no user, no sudo, strict keys.
    pub fn new(address: impl Into<String>) -> Self {
        Connection {
            address: address.into(),
            port: 22,
            port_given: false,
            user: None,
            key: None,
            known_hosts_file: None,
            password: None,
            sudo: false,
            sudo_user: None,
            sudo_password: None,
            check_host_keys: HostKeyPolicy::Strict,
            connect_timeout: None,
            agent_dir: None,
            agent_cache: true,
            remote_log: false,
        }
    }

    /// Builds the connection of `host_name` from its merged variables.
    ///
    /// Magic values were validated when their layer was read; a wrong type here would be a bug
    /// in this crate, reported as a [`Problem`] rather than a panic.
    pub(crate) fn from_vars(
        host_name: &str,
        vars: &IndexMap<String, Value>,
    ) -> Result<Connection, Problem> {
        let text = |name: &str| -> Result<Option<String>, Problem> {
            match vars.get(name) {
                None => Ok(None),
                Some(Value::String(text)) => Ok(Some(text.clone())),
                Some(_) => Err(internal(name)),
            }
        };
        let flag_or = |name: &str, default: bool| -> Result<bool, Problem> {
            match vars.get(name) {
                None => Ok(default),
                Some(Value::Bool(flag)) => Ok(*flag),
                Some(_) => Err(internal(name)),
            }
        };
        let flag = |name: &str| flag_or(name, false);
        let number = |name: &str| -> Result<Option<u64>, Problem> {
            match vars.get(name) {
                None => Ok(None),
                Some(value) => value.as_u64().map(Some).ok_or_else(|| internal(name)),
            }
        };
        let port_given = vars.contains_key("mop_port");
        let port = match number("mop_port")? {
            None => 22,
            Some(port) => u16::try_from(port).map_err(|_| internal("mop_port"))?,
        };
        let connect_timeout = match number("mop_connect_timeout")? {
            None => None,
            Some(seconds) => {
                Some(u32::try_from(seconds).map_err(|_| internal("mop_connect_timeout"))?)
            }
        };
        let check_host_keys = match text("mop_check_host_keys")? {
            None => HostKeyPolicy::Strict,
            Some(name) => {
                HostKeyPolicy::from_name(&name).ok_or_else(|| internal("mop_check_host_keys"))?
            }
        };
        let address = match text("mop_host")? {
            Some(address) => address,
            None => {
                // The name stands in for the address, so it must meet the address grammar;
                // inventory names themselves may hold more (they are only patterns and labels).
                crate::grammar::check_host_address(host_name).map_err(|error| {
                    Problem::with_hint(
                        format!(
                            "host `{host_name}` has no `mop_host`, so its name is its address, \
                             but it is not a valid host name or address: {error}"
                        ),
                        "set `mop_host` to the host's address in its shorthand or its `vars`",
                    )
                })?;
                host_name.to_string()
            }
        };
        Ok(Connection {
            address,
            port,
            port_given,
            user: text("mop_ssh_username")?,
            key: text("mop_ssh_key")?.map(PathBuf::from),
            known_hosts_file: text("mop_known_hosts_file")?.map(PathBuf::from),
            password: text("mop_ssh_password")?.map(Secret),
            sudo: flag("mop_sudo")?,
            sudo_user: text("mop_sudo_username")?,
            sudo_password: text("mop_sudo_password")?.map(Secret),
            check_host_keys,
            connect_timeout,
            agent_dir: text("mop_agent_dir")?,
            agent_cache: flag_or("mop_agent_cache", true)?,
            remote_log: flag("mop_remote_log")?,
        })
    }
}

fn internal(name: &str) -> Problem {
    Problem::new(format!(
        "internal error: magic variable `{name}` has an unchecked value"
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(
            serde_json::to_string(&secret).expect("serializes"),
            "\"<redacted>\""
        );
        assert_eq!(secret.expose(), "hunter2");
        let mut connection = Connection::new("h");
        connection.sudo_password = Some(secret);
        assert!(!format!("{connection:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&connection)
            .expect("serializes")
            .contains("hunter2"));
    }

    #[test]
    fn defaults_and_typed_fields() {
        let empty = IndexMap::new();
        assert_eq!(
            Connection::from_vars("web1", &empty).expect("valid"),
            Connection::new("web1")
        );
        let vars: IndexMap<String, Value> = [
            ("mop_host", json!("10.0.0.5")),
            ("mop_port", json!(2222)),
            ("mop_ssh_username", json!("deploy")),
            ("mop_ssh_key", json!("keys/deploy")),
            ("mop_sudo", json!(true)),
            ("mop_check_host_keys", json!("accept-new")),
            ("mop_connect_timeout", json!(15)),
            ("mop_agent_cache", json!(true)),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
        let connection = Connection::from_vars("web1", &vars).expect("valid");
        assert_eq!(connection.address, "10.0.0.5");
        assert_eq!(connection.port, 2222);
        assert!(connection.port_given, "mop_port was set");
        assert!(
            !Connection::from_vars("web1", &empty)
                .expect("valid")
                .port_given
        );
        assert_eq!(connection.user.as_deref(), Some("deploy"));
        assert_eq!(connection.key, Some(PathBuf::from("keys/deploy")));
        assert!(connection.sudo);
        assert_eq!(connection.check_host_keys, HostKeyPolicy::AcceptNew);
        assert_eq!(connection.connect_timeout, Some(15));
        assert!(connection.agent_cache);
        assert!(!connection.remote_log);
    }
}
