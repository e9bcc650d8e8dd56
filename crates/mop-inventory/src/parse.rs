//! Reading inventory TOML into the validated model, with file:line:column on every error.

use std::ops::Range;

use serde_json::Value;
use toml_edit::{ImDocument, Item, TableLike};

use crate::ansible::AnsibleFormat;
use crate::build::{Builder, GroupDraft, HostDraft, Position};
use crate::error::{closest, InventoryError, Location, SourceMap};
use crate::inventory::{Inventory, ShorthandEntry, VarSetting, VarTable};
use crate::magic::{self, TextOrigin};
use crate::shorthand::parse_shorthand;
use crate::value::{check_var_name, describe, toml_item_to_json, Problem};

/// One file being read: its index in load order and its offset-to-location map.
struct FileReader<'a> {
    index: usize,
    map: SourceMap<'a>,
}

pub(crate) fn parse_sources(sources: &[(&str, &str)]) -> Result<Inventory, InventoryError> {
    let formatted: Vec<(&str, &str, SourceFormat)> = sources
        .iter()
        .map(|(name, text)| (*name, *text, SourceFormat::Toml))
        .collect();
    parse_formatted(&formatted)
}

/// The formats an inventory source can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceFormat {
    Toml,
    Ansible(AnsibleFormat),
}

/// Reads sources of any format into one inventory. A TOML file stops at its first error; an
/// Ansible source reports all of its errors; the errors of every file are reported together.
pub(crate) fn parse_formatted(
    sources: &[(&str, &str, SourceFormat)],
) -> Result<Inventory, InventoryError> {
    let mut builder = Builder::default();
    let mut errors = Vec::new();
    for (index, (name, text, format)) in sources.iter().enumerate() {
        let result = match format {
            SourceFormat::Toml => FileReader {
                index,
                map: SourceMap::new(name, text),
            }
            .read(&mut builder),
            SourceFormat::Ansible(format) => {
                crate::ansible::read(&mut builder, index, name, text, *format)
            }
        };
        match result {
            Ok(()) => {}
            Err(InventoryError::Several(several)) => errors.extend(several),
            Err(error) => errors.push(error),
        }
    }
    match errors.len() {
        0 => {}
        1 => return Err(errors.remove(0)),
        _ => return Err(InventoryError::Several(errors)),
    }
    let names = sources
        .iter()
        .map(|(name, _, _)| name.to_string())
        .collect();
    builder.finish(names)
}

fn key_offset(table: &dyn TableLike, key: &str) -> Option<usize> {
    table
        .get_key_value(key)
        .and_then(|(key, _)| key.span())
        .map(|span| span.start)
}

fn item_kind(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(toml_edit::Value::String(_)) => "a string",
        Item::Value(toml_edit::Value::Integer(_)) => "an integer",
        Item::Value(toml_edit::Value::Float(_)) => "a float",
        Item::Value(toml_edit::Value::Boolean(_)) => "a boolean",
        Item::Value(toml_edit::Value::Datetime(_)) => "a datetime",
        Item::Value(toml_edit::Value::Array(_)) => "an array",
        Item::Value(toml_edit::Value::InlineTable(_)) | Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

/// Group and host names end up in patterns, messages and SSH arguments: no blanks or control
/// characters, and a leading `-` could be taken for an SSH option.
pub(crate) fn check_entity_name(kind: &str, name: &str) -> Result<(), Problem> {
    if name.is_empty() {
        return Err(Problem::new(format!("empty {kind} name")));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Problem::new(format!(
            "invalid {kind} name {name:?}: names cannot contain spaces or control characters"
        )));
    }
    if name.starts_with('-') {
        return Err(Problem::new(format!(
            "invalid {kind} name `{name}`: names cannot start with `-`"
        )));
    }
    Ok(())
}

