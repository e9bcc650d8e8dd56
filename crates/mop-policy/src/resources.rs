//! One `[[resources]]` or `[[handlers]]` table: deserialized straight into
//! `mop_protocol::Resource`, then checked for what serde cannot express (fields that exclude
//! each other, required-when-present fields, names, templates).

use std::ops::Range;

use mop_protocol::{
    resource_kind, resource_type_names, FieldKind, LoopSource, MountState, Presence, Resource,
    ResourceKind, ResourceSpec, DEFAULT_LOOP_VAR, LOOP_INDEX_VARS, RESOURCE_KINDS,
};

use mop_protocol::fetch_rules::{
    apt_word_problem, armored_key_problem, download_url_problem, git_repo_problem,
    git_version_problem, repository_name_problem, repository_url_problem, sha256_problem,
};

use crate::error::Origin;
use crate::fields::Reader;
use crate::model::ResourceDetail;
use crate::node::{Node, Table, Value};
use crate::suggest;
use crate::templates::{self, SiteKind, TemplateSite, RESERVED_NAMES};

/// Fields every resource type accepts (`type` aside), for hints.
pub(crate) fn common_field_names() -> impl Iterator<Item = &'static str> + Clone {
    mop_protocol::COMMON_FIELDS
        .iter()
        .map(|field| field.name)
        .filter(|name| *name != "type")
}

/// Whether the table is a resource or a handler (only the wording and numbering differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    Resource,
    Handler,
}

/// A resource that deserialized, with what the loader keeps about it.
#[derive(Debug, Clone)]
pub(crate) struct ParsedResource {
    pub resource: Resource,
    pub origin: Origin,
    pub detail: ResourceDetail,
}

/// The outcome for one table: the resource, or (when it did not deserialize) the `name` it
/// declares, so that handler lookups do not report a second, derived error.
pub(crate) enum Parsed {
    Ok(Box<ParsedResource>),
    Failed { name: Option<String> },
}

