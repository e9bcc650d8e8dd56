//! One module per subcommand.

pub mod clean;
pub mod connections;
pub mod docs;
pub mod download;
pub mod inventory;
pub mod local;
pub mod push;
pub mod run;
pub mod transfer;
pub mod upload;
pub mod validate;
pub mod vault;
