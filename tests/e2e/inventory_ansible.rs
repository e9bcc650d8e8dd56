//! Ansible inventories as they are: an INI file, a YAML file beside a TOML file in one
//! directory, and an executable script printing `--list` JSON drive the real `mop inventory`,
//! `mop push --check` and `mop run` against real sshd hosts; a hostile script inventory is
//! refused before any host is contacted.

use std::ffi::OsString;
use std::path::Path;

use mop_testhosts::{TestHostsBuilder, TEST_USER};
use serde_json::Value;

use crate::support::{run_mop, Output, Sandbox};

const MARK_POLICY: &str = r#"
[[roles]]
name = "mark"
groups = ["web"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}.txt"
content = "reached {{ host.name }} on {{ http_port }}\n"
"#;

fn mop_with(inventory: &Path, args: &[&str]) -> Output {
    mop_with_all(&[inventory], args)
}

/// `mop ARGS[0] -i A -i B ... ARGS[1..]`.
fn mop_with_all(inventories: &[&Path], args: &[&str]) -> Output {
    run_mop(with_inventories(args[0], inventories, &args[1..]))
}

fn with_inventories(command: &str, inventories: &[&Path], rest: &[&str]) -> Vec<OsString> {
    let mut all: Vec<OsString> = vec![command.into()];
    for inventory in inventories {
        all.extend(["-i".into(), OsString::from(inventory)]);
    }
    all.extend(rest.iter().map(Into::into));
    all
}

/// `mop inventory -i INVENTORY --json`: the host names, and each host's variables by name.
fn inventory_json(inventory: &Path) -> (Vec<String>, Vec<Value>) {
    inventory_json_all(&[inventory])
}

fn inventory_json_all(inventories: &[&Path]) -> (Vec<String>, Vec<Value>) {
    let output = mop_with_all(inventories, &["inventory", "--json"]);
    assert_eq!(output.exit, 0, "{}", output.describe());
    let value: Value = serde_json::from_str(&output.stdout).expect("inventory --json is JSON");
    let hosts = value["hosts"].as_array().expect("hosts").clone();
    let names = hosts
        .iter()
        .map(|host| host["name"].as_str().expect("name").to_string())
        .collect();
    (names, hosts)
}

/// `mop push POLICY -i INVENTORY --check`: both hosts reached, nothing written.
fn check_push(sandbox: &Sandbox, inventory: &Path) {
    check_push_all(sandbox, &[inventory]);
}

fn check_push_all(sandbox: &Sandbox, inventories: &[&Path]) {
    let policy = sandbox.policy("mark", MARK_POLICY);
    let policy = policy.to_str().expect("UTF-8 path");
    let args = with_inventories("push", inventories, &[policy, "--check", "--json"]);
    let run = crate::support::run_json(args);
    run.assert_exit(0);
    assert_eq!(
        run.summary_hosts(),
        ["host1", "host2"],
        "{}",
        run.describe()
    );
    for host in ["host1", "host2"] {
        assert_eq!(run.total(host, "changed"), 1, "{}", run.describe());
        assert!(!sandbox.out.join(format!("{host}.txt")).exists());
    }
}

/// `mop run web -i INVENTORY -- ...`: each host answers as the test user, on its own address.
fn run_on_hosts(inventory: &Path) {
    run_on_hosts_all(&[inventory]);
}

fn run_on_hosts_all(inventories: &[&Path]) {
    let output = mop_with_all(
        inventories,
        &[
            "run",
            "web",
            "--json",
            "--",
            "echo {{ host.name }} $(id -un) {{ http_port }}",
        ],
    );
    assert_eq!(output.exit, 0, "{}", output.describe());
    let mut lines: Vec<String> = output
        .stdout
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).expect("a JSON line");
            value["stdout"].as_str().expect("stdout").to_string()
        })
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            format!("host1 {TEST_USER} 8080\n"),
            format!("host2 {TEST_USER} 8080\n")
        ]
    );
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text)
        .unwrap_or_else(|error| panic!("cannot write `{}`: {error}", path.display()));
}

/// An inventory script, written through a child process so that no write descriptor of this
/// process (inherited by another test's fork) makes mop's exec of it fail with "Text file busy".
fn write_script(path: &Path, text: &str) {
    mop_testhosts::write_executable(path, text.as_bytes(), 0o755)
        .unwrap_or_else(|error| panic!("cannot write `{}`: {error}", path.display()));
}

