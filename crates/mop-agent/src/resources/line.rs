//! The `line` resource: ensure one line (or a regex-replaced line) is in a text file, or that
//! matching lines are not; the rest of the file, its line endings and its final newline are
//! kept as they were, and the write is atomic.

use std::fs;
use std::path::Path;

use mop_protocol::{LineSpec, Presence};
use regex_lite::Regex;

use super::file::absolute_path;
use crate::diff::content_diff;
use crate::fsutil::{self, io_error, FinalAttributes, WantedAttributes};
use crate::outcome::{Outcome, ResourceError};

/// A file split into lines, remembering whether it ended with a newline. Each line keeps a
/// trailing `\r` if it had one (CRLF files stay CRLF), but comparisons ignore it.
pub(super) struct Lines {
    pub(super) lines: Vec<String>,
    pub(super) final_newline: bool,
}

impl Lines {
    pub(super) fn parse(text: &str) -> Lines {
        if text.is_empty() {
            return Lines {
                lines: Vec::new(),
                final_newline: false,
            };
        }
        let final_newline = text.ends_with('\n');
        let body = if final_newline {
            &text[..text.len() - 1]
        } else {
            text
        };
        Lines {
            lines: body.split('\n').map(str::to_string).collect(),
            final_newline,
        }
    }

    pub(super) fn render(&self) -> String {
        let mut text = self.lines.join("\n");
        if self.final_newline && !self.lines.is_empty() {
            text.push('\n');
        }
        text
    }

    /// Appends a line; the file then ends with a newline, as a text file should.
    fn append(&mut self, line: &str) {
        self.lines.push(line.to_string());
        self.final_newline = true;
    }
}

pub(super) fn bare(line: &str) -> &str {
    line.strip_suffix('\r').unwrap_or(line)
}

pub fn converge(spec: &LineSpec, check: bool, diff: bool) -> Result<Outcome, ResourceError> {
    let path = absolute_path(&spec.path)?;
    let regex = spec
        .regexp
        .as_deref()
        .map(|pattern| {
            Regex::new(pattern)
                .map_err(|err| ResourceError::new(format!("invalid `regexp` `{pattern}`: {err}")))
        })
        .transpose()?;
    let existing = match fsutil::symlink_metadata(path)? {
        Some(meta) if meta.is_dir() => {
            return Err(ResourceError::new(format!(
                "`{}` is a directory, not a text file",
                path.display()
            )))
        }
        // Editing follows a symlink to its target: the rename happens next to the target.
        _ => fsutil::read_optional(path)?,
    };
    let old_text = match &existing {
        Some(bytes) => Some(std::str::from_utf8(bytes).map_err(|_| {
            ResourceError::new(format!(
                "`{}` is not UTF-8 text; refusing to edit it line by line",
                path.display()
            ))
        })?),
        None => None,
    };
    if check && existing.is_none() && !spec.create && spec.state.resolved() == Presence::Present {
        // An earlier resource would have created the file in apply mode.
        return Ok(Outcome::changed(vec![
            "added the line (the file does not exist yet)".to_string(),
        ]));
    }
    let Some((new_text, change)) = edit(spec, regex.as_ref(), old_text, path)? else {
        return Ok(Outcome::unchanged());
    };
    let mut outcome = Outcome::changed(vec![change]);
    if diff {
        outcome.diff = Some(content_diff(
            &spec.path,
            existing.as_deref(),
            new_text.as_bytes(),
        ));
    }
    if !check {
        write(path, &new_text, existing.is_some())?;
    }
    Ok(outcome)
}

