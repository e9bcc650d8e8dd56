//! End-to-end tests: the real `mop` binary (and the real `mop-agent` beside it) against real
//! sshd hosts on loopback and behind a namespaced bastion, started per test by mop-testhosts.
//!
//! Build first: `cargo build -p mop -p mop-agent`, then `cargo test -p mop --test e2e`.
//! The push tests need root (they start sshd and create the test users).

mod support;

mod adhoc;
mod adhoc_interrupt;
mod adhoc_sudo;
mod agent_cache;
mod cli;
mod cli_pipe;
mod install;
mod inventory_ansible;
mod local;
mod persist;
mod progress;
mod push_become;
mod push_check_predicts;
mod push_config_files;
mod push_connect;
mod push_converge;
mod push_digest_cache;
mod push_fetch;
mod push_files;
mod push_forks;
mod push_interrupt;
mod push_loops;
mod push_password;
mod push_roles;
mod push_rollout;
mod push_select;
mod push_ssh_config;
mod push_sudo;
mod push_summary;
mod push_system;
mod push_timeout;
mod push_tree;
mod security_lifetime;
mod security_limits;
mod security_secrets;
mod security_ssh;
mod templates;
mod validate_all;
mod vault;
