//! Template and expression checks: minijinja syntax at load time, and the static
//! undefined-variable analysis that needs the names a host will know.

use std::collections::BTreeSet;

use minijinja::Environment;

use crate::error::{Origin, PolicyError};
use crate::limits;
use crate::suggest;

/// How a string is used, which decides how it is compiled and which names it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SiteKind {
    /// Rendered as a template (`{{ ... }}`, `{% ... %}`).
    Template,
    /// Evaluated as an expression (`when`, `assert.that`, `contact_when`).
    Expression,
    /// An expression that also sees the resource's own `result` (`changed_when`,
    /// `failed_when`).
    ResultExpression,
}

/// One templated string of a policy and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TemplateSite {
    /// The field as the user wrote it, e.g. `content`, `env.PATH`, `vars.greeting`.
    pub field: String,
    pub kind: SiteKind,
    pub text: String,
    /// The position of the string value.
    pub origin: Origin,
}

/// Names a template may use, and what to say about the ones it may not.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    pub names: BTreeSet<String>,
    /// `facts` is in scope (host-side strings only).
    pub facts: bool,
    /// Names registered or set by later resources, with the resource that defines them, so
    /// the error can say why a name is not there yet.
    pub defined_later: Vec<(String, String)>,
    /// Names no string may read, wherever it runs: their values never leave the controller's
    /// memory except to sudo's stdin (the caller takes them from the inventory's magic table).
    pub secrets: BTreeSet<String>,
}

/// Attributes of `host` as the executor fills it in.
pub(crate) const HOST_ATTRIBUTES: &[&str] = &["name", "groups"];

/// Names nobody may define as a variable because the engine provides them.
pub(crate) const RESERVED_NAMES: &[&str] = &["host", "facts", "result"];

/// Checks syntax. Returns the error message (without position) when the string does not
/// compile.
pub(crate) fn syntax_error(kind: SiteKind, text: &str) -> Option<String> {
    let text = expression_text(kind, text);
    if let Err(error) = check_limits(kind, text) {
        return Some(match kind {
            SiteKind::Template => format!("template line {}: {error}", error.line()),
            SiteKind::Expression | SiteKind::ResultExpression => {
                format!("invalid expression: {error}")
            }
        });
    }
    let environment = Environment::new();
    let result = match kind {
        SiteKind::Template => environment.template_from_str(text).map(|_| ()),
        SiteKind::Expression | SiteKind::ResultExpression => {
            environment.compile_expression(text).map(|_| ())
        }
    };
    let error = result.err()?;
    let what = match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    };
    Some(match kind {
        SiteKind::Template => match error.line() {
            Some(line) => format!("template line {line}: {what}"),
            None => what,
        },
        SiteKind::Expression | SiteKind::ResultExpression => format!("invalid expression: {what}"),
    })
}

/// The variables a string reads, as dotted paths (`host.name`, `motd_banner`), sorted.
/// Strings that do not compile read nothing (their syntax error is reported separately).
pub(crate) fn undeclared_variables(kind: SiteKind, text: &str) -> Vec<String> {
    let text = expression_text(kind, text);
    if check_limits(kind, text).is_err() {
        return Vec::new();
    }
    let environment = Environment::new();
    let names = match kind {
        SiteKind::Template => match environment.template_from_str(text) {
            Ok(template) => template.undeclared_variables(true),
            Err(_) => return Vec::new(),
        },
        SiteKind::Expression | SiteKind::ResultExpression => {
            match environment.compile_expression(text) {
                Ok(expression) => expression.undeclared_variables(true),
                Err(_) => return Vec::new(),
            }
        }
    };
    let globals: BTreeSet<&str> = environment.globals().map(|(name, _)| name).collect();
    let mut names: Vec<String> = names
        .into_iter()
        .filter(|name| !globals.contains(root_of(name)))
        .collect();
    names.sort();
    names
}

