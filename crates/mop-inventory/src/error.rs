//! Inventory errors and the file:line:column locations they point at.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// A position in an inventory file: 1-based line and column (columns count characters); line 0
/// when the source has no lines to point at (it is then shown as the file alone).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Location {
    /// The source name given to [`crate::Inventory::parse`] (usually the path as typed).
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Line 0: a place without lines (the JSON a dynamic inventory script printed).
        if self.line == 0 {
            return f.write_str(&self.file);
        }
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Everything that can go wrong while loading, resolving or selecting from an inventory.
///
/// Display is one lowercase line without a trailing period, optionally followed by a second
/// line `  hint: ...`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InventoryError {
    /// The inventory file or directory could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A directory given as the inventory holds no inventory file.
    #[error("no inventory file (`*.toml`, `*.ini`, `*.yml`, `*.yaml`) in inventory directory `{}`\n  hint: add a file such as `{}`", dir.display(), dir.join("hosts.toml").display())]
    NoInventoryFiles { dir: PathBuf },

    /// Something wrong at a known place in an inventory file.
    #[error("{location}: {message}{}", render_hint(hint))]
    At {
        location: Location,
        message: String,
        hint: Option<String>,
    },

    /// A host name asked for that the inventory does not define.
    #[error("unknown host `{name}`{}", render_hint(hint))]
    UnknownHost { name: String, hint: Option<String> },

    /// A variable supplied by a caller layer (policy, role, `-e`) is invalid.
    #[error("{label}: {message}{}", render_hint(hint))]
    Layer {
        label: String,
        message: String,
        hint: Option<String>,
    },

    /// A `KEY=VALUE` extra variable could not be parsed.
    #[error("invalid extra variable `{name}`: {message}{}", render_hint(hint))]
    ExtraVar {
        name: String,
        message: String,
        hint: Option<String>,
    },

    /// A dynamic inventory script could not be run, failed, or printed something unusable.
    #[error("dynamic inventory `{}`: {message}{}", path.display(), render_hint(hint))]
    Script {
        path: PathBuf,
        message: String,
        hint: Option<String>,
    },

    /// A vault variable file could not be decrypted.
    #[error(transparent)]
    Vault(mop_vault::VaultError),

    /// Several independent problems (variable files), in the order found.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Several(Vec<InventoryError>),

    /// A group or host glob pattern is not valid.
    #[error("invalid pattern `{pattern}`: {message}{}", render_hint(hint))]
    InvalidPattern {
        pattern: String,
        message: String,
        hint: Option<String>,
    },
}

impl InventoryError {
    /// The file location the error points at, when it has one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            InventoryError::At { location, .. } => Some(location),
            _ => None,
        }
    }

    pub(crate) fn at_with_hint(
        location: Location,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        InventoryError::At {
            location,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
}

fn render_hint(hint: &Option<String>) -> String {
    match hint {
        Some(hint) => format!("\n  hint: {hint}"),
        None => String::new(),
    }
}

/// Turns byte offsets of one source text into [`Location`]s.
#[derive(Debug, Clone)]
pub(crate) struct SourceMap<'a> {
    name: &'a str,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(name: &'a str, text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(index, _)| index + 1));
        SourceMap {
            name,
            text,
            line_starts,
        }
    }

    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// The location of a byte offset; offsets past the end point just after the last character.
    pub(crate) fn location(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line_index = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .saturating_sub(1);
        let line_start = self.line_starts[line_index];
        // A span may start inside a multi-byte character only if toml_edit misreports it;
        // count characters on the valid prefix rather than panic.
        let mut end = offset;
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let column = self.text[line_start..end].chars().count() + 1;
        Location {
            file: self.name.to_string(),
            line: line_index + 1,
            column,
        }
    }
}

/// A close match for `wanted` among `candidates`, for "did you mean" hints.
pub(crate) fn closest<'c>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let limit = (wanted.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|candidate| {
            // A truncated name (`mop_sudo_user`) is as good a guess as a one-letter typo.
            let truncated = wanted.len() >= 4 && candidate.starts_with(wanted);
            let distance = if truncated {
                1
            } else {
                edit_distance(wanted, candidate)
            };
            (distance, candidate)
        })
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    for (i, left_char) in left.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, right_char) in right.iter().enumerate() {
            let substitution = previous[j] + usize::from(left_char != *right_char);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[right.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_line_and_column() {
        let map = SourceMap::new("f.toml", "ab\ncdé\n\nx");
        let at = |offset| {
            let location = map.location(offset);
            (location.line, location.column)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(2), (1, 3));
        assert_eq!(at(3), (2, 1));
        assert_eq!(at(7), (2, 4), "é is one column");
        assert_eq!(at(8), (3, 1));
        assert_eq!(at(9), (4, 1));
        assert_eq!(at(999), (4, 2));
    }

    #[test]
    fn display_has_location_and_hint() {
        let error = InventoryError::at_with_hint(
            Location {
                file: "inventory/prod.toml".into(),
                line: 12,
                column: 5,
            },
            "bad thing",
            "do the other thing",
        );
        assert_eq!(
            error.to_string(),
            "inventory/prod.toml:12:5: bad thing\n  hint: do the other thing"
        );
    }

    #[test]
    fn closest_finds_small_typos_only() {
        let names = ["webservers", "dbservers", "all"];
        assert_eq!(closest("webserver", names), Some("webservers"));
        assert_eq!(closest("dbserves", names), Some("dbservers"));
        assert_eq!(closest("mailservers", names), None);
    }
}
