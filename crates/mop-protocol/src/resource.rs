//! The resource model: what a role asks a host to converge to.
//!
//! These types are both the policy model (the `mop-policy` crate deserializes `[[resources]]`
//! tables straight into them, with unknown fields rejected) and the wire form of a role plan.
//! String fields are minijinja templates rendered by the agent against the host's variables,
//! facts and registered results, except `mode` and the `when`-style expressions, which are
//! expressions evaluated by the agent.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::choice::{LoopSource, Templated};

/// A resource with the fields every type shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// A label for output and for `notify` (handlers are found by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A minijinja expression; the resource is skipped when it is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Handlers to run at the end of the role if this resource changed.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub notify: Vec<String>,
    /// Store this resource's result under this variable name for later resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register: Option<String>,
    /// A failure is reported but does not stop the role.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_errors: bool,
    /// Expression that overrides whether the resource counts as changed (`result` is in scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_when: Option<String>,
    /// Expression that overrides whether the resource counts as failed (`result` is in scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_when: Option<String>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<String>,
    /// Run the resource once per item (see [`LoopSource`]).
    #[serde(rename = "loop", default, skip_serializing_if = "Option::is_none")]
    pub loop_items: Option<LoopSource>,
    /// The item's variable name in a loop (default `item`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_var: Option<String>,
    /// A template naming one item in output (default: the item itself, shortened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(flatten)]
    pub spec: ResourceSpec,
}

/// The type-specific part of a resource, selected by its `type` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ResourceSpec {
    File(FileSpec),
    Directory(DirectorySpec),
    Link(LinkSpec),
    Line(LineSpec),
    Block(BlockSpec),
    Cron(CronSpec),
    #[serde(rename = "authorized_key")]
    AuthorizedKey(AuthorizedKeySpec),
    Shell(CommandSpec),
    Command(CommandSpec),
    Package(PackageSpec),
    Download(DownloadSpec),
    Git(GitSpec),
    Repository(RepositorySpec),
    Service(ServiceSpec),
    Sysctl(SysctlSpec),
    Mount(MountSpec),
    Unarchive(UnarchiveSpec),
    Tree(TreeSpec),
    User(UserSpec),
    Group(GroupSpec),
    Echo(EchoSpec),
    Set(SetSpec),
    Assert(AssertSpec),
    Fail(FailSpec),
}

impl ResourceSpec {
    /// The main argument, used in display names (`file /etc/motd`): the value of the field
    /// its [`crate::ResourceKind::main_field`] names.
    pub fn main_argument(&self) -> String {
        match self {
            ResourceSpec::File(spec) => spec.path.clone(),
            ResourceSpec::Directory(spec) => spec.path.clone(),
            ResourceSpec::Link(spec) => spec.path.clone(),
            ResourceSpec::Line(spec) => spec.path.clone(),
            ResourceSpec::Block(spec) => spec.path.clone(),
            ResourceSpec::Cron(spec) => spec.name.clone(),
            ResourceSpec::AuthorizedKey(spec) => spec.user.clone(),
            ResourceSpec::Shell(spec) | ResourceSpec::Command(spec) => spec.cmd.clone(),
            ResourceSpec::Package(spec) => spec.name.join(","),
            ResourceSpec::Download(spec) => spec.dest.clone(),
            ResourceSpec::Git(spec) => spec.dest.clone(),
            ResourceSpec::Repository(spec) => spec.name.clone(),
            ResourceSpec::Service(spec) => spec.name.clone(),
            ResourceSpec::Sysctl(spec) => spec.name.clone(),
            ResourceSpec::Mount(spec) => spec.path.clone(),
            ResourceSpec::Unarchive(spec) => spec.dest.clone(),
            ResourceSpec::Tree(spec) => spec.path.clone(),
            ResourceSpec::User(spec) => spec.name.clone(),
            ResourceSpec::Group(spec) => spec.name.clone(),
            ResourceSpec::Echo(spec) => spec.msg.clone(),
            ResourceSpec::Set(spec) => spec.vars.keys().cloned().collect::<Vec<_>>().join(","),
            ResourceSpec::Assert(spec) => spec.that.join(" and "),
            ResourceSpec::Fail(spec) => spec.msg.clone(),
        }
    }
}

impl Resource {
    /// The name shown in output: `name` if given, else `type main-argument`.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("{} {}", self.spec.type_name(), self.spec.main_argument()),
        }
    }
}

/// `present` or `absent`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    #[default]
    Present,
    Absent,
}

