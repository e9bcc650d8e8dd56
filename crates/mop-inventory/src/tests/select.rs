//! Host selection: globs, OR within a list, AND across lists and selections, stable order.

use super::inventory;
use crate::{Inventory, InventoryError, PatternKind, Selection, UnmatchedPattern};

const FLEET: &str = r#"
[hosts."lonely.example.com".vars]
note = "first in the file, in no group"

[groups.webservers.hosts]
"web2.example.com" = ""
"web1.example.com" = ""

[groups.dbservers.hosts]
"db1.example.com" = ""
"web1.example.com" = ""

[groups.dc1]
children = ["webservers", "dbservers"]

[groups.dc2.hosts]
"db2.dc2.example.com" = ""

[groups.Staging.hosts]
"stage.example.com" = ""
"#;

fn names(inventory: &Inventory, groups: &[&str], hosts: &[&str]) -> Vec<String> {
    let selection = Selection::new(groups, hosts).expect("valid patterns");
    inventory
        .select(&selection)
        .hosts
        .iter()
        .map(|host| host.name().to_string())
        .collect()
}

#[test]
fn inventory_order_is_first_appearance() {
    let inventory = inventory(FLEET);
    let all: Vec<&str> = inventory.hosts().map(|host| host.name()).collect();
    assert_eq!(
        all,
        [
            "lonely.example.com",
            "web2.example.com",
            "web1.example.com",
            "db1.example.com",
            "db2.dc2.example.com",
            "stage.example.com",
        ]
    );
    assert_eq!(names(&inventory, &[], &[]), all, "no patterns: everything");
    assert_eq!(
        inventory.host("lonely.example.com").expect("host").groups(),
        ["all"]
    );
}

#[test]
fn group_patterns_select_children_hosts() {
    let inventory = inventory(FLEET);
    assert_eq!(
        names(&inventory, &["dc1"], &[]),
        ["web2.example.com", "web1.example.com", "db1.example.com"]
    );
    assert_eq!(names(&inventory, &["dc*"], &[]).len(), 4);
    assert_eq!(names(&inventory, &["all"], &[]).len(), 6);
}

#[test]
fn globs_follow_fnmatch() {
    let inventory = inventory(FLEET);
    // `*` crosses dots.
    assert_eq!(
        names(&inventory, &[], &["*.dc2.*"]),
        ["db2.dc2.example.com"]
    );
    assert_eq!(
        names(&inventory, &[], &["web?.example.com"]),
        ["web2.example.com", "web1.example.com"]
    );
    assert_eq!(names(&inventory, &[], &["web[1].*"]), ["web1.example.com"]);
    assert_eq!(names(&inventory, &[], &["web[!1].*"]), ["web2.example.com"]);
    // Case-sensitive.
    assert_eq!(names(&inventory, &["staging"], &[]), Vec::<String>::new());
    assert_eq!(names(&inventory, &["Staging"], &[]), ["stage.example.com"]);
}

#[test]
fn patterns_in_a_list_are_ored_and_lists_anded() {
    let inventory = inventory(FLEET);
    assert_eq!(
        names(&inventory, &["dbservers", "dc2"], &[]),
        ["web1.example.com", "db1.example.com", "db2.dc2.example.com"]
    );
    assert_eq!(
        names(&inventory, &["dbservers"], &["web*"]),
        ["web1.example.com"]
    );
    assert_eq!(
        names(&inventory, &[], &["db1.example.com", "web2.example.com"]),
        ["web2.example.com", "db1.example.com"],
        "inventory order, not pattern order"
    );
}

#[test]
fn selections_compose_with_and() {
    let inventory = inventory(FLEET);
    let role = Selection::new(&["dc1"], &[]).expect("valid");
    let limit = Selection::new(&[], &["web*"]).expect("valid");
    let selection = role.and(limit);
    let selected = inventory.select(&selection);
    let names: Vec<&str> = selected.hosts.iter().map(|host| host.name()).collect();
    assert_eq!(names, ["web2.example.com", "web1.example.com"]);
    assert!(selected.unmatched.is_empty());
    assert!(Selection::all().and(Selection::all()).is_all());
    let empty: [&str; 0] = [];
    assert!(Selection::new(&empty, &empty).expect("valid").is_all());
}

