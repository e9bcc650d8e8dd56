//! Choice fields that may be templates (`state = "{{ desired_state }}"`), and loops.
//!
//! A choice field holds either its typed value (checked by serde when the policy is read) or
//! a template the agent renders and then checks against the same choices, with the same
//! message [`choice_problem`] gives `mop validate` for a literal.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::resource::{ArchiveFormat, MountState, PackageState, Presence, ServiceState};

/// A value that is one of a fixed set, as the policy spells it.
pub trait ChoiceValue: Sized + Copy + Default {
    /// Every spelling, in documentation order.
    const CHOICES: &'static [&'static str];
    /// The value written `text`, if it is one of [`ChoiceValue::CHOICES`].
    fn from_choice(text: &str) -> Option<Self>;
    /// How the policy spells this value.
    fn as_choice(self) -> &'static str;
}

/// The message for a value that is not one of `choices`: the same text for a literal at
/// validate time and for a rendered template on the host.
pub fn choice_problem(field: &str, value: &str, choices: &[&str]) -> String {
    let listed: Vec<String> = choices.iter().map(|choice| format!("`{choice}`")).collect();
    format!(
        "field `{field}`: invalid value `{value}`, expected one of {}",
        listed.join(", ")
    )
}

/// Whether `text` holds template syntax (then the agent renders it).
pub fn is_template_text(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// A choice field: its value, or a template rendered (and checked) by the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Templated<T> {
    Value(T),
    Template(String),
}

impl<T: Default> Default for Templated<T> {
    fn default() -> Self {
        Templated::Value(T::default())
    }
}

impl<T: ChoiceValue> Templated<T> {
    /// The value. A template not rendered yet reads as the default: the agent renders every
    /// choice before a resource runs, and the policy checks that look at a choice (an absent
    /// file has no content...) only apply to literals, see [`Templated::literal`].
    pub fn resolved(&self) -> T {
        match self {
            Templated::Value(value) => *value,
            Templated::Template(_) => T::default(),
        }
    }

    /// The value when written literally.
    pub fn literal(&self) -> Option<T> {
        match self {
            Templated::Value(value) => Some(*value),
            Templated::Template(_) => None,
        }
    }

    /// Turns a rendered template into the value, or the message naming the field.
    pub fn from_rendered(field: &str, rendered: &str) -> Result<T, String> {
        let trimmed = rendered.trim();
        T::from_choice(trimmed).ok_or_else(|| choice_problem(field, trimmed, T::CHOICES))
    }
}

impl<T: ChoiceValue> From<T> for Templated<T> {
    fn from(value: T) -> Self {
        Templated::Value(value)
    }
}

impl<T: ChoiceValue + Serialize> Serialize for Templated<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Templated::Value(value) => value.serialize(serializer),
            Templated::Template(text) => serializer.serialize_str(text),
        }
    }
}

impl<'de, T: ChoiceValue + Deserialize<'de>> Deserialize<'de> for Templated<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = serde_json::Value::deserialize(deserializer)?;
        if let serde_json::Value::String(text) = &raw {
            if is_template_text(text) {
                return Ok(Templated::Template(text.clone()));
            }
            // serde's own message for a bad variant lists the choices in its own words; this
            // one is the message the agent gives for a rendered value.
            return T::from_choice(text).map(Templated::Value).ok_or_else(|| {
                let listed: Vec<String> = T::CHOICES
                    .iter()
                    .map(|choice| format!("`{choice}`"))
                    .collect();
                serde::de::Error::custom(format!(
                    "invalid value `{text}`, expected one of {}",
                    listed.join(", ")
                ))
            });
        }
        T::deserialize(raw)
            .map(Templated::Value)
            .map_err(serde::de::Error::custom)
    }
}

macro_rules! choice_enum {
    ($type:ty, $($variant:ident = $spelling:literal),+ $(,)?) => {
        impl ChoiceValue for $type {
            const CHOICES: &'static [&'static str] = &[$($spelling),+];
            fn from_choice(text: &str) -> Option<Self> {
                match text {
                    $($spelling => Some(<$type>::$variant),)+
                    _ => None,
                }
            }
            fn as_choice(self) -> &'static str {
                match self {
                    $(<$type>::$variant => $spelling,)+
                }
            }
        }
    };
}