#[test]
fn ini_inventory_drives_inventory_push_and_run() {
    let sandbox = Sandbox::start("ansible-ini", TestHostsBuilder::new().hosts(2).group("web"));
    let (host1, host2) = (sandbox.host("host1"), sandbox.host("host2"));
    let inventory = sandbox.dir().join("hosts.ini");
    write(
        &inventory,
        &format!(
            "# Ansible's classic format\n\
             [web]\n\
             host1 ansible_host={} ansible_port={}\n\
             host2 ansible_host={} ansible_port={} ansible_python_interpreter=/usr/bin/python3\n\
             \n\
             [dc:children]\n\
             web\n\
             \n\
             [all:vars]\n\
             ansible_user={TEST_USER}\n\
             ansible_ssh_private_key_file={}\n\
             ansible_connection=ssh\n\
             mop_known_hosts_file={}\n\
             mop_agent_dir={}\n\
             \n\
             [web:vars]\n\
             http_port=8080\n",
            host1.addr,
            host1.port,
            host2.addr,
            host2.port,
            sandbox.hosts.client_key().display(),
            sandbox.hosts.known_hosts().display(),
            sandbox.agent_dir,
        ),
    );

    let (names, hosts) = inventory_json(&inventory);
    assert_eq!(names, ["host1", "host2"]);
    assert_eq!(hosts[0]["groups"], serde_json::json!(["all", "dc", "web"]));
    assert_eq!(hosts[0]["vars"]["mop_host"], host1.addr.to_string());
    assert_eq!(hosts[0]["vars"]["mop_port"], host1.port);
    assert_eq!(hosts[0]["vars"]["mop_ssh_username"], TEST_USER);
    // The interpreter means nothing to mop: said once, naming file, line and host.
    let output = mop_with(&inventory, &["inventory"]);
    assert!(
        output
            .stderr
            .contains(&format!("{}:4:", inventory.display()))
            && output.stderr.contains(
                "host `host2`: Ansible variable `ansible_python_interpreter` has no meaning in mop"
            ),
        "{}",
        output.describe()
    );

    check_push(&sandbox, &inventory);
    run_on_hosts(&inventory);
    sandbox.assert_hosts_clean();
}

#[test]
fn yaml_inventory_beside_toml_drives_push_and_run() {
    let sandbox = Sandbox::start(
        "ansible-yaml",
        TestHostsBuilder::new().hosts(2).group("web"),
    );
    let (host1, host2) = (sandbox.host("host1"), sandbox.host("host2"));
    let dir = sandbox.dir().join("mixed");
    std::fs::create_dir_all(&dir).expect("create the inventory directory");
    write(
        &dir.join("hosts.yml"),
        &format!(
            "all:\n  vars:\n    ansible_user: {TEST_USER}\n    ansible_ssh_private_key_file: {}\n  children:\n    web:\n      hosts:\n        host1:\n          ansible_host: {}\n          ansible_port: {}\n        host2:\n          ansible_host: {}\n          ansible_port: {}\n      vars:\n        http_port: 8080\n",
            sandbox.hosts.client_key().display(),
            host1.addr,
            host1.port,
            host2.addr,
            host2.port,
        ),
    );
    // The TOML half of the same inventory: what Ansible has no name for.
    write(
        &dir.join("mop.toml"),
        &format!(
            "[groups.all.vars]\nmop_known_hosts_file = \"{}\"\nmop_agent_dir = \"{}\"\n",
            sandbox.hosts.known_hosts().display(),
            sandbox.agent_dir
        ),
    );

    let (names, hosts) = inventory_json(&dir);
    assert_eq!(names, ["host1", "host2"]);
    assert_eq!(
        hosts[1]["vars"]["http_port"], 8080,
        "YAML keeps the integer"
    );
    assert_eq!(hosts[1]["vars"]["mop_port"], host2.port);

    check_push(&sandbox, &dir);
    run_on_hosts(&dir);
    sandbox.assert_hosts_clean();
}

#[test]
fn script_inventory_drives_inventory_push_and_run() {
    let sandbox = Sandbox::start(
        "ansible-script",
        TestHostsBuilder::new().hosts(2).group("web"),
    );
    let (host1, host2) = (sandbox.host("host1"), sandbox.host("host2"));
    let script = sandbox.dir().join("dynamic-inventory");
    let list = serde_json::json!({
        "web": {"hosts": ["host1", "host2"], "vars": {"http_port": 8080}},
        "all": {
            "children": ["web", "ungrouped"],
            "vars": {
                "ansible_user": TEST_USER,
                "ansible_ssh_private_key_file": sandbox.hosts.client_key(),
                "mop_known_hosts_file": sandbox.hosts.known_hosts(),
                "mop_agent_dir": sandbox.agent_dir,
            }
        },
        "_meta": {"hostvars": {
            "host1": {"ansible_host": host1.addr.to_string(), "ansible_port": host1.port},
            "host2": {"ansible_host": host2.addr.to_string(), "ansible_port": host2.port},
        }}
    });
    // The script also proves it got `--list` and nothing else.
    write_script(
        &script,
        &format!(
            "#!/bin/sh\n[ \"$*\" = --list ] || {{ echo \"unexpected arguments: $*\" >&2; exit 2; }}\ncat <<'EOF'\n{list}\nEOF\n"
        ),
    );

    let (names, hosts) = inventory_json(&script);
    assert_eq!(names, ["host1", "host2"]);
    assert_eq!(hosts[0]["vars"]["mop_host"], host1.addr.to_string());

    check_push(&sandbox, &script);
    run_on_hosts(&script);
    sandbox.assert_hosts_clean();
}

