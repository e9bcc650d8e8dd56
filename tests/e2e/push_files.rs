//! The file server through `mop push`: each `source` file is sent once per host, nothing is
//! sent when hosts are up to date, and only a changed file is sent again.

use mop_testhosts::TestHostsBuilder;

use crate::support::{JsonRun, Sandbox};

const FILES_POLICY: &str = r#"
[fileserver]
paths = ["files"]

[[roles]]
name = "files"
groups = ["web"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}-big.bin"
source = "big.bin"
mode = "0644"

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}-small.txt"
source = "small.txt"
mode = "0644"
"#;

const BIG: usize = 48 * 1024 + 7;
const SMALL: usize = 1000;
const HOSTS: [&str; 3] = ["host1", "host2", "host3"];

fn big_content() -> Vec<u8> {
    // Deterministic, not compressible by accident.
    let mut state: u32 = 0x1234_5678;
    (0..BIG)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

fn bytes_received(run: &JsonRun, host: &str, file: &str) -> u64 {
    run.resources_of(host)
        .find(|event| {
            event["resource"]
                .as_str()
                .is_some_and(|name| name.ends_with(file))
        })
        .unwrap_or_else(|| panic!("no event for {file} on {host}\n{}", run.describe()))
        .get("bytes_received")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

fn assert_copies(sandbox: &Sandbox, big: &[u8], small: &[u8]) {
    for host in HOSTS {
        let on_host = std::fs::read(sandbox.out.join(format!("{host}-big.bin")))
            .expect("big.bin on the host");
        assert!(on_host == big, "{host}: big.bin differs from the source");
        let on_host = std::fs::read(sandbox.out.join(format!("{host}-small.txt")))
            .expect("small.txt on the host");
        assert!(
            on_host == small,
            "{host}: small.txt differs from the source"
        );
    }
}

#[test]
fn sources_are_sent_once_then_only_when_they_change() {
    let sandbox = Sandbox::start("files", TestHostsBuilder::new().hosts(3).group("web"));
    let files = sandbox.dir().join("files");
    std::fs::create_dir(&files).expect("create files/");
    let big = big_content();
    let mut small: Vec<u8> = b"line of text\n"
        .iter()
        .copied()
        .cycle()
        .take(SMALL)
        .collect();
    std::fs::write(files.join("big.bin"), &big).expect("write big.bin");
    std::fs::write(files.join("small.txt"), &small).expect("write small.txt");
    let policy = sandbox.policy("files", FILES_POLICY);

    // First apply: both files, once per host.
    let first = sandbox.push(&policy, &["--apply"]);
    first.assert_exit(0);
    for host in HOSTS {
        assert_eq!(
            first.total(host, "bytes_sent"),
            (BIG + SMALL) as u64,
            "{host}\n{}",
            first.describe()
        );
        assert_eq!(first.total(host, "changed"), 2, "{}", first.describe());
        assert_eq!(bytes_received(&first, host, "-big.bin"), BIG as u64);
        assert_eq!(bytes_received(&first, host, "-small.txt"), SMALL as u64);
        let done = first
            .events_of("role_done")
            .find(|event| event["host"] == host)
            .unwrap_or_else(|| panic!("no role_done for {host}"));
        assert_eq!(done["bytes_sent"], (BIG + SMALL) as u64);
    }
    assert_copies(&sandbox, &big, &small);

    // Second apply: up to date, nothing sent.
    let second = sandbox.push(&policy, &["--apply"]);
    second.assert_exit(0);
    for host in HOSTS {
        assert_eq!(
            second.total(host, "bytes_sent"),
            0,
            "{host}\n{}",
            second.describe()
        );
        assert_eq!(second.total(host, "changed"), 0, "{}", second.describe());
    }

    // One byte of one source changes: only that file is sent again.
    small[SMALL / 2] = b'#';
    std::fs::write(files.join("small.txt"), &small).expect("rewrite small.txt");
    let third = sandbox.push(&policy, &["--apply"]);
    third.assert_exit(0);
    for host in HOSTS {
        assert_eq!(
            third.total(host, "bytes_sent"),
            SMALL as u64,
            "{host}\n{}",
            third.describe()
        );
        assert_eq!(third.total(host, "changed"), 1, "{}", third.describe());
        assert_eq!(bytes_received(&third, host, "-big.bin"), 0);
        assert_eq!(bytes_received(&third, host, "-small.txt"), SMALL as u64);
    }
    assert_copies(&sandbox, &big, &small);
    sandbox.assert_hosts_clean();
}
