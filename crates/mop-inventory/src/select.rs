//! Choosing hosts with pattern expressions over group and host names: `fnmatch`-style globs
//! combined with Ansible's pattern algebra (`a:b` union, `&a` intersection, `!a` exclusion).

use std::fmt;

use globset::{GlobBuilder, GlobMatcher};
use serde::Serialize;

use crate::error::{closest, InventoryError};
use crate::grammar::describe_char;
use crate::inventory::{Host, Inventory, ALL_GROUP};

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

/// How a term combines with the others of its expression (Ansible's meaning: the union of
/// the plain terms, intersected with each `&` term, minus each `!` term, in any order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    Union,
    Intersect,
    Exclude,
}

/// One term of an expression: `web*`, `&dc1` or `!web2`.
#[derive(Clone, Debug)]
struct Term {
    operator: Operator,
    /// As written, prefix included: how errors name it.
    written: String,
    pattern: Pattern,
}

impl Term {
    /// `all` means every host wherever a pattern is accepted, as in Ansible.
    fn is_all(&self) -> bool {
        self.pattern.as_str() == ALL_GROUP
    }
}

/// What the terms of an expression are matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatternKind {
    /// Group names (a group includes its children's hosts): role `groups`, `--limit-groups`.
    Group,
    /// Host names: role `hosts`, `--limit-hosts`.
    Host,
    /// Either: an ad hoc TARGET.
    GroupOrHost,
}

/// A parsed pattern expression of one kind: its terms, from one or several list items.
#[derive(Clone, Debug)]
struct Expression {
    kind: PatternKind,
    terms: Vec<Term>,
}

impl Expression {
    fn parse<S: AsRef<str>>(items: &[S], kind: PatternKind) -> Result<Self, InventoryError> {
        let mut terms = Vec::new();
        for item in items {
            for piece in split_terms(item.as_ref()) {
                terms.push(parse_term(piece, item.as_ref())?);
            }
        }
        Ok(Expression { kind, terms })
    }

    fn term_matches(&self, term: &Term, host: &Host) -> bool {
        if term.is_all() {
            return true;
        }
        let by_group = || {
            host.groups()
                .iter()
                .any(|group| term.pattern.matches(group))
        };
        let by_name = || term.pattern.matches(host.name());
        match self.kind {
            PatternKind::Group => by_group(),
            PatternKind::Host => by_name(),
            PatternKind::GroupOrHost => by_group() || by_name(),
        }
    }

    fn admits(&self, host: &Host) -> bool {
        let mut unions = self
            .terms
            .iter()
            .filter(|term| term.operator == Operator::Union)
            .peekable();
        // Only `&`/`!` terms: they narrow every host, as `--limit-hosts '!web2'` means.
        let in_union = unions.peek().is_none() || unions.any(|term| self.term_matches(term, host));
        in_union
            && self.terms.iter().all(|term| match term.operator {
                Operator::Union => true,
                Operator::Intersect => self.term_matches(term, host),
                Operator::Exclude => !self.term_matches(term, host),
            })
    }
}

/// Splits an item at `:` and `,` outside `[...]` and `{...}`, where a comma is part of the glob.
fn split_terms(item: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (at, c) in item.char_indices() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth = depth.saturating_sub(1),
            ':' | ',' if depth == 0 => {
                pieces.push(&item[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    pieces.push(&item[start..]);
    pieces
}

/// A name as a glob that matches exactly it: each glob character in a class of its own.
fn glob_escape(name: &str) -> String {
    let mut escaped = String::with_capacity(name.len());
    for ch in name.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '{' | '}') {
            escaped.push('[');
            escaped.push(ch);
            escaped.push(']');
        } else {
            escaped.push(ch);
        }
    }
    escaped
}

/// Characters a term may hold: host name characters and glob syntax, nothing a shell, an
/// ssh_config or a terminal would read specially (terms are echoed in errors and hints).
fn is_pattern_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '_' | '.' | '*' | '?' | '[' | ']' | '{' | '}' | '!' | ','
        )
}

