//! The validated inventory: hosts in file order, groups with depths, and their variables.

use std::fmt;
use std::path::Path;

use indexmap::IndexMap;
use serde_json::Value;

use crate::ansible::{AnsibleFormat, FileKind};
use crate::connection::REDACTED;
use crate::error::{closest, InventoryError, Location};
use crate::magic::is_secret_var;
use crate::parse::SourceFormat;
use crate::vars_file::{read_vars_file, vars_files_in, VarsFile, VarsFormat};

/// The name of the group every host belongs to.
pub const ALL_GROUP: &str = "all";

/// One variable as set in the inventory, with where it was set.
#[derive(Clone, PartialEq)]
pub(crate) struct VarSetting {
    pub(crate) value: Value,
    pub(crate) location: Location,
}

/// Variables of one scope (a group's `vars`, a host's `vars`, one shorthand string).
/// Debug shows secret values as `<redacted>`.
#[derive(Clone, Default, PartialEq)]
pub(crate) struct VarTable(pub(crate) IndexMap<String, VarSetting>);

impl fmt::Debug for VarTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, setting)| {
                let shown = if is_secret_var(name) {
                    Value::from(REDACTED)
                } else {
                    setting.value.clone()
                };
                (name, shown)
            }))
            .finish()
    }
}

/// The variables one group entry gave a host through OpsMop's `key=value` shorthand.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ShorthandEntry {
    /// The group whose `hosts` table held the shorthand; `None` for a top-level `[hosts]` entry.
    pub(crate) group: Option<String>,
    pub(crate) vars: VarTable,
}

/// A group of hosts.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub(crate) name: String,
    pub(crate) depth: usize,
    pub(crate) parents: Vec<String>,
    pub(crate) children: Vec<String>,
    pub(crate) hosts: Vec<String>,
    pub(crate) location: Option<Location>,
    pub(crate) vars: VarTable,
}

impl Group {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `all` is 0, a group nobody lists as a child is 1, a child is one more than its deepest
    /// parent.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Groups that list this one in their `children`, by name.
    pub fn parents(&self) -> &[String] {
        &self.parents
    }

    /// The `children` as written.
    pub fn children(&self) -> &[String] {
        &self.children
    }

    /// Hosts listed directly in this group's `hosts` table, in inventory order (not the hosts
    /// of child groups: see [`Inventory::hosts_in_group`]).
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Where the group first appears; `None` for an `all` group the files never mention.
    pub fn location(&self) -> Option<&Location> {
        self.location.as_ref()
    }

    /// Names of the variables this group sets, in file order.
    pub fn var_names(&self) -> impl Iterator<Item = &str> {
        self.vars.0.keys().map(String::as_str)
    }
}

/// A host of the inventory.
#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    pub(crate) name: String,
    pub(crate) groups: Vec<String>,
    pub(crate) location: Location,
    pub(crate) shorthand: Vec<ShorthandEntry>,
    pub(crate) vars: VarTable,
}

impl Host {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every group the host belongs to, through its own entries and their ancestors, `all`
    /// included; sorted by depth, then name. This is also the order in which group variables
    /// apply (later wins).
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// Where the host first appears in the inventory files.
    pub fn location(&self) -> &Location {
        &self.location
    }
}

/// A loaded, validated inventory.
///
/// Construction checks everything that can be checked without caller layers: syntax, keys,
/// magic variable types, group references and cycles, and every host's `mop_via` chain.
#[derive(Clone, Debug)]
pub struct Inventory {
    pub(crate) sources: Vec<String>,
    pub(crate) groups: IndexMap<String, Group>,
    pub(crate) hosts: IndexMap<String, Host>,
    /// `group_vars/NAME.toml` beside the inventory, by group name.
    pub(crate) group_vars_files: IndexMap<String, VarsFile>,
    /// `host_vars/NAME.toml` beside the inventory, by host name.
    pub(crate) host_vars_files: IndexMap<String, VarsFile>,
    /// Problems that do not stop a run (a vars file for a group that does not exist).
    pub(crate) warnings: Vec<String>,
}

impl Inventory {
    /// Parses one inventory file. `source_name` is used in error locations.
    pub fn parse(text: &str, source_name: &str) -> Result<Inventory, InventoryError> {
        Inventory::parse_many(&[(source_name, text)])
    }

