//! Which filters, tests, functions and methods a template uses that mop's template language
//! does not have.
//!
//! The hosts and the controller render with the same environment (`mop_template`), whose names
//! are `mop_template::names`. minijinja only looks filters, tests and methods up when it
//! renders, so a misspelt or foreign name (`to_yaml`, `is version`, `.zfill()`) would compile
//! here and fail on every host: this is a small lexical scan of the template's `{{ }}` and
//! `{% %}` blocks (string literals and comments skipped): `| name` is a filter, `is [not] name`
//! a test, `{% filter name %}` a filter block, `.name(` a method call, and a call of a global
//! name that is neither a builtin function nor a macro or variable the template defines is a
//! function the hosts lack (unless a variable of that name is in scope, which the
//! undefined-variable check decides).

use mop_template::names::{FILTERS, FUNCTIONS, METHODS, OBJECT_METHODS, TESTS};

use crate::suggest;

/// One name the template language does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unavailable {
    /// `filter`, `test` or `method`.
    pub what: &'static str,
    pub name: String,
    /// Byte offset of the name in the scanned text.
    pub offset: usize,
}

impl Unavailable {
    pub(crate) fn message(&self) -> String {
        format!(
            "{} `{}` is not available on the hosts (mop's template language does not have it)",
            self.what, self.name
        )
    }

    pub(crate) fn hint(&self) -> String {
        let available: Vec<&str> = match self.what {
            "filter" => FILTERS.to_vec(),
            "test" => TESTS.to_vec(),
            "method" => METHODS.iter().chain(OBJECT_METHODS).copied().collect(),
            _ => FUNCTIONS.to_vec(),
        };
        let list = "see the list in docs/reference/policy.md, \"Templates and expressions\"";
        match suggest::did_you_mean(&self.name, available) {
            Some(suggestion) => format!("{suggestion} {list}"),
            None => list.to_string(),
        }
    }
}

/// The names `text` uses that the template language lacks, in order of appearance, each once.
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
                if !FILTERS.contains(&name) {
                    report("filter", name, offset);
                }
            }
        }
        for (index, token) in region.iter().enumerate() {
            match token {
                Token::Punct('|') => {
                    if let Some((name, offset)) = ident(index + 1) {
                        if !FILTERS.contains(&name) {
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
                        if !TESTS.contains(&name) {
                            report("test", name, offset);
                        }
                    }
                }
                Token::Ident {
                    name,
                    after_dot: true,
                    offset,
                } if region.get(index + 1) == Some(&Token::Punct('('))
                    && !METHODS.contains(name)
                    && !OBJECT_METHODS.contains(name) =>
                {
                    report("method", name, *offset);
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
    fn finds_what_the_language_lacks_and_nothing_else() {
        let cases: &[(&str, bool, &[&str])] = &[
            ("plain text | not a filter {x}", true, &[]),
            ("{{ name | upper }}", true, &[]),
            ("{{ ports | dictsort }}", true, &[]),
            ("{{ ports | to_yaml }}", true, &["filter to_yaml"]),
            (
                "{{ a|min }} and {{ b | mx(1) }} {{ c | regex_replace('a', 'b') }}",
                true,
                &["filter mx"],
            ),
            ("{{ a | join(', ') | rund }}", true, &["filter rund"]),
            ("{{ 'x | to_yaml' ~ \"| rund\" }}", true, &[]),
            ("{# {{ x | to_yaml }} #}{{ x }}", true, &[]),
            (
                "{% raw %}{{ x | to_yaml }}{% endraw %}{{ y | to_nice_yaml }}",
                true,
                &["filter to_nice_yaml"],
            ),
            ("{% if x is divisibleby(3) %}{% endif %}", true, &[]),
            ("{% if x is not sameas(y) %}{% endif %}", true, &[]),
            (
                "{% if x is not version('1.2', '>') %}{% endif %}",
                true,
                &["test version"],
            ),
            ("{% filter upper %}a{% endfilter %}", true, &[]),
            (
                "{% filter wordwrap %}a{% endfilter %}",
                true,
                &["filter wordwrap"],
            ),
            ("{{ dict(a=1) }} {{ debug() }}", true, &[]),
            (
                "{{ host.name.startswith('web') }} {{ m.items() }} {% for x in l %}{{ loop.cycle('a', 'b') }}{% endfor %}",
                true,
                &[],
            ),
            ("{{ name.zfill(3) }} {{ l.append(1) }}", true, &["method zfill", "method append"]),
            ("{{ name.zfill }}", true, &[]),
            (
                "{{ x | to_yaml }}{{ y | to_yaml }}",
                true,
                &["filter to_yaml"],
            ),
            ("x is defined and y | length > 2", false, &[]),
            ("x | absolute > 2", false, &["filter absolute"]),
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
        let text = "line one\n{{ ports | to_yaml }}";
        let found = unavailable_names(text, true);
        assert_eq!(&text[found[0].offset..found[0].offset + 7], "to_yaml");
    }

    #[test]
    fn the_hint_suggests_a_close_name() {
        let found = &unavailable_names("{{ x | regex_replce('a') }}", true)[0];
        assert_eq!(
            found.message(),
            "filter `regex_replce` is not available on the hosts (mop's template language does not have it)"
        );
        assert_eq!(
            found.hint(),
            "did you mean `regex_replace`? see the list in docs/reference/policy.md, \"Templates and expressions\""
        );
        let found = &unavailable_names("{{ x.startwith('a') }}", true)[0];
        assert!(
            found.hint().starts_with("did you mean `startswith`?"),
            "{}",
            found.hint()
        );
    }
}
