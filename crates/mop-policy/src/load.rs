//! Turns policy and roles files into the validated model, collecting every error with its
//! file, line and column.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use mop_inventory::InventoryError;

use crate::error::{Origin, PolicyError, PolicyErrors, Position, SourceFile};
use crate::fields::Reader;
use crate::model::{
    parent_dir, resolve, FileServerSettings, HostKeyPolicy, HostSelector, MaxFail, PathSpec,
    PatternSpec, Policy, Role, RoleDetails, VarsLayer,
};
use crate::node::{self, Node, Table, Value};
use crate::resources::{self, ListKind, Parsed, ParsedResource};
use crate::suggest;
use crate::templates::{self, SiteKind, TemplateSite, RESERVED_NAMES};

/// Keys of a policy file.
pub(crate) const POLICY_KEYS: &[&str] = &["inventory", "vars", "vars_files", "fileserver", "roles"];

/// Keys of `[fileserver]`.
pub(crate) const FILESERVER_KEYS: &[&str] = &["paths", "allow", "deny"];

/// Keys of a `[[roles]]` table.
pub(crate) const ROLE_KEYS: &[&str] = &[
    "name",
    "groups",
    "hosts",
    "serial",
    "max_fail",
    "ssh_as",
    "sudo",
    "sudo_as",
    "check_host_keys",
    "before",
    "after",
    "contact_when",
    "fileserver_paths",
    "use",
    "include",
    "tags",
    "vars",
    "vars_files",
    "resources",
    "handlers",
];

/// Keys of a roles file.
pub(crate) const ROLES_FILE_KEYS: &[&str] = &["include", "vars", "resources", "handlers"];

/// The file of a role directory that holds its resources and handlers.
pub const ROLE_RESOURCES_FILE: &str = "resources.toml";

/// The optional file of a role directory that holds its default variables.
pub const ROLE_DEFAULTS_FILE: &str = "defaults.toml";

/// A roles file, parsed once however many roles include it, with the files it includes
/// flattened in (their content first, in the order written).
struct RolesFile {
    vars: serde_json::Map<String, serde_json::Value>,
    resources: Vec<ParsedResource>,
    handlers: Vec<ParsedResource>,
    /// Names of handlers that did not deserialize (already reported).
    broken_handler_names: Vec<String>,
}

enum CachedRolesFile {
    Loaded(Rc<RolesFile>),
    /// Could not be read; the reason is repeated at every `include` that names it.
    Unreadable(String),
    /// Read but broken; its errors were reported once.
    Invalid,
}

struct Loader {
    errors: Vec<PolicyError>,
    roles_files: BTreeMap<PathBuf, CachedRolesFile>,
    /// The policy, then the roles files being read (each included by the one before): how
    /// include cycles are found and how errors name the chain.
    include_stack: Vec<PathBuf>,
    /// Each role directory's defaults, read once however many roles use it (`None`: absent
    /// or broken, and its errors were reported once).
    role_defaults: BTreeMap<PathBuf, Option<VarsLayer>>,
}

/// Loads a policy from its text; `path` names it in errors and anchors relative paths.
pub(crate) fn load_policy(text: String, path: &Path) -> Result<Policy, PolicyErrors> {
    let (policy, errors) = load_policy_partially(text, path);
    match policy {
        Some(policy) if errors.is_empty() => Ok(policy),
        _ => Err(errors),
    }
}

/// Loads a policy, keeping whatever parsed even when there are errors: `None` only when the
/// file is not TOML. Later checks (undefined variables, served files, templates) run on the
/// partial policy so that one run reports every problem instead of one stage at a time.
pub(crate) fn load_policy_partially(text: String, path: &Path) -> (Option<Policy>, PolicyErrors) {
    let mut loader = Loader {
        errors: Vec::new(),
        roles_files: BTreeMap::new(),
        include_stack: vec![path.to_path_buf()],
        role_defaults: BTreeMap::new(),
    };
    let policy = loader.policy(text, path);
    let errors = PolicyErrors {
        errors: in_reading_order(loader.errors),
    };
    (policy, errors)
}

