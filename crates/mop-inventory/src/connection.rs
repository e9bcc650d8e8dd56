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

/// `mop_become_method`: the program that switches to `mop_sudo_username` on the host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BecomeMethod {
    #[default]
    Sudo,
    Doas,
    Su,
}

impl BecomeMethod {
    /// Every spelling `mop_become_method` accepts, in the order messages list them.
    pub const NAMES: &'static [&'static str] = &["sudo", "doas", "su"];

    pub fn from_name(name: &str) -> Option<BecomeMethod> {
        match name {
            "sudo" => Some(BecomeMethod::Sudo),
            "doas" => Some(BecomeMethod::Doas),
            "su" => Some(BecomeMethod::Su),
            _ => None,
        }
    }

    /// The name, which is also the program on the host.
    pub fn as_str(self) -> &'static str {
        match self {
            BecomeMethod::Sudo => "sudo",
            BecomeMethod::Doas => "doas",
            BecomeMethod::Su => "su",
        }
    }
}

impl fmt::Display for BecomeMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for BecomeMethod {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

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
    /// `mop_become_method`, default sudo.
    pub become_method: BecomeMethod,
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
            become_method: BecomeMethod::Sudo,
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
        let become_method = match text("mop_become_method")? {
            None => BecomeMethod::Sudo,
            Some(name) => {
                BecomeMethod::from_name(&name).ok_or_else(|| internal("mop_become_method"))?
            }
        };
        let sudo = flag("mop_sudo")?;
        let user = text("mop_ssh_username")?;
        let sudo_user = text("mop_sudo_username")?;
        let sudo_password = text("mop_sudo_password")?.map(Secret);
        if sudo && become_method == BecomeMethod::Su && sudo_password.is_none() {
            let target = sudo_user.as_deref().unwrap_or("root");
            // su always asks for the target's password (unless run by root), so without one
            // the run could only fail on the host; a login as the target itself needs no su.
            if user.as_deref() != Some(target) {
                return Err(Problem::with_hint(
                    format!(
                        "host `{host_name}` becomes `{target}` with `su`, which needs `{target}`'s password, but `mop_sudo_password` is not set"
                    ),
                    "set `mop_sudo_password` (in a vault file), or use                      `mop_become_method = \"sudo\"` or `\"doas\"`, which can work without one",
                ));
            }
        }
        // Logged in as the very user su would switch to: there is nothing to become.
        let become_nothing = become_method == BecomeMethod::Su
            && sudo_password.is_none()
            && user.as_deref() == Some(sudo_user.as_deref().unwrap_or("root"));
        Ok(Connection {
            address,
            port,
            port_given,
            user,
            key: text("mop_ssh_key")?.map(PathBuf::from),
            known_hosts_file: text("mop_known_hosts_file")?.map(PathBuf::from),
            password: text("mop_ssh_password")?.map(Secret),
            sudo: sudo && !become_nothing,
            sudo_user,
            sudo_password,
            become_method,
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
        assert_eq!(connection.become_method, BecomeMethod::Sudo);
    }

    #[test]
    fn su_needs_a_password_unless_the_login_is_the_target() {
        let vars = |pairs: &[(&str, Value)]| -> IndexMap<String, Value> {
            pairs
                .iter()
                .map(|(name, value)| (name.to_string(), value.clone()))
                .collect()
        };
        let problem = Connection::from_vars(
            "web1",
            &vars(&[
                ("mop_sudo", json!(true)),
                ("mop_become_method", json!("su")),
                ("mop_sudo_username", json!("app")),
            ]),
        )
        .expect_err("su without a password");
        assert_eq!(
            problem.message,
            "host `web1` becomes `app` with `su`, which needs `app`'s password, but \
             `mop_sudo_password` is not set"
        );
        assert!(problem.hint.expect("hint").contains("mop_sudo_password"));
        let same_user = Connection::from_vars(
            "web1",
            &vars(&[
                ("mop_sudo", json!(true)),
                ("mop_become_method", json!("su")),
                ("mop_ssh_username", json!("app")),
                ("mop_sudo_username", json!("app")),
            ]),
        )
        .expect("logged in as the target");
        assert!(!same_user.sudo, "nothing to become");
        let with_password = Connection::from_vars(
            "web1",
            &vars(&[
                ("mop_sudo", json!(true)),
                ("mop_become_method", json!("su")),
                ("mop_sudo_password", json!("pw")),
            ]),
        )
        .expect("su with a password");
        assert!(with_password.sudo);
        assert_eq!(with_password.become_method, BecomeMethod::Su);
        // Without `mop_sudo` the method changes nothing.
        assert!(
            Connection::from_vars("web1", &vars(&[("mop_become_method", json!("su"))])).is_ok()
        );
    }
}