/// Deserializes and checks one resource table. `prefix` is the role context
/// (``role `web` ``) or empty for a roles file; `index` is 0-based within its list.
pub(crate) fn parse_resource(
    reader: &mut Reader<'_>,
    node: &Node,
    table: &Table,
    kind: ListKind,
    index: usize,
    prefix: &str,
) -> Parsed {
    let declared_name = match table.get("name").map(|entry| &entry.value.value) {
        Some(Value::String(name)) => Some(name.clone()),
        _ => None,
    };
    let label = provisional_label(table, kind, index);
    let context = join_context(prefix, &label);

    if !check_type(reader, node, table, &context) {
        return Parsed::Failed {
            name: declared_name,
        };
    }
    let Some((mut resource, dropped)) = deserialize_reporting_all(reader, node, table, &context)
    else {
        return Parsed::Failed {
            name: declared_name,
        };
    };

    default_block_marker(&mut resource);
    let label = final_label(&resource, kind, index);
    let context = join_context(prefix, &label);
    let origin = reader.source.origin(node.span.start);
    let checked_from = reader.errors.len();
    check_semantics(reader, node, table, &resource, kind, &context);
    // A check that names a dropped (already reported) field would only repeat that error or
    // complain that the field is missing.
    if !dropped.is_empty() {
        let found = reader.errors.split_off(checked_from);
        reader.errors.extend(found.into_iter().filter(|error| {
            !dropped
                .iter()
                .any(|key| error.message.contains(&format!("`{key}`")))
        }));
    }
    let sites = collect_sites(reader, table);
    for site in &sites {
        if let Some(message) = templates::syntax_error(site.kind, &site.text) {
            reader.errors.push(crate::error::PolicyError::at(
                &site.origin,
                &context,
                format!("field `{}`: {message}", site.field),
            ));
            continue;
        }
        // Resources are rendered on the hosts, by the agent's smaller template engine.
        let template = site.kind == templates::SiteKind::Template;
        for missing in crate::host_names::unavailable_names(&site.text, template) {
            reader.errors.push(
                crate::error::PolicyError::at(
                    &site.origin,
                    &context,
                    format!("field `{}`: {}", site.field, missing.message()),
                )
                .with_hint(Some(missing.hint())),
            );
        }
    }
    let value_origin = |key: &str| {
        table
            .get(key)
            .map(|entry| reader.source.origin(entry.value.span.start))
    };
    let (template_origin, source_origin) = match &resource.spec {
        ResourceSpec::File(_) => (value_origin("template"), value_origin("source")),
        ResourceSpec::Unarchive(_) | ResourceSpec::Tree(_) => (None, value_origin("source")),
        _ => (None, None),
    };
    let notify_origin = value_origin("notify");
    check_loop_items(reader, table, &resource, &context);
    let loop_names = match &resource.loop_items {
        Some(_) => std::iter::once(loop_var_name(&resource).to_string())
            .chain(LOOP_INDEX_VARS.iter().map(|name| name.to_string()))
            .collect(),
        None => Vec::new(),
    };
    let keys = |value: &Option<String>| match value.as_deref() {
        Some(text) if templates::is_templated(text) => {
            item_keys(&resource, text).unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let (template_keys, source_keys) = match &resource.spec {
        ResourceSpec::File(file) => (keys(&file.template), keys(&file.source)),
        ResourceSpec::Unarchive(unarchive) => (Vec::new(), keys(&unarchive.source)),
        ResourceSpec::Tree(tree) => (Vec::new(), keys(&Some(tree.source.clone()))),
        _ => (Vec::new(), Vec::new()),
    };
    let mut defines: Vec<String> = resource.register.iter().cloned().collect();
    if let ResourceSpec::Set(set) = &resource.spec {
        defines.extend(set.vars.keys().cloned());
    }
    Parsed::Ok(Box::new(ParsedResource {
        resource,
        origin,
        detail: ResourceDetail {
            label,
            sites,
            template_origin,
            source_origin,
            notify_origin,
            defines,
            loop_names,
            template_keys,
            source_keys,
        },
    }))
}

/// A `block` without `marker` is marked with its `name` (`# BEGIN mop NAME`), so that two
/// named blocks in one file do not take each other's place. A name with template syntax is
/// left out: `name` is never rendered, but `marker` is.
fn default_block_marker(resource: &mut Resource) {
    let ResourceSpec::Block(block) = &mut resource.spec else {
        return;
    };
    match (&block.marker, &resource.name) {
        (None, Some(name)) if !templates::is_templated(name) && !name.contains('\n') => {
            block.marker = Some(mop_protocol::BlockSpec::marker_for_name(name));
        }
        _ => {}
    }
}

/// Whitespace collapsed and long text cut, so a multi-line `msg` or `cmd` labels a resource
/// on one line.
fn one_line(text: &str) -> String {
    const LIMIT: usize = 48;
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= LIMIT {
        return collapsed;
    }
    let cut: String = collapsed.chars().take(LIMIT - 3).collect();
    format!("{}...", cut.trim_end())
}

pub(crate) fn join_context(prefix: &str, label: &str) -> String {
    if prefix.is_empty() {
        label.to_string()
    } else {
        format!("{prefix}: {label}")
    }
}

fn provisional_label(table: &Table, kind: ListKind, index: usize) -> String {
    let string = |key: &str| match table.get(key).map(|entry| &entry.value.value) {
        Some(Value::String(text)) => Some(text.clone()),
        _ => None,
    };
    if kind == ListKind::Handler {
        if let Some(name) = string("name") {
            return format!("handler `{name}`");
        }
    }
    let what = string("name").or_else(|| {
        let kind = string("type")?;
        // A mistyped `type` still gets the main argument any type would show.
        let described: Vec<&ResourceKind> = match resource_kind(&kind) {
            Some(described) => vec![described],
            None => RESOURCE_KINDS.iter().collect(),
        };
        let argument = described
            .iter()
            .filter_map(|described| described.field(described.main_field))
            .flat_map(|field| field.spellings())
            .find_map(string);
        Some(match argument {
            Some(argument) => format!("{kind} {argument}"),
            None => kind,
        })
    });
    numbered(kind, index, what)
}

fn final_label(resource: &Resource, kind: ListKind, index: usize) -> String {
    match (&resource.name, kind) {
        (Some(name), ListKind::Handler) => format!("handler `{name}`"),
        _ => numbered(kind, index, Some(resource.display_name())),
    }
}

fn numbered(kind: ListKind, index: usize, what: Option<String>) -> String {
    let noun = match kind {
        ListKind::Resource => "resource",
        ListKind::Handler => "handler",
    };
    match what
        .map(|what| one_line(&what))
        .filter(|what| !what.is_empty())
    {
        Some(what) => format!("{noun} #{} ({what})", index + 1),
        None => format!("{noun} #{}", index + 1),
    }
}

/// Checks `type` first: serde's own message for a bad tag names neither the field nor the
/// choices helpfully.
fn check_type(reader: &mut Reader<'_>, node: &Node, table: &Table, context: &str) -> bool {
    let types = resource_type_names();
    let Some(entry) = table.get("type") else {
        reader.error(
            node.span.start,
            context,
            "missing field `type`",
            Some(format!(
                "add `type = ...`, one of {}",
                suggest::quoted_list(types)
            )),
        );
        return false;
    };
    let Value::String(type_name) = &entry.value.value else {
        reader.error(
            entry.value.span.start,
            context,
            format!(
                "field `type` must be a string, found {}",
                entry.value.value.type_name()
            ),
            None,
        );
        return false;
    };
    if resource_kind(type_name).is_some() {
        return true;
    }
    let hint = suggest::did_you_mean(type_name, types.clone()).or_else(|| {
        Some(format!(
            "resource types are {}",
            suggest::quoted_list(types)
        ))
    });
    reader.error(
        entry.value.span.start,
        context,
        format!("unknown resource type `{type_name}`"),
        hint,
    );
    false
}

/// Deserializes the table into a `Resource`. serde stops at the first problem, so after each
/// one the offending key is dropped and deserialization retried, until it succeeds or an
/// error cannot be pinned on one key (then it points at the table). Returns the resource
/// without the broken keys, and those keys, when the rest deserializes (the errors are
/// already reported, so the policy stays invalid).
fn deserialize_reporting_all(
    reader: &mut Reader<'_>,
    node: &Node,
    table: &Table,
    context: &str,
) -> Option<(Resource, Vec<String>)> {
    let mut remaining = table.to_json();
    let mut dropped = Vec::new();
    // Each round removes a key, so this ends.
    loop {
        let message = match serde_json::from_value::<Resource>(serde_json::Value::Object(
            remaining.clone(),
        )) {
            // With broken fields dropped (already reported) the rest still gets every other
            // check: one run shows a bad `mode` and a relative `path` together.
            Ok(resource) => return Some((resource, dropped)),
            Err(error) => error.to_string(),
        };
        if let Some(field) = unknown_field_in(&message) {
            let span = table
                .get(&field)
                .map_or(node.span.start, |entry| entry.key_span.start);
            let listed = listed_fields(&message);
            let mut candidates: Vec<&str> = listed.iter().map(String::as_str).collect();
            candidates.extend(common_field_names().map(|name| -> &str { name }));
            let hint = suggest::did_you_mean(&field, candidates.iter().copied()).or_else(|| {
                Some(format!(
                    "every resource also accepts {}",
                    suggest::quoted_list(common_field_names())
                ))
            });
            reader.error(span, context, message, hint);
            // Without the key the next round reports the next problem.
            remaining.remove(&field)?;
            dropped.push(field);
            continue;
        }
        match culprit(&remaining, &message) {
            Some(key) => {
                let span = table
                    .get(&key)
                    .map_or(node.span.start, |entry| entry.value.span.start);
                let hint = unknown_variant_in(&message).and_then(|variant| {
                    suggest::did_you_mean(
                        &variant,
                        listed_fields(&message).iter().map(String::as_str),
                    )
                });
                reader.error(span, context, format!("field `{key}`: {message}"), hint);
                remaining.remove(&key);
                dropped.push(key);
            }
            None => {
                let hint = missing_main_field_hint(&message, table);
                reader.error(node.span.start, context, message, hint);
                return None;
            }
        }
    }
}

/// The key serde was reading when it failed with `message`. serde's order of reading is
/// not the table's (flattened and tagged content is visited in its own order), so each key
/// is tried alone with the type tag: a bad value fails the same way by itself, a good one
/// fails only for missing fields or not at all.
fn culprit(fields: &serde_json::Map<String, serde_json::Value>, message: &str) -> Option<String> {
    if message.starts_with("missing field") {
        return None;
    }
    let tag = fields.get("type")?.clone();
    fields
        .iter()
        .filter(|(key, _)| *key != "type")
        .find_map(|(key, value)| {
            let mut alone = serde_json::Map::new();
            alone.insert("type".to_string(), tag.clone());
            alone.insert(key.clone(), value.clone());
            match serde_json::from_value::<Resource>(serde_json::Value::Object(alone)) {
                Err(error) if error.to_string() == message => Some(key.clone()),
                _ => None,
            }
        })
}

fn unknown_variant_in(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown variant `")
        .or_else(|| message.strip_prefix("invalid value `"))?;
    rest.split('`').next().map(str::to_string)
}

/// Ansible and OpsMop users write `name = "nginx"` for a package; here `name` is the label
/// every resource has, and the package goes in its own field.
fn missing_main_field_hint(message: &str, table: &Table) -> Option<String> {
    let field = message.strip_prefix("missing field `")?.strip_suffix('`')?;
    if !["packages", "service", "user", "group"].contains(&field) || table.get("name").is_none() {
        return None;
    }
    Some(format!(
        "`name` is the label every resource has; put the {} in `{field} = ...`",
        if field == "packages" {
            "package names"
        } else {
            field
        }
    ))
}

fn unknown_field_in(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next().map(str::to_string)
}

fn listed_fields(message: &str) -> Vec<String> {
    let Some((_, list)) = message
        .split_once("expected one of ")
        .or_else(|| message.split_once("expected "))
    else {
        return Vec::new();
    };
    list.split(", ")
        .map(|item| item.trim_matches('`').to_string())
        .collect()
}

fn value_span<'t>(table: &'t Table, keys: &[&str]) -> Option<&'t Range<usize>> {
    keys.iter()
        .find_map(|key| table.get(key).map(|entry| &entry.value.span))
}

