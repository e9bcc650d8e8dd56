//! Ansible inventories: the fixtures in `tests/fixtures/ansible/` (INI, YAML, a script's JSON),
//! the `ansible_*` mapping, hostile values, every error of a file at once, and scripts run for
//! real.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::resolve;
use crate::ansible::script::run_list_with;
use crate::ansible::AnsibleFormat;
use crate::parse::{parse_formatted, SourceFormat};
use crate::{Inventory, InventoryError};

fn fixture(name: &str) -> (String, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ansible")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("read fixture");
    (format!("fixtures/{name}"), text)
}

fn ansible(name: &str, text: &str, format: AnsibleFormat) -> Result<Inventory, InventoryError> {
    parse_formatted(&[(name, text, SourceFormat::Ansible(format))])
}

fn valid(name: &str, text: &str, format: AnsibleFormat) -> Inventory {
    ansible(name, text, format).unwrap_or_else(|error| panic!("valid inventory: {error}"))
}

fn host_names(inventory: &Inventory) -> Vec<&str> {
    inventory.hosts().map(|host| host.name()).collect()
}

#[test]
fn ini_fixture_maps_groups_children_vars_and_connection() {
    let (name, text) = fixture("hosts.ini");
    let inventory = valid(&name, &text, AnsibleFormat::Ini);
    assert_eq!(
        host_names(&inventory),
        [
            "bastion.example.com",
            "web01.example.com",
            "web02.example.com",
            "web03.example.com",
            "web-canary.example.com",
            "db1.example.com"
        ]
    );
    assert_eq!(
        inventory.host("web02.example.com").expect("host").groups(),
        ["all", "datacenter", "webservers"]
    );
    assert_eq!(
        inventory
            .host("bastion.example.com")
            .expect("host")
            .groups(),
        ["all", "ungrouped"]
    );

    let bastion = resolve(&inventory, "bastion.example.com");
    assert_eq!(bastion.connection.address, "192.0.2.5");
    assert_eq!(
        bastion.connection.key.as_deref(),
        Some(Path::new("~/.ssh/deploy_ed25519"))
    );

    let web = resolve(&inventory, "web01.example.com");
    assert_eq!(web.connection.address, "web01.example.com");
    assert_eq!(web.connection.user.as_deref(), Some("deploy"));
    assert!(!web.connection.sudo);
    assert_eq!(web.vars["http_port"], json!("8080"), "INI values are text");
    assert_eq!(web.vars["motd"], json!("hello world"));
    assert!(!web.vars.contains_key("ansible_python_interpreter"));

    let canary = resolve(&inventory, "web-canary.example.com");
    assert_eq!(canary.connection.port, 2222);
    assert!(canary.connection.sudo, "ansible_become=yes");

    let db = resolve(&inventory, "db1.example.com");
    assert_eq!(db.connection.address, "192.0.2.21");
    assert_eq!(db.connection.sudo_user.as_deref(), Some("postgres"));
    assert_eq!(
        db.connection
            .sudo_password
            .as_ref()
            .map(|secret| secret.expose()),
        Some("s3cret pw")
    );
    assert!(!db.vars.contains_key("ansible_become_password"));
    assert_eq!(db.redacted_vars()["mop_sudo_password"], json!("<redacted>"));

    assert_eq!(
        inventory.warnings(),
        [
            "fixtures/hosts.ini:17:1: group `all`: Ansible variable `ansible_python_interpreter` \
          has no meaning in mop and is ignored"
        ]
    );
}

