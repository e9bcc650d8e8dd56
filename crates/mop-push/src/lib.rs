//! The executor: turns a validated policy and inventory into agent sessions on hosts.
//!
//! `mop local` and `mop push` both live here. They share the session driver ([`session`]), the
//! plan builder ([`plan`]) and the reporter ([`report`]); they differ only in the transport that
//! starts the agent ([`transport`]).
//!
//! Architecture invariant: hosts are reached only through [`ssh`] (the pool, which [`transport`]
//! and the ad hoc commands use) and [`transport`]; only `ssh/` uses `openssh` or spawns `ssh`
//! (`tests/tidy.rs` guards it), and nothing else spawns the agent.

pub mod adhoc;
pub mod agents;
pub mod elf;
pub mod hooks;
pub mod load;
pub mod local;
pub mod plan;
pub mod prepare;
pub mod report;
pub mod rollout;
pub mod secrets;
pub mod session;
pub mod ssh;
pub mod tasks;
pub mod transport;
mod wire;

/// `--forks` when none is given: how many hosts every command works on at once (logins,
/// agents, commands, copies).
pub const DEFAULT_FORKS: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(64) {
    Some(forks) => forks,
    None => panic!("64 is not zero"),
};
