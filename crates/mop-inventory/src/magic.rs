//! Magic variables (`mop_*`): the table of them, and checking/coercing their values.

use serde_json::Value;

use crate::connection::{BecomeMethod, HostKeyPolicy};
use crate::error::closest;
use crate::grammar;
use crate::value::{describe, Problem};

/// The value type of a magic variable, which decides how it is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MagicKind {
    Address,
    Port,
    UserName,
    Password,
    /// A file on the controller that mop writes into its ssh_config.
    ControllerPath,
    Bool,
    HostRef,
    HostKeyPolicy,
    BecomeMethod,
    Timeout,
    AbsolutePath,
}

/// One magic variable: its name, type, default and meaning, as documented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MagicVariable {
    pub name: &'static str,
    /// The type, as shown in docs and messages (`integer 1-65535`, `boolean`, ...).
    pub value_type: &'static str,
    /// What applies when no layer sets it.
    pub default: &'static str,
    pub meaning: &'static str,
    /// Never printed: shown as `<redacted>` in every display, Debug and JSON view.
    pub secret: bool,
    pub(crate) kind: MagicKind,
}

const fn magic(
    name: &'static str,
    kind: MagicKind,
    value_type: &'static str,
    default: &'static str,
    meaning: &'static str,
) -> MagicVariable {
    MagicVariable {
        name,
        value_type,
        default,
        meaning,
        secret: matches!(kind, MagicKind::Password),
        kind,
    }
}

/// Every magic variable mop understands. Any other name starting with `mop_` is an error.
pub const MAGIC_VARIABLES: &[MagicVariable] = &[
    magic(
        "mop_host",
        MagicKind::Address,
        "string (host name or IP address)",
        "the inventory host name, or its ssh_config `HostName`",
        "address to connect to",
    ),
    magic(
        "mop_port",
        MagicKind::Port,
        "integer 1-65535",
        "ssh_config's `Port`, else 22",
        "SSH port",
    ),
    magic(
        "mop_ssh_username",
        MagicKind::UserName,
        "string",
        "unset (SSH's own default)",
        "user to log in as",
    ),
    magic(
        "mop_ssh_password",
        MagicKind::Password,
        "string, secret",
        "unset (keys or agent)",
        "password for SSH login",
    ),
    magic(
        "mop_ssh_key",
        MagicKind::ControllerPath,
        "string (path on the controller)",
        "unset (SSH's own default)",
        "private key (identity) file",
    ),
    magic(
        "mop_known_hosts_file",
        MagicKind::ControllerPath,
        "string (path on the controller)",
        "unset (the user's ~/.ssh/known_hosts)",
        "known_hosts file to check this host's key against",
    ),
    magic(
        "mop_sudo",
        MagicKind::Bool,
        "boolean",
        "false",
        "run the agent through sudo",
    ),
    magic(
        "mop_sudo_username",
        MagicKind::UserName,
        "string",
        "unset (root)",
        "user sudo switches to",
    ),
    magic(
        "mop_sudo_password",
        MagicKind::Password,
        "string, secret",
        "unset (passwordless sudo)",
        "password sudo asks for (with `su`: the target user's password)",
    ),
    magic(
        "mop_become_method",
        MagicKind::BecomeMethod,
        "`sudo`, `doas` or `su`",
        "sudo",
        "program that runs the agent as `mop_sudo_username` when `mop_sudo` is true (`su` needs `mop_sudo_password`)",
    ),
    magic(
        "mop_via",
        MagicKind::HostRef,
        "string (inventory host name)",
        "unset (direct connection)",
        "host to jump through to reach this one",
    ),
    magic(
        "mop_check_host_keys",
        MagicKind::HostKeyPolicy,
        "`strict`, `accept-new` or `off`",
        "strict",
        "how SSH host keys are checked",
    ),
    magic(
        "mop_connect_timeout",
        MagicKind::Timeout,
        "integer seconds 1-3600",
        "10",
        "how long the TCP connect and the SSH banner exchange may each take; `--connect-timeout` overrides it for every host",
    ),
    magic(
        "mop_agent_dir",
        MagicKind::AbsolutePath,
        "string (absolute path on the host)",
        "unset (the push engine's default)",
        "directory the agent is uploaded to",
    ),
    magic(
        "mop_agent_cache",
        MagicKind::Bool,
        "boolean",
        "true",
        "keep the content-addressed agent binary on the host between runs (`false`: leave nothing)",
    ),
    magic(
        "mop_remote_log",
        MagicKind::Bool,
        "boolean",
        "false",
        "keep a log of each run on the host",
    ),
];

