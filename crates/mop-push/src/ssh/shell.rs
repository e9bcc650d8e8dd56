//! Quoting for the remote shell and for `pkill -f` patterns.
//!
//! Every command mop runs on a host goes through the login user's shell (`$SHELL -c`), so
//! anything that is not a fixed word is single-quoted here. The single-quote form with `'\''`
//! for embedded quotes is understood by sh, bash, zsh, fish and csh alike.

/// Quotes `word` as one shell word ([`mop_inventory::grammar::shell_quote`]).
pub(crate) fn quote(word: &str) -> String {
    mop_inventory::grammar::shell_quote(word)
}

/// Quotes a controller path for a command printed in a hint, keeping a leading `~/` outside
/// the quotes so the user's shell still expands it.
pub(crate) fn quote_local_path(path: &std::path::Path) -> String {
    let text = path.to_string_lossy();
    match text.strip_prefix("~/") {
        Some(rest) if !rest.is_empty() => format!("~/{}", quote(rest)),
        _ => quote(&text),
    }
}

/// Escapes `text` for an extended regular expression (`pkill -f` patterns), so paths match
/// literally.
pub(crate) fn regex_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The `pkill -f` pattern that matches exactly the agents started from `agent_path`: processes
/// whose whole command line is that path (the agent runs without arguments). Not, say, the
/// shell running the cleanup, whose argv mentions the path later on its command line, nor the
/// doas wrapper (`mop-agent --tty-password -- doas ...`), which must outlive its agent: it
/// holds the pty that is the agent's controlling terminal, and a cleanup run through it would
/// otherwise kill itself.
pub(crate) fn agent_pattern(agent_path: &str) -> String {
    format!("^{}$", regex_escape(agent_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        let check = |input: &str, expected: &str| assert_eq!(quote(input), expected, "{input}");
        check(
            "/home/moptest/.mop/w-1a2b/mop-agent",
            "/home/moptest/.mop/w-1a2b/mop-agent",
        );
        check("", "''");
        check("a b", "'a b'");
        check("it's", r"'it'\''s'");
        check("$HOME", "'$HOME'");
        check("a;rm -rf /", "'a;rm -rf /'");
    }

    #[test]
    fn quoted_words_survive_a_real_shell() {
        for word in [
            "plain",
            "with space",
            "it's",
            "$(id)",
            "`id`",
            "a\nb",
            "back\\slash",
            "*",
        ] {
            let output = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(word)))
                .output()
                .expect("sh runs");
            assert_eq!(String::from_utf8_lossy(&output.stdout), word);
        }
    }

    #[test]
    fn local_paths_keep_their_home_prefix() {
        let check = |input: &str, expected: &str| {
            assert_eq!(quote_local_path(std::path::Path::new(input)), expected)
        };
        check("/tmp/kh", "/tmp/kh");
        check("~/kh", "~/kh");
        check("~/my kh", "~/'my kh'");
        check("~", "'~'");
        check("/it's/$(id)", r"'/it'\''s/$(id)'");
    }

    #[test]
    fn agent_pattern_is_anchored_and_literal() {
        assert_eq!(
            agent_pattern("/home/a.b/.mop/w-1/mop-agent"),
            r"^/home/a\.b/\.mop/w-1/mop-agent$"
        );
    }
}