/// Sorts errors by file (in the order files were first mentioned) and position, so they read
/// top to bottom; errors about a whole file come first for that file.
fn in_reading_order(mut errors: Vec<PolicyError>) -> Vec<PolicyError> {
    let mut file_order: Vec<PathBuf> = Vec::new();
    for error in &errors {
        if !file_order.contains(&error.file) {
            file_order.push(error.file.clone());
        }
    }
    errors.sort_by_key(|error| {
        let file_index = file_order
            .iter()
            .position(|file| *file == error.file)
            .unwrap_or(usize::MAX);
        (file_index, error.position)
    });
    errors
}

fn toml_error(source: &SourceFile, error: &toml::de::Error, context: &str) -> PolicyError {
    // toml's messages may span lines ("invalid string\nexpected ..."); keep one line.
    let message = format!(
        "invalid TOML: {}",
        error
            .message()
            .trim_end()
            .lines()
            .collect::<Vec<_>>()
            .join(", ")
    );
    match error.span() {
        Some(span) => PolicyError::at(&source.origin(span.start), context, message),
        None => PolicyError::whole_file(&source.path, context, message),
    }
}

impl Loader {
    fn policy(&mut self, text: String, path: &Path) -> Option<Policy> {
        let source = SourceFile::new(path, text);
        let dir = parent_dir(path);
        let root = match node::parse_document(&source.text) {
            Ok(root) => root,
            Err(error) => {
                self.errors.push(toml_error(&source, &error, ""));
                return None;
            }
        };
        let mut errors = std::mem::take(&mut self.errors);
        let mut reader = Reader {
            source: &source,
            errors: &mut errors,
        };
        reader.check_keys_with(&root, POLICY_KEYS, "", |key| {
            ROLE_KEYS.contains(&key).then(|| match key {
                "resources" | "handlers" => {
                    format!("`{key}` belong to a role: write `[[roles.{key}]]` after a `[[roles]]` table")
                }
                _ => format!("`{key}` belongs to a role: write it under a `[[roles]]` table"),
            })
        });
        let inventory = reader
            .string(&root, "inventory", "")
            .map(|(inventory, _)| resolve(&dir, &inventory));
        let vars = read_vars(&mut reader, &root, "");
        let vars_files = read_vars_files(&mut reader, &root, &dir, "");
        let fileserver = read_fileserver(&mut reader, &root);
        let role_tables = reader.table_array(&root, "roles", "");
        if role_tables.is_empty() && !root.entries.contains_key("roles") {
            reader.errors.push(
                PolicyError::whole_file(path, "", "the policy has no roles").with_hint(Some(
                    "add a `[[roles]]` table with a `name` and resources".to_string(),
                )),
            );
        }
        self.errors = errors;

        let mut roles = Vec::with_capacity(role_tables.len());
        let mut first_by_name: BTreeMap<String, Origin> = BTreeMap::new();
        for (index, (node, table)) in role_tables.into_iter().enumerate() {
            if let Some(role) = self.role(&source, &dir, node, table, index, &mut first_by_name) {
                roles.push(role);
            }
        }
        Some(Policy {
            path: path.to_path_buf(),
            dir,
            inventory,
            vars,
            vars_files,
            fileserver,
            roles,
        })
    }

