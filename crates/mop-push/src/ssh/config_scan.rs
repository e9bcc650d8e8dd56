//! A quick read of the user's and the system's ssh_config files that answers one question: can
//! they give any host a setting mop takes from them (see [`super::lookup`])? When they cannot,
//! asking `ssh -G` once per host would only say so again, at a process per host (about 10 ms of
//! CPU each, most of it the dynamic loader: a quarter of a second for a 20-host run).
//!
//! The answer errs one way only: "they may" whenever the files say anything this reader does not
//! follow exactly (a token or variable in an `Include`, a glob outside the last path component,
//! a file it cannot read, nesting deeper than ssh allows). Only "they cannot" skips the lookups.

use std::path::{Path, PathBuf};

use super::config::ConfigIncludes;

/// Keywords whose value mop takes from ssh_config, and those that change the name ssh
/// resolves (`CanonicalizeHostname` and its companions rewrite `HostName`).
const TAKEN: &[&str] = &[
    "hostname",
    "port",
    "user",
    "identityfile",
    "userknownhostsfile",
    "proxyjump",
];

/// ssh's own limit on nested `Include`s (readconf.c `READCONF_MAX_DEPTH`).
const MAX_DEPTH: usize = 16;

/// `true` when no line of the configs (followed through their `Include`s) can set an option
/// mop takes, so `ssh -G` would give every name ssh's defaults for them.
pub(crate) fn configs_are_inert(includes: &ConfigIncludes) -> bool {
    let home = login_home();
    let user = includes
        .user_config
        .as_deref()
        .map(|path| (path, Origin::User));
    let system = includes
        .system_config
        .as_deref()
        .map(|path| (path, Origin::System));
    [user, system].into_iter().flatten().all(|(path, origin)| {
        match expand_tilde(path, home.as_deref()) {
            Some(path) => file_is_inert(&path, origin, home.as_deref(), 0),
            None => false,
        }
    })
}

/// Where a file was included from: relative `Include` paths resolve against `~/.ssh` in a user
/// config and `/etc/ssh` in a system one.
#[derive(Clone, Copy)]
enum Origin {
    User,
    System,
}

fn file_is_inert(path: &Path, origin: Origin, home: Option<&Path>, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    let text = match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => return false,
        },
        // ssh skips a missing file (and a missing `Include` target) silently.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return true,
        Err(_) => return false,
    };
    text.lines().all(|line| {
        let Some((keyword, arguments)) = split_line(line) else {
            return true;
        };
        if keyword == "include" {
            return arguments.split_whitespace().all(|argument| {
                match included_files(argument, origin, home) {
                    Some(files) => files
                        .iter()
                        .all(|file| file_is_inert(file, origin, home, depth + 1)),
                    None => false,
                }
            });
        }
        !(TAKEN.contains(&keyword.as_str()) || keyword.starts_with("canonical"))
    })
}

/// `Keyword value` or `Keyword=value`, keyword lowercased; `None` for blank and comment lines.
fn split_line(line: &str) -> Option<(String, &str)> {
    let line = line.trim_start();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    Some((keyword.to_ascii_lowercase(), rest))
}

/// The files one `Include` argument names, or `None` when this reader cannot tell exactly
/// (quotes, `%` tokens, `${VAR}`, escapes, a glob before the last component).
fn included_files(argument: &str, origin: Origin, home: Option<&Path>) -> Option<Vec<PathBuf>> {
    if argument.contains(['"', '\'', '%', '$', '\\', '[', '{']) {
        return None;
    }
    let path = expand_tilde(Path::new(argument), home)?;
    let path = if path.is_absolute() {
        path
    } else {
        match origin {
            Origin::User => home?.join(".ssh").join(path),
            Origin::System => Path::new("/etc/ssh").join(path),
        }
    };
    let name = path.file_name()?.to_str()?;
    let parent = path.parent()?;
    if parent.to_str()?.contains(['*', '?']) {
        return None;
    }
    if !name.contains(['*', '?']) {
        return Some(vec![path.clone()]);
    }
    let entries = match std::fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Some(Vec::new()),
        Err(_) => return None,
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.ok()?;
        let entry_name = entry.file_name();
        // A name that is not UTF-8 may still match: let ssh answer.
        let entry_name = entry_name.to_str()?;
        if wildcard_match(name.as_bytes(), entry_name.as_bytes()) {
            files.push(entry.path());
        }
    }
    Some(files)
}

/// glob(3)'s `*` and `?` within one path component; a leading `.` is matched (more files read
/// only makes the answer more careful).
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| wildcard_match(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && wildcard_match(rest, &name[1..]),
        Some((byte, rest)) => name.first() == Some(byte) && wildcard_match(rest, &name[1..]),
    }
}

/// `~/x` against the login user's home as ssh expands it (the password database, not `$HOME`);
/// `None` when there is no home or the path names another user (`~name/x`).
fn expand_tilde(path: &Path, home: Option<&Path>) -> Option<PathBuf> {
    let text = path.to_str()?;
    if text == "~" {
        return home.map(Path::to_path_buf);
    }
    match text.strip_prefix("~/") {
        Some(rest) => Some(home?.join(rest)),
        None if text.starts_with('~') => None,
        None => Some(path.to_path_buf()),
    }
}

