//! Variable files: `group_vars/NAME.toml`, `host_vars/NAME.toml` beside an inventory and the
//! policy's `vars_files`. [`read_vars_file`] is the one place such a file is read, so the
//! encrypted `*.age.toml` files of issue 16 need one change here.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde_json::Value;
use toml_edit::ImDocument;

use crate::error::{InventoryError, Location, SourceMap};
use crate::inventory::{VarSetting, VarTable};
use crate::magic;
use crate::value::{check_var_name, toml_item_to_json, Problem};

/// A parsed variable file: a TOML table of variables, each with where it is set.
#[derive(Clone, Debug, PartialEq)]
pub struct VarsFile {
    pub path: PathBuf,
    pub(crate) vars: VarTable,
}

impl VarsFile {
    /// The variables in file order.
    pub fn vars(&self) -> IndexMap<String, Value> {
        self.vars
            .0
            .iter()
            .map(|(name, setting)| (name.clone(), setting.value.clone()))
            .collect()
    }

    /// Where `name` is set in the file.
    pub fn location(&self, name: &str) -> Option<&Location> {
        self.vars.0.get(name).map(|setting| &setting.location)
    }
}

/// Reads and checks one variable file: TOML whose top-level keys are variables, checked like
/// inventory variables (names, reserved names, magic variable types).
pub fn read_vars_file(path: &Path) -> Result<VarsFile, InventoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_vars_file(&text, path)
}

/// Parses the text of a variable file read from `path` (which names it in errors).
pub fn parse_vars_file(text: &str, path: &Path) -> Result<VarsFile, InventoryError> {
    let name = path.display().to_string();
    let map = SourceMap::new(&name, text);
    let error = |offset: usize, problem: Problem| InventoryError::At {
        location: map.location(offset),
        message: problem.message,
        hint: problem.hint,
    };
    let document = ImDocument::parse(text).map_err(|toml_error| {
        let offset = toml_error.span().map_or(0, |span| span.start);
        let message = toml_error.message().trim().replace('\n', "; ");
        error(
            offset,
            Problem::with_hint(
                format!("invalid TOML: {message}"),
                "a vars file is a TOML table of variables, e.g. `http_port = 8080`",
            ),
        )
    })?;
    let root = document.as_table();
    let mut vars = VarTable::default();
    for (var_name, item) in root.iter() {
        let name_at = root
            .get_key_value(var_name)
            .and_then(|(key, _)| key.span())
            .map_or(0, |span| span.start);
        check_var_name(var_name).map_err(|problem| error(name_at, problem))?;
        let magic_var = magic::check_reserved(var_name).map_err(|p| error(name_at, p))?;
        let value_at = item.span().map_or(name_at, |span| span.start);
        let json = toml_item_to_json(item).map_err(|value_error| {
            let at = value_error.span.map_or(value_at, |span| span.start);
            error(at, value_error.problem)
        })?;
        let json = match magic_var {
            Some(var) => magic::validate_typed(var, &json).map_err(|p| error(value_at, p))?,
            None => json,
        };
        vars.0.insert(
            var_name.to_string(),
            VarSetting {
                value: json,
                location: map.location(value_at),
            },
        );
    }
    Ok(VarsFile {
        path: path.to_path_buf(),
        vars,
    })
}

/// The `*.toml` files of `dir` in name order with the name they are for (`web.toml` is for
/// `web`); nothing when `dir` does not exist.
pub(crate) fn toml_files_in(dir: &Path) -> Result<Vec<(String, PathBuf)>, InventoryError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(InventoryError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| InventoryError::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .path();
        let Some(file_name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        if let Some(name) = file_name.strip_suffix(".toml") {
            if path.is_file() && !name.is_empty() {
                files.push((name.to_string(), path.clone()));
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_typed_values_with_locations() {
        let file = parse_vars_file(
            "port = 8080\nname = \"web\"\n",
            Path::new("group_vars/web.toml"),
        )
        .expect("valid vars file");
        assert_eq!(file.vars()["port"], 8080);
        assert_eq!(
            file.location("name").map(ToString::to_string).as_deref(),
            Some("group_vars/web.toml:2:8")
        );
    }

    #[test]
    fn not_toml_is_an_error_with_position() {
        let error = parse_vars_file("port = 8080\nthis is not toml\n", Path::new("v.toml"))
            .expect_err("not TOML");
        let text = error.to_string();
        assert!(text.starts_with("v.toml:2:"), "{text}");
        assert!(text.contains("invalid TOML"), "{text}");
    }

    #[test]
    fn magic_variables_are_typed() {
        let error = parse_vars_file("mop_port = \"ssh\"\n", Path::new("v.toml"))
            .expect_err("mop_port must be a number");
        assert!(error.to_string().starts_with("v.toml:1:12:"), "{error}");
    }
}
