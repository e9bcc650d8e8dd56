//! Variable precedence: all < parent groups < child groups < host, caller layers around them.

use serde_json::json;

use super::{inventory, provenance, resolve, resolve_with, vars};
use crate::{ExtraLayers, InventoryError, SourceKind};

const NESTED: &str = r#"
[groups.all.vars]
level = "all"
only_all = 1

[groups.dc1]
children = ["web"]

[groups.dc1.vars]
level = "dc1"
only_dc1 = true

[groups.web.hosts]
"h1" = "level=shorthand"
"h2" = ""

[groups.web.vars]
level = "web"

[hosts.h1.vars]
level = "host vars"
"#;

#[test]
fn all_then_parent_then_child_then_host() {
    let inventory = inventory(NESTED);
    let h1 = resolve(&inventory, "h1");
    assert_eq!(h1.vars["level"], json!("host vars"));
    assert_eq!(
        provenance(&h1, "level"),
        [
            "group `all` (depth 0)",
            "group `dc1` (depth 1)",
            "group `web` (depth 2)",
            "host shorthand in group `web`",
            "host vars",
        ]
    );
    assert_eq!(h1.vars["only_all"], json!(1));
    assert_eq!(h1.vars["only_dc1"], json!(true));
    let h2 = resolve(&inventory, "h2");
    assert_eq!(h2.vars["level"], json!("web"));
    assert_eq!(h2.groups, ["all", "dc1", "web"]);
}

#[test]
fn depths_follow_the_deepest_parent() {
    let inventory = inventory(
        r#"
[groups.a]
children = ["b", "c"]
[groups.b]
children = ["c"]
[groups.c.hosts]
"h" = ""
"#,
    );
    let depth = |name: &str| inventory.group(name).expect(name).depth();
    assert_eq!(depth("all"), 0);
    assert_eq!(depth("a"), 1);
    assert_eq!(depth("b"), 2);
    assert_eq!(depth("c"), 3, "max over parents a (1) and b (2), plus one");
    assert_eq!(inventory.group("c").expect("c").parents(), ["a", "b"]);
    assert_eq!(
        inventory.host("h").expect("h").groups(),
        ["all", "a", "b", "c"]
    );
}

#[test]
fn same_depth_tie_goes_to_the_alphabetically_later_group() {
    // The file lists `zeta` first: file order must not matter, names do.
    let inventory = inventory(
        r#"
[groups.zeta.hosts]
"h" = ""
[groups.zeta.vars]
color = "zeta"

[groups.alpha.hosts]
"h" = ""
[groups.alpha.vars]
color = "alpha"
size = "alpha"
"#,
    );
    let host = resolve(&inventory, "h");
    assert_eq!(host.vars["color"], json!("zeta"));
    assert_eq!(
        provenance(&host, "color"),
        ["group `alpha` (depth 1)", "group `zeta` (depth 1)"]
    );
    let winner = host.winner("color").expect("set");
    assert_eq!(
        winner.kind,
        SourceKind::Group {
            name: "zeta".into(),
            depth: 1
        }
    );
    assert_eq!(winner.value, json!("zeta"));
    assert_eq!(
        winner.to_string(),
        "group `zeta` (depth 1) at test.toml:5:9",
        "provenance carries the location"
    );
    assert_eq!(host.vars["size"], json!("alpha"));
}

#[test]
fn deeper_group_beats_alphabet() {
    let inventory = inventory(
        r#"
[groups.zzz.hosts]
"h" = ""
[groups.zzz.vars]
v = "zzz depth 1"

[groups.parent]
children = ["aaa"]
[groups.aaa.hosts]
"h" = ""
[groups.aaa.vars]
v = "aaa depth 2"
"#,
    );
    assert_eq!(resolve(&inventory, "h").vars["v"], json!("aaa depth 2"));
}

#[test]
fn values_replace_whole_tables() {
    let inventory = inventory(
        r#"
[groups.g.hosts]
"h" = ""
[groups.g.vars]
nginx = { workers = 4, gzip = true }
[hosts.h.vars]
nginx = { workers = 8 }
"#,
    );
    assert_eq!(
        resolve(&inventory, "h").vars["nginx"],
        json!({"workers": 8})
    );
}

#[test]
fn shorthand_values_are_strings_unless_magic() {
    let inventory = inventory(
        r#"
[groups.g.hosts]
"h" = "weight=3 flag=true mop_port=2222 mop_sudo=true mop_ssh_username=1000"
"#,
    );
    let host = resolve(&inventory, "h");
    assert_eq!(host.vars["weight"], json!("3"));
    assert_eq!(host.vars["flag"], json!("true"));
    assert_eq!(host.vars["mop_port"], json!(2222));
    assert_eq!(host.vars["mop_sudo"], json!(true));
    assert_eq!(host.vars["mop_ssh_username"], json!("1000"));
    assert_eq!(host.connection.port, 2222);
    assert!(host.connection.sudo);
}

