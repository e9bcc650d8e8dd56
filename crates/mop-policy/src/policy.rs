//! `Policy`'s entry points: loading, the file references the caller checks, and the
//! undefined-variable analysis that needs the inventory.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::{PolicyError, PolicyErrors, SourceFile};
use crate::load;
use crate::model::{parent_dir, resolve, FileReference, Policy, ResourceDetail, Role};
use crate::resources::join_context;
use crate::templates::{self, Scope, SiteKind};

/// The paths a `template` or `source` names: one per loop item when it reads the item.
fn keys_or_literal<'p>(literal: Option<&'p str>, keys: &'p [String]) -> Vec<&'p str> {
    if keys.is_empty() {
        literal.into_iter().collect()
    } else {
        keys.iter().map(String::as_str).collect()
    }
}

impl Policy {
    /// Reads and validates a policy file and the roles files it includes. Every problem is
    /// reported, each with its file, line and column. Template and source files named by
    /// resources are not opened: see [`Policy::template_paths`] and [`Policy::source_paths`].
    pub fn load(path: &Path) -> Result<Policy, PolicyErrors> {
        match std::fs::read_to_string(path) {
            Ok(text) => load::load_policy(text, path),
            Err(error) => Err(PolicyErrors {
                errors: vec![PolicyError::whole_file(
                    path,
                    "",
                    format!("cannot read policy: {error}"),
                )],
            }),
        }
    }

    /// Like [`Policy::load`], but returns whatever parsed together with every error, so that
    /// the checks needing the inventory or the served files can still run on the rest and one
    /// run reports everything. The policy is `None` only when the file cannot be read or is
    /// not TOML; with errors it is incomplete (broken roles and resources are left out, broken
    /// fields dropped) and must not be run.
    pub fn load_partially(path: &Path) -> (Option<Policy>, PolicyErrors) {
        match std::fs::read_to_string(path) {
            Ok(text) => load::load_policy_partially(text, path),
            Err(error) => (
                None,
                PolicyErrors {
                    errors: vec![PolicyError::whole_file(
                        path,
                        "",
                        format!("cannot read policy: {error}"),
                    )],
                },
            ),
        }
    }

    /// Validates policy text as if it were read from `path` (which names it in errors and
    /// anchors relative paths; included roles files are read from disk).
    #[allow(clippy::should_implement_trait)] // two arguments: not `FromStr`
    pub fn from_str(text: &str, path: &Path) -> Result<Policy, PolicyErrors> {
        load::load_policy(text.to_string(), path)
    }

