//! The JSON a dynamic inventory script prints for `--list`: groups (`hosts`, `vars`,
//! `children`, or just a list of hosts) and `_meta.hostvars`.
//!
//! The output has no lines worth pointing at: places name the script (line 0), and every
//! message names the group or host.

use serde_json::{Map, Value};

use crate::error::Location;
use crate::value::Problem;

use super::{HostLine, Parsed, Var};

pub(crate) fn parse(name: &str, text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let place = Location {
        file: name.to_string(),
        line: 0,
        column: 0,
    };
    let root: Value = match serde_json::from_str(text) {
        Ok(root) => root,
        Err(error) => {
            parsed.error(
                place,
                Problem::with_hint(
                    format!("`--list` printed invalid JSON: {error}"),
                    "a dynamic inventory script prints Ansible's `--list` JSON on stdout, and \
                     nothing else",
                ),
            );
            return parsed;
        }
    };
    let Value::Object(root) = root else {
        parsed.error(
            place,
            Problem::new("`--list` must print a JSON object of groups"),
        );
        return parsed;
    };
    let mut order = 0;
    let mut saw_meta = false;
    for (key, body) in &root {
        if key == "_meta" {
            saw_meta = true;
            read_meta(&mut parsed, &place, body);
            continue;
        }
        order += 1;
        parsed.group(key, &place, order);
        match body {
            // `"web": ["web1", "web2"]`: the short form, hosts only.
            Value::Array(hosts) => {
                for host in hosts {
                    order += 1;
                    add_host(&mut parsed, &place, key, host, order);
                }
            }
            Value::Object(sections) => {
                for (section, value) in sections {
                    match (section.as_str(), value) {
                        ("hosts", Value::Array(hosts)) => {
                            for host in hosts {
                                order += 1;
                                add_host(&mut parsed, &place, key, host, order);
                            }
                        }
                        ("vars", Value::Object(vars)) => {
                            let vars = to_vars(&place, vars);
                            parsed.group(key, &place, order).vars.extend(vars);
                        }
                        ("children", Value::Array(children)) => {
                            for child in children {
                                match child.as_str() {
                                    Some(child) => parsed
                                        .group(key, &place, order)
                                        .children
                                        .push((child.to_string(), place.clone())),
                                    None => parsed.error(
                                        place.clone(),
                                        Problem::new(format!(
                                            "group `{key}`: `children` must list group names, \
                                             found {child}"
                                        )),
                                    ),
                                }
                            }
                        }
                        ("hosts" | "children", _) => parsed.error(
                            place.clone(),
                            Problem::new(format!("group `{key}`: `{section}` must be a list")),
                        ),
                        ("vars", _) => parsed.error(
                            place.clone(),
                            Problem::new(format!("group `{key}`: `vars` must be an object")),
                        ),
                        (other, _) => parsed.error(
                            place.clone(),
                            Problem::with_hint(
                                format!("group `{key}`: unknown key `{other}`"),
                                "a group has only `hosts`, `vars` and `children`",
                            ),
                        ),
                    }
                }
            }
            other => parsed.error(
                place.clone(),
                Problem::new(format!(
                    "group `{key}` must be an object or a list of hosts, found {}",
                    kind(other)
                )),
            ),
        }
    }
    if !saw_meta {
        parsed.error(
            place,
            Problem::with_hint(
                "`--list` printed no `_meta.hostvars`",
                "mop does not call the script with `--host` for each host: print \
                 `\"_meta\": {\"hostvars\": {...}}` (an empty object if there are none)",
            ),
        );
    }
    parsed
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn add_host(parsed: &mut Parsed, place: &Location, group: &str, host: &Value, order: usize) {
    match host.as_str() {
        Some(pattern) => {
            let line = HostLine {
                pattern: pattern.to_string(),
                location: place.clone(),
                order,
                vars: Vec::new(),
            };
            parsed.group(group, place, order).hosts.push(line);
        }
        None => parsed.error(
            place.clone(),
            Problem::new(format!(
                "group `{group}`: `hosts` must list host names, found {}",
                kind(host)
            )),
        ),
    }
}

fn to_vars(place: &Location, vars: &Map<String, Value>) -> Vec<Var> {
    vars.iter()
        .map(|(name, value)| Var {
            name: name.clone(),
            value: value.clone(),
            location: place.clone(),
        })
        .collect()
}

fn read_meta(parsed: &mut Parsed, place: &Location, meta: &Value) {
    let host_vars = match meta.get("hostvars") {
        Some(Value::Object(host_vars)) => host_vars,
        _ => {
            parsed.error(
                place.clone(),
                Problem::new("`_meta` must hold `hostvars`, an object of host name to variables"),
            );
            return;
        }
    };
    for (host, vars) in host_vars {
        match vars {
            Value::Object(vars) => {
                let vars = to_vars(place, vars);
                parsed.host_vars.push((host.clone(), place.clone(), vars));
            }
            other => parsed.error(
                place.clone(),
                Problem::new(format!(
                    "`_meta.hostvars` of host `{host}` must be an object, found {}",
                    kind(other)
                )),
            ),
        }
    }
}