#[test]
fn typed_vars_keep_their_types() {
    let inventory = inventory(
        r#"
[groups.g.hosts]
"h" = ""
[groups.g.vars]
port = 8080
ratio = 0.5
on = false
names = ["a", "b"]
when = 2024-05-01T10:00:00Z
[groups.g.vars.nested]
deep = { x = 1 }
"#,
    );
    let host = resolve(&inventory, "h");
    assert_eq!(host.vars["port"], json!(8080));
    assert_eq!(host.vars["ratio"], json!(0.5));
    assert_eq!(host.vars["on"], json!(false));
    assert_eq!(host.vars["names"], json!(["a", "b"]));
    assert_eq!(host.vars["when"], json!("2024-05-01T10:00:00Z"));
    assert_eq!(host.vars["nested"], json!({"deep": {"x": 1}}));
}

#[test]
fn defaults_apply_only_where_the_inventory_is_silent() {
    let inventory = inventory(NESTED);
    let extra = ExtraLayers::none()
        .with_defaults(
            "policy",
            vars(&[
                ("level", json!("policy")),
                ("only_policy", json!("p")),
                ("both", json!("policy")),
            ]),
        )
        .with_defaults("role `web`", vars(&[("both", json!("role"))]));
    let h1 = resolve_with(&inventory, "h1", &extra);
    assert_eq!(
        h1.vars["level"],
        json!("host vars"),
        "inventory beats defaults"
    );
    assert_eq!(h1.vars["only_policy"], json!("p"));
    assert_eq!(h1.vars["both"], json!("role"), "later default layer wins");
    assert_eq!(provenance(&h1, "both"), ["policy", "role `web`"]);
    assert_eq!(provenance(&h1, "level")[0], "policy");
    assert_eq!(
        provenance(&h1, "level").last().map(String::as_str),
        Some("host vars")
    );
}

#[test]
fn overrides_beat_everything() {
    let inventory = inventory(NESTED);
    let extra = ExtraLayers::none()
        .with_defaults("policy", vars(&[("level", json!("policy"))]))
        .with_overrides(
            "-e",
            vars(&[("level", json!("cli")), ("mop_port", json!(2200))]),
        );
    let h1 = resolve_with(&inventory, "h1", &extra);
    assert_eq!(h1.vars["level"], json!("cli"));
    assert_eq!(
        provenance(&h1, "level").last().map(String::as_str),
        Some("-e")
    );
    assert_eq!(provenance(&h1, "level").len(), 7);
    assert_eq!(h1.connection.port, 2200);
    assert!(h1.winner("level").expect("set").location.is_none());
}

#[test]
fn caller_layers_are_validated() {
    let inventory = inventory(NESTED);
    let bad_port = ExtraLayers::none().with_overrides("-e", vars(&[("mop_port", json!("abc"))]));
    let error = inventory.resolve("h1", &bad_port).expect_err("bad port");
    assert!(matches!(error, InventoryError::Layer { .. }));
    assert_eq!(
        error.to_string(),
        "-e: magic variable `mop_port` must be an integer between 1 and 65535, found string \"abc\""
    );
    let typo = ExtraLayers::none().with_defaults("role `web`", vars(&[("mop_sudoo", json!(true))]));
    assert_eq!(
        inventory
            .resolve("h1", &typo)
            .expect_err("typo")
            .to_string(),
        "role `web`: unknown magic variable `mop_sudoo`\n  hint: did you mean `mop_sudo`?"
    );
    let bad_name = ExtraLayers::none().with_overrides("-e", vars(&[("a-b", json!(1))]));
    assert!(inventory.resolve("h1", &bad_name).is_err());
}

#[test]
fn passwords_are_redacted_everywhere_but_expose() {
    let inventory = inventory(
        r#"
[groups.g.hosts]
"h" = "mop_ssh_password=hunter2"
[groups.g.vars]
mop_sudo_password = "swordfish"
"#,
    );
    let host = resolve(&inventory, "h");
    assert_eq!(host.vars["mop_ssh_password"], json!("hunter2"));
    assert_eq!(
        host.redacted_vars()["mop_ssh_password"],
        json!("<redacted>")
    );
    assert_eq!(
        host.redacted_vars()["mop_sudo_password"],
        json!("<redacted>")
    );
    assert_eq!(
        host.connection
            .password
            .as_ref()
            .map(|secret| secret.expose()),
        Some("hunter2")
    );
    let debug = format!("{host:?} {inventory:?}");
    let json = serde_json::to_string(&host).expect("serializes");
    for shown in [&debug, &json] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("swordfish"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}

#[test]
fn unknown_host_suggests_a_close_name() {
    let inventory = inventory(NESTED);
    let error = inventory
        .resolve("h3", &ExtraLayers::none())
        .expect_err("unknown");
    assert_eq!(
        error.to_string(),
        "unknown host `h3`\n  hint: did you mean `h1`?"
    );
}
