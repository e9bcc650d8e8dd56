//! Templates and expressions: mop's template language (`mop_template`, the same as the
//! controller's) with strict undefined variables, and the variable scope
//! (plan vars, `facts`, registered results, `set` variables) they are evaluated against.

use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};
use mop_protocol::Facts;

/// The minijinja environment every template and expression of a session goes through.
pub struct Engine {
    env: Environment<'static>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

impl Engine {
    /// `mop_template::environment()` (every name `mop validate` accepts, and no other) with
    /// strict undefined variables (a typo fails the resource instead of rendering an empty
    /// string), no HTML auto-escaping whatever the template's extension, `trim_blocks` and a
    /// kept trailing newline, as configuration file templates expect.
    pub fn new() -> Engine {
        let mut env = mop_template::environment();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_keep_trailing_newline(true);
        env.set_trim_blocks(true);
        Engine { env }
    }

    /// Renders `source`; `label` names it in errors (e.g. ``field `content` `` or
    /// ``template `motd.j2` ``).
    pub fn render(&self, label: &str, source: &str, context: &Value) -> Result<String, String> {
        if !has_template_syntax(source) {
            return Ok(source.to_string());
        }
        self.env
            .render_named_str(label, source, context)
            .map_err(|err| self.describe_error(label, &err, Source::Template(source), context))
    }

    /// Evaluates an expression. A `{{ ... }}` wrapper, which people write out of habit, is
    /// accepted and ignored.
    pub fn eval(&self, label: &str, expression: &str, context: &Value) -> Result<Value, String> {
        let expression = strip_braces(expression).unwrap_or(expression);
        let compiled = self.env.compile_expression(expression).map_err(|err| {
            self.describe_error(label, &err, Source::Expression(expression), context)
        })?;
        compiled.eval(context).map_err(|err| {
            self.describe_error(label, &err, Source::Expression(expression), context)
        })
    }

    /// Evaluates an expression for its truth.
    pub fn is_true(&self, label: &str, expression: &str, context: &Value) -> Result<bool, String> {
        self.eval(label, expression, context)
            .map(|value| value.is_true())
    }

    /// Renders a JSON value for `set`: strings are templates, and a string that is exactly one
    /// `{{ expression }}` keeps the expression's type (a list stays a list).
    pub fn render_native(
        &self,
        label: &str,
        value: &serde_json::Value,
        context: &Value,
    ) -> Result<serde_json::Value, String> {
        match value {
            serde_json::Value::String(text) => {
                if let Some(expression) = strip_braces(text) {
                    let value = self.eval(label, expression, context)?;
                    return serde_json::to_value(&value).map_err(|err| format!("{label}: {err}"));
                }
                self.render(label, text, context)
                    .map(serde_json::Value::String)
            }
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    self.render_native(&format!("{label}[{index}]"), item, context)
                })
                .collect::<Result<Vec<_>, _>>()
                .map(serde_json::Value::Array),
            serde_json::Value::Object(map) => {
                let mut out = serde_json::Map::new();
                for (key, item) in map {
                    out.insert(
                        key.clone(),
                        self.render_native(&format!("{label}.{key}"), item, context)?,
                    );
                }
                Ok(serde_json::Value::Object(out))
            }
            other => Ok(other.clone()),
        }
    }
}

