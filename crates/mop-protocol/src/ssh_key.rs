//! One line of an OpenSSH `authorized_keys` file, parsed the same way by `mop validate` and by
//! the agent: `[options] type base64 [comment]`. A key is identified by its type and its
//! base64 body, so a changed comment or option list updates the line instead of adding a
//! second copy of the key.

/// Key types sshd accepts in `authorized_keys`.
pub const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
];

/// A parsed key line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKeyLine<'a> {
    /// The options before the key type (`from="10.0.0.1",no-pty`), if any.
    pub options: Option<&'a str>,
    pub key_type: &'a str,
    pub body: &'a str,
    pub comment: Option<&'a str>,
}

impl AuthorizedKeyLine<'_> {
    /// What identifies the key whatever its options and comment.
    pub fn identity(&self) -> (&str, &str) {
        (self.key_type, self.body)
    }

    /// A short name for messages: the comment, or the type and the body's end.
    pub fn label(&self) -> String {
        match self.comment {
            Some(comment) => format!("{} {comment}", self.key_type),
            None => {
                let tail: String = self
                    .body
                    .chars()
                    .rev()
                    .take(12)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                format!("{} ...{tail}", self.key_type)
            }
        }
    }
}

/// Parses one key line; the error says what is wrong with it.
pub fn parse_authorized_key(line: &str) -> Result<AuthorizedKeyLine<'_>, String> {
    let line = line.trim();
    if line.contains(['\n', '\r']) {
        return Err("a key must be one line".to_string());
    }
    if line.is_empty() {
        return Err("the key is empty".to_string());
    }
    let (options, rest) = if starts_with_key_type(line) {
        (None, line)
    } else {
        let end = options_end(line)?;
        (Some(&line[..end]), line[end..].trim_start())
    };
    let mut words = rest.splitn(3, [' ', '\t']);
    let key_type = words.next().unwrap_or_default();
    if !SSH_KEY_TYPES.contains(&key_type) {
        return Err(format!(
            "`{}` is not an SSH key type (such as `ssh-ed25519` or `ssh-rsa`)",
            key_type.chars().take(40).collect::<String>()
        ));
    }
    let body = words.next().unwrap_or_default();
    let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    if body.len() < 16 || !body.chars().all(base64) {
        return Err(format!(
            "the key body after `{key_type}` is not base64 (copy the whole line of the `.pub` file)"
        ));
    }
    let comment = words.next().map(str::trim).filter(|text| !text.is_empty());
    Ok(AuthorizedKeyLine {
        options,
        key_type,
        body,
        comment,
    })
}

fn starts_with_key_type(line: &str) -> bool {
    let first = line.split([' ', '\t']).next().unwrap_or_default();
    SSH_KEY_TYPES.contains(&first)
}

/// The end of the options field: the first blank outside double quotes.
fn options_end(line: &str) -> Result<usize, String> {
    let mut quoted = false;
    let mut escaped = false;
    for (index, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => return Ok(index),
            _ => {}
        }
    }
    Err(if quoted {
        "an option's double quote is never closed".to_string()
    } else {
        "no key type (such as `ssh-ed25519`) in the line".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIKr0g2tW2hZ0xyz";

    #[test]
    fn parses_keys_with_and_without_options() {
        let plain = format!("ssh-ed25519 {BODY} alice@laptop");
        let key = parse_authorized_key(&plain).expect("valid");
        assert_eq!(key.options, None);
        assert_eq!(key.identity(), ("ssh-ed25519", BODY));
        assert_eq!(key.comment, Some("alice@laptop"));
        let with = format!("from=\"10.0.0.1, 10.0.0.2\",no-pty ssh-ed25519 {BODY}");
        let key = parse_authorized_key(&with).expect("valid");
        assert_eq!(key.options, Some("from=\"10.0.0.1, 10.0.0.2\",no-pty"));
        assert_eq!(key.comment, None);
        assert_eq!(key.identity(), ("ssh-ed25519", BODY));
    }

    #[test]
    fn rejects_what_is_not_a_key() {
        for bad in [
            "",
            "ssh-ed25519",
            "ssh-ed25519 short",
            "ssh-foo AAAAAAAAAAAAAAAAAAAA",
            "from=\"x ssh-ed25519 AAAAAAAAAAAAAAAAAAAA",
            "ssh-ed25519 AAAA$AAAAAAAAAAAAAAAA",
        ] {
            assert!(parse_authorized_key(bad).is_err(), "`{bad}`");
        }
        assert!(parse_authorized_key(&format!("ssh-ed25519 {BODY}\nssh-rsa {BODY}")).is_err());
    }
}
