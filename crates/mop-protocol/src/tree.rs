//! The `tree` resource's shared rules: how a served tree's files are keyed in a role plan, and
//! what its `exclude` globs match. The controller applies them when it lists the tree (an
//! excluded file is never listed, so never checked against the file server's rules or sent)
//! and the agent applies the same function on the host (an excluded host path is never
//! deleted), so both sides agree on every path.
//!
//! Matching follows the file server's patterns (gitignore where it can), with fewer features:
//! - a pattern without `/` (ignoring a trailing one) matches any single component of the
//!   relative path, so `*.tmp` matches `x.tmp` and `a/b/x.tmp`, and `cache` matches
//!   `cache/x` as well as `a/cache`;
//! - a pattern with a `/` is anchored at the tree's top and matches the whole relative path or
//!   any of its leading directories (`img/raw` matches `img/raw/a.png`); a leading `/` only
//!   anchors;
//! - a trailing `/` restricts a pattern to directories;
//! - `*` matches any run of characters except `/`, `?` one character except `/`, and `**` as a
//!   whole component any number of directories. Nothing else is special.

/// The key of the file `relative` (`/`-separated, below the tree's top) of the tree served as
/// `source`, in [`crate::RolePlan::files`].
pub fn file_key(source: &str, relative: &str) -> String {
    format!("{}/{relative}", source.trim_end_matches('/'))
}

/// Why an `exclude` pattern cannot be used (to follow ``pattern `X` ``); `None` when it is fine.
pub fn exclude_pattern_problem(pattern: &str) -> Option<&'static str> {
    let body = pattern.trim_start_matches('/').trim_end_matches('/');
    if body.is_empty() {
        return Some("is empty: it matches nothing");
    }
    if body.split('/').any(|component| component.is_empty()) {
        return Some("contains `//`: it matches nothing");
    }
    if body.split('/').any(|component| component == "..") {
        return Some("contains `..`: paths below the tree never do");
    }
    None
}

/// Whether `relative` (a path below the tree's top, `/`-separated; `is_dir` says whether it
/// is a directory) is matched by one of `patterns`.
pub fn is_excluded(patterns: &[String], relative: &str, is_dir: bool) -> bool {
    let components: Vec<&str> = relative.split('/').filter(|c| !c.is_empty()).collect();
    patterns
        .iter()
        .any(|pattern| pattern_matches(pattern, &components, is_dir))
}

fn pattern_matches(pattern: &str, path: &[&str], is_dir: bool) -> bool {
    let dirs_only = pattern.ends_with('/');
    let trimmed = pattern.trim_end_matches('/');
    let anchored = trimmed.contains('/');
    let body = trimmed.trim_start_matches('/');
    if body.is_empty() || path.is_empty() {
        return false;
    }
    // Entry `index` of `path` (its prefix up to there) is a directory unless it is the last.
    let kind_fits = |index: usize| !dirs_only || index + 1 < path.len() || is_dir;
    if !anchored {
        return path
            .iter()
            .enumerate()
            .any(|(index, component)| kind_fits(index) && component_matches(body, component));
    }
    let pattern: Vec<&str> = body.split('/').collect();
    (1..=path.len())
        .any(|length| kind_fits(length - 1) && components_match(&pattern, &path[..length]))
}

fn components_match(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| components_match(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            Some((component, path_rest)) => {
                component_matches(first, component) && components_match(rest, path_rest)
            }
            None => false,
        },
    }
}

/// `*` and `?` against one component (which holds no `/`).
fn component_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it currently swallows up to.
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some('?') => {
                p += 1;
                t += 1;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((star, swallowed)) => {
                    p = star + 1;
                    t = swallowed + 1;
                    backtrack = Some((star, swallowed + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, path: &str, is_dir: bool, expected: bool) {
        assert_eq!(
            is_excluded(&[pattern.to_string()], path, is_dir),
            expected,
            "`{pattern}` against `{path}` (dir: {is_dir})"
        );
    }

    #[test]
    fn unanchored_patterns_match_any_component() {
        check("*.tmp", "x.tmp", false, true);
        check("*.tmp", "a/b/x.tmp", false, true);
        check("*.tmp", "a/x.tmpl", false, false);
        check("cache", "cache/x", false, true);
        check("cache", "a/cache", true, true);
        check("?.txt", "a.txt", false, true);
        check("?.txt", "ab.txt", false, false);
        check("*", "anything/at/all", false, true);
        check("a*b*c", "axxbyyc", false, true);
        check("a*b*c", "axxbyy", false, false);
    }

    #[test]
    fn anchored_patterns_match_the_path_or_a_leading_directory() {
        check("img/raw", "img/raw/a.png", false, true);
        check("img/raw", "x/img/raw", false, false);
        check("/top.txt", "top.txt", false, true);
        check("/top.txt", "a/top.txt", false, false);
        check("img/*.png", "img/a.png", false, true);
        check("img/*.png", "img/sub/a.png", false, false);
        check("img/**/*.png", "img/sub/deep/a.png", false, true);
        check("img/**/*.png", "img/a.png", false, true);
        check("**/build", "a/b/build/out", false, true);
    }

    #[test]
    fn a_trailing_slash_means_directories_only() {
        check("cache/", "cache", false, false);
        check("cache/", "cache", true, true);
        check("cache/", "cache/file", false, true);
        check("a/cache/", "a/cache", true, true);
        check("a/cache/", "a/cache", false, false);
    }

    #[test]
    fn keys_and_bad_patterns() {
        assert_eq!(file_key("static", "css/a.css"), "static/css/a.css");
        assert_eq!(file_key("static/", "a"), "static/a");
        assert!(exclude_pattern_problem("*.tmp").is_none());
        assert!(exclude_pattern_problem("/").is_some());
        assert!(exclude_pattern_problem("").is_some());
        assert!(exclude_pattern_problem("a//b").is_some());
        assert!(exclude_pattern_problem("../x").is_some());
    }
}