/// The edited text and a description of the change, or `None` when nothing changes.
fn edit(
    spec: &LineSpec,
    regex: Option<&Regex>,
    old_text: Option<&str>,
    path: &Path,
) -> Result<Option<(String, String)>, ResourceError> {
    match spec.state.resolved() {
        Presence::Present => {
            let line = spec
                .line
                .as_deref()
                .ok_or_else(|| ResourceError::new("`line` is required when the line is present"))?;
            if line.contains('\n') {
                return Err(ResourceError::new(
                    "`line` must be a single line (it contains a newline)",
                ));
            }
            let Some(old_text) = old_text else {
                if !spec.create {
                    return Err(ResourceError::new(format!(
                        "`{}` does not exist\nhint: set `create = true` to create it, or create it with a `file` resource first",
                        path.display()
                    )));
                }
                return Ok(Some((
                    format!("{line}\n"),
                    "created with the line".to_string(),
                )));
            };
            let mut lines = Lines::parse(old_text);
            let last_match = regex.and_then(|regex| {
                lines
                    .lines
                    .iter()
                    .rposition(|existing| regex.is_match(bare(existing)))
            });
            if let Some(index) = last_match {
                if bare(&lines.lines[index]) == line {
                    return Ok(None);
                }
                let carriage_return = if lines.lines[index].ends_with('\r') {
                    "\r"
                } else {
                    ""
                };
                lines.lines[index] = format!("{line}{carriage_return}");
                return Ok(Some((
                    lines.render(),
                    format!("replaced line {}", index + 1),
                )));
            }
            if lines.lines.iter().any(|existing| bare(existing) == line) {
                return Ok(None);
            }
            lines.append(line);
            Ok(Some((lines.render(), "appended the line".to_string())))
        }
        Presence::Absent => {
            let Some(old_text) = old_text else {
                return Ok(None);
            };
            let matches = |existing: &str| match (regex, spec.line.as_deref()) {
                (Some(regex), _) => regex.is_match(bare(existing)),
                (None, Some(line)) => bare(existing) == line,
                (None, None) => false,
            };
            if regex.is_none() && spec.line.is_none() {
                return Err(ResourceError::new(
                    "set `line` or `regexp` to say which lines to remove",
                ));
            }
            let mut lines = Lines::parse(old_text);
            let before = lines.lines.len();
            lines.lines.retain(|existing| !matches(existing));
            let removed = before - lines.lines.len();
            if removed == 0 {
                return Ok(None);
            }
            let noun = if removed == 1 { "line" } else { "lines" };
            Ok(Some((lines.render(), format!("removed {removed} {noun}"))))
        }
    }
}

