//! Events the agent streams back while it runs a role, and the role's summary.

use serde::{Deserialize, Serialize};

/// Outcome of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceStatus {
    /// Already in the desired state.
    Ok,
    /// Changed (apply) or would change (check).
    Changed,
    /// Failed; `message` says why.
    Failed,
    /// Not run: its `when` was false, or (for handlers) it was not notified.
    Skipped,
}

/// Output of a command the resource ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutput {
    pub rc: i32,
    pub stdout: String,
    pub stderr: String,
}

/// One resource (or handler) is about to run: the agent sends it before the work, so the
/// controller can show what each host is on while it runs. Its [`ResourceEvent`] follows when
/// it finishes (one per loop item for a loop). Not sent for resources that are only reported
/// (handlers that were not notified, or that check mode reports as "would run").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceStarted {
    /// Position in the role's resource list (or handler list when `handler` is true).
    pub index: usize,
    #[serde(default)]
    pub handler: bool,
    /// The resource type, e.g. `file`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The display name its event will carry (without a loop item's `[item=...]`).
    pub resource: String,
}

/// One resource finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceEvent {
    /// Position in the role's resource list (or handler list when `handler` is true).
    pub index: usize,
    #[serde(default)]
    pub handler: bool,
    /// The resource type, e.g. `file`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A display name: the resource's `name`, or `type` + its main argument.
    pub resource: String,
    pub status: ResourceStatus,
    /// Field-level changes, e.g. `mode 0644 -> 0600`, `content`, `created`. Empty when ok.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// A unified diff (text) or `sha256 a -> b` (binary), when the plan asked for diffs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// Why it failed or was skipped, or what an `echo` said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<CommandOutput>,
    /// The failure was ignored because of `ignore_errors`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignored: bool,
    /// In check mode: the change was not made.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub simulated: bool,
    /// File bytes received from the controller for this resource.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_received: u64,
    pub duration_ms: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// End of a role on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSummary {
    pub ok: u32,
    pub changed: u32,
    pub failed: u32,
    pub skipped: u32,
    /// The role stopped at a failed resource (not ignored).
    pub role_failed: bool,
    pub bytes_received: u64,
    pub duration_ms: u64,
}