    /// Parses several inventory files as one inventory, in the order given: `(source_name,
    /// text)` pairs. Groups and hosts may appear in several files; setting the same variable
    /// of the same group or host in two files is an error.
    pub fn parse_many(sources: &[(&str, &str)]) -> Result<Inventory, InventoryError> {
        crate::parse::parse_sources(sources)
    }

    /// Reads an inventory: a TOML file, an Ansible INI or YAML file, an executable (a dynamic
    /// inventory script, run with `--list`), or a directory whose `*.toml`, `*.ini`, `*.yml`
    /// and `*.yaml` files are read in file-name order as one inventory.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        Inventory::load_all(&[path.to_path_buf()])
    }

    /// Reads several inventory sources (each as [`Inventory::load`] reads one) as one
    /// inventory, in the order given: Ansible's repeated `-i`. Groups and hosts may appear in
    /// several sources; setting the same variable of the same group or host twice is an error.
    /// The `group_vars/` and `host_vars/` beside each source apply.
    pub fn load_all(paths: &[std::path::PathBuf]) -> Result<Inventory, InventoryError> {
        let mut files: SourceFiles = Vec::new();
        let mut warnings = Vec::new();
        let mut beside_dirs: Vec<std::path::PathBuf> = Vec::new();
        for path in paths {
            let (found, beside) = source_files(path, &mut warnings)?;
            files.extend(found);
            if !beside_dirs.contains(&beside) {
                beside_dirs.push(beside);
            }
        }
        let mut texts = Vec::with_capacity(files.len());
        for (file, kind) in &files {
            let kind = match kind {
                Some(kind) => *kind,
                None if crate::ansible::kind_in_directory(file).is_none()
                    && is_executable(file) =>
                {
                    FileKind::Script
                }
                None => {
                    let text = read_text(file)?;
                    let kind = crate::ansible::kind_of_named_file(file, &text, false);
                    texts.push((file.display().to_string(), text, format_of(kind)));
                    continue;
                }
            };
            let text = match kind {
                FileKind::Script => crate::ansible::script::run_list(file)?,
                _ => read_text(file)?,
            };
            texts.push((file.display().to_string(), text, format_of(kind)));
        }
        let sources: Vec<(&str, &str, SourceFormat)> = texts
            .iter()
            .map(|(name, text, format)| (name.as_str(), text.as_str(), *format))
            .collect();
        let mut inventory = crate::parse::parse_formatted(&sources)?;
        inventory.warnings.splice(0..0, warnings);
        inventory.load_vars_dirs(&beside_dirs)?;
        Ok(inventory)
    }

    /// Reads the variable files of `group_vars/` and `host_vars/` in `dir` (TOML, vault, and
    /// Ansible's YAML/JSON, see [`vars_files_in`]), collecting every error. A
    /// file for a group or host the inventory does not define is a warning: Ansible ignores
    /// such files, but a typo in a file name silently dropping variables deserves a word.
    fn load_vars_dirs(&mut self, dirs: &[std::path::PathBuf]) -> Result<(), InventoryError> {
        let mut errors = Vec::new();
        let places = dirs.iter().flat_map(|dir| {
            [("group", "group_vars"), ("host", "host_vars")]
                .map(|(kind, subdir)| (dir, kind, subdir))
        });
        for (dir, kind, subdir) in places {
            let files = match vars_files_in(&dir.join(subdir)) {
                Ok(files) => files,
                Err(error) => {
                    errors.push(error);
                    continue;
                }
            };
            for (name, file_path, format) in files {
                let read = match format {
                    VarsFormat::Toml => read_vars_file(&file_path),
                    VarsFormat::Ansible => {
                        crate::ansible::read_vars_file(&file_path, &format!("{kind} `{name}`")).map(
                            |(file, warnings)| {
                                self.warnings.extend(warnings);
                                file
                            },
                        )
                    }
                };
                let file = match read {
                    Ok(file) => file,
                    Err(error) => {
                        errors.push(error);
                        continue;
                    }
                };
                let known: Vec<&str> = if kind == "group" {
                    self.groups.keys().map(String::as_str).collect()
                } else {
                    self.hosts.keys().map(String::as_str).collect()
                };
                if !known.contains(&name.as_str()) {
                    let hint = match closest(&name, known.iter().copied()) {
                        Some(suggestion) => {
                            let beside = file_path.parent() == Some(dir.join(subdir).as_path());
                            let rest = file_path
                                .file_name()
                                .and_then(|file_name| file_name.to_str())
                                .and_then(|file_name| file_name.strip_prefix(name.as_str()))
                                .filter(|_| beside)
                                .unwrap_or("/");
                            format!("did you mean `{suggestion}{rest}`?")
                        }
                        None => format!("name the file after a {kind} of the inventory"),
                    };
                    self.warnings.push(format!(
                        "`{}`: no {kind} `{name}` in the inventory, its variables are not used\n  hint: {hint}",
                        file_path.display()
                    ));
                    continue;
                }
                let files = if kind == "group" {
                    &mut self.group_vars_files
                } else {
                    &mut self.host_vars_files
                };
                // `db.toml` and the vault file `db.age.toml` both speak for `db`: plain and
                // secret variables side by side, each name set in one of them only.
                match files.get_mut(&name) {
                    Some(first) => {
                        if let Err(error) = first.merge(file) {
                            errors.push(error);
                        }
                    }
                    None => {
                        files.insert(name, file);
                    }
                }
            }
        }
        // `mop_via` may come from a host_vars file: check the chains again.
        if errors.is_empty() {
            for host in self.hosts() {
                let first_link = self.inventory_via(host);
                if let Err(error) = self.via_chain(host.name(), first_link) {
                    errors.push(error);
                }
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(InventoryError::Several(errors)),
        }
    }

    /// Warnings found while loading (printed by the caller).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The `group_vars` and `host_vars` files in use (never served by the file server).
    pub fn vars_file_paths(&self) -> impl Iterator<Item = &Path> {
        self.group_vars_files
            .values()
            .chain(self.host_vars_files.values())
            .map(|file| file.path.as_path())
    }

    /// The source names this inventory was read from, in load order.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// Hosts in inventory order: the order of first appearance in the files.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.hosts.values()
    }

    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.get(name)
    }

    /// Groups in order of first appearance; `all` is always present.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name)
    }

    /// Every host in `group_name` or any group below it, in inventory order; empty for an
    /// unknown group.
    pub fn hosts_in_group(&self, group_name: &str) -> Vec<&Host> {
        self.hosts
            .values()
            .filter(|host| host.groups.iter().any(|group| group == group_name))
            .collect()
    }

    pub(crate) fn unknown_host(&self, name: &str) -> InventoryError {
        let hint = closest(name, self.hosts.keys().map(String::as_str))
            .map(|suggestion| format!("did you mean `{suggestion}`?"));
        InventoryError::UnknownHost {
            name: name.to_string(),
            hint,
        }
    }
}

