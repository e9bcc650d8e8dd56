//! `mop push --forks N`: at most N hosts worked on at once (not only N logins), as for the ad
//! hoc commands.

use mop_testhosts::TestHostsBuilder;

use crate::support::Sandbox;

/// (start, end) of each host's sleep, read from the files the role wrote, sorted by start.
fn spans(sandbox: &Sandbox, hosts: &[&str]) -> Vec<(f64, f64)> {
    let read = |name: String| -> f64 {
        let path = sandbox.out.join(&name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read `{}`: {error}", path.display()));
        text.trim()
            .parse()
            .unwrap_or_else(|error| panic!("`{}` holds `{text}`: {error}", path.display()))
    };
    let mut found: Vec<(f64, f64)> = hosts
        .iter()
        .map(|host| (read(format!("{host}-start")), read(format!("{host}-end"))))
        .collect();
    found.sort_by(|left, right| left.0.total_cmp(&right.0));
    found
}

#[test]
fn forks_bounds_the_hosts_a_push_works_on_at_once() {
    let sandbox = Sandbox::start("push-forks", TestHostsBuilder::new().hosts(3).group("web"));
    let policy = sandbox.policy(
        "forks",
        r#"
[[roles]]
name = "timed"
groups = ["web"]

[[roles.resources]]
type = "shell"
cmd = "date +%s.%N > @OUT@/{{ host.name }}-start; sleep 1; date +%s.%N > @OUT@/{{ host.name }}-end"
"#,
    );
    let hosts = ["host1", "host2", "host3"];

    sandbox
        .push(&policy, &["--apply", "--forks", "1"])
        .assert_exit(0);
    let one_at_a_time = spans(&sandbox, &hosts);
    for pair in one_at_a_time.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "hosts overlapped with --forks 1: {one_at_a_time:?}"
        );
    }

    sandbox.push(&policy, &["--apply"]).assert_exit(0);
    let all_at_once = spans(&sandbox, &hosts);
    let last_start = all_at_once
        .iter()
        .map(|span| span.0)
        .fold(f64::MIN, f64::max);
    let first_end = all_at_once
        .iter()
        .map(|span| span.1)
        .fold(f64::MAX, f64::min);
    assert!(
        last_start < first_end,
        "hosts did not overlap with the default --forks: {all_at_once:?}"
    );
}
