//! Error messages for broken inventories, snapshotted with their file:line:column.

use super::load_error;
use crate::Inventory;

/// `(case name, inventory text)`: each must be rejected.
const BROKEN: &[(&str, &str)] = &[
    ("toml syntax", "[groups.web.hosts]\n\"web1\" = \"mop_port=22\n"),
    ("duplicate toml key", "[groups.web.hosts]\n\"web1\" = \"\"\n\"web1\" = \"a=1\"\n"),
    ("unknown top-level key", "[groups.web.hosts]\n\"web1\" = \"\"\n\n[hostz.web1.vars]\na = 1\n"),
    ("unknown top-level key, no suggestion", "version = 2\n"),
    ("groups not a table", "groups = [\"web\"]\n"),
    ("hosts value not a string", "[groups.web.hosts]\n\"web1\" = 3\n"),
    ("hosts as an array", "[groups.web]\nhosts = [\"web1\", \"web2\"]\n"),
    ("unbalanced quote in shorthand", "[groups.web.hosts]\n\"web1\" = \"a=1 motd='hello\"\n"),
    ("shorthand word without =", "[groups.web.hosts]\n\"web1\" = \"mop_host=192.0.2.1 primary\"\n"),
    ("shorthand with escapes points at the string", "[groups.web.hosts]\n\"web1\" = \"a=\\\"x\\\" bad\"\n"),
    ("magic var wrong type in vars", "[groups.web.hosts]\n\"web1\" = \"\"\n\n[groups.web.vars]\nmop_port = \"abc\"\n"),
    ("magic var quoted number", "[groups.all.vars]\nmop_port = \"2222\"\n"),
    ("magic var wrong type in shorthand", "[groups.web.hosts]\n\"web1\" = \"weight=3 mop_port=abc\"\n"),
    ("magic bool in shorthand", "[groups.web.hosts]\n\"web1\" = \"mop_sudo=yes\"\n"),
    ("magic bool as string", "[hosts.web1.vars]\nmop_sudo = \"true\"\n"),
    ("host key policy as bool", "[groups.all.vars]\nmop_check_host_keys = false\n"),
    ("agent dir not absolute", "[groups.all.vars]\nmop_agent_dir = \"mop\"\n"),
    ("address that looks like an option", "[groups.web.hosts]\n\"web1\" = \"mop_host=-oProxyCommand=evil\"\n"),
    ("address with a shell command for ProxyJump", "[groups.g.hosts]\n\"jump\" = \"mop_host=127.0.7.1\"\n[hosts.target.vars]\nmop_host = \"127.0.7.2\\\\'$(>/tmp/pwned)\\\\'\"\nmop_via = \"jump\"\n"),
    ("address with a percent token", "[groups.web.hosts]\n\"web1\" = \"mop_host=%h.example.com\"\n"),
    ("address with a fullwidth dollar", "[hosts.web1.vars]\nmop_host = \"web\\uFF04(id)\"\n"),
    ("bracketed ipv6 address", "[hosts.web1.vars]\nmop_host = \"[2001:db8::1]\"\n"),
    ("user name with a quote", "[hosts.web1.vars]\nmop_ssh_username = \"deploy'\"\n"),
    ("sudo user name with a command", "[groups.web.hosts]\n\"web1\" = \"mop_sudo_username=$(id)\"\n"),
    ("known_hosts file with a line break", "[hosts.web1.vars]\nmop_known_hosts_file = \"/kh\\nHost *\"\n"),
    ("key file with a double quote", "[hosts.web1.vars]\nmop_ssh_key = \"/keys/a\\\"b\"\n"),
    ("key file with an environment variable", "[hosts.web1.vars]\nmop_ssh_key = \"${HOME}/.ssh/id\"\n"),
    ("sudo password with a line break is not echoed", "[hosts.web1.vars]\nmop_sudo_password = \"hunter2\\nsecond\"\n"),
    ("password of wrong type is not echoed", "[groups.all.vars]\nmop_ssh_password = 123456\n"),
    ("unknown magic var", "[groups.all.vars]\nmop_sudo_user = \"root\"\n"),
    ("opsmop magic var", "[groups.all.vars]\nopsmop_host = \"192.0.2.1\"\n"),
    ("invalid variable name", "[groups.web.vars]\napp-port = 8080\n"),
    ("nan float", "[groups.web.vars]\nratio = nan\n"),
    ("undefined child group", "[groups.dc1]\nchildren = [\"webservers\", \"dbserver\"]\n\n[groups.webservers.hosts]\n\"web1\" = \"\"\n\n[groups.dbservers.hosts]\n\"db1\" = \"\"\n"),
    ("children not an array", "[groups.dc1]\nchildren = \"webservers\"\n"),
    ("children holding a number", "[groups.dc1]\nchildren = [\"web\", 2]\n\n[groups.web]\n"),
    ("group is its own ancestor", "[groups.a]\nchildren = [\"b\"]\n\n[groups.b]\nchildren = [\"c\"]\n\n[groups.c]\nchildren = [\"a\"]\n"),
    ("group is its own child", "[groups.loop]\nchildren = [\"loop\"]\n"),
    ("all with children", "[groups.all]\nchildren = [\"web\"]\n\n[groups.web]\n"),
    ("all as a child", "[groups.web]\nchildren = [\"all\"]\n"),
    ("unknown key in group", "[groups.web]\nhost = [\"web1\"]\n"),
    ("host listed directly in group table", "[groups.web]\n\"web1.example.com\" = \"\"\n"),
    ("unknown key in host table", "[hosts.web1]\ngroups = [\"web\"]\n"),
    ("unquoted dotted host name in group", "[groups.web.hosts]\nweb1.example.com = \"\"\n"),
    ("unquoted dotted host name in hosts", "[hosts.web1.example.com.vars]\na = 1\n"),
    ("host table not a table", "[hosts]\n\"web1\" = 5\n"),
    ("host name starting with dash", "[groups.web.hosts]\n\"-web1\" = \"\"\n"),
    ("conflicting shorthand", "[groups.a.hosts]\n\"web1\" = \"color=red\"\n\n[groups.b.hosts]\n\"web1\" = \"color=blue\"\n"),
    ("unknown via host", "[groups.web.hosts]\n\"web1\" = \"\"\n\n[groups.web.vars]\nmop_via = \"bastion.example.com\"\n"),
    ("via loop", "[groups.web.hosts]\n\"a\" = \"mop_via=b\"\n\"b\" = \"mop_via=a\"\n"),
];

