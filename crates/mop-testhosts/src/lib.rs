//! Real throwaway SSH hosts on this machine for mop's end-to-end tests, demo and benchmarks.
//!
//! [`TestHostsBuilder::start`] launches one `sshd` per host on its own loopback address and
//! free port, each with its own host key, config and log, all accepting one generated client
//! key. With a [`BastionLayout`] it also creates a network namespace holding a bastion and
//! racks of hosts (bastion -> rack top -> rack hosts) that the root namespace cannot reach
//! except through the bastion, which is bridged out by a socat pair over a unix socket.
//!
//! Everything runs as root: the test users [`TEST_USER`] (passwordless sudo) and
//! [`TEST_SUDO_PASSWORD_USER`] (sudo needs [`TEST_SUDO_PASSWORD`]) are created on demand.
//! All hosts are this same machine, so users' homes are shared by every host and every run:
//! "a file on host2" is a file under `/home/moptest` here.
//!
//! Dropping [`TestHosts`] (also while a test panics) kills every process it started and
//! everything they forked, deletes the namespace and removes the run directory. Runs killed
//! without unwinding are cleaned up by the next start (or `mop-testhosts cleanup`).

mod error;
mod executable;
mod host;
mod hosts;
mod launch;
mod layout;
mod netns;
mod process;
mod render;
mod stale;
mod system;
mod users;

pub use error::Error;
pub use executable::write_executable;
pub use host::TestHost;
pub use hosts::{TestHosts, TestHostsBuilder};
pub use layout::BastionLayout;
pub use stale::{cleanup_stale, CleanupReport};
pub use system::require_root;
pub use users::{
    ensure_test_users, UserSetupReport, DOAS_CONF, SUDOERS_DROP_IN, TEST_NO_SUDO_USER,
    TEST_SUDO_PASSWORD, TEST_SUDO_PASSWORD_USER, TEST_SU_PASSWORD, TEST_SU_USER, TEST_USER,
};
