//! The controller's digest cache through `mop push`: a served file unchanged since an earlier
//! run is not hashed again, and one rewritten behind mop's back (same size, modification time
//! put back) is still seen as changed and sent.

use std::path::Path;
use std::time::Duration;

use mop_testhosts::TestHostsBuilder;

use crate::support::{mop, run, Output, Sandbox};

const POLICY: &str = r#"
[fileserver]
paths = ["files"]

[[roles]]
name = "conf"
groups = ["web"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}.conf"
source = "app.conf"
mode = "0644"
"#;

fn push(sandbox: &Sandbox, policy: &Path, cache: &Path) -> Output {
    run(mop()
        .args(sandbox.push_args(policy, &["--apply"]))
        .env("MOP_DIGEST_CACHE", cache))
}

#[test]
fn a_file_rewritten_with_its_time_put_back_is_sent_despite_the_cache() {
    let sandbox = Sandbox::start("digests", TestHostsBuilder::new().hosts(1).group("web"));
    let policy = sandbox.policy("conf", POLICY);
    let files = sandbox.dir().join("files");
    std::fs::create_dir_all(&files).expect("mkdir");
    let source = files.join("app.conf");
    std::fs::write(&source, "version one\n").expect("write");
    // Only a file whose last change is older than the settle time is recorded.
    std::thread::sleep(mop_fileserver::DIGEST_CACHE_SETTLED + Duration::from_millis(200));
    let cache = sandbox.dir().join("cache/digests");
    let copy = sandbox.out.join("host1.conf");

    let first = push(&sandbox, &policy, &cache);
    assert_eq!(first.exit, 0, "{}", first.describe());
    assert_eq!(
        std::fs::read_to_string(&copy).expect("copied"),
        "version one\n"
    );
    let recorded = std::fs::read_to_string(&cache).expect("the cache was written");
    let canonical = std::fs::canonicalize(&source).expect("canonical");
    assert!(
        recorded.contains(&format!(" {}\n", canonical.display())),
        "{recorded}"
    );

    let second = push(&sandbox, &policy, &cache);
    assert_eq!(second.exit, 0, "{}", second.describe());

    // Same size, same modification time, other content: only its ctime moved.
    let modified = std::fs::metadata(&source)
        .expect("stat")
        .modified()
        .expect("mtime");
    std::fs::write(&source, "version two\n").expect("rewrite");
    std::fs::File::options()
        .write(true)
        .open(&source)
        .expect("open")
        .set_modified(modified)
        .expect("put the time back");
    let third = push(&sandbox, &policy, &cache);
    assert_eq!(third.exit, 0, "{}", third.describe());
    assert_eq!(
        std::fs::read_to_string(&copy).expect("copied"),
        "version two\n",
        "the rewritten source was hashed again and sent\n{}",
        third.describe()
    );

    // A relative cache path is not taken, and the operator is told so.
    let relative = push(&sandbox, &policy, Path::new("cache/digests"));
    assert_eq!(relative.exit, 0, "{}", relative.describe());
    assert!(
        relative
            .stderr
            .contains("warning: MOP_DIGEST_CACHE `cache/digests` is not an absolute path"),
        "{}",
        relative.describe()
    );
    sandbox.assert_hosts_clean();
}
