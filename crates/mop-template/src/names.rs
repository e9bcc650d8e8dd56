//! The one list of names templates can use, on the hosts and on the controller alike:
//! `mop validate` checks templates against it, the agent's and the controller's environments
//! are [`crate::environment`], and the tests below hold the list equal to what that environment
//! registers (minijinja's builtins, read from minijinja's own source, plus [`crate::add_to`]).

/// Filters (`{{ value | name }}`, `{% filter name %}`), sorted.
pub const FILTERS: &[&str] = &[
    "abs",
    "attr",
    "b64decode",
    "b64encode",
    "basename",
    "batch",
    "bool",
    "capitalize",
    "chain",
    "combine",
    "count",
    "d",
    "default",
    "dictsort",
    "dirname",
    "e",
    "escape",
    "first",
    "float",
    "format",
    "from_json",
    "groupby",
    "hash",
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
    "max",
    "min",
    "pprint",
    "quote",
    "regex_replace",
    "regex_search",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "to_json",
    "tojson",
    "trim",
    "unique",
    "upper",
    "urlencode",
    "zip",
];

/// Tests (`{% if value is name %}`), sorted. minijinja also registers the operators `==`,
/// `!=`, `<`, `<=`, `>`, `>=` as tests, for `select("==", 1)`; they are not names a template
/// writes after `is`, so they are not listed.
pub const TESTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "equalto",
    "escaped",
    "even",
    "false",
    "filter",
    "float",
    "ge",
    "greaterthan",
    "gt",
    "in",
    "int",
    "integer",
    "iterable",
    "le",
    "lessthan",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "safe",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "test",
    "true",
    "undefined",
    "upper",
];

/// Global functions (`{{ range(3) }}`), sorted.
pub const FUNCTIONS: &[&str] = &["debug", "dict", "namespace", "range"];

/// Python-style methods (`host.name.startswith('web')`, `ports.items()`), sorted: those of
/// `minijinja-contrib`'s `pycompat` on strings, lists and maps.
pub const METHODS: &[&str] = &[
    "capitalize",
    "count",
    "endswith",
    "find",
    "format",
    "get",
    "isalnum",
    "isalpha",
    "isascii",
    "isdigit",
    "islower",
    "isnumeric",
    "isspace",
    "isupper",
    "items",
    "join",
    "keys",
    "lower",
    "lstrip",
    "replace",
    "rfind",
    "rstrip",
    "split",
    "splitlines",
    "startswith",
    "strip",
    "title",
    "upper",
    "values",
];

