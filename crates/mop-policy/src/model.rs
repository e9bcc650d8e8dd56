//! The validated policy model: what the CLI and the push executor work with.

use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use globset::GlobSet;
pub use mop_protocol::HostKeyPolicy;
use mop_protocol::Resource;

use crate::error::Origin;
use crate::templates::TemplateSite;

/// A loaded and validated policy file.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The policy file, as given to [`Policy::load`].
    pub path: PathBuf,
    /// The directory relative paths in the policy file are resolved against (`.` when the
    /// path has no parent).
    pub dir: PathBuf,
    /// The default inventory (`inventory = "..."`), resolved against `dir`.
    pub inventory: Option<PathBuf>,
    /// Policy-level `[vars]`.
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// Policy-level `vars_files`, in the order written (later files win).
    pub vars_files: Vec<VarsLayer>,
    pub fileserver: FileServerSettings,
    /// Roles in the order they run.
    pub roles: Vec<Role>,
}

/// `[fileserver]`: where `source = "..."` files may come from. The file server
/// (`mop-fileserver`) interprets these: it resolves relative roots against the policy's
/// directory, matches the patterns gitignore-style and adds its built-in denies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileServerSettings {
    /// Served roots, as written. Empty when `paths` is not given: the file server then
    /// serves from the policy file's directory.
    pub paths: Vec<PathSpec>,
    /// When not empty, only paths matching one of these are served (default: empty).
    pub allow: Vec<PatternSpec>,
    /// Paths matching any of these are never served (default: empty).
    pub deny: Vec<PatternSpec>,
}

/// A served root as written, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSpec {
    pub path: PathBuf,
    pub origin: Origin,
}

/// One allow or deny pattern as written, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternSpec {
    pub pattern: String,
    pub origin: Origin,
}

/// How many hosts of a role may fail before the role stops starting new batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxFail {
    /// At most this many hosts (`max_fail = 2`).
    Count(usize),
    /// At most this percentage, 0 to 100, of the hosts selected for the role
    /// (`max_fail = "10%"`).
    Percent(u8),
}

impl Default for MaxFail {
    fn default() -> Self {
        MaxFail::Count(0)
    }
}

impl MaxFail {
    /// The number of failed hosts tolerated when `selected_hosts` hosts were selected for the
    /// role (all batches together, not one batch). Percentages round down, so `"10%"` of 9
    /// hosts tolerates none. The role stops once more hosts than this have failed.
    pub fn allowed(&self, selected_hosts: usize) -> usize {
        match *self {
            MaxFail::Count(count) => count,
            MaxFail::Percent(percent) => selected_hosts * usize::from(percent) / 100,
        }
    }
}

impl fmt::Display for MaxFail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxFail::Count(count) => write!(f, "{count}"),
            MaxFail::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

/// One role: which hosts, how to reach them, and what to converge.
#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    /// Group name globs; a host qualifies when one of its groups matches one of them.
    pub groups: Vec<String>,
    /// Host name globs; a host qualifies when its name matches one of them.
    pub hosts: Vec<String>,
    /// Hosts per batch; `None` runs every selected host in one batch.
    pub serial: Option<NonZeroUsize>,
    pub max_fail: MaxFail,
    pub ssh_as: Option<String>,
    /// `None` when the role does not say (the inventory or the default, no sudo, applies).
    pub sudo: Option<bool>,
    pub sudo_as: Option<String>,
    /// `None` when the role does not say; a setting in the inventory wins over the role's.
    pub check_host_keys: Option<HostKeyPolicy>,
    /// Controller-side command run before the role on each host (a template).
    pub before: Option<String>,
    /// Controller-side command run after the role on each host (a template).
    pub after: Option<String>,
    /// Expression evaluated on the controller per host; the host is skipped when false.
    pub contact_when: Option<String>,
    /// File-server roots for this role instead of `[fileserver] paths`, as written.
    pub fileserver_paths: Option<Vec<PathSpec>>,
    /// The roles files this role includes (`include`), resolved against the policy's
    /// directory, in the order written; files they include are not listed.
    pub includes: Vec<PathBuf>,
    /// The role directory this role uses (`use = "roles/nginx"`), resolved against the
    /// policy's directory. Its `templates/` and `files/` are served for its resources.
    pub role_dir: Option<PathBuf>,
    /// The role directory's `defaults.toml`: below every other variable layer.
    pub defaults: Option<VarsLayer>,
    /// The roles files' `vars` overridden by the role's own `vars`.
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// The role's `vars_files`, in the order written (later files win).
    pub vars_files: Vec<VarsLayer>,
    /// The role directory's resources first, then included ones, then the role's own.
    pub resources: Vec<Resource>,
    /// Where each resource was written (parallel to `resources`).
    pub resource_origins: Vec<Origin>,
    /// Included handlers first, then the role's own.
    pub handlers: Vec<Resource>,
    /// Where each handler was written (parallel to `handlers`).
    pub handler_origins: Vec<Origin>,
    pub tags: Vec<String>,
    /// The role's `[[roles]]` header.
    pub origin: Origin,
    pub(crate) selector: HostSelector,
    pub(crate) details: RoleDetails,
}

