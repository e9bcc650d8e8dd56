//! Positions in policy files and the errors that point at them.

use std::fmt;
use std::path::{Path, PathBuf};

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Where something was written: a file and a position in it. Displays as `file:line:column`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    pub file: PathBuf,
    pub position: Position,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.file.display(),
            self.position.line,
            self.position.column
        )
    }
}

/// One problem found in a policy, a roles file or a template.
///
/// Renders as `file:line:column: context: message`, followed by `  hint: ...` on its own line
/// when there is a hint. `position` is `None` only when the whole file is at fault (it cannot
/// be read); `context` is empty when the problem is not inside a role (e.g. `[fileserver]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    pub position: Option<Position>,
    /// Where inside the policy, e.g. ``role `web`: resource #3 (file /etc/motd)``.
    pub context: String,
    pub message: String,
    pub hint: Option<String>,
}

impl PolicyError {
    pub(crate) fn at(origin: &Origin, context: &str, message: impl Into<String>) -> PolicyError {
        PolicyError {
            file: origin.file.clone(),
            position: Some(origin.position),
            context: context.to_string(),
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn whole_file(
        file: &Path,
        context: &str,
        message: impl Into<String>,
    ) -> PolicyError {
        PolicyError {
            file: file.to_path_buf(),
            position: None,
            context: context.to_string(),
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn with_hint(mut self, hint: Option<String>) -> PolicyError {
        self.hint = hint;
        self
    }

    /// The error's origin, when it points at a position.
    pub fn origin(&self) -> Option<Origin> {
        self.position.map(|position| Origin {
            file: self.file.clone(),
            position,
        })
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(position) = self.position {
            write!(f, ":{}:{}", position.line, position.column)?;
        }
        write!(f, ": ")?;
        if !self.context.is_empty() {
            write!(f, "{}: ", self.context)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

/// Every problem found while loading a policy, in the order of the files (policy first, then
/// each roles file where it is included) and of their text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors {
    pub errors: Vec<PolicyError>,
}

impl PolicyErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, PolicyError> {
        self.errors.iter()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

impl IntoIterator for PolicyErrors {
    type Item = PolicyError;
    type IntoIter = std::vec::IntoIter<PolicyError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

/// The text of one file with a table of line starts, to turn byte offsets into positions.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: &Path, text: String) -> SourceFile {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(offset, _)| offset + 1))
            .collect();
        SourceFile {
            path: path.to_path_buf(),
            text,
            line_starts,
        }
    }

    pub fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line_index = match self.line_starts.binary_search(&offset) {
            Ok(index) => index,
            Err(index) => index - 1,
        };
        let line_start = self.line_starts[line_index];
        let column = self
            .text
            .get(line_start..offset)
            .map_or(offset - line_start, |prefix| prefix.chars().count())
            + 1;
        Position {
            line: line_index + 1,
            column,
        }
    }

    pub fn origin(&self, offset: usize) -> Origin {
        Origin {
            file: self.path.clone(),
            position: self.position(offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_lines_and_character_columns() {
        let source = SourceFile::new(Path::new("p.toml"), "ab\nçd = 1\n".to_string());
        assert_eq!(source.position(0), Position { line: 1, column: 1 });
        assert_eq!(source.position(2), Position { line: 1, column: 3 });
        assert_eq!(source.position(3), Position { line: 2, column: 1 });
        // `ç` is two bytes but one column.
        assert_eq!(source.position(5), Position { line: 2, column: 2 });
        assert_eq!(source.origin(100).to_string(), "p.toml:3:1");
    }

    #[test]
    fn errors_render_with_context_and_hint() {
        let origin = SourceFile::new(Path::new("site.toml"), "x\ny\n".to_string()).origin(2);
        let error = PolicyError::at(&origin, "role `web`", "unknown field `grups`")
            .with_hint(Some("did you mean `groups`?".to_string()));
        assert_eq!(
            error.to_string(),
            "site.toml:2:1: role `web`: unknown field `grups`\n  hint: did you mean `groups`?"
        );
        let error = PolicyError::whole_file(Path::new("site.toml"), "", "cannot read file");
        assert_eq!(error.to_string(), "site.toml: cannot read file");
    }
}
