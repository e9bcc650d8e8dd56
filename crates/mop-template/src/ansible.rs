//! The filters Ansible roles use most, with Ansible's names and arguments, so that templates
//! ported from a role render the same: `regex_replace`, `regex_search`, `b64encode`,
//! `b64decode`, `to_json`, `from_json`, `combine`, `basename`, `dirname`, `hash` and `quote`
//! (`unique` is minijinja's own).
//!
//! Regular expressions are regex-lite's dialect (Rust `regex` syntax without Unicode classes:
//! no look-around, no backreferences inside the pattern, `\d` `\w` `\s` are ASCII); the
//! replacement string takes Python's `\1`, `\g<1>` and `\g<name>` as Ansible's does.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};
use regex_lite::{Regex, RegexBuilder};

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// Compiles `pattern` with Ansible's `ignorecase` and `multiline` keyword arguments.
fn compile(pattern: &str, kwargs: &Kwargs) -> Result<Regex, Error> {
    let ignorecase: Option<bool> = kwargs.get("ignorecase")?;
    let multiline: Option<bool> = kwargs.get("multiline")?;
    RegexBuilder::new(pattern)
        .case_insensitive(ignorecase.unwrap_or(false))
        .multi_line(multiline.unwrap_or(false))
        .build()
        .map_err(|err| invalid(format!("invalid regular expression `{pattern}`: {err}")))
}

/// Python's replacement syntax (`\1`, `\g<1>`, `\g<name>`, `\\`) in regex-lite's (`${1}`,
/// `${name}`, `$$` for a literal dollar).
fn replacement_template(python: &str) -> String {
    let mut out = String::with_capacity(python.len());
    let mut rest = python;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        if c == '$' {
            out.push_str("$$");
            continue;
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        // Python reads at most two digits: `\12` is group 12.
        let digits = rest.bytes().take(2).take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            out.push_str(&format!("${{{}}}", &rest[..digits]));
            rest = &rest[digits..];
            continue;
        }
        if let Some(length) = rest.strip_prefix("g<").and_then(|name| name.find('>')) {
            out.push_str(&format!("${{{}}}", &rest[2..2 + length]));
            rest = &rest[2 + length + 1..];
            continue;
        }
        let escaped = match rest.chars().next() {
            Some('\\') => '\\',
            Some('n') => '\n',
            Some('t') => '\t',
            _ => {
                out.push('\\');
                continue;
            }
        };
        out.push(escaped);
        rest = &rest[1..];
    }
    out
}

/// `regex_replace(pattern, replacement='', ignorecase=false, multiline=false)`: every match
/// replaced.
pub fn regex_replace(
    value: &str,
    pattern: &str,
    replacement: Option<&str>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let regex = compile(pattern, &kwargs)?;
    let template = replacement_template(replacement.unwrap_or(""));
    Ok(regex.replace_all(value, template.as_str()).into_owned())
}

/// `regex_search(pattern, '\\1', '\\g<name>', ..., ignorecase=false, multiline=false)`: the
/// first match (none when nothing matches); with group arguments, the list of those groups of
/// the first match.
pub fn regex_search(value: &str, pattern: &str, rest: &[Value]) -> Result<Value, Error> {
    let (groups, kwargs) = split_kwargs(rest)?;
    let regex = compile(pattern, &kwargs)?;
    kwargs.assert_all_used()?;
    let Some(captures) = regex.captures(value) else {
        return Ok(Value::from(()));
    };
    if groups.is_empty() {
        let whole = captures.get(0).map_or("", |found| found.as_str());
        return Ok(Value::from(whole));
    }
    let mut found = Vec::new();
    for group in groups {
        let text = group.as_str().ok_or_else(|| {
            invalid("regex_search: group arguments are strings like '\\1' or '\\g<name>'".into())
        })?;
        let matched = if let Some(number) = text.strip_prefix('\\').and_then(|n| n.parse().ok()) {
            captures.get(number)
        } else if let Some(name) = text
            .strip_prefix("\\g<")
            .and_then(|rest| rest.strip_suffix('>'))
        {
            match name.parse::<usize>() {
                Ok(number) => captures.get(number),
                Err(_) => captures.name(name),
            }
        } else {
            return Err(invalid(format!(
                "regex_search: unknown group `{text}` (expected '\\1' or '\\g<name>')"
            )));
        };
        found.push(Value::from(matched.map(|m| m.as_str())));
    }
    Ok(Value::from(found))
}

