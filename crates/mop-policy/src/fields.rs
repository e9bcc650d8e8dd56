//! Typed reads of keys from a positioned TOML table, each recording a located error when the
//! value has the wrong type.

use std::ops::Range;

use crate::error::{PolicyError, SourceFile};
use crate::node::{Entry, Node, Table, Value};
use crate::suggest;

/// Reads values out of one file's tree, collecting errors instead of stopping at the first.
pub(crate) struct Reader<'a> {
    pub source: &'a SourceFile,
    pub errors: &'a mut Vec<PolicyError>,
}

impl Reader<'_> {
    pub fn error(
        &mut self,
        offset: usize,
        context: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let origin = self.source.origin(offset);
        self.errors
            .push(PolicyError::at(&origin, context, message).with_hint(hint));
    }

    /// Reports every key of `table` not in `allowed`, at the key itself.
    pub fn check_keys(&mut self, table: &Table, allowed: &[&str], context: &str) {
        self.check_keys_with(table, allowed, context, |_| None);
    }

    /// Like [`Reader::check_keys`]; `misplaced` may explain a key that belongs elsewhere
    /// when no allowed key is a close spelling.
    pub fn check_keys_with(
        &mut self,
        table: &Table,
        allowed: &[&str],
        context: &str,
        misplaced: impl Fn(&str) -> Option<String>,
    ) {
        for (key, entry) in &table.entries {
            if allowed.contains(&key.as_str()) {
                continue;
            }
            let hint =
                suggest::did_you_mean(key, allowed.iter().copied()).or_else(|| misplaced(key));
            self.error(
                entry.key_span.start,
                context,
                format!(
                    "unknown field `{key}`, expected one of {}",
                    suggest::quoted_list(allowed.iter().copied())
                ),
                hint,
            );
        }
    }

    fn wrong_type(&mut self, key: &str, entry: &Entry, expected: &str, context: &str) {
        self.error(
            entry.value.span.start,
            context,
            format!(
                "field `{key}` must be {expected}, found {}",
                entry.value.value.type_name()
            ),
            None,
        );
    }

    pub fn string(
        &mut self,
        table: &Table,
        key: &str,
        context: &str,
    ) -> Option<(String, Range<usize>)> {
        let entry = table.get(key)?;
        match &entry.value.value {
            Value::String(text) => Some((text.clone(), entry.value.span.clone())),
            _ => {
                self.wrong_type(key, entry, "a string", context);
                None
            }
        }
    }

    pub fn boolean(&mut self, table: &Table, key: &str, context: &str) -> Option<bool> {
        let entry = table.get(key)?;
        match &entry.value.value {
            Value::Boolean(flag) => Some(*flag),
            _ => {
                self.wrong_type(key, entry, "`true` or `false`", context);
                None
            }
        }
    }

    /// A string or an array of strings; each string with its span.
    pub fn string_list(
        &mut self,
        table: &Table,
        key: &str,
        context: &str,
    ) -> Option<Vec<(String, Range<usize>)>> {
        let entry = table.get(key)?;
        match &entry.value.value {
            Value::String(text) => Some(vec![(text.clone(), entry.value.span.clone())]),
            Value::Array(items) => {
                let mut strings = Vec::with_capacity(items.len());
                for item in items {
                    match &item.value {
                        Value::String(text) => strings.push((text.clone(), item.span.clone())),
                        other => {
                            let message = format!(
                                "field `{key}` must be a list of strings, found {} in the list",
                                other.type_name()
                            );
                            self.error(item.span.start, context, message, None);
                            return None;
                        }
                    }
                }
                Some(strings)
            }
            _ => {
                self.wrong_type(key, entry, "a string or a list of strings", context);
                None
            }
        }
    }

    pub fn table<'t>(&mut self, table: &'t Table, key: &str, context: &str) -> Option<&'t Table> {
        let entry = table.get(key)?;
        match &entry.value.value {
            Value::Table(inner) => Some(inner),
            _ => {
                self.wrong_type(key, entry, "a table", context);
                None
            }
        }
    }

    /// An array of tables (`[[key]]` or `key = [{...}]`); other items are reported.
    pub fn table_array<'t>(
        &mut self,
        table: &'t Table,
        key: &str,
        context: &str,
    ) -> Vec<(&'t Node, &'t Table)> {
        let Some(entry) = table.get(key) else {
            return Vec::new();
        };
        let Value::Array(items) = &entry.value.value else {
            self.wrong_type(key, entry, "an array of tables", context);
            return Vec::new();
        };
        let mut tables = Vec::with_capacity(items.len());
        for item in items {
            match &item.value {
                Value::Table(inner) => tables.push((item, inner)),
                other => {
                    let message = format!(
                        "each entry of `{key}` must be a table, found {}",
                        other.type_name()
                    );
                    self.error(item.span.start, context, message, None);
                }
            }
        }
        tables
    }
}