#[test]
fn yaml_fixture_keeps_types_and_nesting() {
    let (name, text) = fixture("inventory.yml");
    let inventory = valid(&name, &text, AnsibleFormat::Yaml);
    assert_eq!(
        host_names(&inventory),
        [
            "bastion.example.com",
            "web01.example.com",
            "web02.example.com",
            "web-canary.example.com",
            "db1.example.com"
        ]
    );
    assert_eq!(
        inventory.host("db1.example.com").expect("host").groups(),
        ["all", "datacenter", "dbservers"]
    );
    let web = resolve(&inventory, "web02.example.com");
    assert_eq!(web.connection.user.as_deref(), Some("deploy"));
    assert_eq!(web.vars["http_port"], json!(8080));
    assert_eq!(web.vars["tags"], json!(["web", "frontend"]));
    let canary = resolve(&inventory, "web-canary.example.com");
    assert_eq!(canary.connection.port, 2222);
    assert!(canary.connection.sudo);
    let db = resolve(&inventory, "db1.example.com");
    assert_eq!(db.connection.address, "192.0.2.21");
    assert_eq!(
        db.connection
            .sudo_password
            .as_ref()
            .map(|secret| secret.expose()),
        Some("s3cret pw")
    );
    assert_eq!(
        inventory
            .host("web01.example.com")
            .expect("host")
            .location()
            .to_string(),
        "fixtures/inventory.yml:11:9"
    );
}

#[test]
fn script_json_fixture_reads_meta_hostvars() {
    let (name, text) = fixture("list.json");
    let inventory = valid(&name, &text, AnsibleFormat::ScriptJson);
    assert_eq!(
        host_names(&inventory),
        ["web01.example.com", "web02.example.com", "db1.example.com"]
    );
    let web = resolve(&inventory, "web01.example.com");
    assert_eq!(web.connection.address, "192.0.2.11");
    assert_eq!(web.connection.port, 2222);
    assert_eq!(web.vars["rack"], json!("r1"));
    assert_eq!(web.vars["http_port"], json!(8080));
    let db = resolve(&inventory, "db1.example.com");
    assert_eq!(db.connection.user.as_deref(), Some("postgres"));
    assert!(db.connection.sudo);
    assert_eq!(
        inventory.host("db1.example.com").expect("host").groups(),
        ["all", "datacenter", "dbservers"]
    );
}

#[test]
fn ansible_and_toml_files_make_one_inventory() {
    let inventory = parse_formatted(&[
        (
            "inventory/hosts.ini",
            "[web]\nweb1 ansible_host=10.0.0.1\n",
            SourceFormat::Ansible(AnsibleFormat::Ini),
        ),
        (
            "inventory/more.toml",
            "[groups.web.vars]\nmop_ssh_username = \"deploy\"\n[groups.db.hosts]\n\"db1\" = \"\"\n",
            SourceFormat::Toml,
        ),
    ])
    .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(host_names(&inventory), ["web1", "db1"]);
    let web = resolve(&inventory, "web1");
    assert_eq!(web.connection.address, "10.0.0.1");
    assert_eq!(web.connection.user.as_deref(), Some("deploy"));
}

/// `(case name, format, text)`: each must be rejected; every error of the file is shown.
const BROKEN: &[(&str, AnsibleFormat, &str)] = &[
    ("ini: ansible_host breaking out of ProxyJump", AnsibleFormat::Ini, "[web]\nweb1 ansible_host=\"127.0.7.2\\\\'$(>/tmp/pwned)\\\\'\"\n"),
    ("ini: ansible_host that looks like an option", AnsibleFormat::Ini, "[web]\nweb1 ansible_host=-oProxyCommand=evil\n"),
    ("ini: user with a quote, key with an environment variable", AnsibleFormat::Ini, "[all:vars]\nansible_user=deploy'\nansible_ssh_private_key_file=${HOME}/.ssh/id\n"),
    ("ini: winrm and an unknown ansible variable", AnsibleFormat::Ini, "[win]\nwin1 ansible_connection=winrm ansible_winrm_transport=ntlm\n"),
    ("ini: ssh arguments are refused", AnsibleFormat::Ini, "[all:vars]\nansible_ssh_common_args=-o ProxyCommand=\"nc %h %p\"\n"),
    ("ini: become method mop does not have", AnsibleFormat::Ini, "[web]\nweb1 ansible_become=true ansible_become_method=dzdo\n"),
    ("ini: bad port, bad range, bad header, bad vars line", AnsibleFormat::Ini, "[web]\nweb1:ssh\nweb[3:1]\n[web:hostvars]\n[web:vars]\njust words\n"),
    ("ini: the same variable twice", AnsibleFormat::Ini, "[web]\nweb1 ansible_host=10.0.0.1 mop_host=10.0.0.2\n"),
    ("ini: password with a line break is not echoed", AnsibleFormat::Ini, "[web]\nweb1 ansible_become_password=\"hunter2\nsecond\"\n"),
    ("ini: unclosed quote", AnsibleFormat::Ini, "[web]\nweb1 motd='hello\n"),
    ("yaml: hostile ansible_host and a bad port", AnsibleFormat::Yaml, "all:\n  hosts:\n    web1:\n      ansible_host: \"a b$(id)\"\n      ansible_port: 99999\n"),
    ("yaml: unknown group key", AnsibleFormat::Yaml, "all:\n  children:\n    web:\n      host:\n        web1:\n"),
    ("yaml: invalid yaml", AnsibleFormat::Yaml, "all:\n  hosts: [web1\n"),
    ("yaml: not a mapping", AnsibleFormat::Yaml, "- web1\n- web2\n"),
    ("yaml: connection local", AnsibleFormat::Yaml, "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"),
    ("json: no _meta", AnsibleFormat::ScriptJson, "{\"web\": [\"web1\"]}"),
    ("json: invalid", AnsibleFormat::ScriptJson, "{\"web\": [\"web1\"],}"),
    ("json: hostile hostvars", AnsibleFormat::ScriptJson, "{\"web\": {\"hosts\": [\"web1\"]}, \"_meta\": {\"hostvars\": {\"web1\": {\"ansible_host\": \"x\\\"; touch /tmp/p\", \"ansible_user\": \"$(id)\"}}}}"),
];

