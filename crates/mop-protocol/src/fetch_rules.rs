//! The grammar of the values `download`, `git` and `repository` hand to host programs or
//! write into configuration lines: checked by `mop validate` for literals and by the agent
//! after rendering, with the same messages.
//!
//! Why strict: these values land in an argv (`curl`, `git`) or in one line of an apt/yum
//! file. A value that starts with `-` could be read as an option (`--upload-pack=...`), a
//! newline would add lines of its own to a source file, and git's `ext::` transport runs a
//! command. Each check returns the problem as a lowercase sentence, or `None`.

/// Characters that never belong in a URL, a path or a word written into a config line.
fn has_control_or_space(text: &str) -> bool {
    text.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// A URL for `download`: `http://` or `https://`, no spaces or control characters.
pub fn download_url_problem(url: &str) -> Option<String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Some(format!("`{url}` is not an http:// or https:// URL"));
    }
    if has_control_or_space(url) || url.len() <= "https://".len() {
        return Some(format!(
            "`{}` is not a valid URL (no host, or spaces or control characters in it)",
            url.escape_debug()
        ));
    }
    None
}

/// A repository URL (apt `URIs`, yum `baseurl`): `http://`, `https://` or `file:/`.
pub fn repository_url_problem(url: &str) -> Option<String> {
    if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("file:/")) {
        return Some(format!(
            "`{}` is not an http://, https:// or file:/ URL",
            url.escape_debug()
        ));
    }
    if has_control_or_space(url) {
        return Some(format!(
            "`{}` contains spaces or control characters",
            url.escape_debug()
        ));
    }
    None
}

/// A sha256: exactly 64 hexadecimal digits (either case).
pub fn sha256_problem(text: &str) -> Option<String> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        None
    } else {
        Some(format!(
            "`{}` is not a sha256 (64 hexadecimal digits)",
            text.escape_debug()
        ))
    }
}

/// A git repository as `git clone` takes it: a URL or a path, never an option, never the
/// `ext::`/`fd::` transports (which run commands or use descriptors).
pub fn git_repo_problem(repo: &str) -> Option<String> {
    if repo.is_empty() {
        return Some("the repository is empty".to_string());
    }
    if repo.starts_with('-') {
        return Some(format!(
            "`{}` starts with `-` and would be read as an option",
            repo.escape_debug()
        ));
    }
    if has_control_or_space(repo) {
        return Some(format!(
            "`{}` contains spaces or control characters",
            repo.escape_debug()
        ));
    }
    let lower = repo.to_ascii_lowercase();
    if lower.starts_with("ext::") || lower.starts_with("fd::") {
        return Some(format!(
            "`{repo}` uses git's `ext::`/`fd::` transport, which is refused"
        ));
    }
    None
}

/// A git revision: a branch, tag or commit name. Letters, digits and `._/-+`, not starting
/// with `-` or `.`, no `..` (git's own ref rules refuse those too).
pub fn git_version_problem(version: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._/-+".contains(c);
    if version.is_empty()
        || version.starts_with('-')
        || version.starts_with('.')
        || version.contains("..")
        || !version.chars().all(allowed)
    {
        return Some(format!(
            "`{}` is not a branch, tag or commit name (letters, digits and `._/-+`, not starting with `-` or `.`)",
            version.escape_debug()
        ));
    }
    None
}

/// A repository name: it names files, so letters, digits and `._-`, starting with a letter
/// or digit, at most 64 characters.
pub fn repository_name_problem(name: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if !starts_well || name.len() > 64 || !name.chars().all(allowed) {
        return Some(format!(
            "`{}` is not a repository name (letters, digits and `._-`, starting with a letter or digit, at most 64 characters)",
            name.escape_debug()
        ));
    }
    None
}

/// One word of an apt source line (a suite or a component): no spaces, no control
/// characters, not empty.
pub fn apt_word_problem(word: &str) -> Option<String> {
    if word.is_empty() || has_control_or_space(word) || word.starts_with('#') {
        return Some(format!(
            "`{}` is not a single word (no spaces, control characters or leading `#`)",
            word.escape_debug()
        ));
    }
    None
}

/// An ASCII-armored OpenPGP public key.
pub fn armored_key_problem(key: &str) -> Option<String> {
    let trimmed = key.trim();
    if trimmed.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
        && trimmed.ends_with("-----END PGP PUBLIC KEY BLOCK-----")
    {
        None
    } else {
        Some(
            "the key is not an ASCII-armored public key (`-----BEGIN PGP PUBLIC KEY BLOCK-----` ... `-----END PGP PUBLIC KEY BLOCK-----`)"
                .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_could_be_options_or_lines_are_refused() {
        assert!(download_url_problem("https://example.org/a.tgz").is_none());
        assert!(download_url_problem("-o/etc/passwd").is_some());
        assert!(download_url_problem("file:///etc/shadow").is_some());
        assert!(download_url_problem("http://a b").is_some());
        assert!(repository_url_problem("file:///srv/repo").is_none());
        assert!(repository_url_problem("http://x/\nTrusted: yes").is_some());
        assert!(sha256_problem(&"a".repeat(64)).is_none());
        assert!(sha256_problem(&"g".repeat(64)).is_some());
        assert!(sha256_problem("abc").is_some());
        assert!(git_repo_problem("https://example.org/r.git").is_none());
        assert!(git_repo_problem("/srv/git/r").is_none());
        assert!(git_repo_problem("--upload-pack=touch /tmp/x").is_some());
        assert!(git_repo_problem("-uevil").is_some());
        assert!(git_repo_problem("ext::sh -c touch% /tmp/x").is_some());
        assert!(git_repo_problem("EXT::x").is_some());
        assert!(git_version_problem("main").is_none());
        assert!(git_version_problem("v1.2.3").is_none());
        assert!(git_version_problem("feature/x-y").is_none());
        assert!(git_version_problem("--detach").is_some());
        assert!(git_version_problem("a..b").is_some());
        assert!(git_version_problem("HEAD~1").is_some());
        assert!(repository_name_problem("nginx-stable").is_none());
        assert!(repository_name_problem("../x").is_some());
        assert!(repository_name_problem("a/b").is_some());
        assert!(repository_name_problem("").is_some());
        assert!(apt_word_problem("./").is_none());
        assert!(apt_word_problem("main contrib").is_some());
        assert!(armored_key_problem(
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\nx\n-----END PGP PUBLIC KEY BLOCK-----\n"
        )
        .is_none());
        assert!(armored_key_problem("ssh-rsa AAAA").is_some());
    }
}
