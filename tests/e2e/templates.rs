//! The template language on the hosts and in `mop validate`: a table of templates using every
//! filter, test, function and method of `mop_template::names` renders the same through
//! `mop local` and through `mop push` to a real sshd host, and equals what Jinja2/Ansible would
//! print; names outside the list are rejected by `mop validate` with file:line:col.

use std::collections::BTreeMap;
use std::path::Path;

use mop_template::names::{FILTERS, FUNCTIONS, METHODS, OBJECT_METHODS, TESTS};
use mop_testhosts::TestHostsBuilder;

use crate::support::{run, run_json, Sandbox};

/// (label, template, expected output). One line of the rendered file each: `label=[output]`.
const CASES: &[(&str, &str, &str)] = &[
    // minijinja's filters
    ("abs", "{{ -3 | abs }}", "3"),
    ("attr", "{{ users[0] | attr('name') }}", "ann"),
    ("batch", "{{ nums | batch(2) | list }}", "[[3, 1], [2]]"),
    ("bool", "{{ 0 | bool }}", "False"),
    ("capitalize", "{{ 'hello world' | capitalize }}", "Hello world"),
    ("chain", "{{ nums | chain(['x']) | list }}", "[3, 1, 2, \"x\"]"),
    ("count", "{{ words | count }}", "4"),
    ("d", "{{ missing | d('none') }}", "none"),
    ("default", "{{ missing | default('fallback') }}", "fallback"),
    ("dictsort", "{{ ports | dictsort }}", "[[\"http\", 80], [\"https\", 443]]"),
    ("e", "{{ html | e }}", "&lt;b&gt;x&lt;&#x2f;b&gt;"),
    ("escape", "{{ '<&>' | escape }}", "&lt;&amp;&gt;"),
    ("first", "{{ nums | first }}", "3"),
    ("float", "{{ '2.5' | float }}", "2.5"),
    ("format", "{{ '%s-%d' | format('a', 5) }}", "a-5"),
    (
        "groupby",
        "{% for g in users | groupby('shell') %}{{ g.grouper }}:{{ g.list | map(attribute='name') | join(',') }};{% endfor %}",
        "/bin/bash:ann;/bin/sh:bob;",
    ),
    ("indent", "{{ 'a\\nb' | indent(2) | replace('\\n', '|') }}", "a|  b"),
    ("int", "{{ '42' | int + 1 }}", "43"),
    ("items", "{{ ports | items | list }}", "[[\"http\", 80], [\"https\", 443]]"),
    ("join", "{{ words | join(',') }}", "b,a,c,a"),
    ("last", "{{ nums | last }}", "2"),
    ("length", "{{ name | length }}", "17"),
    ("lines", "{{ 'a\\nb' | lines }}", "[\"a\", \"b\"]"),
    ("list", "{{ 'ab' | list }}", "[\"a\", \"b\"]"),
    ("lower", "{{ 'ABC' | lower }}", "abc"),
    ("map", "{{ users | map(attribute='name') | join(',') }}", "ann,bob"),
    ("max", "{{ nums | max }}", "3"),
    ("min", "{{ nums | min }}", "1"),
    ("pprint", "{{ 'x' | pprint }}", "\"x\""),
    ("reject", "{{ nums | reject('odd') | list }}", "[2]"),
    (
        "rejectattr",
        "{{ users | rejectattr('admin') | map(attribute='name') | join }}",
        "bob",
    ),
    ("replace", "{{ name | replace('.', '_') }}", "web01_example_com"),
    ("reverse", "{{ nums | reverse | list }}", "[2, 1, 3]"),
    ("round", "{{ 2.567 | round(2) }}", "2.57"),
    ("safe", "{{ html | safe }}", "<b>x</b>"),
    ("select", "{{ nums | select('odd') | list }}", "[3, 1]"),
    (
        "selectattr",
        "{{ users | selectattr('uid', 'gt', 1001) | map(attribute='name') | join }}",
        "bob",
    ),
    ("slice", "{{ nums | slice(2) | list }}", "[[3, 1], [2]]"),
    ("sort", "{{ words | sort | join }}", "aabc"),
    ("split", "{{ 'a b  c' | split | join(',') }}", "a,b,c"),
    ("string", "{{ 42 | string ~ 'x' }}", "42x"),
    ("sum", "{{ nums | sum }}", "6"),
    ("title", "{{ 'hello world' | title }}", "Hello World"),
    ("tojson", "{{ ports | tojson }}", "{\"http\":80,\"https\":443}"),
    ("trim", "{{ text | trim }}", "Hello World"),
    ("unique", "{{ words | unique | join }}", "bac"),
    ("upper", "{{ 'abc' | upper }}", "ABC"),
    ("urlencode", "{{ 'a b&c' | urlencode }}", "a%20b%26c"),
    ("zip", "{{ nums | zip(words) | list }}", "[[3, \"b\"], [1, \"a\"], [2, \"c\"]]"),
    // the Ansible filters
    ("b64encode", "{{ 'user:pw' | b64encode }}", "dXNlcjpwdw=="),
    ("b64decode", "{{ 'dXNlcjpwdw==' | b64decode }}", "user:pw"),
    ("basename", "{{ path | basename }}", "nginx.conf"),
    ("dirname", "{{ path | dirname }}", "/etc/nginx"),
    ("quote", "{{ \"it's $HOME\" | quote }}", "'it'\"'\"'s $HOME'"),
    (
        "combine",
        "{{ {'a': 1, 'b': {'x': 1}} | combine({'b': {'y': 2}}, recursive=true) | to_json }}",
        "{\"a\": 1, \"b\": {\"x\": 1, \"y\": 2}}",
    ),
    (
        "combine_flat",
        "{{ [{'a': 1, 'b': {'x': 1}}, {'b': {'y': 2}}] | combine | to_json }}",
        "{\"a\": 1, \"b\": {\"y\": 2}}",
    ),
    ("from_json", "{{ ('{\"port\": 80}' | from_json).port }}", "80"),
    (
        "hash",
        "{{ 'abc' | hash('sha256') }}",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    ),
    ("hash_sha1", "{{ 'abc' | hash }}", "a9993e364706816aba3e25717850c26c9cd0d89d"),
    ("hash_md5", "{{ 'abc' | hash('md5') }}", "900150983cd24fb0d6963f7d28e17f72"),
    (
        "regex_replace",
        "{{ 'web-01' | regex_replace('-(\\\\d+)$', '_\\\\1') }}",
        "web_01",
    ),
    (
        "regex_replace_named",
        "{{ name | regex_replace('^(?P<h>[a-z]+)\\\\d*', '\\\\g<h>', ignorecase=true) }}",
        "web.example.com",
    ),
    (
        "regex_search",
        "{{ 'v1.24.3' | regex_search('(\\\\d+)\\\\.(\\\\d+)', '\\\\2', '\\\\1') }}",
        "[\"24\", \"1\"]",
    ),
    ("regex_search_whole", "{{ 'v1.24.3' | regex_search('\\\\d+') }}", "1"),
    ("regex_search_none", "{{ 'abc' | regex_search('\\\\d') is none }}", "True"),
    (
        "to_json",
        "{{ users[1] | to_json }}",
        "{\"admin\": false, \"name\": \"bob\", \"shell\": \"/bin/sh\", \"uid\": 1002}",
    ),
    // tests
    ("t_boolean", "{{ true is boolean }}", "True"),
    ("t_defined", "{{ name is defined }}", "True"),
    ("t_divisibleby", "{{ 9 is divisibleby(3) }}", "True"),
    ("t_endingwith", "{{ name is endingwith('.com') }}", "True"),
    ("t_eq", "{{ 1 is eq(1) }}", "True"),
    ("t_equalto", "{{ 1 is equalto(2) }}", "False"),
    ("t_escaped", "{{ html is escaped }}", "False"),
    ("t_even", "{{ 3 is even }}", "False"),
    ("t_false", "{{ false is false }}", "True"),
    ("t_filter", "{{ 'regex_replace' is filter }}", "True"),
    ("t_float", "{{ 2.5 is float }}", "True"),
    ("t_ge", "{{ 2 is ge(2) }}", "True"),
    ("t_greaterthan", "{{ 2 is greaterthan(3) }}", "False"),
    ("t_gt", "{{ 3 is gt(2) }}", "True"),
    ("t_in", "{{ 'a' is in words }}", "True"),
    ("t_int", "{{ 2 is int }}", "True"),
    ("t_integer", "{{ 2.5 is integer }}", "False"),
    ("t_iterable", "{{ nums is iterable }}", "True"),
    ("t_le", "{{ 2 is le(1) }}", "False"),
    ("t_lessthan", "{{ 1 is lessthan(2) }}", "True"),
    ("t_lower", "{{ 'abc' is lower }}", "True"),
    ("t_lt", "{{ 1 is lt(2) }}", "True"),
    ("t_mapping", "{{ ports is mapping }}", "True"),
    ("t_ne", "{{ 1 is ne(2) }}", "True"),
    ("t_none", "{{ none is none }}", "True"),
    ("t_number", "{{ 'x' is number }}", "False"),
    ("t_odd", "{{ 3 is odd }}", "True"),
    ("t_safe", "{{ html | safe is safe }}", "True"),
    ("t_sameas", "{{ none is sameas(none) }}", "True"),
    ("t_sequence", "{{ nums is sequence }}", "True"),
    ("t_startingwith", "{{ name is startingwith('web') }}", "True"),
    ("t_string", "{{ name is string }}", "True"),
    ("t_test", "{{ 'odd' is test }}", "True"),
    ("t_true", "{{ 1 is true }}", "False"),
    ("t_undefined", "{{ missing is undefined }}", "True"),
    ("t_upper", "{{ 'ABC' is upper }}", "True"),
    // functions
    ("f_debug", "{{ debug() is string }}", "True"),
    ("f_dict", "{{ dict(a=1) | to_json }}", "{\"a\": 1}"),
    (
        "f_namespace",
        "{% set ns = namespace(n=0) %}{% for x in nums %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n }}",
        "6",
    ),
    ("f_range", "{{ range(3) | list }}", "[0, 1, 2]"),
    // methods
    ("m_capitalize", "{{ 'abc'.capitalize() }}", "Abc"),
    ("m_count", "{{ 'banana'.count('a') }} {{ words.count('a') }}", "3 2"),
    ("m_endswith", "{{ name.endswith('.com') }}", "True"),
    ("m_find", "{{ name.find('.') }}", "5"),
    ("m_format", "{{ '{}:{}'.format('h', 80) }}", "h:80"),
    ("m_get", "{{ ports.get('http') }} {{ ports.get('x', 1) }}", "80 1"),
    ("m_isalnum", "{{ 'a1'.isalnum() }}", "True"),
    ("m_isalpha", "{{ 'a1'.isalpha() }}", "False"),
    ("m_isascii", "{{ 'é'.isascii() }}", "False"),
    ("m_isdigit", "{{ '123'.isdigit() }}", "True"),
    ("m_islower", "{{ 'abc'.islower() }}", "True"),
    ("m_isnumeric", "{{ '12'.isnumeric() }}", "True"),
    ("m_isspace", "{{ ' '.isspace() }}", "True"),
    ("m_isupper", "{{ 'abc'.isupper() }}", "False"),
    ("m_items", "{{ ports.items() | list }}", "[[\"http\", 80], [\"https\", 443]]"),
    ("m_join", "{{ '-'.join(words) }}", "b-a-c-a"),
    ("m_keys", "{{ ports.keys() | list }}", "[\"http\", \"https\"]"),
    ("m_lower", "{{ 'ABC'.lower() }}", "abc"),
    ("m_lstrip", "{{ text.lstrip() }}", "Hello World  "),
    ("m_replace", "{{ name.replace('example', 'test') }}", "web01.test.com"),
    ("m_rfind", "{{ name.rfind('.') }}", "13"),
    ("m_rstrip", "{{ text.rstrip() }}", "  Hello World"),
    ("m_split", "{{ name.split('.') }}", "[\"web01\", \"example\", \"com\"]"),
    ("m_splitlines", "{{ 'a\\nb'.splitlines() }}", "[\"a\", \"b\"]"),
    ("m_startswith", "{{ name.startswith('web') }}", "True"),
    ("m_strip", "{{ text.strip() }}", "Hello World"),
    ("m_title", "{{ 'hello world'.title() }}", "Hello World"),
    ("m_upper", "{{ 'abc'.upper() }}", "ABC"),
    ("m_values", "{{ ports.values() | list }}", "[80, 443]"),
    (
        "m_cycle",
        "{% for x in nums %}{{ loop.cycle('a', 'b') }}{% endfor %}",
        "aba",
    ),
    (
        "m_changed",
        "{% for x in [1, 1, 2] %}{% if loop.changed(x) %}{{ x }}{% endif %}{% endfor %}",
        "12",
    ),
    // language features the agent builds minijinja with
    (
        "macro",
        "{% macro greet(who) %}hi {{ who }}{% endmacro %}{{ greet('ann') }}",
        "hi ann",
    ),
    (
        "previtem",
        "{% for x in nums %}{{ loop.previtem | default('-') }}{% endfor %}",
        "-31",
    ),
];