/// Text over the size or nesting limits never reaches minijinja (its parser can overflow the
/// stack on it).
fn check_limits(kind: SiteKind, text: &str) -> Result<(), limits::LimitError> {
    match kind {
        SiteKind::Template => limits::check_template(text),
        SiteKind::Expression | SiteKind::ResultExpression => limits::check_expression(text),
    }
}

/// Expressions written as `{{ expr }}` out of habit are evaluated as `expr` by the agent;
/// check them the same way.
fn expression_text(kind: SiteKind, text: &str) -> &str {
    if kind == SiteKind::Template {
        return text;
    }
    let Some(inner) = text
        .trim()
        .strip_prefix("{{")
        .and_then(|rest| rest.strip_suffix("}}"))
    else {
        return text;
    };
    if inner.contains("{{") || inner.contains("}}") {
        return text;
    }
    inner.trim()
}

fn root_of(path: &str) -> &str {
    path.split('.').next().unwrap_or(path)
}

/// The fact names an agent reports, taken from the protocol's `Facts` so they cannot drift.
fn fact_attributes() -> (Vec<String>, Vec<String>) {
    let facts = serde_json::to_value(mop_protocol::Facts::default())
        .expect("facts serialize to a JSON object");
    let top: Vec<String> = facts
        .as_object()
        .map(|map| map.keys().cloned().collect())
        .unwrap_or_default();
    let os: Vec<String> = facts
        .get("os")
        .and_then(|os| os.as_object())
        .map(|map| map.keys().cloned().collect())
        .unwrap_or_default();
    (top, os)
}

/// A variable a string reads that its scope does not define.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UndefinedUse {
    /// The dotted path as used (`motd_banner`, `host.nmae`), to find it in the text.
    pub path: String,
    /// `undefined variable `x`` or `` `host` has no attribute `nmae` ``.
    pub message: String,
    pub hint: Option<String>,
}

/// Every variable `text` reads that `scope` does not define (each root name once).
pub(crate) fn undefined_uses(kind: SiteKind, text: &str, scope: &Scope) -> Vec<UndefinedUse> {
    let mut uses = Vec::new();
    let mut reported_roots = BTreeSet::new();
    for path in undeclared_variables(kind, text) {
        let mut parts = path.split('.');
        let root = parts.next().unwrap_or(&path).to_string();
        let attribute = parts.next();
        // Before the guard check: `{{ mop_sudo_password | default('') }}` still asks for it.
        if scope.secrets.contains(&root) {
            if reported_roots.insert(root.clone()) {
                uses.push(secret_use(&root));
            }
            continue;
        }
        let known = match root.as_str() {
            "result" => matches!(kind, SiteKind::ResultExpression),
            "facts" => scope.facts,
            _ => scope.names.contains(&root),
        };
        if !known && !is_guarded(text, &root) {
            let loop_name = root == mop_protocol::DEFAULT_LOOP_VAR
                || mop_protocol::LOOP_INDEX_VARS.contains(&root.as_str());
            if loop_name && reported_roots.insert(root.clone()) {
                uses.push(UndefinedUse {
                    message: format!("`{root}` is used outside a loop"),
                    hint: Some(format!(
                        "`{root}` exists only in a resource or handler with `loop = [...]` (and not in the `loop` itself)"
                    )),
                    path: root,
                });
                continue;
            }
            if reported_roots.insert(root.clone()) {
                uses.push(UndefinedUse {
                    message: format!("undefined variable `{root}`"),
                    hint: undefined_hint(&root, kind, scope),
                    path: root,
                });
            }
            continue;
        }
        let Some(attribute) = attribute else { continue };
        if !known || is_guarded(text, &path) {
            continue;
        }
        let (owner, missing, attributes) = match root.as_str() {
            "host" => {
                let attributes: Vec<String> = HOST_ATTRIBUTES
                    .iter()
                    .map(|name| name.to_string())
                    .collect();
                ("host", attribute, attributes)
            }
            "facts" => {
                let (top, os) = fact_attributes();
                match path.split('.').nth(2) {
                    Some(os_attribute) if attribute == "os" => ("facts.os", os_attribute, os),
                    _ => ("facts", attribute, top),
                }
            }
            _ => continue,
        };
        if attributes.iter().any(|name| name == missing) {
            continue;
        }
        let hint = suggest::did_you_mean(missing, attributes.iter().map(String::as_str))
            .unwrap_or_else(|| {
                format!(
                    "`{owner}` has {}",
                    suggest::quoted_list(attributes.iter().map(String::as_str))
                )
            });
        uses.push(UndefinedUse {
            message: format!("`{owner}` has no attribute `{missing}`"),
            hint: Some(hint),
            path: path.clone(),
        });
    }
    uses
}