#[test]
fn load_errors() {
    let mut report = String::new();
    for (name, text) in BROKEN {
        let message = load_error(text);
        assert!(!message.ends_with('.'), "{name}: no trailing period");
        assert!(
            message.starts_with("test.toml:"),
            "{name}: every load error names file:line:column, got {message}"
        );
        report.push_str(&format!("### {name}\n{text}---\n{message}\n\n"));
    }
    insta::assert_snapshot!("load_errors", report);
}

#[test]
fn secrets_never_reach_error_messages() {
    let message = load_error("[groups.all.vars]\nmop_ssh_password = 123456\n");
    assert!(!message.contains("123456"), "{message}");
    let message = load_error(
        "[groups.a.hosts]\n\"h\" = \"mop_sudo_password=hunter2\"\n[groups.b.hosts]\n\"h\" = \"mop_sudo_password=swordfish\"\n",
    );
    assert!(
        !message.contains("hunter2") && !message.contains("swordfish"),
        "{message}"
    );
    let message = load_error("[hosts.h.vars]\nmop_sudo_password = \"hunter2\\nsecond\"\n");
    assert!(
        !message.contains("hunter2") && !message.contains("second"),
        "{message}"
    );
}

/// A host without `mop_host` is reached at its name, so the name must be an address: the
/// error points at the host and is raised when resolving (a `-e mop_host` could still fix it).
#[test]
fn a_host_name_used_as_its_address_meets_the_address_grammar() {
    let inventory = crate::tests::inventory(
        "[groups.web.hosts]\n\"web1\" = \"\"\n\"db'$(id)'\" = \"\"\n\"named\" = \"mop_host=10.0.0.5\"\n",
    );
    assert!(inventory
        .resolve("web1", &crate::ExtraLayers::none())
        .is_ok());
    assert!(inventory
        .resolve("named", &crate::ExtraLayers::none())
        .is_ok());
    let message = inventory
        .resolve("db'$(id)'", &crate::ExtraLayers::none())
        .expect_err("the name is not an address")
        .to_string();
    assert_eq!(
        message,
        "test.toml:3:1: host `db'$(id)'` has no `mop_host`, so its name is its address, but it is \
         not a valid host name or address: it contains `'`; host names are made of letters, \
         digits, `-`, `_` and `.`\n  hint: set `mop_host` to the host's address in its shorthand \
         or its `vars`"
    );
    let fixed = crate::ExtraLayers::none().with_overrides(
        "-e",
        crate::tests::vars(&[("mop_host", serde_json::json!("10.0.0.6"))]),
    );
    assert!(inventory.resolve("db'$(id)'", &fixed).is_ok());
}

