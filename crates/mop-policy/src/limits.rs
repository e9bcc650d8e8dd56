//! Bounds on template and expression text, checked before minijinja parses it.
//!
//! minijinja's parser guards its recursion through brackets and statements (150 levels), but
//! not through prefix operators (`not not …`, `- - …`), nor through `… if … else …` chains; and
//! chains it parses in a loop (`a.b.c…`, `x|f|f…`, `1 + 1 + …`, `f()()…`, `a[0][0]…`) build a
//! left-deep tree that its code generator, its variable analysis and `Drop` walk recursively.
//! Tens of thousands of levels overflow the stack and abort the process (no error, no file
//! named). So every string is scanned first, in one linear pass that needs no stack, and
//! rejected when it is larger than [`MAX_TEMPLATE_BYTES`] or nests deeper than
//! [`MAX_NESTING`].
//!
//! The nesting measured is an upper bound of the depth of the tree minijinja builds: inside a
//! `{{ … }}` or `{% … %}` block (or a whole expression), every operator, filter `|`, test
//! `is`, attribute `.`, keyword operator (`not`, `and`, `or`, `in`, `if`, `else`) and every
//! opening bracket adds one level; a `,` or `:` goes back to the level of the enclosing
//! bracket (list items, arguments and dict entries are siblings); a closing bracket keeps the
//! deepest level reached inside it. Template text outside blocks, comments, `{% raw %}`
//! blocks and string literals cost nothing. Measured with minijinja 2.24 on a 2 MiB thread
//! stack (a tokio worker's), unoptimised builds survive about 800 levels of the costliest
//! shape (`f()()…`) and optimised builds several thousand, so [`MAX_NESTING`] keeps a margin
//! of three or more while leaving real templates (a few dozen levels) far below it.

use std::fmt;

/// The largest template or expression accepted, in bytes (1 MiB).
pub const MAX_TEMPLATE_BYTES: usize = 1024 * 1024;

/// The deepest expression nesting accepted (see the module documentation for what counts).
pub const MAX_NESTING: usize = 256;

/// A template or expression over one of the limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitError {
    /// The text is larger than [`MAX_TEMPLATE_BYTES`].
    TooLarge { bytes: usize, limit: usize },
    /// An expression nests deeper than [`MAX_NESTING`]; `line` is the 1-based line of the text
    /// where the limit was crossed.
    TooDeep { line: usize, limit: usize },
}

impl LimitError {
    /// The 1-based line of the text the error is about (the first one for a size error).
    pub fn line(&self) -> usize {
        match self {
            LimitError::TooLarge { .. } => 1,
            LimitError::TooDeep { line, .. } => *line,
        }
    }
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitError::TooLarge { bytes, limit } => write!(
                f,
                "template or expression too large: {bytes} bytes, the limit is {limit} bytes"
            ),
            LimitError::TooDeep { limit, .. } => write!(
                f,
                "expression nested deeper than the limit of {limit} levels (each operator, filter, `.`, call, subscript and bracket is a level); split it with `set` or intermediate variables"
            ),
        }
    }
}

impl std::error::Error for LimitError {}

