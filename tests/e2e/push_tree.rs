//! `tree` through `mop push`: a served directory copied to two hosts, every file checked by the
//! file server first (a denied one stops the run before any host is contacted), unchanged files
//! never sent again, a check after a manual edit reporting exactly that edit and writing
//! nothing, `delete` and `exclude`, and the edit put right by the next apply.

use std::path::Path;

use mop_testhosts::TestHostsBuilder;

use crate::support::{tree_snapshot, JsonRun, Sandbox};

const TREE_POLICY: &str = r#"
[fileserver]
paths = ["files"]
deny = ["*.secret"]

[[roles]]
name = "site"
groups = ["web"]

[[roles.resources]]
name = "site"
type = "tree"
source = "site"
path = "@OUT@/{{ host.name }}/www"
mode = "0644"
dir_mode = "0755"
delete = true
exclude = ["*.tmp", "drafts/"]
"#;

/// What the tree's files hold; `drafts/` and `*.tmp` are excluded.
const FILES: [(&str, &str); 4] = [
    ("index.html", "<h1>home</h1>\n"),
    ("css/site.css", "body { margin: 0 }\n"),
    (
        "img/logo.svg",
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n",
    ),
    ("docs/a/b/deep.txt", "deep\n"),
];

fn sent_size() -> u64 {
    FILES.iter().map(|(_, content)| content.len() as u64).sum()
}

fn event<'a>(run: &'a JsonRun, host: &'a str) -> &'a serde_json::Value {
    run.resources_of(host)
        .find(|event| event["resource"] == "site")
        .unwrap_or_else(|| panic!("no event for the tree on {host}\n{}", run.describe()))
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_copied(www: &Path) {
    for (relative, content) in FILES {
        let on_host = std::fs::read_to_string(www.join(relative))
            .unwrap_or_else(|err| panic!("{relative} on the host: {err}"));
        assert_eq!(on_host, content, "{relative}");
    }
    assert!(www.join("empty").is_dir(), "empty directories are copied");
    assert!(!www.join("drafts").exists(), "excluded directory copied");
    assert!(!www.join("notes.tmp").exists(), "excluded file copied");
}

#[test]
fn a_tree_is_copied_then_only_what_differs_is_sent_checked_and_put_right() {
    let sandbox = Sandbox::start("tree", TestHostsBuilder::new().hosts(2).group("web"));
    let hosts: Vec<String> = sandbox
        .hosts
        .hosts()
        .iter()
        .map(|host| host.name.clone())
        .collect();
    let site = sandbox.dir().join("files/site");
    for (relative, content) in FILES {
        let path = site.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write a source file");
    }
    for dir in ["empty", "drafts"] {
        std::fs::create_dir_all(site.join(dir)).expect("mkdir");
    }
    std::fs::write(site.join("drafts/next.html"), "soon").expect("write");
    std::fs::write(site.join("notes.tmp"), "scratch").expect("write");
    crate::support::chmod(&sandbox.dir().join("files"), 0o755);
    let policy = sandbox.policy("tree", TREE_POLICY);

    // A file the file server denies stops the run before any host is contacted, named.
    std::fs::write(site.join("css/api.secret"), "token").expect("write");
    let refused = sandbox.push_text(&policy, &["--apply"]);
    assert_eq!(refused.exit, 2, "{}", refused.describe());
    assert!(
        refused.stderr.contains("source `site/css/api.secret`")
            && refused.stderr.contains("exclude = [\"css/api.secret\"]"),
        "{}",
        refused.describe()
    );
    assert!(
        !sandbox.out.join(&hosts[0]).exists(),
        "a host was contacted"
    );
    std::fs::remove_file(site.join("css/api.secret")).expect("remove");

    // First apply: every file once per host.
    let first = sandbox.push(&policy, &["--apply"]);
    first.assert_exit(0);
    for host in &hosts {
        assert_eq!(first.total(host, "changed"), 1, "{}", first.describe());
        assert_eq!(
            first.total(host, "bytes_sent"),
            sent_size(),
            "{host}\n{}",
            first.describe()
        );
        assert_copied(&sandbox.out.join(host).join("www"));
        // Each file keeps its source's modification time, as `scp -p` would.
        for (relative, _) in FILES {
            let modified = |path: &Path| {
                std::fs::metadata(path)
                    .and_then(|meta| meta.modified())
                    .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
            };
            assert_eq!(
                modified(&sandbox.out.join(host).join("www").join(relative)),
                modified(&site.join(relative)),
                "{host}: {relative}"
            );
        }
    }

    // Second apply: up to date, nothing sent.
    let second = sandbox.push(&policy, &["--apply"]);
    second.assert_exit(0);
    for host in &hosts {
        assert_eq!(second.total(host, "changed"), 0, "{}", second.describe());
        assert_eq!(second.total(host, "bytes_sent"), 0, "{}", second.describe());
    }

    // A manual edit and a stray file on one host: check reports exactly that, writes nothing.
    let www = sandbox.out.join(&hosts[0]).join("www");
    std::fs::write(www.join("css/site.css"), "body { margin: 9em }\n").expect("edit");
    std::fs::write(www.join("stray.html"), "stray").expect("stray");
    std::fs::write(www.join("upload.tmp"), "kept").expect("excluded on the host");
    let before = tree_snapshot(&sandbox.out);
    let check = sandbox.push(&policy, &["--check", "--diff"]);
    check.assert_exit(0);
    let checked = event(&check, &hosts[0]);
    assert_eq!(
        strings(&checked["changes"]),
        ["removed stray.html", "changed css/site.css: content"],
        "{}",
        check.describe()
    );
    assert_eq!(
        checked["diff"].as_str(),
        Some("- stray.html\n~ css/site.css (content)\n"),
        "{}",
        check.describe()
    );
    assert_eq!(check.total(&hosts[1], "changed"), 0, "{}", check.describe());
    assert_eq!(
        check.total(&hosts[0], "bytes_sent"),
        0,
        "{}",
        check.describe()
    );
    assert_eq!(tree_snapshot(&sandbox.out), before, "check mode wrote");

    // Apply puts it right, sending only the edited file; the excluded host file stays.
    let third = sandbox.push(&policy, &["--apply"]);
    third.assert_exit(0);
    assert_eq!(
        third.total(&hosts[0], "bytes_sent"),
        FILES[1].1.len() as u64,
        "{}",
        third.describe()
    );
    assert_eq!(third.total(&hosts[1], "changed"), 0, "{}", third.describe());
    assert_copied(&www);
    assert!(!www.join("stray.html").exists());
    assert_eq!(
        std::fs::read_to_string(www.join("upload.tmp")).expect("kept"),
        "kept"
    );
    sandbox.assert_hosts_clean();
}