/// The magic variable called `name`, if there is one.
pub fn magic_variable(name: &str) -> Option<&'static MagicVariable> {
    MAGIC_VARIABLES.iter().find(|var| var.name == name)
}

/// Whether `name` is a variable whose value must never be printed: a password magic
/// variable, or a variable some vault file of this run sets.
pub fn is_secret_var(name: &str) -> bool {
    magic_variable(name).is_some_and(|var| var.secret)
        || vault_var_names()
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(name)
}

/// Every name [`is_secret_var`] is true for so far: the secret magic variables and every name
/// a vault file read by this process set. Templates may read none of them, on the controller
/// or on the host (vault values are left out of the plans), so the policy's static checks
/// take this set: a template naming a vault variable is refused before any host is contacted.
pub fn secret_var_names() -> std::collections::BTreeSet<String> {
    let mut names: std::collections::BTreeSet<String> = MAGIC_VARIABLES
        .iter()
        .filter(|var| var.secret)
        .map(|var| var.name.to_string())
        .collect();
    names.extend(
        vault_var_names()
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned(),
    );
    names
}

/// Names set by a vault file. Secrecy follows the name, not the value's path through the
/// layers: a name a vault sets is secret in every layer and display of the run (the
/// conservative reading when a plain file sets the same name too). Process-wide because every
/// display that redacts (`Debug`, `mop inventory`, events, the plans) asks [`is_secret_var`]
/// with a name only.
fn vault_var_names() -> &'static std::sync::RwLock<std::collections::BTreeSet<String>> {
    static NAMES: std::sync::OnceLock<std::sync::RwLock<std::collections::BTreeSet<String>>> =
        std::sync::OnceLock::new();
    NAMES.get_or_init(Default::default)
}

/// Marks `name` as set by a vault file: from now on [`is_secret_var`] is true for it.
pub fn mark_vault_var(name: &str) {
    vault_var_names()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(name.to_string());
}

/// Looks a name up: a magic variable, an ordinary one, or an error for a reserved name that
/// is not magic (`mop_` typos, OpsMop's `opsmop_*` names).
pub(crate) fn check_reserved(name: &str) -> Result<Option<&'static MagicVariable>, Problem> {
    if let Some(var) = magic_variable(name) {
        return Ok(Some(var));
    }
    if name.starts_with("mop_") {
        let names = MAGIC_VARIABLES.iter().map(|var| var.name);
        let hint = match closest(name, names) {
            Some(suggestion) => format!("did you mean `{suggestion}`?"),
            None => "names starting with `mop_` are reserved for magic variables, listed in \
                     docs/reference/inventory.md"
                .to_string(),
        };
        return Err(Problem::with_hint(
            format!("unknown magic variable `{name}`"),
            hint,
        ));
    }
    if let Some(rest) = name.strip_prefix("opsmop_") {
        let renamed = format!("mop_{rest}");
        return Err(match magic_variable(&renamed) {
            Some(_) => Problem::with_hint(
                format!("`{name}` is OpsMop's name for `{renamed}`"),
                format!("rename it to `{renamed}`"),
            ),
            None => Problem::with_hint(
                format!("OpsMop variable `{name}` has no meaning in mop"),
                "remove it",
            ),
        });
    }
    Ok(None)
}

