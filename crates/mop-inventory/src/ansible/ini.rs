//! Ansible's INI inventory: `[group]` host lines, `[group:vars]` and `[group:children]`.
//!
//! Values are text, as in OpsMop's shorthand: magic variables are converted to their type and
//! checked, other variables stay strings (use a YAML or TOML inventory for typed values).

use serde_json::Value;

use crate::error::Location;
use crate::shorthand::parse_shorthand;
use crate::value::Problem;

use super::{HostLine, Parsed, Var};

/// The group Ansible puts hosts in that are listed before any section.
const UNGROUPED: &str = "ungrouped";

enum Section {
    Hosts(String),
    Vars(String),
    Children(String),
}

pub(crate) fn parse(name: &str, text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut section = Section::Hosts(UNGROUPED.to_string());
    let location = |line: usize, byte_column: usize, raw: &str| Location {
        file: name.to_string(),
        line,
        column: raw[..byte_column.min(raw.len())].chars().count() + 1,
    };
    for (line_index, raw) in text.lines().enumerate() {
        let line_number = line_index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        let here = location(line_number, indent, raw);
        if trimmed.starts_with('[') {
            match read_header(trimmed) {
                Ok(next) => {
                    let group_name = match &next {
                        Section::Hosts(group) | Section::Vars(group) | Section::Children(group) => {
                            group.clone()
                        }
                    };
                    parsed.group(&group_name, &here, line_number);
                    section = next;
                }
                Err(problem) => {
                    parsed.error(here, problem);
                    // Lines up to the next header belong to a section we could not read.
                    section = Section::Hosts(String::new());
                }
            }
            continue;
        }
        match &section {
            Section::Hosts(group) if group.is_empty() => {}
            Section::Hosts(group) => {
                let group = group.clone();
                match read_host_line(raw, indent, |byte| location(line_number, byte, raw)) {
                    Ok(vars_and_pattern) => {
                        let (pattern, vars) = vars_and_pattern;
                        let host_line = HostLine {
                            pattern,
                            location: here.clone(),
                            order: line_number,
                            vars,
                        };
                        parsed
                            .group(&group, &here, line_number)
                            .hosts
                            .push(host_line);
                    }
                    Err((byte, problem)) => parsed.error(location(line_number, byte, raw), problem),
                }
            }
            Section::Vars(group) => {
                let group = group.clone();
                match read_var_line(trimmed) {
                    Ok((var_name, value)) => {
                        let var = Var {
                            name: var_name,
                            value: Value::String(value),
                            location: here.clone(),
                        };
                        parsed.group(&group, &here, line_number).vars.push(var);
                    }
                    Err(problem) => parsed.error(here, problem),
                }
            }
            Section::Children(group) => {
                let group = group.clone();
                let child = trimmed.to_string();
                parsed
                    .group(&group, &here, line_number)
                    .children
                    .push((child, here));
            }
        }
    }
    parsed
}

fn read_header(trimmed: &str) -> Result<Section, Problem> {
    let Some(inner) = trimmed
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    else {
        return Err(Problem::with_hint(
            format!("invalid section header `{trimmed}`"),
            "write `[group]`, `[group:vars]` or `[group:children]`",
        ));
    };
    let inner = inner.trim();
    let (group, suffix) = match inner.split_once(':') {
        Some((group, suffix)) => (group.trim(), Some(suffix.trim())),
        None => (inner, None),
    };
    if group.is_empty() {
        return Err(Problem::with_hint(
            format!("section header `{trimmed}` names no group"),
            "write `[group]`, `[group:vars]` or `[group:children]`",
        ));
    }
    match suffix {
        None => Ok(Section::Hosts(group.to_string())),
        Some("vars") => Ok(Section::Vars(group.to_string())),
        Some("children") => Ok(Section::Children(group.to_string())),
        Some(other) => Err(Problem::with_hint(
            format!("unknown section kind `:{other}` in `{trimmed}`"),
            "a section is `[group]`, `[group:vars]` or `[group:children]`",
        )),
    }
}

/// `host_pattern key=value ...  # comment`: the pattern, and the variables with their places.
/// An error carries the byte column of the line it points at.
fn read_host_line(
    raw: &str,
    indent: usize,
    location: impl Fn(usize) -> Location,
) -> Result<(String, Vec<Var>), (usize, Problem)> {
    let content = &raw[..comment_start(raw)];
    let rest_of_line = &content[indent..];
    let pattern_end = rest_of_line
        .find(char::is_whitespace)
        .unwrap_or(rest_of_line.len());
    let pattern = rest_of_line[..pattern_end].to_string();
    let words_start = indent + pattern_end;
    let words = parse_shorthand(&content[words_start..]).map_err(|error| {
        (
            words_start + error.offset,
            Problem {
                message: format!("host `{pattern}`: {}", error.message),
                hint: error.hint,
            },
        )
    })?;
    let vars = words
        .into_iter()
        .map(|word| Var {
            name: word.key,
            value: Value::String(word.value),
            location: location(words_start + word.offset),
        })
        .collect();
    Ok((pattern, vars))
}

/// The byte offset of a `#` comment on a host line: a `#` outside quotes at the start of a
/// word (Ansible splits host lines with comments, like `shlex`).
fn comment_start(raw: &str) -> usize {
    let mut quote: Option<char> = None;
    let mut previous_blank = true;
    let mut escaped = false;
    for (index, c) in raw.char_indices() {
        if escaped {
            escaped = false;
            previous_blank = false;
            continue;
        }
        match (quote, c) {
            (None, '\\') | (Some('"'), '\\') => escaped = true,
            (None, '\'' | '"') => quote = Some(c),
            (Some(open), _) if c == open => quote = None,
            (None, '#') if previous_blank => return index,
            _ => {}
        }
        previous_blank = quote.is_none() && c.is_whitespace();
    }
    raw.len()
}

/// `key=value` in a `[group:vars]` section (spaces around `=` allowed, matching quotes around
/// the value removed, as Ansible's literal parsing does).
fn read_var_line(trimmed: &str) -> Result<(String, String), Problem> {
    let Some((key, value)) = trimmed.split_once('=') else {
        return Err(Problem::with_hint(
            format!("expected `key=value`, found `{trimmed}`"),
            "a `[group:vars]` section holds one `key=value` per line",
        ));
    };
    let value = value.trim();
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|quote| {
            value
                .strip_prefix(*quote)
                .and_then(|inner| inner.strip_suffix(*quote))
                .filter(|_| value.len() >= 2)
        })
        .unwrap_or(value);
    Ok((key.trim().to_string(), unquoted.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_end_host_lines_outside_quotes() {
        assert_eq!(comment_start("web1 a=1 # note"), 9);
        assert_eq!(comment_start("web1 motd='a # b'"), 17);
        assert_eq!(comment_start("web1 tag=a#b"), 12);
    }

    #[test]
    fn var_lines_drop_matching_quotes() {
        let read = |line: &str| read_var_line(line).ok();
        assert_eq!(read("a = 1"), Some(("a".into(), "1".into())));
        assert_eq!(
            read("motd='hi there'"),
            Some(("motd".into(), "hi there".into()))
        );
        assert_eq!(read("x=\""), Some(("x".into(), "\"".into())));
        assert!(read("novalue").is_none());
    }
}
