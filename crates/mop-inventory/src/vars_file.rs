//! Variable files: `group_vars/NAME.toml`, `host_vars/NAME.toml` beside an inventory and the
//! policy's `vars_files`. [`read_vars_file`] is the one place such a file is read: a vault file
//! (`*.age.toml`, `*.toml.age`) is decrypted here, in memory, and every variable it sets
//! becomes a secret ([`crate::magic::mark_vault_var`]).

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

    /// Adds the variables of `other`, a second file for the same group or host; a name both
    /// set is an error pointing at the second.
    pub(crate) fn merge(&mut self, other: VarsFile) -> Result<(), InventoryError> {
        for (name, setting) in other.vars.0 {
            if let Some(first) = self.vars.0.get(&name) {
                return Err(InventoryError::At {
                    location: setting.location,
                    message: format!("`{name}` is already set at {}", first.location),
                    hint: Some("set each variable of a group or host in one file".to_string()),
                });
            }
            self.vars.0.insert(name, setting);
        }
        Ok(())
    }

    /// Where `name` is set in the file.
    pub fn location(&self, name: &str) -> Option<&Location> {
        self.vars.0.get(name).map(|setting| &setting.location)
    }
}

/// Reads and checks one variable file: TOML whose top-level keys are variables, checked like
/// inventory variables (names, reserved names, magic variable types). A vault file is
/// decrypted with the process's [`mop_vault::Unlocker::global`] keys first.
pub fn read_vars_file(path: &Path) -> Result<VarsFile, InventoryError> {
    read_vars_file_with(path, mop_vault::Unlocker::global())
}

/// [`read_vars_file`] with the keys of `unlocker`.
pub(crate) fn read_vars_file_with(
    path: &Path,
    unlocker: &mop_vault::Unlocker,
) -> Result<VarsFile, InventoryError> {
    if mop_vault::is_vault_path(path) {
        let plaintext = unlocker.decrypt_file(path).map_err(InventoryError::Vault)?;
        let text = std::str::from_utf8(plaintext.expose()).map_err(|_| InventoryError::At {
            location: SourceMap::new(&path.display().to_string(), "").location(0),
            message: "the decrypted vault file is not UTF-8 text".to_string(),
            hint: Some("a vault variable file holds TOML; check it with `mop vault view`".into()),
        })?;
        return parse_text(text, path, true);
    }
    let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_vars_file(&text, path)
}

/// Parses the text of a variable file read from `path` (which names it in errors).
pub fn parse_vars_file(text: &str, path: &Path) -> Result<VarsFile, InventoryError> {
    parse_text(text, path, false)
}

/// Parses a variable file; `from_vault` marks every variable secret and keeps values out of
/// error messages.
fn parse_text(text: &str, path: &Path, from_vault: bool) -> Result<VarsFile, InventoryError> {
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
            Some(var) => magic::validate_typed(var, &json).map_err(|problem| {
                if from_vault {
                    // The problem may quote the value; a vault value is never shown.
                    error(
                        value_at,
                        Problem::with_hint(
                            format!("invalid value for `{var_name}` (a vault value, not shown)"),
                            format!("`{var_name}` is {}", var.value_type),
                        ),
                    )
                } else {
                    error(value_at, problem)
                }
            })?,
            None => json,
        };
        if from_vault {
            magic::mark_vault_var(var_name);
        }
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

/// How a variable file in `group_vars/`/`host_vars/` is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VarsFormat {
    /// `NAME.toml`, or the vault files `NAME.age.toml` and `NAME.toml.age`.
    Toml,
    /// Ansible's `NAME.yml`, `NAME.yaml`, `NAME.json` or `NAME` (YAML; `ansible_*` names
    /// translated as in an Ansible inventory).
    Ansible,
}

/// The variable files of a `group_vars`/`host_vars` directory in name order, with the group or
/// host each is for and its format: `web.toml` (and its vault forms), `web.yml`, `web.yaml`,
/// `web.json`, `web`, and every such file under a directory `web/` (Ansible's split form,
/// read recursively). Hidden files and other extensions are skipped. Nothing when `dir` does
/// not exist.
pub(crate) fn vars_files_in(
    dir: &Path,
) -> Result<Vec<(String, PathBuf, VarsFormat)>, InventoryError> {
    let mut files = Vec::new();
    for (path, file_name) in visible_entries(dir)? {
        let file_name = file_name.as_str();
        if path.is_dir() {
            let mut inside = Vec::new();
            collect_split_files(&path, &mut inside)?;
            files.extend(
                inside
                    .into_iter()
                    .map(|(file, format)| (file_name.to_string(), file, format)),
            );
        } else if let Some((name, format)) = vars_file_name(file_name) {
            if path.is_file() && !name.is_empty() {
                files.push((name.to_string(), path.clone(), format));
            }
        }
    }
    files.sort_by(|left, right| (&left.0, &left.1).cmp(&(&right.0, &right.1)));
    Ok(files)
}

/// What a file name in `group_vars/` says: the name it is for and its format.
fn vars_file_name(file_name: &str) -> Option<(&str, VarsFormat)> {
    for suffix in [".age.toml", ".toml.age", ".toml"] {
        if let Some(name) = file_name.strip_suffix(suffix) {
            return Some((name, VarsFormat::Toml));
        }
    }
    for suffix in [".yml", ".yaml", ".json"] {
        if let Some(name) = file_name.strip_suffix(suffix) {
            return Some((name, VarsFormat::Ansible));
        }
    }
    (!file_name.contains('.') && !file_name.ends_with('~'))
        .then_some((file_name, VarsFormat::Ansible))
}

