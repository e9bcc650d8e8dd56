//! Rendering a resource spec: every string field is a template, rendered against the scope
//! before the resource runs, except lookup keys into the plan (`template`, `source`), `mode`,
//! and expressions (`assert.that`), which are evaluated rather than rendered. `set` values are
//! rendered by the `set` resource itself, which keeps their types.
//!
//! The fields are visited one by one rather than through a serde round trip: that keeps the
//! field names for error messages and saves the agent a second copy of every spec's serde code.
//! Which fields are rendered is decided by `mop_protocol::RESOURCE_KINDS` (the policy checks
//! the same fields); `visitor_renders_exactly_the_described_fields` holds this visitor to it.

use minijinja::Value;
use mop_protocol::{
    ChoiceValue, ResourceSpec, Templated, PACKAGE_MANAGERS, REPOSITORY_MANAGERS, SERVICE_MANAGERS,
};

use crate::template::{has_template_syntax, Engine};

/// Renders the template fields of `spec`.
pub fn render_spec(
    engine: &Engine,
    spec: &ResourceSpec,
    context: &Value,
) -> Result<ResourceSpec, String> {
    let mut rendered = spec.clone();
    let mut render = |field: &str, text: &mut String| -> Result<(), String> {
        if has_template_syntax(text) {
            *text = engine.render(&format!("field `{field}`"), text, context)?;
        }
        Ok(())
    };
    visit_template_fields(&mut rendered, &mut render)?;
    resolve_choices(&mut rendered)?;
    Ok(rendered)
}

/// Turns every rendered choice field into its value, or the message `mop validate` gives
/// for the same literal.
fn resolve_choices(spec: &mut ResourceSpec) -> Result<(), String> {
    fn resolve<T: ChoiceValue>(name: &str, field: &mut Templated<T>) -> Result<(), String> {
        if let Templated::Template(text) = field {
            *field = Templated::Value(Templated::<T>::from_rendered(name, text)?);
        }
        Ok(())
    }
    fn optional<T: ChoiceValue>(
        name: &str,
        field: &mut Option<Templated<T>>,
    ) -> Result<(), String> {
        match field {
            Some(field) => resolve(name, field),
            None => Ok(()),
        }
    }
    // `manager` stays a string (the resource matches on it), checked like the others.
    fn known(name: &str, value: Option<&str>, choices: &[&str]) -> Result<(), String> {
        match value.map(str::trim) {
            Some(value) if !choices.contains(&value) => {
                Err(mop_protocol::choice_problem(name, value, choices))
            }
            _ => Ok(()),
        }
    }
    match spec {
        ResourceSpec::File(file) => resolve("state", &mut file.state),
        ResourceSpec::Directory(directory) => resolve("state", &mut directory.state),
        ResourceSpec::Link(link) => resolve("state", &mut link.state),
        ResourceSpec::Line(line) => resolve("state", &mut line.state),
        ResourceSpec::Block(block) => resolve("state", &mut block.state),
        ResourceSpec::Cron(cron) => resolve("state", &mut cron.state),
        ResourceSpec::AuthorizedKey(key) => resolve("state", &mut key.state),
        ResourceSpec::Package(package) => {
            resolve("state", &mut package.state)?;
            known("manager", package.manager.as_deref(), PACKAGE_MANAGERS)
        }
        ResourceSpec::Repository(repository) => {
            resolve("state", &mut repository.state)?;
            known(
                "manager",
                repository.manager.as_deref(),
                REPOSITORY_MANAGERS,
            )
        }
        ResourceSpec::Service(service) => {
            optional("state", &mut service.state)?;
            optional("enabled", &mut service.enabled)?;
            known("manager", service.manager.as_deref(), SERVICE_MANAGERS)
        }
        ResourceSpec::Sysctl(sysctl) => resolve("state", &mut sysctl.state),
        ResourceSpec::Mount(mount) => resolve("state", &mut mount.state),
        ResourceSpec::Unarchive(unarchive) => optional("format", &mut unarchive.format),
        ResourceSpec::User(user) => resolve("state", &mut user.state),
        ResourceSpec::Group(group) => resolve("state", &mut group.state),
        ResourceSpec::Shell(_)
        | ResourceSpec::Command(_)
        | ResourceSpec::Download(_)
        | ResourceSpec::Git(_)
        | ResourceSpec::Tree(_)
        | ResourceSpec::Echo(_)
        | ResourceSpec::Set(_)
        | ResourceSpec::Assert(_)
        | ResourceSpec::Fail(_) => Ok(()),
    }
}

type Render<'a> = dyn FnMut(&str, &mut String) -> Result<(), String> + 'a;

fn optional(name: &str, field: &mut Option<String>, render: &mut Render<'_>) -> Result<(), String> {
    match field {
        Some(text) => render(name, text),
        None => Ok(()),
    }
}

/// A choice field's template (a literal needs no rendering).
fn choice<T>(name: &str, field: &mut Templated<T>, render: &mut Render<'_>) -> Result<(), String> {
    match field {
        Templated::Template(text) => render(name, text),
        Templated::Value(_) => Ok(()),
    }
}

