//! The `block` resource: lines between a `BEGIN` and an `END` marker line in a text file, kept
//! equal to the spec's `block` (inserted after or before a matching line when missing), or
//! removed with their markers. Like `line`, the rest of the file is kept byte for byte and the
//! write is atomic.

use std::path::Path;

use mop_protocol::{BlockSpec, Presence};
use regex_lite::Regex;

use super::file::absolute_path;
use super::line::{bare, write, Lines};
use crate::diff::content_diff;
use crate::fsutil;
use crate::outcome::{Outcome, ResourceError};

/// Where a new block goes.
enum Anchor {
    End,
    Start,
    After(Regex),
    Before(Regex),
}

impl Anchor {
    fn from_spec(spec: &BlockSpec) -> Result<Anchor, ResourceError> {
        let compile = |field: &str, pattern: &str| {
            Regex::new(pattern)
                .map_err(|err| ResourceError::new(format!("invalid `{field}` `{pattern}`: {err}")))
        };
        match (spec.insert_after.as_deref(), spec.insert_before.as_deref()) {
            (Some(_), Some(_)) => Err(ResourceError::new(
                "`insert_after` and `insert_before` cannot be used together",
            )),
            (Some("EOF") | None, None) => Ok(Anchor::End),
            (None, Some("BOF")) => Ok(Anchor::Start),
            (Some(pattern), None) => compile("insert_after", pattern).map(Anchor::After),
            (None, Some(pattern)) => compile("insert_before", pattern).map(Anchor::Before),
        }
    }

    /// The index the block is inserted at; the end of the file when nothing matches.
    fn position(&self, lines: &[String]) -> usize {
        match self {
            Anchor::End => lines.len(),
            Anchor::Start => 0,
            Anchor::After(regex) => lines
                .iter()
                .rposition(|line| regex.is_match(bare(line)))
                .map_or(lines.len(), |index| index + 1),
            Anchor::Before(regex) => lines
                .iter()
                .position(|line| regex.is_match(bare(line)))
                .unwrap_or(lines.len()),
        }
    }
}

/// The two marker lines for `marker` (whose `{mark}` is replaced by `BEGIN` and `END`).
pub fn markers(marker: &str) -> Result<(String, String), ResourceError> {
    if !marker.contains("{mark}") || marker.contains('\n') {
        return Err(ResourceError::new(format!(
            "invalid `marker` `{marker}`: it must be one line containing `{{mark}}` (replaced by BEGIN and END)"
        )));
    }
    Ok((
        marker.replace("{mark}", "BEGIN"),
        marker.replace("{mark}", "END"),
    ))
}

