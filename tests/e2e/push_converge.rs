//! `mop push` converging real hosts: check on fresh hosts changes nothing, apply converges,
//! a second apply and a later check find nothing to do, and `--limit-*` touch only the
//! selected hosts.

use mop_testhosts::TestHostsBuilder;

use crate::support::{tree_snapshot, Sandbox};

const BASE_POLICY: &str = r#"
[vars]
out = "@OUT@"
port = 8080

[[roles]]
name = "base"
groups = ["web"]

[[roles.resources]]
type = "directory"
path = "{{ out }}/{{ host.name }}"
mode = "0750"

[[roles.resources]]
type = "file"
path = "{{ out }}/{{ host.name }}/motd"
content = "managed by mop on {{ host.name }}, port {{ port }}\n"
mode = "0640"

[[roles.resources]]
type = "line"
path = "{{ out }}/{{ host.name }}/app.conf"
regexp = '^port\s*='
line = "port = {{ port }}"
create = true

[[roles.resources]]
type = "link"
path = "{{ out }}/{{ host.name }}/current"
target = "motd"

[[roles.resources]]
name = "stamp"
type = "shell"
cmd = "echo stamped {{ host.name }} > {{ out }}/{{ host.name }}/stamp"
creates = "{{ out }}/{{ host.name }}/stamp"
"#;

/// Resources of [`BASE_POLICY`], all of which change on a fresh host.
const BASE_RESOURCES: u64 = 5;

#[test]
fn check_apply_apply_check_on_three_hosts() {
    let sandbox = Sandbox::start("converge", TestHostsBuilder::new().hosts(3).group("web"));
    // An inventory variable reaches the host's templates and beats the policy's.
    sandbox.set_inventory_extra("", "[hosts.host2.vars]\nport = 9090\n");
    let policy = sandbox.policy("base", BASE_POLICY);
    let hosts = ["host1", "host2", "host3"];
    let empty = tree_snapshot(&sandbox.out);

    // --check on fresh hosts: every resource would change, nothing is written.
    let check = sandbox.push(&policy, &["--check"]);
    check.assert_exit(0);
    assert_eq!(check.summary()["check"], true);
    assert_eq!(check.summary_hosts(), hosts);
    for host in hosts {
        assert_eq!(
            check.total(host, "changed"),
            BASE_RESOURCES,
            "{host}\n{}",
            check.describe()
        );
        assert_eq!(check.total(host, "failed"), 0, "{}", check.describe());
    }
    for event in check.with_status("changed") {
        assert_eq!(
            event["simulated"], true,
            "a --check change was not simulated: {event}"
        );
    }
    assert_eq!(
        tree_snapshot(&sandbox.out),
        empty,
        "--check wrote to the hosts"
    );
    sandbox.assert_hosts_clean();

    // Apply: converges every host.
    let apply = sandbox.push(&policy, &["--apply"]);
    apply.assert_exit(0);
    assert_eq!(apply.summary()["check"], false);
    for host in hosts {
        assert_eq!(
            apply.total(host, "changed"),
            BASE_RESOURCES,
            "{host}\n{}",
            apply.describe()
        );
        assert_eq!(apply.total(host, "failed"), 0, "{}", apply.describe());
        assert_eq!(apply.host_summary(host)["unreachable"], false);
        let done: Vec<_> = apply
            .events_of("role_done")
            .filter(|event| event["host"] == host)
            .collect();
        assert_eq!(
            done.len(),
            1,
            "one role_done per host and role\n{}",
            apply.describe()
        );
        assert_eq!(done[0]["role"], "base");
        assert_eq!(done[0]["summary"]["changed"], BASE_RESOURCES);
    }
    let converged = tree_snapshot(&sandbox.out);
    insta::assert_snapshot!("push_converged_tree", converged);
    sandbox.assert_hosts_clean();

    // Second apply: nothing changes.
    let again = sandbox.push(&policy, &["--apply"]);
    again.assert_exit(0);
    let changed = again.with_status("changed");
    assert!(changed.is_empty(), "the second apply changed: {changed:?}");
    for host in hosts {
        assert_eq!(again.total(host, "changed"), 0, "{}", again.describe());
        assert_eq!(
            again.total(host, "ok") + again.total(host, "skipped"),
            BASE_RESOURCES
        );
    }
    assert_eq!(tree_snapshot(&sandbox.out), converged);

    // --check on converged hosts: nothing would change, nothing is written.
    let recheck = sandbox.push(&policy, &["--check"]);
    recheck.assert_exit(0);
    assert!(
        recheck.with_status("changed").is_empty(),
        "{}",
        recheck.describe()
    );
    assert_eq!(tree_snapshot(&sandbox.out), converged);
    sandbox.assert_hosts_clean();
}

const MARK_POLICY: &str = r#"
[[roles]]
name = "mark"

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}.txt"
content = "{{ host.name }}\n"
"#;

fn marked_hosts(sandbox: &Sandbox) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&sandbox.out)
        .expect("list out/")
        .flatten()
        .map(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".txt")
                .to_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn limits_touch_only_the_selected_hosts() {
    let sandbox = Sandbox::start("limits", TestHostsBuilder::new().hosts(3).group("web"));
    sandbox.set_inventory_extra("", "[groups.canary.hosts]\n\"host2\" = \"\"\n");
    let policy = sandbox.policy("mark", MARK_POLICY);

    let canary = sandbox.push(&policy, &["--apply", "--limit-groups", "canary"]);
    canary.assert_exit(0);
    assert_eq!(canary.summary_hosts(), ["host2"]);
    assert_eq!(
        canary.event_hosts().into_iter().collect::<Vec<_>>(),
        ["host2"]
    );
    assert_eq!(marked_hosts(&sandbox), ["host2"]);
    assert_eq!(sandbox.logins("host1"), 0, "host1 was contacted");
    assert_eq!(sandbox.logins("host3"), 0, "host3 was contacted");

    let named = sandbox.push(&policy, &["--apply", "--limit-hosts", "host3,host1"]);
    named.assert_exit(0);
    assert_eq!(named.summary_hosts(), ["host1", "host3"], "inventory order");
    assert_eq!(marked_hosts(&sandbox), ["host1", "host2", "host3"]);
    let host2_logins = sandbox.logins("host2");

    let glob = sandbox.push(
        &policy,
        &[
            "--apply",
            "--limit-hosts",
            "host[23]",
            "--limit-groups",
            "web",
        ],
    );
    glob.assert_exit(0);
    assert_eq!(glob.summary_hosts(), ["host2", "host3"]);
    assert_eq!(glob.total("host2", "changed"), 0, "{}", glob.describe());
    assert!(sandbox.logins("host2") > host2_logins);

    // A limit nothing matches is an input error: no host is contacted.
    let before: Vec<usize> = ["host1", "host2", "host3"]
        .iter()
        .map(|host| sandbox.logins(host))
        .collect();
    let none = sandbox.push_text(&policy, &["--apply", "--limit-hosts", "nope*"]);
    assert_eq!(none.exit, 2, "{}", none.describe());
    assert!(
        none.stderr
            .contains("--limit-hosts: host pattern `nope*` matches no host"),
        "{}",
        none.describe()
    );
    let after: Vec<usize> = ["host1", "host2", "host3"]
        .iter()
        .map(|host| sandbox.logins(host))
        .collect();
    assert_eq!(before, after, "a run with no selected host contacted hosts");
    sandbox.assert_hosts_clean();
}