#[test]
fn broken_ansible_inventories() {
    let mut report = String::new();
    for (name, format, text) in BROKEN {
        let file = match format {
            AnsibleFormat::Ini => "hosts.ini",
            AnsibleFormat::Yaml => "inventory.yml",
            AnsibleFormat::ScriptJson => "./dynamic.sh",
        };
        let message = match ansible(file, text, *format) {
            Ok(_) => panic!("{name}: should be rejected"),
            Err(error) => error.to_string(),
        };
        assert!(
            message.starts_with(file),
            "{name}: every error names the file, got {message}"
        );
        assert!(!message.contains("hunter2"), "{name}: {message}");
        report.push_str(&format!("### {name}\n{text}\n---\n{message}\n\n"));
    }
    insta::assert_snapshot!("broken_ansible_inventories", report);
}

#[test]
fn every_error_of_a_file_is_reported_at_once() {
    let error = ansible(
        "hosts.ini",
        "[web]\nweb1 ansible_host=a$b\nweb2 ansible_port=0\n[db]\ndb1 ansible_connection=docker\n",
        AnsibleFormat::Ini,
    )
    .expect_err("three errors");
    let InventoryError::Several(errors) = &error else {
        panic!("expected several errors, got {error}");
    };
    let lines: Vec<usize> = errors
        .iter()
        .map(|error| error.location().expect("a place").line)
        .collect();
    assert_eq!(lines, [2, 3, 5]);
}

