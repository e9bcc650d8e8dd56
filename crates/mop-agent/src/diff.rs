//! Content diffs for events: a unified diff for text, `sha256 a -> b` for binary content.
//!
//! A small Myers line diff (after trimming the common prefix and suffix, which is where most
//! configuration edits leave almost everything) keeps the agent free of a diff crate.

use sha2::{Digest, Sha256};

/// Lines of context around each hunk, as `diff -u`.
const CONTEXT: usize = 3;
/// Beyond this many differing lines the middle is shown as a whole replacement, which bounds
/// the diff's time and memory.
const MAX_EDIT_DISTANCE: usize = 2000;
/// Content larger than this is summarised by hashes rather than diffed.
const MAX_DIFF_INPUT: usize = 1024 * 1024;

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex of a digest.
pub fn hex(digest: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(digest.len() * 2);
    for byte in digest {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    out
}

/// Whether content is treated as binary: not UTF-8, or containing a NUL byte.
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes.contains(&0) || std::str::from_utf8(bytes).is_err()
}

/// The diff between the current content (`None`: the file does not exist) and the desired
/// content of `path`.
pub fn content_diff(path: &str, old: Option<&[u8]>, new: &[u8]) -> String {
    let old_bytes = old.unwrap_or_default();
    let too_big = old_bytes.len() > MAX_DIFF_INPUT || new.len() > MAX_DIFF_INPUT;
    match (std::str::from_utf8(old_bytes), std::str::from_utf8(new)) {
        (Ok(old_text), Ok(new_text)) if !too_big && !is_binary(old_bytes) && !is_binary(new) => {
            let old_label = if old.is_some() {
                format!("{path} (current)")
            } else {
                "/dev/null".to_string()
            };
            unified_diff(old_text, new_text, &old_label, &format!("{path} (desired)"))
        }
        _ => hash_diff(old.map(sha256_hex).as_deref(), &sha256_hex(new)),
    }
}

/// The whole diff of a vault-encrypted served file.
pub const SECRET_DIFF: &str = "secret content changed (a vault file: its diff is not shown)";