/// The error for a string that reads the secret `name`.
fn secret_use(name: &str) -> UndefinedUse {
    UndefinedUse {
        path: name.to_string(),
        message: format!("`{name}` is a secret: templates and expressions cannot read it"),
        hint: Some(
            "secrets leave the controller only on sudo's stdin; a command that needs a \
             credential should read it itself (from a file or an agent)"
                .to_string(),
        ),
    }
}

/// Whether `text` tests `name` before relying on it (`name is defined`, `name is undefined`,
/// `name is none`, `name | default(...)`, `name | d(...)`, also on an attribute of it): an
/// optional variable, which the agent handles, not a typo.
fn is_guarded(text: &str, name: &str) -> bool {
    let pattern = format!(
        r"(^|[^\w.]){}(\.\w+|\[[^\]]*\])*\s*(is\s+(not\s+)?(defined|undefined|none)\b|\|\s*(default|d)\b)",
        regex_lite::escape(name)
    );
    regex_lite::Regex::new(&pattern).is_ok_and(|regex| regex.is_match(text))
}

/// Errors for every variable `site` reads that `scope` does not define, at the string's
/// position, naming the field and (for multi-line strings) the template line.
pub(crate) fn undefined_errors(
    site: &TemplateSite,
    scope: &Scope,
    context: &str,
) -> Vec<PolicyError> {
    undefined_uses(site.kind, &site.text, scope)
        .into_iter()
        .map(|undefined| {
            let line = variable_line(site, &undefined.path);
            PolicyError::at(
                &site.origin,
                context,
                format!("field `{}`: {}{line}", site.field, undefined.message),
            )
            .with_hint(undefined.hint)
        })
        .collect()
}

fn undefined_hint(root: &str, kind: SiteKind, scope: &Scope) -> Option<String> {
    if root == "result" {
        return Some(
            "`result` exists only in `changed_when` and `failed_when`; use `register` to keep a result for later resources"
                .to_string(),
        );
    }
    if root == "facts" {
        return Some(
            "facts are gathered on the host, so controller-side `before`, `after` and `contact_when` cannot use them"
                .to_string(),
        );
    }
    if let Some((_, definer)) = scope.defined_later.iter().find(|(name, _)| name == root) {
        return Some(format!(
            "`{root}` is defined by {definer}, which runs later; move that resource before this one"
        ));
    }
    let mut candidates: Vec<&str> = scope.names.iter().map(String::as_str).collect();
    if scope.facts {
        candidates.push("facts");
    }
    if kind == SiteKind::ResultExpression {
        candidates.push("result");
    }
    suggest::did_you_mean(root, candidates).or_else(|| {
        Some(
            "define it under `vars` (policy, role or roles file), in the inventory, with `-e`, or with `register`/`set` in an earlier resource"
                .to_string(),
        )
    })
}

/// ` (template line N)` for multi-line strings, where N is the first line of `site.text`
/// that reads `path`; empty for one-line strings.
fn variable_line(site: &TemplateSite, path: &str) -> String {
    if !site.text.contains('\n') {
        return String::new();
    }
    match find_variable_line(&site.text, site.kind, path) {
        Some(line) => format!(" (template line {line})"),
        None => String::new(),
    }
}

