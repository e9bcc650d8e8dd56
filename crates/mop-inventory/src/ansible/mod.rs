//! Ansible inventories as they are: INI files, YAML files and the JSON a dynamic inventory
//! script prints for `--list`, read into the same model as mop's TOML.
//!
//! Flow: a reader (`ini.rs`, `yaml.rs`, `json.rs`) turns the text into [`Parsed`] (groups with
//! host lines, vars and children, every item with its place), without judging names or values.
//! [`apply`] then expands host ranges, translates the `ansible_*` connection variables into
//! mop's magic variables (`vars.rs`, one table) and checks every value with the same grammars
//! as TOML, collecting every problem of the file before it returns.

mod ini;
mod json;
mod range;
pub(crate) mod script;
mod vars;
mod yaml;

use indexmap::IndexMap;
use serde_json::Value;

use crate::build::{Builder, GroupDraft};
use crate::error::{InventoryError, Location};
use crate::inventory::{ShorthandEntry, ALL_GROUP};
use crate::parse::{check_entity_name, merge_vars};
use crate::value::Problem;

/// The Ansible formats mop reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnsibleFormat {
    Ini,
    Yaml,
    /// What a dynamic inventory script printed for `--list`.
    ScriptJson,
}

/// One variable as written, before translation.
#[derive(Clone, Debug)]
pub(crate) struct Var {
    pub(crate) name: String,
    pub(crate) value: Value,
    pub(crate) location: Location,
}

/// A host pattern as written in a group (`web[01:03].example.com:2222`) with its variables.
#[derive(Clone, Debug)]
pub(crate) struct HostLine {
    pub(crate) pattern: String,
    pub(crate) location: Location,
    /// Orders hosts within the file.
    pub(crate) order: usize,
    pub(crate) vars: Vec<Var>,
}

/// A group as one file describes it.
#[derive(Clone, Debug, Default)]
pub(crate) struct GroupBody {
    pub(crate) location: Option<Location>,
    pub(crate) order: usize,
    pub(crate) hosts: Vec<HostLine>,
    pub(crate) vars: Vec<Var>,
    pub(crate) children: Vec<(String, Location)>,
}

/// One Ansible source, read but not yet judged.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) groups: IndexMap<String, GroupBody>,
    /// `_meta.hostvars` of a script: host name, place, variables.
    pub(crate) host_vars: Vec<(String, Location, Vec<Var>)>,
    /// Problems the reader found (it goes on reading after each).
    pub(crate) errors: Vec<InventoryError>,
}

impl Parsed {
    /// The body of `name`, created at `location` the first time it is mentioned.
    pub(crate) fn group(
        &mut self,
        name: &str,
        location: &Location,
        order: usize,
    ) -> &mut GroupBody {
        self.groups
            .entry(name.to_string())
            .or_insert_with(|| GroupBody {
                location: Some(location.clone()),
                order,
                ..GroupBody::default()
            })
    }

    pub(crate) fn error(&mut self, location: Location, problem: Problem) {
        self.errors.push(InventoryError::At {
            location,
            message: problem.message,
            hint: problem.hint,
        });
    }
}

/// Reads one Ansible source into the builder: every problem of the file at once.
pub(crate) fn read(
    builder: &mut Builder,
    index: usize,
    name: &str,
    text: &str,
    format: AnsibleFormat,
) -> Result<(), InventoryError> {
    let parsed = match format {
        AnsibleFormat::Ini => ini::parse(name, text),
        AnsibleFormat::Yaml => yaml::parse(name, text),
        AnsibleFormat::ScriptJson => json::parse(name, text),
    };
    let mut errors = apply(builder, index, parsed);
    // The reader's errors and the checks' come in two passes: show them in file order.
    errors.sort_by_key(|error| {
        error
            .location()
            .map(|location| (location.line, location.column))
    });
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(InventoryError::Several(errors)),
    }
}

/// Reads an Ansible variable file (`group_vars/web.yml`, `.yaml` or `.json`; JSON is YAML) for
/// `scope` (``group `web` ``): its `ansible_*` names become mop's magic variables exactly as in
/// an inventory, every value checked. Returns the file and its warnings, or every problem.
pub(crate) fn read_vars_file(
    path: &std::path::Path,
    scope: &str,
) -> Result<(crate::VarsFile, Vec<String>), InventoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path.display().to_string();
    if text.starts_with("$ANSIBLE_VAULT;") {
        return Err(at(
            &Location {
                file: name,
                line: 1,
                column: 1,
            },
            Problem::with_hint(
                "an Ansible Vault file: mop reads vaults in the age format",
                format!(
                    "decrypt it with `ansible-vault decrypt`, then encrypt it with `mop vault \
                     encrypt {}`",
                    path.display()
                ),
            ),
        ));
    }
    let (vars, mut errors) = yaml::parse_vars(&name, &text);
    let (table, problems, warnings) = vars::translate(scope, &vars);
    errors.extend(
        problems
            .into_iter()
            .map(|problem| at(&problem.var_location, problem.problem)),
    );
    match errors.len() {
        0 => Ok((
            crate::VarsFile {
                path: path.to_path_buf(),
                vars: table,
            },
            warnings,
        )),
        1 => Err(errors.remove(0)),
        _ => Err(InventoryError::Several(errors)),
    }
}

