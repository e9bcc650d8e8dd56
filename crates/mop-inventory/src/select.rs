//! Choosing hosts with `fnmatch`-style glob patterns over group and host names.

use std::fmt;

use globset::{GlobBuilder, GlobMatcher};
use serde::Serialize;

use crate::error::InventoryError;
use crate::inventory::{Host, Inventory};

/// One glob pattern, with OpsMop's `fnmatch` meaning: `*` matches any run of characters
/// (dots and slashes included), `?` one character, `[...]` / `[!...]` a character class.
/// Case-sensitive. A backslash is an ordinary character.
#[derive(Clone)]
pub struct Pattern {
    text: String,
    matcher: GlobMatcher,
}

impl Pattern {
    pub fn new(text: &str) -> Result<Pattern, InventoryError> {
        if text.is_empty() {
            return Err(InventoryError::InvalidPattern {
                pattern: String::new(),
                message: "empty pattern".into(),
                hint: Some("use `*` to match everything, or leave the pattern out".into()),
            });
        }
        let glob = GlobBuilder::new(text)
            .literal_separator(false)
            .backslash_escape(false)
            .case_insensitive(false)
            .build()
            .map_err(|error| InventoryError::InvalidPattern {
                pattern: text.to_string(),
                message: error.kind().to_string().to_lowercase(),
                hint: None,
            })?;
        Ok(Pattern {
            text: text.to_string(),
            matcher: glob.compile_matcher(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, name: &str) -> bool {
        self.matcher.is_match(name)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.text)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One `groups` + `hosts` filter: patterns within a list are OR-ed, the two lists AND-ed, and
/// an empty list does not filter.
#[derive(Clone, Debug)]
struct Clause {
    groups: Vec<Pattern>,
    hosts: Vec<Pattern>,
}

impl Clause {
    fn admits(&self, host: &Host) -> bool {
        let in_groups = self.groups.is_empty()
            || self
                .groups
                .iter()
                .any(|pattern| host.groups().iter().any(|group| pattern.matches(group)));
        let named = self.hosts.is_empty() || self.hosts.iter().any(|p| p.matches(host.name()));
        in_groups && named
    }
}

/// Which hosts to act on. A host passes when it passes every clause; clauses come from
/// [`Selection::new`] and are combined with [`Selection::and`] (a role's hosts AND the command
/// line's `--limit`).
#[derive(Clone, Debug, Default)]
pub struct Selection {
    clauses: Vec<Clause>,
}

impl Selection {
    /// Every host.
    pub fn all() -> Self {
        Selection::default()
    }

    /// Hosts in a group matching any of `groups` (a group includes its children's hosts)
    /// and named by any of `hosts`. An empty list means no filter on that side.
    pub fn new<S: AsRef<str>>(groups: &[S], hosts: &[S]) -> Result<Self, InventoryError> {
        let compile = |patterns: &[S]| -> Result<Vec<Pattern>, InventoryError> {
            patterns.iter().map(|p| Pattern::new(p.as_ref())).collect()
        };
        let clause = Clause {
            groups: compile(groups)?,
            hosts: compile(hosts)?,
        };
        let clauses = if clause.groups.is_empty() && clause.hosts.is_empty() {
            Vec::new()
        } else {
            vec![clause]
        };
        Ok(Selection { clauses })
    }

    /// Hosts selected by both `self` and `other`.
    pub fn and(mut self, other: Selection) -> Selection {
        self.clauses.extend(other.clauses);
        self
    }

    /// Whether this selection lets every host through.
    pub fn is_all(&self) -> bool {
        self.clauses.is_empty()
    }
}

/// Whether an unmatched pattern was a group or a host pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatternKind {
    Group,
    Host,
}

/// A pattern that matched no name in the whole inventory (probably a typo).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnmatchedPattern {
    pub kind: PatternKind,
    pub pattern: String,
}

impl fmt::Display for UnmatchedPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PatternKind::Group => write!(f, "group pattern `{}` matches no group", self.pattern),
            PatternKind::Host => write!(f, "host pattern `{}` matches no host", self.pattern),
        }
    }
}

/// The outcome of [`Inventory::select`].
#[derive(Clone, Debug)]
pub struct Selected<'a> {
    /// Selected hosts in inventory order.
    pub hosts: Vec<&'a Host>,
    /// Patterns that matched no group or host name at all, in the order given.
    pub unmatched: Vec<UnmatchedPattern>,
}

impl Inventory {
    /// The hosts `selection` picks, in inventory order, and the patterns that matched nothing.
    pub fn select(&self, selection: &Selection) -> Selected<'_> {
        let hosts = self
            .hosts()
            .filter(|host| selection.clauses.iter().all(|clause| clause.admits(host)))
            .collect();
        let mut unmatched = Vec::new();
        for clause in &selection.clauses {
            for pattern in &clause.groups {
                if !self.groups().any(|group| pattern.matches(group.name())) {
                    unmatched.push(UnmatchedPattern {
                        kind: PatternKind::Group,
                        pattern: pattern.text.clone(),
                    });
                }
            }
            for pattern in &clause.hosts {
                if !self.hosts().any(|host| pattern.matches(host.name())) {
                    unmatched.push(UnmatchedPattern {
                        kind: PatternKind::Host,
                        pattern: pattern.text.clone(),
                    });
                }
            }
        }
        let mut seen = Vec::new();
        unmatched.retain(|pattern| {
            let fresh = !seen.contains(pattern);
            if fresh {
                seen.push(pattern.clone());
            }
            fresh
        });
        Selected { hosts, unmatched }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_edge_cases() {
        let matches =
            |pattern: &str, name: &str| Pattern::new(pattern).expect(pattern).matches(name);
        assert!(matches("*", "web1.example.com"));
        assert!(matches("web**", "web1.example.com"));
        assert!(matches("**.com", "a.b.com"));
        assert!(matches("a*b*c", "a.x/b-c"));
        assert!(matches("web[0-9].*", "web7.example.com"));
        assert!(matches("{web,db}1.*", "db1.example.com"));
        assert!(
            matches("a\\b", "a\\b"),
            "backslash is literal, as in fnmatch"
        );
        assert!(!matches("WEB*", "web1"));
    }
}