/// Rejects a `mode` written as a decimal (or hexadecimal, binary) TOML integer. TOML reads
/// `mode = 644` as six hundred forty-four, which is `0o1204` (`--w----r-T`): operators mean
/// `0o644`, and once parsed the two cannot be told apart, so this looks at the source text.
fn check_mode_literal(reader: &mut Reader<'_>, table: &Table, context: &str) {
    let Some(entry) = table.get("mode") else {
        return;
    };
    let Value::Integer(number) = entry.value.value else {
        return;
    };
    let written = reader
        .source
        .text
        .get(entry.value.span.clone())
        .unwrap_or_default()
        .trim();
    if written.trim_start_matches('+').starts_with("0o") {
        return;
    }
    let digits = written.trim_start_matches('+').replace('_', "");
    let hint = if !digits.is_empty() && digits.chars().all(|digit| ('0'..='7').contains(&digit)) {
        format!("write the mode as a string, `mode = \"{digits:0>4}\"`, or as a TOML octal integer, `mode = 0o{digits}`")
    } else {
        "write the mode as a string of octal digits such as `mode = \"0644\"`, or as a TOML octal integer such as `mode = 0o644`".to_string()
    };
    reader.error(
        entry.value.span.start,
        context,
        format!(
            "field `mode` is the integer `{written}`, which TOML reads as {number} (octal {number:o}), not as octal"
        ),
        Some(hint),
    );
}