    fn role(
        &mut self,
        source: &SourceFile,
        dir: &Path,
        node: &Node,
        table: &Table,
        index: usize,
        first_by_name: &mut BTreeMap<String, Origin>,
    ) -> Option<Role> {
        let mut errors = std::mem::take(&mut self.errors);
        let mut reader = Reader {
            source,
            errors: &mut errors,
        };
        let origin = source.origin(node.span.start);
        let unnamed = format!("role #{}", index + 1);
        let name = match reader.string(table, "name", &unnamed) {
            Some((name, span)) if !name.trim().is_empty() => Some((name, span)),
            Some((_, span)) => {
                reader.error(span.start, &unnamed, "field `name` is empty", None);
                None
            }
            None => {
                if !table.entries.contains_key("name") {
                    reader.error(
                        node.span.start,
                        &unnamed,
                        "missing field `name`",
                        Some("every role needs a unique `name`".to_string()),
                    );
                }
                None
            }
        };
        let context = match &name {
            Some((name, _)) => format!("role `{name}`"),
            None => unnamed,
        };
        if let Some((name, span)) = &name {
            let here = source.origin(span.start);
            match first_by_name.get(name) {
                Some(first) => reader.error(
                    span.start,
                    &context,
                    format!("duplicate role name `{name}`"),
                    Some(format!("the first role named `{name}` is at {first}")),
                ),
                None => {
                    first_by_name.insert(name.clone(), here);
                }
            }
        }
        reader.check_keys(table, ROLE_KEYS, &context);

        let groups = reader
            .string_list(table, "groups", &context)
            .unwrap_or_default();
        let hosts = reader
            .string_list(table, "hosts", &context)
            .unwrap_or_default();
        let selector = HostSelector {
            groups: compile_globs(&mut reader, &groups, "groups", &context),
            hosts: compile_globs(&mut reader, &hosts, "hosts", &context),
        };
        let serial = read_serial(&mut reader, table, &context);
        let max_fail = read_max_fail(&mut reader, table, &context).unwrap_or_default();
        let ssh_as = non_empty_string(&mut reader, table, "ssh_as", &context);
        let sudo = reader.boolean(table, "sudo", &context);
        let sudo_as = non_empty_string(&mut reader, table, "sudo_as", &context);
        let check_host_keys =
            reader
                .string(table, "check_host_keys", &context)
                .and_then(|(value, span)| match HostKeyPolicy::from_name(&value) {
                    Some(check) => Some(check),
                    None => {
                        let names = HostKeyPolicy::NAMES.iter().copied();
                        reader.error(
                            span.start,
                            &context,
                            format!(
                                "field `check_host_keys` is `{value}`, expected one of {}",
                                suggest::quoted_list(names.clone())
                            ),
                            suggest::did_you_mean(&value, names),
                        );
                        None
                    }
                });
        let mut hooks = Vec::new();
        let mut hook = |reader: &mut Reader<'_>, key: &str, kind: SiteKind| {
            let (text, span) = reader.string(table, key, &context)?;
            let site = TemplateSite {
                field: key.to_string(),
                kind,
                text: text.clone(),
                origin: source.origin(span.start),
            };
            if let Some(message) = templates::syntax_error(kind, &text) {
                reader.error(
                    span.start,
                    &context,
                    format!("field `{key}`: {message}"),
                    None,
                );
            } else {
                // Rendered by the controller, in the same template language as the hosts.
                let template = kind == SiteKind::Template;
                for missing in crate::host_names::unavailable_names(&text, template) {
                    reader.error(
                        span.start,
                        &context,
                        format!("field `{key}`: {}", missing.message()),
                        Some(missing.hint()),
                    );
                }
            }
            hooks.push(site);
            Some(text)
        };
        let before = hook(&mut reader, "before", SiteKind::Template);
        let after = hook(&mut reader, "after", SiteKind::Template);
        let contact_when = hook(&mut reader, "contact_when", SiteKind::Expression);
        let fileserver_paths = read_paths(&mut reader, table, "fileserver_paths", &context);
        let tags = reader
            .string_list(table, "tags", &context)
            .unwrap_or_default()
            .into_iter()
            .map(|(tag, _)| tag)
            .collect();
        let own_vars = read_vars(&mut reader, table, &context);
        let vars_files = read_vars_files(&mut reader, table, dir, &context);
        let role_use = reader.string(table, "use", &context);
        let includes = reader
            .string_list(table, "include", &context)
            .unwrap_or_default();
        let resource_tables = reader.table_array(table, "resources", &context);
        let handler_tables = reader.table_array(table, "handlers", &context);

        let mut resources = Vec::new();
        let mut handlers = Vec::new();
        let mut broken_handler_names = Vec::new();
        for (position, (resource_node, resource_table)) in resource_tables.into_iter().enumerate() {
            if let Parsed::Ok(parsed) = resources::parse_resource(
                &mut reader,
                resource_node,
                resource_table,
                ListKind::Resource,
                position,
                &context,
            ) {
                resources.push(*parsed);
            }
        }
        for (position, (handler_node, handler_table)) in handler_tables.into_iter().enumerate() {
            match resources::parse_resource(
                &mut reader,
                handler_node,
                handler_table,
                ListKind::Handler,
                position,
                &context,
            ) {
                Parsed::Ok(parsed) => handlers.push(*parsed),
                Parsed::Failed { name } => broken_handler_names.extend(name),
            }
        }
        self.errors = errors;

