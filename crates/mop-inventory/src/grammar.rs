//! Strict grammars for the values that reach ssh: host addresses, user names, controller paths.
//!
//! These are the one implementation of each rule. The inventory applies them when it reads a
//! magic variable (so `mop validate` reports a bad value with its file and line before any
//! host is contacted), and the SSH transport of `mop-push` applies them again to every host
//! it writes into its ssh_config, as a second line of defence for values that did not come
//! through the inventory (`--hosts`, `--ssh-key`, ...).
//!
//! Why strict: ssh_config unescapes `\'` and `\"`, expands `%` tokens and `${VAR}` in some
//! options, and OpenSSH runs `ProxyJump` through `$SHELL -c` with the target's `HostName`
//! substituted for `%h`. A host name that may hold a quote, a `$` or a backtick is a command
//! on the controller. So addresses and user names are whitelisted character by character, and
//! paths, which must allow most characters, are refused only what ssh_config cannot quote.

use std::net::Ipv6Addr;

/// The longest host name accepted: the DNS limit.
pub const MAX_HOST_NAME_LEN: usize = 253;

/// Why a value does not fit its grammar, worded to follow "the value is invalid: ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct GrammarError {
    pub reason: String,
}

fn refuse(reason: impl Into<String>) -> GrammarError {
    GrammarError {
        reason: reason.into(),
    }
}

/// A character as the operator should read it in a message: visible ones in backticks,
/// invisible or look-alike ones by code point, so a fullwidth `＄` or U+2019 is not mistaken
/// for its ASCII twin.
pub fn describe_char(c: char) -> String {
    if c == '`' {
        "`` ` ``".to_string()
    } else if c.is_ascii_graphic() {
        format!("`{c}`")
    } else if c.is_control() || c.is_whitespace() {
        format!("U+{:04X}", u32::from(c))
    } else {
        format!("`{c}` (U+{:04X})", u32::from(c))
    }
}

fn is_host_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Checks what mop accepts as a host's address (`mop_host`, a `--hosts` entry, or an inventory
/// host name used as its own address):
///
/// - a host name: ASCII letters, digits, `-`, `_` and `.`, not starting with `-` or `.`, at
///   most 253 characters (so also every IPv4 address in dotted form);
/// - an IPv6 address without brackets (`2001:db8::1`, `::1`), optionally with a zone
///   (`fe80::1%eth0`, the zone made of host name characters).
///
/// Brackets are refused: mop adds them where ssh needs them (`[::1]:2222` in known_hosts and
/// in messages); `--hosts` takes `[::1]:2222` and strips them before this check.
pub fn check_host_address(text: &str) -> Result<(), GrammarError> {
    if text.is_empty() {
        return Err(refuse("it is empty"));
    }
    if text.starts_with('[') && text.ends_with(']') && text.len() > 2 {
        return Err(refuse(format!(
            "write IPv6 addresses without brackets (`{}`); mop adds them where ssh needs them",
            &text[1..text.len() - 1]
        )));
    }
    if text.contains(':') {
        return check_ipv6(text);
    }
    check_host_name(text)
}

