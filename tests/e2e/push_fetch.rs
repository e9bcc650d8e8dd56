//! `download`, `git` and `repository` through `mop push` against real sshd: a download from
//! an HTTP server this test runs on loopback, a checkout of a repository this test creates,
//! and an apt repository this test builds, signs and installs a package from.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use mop_testhosts::{TestHostsBuilder, TEST_USER};
use serde_json::Value;

use crate::support::{unique_name, JsonRun, Sandbox};

/// A tiny HTTP/1.0 server for one directory: GET of a file, 404 otherwise. Counts requests
/// so a test can tell a skipped download from a repeated one.
struct FileServer {
    port: u16,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FileServer {
    fn start(root: PathBuf) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counter, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = serve(&root, stream);
                }
            }
        });
        FileServer {
            port,
            requests,
            stop,
        }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(root: &Path, stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let name = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/');
    let mut stream = stream;
    let safe = !name.is_empty() && !name.contains("..");
    match std::fs::read(root.join(name)).ok().filter(|_| safe) {
        Some(body) => {
            write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            stream.write_all(&body)?;
        }
        None => {
            let body = b"not found\n";
            write!(
                stream,
                "HTTP/1.0 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            stream.write_all(body)?;
        }
    }
    stream.flush()
}

fn sha256_of(path: &Path) -> String {
    let output = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_string()
}

fn sh(dir: &Path, script: &str) -> String {
    let output = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("run sh");
    assert!(
        output.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The resource events of `host` whose name contains `needle`.
fn event<'a>(run: &'a JsonRun, host: &'a str, needle: &str) -> &'a Value {
    run.resources_of(host)
        .find(|event| {
            event["resource"]
                .as_str()
                .is_some_and(|name| name.contains(needle))
        })
        .unwrap_or_else(|| panic!("no event for `{needle}` on {host}\n{}", run.describe()))
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

const DOWNLOAD_POLICY: &str = r#"
[[roles]]
name = "fetch"
groups = ["web"]

[[roles.resources]]
name = "release"
type = "download"
url = "@URL@"
dest = "@OUT@/{{ host.name }}-release.bin"
sha256 = "@SHA@"
mode = "0640"
"#;

const BROKEN_DOWNLOADS: &str = r#"
[[roles]]
name = "fetch"
groups = ["web"]

[[roles.resources]]
name = "mismatch"
type = "download"
url = "@OTHER_URL@"
dest = "@OUT@/{{ host.name }}-release.bin"
sha256 = "@SHA@"
ignore_errors = true

[[roles.resources]]
name = "missing"
type = "download"
url = "@MISSING_URL@"
dest = "@OUT@/{{ host.name }}-release.bin"
sha256 = "@SHA@"
ignore_errors = true
"#;

#[test]
fn download_is_verified_skipped_when_present_and_failures_leave_the_file() {
    let sandbox = Sandbox::start("download", TestHostsBuilder::new().hosts(1).group("web"));
    let served = sandbox.dir().join("served");
    std::fs::create_dir(&served).expect("create served/");
    let release: Vec<u8> = (0..100_000u32).map(|n| (n * 7 % 251) as u8).collect();
    std::fs::write(served.join("release.bin"), &release).expect("write release.bin");
    std::fs::write(served.join("other.bin"), b"not the release\n").expect("write other.bin");
    let sha = sha256_of(&served.join("release.bin"));
    let server = FileServer::start(served);
    let policy = sandbox.policy(
        "download",
        &DOWNLOAD_POLICY
            .replace("@URL@", &server.url("release.bin"))
            .replace("@SHA@", &sha),
    );
    let dest = sandbox.out.join("host1-release.bin");

    let first = sandbox.push(&policy, &["--apply"]);
    first.assert_exit(0);
    assert_eq!(first.total("host1", "changed"), 1, "{}", first.describe());
    assert_eq!(std::fs::read(&dest).expect("downloaded"), release);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dest).expect("meta").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640);
    let fetched = server.requests();
    assert_eq!(fetched, 1, "one GET for the first apply");

    // Second apply: the checksum matches, nothing is fetched.
    let second = sandbox.push(&policy, &["--apply"]);
    second.assert_exit(0);
    assert_eq!(second.total("host1", "changed"), 0, "{}", second.describe());
    assert_eq!(
        server.requests(),
        fetched,
        "a converged download fetched again"
    );

    // A manual edit: check reports exactly the content, fetches and writes nothing.
    std::fs::write(&dest, b"edited by hand\n").expect("edit");
    let check = sandbox.push(&policy, &["--check", "--diff"]);
    check.assert_exit(0);
    assert_eq!(check.total("host1", "changed"), 1, "{}", check.describe());
    let changes = &event(&check, "host1", "release")["changes"];
    assert_eq!(changes.as_array().map(Vec::len), Some(1), "{changes}");
    assert!(
        changes[0]
            .as_str()
            .unwrap_or_default()
            .starts_with("content"),
        "{changes}"
    );
    assert_eq!(
        std::fs::read(&dest).expect("still edited"),
        b"edited by hand\n"
    );
    assert_eq!(server.requests(), fetched, "check mode fetched");

    // Apply restores it.
    let restore = sandbox.push(&policy, &["--apply"]);
    restore.assert_exit(0);
    assert_eq!(std::fs::read(&dest).expect("restored"), release);

    // A checksum mismatch and a 404: both fail with the reason, the file stays, no litter.
    let broken = sandbox.policy(
        "broken",
        &BROKEN_DOWNLOADS
            .replace("@OTHER_URL@", &server.url("other.bin"))
            .replace("@MISSING_URL@", &server.url("missing.bin"))
            .replace("@SHA@", &"0".repeat(64)),
    );
    let failed = sandbox.push(&broken, &["--apply"]);
    assert_eq!(failed.total("host1", "failed"), 2, "{}", failed.describe());
    let mismatch = event(&failed, "host1", "mismatch")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(mismatch.contains("sha256 mismatch"), "{mismatch}");
    let missing = event(&failed, "host1", "missing")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(missing.contains("404"), "{missing}");
    assert_eq!(std::fs::read(&dest).expect("untouched"), release);
    assert_eq!(names_in(&sandbox.out), ["host1-release.bin"]);
    sandbox.assert_hosts_clean();
}

const GIT_POLICY: &str = r#"
[[roles]]
name = "checkout"
groups = ["web"]

[[roles.resources]]
name = "app"
type = "git"
repo = "file://@DIR@/origin"
dest = "@OUT@/{{ host.name }}-app"
version = "{{ wanted }}"
register = "app"
"#;

/// The commit `.git/HEAD` of a detached checkout names.
fn head_of(checkout: &Path) -> String {
    std::fs::read_to_string(checkout.join(".git/HEAD"))
        .expect("read .git/HEAD")
        .trim()
        .to_string()
}

#[test]
fn git_checks_out_moves_with_the_version_and_refuses_unknown_revisions() {
    let sandbox = Sandbox::start("git", TestHostsBuilder::new().hosts(1).group("web"));
    let origin = sandbox.dir().join("origin");
    std::fs::create_dir(&origin).expect("create origin/");
    let git = "git -c user.name=mop -c user.email=mop@localhost";
    sh(
        &origin,
        &format!(
            "git init -q -b main . && echo one > app.txt && git add app.txt && {git} commit -qm one && git tag v1"
        ),
    );
    let v1 = sh(&origin, "git rev-parse HEAD");
    sh(
        &origin,
        &format!("echo two > app.txt && {git} commit -qam two"),
    );
    let main = sh(&origin, "git rev-parse HEAD");
    // The agent runs as the test user; git refuses repositories of other owners.
    sh(&origin, &format!("chown -R {TEST_USER} ."));
    let policy = sandbox.policy("git", GIT_POLICY);
    let checkout = sandbox.out.join("host1-app");

    let first = sandbox.push(&policy, &["--apply", "-e", "wanted=v1"]);
    first.assert_exit(0);
    assert_eq!(first.total("host1", "changed"), 1, "{}", first.describe());
    assert_eq!(head_of(&checkout), v1);
    assert_eq!(
        std::fs::read_to_string(checkout.join("app.txt")).expect("file"),
        "one\n"
    );

    let again = sandbox.push(&policy, &["--apply", "-e", "wanted=v1"]);
    again.assert_exit(0);
    assert_eq!(again.total("host1", "changed"), 0, "{}", again.describe());

    let moved = sandbox.push(&policy, &["--apply", "-e", "wanted=main"]);
    moved.assert_exit(0);
    assert_eq!(moved.total("host1", "changed"), 1, "{}", moved.describe());
    assert_eq!(head_of(&checkout), main);
    assert_eq!(
        std::fs::read_to_string(checkout.join("app.txt")).expect("file"),
        "two\n"
    );

    // Someone moves the checkout by hand: check reports exactly that move, changes nothing.
    let by_hand = Command::new("runuser")
        .args(["-u", TEST_USER, "--", "git", "-C"])
        .arg(&checkout)
        .args(["checkout", "--quiet", &v1])
        .status()
        .expect("run git as the test user");
    assert!(by_hand.success());
    let check = sandbox.push(&policy, &["--check", "-e", "wanted=main"]);
    check.assert_exit(0);
    let changes = &event(&check, "host1", "app")["changes"];
    assert_eq!(
        changes,
        &serde_json::json!([format!("commit {} -> {}", &v1[..12], &main[..12])]),
        "{}",
        check.describe()
    );
    assert_eq!(head_of(&checkout), v1, "check mode moved the checkout");

    // Revisions that do not exist fail with the reason; the checkout stays where it was.
    for wanted in ["no-such-branch", "0123456789012345678901234567890123456789"] {
        let failed = sandbox.push(&policy, &["--apply", "-e", &format!("wanted={wanted}")]);
        assert_eq!(failed.total("host1", "failed"), 1, "{}", failed.describe());
        let message = event(&failed, "host1", "app")["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(message.contains("does not exist"), "{wanted}: {message}");
        assert_eq!(head_of(&checkout), v1, "{wanted} moved the checkout");
    }
    // A fresh destination and a failing revision: nothing is left behind.
    let fresh = sandbox.policy("fresh", &GIT_POLICY.replace("-app\"", "-fresh\""));
    let failed = sandbox.push(
        &fresh,
        &[
            "--apply",
            "-e",
            "wanted=0123456789012345678901234567890123456789",
        ],
    );
    assert_eq!(failed.total("host1", "failed"), 1, "{}", failed.describe());
    assert_eq!(names_in(&sandbox.out), ["host1-app"]);

    // Values that git could read as options never reach a host.
    let hostile = sandbox.policy(
        "hostile",
        &GIT_POLICY.replace("file://@DIR@/origin", "--upload-pack=touch /tmp/mop-pwned"),
    );
    let refused = crate::support::run_mop([std::ffi::OsStr::new("validate"), hostile.as_os_str()]);
    assert_eq!(refused.exit, 2, "{}", refused.describe());
    assert!(
        refused.stderr.contains("field `repo`"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("hostile.toml:"),
        "{}",
        refused.stderr
    );
    sandbox.assert_hosts_clean();
}

const REPOSITORY_POLICY: &str = r#"
[[roles]]
name = "repo"
groups = ["web"]
sudo = true

[[roles.resources]]
type = "repository"
repository = "@NAME@"
url = "file://@DIR@/repo"
suites = "./"
key = """@KEY@"""
manager = "apt"
state = "{{ repo_state }}"

[[roles.resources]]
type = "package"
package = "@NAME@"
state = "{{ repo_state }}"
"#;

/// Removes what the apt test adds to the machine, even when the test fails halfway.
struct AptCleanup {
    name: String,
    repo_dir: PathBuf,
}

impl Drop for AptCleanup {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", &self.name]).output();
        let _ = std::fs::remove_file(format!("/etc/apt/sources.list.d/{}.sources", self.name));
        let _ = std::fs::remove_file(format!("/etc/apt/keyrings/{}.asc", self.name));
        // apt names list files after the URI: the repository directory with `/` as `_`.
        let marker = self.repo_dir.to_string_lossy().replace('/', "_");
        if let Ok(entries) = std::fs::read_dir("/var/lib/apt/lists") {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().contains(&marker) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

#[test]
fn apt_repository_is_written_signed_refreshed_and_used() {
    if !Path::new("/usr/bin/apt-get").exists() {
        panic!("this test needs apt-get (a Debian-like test machine)");
    }
    let sandbox = Sandbox::start("repository", TestHostsBuilder::new().hosts(1).group("web"));
    let name = unique_name("mop-e2e-repo")
        .to_ascii_lowercase()
        .replace('_', "-");
    let repo = sandbox.dir().join("repo");
    let _cleanup = AptCleanup {
        name: name.clone(),
        repo_dir: repo.clone(),
    };
    // A package, a flat repository with it, a key and a signed InRelease.
    let build = sandbox.dir().join("build");
    std::fs::create_dir_all(build.join("pkg/DEBIAN")).expect("create pkg/DEBIAN");
    std::fs::create_dir_all(build.join(format!("pkg/usr/share/{name}"))).expect("create share");
    std::fs::write(
        build.join(format!("pkg/usr/share/{name}/hello")),
        "hello from the test repository\n",
    )
    .expect("write payload");
    std::fs::write(
        build.join("pkg/DEBIAN/control"),
        format!("Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: mop tests <mop@localhost>\nDescription: mop e2e test package\n"),
    )
    .expect("write control");
    std::fs::create_dir_all(&repo).expect("create repo/");
    sh(
        &build,
        &format!(
            "dpkg-deb --root-owner-group -b pkg {}/{name}_1.0_all.deb >/dev/null",
            repo.display()
        ),
    );
    sh(
        &repo,
        "dpkg-scanpackages --multiversion . /dev/null > Packages 2>/dev/null",
    );
    let packages = repo.join("Packages");
    let size = std::fs::metadata(&packages).expect("Packages").len();
    std::fs::write(
        repo.join("Release"),
        format!(
            "Origin: mop-e2e\nLabel: mop-e2e\nDate: {}\nSHA256:\n {} {size} Packages\n",
            sh(&repo, "LC_ALL=C date -Ru"),
            sha256_of(&packages)
        ),
    )
    .expect("write Release");
    let gnupg = sandbox.dir().join("gnupg");
    std::fs::create_dir(&gnupg).expect("create gnupg/");
    crate::support::chmod(&gnupg, 0o700);
    let gpg = format!("gpg --batch --quiet --homedir {}", gnupg.display());
    sh(
        &repo,
        &format!("{gpg} --passphrase '' --quick-gen-key 'mop e2e' ed25519 sign never 2>/dev/null"),
    );
    sh(&repo, &format!("{gpg} --clearsign -o InRelease Release"));
    let key = sh(&repo, &format!("{gpg} --armor --export"));
    let policy = sandbox.policy(
        "repository",
        &REPOSITORY_POLICY
            .replace("@NAME@", &name)
            .replace("@KEY@", &key),
    );
    let source = PathBuf::from(format!("/etc/apt/sources.list.d/{name}.sources"));
    let key_file = PathBuf::from(format!("/etc/apt/keyrings/{name}.asc"));

    let first = sandbox.push(&policy, &["--apply", "-e", "repo_state=present"]);
    first.assert_exit(0);
    assert_eq!(first.total("host1", "failed"), 0, "{}", first.describe());
    assert_eq!(first.total("host1", "changed"), 2, "{}", first.describe());
    let written = std::fs::read_to_string(&source).expect("source written");
    assert_eq!(
        written,
        format!(
            "# managed by mop: repository {name}\nTypes: deb\nURIs: file://{}\nSuites: ./\nSigned-By: {}\n",
            repo.display(),
            key_file.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(&key_file).expect("key written"),
        format!("{key}\n")
    );
    let changes = &event(&first, "host1", "repository")["changes"];
    assert!(
        changes.to_string().contains("package index refreshed"),
        "{changes}"
    );
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", &name])
        .output()
        .expect("dpkg-query");
    assert_eq!(
        String::from_utf8_lossy(&installed.stdout),
        "install ok installed"
    );

    let second = sandbox.push(&policy, &["--apply", "-e", "repo_state=present"]);
    second.assert_exit(0);
    assert_eq!(second.total("host1", "changed"), 0, "{}", second.describe());

    // A manual edit to the source: check reports exactly that file, and leaves it.
    std::fs::write(&source, "# edited\n").expect("edit the source");
    let check = sandbox.push(&policy, &["--check", "-e", "repo_state=present"]);
    check.assert_exit(0);
    assert_eq!(check.total("host1", "changed"), 1, "{}", check.describe());
    assert_eq!(
        event(&check, "host1", "repository")["changes"],
        serde_json::json!([format!("content of `{}`", source.display())])
    );
    assert_eq!(
        std::fs::read_to_string(&source).expect("still edited"),
        "# edited\n"
    );

    // Absent: the package, the source and the key go.
    let gone = sandbox.push(&policy, &["--apply", "-e", "repo_state=absent"]);
    gone.assert_exit(0);
    assert!(
        !source.exists() && !key_file.exists(),
        "{}",
        gone.describe()
    );
    sandbox.assert_hosts_clean();
}

#[test]
fn a_repository_whose_refresh_fails_is_put_back() {
    let sandbox = Sandbox::start(
        "repository-bad",
        TestHostsBuilder::new().hosts(1).group("web"),
    );
    let name = unique_name("mop-e2e-badrepo")
        .to_ascii_lowercase()
        .replace('_', "-");
    let empty = sandbox.dir().join("norepo");
    std::fs::create_dir(&empty).expect("create norepo/");
    let _cleanup = AptCleanup {
        name: name.clone(),
        repo_dir: empty.clone(),
    };
    let policy = sandbox.policy(
        "bad",
        &REPOSITORY_POLICY
            .replace("@NAME@", &name)
            .replace("/repo\"", "/norepo\"")
            .replace("key = \"\"\"@KEY@\"\"\"\n", "trusted = true\n"),
    );
    let run = sandbox.push(&policy, &["--apply", "-e", "repo_state=present"]);
    let message = event(&run, "host1", "repository")["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("apt-get update"), "{}", run.describe());
    assert!(message.contains("put back"), "{message}");
    assert!(
        !Path::new(&format!("/etc/apt/sources.list.d/{name}.sources")).exists(),
        "the source of a failed refresh stayed"
    );
    sandbox.assert_hosts_clean();
}
