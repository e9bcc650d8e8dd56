//! Connect timeouts: a host whose packets vanish (a blackhole made with a network namespace of
//! this test's own) is declared unreachable after the default 10 s connect timeout, or after
//! `--connect-timeout`'s whatever the inventory says, while the other host converges in the
//! same run.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mop_testhosts::TestHostsBuilder;

use crate::support::{run, run_mop, Sandbox, MARK_POLICY};

static NEXT_BLACKHOLE: AtomicUsize = AtomicUsize::new(0);

/// An address that swallows every packet sent to it: a veth pair whose far end sits in a fresh
/// namespace with no address and no forwarding, and a permanent neighbour entry pointing the
/// address at that far end. The SYN is delivered and silently dropped (no RST, no ICMP), which
/// is what a firewalled or powered-off host behind a router looks like. Needs no nft/iptables.
struct Blackhole {
    namespace: String,
    near_end: String,
    address: String,
}

fn ip(args: &[&str]) -> String {
    let output = run(Command::new("ip").args(args));
    assert_eq!(
        output.exit,
        0,
        "`ip {}` failed (this test needs root and iproute2): {}",
        args.join(" "),
        output.describe()
    );
    output.stdout
}

impl Blackhole {
    fn create() -> Blackhole {
        let pid = std::process::id();
        let number = NEXT_BLACKHOLE.fetch_add(1, Ordering::Relaxed);
        // Interface names are at most 15 bytes; the pid and counter keep parallel runs apart.
        let tag = format!("{}{number}", pid % 100_000);
        let namespace = format!("mopblackhole-{pid}-{number}");
        let near_end = format!("mbh{tag}a");
        let far_end = format!("mbh{tag}b");
        // One /30 of the benchmarking range 198.18.0.0/15 per (pid, counter): never routed.
        let block = ((pid as usize % 4096) * 4 + number % 4) * 4;
        let (third, fourth) = (block / 256 % 256, block % 256);
        let second = 18 + block / 65536;
        let network = format!("198.{second}.{third}");
        ip(&["netns", "add", &namespace]);
        let blackhole = Blackhole {
            namespace: namespace.clone(),
            near_end: near_end.clone(),
            address: format!("{network}.{}", fourth + 2),
        };
        ip(&[
            "link", "add", &near_end, "type", "veth", "peer", "name", &far_end, "netns", &namespace,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{network}.{}/30", fourth + 1),
            "dev",
            &near_end,
        ]);
        ip(&["link", "set", &near_end, "up"]);
        ip(&["-n", &namespace, "link", "set", &far_end, "up"]);
        let link = ip(&["-n", &namespace, "-o", "link", "show", &far_end]);
        let mac = link
            .split_whitespace()
            .skip_while(|word| *word != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no MAC address in `{link}`"))
            .to_owned();
        ip(&[
            "neigh",
            "replace",
            &blackhole.address,
            "lladdr",
            &mac,
            "dev",
            &near_end,
            "nud",
            "permanent",
        ]);
        blackhole
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both; the namespace goes last.
        let _ = Command::new("ip")
            .args(["link", "delete", &self.near_end])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.namespace])
            .status();
    }
}

#[test]
fn blackholed_host_is_unreachable_after_the_default_connect_timeout() {
    let sandbox = Sandbox::start("blackhole", TestHostsBuilder::new().hosts(1).group("web"));
    let blackhole = Blackhole::create();
    // No mop_connect_timeout: the default applies.
    sandbox.set_inventory_extra(
        "",
        &format!(
            "[groups.web.hosts]\n\"dark\" = \"mop_host={}\"\n",
            blackhole.address
        ),
    );
    let policy = sandbox.policy("mark", MARK_POLICY);

    let started = Instant::now();
    let run = sandbox.push(&policy, &["--apply"]);
    let took = started.elapsed();
    run.assert_exit(1);
    let dark = run.host_summary("dark");
    assert_eq!(dark["unreachable"], true, "{}", run.describe());
    let error = dark["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("dark") && error.contains(&blackhole.address) && error.contains("10 s"),
        "the error should name the host, its address and the timeout: {error}"
    );
    // About the 10 s timeout (ssh's own overhead on top), far from the kernel's SYN retries or
    // the former 65 s deadline.
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(30),
        "the run took {took:?}: {}",
        run.describe()
    );
    assert_eq!(run.total("host1", "changed"), 1, "{}", run.describe());
    assert!(
        sandbox.out.join("host1.txt").is_file(),
        "{}",
        run.describe()
    );
    drop(blackhole);
    sandbox.assert_hosts_clean();
}

#[test]
fn connect_timeout_flag_overrides_the_inventorys_for_every_command() {
    let sandbox = Sandbox::start(
        "blackhole-flag",
        TestHostsBuilder::new().hosts(1).group("web"),
    );
    let blackhole = Blackhole::create();
    // The inventory asks for two minutes; the flag must win.
    sandbox.set_inventory_extra(
        "",
        &format!(
            "[groups.web.hosts]\n\"dark\" = \"mop_host={} mop_connect_timeout=120\"\n",
            blackhole.address
        ),
    );
    let policy = sandbox.policy("mark", MARK_POLICY);

    let started = Instant::now();
    let run = sandbox.push(&policy, &["--apply", "--connect-timeout", "3"]);
    let took = started.elapsed();
    eprintln!("push with --connect-timeout 3 took {took:?}");
    run.assert_exit(1);
    let dark = run.host_summary("dark");
    assert_eq!(dark["unreachable"], true, "{}", run.describe());
    let error = dark["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("dark") && error.contains(&blackhole.address) && error.contains("3 s"),
        "the error should name the host, its address and the flag's timeout: {error}"
    );
    // Only a bound that the inventory's 120 s could not meet (its first TCP connect alone takes
    // that long): never a tight wall-clock figure.
    assert!(
        took < Duration::from_secs(100),
        "the run took {took:?}: {}",
        run.describe()
    );
    assert_eq!(run.total("host1", "changed"), 1, "{}", run.describe());

    // An ad hoc command takes the same flag.
    let started = Instant::now();
    let inventory = sandbox.inventory.display().to_string();
    let adhoc = run_mop([
        "run",
        "-i",
        &inventory,
        "dark",
        "--connect-timeout",
        "3",
        "--",
        "true",
    ]);
    let took = started.elapsed();
    eprintln!("mop run with --connect-timeout 3 took {took:?}");
    assert_eq!(adhoc.exit, 1, "{}", adhoc.describe());
    assert!(
        adhoc.stdout.contains("3 s") || adhoc.stderr.contains("3 s"),
        "the message should name the flag's timeout: {}",
        adhoc.describe()
    );
    assert!(
        took < Duration::from_secs(100),
        "{took:?}: {}",
        adhoc.describe()
    );
    drop(blackhole);
    sandbox.assert_hosts_clean();
}