fn at(location: &Location, problem: Problem) -> InventoryError {
    InventoryError::At {
        location: location.clone(),
        message: problem.message,
        hint: problem.hint,
    }
}

/// Puts what one file said into the builder; returns every problem found.
fn apply(builder: &mut Builder, index: usize, parsed: Parsed) -> Vec<InventoryError> {
    let Parsed {
        groups,
        host_vars,
        mut errors,
    } = parsed;
    for (group_name, body) in groups {
        if let Err(problem) = check_entity_name("group", &group_name) {
            let location = body.location.clone().unwrap_or_else(|| Location {
                file: String::new(),
                line: 0,
                column: 0,
            });
            errors.push(at(&location, problem));
            continue;
        }
        builder
            .groups
            .entry(group_name.clone())
            .or_insert_with(|| GroupDraft {
                first: (index, body.order),
                location: body.location.clone(),
                ..GroupDraft::default()
            });
        let scope = format!("group `{group_name}`");
        let (table, problems, warnings) = vars::translate(&scope, &body.vars);
        builder.warnings.extend(warnings);
        errors.extend(
            problems
                .into_iter()
                .map(|problem| at(&problem.var_location, problem.problem)),
        );
        let draft = builder
            .groups
            .get_mut(&group_name)
            .expect("group draft inserted above");
        if let Err(error) = merge_vars(&mut draft.vars, table, &scope) {
            errors.push(error);
        }
        // Ansible lists every top-level group as a child of `all`; in mop every group is
        // inside `all` already, and `all` has no children.
        if group_name != ALL_GROUP {
            for (child, location) in &body.children {
                if let Err(problem) = check_entity_name("group", child) {
                    errors.push(at(location, problem));
                    continue;
                }
                let draft = builder
                    .groups
                    .get_mut(&group_name)
                    .expect("group draft inserted above");
                if !draft.children.iter().any(|(known, _)| known == child) {
                    draft.children.push((child.clone(), location.clone()));
                }
                // Ansible creates a group that is only named as a child.
                builder
                    .groups
                    .entry(child.clone())
                    .or_insert_with(|| GroupDraft {
                        first: (index, body.order),
                        location: Some(location.clone()),
                        ..GroupDraft::default()
                    });
            }
        }
        for line in &body.hosts {
            add_host_line(builder, index, &group_name, line, &mut errors);
        }
    }
    for (host_name, location, host_vars) in host_vars {
        if let Err(problem) = check_entity_name("host", &host_name) {
            errors.push(at(&location, problem));
            continue;
        }
        let scope = format!("host `{host_name}`");
        let (table, problems, warnings) = vars::translate(&scope, &host_vars);
        builder.warnings.extend(warnings);
        errors.extend(
            problems
                .into_iter()
                .map(|problem| at(&problem.var_location, problem.problem)),
        );
        let position = (index, usize::MAX);
        if let Err(error) = builder.add_host_entry(&host_name, position, location, None) {
            errors.push(error);
            continue;
        }
        let draft = builder
            .hosts
            .get_mut(&host_name)
            .expect("host draft inserted above");
        if let Err(error) = merge_vars(&mut draft.vars, table, &scope) {
            errors.push(error);
        }
    }
    errors
}