/// Positional arguments and the trailing keyword arguments of a variadic filter.
fn split_kwargs(args: &[Value]) -> Result<(&[Value], Kwargs), Error> {
    match args.split_last() {
        Some((last, positional)) if last.is_kwargs() => {
            Ok((positional, Kwargs::try_from(last.clone())?))
        }
        _ => Ok((args, Kwargs::from_iter(std::iter::empty::<(&str, Value)>()))),
    }
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// `b64encode`: standard base64 (with padding) of the string's UTF-8 bytes.
pub fn b64encode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let word = chunk.iter().enumerate().fold(0u32, |word, (index, &byte)| {
            word | (u32::from(byte) << (16 - 8 * index))
        });
        for index in 0..4 {
            if index <= chunk.len() {
                let sextet = (word >> (18 - 6 * index)) & 0x3f;
                out.push(char::from(BASE64_ALPHABET[sextet as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `b64decode`: standard or URL-safe base64 (padding optional, whitespace ignored) to a UTF-8
/// string.
pub fn b64decode(value: &str) -> Result<String, Error> {
    let mut bytes = Vec::with_capacity(value.len() / 4 * 3);
    let mut word = 0u32;
    let mut bits = 0;
    for c in value.chars().filter(|c| !c.is_whitespace()) {
        let sextet = match c {
            'A'..='Z' => c as u32 - 'A' as u32,
            'a'..='z' => c as u32 - 'a' as u32 + 26,
            '0'..='9' => c as u32 - '0' as u32 + 52,
            '+' | '-' => 62,
            '/' | '_' => 63,
            '=' => break,
            _ => return Err(invalid(format!("b64decode: `{c}` is not base64"))),
        };
        word = (word << 6) | sextet;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((word >> bits) as u8);
            word &= (1 << bits) - 1;
        }
    }
    String::from_utf8(bytes)
        .map_err(|_| invalid("b64decode: the decoded bytes are not UTF-8 text".into()))
}

/// Python's `json.dumps` separators (`", "` and `": "`), which Ansible's `to_json` keeps.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// `to_json(indent=N)`: JSON as Python writes it (`{"a": 1, "b": [1, 2]}`), or indented by N
/// spaces. Unlike minijinja's `tojson` nothing is HTML-escaped: the output is for
/// configuration files.
pub fn to_json(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let mut out = Vec::new();
    let result = match indent {
        Some(width) => {
            let spaces = vec![b' '; width];
            let formatter = serde_json::ser::PrettyFormatter::with_indent(&spaces);
            let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
            serde::Serialize::serialize(value, &mut serializer)
        }
        None => {
            let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
            serde::Serialize::serialize(value, &mut serializer)
        }
    };
    result.map_err(|err| invalid(format!("to_json: {err}")))?;
    String::from_utf8(out).map_err(|_| invalid("to_json: output is not UTF-8".into()))
}

/// `from_json`: the value a JSON string holds.
pub fn from_json(value: &str) -> Result<Value, Error> {
    let parsed: serde_json::Value = serde_json::from_str(value)
        .map_err(|err| invalid(format!("from_json: invalid JSON: {err}")))?;
    Ok(Value::from_serialize(&parsed))
}

/// `combine(other, ..., recursive=false)`: maps merged left to right, later keys winning; with
/// `recursive=true` nested maps are merged too. A list of maps as the input is combined the
/// same way (`[a, b] | combine`).
pub fn combine(value: &Value, rest: &[Value]) -> Result<Value, Error> {
    let (others, kwargs) = split_kwargs(rest)?;
    let recursive: Option<bool> = kwargs.get("recursive")?;
    kwargs.assert_all_used()?;
    let recursive = recursive.unwrap_or(false);
    let mut maps: Vec<Value> = match value.kind() {
        ValueKind::Seq => value.try_iter()?.collect(),
        _ => vec![value.clone()],
    };
    maps.extend(others.iter().cloned());
    let mut merged = Value::from(std::collections::BTreeMap::<String, Value>::new());
    let mut first = true;
    for map in &maps {
        if map.kind() != ValueKind::Map {
            return Err(invalid(format!(
                "combine: expected maps, got {}",
                map.kind()
            )));
        }
        merged = if first {
            first = false;
            map.clone()
        } else {
            merge(&merged, map, recursive)?
        };
    }
    Ok(merged)
}

/// `left` with `right`'s entries, in `left`'s key order followed by `right`'s new keys.
fn merge(left: &Value, right: &Value, recursive: bool) -> Result<Value, Error> {
    let mut entries: Vec<(Value, Value)> = Vec::new();
    for key in left.try_iter()? {
        let value = left.get_item(&key)?;
        entries.push((key, value));
    }
    for key in right.try_iter()? {
        let value = right.get_item(&key)?;
        match entries.iter_mut().find(|(existing, _)| *existing == key) {
            Some((_, existing)) => {
                *existing = if recursive
                    && existing.kind() == ValueKind::Map
                    && value.kind() == ValueKind::Map
                {
                    merge(existing, &value, true)?
                } else {
                    value
                };
            }
            None => entries.push((key, value)),
        }
    }
    Ok(Value::from_iter(entries))
}

/// `quote`: the value as one word of a POSIX shell command (Python's `shlex.quote`, which
/// Ansible's filter is): unchanged when it holds only characters no shell treats specially,
/// otherwise wrapped in single quotes, each `'` written `'"'"'`. `''` for an empty value.
pub fn quote(value: &Value) -> String {
    let text = match value.as_str() {
        Some(text) => text.to_string(),
        None => value.to_string(),
    };
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        return text;
    }
    format!("'{}'", text.replace('\'', "'\"'\"'"))
}

/// `basename`: what follows the last `/` (Python's `os.path.basename`: `/a/b/` gives ``).
pub fn basename(value: &str) -> String {
    match value.rfind('/') {
        Some(index) => value[index + 1..].to_string(),
        None => value.to_string(),
    }
}

/// `dirname`: what precedes the last `/`, without trailing slashes unless it is all slashes
/// (Python's `os.path.dirname`: `/a/b` gives `/a`, `/a` gives `/`, `a` gives ``).
pub fn dirname(value: &str) -> String {
    let head = match value.rfind('/') {
        Some(index) => &value[..=index],
        None => "",
    };
    if !head.is_empty() && head.bytes().any(|byte| byte != b'/') {
        head.trim_end_matches('/').to_string()
    } else {
        head.to_string()
    }
}

/// The algorithms `hash` knows, as Ansible names them.
pub const HASH_ALGORITHMS: &[&str] = &["md5", "sha1", "sha224", "sha256", "sha384", "sha512"];

/// `hash(algorithm='sha1')`: the lowercase hex digest of the string's UTF-8 bytes. sha1 is
/// the default, as in Ansible.
pub fn hash(value: &str, algorithm: Option<&str>) -> Result<String, Error> {
    use sha2::Digest;
    let bytes = value.as_bytes();
    let digest: Vec<u8> = match algorithm.unwrap_or("sha1") {
        "md5" => md5::Md5::digest(bytes).to_vec(),
        "sha1" => sha1::Sha1::digest(bytes).to_vec(),
        "sha224" => sha2::Sha224::digest(bytes).to_vec(),
        "sha256" => sha2::Sha256::digest(bytes).to_vec(),
        "sha384" => sha2::Sha384::digest(bytes).to_vec(),
        "sha512" => sha2::Sha512::digest(bytes).to_vec(),
        other => {
            return Err(invalid(format!(
                "hash: unknown algorithm `{other}` (known: {})",
                HASH_ALGORITHMS.join(", ")
            )))
        }
    };
    Ok(digest.iter().map(|byte| format!("{byte:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_replacements_become_regex_lite_ones() {
        for (python, expected) in [
            ("\\1", "${1}"),
            ("a\\12b", "a${12}b"),
            ("\\g<name>-\\g<2>", "${name}-${2}"),
            ("$5 \\\\ \\n", "$$5 \\ \n"),
            ("\\g<broken", "\\g<broken"),
            ("plain", "plain"),
        ] {
            assert_eq!(replacement_template(python), expected, "{python}");
        }
    }

    #[test]
    fn base64_round_trips_and_matches_known_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
            ("héllo", "aMOpbGxv"),
        ] {
            assert_eq!(b64encode(plain), encoded);
            assert_eq!(b64decode(encoded).expect("decodes"), plain);
        }
        assert_eq!(b64decode("Zm9v\nYmFy").expect("whitespace"), "foobar");
        assert!(b64decode("Zm9v!").is_err());
        assert!(b64decode("/w==").is_err(), "0xff is not UTF-8");
    }

    #[test]
    fn paths_split_like_python() {
        for (path, base, dir) in [
            ("/etc/nginx/nginx.conf", "nginx.conf", "/etc/nginx"),
            ("/etc/nginx/", "", "/etc/nginx"),
            ("/etc", "etc", "/"),
            ("//etc", "etc", "//"),
            ("nginx.conf", "nginx.conf", ""),
            ("a//b", "b", "a"),
            ("", "", ""),
        ] {
            assert_eq!(basename(path), base, "basename {path}");
            assert_eq!(dirname(path), dir, "dirname {path}");
        }
    }

    #[test]
    fn quote_gives_one_inert_shell_word() {
        for (value, quoted) in [
            ("plain/path-1.conf", "plain/path-1.conf"),
            ("", "''"),
            ("a b", "'a b'"),
            ("it's", "'it'\"'\"'s'"),
            (
                "$(touch x)`id`;|&<>*?~#!\\\n",
                "'$(touch x)`id`;|&<>*?~#!\\\n'",
            ),
        ] {
            assert_eq!(quote(&Value::from(value)), quoted, "{value:?}");
            // A real shell reads the quoted word back as exactly the value.
            let echoed = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {quoted}"))
                .output()
                .expect("sh runs");
            assert_eq!(String::from_utf8_lossy(&echoed.stdout), value);
        }
        assert_eq!(quote(&Value::from(8080)), "8080");
    }

    #[test]
    fn hashes_match_known_digests() {
        assert_eq!(
            hash("abc", None).expect("sha1"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hash("abc", Some("md5")).expect("md5"),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            hash("abc", Some("sha256")).expect("sha256"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let error = hash("abc", Some("crc32")).expect_err("unknown");
        assert!(
            error.to_string().contains("unknown algorithm `crc32`"),
            "{error}"
        );
    }
}
