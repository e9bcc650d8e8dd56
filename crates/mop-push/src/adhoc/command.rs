//! Building the remote command line of `mop run`: the per-host template, `--env`, sudo and the
//! timeout wrapper that kills the whole remote process group.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::secrets::{secret_read, secret_read_message, without_secrets, TemplateKind};
use crate::ssh::{quote, BecomeSpec, RunAs};

/// Grace between the timeout's SIGTERM to the remote process group and its SIGKILL.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(2);

/// A command template or `--env` entry that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("host `{host}`: cannot render the command: {detail}\n  hint: `mop inventory --host {host}` shows the variables a command can use")]
    Template { host: String, detail: String },
    #[error("the command template: {0}")]
    Limit(mop_policy::limits::LimitError),
    #[error("invalid --env `{entry}`: {reason}\n  hint: write `--env NAME=VALUE`, NAME made of letters, digits and `_`")]
    Env { entry: String, reason: String },
    /// The command names a secret: it would land in ssh's argv, the host's `sh -c` and the
    /// output. `message` is [`secret_read_message`]'s.
    #[error("the command `{command}`: {message}")]
    Secret { command: String, message: String },
}

/// Renders `template` with the host's variables (and `host.name`, `host.groups` unless a
/// variable is called `host`). Undefined variables are errors, not empty strings. Secrets are
/// never rendered: a template naming one is an error, and they are not in the variables the
/// template sees (see [`crate::secrets`]).
pub fn render_command(
    template: &str,
    host_name: &str,
    groups: &[String],
    vars: &Map<String, Value>,
) -> Result<String, CommandError> {
    if !template.contains("{{") && !template.contains("{%") && !template.contains("{#") {
        return Ok(template.to_string());
    }
    // Checked before minijinja parses it: a deeply nested command would overflow its stack.
    mop_policy::limits::check_template(template).map_err(CommandError::Limit)?;
    if let Some(name) = secret_read(TemplateKind::Template, template) {
        return Err(CommandError::Secret {
            command: template.to_string(),
            message: secret_read_message(&name),
        });
    }
    // The hosts' template language, so `mop run` commands read like resource fields.
    let mut environment = mop_template::environment();
    environment.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let mut context = without_secrets(vars);
    context
        .entry("host".to_string())
        .or_insert_with(|| serde_json::json!({ "name": host_name, "groups": groups }));
    let failure = |error: minijinja::Error| CommandError::Template {
        host: host_name.to_string(),
        detail: error_text(&error),
    };
    environment
        .render_str(template, Value::Object(context))
        .map_err(failure)
}