impl FileReader<'_> {
    fn location(&self, offset: usize) -> Location {
        self.map.location(offset)
    }

    fn error(&self, offset: usize, problem: Problem) -> InventoryError {
        InventoryError::At {
            location: self.location(offset),
            message: problem.message,
            hint: problem.hint,
        }
    }

    /// The offset of `key` in `table`, falling back to `fallback` (keys parsed from a file
    /// always carry a span).
    fn key_at(&self, table: &dyn TableLike, key: &str, fallback: usize) -> usize {
        key_offset(table, key).unwrap_or(fallback)
    }

    fn item_at(item: &Item, fallback: usize) -> usize {
        item.span().map_or(fallback, |span| span.start)
    }

    fn read(&self, builder: &mut Builder) -> Result<(), InventoryError> {
        let document = ImDocument::parse(self.map.text()).map_err(|error| {
            let offset = error.span().map_or(0, |span| span.start);
            let message = error.message().trim().replace('\n', "; ");
            self.error(offset, Problem::new(format!("invalid TOML: {message}")))
        })?;
        let root = document.as_table();
        for (key, item) in root.iter() {
            let key_at = self.key_at(root, key, 0);
            match key {
                "groups" => {
                    let groups = item.as_table_like().ok_or_else(|| {
                        self.error(
                            key_at,
                            Problem::with_hint(
                                format!("`groups` must be a table, found {}", item_kind(item)),
                                "write groups as `[groups.NAME.hosts]` and `[groups.NAME.vars]`",
                            ),
                        )
                    })?;
                    self.read_groups(builder, groups, key_at)?;
                }
                "hosts" => {
                    let hosts = item.as_table_like().ok_or_else(|| {
                        self.error(
                            key_at,
                            Problem::with_hint(
                                format!(
                                    "top-level `hosts` must be a table, found {}",
                                    item_kind(item)
                                ),
                                "write per-host variables as `[hosts.\"NAME\".vars]`",
                            ),
                        )
                    })?;
                    self.read_hosts(builder, hosts, key_at)?;
                }
                other => {
                    let hint = match closest(other, ["groups", "hosts"]) {
                        Some(suggestion) => format!("did you mean `{suggestion}`?"),
                        None => "an inventory file holds only `[groups.NAME...]` and \
                                 `[hosts.NAME...]` tables"
                            .to_string(),
                    };
                    return Err(self.error(
                        key_at,
                        Problem::with_hint(format!("unknown top-level key `{other}`"), hint),
                    ));
                }
            }
        }
        Ok(())
    }

    fn read_groups(
        &self,
        builder: &mut Builder,
        groups: &dyn TableLike,
        groups_at: usize,
    ) -> Result<(), InventoryError> {
        for (group_name, item) in groups.iter() {
            let group_at = self.key_at(groups, group_name, groups_at);
            check_entity_name("group", group_name)
                .map_err(|problem| self.error(group_at, problem))?;
            let table = item.as_table_like().ok_or_else(|| {
                self.error(
                    group_at,
                    Problem::with_hint(
                        format!(
                            "group `{group_name}` must be a table, found {}",
                            item_kind(item)
                        ),
                        format!(
                            "write `[groups.{group_name}.hosts]`, `[groups.{group_name}.vars]` \
                             or `[groups.{group_name}]` with `children = [...]`"
                        ),
                    ),
                )
            })?;
            let location = self.location(group_at);
            builder
                .groups
                .entry(group_name.to_string())
                .or_insert_with(|| GroupDraft {
                    first: (self.index, group_at),
                    location: Some(location),
                    ..GroupDraft::default()
                });
            for (key, value) in table.iter() {
                let key_at = self.key_at(table, key, group_at);
                match key {
                    "hosts" => self.read_group_hosts(builder, group_name, value, key_at)?,
                    "vars" => {
                        let vars =
                            self.read_vars_item(value, key_at, &format!("group `{group_name}`"))?;
                        let draft = builder
                            .groups
                            .get_mut(group_name)
                            .expect("group draft inserted above");
                        merge_vars(&mut draft.vars, vars, &format!("group `{group_name}`"))?;
                    }
                    "children" => {
                        let children = self.read_children(group_name, value, key_at)?;
                        let draft = builder
                            .groups
                            .get_mut(group_name)
                            .expect("group draft inserted above");
                        for (child, location) in children {
                            if !draft.children.iter().any(|(known, _)| *known == child) {
                                draft.children.push((child, location));
                            }
                        }
                    }
                    other => {
                        let hint = if value.is_str() {
                            format!(
                                "list hosts under `[groups.{group_name}.hosts]`; a group has only \
                                 `hosts`, `vars` and `children`"
                            )
                        } else {
                            match closest(other, ["hosts", "vars", "children"]) {
                                Some(suggestion) => format!("did you mean `{suggestion}`?"),
                                None => "a group has only `hosts`, `vars` and `children`".into(),
                            }
                        };
                        return Err(self.error(
                            key_at,
                            Problem::with_hint(
                                format!("unknown key `{other}` in group `{group_name}`"),
                                hint,
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn read_group_hosts(
        &self,
        builder: &mut Builder,
        group_name: &str,
        item: &Item,
        hosts_at: usize,
    ) -> Result<(), InventoryError> {
        let hosts = item.as_table_like().ok_or_else(|| {
            self.error(
                hosts_at,
                Problem::with_hint(
                    format!(
                        "`hosts` of group `{group_name}` must be a table of host names, found {}",
                        item_kind(item)
                    ),
                    format!(
                        "write `[groups.{group_name}.hosts]` followed by lines like \
                         `\"web1.example.com\" = \"\"`"
                    ),
                ),
            )
        })?;
        for (host_name, value) in hosts.iter() {
            let host_at = self.key_at(hosts, host_name, hosts_at);
            check_entity_name("host", host_name).map_err(|problem| self.error(host_at, problem))?;
            let shorthand =
                self.read_shorthand_item(host_name, Some(group_name), value, host_at)?;
            builder.add_host_entry(
                host_name,
                (self.index, host_at),
                self.location(host_at),
                Some(shorthand),
            )?;
            let draft = builder
                .groups
                .get_mut(group_name)
                .expect("group draft inserted by read_groups");
            if !draft.hosts.iter().any(|known| known == host_name) {
                draft.hosts.push(host_name.to_string());
            }
        }
        Ok(())
    }

    fn read_shorthand_item(
        &self,
        host_name: &str,
        group_name: Option<&str>,
        item: &Item,
        host_at: usize,
    ) -> Result<ShorthandEntry, InventoryError> {
        let value_at = Self::item_at(item, host_at);
        let Some(text) = item.as_str() else {
            let place = match group_name {
                Some(group) => format!("host `{host_name}` in group `{group}`"),
                None => format!("host `{host_name}`"),
            };
            let hint = if item.is_table_like() {
                // `web1.example.com = ""` unquoted is the table `web1` holding `example`...
                "quote host names that contain dots, e.g. `\"web1.example.com\" = \"\"`; \
                 unquoted, TOML reads the dots as nested tables"
                    .to_string()
            } else {
                format!(
                    "use `\"\"` for no variables; typed per-host variables go under \
                     `[hosts.\"{host_name}\".vars]`"
                )
            };
            return Err(self.error(
                value_at,
                Problem::with_hint(
                    format!(
                        "{place} must be set to a string of `key=value` words, found {}",
                        item_kind(item)
                    ),
                    hint,
                ),
            ));
        };
        // For a plain one-line string the shorthand's characters sit one past the opening
        // quote, so errors can point at the exact word; otherwise point at the string.
        let raw = item.span().map(|span| &self.map.text()[span]);
        let inner_start = match raw {
            Some(raw) if raw.len() == text.len() + 2 && &raw[1..raw.len() - 1] == text => {
                Some(value_at + 1)
            }
            _ => None,
        };
        let word_at = |offset: usize| inner_start.map_or(value_at, |start| start + offset);
        let words = parse_shorthand(text).map_err(|error| {
            self.error(
                word_at(error.offset),
                Problem {
                    message: format!("host `{host_name}`: {}", error.message),
                    hint: error.hint,
                },
            )
        })?;
        let mut vars = VarTable::default();
        for word in words {
            let at = word_at(word.offset);
            let value = match magic::check_reserved(&word.key).map_err(|p| self.error(at, p))? {
                Some(var) => magic::coerce_text(var, &word.value, TextOrigin::Shorthand)
                    .map_err(|problem| self.error(at, problem))?,
                None => Value::String(word.value),
            };
            vars.0.insert(
                word.key,
                VarSetting {
                    value,
                    location: self.location(at),
                },
            );
        }
        Ok(ShorthandEntry {
            group: group_name.map(str::to_string),
            vars,
        })
    }

    fn read_children(
        &self,
        group_name: &str,
        item: &Item,
        children_at: usize,
    ) -> Result<Vec<(String, Location)>, InventoryError> {
        let not_a_list = |found: &str, at: usize| {
            self.error(
                at,
                Problem::with_hint(
                    format!(
                        "`children` of group `{group_name}` must be an array of group names, \
                         found {found}"
                    ),
                    "write `children = [\"webservers\", \"dbservers\"]`",
                ),
            )
        };
        let Some(array) = item.as_array() else {
            return Err(not_a_list(
                item_kind(item),
                Self::item_at(item, children_at),
            ));
        };
        let mut children = Vec::new();
        for element in array.iter() {
            let element_at = element.span().map_or(children_at, |span| span.start);
            let Some(child) = element.as_str() else {
                return Err(not_a_list(
                    &format!(
                        "an array holding {}",
                        item_kind(&Item::Value(element.clone()))
                    ),
                    element_at,
                ));
            };
            children.push((child.to_string(), self.location(element_at)));
        }
        Ok(children)
    }

    fn read_hosts(
        &self,
        builder: &mut Builder,
        hosts: &dyn TableLike,
        hosts_at: usize,
    ) -> Result<(), InventoryError> {
        for (host_name, item) in hosts.iter() {
            let host_at = self.key_at(hosts, host_name, hosts_at);
            check_entity_name("host", host_name).map_err(|problem| self.error(host_at, problem))?;
            if item.is_str() {
                // OpsMop also accepted `[hosts]` entries as shorthand strings.
                let shorthand = self.read_shorthand_item(host_name, None, item, host_at)?;
                builder.add_host_entry(
                    host_name,
                    (self.index, host_at),
                    self.location(host_at),
                    Some(shorthand),
                )?;
                continue;
            }
            let Some(table) = item.as_table_like() else {
                return Err(self.error(
                    Self::item_at(item, host_at),
                    Problem::with_hint(
                        format!(
                            "host `{host_name}` must be a table with `vars`, found {}",
                            item_kind(item)
                        ),
                        format!(
                            "write `[hosts.\"{host_name}\".vars]` followed by `name = value` lines"
                        ),
                    ),
                ));
            };
            builder.add_host_entry(
                host_name,
                (self.index, host_at),
                self.location(host_at),
                None,
            )?;
            for (key, value) in table.iter() {
                let key_at = self.key_at(table, key, host_at);
                if key != "vars" {
                    let hint = if value.is_table_like() && key != "groups" {
                        "quote host names that contain dots: `[hosts.\"web1.example.com\".vars]`; \
                         unquoted, TOML reads the dots as nested tables"
                    } else {
                        "a `[hosts.NAME]` table has only `vars`; group membership is set under \
                         `[groups.GROUP.hosts]`"
                    };
                    return Err(self.error(
                        key_at,
                        Problem::with_hint(
                            format!("unknown key `{key}` in host `{host_name}`"),
                            hint,
                        ),
                    ));
                }
                let scope = format!("host `{host_name}`");
                let vars = self.read_vars_item(value, key_at, &scope)?;
                let draft = builder
                    .hosts
                    .get_mut(host_name)
                    .expect("host draft inserted above");
                merge_vars(&mut draft.vars, vars, &scope)?;
            }
        }
        Ok(())
    }

    fn read_vars_item(
        &self,
        item: &Item,
        vars_at: usize,
        scope: &str,
    ) -> Result<VarTable, InventoryError> {
        let table = item.as_table_like().ok_or_else(|| {
            self.error(
                vars_at,
                Problem::with_hint(
                    format!(
                        "`vars` of {scope} must be a table, found {}",
                        item_kind(item)
                    ),
                    "write `vars = { name = value }` or a `[... .vars]` section",
                ),
            )
        })?;
        let mut vars = VarTable::default();
        for (name, value) in table.iter() {
            let name_at = self.key_at(table, name, vars_at);
            check_var_name(name).map_err(|problem| self.error(name_at, problem))?;
            let magic_var = magic::check_reserved(name).map_err(|p| self.error(name_at, p))?;
            let value_at = Self::item_at(value, name_at);
            let json = toml_item_to_json(value).map_err(|error| {
                let at = error.span.map_or(value_at, |span: Range<usize>| span.start);
                self.error(at, error.problem)
            })?;
            let json = match magic_var {
                Some(var) => {
                    magic::validate_typed(var, &json).map_err(|p| self.error(value_at, p))?
                }
                None => json,
            };
            vars.0.insert(
                name.to_string(),
                VarSetting {
                    value: json,
                    location: self.location(value_at),
                },
            );
        }
        Ok(vars)
    }
}

/// Adds `incoming` to `target`; a variable already set (in another file) is an error.
pub(crate) fn merge_vars(
    target: &mut VarTable,
    incoming: VarTable,
    scope: &str,
) -> Result<(), InventoryError> {
    for (name, setting) in incoming.0 {
        if let Some(existing) = target.0.get(&name) {
            return Err(InventoryError::at_with_hint(
                setting.location,
                format!(
                    "variable `{name}` of {scope} is already set at {}",
                    existing.location
                ),
                "set each variable of a group or host in one file only",
            ));
        }
        target.0.insert(name, setting);
    }
    Ok(())
}

impl Builder {
    pub(crate) fn add_host_entry(
        &mut self,
        host_name: &str,
        position: Position,
        location: Location,
        shorthand: Option<ShorthandEntry>,
    ) -> Result<(), InventoryError> {
        let draft = self
            .hosts
            .entry(host_name.to_string())
            .or_insert_with(|| HostDraft {
                first: position,
                location: location.clone(),
                shorthand: Vec::new(),
                vars: VarTable::default(),
            });
        if position < draft.first {
            draft.first = position;
            draft.location = location;
        }
        let Some(entry) = shorthand else {
            return Ok(());
        };
        for earlier in &draft.shorthand {
            for (name, setting) in &entry.vars.0 {
                let Some(earlier_setting) = earlier.vars.0.get(name) else {
                    continue;
                };
                if earlier_setting.value == setting.value {
                    continue;
                }
                let values = if magic::is_secret_var(name) {
                    "two different values".to_string()
                } else {
                    format!(
                        "{} and {}",
                        describe(&earlier_setting.value, false),
                        describe(&setting.value, false)
                    )
                };
                return Err(InventoryError::at_with_hint(
                    setting.location.clone(),
                    format!(
                        "host `{host_name}` has conflicting shorthand for `{name}`: {values} \
                         (the other is at {})",
                        earlier_setting.location
                    ),
                    format!(
                        "set it once, e.g. under `[hosts.\"{host_name}\".vars]`, which takes \
                         precedence over shorthand"
                    ),
                ));
            }
        }
        draft.shorthand.push(entry);
        Ok(())
    }
}