/// Permission bits, written in policies as an octal string (`"0644"`) or a TOML octal
/// integer (`0o644`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl fmt::Debug for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl FileMode {
    /// Parses an octal string such as `0644`, `644` or `2755`.
    pub fn parse(text: &str) -> Result<FileMode, String> {
        let digits = text.strip_prefix("0o").unwrap_or(text);
        if digits.is_empty()
            || digits.len() > 4
            || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
        {
            return Err(format!(
                "invalid mode `{text}`: expected 3 or 4 octal digits such as \"0644\""
            ));
        }
        u32::from_str_radix(digits, 8)
            .map(FileMode)
            .map_err(|err| format!("invalid mode `{text}`: {err}"))
    }
}

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(u32),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Text(text) => FileMode::parse(&text).map_err(serde::de::Error::custom),
            Raw::Number(number) if number <= 0o7777 => Ok(FileMode(number)),
            Raw::Number(number) => Err(serde::de::Error::custom(format!(
                "invalid mode {number}: write modes as a string such as \"0644\" or an octal integer such as 0o644"
            ))),
        }
    }
}

/// Accepts `"x"` or `["x", "y"]`.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Raw::deserialize(deserializer)? {
        Raw::One(one) => vec![one],
        Raw::Many(many) => many,
    })
}

/// A regular file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub path: String,
    /// Literal content (itself a template string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Path of a template file on the controller, rendered on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Path of a file served by the controller's file server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileMode>,
    #[serde(default)]
    pub state: Templated<Presence>,
}

/// A directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySpec {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileMode>,
    #[serde(default)]
    pub state: Templated<Presence>,
    /// Create missing parent directories (default true).
    #[serde(default = "default_true")]
    pub parents: bool,
    /// With `state = "absent"`: remove a non-empty directory and everything in it.
    #[serde(default)]
    pub recursive: bool,
}

/// A symbolic link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    pub path: String,
    /// What the link points to (required when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default)]
    pub state: Templated<Presence>,
    /// Replace a regular file that stands where the link should be.
    #[serde(default)]
    pub force: bool,
}

/// One line in a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineSpec {
    pub path: String,
    /// The line that must be present (required when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    /// A regular expression: the last matching line is replaced (present) or every matching
    /// line is removed (absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regexp: Option<String>,
    #[serde(default)]
    pub state: Templated<Presence>,
    /// Create the file when it does not exist.
    #[serde(default)]
    pub create: bool,
}

/// A block of lines between two marker lines in a text file (like Ansible's blockinfile).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSpec {
    pub path: String,
    /// The lines between the markers (required when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
    /// The marker line, `{mark}` standing for `BEGIN` or `END` (default
    /// `# {mark} mop <name>`, or `# {mark} mop managed block` without a `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
    /// A new block goes after the last line matching this regular expression (or at the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insert_after: Option<String>,
    /// A new block goes before the first line matching this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insert_before: Option<String>,
    #[serde(default)]
    pub state: Templated<Presence>,
    /// Create the file when it does not exist.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub create: bool,
}

impl BlockSpec {
    /// The default marker when the resource has no `name`.
    pub const DEFAULT_MARKER: &'static str = "# {mark} mop managed block";

    /// The marker for a resource labelled `name`.
    pub fn marker_for_name(name: &str) -> String {
        format!("# {{mark}} mop {name}")
    }
}

/// One cron job in a user's crontab, found by its `# mop: NAME` marker line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronSpec {
    /// Written `cron = "..."`: the job's identity in the crontab (the marker line).
    #[serde(rename = "cron")]
    pub name: String,
    /// Whose crontab (default: the user the agent runs as).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The command line cron runs (required when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default = "cron_any")]
    pub minute: String,
    #[serde(default = "cron_any")]
    pub hour: String,
    #[serde(default = "cron_any")]
    pub day: String,
    #[serde(default = "cron_any")]
    pub month: String,
    #[serde(default = "cron_any")]
    pub weekday: String,
    /// `@reboot`, `@daily`...: replaces the five schedule fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub special: Option<String>,
    /// `NAME="value"` lines written in the job's block, before the job line.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub state: Templated<Presence>,
}

fn cron_any() -> String {
    "*".to_string()
}

/// SSH public keys in a user's `~/.ssh/authorized_keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizedKeySpec {
    /// Whose `authorized_keys`.
    pub user: String,
    /// Written `key = "ssh-ed25519 AAAA... comment"` or `keys = [...]`: one key line each,
    /// options first if any.
    #[serde(rename = "keys", alias = "key", deserialize_with = "one_or_many")]
    pub keys: Vec<String>,
    #[serde(default)]
    pub state: Templated<Presence>,
    /// With `present`: remove every other key from the file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exclusive: bool,
}