/// What a kind of magic variable expects, completing "must be ...".
fn expectation(kind: MagicKind) -> &'static str {
    match kind {
        MagicKind::Address => {
            "a host name (letters, digits, `-`, `_`, `.`), an IPv4 address or an IPv6 address \
             without brackets"
        }
        MagicKind::Port => "an integer between 1 and 65535",
        MagicKind::UserName => {
            "a user name (letters, digits, `.`, `_`, `-`, not starting with `-` or `.`, \
             optionally ending in `$`)"
        }
        MagicKind::Password => "a single line of text",
        MagicKind::ControllerPath => "a path to a file on the controller",
        MagicKind::Bool => "`true` or `false`",
        MagicKind::HostRef => "the name of a host in the inventory",
        MagicKind::HostKeyPolicy => "one of `strict`, `accept-new`, `off`",
        MagicKind::BecomeMethod => "one of `sudo`, `doas`, `su`",
        MagicKind::Timeout => "a whole number of seconds between 1 and 3600",
        MagicKind::AbsolutePath => "an absolute path without spaces (starting with `/`)",
    }
}

fn wrong(var: &MagicVariable, found: &Value) -> Problem {
    Problem::new(format!(
        "magic variable `{}` must be {}, found {}",
        var.name,
        expectation(var.kind),
        describe(found, var.secret)
    ))
}

fn wrong_with_hint(var: &MagicVariable, found: &Value, hint: String) -> Problem {
    Problem {
        hint: Some(hint),
        ..wrong(var, found)
    }
}

/// Checks the text of a string-typed magic variable. `Err(Some(reason))` says what exactly is
/// wrong (shown as the hint); `Err(None)` leaves it to [`expectation`].
fn check_string(kind: MagicKind, text: &str) -> Result<(), Option<String>> {
    let no_space_or_control = !text.chars().any(|c| c.is_whitespace() || c.is_control());
    let grammar_reason =
        |result: Result<(), grammar::GrammarError>| result.map_err(|error| Some(error.reason));
    let ok = match kind {
        MagicKind::Address => return grammar_reason(grammar::check_host_address(text)),
        MagicKind::UserName => return grammar_reason(grammar::check_user_name(text)),
        MagicKind::Password => return grammar_reason(grammar::check_password_line(text)),
        MagicKind::ControllerPath => return grammar_reason(grammar::check_config_path(text)),
        // Only ever compared with inventory host names; the chain check finds unknown ones.
        MagicKind::HostRef => !text.is_empty() && no_space_or_control,
        MagicKind::HostKeyPolicy => HostKeyPolicy::from_name(text).is_some(),
        MagicKind::BecomeMethod => BecomeMethod::from_name(text).is_some(),
        // Shell-quoted wherever it is used on the host (`ssh/bootstrap.rs`).
        MagicKind::AbsolutePath => text.starts_with('/') && no_space_or_control,
        MagicKind::Port | MagicKind::Bool | MagicKind::Timeout => false,
    };
    if ok {
        Ok(())
    } else {
        Err(None)
    }
}

fn is_string_kind(kind: MagicKind) -> bool {
    !matches!(kind, MagicKind::Port | MagicKind::Bool | MagicKind::Timeout)
}

/// The seconds `mop_connect_timeout` accepts (and `--connect-timeout`, which overrides it).
pub const CONNECT_TIMEOUT_SECONDS: std::ops::RangeInclusive<u64> = 1..=3600;

fn in_range(kind: MagicKind, number: u64) -> bool {
    match kind {
        MagicKind::Port => (1..=65535).contains(&number),
        MagicKind::Timeout => CONNECT_TIMEOUT_SECONDS.contains(&number),
        _ => false,
    }
}

fn string_hint(var: &MagicVariable, text: &str, reason: Option<String>) -> Option<String> {
    if reason.is_some() {
        return reason;
    }
    match var.kind {
        MagicKind::HostKeyPolicy => closest(text, HostKeyPolicy::NAMES.iter().copied())
            .map(|suggestion| format!("did you mean `{suggestion}`?")),
        MagicKind::BecomeMethod => Some(match closest(text, BecomeMethod::NAMES.iter().copied()) {
            Some(suggestion) => format!("did you mean `{suggestion}`?"),
            None => {
                "mop becomes another user with `sudo` (the default), `doas` or `su`".to_string()
            }
        }),
        MagicKind::AbsolutePath if !text.starts_with('/') => {
            Some("give the full path, e.g. `/var/lib/mop`".into())
        }
        _ => None,
    }
}

