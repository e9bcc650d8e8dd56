//! mop's inventory: hosts, groups and variables from TOML (OpsMop's format plus typed vars) and
//! from Ansible inventories (INI, YAML, a dynamic inventory script's `--list` JSON).
//!
//! Pure: no IO except [`Inventory::load`] (which reads the files and runs a dynamic inventory
//! script named as the inventory), no SSH, no async. The format is documented in
//! `docs/reference/inventory.md`.
//!
//! ```
//! use mop_inventory::{ExtraLayers, Inventory, Selection};
//!
//! let inventory = Inventory::parse(
//!     r#"
//! [groups.all.vars]
//! mop_ssh_username = "deploy"
//!
//! [groups.webservers.hosts]
//! "web1.example.com" = "mop_host=192.0.2.10 mop_port=2222"
//! "#,
//!     "inventory/example.toml",
//! )?;
//! let selection = Selection::new(&["web*"], &[])?;
//! let selected = inventory.select(&selection);
//! assert_eq!(selected.hosts[0].name(), "web1.example.com");
//!
//! let web1 = inventory.resolve("web1.example.com", &ExtraLayers::none())?;
//! assert_eq!(web1.connection.address, "192.0.2.10");
//! assert_eq!(web1.connection.port, 2222);
//! assert_eq!(web1.connection.user.as_deref(), Some("deploy"));
//! # Ok::<(), mop_inventory::InventoryError>(())
//! ```

mod ansible;
mod build;
mod connection;
mod error;
pub mod grammar;
mod inventory;
mod magic;
mod parse;
mod resolve;
mod select;
mod shorthand;
mod value;
mod vars_file;

pub use ansible::script::{MAX_SCRIPT_OUTPUT, SCRIPT_TIMEOUT};
pub use ansible::AnsibleFormat;
pub use connection::{BecomeMethod, Connection, HostKeyPolicy, Secret, REDACTED};
pub use error::{InventoryError, Location};
pub use inventory::{Group, Host, Inventory, ALL_GROUP};
pub use magic::{
    is_secret_var, magic_variable, mark_vault_var, secret_var_names, MagicVariable,
    CONNECT_TIMEOUT_SECONDS, MAGIC_VARIABLES,
};
pub use resolve::{
    redact_vars, ExtraLayers, Hop, Layer, ResolvedHost, Source, SourceKind, MAX_VIA_HOPS,
};
pub use select::{Pattern, PatternKind, Selected, Selection, UnmatchedPattern};
pub use value::parse_extra_var;
pub use vars_file::{parse_vars_file, read_vars_file, VarsFile};

#[cfg(test)]
mod tests;