impl Role {
    /// Whether the role runs on a host with this name and these groups.
    ///
    /// Empty `groups` and empty `hosts` do not restrict, so a role with neither selects every
    /// host. Otherwise the host must match a `groups` pattern (when there are any) AND a
    /// `hosts` pattern (when there are any). Every host is in the group `all`, whether or not
    /// `host_groups` lists it. Pass every group the host belongs to, parents included.
    pub fn selects<S: AsRef<str>>(&self, host_name: &str, host_groups: &[S]) -> bool {
        self.selector.selects(host_name, host_groups)
    }

    /// `resource #N (display name)` or `handler ...`: how errors about this resource name it.
    pub fn describe_resource(&self, handler: bool, index: usize) -> Option<String> {
        let details = if handler {
            &self.details.handlers
        } else {
            &self.details.resources
        };
        details.get(index).map(|detail| detail.label.clone())
    }
}

/// A variable file (`vars_files`, a role directory's `defaults.toml`): its variables and the
/// label that names it in provenance and errors.
#[derive(Debug, Clone, PartialEq)]
pub struct VarsLayer {
    /// ``vars file `vars/common.toml` `` or ``defaults of `roles/nginx` ``.
    pub label: String,
    pub path: PathBuf,
    pub vars: serde_json::Map<String, serde_json::Value>,
}

impl Role {
    /// Whether a resource written in `file` comes from this role's role directory (its
    /// `template` and `source` paths are then looked up in `templates/` and `files/`).
    pub fn defined_in_role_dir(&self, file: &Path) -> bool {
        self.role_dir
            .as_deref()
            .is_some_and(|role_dir| file.starts_with(role_dir))
    }
}

impl Policy {
    /// The variable layers a role's hosts get from the policy, lowest precedence first: the
    /// role directory's defaults, policy `vars`, policy `vars_files`, the role's `vars`
    /// (roles files' `vars` under the role's own), the role's `vars_files`. The inventory
    /// sits above all of them and `-e` above that (see `docs/reference/policy.md`).
    pub fn var_layers(&self, role: &Role) -> Vec<VarsLayer> {
        let mut layers = Vec::new();
        layers.extend(role.defaults.iter().cloned());
        layers.push(VarsLayer {
            label: "policy".to_string(),
            path: self.path.clone(),
            vars: self.vars.clone(),
        });
        layers.extend(self.vars_files.iter().cloned());
        layers.push(VarsLayer {
            label: format!("role `{}`", role.name),
            path: self.path.clone(),
            vars: role.vars.clone(),
        });
        layers.extend(role.vars_files.iter().cloned());
        layers
    }
}

/// Compiled `groups` and `hosts` patterns.
#[derive(Debug, Clone)]
pub(crate) struct HostSelector {
    pub groups: Option<GlobSet>,
    pub hosts: Option<GlobSet>,
}

impl HostSelector {
    fn selects<S: AsRef<str>>(&self, host_name: &str, host_groups: &[S]) -> bool {
        let group_ok = match &self.groups {
            None => true,
            Some(groups) => {
                groups.is_match("all")
                    || host_groups
                        .iter()
                        .any(|group| groups.is_match(group.as_ref()))
            }
        };
        let host_ok = match &self.hosts {
            None => true,
            Some(hosts) => hosts.is_match(host_name),
        };
        group_ok && host_ok
    }
}