/// The 1-based line of the first whole-word use of `name` inside a template block (or
/// anywhere, for expressions).
pub(crate) fn find_variable_line(text: &str, kind: SiteKind, name: &str) -> Option<usize> {
    find_variable_offset(text, kind, name).map(|offset| text[..offset].matches('\n').count() + 1)
}

/// The byte offset of the first whole-word use of the dotted `name` inside a template block
/// (or anywhere, for expressions), falling back to its root name.
pub(crate) fn find_variable_offset(text: &str, kind: SiteKind, name: &str) -> Option<usize> {
    let blocks = match kind {
        SiteKind::Template => template_blocks(text),
        SiteKind::Expression | SiteKind::ResultExpression => {
            std::iter::once(0..text.len()).collect()
        }
    };
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let find = |name: &str| {
        text.match_indices(name).map(|(offset, _)| offset).find(|&offset| {
            let end = offset + name.len();
            let before_ok = !matches!(text[..offset].chars().next_back(), Some(c) if is_word(c) || c == '.');
            let after_ok = !matches!(text[end..].chars().next(), Some(c) if is_word(c));
            let in_block = blocks.iter().any(|block| block.start <= offset && end <= block.end);
            before_ok && after_ok && in_block
        })
    };
    find(name).or_else(|| find(root_of(name)))
}

/// Byte ranges of `{{ ... }}` and `{% ... %}` blocks.
fn template_blocks(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut blocks = Vec::new();
    let mut cursor = 0;
    while let Some(found) = text[cursor..].find('{') {
        let start = cursor + found;
        let closer = match text[start + 1..].chars().next() {
            Some('{') => "}}",
            Some('%') => "%}",
            _ => {
                cursor = start + 1;
                continue;
            }
        };
        let end = text[start + 2..]
            .find(closer)
            .map_or(text.len(), |found| start + 2 + found + 2);
        blocks.push(start..end);
        cursor = end;
    }
    blocks
}

