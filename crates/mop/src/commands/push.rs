//! `mop push`.

use anyhow::{bail, Result};

pub fn run(_args: crate::cli::PushArgs, _color: bool) -> Result<u8> {
    bail!("not yet implemented")
}
