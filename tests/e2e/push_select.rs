//! Choosing what a push does, against real sshd hosts: `--tags` and `--skip-tags` converge
//! only the selected resources (`always` and `never` as in Ansible), `--start-at` skips what
//! comes before a resource, the pattern algebra in `--limit-hosts` leaves the excluded host
//! alone, and `--list-hosts`/`--list-tasks` print the run without any connection.

use std::path::Path;

use mop_testhosts::TestHostsBuilder;

use crate::support::{closed_port, run_mop, write_policy, Sandbox};

/// Each resource leaves a file named after it in `out/HOST-PHASE/` (`-e phase=...`), so each
/// phase of a test starts from nothing.
const TAGGED_POLICY: &str = r#"
[vars]
out = "@OUT@"
phase = "unset"

[[roles]]
name = "base"
groups = ["web"]
tags = ["base"]

[[roles.resources]]
type = "directory"
path = "{{ out }}/{{ host.name }}-{{ phase }}"
tags = ["always"]

[[roles.resources]]
name = "alpha"
type = "file"
path = "{{ out }}/{{ host.name }}-{{ phase }}/alpha"
content = "a\n"
tags = ["alpha"]
notify = "note alpha"

[[roles.resources]]
name = "beta"
type = "file"
path = "{{ out }}/{{ host.name }}-{{ phase }}/beta"
content = "b\n"
tags = ["beta"]

[[roles.resources]]
name = "debug dump"
type = "file"
path = "{{ out }}/{{ host.name }}-{{ phase }}/debug"
content = "d\n"
tags = ["never", "debug"]

[[roles.handlers]]
name = "note alpha"
type = "file"
path = "{{ out }}/{{ host.name }}-{{ phase }}/handler"
content = "h\n"

[[roles]]
name = "second"
groups = ["web"]

[[roles.resources]]
name = "gamma"
type = "file"
path = "{{ out }}/{{ host.name }}-{{ phase }}/gamma"
content = "g\n"
"#;