/// Checks serde cannot: combinations, required-when-present fields, names.
fn check_semantics(
    reader: &mut Reader<'_>,
    node: &Node,
    table: &Table,
    resource: &Resource,
    kind: ListKind,
    context: &str,
) {
    let at = |keys: &[&str]| value_span(table, keys).map_or(node.span.start, |span| span.start);

    if kind == ListKind::Handler && resource.name.is_none() {
        reader.error(
            node.span.start,
            context,
            "handler has no `name`",
            Some("`notify` finds handlers by name: add `name = \"...\"`".to_string()),
        );
    }
    if let Some(register) = &resource.register {
        if let Some(problem) = variable_name_problem(register) {
            reader.error(
                at(&["register"]),
                context,
                format!("field `register`: {problem}"),
                None,
            );
        }
    }
    for handler in &resource.notify {
        if handler.trim().is_empty() {
            reader.error(
                at(&["notify"]),
                context,
                "field `notify` names an empty handler",
                None,
            );
        }
    }

    check_mode_literal(reader, table, context);
    check_loop_fields(reader, table, resource, at(&["loop"]), context);

    match &resource.spec {
        ResourceSpec::File(file) => {
            check_absolute_path(reader, &file.path, at(&["path"]), context);
            for (key, value) in [("template", &file.template), ("source", &file.source)] {
                let Some(text) = value
                    .as_deref()
                    .filter(|text| templates::is_templated(text))
                else {
                    continue;
                };
                // In a loop written as a list the controller renders it per item.
                if let Err(problem) = item_keys(resource, text) {
                    reader.error(
                        at(&[key]),
                        context,
                        format!("field `{key}` cannot contain template syntax{problem}"),
                        Some(format!(
                            "`{key}` names a file on the controller, sent before the host renders anything: write a fixed path, or loop over a list and read only the item (`\"files/{{{{ item }}}}.conf\"`)"
                        )),
                    );
                }
            }
            let given: Vec<&str> = [
                ("content", file.content.is_some()),
                ("template", file.template.is_some()),
                ("source", file.source.is_some()),
            ]
            .iter()
            .filter(|(_, set)| *set)
            .map(|(key, _)| *key)
            .collect();
            if file.state.literal() == Some(Presence::Absent) {
                for key in &given {
                    reader.error(
                        at(&[key]),
                        context,
                        format!("field `{key}` cannot be used with `state = \"absent\"`"),
                        Some(
                            "an absent file has no content: remove the field or the `state`"
                                .to_string(),
                        ),
                    );
                }
            } else if given.len() > 1 {
                reader.error(
                    at(&[given[1]]),
                    context,
                    format!(
                        "fields {} cannot be used together",
                        suggest::quoted_list(given.iter().copied())
                    ),
                    Some("a file takes its content from exactly one of `content`, `template` or `source`".to_string()),
                );
            }
        }
        ResourceSpec::Directory(directory) => {
            check_absolute_path(reader, &directory.path, at(&["path"]), context);
        }
        ResourceSpec::Link(link) => {
            check_absolute_path(reader, &link.path, at(&["path"]), context);
            if link.state.literal() == Some(Presence::Present) && link.target.is_none() {
                reader.error(
                    node.span.start,
                    context,
                    "missing field `target`: a link that is present needs a target",
                    Some(
                        "add `target = \"...\"`, or `state = \"absent\"` to remove the link"
                            .to_string(),
                    ),
                );
            }
        }
        ResourceSpec::Line(line) => {
            check_absolute_path(reader, &line.path, at(&["path"]), context);
            if line.state.literal() == Some(Presence::Present) && line.line.is_none() {
                reader.error(
                    node.span.start,
                    context,
                    "missing field `line`: a line that is present needs `line`",
                    None,
                );
            }
            if line.line.as_deref().is_some_and(|text| text.contains('\n')) {
                reader.error(
                    at(&["line"]),
                    context,
                    "field `line` must be a single line (it contains a newline)",
                    Some(
                        "use one `line` resource per line, or a `file` resource for whole content"
                            .to_string(),
                    ),
                );
            }
            if line.state.literal() == Some(Presence::Absent)
                && line.line.is_none()
                && line.regexp.is_none()
            {
                reader.error(
                    node.span.start,
                    context,
                    "an absent line needs `line` or `regexp` to know what to remove",
                    None,
                );
            }
            if let Some(pattern) = &line.regexp {
                if !templates::is_templated(pattern) {
                    // The agent matches with regex-lite: check with the same engine.
                    if let Err(error) = regex_lite::Regex::new(pattern) {
                        reader.error(
                            at(&["regexp"]),
                            context,
                            format!(
                                "field `regexp`: invalid regular expression: {}",
                                first_line(&error.to_string())
                            ),
                            None,
                        );
                    }
                }
            }
        }
        ResourceSpec::Block(block) => {
            check_absolute_path(reader, &block.path, at(&["path"]), context);
            if block.state.literal() == Some(Presence::Present) && block.block.is_none() {
                reader.error(
                    node.span.start,
                    context,
                    "missing field `block`: a block that is present needs its lines",
                    Some("add `block = \"\"\"...\"\"\"`, or `state = \"absent\"` to remove the block".to_string()),
                );
            }
            if let Some(marker) = block
                .marker
                .as_deref()
                .filter(|marker| !templates::is_templated(marker))
            {
                if !marker.contains("{mark}") || marker.contains('\n') {
                    reader.error(
                        at(&["marker"]),
                        context,
                        format!("field `marker` must be one line containing `{{mark}}`, found `{marker}`"),
                        Some("`{mark}` is replaced by BEGIN and END, e.g. `marker = \"# {mark} mop php tuning\"`".to_string()),
                    );
                }
            }
            if block.insert_after.is_some() && block.insert_before.is_some() {
                reader.error(
                    at(&["insert_before"]),
                    context,
                    "fields `insert_after` and `insert_before` cannot be used together",
                    None,
                );
            }
            for (key, value) in [
                ("insert_after", &block.insert_after),
                ("insert_before", &block.insert_before),
            ] {
                check_regex(
                    reader,
                    key,
                    value.as_deref(),
                    &["EOF", "BOF"],
                    at(&[key]),
                    context,
                );
            }
        }
        ResourceSpec::Cron(cron) => {
            if cron.name.trim().is_empty() || cron.name.contains(['\n', '\r']) {
                reader.error(
                    at(&["cron"]),
                    context,
                    "field `cron` (the job's name) must be a non-empty single line",
                    None,
                );
            }
            if let Some(user) = cron.user.as_deref() {
                check_account_name(reader, "user", user, at(&["user"]), context);
            }
            if cron.state.literal() == Some(Presence::Present) && cron.command.is_none() {
                reader.error(
                    node.span.start,
                    context,
                    "missing field `command`: a cron job that is present needs a command",
                    None,
                );
            }
            if cron
                .command
                .as_deref()
                .is_some_and(|command| command.contains(['\n', '\r']))
            {
                reader.error(
                    at(&["command"]),
                    context,
                    "field `command` must be a single line",
                    Some("put several commands in a script and run the script".to_string()),
                );
            }
            let schedule_fields: Vec<&str> = mop_protocol::CRON_FIELDS
                .iter()
                .map(|field| field.name)
                .filter(|name| table.get(name).is_some())
                .collect();
            match cron.special.as_deref() {
                Some(special) => {
                    if !schedule_fields.is_empty() {
                        reader.error(
                            at(&[schedule_fields[0]]),
                            context,
                            format!(
                                "field `special` cannot be used with {}",
                                suggest::quoted_list(schedule_fields.iter().copied())
                            ),
                            Some(
                                "`special` (such as `@daily`) replaces the five schedule fields"
                                    .to_string(),
                            ),
                        );
                    }
                    if !templates::is_templated(special) {
                        if let Some(problem) = mop_protocol::cron_special_problem(special) {
                            let (message, hint) = split_problem(&problem);
                            reader.error(
                                at(&["special"]),
                                context,
                                format!("field `special`: {message}"),
                                hint,
                            );
                        }
                    }
                }
                None => {
                    for field in mop_protocol::CRON_FIELDS {
                        let Some(Value::String(text)) =
                            table.get(field.name).map(|entry| &entry.value.value)
                        else {
                            continue;
                        };
                        if templates::is_templated(text) {
                            continue;
                        }
                        if let Some(problem) = field.problem(text) {
                            let (message, hint) = split_problem(&problem);
                            reader.error(
                                at(&[field.name]),
                                context,
                                format!("field `{}`: {message}", field.name),
                                hint,
                            );
                        }
                    }
                }
            }
            for name in cron.env.keys() {
                if let Some(problem) = mop_protocol::cron_env_name_problem(name) {
                    reader.error(
                        at(&["env"]),
                        context,
                        format!("field `env`: {problem}"),
                        None,
                    );
                }
            }
        }
        ResourceSpec::AuthorizedKey(key) => {
            check_account_name(reader, "user", &key.user, at(&["user"]), context);
            if key.keys.is_empty() {
                reader.error(at(&["keys", "key"]), context, "field `keys` is empty", None);
            }
            for (index, line) in key.keys.iter().enumerate() {
                if templates::is_templated(line) {
                    continue;
                }
                if let Err(problem) = mop_protocol::parse_authorized_key(line) {
                    let field = if table.get("key").is_some() {
                        "key".to_string()
                    } else {
                        format!("keys[{index}]")
                    };
                    reader.error(
                        at(&["keys", "key"]),
                        context,
                        format!("field `{field}`: {problem}"),
                        Some(
                            "write a whole line of a `.pub` file: `ssh-ed25519 AAAA... comment`"
                                .to_string(),
                        ),
                    );
                }
            }
            if key.exclusive && key.state.literal() == Some(Presence::Absent) {
                reader.error(
                    at(&["exclusive"]),
                    context,
                    "field `exclusive` cannot be used with `state = \"absent\"`",
                    Some("`exclusive` removes every key not listed; it only means something for present keys".to_string()),
                );
            }
        }
        ResourceSpec::Shell(command) | ResourceSpec::Command(command) => {
            if command.cmd.trim().is_empty() {
                reader.error(at(&["cmd"]), context, "field `cmd` is empty", None);
            }
            if command.timeout == Some(0) {
                reader.error(
                    at(&["timeout"]),
                    context,
                    "field `timeout` must be at least 1 second",
                    Some("omit `timeout` to let the command run as long as it needs".to_string()),
                );
            }
        }
        ResourceSpec::Package(_) => {
            let names = resource.spec.main_argument();
            if names.split(',').any(|name| name.trim().is_empty()) {
                reader.error(
                    at(&["packages", "package", "name"]),
                    context,
                    "package names must not be empty",
                    None,
                );
            }
        }
        ResourceSpec::Download(download) => {
            check_absolute_dest(reader, &download.dest, at(&["dest"]), context);
            check_rule(
                reader,
                "url",
                &download.url,
                at(&["url"]),
                context,
                download_url_problem,
                "the host fetches it with curl or wget: write `https://...`",
            );
            check_rule(
                reader,
                "sha256",
                &download.sha256,
                at(&["sha256"]),
                context,
                sha256_problem,
                "compute it with `sha256sum FILE` on a copy you trust",
            );
        }
        ResourceSpec::Git(git) => {
            check_absolute_dest(reader, &git.dest, at(&["dest"]), context);
            check_rule(
                reader,
                "repo",
                &git.repo,
                at(&["repo"]),
                context,
                git_repo_problem,
                "write a URL (`https://...`, `ssh://...`, `file:///...`) or an absolute path",
            );
            if let Some(version) = &git.version {
                check_rule(
                    reader,
                    "version",
                    version,
                    at(&["version"]),
                    context,
                    git_version_problem,
                    "write a branch, a tag or a commit id",
                );
            }
        }
        ResourceSpec::Repository(repository) => {
            check_rule(
                reader,
                "repository",
                &repository.name,
                at(&["repository"]),
                context,
                repository_name_problem,
                "the name becomes a file name, e.g. `nginx-stable`",
            );
            if let Some(url) = &repository.url {
                check_rule(
                    reader,
                    "url",
                    url,
                    at(&["url"]),
                    context,
                    repository_url_problem,
                    "write the repository's base URL, e.g. `https://deb.example.org/debian`",
                );
            }
            for (key, words) in [
                ("suites", &repository.suites),
                ("components", &repository.components),
            ] {
                for word in words {
                    check_rule(
                        reader,
                        key,
                        word,
                        at(&[key]),
                        context,
                        apt_word_problem,
                        "give several as a list: `[\"main\", \"contrib\"]`",
                    );
                }
            }
            if let Some(key) = &repository.key {
                check_rule(
                    reader,
                    "key",
                    key,
                    at(&["key"]),
                    context,
                    armored_key_problem,
                    "export it with `gpg --armor --export KEYID`",
                );
            }
            let absent = repository.state.literal() == Some(Presence::Absent);
            if !absent && repository.url.is_none() && !templates::is_templated(&repository.name) {
                reader.error(
                    node.span.start,
                    context,
                    "missing field `url`: a repository that is present needs its URL",
                    Some("add `url = \"https://...\"`, or `state = \"absent\"` to remove the repository".to_string()),
                );
            }
            let apt = repository.manager.as_deref() == Some("apt");
            if !absent && apt && repository.suites.is_empty() {
                reader.error(
                    node.span.start,
                    context,
                    "missing field `suites`: an apt repository needs its suites",
                    Some("for example `suites = [\"bookworm\"]`, or `suites = \"./\"` for a flat repository".to_string()),
                );
            }
        }
        ResourceSpec::Service(service) => {
            if service.state.is_none() && service.enabled.is_none() {
                reader.error(
                    node.span.start,
                    context,
                    "a service needs `state`, `enabled` or both",
                    Some("for example `state = \"started\"` and `enabled = true`".to_string()),
                );
            }
        }
        ResourceSpec::Sysctl(sysctl) => {
            let name = &sysctl.name;
            if !templates::is_templated(name) && !sysctl_name_is_valid(name) {
                reader.error(
                    at(&["sysctl"]),
                    context,
                    format!("field `sysctl`: invalid kernel parameter name `{name}`"),
                    Some("write it as sysctl does, such as `net.ipv4.ip_forward`".to_string()),
                );
            }
            if sysctl.state.literal() == Some(Presence::Present) && sysctl.value.is_none() {
                reader.error(
                    node.span.start,
                    context,
                    "missing field `value`: a sysctl that is present needs a value",
                    Some(
                        "add `value = \"1\"`, or `state = \"absent\"` to remove its line"
                            .to_string(),
                    ),
                );
            }
            if sysctl
                .value
                .as_deref()
                .is_some_and(|value| value.contains(['\n', '\r']))
            {
                reader.error(
                    at(&["value"]),
                    context,
                    "field `value` must be a single line",
                    None,
                );
            }
            if let Some(file) = &sysctl.file {
                check_absolute_field(reader, "file", file, at(&["file"]), context);
            }
        }
        ResourceSpec::Mount(mount) => {
            check_absolute_path(reader, &mount.path, at(&["path"]), context);
            if let Some(fstab) = &mount.fstab {
                check_absolute_field(reader, "fstab", fstab, at(&["fstab"]), context);
            }
            let needs_entry = matches!(
                mount.state.literal(),
                Some(MountState::Mounted | MountState::Present)
            );
            for (key, value) in [("src", &mount.src), ("fstype", &mount.fstype)] {
                if needs_entry && value.is_none() {
                    reader.error(
                        node.span.start,
                        context,
                        format!("missing field `{key}`: a mounted or present filesystem needs `src` and `fstype`"),
                        Some("for example `src = \"tmpfs\"` and `fstype = \"tmpfs\"`".to_string()),
                    );
                }
            }
            for (key, value) in [("fstype", &mount.fstype), ("opts", &mount.opts)] {
                let Some(value) = value
                    .as_deref()
                    .filter(|value| !templates::is_templated(value))
                else {
                    continue;
                };
                if value.is_empty()
                    || value.starts_with('-')
                    || value.chars().any(char::is_whitespace)
                {
                    reader.error(
                        at(&[key]),
                        context,
                        format!("field `{key}`: invalid value `{value}`: expected a word without spaces, not starting with `-`"),
                        Some("separate mount options with commas: `opts = \"noatime,nodev\"`".to_string()),
                    );
                }
            }
        }
        ResourceSpec::Unarchive(unarchive) => {
            if !templates::is_templated(&unarchive.dest) && !unarchive.dest.starts_with('/') {
                check_absolute_field(reader, "dest", &unarchive.dest, at(&["dest"]), context);
            }
            match (&unarchive.src, &unarchive.source) {
                (Some(_), Some(_)) => reader.error(
                    at(&["source"]),
                    context,
                    "fields `src` and `source` cannot be used together",
                    Some("`src` is an archive on the host, `source` one the controller serves: keep one".to_string()),
                ),
                (None, None) => reader.error(
                    node.span.start,
                    context,
                    "missing field `src` or `source`: which archive to unpack",
                    Some("`src = \"/path/on/host.tar.gz\"` or `source = \"files/app.tar.gz\"`".to_string()),
                ),
                (Some(src), None) => {
                    check_absolute_field(reader, "src", src, at(&["src"]), context);
                }
                (None, Some(source)) if templates::is_templated(source) => {
                    if let Err(problem) = item_keys(resource, source) {
                        reader.error(
                            at(&["source"]),
                            context,
                            format!("field `source` cannot contain template syntax{problem}"),
                            Some("`source` names a file on the controller, sent before the host renders anything: write a fixed path, or loop over a list and read only the item".to_string()),
                        );
                    }
                }
                (None, Some(_)) => {}
            }
            if let Some(creates) = &unarchive.creates {
                check_absolute_field(reader, "creates", creates, at(&["creates"]), context);
            }
        }
        ResourceSpec::Tree(tree) => {
            check_absolute_path(reader, &tree.path, at(&["path"]), context);
            if tree.delete && tree.path.trim_end_matches('/').is_empty() {
                reader.error(
                    at(&["delete"]),
                    context,
                    "`delete = true` with `path = \"/\"` would remove everything on the host that is not in the tree",
                    Some("copy the tree into a directory of its own".to_string()),
                );
            }
            if templates::is_templated(&tree.source) {
                if let Err(problem) = item_keys(resource, &tree.source) {
                    reader.error(
                        at(&["source"]),
                        context,
                        format!("field `source` cannot contain template syntax{problem}"),
                        Some("`source` names a directory on the controller, listed before the host renders anything: write a fixed path, or loop over a list and read only the item".to_string()),
                    );
                }
            }
            for pattern in &tree.exclude {
                let problem = if templates::is_templated(pattern) {
                    Some("contains template syntax: the controller applies `exclude` before any host renders anything")
                } else {
                    mop_protocol::tree::exclude_pattern_problem(pattern)
                };
                if let Some(problem) = problem {
                    reader.error(
                        at(&["exclude"]),
                        context,
                        format!("field `exclude`: pattern `{pattern}` {problem}"),
                        Some("patterns are globs relative to the tree's top: `*.tmp`, `cache/`, `img/**/*.raw`".to_string()),
                    );
                }
            }
        }
        ResourceSpec::User(user) => {
            let name = resource.spec.main_argument();
            check_account_name(reader, "user", &name, at(&["user", "name"]), context);
            if let Some(group) = &user.group {
                check_account_name(reader, "group", group, at(&["group"]), context);
            }
            for group in user.groups.iter().flatten() {
                check_account_name(reader, "group", group, at(&["groups"]), context);
            }
        }
        ResourceSpec::Group(_) => {
            let name = resource.spec.main_argument();
            check_account_name(reader, "group", &name, at(&["group", "name"]), context);
        }
        ResourceSpec::Set(set) => {
            if set.vars.is_empty() {
                reader.error(
                    at(&["vars"]),
                    context,
                    "field `vars` is empty: nothing to set",
                    None,
                );
            }
            let vars_table = match table.get("vars").map(|entry| &entry.value.value) {
                Some(Value::Table(vars)) => Some(vars),
                _ => None,
            };
            for name in set.vars.keys() {
                if let Some(problem) = variable_name_problem(name) {
                    let span = vars_table
                        .and_then(|vars| vars.get(name))
                        .map_or(at(&["vars"]), |entry| entry.key_span.start);
                    reader.error(span, context, format!("field `vars`: {problem}"), None);
                }
            }
        }
        ResourceSpec::Assert(assert) => {
            if assert.that.is_empty() {
                reader.error(
                    at(&["that"]),
                    context,
                    "field `that` has no expressions",
                    None,
                );
            }
        }
        ResourceSpec::Echo(_) | ResourceSpec::Fail(_) => {}
    }

    // Literal choices serde cannot check because the agent renders the field first.
    let kind = resource.spec.kind();
    for field in kind.fields {
        let FieldKind::TemplateChoice(choices) = field.kind else {
            continue;
        };
        for key in field.spellings() {
            if let Some(Value::String(value)) = table.get(key).map(|entry| &entry.value.value) {
                check_choice(reader, key, value, choices, at(&[key]), context);
            }
        }
    }
}

