//! Bounded inputs: templates and expressions nested tens of thousands deep, which used to
//! overflow minijinja's stack and abort `mop validate` (exit 134, no file named), are rejected
//! with exit 2 and an error naming the file, the line and the limit, wherever they are written.

use std::path::{Path, PathBuf};

use crate::support::{mop, run, Output};

/// How deep the hostile inputs nest: without the limit, each shape but the bracketed ones
/// (which minijinja guards itself) aborted `mop validate` at this depth (exit 134, stack
/// overflow on the main thread of a dev build). The longest shape stays under the 1 MiB size
/// limit, so what is tested is the nesting limit.
const DEPTH: usize = 80_000;

/// Every shape that recursed in minijinja's parser or in what walks its tree.
fn deep_expressions(depth: usize) -> Vec<(&'static str, String)> {
    vec![
        ("not", format!("{}true", "not ".repeat(depth))),
        ("negation", format!("{}1", "- ".repeat(depth))),
        ("attributes", format!("host{}", ".a".repeat(depth))),
        ("filters", format!("host.name{}", "|lower".repeat(depth))),
        ("addition", format!("1{}", " + 1".repeat(depth))),
        ("conditionals", format!("1{}", " if 1 else 1".repeat(depth))),
        ("calls", format!("range{}", "(1)".repeat(depth))),
        ("subscripts", format!("host{}", "[0]".repeat(depth))),
        (
            "parentheses",
            format!("{}1{}", "(".repeat(depth), ")".repeat(depth)),
        ),
        (
            "lists",
            format!("{}1{}", "[".repeat(depth), "]".repeat(depth)),
        ),
    ]
}

fn validate(policy: &Path) -> Output {
    run(mop()
        .arg("validate")
        .arg(policy)
        .args(["-i", "inventory/example.toml"]))
}

/// A policy whose only resource renders the template file `deep.j2` (template files are
/// checked once the policy itself is valid).
fn write_file_policy(dir: &Path, template: &str) -> PathBuf {
    std::fs::write(dir.join("deep.j2"), template).expect("write the template");
    let policy = dir.join("deep-file.toml");
    let text = r#"[[roles]]
name = "deep"
groups = ["all"]

[[roles.resources]]
type = "file"
path = "/tmp/deep-file"
template = "deep.j2"
"#;
    std::fs::write(&policy, text).expect("write the policy");
    policy
}

/// A policy with `expression` in every place of a policy file a template or expression is
/// compiled on the controller: an inline resource field, a `when`, `contact_when` and a hook.
fn write_policy(dir: &Path, expression: &str) -> PathBuf {
    let policy = dir.join("deep.toml");
    let text = format!(
        r#"[[roles]]
name = "deep"
groups = ["all"]
before = "echo {{{{ {expression} }}}}"
after = "true"
contact_when = "{expression}"

[[roles.resources]]
type = "file"
path = "/tmp/deep-inline"
content = "{{{{ {expression} }}}}"

[[roles.resources]]
type = "shell"
cmd = "true"
when = "{expression}"
"#
    );
    std::fs::write(&policy, text).expect("write the policy");
    policy
}