/// Positions and templated strings kept for checks that run after loading.
#[derive(Debug, Clone, Default)]
pub(crate) struct RoleDetails {
    /// `before`, `after`, `contact_when`.
    pub hooks: Vec<TemplateSite>,
    pub resources: Vec<ResourceDetail>,
    pub handlers: Vec<ResourceDetail>,
}

/// What the loader remembers about one resource besides the resource itself.
#[derive(Debug, Clone)]
pub(crate) struct ResourceDetail {
    /// `resource #3 (file /etc/motd)` or ``handler `restart nginx` ``.
    pub label: String,
    pub sites: Vec<TemplateSite>,
    /// Position of the `template = "..."` value.
    pub template_origin: Option<Origin>,
    /// Position of the `source = "..."` value.
    pub source_origin: Option<Origin>,
    /// Position of the `notify` value.
    pub notify_origin: Option<Origin>,
    /// Names this resource defines for later ones (`register`, `set` vars).
    pub defines: Vec<String>,
    /// Names only this resource sees, one item at a time (`item` or its `loop_var`, and the
    /// loop index): empty without `loop`.
    pub loop_names: Vec<String>,
    /// `template` and `source` rendered for every item of a loop written as a list, when
    /// they read the item (each names one file the run needs); empty otherwise.
    pub template_keys: Vec<String>,
    pub source_keys: Vec<String>,
}

/// A `template = "..."` or `source = "..."` a resource names, for the caller to check
/// (the policy loader never opens these files).
#[derive(Debug, Clone)]
pub struct FileReference<'a> {
    pub role_index: usize,
    pub role: &'a Role,
    /// The reference is in a handler (`index` counts `role.handlers`), not a resource.
    pub handler: bool,
    pub index: usize,
    pub resource: &'a Resource,
    /// The path exactly as written.
    pub path: &'a str,
    /// Templates: `path` resolved against the directory of the file that defines the
    /// resource (the policy or the roles file). Sources: `path` unchanged, because the file
    /// server looks it up in its own roots.
    pub resolved: PathBuf,
    /// Where the path value is written.
    pub origin: &'a Origin,
}

impl FileReference<'_> {
    /// ``role `web`: resource #2 (file /etc/motd)``, the context for errors about this
    /// reference.
    pub fn context(&self) -> String {
        let label = self
            .role
            .describe_resource(self.handler, self.index)
            .unwrap_or_default();
        format!("role `{}`: {label}", self.role.name)
    }
}

/// Joins a relative path to a directory, leaving absolute paths and `.` alone so messages
/// show `roles/web.toml` rather than `./roles/web.toml`.
pub(crate) fn resolve(dir: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() || dir.as_os_str().is_empty() || dir == Path::new(".") {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

/// The directory of a file, `.` when it has none.
pub(crate) fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_fail_counts_and_rounds_percentages_down() {
        assert_eq!(MaxFail::default().allowed(100), 0);
        assert_eq!(MaxFail::Count(3).allowed(1), 3);
        assert_eq!(MaxFail::Percent(10).allowed(100), 10);
        assert_eq!(MaxFail::Percent(10).allowed(9), 0);
        assert_eq!(MaxFail::Percent(100).allowed(7), 7);
        assert_eq!(MaxFail::Percent(25).to_string(), "25%");
    }

    #[test]
    fn relative_paths_resolve_without_dot_prefix() {
        assert_eq!(resolve(Path::new("."), "a.toml"), PathBuf::from("a.toml"));
        assert_eq!(
            resolve(Path::new("policies"), "roles/a.toml"),
            PathBuf::from("policies/roles/a.toml")
        );
        assert_eq!(
            resolve(Path::new("policies"), "/etc/x"),
            PathBuf::from("/etc/x")
        );
        assert_eq!(parent_dir(Path::new("site.toml")), PathBuf::from("."));
        assert_eq!(
            parent_dir(Path::new("policies/site.toml")),
            PathBuf::from("policies")
        );
    }
}
