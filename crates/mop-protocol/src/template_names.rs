//! The filters, tests and functions templates can use on the hosts: exactly what the agent's
//! template engine registers (a common subset of minijinja's builtins, to keep the static agent
//! small). `mop validate` checks templates against these lists, so a template that would fail
//! on the host fails before any host is contacted.

/// Filters (`{{ value | name }}`, `{% filter name %}`), sorted.
pub const TEMPLATE_FILTERS: &[&str] = &[
    "bool",
    "capitalize",
    "count",
    "d",
    "default",
    "first",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "select",
    "selectattr",
    "sort",
    "split",
    "string",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
];

/// Tests (`{% if value is name %}`), sorted.
pub const TEMPLATE_TESTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "even",
    "false",
    "float",
    "ge",
    "gt",
    "in",
    "integer",
    "iterable",
    "le",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "sequence",
    "startingwith",
    "string",
    "true",
    "undefined",
];

/// Global functions (`{{ range(3) }}`), sorted.
pub const TEMPLATE_FUNCTIONS: &[&str] = &["namespace", "range"];

/// minijinja builtin functions the agent leaves out (templates may still define macros of any
/// name, so only these are reported as missing).
pub const OMITTED_FUNCTIONS: &[&str] = &["debug", "dict"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_sorted_and_unique() {
        for list in [
            TEMPLATE_FILTERS,
            TEMPLATE_TESTS,
            TEMPLATE_FUNCTIONS,
            OMITTED_FUNCTIONS,
        ] {
            assert!(list.windows(2).all(|pair| pair[0] < pair[1]), "{list:?}");
        }
    }
}
