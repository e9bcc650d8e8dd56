//! Variable names and values: TOML to JSON conversion, descriptions for messages, `-e KEY=VALUE`.

use serde_json::Value;

use crate::error::InventoryError;
use crate::magic;

/// A message and optional hint, before a location or label is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl Problem {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn with_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
}

/// Variable names are what templates refer to: ASCII letters, digits and `_`, not starting with
/// a digit.
pub(crate) fn check_var_name(name: &str) -> Result<(), Problem> {
    let mut chars = name.chars();
    let valid = match chars.next() {
        Some(first) => {
            (first.is_ascii_alphabetic() || first == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    };
    if valid {
        Ok(())
    } else if name.is_empty() {
        Err(Problem::with_hint(
            "missing variable name",
            "write `name=value`",
        ))
    } else {
        let suggestion: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        Err(Problem::with_hint(
            format!("invalid variable name `{name}`"),
            format!(
                "names use ASCII letters, digits and `_` and do not start with a digit (templates \
                 refer to them by name), e.g. `{suggestion}`"
            ),
        ))
    }
}

/// "string \"abc\"", "integer 3", "table", ... for error messages; secrets show only their type.
pub(crate) fn describe(value: &Value, secret: bool) -> String {
    let kind = match value {
        Value::Null => return "nothing".into(),
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => return "an array".into(),
        Value::Object(_) => return "a table".into(),
    };
    if secret {
        let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        return format!("{article} {kind}");
    }
    let shown = match value {
        Value::String(text) => format!("{text:?}"),
        other => other.to_string(),
    };
    format!("{kind} {shown}")
}

/// A TOML value as JSON. Datetimes become their TOML text; NaN and infinite floats are refused
/// because JSON (and templates fed from it) cannot hold them.
pub(crate) fn toml_value_to_json(value: &toml_edit::Value) -> Result<Value, TomlConversionError> {
    Ok(match value {
        toml_edit::Value::String(text) => Value::String(text.value().clone()),
        toml_edit::Value::Integer(number) => Value::from(*number.value()),
        toml_edit::Value::Float(number) => {
            let float = *number.value();
            match serde_json::Number::from_f64(float) {
                Some(number) => Value::Number(number),
                None => {
                    return Err(TomlConversionError {
                        problem: Problem::with_hint(
                            format!("float `{float}` cannot be used as a variable value"),
                            "variables become JSON for templates, which has no NaN or infinity; \
                             use a string",
                        ),
                        span: value.span(),
                    })
                }
            }
        }
        toml_edit::Value::Boolean(flag) => Value::Bool(*flag.value()),
        toml_edit::Value::Datetime(datetime) => Value::String(datetime.value().to_string()),
        toml_edit::Value::Array(array) => Value::Array(
            array
                .iter()
                .map(toml_value_to_json)
                .collect::<Result<_, _>>()?,
        ),
        toml_edit::Value::InlineTable(table) => {
            let mut object = serde_json::Map::new();
            for (key, item) in table.iter() {
                object.insert(key.to_string(), toml_value_to_json(item)?);
            }
            Value::Object(object)
        }
    })
}

/// [`toml_value_to_json`] for any item, including `[table]` sections and `[[arrays]]`.
pub(crate) fn toml_item_to_json(item: &toml_edit::Item) -> Result<Value, TomlConversionError> {
    Ok(match item {
        toml_edit::Item::None => Value::Null,
        toml_edit::Item::Value(value) => toml_value_to_json(value)?,
        toml_edit::Item::Table(table) => {
            let mut object = serde_json::Map::new();
            for (key, item) in table.iter() {
                object.insert(key.to_string(), toml_item_to_json(item)?);
            }
            Value::Object(object)
        }
        toml_edit::Item::ArrayOfTables(tables) => Value::Array(
            tables
                .iter()
                .map(|table| toml_item_to_json(&toml_edit::Item::Table(table.clone())))
                .collect::<Result<_, _>>()?,
        ),
    })
}

#[derive(Debug)]
pub(crate) struct TomlConversionError {
    pub(crate) problem: Problem,
    pub(crate) span: Option<std::ops::Range<usize>>,
}

/// Parses one `-e KEY=VALUE` argument.
///
/// VALUE is read as a TOML value when it is one (`8080`, `true`, `"x"`, `[1, 2]`,
/// `{ a = 1 }`), and kept as a plain string otherwise (`hello world`, empty). Magic variables
/// (`mop_*`) are read like host shorthand instead, so `mop_ssh_username=1000` is the string
/// `"1000"` and `mop_port=2222` is checked to be a port.
pub fn parse_extra_var(input: &str) -> Result<(String, Value), InventoryError> {
    let Some((name, raw_value)) = input.split_once('=') else {
        return Err(InventoryError::ExtraVar {
            name: input.to_string(),
            message: "expected `KEY=VALUE`".into(),
            hint: Some("for example `-e app_port=8080` or `-e 'motd=\"hello\"'`".into()),
        });
    };
    let extra_var_error = |problem: Problem| InventoryError::ExtraVar {
        name: name.to_string(),
        message: problem.message,
        hint: problem.hint,
    };
    check_var_name(name).map_err(extra_var_error)?;
    if let Some(magic_var) = magic::check_reserved(name).map_err(extra_var_error)? {
        let value = magic::coerce_text(magic_var, raw_value, magic::TextOrigin::ExtraVar)
            .map_err(extra_var_error)?;
        return Ok((name.to_string(), value));
    }
    let value = match raw_value.parse::<toml_edit::Value>() {
        Ok(parsed) => toml_value_to_json(&parsed).unwrap_or_else(|_| Value::from(raw_value)),
        Err(_) => Value::from(raw_value),
    };
    Ok((name.to_string(), value))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn extra(input: &str) -> Value {
        parse_extra_var(input)
            .unwrap_or_else(|error| panic!("{input:?}: {error}"))
            .1
    }

    #[test]
    fn extra_values_are_toml_when_they_parse() {
        assert_eq!(extra("app_port=8080"), json!(8080));
        assert_eq!(extra("debug=true"), json!(true));
        assert_eq!(extra("ratio=1.5"), json!(1.5));
        assert_eq!(extra("name=\"x y\""), json!("x y"));
        assert_eq!(extra("list=[1, \"a\"]"), json!([1, "a"]));
        assert_eq!(extra("t={ a = 1, b = \"c\" }"), json!({"a": 1, "b": "c"}));
        assert_eq!(extra("day=2024-05-01"), json!("2024-05-01"));
    }

    #[test]
    fn extra_values_fall_back_to_strings() {
        assert_eq!(extra("motd=hello world"), json!("hello world"));
        assert_eq!(extra("empty="), json!(""));
        assert_eq!(extra("url=http://x/?a=b"), json!("http://x/?a=b"));
        assert_eq!(extra("unclosed=[1, 2"), json!("[1, 2"));
        assert_eq!(extra("not_a_number=nan"), json!("nan"));
    }

    #[test]
    fn magic_extra_values_are_coerced_like_shorthand() {
        assert_eq!(extra("mop_port=2222"), json!(2222));
        assert_eq!(extra("mop_sudo=true"), json!(true));
        assert_eq!(extra("mop_ssh_username=1000"), json!("1000"));
        assert_eq!(extra("mop_check_host_keys=accept-new"), json!("accept-new"));
    }

    #[test]
    fn bad_extra_vars_are_errors() {
        let message = |input: &str| parse_extra_var(input).expect_err(input).to_string();
        assert_eq!(
            message("novalue"),
            "invalid extra variable `novalue`: expected `KEY=VALUE`\n  hint: for example \
             `-e app_port=8080` or `-e 'motd=\"hello\"'`"
        );
        assert!(message("app-port=1").contains("invalid variable name `app-port`"));
        assert_eq!(
            message("mop_port=abc"),
            "invalid extra variable `mop_port`: magic variable `mop_port` must be an integer \
             between 1 and 65535, found string \"abc\""
        );
        assert!(message("mop_prot=22").contains("did you mean `mop_port`"));
    }

    #[test]
    fn descriptions_hide_secret_values() {
        assert_eq!(describe(&json!("abc"), false), "string \"abc\"");
        assert_eq!(describe(&json!(3), false), "integer 3");
        assert_eq!(describe(&json!(1.5), false), "float 1.5");
        assert_eq!(describe(&json!(1234), true), "an integer");
        assert_eq!(describe(&json!([1]), false), "an array");
    }

    #[test]
    fn variable_names() {
        assert!(check_var_name("app_port").is_ok());
        assert!(check_var_name("_x9").is_ok());
        assert!(check_var_name("9x").is_err());
        assert!(check_var_name("a-b").is_err());
        assert!(check_var_name("").is_err());
        assert!(check_var_name("ü").is_err());
    }
}
