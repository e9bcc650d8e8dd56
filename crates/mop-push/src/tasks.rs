//! Which roles and resources a run converges: `--tags`, `--skip-tags` and `--start-at`,
//! applied on the controller to the loaded run before any plan is built (so a host never sees
//! a resource that was not selected), and the outline `--list-hosts`/`--list-tasks` print
//! without contacting any host.
//!
//! Tags follow Ansible: a resource carries its own tags and its role's; with no `--tags` every
//! resource runs except those tagged `never`; `always` runs whatever `--tags` says unless
//! `--skip-tags` names it; `never` runs only when `--tags` names one of its tags; `--skip-tags`
//! beats everything. `all`, `tagged` and `untagged` are the special `--tags` words. Handlers
//! are not filtered: they run when a selected resource notifies them.

use std::collections::BTreeSet;

use mop_inventory::Pattern;
use mop_policy::{Policy, Resource, Role};
use serde::Serialize;

use crate::load::{LoadedLocalRun, LoadedRun};
use crate::local::LOCAL_HOST;

/// The tag that runs whatever `--tags` says (unless skipped by name).
pub const ALWAYS: &str = "always";
/// The tag that runs only when asked for.
pub const NEVER: &str = "never";
/// `--tags` words with a meaning of their own.
const SPECIAL_TAGS: &[&str] = &["all", "tagged", "untagged", ALWAYS, NEVER];

/// `--tags`, `--skip-tags` and `--start-at` as given on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub tags: Vec<String>,
    pub skip_tags: Vec<String>,
    pub start_at: Option<String>,
}

/// Why a task filter cannot be applied. The texts are what the operator reads.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{flag}: invalid tag pattern `{pattern}`: {detail}\n  hint: tags are made of letters, digits, `-`, `_`, `.`, `:`, `/`, with glob characters `*?[]{{}}!`")]
    InvalidTag {
        flag: &'static str,
        pattern: String,
        detail: String,
    },
    #[error("--start-at: no resource named `{name}` in the roles this run selects{}", match .hint { Some(hint) => format!("\n  hint: {hint}"), None => "\n  hint: `--list-tasks` shows every resource's name".to_string() })]
    UnknownStartAt { name: String, hint: Option<String> },
    #[error("no resource is selected{}\n  hint: `--list-tasks` without them shows every resource and its tags", describe_filter(.0))]
    NothingSelected(TaskFilter),
}

fn describe_filter(filter: &TaskFilter) -> String {
    let mut parts = Vec::new();
    if !filter.tags.is_empty() {
        parts.push(format!("--tags {}", filter.tags.join(",")));
    }
    if !filter.skip_tags.is_empty() {
        parts.push(format!("--skip-tags {}", filter.skip_tags.join(",")));
    }
    if let Some(name) = &filter.start_at {
        parts.push(format!("--start-at {}", name.escape_debug()));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" by {}", parts.join(" "))
    }
}

/// The tag patterns, compiled once.
struct CompiledTags {
    tags: Vec<Pattern>,
    skip: Vec<Pattern>,
}

/// Letters, digits and a few separators, plus glob syntax: tags are echoed in warnings.
fn is_tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '_' | '.' | ':' | '/' | '*' | '?' | '[' | ']' | '{' | '}' | '!'
        )
}

fn compile(flag: &'static str, patterns: &[String]) -> Result<Vec<Pattern>, TaskError> {
    patterns
        .iter()
        .map(|text| {
            let invalid = |detail: String| TaskError::InvalidTag {
                flag,
                pattern: text.escape_debug().to_string(),
                detail,
            };
            if let Some(c) = text.chars().find(|c| !is_tag_char(*c)) {
                return Err(invalid(format!(
                    "it contains {}",
                    mop_inventory::grammar::describe_char(c)
                )));
            }
            Pattern::new(text).map_err(|error| match error {
                mop_inventory::InventoryError::InvalidPattern { message, .. } => invalid(message),
                other => invalid(other.to_string()),
            })
        })
        .collect()
}

impl CompiledTags {
    fn new(filter: &TaskFilter) -> Result<Self, TaskError> {
        Ok(CompiledTags {
            tags: compile("--tags", &filter.tags)?,
            skip: compile("--skip-tags", &filter.skip_tags)?,
        })
    }

    /// Whether a resource with these tags (its own and its role's) runs.
    fn selects(&self, tags: &BTreeSet<&str>) -> bool {
        let named_by = |patterns: &[Pattern]| {
            patterns
                .iter()
                .filter(|pattern| !matches!(pattern.as_str(), "all" | "tagged" | "untagged"))
                .any(|pattern| tags.iter().any(|tag| pattern.matches(tag)))
        };
        if named_by(&self.skip) {
            return false;
        }
        if tags.contains(NEVER) {
            return named_by(&self.tags);
        }
        if tags.contains(ALWAYS) || self.tags.is_empty() {
            return true;
        }
        self.tags.iter().any(|pattern| match pattern.as_str() {
            "all" => true,
            "tagged" => !tags.is_empty(),
            "untagged" => tags.is_empty(),
            _ => tags.iter().any(|tag| pattern.matches(tag)),
        })
    }
}

