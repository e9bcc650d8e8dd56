//! Policies: ordered roles of resources, loaded from TOML and validated before any host is
//! contacted.
//!
//! [`Policy::load`] reads a policy file (and the roles files its roles `include`), checks
//! everything that can be checked without an inventory or a host, and returns either the
//! validated [`Policy`] or every problem found ([`PolicyErrors`]), each naming its file, line
//! and column. Checks that need the inventory ([`Policy::check_undefined`]) or files the
//! caller reads ([`Policy::template_paths`], [`Policy::source_paths`],
//! [`Policy::check_template_file`]) run afterwards.
//!
//! Architecture invariant: this crate is pure. It reads the policy and its roles files and
//! nothing else: no inventory, no template or served files, no network, no async. The file
//! format is documented in `docs/reference/policy.md`.

mod error;
mod fields;
mod host_names;
pub mod limits;
mod load;
mod model;
mod node;
mod policy;
mod resources;
mod suggest;
mod templates;

pub use error::{Origin, PolicyError, PolicyErrors, Position};
pub use model::{
    FileReference, FileServerSettings, HostKeyPolicy, MaxFail, PathSpec, PatternSpec, Policy, Role,
    VarsLayer,
};
pub use mop_protocol::{Resource, ResourceSpec};
pub use suggest::{closest, did_you_mean};

/// Every key a policy file accepts at top level, in documentation order.
pub const POLICY_KEYS: &[&str] = load::POLICY_KEYS;
/// Every key a `[[roles]]` table accepts.
pub const ROLE_KEYS: &[&str] = load::ROLE_KEYS;
/// Every key a roles file accepts.
pub const ROLES_FILE_KEYS: &[&str] = load::ROLES_FILE_KEYS;
