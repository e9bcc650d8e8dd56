//! The `sysctl` resource: a kernel parameter's live value (written to `/proc/sys/...`) and its
//! `key = value` line in a sysctl file (`/etc/sysctl.d/99-mop.conf` unless `file` says
//! otherwise), so the value survives a reboot. The file is rewritten atomically and only the
//! parameter's own lines change.

use std::fs;
use std::path::{Path, PathBuf};

use mop_protocol::{Presence, SysctlSpec, DEFAULT_SYSCTL_FILE};

use super::file::absolute_path;
use crate::diff::content_diff;
use crate::fsutil;
use crate::outcome::{Outcome, ResourceError};

/// Where the kernel exposes its parameters (a field so the unit tests can point elsewhere).
const PROC_SYS: &str = "/proc/sys";

pub fn converge(spec: &SysctlSpec, check: bool, diff: bool) -> Result<Outcome, ResourceError> {
    converge_at(spec, Path::new(PROC_SYS), check, diff)
}

fn converge_at(
    spec: &SysctlSpec,
    proc_sys: &Path,
    check: bool,
    diff: bool,
) -> Result<Outcome, ResourceError> {
    let key = parse_key(&spec.name)?;
    let file_text = spec.file.as_deref().unwrap_or(DEFAULT_SYSCTL_FILE);
    let file = absolute_path(file_text)?;
    let wanted = match spec.state.resolved() {
        Presence::Present => {
            let value = spec.value.as_deref().ok_or_else(|| {
                ResourceError::new("`value` is required when the parameter is present")
            })?;
            let normalized = normalize_value(value);
            if normalized.is_empty() || value.contains(['\n', '\r']) {
                return Err(ResourceError::new(format!(
                    "invalid value `{value}` for `{}`: expected one line of text",
                    key.dotted
                )));
            }
            Some(normalized)
        }
        Presence::Absent => None,
    };

    let mut changes = Vec::new();
    let live_path = proc_sys.join(&key.proc_relative);
    let mut set_live = None;
    if let Some(wanted) = &wanted {
        let live = fs::read_to_string(&live_path).map_err(|err| {
            let mut message = format!(
                "cannot read kernel parameter `{}` at `{}`: {err}",
                key.dotted,
                live_path.display()
            );
            if err.kind() == std::io::ErrorKind::NotFound {
                message.push_str("\nhint: the kernel has no such parameter (check the spelling, or load the module that provides it)");
            }
            ResourceError::new(message)
        })?;
        let live = normalize_value(&live);
        if &live != wanted {
            changes.push(format!("live value `{live}` -> `{wanted}`"));
            set_live = Some(wanted.clone());
        }
    }

    let existing = fsutil::read_optional(file)?;
    let old_text = match &existing {
        Some(bytes) => Some(std::str::from_utf8(bytes).map_err(|_| {
            ResourceError::new(format!(
                "`{}` is not UTF-8 text; refusing to edit it",
                file.display()
            ))
        })?),
        None => None,
    };
    let edited = edit_file(old_text.unwrap_or(""), &key.dotted, wanted.as_deref());
    let file_change = match (&edited, existing.is_some()) {
        (Some((_, change)), true) => Some(format!("`{}`: {change}", file.display())),
        (Some(_), false) => Some(format!("created `{}`", file.display())),
        (None, _) => None,
    };
    changes.extend(file_change);
    if changes.is_empty() {
        return Ok(Outcome::unchanged());
    }
    let mut outcome = Outcome::changed(changes);
    if let (true, Some((new_text, _))) = (diff, &edited) {
        outcome.diff = Some(content_diff(
            file_text,
            existing.as_deref(),
            new_text.as_bytes(),
        ));
    }
    if check {
        return Ok(outcome);
    }
    if let Some(value) = set_live {
        // The kernel takes the whole value in one write; it refuses a bad one with EINVAL.
        fs::write(&live_path, format!("{value}\n")).map_err(|err| {
            ResourceError::new(format!(
                "cannot set kernel parameter `{}` to `{value}`: {err}",
                key.dotted
            ))
        })?;
    }
    if let Some((new_text, _)) = edited {
        fsutil::write_config_file(file, &new_text, existing.is_some())?;
    }
    Ok(outcome)
}