fn check_ipv6(text: &str) -> Result<(), GrammarError> {
    let (address, zone) = match text.split_once('%') {
        Some((address, zone)) => (address, Some(zone)),
        None => (text, None),
    };
    if address.parse::<Ipv6Addr>().is_err() {
        return Err(refuse(format!(
            "it contains `:` but is not an IPv6 address{}",
            first_bad_char(address, |c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'))
                .map(|c| format!(" (it contains {})", describe_char(c)))
                .unwrap_or_default()
        )));
    }
    if let Some(zone) = zone {
        if zone.is_empty() {
            return Err(refuse("the IPv6 zone after `%` is empty"));
        }
        if let Some(c) = first_bad_char(zone, is_host_name_char) {
            return Err(refuse(format!(
                "the IPv6 zone contains {}; zones are interface names (letters, digits, `-`, \
                 `_`, `.`)",
                describe_char(c)
            )));
        }
    }
    Ok(())
}

fn check_host_name(text: &str) -> Result<(), GrammarError> {
    if let Some(first) = text.chars().next().filter(|c| matches!(c, '-' | '.')) {
        return Err(refuse(format!(
            "it starts with `{first}`, which ssh could take for an option or an empty label"
        )));
    }
    if let Some(c) = first_bad_char(text, is_host_name_char) {
        let reason = if c.is_ascii() {
            format!(
                "it contains {}; host names are made of letters, digits, `-`, `_` and `.`",
                describe_char(c)
            )
        } else {
            format!(
                "it contains the non-ASCII character {}; write internationalised names in \
                 their ASCII form (`xn--...`)",
                describe_char(c)
            )
        };
        return Err(refuse(reason));
    }
    if text.len() > MAX_HOST_NAME_LEN {
        return Err(refuse(format!(
            "it is {} characters long; host names have at most {MAX_HOST_NAME_LEN}",
            text.len()
        )));
    }
    Ok(())
}

/// Checks a user name (`mop_ssh_username`, `mop_sudo_username`, `--sudo-as`, the user of a
/// `--hosts` entry): a POSIX portable user name, `[A-Za-z0-9_][A-Za-z0-9._-]*`, optionally
/// ending in `$` (Samba machine accounts).
pub fn check_user_name(text: &str) -> Result<(), GrammarError> {
    let name = text.strip_suffix('$').unwrap_or(text);
    if name.is_empty() {
        return Err(refuse("it is empty"));
    }
    let portable = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if let Some(c) = first_bad_char(name, portable) {
        return Err(refuse(format!(
            "it contains {}; user names are made of letters, digits, `.`, `_` and `-` \
             (optionally ending in `$`)",
            describe_char(c)
        )));
    }
    if let Some(first) = name.chars().next().filter(|c| matches!(c, '-' | '.')) {
        return Err(refuse(format!("it starts with `{first}`")));
    }
    Ok(())
}

/// Checks a path on the controller that mop writes into ssh_config (`mop_ssh_key`,
/// `mop_known_hosts_file`, `--ssh-key`, `--known-hosts-file`).
///
/// mop writes such a path double-quoted with `%` doubled, which holds any text except what
/// ssh_config would still interpret inside the quotes: `"` and `\` (escapes whose handling
/// differs between OpenSSH versions), `${` (ssh expands environment variables in these
/// options, with no escape) and control characters (a line break ends the option).
pub fn check_config_path(text: &str) -> Result<(), GrammarError> {
    if text.is_empty() {
        return Err(refuse("it is empty"));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(refuse(format!(
            "it contains the control character {}",
            describe_char(c)
        )));
    }
    if let Some(c) = text.chars().find(|c| matches!(c, '"' | '\\')) {
        return Err(refuse(format!(
            "it contains {}, which ssh_config cannot hold in a quoted path",
            describe_char(c)
        )));
    }
    if text.contains("${") {
        return Err(refuse(
            "it contains `${`, which ssh would expand as an environment variable; write the \
             path out (a leading `~/` is fine)",
        ));
    }
    Ok(())
}

/// Checks a secret that is sent as one line on a program's stdin (sudo's password prompt).
/// The reason never quotes the value.
pub fn check_password_line(text: &str) -> Result<(), GrammarError> {
    if text.contains(['\n', '\r']) {
        return Err(refuse(
            "it contains a line break; sudo reads the password up to the first one",
        ));
    }
    if text.contains('\0') {
        return Err(refuse("it contains a NUL character"));
    }
    Ok(())
}

fn first_bad_char(text: &str, allowed: impl Fn(char) -> bool) -> Option<char> {
    text.chars().find(|&c| !allowed(c))
}

/// Quotes `word` as one POSIX shell word, for commands mop prints in hints and runs through a
/// login shell: unchanged when it holds only characters no shell treats specially, otherwise
/// single-quoted with `'\''` for an embedded quote (understood by sh, bash, zsh, fish and csh).
/// The one implementation; `mop-push` quotes remote commands with it too.
pub fn shell_quote(word: &str) -> String {
    let plain =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | ':' | '=' | ',');
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        grammar: fn(&str) -> Result<(), GrammarError>,
        input: &str,
        expected: Result<(), &str>,
    ) {
        match (grammar(input), expected) {
            (Ok(()), Ok(())) => {}
            (Err(error), Err(part)) => {
                assert!(
                    error.reason.contains(part),
                    "{input:?}: {error} lacks {part}"
                )
            }
            (got, expected) => panic!("{input:?}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn host_addresses() {
        let ok = |input: &str| check(check_host_address, input, Ok(()));
        let bad = |input: &str, part: &str| check(check_host_address, input, Err(part));
        ok("web1.example.com");
        ok("web_1");
        ok("10.0.0.5");
        ok("::1");
        ok("2001:db8::1");
        ok("fe80::1%eth0");
        ok("::ffff:192.0.2.1");
        ok("localhost.");
        bad("", "empty");
        bad("[::1]", "without brackets (`::1`)");
        bad("127.0.7.2\\'$(>/tmp/pwned)\\'", "contains `\\`");
        bad("a'b", "contains `'`");
        bad("a\"b", "contains `\"`");
        bad("a`id`", "contains `` ` ``");
        bad("a$(id)", "contains `$`");
        bad("a%h", "contains `%`");
        bad("a b", "contains U+0020");
        bad("a\nb", "contains U+000A");
        bad("a\0b", "contains U+0000");
        bad("-oProxyCommand=x", "starts with `-`");
        bad("-web", "starts with `-`");
        bad(".web", "starts with `.`");
        bad("web\u{FF04}", "non-ASCII character `＄` (U+FF04)");
        bad("web\u{2019}s", "U+2019");
        bad("fe80::1%", "zone after `%` is empty");
        bad("fe80::1%eth0;id", "zone contains `;`");
        bad("::1'", "not an IPv6 address (it contains `'`)");
        bad("a:b", "not an IPv6 address");
        bad(&"a".repeat(254), "at most 253");
        ok(&"a".repeat(253));
    }

    #[test]
    fn user_names() {
        let ok = |input: &str| check(check_user_name, input, Ok(()));
        let bad = |input: &str, part: &str| check(check_user_name, input, Err(part));
        ok("deploy");
        ok("1000");
        ok("_svc.app-1");
        ok("HOST$");
        bad("", "empty");
        bad("$", "empty");
        bad("-oops", "starts with `-`");
        bad(".hidden", "starts with `.`");
        bad("a$b", "contains `$`");
        bad("a b", "U+0020");
        bad("root'", "contains `'`");
        bad("jdoe@corp", "contains `@`");
        bad("ü", "`ü` (U+00FC)");
    }

    #[test]
    fn config_paths() {
        let ok = |input: &str| check(check_config_path, input, Ok(()));
        let bad = |input: &str, part: &str| check(check_config_path, input, Err(part));
        ok("~/.ssh/id_ed25519");
        ok("/keys/my key");
        ok("/keys/it's $(not) run `here`");
        ok("/kh/100%");
        ok("/keys/#1");
        ok("/ключи/id");
        bad("", "empty");
        bad("/k\"ey", "contains `\"`");
        bad("/k\\ey", "contains `\\`");
        bad("/k\ney", "control character U+000A");
        bad("/k\0ey", "U+0000");
        bad("${HOME}/key", "`${`");
    }

    #[test]
    fn password_lines() {
        assert!(check_password_line("p@ss word'\"$`").is_ok());
        assert!(check_password_line("").is_ok());
        let error = check_password_line("hunter2\nsecond").expect_err("line break");
        assert!(!error.reason.contains("hunter2"));
        assert!(check_password_line("a\rb").is_err());
        assert!(check_password_line("a\0b").is_err());
    }
}