/// Checks a template: its size, and the nesting of every `{{ … }}` and `{% … %}` block.
pub fn check_template(text: &str) -> Result<(), LimitError> {
    check_size(text)?;
    let bytes = text.as_bytes();
    let mut cursor = 0;
    while let Some(found) = find(bytes, cursor, b"{") {
        cursor = found + 1;
        match bytes.get(found + 1) {
            Some(b'#') => {
                // minijinja ends a comment at the first `#}`, whatever is inside.
                cursor = find(bytes, found + 2, b"#}").map_or(bytes.len(), |end| end + 2);
            }
            Some(b'{') => cursor = scan_code(bytes, found + 2, Some(b"}}"))?,
            Some(b'%') => {
                cursor = match raw_block_end(bytes, found) {
                    Some(end) => end,
                    None => scan_code(bytes, found + 2, Some(b"%}"))?,
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks an expression (`when`, `contact_when`, …): its size and its nesting.
pub fn check_expression(text: &str) -> Result<(), LimitError> {
    check_size(text)?;
    scan_code(text.as_bytes(), 0, None).map(|_| ())
}

fn check_size(text: &str) -> Result<(), LimitError> {
    if text.len() > MAX_TEMPLATE_BYTES {
        return Err(LimitError::TooLarge {
            bytes: text.len(),
            limit: MAX_TEMPLATE_BYTES,
        });
    }
    Ok(())
}

/// Words minijinja parses as operators (each one can add a level to the tree).
const KEYWORD_OPERATORS: &[&[u8]] = &[b"not", b"and", b"or", b"in", b"is", b"if", b"else"];

/// One open bracket: the level its items start at, and the deepest level reached inside.
struct Frame {
    base: usize,
    deepest: usize,
}

/// Scans expression code from `start` up to the block end `sentinel` (at bracket balance 0,
/// as minijinja's lexer decides it; `None`: to the end of the text). Returns the offset after
/// the block, or the error at the first byte that crosses the nesting limit.
fn scan_code(bytes: &[u8], start: usize, sentinel: Option<&[u8]>) -> Result<usize, LimitError> {
    let mut cursor = start;
    // `{{-` / `{%+`: whitespace control, not a minus.
    if sentinel.is_some() && matches!(bytes.get(cursor), Some(b'-' | b'+')) {
        cursor += 1;
    }
    let mut balance: isize = 0;
    let mut level = 0usize;
    let mut frames: Vec<Frame> = Vec::new();
    while let Some(&byte) = bytes.get(cursor) {
        if let Some(end) = sentinel {
            if balance == 0 {
                if bytes[cursor..].starts_with(end) {
                    return Ok(cursor + end.len());
                }
                if matches!(byte, b'-' | b'+') && bytes[cursor + 1..].starts_with(end) {
                    return Ok(cursor + 1 + end.len());
                }
            }
        }
        let mut deeper = false;
        match byte {
            b'\'' | b'"' => {
                cursor = skip_string(bytes, cursor);
                continue;
            }
            b'(' | b'[' | b'{' => {
                balance += 1;
                level += 1;
                frames.push(Frame {
                    base: level,
                    deepest: level,
                });
                deeper = true;
            }
            b')' | b']' | b'}' => {
                balance -= 1;
                if let Some(frame) = frames.pop() {
                    level = level.max(frame.deepest);
                }
            }
            b',' | b':' => level = frames.last().map_or(0, |frame| frame.base),
            b'0'..=b'9' => {
                cursor = skip_number(bytes, cursor);
                continue;
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'.' | b'~' | b'|' | b'=' | b'<' | b'>' => {
                // Two-character operators (`**`, `//`, `==`, `<=`, …) are one level.
                if matches!(
                    (byte, bytes.get(cursor + 1)),
                    (b'*', Some(b'*')) | (b'/', Some(b'/')) | (b'=' | b'<' | b'>', Some(b'='))
                ) {
                    cursor += 1;
                }
                level += 1;
                deeper = true;
            }
            b'!' if bytes.get(cursor + 1) == Some(&b'=') => {
                cursor += 1;
                level += 1;
                deeper = true;
            }
            byte if byte == b'_' || byte.is_ascii_alphabetic() || !byte.is_ascii() => {
                let end = skip_word(bytes, cursor);
                if KEYWORD_OPERATORS.contains(&&bytes[cursor..end]) {
                    level += 1;
                    if level > MAX_NESTING {
                        return Err(too_deep(bytes, cursor));
                    }
                    if let Some(frame) = frames.last_mut() {
                        frame.deepest = frame.deepest.max(level);
                    }
                }
                cursor = end;
                continue;
            }
            _ => {}
        }
        if deeper {
            if level > MAX_NESTING {
                return Err(too_deep(bytes, cursor));
            }
            if let Some(frame) = frames.last_mut() {
                frame.deepest = frame.deepest.max(level);
            }
        }
        cursor += 1;
    }
    Ok(bytes.len())
}

fn too_deep(bytes: &[u8], offset: usize) -> LimitError {
    LimitError::TooDeep {
        line: bytes[..offset]
            .iter()
            .filter(|&&byte| byte == b'\n')
            .count()
            + 1,
        limit: MAX_NESTING,
    }
}

/// The offset after a string literal starting at `start` (backslash escapes skipped, as
/// minijinja's lexer does), or the end of the text when it is not closed.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut cursor = start + 1;
    while let Some(&byte) = bytes.get(cursor) {
        if byte == b'\\' {
            cursor += 2;
            continue;
        }
        cursor += 1;
        if byte == quote {
            return cursor;
        }
    }
    bytes.len()
}

/// The offset after a number (`12`, `1_000`, `0o644`, `1.5`): letters and digits, and a `.`
/// followed by a digit.
fn skip_number(bytes: &[u8], start: usize) -> usize {
    let mut cursor = start;
    while let Some(&byte) = bytes.get(cursor) {
        let decimal_point = byte == b'.' && bytes.get(cursor + 1).is_some_and(u8::is_ascii_digit);
        if !(byte.is_ascii_alphanumeric() || byte == b'_' || decimal_point) {
            break;
        }
        cursor += 1;
    }
    cursor
}

/// The offset after an identifier (non-ASCII bytes count as part of it).
fn skip_word(bytes: &[u8], start: usize) -> usize {
    let mut cursor = start;
    while let Some(&byte) = bytes.get(cursor) {
        if !(byte == b'_' || byte.is_ascii_alphanumeric() || !byte.is_ascii()) {
            break;
        }
        cursor += 1;
    }
    cursor
}

/// When a `{% raw %}` tag starts at `start` (the `{`), the offset after its `{% endraw %}`
/// (or the end of the text): minijinja copies everything in between as text.
fn raw_block_end(bytes: &[u8], start: usize) -> Option<usize> {
    let after_tag = basic_tag_end(bytes, start, b"raw")?;
    let mut cursor = after_tag;
    while let Some(found) = find(bytes, cursor, b"{%") {
        if let Some(end) = basic_tag_end(bytes, found, b"endraw") {
            return Some(end);
        }
        cursor = found + 2;
    }
    Some(bytes.len())
}

/// When `{% name %}` (with optional `-`/`+` markers and any spaces) starts at `start`, the
/// offset after its `%}`.
fn basic_tag_end(bytes: &[u8], start: usize, name: &[u8]) -> Option<usize> {
    let mut cursor = start;
    if !bytes[cursor..].starts_with(b"{%") {
        return None;
    }
    cursor += 2;
    if matches!(bytes.get(cursor), Some(b'-' | b'+')) {
        cursor += 1;
    }
    cursor = skip_spaces(bytes, cursor);
    if !bytes[cursor..].starts_with(name) {
        return None;
    }
    cursor = skip_spaces(bytes, cursor + name.len());
    if matches!(bytes.get(cursor), Some(b'-' | b'+')) {
        cursor += 1;
    }
    bytes[cursor..].starts_with(b"%}").then_some(cursor + 2)
}

fn skip_spaces(bytes: &[u8], start: usize) -> usize {
    let mut cursor = start;
    while bytes.get(cursor).is_some_and(u8::is_ascii_whitespace) {
        cursor += 1;
    }
    cursor
}

fn find(bytes: &[u8], start: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(start..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|position| start + position)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The deep shapes of issue 12, each `count` levels deep.
    fn deep_shapes(count: usize) -> Vec<(&'static str, String)> {
        vec![
            ("not", format!("{}true", "not ".repeat(count))),
            ("negation", format!("{}1", "- ".repeat(count))),
            ("attributes", format!("a{}", ".a".repeat(count))),
            ("filters", format!("a{}", "|lower".repeat(count))),
            ("addition", format!("1{}", " + 1".repeat(count))),
            (
                "parentheses",
                format!("{}1{}", "(".repeat(count), ")".repeat(count)),
            ),
            (
                "lists",
                format!("{}1{}", "[".repeat(count), "]".repeat(count)),
            ),
            ("calls", format!("f{}", "()".repeat(count))),
            ("subscripts", format!("a{}", "[0]".repeat(count))),
            ("conditionals", format!("1{}", " if 1 else 1".repeat(count))),
            ("concatenation", format!("a{}", "~a".repeat(count))),
            ("comparisons", format!("a{}", "==a".repeat(count))),
        ]
    }

    #[test]
    fn deep_expressions_are_rejected_with_their_line() {
        for (shape, expression) in deep_shapes(30_000) {
            assert_eq!(
                check_expression(&expression),
                Err(LimitError::TooDeep {
                    line: 1,
                    limit: MAX_NESTING
                }),
                "{shape}"
            );
            let template = format!("line one\nline two\n{{{{ {expression} }}}}\n");
            assert_eq!(
                check_template(&template),
                Err(LimitError::TooDeep {
                    line: 3,
                    limit: MAX_NESTING
                }),
                "{shape}"
            );
            let statement = format!("{{% if {expression} %}}x{{% endif %}}");
            assert!(check_template(&statement).is_err(), "{shape}");
        }
    }

    #[test]
    fn nesting_just_under_the_limit_passes_and_just_over_fails() {
        for (shape, expression) in deep_shapes(MAX_NESTING / 2 - 1) {
            assert_eq!(check_expression(&expression), Ok(()), "{shape}");
        }
        assert_eq!(check_expression(&"- ".repeat(MAX_NESTING)), Ok(()));
        assert!(check_expression(&"- ".repeat(MAX_NESTING + 1)).is_err());
    }

    /// The deepest version of every shape that the scanner accepts compiles without
    /// overflowing a tokio worker's 2 MiB stack, even in an unoptimised build: the limit is
    /// safe, not just documented.
    #[test]
    fn the_limit_is_safe_for_minijinja_on_a_small_stack() {
        let worker = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                let environment = minijinja::Environment::new();
                for index in 0..deep_shapes(1).len() {
                    let deepest_accepted = (1..=MAX_NESTING)
                        .rev()
                        .map(|count| deep_shapes(count).swap_remove(index).1)
                        .find(|expression| check_expression(expression).is_ok())
                        .expect("one level is accepted");
                    let _ = environment
                        .compile_expression(&deepest_accepted)
                        .map(|compiled| compiled.undeclared_variables(true));
                }
            })
            .expect("spawn a thread");
        worker.join().expect("minijinja did not overflow");
    }

    #[test]
    fn text_outside_blocks_comments_raw_and_strings_cost_nothing() {
        let dashes = "- ".repeat(10_000);
        let template = format!(
            "{dashes}\n{{# {dashes} #}}{{% raw %}}{{{{ {dashes} }}}}{{% endraw %}}{{{{ '{dashes}' ~ \"{dashes}\" }}}}"
        );
        assert_eq!(check_template(&template), Ok(()));
        assert_eq!(check_expression(&format!("x == '{dashes}'")), Ok(()));
        assert_eq!(
            check_template("{{- x -}} {%- if y -%}z{%+ endif +%}"),
            Ok(())
        );
    }

    #[test]
    fn siblings_do_not_add_up_and_blocks_start_afresh() {
        let list = format!("[{}]", vec!["a + b"; 10_000].join(", "));
        assert_eq!(check_expression(&list), Ok(()));
        let dict = format!("{{{}}}", vec!["'k': v|lower"; 10_000].join(", "));
        assert_eq!(check_expression(&dict), Ok(()));
        let blocks = "{{ a ~ b ~ c }}\n".repeat(10_000);
        assert_eq!(check_template(&blocks), Ok(()));
        // A `}}` inside a dict does not end the block, as in minijinja.
        let hidden = format!("{{{{ {{'a': {{'b': 1}}}} ~ {} }}}}", "x ~ ".repeat(300));
        assert!(check_template(&hidden).is_err());
    }

    #[test]
    fn a_realistic_template_passes() {
        let template = r#"# managed by mop
{% for site in sites | sort(attribute="name") if site.enabled and site.name is defined %}
server {
    listen {{ site.port | default(80) }};
    server_name {{ site.names | join(" ") | lower }};
    {% if site.tls and (site.cert is defined or site.acme | default(false)) and not site.legacy %}
    ssl_certificate {{ "/etc/ssl/" ~ site.name ~ ".pem" if site.cert is not defined else site.cert }};
    {% endif %}
    {% for location in site.locations | default([]) %}
    location {{ location.path }} { proxy_pass http://{{ upstreams[location.upstream]["host"] }}:{{ (location.port or 8080) + loop.index0 * 2 - 1 }}; }
    {% endfor %}
}
{% endfor %}
"#;
        assert_eq!(check_template(template), Ok(()));
    }

    #[test]
    fn size_is_limited() {
        let large = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert_eq!(
            check_template(&large),
            Err(LimitError::TooLarge {
                bytes: MAX_TEMPLATE_BYTES + 1,
                limit: MAX_TEMPLATE_BYTES
            })
        );
        assert!(check_expression(&large).is_err());
        assert_eq!(check_template(&"x".repeat(MAX_TEMPLATE_BYTES)), Ok(()));
    }
}