/// The files a phase left for `host`, sorted.
fn files(sandbox: &Sandbox, host: &str, phase: &str) -> Vec<String> {
    let dir = sandbox.out.join(format!("{host}-{phase}"));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn tags_and_skip_tags_converge_only_the_selected_resources() {
    let sandbox = Sandbox::start("select-tags", TestHostsBuilder::new().hosts(2).group("web"));
    let policy = sandbox.policy("tagged", TAGGED_POLICY);

    // No filter: everything but the `never` resource.
    let plain = sandbox.push(&policy, &["--apply", "-e", "phase=plain"]);
    plain.assert_exit(0);
    assert_eq!(
        files(&sandbox, "host1", "plain"),
        ["alpha", "beta", "gamma", "handler"],
        "{}",
        plain.describe()
    );

    // --tags alpha: the `always` directory, alpha and the handler alpha notified; not beta,
    // not the `never` resource, not the untagged role `second`.
    let alpha = sandbox.push(&policy, &["--apply", "--tags", "alpha", "-e", "phase=tags"]);
    alpha.assert_exit(0);
    for host in ["host1", "host2"] {
        assert_eq!(
            files(&sandbox, host, "tags"),
            ["alpha", "handler"],
            "{}",
            alpha.describe()
        );
    }

    // --tags 'debug,bet*': a `never` resource runs when one of its tags is named; a glob.
    let debug = sandbox.push(
        &policy,
        &["--apply", "--tags", "debug,bet*", "-e", "phase=never"],
    );
    debug.assert_exit(0);
    assert_eq!(
        files(&sandbox, "host1", "never"),
        ["beta", "debug"],
        "{}",
        debug.describe()
    );

    // --skip-tags alpha: everything else that is not `never`; no handler (nothing notified it).
    let skip = sandbox.push(
        &policy,
        &["--apply", "--skip-tags", "alpha", "-e", "phase=skip"],
    );
    skip.assert_exit(0);
    assert_eq!(
        files(&sandbox, "host2", "skip"),
        ["beta", "gamma"],
        "{}",
        skip.describe()
    );

    // --skip-tags always: even the directory is skipped, so beta's file has nowhere to go:
    // the host fails, which proves the directory really was not sent.
    let no_always = sandbox.push(
        &policy,
        &[
            "--apply",
            "--tags",
            "beta",
            "--skip-tags",
            "always",
            "-e",
            "phase=noalways",
        ],
    );
    no_always.assert_exit(1);
    assert!(
        !sandbox.out.join("host1-noalways").exists(),
        "{}",
        no_always.describe()
    );

    // An unknown tag is a warning naming the known tags; the run goes on.
    let unknown = sandbox.push_text(
        &policy,
        &["--apply", "--tags", "alhpa,beta", "-e", "phase=unknown"],
    );
    assert_eq!(unknown.exit, 0, "{}", unknown.describe());
    assert!(
        unknown.stderr.contains(
            "warning: --tags: tag `alhpa` matches no tag in the policy (did you mean `alpha`?)\n  hint: known tags: alpha, always, base, beta, debug, never"
        ),
        "{}",
        unknown.describe()
    );
    assert_eq!(files(&sandbox, "host1", "unknown"), ["beta"]);
    sandbox.assert_hosts_clean();
}

#[test]
fn start_at_skips_what_comes_before_the_resource() {
    let sandbox = Sandbox::start(
        "select-start",
        TestHostsBuilder::new().hosts(1).group("web"),
    );
    let policy = sandbox.policy("tagged", TAGGED_POLICY);

    // By its `type main-argument` label, as events show an unnamed resource: the run starts
    // at the directory (the first resource, so the whole first role runs but `never`).
    let label = "directory {{ out }}/{{ host.name }}-{{ phase }}";
    let from_dir = sandbox.push(
        &policy,
        &["--apply", "--start-at", label, "-e", "phase=label"],
    );
    from_dir.assert_exit(0);
    assert_eq!(
        files(&sandbox, "host1", "label"),
        ["alpha", "beta", "gamma", "handler"],
        "{}",
        from_dir.describe()
    );

    // By name, in the second role: the first role does not run at all.
    std::fs::create_dir(sandbox.out.join("host1-named")).expect("create the phase directory");
    crate::support::chmod(&sandbox.out.join("host1-named"), 0o777);
    let named = sandbox.push(
        &policy,
        &["--apply", "--start-at", "gamma", "-e", "phase=named"],
    );
    named.assert_exit(0);
    assert_eq!(
        files(&sandbox, "host1", "named"),
        ["gamma"],
        "{}",
        named.describe()
    );

    // An unknown name is an input error with a suggestion, before any login.
    let logins = sandbox.logins("host1");
    let typo = sandbox.push_text(&policy, &["--apply", "--start-at", "gama"]);
    assert_eq!(typo.exit, 2, "{}", typo.describe());
    assert!(
        typo.stderr.contains(
            "error: --start-at: no resource named `gama` in the roles this run selects\n  hint: did you mean `gamma`?"
        ),
        "{}",
        typo.describe()
    );
    assert_eq!(
        sandbox.logins("host1"),
        logins,
        "an input error contacted the host"
    );
    sandbox.assert_hosts_clean();
}

#[test]
fn limit_hosts_exclusion_leaves_the_excluded_host_alone() {
    let sandbox = Sandbox::start(
        "select-limit",
        TestHostsBuilder::new().hosts(3).group("web"),
    );
    sandbox.set_inventory_extra("", "[groups.canary.hosts]\n\"host3\" = \"\"\n");
    let policy = sandbox.policy("tagged", TAGGED_POLICY);

    let run = sandbox.push(
        &policy,
        &[
            "--apply",
            "--limit-hosts",
            "host*:!host2",
            "-e",
            "phase=limit",
        ],
    );
    run.assert_exit(0);
    assert_eq!(run.summary_hosts(), ["host1", "host3"]);
    assert_eq!(
        sandbox.logins("host2"),
        0,
        "the excluded host was contacted"
    );
    assert!(files(&sandbox, "host2", "limit").is_empty());

    // Intersection and exclusion of groups: web AND canary, minus nothing.
    let both = sandbox.push(
        &policy,
        &[
            "--apply",
            "--limit-groups",
            "web:&canary",
            "-e",
            "phase=both",
        ],
    );
    both.assert_exit(0);
    assert_eq!(both.summary_hosts(), ["host3"]);

    // A term that matches nothing is an input error with a suggestion.
    let typo = sandbox.push_text(&policy, &["--apply", "--limit-hosts", "host*:!hst2"]);
    assert_eq!(typo.exit, 2, "{}", typo.describe());
    assert!(
        typo.stderr.contains(
            "--limit-hosts: host pattern `!hst2` matches no host\n  hint: did you mean `host2`?"
        ),
        "{}",
        typo.describe()
    );
    assert_eq!(
        sandbox.logins("host2"),
        0,
        "the excluded host was contacted"
    );
    sandbox.assert_hosts_clean();
}

/// A listing makes no connection: the inventory's only host is an address where nothing
/// listens, and the listing still succeeds (a real run fails to connect).
#[test]
fn listings_contact_no_host() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(
        &inventory,
        format!(
            "[groups.web.hosts]\nghost = \"mop_host=127.0.0.1 mop_port={}\"\nother = \"mop_host=127.0.0.1 mop_port={}\"\n",
            closed_port(),
            closed_port()
        ),
    )
    .expect("write the inventory");
    let policy = dir.path().join("tagged.toml");
    write_policy(
        &policy,
        TAGGED_POLICY,
        &[("OUT", dir.path().join("out").to_string_lossy().into_owned())],
    );
    let list = |args: &[&str]| {
        let mut all = vec!["push", path(&policy), "-i", path(&inventory)];
        all.extend(args);
        run_mop(all)
    };

    let listing = list(&[
        "--list-hosts",
        "--list-tasks",
        "--limit-hosts",
        "all:!other",
        "--tags",
        "alpha",
    ]);
    assert_eq!(listing.exit, 0, "{}", listing.describe());
    insta::assert_snapshot!("push_select_listing", listing.stdout);

    let hosts = list(&["--list-hosts", "--start-at", "gamma"]);
    assert_eq!(hosts.exit, 0, "{}", hosts.describe());
    insta::assert_snapshot!("push_select_list_hosts", hosts.stdout);

    let json = list(&["--list-tasks", "--json", "--skip-tags", "base"]);
    assert_eq!(json.exit, 0, "{}", json.describe());
    insta::assert_snapshot!("push_select_list_json", json.stdout);

    // The same run for real cannot connect: the listing really did not try.
    let real = list(&["--check", "--limit-hosts", "ghost"]);
    assert_eq!(real.exit, 1, "{}", real.describe());

    // Without --apply/--check and without a listing: a usage error.
    let neither = list(&[]);
    assert_eq!(neither.exit, 2, "{}", neither.describe());
    assert!(
        neither.stderr.contains("<--apply|--check>"),
        "{}",
        neither.describe()
    );
}

#[test]
fn local_lists_tasks_without_running_them() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let policy = dir.path().join("tagged.toml");
    let out = dir.path().join("out");
    write_policy(
        &policy,
        TAGGED_POLICY,
        &[("OUT", out.to_string_lossy().into_owned())],
    );
    let listing = run_mop([
        "local",
        path(&policy),
        "--list-tasks",
        "--tags",
        "beta,debug",
    ]);
    assert_eq!(listing.exit, 0, "{}", listing.describe());
    insta::assert_snapshot!("local_select_list_tasks", listing.stdout);
    assert!(!out.exists(), "a listing converged something");
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}