/// Expands one host line of a group and adds each host, with the line's variables as the
/// host's shorthand entry for that group.
fn add_host_line(
    builder: &mut Builder,
    index: usize,
    group_name: &str,
    line: &HostLine,
    errors: &mut Vec<InventoryError>,
) {
    let (pattern, port) = match range::split_host_port(&line.pattern) {
        Ok(split) => split,
        Err(problem) => {
            errors.push(at(&line.location, problem));
            return;
        }
    };
    let names = match range::expand_host_pattern(pattern) {
        Ok(names) => names,
        Err(problem) => {
            errors.push(at(&line.location, problem));
            return;
        }
    };
    let mut line_vars = line.vars.clone();
    if let Some(port) = port {
        line_vars.insert(
            0,
            Var {
                name: "ansible_port".to_string(),
                value: Value::from(port),
                location: line.location.clone(),
            },
        );
    }
    let scope = format!("host `{pattern}`");
    let (table, problems, warnings) = vars::translate(&scope, &line_vars);
    builder.warnings.extend(warnings);
    if !problems.is_empty() {
        errors.extend(
            problems
                .into_iter()
                .map(|problem| at(&problem.var_location, problem.problem)),
        );
        return;
    }
    for host_name in names {
        if let Err(problem) = check_entity_name("host", &host_name) {
            errors.push(at(&line.location, problem));
            return;
        }
        // A range's hosts share the line's variables, translated and checked once.
        let entry = ShorthandEntry {
            group: Some(group_name.to_string()),
            vars: table.clone(),
        };
        let position = (index, line.order);
        if let Err(error) =
            builder.add_host_entry(&host_name, position, line.location.clone(), Some(entry))
        {
            errors.push(error);
            continue;
        }
        let draft = builder
            .groups
            .get_mut(group_name)
            .expect("the group of a host line is inserted before its hosts");
        if !draft.hosts.contains(&host_name) {
            draft.hosts.push(host_name);
        }
    }
}

/// How an inventory path is read, decided from its name, its permissions and (for a file with
/// no extension) its first line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    Toml,
    Ansible(AnsibleFormat),
    /// An executable: a dynamic inventory script, run with `--list`.
    Script,
}

/// The kind of a file given as `-i` itself: `.toml` is TOML, `.ini` INI, `.yml`/`.yaml` YAML;
/// an executable is a script; any other file is TOML or INI by its first line.
pub(crate) fn kind_of_named_file(
    path: &std::path::Path,
    text_start: &str,
    executable: bool,
) -> FileKind {
    match extension(path).as_deref() {
        Some("toml") => FileKind::Toml,
        Some("ini") => FileKind::Ansible(AnsibleFormat::Ini),
        Some("yml" | "yaml") => FileKind::Ansible(AnsibleFormat::Yaml),
        _ if executable => FileKind::Script,
        _ if looks_like_toml(text_start) => FileKind::Toml,
        _ => FileKind::Ansible(AnsibleFormat::Ini),
    }
}

/// The kind of a file found in an inventory directory: only the known extensions are read.
pub(crate) fn kind_in_directory(path: &std::path::Path) -> Option<FileKind> {
    match extension(path).as_deref() {
        Some("toml") => Some(FileKind::Toml),
        Some("ini") => Some(FileKind::Ansible(AnsibleFormat::Ini)),
        Some("yml" | "yaml") => Some(FileKind::Ansible(AnsibleFormat::Yaml)),
        _ => None,
    }
}

fn extension(path: &std::path::Path) -> Option<String> {
    path.extension()
        .and_then(|ext| ext.to_str())
        .map(str::to_ascii_lowercase)
}

/// A mop TOML inventory starts (after comments) with a `[groups...]`/`[hosts...]` table or a
/// `groups`/`hosts` key; an Ansible INI file with `[name]` or a host line.
fn looks_like_toml(text: &str) -> bool {
    let Some(first) = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with(';'))
    else {
        return true;
    };
    let header = first.trim_start_matches('[').trim_start();
    if first.starts_with('[') {
        return ["groups", "hosts", "\"groups\"", "\"hosts\""]
            .iter()
            .any(|key| {
                header
                    .strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with(['.', ']']))
            });
    }
    first.contains('=') && (first.starts_with("groups") || first.starts_with("hosts"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_without_extension_are_told_apart_by_their_first_line() {
        let kind = |text: &str| kind_of_named_file(std::path::Path::new("hosts"), text, false);
        let ini = FileKind::Ansible(AnsibleFormat::Ini);
        assert_eq!(kind("# comment\n[groups.web.hosts]\n"), FileKind::Toml);
        assert_eq!(kind("[hosts.\"web1\".vars]\n"), FileKind::Toml);
        assert_eq!(kind(""), FileKind::Toml);
        assert_eq!(kind("[web]\nweb1\n"), ini);
        assert_eq!(kind("[hostsfoo]\nweb1\n"), ini);
        assert_eq!(kind("web1 ansible_host=10.0.0.1\n"), ini);
        assert_eq!(
            kind_of_named_file(std::path::Path::new("inv"), "", true),
            FileKind::Script
        );
        assert_eq!(
            kind_of_named_file(std::path::Path::new("inv.yml"), "", true),
            FileKind::Ansible(AnsibleFormat::Yaml)
        );
    }
}
