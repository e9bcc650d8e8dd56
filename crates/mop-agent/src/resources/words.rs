//! Splitting a `command` resource's `cmd` into argv words with shell-like quoting rules, but
//! without a shell: no variables, globbing, pipes or redirections.

/// Splits `text` into words. Whitespace separates words; `'...'` is literal; `"..."` is
/// literal except for `\"`, `\\`, `\$`, `` \` `` and backslash-newline; outside quotes a
/// backslash escapes the next character. Quoted and unquoted parts next to each other join
/// into one word, and `""` is an empty word.
pub fn split(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        match ch {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(inner) => current.push(inner),
                        None => return Err(format!("unterminated single quote in `{text}`")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(escaped @ ('"' | '\\' | '$' | '`')) => current.push(escaped),
                            Some('\n') => {}
                            Some(other) => {
                                current.push('\\');
                                current.push(other);
                            }
                            None => return Err(format!("unterminated double quote in `{text}`")),
                        },
                        Some(inner) => current.push(inner),
                        None => return Err(format!("unterminated double quote in `{text}`")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(escaped) => {
                    in_word = true;
                    current.push(escaped);
                }
                None => return Err(format!("trailing backslash in `{text}`")),
            },
            other => {
                in_word = true;
                current.push(other);
            }
        }
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &[&str]) {
        assert_eq!(
            split(input),
            Ok(expected
                .iter()
                .map(|word| word.to_string())
                .collect::<Vec<_>>()),
            "{input:?}"
        );
    }

    #[test]
    fn splits_like_a_shell() {
        check("ls -l /tmp", &["ls", "-l", "/tmp"]);
        check("  a\t b\n", &["a", "b"]);
        check("echo 'a b' \"c d\"", &["echo", "a b", "c d"]);
        check("echo a'b'\"c\"", &["echo", "abc"]);
        check("echo '' \"\"", &["echo", "", ""]);
        check(
            r#"echo "a \"q\" \$HOME \n""#,
            &["echo", r#"a "q" $HOME \n"#],
        );
        check(r"echo a\ b \*", &["echo", "a b", "*"]);
        check("echo 'it''s'", &["echo", "its"]);
        check("echo *.txt $HOME", &["echo", "*.txt", "$HOME"]);
        check("", &[]);
    }

    #[test]
    fn unterminated_quotes_are_errors() {
        assert!(split("echo 'a")
            .expect_err("single")
            .contains("unterminated single quote"));
        assert!(split("echo \"a")
            .expect_err("double")
            .contains("unterminated double quote"));
        assert!(split("echo a\\")
            .expect_err("backslash")
            .contains("trailing backslash"));
    }
}