const VARS: &str = r#"
[vars]
out = "@OUT@"
name = "web01.example.com"
words = ["b", "a", "c", "a"]
nums = [3, 1, 2]
ports = { https = 443, http = 80 }
path = "/etc/nginx/nginx.conf"
text = "  Hello World  "
html = "<b>x</b>"

[[vars.users]]
name = "ann"
uid = 1001
shell = "/bin/bash"
admin = true

[[vars.users]]
name = "bob"
uid = 1002
shell = "/bin/sh"
admin = false
"#;

/// A policy with one `file` resource whose content is every case, one per line. The template
/// is a TOML literal string, so backslashes reach minijinja as written in [`CASES`].
fn cases_policy() -> String {
    let mut content = String::new();
    for (label, template, _) in CASES {
        assert!(!template.contains("'''"), "{label}");
        content.push_str(&format!("{label}=[{template}]\n"));
    }
    format!(
        "{VARS}\n[[roles]]\nname = \"templates\"\n\n[[roles.resources]]\ntype = \"file\"\npath = \"{{{{ out }}}}/cases.txt\"\ncontent = '''\n{content}'''\n"
    )
}

#[test]
fn case_labels_are_unique() {
    let mut labels: Vec<&str> = CASES.iter().map(|(label, _, _)| *label).collect();
    labels.sort_unstable();
    let count = labels.len();
    labels.dedup();
    assert_eq!(labels.len(), count, "duplicate labels");
}