#[test]
fn deep_templates_and_expressions_are_errors_naming_file_line_and_limit() {
    for (shape, expression) in deep_expressions(DEPTH) {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let policy = write_policy(dir.path(), &expression);
        let output = validate(&policy);
        let context = format!("shape `{shape}`\n{}", output.describe());
        assert_eq!(output.exit, 2, "{context}");
        let shown = policy.display().to_string();
        let template = dir.path().join("deep.j2").display().to_string();
        for expected in [
            format!("{shown}:4:10: role `deep`: field `before`: template line 1: expression nested deeper than the limit of 256 levels"),
            format!("{shown}:6:16: role `deep`: field `contact_when`: invalid expression: expression nested deeper than the limit of 256 levels"),
            format!("{shown}:11:11: role `deep`: resource #1 (file /tmp/deep-inline): field `content`: template line 1: expression nested deeper than the limit of 256 levels"),
            format!("{shown}:16:8: role `deep`: resource #2 (shell true): field `when`: invalid expression: expression nested deeper than the limit of 256 levels"),
        ] {
            assert!(
                output.stderr.contains(&expected),
                "missing `{expected}`\n{context}"
            );
        }
        assert!(!output.stderr.contains("overflow"), "{context}");

        let policy = write_file_policy(
            dir.path(),
            &format!("line one\nline two\n{{{{ {expression} }}}}\n"),
        );
        let output = validate(&policy);
        let context = format!("shape `{shape}` in a template file\n{}", output.describe());
        assert_eq!(output.exit, 2, "{context}");
        let expected = format!("{template}:3:1: template of role `deep`: resource #1 (file /tmp/deep-file): expression nested deeper than the limit of 256 levels");
        assert!(
            output.stderr.contains(&expected),
            "missing `{expected}`\n{context}"
        );
    }
}

#[test]
fn oversized_templates_are_errors() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let policy = write_file_policy(dir.path(), &"x".repeat(2 * 1024 * 1024));
    let output = validate(&policy);
    assert_eq!(output.exit, 2, "{}", output.describe());
    let template = dir.path().join("deep.j2").display().to_string();
    let expected = format!(
        "{template}:1:1: template of role `deep`: resource #1 (file /tmp/deep-file): template or expression too large: 2097152 bytes, the limit is 1048576 bytes"
    );
    assert!(
        output.stderr.contains(&expected),
        "missing `{expected}`\n{}",
        output.describe()
    );
}

#[test]
fn a_realistic_deep_but_legal_policy_passes() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let condition = (0..40)
        .map(|index| format!("(host.name ~ '{index}') | length > {index}"))
        .collect::<Vec<_>>()
        .join(" and ");
    let expression = format!(
        "host.name | upper | lower | replace('a', 'b') ~ '-' ~ (host.groups | join(',')) if {condition} else 'none'"
    );
    let policy = write_policy(dir.path(), &expression);
    let output = validate(&policy);
    assert_eq!(output.exit, 0, "{}", output.describe());
    let policy = write_file_policy(
        dir.path(),
        &format!(
            "# managed\n{{% for group in host.groups | sort %}}\n{{% if group and ({condition}) %}}\n{{{{ group ~ ': ' ~ ([1, 2, 3] | map('string') | join(' ')) }}}}\n{{% endif %}}\n{{% endfor %}}\n"
        ),
    );
    let output = validate(&policy);
    assert_eq!(output.exit, 0, "{}", output.describe());
}

#[test]
fn deep_ad_hoc_command_templates_are_errors() {
    for ((shape, expression), (_, shallower)) in deep_expressions(DEPTH)
        .into_iter()
        .zip(deep_expressions(DEPTH / 8))
    {
        // `mop run` joins its words with spaces; one word may not exceed 128 KiB (Linux's
        // MAX_ARG_STRLEN) and all of them about 2 MiB with their pointers, so the shapes that
        // do not split into fewer, shorter words are passed less deep.
        let template = format!("{{{{ {expression} }}}}");
        let fits = template.split(' ').count() < 100_000
            && template.split(' ').all(|word| word.len() < 100_000);
        let words: Vec<String> = if fits {
            template.split(' ').map(str::to_string).collect()
        } else {
            vec![format!("{{{{ {shallower} }}}}")]
        };
        let output = run(mop().args(["run", "--local", "--", "echo"]).args(&words));
        let context = format!("shape `{shape}`\n{}", output.describe());
        assert_eq!(output.exit, 2, "{context}");
        assert!(
            output.stderr.starts_with(
                "error: the command template: expression nested deeper than the limit of 256 levels"
            ),
            "{context}"
        );
    }
}