pub fn converge(spec: &BlockSpec, check: bool, diff: bool) -> Result<Outcome, ResourceError> {
    let path = absolute_path(&spec.path)?;
    let (begin, end) = markers(spec.marker.as_deref().unwrap_or(BlockSpec::DEFAULT_MARKER))?;
    let anchor = Anchor::from_spec(spec)?;
    let state = spec.state.resolved();
    let existing = match fsutil::symlink_metadata(path)? {
        Some(meta) if meta.is_dir() => {
            return Err(ResourceError::new(format!(
                "`{}` is a directory, not a text file",
                path.display()
            )))
        }
        _ => fsutil::read_optional(path)?,
    };
    let old_text = match &existing {
        Some(bytes) => Some(std::str::from_utf8(bytes).map_err(|_| {
            ResourceError::new(format!(
                "`{}` is not UTF-8 text; refusing to edit a block in it",
                path.display()
            ))
        })?),
        None => None,
    };
    let wanted = match state {
        Presence::Present => Some(block_lines(spec, &begin, &end)?),
        Presence::Absent => None,
    };
    let Some(old_text) = old_text else {
        let Some(wanted) = wanted else {
            return Ok(Outcome::unchanged());
        };
        if !spec.create {
            if check {
                // An earlier resource would have created the file in apply mode.
                return Ok(Outcome::changed(vec![
                    "inserted the block (the file does not exist yet)".to_string(),
                ]));
            }
            return Err(ResourceError::new(format!(
                "`{}` does not exist\nhint: set `create = true` to create it, or create it with a `file` resource first",
                path.display()
            )));
        }
        let text = Lines {
            lines: wanted,
            final_newline: true,
        }
        .render();
        return finish(
            spec,
            path,
            check,
            diff,
            None,
            text,
            "created with the block",
        );
    };
    let mut lines = Lines::parse(old_text);
    let found = find_block(&lines.lines, &begin, &end, path)?;
    let change = match (found, wanted) {
        (None, None) => return Ok(Outcome::unchanged()),
        (Some(range), None) => {
            lines.lines.drain(range);
            "removed the block"
        }
        (Some(range), Some(wanted)) => {
            let current: Vec<&str> = lines.lines[range.clone()].iter().map(|l| bare(l)).collect();
            if current == wanted.iter().map(String::as_str).collect::<Vec<_>>() {
                return Ok(Outcome::unchanged());
            }
            lines.lines.splice(range, wanted);
            "replaced the block"
        }
        (None, Some(wanted)) => {
            let at = anchor.position(&lines.lines);
            lines.lines.splice(at..at, wanted);
            // The last line of a text file ends with a newline.
            lines.final_newline = true;
            "inserted the block"
        }
    };
    let text = lines.render();
    finish(spec, path, check, diff, existing.as_deref(), text, change)
}

fn finish(
    spec: &BlockSpec,
    path: &Path,
    check: bool,
    diff: bool,
    existing: Option<&[u8]>,
    text: String,
    change: &str,
) -> Result<Outcome, ResourceError> {
    let mut outcome = Outcome::changed(vec![change.to_string()]);
    if diff {
        outcome.diff = Some(content_diff(&spec.path, existing, text.as_bytes()));
    }
    if !check {
        write(path, &text, existing.is_some())?;
    }
    Ok(outcome)
}

/// The marker lines with the block between them.
fn block_lines(spec: &BlockSpec, begin: &str, end: &str) -> Result<Vec<String>, ResourceError> {
    let block = spec
        .block
        .as_deref()
        .ok_or_else(|| ResourceError::new("`block` is required when the block is present"))?;
    let body = block.strip_suffix('\n').unwrap_or(block);
    let mut lines = vec![begin.to_string()];
    if !body.is_empty() {
        lines.extend(body.split('\n').map(|line| bare(line).to_string()));
    }
    lines.push(end.to_string());
    if lines[1..lines.len() - 1]
        .iter()
        .any(|line| line == begin || line == end)
    {
        return Err(ResourceError::new(
            "`block` contains its own marker line; change `marker`",
        ));
    }
    Ok(lines)
}