/// The variable files under `dir` (a `group_vars/NAME/` directory), recursively, in path order.
fn collect_split_files(
    dir: &Path,
    found: &mut Vec<(PathBuf, VarsFormat)>,
) -> Result<(), InventoryError> {
    for (path, file_name) in visible_entries(dir)? {
        if path.is_dir() {
            collect_split_files(&path, found)?;
        } else if let Some((_, format)) = vars_file_name(&file_name) {
            if path.is_file() {
                found.push((path.clone(), format));
            }
        }
    }
    Ok(())
}

/// The entries of `dir` with their names, sorted, leaving out hidden names and names that are
/// not UTF-8; nothing when `dir` does not exist.
fn visible_entries(dir: &Path) -> Result<Vec<(PathBuf, String)>, InventoryError> {
    let io_error = |source| InventoryError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io_error(source)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_error)?.path();
        let name = path.file_name().and_then(|name| name.to_str());
        if let Some(name) = name.filter(|name| !name.starts_with('.')) {
            found.push((path.clone(), name.to_string()));
        }
    }
    found.sort();
    Ok(found)
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

    /// A passphrase vault: its variables read like a plain file's, become secrets (redacted in
    /// Debug), and a bad value in it is reported without the value.
    #[test]
    fn vault_files_decrypt_and_their_variables_are_secret() {
        let dir = tempfile::tempdir().expect("temp dir");
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, "pass\n").expect("write");
        let passphrase =
            mop_vault::Recipients::Passphrase(mop_vault::SecretString::from("pass".to_string()));
        let vault = dir.path().join("web.age.toml");
        let sealed = mop_vault::encrypt(
            b"vault_test_db_password = \"canary-7731\"\nmop_port = 2222\n",
            &passphrase,
        )
        .expect("encrypts");
        std::fs::write(&vault, sealed).expect("write");
        let unlocker = mop_vault::Unlocker::new(Vec::new(), Some(password_file.clone()));

        let file = read_vars_file_with(&vault, &unlocker).expect("decrypts and parses");
        assert_eq!(file.vars()["vault_test_db_password"], "canary-7731");
        assert_eq!(file.vars()["mop_port"], 2222);
        assert!(crate::is_secret_var("vault_test_db_password"));
        assert!(!format!("{file:?}").contains("canary-7731"), "{file:?}");

        let bad = dir.path().join("bad.toml.age");
        let sealed = mop_vault::encrypt(b"x = 1\nmop_port = \"canary-8842\"\n", &passphrase)
            .expect("encrypts");
        std::fs::write(&bad, sealed).expect("write");
        let error = read_vars_file_with(&bad, &unlocker).expect_err("mop_port is a number");
        let text = error.to_string();
        assert!(
            text.contains("bad.toml.age:2:12: invalid value for `mop_port`"),
            "{text}"
        );
        assert!(!text.contains("canary-8842"), "{text}");

        let locked = read_vars_file_with(&vault, &mop_vault::Unlocker::new(Vec::new(), None))
            .expect_err("no passphrase");
        assert!(locked.to_string().contains("web.age.toml"), "{locked}");
    }

    #[test]
    fn vars_files_are_found_in_every_form() {
        let dir = tempfile::tempdir().expect("temp dir");
        let split = dir.path().join("app");
        std::fs::create_dir_all(split.join("deeper")).expect("mkdir");
        for name in [
            "web.toml",
            "web.age.toml",
            "db.toml.age",
            "notes.txt",
            "cache.yml",
            "lb.yaml",
            "mail.json",
            "queue",
            ".hidden.yml",
            "queue~",
            "app/main.yml",
            "app/secrets.age.toml",
            "app/deeper/more.yaml",
            "app/README.md",
        ] {
            std::fs::write(dir.path().join(name), "").expect("write");
        }
        let found: Vec<(String, String, VarsFormat)> = vars_files_in(dir.path())
            .expect("readable")
            .into_iter()
            .map(|(name, path, format)| {
                let relative = path.strip_prefix(dir.path()).expect("inside");
                (name, relative.display().to_string(), format)
            })
            .collect();
        let expected = [
            ("app", "app/deeper/more.yaml", VarsFormat::Ansible),
            ("app", "app/main.yml", VarsFormat::Ansible),
            ("app", "app/secrets.age.toml", VarsFormat::Toml),
            ("cache", "cache.yml", VarsFormat::Ansible),
            ("db", "db.toml.age", VarsFormat::Toml),
            ("lb", "lb.yaml", VarsFormat::Ansible),
            ("mail", "mail.json", VarsFormat::Ansible),
            ("queue", "queue", VarsFormat::Ansible),
            ("web", "web.age.toml", VarsFormat::Toml),
            ("web", "web.toml", VarsFormat::Toml),
        ]
        .map(|(name, path, format)| (name.to_string(), path.to_string(), format));
        assert_eq!(found, expected);
    }

    #[test]
    fn magic_variables_are_typed() {
        let error = parse_vars_file("mop_port = \"ssh\"\n", Path::new("v.toml"))
            .expect_err("mop_port must be a number");
        assert!(error.to_string().starts_with("v.toml:1:12:"), "{error}");
    }
}
