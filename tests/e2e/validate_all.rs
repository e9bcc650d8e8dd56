//! `mop validate` is not staged: one run prints every problem of a policy (a field serde
//! rejects, a check on the same resource, the inventory-dependent undefined variables, the
//! file server's refusals), in file order, and exits 2 without contacting any host.

use crate::support::{mop, run};

#[test]
fn validate_prints_every_stage_at_once_and_exits_2() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    std::fs::write(
        dir.path().join("inventory.toml"),
        // A documentation address: nothing may be contacted.
        "[groups.web.hosts]\nweb1 = \"mop_host=192.0.2.1\"\n",
    )
    .expect("write the inventory");
    let policy = dir.path().join("site.toml");
    std::fs::write(
        &policy,
        r#"inventory = "inventory.toml"

[[roles]]
name = "web"
groups = ["web"]

[[roles.resources]]
type = "file"
path = "/etc/app.conf"
content = "x"
mode = "rwx"

[[roles.resources]]
type = "file"
path = "etc/relative.conf"
content = "{{ undefined_one }}"

[[roles.resources]]
type = "file"
path = "/etc/motd"
source = "missing.txt"

[[roles.resources]]
type = "command"
cmd = "echo {{ undefined_two }}"
"#,
    )
    .expect("write the policy");
    let output = run(mop().arg("validate").arg(&policy));
    assert_eq!(output.exit, 2, "{}", output.describe());
    assert!(output.stdout.is_empty(), "{}", output.describe());
    let stderr = output
        .stderr
        .replace(&format!("{}/", dir.path().display()), "");
    let expected = [
        "error: site.toml:11:8: role `web`: resource #1 (file /etc/app.conf): field `mode`: invalid mode `rwx`",
        "\nsite.toml:15:8: role `web`: resource #2 (file etc/relative.conf): field `path` must be an absolute path",
        "\nsite.toml:16:11: role `web`: resource #2 (file etc/relative.conf): field `content`: undefined variable `undefined_one`",
        "\nsite.toml:21:10: role `web`: resource #3 (file /etc/motd): source `missing.txt`",
        "\nsite.toml:25:7: role `web`: resource #4 (command echo {{ undefined_two }}): field `cmd`: undefined variable `undefined_two`",
        "\n5 errors",
    ];
    let mut from = 0;
    for line in expected {
        let at = stderr[from..]
            .find(line)
            .unwrap_or_else(|| panic!("missing or out of order: {line}\n{stderr}"));
        from += at + line.len();
    }
}
