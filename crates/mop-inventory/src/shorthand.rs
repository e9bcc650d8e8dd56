//! OpsMop's host shorthand: a string of shell-style `key=value` words (Python `shlex.split`).

/// One `key=value` word of a shorthand string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShorthandWord {
    pub(crate) key: String,
    pub(crate) value: String,
    /// Byte offset of the word's first character in the shorthand string.
    pub(crate) offset: usize,
}

/// Why a shorthand string could not be split, and where (byte offset in the string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShorthandError {
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
    pub(crate) offset: usize,
}

/// Splits `input` like POSIX `shlex.split`: whitespace separates words, `'...'` is literal,
/// `"..."` allows `\"` and `\\`, a backslash outside quotes escapes the next character.
/// Every word must be `key=value` (split at the first `=`) with a valid variable name.
pub(crate) fn parse_shorthand(input: &str) -> Result<Vec<ShorthandWord>, ShorthandError> {
    let mut words = Vec::new();
    for (raw_word, offset) in split_words(input)? {
        let Some((key, value)) = raw_word.split_once('=') else {
            return Err(ShorthandError {
                message: format!("expected `key=value`, found `{raw_word}`"),
                hint: Some(
                    "shorthand is space-separated `key=value` words; quote values with spaces: \
                     `motd='hello world'`"
                        .into(),
                ),
                offset,
            });
        };
        if let Err(problem) = crate::value::check_var_name(key) {
            return Err(ShorthandError {
                message: problem.message,
                hint: problem.hint,
                offset,
            });
        }
        if words.iter().any(|word: &ShorthandWord| word.key == key) {
            return Err(ShorthandError {
                message: format!("variable `{key}` is set twice in this shorthand"),
                hint: Some(format!("keep only one `{key}=...`")),
                offset,
            });
        }
        words.push(ShorthandWord {
            key: key.to_string(),
            value: value.to_string(),
            offset,
        });
    }
    Ok(words)
}

enum State {
    Between,
    Word,
    Single(usize),
    Double(usize),
}

fn split_words(input: &str) -> Result<Vec<(String, usize)>, ShorthandError> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut word_start = 0;
    let mut state = State::Between;
    let mut chars = input.char_indices().peekable();
    while let Some((index, character)) = chars.next() {
        match state {
            State::Between | State::Word => {
                if character.is_whitespace() {
                    if matches!(state, State::Word) {
                        words.push((std::mem::take(&mut current), word_start));
                    }
                    state = State::Between;
                    continue;
                }
                if matches!(state, State::Between) {
                    word_start = index;
                    state = State::Word;
                }
                match character {
                    '\'' => state = State::Single(index),
                    '"' => state = State::Double(index),
                    '\\' => match chars.next() {
                        // A backslash-newline is a line continuation, as in the shell.
                        Some((_, '\n')) => {}
                        Some((_, escaped)) => current.push(escaped),
                        None => {
                            return Err(ShorthandError {
                                message: "`\\` at the end of the shorthand escapes nothing".into(),
                                hint: Some("write `\\\\` for a literal backslash".into()),
                                offset: index,
                            })
                        }
                    },
                    other => current.push(other),
                }
            }
            State::Single(_) => {
                if character == '\'' {
                    state = State::Word;
                } else {
                    current.push(character);
                }
            }
            State::Double(_) => match character {
                '"' => state = State::Word,
                '\\' => match chars.peek() {
                    Some(&(_, next @ ('"' | '\\'))) => {
                        current.push(next);
                        chars.next();
                    }
                    _ => current.push('\\'),
                },
                other => current.push(other),
            },
        }
    }
    match state {
        State::Between => {}
        State::Word => words.push((current, word_start)),
        State::Single(opened) => {
            return Err(ShorthandError {
                message: "unclosed `'` in host shorthand".into(),
                hint: Some("close the quote, or write `\\'` for a literal quote".into()),
                offset: opened,
            })
        }
        State::Double(opened) => {
            return Err(ShorthandError {
                message: "unclosed `\"` in host shorthand".into(),
                hint: Some("close the quote, or write `\\\"` for a literal quote".into()),
                offset: opened,
            })
        }
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &[(&str, &str)]) {
        let words = parse_shorthand(input)
            .unwrap_or_else(|error| panic!("{input:?} should parse, got {error:?}"));
        let pairs: Vec<(&str, &str)> = words
            .iter()
            .map(|word| (word.key.as_str(), word.value.as_str()))
            .collect();
        assert_eq!(pairs, expected, "input {input:?}");
    }

    fn check_error(input: &str, message_part: &str, offset: usize) {
        let error = parse_shorthand(input).expect_err(input);
        assert!(
            error.message.contains(message_part),
            "{input:?}: {:?} should contain {message_part:?}",
            error.message
        );
        assert_eq!(error.offset, offset, "offset for {input:?}");
    }

    #[test]
    fn plain_words() {
        check("", &[]);
        check("   \t ", &[]);
        check(
            "mop_host=10.0.0.5 weight=3",
            &[("mop_host", "10.0.0.5"), ("weight", "3")],
        );
        check("  a=1\tb=2  ", &[("a", "1"), ("b", "2")]);
        check("empty=", &[("empty", "")]);
    }

    #[test]
    fn equals_sign_in_value_is_kept() {
        check("opts=a=b=c", &[("opts", "a=b=c")]);
        check("url='x?y=1&z=2'", &[("url", "x?y=1&z=2")]);
    }

    #[test]
    fn quotes_and_escapes() {
        check("motd='hello world'", &[("motd", "hello world")]);
        check("motd=\"hello world\"", &[("motd", "hello world")]);
        check("'motd=hello world'", &[("motd", "hello world")]);
        check("a=\"say \\\"hi\\\"\"", &[("a", "say \"hi\"")]);
        check("a='it\\s'", &[("a", "it\\s")]);
        check("a=\"back\\\\slash\"", &[("a", "back\\slash")]);
        check("a=\"keep\\n\"", &[("a", "keep\\n")]);
        check("a=it\\'s", &[("a", "it's")]);
        check("a=two\\ words", &[("a", "two words")]);
        check("a=''", &[("a", "")]);
        check("a=x'y z'\"w\"", &[("a", "xy zw")]);
        check("a=1\\\nb=2", &[("a", "1b=2")]);
    }

    #[test]
    fn errors_point_at_the_problem() {
        check_error("a=1 b='open", "unclosed `'`", 6);
        check_error("a=\"open", "unclosed `\"`", 2);
        check_error("a=1 trailing\\", "escapes nothing", 12);
        check_error("a=1 lonely", "expected `key=value`, found `lonely`", 4);
        check_error("a=1 =2", "variable name", 4);
        check_error("a=1 9x=2", "invalid variable name `9x`", 4);
        check_error("a=1 a=2", "set twice", 4);
        check_error("''", "expected `key=value`, found ``", 0);
    }
}
