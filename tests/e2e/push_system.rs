//! `sysctl`, `mount` and `unarchive` through `mop push` (and `unarchive` through `mop local`):
//! apply, a second apply that changes nothing, and a check after a manual edit that reports
//! exactly that edit and writes nothing. Real kernel parameters (in a network namespace of the
//! test's own), real tmpfs mounts, real archives built by the test, hostile ones included.

use std::path::Path;
use std::process::Command;

use mop_testhosts::{BastionLayout, TestHostsBuilder};

use crate::support::{run_json, tree_snapshot, JsonRun, Sandbox};

/// The change messages of the resource named `name` on `host`.
fn changes(run: &JsonRun, host: &str, name: &str) -> Vec<String> {
    let event = run
        .resources_of(host)
        .find(|event| event["resource"] == name)
        .unwrap_or_else(|| panic!("no event for `{name}` on {host}\n{}", run.describe()));
    event["changes"]
        .as_array()
        .map(|changes| {
            changes
                .iter()
                .filter_map(|change| change.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn status<'a>(run: &'a JsonRun, host: &'a str, name: &str) -> &'a str {
    run.resources_of(host)
        .find(|event| event["resource"] == name)
        .and_then(|event| event["status"].as_str())
        .unwrap_or_else(|| panic!("no status for `{name}` on {host}\n{}", run.describe()))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

const SYSCTL_POLICY: &str = r#"
[[roles]]
name = "kernel"
hosts = ["rack1-101"]
sudo = true

[[roles.resources]]
name = "accept local"
type = "sysctl"
sysctl = "net.ipv4.conf.lo.accept_local"
value = "@VALUE@"
file = "@OUT@/99-mop.conf"
"#;

/// The parameter lives in the network namespace the hidden host's sshd runs in, which the
/// test hosts create and delete: the machine's own value is never touched.
#[test]
fn sysctl_sets_a_namespaced_parameter_and_persists_it() {
    let sandbox = Sandbox::start(
        "sysctl",
        TestHostsBuilder::new()
            .hosts(0)
            .bastion(BastionLayout::new(1, 1)),
    );
    let ours = read(Path::new("/proc/sys/net/ipv4/conf/lo/accept_local"));
    let namespace = sandbox
        .hosts
        .namespace()
        .expect("the bastion layout has a namespace");
    let in_namespace = || {
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                namespace,
                "cat",
                "/proc/sys/net/ipv4/conf/lo/accept_local",
            ])
            .output()
            .expect("run ip netns exec");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let before = in_namespace();
    let wanted = if before == "1" { "0" } else { "1" };
    let policy = sandbox.policy("sysctl", &SYSCTL_POLICY.replace("@VALUE@", wanted));
    let conf = sandbox.out.join("99-mop.conf");

    let check = sandbox.push(&policy, &["--check", "--diff"]);
    check.assert_exit(0);
    assert_eq!(
        changes(&check, "rack1-101", "accept local"),
        [
            format!("live value `{before}` -> `{wanted}`"),
            format!("created `{}`", conf.display())
        ]
    );
    assert_eq!(in_namespace(), before, "check mode set the parameter");
    assert!(!conf.exists(), "check mode wrote the file");

    sandbox.push(&policy, &["--apply"]).assert_exit(0);
    assert_eq!(in_namespace(), wanted);
    assert_eq!(
        read(&conf),
        format!("net.ipv4.conf.lo.accept_local = {wanted}\n")
    );
    assert_eq!(
        read(Path::new("/proc/sys/net/ipv4/conf/lo/accept_local")),
        ours,
        "the machine's own namespace changed"
    );

    let second = sandbox.push(&policy, &["--apply"]);
    second.assert_exit(0);
    assert_eq!(
        second.total("rack1-101", "changed"),
        0,
        "{}",
        second.describe()
    );

    // A manual edit of the file: check names exactly that and leaves it as it is.
    let edited = format!("# local\nnet.ipv4.conf.lo.accept_local = {before}\n");
    std::fs::write(&conf, &edited).expect("edit");
    let check = sandbox.push(&policy, &["--check"]);
    check.assert_exit(0);
    assert_eq!(
        changes(&check, "rack1-101", "accept local"),
        [format!("`{}`: replaced line 2", conf.display())]
    );
    assert_eq!(read(&conf), edited, "check mode rewrote the file");
    sandbox.assert_hosts_clean();
}

const MOUNT_POLICY: &str = r#"
[[roles]]
name = "mounts"
groups = ["web"]
sudo = true

[[roles.resources]]
name = "scratch"
type = "mount"
path = "@DIR@/scratch"
src = "mop-test-tmpfs"
fstype = "tmpfs"
opts = "size=1m,mode=0755"
state = "@STATE@"
fstab = "@OUT@/fstab"
"#;

/// Unmounts the test's tmpfs whatever happens to the test.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        while is_mounted(&self.0) {
            let status = Command::new("umount").arg(&self.0).status();
            if !status.is_ok_and(|status| status.success()) {
                break;
            }
        }
    }
}

fn is_mounted(path: &Path) -> bool {
    let table = read(Path::new("/proc/self/mountinfo"));
    let wanted = path.to_string_lossy();
    table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mount_point| mount_point == wanted)
}