/// A parameter name in both spellings sysctl accepts.
struct Key {
    /// `net.ipv4.ip_forward`, as written in sysctl files.
    dotted: String,
    /// `net/ipv4/ip_forward`, under `/proc/sys`.
    proc_relative: PathBuf,
}

/// Accepts `a.b.c` or `a/b/c` (the slash form lets a component hold a dot, such as the
/// interface `eth0.100` in `net/ipv4/conf/eth0.100/forwarding`). Every component is a plain
/// name, so the path cannot leave `/proc/sys`.
fn parse_key(text: &str) -> Result<Key, ResourceError> {
    let separator = if text.contains('/') { '/' } else { '.' };
    let components: Vec<&str> = text.split(separator).collect();
    let valid = |component: &&str| {
        !component.is_empty()
            && *component != "."
            && *component != ".."
            && component
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"_-.:@+".contains(&byte))
    };
    if text.is_empty() || !components.iter().all(valid) {
        return Err(ResourceError::new(format!(
            "invalid kernel parameter name `{text}`\nhint: write it as sysctl does, such as `net.ipv4.ip_forward` or `net/ipv4/conf/eth0.100/forwarding`"
        )));
    }
    Ok(Key {
        dotted: text.replace('/', "."),
        proc_relative: components.iter().collect(),
    })
}

/// The kernel prints multi-part values separated by tabs (`32768\t60999`); sysctl files use
/// spaces. Values compare equal when their words do.
fn normalize_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The key of a `key = value` line, or `None` for a comment, a blank or an `-` include line.
fn line_key(line: &str) -> Option<String> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') || trimmed.starts_with(';') {
        return None;
    }
    // A leading `-` tells systemd-sysctl to ignore a failure; it is still this key.
    let trimmed = trimmed.strip_prefix('-').unwrap_or(trimmed);
    let (key, _) = trimmed.split_once('=')?;
    Some(key.trim().replace('/', "."))
}

/// The file with the key's line set to `wanted` (or removed when `None`): the first line for
/// the key is replaced, later ones removed (the last would win when the file is loaded).
/// `None` when nothing changes.
fn edit_file(text: &str, key: &str, wanted: Option<&str>) -> Option<(String, String)> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let matching: Vec<usize> = (0..lines.len())
        .filter(|index| line_key(&lines[*index]).as_deref() == Some(key))
        .collect();
    let new_line = wanted.map(|value| format!("{key} = {value}"));
    let change = match (&new_line, matching.first()) {
        (Some(new_line), None) => {
            lines.push(new_line.clone());
            "added the line".to_string()
        }
        (Some(new_line), Some(&first)) => {
            let same = lines[first]
                .split_once('=')
                .is_some_and(|(_, value)| normalize_value(value) == wanted.unwrap_or_default());
            if same && matching.len() == 1 {
                return None;
            }
            lines[first] = new_line.clone();
            for index in matching.iter().skip(1).rev() {
                lines.remove(*index);
            }
            format!("replaced line {}", first + 1)
        }
        (None, None) => return None,
        (None, Some(_)) => {
            for index in matching.iter().rev() {
                lines.remove(*index);
            }
            let noun = if matching.len() == 1 { "line" } else { "lines" };
            format!("removed {} {noun}", matching.len())
        }
    };
    let mut new_text = lines.join("\n");
    if !new_text.is_empty() {
        new_text.push('\n');
    }
    Some((new_text, change))
}

#[cfg(test)]
mod tests {
    use super::super::testing::snapshot;
    use super::*;

    fn spec(name: &str, value: Option<&str>, file: &Path) -> SysctlSpec {
        SysctlSpec {
            name: name.to_string(),
            value: value.map(str::to_string),
            state: Presence::Present.into(),
            file: Some(file.display().to_string()),
        }
    }

