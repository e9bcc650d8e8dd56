//! Tests across modules: precedence, via-chains, selection, the example file, error messages.

mod ansible;
mod errors;
mod example;
mod precedence;
mod select;
mod vars_dirs;
mod via;

use indexmap::IndexMap;
use serde_json::Value;

use crate::{ExtraLayers, Inventory, ResolvedHost};

/// Parses an inventory that must be valid.
fn inventory(text: &str) -> Inventory {
    Inventory::parse(text, "test.toml").unwrap_or_else(|error| panic!("valid inventory: {error}"))
}

/// The rendered error of an inventory that must be invalid.
fn load_error(text: &str) -> String {
    match Inventory::parse(text, "test.toml") {
        Ok(_) => panic!("inventory should be rejected:\n{text}"),
        Err(error) => error.to_string(),
    }
}

fn resolve(inventory: &Inventory, host: &str) -> ResolvedHost {
    resolve_with(inventory, host, &ExtraLayers::none())
}

fn resolve_with(inventory: &Inventory, host: &str, extra: &ExtraLayers) -> ResolvedHost {
    inventory
        .resolve(host, extra)
        .unwrap_or_else(|error| panic!("{host} resolves: {error}"))
}

fn vars(pairs: &[(&str, Value)]) -> IndexMap<String, Value> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect()
}

/// The provenance of `name` as display strings, lowest precedence first.
fn provenance(host: &ResolvedHost, name: &str) -> Vec<String> {
    host.provenance
        .get(name)
        .map(|sources| {
            sources
                .iter()
                .map(|source| source.kind.to_string())
                .collect()
        })
        .unwrap_or_default()
}