fn optional_choice<T>(
    name: &str,
    field: &mut Option<Templated<T>>,
    render: &mut Render<'_>,
) -> Result<(), String> {
    match field {
        Some(field) => choice(name, field, render),
        None => Ok(()),
    }
}

fn list(name: &str, items: &mut [String], render: &mut Render<'_>) -> Result<(), String> {
    for (index, item) in items.iter_mut().enumerate() {
        render(&format!("{name}[{index}]"), item)?;
    }
    Ok(())
}

/// Calls `render` on every template field of `spec`, named as the policy writes it.
fn visit_template_fields(spec: &mut ResourceSpec, render: &mut Render<'_>) -> Result<(), String> {
    match spec {
        ResourceSpec::File(file) => {
            render("path", &mut file.path)?;
            optional("content", &mut file.content, render)?;
            // Template syntax here only passes validation in a loop written as a list.
            optional("template", &mut file.template, render)?;
            optional("source", &mut file.source, render)?;
            optional("owner", &mut file.owner, render)?;
            optional("group", &mut file.group, render)?;
            choice("state", &mut file.state, render)
        }
        ResourceSpec::Directory(directory) => {
            render("path", &mut directory.path)?;
            optional("owner", &mut directory.owner, render)?;
            optional("group", &mut directory.group, render)?;
            choice("state", &mut directory.state, render)
        }
        ResourceSpec::Link(link) => {
            render("path", &mut link.path)?;
            optional("target", &mut link.target, render)?;
            choice("state", &mut link.state, render)
        }
        ResourceSpec::Line(line) => {
            render("path", &mut line.path)?;
            optional("line", &mut line.line, render)?;
            optional("regexp", &mut line.regexp, render)?;
            choice("state", &mut line.state, render)
        }
        ResourceSpec::Block(block) => {
            render("path", &mut block.path)?;
            optional("block", &mut block.block, render)?;
            optional("marker", &mut block.marker, render)?;
            optional("insert_after", &mut block.insert_after, render)?;
            optional("insert_before", &mut block.insert_before, render)?;
            choice("state", &mut block.state, render)
        }
        ResourceSpec::Cron(cron) => {
            render("cron", &mut cron.name)?;
            optional("user", &mut cron.user, render)?;
            optional("command", &mut cron.command, render)?;
            render("minute", &mut cron.minute)?;
            render("hour", &mut cron.hour)?;
            render("day", &mut cron.day)?;
            render("month", &mut cron.month)?;
            render("weekday", &mut cron.weekday)?;
            optional("special", &mut cron.special, render)?;
            for (key, value) in cron.env.iter_mut() {
                render(&format!("env.{key}"), value)?;
            }
            choice("state", &mut cron.state, render)
        }
        ResourceSpec::AuthorizedKey(key) => {
            render("user", &mut key.user)?;
            list("keys", &mut key.keys, render)?;
            choice("state", &mut key.state, render)
        }
        ResourceSpec::Shell(command) | ResourceSpec::Command(command) => {
            render("cmd", &mut command.cmd)?;
            optional("creates", &mut command.creates, render)?;
            optional("removes", &mut command.removes, render)?;
            optional("unless", &mut command.unless, render)?;
            optional("onlyif", &mut command.onlyif, render)?;
            optional("cwd", &mut command.cwd, render)?;
            for (key, value) in command.env.iter_mut() {
                render(&format!("env.{key}"), value)?;
            }
            Ok(())
        }
        ResourceSpec::Package(package) => {
            list("packages", &mut package.name, render)?;
            optional("manager", &mut package.manager, render)?;
            choice("state", &mut package.state, render)
        }
        ResourceSpec::Download(download) => {
            render("url", &mut download.url)?;
            render("dest", &mut download.dest)?;
            render("sha256", &mut download.sha256)?;
            optional("owner", &mut download.owner, render)?;
            optional("group", &mut download.group, render)
        }
        ResourceSpec::Git(git) => {
            render("repo", &mut git.repo)?;
            render("dest", &mut git.dest)?;
            optional("version", &mut git.version, render)
        }
        ResourceSpec::Repository(repository) => {
            render("repository", &mut repository.name)?;
            optional("url", &mut repository.url, render)?;
            list("suites", &mut repository.suites, render)?;
            list("components", &mut repository.components, render)?;
            optional("key", &mut repository.key, render)?;
            optional("manager", &mut repository.manager, render)?;
            choice("state", &mut repository.state, render)
        }
        ResourceSpec::Service(service) => {
            render("service", &mut service.name)?;
            optional("manager", &mut service.manager, render)?;
            optional_choice("state", &mut service.state, render)?;
            optional_choice("enabled", &mut service.enabled, render)
        }
        ResourceSpec::Sysctl(sysctl) => {
            render("sysctl", &mut sysctl.name)?;
            optional("value", &mut sysctl.value, render)?;
            optional("file", &mut sysctl.file, render)?;
            choice("state", &mut sysctl.state, render)
        }
        ResourceSpec::Mount(mount) => {
            render("path", &mut mount.path)?;
            optional("src", &mut mount.src, render)?;
            optional("fstype", &mut mount.fstype, render)?;
            optional("opts", &mut mount.opts, render)?;
            optional("fstab", &mut mount.fstab, render)?;
            choice("state", &mut mount.state, render)
        }
        ResourceSpec::Unarchive(unarchive) => {
            render("dest", &mut unarchive.dest)?;
            optional("src", &mut unarchive.src, render)?;
            // Template syntax here only passes validation in a loop written as a list.
            optional("source", &mut unarchive.source, render)?;
            optional_choice("format", &mut unarchive.format, render)?;
            optional("creates", &mut unarchive.creates, render)
        }
        ResourceSpec::Tree(tree) => {
            render("path", &mut tree.path)?;
            // Template syntax here only passes validation in a loop written as a list.
            render("source", &mut tree.source)?;
            optional("owner", &mut tree.owner, render)?;
            optional("group", &mut tree.group, render)
        }
        ResourceSpec::User(user) => {
            render("user", &mut user.name)?;
            optional("group", &mut user.group, render)?;
            if let Some(groups) = &mut user.groups {
                list("groups", groups, render)?;
            }
            optional("home", &mut user.home, render)?;
            optional("shell", &mut user.shell, render)?;
            optional("comment", &mut user.comment, render)?;
            choice("state", &mut user.state, render)
        }
        ResourceSpec::Group(group) => {
            render("group", &mut group.name)?;
            choice("state", &mut group.state, render)
        }
        ResourceSpec::Echo(echo) => render("msg", &mut echo.msg),
        ResourceSpec::Assert(assert) => optional("msg", &mut assert.msg, render),
        ResourceSpec::Fail(fail) => render("msg", &mut fail.msg),
        ResourceSpec::Set(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mop_protocol::{CommandSpec, Facts, FileSpec};

    use super::*;
    use crate::template::Scope;

    fn scope() -> Scope {
        let facts = Facts::default();
        let mut scope = Scope::new(&facts);
        let serde_json::Value::Object(vars) = serde_json::json!({"dir": "/srv", "who": "www"})
        else {
            unreachable!("a JSON object literal")
        };
        scope.start_role(&vars, &facts);
        scope
    }

    #[test]
    fn renders_strings_and_keys_but_not_expressions() {
        let engine = Engine::new();
        let spec = ResourceSpec::File(FileSpec {
            path: "{{ dir }}/index".into(),
            content: Some("hi {{ who }}".into()),
            template: Some("t/{{ who }}.j2".into()),
            source: Some("files/{{ who }}".into()),
            owner: Some("{{ who }}".into()),
            group: None,
            mode: None,
            state: Default::default(),
        });
        let ResourceSpec::File(rendered) =
            render_spec(&engine, &spec, &scope().context()).expect("renders")
        else {
            panic!("type changed")
        };
        assert_eq!(rendered.path, "/srv/index");
        assert_eq!(rendered.content.as_deref(), Some("hi www"));
        assert_eq!(rendered.owner.as_deref(), Some("www"));
        assert_eq!(rendered.source.as_deref(), Some("files/www"));
        assert_eq!(rendered.template.as_deref(), Some("t/www.j2"));
    }

    /// The rendered fields of every type are exactly those the protocol's description marks
    /// as rendered before the run.
    #[test]
    fn visitor_renders_exactly_the_described_fields() {
        for kind in mop_protocol::RESOURCE_KINDS {
            let resource: mop_protocol::Resource =
                serde_json::from_value(mop_protocol::sample_resource_json(kind))
                    .expect("the sample deserializes");
            let mut spec = resource.spec;
            let mut visited = std::collections::BTreeSet::new();
            visit_template_fields(&mut spec, &mut |field: &str, _: &mut String| {
                let name = field.split(['[', '.']).next().unwrap_or(field);
                visited.insert(name.to_string());
                Ok(())
            })
            .expect("recording never fails");
            let described: std::collections::BTreeSet<String> = kind
                .fields
                .iter()
                .filter(|field| field.kind.is_rendered_before_run())
                .map(|field| field.name.to_string())
                .collect();
            assert_eq!(visited, described, "rendered fields of `{}`", kind.name);
        }
    }

    #[test]
    fn errors_name_the_field() {
        let engine = Engine::new();
        let command = ResourceSpec::Shell(CommandSpec {
            cmd: "echo {{ dir }}".into(),
            creates: None,
            removes: None,
            unless: None,
            onlyif: None,
            cwd: None,
            env: BTreeMap::from([("PATH_EXTRA".to_string(), "{{ nope }}".to_string())]),
            timeout: None,
            read_only: false,
        });
        let err = render_spec(&engine, &command, &scope().context()).expect_err("undefined");
        assert!(
            err.starts_with("field `env.PATH_EXTRA` line 1: undefined value"),
            "{err}"
        );
    }
}