    /// A fake `/proc/sys` with one parameter, and a sysctl file beside it.
    fn fixture(live: &str, file_text: Option<&str>) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().expect("tempdir");
        let proc_sys = root.path().join("proc");
        fs::create_dir_all(proc_sys.join("net/ipv4")).expect("mkdir");
        fs::write(proc_sys.join("net/ipv4/ip_forward"), live).expect("write");
        let file = root.path().join("etc-99.conf");
        if let Some(text) = file_text {
            fs::write(&file, text).expect("write");
        }
        (root, proc_sys, file)
    }

    #[test]
    fn sets_live_and_file_then_nothing() {
        let (root, proc_sys, file) = fixture("0\n", Some("# keep\nvm.swappiness = 10\n"));
        let spec = spec("net.ipv4.ip_forward", Some("1"), &file);
        let before = snapshot(root.path());
        let checked = converge_at(&spec, &proc_sys, true, true).expect("check");
        assert_eq!(snapshot(root.path()), before, "check mode wrote");
        assert_eq!(
            checked.changes,
            vec![
                "live value `0` -> `1`".to_string(),
                format!("`{}`: added the line", file.display())
            ]
        );
        assert!(checked
            .diff
            .expect("diff")
            .contains("+net.ipv4.ip_forward = 1"));
        converge_at(&spec, &proc_sys, false, false).expect("apply");
        assert_eq!(
            fs::read_to_string(proc_sys.join("net/ipv4/ip_forward")).expect("read"),
            "1\n"
        );
        assert_eq!(
            fs::read_to_string(&file).expect("read"),
            "# keep\nvm.swappiness = 10\nnet.ipv4.ip_forward = 1\n"
        );
        let again = converge_at(&spec, &proc_sys, false, false).expect("again");
        assert!(!again.changed, "{again:?}");
    }

    #[test]
    fn replaces_the_first_line_and_drops_duplicates() {
        let text = "net.ipv4.ip_forward=0\nx = 1\n-net/ipv4/ip_forward = 0\n";
        assert_eq!(
            edit_file(text, "net.ipv4.ip_forward", Some("1")),
            Some((
                "net.ipv4.ip_forward = 1\nx = 1\n".to_string(),
                "replaced line 1".to_string()
            ))
        );
        assert_eq!(edit_file("a.b =  1 \n", "a.b", Some("1")), None);
        assert_eq!(
            edit_file("a.b = 1\n# a.b = 2\n", "a.b", None),
            Some(("# a.b = 2\n".to_string(), "removed 1 line".to_string()))
        );
        assert_eq!(edit_file("", "a.b", None), None);
    }

    #[test]
    fn multi_word_values_compare_by_words() {
        let (_root, proc_sys, file) = fixture("32768\t60999\n", None);
        fs::write(&file, "net.ipv4.ip_forward = 32768 60999\n").expect("write");
        let spec = spec("net.ipv4.ip_forward", Some("32768  60999"), &file);
        assert!(
            !converge_at(&spec, &proc_sys, true, false)
                .expect("check")
                .changed
        );
    }

    #[test]
    fn absent_removes_the_line_only() {
        let (_root, proc_sys, file) = fixture("1\n", Some("net.ipv4.ip_forward = 1\n"));
        let mut spec = spec("net.ipv4.ip_forward", None, &file);
        spec.state = Presence::Absent.into();
        let outcome = converge_at(&spec, &proc_sys, false, false).expect("apply");
        assert!(outcome.changed);
        assert_eq!(fs::read_to_string(&file).expect("read"), "");
        assert_eq!(
            fs::read_to_string(proc_sys.join("net/ipv4/ip_forward")).expect("read"),
            "1\n"
        );
    }

    #[test]
    fn bad_names_and_unknown_parameters_fail_clearly() {
        let (_root, proc_sys, file) = fixture("0\n", None);
        for name in [
            "",
            "net..x",
            "../etc/passwd",
            "net/../../etc",
            "a b",
            "net.ipv4.*",
        ] {
            let err =
                converge_at(&spec(name, Some("1"), &file), &proc_sys, true, false).expect_err(name);
            assert!(
                err.message.contains("invalid kernel parameter name"),
                "{err}"
            );
        }
        let err = converge_at(
            &spec("net.ipv4.nope", Some("1"), &file),
            &proc_sys,
            true,
            false,
        )
        .expect_err("unknown");
        assert!(
            err.message.contains("the kernel has no such parameter"),
            "{err}"
        );
        assert!(!file.exists());
    }
}