/// Whether `text` contains any minijinja delimiter; plain strings skip the engine entirely.
pub fn has_template_syntax(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// `{{ expr }}` -> `expr`, when the whole string is one expression.
fn strip_braces(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") {
        return None;
    }
    Some(inner.trim())
}
/// What failed to render or evaluate, for naming undefined variables.
#[derive(Clone, Copy)]
enum Source<'a> {
    Template(&'a str),
    Expression(&'a str),
}

impl Engine {
    /// `field `content` line 2: undefined value: `foo.bar`` plus a hint for undefined
    /// variables. The undefined names are found by walking each variable the source refers to
    /// through the context (minijinja's error spans would need its `debug` feature, which costs
    /// the size-constrained agent 25 KiB).
    fn describe_error(
        &self,
        label: &str,
        err: &minijinja::Error,
        source: Source<'_>,
        context: &Value,
    ) -> String {
        let mut message = label.to_string();
        if let Some(line) = err.line() {
            message.push_str(&format!(" line {line}"));
        }
        message.push_str(": ");
        message.push_str(&err.kind().to_string());
        if let Some(detail) = err.detail() {
            message.push_str(&format!(" ({detail})"));
        }
        if err.kind() == ErrorKind::UndefinedError {
            let missing = self.missing_variables(source, context);
            if !missing.is_empty() {
                let names: Vec<String> = missing.iter().map(|name| format!("`{name}`")).collect();
                message.push_str(": ");
                message.push_str(&names.join(", "));
            }
            message.push_str("\nhint: define the variable (inventory, policy vars, `set` or `register`), or guard it with `is defined` or `| default(...)`");
        }
        message
    }

    /// The variable paths `source` uses that `context` cannot resolve, each cut at its first
    /// missing part (`conf.stdout_line` when `conf` exists but has no `stdout_line`).
    fn missing_variables(&self, source: Source<'_>, context: &Value) -> Vec<String> {
        let used = match source {
            Source::Template(text) => self
                .env
                .template_from_str(text)
                .map(|template| template.undeclared_variables(true)),
            Source::Expression(text) => self
                .env
                .compile_expression(text)
                .map(|expression| expression.undeclared_variables(true)),
        }
        .unwrap_or_default();
        let mut missing: Vec<String> = used
            .iter()
            .filter_map(|path| first_missing(path, context))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        missing
    }
}

fn first_missing(path: &str, context: &Value) -> Option<String> {
    let mut current = context.clone();
    let mut walked = String::new();
    for segment in path.split('.') {
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(segment);
        match current.get_attr(segment) {
            Ok(value) if !value.is_undefined() => current = value,
            _ => return Some(walked),
        }
    }
    None
}

/// The variables templates see: plan vars at top level, `facts`, and what earlier resources
/// registered or set (these override plan vars of the same name, and live for the session).
pub struct Scope {
    base: BTreeMap<String, Value>,
    session: BTreeMap<String, Value>,
    /// The current loop item and index, innermost: they shadow everything while one item of a
    /// looped resource runs, and are gone after it.
    looped: BTreeMap<String, Value>,
    cached: Option<Value>,
}

impl Scope {
    /// A scope with no session variables yet.
    pub fn new(facts: &Facts) -> Scope {
        let mut scope = Scope {
            base: BTreeMap::new(),
            session: BTreeMap::new(),
            looped: BTreeMap::new(),
            cached: None,
        };
        scope.start_role(&serde_json::Map::new(), facts);
        scope
    }

    /// Replaces the plan vars with a new role's; registered and `set` variables stay.
    pub fn start_role(
        &mut self,
        plan_vars: &serde_json::Map<String, serde_json::Value>,
        facts: &Facts,
    ) {
        self.base = plan_vars
            .iter()
            .map(|(key, value)| (key.clone(), Value::from_serialize(value)))
            .collect();
        self.base
            .insert("facts".to_string(), Value::from_serialize(facts));
        self.cached = None;
    }

    /// Sets a session variable (from `register` or `set`).
    pub fn set(&mut self, name: &str, value: Value) {
        self.session.insert(name.to_string(), value);
        self.cached = None;
    }

    /// A session variable, as registered or set.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.session.get(name)
    }

    /// Sets the loop variables of one item (replacing the previous item's).
    pub fn set_loop_vars(&mut self, vars: impl IntoIterator<Item = (String, Value)>) {
        self.looped = vars.into_iter().collect();
        self.cached = None;
    }

    /// Ends a loop: its variables are not visible to later resources.
    pub fn clear_loop_vars(&mut self) {
        self.looped.clear();
        self.cached = None;
    }

    fn merged(&self) -> BTreeMap<String, Value> {
        let mut merged = self.base.clone();
        for layer in [&self.session, &self.looped] {
            merged.extend(
                layer
                    .iter()
                    .map(|(key, value)| (key.clone(), value.clone())),
            );
        }
        merged
    }

    /// The template context.
    pub fn context(&mut self) -> Value {
        if let Some(cached) = &self.cached {
            return cached.clone();
        }
        let merged = self.merged();
        let context = Value::from_iter(merged);
        self.cached = Some(context.clone());
        context
    }

    /// The template context plus `result` (for `changed_when` / `failed_when`).
    pub fn context_with_result(&mut self, result: &Value) -> Value {
        let mut merged = self.merged();
        merged.insert("result".to_string(), result.clone());
        Value::from_iter(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `mop validate` checks templates against `mop_template::names`; the agent's engine must
    /// have exactly those names (the agent builds minijinja with its own feature set, so this is
    /// checked here too, not only in mop-template).
    #[test]
    fn the_engine_has_exactly_the_listed_names() {
        use mop_template::names::{FILTERS, FUNCTIONS, METHODS, TESTS};
        let engine = Engine::new();
        let kind_of = |source: &str| {
            let context = minijinja::context! { s => "web1", m => minijinja::context! { a => 1 } };
            match engine.env.render_str(source, context) {
                Ok(_) => None,
                Err(error) => Some(error.kind()),
            }
        };
        // A name is registered when using it fails for any reason but "unknown".
        for name in FILTERS {
            let kind = kind_of(&format!("{{{{ 'a/b' | {name} }}}}"));
            assert_ne!(kind, Some(ErrorKind::UnknownFilter), "filter {name}");
        }
        for name in TESTS {
            let kind = kind_of(&format!("{{{{ 1 is {name} }}}}"));
            assert_ne!(kind, Some(ErrorKind::UnknownTest), "test {name}");
        }
        for name in FUNCTIONS {
            let kind = kind_of(&format!("{{{{ {name}() }}}}"));
            assert_ne!(kind, Some(ErrorKind::UnknownFunction), "function {name}");
        }
        for name in METHODS {
            let on = match *name {
                "get" | "items" | "keys" | "values" => "m",
                _ => "s",
            };
            let kind = kind_of(&format!("{{{{ {on}.{name}('a') }}}}"));
            assert_ne!(kind, Some(ErrorKind::UnknownMethod), "method {name}");
        }
        // And nothing more.
        assert_eq!(
            kind_of("{{ 'a' | to_yaml }}"),
            Some(ErrorKind::UnknownFilter)
        );
        assert_eq!(
            kind_of("{{ 1 is version('1') }}"),
            Some(ErrorKind::UnknownTest)
        );
        assert_eq!(
            kind_of("{{ lookup('env') }}"),
            Some(ErrorKind::UnknownFunction)
        );
        assert_eq!(kind_of("{{ s.zfill(3) }}"), Some(ErrorKind::UnknownMethod));
    }

    fn scope_with(vars: serde_json::Value) -> Scope {
        let mut scope = Scope::new(&Facts {
            hostname: "web1".into(),
            ..Facts::default()
        });
        let serde_json::Value::Object(map) = vars else {
            panic!("object expected")
        };
        scope.start_role(
            &map,
            &Facts {
                hostname: "web1".into(),
                ..Facts::default()
            },
        );
        scope
    }

    #[test]
    fn renders_vars_and_facts() {
        let engine = Engine::new();
        let mut scope = scope_with(serde_json::json!({"port": 8080}));
        let out = engine.render(
            "field `content`",
            "{{ facts.hostname }}:{{ port }}\n",
            &scope.context(),
        );
        assert_eq!(out, Ok("web1:8080\n".to_string()));
    }

    #[test]
    fn undefined_variable_names_field_line_and_expression() {
        let engine = Engine::new();
        let mut scope = scope_with(serde_json::json!({}));
        let err = engine
            .render(
                "field `content`",
                "line one\nport={{ prot }}\n",
                &scope.context(),
            )
            .expect_err("undefined");
        assert!(
            err.starts_with("field `content` line 2: undefined value"),
            "{err}"
        );
        assert!(err.contains("`prot`"), "{err}");
        assert!(err.contains("hint:"), "{err}");
        // `default` and `is defined` still work under strict mode.
        let ok = engine.render(
            "x",
            "{{ prot | default('80') }}{% if prot is defined %}!{% endif %}",
            &scope.context(),
        );
        assert_eq!(ok, Ok("80".to_string()));
    }

    #[test]
    fn expressions_accept_braces_and_see_session_vars() {
        let engine = Engine::new();
        let mut scope = scope_with(serde_json::json!({"x": 1}));
        scope.set("r", Value::from_serialize(serde_json::json!({"rc": 0})));
        assert_eq!(
            engine.is_true("when", "r.rc == 0 and x == 1", &scope.context()),
            Ok(true)
        );
        assert_eq!(
            engine.is_true("when", "{{ x > 3 }}", &scope.context()),
            Ok(false)
        );
        let err = engine
            .is_true("`when` expression", "y == 1", &scope.context())
            .expect_err("undefined");
        assert!(err.contains("`when` expression"), "{err}");
        let err = engine
            .is_true("when", "x ==", &scope.context())
            .expect_err("syntax");
        assert!(err.contains("syntax error"), "{err}");
    }

    #[test]
    fn registered_builtins_work() {
        let engine = Engine::new();
        let mut scope = scope_with(serde_json::json!({
            "users": [{"name": "b", "admin": true}, {"name": "a", "admin": false}],
            "ports": [80, 443, 80],
            "conf": {"z": 1, "a": 2},
        }));
        let template = "{{ users | selectattr('admin') | map(attribute='name') | join(',') }};\
{{ ports | unique | sort | join(' ') }};{{ conf | items | first | first }};\
{{ missing | default('none') | upper }};{{ ports | length }};{{ 'x y' | split | list | tojson }};\
{% set ns = namespace(total=0) %}{% for p in ports %}{% set ns.total = ns.total + p %}{% endfor %}{{ ns.total }};\
{{ range(3) | list | last }};{{ ports[0] is even }};{{ 'web1' is startingwith('web') }}";
        let out = engine.render("t", template, &scope.context());
        assert_eq!(
            out,
            Ok("b;80 443;a;NONE;3;[\"x\",\"y\"];603;2;True;True".to_string())
        );
    }

    #[test]
    fn native_rendering_keeps_types() {
        let engine = Engine::new();
        let mut scope = scope_with(serde_json::json!({"ports": [80, 443]}));
        let context = scope.context();
        let value = engine.render_native(
            "vars.all",
            &serde_json::json!("{{ ports + [8080] }}"),
            &context,
        );
        assert_eq!(value, Ok(serde_json::json!([80, 443, 8080])));
        let value = engine.render_native("vars.s", &serde_json::json!("p{{ ports[0] }}"), &context);
        assert_eq!(value, Ok(serde_json::json!("p80")));
    }
}