fn parse_term(piece: &str, item: &str) -> Result<Term, InventoryError> {
    let invalid = |message: String, hint: Option<&str>| InventoryError::InvalidPattern {
        pattern: printable(item),
        message,
        hint: hint.map(str::to_string),
    };
    if let Some(c) = piece.chars().find(|c| !is_pattern_char(*c) && *c != '&') {
        return Err(invalid(
            format!("it contains {}", describe_char(c)),
            Some("patterns are made of letters, digits, `-`, `_`, `.`, glob characters `*?[]{}`, and `:`, `&`, `!` between terms"),
        ));
    }
    let (operator, body) = match piece.chars().next() {
        Some('!') => (Operator::Exclude, &piece[1..]),
        Some('&') => (Operator::Intersect, &piece[1..]),
        _ => (Operator::Union, piece),
    };
    if body.is_empty() {
        return Err(invalid(
            if piece.is_empty() {
                "empty term".to_string()
            } else {
                format!("`{piece}` has no pattern after its operator")
            },
            Some("separate terms with single `:` or `,`, e.g. `web:&dc1:!web2`; use `*` to match everything"),
        ));
    }
    if body.contains('&') || body.starts_with('!') {
        return Err(invalid(
            format!("term `{piece}` has more than one operator or an operator inside it"),
            Some("`&` and `!` go first in a term, once: `&dc1`, `!web2`"),
        ));
    }
    let pattern = Pattern::new(body).map_err(|error| match error {
        InventoryError::InvalidPattern { message, hint, .. } => InventoryError::InvalidPattern {
            pattern: printable(item),
            message: if piece == item {
                message
            } else {
                format!("term `{piece}`: {message}")
            },
            hint,
        },
        other => other,
    })?;
    Ok(Term {
        operator,
        written: piece.to_string(),
        pattern,
    })
}

/// The pattern as it may be printed: control and non-ASCII characters escaped, so an error
/// cannot write terminal escapes.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                vec![c]
            } else {
                c.escape_unicode().collect()
            }
        })
        .collect()
}

/// Which hosts to act on. A host passes when it passes every expression; expressions come
/// from [`Selection::new`] or [`Selection::target`] and are combined with [`Selection::and`]
/// (a role's hosts AND the command line's `--limit`).
#[derive(Clone, Debug, Default)]
pub struct Selection {
    expressions: Vec<Expression>,
}

impl Selection {
    /// Every host.
    pub fn all() -> Self {
        Selection::default()
    }

    /// Hosts in groups that `groups` selects (a group includes its children's hosts) and
    /// named by what `hosts` selects. Each item is an expression (`web:&dc1:!web2`), the items
    /// of a list are a union. An empty list means no filter on that side.
    pub fn new<S: AsRef<str>>(groups: &[S], hosts: &[S]) -> Result<Self, InventoryError> {
        let mut expressions = Vec::new();
        for (items, kind) in [(groups, PatternKind::Group), (hosts, PatternKind::Host)] {
            let expression = Expression::parse(items, kind)?;
            if !expression.terms.is_empty() {
                expressions.push(expression);
            }
        }
        Ok(Selection { expressions })
    }

    /// [`Selection::new`] plus exact host names (from a retry file), OR-ed with the `hosts`
    /// patterns. Names are not patterns: any character an inventory name may hold is
    /// matched literally, `:` and `!` included.
    pub fn with_host_names<S: AsRef<str>>(
        groups: &[S],
        hosts: &[S],
        names: &[String],
    ) -> Result<Self, InventoryError> {
        let mut selection = Selection::new(groups, hosts)?;
        if names.is_empty() {
            return Ok(selection);
        }
        let mut terms = Vec::with_capacity(names.len());
        for name in names {
            terms.push(Term {
                operator: Operator::Union,
                written: name.clone(),
                pattern: Pattern::new(&glob_escape(name))?,
            });
        }
        match selection
            .expressions
            .iter_mut()
            .find(|expression| expression.kind == PatternKind::Host)
        {
            Some(expression) => expression.terms.extend(terms),
            None => selection.expressions.push(Expression {
                kind: PatternKind::Host,
                terms,
            }),
        }
        Ok(selection)
    }

