//! Ctrl-C during `mop run`: mop stops the remote commands (children included), closes its
//! connections and exits 130, as `mop push` does.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use mop_testhosts::TestHostsBuilder;

use crate::support::{mop, processes_matching, send_signal, wait_until, Running, Sandbox};

/// ssh processes whose run config (`-F /tmp/mop-XXXXXX/ssh_config`) reaches `port`: the
/// connections of a run against this sandbox's hosts, whatever other tests run meanwhile.
fn ssh_processes_to(port: u16) -> BTreeSet<(u32, String)> {
    processes_matching("ssh")
        .into_iter()
        .filter(|(_, cmdline)| {
            let first = cmdline.split(' ').next().unwrap_or_default();
            if !(first == "ssh" || first.ends_with("/ssh")) {
                return false;
            }
            let mut after_f = cmdline.split(' ').skip_while(|word| *word != "-F").skip(1);
            let Some(config) = after_f.next() else {
                return false;
            };
            config.starts_with("/tmp/mop-")
                && std::fs::read_to_string(config).is_ok_and(|text| {
                    text.lines()
                        .any(|line| line.trim() == format!("Port {port}"))
                })
        })
        .collect()
}

fn alive(process: &(u32, String)) -> bool {
    std::fs::read(format!("/proc/{}/cmdline", process.0))
        .is_ok_and(|raw| String::from_utf8_lossy(&raw).replace('\0', " ").trim_end() == process.1)
}

#[test]
fn ctrl_c_stops_remote_commands_closes_connections_and_exits_130() {
    let sandbox = Sandbox::start(
        "run-interrupt",
        TestHostsBuilder::new().hosts(2).group("web"),
    );
    // A sleep no other test runs: its argument is unique to this process and moment.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let sleep = format!("sleep {}.{nanos:09}", 300 + std::process::id() % 100);
    // The shell stays the sleep's parent (it still has to echo): both must go.
    let command = format!("{sleep}; echo after");
    let inventory = sandbox.inventory.to_string_lossy().into_owned();
    let mut running = Running::spawn(mop().args(["run", "web", "-i", &inventory, "--", &command]));
    let pid = running.child.id();

    let started = wait_until(Duration::from_secs(40), || {
        processes_matching(&sleep)
            .iter()
            .filter(|(_, cmdline)| *cmdline == sleep)
            .count()
            == 2
    });
    if !started {
        let _ = running.child.kill();
        let output = running.finish(Duration::from_secs(10));
        panic!(
            "the sleep never started on both hosts\n{}",
            output.describe()
        );
    }
    let connections = ssh_processes_to(sandbox.host("host1").port);
    assert!(
        !connections.is_empty(),
        "no ssh process of the run found while it runs"
    );

    send_signal(pid, "-INT");
    let signalled = Instant::now();
    let status = running.wait_for(Duration::from_secs(20));
    let waited = signalled.elapsed();
    assert!(status.is_some(), "mop was still running 20 s after SIGINT");
    let output = running.finish(Duration::from_secs(1));
    assert!(
        waited < Duration::from_secs(10),
        "mop took {waited:?} to exit after SIGINT\n{}",
        output.describe()
    );
    assert_eq!(output.exit, 130, "{}", output.describe());
    assert!(
        output.stderr.contains("interrupted"),
        "{}",
        output.describe()
    );
    assert!(!output.stdout.contains("after"), "{}", output.describe());

    let commands_gone = wait_until(Duration::from_secs(5), || {
        processes_matching(&sleep).is_empty()
    });
    assert!(
        commands_gone,
        "the remote commands survived Ctrl-C: {:?}",
        processes_matching(&sleep)
    );
    let connections_gone = wait_until(Duration::from_secs(5), || !connections.iter().any(alive));
    assert!(
        connections_gone,
        "ssh processes of the run survived Ctrl-C: {:?}",
        connections
            .iter()
            .filter(|process| alive(process))
            .collect::<Vec<_>>()
    );
}