/// Whether a string contains template syntax at all (literal strings can be checked as
/// values: paths, user names, regular expressions).
pub(crate) fn is_templated(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::error::Position;

    fn site(kind: SiteKind, text: &str) -> TemplateSite {
        TemplateSite {
            field: "content".to_string(),
            kind,
            text: text.to_string(),
            origin: Origin {
                file: PathBuf::from("p.toml"),
                position: Position {
                    line: 3,
                    column: 11,
                },
            },
        }
    }

    fn scope(names: &[&str]) -> Scope {
        Scope {
            names: names.iter().map(|name| name.to_string()).collect(),
            facts: true,
            defined_later: vec![("later".to_string(), "resource #4 (shell x)".to_string())],
            secrets: ["mop_sudo_password".to_string()].into(),
        }
    }

    fn check(kind: SiteKind, text: &str, names: &[&str]) -> Vec<String> {
        undefined_errors(&site(kind, text), &scope(names), "role `r`")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn syntax_errors_name_the_template_line() {
        assert_eq!(
            syntax_error(SiteKind::Template, "a\nb {{ x\n").as_deref(),
            Some("template line 2: syntax error: unexpected end of input, expected end of variable block")
        );
        assert_eq!(
            syntax_error(SiteKind::Expression, "x ==").as_deref(),
            Some("invalid expression: syntax error: unexpected end of input, expected expression")
        );
        assert_eq!(syntax_error(SiteKind::Template, "{{ x | upper }}"), None);
        assert_eq!(syntax_error(SiteKind::Expression, "{{ x == 1 }}"), None);
        assert_eq!(
            undeclared_variables(SiteKind::Expression, "{{ x == 1 }}"),
            vec!["x".to_string()]
        );
    }

    #[test]
    fn loop_variables_and_globals_are_not_undefined() {
        let text = "{% for item in items %}{{ item }} {{ loop.index }}{% endfor %}{{ range(2) }}";
        assert_eq!(
            undeclared_variables(SiteKind::Template, text),
            vec!["items".to_string()]
        );
    }

    #[test]
    fn undefined_names_get_hints() {
        assert_eq!(
            check(
                SiteKind::Template,
                "{{ motd_banner }}",
                &["motd_banner", "host"]
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            check(SiteKind::Template, "{{ motd_baner }}", &["motd_banner", "host"]),
            vec!["p.toml:3:11: role `r`: field `content`: undefined variable `motd_baner`\n  hint: did you mean `motd_banner`?"]
        );
        assert_eq!(
            check(SiteKind::Template, "line one\n{{ later }}", &["host"]),
            vec!["p.toml:3:11: role `r`: field `content`: undefined variable `later` (template line 2)\n  hint: `later` is defined by resource #4 (shell x), which runs later; move that resource before this one"]
        );
        assert_eq!(
            check(SiteKind::ResultExpression, "result.rc != 0", &[]),
            Vec::<String>::new()
        );
        assert_eq!(check(SiteKind::Expression, "result.rc != 0", &[]).len(), 1);
    }

    #[test]
    fn guarded_optional_variables_are_not_errors() {
        let none: &[&str] = &[];
        assert!(check(
            SiteKind::Template,
            "{% if motd is defined %}{{ motd }}{% endif %}",
            none
        )
        .is_empty());
        assert!(check(SiteKind::Template, "{{ motd | default('none') }}", none).is_empty());
        assert!(check(SiteKind::Template, "{{ cfg.port|d(80) }}", none).is_empty());
        assert!(check(
            SiteKind::Expression,
            "backup is not defined or not backup.enabled",
            none
        )
        .is_empty());
        assert!(check(SiteKind::Expression, "host.weight is defined", &["host"]).is_empty());
        // A guard on another name does not cover this one.
        assert_eq!(
            check(
                SiteKind::Template,
                "{% if motd_x is defined %}{{ motd }}{% endif %}",
                none
            )
            .len(),
            1
        );
        assert_eq!(
            check(
                SiteKind::Template,
                "{{ xmotd | default(1) }}{{ motd }}",
                none
            )
            .len(),
            1
        );
    }

    #[test]
    fn secrets_are_errors_even_when_defined_or_guarded() {
        for text in [
            "{{ mop_sudo_password }}",
            "{{ mop_sudo_password | default('') }}",
            "{% if mop_sudo_password is defined %}x{% endif %}",
        ] {
            assert_eq!(
                check(SiteKind::Template, text, &["mop_sudo_password"]),
                vec!["p.toml:3:11: role `r`: field `content`: `mop_sudo_password` is a secret: templates and expressions cannot read it\n  hint: secrets leave the controller only on sudo's stdin; a command that needs a credential should read it itself (from a file or an agent)"],
                "{text}"
            );
        }
        assert!(check(
            SiteKind::Template,
            "{{ mop_sudo_username }}",
            &["mop_sudo_username"]
        )
        .is_empty());
    }

    #[test]
    fn host_and_fact_attributes_are_checked() {
        assert_eq!(
            check(
                SiteKind::Template,
                "{{ host.name }} {{ facts.os.family }}",
                &["host"]
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            check(SiteKind::Template, "{{ host.nmae }}", &["host"]),
            vec!["p.toml:3:11: role `r`: field `content`: `host` has no attribute `nmae`\n  hint: did you mean `name`?"]
        );
        assert_eq!(
            check(SiteKind::Template, "{{ facts.os.famly }}", &["host"]),
            vec!["p.toml:3:11: role `r`: field `content`: `facts.os` has no attribute `famly`\n  hint: did you mean `family`?"]
        );
    }

    #[test]
    fn variable_lines_prefer_template_blocks() {
        let text = "motd is here\n{% if x %}\n{{ motd }}\n{% endif %}";
        assert_eq!(
            find_variable_line(text, SiteKind::Template, "motd"),
            Some(3)
        );
        assert_eq!(find_variable_line(text, SiteKind::Template, "x"), Some(2));
        assert_eq!(
            find_variable_line(text, SiteKind::Template, "nothing"),
            None
        );
    }
}