/// The name a looped resource's item has.
fn loop_var_name(resource: &Resource) -> &str {
    resource.loop_var.as_deref().unwrap_or(DEFAULT_LOOP_VAR)
}

/// `loop` is a list or one `{{ expression }}`; `loop_var` a variable name; `loop_var` and
/// `label` only make sense with `loop`.
fn check_loop_fields(
    reader: &mut Reader<'_>,
    table: &Table,
    resource: &Resource,
    loop_offset: usize,
    context: &str,
) {
    let at = |key: &str| {
        table
            .get(key)
            .map_or(loop_offset, |entry| entry.value.span.start)
    };
    if let Some(LoopSource::Expression(text)) = &resource.loop_items {
        let trimmed = text.trim();
        let one_expression = trimmed.starts_with("{{")
            && trimmed.ends_with("}}")
            && trimmed.matches("{{").count() == 1;
        if !one_expression {
            reader.error(
                loop_offset,
                context,
                format!("field `loop` is the string `{}`, expected a list or one `{{{{ expression }}}}`", one_line(text)),
                Some("write the items as a list, `loop = [\"a\", \"b\"]`, or an expression giving a list or a map, `loop = \"{{ users }}\"`".to_string()),
            );
        }
    }
    if resource.loop_items.is_none() {
        for key in ["loop_var", "label"] {
            if table.get(key).is_some() {
                reader.error(
                    at(key),
                    context,
                    format!("field `{key}` needs `loop`"),
                    Some(format!(
                        "`{key}` names the item of a looped resource: add `loop = [...]` or remove `{key}`"
                    )),
                );
            }
        }
    }
    if let Some(name) = &resource.loop_var {
        let problem = variable_name_problem(name).or_else(|| {
            LOOP_INDEX_VARS
                .contains(&name.as_str())
                .then(|| format!("`{name}` is reserved: loops provide it as the item's position"))
        });
        if let Some(problem) = problem {
            reader.error(
                at("loop_var"),
                context,
                format!("field `loop_var`: {problem}"),
                None,
            );
        }
    }
}

