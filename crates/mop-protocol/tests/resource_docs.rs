//! `docs/reference/policy.md` documents every resource type, and exactly its fields, as
//! `mop_protocol::RESOURCE_KINDS` describes them: a section per type (`### \`file\``, or one
//! section for types sharing their fields, `### \`shell\` and \`command\``) whose table lists
//! the fields, marks the rendered ones as templates and names every literal choice.

use std::collections::BTreeSet;

use mop_protocol::{FieldKind, ResourceKind, COMMON_FIELDS, RESOURCE_KINDS};

fn policy_doc() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/reference/policy.md"
    );
    std::fs::read_to_string(path).expect("docs/reference/policy.md is readable")
}

/// Backquoted words of `text`, in order.
fn quoted(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The rows (field cell, type cell, whole row) of the first table after the heading that
/// names the type `name` (types with the same fields share one: `shell` and `command`).
fn section_rows<'d>(doc: &'d str, name: &str) -> Option<Vec<(Vec<&'d str>, &'d str, &'d str)>> {
    let mut lines = doc.lines();
    lines.find(|line| line.starts_with("### ") && quoted(line).contains(&name))?;
    let rows = lines
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            (quoted(cells[1]), cells[2], row)
        })
        .collect();
    Some(rows)
}

fn check_fields(kind: &ResourceKind, rows: &[(Vec<&str>, &str, &str)]) {
    let documented: BTreeSet<&str> = rows
        .iter()
        .flat_map(|(names, _, _)| names.clone())
        .collect();
    let described: BTreeSet<&str> = kind
        .fields
        .iter()
        .flat_map(|field| field.spellings())
        .collect();
    assert_eq!(
        documented, described,
        "documented fields of `{}`",
        kind.name
    );
    for field in kind.fields {
        let (_, type_cell, row) = rows
            .iter()
            .find(|(names, _, _)| names.contains(&field.name))
            .expect("documented, checked above");
        let context = format!("`{}.{}` in the docs", kind.name, field.name);
        match field.kind {
            FieldKind::Template => assert!(
                type_cell.contains("template"),
                "{context}: say it is a template"
            ),
            FieldKind::TemplateChoice(values) => {
                assert!(
                    type_cell.contains("template"),
                    "{context}: say it is a template"
                );
                for value in values {
                    assert!(
                        row.contains(&format!("`{value}`")),
                        "{context}: name `{value}`"
                    );
                }
            }
            FieldKind::Expression => assert!(
                type_cell.contains("expression"),
                "{context}: say it is an expression"
            ),
            FieldKind::Literal | FieldKind::Scalar => {
                assert!(!type_cell.contains("template"), "{context}: not a template")
            }
            FieldKind::ResultExpression
            | FieldKind::RenderedByResource
            | FieldKind::Loop
            | FieldKind::FileKey => {}
        }
    }
}

#[test]
fn every_resource_type_has_a_section_listing_exactly_its_fields() {
    let doc = policy_doc();
    let mut documented = BTreeSet::new();
    for kind in RESOURCE_KINDS {
        let rows = section_rows(&doc, kind.name).unwrap_or_else(|| {
            panic!(
                "docs/reference/policy.md has no section `### `{}``",
                kind.name
            )
        });
        check_fields(kind, &rows);
        documented.insert(kind.name);
    }
    assert_eq!(documented.len(), RESOURCE_KINDS.len());
}

#[test]
fn common_fields_are_documented() {
    let doc = policy_doc();
    let section = doc
        .split("## Resources: common fields")
        .nth(1)
        .expect("a common fields section");
    let table: Vec<&str> = section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .filter_map(|row| row.split('|').nth(1).map(str::trim))
        .flat_map(quoted)
        .collect();
    let described: Vec<&str> = COMMON_FIELDS.iter().map(|field| field.name).collect();
    assert_eq!(table, described);
    let type_row = section
        .lines()
        .find(|line| line.starts_with("| `type`"))
        .expect("a `type` row");
    let listed: Vec<&str> = quoted(type_row).into_iter().skip(1).collect();
    let names: Vec<&str> = RESOURCE_KINDS.iter().map(|kind| kind.name).collect();
    assert_eq!(listed, names, "the `type` row lists every type in order");
}