/// `shell` (run through `/bin/sh -c`) and `command` (split into words, no shell).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    pub cmd: String,
    /// Skip when this path exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creates: Option<String>,
    /// Skip unless this path exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removes: Option<String>,
    /// Skip when this shell command succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless: Option<String>,
    /// Skip unless this shell command succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onlyif: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Seconds before the command (and its process group) is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// The command only reads: it runs in check mode too (so later resources can use its
    /// registered output) and never counts as a change.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// `present`, `absent` or `latest`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageState {
    #[default]
    Present,
    Absent,
    Latest,
}

/// One or more packages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSpec {
    /// Written `package = "nginx"` or `packages = ["nginx", "curl"]` (the common `name` field is
    /// the resource's label).
    #[serde(
        rename = "packages",
        alias = "package",
        deserialize_with = "one_or_many"
    )]
    pub name: Vec<String>,
    #[serde(default)]
    pub state: Templated<PackageState>,
    /// Force a package manager instead of the detected one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// Refresh the package index before installing (apt-get update, etc.).
    #[serde(default)]
    pub update_cache: bool,
}

/// A file fetched on the host from a URL (with the host's `curl` or `wget`), verified
/// against `sha256` before it replaces the destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadSpec {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Absolute path of the file on the host.
    pub dest: String,
    /// The sha256 the fetched bytes must have (64 hex digits).
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileMode>,
}

/// A git checkout on the host (with the host's `git`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitSpec {
    /// What `git clone` accepts: a URL or a path.
    pub repo: String,
    /// Absolute path of the working tree on the host.
    pub dest: String,
    /// A branch, a tag or a commit; `HEAD` (the remote's default branch) when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A package repository: an apt source (deb822) or a yum/dnf `.repo` file, and its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySpec {
    /// Written `repository = "..."`: names the files (`/etc/apt/sources.list.d/NAME.sources`).
    #[serde(rename = "repository")]
    pub name: String,
    /// apt `URIs` or yum `baseurl` (required when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// apt suites (`bookworm`, or `./` for a flat repository).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub suites: Vec<String>,
    /// apt components (`main`); none for a flat repository.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub components: Vec<String>,
    /// The ASCII-armored signing key, written beside the source and referenced by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Force `apt`, `dnf` or `yum` instead of the detected package manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// Trust the repository without a signature (apt `Trusted: yes`, yum `gpgcheck=0`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trusted: bool,
    /// Refresh this repository's package index when a file changed (default true).
    #[serde(default = "default_true")]
    pub update_cache: bool,
    #[serde(default)]
    pub state: Templated<Presence>,
}

/// The run state a service should be in. The default only stands in for a template the
/// agent has not rendered yet (see [`Templated::resolved`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    #[default]
    Started,
    Stopped,
    Restarted,
    Reloaded,
}

/// A system service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Written `service = "..."` (the common `name` field is the resource's label).
    #[serde(rename = "service")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Templated<ServiceState>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<Templated<bool>>,
    /// Force `systemd`, `openrc` or `sysvinit` instead of the detected one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// Run `systemctl daemon-reload` first (systemd only), so that unit files written by
    /// earlier resources are read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub daemon_reload: bool,
}

impl ServiceSpec {
    /// `state`, rendered (see [`Templated::resolved`]).
    pub fn run_state(&self) -> Option<ServiceState> {
        self.state.as_ref().map(Templated::resolved)
    }

    /// `enabled`, rendered (see [`Templated::resolved`]).
    pub fn boot_enabled(&self) -> Option<bool> {
        self.enabled.as_ref().map(Templated::resolved)
    }
}

/// The sysctl file a `sysctl` resource persists its parameter in when `file` is not given.
pub const DEFAULT_SYSCTL_FILE: &str = "/etc/sysctl.d/99-mop.conf";

/// A kernel parameter: its live value (`/proc/sys/...`) and its line in a sysctl file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysctlSpec {
    /// Written `sysctl = "net.ipv4.ip_forward"` (the common `name` field is the label).
    #[serde(rename = "sysctl")]
    pub name: String,
    /// The value (required when present); a TOML integer is taken as its decimal text.
    #[serde(
        default,
        deserialize_with = "optional_text_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<String>,
    /// `absent` removes the parameter's line from the file and leaves the live value alone.
    #[serde(default)]
    pub state: Templated<Presence>,
    /// The file the parameter is persisted in (default [`DEFAULT_SYSCTL_FILE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// The fstab file a `mount` resource edits when `fstab` is not given.
pub const DEFAULT_FSTAB: &str = "/etc/fstab";

/// What a `mount` resource converges: the fstab entry and whether it is mounted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountState {
    /// In fstab and mounted.
    #[default]
    Mounted,
    /// In fstab (as given) and not mounted.
    Unmounted,
    /// In fstab; whether it is mounted is left alone.
    Present,
    /// Not in fstab and not mounted.
    Absent,
}

