//! Which filters, tests and functions a host-side template uses that the agent does not have.
//!
//! The agent's template engine registers a subset of minijinja's builtins (see
//! `mop_protocol::template_names`); the controller's minijinja has them all, so a template using
//! `dictsort` would compile here and fail on every host. minijinja only looks filters up when it
//! renders, so this is a small lexical scan of the template's `{{ }}` and `{% %}` blocks (string
//! literals and comments skipped): `| name` is a filter, `is [not] name` a test, `{% filter name
//! %}` a filter block, and a call of a builtin function the agent lacks (unless the template
//! defines a macro of that name) is reported too.

use mop_protocol::template_names::{
    OMITTED_FUNCTIONS, TEMPLATE_FILTERS, TEMPLATE_FUNCTIONS, TEMPLATE_TESTS,
};

/// One name the hosts cannot resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unavailable {
    /// `filter`, `test` or `function`.
    pub what: &'static str,
    pub name: String,
    /// Byte offset of the name in the scanned text.
    pub offset: usize,
}

impl Unavailable {
    pub(crate) fn message(&self) -> String {
        format!(
            "{} `{}` is not available on the hosts (the agent's template engine does not have it)",
            self.what, self.name
        )
    }

    pub(crate) fn hint(&self) -> String {
        let available = match self.what {
            "filter" => TEMPLATE_FILTERS,
            "test" => TEMPLATE_TESTS,
            _ => TEMPLATE_FUNCTIONS,
        };
        let extra = match self.name.as_str() {
            "dictsort" => " (`items` iterates a map in key order, as `dictsort` would)",
            _ => "",
        };
        format!(
            "the hosts have the {}s {}{extra}; see docs/reference/policy.md, \"Templates\"",
            self.what,
            available.join(", ")
        )
    }
}

/// The names `text` uses that the agent lacks, in order of appearance, each once.
/// `template` says whether `text` is a template (blocks inside text) or a bare expression.
pub(crate) fn unavailable_names(text: &str, template: bool) -> Vec<Unavailable> {
    let regions = if template {
        template_regions(text)
    } else {
        vec![(0, text.len())]
    };
    let tokens: Vec<Vec<Token>> = regions
        .iter()
        .map(|&(start, end)| tokenize(&text[start..end], start))
        .collect();
    let macros: Vec<&str> = tokens
        .iter()
        .filter_map(|region| match region.as_slice() {
            [Token::Ident { name, .. }, Token::Ident { name: defined, .. }, ..]
                if *name == "macro" || *name == "set" =>
            {
                Some(*defined)
            }
            _ => None,
        })
        .collect();
    let mut found: Vec<Unavailable> = Vec::new();
    let mut report = |what: &'static str, name: &str, offset: usize| {
        if !found
            .iter()
            .any(|seen| seen.what == what && seen.name == name)
        {
            found.push(Unavailable {
                what,
                name: name.to_string(),
                offset,
            });
        }
    };
    for region in &tokens {
        let ident = |index: usize| match region.get(index) {
            Some(Token::Ident { name, offset, .. }) => Some((*name, *offset)),
            _ => None,
        };
        if let Some(("filter", _)) = ident(0) {
            if let Some((name, offset)) = ident(1) {
                if !TEMPLATE_FILTERS.contains(&name) {
                    report("filter", name, offset);
                }
            }
        }
        for (index, token) in region.iter().enumerate() {
            match token {
                Token::Punct('|') => {
                    if let Some((name, offset)) = ident(index + 1) {
                        if !TEMPLATE_FILTERS.contains(&name) {
                            report("filter", name, offset);
                        }
                    }
                }
                Token::Ident {
                    name: "is",
                    after_dot: false,
                    ..
                } => {
                    let next = match ident(index + 1) {
                        Some(("not", _)) => index + 2,
                        _ => index + 1,
                    };
                    if let Some((name, offset)) = ident(next) {
                        if !TEMPLATE_TESTS.contains(&name) {
                            report("test", name, offset);
                        }
                    }
                }
                Token::Ident {
                    name,
                    after_dot: false,
                    offset,
                } if OMITTED_FUNCTIONS.contains(name)
                    && !macros.contains(name)
                    && region.get(index + 1) == Some(&Token::Punct('(')) =>
                {
                    report("function", name, *offset);
                }
                _ => {}
            }
        }
    }
    found
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Ident {
        name: &'a str,
        /// Preceded by `.` (an attribute or method, not a global).
        after_dot: bool,
        offset: usize,
    },
    Punct(char),
}

/// The byte ranges of the insides of `{{ }}` and `{% %}` blocks; comments and `{% raw %}`
/// sections are left out.
fn template_regions(text: &str) -> Vec<(usize, usize)> {
    let mut regions = Vec::new();
    let mut at = 0;
    while let Some(found) = text[at..].find('{') {
        let start = at + found;
        let close = match text[start + 1..].chars().next() {
            Some('{') => "}}",
            Some('%') => "%}",
            Some('#') => "#}",
            _ => {
                at = start + 1;
                continue;
            }
        };
        let inner = start + 2;
        let Some(length) = text[inner..].find(close) else {
            break;
        };
        let end = inner + length;
        at = end + 2;
        if close == "#}" {
            continue;
        }
        if close == "%}" && block_words(&text[inner..end]) == ["raw"] {
            // Everything up to `{% endraw %}` is literal text.
            match find_endraw(&text[at..]) {
                Some(skip) => at += skip,
                None => break,
            }
            continue;
        }
        regions.push((inner, end));
    }
    regions
}