/// The login user's home directory from the password database, as ssh takes it.
fn login_home() -> Option<PathBuf> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: `passwd` is plain data that getpwuid_r fills; every pointer it sets points into
    // `buffer`, which outlives their use below.
    unsafe {
        let mut entry: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let status = libc::getpwuid_r(
            libc::getuid(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        );
        if status != 0 || found.is_null() || entry.pw_dir.is_null() {
            return None;
        }
        let dir = CStr::from_ptr(entry.pw_dir).to_bytes();
        (!dir.is_empty()).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(dir)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::lookup::SshConfigReader;

    fn includes(user: &Path) -> ConfigIncludes {
        ConfigIncludes {
            user_config: Some(user.to_path_buf()),
            system_config: None,
        }
    }

    /// Each config as the scan judges it, and what ssh itself says for a few names: a config
    /// judged inert must give every name nothing (the other direction only costs time).
    #[test]
    fn an_inert_verdict_agrees_with_ssh() {
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("# HostName 127.0.9.9\n\n", true),
            (
                "Host *\n    SendEnv LANG LC_*\n    HashKnownHosts yes\n    ServerAliveInterval 30\n",
                true,
            ),
            ("Host web1\n  HostName 127.0.9.1\n", false),
            ("Host web1\n  port=2222\n", false),
            ("Match host web1\n  User ops\n", false),
            ("  IdentityFile /keys/a\n", false),
            ("Host *\n  ProxyJump 127.0.9.2\n", false),
            ("Host *\n  UserKnownHostsFile /kh\n", false),
            ("CanonicalizeHostname yes\nCanonicalDomains example.test\n", false),
            ("Include INCLUDED/inert/*.conf\n", true),
            ("Include INCLUDED/speaks/*.conf\n", false),
            ("Include INCLUDED/missing/*.conf INCLUDED/missing-file\n", true),
            ("Include \"INCLUDED/inert/a.conf\"\n", false),
            ("Include INCLUDED/%d/x\n", false),
        ];
        let dir = tempfile::tempdir().expect("temp dir");
        let included = dir.path().join("included");
        for (sub, text) in [("inert", "Compression yes\n"), ("speaks", "User ops\n")] {
            std::fs::create_dir_all(included.join(sub)).expect("mkdir");
            std::fs::write(included.join(sub).join("a.conf"), text).expect("write");
        }
        for (index, (text, inert)) in cases.iter().enumerate() {
            let config = dir.path().join(format!("config{index}"));
            let text = text.replace("INCLUDED", included.to_str().expect("utf-8"));
            std::fs::write(&config, &text).expect("write");
            assert_eq!(configs_are_inert(&includes(&config)), *inert, "{text}");
            if *inert {
                let reader = SshConfigReader::new(&includes(&config)).expect("reader");
                for name in ["web1", "db1", "127.0.9.1"] {
                    let said = reader.settings_from_ssh(name).expect("ssh -G");
                    assert!(said.is_empty(), "{text}: ssh says {said:?} for {name}");
                }
            }
        }
    }

    #[test]
    fn includes_nest_and_loops_stop_at_ssh_depth() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, format!("Include {}\n", b.display())).expect("write");
        std::fs::write(&b, "Port 2200\n").expect("write");
        assert!(!configs_are_inert(&includes(&a)));
        std::fs::write(&b, format!("Include {}\n", a.display())).expect("write");
        assert!(
            !configs_are_inert(&includes(&a)),
            "a loop is not followed forever"
        );
        assert!(configs_are_inert(&includes(&dir.path().join("absent"))));
    }

    #[test]
    fn relative_includes_resolve_where_ssh_resolves_them() {
        let home = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(home.path().join(".ssh")).expect("mkdir");
        std::fs::write(home.path().join(".ssh/extra"), "User ops\n").expect("write");
        let found = included_files("extra", Origin::User, Some(home.path())).expect("exact");
        assert_eq!(found, [home.path().join(".ssh/extra")]);
        let found = included_files("~/.ssh/ex*", Origin::User, Some(home.path())).expect("exact");
        assert_eq!(found, [home.path().join(".ssh/extra")]);
        let found = included_files("ssh_config.d/x.conf", Origin::System, None).expect("exact");
        assert_eq!(found, [PathBuf::from("/etc/ssh/ssh_config.d/x.conf")]);
        assert!(included_files("~other/x", Origin::User, Some(home.path())).is_none());
        assert!(included_files("/etc/*/x", Origin::System, None).is_none());
    }

    #[test]
    fn wildcards_match_like_glob() {
        assert!(wildcard_match(b"*.conf", b"a.conf"));
        assert!(wildcard_match(b"*.conf", b".conf"));
        assert!(!wildcard_match(b"*.conf", b"a.confx"));
        assert!(wildcard_match(b"a?c", b"abc"));
        assert!(!wildcard_match(b"a?c", b"ac"));
        assert!(wildcard_match(b"*", b""));
    }
}