    /// The role with this name.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|role| role.name == name)
    }

    /// Every `template = "..."` of every `file` resource and handler, role by role. A roles
    /// file included by two roles is listed once per role.
    pub fn template_paths(&self) -> impl Iterator<Item = FileReference<'_>> + '_ {
        self.file_references(
            |detail| detail.template_origin.as_ref(),
            |spec, detail| match spec {
                mop_protocol::ResourceSpec::File(file) => {
                    keys_or_literal(file.template.as_deref(), &detail.template_keys)
                }
                _ => Vec::new(),
            },
            true,
        )
    }

    /// Every `source = "..."` of every `file`, `unarchive` and `tree` resource and handler,
    /// role by role (a `tree`'s is a directory).
    pub fn source_paths(&self) -> impl Iterator<Item = FileReference<'_>> + '_ {
        self.file_references(
            |detail| detail.source_origin.as_ref(),
            |spec, detail| match spec {
                mop_protocol::ResourceSpec::File(file) => {
                    keys_or_literal(file.source.as_deref(), &detail.source_keys)
                }
                mop_protocol::ResourceSpec::Unarchive(unarchive) => {
                    keys_or_literal(unarchive.source.as_deref(), &detail.source_keys)
                }
                mop_protocol::ResourceSpec::Tree(tree) => {
                    keys_or_literal(Some(&tree.source), &detail.source_keys)
                }
                _ => Vec::new(),
            },
            false,
        )
    }

    fn file_references<'a>(
        &'a self,
        origin_of: fn(&ResourceDetail) -> Option<&crate::error::Origin>,
        paths_of: for<'p> fn(&'p mop_protocol::ResourceSpec, &'p ResourceDetail) -> Vec<&'p str>,
        resolve_against_defining_file: bool,
    ) -> impl Iterator<Item = FileReference<'a>> + 'a {
        self.roles
            .iter()
            .enumerate()
            .flat_map(move |(role_index, role)| {
                let resources = role
                    .resources
                    .iter()
                    .zip(&role.resource_origins)
                    .zip(&role.details.resources)
                    .enumerate()
                    .map(|(index, ((resource, origin), detail))| {
                        (false, index, resource, origin, detail)
                    });
                let handlers = role
                    .handlers
                    .iter()
                    .zip(&role.handler_origins)
                    .zip(&role.details.handlers)
                    .enumerate()
                    .map(|(index, ((resource, origin), detail))| {
                        (true, index, resource, origin, detail)
                    });
                resources.chain(handlers).flat_map(
                    move |(handler, index, resource, resource_origin, detail)| {
                        let spec = &resource.spec;
                        let Some(origin) = origin_of(detail) else {
                            return Vec::new();
                        };
                        paths_of(spec, detail)
                            .into_iter()
                            .map(move |path| {
                                let resolved = if resolve_against_defining_file {
                                    match &role.role_dir {
                                        // A role directory's templates live in its `templates/`.
                                        Some(role_dir)
                                            if role.defined_in_role_dir(&resource_origin.file) =>
                                        {
                                            resolve(&role_dir.join("templates"), path)
                                        }
                                        _ => resolve(&parent_dir(&resource_origin.file), path),
                                    }
                                } else {
                                    path.into()
                                };
                                FileReference {
                                    role_index,
                                    role,
                                    handler,
                                    index,
                                    resource,
                                    path,
                                    resolved,
                                    origin,
                                }
                            })
                            .collect()
                    },
                )
            })
    }

    /// Every variable a role's strings read that no host could define, given the names the
    /// inventory (and `-e`) define for the hosts the role runs on.
    ///
    /// Known names: policy `vars`, the role's `vars` (roles file included), the given
    /// inventory names, `host`, and on the host side `facts`, names registered or `set` by
    /// earlier resources (handlers see every resource's), and `result` inside `changed_when`
    /// and `failed_when`. `before`, `after` and `contact_when` run on the controller before
    /// facts exist: they see neither `facts` nor registered names.
    ///
    /// `secret_vars` are names no string may read, on the controller or the host, even when
    /// the inventory defines them (the caller takes them from the inventory's magic table):
    /// each read is an error saying the name is a secret.
    ///
    /// Returns nothing for an out-of-range `role_index`.
    pub fn check_undefined(
        &self,
        role_index: usize,
        known_inventory_vars: &BTreeSet<String>,
        secret_vars: &BTreeSet<String>,
    ) -> Vec<PolicyError> {
        let Some(role) = self.roles.get(role_index) else {
            return Vec::new();
        };
        let context = format!("role `{}`", role.name);
        let mut errors = Vec::new();
        let controller_scope = self.base_scope(role, known_inventory_vars, secret_vars);
        for site in &role.details.hooks {
            errors.extend(templates::undefined_errors(
                site,
                &controller_scope,
                &context,
            ));
        }
        for (handler, details) in [
            (false, &role.details.resources),
            (true, &role.details.handlers),
        ] {
            for (index, detail) in details.iter().enumerate() {
                let scope =
                    self.host_scope(role, known_inventory_vars, secret_vars, handler, index);
                let context = join_context(&context, &detail.label);
                // The loop's own items are evaluated before any item exists.
                let mut loop_scope = scope.clone();
                loop_scope
                    .names
                    .retain(|name| !detail.loop_names.contains(name));
                for site in &detail.sites {
                    let scope = if site.field.starts_with("loop") {
                        &loop_scope
                    } else {
                        &scope
                    };
                    errors.extend(templates::undefined_errors(site, scope, &context));
                }
            }
        }
        errors
    }

    /// Checks a template file named by `reference` (which the caller read): its syntax, and
    /// every variable it reads against what the resource can see (as in
    /// [`Policy::check_undefined`]). Errors point into the template file.
    pub fn check_template_file(
        &self,
        reference: &FileReference<'_>,
        template_text: &str,
        known_inventory_vars: &BTreeSet<String>,
        secret_vars: &BTreeSet<String>,
    ) -> Vec<PolicyError> {
        let source = SourceFile::new(&reference.resolved, template_text.to_string());
        let context = format!("template of {}", reference.context());
        if let Some(message) = templates::syntax_error(SiteKind::Template, template_text) {
            // The message carries the template line; point at that line too.
            let line = message
                .strip_prefix("template line ")
                .and_then(|rest| rest.split(':').next())
                .and_then(|line| line.parse::<usize>().ok())
                .unwrap_or(1);
            let offset = template_text
                .split_inclusive('\n')
                .take(line.saturating_sub(1))
                .map(str::len)
                .sum();
            let message = message
                .split_once(": ")
                .map_or(message.as_str(), |(_, rest)| rest);
            return vec![PolicyError::at(&source.origin(offset), &context, message)];
        }
        let mut errors: Vec<PolicyError> =
            crate::host_names::unavailable_names(template_text, true)
                .into_iter()
                .map(|missing| {
                    PolicyError::at(&source.origin(missing.offset), &context, missing.message())
                        .with_hint(Some(missing.hint()))
                })
                .collect();
        let Some(role) = self.roles.get(reference.role_index) else {
            return errors;
        };
        let scope = self.host_scope(
            role,
            known_inventory_vars,
            secret_vars,
            reference.handler,
            reference.index,
        );
        errors.extend(
            templates::undefined_uses(SiteKind::Template, template_text, &scope)
                .into_iter()
                .map(|undefined| {
                    let offset = templates::find_variable_offset(
                        template_text,
                        SiteKind::Template,
                        &undefined.path,
                    )
                    .unwrap_or(0);
                    PolicyError::at(&source.origin(offset), &context, undefined.message)
                        .with_hint(undefined.hint)
                }),
        );
        errors
    }

    /// Names every string of the role sees on the controller.
    fn base_scope(
        &self,
        role: &Role,
        known_inventory_vars: &BTreeSet<String>,
        secret_vars: &BTreeSet<String>,
    ) -> Scope {
        let mut names: BTreeSet<String> = known_inventory_vars.clone();
        for layer in self.var_layers(role) {
            names.extend(layer.vars.keys().cloned());
        }
        names.insert("host".to_string());
        Scope {
            names,
            facts: false,
            defined_later: Vec::new(),
            secrets: secret_vars.clone(),
        }
    }

    /// Names a resource (or handler) at `index` sees on the host. Registered and `set`
    /// names live for the whole agent session, so earlier roles' names count too.
    fn host_scope(
        &self,
        role: &Role,
        known_inventory_vars: &BTreeSet<String>,
        secret_vars: &BTreeSet<String>,
        handler: bool,
        index: usize,
    ) -> Scope {
        let mut scope = self.base_scope(role, known_inventory_vars, secret_vars);
        scope.facts = true;
        for earlier in self
            .roles
            .iter()
            .take_while(|earlier| !std::ptr::eq(*earlier, role))
        {
            for detail in earlier
                .details
                .resources
                .iter()
                .chain(&earlier.details.handlers)
            {
                scope.names.extend(detail.defines.iter().cloned());
            }
        }
        let (before, after): (Vec<&ResourceDetail>, Vec<&ResourceDetail>) = if handler {
            let before = role
                .details
                .resources
                .iter()
                .chain(role.details.handlers.iter().take(index))
                .collect();
            (before, role.details.handlers.iter().skip(index).collect())
        } else {
            let before = role.details.resources.iter().take(index).collect();
            let after = role
                .details
                .resources
                .iter()
                .skip(index)
                .chain(role.details.handlers.iter())
                .collect();
            (before, after)
        };
        for detail in before {
            scope.names.extend(detail.defines.iter().cloned());
        }
        let own = if handler {
            role.details.handlers.get(index)
        } else {
            role.details.resources.get(index)
        };
        scope.names.extend(
            own.into_iter()
                .flat_map(|detail| detail.loop_names.iter().cloned()),
        );
        for detail in after {
            for name in &detail.defines {
                if !scope.names.contains(name) {
                    scope
                        .defined_later
                        .push((name.clone(), detail.label.clone()));
                }
            }
        }
        scope
    }
}