#[test]
fn mount_a_tmpfs_keeps_fstab_and_mount_state_in_step() {
    let sandbox = Sandbox::start("mount", TestHostsBuilder::new().hosts(1).group("web"));
    let host = sandbox.hosts.hosts()[0].name.clone();
    let scratch = sandbox.dir().join("scratch");
    let _unmount = Unmount(scratch.clone());
    let fstab = sandbox.out.join("fstab");
    std::fs::write(&fstab, "# test fstab\n").expect("write fstab");
    let mounted = sandbox.policy("mounted", &MOUNT_POLICY.replace("@STATE@", "mounted"));
    let line = format!(
        "mop-test-tmpfs {} tmpfs size=1m,mode=0755 0 0",
        scratch.display()
    );

    let first = sandbox.push(&mounted, &["--apply"]);
    first.assert_exit(0);
    assert_eq!(
        changes(&first, &host, "scratch"),
        [
            format!("`{}`: added the entry", fstab.display()),
            format!("mounted `{}`", scratch.display())
        ]
    );
    assert!(is_mounted(&scratch), "not mounted\n{}", first.describe());
    assert_eq!(read(&fstab), format!("# test fstab\n{line}\n"));

    let second = sandbox.push(&mounted, &["--apply"]);
    second.assert_exit(0);
    assert_eq!(second.total(&host, "changed"), 0, "{}", second.describe());

    // Unmounted by hand: check reports exactly the missing mount and changes nothing.
    let status = Command::new("umount")
        .arg(&scratch)
        .status()
        .expect("umount");
    assert!(status.success());
    let check = sandbox.push(&mounted, &["--check"]);
    check.assert_exit(0);
    assert_eq!(
        changes(&check, &host, "scratch"),
        [format!("mounted `{}`", scratch.display())]
    );
    assert!(!is_mounted(&scratch), "check mode mounted it");

    // Absent: unmounted and out of fstab.
    sandbox.push(&mounted, &["--apply"]).assert_exit(0);
    assert!(is_mounted(&scratch));
    let absent = sandbox.policy("absent", &MOUNT_POLICY.replace("@STATE@", "absent"));
    let gone = sandbox.push(&absent, &["--apply"]);
    gone.assert_exit(0);
    assert!(!is_mounted(&scratch), "{}", gone.describe());
    assert_eq!(read(&fstab), "# test fstab\n");
    sandbox.assert_hosts_clean();
}

const UNARCHIVE_POLICY: &str = r#"
[fileserver]
paths = ["files"]

[[roles]]
name = "unpack"
groups = ["web"]

[[roles.resources]]
name = "served"
type = "unarchive"
source = "site.tar.gz"
dest = "@OUT@/{{ host.name }}/site"

[[roles.resources]]
name = "on the host"
type = "unarchive"
src = "@DIR@/docs.zip"
dest = "@OUT@/{{ host.name }}/docs"
"#;

const HOSTILE_POLICY: &str = r#"
[[roles]]
name = "hostile"
groups = ["web"]

[[roles.resources]]
name = "escape"
type = "unarchive"
src = "@DIR@/escape.tar"
dest = "@OUT@/{{ host.name }}/site"
"#;

fn sh(dir: &Path, script: &str) {
    let status = Command::new("sh")
        .args(["-e", "-c", script])
        .current_dir(dir)
        .status()
        .expect("run sh");
    assert!(status.success(), "`{script}` failed");
}