fn error_text(error: &minijinja::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Parses `--env NAME=VALUE` entries, in order.
pub fn parse_env(entries: &[String]) -> Result<Vec<(String, String)>, CommandError> {
    entries
        .iter()
        .map(|entry| {
            let failure = |reason: &str| CommandError::Env {
                entry: entry.clone(),
                reason: reason.to_string(),
            };
            let (name, value) = entry.split_once('=').ok_or_else(|| failure("no `=`"))?;
            let valid = !name.is_empty()
                && !name.starts_with(|ch: char| ch.is_ascii_digit())
                && name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
            if !valid {
                return Err(failure("the name is not a shell variable name"));
            }
            Ok((name.to_string(), value.to_string()))
        })
        .collect()
}

/// The shell line the login shell runs: `[sudo ...] [env K=V...] [timeout ...] sh -c CMD`.
///
/// sudo comes first because it resets the environment; `timeout` (coreutils) puts the command
/// in its own process group and, when time is up, signals the whole group (TERM, then KILL
/// after [`KILL_GRACE`]), so nothing the command started is left running.
pub(crate) fn remote_line(
    command: &str,
    sudo: Option<&BecomeSpec>,
    env: &[(String, String)],
    timeout: Option<Duration>,
) -> String {
    let mut line = RunAs::from_spec(sudo).command_prefix();
    if !env.is_empty() {
        line.push_str("env ");
        for (name, value) in env {
            line.push_str(&quote(&format!("{name}={value}")));
            line.push(' ');
        }
    }
    if let Some(timeout) = timeout {
        line.push_str(&format!(
            "timeout -k {} {} ",
            KILL_GRACE.as_secs(),
            timeout_arg(timeout)
        ));
    }
    line.push_str("sh -c ");
    line.push_str(&quote(command));
    line
}

/// Seconds for `timeout`, with a fraction when the duration has one.
fn timeout_arg(timeout: Duration) -> String {
    if timeout.subsec_millis() == 0 {
        timeout.as_secs().to_string()
    } else {
        format!("{:.3}", timeout.as_secs_f64())
    }
}

/// Whether an exit status is `timeout`'s "the command timed out" (124, or 137 after KILL).
pub(crate) fn is_timeout_status(code: Option<i32>) -> bool {
    matches!(code, Some(124) | Some(137))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::Secret;

    fn vars(pairs: &[(&str, Value)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.clone()))
            .collect()
    }

    #[test]
    fn templates_see_host_variables() {
        let host_vars = vars(&[("app_port", Value::from(8080))]);
        let rendered = render_command(
            "echo {{ app_port }} {{ host.name }}",
            "web1",
            &[],
            &host_vars,
        );
        assert_eq!(rendered, Ok("echo 8080 web1".to_string()));
        let missing = render_command("echo {{ nope }}", "web1", &[], &host_vars);
        assert!(
            matches!(&missing, Err(CommandError::Template { host, detail }) if host == "web1" && detail.contains("undefined")),
            "{missing:?}"
        );
        // No template syntax: used as is, braces of shell code untouched.
        assert_eq!(
            render_command("f() { echo $1; }; f x", "web1", &[], &host_vars),
            Ok("f() { echo $1; }; f x".to_string())
        );
    }

    #[test]
    fn secrets_are_never_rendered() {
        let host_vars = vars(&[
            ("mop_sudo_password", Value::from("hunter2")),
            ("app_port", Value::from(8080)),
        ]);
        let refused = render_command("echo '{{ mop_sudo_password }}'", "web1", &[], &host_vars)
            .expect_err("a secret");
        let text = refused.to_string();
        assert!(
            text.starts_with(
                "the command `echo '{{ mop_sudo_password }}'`: `mop_sudo_password` is a secret"
            ),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        // What no static check sees finds no secret in the variables either.
        let dumped =
            render_command("echo {{ debug() }}", "web1", &[], &host_vars).expect("renders");
        assert!(dumped.contains("app_port"), "{dumped}");
        assert!(!dumped.contains("hunter2"), "{dumped}");
    }

    #[test]
    fn deeply_nested_command_templates_are_errors_not_crashes() {
        let deep = format!("echo {{{{ {}1 }}}}", "- ".repeat(30_000));
        assert!(
            matches!(
                render_command(&deep, "web1", &[], &Map::new()),
                Err(CommandError::Limit(
                    mop_policy::limits::LimitError::TooDeep { line: 1, .. }
                ))
            ),
            "a deep command template renders"
        );
    }

    #[test]
    fn env_entries() {
        assert_eq!(
            parse_env(&["A_1=x=y".to_string(), "B=".to_string()]),
            Ok(vec![
                ("A_1".to_string(), "x=y".to_string()),
                ("B".to_string(), String::new())
            ])
        );
        for bad in ["NOEQUALS", "=x", "1A=x", "A-B=x"] {
            assert!(parse_env(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn remote_lines() {
        assert_eq!(remote_line("echo hi", None, &[], None), "sh -c 'echo hi'");
        let env = vec![("GREETING".to_string(), "it's".to_string())];
        assert_eq!(
            remote_line("echo $GREETING", None, &env, Some(Duration::from_secs(5))),
            "env 'GREETING=it'\\''s' timeout -k 2 5 sh -c 'echo $GREETING'"
        );
        let sudo = BecomeSpec {
            user: Some("postgres".to_string()),
            password: Some(Secret::new("pw")),
            method: crate::ssh::BecomeMethod::Sudo,
        };
        let line = remote_line("id -un", Some(&sudo), &[], None);
        assert_eq!(line, "sudo -S -k -p '' -u postgres -- sh -c 'id -un'");
        assert!(!line.contains("pw"));
        let doas = BecomeSpec {
            user: None,
            password: None,
            method: crate::ssh::BecomeMethod::Doas,
        };
        let line = remote_line("id -un", Some(&doas), &[], None);
        assert_eq!(line, "doas -n -- sh -c 'id -un'");
    }
}