/// Ansible's repeated `-i`: a dynamic script that knows only where the hosts are, and a TOML
/// inventory in another directory (with an Ansible `group_vars/web.yml` beside it) that says
/// how to reach them and what they serve, read as one inventory.
#[test]
fn a_script_and_a_toml_inventory_combine_with_repeated_i() {
    let sandbox = Sandbox::start(
        "ansible-combined",
        TestHostsBuilder::new().hosts(2).group("web"),
    );
    let (host1, host2) = (sandbox.host("host1"), sandbox.host("host2"));
    let script = sandbox.dir().join("cloud-inventory");
    let list = serde_json::json!({
        "web": {"hosts": ["host1", "host2"]},
        "_meta": {"hostvars": {
            "host1": {"ansible_host": host1.addr.to_string(), "ansible_port": host1.port},
            "host2": {"ansible_host": host2.addr.to_string(), "ansible_port": host2.port},
        }}
    });
    write_script(&script, &format!("#!/bin/sh\ncat <<'EOF'\n{list}\nEOF\n"));
    let site = sandbox.dir().join("site");
    std::fs::create_dir_all(site.join("group_vars")).expect("create group_vars");
    let toml = site.join("connection.toml");
    write(
        &toml,
        &format!(
            "[groups.all.vars]\nmop_ssh_username = \"{TEST_USER}\"\nmop_ssh_key = \"{}\"\n\
             mop_known_hosts_file = \"{}\"\nmop_agent_dir = \"{}\"\n",
            sandbox.hosts.client_key().display(),
            sandbox.hosts.known_hosts().display(),
            sandbox.agent_dir
        ),
    );
    write(
        &site.join("group_vars/web.yml"),
        "---\n# Ansible's group_vars, as they are\nhttp_port: 8080\n",
    );

    let inventories = [script.as_path(), toml.as_path()];
    let (names, hosts) = inventory_json_all(&inventories);
    assert_eq!(names, ["host1", "host2"]);
    assert_eq!(hosts[1]["vars"]["mop_port"], host2.port);
    assert_eq!(hosts[1]["vars"]["mop_ssh_username"], TEST_USER);
    assert_eq!(hosts[1]["vars"]["http_port"], 8080);
    // Alone, the script does not say how to log in: the TOML half is what makes it work.
    let (_, alone) = inventory_json(&script);
    assert!(alone[0]["vars"].get("mop_ssh_username").is_none());

    check_push_all(&sandbox, &inventories);
    run_on_hosts_all(&inventories);
    sandbox.assert_hosts_clean();
}

#[test]
fn hostile_or_failing_script_inventories_contact_no_host() {
    let sandbox = Sandbox::start(
        "ansible-hostile",
        TestHostsBuilder::new().hosts(1).group("web"),
    );
    let host1 = sandbox.host("host1");
    let marker = sandbox.dir().join("pwned");
    let script = sandbox.dir().join("hostile-inventory");
    let hostile = format!("127.0.0.1\\\\'$(touch {})\\\\'", marker.display());
    write_script(
        &script,
        &format!(
            "#!/bin/sh\ncat <<'EOF'\n{{\"web\": [\"host1\"], \"_meta\": {{\"hostvars\": {{\"host1\": {{\"ansible_host\": \"{hostile}\", \"ansible_port\": {}}}}}}}}}\nEOF\n",
            host1.port
        ),
    );
    let logins_before = sandbox.logins("host1");
    let output = mop_with(&script, &["run", "web", "--", "true"]);
    assert_eq!(output.exit, 2, "{}", output.describe());
    assert!(
        output.stderr.contains(&format!(
            "{}: host `host1`: `ansible_host`: magic variable `mop_host` must be",
            script.display()
        )),
        "{}",
        output.describe()
    );
    let policy = sandbox.policy("mark", MARK_POLICY);
    let push = run_mop([
        OsString::from("push"),
        policy.into(),
        "-i".into(),
        script.clone().into(),
        "--check".into(),
    ]);
    assert_eq!(push.exit, 2, "{}", push.describe());
    assert!(!marker.exists(), "a value ran a command");

    // A script that fails: its status and stderr are shown.
    write_script(
        &script,
        "#!/bin/sh\necho 'cloud API: 403 forbidden' >&2\nexit 4\n",
    );
    let output = mop_with(&script, &["inventory"]);
    assert_eq!(output.exit, 2, "{}", output.describe());
    assert!(
        output.stderr.contains("`--list` exited with status 4")
            && output.stderr.contains("stderr: cloud API: 403 forbidden"),
        "{}",
        output.describe()
    );
    assert_eq!(
        sandbox.logins("host1"),
        logins_before,
        "no host was contacted"
    );
}