/// A temporary directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "mop-inventory-ansible-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    /// Writes `text` at `name` inside, with its missing parent directories.
    fn write(&self, name: &str, text: &str) {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(path, text).expect("write");
    }

    /// Written through a child process: these tests run the script in this process.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.0.join(name);
        mop_testhosts::write_executable(&path, format!("#!/bin/sh\n{body}\n").as_bytes(), 0o755)
            .expect("write script");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn load_tells_formats_apart_and_runs_only_a_named_script() {
    let dir = TempDir::new("load");
    let inventory_dir = dir.0.join("inventory");
    std::fs::create_dir_all(&inventory_dir).expect("dir");
    std::fs::write(
        inventory_dir.join("a.ini"),
        "[web]\nweb1 ansible_port=2201\n",
    )
    .expect("write");
    std::fs::write(
        inventory_dir.join("b.yml"),
        "all:\n  children:\n    db:\n      hosts:\n        db1:\n",
    )
    .expect("write");
    std::fs::write(
        inventory_dir.join("c.toml"),
        "[groups.web.vars]\nrole = \"web\"\n",
    )
    .expect("write");
    let marker = dir.0.join("ran");
    let body = format!(
        "touch '{}'\necho '{{\"_meta\": {{\"hostvars\": {{}}}}, \"x\": [\"x1\"]}}'",
        marker.display()
    );
    let script = dir.script("d.sh", &body);
    std::fs::copy(&script, inventory_dir.join("d.sh")).expect("copy script");

    let inventory = Inventory::load(&inventory_dir).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(host_names(&inventory), ["web1", "db1"]);
    assert_eq!(resolve(&inventory, "web1").vars["role"], json!("web"));
    assert!(!marker.exists(), "an executable in a directory is not run");
    assert!(
        inventory.warnings()[0].contains("d.sh` is executable and is not run"),
        "{:?}",
        inventory.warnings()
    );

    let inventory = Inventory::load(&script).unwrap_or_else(|error| panic!("{error}"));
    assert!(marker.exists(), "a script named as the inventory is run");
    assert_eq!(host_names(&inventory), ["x1"]);

    // No extension: INI or TOML by the first line.
    let plain = dir.0.join("hosts");
    std::fs::write(&plain, "[web]\nweb7 ansible_host=10.0.0.7\n").expect("write");
    let inventory = Inventory::load(&plain).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(resolve(&inventory, "web7").connection.address, "10.0.0.7");
    std::fs::write(&plain, "[groups.web.hosts]\n\"web8\" = \"\"\n").expect("write");
    let inventory = Inventory::load(&plain).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(host_names(&inventory), ["web8"]);
}

#[test]
fn a_failing_script_shows_its_status_and_stderr() {
    let dir = TempDir::new("fail");
    let script = dir.script("inv.sh", "echo 'cannot reach the cloud API' >&2\nexit 3");
    let message = run_list_with(&script, Duration::from_secs(10), 1024)
        .expect_err("exit 3")
        .to_string();
    assert_eq!(
        message,
        format!(
            "dynamic inventory `{}`: `--list` exited with status 3\n  stderr: cannot reach the \
             cloud API",
            script.display()
        )
    );
}

#[test]
fn a_script_gets_list_and_no_shell() {
    let dir = TempDir::new("argv");
    let script = dir.script(
        "inv.sh",
        "printf '{\"_meta\":{\"hostvars\":{}},\"args\":[\"%s\"]}' \"$*\"",
    );
    let output = run_list_with(&script, Duration::from_secs(10), 1024).expect("runs");
    assert_eq!(
        output,
        "{\"_meta\":{\"hostvars\":{}},\"args\":[\"--list\"]}"
    );
}

#[test]
fn a_slow_script_is_stopped() {
    let dir = TempDir::new("slow");
    let script = dir.script("inv.sh", "sleep 30");
    let started = std::time::Instant::now();
    let message = run_list_with(&script, Duration::from_secs(1), 1024)
        .expect_err("timeout")
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(10), "{message}");
    assert!(message.contains("did not finish within 1 s"), "{message}");
}

#[test]
fn a_script_output_is_bounded() {
    let dir = TempDir::new("big");
    let script = dir.script("inv.sh", "yes '{}'");
    let message = run_list_with(&script, Duration::from_secs(10), 1024)
        .expect_err("too much")
        .to_string();
    assert!(
        message.contains("printed more than 1024 bytes"),
        "{message}"
    );
}

#[test]
fn a_script_output_with_hostile_values_is_refused_naming_script_and_host() {
    let dir = TempDir::new("hostile");
    let script = dir.script(
        "inv.sh",
        "echo '{\"web\": [\"web1\"], \"_meta\": {\"hostvars\": {\"web1\": {\"ansible_host\": \"$(touch /tmp/x)\"}}}}'",
    );
    let message = Inventory::load(&script)
        .expect_err("hostile ansible_host")
        .to_string();
    assert!(
        message.starts_with(&format!(
            "{}: host `web1`: `ansible_host`: magic variable `mop_host` must be",
            script.display()
        )),
        "{message}"
    );
}