/// `-e` values go through the same grammar as inventory values.
#[test]
fn extra_vars_meet_the_same_grammar() {
    let error = crate::parse_extra_var("mop_host=127.0.7.2\\'$(>/tmp/pwned)\\'")
        .expect_err("rejected")
        .to_string();
    assert!(
        error.starts_with("invalid extra variable `mop_host`: magic variable `mop_host` must be"),
        "{error}"
    );
    assert!(error.contains("hint: it contains `\\`"), "{error}");
    assert!(crate::parse_extra_var("mop_ssh_username=a;b").is_err());
    assert!(crate::parse_extra_var("mop_known_hosts_file=/kh\"x").is_err());
    assert!(crate::parse_extra_var("mop_host=2001:db8::1").is_ok());
}

#[test]
fn files_merge_in_order_and_conflicts_name_both_places() {
    let inventory = Inventory::parse_many(&[
        (
            "inventory/a.toml",
            "[groups.web.hosts]\n\"web2\" = \"\"\n[groups.web.vars]\nx = 1\n",
        ),
        (
            "inventory/b.toml",
            "[groups.web.hosts]\n\"web1\" = \"\"\n[groups.dc]\nchildren = [\"web\"]\n",
        ),
    ])
    .unwrap_or_else(|error| panic!("{error}"));
    let names: Vec<&str> = inventory.hosts().map(|host| host.name()).collect();
    assert_eq!(names, ["web2", "web1"]);
    assert_eq!(
        inventory.host("web1").expect("host").location().to_string(),
        "inventory/b.toml:2:1"
    );
    assert_eq!(inventory.group("web").expect("group").depth(), 2);
    assert_eq!(
        inventory.sources(),
        ["inventory/a.toml", "inventory/b.toml"]
    );

    let error = Inventory::parse_many(&[
        ("inventory/a.toml", "[groups.web.vars]\nx = 1\n"),
        ("inventory/b.toml", "[groups.web.vars]\nx = 2\n"),
    ])
    .expect_err("conflict");
    assert_eq!(
        error.to_string(),
        "inventory/b.toml:2:5: variable `x` of group `web` is already set at \
         inventory/a.toml:2:5\n  hint: set each variable of a group or host in one file only"
    );
}

#[test]
fn load_reads_a_directory_in_file_name_order() {
    let dir = std::env::temp_dir().join(format!("mop-inventory-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("b.toml"),
        "[groups.web.hosts]\n\"second\" = \"\"\n",
    )
    .expect("write");
    std::fs::write(dir.join("a.toml"), "[groups.web.hosts]\n\"first\" = \"\"\n").expect("write");
    std::fs::write(dir.join("notes.txt"), "not toml").expect("write");
    let loaded = Inventory::load(&dir);
    let empty_dir = dir.join("empty");
    std::fs::create_dir_all(&empty_dir).expect("temp dir");
    let empty = Inventory::load(&empty_dir);
    let missing = Inventory::load(&dir.join("missing.toml"));
    std::fs::remove_dir_all(&dir).expect("cleanup");

    let inventory = loaded.unwrap_or_else(|error| panic!("{error}"));
    let names: Vec<&str> = inventory.hosts().map(|host| host.name()).collect();
    assert_eq!(names, ["first", "second"]);
    let empty = empty.expect_err("no toml files").to_string();
    assert!(
        empty.starts_with("no inventory file (`*.toml`, `*.ini`, `*.yml`, `*.yaml`) in inventory"),
        "{empty}"
    );
    let missing = missing.expect_err("missing file").to_string();
    assert!(missing.starts_with("cannot read `"), "{missing}");
}