pub(super) fn write(path: &Path, text: &str, existed: bool) -> Result<(), ResourceError> {
    // Write through a symlink to the file it points to, keeping the link.
    let target = if existed {
        fs::canonicalize(path).map_err(|err| io_error("cannot resolve", path, &err))?
    } else {
        path.to_path_buf()
    };
    let existing_meta = if existed {
        Some(fs::metadata(&target).map_err(|err| io_error("cannot inspect", &target, &err))?)
    } else {
        None
    };
    let attributes =
        FinalAttributes::for_replacement(&WantedAttributes::default(), existing_meta.as_ref())?;
    fsutil::write_atomic(&target, text.as_bytes(), attributes)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::testing::snapshot;
    use super::*;

    fn spec(path: &Path, line: Option<&str>, regexp: Option<&str>) -> LineSpec {
        LineSpec {
            path: path.display().to_string(),
            line: line.map(str::to_string),
            regexp: regexp.map(str::to_string),
            state: Presence::Present.into(),
            create: false,
        }
    }

    /// Applies `spec` to a file holding `before` and returns the new text and the outcome.
    fn check(before: &str, spec_for: impl Fn(&Path) -> LineSpec, after: &str) {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("conf");
        fs::write(&path, before).expect("write");
        let line = spec_for(&path);
        let snapshot_before = snapshot(root.path());
        let checked = converge(&line, true, true).expect("check");
        assert_eq!(
            snapshot(root.path()),
            snapshot_before,
            "check mode touched the tree"
        );
        let applied = converge(&line, false, false).expect("apply");
        assert_eq!(fs::read_to_string(&path).expect("readable"), after);
        assert_eq!(checked.changed, before != after);
        assert_eq!(applied.changed, before != after);
        assert!(
            !converge(&line, false, false).expect("again").changed,
            "not idempotent"
        );
        assert_eq!(
            fs::read_dir(root.path()).expect("dir").count(),
            1,
            "temporary files left behind"
        );
    }

    #[test]
    fn appends_a_missing_line() {
        check("a\nb\n", |p| spec(p, Some("c"), None), "a\nb\nc\n");
        check("a\nb", |p| spec(p, Some("c"), None), "a\nb\nc\n");
        check("", |p| spec(p, Some("c"), None), "c\n");
        check("a\nc\nb\n", |p| spec(p, Some("c"), None), "a\nc\nb\n");
    }

    #[test]
    fn replaces_the_last_regex_match_and_keeps_endings() {
        let sshd = "Port 22\n#PermitRootLogin yes\nPermitRootLogin yes\nX 1\n";
        check(
            sshd,
            |p| spec(p, Some("PermitRootLogin no"), Some("^#?PermitRootLogin")),
            "Port 22\n#PermitRootLogin yes\nPermitRootLogin no\nX 1\n",
        );
        check(
            "k=1\r\nz=2\r\n",
            |p| spec(p, Some("k=3"), Some("^k=")),
            "k=3\r\nz=2\r\n",
        );
        check("k=1", |p| spec(p, Some("k=3"), Some("^k=")), "k=3");
        // No match: append, and the next run finds the line itself.
        check(
            "a\n",
            |p| spec(p, Some("key = 1"), Some("^key =\\s*2")),
            "a\nkey = 1\n",
        );
    }

    #[test]
    fn absent_removes_every_match() {
        check(
            "a\n#x\nb\n#y\n",
            |p| LineSpec {
                state: Presence::Absent.into(),
                ..spec(p, None, Some("^#"))
            },
            "a\nb\n",
        );
        check(
            "a\nb\na\n",
            |p| LineSpec {
                state: Presence::Absent.into(),
                ..spec(p, Some("a"), None)
            },
            "b\n",
        );
        check(
            "a\n",
            |p| LineSpec {
                state: Presence::Absent.into(),
                ..spec(p, Some("z"), None)
            },
            "a\n",
        );
    }

    #[test]
    fn missing_file_needs_create_and_mode_is_kept() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("new");
        let checked = converge(&spec(&path, Some("x"), None), true, false).expect("check reports");
        assert_eq!(
            checked.changes,
            vec!["added the line (the file does not exist yet)".to_string()]
        );
        let err = converge(&spec(&path, Some("x"), None), false, false).expect_err("no create");
        assert!(err.message.contains("set `create = true`"), "{err}");
        assert!(!path.exists());
        converge(
            &LineSpec {
                create: true,
                ..spec(&path, Some("x"), None)
            },
            false,
            false,
        )
        .expect("create");
        assert_eq!(fs::read_to_string(&path).expect("readable"), "x\n");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        converge(&spec(&path, Some("y"), None), false, false).expect("append");
        assert_eq!(
            fs::metadata(&path).expect("exists").permissions().mode() & 0o7777,
            0o600
        );
    }

    #[test]
    fn bad_regex_and_binary_files_fail() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("f");
        fs::write(&path, [0xffu8, 0xfe]).expect("write");
        let err = converge(&spec(&path, Some("x"), Some("(")), false, false).expect_err("regex");
        assert!(err.message.starts_with("invalid `regexp` `(`"), "{err}");
        let err = converge(&spec(&path, Some("x"), None), false, false).expect_err("binary");
        assert!(err.message.contains("not UTF-8"), "{err}");
    }

    #[test]
    fn diff_shows_the_edit() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("f");
        fs::write(&path, "a\nb\n").expect("write");
        let outcome = converge(&spec(&path, Some("B"), Some("^b$")), true, true).expect("check");
        let diff = outcome.diff.expect("diff");
        assert!(diff.contains("-b\n+B\n"), "{diff}");
        assert_eq!(outcome.changes, vec!["replaced line 2".to_string()]);
    }
}