/// `text` rendered for every item of the resource's loop written as a list, reading nothing
/// but the loop's names; `Err` says why it cannot be (no such loop, or it reads more).
fn item_keys(resource: &Resource, text: &str) -> Result<Vec<String>, &'static str> {
    let Some(LoopSource::Items(items)) = &resource.loop_items else {
        return Err(" outside a loop written as a list");
    };
    // Over the limits minijinja's parser could overflow the stack; the syntax check reports it.
    if crate::limits::check_template(text).is_err() {
        return Ok(Vec::new());
    }
    let env = item_environment();
    items
        .iter()
        .enumerate()
        .map(|(position, item)| {
            env.render_str(text, item_context(resource, position, item))
                .map_err(|_| " other than the loop's item and index")
        })
        .collect()
}

/// The environment for controller-side item rendering: strict, so that reading anything
/// but the item fails.
fn item_environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}

fn item_context(
    resource: &Resource,
    position: usize,
    item: &serde_json::Value,
) -> minijinja::Value {
    minijinja::context! {
        loop_index => position + 1,
        loop_index0 => position,
        ..minijinja::Value::from_iter([(loop_var_name(resource), minijinja::Value::from_serialize(item))])
    }
}

/// For a loop written in the policy, renders each choice field for each item (when it only
/// reads the loop's own names) and checks the result as a literal would be: a bad item is
/// found before any host is contacted.
fn check_loop_items(reader: &mut Reader<'_>, table: &Table, resource: &Resource, context: &str) {
    let Some(LoopSource::Items(items)) = &resource.loop_items else {
        return;
    };
    let env = item_environment();
    for field in resource.spec.kind().fields {
        let FieldKind::TemplateChoice(choices) = field.kind else {
            continue;
        };
        for key in field.spellings() {
            let Some(entry) = table.get(key) else {
                continue;
            };
            let Value::String(text) = &entry.value.value else {
                continue;
            };
            // Over the limits: never compiled here, the syntax check reports it.
            if !templates::is_templated(text) || crate::limits::check_template(text).is_err() {
                continue;
            }
            for (position, item) in items.iter().enumerate() {
                // Reading anything but the item fails here: the host checks those.
                let Ok(rendered) = env.render_str(text, item_context(resource, position, item))
                else {
                    continue;
                };
                let rendered = rendered.trim();
                if !choices.contains(&rendered) {
                    let offset = entry.value.span.start;
                    let mut message = mop_protocol::choice_problem(key, rendered, choices);
                    message.push_str(&format!(" (loop item #{})", position + 1));
                    let hint = suggest::did_you_mean(rendered, choices.iter().copied());
                    reader.error(offset, context, message, hint);
                }
            }
        }
    }
}

