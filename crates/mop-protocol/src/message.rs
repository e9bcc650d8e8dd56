//! The messages each side sends, and the role plan: the unit of work the controller hands to
//! an agent in one round trip.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::event::{ResourceEvent, ResourceStarted, RoleSummary};
use crate::facts::Facts;
use crate::resource::Resource;

/// Whether the agent may change the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Compute and report what would change; change nothing.
    Check,
    /// Converge the host.
    Apply,
}

/// A file the controller's file server may send for this role, keyed in [`RolePlan::files`] by
/// the `source` string the policy used. The agent asks for content (and for the sha256, when
/// the plan does not carry it) by `id` only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub id: u32,
    /// Lowercase hex SHA-256 of the content, when the controller had finished hashing the file
    /// by the time it sent the plan; otherwise the agent asks with `file_digest_request` (only
    /// if it needs it: a destination of a different size is replaced without any hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub size: u64,
    /// Permission bits of the file on the controller (informational; the resource's `mode` wins).
    pub mode: u32,
    /// Decrypted from a vault file on the controller: a diff says only that it changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// Modification time of the file on the controller, in nanoseconds since the epoch: the
    /// agent gives the files it writes this time (see `mop_agent::stamp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<i64>,
}

/// A served directory tree (a `tree` resource's `source`) as the controller listed it: what
/// the file server serves below it, less what every `tree` resource naming it excludes. Its
/// files are entries of [`RolePlan::files`], keyed by [`crate::tree::file_key`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeListing {
    /// Directories below the top, relative and `/`-separated, each after its parent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<String>,
    /// Regular files below the top, relative and `/`-separated, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

/// Everything an agent needs to run one role on its host without asking anything back except
/// file contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolePlan {
    pub role: String,
    pub mode: Mode,
    /// Produce unified diffs for content changes.
    #[serde(default)]
    pub diff: bool,
    /// Variables visible to every template at top level: inventory vars, policy and role vars,
    /// `-e` overrides, and `host` (`{name, groups}`). The agent adds `facts` itself.
    #[serde(default)]
    pub vars: serde_json::Map<String, serde_json::Value>,
    pub resources: Vec<Resource>,
    /// Handlers, in definition order; run at the end of the role when notified.
    #[serde(default)]
    pub handlers: Vec<Resource>,
    /// Template sources keyed by the path the policy wrote in `template = "..."`.
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
    /// Served files keyed by the `source = "..."` string the policy wrote.
    #[serde(default)]
    pub files: BTreeMap<String, FileEntry>,
    /// Served directory trees keyed by the `source = "..."` string of a `tree` resource.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub trees: BTreeMap<String, TreeListing>,
    /// Append this role's events to the host's `~/.mop/mop.log` (rotated).
    #[serde(default)]
    pub remote_log: bool,
}

/// Controller -> agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControllerMessage {
    /// First message of a session.
    Hello {
        protocol_version: u32,
        controller_version: String,
    },
    /// Run one role; the agent answers with events, file requests and one `role_done`.
    Role(Box<RolePlan>),
    /// Start of the content of file `id`; data frames follow, then `file_digest` (or
    /// `file_refused`, when reading or hashing the source failed part way).
    FileBegin { id: u32, size: u64 },
    /// The sha256 of file `id`: the answer to `file_digest_request`, and, after `file_begin`
    /// and the data frames, the end of the file's content (what the received bytes must hash
    /// to).
    FileDigest { id: u32, sha256: String },
    /// The controller will not send file `id` or its digest (unknown id, or reading it failed).
    FileRefused { id: u32, reason: String },
    /// Stop every command this agent started and remove its work directory (the last thing a
    /// run asks of a host's agent); the agent answers `cleaned`. Sent before `shutdown`.
    Cleanup(CleanupRequest),
    /// End of the session: the agent exits 0.
    Shutdown,
}

/// What the agent removes when the run is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanupRequest {
    /// This run's private work directory (`<agent_dir>/w-<token>`), removed with its content.
    pub work_dir: String,
    /// The agent directory holding it, removed too if that leaves it empty.
    pub agent_dir: String,
}

/// Agent -> controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentMessage {
    /// Reply to the controller's hello.
    Hello {
        protocol_version: u32,
        agent_version: String,
        facts: Box<Facts>,
    },
    /// One resource (or handler) is about to run (protocol 5).
    Started(ResourceStarted),
    /// One resource (or handler) finished.
    Event(Box<ResourceEvent>),
    /// The agent needs the content of file `id` from the role's file list.
    FileRequest { id: u32 },
    /// The agent needs the sha256 of file `id` (its plan entry had none): the controller
    /// answers `file_digest` once it has hashed the file, or `file_refused`.
    FileDigestRequest { id: u32 },
    /// The role finished (successfully or not).
    RoleDone(RoleSummary),
    /// Answer to `cleanup`: `error` says what could not be removed or stopped (the controller
    /// then cleans up over SSH itself).
    Cleaned {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A protocol or internal error; the agent exits after sending it.
    Error { message: String },
}