#[test]
fn ansible_group_vars_and_host_vars_are_read_like_the_inventory() {
    let dir = TempDir::new("group-vars");
    dir.write("hosts.ini", "[web]\nweb1\nweb2\n[db]\ndb1\n");
    dir.write(
        "group_vars/web.yml",
        "ansible_user: deploy\nhttp_port: 8080\nsites: [a, b]\n",
    );
    // Ansible's split form: a directory per group, read in name order, any format.
    dir.write("group_vars/all/main.yml", "---\nntp_server: ntp.internal\n");
    dir.write("group_vars/all/more.toml", "motd = \"hello\"\n");
    dir.write(
        "host_vars/web2.json",
        "{\"ansible_port\": 2222, \"role\": \"canary\"}\n",
    );
    dir.write("group_vars/webb.yml", "typo: true\n");
    let inventory =
        Inventory::load(&dir.0.join("hosts.ini")).unwrap_or_else(|error| panic!("{error}"));
    let web1 = resolve(&inventory, "web1");
    assert_eq!(web1.connection.user.as_deref(), Some("deploy"));
    assert_eq!(web1.vars["http_port"], json!(8080));
    assert_eq!(web1.vars["sites"], json!(["a", "b"]));
    assert_eq!(web1.vars["ntp_server"], json!("ntp.internal"));
    assert_eq!(web1.vars["motd"], json!("hello"));
    assert_eq!(web1.connection.port, 22);
    let web2 = resolve(&inventory, "web2");
    assert_eq!(web2.connection.port, 2222);
    assert_eq!(web2.vars["role"], json!("canary"));
    let db1 = resolve(&inventory, "db1");
    assert_eq!(db1.connection.user, None);
    assert_eq!(db1.vars["motd"], json!("hello"));
    assert_eq!(
        inventory.warnings(),
        [format!(
            "`{}`: no group `webb` in the inventory, its variables are not used\n  hint: did you \
             mean `web.yml`?",
            dir.0.join("group_vars/webb.yml").display()
        )]
    );
}

#[test]
fn broken_ansible_vars_files_are_every_one_reported_with_their_place() {
    let dir = TempDir::new("group-vars-bad");
    dir.write("hosts.ini", "[web]\nweb1\n");
    dir.write(
        "group_vars/web.yml",
        "ansible_port: ssh\nansible_connection: winrm\n",
    );
    dir.write("group_vars/all.yml", "- a list\n");
    dir.write(
        "host_vars/web1.yml",
        "$ANSIBLE_VAULT;1.1;AES256\n6162636465\n",
    );
    let message = Inventory::load(&dir.0.join("hosts.ini"))
        .expect_err("broken vars files")
        .to_string();
    let at = |name: &str| dir.0.join(name).display().to_string();
    for expected in [
        format!(
            "{}:1:1: a variable file must be a mapping",
            at("group_vars/all.yml")
        ),
        format!(
            "{}:1:15: group `web`: `ansible_port`:",
            at("group_vars/web.yml")
        ),
        format!(
            "{}:2:21: group `web`: `ansible_connection=winrm`",
            at("group_vars/web.yml")
        ),
        format!(
            "{}:1:1: an Ansible Vault file: mop reads vaults in the age format",
            at("host_vars/web1.yml")
        ),
    ] {
        assert!(
            message.contains(&expected),
            "missing `{expected}` in:\n{message}"
        );
    }
}

/// The hint for an executable that is not run names it as one shell word, whatever its name.
#[test]
fn the_hint_for_an_unrun_script_is_shell_quoted() {
    let dir = TempDir::new("hint");
    dir.write("inventory/hosts.toml", "[groups.web.hosts]\nweb1 = \"\"\n");
    let script = dir.script("inventory/it's $(x).sh", "exit 1");
    let inventory = Inventory::load(&dir.0.join("inventory")).unwrap_or_else(|e| panic!("{e}"));
    let warning = &inventory.warnings()[0];
    let quoted = warning
        .split_once("hint: `-i ")
        .and_then(|(_, rest)| rest.strip_suffix('`'))
        .unwrap_or_else(|| panic!("{warning}"));
    let said = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s {quoted}"))
        .output()
        .expect("sh runs");
    assert_eq!(
        String::from_utf8_lossy(&said.stdout),
        script.to_string_lossy(),
        "{warning}"
    );
}
