//! Loops and templated choice fields through real pushes and `mop local`: per-item events
//! named with the item, `register` collecting every item, an expression loop over registered
//! results, a handler notified once by several items, a templated `state`, a templated choice
//! that renders to nonsense on one host, and `item` outside a loop refused before any login.

use mop_testhosts::TestHostsBuilder;

use crate::support::{run_json, tree_snapshot, Sandbox};

const LOOP_POLICY: &str = r#"
[vars]
out = "@OUT@"
conf_state = "present"

[[roles]]
name = "app"
groups = ["web"]

[[roles.resources]]
type = "directory"
path = "{{ out }}/{{ host.name }}/{{ item }}"
mode = "0750"
loop = ["conf", "data"]

[[roles.resources]]
type = "file"
path = "{{ out }}/{{ host.name }}/conf/{{ item.name }}.conf"
content = "{{ item.text }} on {{ host.name }} (#{{ loop_index }})\n"
mode = "0640"
state = "{{ conf_state }}"
loop = [{ name = "a", text = "alpha" }, { name = "b", text = "beta" }, { name = "skip", text = "never" }]
label = "{{ item.name }}"
when = "item.name != 'skip'"
register = "confs"
notify = "count"

[[roles.resources]]
type = "file"
path = "{{ out }}/{{ host.name }}/data/{{ written.item.name }}.seen"
content = "changed={{ written.changed }}\n"
loop = "{{ confs.results | rejectattr('skipped') | list }}"
loop_var = "written"
label = "{{ written.item.name }}"

[[roles.handlers]]
name = "count"
type = "shell"
cmd = "echo handled >> {{ out }}/{{ host.name }}/handler.log"
"#;