/// A filesystem: its fstab entry and its mounted state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    /// The mount point.
    pub path: String,
    /// The device, `UUID=...`, `server:/export` or pseudo source (`tmpfs`); required unless
    /// absent or unmounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    /// Required unless absent or unmounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fstype: Option<String>,
    /// Mount options (default `defaults`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opts: Option<String>,
    /// fstab's fifth field (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump: Option<u32>,
    /// fstab's sixth field (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passno: Option<u32>,
    #[serde(default)]
    pub state: Templated<MountState>,
    /// The fstab file to edit (default [`DEFAULT_FSTAB`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fstab: Option<String>,
}

/// The archive formats `unarchive` reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArchiveFormat {
    /// Only stands in for a template not rendered yet (see [`Templated::resolved`]).
    #[default]
    #[serde(rename = "tar")]
    Tar,
    #[serde(rename = "tar.gz")]
    TarGz,
    #[serde(rename = "tar.xz")]
    TarXz,
    #[serde(rename = "zip")]
    Zip,
}

/// An archive unpacked into a directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnarchiveSpec {
    /// The directory the archive is unpacked into (created when missing).
    pub dest: String,
    /// Path of the archive on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    /// Path of the archive served by the controller's file server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The format; read from the archive's first bytes when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Templated<ArchiveFormat>>,
    /// Skip the resource when this path exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creates: Option<String>,
}

/// A directory tree served by the controller's file server, copied to a host directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeSpec {
    /// The directory on the host the tree is copied into (created when missing).
    pub path: String,
    /// The directory served by the controller's file server.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Permission bits of every file; unset: new files get the source file's bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileMode>,
    /// Permission bits of every directory (`path` included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir_mode: Option<FileMode>,
    /// Remove what is below `path` but not in the source (excluded paths are kept).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete: bool,
    /// Globs, relative to the source, of paths neither copied nor deleted
    /// (see [`crate::tree`]).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub exclude: Vec<String>,
}

/// Accepts `"1"` or `1` as the text `1`.
fn optional_text_or_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Integer(i64),
    }
    Ok(Some(match Raw::deserialize(deserializer)? {
        Raw::Text(text) => text,
        Raw::Integer(number) => number.to_string(),
    }))
}

/// A local user account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// Written `user = "..."` (the common `name` field is the resource's label).
    #[serde(rename = "user")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Primary group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Supplementary groups (exactly these, unless `append`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    #[serde(default)]
    pub append: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default)]
    pub system: bool,
    #[serde(default = "default_true")]
    pub create_home: bool,
    #[serde(default)]
    pub state: Templated<Presence>,
}

/// A local group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Written `group = "..."` (the common `name` field is the resource's label).
    #[serde(rename = "group")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(default)]
    pub system: bool,
    #[serde(default)]
    pub state: Templated<Presence>,
}

/// Print a message (templated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoSpec {
    pub msg: String,
}

/// Set variables for the following resources (string values are templates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSpec {
    pub vars: serde_json::Map<String, serde_json::Value>,
}

/// Fail the host unless every expression is true.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertSpec {
    #[serde(deserialize_with = "one_or_many")]
    pub that: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
}

/// Fail the host with a message (templated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailSpec {
    pub msg: String,
}

fn default_true() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Resource, String> {
        serde_json::from_str(json).map_err(|err| err.to_string())
    }

    #[test]
    fn common_fields_and_spec_flatten() {
        let resource = parse(
            r#"{"type":"file","path":"/etc/motd","content":"hi","mode":"0644","notify":"restart","when":"x"}"#,
        )
        .expect("valid resource");
        assert_eq!(resource.notify, vec!["restart".to_string()]);
        assert_eq!(resource.when.as_deref(), Some("x"));
        match &resource.spec {
            ResourceSpec::File(file) => assert_eq!(file.mode, Some(FileMode(0o644))),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(resource.display_name(), "file /etc/motd");
        let json = serde_json::to_string(&resource).expect("serializable");
        assert_eq!(parse(&json).expect("roundtrip"), resource);
    }

    #[test]
    fn unknown_fields_and_types_are_rejected() {
        let err =
            parse(r#"{"type":"file","path":"/x","contnet":"hi"}"#).expect_err("unknown field");
        assert!(err.contains("contnet"), "{err}");
        let err = parse(r#"{"type":"flie","path":"/x"}"#).expect_err("unknown type");
        assert!(err.contains("flie"), "{err}");
    }

    #[test]
    fn modes_parse_strictly() {
        assert_eq!(FileMode::parse("0644"), Ok(FileMode(0o644)));
        assert_eq!(FileMode::parse("2755"), Ok(FileMode(0o2755)));
        assert!(FileMode::parse("0648").is_err());
        assert!(FileMode::parse("").is_err());
        assert!(FileMode::parse("rwx").is_err());
    }
}