        let mut included: Vec<Rc<RolesFile>> = Vec::new();
        let mut include_failed = false;
        let mut role_dir = None;
        let mut defaults = None;
        if let Some((use_path, span)) = role_use {
            let origin = source.origin(span.start);
            let directory = resolve(dir, &use_path);
            match self.role_directory(&directory, &origin, &context) {
                Some((file, role_defaults)) => {
                    included.push(file);
                    defaults = role_defaults;
                }
                None => include_failed = true,
            }
            role_dir = Some(directory);
        }
        let mut include_paths = Vec::with_capacity(includes.len());
        for (include, span) in includes {
            let include_path = resolve(dir, &include);
            match self.roles_file(&include_path, &source.origin(span.start), &context) {
                Some(file) => included.push(file),
                None => include_failed = true,
            }
            include_paths.push(include_path);
        }

        let mut vars = serde_json::Map::new();
        let mut all_resources: Vec<&ParsedResource> = Vec::new();
        let mut all_handlers: Vec<&ParsedResource> = Vec::new();
        for file in &included {
            vars.extend(file.vars.clone());
            all_resources.extend(file.resources.iter());
            all_handlers.extend(file.handlers.iter());
            broken_handler_names.extend(file.broken_handler_names.iter().cloned());
        }
        vars.extend(own_vars);
        all_resources.extend(resources.iter());
        all_handlers.extend(handlers.iter());

        self.check_handlers(
            &all_resources,
            &all_handlers,
            &broken_handler_names,
            include_failed,
            &context,
        );