#[test]
fn patterns_that_match_nothing_are_reported() {
    let inventory = inventory(FLEET);
    let selection = Selection::new(&["webservers", "mailservers"], &["nope*"]).expect("valid");
    let selected = inventory.select(&selection);
    assert!(selected.hosts.is_empty());
    assert_eq!(
        selected.unmatched,
        [
            UnmatchedPattern {
                kind: PatternKind::Group,
                pattern: "mailservers".into(),
                hint: None,
            },
            UnmatchedPattern {
                kind: PatternKind::Host,
                pattern: "nope*".into(),
                hint: None,
            },
        ]
    );
    assert_eq!(
        selected.unmatched[0].to_string(),
        "group pattern `mailservers` matches no group"
    );
}

#[test]
fn invalid_patterns_are_errors() {
    let error = Selection::new(&["web[12"], &[]).expect_err("unclosed class");
    assert!(matches!(error, InventoryError::InvalidPattern { .. }));
    assert!(
        error
            .to_string()
            .starts_with("invalid pattern `web[12`: unclosed character class"),
        "{error}"
    );
    let error = Selection::new(&[], &[""]).expect_err("empty");
    assert_eq!(
        error.to_string(),
        "invalid pattern ``: empty term\n  hint: separate terms with single `:` or `,`, e.g. \
         `web:&dc1:!web2`; use `*` to match everything"
    );
}

#[test]
fn hosts_in_group_includes_descendants() {
    let inventory = inventory(FLEET);
    let in_dc1: Vec<&str> = inventory
        .hosts_in_group("dc1")
        .iter()
        .map(|host| host.name())
        .collect();
    assert_eq!(
        in_dc1,
        ["web2.example.com", "web1.example.com", "db1.example.com"]
    );
    assert_eq!(
        inventory.group("webservers").expect("group").hosts(),
        ["web2.example.com", "web1.example.com"]
    );
}

#[test]
fn empty_inventory_has_only_all() {
    let inventory = inventory("# nothing yet\n");
    assert_eq!(inventory.hosts().count(), 0);
    let groups: Vec<&str> = inventory.groups().map(|group| group.name()).collect();
    assert_eq!(groups, ["all"]);
    assert_eq!(inventory.group("all").expect("all").location(), None);
    assert!(inventory.select(&Selection::all()).hosts.is_empty());
}

/// One row of the pattern table: groups items, hosts items, the hosts selected.
fn check(groups: &[&str], hosts: &[&str], expected: &[&str]) {
    let inventory = inventory(FLEET);
    let selected = names(&inventory, groups, hosts);
    assert_eq!(selected, expected, "groups {groups:?} hosts {hosts:?}");
}

#[test]
fn pattern_algebra_table() {
    const WEB1: &str = "web1.example.com";
    const WEB2: &str = "web2.example.com";
    const DB1: &str = "db1.example.com";
    const DB2: &str = "db2.dc2.example.com";
    const STAGE: &str = "stage.example.com";
    const LONELY: &str = "lonely.example.com";
    // Union: `:` and `,` inside an item, and list items, all mean the same.
    check(&["webservers:dc2"], &[], &[WEB2, WEB1, DB2]);
    check(&["webservers,dc2"], &[], &[WEB2, WEB1, DB2]);
    check(&["webservers", "dc2"], &[], &[WEB2, WEB1, DB2]);
    // Exclusion.
    check(&["webservers:!dbservers"], &[], &[WEB2]);
    check(&[], &["web*:!web2.example.com"], &[WEB1]);
    check(&["all:!dc1"], &[], &[LONELY, DB2, STAGE]);
    // Only exclusions: everything but them.
    check(&[], &["!web*"], &[LONELY, DB1, DB2, STAGE]);
    // Intersection.
    check(&["webservers:&dbservers"], &[], &[WEB1]);
    check(&["dc*:&dbservers"], &[], &[WEB1, DB1]);
    // Order does not matter: union, then `&`, then `!`.
    check(&["!dbservers", "&dc1", "dc*"], &[], &[WEB2]);
    check(&["dc*:&dc1:!webservers"], &[], &[DB1]);
    check(&["&dc1:!webservers:dc*"], &[], &[DB1]);
    // Globs in every position.
    check(&["d?[0-9]:&*servers:!web*"], &[], &[DB1]);
    check(&["{web,db}servers:!d*"], &[], &[]);
    // `all` means every host in host patterns too, as in Ansible.
    check(&[], &["all:!*.dc2.*:!web*"], &[LONELY, DB1, STAGE]);
    check(&[], &["all:!db*:!web*:!lonely*"], &[STAGE]);
    // Groups and hosts sides are AND-ed, each with its own algebra.
    check(&["dc1:!dbservers"], &["!web1*"], &[WEB2]);
    // A class with `!` is a complement, not an exclusion.
    check(&[], &["web[!1].*"], &[WEB2]);
}

