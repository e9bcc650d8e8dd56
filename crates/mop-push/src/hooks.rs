//! Controller-side pieces of a rollout: `contact_when` and the `before`/`after` hooks, both
//! rendered with the host's variables, never its secrets (see [`crate::secrets`]).

use std::process::Stdio;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};

use crate::secrets::{secret_read, secret_read_message, without_secrets, TemplateKind};

/// The variables hooks and `contact_when` see: the host's variables plus `host`, without the
/// secrets, so no way of reading the context (`{{ debug() }}` included) reaches them.
pub fn hook_context(
    host_name: &str,
    host_groups: &[String],
    vars: &Map<String, Value>,
) -> Map<String, Value> {
    let mut context = without_secrets(vars);
    context.insert(
        "host".to_string(),
        serde_json::json!({ "name": host_name, "groups": host_groups }),
    );
    context
}

/// mop's template language (the hosts' own), with strict undefined variables.
fn environment() -> Environment<'static> {
    let mut env = mop_template::environment();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// Why `contact_when` or a hook command could not be evaluated for a host.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// Over mop's size or nesting limits (checked before minijinja parses anything).
    #[error("{what}: {source}")]
    Limits {
        what: &'static str,
        source: mop_policy::limits::LimitError,
    },
    /// The template reads a secret, which hooks and `contact_when` never see.
    #[error("{what} `{text}`: {}", secret_read_message(.secret))]
    ReadsSecret {
        what: &'static str,
        text: String,
        secret: String,
    },
    /// minijinja refused it (syntax, undefined variable, failing filter).
    #[error("{what} `{text}`: {source}")]
    Template {
        what: &'static str,
        text: String,
        source: minijinja::Error,
    },
}

/// Evaluates `contact_when` for one host.
pub fn contact_when(expression: &str, context: &Map<String, Value>) -> Result<bool, HookError> {
    const WHAT: &str = "contact_when";
    mop_policy::limits::check_expression(expression)
        .map_err(|source| HookError::Limits { what: WHAT, source })?;
    if let Some(secret) = secret_read(TemplateKind::Expression, expression) {
        return Err(HookError::ReadsSecret {
            what: WHAT,
            text: expression.to_string(),
            secret,
        });
    }
    let template_error = |source| HookError::Template {
        what: WHAT,
        text: expression.to_string(),
        source,
    };
    let env = environment();
    let compiled = env.compile_expression(expression).map_err(template_error)?;
    compiled
        .eval(context)
        .map(|value| value.is_true())
        .map_err(template_error)
}

/// Renders a hook command for one host.
pub fn render_hook(command: &str, context: &Map<String, Value>) -> Result<String, HookError> {
    const WHAT: &str = "hook";
    mop_policy::limits::check_template(command)
        .map_err(|source| HookError::Limits { what: WHAT, source })?;
    if let Some(secret) = secret_read(TemplateKind::Template, command) {
        return Err(HookError::ReadsSecret {
            what: WHAT,
            text: command.to_string(),
            secret,
        });
    }
    environment()
        .render_str(command, context)
        .map_err(|source| HookError::Template {
            what: WHAT,
            text: command.to_string(),
            source,
        })
}

/// What a hook did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookResult {
    pub rc: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a rendered hook with `sh -c` on the controller, in the policy's directory (so
/// `scripts/lb.sh` means the one next to the policy), with `MOP_HOST` and `MOP_ROLE` set.
pub async fn run_hook(
    command: &str,
    dir: &std::path::Path,
    host_name: &str,
    role: &str,
) -> std::io::Result<HookResult> {
    let dir = if dir.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        dir
    };
    let output = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("MOP_HOST", host_name)
        .env("MOP_ROLE", role)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    Ok(HookResult {
        rc: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Map<String, Value> {
        let vars: Map<String, Value> =
            serde_json::from_str(r#"{"weight": 3}"#).expect("valid json");
        hook_context("web1", &["all".to_string(), "web".to_string()], &vars)
    }

    #[test]
    fn contact_when_sees_host_and_vars() {
        assert!(contact_when("host.name == 'web1' and weight > 2", &context()).expect("evaluates"));
        assert!(!contact_when("'db' in host.groups", &context()).expect("evaluates"));
        let err = contact_when("missing > 1", &context())
            .expect_err("undefined variable")
            .to_string();
        assert!(err.contains("contact_when"), "{err}");
    }

    /// The policy check refuses these before any host is contacted; this is the wall behind
    /// it, for callers that skip the check and for reads no static check can see.
    #[test]
    fn hooks_and_contact_when_never_see_secrets() {
        let vars: Map<String, Value> = serde_json::from_str(
            r#"{"weight": 3, "mop_sudo_password": "hunter2", "mop_ssh_password": "hunter3"}"#,
        )
        .expect("valid json");
        let context = hook_context("web1", &["all".to_string()], &vars);
        assert!(!context.contains_key("mop_sudo_password"));
        assert!(!context.contains_key("mop_ssh_password"));
        assert_eq!(context["weight"], serde_json::json!(3));

        let err = render_hook("true {{ mop_sudo_password }}", &context)
            .expect_err("secret")
            .to_string();
        assert!(
            err.starts_with("hook `true {{ mop_sudo_password }}`: `mop_sudo_password` is a secret"),
            "{err}"
        );
        let err = contact_when("mop_ssh_password != ''", &context)
            .expect_err("secret")
            .to_string();
        assert!(err.contains("`mop_ssh_password` is a secret"), "{err}");

        // Dynamic access sees the whole context, which holds no secret.
        let dumped = render_hook("echo {{ debug() }}", &context).expect("renders");
        assert!(dumped.contains("weight"), "{dumped}");
        assert!(!dumped.contains("hunter"), "{dumped}");
        assert!(!dumped.contains("mop_sudo_password"), "{dumped}");
    }

    #[tokio::test]
    async fn hooks_render_and_run_with_host_env() {
        let command =
            render_hook("echo {{ host.name }} $MOP_ROLE; exit 3", &context()).expect("renders");
        let result = run_hook(&command, std::path::Path::new(""), "web1", "deploy")
            .await
            .expect("sh runs");
        assert_eq!(result.rc, 3);
        assert_eq!(result.stdout, "web1 deploy\n");
    }
}