        let name = name?;
        Some(Role {
            name: name.0,
            groups: groups.into_iter().map(|(glob, _)| glob).collect(),
            hosts: hosts.into_iter().map(|(glob, _)| glob).collect(),
            serial,
            max_fail,
            ssh_as,
            sudo,
            sudo_as,
            check_host_keys,
            before,
            after,
            contact_when,
            fileserver_paths,
            includes: include_paths,
            role_dir,
            defaults,
            vars,
            vars_files,
            resources: all_resources
                .iter()
                .map(|parsed| parsed.resource.clone())
                .collect(),
            resource_origins: all_resources
                .iter()
                .map(|parsed| parsed.origin.clone())
                .collect(),
            handlers: all_handlers
                .iter()
                .map(|parsed| parsed.resource.clone())
                .collect(),
            handler_origins: all_handlers
                .iter()
                .map(|parsed| parsed.origin.clone())
                .collect(),
            tags,
            origin,
            selector,
            details: RoleDetails {
                hooks,
                resources: all_resources
                    .iter()
                    .map(|parsed| parsed.detail.clone())
                    .collect(),
                handlers: all_handlers
                    .iter()
                    .map(|parsed| parsed.detail.clone())
                    .collect(),
            },
        })
    }

    /// Duplicate handler names, and `notify` naming no handler.
    fn check_handlers(
        &mut self,
        resources: &[&ParsedResource],
        handlers: &[&ParsedResource],
        broken_handler_names: &[String],
        include_failed: bool,
        context: &str,
    ) {
        let mut first_by_name: BTreeMap<&str, &Origin> = BTreeMap::new();
        for handler in handlers {
            let Some(name) = handler.resource.name.as_deref() else {
                continue;
            };
            match first_by_name.get(name) {
                Some(first) => self.errors.push(
                    PolicyError::at(
                        &handler.origin,
                        &resources::join_context(context, &handler.detail.label),
                        format!("duplicate handler name `{name}`"),
                    )
                    .with_hint(Some(format!(
                        "the first handler named `{name}` is at {first}"
                    ))),
                ),
                None => {
                    first_by_name.insert(name, &handler.origin);
                }
            }
        }
        if include_failed {
            // The handlers may be in the roles file that failed; its error says enough.
            return;
        }
        let known: Vec<&str> = first_by_name
            .keys()
            .copied()
            .chain(broken_handler_names.iter().map(String::as_str))
            .collect();
        for resource in resources.iter().chain(handlers.iter()) {
            for notified in &resource.resource.notify {
                if notified.trim().is_empty() || known.contains(&notified.as_str()) {
                    continue;
                }
                let origin = resource
                    .detail
                    .notify_origin
                    .as_ref()
                    .unwrap_or(&resource.origin);
                let hint = suggest::did_you_mean(notified, known.iter().copied()).or_else(|| {
                    Some(format!(
                        "define it with `[[roles.handlers]]` (or `[[handlers]]` in a roles file) and `name = \"{notified}\"`"
                    ))
                });
                self.errors.push(
                    PolicyError::at(
                        origin,
                        &resources::join_context(context, &resource.detail.label),
                        format!("notifies handler `{notified}`, which is not defined"),
                    )
                    .with_hint(hint),
                );
            }
        }
    }

    /// Reads a role directory (`use = "..."`): its resources file, through [`Self::roles_file`],
    /// and its optional defaults. Every problem is reported at the `use` value.
    fn role_directory(
        &mut self,
        directory: &Path,
        used_at: &Origin,
        context: &str,
    ) -> Option<(Rc<RolesFile>, Option<VarsLayer>)> {
        if !directory.is_dir() {
            let siblings = sibling_directories(directory);
            let wanted = directory
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            let hint =
                suggest::did_you_mean(&wanted, siblings.iter().map(String::as_str)).or_else(|| {
                    Some(format!(
                        "a role directory holds `{ROLE_RESOURCES_FILE}` and optionally \
                         `{ROLE_DEFAULTS_FILE}`, `templates/` and `files/`"
                    ))
                });
            self.errors.push(
                PolicyError::at(
                    used_at,
                    context,
                    format!("role directory `{}` does not exist", directory.display()),
                )
                .with_hint(hint),
            );
            return None;
        }
        let defaults_path = directory.join(ROLE_DEFAULTS_FILE);
        let defaults = if let Some(cached) = self.role_defaults.get(&defaults_path) {
            cached.clone()
        } else if defaults_path.exists() {
            let label = format!("defaults of `{}`", directory.display());
            match load_vars_layer(&defaults_path, label, used_at, context) {
                Ok(layer) => Some(layer),
                Err(errors) => {
                    self.errors.extend(errors);
                    None
                }
            }
        } else {
            None
        };
        self.role_defaults
            .insert(defaults_path.clone(), defaults.clone());
        let resources_path = directory.join(ROLE_RESOURCES_FILE);
        if !resources_path.is_file() {
            self.errors.push(
                PolicyError::at(
                    used_at,
                    context,
                    format!(
                        "role directory `{}` has no `{ROLE_RESOURCES_FILE}`",
                        directory.display()
                    ),
                )
                .with_hint(Some(format!(
                    "create `{}` with the role's `[[resources]]` and `[[handlers]]`",
                    resources_path.display()
                ))),
            );
            return None;
        }
        let file = self.roles_file(&resources_path, used_at, context)?;
        Some((file, defaults))
    }

    /// `a.toml → b.toml → c.toml`: the include stack, then `path`.
    fn include_chain(&self, path: &Path) -> String {
        self.include_stack
            .iter()
            .map(|file| file.display().to_string())
            .chain(std::iter::once(path.display().to_string()))
            .collect::<Vec<_>>()
            .join(" → ")
    }

    /// Reads a roles file once, with the files it includes; later includes reuse it.
    fn roles_file(
        &mut self,
        path: &Path,
        included_at: &Origin,
        context: &str,
    ) -> Option<Rc<RolesFile>> {
        if self.include_stack.iter().any(|file| file == path) {
            let chain = self.include_chain(path);
            self.errors.push(
                PolicyError::at(included_at, context, format!("include cycle: {chain}")).with_hint(
                    Some("remove one of the `include`s that form the cycle".to_string()),
                ),
            );
            return None;
        }
        match self.roles_files.get(path) {
            Some(CachedRolesFile::Loaded(file)) => return Some(Rc::clone(file)),
            Some(CachedRolesFile::Unreadable(reason)) => {
                let error = self.unreadable_roles_file(path, reason.clone(), included_at, context);
                self.errors.push(error);
                return None;
            }
            Some(CachedRolesFile::Invalid) => return None,
            None => {}
        }
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => {
                let reason = error.to_string();
                let error = self.unreadable_roles_file(path, reason.clone(), included_at, context);
                self.errors.push(error);
                self.roles_files
                    .insert(path.to_path_buf(), CachedRolesFile::Unreadable(reason));
                return None;
            }
        };
        self.include_stack.push(path.to_path_buf());
        let file = self.parse_roles_file(path, text, included_at, context);
        self.include_stack.pop();
        let cached = match &file {
            Some(file) => CachedRolesFile::Loaded(Rc::clone(file)),
            None => CachedRolesFile::Invalid,
        };
        self.roles_files.insert(path.to_path_buf(), cached);
        file
    }

    fn unreadable_roles_file(
        &self,
        path: &Path,
        reason: String,
        included_at: &Origin,
        context: &str,
    ) -> PolicyError {
        let message = format!("cannot read roles file `{}`: {reason}", path.display());
        // Only a nested include needs the chain: the policy's own include is the position.
        let hint = (self.include_stack.len() > 1)
            .then(|| format!("include chain: {}", self.include_chain(path)));
        PolicyError::at(included_at, context, message).with_hint(hint)
    }

    fn parse_roles_file(
        &mut self,
        path: &Path,
        text: String,
        included_at: &Origin,
        context: &str,
    ) -> Option<Rc<RolesFile>> {
        let source = SourceFile::new(path, text);
        let root = match node::parse_document(&source.text) {
            Ok(root) => root,
            Err(error) => {
                let context = format!("roles file included by {context} at {included_at}");
                self.errors.push(toml_error(&source, &error, &context));
                return None;
            }
        };
        let errors_before = self.errors.len();
        let mut errors = std::mem::take(&mut self.errors);
        let mut reader = Reader {
            source: &source,
            errors: &mut errors,
        };
        reader.check_keys_with(&root, ROLES_FILE_KEYS, "", |key| {
            ROLE_KEYS.contains(&key).then(|| {
                format!("`{key}` is set by the role that includes this file, in the policy")
            })
        });
        let includes = reader.string_list(&root, "include", "").unwrap_or_default();
        let own_vars = read_vars(&mut reader, &root, "");
        let mut resources = Vec::new();
        let mut handlers = Vec::new();
        let mut broken_handler_names = Vec::new();
        for (position, (node, table)) in reader
            .table_array(&root, "resources", "")
            .into_iter()
            .enumerate()
        {
            if let Parsed::Ok(parsed) = resources::parse_resource(
                &mut reader,
                node,
                table,
                ListKind::Resource,
                position,
                "",
            ) {
                resources.push(*parsed);
            }
        }
        for (position, (node, table)) in reader
            .table_array(&root, "handlers", "")
            .into_iter()
            .enumerate()
        {
            match resources::parse_resource(
                &mut reader,
                node,
                table,
                ListKind::Handler,
                position,
                "",
            ) {
                Parsed::Ok(parsed) => handlers.push(*parsed),
                Parsed::Failed { name } => broken_handler_names.extend(name),
            }
        }
        self.errors = errors;

        let dir = parent_dir(path);
        let mut file = RolesFile {
            vars: serde_json::Map::new(),
            resources: Vec::new(),
            handlers: Vec::new(),
            broken_handler_names: Vec::new(),
        };
        for (include, span) in includes {
            let include_path = resolve(&dir, &include);
            if let Some(included) = self.roles_file(&include_path, &source.origin(span.start), "") {
                file.vars.extend(included.vars.clone());
                file.resources.extend(included.resources.iter().cloned());
                file.handlers.extend(included.handlers.iter().cloned());
                file.broken_handler_names
                    .extend(included.broken_handler_names.iter().cloned());
            }
        }
        if self.errors.len() > errors_before {
            return None;
        }
        file.vars.extend(own_vars);
        file.resources.extend(resources);
        file.handlers.extend(handlers);
        file.broken_handler_names.extend(broken_handler_names);
        Some(Rc::new(file))
    }
}