fn read_text(file: &Path) -> Result<String, InventoryError> {
    std::fs::read_to_string(file).map_err(|source| InventoryError::Io {
        path: file.to_path_buf(),
        source,
    })
}

/// The files one inventory source stands for, each with its kind when its name decides it.
type SourceFiles = Vec<(std::path::PathBuf, Option<FileKind>)>;

/// The files one inventory source stands for (a directory's in name order), and the directory
/// its `group_vars/` and `host_vars/` sit in.
fn source_files(
    path: &Path,
    warnings: &mut Vec<String>,
) -> Result<(SourceFiles, std::path::PathBuf), InventoryError> {
    let io_error = |source| InventoryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(io_error)?;
    if !metadata.is_dir() {
        let beside = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        return Ok((vec![(path.to_path_buf(), None)], beside));
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io_error)? {
        let entry_path = entry.map_err(io_error)?.path();
        if !entry_path.is_file() {
            continue;
        }
        match crate::ansible::kind_in_directory(&entry_path) {
            Some(kind) => files.push((entry_path, Some(kind))),
            None if is_executable(&entry_path) => warnings.push(format!(
                "`{}` is executable and is not run: mop runs a dynamic inventory script only \
                 when `-i` names it\n  hint: `-i {}`",
                entry_path.display(),
                crate::grammar::shell_quote(&entry_path.to_string_lossy())
            )),
            None => {}
        }
    }
    if files.is_empty() {
        return Err(InventoryError::NoInventoryFiles {
            dir: path.to_path_buf(),
        });
    }
    files.sort_by(|(left, _), (right, _)| left.cmp(right));
    Ok((files, path.to_path_buf()))
}

fn is_executable(file: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(file).is_ok_and(|metadata| metadata.permissions().mode() & 0o111 != 0)
}

fn format_of(kind: FileKind) -> SourceFormat {
    match kind {
        FileKind::Toml => SourceFormat::Toml,
        FileKind::Ansible(format) => SourceFormat::Ansible(format),
        FileKind::Script => SourceFormat::Ansible(AnsibleFormat::ScriptJson),
    }
}
