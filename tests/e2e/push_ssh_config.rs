//! The user's ssh_config is honoured: inventory names with no `mop_host` resolve as `ssh NAME`
//! does (HostName, Port, User, IdentityFile, UserKnownHostsFile, ProxyJump), the inventory
//! wins where both speak, and `mop inventory --host` says what came from ssh_config. The test
//! writes its own user config and points mop at it with `MOP_SSH_CONFIG` (root's real
//! `~/.ssh/config` is never touched).

use std::path::Path;

use mop_testhosts::{BastionLayout, TestHost, TestHostsBuilder};

use crate::support::{mop, parse_json_run, run, Output, Sandbox, MARK_POLICY};

/// A `Host` block of the user's ssh_config that reaches `host` as the test user.
fn host_block(alias: &str, sandbox: &Sandbox, host: &TestHost, extra: &str) -> String {
    format!(
        "Host {alias}\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n  UserKnownHostsFile {}\n{extra}",
        host.addr,
        host.port,
        host.user,
        sandbox.hosts.client_key().display(),
        sandbox.hosts.known_hosts().display(),
    )
}

/// An inventory that names hosts only (the ssh_config aliases), plus this test's agent dir.
fn write_alias_inventory(sandbox: &Sandbox, dir: &Path, hosts: &str) {
    std::fs::create_dir_all(dir).expect("create the inventory directory");
    std::fs::write(
        dir.join("hosts.toml"),
        format!(
            "[groups.all.vars]\nmop_agent_dir = \"{}\"\n\n[groups.web.hosts]\n{hosts}",
            sandbox.agent_dir
        ),
    )
    .expect("write the inventory");
}

fn mop_with_config(user_config: &Path, args: &[&std::ffi::OsStr]) -> Output {
    run(mop().env("MOP_SSH_CONFIG", user_config).args(args))
}

#[test]
fn ssh_config_aliases_resolve_as_ssh_does() {
    let sandbox = Sandbox::start("sshcfg", TestHostsBuilder::new().hosts(2).group("web"));
    let host1 = sandbox.host("host1").clone();
    let host2 = sandbox.host("host2").clone();
    let user_config = sandbox.dir().join("user_ssh_config");
    std::fs::write(
        &user_config,
        format!(
            "{}{}",
            host_block("alias1", &sandbox, &host1, ""),
            // The inventory gives alias2's port: it must win over this wrong one.
            host_block("alias2", &sandbox, &host2, "").replace(
                &format!("Port {}", host2.port),
                &format!("Port {}", crate::support::closed_port())
            ),
        ),
    )
    .expect("write the user config");
    let inventory = sandbox.dir().join("alias-inventory");
    write_alias_inventory(
        &sandbox,
        &inventory,
        &format!(
            "\"alias1\" = \"\"\n\"alias2\" = \"mop_port={}\"\n",
            host2.port
        ),
    );
    let policy = sandbox.policy("mark", MARK_POLICY);

    let policy_arg = policy.as_os_str();
    let inventory_arg = inventory.as_os_str();
    let push: Vec<&std::ffi::OsStr> = vec![
        "push".as_ref(),
        policy_arg,
        "-i".as_ref(),
        inventory_arg,
        "--apply".as_ref(),
        "--json".as_ref(),
    ];
    let run = parse_json_run(mop_with_config(&user_config, &push));
    run.assert_exit(0);
    for host in ["alias1", "alias2"] {
        assert_eq!(run.total(host, "changed"), 1, "{}", run.describe());
        let content = std::fs::read_to_string(sandbox.out.join(format!("{host}.txt")))
            .expect("the file was written");
        assert_eq!(content, format!("reached {host}\n"));
    }
    assert!(sandbox.logins("host1") >= 1 && sandbox.logins("host2") >= 1);

    // `mop inventory --host` says which settings came from ssh_config.
    let shown = mop_with_config(
        &user_config,
        &[
            "inventory".as_ref(),
            "-i".as_ref(),
            inventory_arg,
            "--host".as_ref(),
            "alias2".as_ref(),
        ],
    );
    assert_eq!(shown.exit, 0, "{}", shown.describe());
    for expected in [
        format!("connect: {}@{}:{}", host2.user, host2.addr, host2.port),
        format!("  HostName {}", host2.addr),
        format!("  User {}", host2.user),
        format!("  IdentityFile {}", sandbox.hosts.client_key().display()),
    ] {
        assert!(
            shown.stdout.contains(&expected),
            "missing {expected:?}: {}",
            shown.describe()
        );
    }
    assert!(
        !shown.stdout.contains("  Port "),
        "the inventory's port wins, so ssh_config's is not taken: {}",
        shown.describe()
    );
    sandbox.assert_hosts_clean();
}

#[test]
fn ssh_config_proxy_jump_reaches_a_hidden_host() {
    let sandbox = Sandbox::start(
        "sshcfg-jump",
        TestHostsBuilder::new()
            .hosts(0)
            .bastion(BastionLayout::new(1, 1)),
    );
    let target = sandbox.host("rack1-101").clone();
    sandbox.hosts.assert_unreachable_directly(&target);
    let user_config = sandbox.dir().join("user_ssh_config");
    std::fs::write(
        &user_config,
        format!(
            "{}{}{}",
            host_block(
                "hidden",
                &sandbox,
                &target,
                "  ProxyJump jump-outer,jump-inner\n"
            ),
            host_block("jump-outer", &sandbox, sandbox.host("bastion"), ""),
            host_block("jump-inner", &sandbox, sandbox.host("rack1-top"), ""),
        ),
    )
    .expect("write the user config");
    let inventory = sandbox.dir().join("alias-inventory");
    write_alias_inventory(&sandbox, &inventory, "\"hidden\" = \"\"\n");
    let policy = sandbox.policy("mark", MARK_POLICY);
    let run = parse_json_run(mop_with_config(
        &user_config,
        &[
            "push".as_ref(),
            policy.as_os_str(),
            "-i".as_ref(),
            inventory.as_os_str(),
            "--apply".as_ref(),
            "--json".as_ref(),
        ],
    ));
    run.assert_exit(0);
    assert_eq!(run.total("hidden", "changed"), 1, "{}", run.describe());
    let content = std::fs::read_to_string(sandbox.out.join("hidden.txt")).expect("written");
    assert_eq!(content, "reached hidden\n");
    for hop in ["bastion", "rack1-top", "rack1-101"] {
        assert!(sandbox.logins(hop) >= 1, "no login on `{hop}`");
    }
    sandbox.assert_hosts_clean();
}