/// A resource's own tags and its role's.
fn effective_tags<'a>(role: &'a Role, resource: &'a Resource) -> BTreeSet<&'a str> {
    role.tags
        .iter()
        .chain(&resource.tags)
        .map(String::as_str)
        .collect()
}

/// `file /etc/motd`: the label events use for an unnamed resource, and `--start-at`'s
/// second way to name any resource.
pub fn resource_label(resource: &Resource) -> String {
    format!(
        "{} {}",
        resource.spec.type_name(),
        resource.spec.main_argument()
    )
}

fn names_resource(resource: &Resource, name: &str) -> bool {
    resource.name.as_deref() == Some(name) || resource_label(resource) == name
}

/// Every tag the policy uses, sorted.
pub fn known_tags(policy: &Policy) -> BTreeSet<&str> {
    policy
        .roles
        .iter()
        .flat_map(|role| {
            role.tags
                .iter()
                .chain(role.resources.iter().flat_map(|resource| &resource.tags))
        })
        .map(String::as_str)
        .collect()
}

/// One warning per `--tags`/`--skip-tags` pattern that matches no tag of the policy.
fn unknown_tag_warnings(
    policy: &Policy,
    filter: &TaskFilter,
    compiled: &CompiledTags,
) -> Vec<String> {
    let known = known_tags(policy);
    let listing = if known.is_empty() {
        "the policy has no tags".to_string()
    } else {
        format!(
            "known tags: {}",
            known
                .iter()
                .map(|tag| tag.escape_debug().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let mut warnings = Vec::new();
    for (flag, texts, patterns) in [
        ("--tags", &filter.tags, &compiled.tags),
        ("--skip-tags", &filter.skip_tags, &compiled.skip),
    ] {
        for (text, pattern) in texts.iter().zip(patterns) {
            if SPECIAL_TAGS.contains(&text.as_str()) || known.iter().any(|tag| pattern.matches(tag))
            {
                continue;
            }
            let hint = mop_policy::did_you_mean(text, known.iter().copied())
                .map(|hint| format!(" ({hint})"))
                .unwrap_or_default();
            warnings.push(format!(
                "{flag}: tag `{text}` matches no tag in the policy{hint}\n  hint: {listing}"
            ));
        }
    }
    warnings
}

/// For each role (by index), the indices of its resources that run, `None` for a role that
/// is not part of the run at all. `in_run` says which roles the run would otherwise touch.
fn choose(
    policy: &Policy,
    in_run: &[bool],
    filter: &TaskFilter,
    compiled: &CompiledTags,
) -> Result<Vec<Option<Vec<usize>>>, TaskError> {
    let mut chosen: Vec<Option<Vec<usize>>> = policy
        .roles
        .iter()
        .zip(in_run)
        .map(|(role, in_run)| {
            let selected: Vec<usize> = role
                .resources
                .iter()
                .enumerate()
                .filter(|(_, resource)| compiled.selects(&effective_tags(role, resource)))
                .map(|(index, _)| index)
                .collect();
            // A role the filter emptied leaves the run; one that was empty to begin with
            // (hooks only) stays as it was.
            let emptied = selected.is_empty() && !role.resources.is_empty();
            (*in_run && !emptied).then_some(selected)
        })
        .collect();
    if let Some(name) = &filter.start_at {
        let found = policy
            .roles
            .iter()
            .enumerate()
            .filter(|(index, _)| in_run[*index])
            .find_map(|(role_index, role)| {
                role.resources
                    .iter()
                    .position(|resource| names_resource(resource, name))
                    .map(|position| (role_index, position))
            });
        let Some((start_role, start_resource)) = found else {
            let candidates: Vec<String> = policy
                .roles
                .iter()
                .zip(in_run)
                .filter(|(_, in_run)| **in_run)
                .flat_map(|(role, _)| {
                    role.resources.iter().flat_map(|resource| {
                        resource
                            .name
                            .iter()
                            .cloned()
                            .chain([resource_label(resource)])
                    })
                })
                .collect();
            return Err(TaskError::UnknownStartAt {
                name: name.escape_debug().to_string(),
                hint: mop_policy::did_you_mean(name, candidates.iter().map(String::as_str)),
            });
        };
        for (role_index, resources) in chosen.iter_mut().enumerate() {
            if role_index < start_role {
                *resources = None;
            } else if role_index == start_role {
                if let Some(kept) = resources {
                    kept.retain(|index| *index >= start_resource);
                    if kept.is_empty() {
                        *resources = None;
                    }
                }
            }
        }
    }
    if filter != &TaskFilter::default() && chosen.iter().all(Option::is_none) {
        return Err(TaskError::NothingSelected(filter.clone()));
    }
    Ok(chosen)
}

/// Keeps only the chosen resources of a role (and their origins, which stay parallel).
fn keep_resources(role: &mut Role, keep: &[usize]) {
    let mut index = 0;
    role.resources.retain(|_| {
        let kept = keep.contains(&index);
        index += 1;
        kept
    });
    if role.resource_origins.len() == index {
        let mut index = 0;
        role.resource_origins.retain(|_| {
            let kept = keep.contains(&index);
            index += 1;
            kept
        });
    }
}

impl LoadedRun {
    /// Applies `--tags`, `--skip-tags` and `--start-at`: roles left with no resource leave
    /// the run. Unknown tags become warnings. Call after loading (every check has then seen
    /// the whole policy) and before the plans are built.
    pub fn select_tasks(&mut self, filter: &TaskFilter) -> Result<(), TaskError> {
        // No early return for an empty filter: `never` resources are left out by default.
        let compiled = CompiledTags::new(filter)?;
        let mut in_run = vec![false; self.policy.roles.len()];
        for role in &self.roles {
            in_run[role.role_index] = !role.hosts.is_empty();
        }
        let chosen = choose(&self.policy, &in_run, filter, &compiled)?;
        self.warnings
            .extend(unknown_tag_warnings(&self.policy, filter, &compiled));
        for (role, keep) in self.policy.roles.iter_mut().zip(&chosen) {
            keep_resources(role, keep.as_deref().unwrap_or(&[]));
        }
        self.roles.retain(|role| chosen[role.role_index].is_some());
        Ok(())
    }

    /// What the run would do: each role with its hosts and resources, in run order.
    pub fn outline(&self) -> Vec<RoleOutline> {
        self.roles
            .iter()
            .filter(|role| !role.hosts.is_empty())
            .map(|role_hosts| {
                RoleOutline::new(
                    &self.policy.roles[role_hosts.role_index],
                    role_hosts
                        .hosts
                        .iter()
                        .map(|host| host.name.clone())
                        .collect(),
                )
            })
            .collect()
    }
}

impl LoadedLocalRun {
    /// [`LoadedRun::select_tasks`] for `mop local`: every role is in the run; roles left
    /// with no resource are removed (with their prepared files, which stay parallel).
    /// Returns the unknown-tag warnings.
    pub fn select_tasks(&mut self, filter: &TaskFilter) -> Result<Vec<String>, TaskError> {
        let compiled = CompiledTags::new(filter)?;
        let in_run = vec![true; self.policy.roles.len()];
        let chosen = choose(&self.policy, &in_run, filter, &compiled)?;
        let warnings = unknown_tag_warnings(&self.policy, filter, &compiled);
        let roles = std::mem::take(&mut self.policy.roles);
        let prepared = std::mem::take(&mut self.prepared.roles);
        for ((mut role, prepared), keep) in roles.into_iter().zip(prepared).zip(&chosen) {
            if let Some(keep) = keep {
                keep_resources(&mut role, keep);
                self.policy.roles.push(role);
                self.prepared.roles.push(prepared);
            }
        }
        Ok(warnings)
    }

    /// What the local run would do: every role on `localhost`.
    pub fn outline(&self) -> Vec<RoleOutline> {
        self.policy
            .roles
            .iter()
            .map(|role| RoleOutline::new(role, vec![LOCAL_HOST.to_string()]))
            .collect()
    }
}

/// One role of the outline `--list-hosts` and `--list-tasks` print.
#[derive(Debug, Clone, Serialize)]
pub struct RoleOutline {
    pub role: String,
    pub hosts: Vec<String>,
    pub resources: Vec<ResourceOutline>,
}

/// One resource of a [`RoleOutline`].
#[derive(Debug, Clone, Serialize)]
pub struct ResourceOutline {
    /// The resource's `name`, or its label when it has none.
    pub name: String,
    /// `type main-argument`.
    pub label: String,
    /// Its own tags and its role's, sorted.
    pub tags: Vec<String>,
}

impl RoleOutline {
    fn new(role: &Role, hosts: Vec<String>) -> Self {
        RoleOutline {
            role: role.name.clone(),
            hosts,
            resources: role
                .resources
                .iter()
                .map(|resource| ResourceOutline {
                    name: resource.display_name(),
                    label: resource_label(resource),
                    tags: effective_tags(role, resource)
                        .into_iter()
                        .map(str::to_string)
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Which listing to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listing {
    pub hosts: bool,
    pub tasks: bool,
}

/// The text of `--list-hosts` and/or `--list-tasks`: one block per role.
pub fn render_outline(outline: &[RoleOutline], listing: Listing) -> String {
    let mut text = String::new();
    for role in outline {
        let count = role.hosts.len();
        text.push_str(&format!(
            "role `{}` ({count} host{}, {} resource{})\n",
            role.role,
            if count == 1 { "" } else { "s" },
            role.resources.len(),
            if role.resources.len() == 1 { "" } else { "s" },
        ));
        if listing.hosts {
            text.push_str("  hosts:\n");
            for host in &role.hosts {
                text.push_str(&format!("    {host}\n"));
            }
        }
        if listing.tasks {
            text.push_str("  resources:\n");
            for resource in &role.resources {
                text.push_str(&format!("    {}", resource.name));
                if resource.name != resource.label {
                    text.push_str(&format!(" ({})", resource.label));
                }
                if !resource.tags.is_empty() {
                    text.push_str(&format!("  tags: {}", resource.tags.join(", ")));
                }
                text.push('\n');
            }
        }
    }
    text
}

#[cfg(test)]
mod tests;
