//! The template language of mop, one environment for the hosts and the controller: every
//! minijinja builtin filter, test and function, Python-style methods on strings, lists and maps
//! (`host.name.startswith('web')`, from `minijinja-contrib`'s `pycompat`), and the Ansible
//! filters of [`ansible`]. The agent renders with [`environment`]; the controller validates
//! and renders with it too, and checks templates against the name lists of [`names`], so
//! whatever `mop validate` accepts works on the hosts and the reverse.
//!
//! Architecture invariant: pure (no IO), and small: the static agent links it. It depends on
//! minijinja (+contrib), regex-lite, serde_json and the RustCrypto hashes only.

// The workspace's host-side minijinja build (see the root Cargo.toml), under its usual name.
extern crate minijinja_agent as minijinja;

pub mod ansible;
pub mod names;

use minijinja::Environment;

/// minijinja's builtins plus mop's additions ([`add_to`]), with minijinja's default settings;
/// callers set undefined behaviour, escaping and whitespace handling for their use.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    add_to(&mut env);
    env
}

/// Registers mop's additions to minijinja's builtins: the Ansible filters and the Python-style
/// methods. Every name registered here is in [`names`].
pub fn add_to(env: &mut Environment<'_>) {
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("b64decode", ansible::b64decode);
    env.add_filter("b64encode", ansible::b64encode);
    env.add_filter("basename", ansible::basename);
    env.add_filter("combine", ansible::combine);
    env.add_filter("dirname", ansible::dirname);
    env.add_filter("from_json", ansible::from_json);
    env.add_filter("hash", ansible::hash);
    env.add_filter("quote", ansible::quote);
    env.add_filter("regex_replace", ansible::regex_replace);
    env.add_filter("regex_search", ansible::regex_search);
    env.add_filter("to_json", ansible::to_json);
}