#[test]
fn loops_register_and_notify_once_over_ssh() {
    let sandbox = Sandbox::start("loops", TestHostsBuilder::new().hosts(2).group("web"));
    let policy = sandbox.policy("loops", LOOP_POLICY);

    let apply = sandbox.push(&policy, &["--apply"]);
    apply.assert_exit(0);
    for host in ["host1", "host2"] {
        let shown: Vec<(String, String)> = apply
            .resources_of(host)
            .map(|event| {
                let name = event["resource"].as_str().unwrap_or_default();
                let name = name.replace(&sandbox.out.display().to_string(), "<out>");
                (
                    name,
                    event["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = [
            (
                format!("directory <out>/{host}/conf [item=conf]"),
                "changed",
            ),
            (
                format!("directory <out>/{host}/data [item=data]"),
                "changed",
            ),
            (format!("file <out>/{host}/conf/a.conf [item=a]"), "changed"),
            (format!("file <out>/{host}/conf/b.conf [item=b]"), "changed"),
            (
                format!("file <out>/{host}/conf/skip.conf [item=skip]"),
                "skipped",
            ),
            (
                format!("file <out>/{host}/data/a.seen [written=a]"),
                "changed",
            ),
            (
                format!("file <out>/{host}/data/b.seen [written=b]"),
                "changed",
            ),
            ("count".to_owned(), "changed"),
        ]
        .into_iter()
        .map(|(name, status)| (name, status.to_owned()))
        .collect();
        assert_eq!(shown, expected, "{}", apply.describe());
        let dir = sandbox.out.join(host);
        assert_eq!(
            std::fs::read_to_string(dir.join("conf/b.conf")).expect("b.conf"),
            format!("beta on {host} (#2)\n")
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("data/a.seen")).expect("a.seen"),
            "changed=True\n"
        );
        // Two items changed, the handler ran once.
        assert_eq!(
            std::fs::read_to_string(dir.join("handler.log")).expect("handler log"),
            "handled\n"
        );
        assert!(!dir.join("conf/skip.conf").exists());
    }
    let converged = tree_snapshot(&sandbox.out);

    // Converged: nothing changes, the handler is not notified, `.seen` files record that.
    let again = sandbox.push(&policy, &["--apply"]);
    again.assert_exit(0);
    let changed: Vec<_> = again
        .with_status("changed")
        .into_iter()
        .filter(|event| {
            !event["resource"]
                .as_str()
                .unwrap_or("")
                .ends_with(".seen [written=a]")
        })
        .filter(|event| {
            !event["resource"]
                .as_str()
                .unwrap_or("")
                .ends_with(".seen [written=b]")
        })
        .collect();
    assert!(changed.is_empty(), "{}", again.describe());
    for host in ["host1", "host2"] {
        let dir = sandbox.out.join(host);
        assert_eq!(
            std::fs::read_to_string(dir.join("handler.log")).expect("handler log"),
            "handled\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("data/b.seen")).expect("b.seen"),
            "changed=False\n"
        );
    }

    // A templated `state` from `-e`: every item is removed.
    let removed = sandbox.push(&policy, &["--apply", "-e", "conf_state=absent"]);
    removed.assert_exit(0);
    for host in ["host1", "host2"] {
        assert!(!sandbox.out.join(host).join("conf/a.conf").exists());
        assert!(!sandbox.out.join(host).join("conf/b.conf").exists());
    }
    assert_ne!(tree_snapshot(&sandbox.out), converged);
    sandbox.assert_hosts_clean();
}

const CHOICE_POLICY: &str = r#"
[vars]
out = "@OUT@"
wanted = "present"

[[roles]]
name = "choice"
groups = ["web"]

[[roles.resources]]
type = "directory"
path = "{{ out }}/{{ host.name }}"
state = "{{ wanted }}"
"#;

#[test]
fn a_templated_choice_rendering_to_nonsense_fails_that_host_only() {
    let sandbox = Sandbox::start("choice", TestHostsBuilder::new().hosts(2).group("web"));
    sandbox.set_inventory_extra("", "[hosts.host2.vars]\nwanted = \"gone\"\n");
    let policy = sandbox.policy("choice", CHOICE_POLICY);
    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(1);
    assert!(sandbox.out.join("host1").is_dir(), "{}", run.describe());
    assert!(!sandbox.out.join("host2").exists());
    let failed = run.with_status("failed");
    assert_eq!(failed.len(), 1, "{}", run.describe());
    assert_eq!(failed[0]["host"], "host2");
    assert_eq!(
        failed[0]["message"],
        "field `state`: invalid value `gone`, expected one of `present`, `absent`"
    );
    // The text output names the host with the message.
    let text = sandbox.push_text(&policy, &["--apply"]);
    assert!(
        text.stdout.contains("host2") && text.stdout.contains("invalid value `gone`"),
        "{}",
        text.describe()
    );
    sandbox.assert_hosts_clean();
}

#[test]
fn item_outside_a_loop_is_refused_before_any_login() {
    let sandbox = Sandbox::start("loopbad", TestHostsBuilder::new().hosts(1).group("web"));
    let policy = sandbox.policy(
        "bad",
        r#"
[[roles]]
name = "bad"
groups = ["web"]

[[roles.resources]]
type = "echo"
msg = "{{ item }}"

"#,
    );
    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(2);
    assert!(
        run.stderr.contains(":8:7: role `bad`: resource #1 (echo {{ item }}): field `msg`: `item` is used outside a loop"),
        "{}",
        run.describe()
    );
    let policy = sandbox.policy(
        "bad_loop",
        r#"
[[roles]]
name = "bad"
groups = ["web"]

[[roles.resources]]
type = "echo"
msg = "{{ item }}"
loop = 7
"#,
    );
    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(2);
    assert!(
        run.stderr.contains(":9:8: role `bad`: resource #1 (echo {{ item }}): field `loop`: expected a list or a \"{{ expression }}\" string, found a number"),
        "{}",
        run.describe()
    );
    assert_eq!(sandbox.logins("host1"), 0, "a host was contacted");
}

#[test]
fn loops_through_mop_local() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path().join("root");
    let policy = dir.path().join("local.toml");
    std::fs::write(
        &policy,
        r#"
[[roles]]
name = "local"

[[roles.resources]]
type = "directory"
path = "{{ root }}"

[[roles.resources]]
type = "file"
path = "{{ root }}/{{ item.key }}"
content = "{{ item.value }}\n"
loop = "{{ {'one': 1, 'two': 2} }}"
"#,
    )
    .expect("write policy");
    let root_var = format!("root={}", root.display());
    let run = run_json([
        "local".as_ref(),
        policy.as_os_str(),
        "--apply".as_ref(),
        "-e".as_ref(),
        root_var.as_ref(),
    ]);
    run.assert_exit(0);
    assert_eq!(
        std::fs::read_to_string(root.join("two")).expect("two"),
        "2\n"
    );
    let names: Vec<&str> = run
        .with_status("changed")
        .iter()
        .filter(|event| event["index"] == 1)
        .filter_map(|event| event["resource"].as_str())
        .map(|name| name.rsplit(" [").next().unwrap_or(name))
        .collect();
    assert_eq!(
        names,
        [
            "item={\"key\":\"one\",\"value\":1}]",
            "item={\"key\":\"two\",\"value\":2}]"
        ],
        "{}",
        run.describe()
    );
}