/// `label -> output` of a rendered cases file.
fn rendered(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("read `{}`: {error}", path.display()));
    text.lines()
        .map(|line| {
            let (label, rest) = line.split_once("=[").unwrap_or_else(|| panic!("{line}"));
            let output = rest.strip_suffix(']').unwrap_or_else(|| panic!("{line}"));
            (label.to_string(), output.to_string())
        })
        .collect()
}

#[test]
fn the_case_table_uses_every_name() {
    let uses = |needle: &dyn Fn(&str) -> Vec<String>, name: &str| {
        CASES
            .iter()
            .any(|(_, template, _)| needle(name).iter().any(|form| template.contains(form)))
    };
    for name in FILTERS {
        let forms = |name: &str| vec![format!("| {name}")];
        assert!(uses(&forms, name), "no case uses the filter `{name}`");
    }
    for name in TESTS {
        let forms = |name: &str| vec![format!("is {name} "), format!("is {name}(")];
        assert!(uses(&forms, name), "no case uses the test `{name}`");
    }
    for name in FUNCTIONS {
        let forms = |name: &str| vec![format!("{{{{ {name}("), format!(" = {name}(")];
        assert!(uses(&forms, name), "no case uses the function `{name}`");
    }
    for name in METHODS.iter().chain(OBJECT_METHODS) {
        let forms = |name: &str| vec![format!(".{name}(")];
        assert!(uses(&forms, name), "no case uses the method `{name}`");
    }
}

