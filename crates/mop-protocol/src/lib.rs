//! Wire types shared by the `mop` controller and the `mop-agent` binary.
//!
//! Everything that crosses the controller <-> agent channel is defined here and nowhere else:
//! the frame format ([`frame`]), the messages in each direction ([`message`]), the resource model
//! that a role plan carries ([`resource`]), the facts an agent reports ([`facts`]) and the
//! events it streams back ([`event`]). [`kinds`] describes each resource type once, for the
//! policy validator, the agent's renderer and the docs; [`host_keys`] is the one spelling of
//! the host key policy that inventories and policies share; [`cron`] and [`ssh_key`] are the
//! grammars of cron schedules and key lines, checked alike by `mop validate` and the agent.
//!
//! Architecture invariant: this crate depends on serde and serde_json only. The agent links it,
//! and the agent must stay small.

pub mod choice;
pub mod cron;
pub mod event;
pub mod facts;
pub mod fetch_rules;
pub mod frame;
pub mod host_keys;
pub mod kinds;
pub mod message;
pub mod resource;
pub mod ssh_key;
pub mod tree;

pub use choice::*;
pub use cron::*;
pub use event::{CommandOutput, ResourceEvent, ResourceStarted, ResourceStatus, RoleSummary};
pub use facts::{Facts, OsInfo};
pub use frame::{read_frame, write_data_frame, write_json_frame, Frame, FrameError};
pub use host_keys::HostKeyPolicy;
pub use kinds::*;
pub use message::{
    AgentMessage, CleanupRequest, ControllerMessage, FileEntry, Mode, RolePlan, TreeListing,
};
pub use resource::*;
pub use ssh_key::*;

/// Version of the controller <-> agent protocol. Bumped on any incompatible change to the
/// frame format or to a message; both sides refuse to talk across a mismatch.
pub const PROTOCOL_VERSION: u32 = 6;

/// Exit codes of `mop-agent`. 127 and 255 are never used: OpenSSH and the `openssh` crate
/// reserve them for "command not found" and "connection failed".
pub mod exit_code {
    /// The session ended normally (controller said `shutdown` or closed stdin cleanly).
    pub const OK: i32 = 0;
    /// A protocol violation: malformed, truncated, oversized or unexpected frame.
    pub const PROTOCOL_ERROR: i32 = 3;
    /// The controller speaks another protocol version.
    pub const VERSION_MISMATCH: i32 = 4;
    /// An internal error in the agent (I/O on its own channel, etc.).
    pub const INTERNAL: i32 = 5;
}