    /// An ad hoc TARGET: each term matches group names (all their hosts) or host names.
    pub fn target(target: &str) -> Result<Self, InventoryError> {
        let expression = Expression::parse(&[target], PatternKind::GroupOrHost)?;
        Ok(Selection {
            expressions: vec![expression],
        })
    }

    /// Hosts selected by both `self` and `other`.
    pub fn and(mut self, other: Selection) -> Selection {
        self.expressions.extend(other.expressions);
        self
    }

    /// Whether this selection lets every host through.
    pub fn is_all(&self) -> bool {
        self.expressions.is_empty()
    }
}

/// A pattern term that matched no name in the whole inventory (probably a typo).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnmatchedPattern {
    pub kind: PatternKind,
    /// The term as written, with its `&` or `!`.
    pub pattern: String,
    /// `did you mean `web1`?` when a name is close.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl fmt::Display for UnmatchedPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PatternKind::Group => write!(f, "group pattern `{}` matches no group", self.pattern)?,
            PatternKind::Host => write!(f, "host pattern `{}` matches no host", self.pattern)?,
            PatternKind::GroupOrHost => {
                write!(f, "pattern `{}` matches no group or host", self.pattern)?
            }
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// The outcome of [`Inventory::select`].
#[derive(Clone, Debug)]
pub struct Selected<'a> {
    /// Selected hosts in inventory order.
    pub hosts: Vec<&'a Host>,
    /// Terms that matched no group or host name at all, in the order given.
    pub unmatched: Vec<UnmatchedPattern>,
}

impl Inventory {
    /// The hosts `selection` picks, in inventory order, and the terms that matched nothing.
    pub fn select(&self, selection: &Selection) -> Selected<'_> {
        let hosts = self
            .hosts()
            .filter(|host| {
                selection
                    .expressions
                    .iter()
                    .all(|expression| expression.admits(host))
            })
            .collect();
        let mut unmatched: Vec<UnmatchedPattern> = Vec::new();
        for expression in &selection.expressions {
            for term in &expression.terms {
                if term.is_all() || self.term_matches_a_name(expression.kind, &term.pattern) {
                    continue;
                }
                let fresh = UnmatchedPattern {
                    kind: expression.kind,
                    pattern: term.written.clone(),
                    hint: self.suggest(expression.kind, term.pattern.as_str()),
                };
                if !unmatched.contains(&fresh) {
                    unmatched.push(fresh);
                }
            }
        }
        Selected { hosts, unmatched }
    }

    fn term_matches_a_name(&self, kind: PatternKind, pattern: &Pattern) -> bool {
        let group = || self.groups().any(|group| pattern.matches(group.name()));
        let host = || self.hosts().any(|host| pattern.matches(host.name()));
        match kind {
            PatternKind::Group => group(),
            PatternKind::Host => host(),
            PatternKind::GroupOrHost => group() || host(),
        }
    }

    fn suggest(&self, kind: PatternKind, wanted: &str) -> Option<String> {
        let groups = self.groups().map(|group| group.name());
        let hosts = self.hosts().map(|host| host.name());
        let candidates: Vec<&str> = match kind {
            PatternKind::Group => groups.collect(),
            PatternKind::Host => hosts.collect(),
            PatternKind::GroupOrHost => groups.chain(hosts).collect(),
        };
        closest(wanted, candidates).map(|name| format!("did you mean `{name}`?"))
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

    #[test]
    fn terms_split_outside_classes_and_alternatives() {
        assert_eq!(split_terms("web:&dc1:!web2"), ["web", "&dc1", "!web2"]);
        assert_eq!(split_terms("{web,db}1,x"), ["{web,db}1", "x"]);
        assert_eq!(split_terms("a[:,]b"), ["a[:,]b"]);
        assert_eq!(split_terms("a::b"), ["a", "", "b"]);
    }
}