#[test]
fn target_terms_match_groups_or_hosts() {
    let inventory = inventory(FLEET);
    let select = |target: &str| -> Vec<String> {
        let selection = Selection::target(target).expect("valid");
        inventory
            .select(&selection)
            .hosts
            .iter()
            .map(|host| host.name().to_string())
            .collect()
    };
    assert_eq!(select("webservers:!web2*"), ["web1.example.com"]);
    assert_eq!(select("db*:&dc1"), ["web1.example.com", "db1.example.com"]);
    assert_eq!(
        select("stage.example.com,dc2"),
        ["db2.dc2.example.com", "stage.example.com"]
    );
}

#[test]
fn terms_that_match_nothing_name_the_term_with_a_suggestion() {
    let inventory = inventory(FLEET);
    let selection =
        Selection::new(&["webservers:!dbservrs"], &["&web3.example.com"]).expect("valid");
    let unmatched: Vec<String> = inventory
        .select(&selection)
        .unmatched
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        unmatched,
        [
            "group pattern `!dbservrs` matches no group\n  hint: did you mean `dbservers`?",
            "host pattern `&web3.example.com` matches no host\n  hint: did you mean `web2.example.com`?",
        ]
    );
    let target = Selection::target("webservrs").expect("valid");
    assert_eq!(
        inventory.select(&target).unmatched[0].to_string(),
        "pattern `webservrs` matches no group or host\n  hint: did you mean `webservers`?"
    );
}

#[test]
fn pattern_grammar_is_strict() {
    let error = |text: &str| Selection::new(&[text], &[]).expect_err(text).to_string();
    insta::assert_snapshot!([
        error("web;rm -rf /"),
        error("web\u{1b}[31m"),
        error("web::db"),
        error("web:!"),
        error("&!web"),
        error("web&db"),
        error("web:&[12"),
    ]
    .join("\n"));
}

#[test]
fn retry_names_match_literally_whatever_they_hold() {
    let inventory = inventory(
        r#"
[groups.v6.hosts]
"2001:db8::1" = ""
"2001:db8::2" = ""
"odd*name" = ""
"oddXname" = ""
"#,
    );
    let names = |hosts: &[&str], retry: &[&str]| -> Vec<String> {
        let retry: Vec<String> = retry.iter().map(ToString::to_string).collect();
        let selection = Selection::with_host_names(&[] as &[&str], hosts, &retry).expect("valid");
        inventory
            .select(&selection)
            .hosts
            .iter()
            .map(|host| host.name().to_string())
            .collect()
    };
    assert_eq!(
        names(&[], &["2001:db8::2", "odd*name"]),
        ["2001:db8::2", "odd*name"]
    );
    // OR-ed with the patterns, and narrowed by their `!` terms.
    assert_eq!(
        names(&["oddX*"], &["2001:db8::1"]),
        ["2001:db8::1", "oddXname"]
    );
    assert_eq!(
        names(&["!2001*"], &["2001:db8::1", "odd*name"]),
        ["odd*name"]
    );
    // As a pattern, `:` separates terms, so such a name needs a glob.
    assert_eq!(names(&["2001?db8??1"], &[]), ["2001:db8::1"]);
}
