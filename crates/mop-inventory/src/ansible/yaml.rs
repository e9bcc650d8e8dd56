//! Ansible's YAML inventory: nested groups with `hosts`, `vars` and `children`, read through
//! yaml-rust2's event parser so every item keeps its line and column.

use std::collections::HashMap;

use serde_json::Value;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Yaml;

use crate::error::{closest, Location};
use crate::value::Problem;

use super::{HostLine, Parsed, Var};

/// A YAML node with the place it starts at.
#[derive(Clone, Debug)]
struct Node {
    value: NodeValue,
    line: usize,
    column: usize,
}

#[derive(Clone, Debug)]
enum NodeValue {
    /// The scalar's text as written and its YAML 1.2 core-schema value.
    Scalar(String, Value),
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>),
}

/// Builds [`Node`]s from parser events.
#[derive(Default)]
struct TreeBuilder {
    /// Open sequences and mappings: the node so far and its anchor.
    stack: Vec<(Node, usize)>,
    /// A mapping key waiting for its value, per open mapping (by stack depth).
    pending_keys: Vec<Option<Node>>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    /// Set when an alias names no anchor; the parser has no way to stop from here.
    unknown_alias: Option<(usize, usize)>,
}

impl TreeBuilder {
    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let Some((parent, _)) = self.stack.last_mut() else {
            self.root = Some(node);
            return;
        };
        match &mut parent.value {
            NodeValue::Sequence(items) => items.push(node),
            NodeValue::Mapping(entries) => {
                let pending = self
                    .pending_keys
                    .last_mut()
                    .expect("every open mapping has a pending-key slot");
                match pending.take() {
                    Some(key) => entries.push((key, node)),
                    None => *pending = Some(node),
                }
            }
            NodeValue::Scalar(..) => unreachable!("scalars are never open"),
        }
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let (line, column) = (mark.line(), mark.col() + 1);
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let value = if style == TScalarStyle::Plain {
                    plain_scalar(&text)
                } else {
                    Value::String(text.clone())
                };
                let node = Node {
                    value: NodeValue::Scalar(text, value),
                    line,
                    column,
                };
                self.push_node(node, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push((
                Node {
                    value: NodeValue::Sequence(Vec::new()),
                    line,
                    column,
                },
                anchor,
            )),
            Event::MappingStart(anchor, _) => {
                self.stack.push((
                    Node {
                        value: NodeValue::Mapping(Vec::new()),
                        line,
                        column,
                    },
                    anchor,
                ));
                self.pending_keys.push(None);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if matches!(event, Event::MappingEnd) {
                    self.pending_keys.pop();
                }
                if let Some((node, anchor)) = self.stack.pop() {
                    self.push_node(node, anchor);
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => self.push_node(node, 0),
                None => {
                    self.unknown_alias.get_or_insert((line, column));
                    let node = Node {
                        value: NodeValue::Scalar(String::new(), Value::Null),
                        line,
                        column,
                    };
                    self.push_node(node, 0);
                }
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// A plain scalar's value in YAML's core schema (`8080`, `1.5`, `true`, `~`); other text is a
/// string. Ansible's YAML 1.1 `yes`/`no` stay strings, which the magic booleans accept.
fn plain_scalar(text: &str) -> Value {
    match Yaml::from_str(text) {
        Yaml::Integer(number) => Value::from(number),
        Yaml::Real(real) => match real.parse::<f64>() {
            Ok(float) if float.is_finite() => Value::from(float),
            _ => Value::String(text.to_string()),
        },
        Yaml::Boolean(flag) => Value::Bool(flag),
        Yaml::Null => Value::Null,
        _ => Value::String(text.to_string()),
    }
}

struct Reader<'a> {
    name: &'a str,
    parsed: Parsed,
    order: usize,
}

/// Reads `text` into a node tree; a syntax error or an alias to no anchor is recorded in the
/// reader and gives `Err`.
fn load(reader: &mut Reader<'_>, text: &str) -> Result<Option<Node>, ()> {
    let mut builder = TreeBuilder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(error) = parser.load(&mut builder, false) {
        let location = reader.location_at(error.marker().line(), error.marker().col() + 1);
        reader.parsed.error(
            location,
            Problem::new(format!("invalid YAML: {}", error.info())),
        );
        return Err(());
    }
    if let Some((line, column)) = builder.unknown_alias {
        let location = reader.location_at(line, column);
        reader
            .parsed
            .error(location, Problem::new("YAML alias to an unknown anchor"));
        return Err(());
    }
    Ok(builder.root)
}

pub(crate) fn parse(name: &str, text: &str) -> Parsed {
    let mut reader = Reader {
        name,
        parsed: Parsed::default(),
        order: 0,
    };
    let Ok(root) = load(&mut reader, text) else {
        return reader.parsed;
    };
    match root {
        None => {}
        Some(Node {
            value: NodeValue::Scalar(_, Value::Null),
            ..
        }) => {}
        Some(Node {
            value: NodeValue::Mapping(entries),
            ..
        }) => {
            for (key, body) in &entries {
                let Some(group) = reader.key_text(key) else {
                    continue;
                };
                reader.read_group(&group, key, body, None);
            }
        }
        Some(other) => {
            let location = reader.location(&other);
            reader.parsed.error(
                location,
                Problem::with_hint(
                    "a YAML inventory must be a mapping of group names",
                    "start with `all:` and put `hosts:`, `vars:` and `children:` under it",
                ),
            );
        }
    }
    reader.parsed
}

/// The variables of an Ansible variable file (`group_vars/web.yml`): a mapping of names to
/// values, or nothing at all. Returns what it could read and every problem.
pub(crate) fn parse_vars(name: &str, text: &str) -> (Vec<Var>, Vec<crate::InventoryError>) {
    let mut reader = Reader {
        name,
        parsed: Parsed::default(),
        order: 0,
    };
    let vars = match load(&mut reader, text) {
        Ok(Some(root)) => reader.read_vars("a variable file", &root),
        Ok(None) | Err(()) => Vec::new(),
    };
    (vars, reader.parsed.errors)
}

impl Reader<'_> {
    fn location_at(&self, line: usize, column: usize) -> Location {
        Location {
            file: self.name.to_string(),
            line,
            column,
        }
    }

    fn location(&self, node: &Node) -> Location {
        self.location_at(node.line, node.column)
    }

    fn next_order(&mut self) -> usize {
        self.order += 1;
        self.order
    }

    /// A mapping key as text; keys that are sequences or mappings are errors.
    fn key_text(&mut self, key: &Node) -> Option<String> {
        match &key.value {
            NodeValue::Scalar(text, _) => Some(text.clone()),
            _ => {
                let location = self.location(key);
                self.parsed
                    .error(location, Problem::new("a key must be a plain name"));
                None
            }
        }
    }

    fn read_group(&mut self, name: &str, key: &Node, body: &Node, parent: Option<&str>) {
        let location = self.location(key);
        let order = self.next_order();
        self.parsed.group(name, &location, order);
        if let Some(parent) = parent {
            self.parsed
                .group(parent, &location, order)
                .children
                .push((name.to_string(), location.clone()));
        }
        let entries = match &body.value {
            NodeValue::Scalar(_, Value::Null) => return,
            NodeValue::Mapping(entries) => entries,
            _ => {
                let at = self.location(body);
                self.parsed.error(
                    at,
                    Problem::with_hint(
                        format!("group `{name}` must be a mapping"),
                        format!("give `{name}:` the keys `hosts:`, `vars:` and `children:`"),
                    ),
                );
                return;
            }
        };
        for (section_key, section) in entries {
            let Some(section_name) = self.key_text(section_key) else {
                continue;
            };
            match section_name.as_str() {
                "hosts" => self.read_hosts(name, section),
                "vars" => {
                    let vars = self.read_vars(&format!("`vars` of group `{name}`"), section);
                    let location = self.location(section_key);
                    self.parsed.group(name, &location, order).vars.extend(vars);
                }
                "children" => {
                    for (child_key, child_body) in
                        self.mapping_entries(&format!("`children` of group `{name}`"), section)
                    {
                        if let Some(child) = self.key_text(&child_key) {
                            self.read_group(&child, &child_key, &child_body, Some(name));
                        }
                    }
                }
                other => {
                    let hint = match closest(other, ["hosts", "vars", "children"]) {
                        Some(suggestion) => format!("did you mean `{suggestion}`?"),
                        None => "a group has only `hosts`, `vars` and `children`".to_string(),
                    };
                    let at = self.location(section_key);
                    self.parsed.error(
                        at,
                        Problem::with_hint(
                            format!("unknown key `{other}` in group `{name}`"),
                            hint,
                        ),
                    );
                }
            }
        }
    }

    /// The entries of a mapping (empty for `~`); anything else is an error.
    fn mapping_entries(&mut self, what: &str, node: &Node) -> Vec<(Node, Node)> {
        match &node.value {
            NodeValue::Mapping(entries) => entries.clone(),
            NodeValue::Scalar(_, Value::Null) => Vec::new(),
            _ => {
                let at = self.location(node);
                self.parsed.error(
                    at,
                    Problem::with_hint(
                        format!("{what} must be a mapping"),
                        "write one `name:` per line, indented under it",
                    ),
                );
                Vec::new()
            }
        }
    }

    fn read_hosts(&mut self, group: &str, node: &Node) {
        for (host_key, host_body) in
            self.mapping_entries(&format!("`hosts` of group `{group}`"), node)
        {
            let Some(pattern) = self.key_text(&host_key) else {
                continue;
            };
            let vars = self.read_vars(&format!("host `{pattern}`"), &host_body);
            let location = self.location(&host_key);
            let order = self.next_order();
            let line = HostLine {
                pattern,
                location: location.clone(),
                order,
                vars,
            };
            self.parsed.group(group, &location, order).hosts.push(line);
        }
    }

    fn read_vars(&mut self, what: &str, node: &Node) -> Vec<Var> {
        let mut vars = Vec::new();
        for (name_key, value) in self.mapping_entries(what, node) {
            let Some(name) = self.key_text(&name_key) else {
                continue;
            };
            vars.push(Var {
                name,
                value: to_json(&value),
                location: self.location(&value),
            });
        }
        vars
    }
}

/// A node as a variable value: mappings keep their key order, keys become text.
fn to_json(node: &Node) -> Value {
    match &node.value {
        NodeValue::Scalar(_, value) => value.clone(),
        NodeValue::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        NodeValue::Mapping(entries) => Value::Object(
            entries
                .iter()
                .map(|(key, value)| {
                    let key = match &key.value {
                        NodeValue::Scalar(text, _) => text.clone(),
                        _ => to_json(key).to_string(),
                    };
                    (key, to_json(value))
                })
                .collect(),
        ),
    }
}