/// A message and its `hint:` line, as the shared checks in `mop-protocol` return them.
fn split_problem(problem: &str) -> (String, Option<String>) {
    match problem.split_once("\nhint: ") {
        Some((message, hint)) => (message.to_string(), Some(hint.to_string())),
        None => (problem.to_string(), None),
    }
}

/// Checks a regular expression field with the agent's engine, unless it is templated or one
/// of the `keywords` the field also accepts.
fn check_regex(
    reader: &mut Reader<'_>,
    key: &str,
    pattern: Option<&str>,
    keywords: &[&str],
    offset: usize,
    context: &str,
) {
    let Some(pattern) = pattern else {
        return;
    };
    if templates::is_templated(pattern) || keywords.contains(&pattern) {
        return;
    }
    if let Err(error) = regex_lite::Regex::new(pattern) {
        reader.error(
            offset,
            context,
            format!(
                "field `{key}`: invalid regular expression: {}",
                first_line(&error.to_string())
            ),
            None,
        );
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

fn check_absolute_path(reader: &mut Reader<'_>, path: &str, offset: usize, context: &str) {
    check_absolute_field(reader, "path", path, offset, context);
}

fn check_absolute_field(
    reader: &mut Reader<'_>,
    key: &str,
    path: &str,
    offset: usize,
    context: &str,
) {
    if !templates::is_templated(path) && !path.starts_with('/') {
        reader.error(
            offset,
            context,
            format!("field `{key}` must be an absolute path, found `{path}`"),
            None,
        );
    }
}

fn check_absolute_dest(reader: &mut Reader<'_>, dest: &str, offset: usize, context: &str) {
    check_absolute_field(reader, "dest", dest, offset, context);
}

/// Checks a literal value against one of the grammars the agent applies to the rendered
/// value (`mop_protocol::fetch_rules`), with the same message.
fn check_rule(
    reader: &mut Reader<'_>,
    key: &str,
    value: &str,
    offset: usize,
    context: &str,
    problem: fn(&str) -> Option<String>,
    hint: &str,
) {
    if templates::is_templated(value) {
        return;
    }
    if let Some(problem) = problem(value.trim()) {
        reader.error(
            offset,
            context,
            format!("field `{key}`: {problem}"),
            Some(hint.to_string()),
        );
    }
}

/// The agent's rule (`mop-agent` `resources/sysctl.rs`): `a.b.c` or `a/b/c`, plain names.
fn sysctl_name_is_valid(name: &str) -> bool {
    let separator = if name.contains('/') { '/' } else { '.' };
    !name.is_empty()
        && name.split(separator).all(|component| {
            !component.is_empty()
                && component != "."
                && component != ".."
                && component
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"_-.:@+".contains(&byte))
        })
}

fn check_choice(
    reader: &mut Reader<'_>,
    key: &str,
    value: &str,
    choices: &[&str],
    offset: usize,
    context: &str,
) {
    if templates::is_templated(value) || choices.contains(&value) {
        return;
    }
    let hint = suggest::did_you_mean(value, choices.iter().copied());
    reader.error(
        offset,
        context,
        // The agent says the same of a rendered value.
        mop_protocol::choice_problem(key, value, choices),
        hint,
    );
}

/// User and group names as `useradd` accepts them portably: `[a-z_][a-z0-9_-]*[$]?`, at
/// most 32 characters.
pub(crate) fn account_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty");
    }
    if name.len() > 32 {
        return Some("is longer than 32 characters");
    }
    let body = name.strip_suffix('$').unwrap_or(name);
    let mut chars = body.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if first_ok && rest_ok {
        None
    } else {
        Some("must match `[a-z_][a-z0-9_-]*[$]?`")
    }
}