/// The lines of the block, markers included. A `BEGIN` without its `END` (or the reverse) is
/// an error: guessing where a hand-damaged block ends could delete the operator's lines.
fn find_block(
    lines: &[String],
    begin: &str,
    end: &str,
    path: &Path,
) -> Result<Option<std::ops::Range<usize>>, ResourceError> {
    let begin_at = lines.iter().position(|line| bare(line) == begin);
    let end_at = lines.iter().position(|line| bare(line) == end);
    match (begin_at, end_at) {
        (None, None) => Ok(None),
        (Some(first), Some(last)) if first < last => Ok(Some(first..last + 1)),
        (Some(first), _) => Err(ResourceError::new(format!(
            "`{}` line {}: `{begin}` has no `{end}` after it\nhint: repair or remove the damaged block by hand",
            path.display(),
            first + 1
        ))),
        (None, Some(last)) => Err(ResourceError::new(format!(
            "`{}` line {}: `{end}` has no `{begin}` before it\nhint: repair or remove the damaged block by hand",
            path.display(),
            last + 1
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::testing::snapshot;
    use super::*;

    fn spec(path: &Path, block: &str) -> BlockSpec {
        BlockSpec {
            path: path.display().to_string(),
            block: Some(block.to_string()),
            marker: None,
            insert_after: None,
            insert_before: None,
            state: Presence::Present.into(),
            create: false,
        }
    }

    /// Check mode reports without writing, apply gives `after`, a second apply changes nothing.
    fn check(before: &str, spec_for: impl Fn(&Path) -> BlockSpec, after: &str) {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("conf");
        fs::write(&path, before).expect("write");
        let block = spec_for(&path);
        let untouched = snapshot(root.path());
        let checked = converge(&block, true, true).expect("check");
        assert_eq!(snapshot(root.path()), untouched, "check mode wrote");
        let applied = converge(&block, false, false).expect("apply");
        assert_eq!(fs::read_to_string(&path).expect("readable"), after);
        assert_eq!(checked.changed, before != after);
        assert_eq!(applied.changed, before != after);
        assert!(!converge(&block, false, false).expect("again").changed);
        assert_eq!(fs::read_dir(root.path()).expect("dir").count(), 1);
    }

    const B: &str = "# BEGIN mop managed block";
    const E: &str = "# END mop managed block";

    #[test]
    fn inserts_at_the_end_or_at_an_anchor() {
        check(
            "a\nb",
            |p| spec(p, "x\ny\n"),
            &format!("a\nb\n{B}\nx\ny\n{E}\n"),
        );
        check(
            "a\nb\na\n",
            |p| BlockSpec {
                insert_after: Some("^a$".into()),
                ..spec(p, "x")
            },
            &format!("a\nb\na\n{B}\nx\n{E}\n"),
        );
        check(
            "a\nb\nb\n",
            |p| BlockSpec {
                insert_before: Some("^b".into()),
                ..spec(p, "x")
            },
            &format!("a\n{B}\nx\n{E}\nb\nb\n"),
        );
        check(
            "a\n",
            |p| BlockSpec {
                insert_before: Some("BOF".into()),
                ..spec(p, "x")
            },
            &format!("{B}\nx\n{E}\na\n"),
        );
    }

    #[test]
    fn replaces_in_place_and_removes() {
        let before = format!("a\n{B}\nold\n{E}\nz\n");
        check(
            &before,
            |p| spec(p, "new"),
            &format!("a\n{B}\nnew\n{E}\nz\n"),
        );
        check(&before, |p| spec(p, "old"), &before);
        check(
            &before,
            |p| BlockSpec {
                state: Presence::Absent.into(),
                ..spec(p, "")
            },
            "a\nz\n",
        );
        let custom = "; {mark} php tuning";
        check(
            "[php]\n",
            |p| BlockSpec {
                marker: Some(custom.into()),
                ..spec(p, "memory_limit = 256M")
            },
            "[php]\n; BEGIN php tuning\nmemory_limit = 256M\n; END php tuning\n",
        );
    }

    #[test]
    fn damaged_blocks_and_bad_markers_fail_without_writing() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("conf");
        fs::write(&path, format!("a\n{B}\nx\n")).expect("write");
        let err = converge(&spec(&path, "y"), false, false).expect_err("no END");
        assert!(err.message.contains("line 2"), "{err}");
        assert_eq!(
            fs::read_to_string(&path).expect("readable"),
            format!("a\n{B}\nx\n")
        );
        let err = converge(
            &BlockSpec {
                marker: Some("# mop".into()),
                ..spec(&path, "y")
            },
            false,
            false,
        )
        .expect_err("no {mark}");
        assert!(err.message.contains("{mark}"), "{err}");
    }

    #[test]
    fn missing_file_needs_create_and_diff_shows_the_block() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("new");
        let err = converge(&spec(&path, "x"), false, false).expect_err("no create");
        assert!(err.message.contains("create = true"), "{err}");
        let outcome = converge(
            &BlockSpec {
                create: true,
                ..spec(&path, "x")
            },
            false,
            true,
        )
        .expect("create");
        assert!(outcome.diff.expect("diff").contains("+x\n"));
        assert_eq!(
            fs::read_to_string(&path).expect("readable"),
            format!("{B}\nx\n{E}\n")
        );
    }
}