#[test]
fn every_name_renders_the_same_locally_and_on_a_pushed_host() {
    let sandbox = Sandbox::start("templates", TestHostsBuilder::new().hosts(1).group("web"));
    let policy = sandbox.policy("cases", &cases_policy());

    // What `mop validate` accepts...
    let validate = run(crate::support::mop()
        .arg("validate")
        .arg(&policy)
        .arg("-i")
        .arg(&sandbox.inventory));
    assert_eq!(validate.exit, 0, "{}", validate.describe());

    // ...renders on a host over ssh...
    let push = sandbox.push(&policy, &["--apply"]);
    push.assert_exit(0);
    let pushed = rendered(&sandbox.out.join("cases.txt"));

    // ...and through `mop local`, the same.
    let local_dir = tempfile::tempdir().expect("create a temporary directory");
    let out_var = format!("out={}", local_dir.path().display());
    let local_args: Vec<std::ffi::OsString> = vec![
        "local".into(),
        policy.clone().into_os_string(),
        "--apply".into(),
        "-e".into(),
        out_var.into(),
    ];
    let local = run_json(local_args);
    local.assert_exit(0);
    let local = rendered(&local_dir.path().join("cases.txt"));

    assert_eq!(pushed, local, "mop push and mop local render differently");
    let mut wrong = Vec::new();
    for (label, _, expected) in CASES {
        let got = pushed.get(*label).map(String::as_str);
        if got != Some(*expected) {
            wrong.push(format!("{label}: expected {expected}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn validate_rejects_names_the_hosts_lack_with_their_positions() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let policy = dir.path().join("site.toml");
    std::fs::write(
        &policy,
        r#"[[roles]]
name = "web"
before = "echo {{ host.name | to_yaml }}"

[[roles.resources]]
type = "file"
path = "/tmp/x"
content = "{{ host.name.zfill(3) }} {{ host.name | regex_replce('a', 'b') }}"
when = "host.name is version('1')"

[[roles.resources]]
type = "file"
path = "/tmp/y"
content = "{% include 'other.j2' %}"
"#,
    )
    .expect("write the policy");
    let output = run(crate::support::mop()
        .arg("validate")
        .arg(&policy)
        .args(["-i", "inventory/example.toml"]));
    assert_eq!(output.exit, 2, "{}", output.describe());
    let shown = policy.display().to_string();
    for expected in [
        format!("{shown}:3:10: role `web`: field `before`: filter `to_yaml` is not available on the hosts"),
        format!("{shown}:8:11: role `web`: resource #1 (file /tmp/x): field `content`: method `zfill` is not available on the hosts"),
        format!("{shown}:8:11: role `web`: resource #1 (file /tmp/x): field `content`: filter `regex_replce` is not available on the hosts"),
        "hint: did you mean `regex_replace`?".to_string(),
        format!("{shown}:9:8: role `web`: resource #1 (file /tmp/x): field `when`: test `version` is not available on the hosts"),
        // The hosts have no template files to load: the controller's minijinja has no loader
        // statements either.
        format!("{shown}:14:11: role `web`: resource #2 (file /tmp/y): field `content`: template line 1: syntax error: unknown statement include"),
    ] {
        assert!(
            output.stderr.contains(&expected),
            "missing `{expected}`\n{}",
            output.describe()
        );
    }
}