fn check_account_name(
    reader: &mut Reader<'_>,
    what: &str,
    name: &str,
    offset: usize,
    context: &str,
) {
    if templates::is_templated(name) {
        return;
    }
    if let Some(problem) = account_name_problem(name) {
        reader.error(
            offset,
            context,
            format!("invalid {what} name `{name}`: {problem}"),
            None,
        );
    }
}

/// Why `name` cannot be a variable (registered, set), if it cannot.
pub(crate) fn variable_name_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Some(format!(
            "`{name}` is not a valid variable name (letters, digits and `_`, not starting with a digit)"
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Some(format!(
            "`{name}` is reserved: mop provides it to every template"
        ));
    }
    None
}

/// Every templated string of the table, with its position and how it is compiled, as the
/// resource type's description says.
fn collect_sites(reader: &Reader<'_>, table: &Table) -> Vec<TemplateSite> {
    let mut sites = Vec::new();
    let kind = match table.get("type").map(|entry| &entry.value.value) {
        Some(Value::String(name)) => resource_kind(name),
        _ => None,
    };
    for (key, entry) in &table.entries {
        let described = mop_protocol::COMMON_FIELDS
            .iter()
            .find(|field| field.name == key.as_str())
            .or_else(|| kind.and_then(|kind| kind.field(key)));
        // Only tables that deserialized get here, so every key is described.
        let Some(described) = described else { continue };
        let site_kind = match described.kind {
            FieldKind::Expression => SiteKind::Expression,
            FieldKind::ResultExpression => SiteKind::ResultExpression,
            FieldKind::Template
            | FieldKind::TemplateChoice(_)
            | FieldKind::RenderedByResource
            | FieldKind::Loop
            | FieldKind::FileKey => SiteKind::Template,
            FieldKind::Literal | FieldKind::Scalar => continue,
        };
        walk_strings(reader, &entry.value, key.clone(), site_kind, &mut sites);
    }
    sites
}

fn walk_strings(
    reader: &Reader<'_>,
    node: &Node,
    field: String,
    kind: SiteKind,
    sites: &mut Vec<TemplateSite>,
) {
    match &node.value {
        Value::String(text) => sites.push(TemplateSite {
            field,
            kind,
            text: text.clone(),
            origin: reader.source.origin(node.span.start),
        }),
        Value::Array(items) => {
            for (position, item) in items.iter().enumerate() {
                walk_strings(reader, item, format!("{field}[{position}]"), kind, sites);
            }
        }
        Value::Table(table) => {
            for (key, entry) in &table.entries {
                walk_strings(reader, &entry.value, format!("{field}.{key}"), kind, sites);
            }
        }
        Value::Integer(_) | Value::Float(_) | Value::Boolean(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names() {
        assert_eq!(account_name_problem("deploy"), None);
        assert_eq!(account_name_problem("_svc-1$"), None);
        assert!(account_name_problem("Deploy").is_some());
        assert!(account_name_problem("1abc").is_some());
        assert!(account_name_problem("").is_some());
        assert!(account_name_problem(&"a".repeat(33)).is_some());
    }

    #[test]
    fn labels_are_one_short_line() {
        assert_eq!(one_line("  echo \n hi  "), "echo hi");
        let long = "x ".repeat(40);
        assert_eq!(one_line(&long).chars().count(), 48);
        assert!(one_line(&long).ends_with("..."));
        assert_eq!(
            numbered(ListKind::Resource, 0, Some("  ".into())),
            "resource #1"
        );
    }

    #[test]
    fn variable_names() {
        assert_eq!(variable_name_problem("out_1"), None);
        assert!(variable_name_problem("1out").is_some());
        assert!(variable_name_problem("my-var").is_some());
        assert!(variable_name_problem("host").is_some());
    }

    #[test]
    fn serde_messages_are_understood() {
        assert_eq!(
            unknown_field_in("unknown field `contnet`, expected one of `path`, `content`")
                .as_deref(),
            Some("contnet")
        );
        assert_eq!(
            listed_fields("unknown field `x`, expected one of `path`, `content`"),
            vec!["path".to_string(), "content".to_string()]
        );
        assert_eq!(unknown_field_in("missing field `path`"), None);
    }
}