/// Checks a typed value (from a TOML `vars` table or a caller layer) for magic variable `var`.
pub(crate) fn validate_typed(var: &MagicVariable, value: &Value) -> Result<Value, Problem> {
    let mut reason = None;
    let ok = match value {
        Value::String(text) if is_string_kind(var.kind) => match check_string(var.kind, text) {
            Ok(()) => true,
            Err(why) => {
                reason = why;
                false
            }
        },
        Value::Number(number) => number.as_u64().is_some_and(|n| in_range(var.kind, n)),
        Value::Bool(_) => var.kind == MagicKind::Bool,
        _ => false,
    };
    if ok {
        return Ok(value.clone());
    }
    let hint = match (var.kind, value) {
        (MagicKind::Port | MagicKind::Timeout, Value::String(text))
            if text.parse::<u64>().is_ok_and(|n| in_range(var.kind, n)) =>
        {
            Some(format!("remove the quotes: `{} = {text}`", var.name))
        }
        (MagicKind::Bool, Value::String(text)) if text == "true" || text == "false" => {
            Some(format!("remove the quotes: `{} = {text}`", var.name))
        }
        (MagicKind::HostKeyPolicy, Value::Bool(false)) => Some(
            "write `\"off\"` to skip host key checks, or `\"accept-new\"` to trust hosts seen \
             for the first time"
                .into(),
        ),
        (MagicKind::HostKeyPolicy, Value::Bool(true)) => {
            Some("write `\"strict\"` (the default)".into())
        }
        (kind, Value::Number(number)) if is_string_kind(kind) && !var.secret => {
            Some(format!("quote it: `{} = \"{number}\"`", var.name))
        }
        (kind, Value::String(text)) if is_string_kind(kind) => string_hint(var, text, reason),
        _ => None,
    };
    Err(match hint {
        Some(hint) => wrong_with_hint(var, value, hint),
        None => wrong(var, value),
    })
}

/// Where a magic variable's text came from, for the wording of hints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TextOrigin {
    Shorthand,
    ExtraVar,
    /// A value in an Ansible inventory (INI text, or a YAML/JSON value Ansible would coerce).
    Ansible,
}

