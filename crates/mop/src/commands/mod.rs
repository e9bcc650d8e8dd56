//! One module per subcommand.

pub mod inventory;
pub mod load;
pub mod local;
pub mod push;
pub mod validate;