/// Where the `{% endraw %}` block ends, relative to `text`.
fn find_endraw(text: &str) -> Option<usize> {
    let mut at = 0;
    while let Some(found) = text[at..].find("{%") {
        let start = at + found;
        let end = start + 2 + text[start + 2..].find("%}")?;
        if block_words(&text[start + 2..end]) == ["endraw"] {
            return Some(end + 2);
        }
        at = end + 2;
    }
    None
}

/// The words inside a block tag, without its whitespace-control marks (`{%- raw +%}`).
fn block_words(inside: &str) -> Vec<&str> {
    inside
        .trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace())
        .split_whitespace()
        .collect()
}

/// Identifiers and punctuation of an expression; string literals are skipped.
fn tokenize(text: &str, base: usize) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    let mut after_dot = false;
    while let Some((index, c)) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c == '"' || c == '\'' {
            let mut escaped = false;
            for (_, next) in chars.by_ref() {
                if escaped {
                    escaped = false;
                } else if next == '\\' {
                    escaped = true;
                } else if next == c {
                    break;
                }
            }
            after_dot = false;
            tokens.push(Token::Punct('"'));
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let mut end = index + c.len_utf8();
            while let Some(&(next_index, next)) = chars.peek() {
                if next.is_ascii_alphanumeric() || next == '_' {
                    end = next_index + next.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(Token::Ident {
                name: &text[index..end],
                after_dot,
                offset: base + index,
            });
            after_dot = false;
            continue;
        }
        if c.is_ascii_digit() {
            while chars.peek().is_some_and(|&(_, next)| {
                next.is_ascii_alphanumeric() || next == '.' || next == '_'
            }) {
                chars.next();
            }
            after_dot = false;
            continue;
        }
        after_dot = c == '.';
        tokens.push(Token::Punct(c));
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str, template: bool) -> Vec<String> {
        unavailable_names(text, template)
            .into_iter()
            .map(|found| format!("{} {}", found.what, found.name))
            .collect()
    }

    #[test]
    fn finds_what_the_agent_lacks_and_nothing_else() {
        let cases: &[(&str, bool, &[&str])] = &[
            ("plain text | not a filter {x}", true, &[]),
            ("{{ name | upper }}", true, &[]),
            ("{{ ports | dictsort }}", true, &["filter dictsort"]),
            (
                "{{ a|min }} and {{ b | max(1) }}",
                true,
                &["filter min", "filter max"],
            ),
            ("{{ a | join(', ') | round }}", true, &["filter round"]),
            ("{{ 'x | dictsort' ~ \"| round\" }}", true, &[]),
            ("{# {{ x | dictsort }} #}{{ x }}", true, &[]),
            (
                "{% raw %}{{ x | dictsort }}{% endraw %}{{ y | sum }}",
                true,
                &["filter sum"],
            ),
            ("{% if x is divisibleby(3) %}{% endif %}", true, &[]),
            (
                "{% if x is not sameas(y) %}{% endif %}",
                true,
                &["test sameas"],
            ),
            ("{% filter upper %}a{% endfilter %}", true, &[]),
            (
                "{% filter wordwrap %}a{% endfilter %}",
                true,
                &["filter wordwrap"],
            ),
            ("{{ dict(a=1) }}", true, &["function dict"]),
            ("{% macro dict() %}x{% endmacro %}{{ dict() }}", true, &[]),
            ("{{ obj.dict() }} {{ range(3) | list }}", true, &[]),
            (
                "{{ x | dictsort }}{{ y | dictsort }}",
                true,
                &["filter dictsort"],
            ),
            ("x is defined and y | length > 2", false, &[]),
            ("x | abs > 2", false, &["filter abs"]),
            (
                "{{- x | trim -}}{%- if y is odd -%}{%- endif -%}",
                true,
                &[],
            ),
        ];
        for (text, template, expected) in cases {
            assert_eq!(names(text, *template), *expected, "{text}");
        }
    }

    #[test]
    fn offsets_point_at_the_name() {
        let text = "line one\n{{ ports | dictsort }}";
        let found = unavailable_names(text, true);
        assert_eq!(&text[found[0].offset..found[0].offset + 8], "dictsort");
    }

    #[test]
    fn the_hint_lists_what_is_available() {
        let found = &unavailable_names("{{ x | dictsort }}", true)[0];
        assert_eq!(
            found.message(),
            "filter `dictsort` is not available on the hosts (the agent's template engine does not have it)"
        );
        assert!(found.hint().contains("items"), "{}", found.hint());
        assert!(found.hint().contains("upper"), "{}", found.hint());
    }
}