/// `sha256 a -> b`; a missing side is written `(none)`.
pub fn hash_diff(old: Option<&str>, new: &str) -> String {
    format!("sha256 {} -> {new}", old.unwrap_or("(none)"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Equal,
    Delete,
    Insert,
}

/// A unified diff (`---`/`+++` headers, `@@` hunks, three lines of context). Empty when the two
/// texts are equal.
pub fn unified_diff(old: &str, new: &str, old_label: &str, new_label: &str) -> String {
    let old_lines: Vec<&str> = old.split_inclusive('\n').collect();
    let new_lines: Vec<&str> = new.split_inclusive('\n').collect();
    let ops = diff_lines(&old_lines, &new_lines);
    if ops.iter().all(|op| *op == Op::Equal) {
        return String::new();
    }
    let mut out = format!("--- {old_label}\n+++ {new_label}\n");
    // Positions (old index, new index) before each op.
    let mut positions = Vec::with_capacity(ops.len() + 1);
    let (mut old_index, mut new_index) = (0usize, 0usize);
    for op in &ops {
        positions.push((old_index, new_index));
        match op {
            Op::Equal => {
                old_index += 1;
                new_index += 1;
            }
            Op::Delete => old_index += 1,
            Op::Insert => new_index += 1,
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|&i| ops[i] != Op::Equal).collect();
    let mut group_start = 0;
    while group_start < changed.len() {
        let mut group_end = group_start;
        while group_end + 1 < changed.len()
            && changed[group_end + 1] - changed[group_end] <= 2 * CONTEXT + 1
        {
            group_end += 1;
        }
        let first = changed[group_start].saturating_sub(CONTEXT);
        let last = (changed[group_end] + CONTEXT).min(ops.len() - 1);
        let (old_start, new_start) = positions[first];
        let old_count = (first..=last).filter(|&i| ops[i] != Op::Insert).count();
        let new_count = (first..=last).filter(|&i| ops[i] != Op::Delete).count();
        out.push_str(&format!(
            "@@ -{} +{} @@\n",
            hunk_range(old_start, old_count),
            hunk_range(new_start, new_count)
        ));
        for i in first..=last {
            let (prefix, line) = match ops[i] {
                Op::Equal => (' ', old_lines[positions[i].0]),
                Op::Delete => ('-', old_lines[positions[i].0]),
                Op::Insert => ('+', new_lines[positions[i].1]),
            };
            out.push(prefix);
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
        group_start = group_end + 1;
    }
    out
}

fn hunk_range(start: usize, count: usize) -> String {
    match count {
        0 => format!("{start},0"),
        1 => format!("{}", start + 1),
        _ => format!("{},{count}", start + 1),
    }
}

fn diff_lines(old: &[&str], new: &[&str]) -> Vec<Op> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let old_middle = &old[prefix..old.len() - suffix];
    let new_middle = &new[prefix..new.len() - suffix];
    let mut ops = vec![Op::Equal; prefix];
    match myers(old_middle, new_middle) {
        Some(middle) => ops.extend(middle),
        None => {
            ops.resize(ops.len() + old_middle.len(), Op::Delete);
            ops.resize(ops.len() + new_middle.len(), Op::Insert);
        }
    }
    ops.resize(ops.len() + suffix, Op::Equal);
    ops
}

/// Myers' O((N+M)D) shortest edit script; `None` when D exceeds [`MAX_EDIT_DISTANCE`].
fn myers(old: &[&str], new: &[&str]) -> Option<Vec<Op>> {
    let (n, m) = (old.len() as isize, new.len() as isize);
    let max = (n + m) as usize;
    let offset = max as isize + 1;
    let mut v = vec![0isize; 2 * max + 3];
    // trace[d] holds v[-d..=d] as it was before step d.
    let mut trace: Vec<Vec<isize>> = Vec::new();
    let mut found = None;
    'outer: for d in 0..=max.min(MAX_EDIT_DISTANCE) as isize {
        trace.push(v[(offset - d) as usize..=(offset + d) as usize].to_vec());
        let mut k = -d;
        while k <= d {
            let mut x = if k == -d
                || (k != d && v[(offset + k - 1) as usize] < v[(offset + k + 1) as usize])
            {
                v[(offset + k + 1) as usize]
            } else {
                v[(offset + k - 1) as usize] + 1
            };
            let mut y = x - k;
            while x < n && y < m && old[x as usize] == new[y as usize] {
                x += 1;
                y += 1;
            }
            v[(offset + k) as usize] = x;
            if x >= n && y >= m {
                found = Some(d);
                break 'outer;
            }
            k += 2;
        }
    }
    let edit_distance = found?;
    let mut ops = Vec::new();
    let (mut x, mut y) = (n, m);
    for d in (0..=edit_distance).rev() {
        let snapshot = &trace[d as usize];
        let at = |k: isize| snapshot[(k + d) as usize];
        let k = x - y;
        let previous_k = if k == -d || (k != d && at(k - 1) < at(k + 1)) {
            k + 1
        } else {
            k - 1
        };
        let previous_x = if d == 0 { 0 } else { at(previous_k) };
        let previous_y = previous_x - previous_k;
        while x > previous_x && y > previous_y {
            ops.push(Op::Equal);
            x -= 1;
            y -= 1;
        }
        if d > 0 {
            if x == previous_x {
                ops.push(Op::Insert);
            } else {
                ops.push(Op::Delete);
            }
        }
        x = previous_x;
        y = previous_y;
    }
    ops.reverse();
    Some(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_have_no_diff() {
        assert_eq!(unified_diff("a\nb\n", "a\nb\n", "x", "y"), "");
    }

    #[test]
    fn one_changed_line_in_the_middle() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let new = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
        let diff = unified_diff(old, new, "a", "b");
        assert_eq!(
            diff,
            "--- a\n+++ b\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"
        );
    }

    #[test]
    fn new_file_and_missing_final_newline() {
        let diff = content_diff("/etc/motd", None, b"hello");
        assert_eq!(diff, "--- /dev/null\n+++ /etc/motd (desired)\n@@ -0,0 +1 @@\n+hello\n\\ No newline at end of file\n");
        let diff = unified_diff("a\nb", "a\nb\n", "x", "y");
        assert_eq!(
            diff,
            "--- x\n+++ y\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n"
        );
    }

    #[test]
    fn distant_changes_make_separate_hunks() {
        let old: String = (1..=30).map(|i| format!("{i}\n")).collect();
        let new: String = (1..=30)
            .map(|i| match i {
                2 => "two\n".to_string(),
                28 => "twenty-eight\n".to_string(),
                other => format!("{other}\n"),
            })
            .collect();
        let diff = unified_diff(&old, &new, "a", "b");
        assert_eq!(diff.matches("@@ -").count(), 2, "{diff}");
        assert!(diff.contains("-28\n+twenty-eight\n"), "{diff}");
    }

    #[test]
    fn myers_finds_minimal_scripts() {
        let old = ["a\n", "b\n", "c\n", "a\n", "b\n", "b\n", "a\n"];
        let new = ["c\n", "b\n", "a\n", "b\n", "a\n", "c\n"];
        let ops = myers(&old, &new).expect("small");
        let edits = ops.iter().filter(|op| **op != Op::Equal).count();
        assert_eq!(edits, 5);
        // Replaying the script reproduces `new`.
        let (mut i, mut j, mut rebuilt) = (0, 0, Vec::new());
        for op in ops {
            match op {
                Op::Equal => {
                    rebuilt.push(old[i]);
                    i += 1;
                    j += 1;
                }
                Op::Delete => i += 1,
                Op::Insert => {
                    rebuilt.push(new[j]);
                    j += 1;
                }
            }
        }
        assert_eq!(rebuilt, new);
    }

    #[test]
    fn binary_content_is_summarised_by_hashes() {
        let diff = content_diff("/bin/x", Some(b"a\0b"), b"c");
        assert_eq!(
            diff,
            format!("sha256 {} -> {}", sha256_hex(b"a\0b"), sha256_hex(b"c"))
        );
        assert!(is_binary(&[0xff, 0xfe]));
        assert!(!is_binary("héllo".as_bytes()));
    }
}