/// Names of the directories beside `directory`, for did-you-mean hints.
fn sibling_directories(directory: &Path) -> Vec<String> {
    let parent = parent_dir(directory);
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .filter_map(|entry| entry.file_name().to_str().map(str::to_string))
        .collect()
}

/// `vars_files = [...]`: each file resolved against `dir` (the directory of the file naming
/// it), read and checked; every problem is reported.
fn read_vars_files(
    reader: &mut Reader<'_>,
    table: &Table,
    dir: &Path,
    context: &str,
) -> Vec<VarsLayer> {
    let Some(paths) = reader.string_list(table, "vars_files", context) else {
        return Vec::new();
    };
    let mut layers = Vec::with_capacity(paths.len());
    for (path, span) in paths {
        if path.trim().is_empty() {
            reader.error(
                span.start,
                context,
                "field `vars_files` has an empty path",
                None,
            );
            continue;
        }
        let origin = reader.source.origin(span.start);
        let resolved = resolve(dir, &path);
        let label = format!("vars file `{}`", resolved.display());
        match load_vars_layer(&resolved, label, &origin, context) {
            Ok(layer) => layers.push(layer),
            Err(errors) => reader.errors.extend(errors),
        }
    }
    layers
}

/// Reads one variable file through `mop_inventory::read_vars_file` (the one reader of vars
/// files); errors inside the file point into it, others at `named_at`.
fn load_vars_layer(
    path: &Path,
    label: String,
    named_at: &Origin,
    context: &str,
) -> Result<VarsLayer, Vec<PolicyError>> {
    let file_context = if context.is_empty() {
        format!("vars file named at {named_at}")
    } else {
        format!("vars file of {context}, named at {named_at}")
    };
    let file = match mop_inventory::read_vars_file(path) {
        Ok(file) => file,
        Err(InventoryError::Io { source, .. }) => {
            return Err(vec![PolicyError::at(
                named_at,
                context,
                format!("cannot read vars file `{}`: {source}", path.display()),
            )]);
        }
        Err(InventoryError::At {
            location,
            message,
            hint,
        }) => {
            return Err(vec![PolicyError {
                file: PathBuf::from(location.file),
                position: Some(Position {
                    line: location.line,
                    column: location.column,
                }),
                context: file_context,
                message,
                hint,
            }]);
        }
        Err(other) => {
            return Err(vec![PolicyError::at(named_at, context, other.to_string())]);
        }
    };
    let mut errors = Vec::new();
    for name in file.vars().keys() {
        if RESERVED_NAMES.contains(&name.as_str()) {
            let position = file.location(name).map(|location| Position {
                line: location.line,
                column: location.column,
            });
            errors.push(
                PolicyError {
                    file: path.to_path_buf(),
                    position,
                    context: file_context.clone(),
                    message: format!(
                        "variable `{name}` is reserved: mop provides it to every template"
                    ),
                    hint: None,
                }
                .with_hint(Some("choose another name".to_string())),
            );
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(VarsLayer {
        label,
        path: path.to_path_buf(),
        vars: file.vars().into_iter().collect(),
    })
}

fn read_vars(
    reader: &mut Reader<'_>,
    table: &Table,
    context: &str,
) -> serde_json::Map<String, serde_json::Value> {
    let Some(vars) = reader.table(table, "vars", context) else {
        return serde_json::Map::new();
    };
    for (name, entry) in &vars.entries {
        if RESERVED_NAMES.contains(&name.as_str()) {
            reader.error(
                entry.key_span.start,
                context,
                format!("variable `{name}` is reserved: mop provides it to every template"),
                Some("choose another name".to_string()),
            );
        }
    }
    vars.to_json()
}

fn non_empty_string(
    reader: &mut Reader<'_>,
    table: &Table,
    key: &str,
    context: &str,
) -> Option<String> {
    let (value, span) = reader.string(table, key, context)?;
    if value.trim().is_empty() {
        reader.error(span.start, context, format!("field `{key}` is empty"), None);
        return None;
    }
    Some(value)
}

fn read_serial(reader: &mut Reader<'_>, table: &Table, context: &str) -> Option<NonZeroUsize> {
    let entry = table.get("serial")?;
    let at = entry.value.span.start;
    match &entry.value.value {
        Value::Integer(count) => match usize::try_from(*count).ok().and_then(NonZeroUsize::new) {
            Some(serial) => Some(serial),
            None => {
                reader.error(
                    at,
                    context,
                    format!("field `serial` must be at least 1, found {count}"),
                    Some("omit `serial` to run every selected host in one batch".to_string()),
                );
                None
            }
        },
        other => {
            reader.error(
                at,
                context,
                format!(
                    "field `serial` must be a positive integer, found {}",
                    other.type_name()
                ),
                None,
            );
            None
        }
    }
}

fn read_max_fail(reader: &mut Reader<'_>, table: &Table, context: &str) -> Option<MaxFail> {
    let entry = table.get("max_fail")?;
    let at = entry.value.span.start;
    let hint = || {
        Some(
            "write a count such as `max_fail = 2` or a percentage such as `max_fail = \"10%\"`"
                .to_string(),
        )
    };
    match &entry.value.value {
        Value::Integer(count) => match usize::try_from(*count) {
            Ok(count) => Some(MaxFail::Count(count)),
            Err(_) => {
                reader.error(
                    at,
                    context,
                    format!("field `max_fail` must not be negative, found {count}"),
                    hint(),
                );
                None
            }
        },
        Value::String(text) => {
            let parsed = text
                .trim()
                .strip_suffix('%')
                .and_then(|number| number.trim().parse::<u32>().ok());
            match parsed {
                Some(percent) if percent <= 100 => Some(MaxFail::Percent(
                    u8::try_from(percent).expect("a percentage up to 100 fits in u8"),
                )),
                Some(percent) => {
                    reader.error(
                        at,
                        context,
                        format!("field `max_fail` must be at most 100%, found {percent}%"),
                        None,
                    );
                    None
                }
                None => {
                    reader.error(
                        at,
                        context,
                        format!("field `max_fail` is `{text}`, expected a count or a percentage"),
                        hint(),
                    );
                    None
                }
            }
        }
        other => {
            reader.error(
                at,
                context,
                format!(
                    "field `max_fail` must be an integer or a percentage string, found {}",
                    other.type_name()
                ),
                hint(),
            );
            None
        }
    }
}

fn read_fileserver(reader: &mut Reader<'_>, root: &Table) -> FileServerSettings {
    let mut settings = FileServerSettings::default();
    let context = "[fileserver]";
    let Some(table) = reader.table(root, "fileserver", "") else {
        return settings;
    };
    reader.check_keys(table, FILESERVER_KEYS, context);
    if let Some(paths) = read_paths(reader, table, "paths", context) {
        settings.paths = paths;
    }
    // The file server checks the patterns themselves (its syntax is gitignore's, not a
    // plain glob); here they only get their positions.
    for key in ["allow", "deny"] {
        let Some(patterns) = reader.string_list(table, key, context) else {
            continue;
        };
        let specs = patterns
            .into_iter()
            .map(|(pattern, span)| PatternSpec {
                pattern,
                origin: reader.source.origin(span.start),
            })
            .collect();
        if key == "allow" {
            settings.allow = specs;
        } else {
            settings.deny = specs;
        }
    }
    settings
}

/// A list of served roots; an explicitly empty list is an error (nothing could be served).
fn read_paths(
    reader: &mut Reader<'_>,
    table: &Table,
    key: &str,
    context: &str,
) -> Option<Vec<PathSpec>> {
    let paths = reader.string_list(table, key, context)?;
    let written = paths.len();
    let mut specs = Vec::with_capacity(paths.len());
    for (path, span) in paths {
        if path.trim().is_empty() {
            reader.error(
                span.start,
                context,
                format!("field `{key}` has an empty path"),
                None,
            );
            continue;
        }
        specs.push(PathSpec {
            path: PathBuf::from(path),
            origin: reader.source.origin(span.start),
        });
    }
    if written == 0 {
        if let Some(entry) = table.get(key) {
            reader.error(
                entry.value.span.start,
                context,
                format!("field `{key}` is empty: no file could be served"),
                Some(format!(
                    "omit `{key}` to serve from the policy file's directory"
                )),
            );
        }
        return None;
    }
    (specs.len() == written).then_some(specs)
}

/// Compiles glob patterns, reporting each invalid one. `None` for an empty list (which does
/// not restrict).
fn compile_globs(
    reader: &mut Reader<'_>,
    patterns: &[(String, Range<usize>)],
    key: &str,
    context: &str,
) -> Option<GlobSet> {
    if patterns.is_empty() {
        return None;
    }
    let mut builder = GlobSetBuilder::new();
    for (pattern, span) in patterns {
        match GlobBuilder::new(pattern).literal_separator(false).build() {
            Ok(glob) => {
                builder.add(glob);
            }
            Err(error) => reader.error(
                span.start,
                context,
                format!("field `{key}`: invalid glob `{pattern}`: {}", error.kind()),
                None,
            ),
        }
    }
    builder.build().ok()
}
