//! Keeping secrets out of everything the controller renders: `before`/`after` hooks,
//! `contact_when`, `mop run` commands, and the plans sent to hosts.
//!
//! A secret (a magic variable the inventory's table marks `secret`: today `mop_sudo_password`
//! and `mop_ssh_password`; and every variable a vault file sets) leaves the controller's
//! memory only on sudo's stdin. Anything
//! rendered on the controller ends up in a process's argv (`sh -c`, `ssh ... COMMAND`), in the
//! output or in an error message, so two walls keep secrets out of it:
//!
//! 1. a template or expression that names a secret is refused before rendering, naming the
//!    variable ([`secret_read`]; `mop validate`/`mop push` report the same thing earlier, from
//!    the policy check, with file:line:col);
//! 2. the variables handed to the renderer never contain a secret at all
//!    ([`without_secrets`]), so dynamic access the first wall cannot see (`{{ debug() }}`
//!    dumps the whole context) finds nothing.

use std::collections::BTreeSet;

use minijinja::Environment;
use serde_json::{Map, Value};

/// The names no template may read: the secret magic variables of the inventory's table and
/// every variable a vault file read so far set. Call it once the inventory and the policy
/// (with their vault files) are loaded.
pub fn secret_var_names() -> BTreeSet<String> {
    mop_inventory::secret_var_names()
}

/// A copy of `vars` without any secret variable: what controller-side rendering and the
/// host's plan may see.
pub fn without_secrets(vars: &Map<String, Value>) -> Map<String, Value> {
    vars.iter()
        .filter(|(name, _)| !mop_inventory::is_secret_var(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// How a string is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    /// Rendered as a template (`{{ ... }}`): hooks and `mop run` commands.
    Template,
    /// Evaluated as an expression: `contact_when`.
    Expression,
}

/// The first secret variable `text` reads (sorted by name), if any. A string that does not
/// compile reads nothing here; rendering it reports the syntax error.
pub fn secret_read(kind: TemplateKind, text: &str) -> Option<String> {
    let environment = Environment::new();
    let names = match kind {
        TemplateKind::Template => environment
            .template_from_str(text)
            .ok()?
            .undeclared_variables(false),
        TemplateKind::Expression => environment
            .compile_expression(text)
            .ok()?
            .undeclared_variables(false),
    };
    let mut secrets: Vec<String> = names
        .into_iter()
        .filter(|name| mop_inventory::is_secret_var(name))
        .collect();
    secrets.sort();
    secrets.into_iter().next()
}

/// The message for a string that reads the secret `name`, after the caller's prefix.
pub fn secret_read_message(name: &str) -> String {
    format!(
        "`{name}` is a secret: templates and expressions cannot read it\n  hint: secrets leave \
         the controller only on sudo's stdin; a command that needs a credential should read it \
         itself (from a file or an agent)"
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rust_files(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir)
            .expect("a source directory")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, found);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                found.push(path);
            }
        }
    }

    /// Every place the controller renders a template or an expression is one of the known
    /// ones, and each of them renders with [`without_secrets`]: new controller-side rendering
    /// has to come through here.
    #[test]
    fn controller_side_rendering_goes_through_the_secret_walls() {
        let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        rust_files(&manifest.join("src"), &mut files);
        rust_files(&manifest.join("../mop/src"), &mut files);
        let allowed = ["hooks.rs", "command.rs", "secrets.rs"];
        let mut renderers = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path).expect("a readable source file");
            let renders = ["render_str(", "compile_expression(", "template_from_str("]
                .iter()
                .any(|call| text.contains(call));
            if !renders {
                continue;
            }
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            assert!(
                allowed.contains(&name.as_str()),
                "`{}` renders templates on the controller: give it variables from \
                 `secrets::without_secrets` and refuse `secrets::secret_read`, then add it here",
                path.display()
            );
            if name != "secrets.rs" {
                assert!(
                    text.contains("without_secrets(") && text.contains("secret_read("),
                    "`{}` renders without the secret walls",
                    path.display()
                );
            }
            renderers.push(name);
        }
        renderers.sort();
        assert_eq!(renderers, ["command.rs", "hooks.rs", "secrets.rs"]);
    }

    #[test]
    fn secret_names_come_from_the_magic_table() {
        let names = secret_var_names();
        assert!(names.contains("mop_sudo_password"), "{names:?}");
        assert!(names.contains("mop_ssh_password"), "{names:?}");
        assert!(!names.contains("mop_sudo_username"), "{names:?}");
    }

    #[test]
    fn secret_names_include_every_vault_variable() {
        let name = "vault_only_name_for_secret_names_test";
        assert!(!secret_var_names().contains(name));
        mop_inventory::mark_vault_var(name);
        let names = secret_var_names();
        assert!(names.contains(name), "{names:?}");
        assert!(names.contains("mop_sudo_password"), "{names:?}");
    }

    #[test]
    fn secrets_are_dropped_and_everything_else_kept() {
        let vars: Map<String, Value> = [
            ("mop_sudo_password", json!("hunter2")),
            ("mop_ssh_password", json!("hunter3")),
            ("mop_sudo_username", json!("root")),
            ("app_port", json!(8080)),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect();
        let kept = without_secrets(&vars);
        let mut names: Vec<&str> = kept.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["app_port", "mop_sudo_username"]);
        assert!(!Value::Object(kept).to_string().contains("hunter"));
    }

    #[test]
    fn secret_reads_are_found_in_templates_and_expressions() {
        let template = |text: &str| secret_read(TemplateKind::Template, text);
        assert_eq!(
            template("true {{ mop_sudo_password }}").as_deref(),
            Some("mop_sudo_password")
        );
        assert_eq!(
            template("{{ mop_sudo_password | default('') }}").as_deref(),
            Some("mop_sudo_password")
        );
        assert_eq!(
            template("{% for c in mop_ssh_password %}{{ c }}{% endfor %}").as_deref(),
            Some("mop_ssh_password")
        );
        assert_eq!(template("{{ mop_sudo_username }} {{ host.name }}"), None);
        assert_eq!(
            template("{% set mop_sudo_password = 1 %}{{ mop_sudo_password }}"),
            None
        );
        assert_eq!(template("{{ unclosed"), None);
        assert_eq!(
            secret_read(TemplateKind::Expression, "mop_sudo_password == 'x'").as_deref(),
            Some("mop_sudo_password")
        );
        assert_eq!(
            secret_read(TemplateKind::Expression, "host.name == 'x'"),
            None
        );
    }
}
