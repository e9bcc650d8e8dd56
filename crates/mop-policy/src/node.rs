//! A TOML document as a tree that remembers where every key and value sits in its file.
//!
//! `toml::Value` forgets positions, and serde errors from flattened structs carry none, so the
//! loader first reads each file into this tree (through `toml::Spanned`, which keeps byte
//! ranges for every key and value) and then walks it, converting pieces into typed values and
//! pointing errors at the exact key or value that caused them.

use std::fmt;
use std::ops::Range;

use indexmap::IndexMap;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

/// A value and the byte range it occupies in its file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub span: Range<usize>,
    pub value: Value,
}

/// A TOML value whose children keep their positions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Array(Vec<Node>),
    Table(Table),
}

/// A TOML table in document order.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Table {
    pub entries: IndexMap<String, Entry>,
}

/// One `key = value` of a table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub key_span: Range<usize>,
    pub value: Node,
}

impl Value {
    /// How the value's type is called in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }

    /// The same value without positions, for handing to serde or to templates.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::String(text) => serde_json::Value::String(text.clone()),
            Value::Integer(number) => serde_json::Value::from(*number),
            Value::Float(number) => serde_json::Number::from_f64(*number)
                .map(serde_json::Value::Number)
                // NaN and infinities have no JSON form; a string keeps them visible.
                .unwrap_or_else(|| serde_json::Value::String(number.to_string())),
            Value::Boolean(flag) => serde_json::Value::Bool(*flag),
            Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(|item| item.value.to_json()).collect())
            }
            Value::Table(table) => serde_json::Value::Object(table.to_json()),
        }
    }
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        self.entries
            .iter()
            .map(|(key, entry)| (key.clone(), entry.value.value.to_json()))
            .collect()
    }
}

/// Parses a whole document. Errors are toml's, with the byte range toml gives.
pub(crate) fn parse_document(text: &str) -> Result<Table, toml::de::Error> {
    toml::from_str::<Table>(text)
}

impl<'de> Deserialize<'de> for Table {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_map(ValueVisitor)? {
            Value::Table(table) => Ok(table),
            other => Err(de::Error::custom(format!(
                "expected a table, found {}",
                other.type_name()
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a TOML value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Boolean(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Integer(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        i64::try_from(value)
            .map(Value::Integer)
            .map_err(|_| E::custom(format!("integer {value} is too large")))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Ok(Value::Float(value))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_string()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(node_from_spanned(item));
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut table = Table::default();
        loop {
            // Every real TOML key accepts `Spanned`; only toml's private datetime wrapper does
            // not, so a failure here means the value is a datetime.
            let key = match map.next_key::<Spanned<String>>() {
                Ok(Some(key)) => key,
                Ok(None) => break,
                Err(_) => return Err(de::Error::custom(
                    "TOML dates and times are not supported: quote the value to make it a string",
                )),
            };
            let value = map.next_value::<Spanned<Value>>()?;
            let key_span = key.span();
            table.entries.insert(
                key.into_inner(),
                Entry {
                    key_span,
                    value: node_from_spanned(value),
                },
            );
        }
        Ok(Value::Table(table))
    }
}

fn node_from_spanned(spanned: Spanned<Value>) -> Node {
    let span = spanned.span();
    Node {
        span,
        value: spanned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_keep_their_spans() {
        let text = "a = 1\n[[roles]]\nname = \"web\"\n[[roles.resources]]\ntype = \"file\"\n";
        let table = parse_document(text).expect("valid toml");
        let a = table.get("a").expect("a");
        assert_eq!(&text[a.key_span.clone()], "a");
        assert_eq!(&text[a.value.span.clone()], "1");
        let Value::Array(roles) = &table.get("roles").expect("roles").value.value else {
            panic!("roles is an array");
        };
        let Value::Table(role) = &roles[0].value else {
            panic!("a role is a table");
        };
        let name = role.get("name").expect("name");
        assert_eq!(&text[name.key_span.clone()], "name");
        assert_eq!(&text[name.value.span.clone()], "\"web\"");
        let Value::Array(resources) = &role.get("resources").expect("resources").value.value else {
            panic!("resources is an array");
        };
        assert!(text[resources[0].span.clone()].starts_with("[[roles.resources]]"));
        assert!(text[roles[0].span.clone()].starts_with("[[roles]]"));
    }

    #[test]
    fn datetimes_are_refused_with_a_clear_message() {
        let err = parse_document("when = 1979-05-27\n").expect_err("datetime");
        assert!(
            err.message().contains("dates and times"),
            "{}",
            err.message()
        );
        assert_eq!(err.span(), Some(7..17));
    }
}