/// Turns the text of a shorthand word or `-e` value into the magic variable's typed value.
pub(crate) fn coerce_text(
    var: &MagicVariable,
    text: &str,
    origin: TextOrigin,
) -> Result<Value, Problem> {
    let found = Value::from(text);
    match var.kind {
        MagicKind::Port | MagicKind::Timeout => match text.parse::<u64>() {
            Ok(number) if in_range(var.kind, number) => Ok(Value::from(number)),
            _ => Err(wrong(var, &found)),
        },
        MagicKind::Bool => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => {
                let prefix = match origin {
                    TextOrigin::Shorthand | TextOrigin::Ansible => "",
                    TextOrigin::ExtraVar => "-e ",
                };
                Err(wrong_with_hint(
                    var,
                    &found,
                    format!("write `{prefix}{0}=true` or `{prefix}{0}=false`", var.name),
                ))
            }
        },
        kind => match check_string(kind, text) {
            Ok(()) => Ok(found),
            Err(reason) => Err(match string_hint(var, text, reason) {
                Some(hint) => wrong_with_hint(var, &found, hint),
                None => wrong(var, &found),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn var(name: &str) -> &'static MagicVariable {
        magic_variable(name).expect("known magic variable")
    }

    #[test]
    fn typed_values() {
        let ok = |name: &str, value: Value| validate_typed(var(name), &value).is_ok();
        assert!(ok("mop_port", json!(2222)));
        assert!(!ok("mop_port", json!(0)));
        assert!(!ok("mop_port", json!(65536)));
        assert!(!ok("mop_port", json!(-1)));
        assert!(!ok("mop_port", json!(22.0)));
        assert!(!ok("mop_port", json!("22")));
        assert!(ok("mop_sudo", json!(true)));
        assert!(!ok("mop_sudo", json!("true")));
        assert!(ok("mop_host", json!("10.0.0.5")));
        assert!(!ok("mop_host", json!("-oProxyCommand=x")));
        assert!(!ok("mop_host", json!("a b")));
        assert!(!ok("mop_host", json!("")));
        assert!(!ok("mop_ssh_username", json!(1000)));
        assert!(ok("mop_ssh_password", json!("")));
        assert!(ok("mop_check_host_keys", json!("accept-new")));
        assert!(!ok("mop_check_host_keys", json!(false)));
        assert!(ok("mop_connect_timeout", json!(30)));
        assert!(!ok("mop_connect_timeout", json!(0)));
        assert!(ok("mop_agent_dir", json!("/var/lib/mop")));
        assert!(!ok("mop_agent_dir", json!("var/lib/mop")));
        assert!(!ok("mop_via", json!(["a"])));
    }

    #[test]
    fn typed_errors_explain_and_hint() {
        let problem = validate_typed(var("mop_port"), &json!("2222")).expect_err("string");
        assert_eq!(
            problem.message,
            "magic variable `mop_port` must be an integer between 1 and 65535, found string \
             \"2222\""
        );
        assert_eq!(
            problem.hint.as_deref(),
            Some("remove the quotes: `mop_port = 2222`")
        );
        let problem =
            validate_typed(var("mop_check_host_keys"), &json!("acept-new")).expect_err("typo");
        assert_eq!(problem.hint.as_deref(), Some("did you mean `accept-new`?"));
        let problem = validate_typed(var("mop_become_method"), &json!("doass")).expect_err("typo");
        assert_eq!(
            problem.message,
            "magic variable `mop_become_method` must be one of `sudo`, `doas`, `su`, found string \"doass\""
        );
        assert_eq!(problem.hint.as_deref(), Some("did you mean `doas`?"));
        let problem =
            validate_typed(var("mop_become_method"), &json!("pbrun")).expect_err("unknown");
        assert_eq!(
            problem.hint.as_deref(),
            Some("mop becomes another user with `sudo` (the default), `doas` or `su`")
        );
        assert!(validate_typed(var("mop_become_method"), &json!("su")).is_ok());
    }

    #[test]
    fn secrets_are_not_echoed_in_errors() {
        let problem = validate_typed(var("mop_sudo_password"), &json!(123456)).expect_err("int");
        assert!(!problem.message.contains("123456"), "{}", problem.message);
        assert!(problem.message.ends_with("found an integer"));
        assert!(problem.hint.is_none());
    }

    #[test]
    fn text_is_coerced_to_the_magic_type() {
        let coerce = |name: &str, text: &str| coerce_text(var(name), text, TextOrigin::Shorthand);
        assert_eq!(coerce("mop_port", "2222"), Ok(json!(2222)));
        assert_eq!(coerce("mop_sudo", "true"), Ok(json!(true)));
        assert_eq!(coerce("mop_agent_cache", "false"), Ok(json!(false)));
        assert_eq!(coerce("mop_connect_timeout", "15"), Ok(json!(15)));
        assert_eq!(coerce("mop_ssh_username", "1000"), Ok(json!("1000")));
        assert!(coerce("mop_port", "abc").is_err());
        assert!(coerce("mop_port", "99999").is_err());
        let problem = coerce("mop_sudo", "yes").expect_err("yes is not a boolean");
        assert_eq!(
            problem.hint.as_deref(),
            Some("write `mop_sudo=true` or `mop_sudo=false`")
        );
    }

    #[test]
    fn reserved_names() {
        assert!(check_reserved("app_port").expect("ordinary").is_none());
        assert!(check_reserved("mop_port").expect("magic").is_some());
        let typo = check_reserved("mop_sudo_user").expect_err("typo");
        assert_eq!(
            typo.hint.as_deref(),
            Some("did you mean `mop_sudo_username`?")
        );
        let opsmop = check_reserved("opsmop_host").expect_err("opsmop name");
        assert_eq!(opsmop.hint.as_deref(), Some("rename it to `mop_host`"));
        assert!(check_reserved("opsmop_python_path").is_err());
    }

    /// The reference page's table must say what the code does.
    #[test]
    fn reference_table_matches_the_code() {
        let doc = include_str!("../../../docs/reference/inventory.md");
        for var in MAGIC_VARIABLES {
            let row = format!(
                "| `{}` | {} | {} | {} |",
                var.name, var.value_type, var.default, var.meaning
            );
            assert!(
                doc.contains(&row),
                "docs/reference/inventory.md lacks the row\n{row}"
            );
        }
    }
}