/// Builds `files/site.tar.gz`, `docs.zip` and the hostile `escape.tar` under `dir` with the
/// system's tar and zip.
fn build_archives(dir: &Path) {
    sh(
        dir,
        "mkdir -p files build/site/css build/docs\n\
         echo '<h1>hi</h1>' > build/site/index.html\n\
         echo 'body{}' > build/site/css/app.css\n\
         ln -s index.html build/site/home.html\n\
         echo 'read me' > build/docs/README\n\
         tar -czf files/site.tar.gz -C build/site .\n\
         (cd build && zip -qry ../docs.zip docs)\n\
         echo inside > build/ok.txt\n\
         echo outside > escape-target.txt\n\
         tar -cPf escape.tar -C build ok.txt ../escape-target.txt\n\
         chmod -R a+rX .",
    );
}

#[test]
fn unarchive_unpacks_served_and_host_archives_and_refuses_escapes() {
    let sandbox = Sandbox::start("unarchive", TestHostsBuilder::new().hosts(1).group("web"));
    let host = sandbox.hosts.hosts()[0].name.clone();
    build_archives(sandbox.dir());
    let policy = sandbox.policy("unarchive", UNARCHIVE_POLICY);
    let site = sandbox.out.join(&host).join("site");
    std::fs::create_dir_all(site.parent().expect("parent")).expect("mkdir");
    crate::support::chmod(site.parent().expect("parent"), 0o777);

    let first = sandbox.push(&policy, &["--apply"]);
    first.assert_exit(0);
    assert_eq!(first.total(&host, "changed"), 2, "{}", first.describe());
    assert_eq!(read(&site.join("index.html")), "<h1>hi</h1>\n");
    assert_eq!(read(&site.join("css/app.css")), "body{}\n");
    assert_eq!(
        std::fs::read_link(site.join("home.html")).expect("link"),
        Path::new("index.html")
    );
    let docs = sandbox.out.join(&host).join("docs");
    assert_eq!(read(&docs.join("docs/README")), "read me\n");

    let second = sandbox.push(&policy, &["--apply"]);
    second.assert_exit(0);
    assert_eq!(second.total(&host, "changed"), 0, "{}", second.describe());
    assert_eq!(
        second.total(&host, "bytes_sent"),
        0,
        "{}",
        second.describe()
    );

    std::fs::write(site.join("css/app.css"), "edited").expect("edit");
    let before = tree_snapshot(&sandbox.out);
    let check = sandbox.push(&policy, &["--check"]);
    check.assert_exit(0);
    assert_eq!(
        changes(&check, &host, "served"),
        [format!(
            "`{}` differs from the archive",
            site.join("css/app.css").display()
        )]
    );
    assert_eq!(status(&check, &host, "on the host"), "ok");
    assert_eq!(tree_snapshot(&sandbox.out), before, "check mode wrote");

    // A hostile archive fails its resource and leaves the destination exactly as it was.
    let hostile = sandbox.policy("hostile", HOSTILE_POLICY);
    let refused = sandbox.push(&hostile, &["--apply"]);
    assert_ne!(refused.exit, 0, "{}", refused.describe());
    let error = refused
        .resources_of(&host)
        .find(|event| event["resource"] == "escape")
        .and_then(|event| event["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no error for the hostile archive\n{}", refused.describe()));
    assert!(error.contains("has a `..` component"), "{error}");
    assert_eq!(
        tree_snapshot(&sandbox.out),
        before,
        "the hostile archive wrote"
    );
    assert_eq!(read(&sandbox.dir().join("escape-target.txt")), "outside\n");
    sandbox.assert_hosts_clean();
}

#[test]
fn unarchive_through_mop_local() {
    let dir = tempfile::tempdir().expect("tempdir");
    build_archives(dir.path());
    let policy = dir.path().join("local.toml");
    std::fs::write(
        &policy,
        format!(
            "[[roles]]\nname = \"local\"\n\n[[roles.resources]]\nname = \"docs\"\ntype = \"unarchive\"\nsrc = \"{0}/docs.zip\"\ndest = \"{0}/unpacked\"\n",
            dir.path().display()
        ),
    )
    .expect("write policy");
    let policy = policy.to_string_lossy().into_owned();
    let first = run_json(["local", policy.as_str(), "--apply"]);
    first.assert_exit(0);
    assert_eq!(
        first.total("localhost", "changed"),
        1,
        "{}",
        first.describe()
    );
    assert_eq!(read(&dir.path().join("unpacked/docs/README")), "read me\n");
    let second = run_json(["local", policy.as_str(), "--apply"]);
    second.assert_exit(0);
    assert_eq!(
        second.total("localhost", "changed"),
        0,
        "{}",
        second.describe()
    );
}