/// Methods of minijinja's own objects (`loop.cycle(...)`, `loop.changed(...)`), which every
/// template may call besides [`METHODS`].
pub const OBJECT_METHODS: &[&str] = &["changed", "cycle"];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use minijinja::{context, ErrorKind};

    use super::*;

    #[test]
    fn lists_are_sorted_and_unique() {
        for list in [FILTERS, TESTS, FUNCTIONS, METHODS, OBJECT_METHODS] {
            assert!(list.windows(2).all(|pair| pair[0] < pair[1]), "{list:?}");
        }
    }

    /// The error kind of rendering `source` in [`crate::environment`], `None` when it renders.
    fn kind_of(source: &str) -> Option<ErrorKind> {
        let env = crate::environment();
        env.render_str(
            source,
            context! { s => "web1", m => context!{a => 1}, l => vec![1] },
        )
        .err()
        .map(|error| error.kind())
    }

    #[test]
    fn every_listed_name_resolves_and_others_do_not() {
        // A name is registered when using it fails for any reason but "unknown".
        for name in FILTERS {
            let kind = kind_of(&format!("{{{{ 'a/b' | {name} }}}}"));
            assert_ne!(kind, Some(ErrorKind::UnknownFilter), "filter {name}");
        }
        for name in TESTS {
            let kind = kind_of(&format!("{{{{ 1 is {name} }}}}"));
            assert_ne!(kind, Some(ErrorKind::UnknownTest), "test {name}");
        }
        for name in FUNCTIONS {
            let kind = kind_of(&format!("{{{{ {name}() }}}}"));
            assert_ne!(kind, Some(ErrorKind::UnknownFunction), "function {name}");
        }
        for name in METHODS {
            let on = match *name {
                "get" | "items" | "keys" | "values" => "m",
                _ => "s",
            };
            let kind = kind_of(&format!("{{{{ {on}.{name}('a') }}}}"));
            assert_ne!(kind, Some(ErrorKind::UnknownMethod), "method {name}");
        }
        for name in ["to_yaml", "regex_findall", "password_hash", "ipaddr"] {
            let kind = kind_of(&format!("{{{{ 'a' | {name} }}}}"));
            assert_eq!(kind, Some(ErrorKind::UnknownFilter), "filter {name}");
        }
        assert_eq!(
            kind_of("{{ 1 is version('1', '>') }}"),
            Some(ErrorKind::UnknownTest)
        );
        assert_eq!(
            kind_of("{{ lookup('env', 'HOME') }}"),
            Some(ErrorKind::UnknownFunction)
        );
        assert_eq!(kind_of("{{ s.zfill(3) }}"), Some(ErrorKind::UnknownMethod));
        assert_eq!(kind_of("{{ l.append(3) }}"), Some(ErrorKind::UnknownMethod));
    }

    /// Where cargo unpacked a dependency's sources (`cargo metadata`, offline).
    fn package_dir(package: &str) -> PathBuf {
        let output = std::process::Command::new(env!("CARGO"))
            .args(["metadata", "--format-version=1", "--offline", "--locked"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo metadata runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let metadata: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
        let manifest = metadata["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .find(|found| found["name"] == package)
            .and_then(|found| found["manifest_path"].as_str())
            .expect("the package is a dependency");
        PathBuf::from(manifest)
            .parent()
            .expect("manifest in a dir")
            .to_path_buf()
    }

    /// The quoted names a regex finds in `function`'s body within `source`.
    fn quoted_names(source: &str, function: &str, pattern: &str) -> BTreeSet<String> {
        let start = source
            .find(function)
            .unwrap_or_else(|| panic!("{function}"));
        let body = &source[start..];
        let body = &body[..body.find("\n}\n").unwrap_or(body.len())];
        let regex = regex_lite::Regex::new(pattern).expect("pattern");
        regex
            .captures_iter(body)
            .map(|found| found[1].to_string())
            .filter(|name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .collect()
    }

    fn set(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    /// The lists are exactly minijinja's builtins (as its `defaults.rs` registers them) plus
    /// what `add_to` registers, and pycompat's methods: a minijinja upgrade that adds a builtin,
    /// or a new mop filter, fails here until the list (and the docs) say so.
    #[test]
    fn the_lists_are_exactly_what_the_environment_registers() {
        let minijinja = std::fs::read_to_string(package_dir("minijinja").join("src/defaults.rs"))
            .expect("minijinja's defaults.rs");
        let ours = include_str!("lib.rs");
        let mut filters = quoted_names(
            &minijinja,
            "fn build_builtin_filters",
            r#""([^"]+)"\.into\(\)"#,
        );
        filters.extend(quoted_names(
            ours,
            "pub fn add_to",
            r#"add_filter\("([^"]+)""#,
        ));
        assert_eq!(filters, set(FILTERS), "filters");
        let tests = quoted_names(
            &minijinja,
            "fn build_builtin_tests",
            r#""([^"]+)"\.into\(\)"#,
        );
        assert_eq!(tests, set(TESTS), "tests");
        let functions = quoted_names(&minijinja, "fn build_globals", r#""([^"]+)"\.into\(\)"#);
        assert_eq!(functions, set(FUNCTIONS), "functions");
        let contrib =
            std::fs::read_to_string(package_dir("minijinja-contrib").join("src/pycompat.rs"))
                .expect("contrib's pycompat.rs");
        let mut methods = BTreeSet::new();
        for function in ["fn string_methods", "fn map_methods", "fn seq_methods"] {
            methods.extend(quoted_names(
                &contrib,
                function,
                r#"\n\s+"([a-z_]+)"(?: \| "[a-z]+")? =>"#,
            ));
            methods.extend(quoted_names(
                &contrib,
                function,
                r#"\n\s+"[a-z]+" \| "([a-z_]+)" =>"#,
            ));
        }
        assert_eq!(methods, set(METHODS), "methods");
    }

    /// docs/reference/policy.md lists every name, in its "Templates" section.
    #[test]
    fn the_reference_lists_every_name() {
        let doc = include_str!("../../../docs/reference/policy.md");
        let start = doc
            .find("### Filters, tests, functions and methods")
            .expect("the section");
        let section = &doc[start..];
        let section = &section[..section[4..]
            .find("\n### ")
            .map_or(section.len(), |end| end + 4)];
        for name in FILTERS.iter().chain(TESTS).chain(FUNCTIONS).chain(METHODS) {
            assert!(
                section.contains(&format!("`{name}`")),
                "docs/reference/policy.md does not list `{name}`"
            );
        }
    }

    /// The features of a workspace dependency line in the root Cargo.toml.
    fn features_of(manifest: &str, dependency: &str) -> BTreeSet<String> {
        let line = manifest
            .lines()
            .find(|line| line.starts_with(&format!("{dependency} = ")))
            .unwrap_or_else(|| panic!("{dependency} in the root Cargo.toml"));
        let list = &line[line.find("features = [").expect("features") + 12..];
        list[..list.find(']').expect("end of features")]
            .split(',')
            .map(|feature| feature.trim().trim_matches('"').to_string())
            .filter(|feature| !feature.is_empty())
            .collect()
    }

    /// Cargo unifies features within one build, so tests of the workspace see one minijinja;
    /// the release agent is built alone, with only `minijinja-agent`'s features. Every feature
    /// that adds syntax or a name must therefore be in the agent's list, and the controller
    /// may add only `debug` (error spans).
    #[test]
    fn the_controller_has_no_language_feature_the_hosts_lack() {
        let manifest = include_str!("../../../Cargo.toml");
        let hosts = features_of(manifest, "minijinja-agent");
        let controller = features_of(manifest, "minijinja");
        let extra: Vec<&String> = controller.difference(&hosts).collect();
        assert_eq!(extra, vec!["debug"], "controller-only minijinja features");
    }
}