choice_enum!(Presence, Present = "present", Absent = "absent");
choice_enum!(
    MountState,
    Mounted = "mounted",
    Unmounted = "unmounted",
    Present = "present",
    Absent = "absent"
);
choice_enum!(
    ArchiveFormat,
    Tar = "tar",
    TarGz = "tar.gz",
    TarXz = "tar.xz",
    Zip = "zip"
);
choice_enum!(
    PackageState,
    Present = "present",
    Absent = "absent",
    Latest = "latest"
);
choice_enum!(
    ServiceState,
    Started = "started",
    Stopped = "stopped",
    Restarted = "restarted",
    Reloaded = "reloaded"
);

impl ChoiceValue for bool {
    const CHOICES: &'static [&'static str] = &["true", "false"];
    fn from_choice(text: &str) -> Option<Self> {
        // minijinja renders booleans `true`/`false`, Python-style code `True`/`False`.
        match text {
            "true" | "True" => Some(true),
            "false" | "False" => Some(false),
            _ => None,
        }
    }
    fn as_choice(self) -> &'static str {
        if self {
            "true"
        } else {
            "false"
        }
    }
}

/// What a resource loops over: the items written in the policy (strings in them are
/// templates), or an expression the agent evaluates (a list, or a map iterated as
/// `{key, value}` items).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum LoopSource {
    Items(Vec<serde_json::Value>),
    Expression(String),
}

impl<'de> Deserialize<'de> for LoopSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // By hand: an untagged enum's error says nothing about what was expected.
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Array(items) => Ok(LoopSource::Items(items)),
            serde_json::Value::String(text) => Ok(LoopSource::Expression(text)),
            other => Err(serde::de::Error::custom(format!(
                "expected a list or a \"{{{{ expression }}}}\" string, found {}",
                match other {
                    serde_json::Value::Null => "nothing",
                    serde_json::Value::Bool(_) => "a boolean",
                    serde_json::Value::Number(_) => "a number",
                    _ => "a table",
                }
            ))),
        }
    }
}

/// The name a loop's item has unless `loop_var` renames it.
pub const DEFAULT_LOOP_VAR: &str = "item";

/// The names a looped resource sees besides its item: 1-based and 0-based positions.
pub const LOOP_INDEX_VARS: &[&str] = &["loop_index", "loop_index0"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_literals_and_bad_values() {
        let parsed: Templated<Presence> =
            serde_json::from_value("{{ wanted }}".into()).expect("template");
        assert_eq!(parsed, Templated::Template("{{ wanted }}".into()));
        let parsed: Templated<Presence> = serde_json::from_value("absent".into()).expect("ok");
        assert_eq!(parsed.literal(), Some(Presence::Absent));
        let err = serde_json::from_value::<Templated<Presence>>("absnt".into())
            .expect_err("not a choice")
            .to_string();
        assert_eq!(
            err,
            "invalid value `absnt`, expected one of `present`, `absent`"
        );
        let parsed: Templated<bool> = serde_json::from_value(true.into()).expect("bool");
        assert_eq!(parsed.literal(), Some(true));
        assert_eq!(
            Templated::<bool>::from_rendered("enabled", " True "),
            Ok(true)
        );
        assert_eq!(
            Templated::<ServiceState>::from_rendered("state", "runing"),
            Err("field `state`: invalid value `runing`, expected one of `started`, `stopped`, `restarted`, `reloaded`".to_string())
        );
        let json = serde_json::to_value(Templated::Value(PackageState::Latest)).expect("json");
        assert_eq!(json, serde_json::json!("latest"));
    }

    #[test]
    fn choices_match_serde_spellings() {
        fn check<T: ChoiceValue + Serialize>() {
            for choice in T::CHOICES {
                let value = T::from_choice(choice).expect("listed");
                assert_eq!(value.as_choice(), *choice);
                // Booleans serialize as JSON booleans, the others as their spelling.
                let json = serde_json::to_value(value).expect("json");
                assert_eq!(json.to_string().trim_matches('"'), *choice);
            }
        }
        check::<Presence>();
        check::<PackageState>();
        check::<ServiceState>();
        check::<bool>();
    }
}
