//! End-to-end tests: spawn the real `mop-agent` binary and speak the protocol to it over its
//! stdin/stdout, as the controller does.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use mop_protocol::frame::DATA_CHUNK;
use mop_protocol::{
    exit_code, read_frame, write_data_frame, write_json_frame, AgentMessage, ControllerMessage,
    Facts, FileEntry, Frame, ResourceEvent, ResourceStatus, RolePlan, RoleSummary,
    PROTOCOL_VERSION,
};
use sha2::{Digest, Sha256};

/// The agent under test: the debug build, or the binary `MOP_AGENT_BIN` names (e.g. the static
/// release build of `scripts/build-agent`).
fn agent_binary() -> std::path::PathBuf {
    std::env::var_os("MOP_AGENT_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_mop-agent").into())
}

struct Agent {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Plays a controller whose read of a source fails after the first data frame: it ends
    /// the stream with `file_refused` instead of `file_digest`.
    refuse_mid_stream: bool,
}

/// What one role produced, seen from the controller.
struct RoleRun {
    events: Vec<ResourceEvent>,
    summary: RoleSummary,
    requested: Vec<u32>,
    /// Ids whose sha256 the agent asked for (`file_digest_request`).
    digests_requested: Vec<u32>,
}

impl Agent {
    fn spawn(env: &[(&str, &str)]) -> Agent {
        let mut command = Command::new(agent_binary());
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("the agent binary starts");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Agent {
            child,
            stdin,
            stdout,
            refuse_mid_stream: false,
        }
    }

    fn stdin(&mut self) -> &mut ChildStdin {
        self.stdin.as_mut().expect("stdin still open")
    }

    fn send(&mut self, message: &ControllerMessage) {
        let stdin = self.stdin();
        write_json_frame(stdin, message).expect("write to agent");
        stdin.flush().expect("flush to agent");
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin();
        stdin.write_all(bytes).expect("write to agent");
        stdin.flush().expect("flush to agent");
    }

    fn receive(&mut self) -> Option<AgentMessage> {
        match read_frame::<_, AgentMessage>(&mut self.stdout).expect("a valid frame from the agent")
        {
            Some(Frame::Message(message)) => Some(message),
            Some(Frame::Data(_)) => panic!("the agent never sends data frames"),
            None => None,
        }
    }

    fn hello(&mut self) -> Facts {
        self.send(&ControllerMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            controller_version: "test".into(),
        });
        match self.receive() {
            Some(AgentMessage::Hello {
                protocol_version,
                facts,
                ..
            }) => {
                assert_eq!(protocol_version, PROTOCOL_VERSION);
                *facts
            }
            other => panic!("expected hello, got {other:?}"),
        }
    }

    /// Sends a role and plays the controller until `role_done`, serving files from `served`
    /// (by id). `on_event` sees each event as it arrives.
    fn run_role_with(
        &mut self,
        plan: &RolePlan,
        served: &BTreeMap<u32, Vec<u8>>,
        mut on_event: impl FnMut(&ResourceEvent),
    ) -> RoleRun {
        self.send(&ControllerMessage::Role(Box::new(plan.clone())));
        let mut events = Vec::new();
        let mut started_indexes: Vec<usize> = Vec::new();
        let mut requested = Vec::new();
        let mut digests_requested = Vec::new();
        loop {
            match self.receive() {
                // Announced before it runs: the same resource's event(s) follow.
                Some(AgentMessage::Started(started)) => {
                    if !started.handler {
                        started_indexes.push(started.index);
                    }
                }
                Some(AgentMessage::Event(event)) => {
                    // Handlers only reported (not notified, check mode) are not announced.
                    if !event.handler {
                        assert_eq!(
                            started_indexes.last(),
                            Some(&event.index),
                            "an event without its `started`: {event:?}"
                        );
                    }
                    on_event(&event);
                    events.push(*event);
                }
                Some(AgentMessage::FileRequest { id }) => {
                    requested.push(id);
                    match served.get(&id) {
                        Some(content) => {
                            self.send(&ControllerMessage::FileBegin {
                                id,
                                size: content.len() as u64,
                            });
                            for chunk in content.chunks(DATA_CHUNK) {
                                write_data_frame(self.stdin(), chunk).expect("data frame");
                                if self.refuse_mid_stream {
                                    break;
                                }
                            }
                            if self.refuse_mid_stream {
                                self.send(&ControllerMessage::FileRefused {
                                    id,
                                    reason: "reading the source failed".into(),
                                });
                            } else {
                                self.send(&ControllerMessage::FileDigest {
                                    id,
                                    sha256: sha256_hex(content),
                                });
                            }
                        }
                        None => self.send(&ControllerMessage::FileRefused {
                            id,
                            reason: "unknown id".into(),
                        }),
                    }
                }
                Some(AgentMessage::FileDigestRequest { id }) => {
                    digests_requested.push(id);
                    match served.get(&id) {
                        Some(content) => self.send(&ControllerMessage::FileDigest {
                            id,
                            sha256: sha256_hex(content),
                        }),
                        None => self.send(&ControllerMessage::FileRefused {
                            id,
                            reason: "unknown id".into(),
                        }),
                    }
                }
                Some(AgentMessage::RoleDone(summary)) => {
                    return RoleRun {
                        events,
                        summary,
                        requested,
                        digests_requested,
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn run_role(&mut self, plan: &RolePlan, served: &BTreeMap<u32, Vec<u8>>) -> RoleRun {
        self.run_role_with(plan, served, |_| {})
    }

    /// Closes stdin and waits; returns the exit code, everything left on stdout, and stderr.
    fn finish(mut self) -> (i32, Vec<u8>, String) {
        drop(self.stdin.take());
        let mut rest = Vec::new();
        self.stdout.read_to_end(&mut rest).expect("read stdout");
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            pipe.read_to_string(&mut stderr).expect("read stderr");
        }
        let status = self.child.wait().expect("agent exits");
        let code = status
            .code()
            .expect("the agent exits, it is not killed by a signal");
        assert!(
            code != 127 && code != 255,
            "exit code {code} is reserved by ssh"
        );
        (code, rest, stderr)
    }

    fn shutdown(mut self) -> i32 {
        self.send(&ControllerMessage::Shutdown);
        let (code, rest, _) = self.finish();
        assert!(rest.is_empty(), "output after shutdown");
        code
    }
}

fn plan(mode: &str, resources: serde_json::Value) -> RolePlan {
    serde_json::from_value(
        serde_json::json!({"role": "test", "mode": mode, "resources": resources}),
    )
    .expect("valid plan")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Every path under `root`, with mode and content, to prove a run changed nothing.
fn snapshot(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).expect("readable") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("exists");
            let content = if meta.file_type().is_symlink() {
                std::fs::read_link(&path)
                    .expect("link")
                    .display()
                    .to_string()
                    .into_bytes()
            } else if meta.is_file() {
                std::fs::read(&path).expect("file")
            } else {
                Vec::new()
            };
            out.insert(
                path.strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string(),
                (meta.permissions().mode(), content),
            );
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn counts(summary: &RoleSummary) -> (u32, u32, u32, u32) {
    (summary.ok, summary.changed, summary.failed, summary.skipped)
}

#[test]
fn hello_reports_facts_and_shutdown_exits_zero() {
    let mut agent = Agent::spawn(&[]);
    let facts = agent.hello();
    assert!(!facts.hostname.is_empty());
    assert_eq!(facts.arch, std::env::consts::ARCH);
    assert!(facts.cpu_count >= 1);
    assert_eq!(agent.shutdown(), exit_code::OK);
}

#[test]
fn closing_stdin_after_hello_exits_zero() {
    let mut agent = Agent::spawn(&[]);
    agent.hello();
    let (code, rest, _) = agent.finish();
    assert_eq!(code, exit_code::OK);
    assert!(rest.is_empty());
}

#[test]
fn a_role_converges_then_reports_no_change() {
    let root = tempfile::tempdir().expect("tempdir");
    let base = root.path().display().to_string();
    let resources = serde_json::json!([
        {"type": "directory", "path": format!("{base}/etc/app"), "mode": "0750"},
        {"type": "file", "path": format!("{base}/etc/app/app.conf"), "content": "port={{ port }}\nhost={{ facts.hostname }}\n", "mode": "0640", "notify": "reload"},
        {"type": "line", "path": format!("{base}/etc/app/app.conf"), "line": "debug=false", "regexp": "^debug="},
        {"type": "link", "path": format!("{base}/current"), "target": "etc/app"},
        {"type": "command", "cmd": "cat app.conf", "cwd": format!("{base}/etc/app"), "register": "conf", "changed_when": "false"},
        {"type": "echo", "msg": "lines={{ conf.stdout_lines | length }}", "when": "not conf.failed"},
        {"type": "file", "path": format!("{base}/skipped"), "when": "port == 1"},
    ]);
    let handlers = serde_json::json!([{"name": "reload", "type": "shell", "cmd": format!("touch {base}/reloaded")}]);
    let make_plan = |mode: &str| -> RolePlan {
        serde_json::from_value(serde_json::json!({
            "role": "app", "mode": mode, "diff": true, "vars": {"port": 8080},
            "resources": resources, "handlers": handlers,
        }))
        .expect("valid plan")
    };
    let mut agent = Agent::spawn(&[]);
    agent.hello();

    let before = snapshot(root.path());
    let check = agent.run_role(&make_plan("check"), &BTreeMap::new());
    assert_eq!(snapshot(root.path()), before, "check mode changed the host");
    assert!(check
        .events
        .iter()
        .filter(|event| event.status == ResourceStatus::Changed)
        .all(|event| event.simulated));
    assert!(!check.summary.role_failed);

    let apply = agent.run_role(&make_plan("apply"), &BTreeMap::new());
    let statuses: Vec<ResourceStatus> = apply.events.iter().map(|event| event.status).collect();
    use ResourceStatus::{Changed, Ok as Unchanged, Skipped};
    // The command ran but `changed_when = false` keeps it ok.
    assert_eq!(
        statuses,
        vec![Changed, Changed, Changed, Changed, Unchanged, Unchanged, Skipped, Changed],
        "{:#?}",
        apply.events
    );
    assert!(apply.events[7].handler);
    assert_eq!(apply.events[5].message.as_deref(), Some("lines=3"));
    let diff = apply.events[1].diff.as_deref().expect("diff asked");
    assert!(diff.contains("+port=8080\n"), "{diff}");
    let conf = std::fs::read_to_string(root.path().join("etc/app/app.conf")).expect("written");
    assert!(conf.starts_with("port=8080\nhost="), "{conf}");
    assert!(conf.ends_with("debug=false\n"), "{conf}");
    assert!(root.path().join("reloaded").exists());
    assert_eq!(counts(&apply.summary), (2, 5, 0, 1));

    // The `line` resource appended to the file the `file` resource owns, so a second run
    // rewrites the content and the line again: that is the policy fighting itself, which is
    // what the operator wrote. Drop the line resource to see a fully converged run.
    let mut converged = make_plan("apply");
    converged.resources.remove(2);
    agent.run_role(&converged, &BTreeMap::new());
    let again = agent.run_role(&converged, &BTreeMap::new());
    assert_eq!(again.summary.changed, 0, "{:#?}", again.events);
    assert!(again
        .events
        .iter()
        .all(|event| event.status != ResourceStatus::Changed));
    assert_eq!(agent.shutdown(), exit_code::OK);
}

#[test]
fn events_stream_before_the_role_ends() {
    // The second resource waits for a file that the test creates only after it has received
    // the first event: if events were buffered until the end of the role, this would time out.
    let root = tempfile::tempdir().expect("tempdir");
    let go = root.path().join("go");
    let plan = plan(
        "apply",
        serde_json::json!([
            {"type": "echo", "msg": "first"},
            {"type": "shell", "cmd": format!("for i in $(seq 200); do [ -f {go} ] && exit 0; sleep 0.05; done; exit 1", go = go.display())},
        ]),
    );
    let mut agent = Agent::spawn(&[]);
    agent.hello();
    let run = agent.run_role_with(&plan, &BTreeMap::new(), |event| {
        if event.index == 0 {
            std::fs::write(&go, "").expect("create go file");
        }
    });
    assert_eq!(
        run.events[1].status,
        ResourceStatus::Changed,
        "{:?}",
        run.events[1]
    );
    agent.shutdown();
}

fn served_plan(dest: &Path, content: &[u8]) -> RolePlan {
    let mut plan = plan(
        "apply",
        serde_json::json!([{"type": "file", "path": dest.display().to_string(), "source": "files/blob", "mode": "0600"}]),
    );
    plan.files.insert(
        "files/blob".into(),
        FileEntry {
            secret: false,
            id: 42,
            sha256: Some(sha256_hex(content)),
            size: content.len() as u64,
            mode: 0o644,
            mtime_ns: None,
        },
    );
    plan
}

/// The content stamp the agent keeps on a file (`user.mop.sha256`), if any.
fn stamp_of(path: &Path) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("no NUL");
    let mut buffer = [0u8; 256];
    // SAFETY: NUL-terminated strings, the kernel writes at most `buffer.len()` bytes.
    let length = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            c"user.mop.sha256".as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    let length = usize::try_from(length).ok()?;
    Some(buffer[..length].to_vec())
}

fn mtime_ns(path: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).expect("stat");
    meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
}

fn set_mtime_ns(path: &Path, ns: i64) {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns as u64);
    std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open")
        .set_modified(time)
        .expect("set mtime");
}

/// The first event's status, with the event shown when it is another.
fn assert_status(run: &RoleRun, status: ResourceStatus) {
    assert_eq!(run.events[0].status, status, "{:?}", run.events[0]);
}

/// A file written from the file server takes the served file's modification time and a stamp
/// of its sha256. A later run reads the stamp instead of the file while size and time hold,
/// and compares the recorded sha256 with the served one; check mode never writes a stamp.
#[test]
fn written_files_keep_the_served_time_and_a_stamp_of_their_content() {
    let root = tempfile::tempdir().expect("tempdir");
    let dest = root.path().join("blob");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    let served_time = 1_700_000_000_123_456_789i64;
    let served = BTreeMap::from([(42, content.clone())]);
    let mut apply = served_plan(&dest, &content);
    apply.files.get_mut("files/blob").expect("entry").mtime_ns = Some(served_time);
    let mut agent = Agent::spawn(&[]);
    agent.hello();

    let run = agent.run_role(&apply, &served);
    assert_eq!(run.events[0].status, ResourceStatus::Changed);
    assert_eq!(mtime_ns(&dest), served_time);
    // Format 2: the format byte, the sha256, the size and the time (little-endian).
    let stamp = stamp_of(&dest).expect("stamped");
    let mut expected = vec![2u8];
    expected.extend_from_slice(&Sha256::digest(&content));
    expected.extend_from_slice(&(content.len() as u64).to_le_bytes());
    expected.extend_from_slice(&served_time.to_le_bytes());
    assert_eq!(stamp, expected);

    // The stamp is what a later run reads: bytes swapped in place with the time put back
    // (what `touch -d` after an edit would do) are taken as the stamped content.
    let mut swapped = content.clone();
    swapped[0] ^= 1;
    std::fs::write(&dest, &swapped).expect("write");
    set_mtime_ns(&dest, served_time);
    let run = agent.run_role(&apply, &served);
    assert_status(&run, ResourceStatus::Ok);
    assert!(run.requested.is_empty());

    // An edit moves the time: the file is read again and put right.
    std::fs::write(&dest, &swapped).expect("write");
    let run = agent.run_role(&apply, &served);
    assert_status(&run, ResourceStatus::Changed);
    assert_eq!(std::fs::read(&dest).expect("read"), content);
    assert_eq!(mtime_ns(&dest), served_time);

    // Another source of the same size and time is still new content: the stamp names the
    // content by its sha256.
    let other: Vec<u8> = content.iter().map(|byte| byte ^ 0x5a).collect();
    let mut other_plan = served_plan(&dest, &other);
    other_plan
        .files
        .get_mut("files/blob")
        .expect("entry")
        .mtime_ns = Some(served_time);
    let run = agent.run_role(&other_plan, &BTreeMap::from([(42, other.clone())]));
    assert_status(&run, ResourceStatus::Changed);
    assert_eq!(std::fs::read(&dest).expect("read"), other);

    // A file mop did not write has no stamp; check mode reads it and leaves it so, apply
    // stamps it once its time is settled.
    std::fs::remove_file(&dest).expect("remove");
    std::fs::write(&dest, &content).expect("write");
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    set_mtime_ns(&dest, served_time - 1);
    let mut check = apply.clone();
    check.mode = mop_protocol::Mode::Check;
    let run = agent.run_role(&check, &served);
    assert_status(&run, ResourceStatus::Ok);
    assert_eq!(stamp_of(&dest), None, "check mode wrote a stamp");
    let run = agent.run_role(&apply, &served);
    assert_status(&run, ResourceStatus::Ok);
    assert!(
        stamp_of(&dest).is_some(),
        "apply did not stamp a verified file"
    );
    assert_eq!(
        mtime_ns(&dest),
        served_time - 1,
        "a verified file keeps its time"
    );
    assert_eq!(agent.shutdown(), exit_code::OK);
}

#[test]
fn file_transfer_by_id_then_nothing_to_transfer() {
    let root = tempfile::tempdir().expect("tempdir");
    let dest = root.path().join("blob");
    let content: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let served = BTreeMap::from([(42, content.clone())]);
    let apply = served_plan(&dest, &content);
    let mut check = apply.clone();
    check.mode = mop_protocol::Mode::Check;

    let mut agent = Agent::spawn(&[]);
    agent.hello();
    let run = agent.run_role(&check, &served);
    assert!(run.requested.is_empty(), "check mode asked for content");
    assert_eq!(run.events[0].status, ResourceStatus::Changed);
    assert!(!dest.exists());

    let run = agent.run_role(&apply, &served);
    assert_eq!(run.requested, vec![42]);
    assert_eq!(
        run.events[0].status,
        ResourceStatus::Changed,
        "{:?}",
        run.events[0]
    );
    assert_eq!(run.events[0].bytes_received, content.len() as u64);
    assert_eq!(run.summary.bytes_received, content.len() as u64);
    assert_eq!(std::fs::read(&dest).expect("written"), content);
    assert_eq!(
        std::fs::metadata(&dest)
            .expect("exists")
            .permissions()
            .mode()
            & 0o7777,
        0o600
    );

    let run = agent.run_role(&apply, &served);
    assert!(
        run.requested.is_empty(),
        "an identical file was requested again"
    );
    assert_eq!(run.events[0].status, ResourceStatus::Ok);
    assert_eq!(run.summary.bytes_received, 0);

    // A refused transfer fails the resource and the session goes on.
    std::fs::write(&dest, "local edit").expect("write");
    let run = agent.run_role(&apply, &BTreeMap::new());
    assert_eq!(run.events[0].status, ResourceStatus::Failed);
    assert!(run.events[0]
        .message
        .as_deref()
        .expect("message")
        .contains("refused"));
    assert_eq!(
        std::fs::read_to_string(&dest).expect("untouched"),
        "local edit"
    );
    assert_eq!(agent.shutdown(), exit_code::OK);
}

/// A plan sent before the controller finished hashing carries no sha256: the agent asks for
/// it only when the destination has the same size, and verifies a transfer against the sha256
/// that ends the stream. A source that fails part way fails the resource, not the session.
#[test]
fn plan_without_sha256_digest_asked_only_when_sizes_match() {
    let root = tempfile::tempdir().expect("tempdir");
    let dest = root.path().join("blob");
    let content: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
    let served = BTreeMap::from([(42, content.clone())]);
    let mut apply = served_plan(&dest, &content);
    apply.files.get_mut("files/blob").expect("entry").sha256 = None;

    let mut agent = Agent::spawn(&[]);
    agent.hello();
    let run = agent.run_role(&apply, &served);
    assert_eq!(
        run.events[0].status,
        ResourceStatus::Changed,
        "{:?}",
        run.events[0]
    );
    assert_eq!(run.requested, vec![42]);
    assert!(
        run.digests_requested.is_empty(),
        "no destination, yet a digest was asked for"
    );
    assert_eq!(std::fs::read(&dest).expect("written"), content);

    let run = agent.run_role(&apply, &served);
    assert_eq!(
        run.events[0].status,
        ResourceStatus::Ok,
        "{:?}",
        run.events[0]
    );
    assert_eq!(run.digests_requested, vec![42]);
    assert!(
        run.requested.is_empty(),
        "an identical file was requested again"
    );

    std::fs::write(&dest, "local edit").expect("write");
    agent.refuse_mid_stream = true;
    let run = agent.run_role(&apply, &served);
    assert_eq!(run.events[0].status, ResourceStatus::Failed);
    let message = run.events[0].message.as_deref().expect("message");
    assert!(message.contains("reading the source failed"), "{message}");
    assert_eq!(
        std::fs::read_to_string(&dest).expect("untouched"),
        "local edit"
    );
    assert_eq!(agent.shutdown(), exit_code::OK, "the session went on");
}

#[test]
fn corrupted_transfer_fails_and_leaves_the_destination_untouched() {
    let root = tempfile::tempdir().expect("tempdir");
    let dest = root.path().join("conf");
    std::fs::write(&dest, "original\n").expect("write");
    let content = b"the new content\n".to_vec();
    let served = BTreeMap::from([(42, content.clone())]);
    let mut agent = Agent::spawn(&[("MOP_AGENT_TEST_CORRUPT_TRANSFER", "1")]);
    agent.hello();
    let before = snapshot(root.path());
    let run = agent.run_role(&served_plan(&dest, &content), &served);
    let event = &run.events[0];
    assert_eq!(event.status, ResourceStatus::Failed);
    assert!(
        event
            .message
            .as_deref()
            .expect("message")
            .starts_with("sha256 mismatch for `files/blob`"),
        "{event:?}"
    );
    assert_eq!(event.bytes_received, content.len() as u64);
    assert!(run.summary.role_failed);
    assert_eq!(
        snapshot(root.path()),
        before,
        "destination touched or temporary file left"
    );
    assert_eq!(agent.shutdown(), exit_code::OK);
}

/// Feeds `bytes` after a valid hello (or instead of it) and returns exit code and the
/// agent's last message.
fn feed_bad(after_hello: bool, bytes: &[u8]) -> (i32, Option<AgentMessage>, String) {
    let mut agent = Agent::spawn(&[]);
    if after_hello {
        agent.hello();
    }
    agent.send_raw(bytes);
    let (code, rest, stderr) = agent.finish();
    let message = match read_frame::<_, AgentMessage>(&mut rest.as_slice()) {
        Ok(Some(Frame::Message(message))) => Some(message),
        _ => None,
    };
    (code, message, stderr)
}

fn assert_protocol_error(result: (i32, Option<AgentMessage>, String), needle: &str) {
    let (code, message, stderr) = result;
    assert_eq!(code, exit_code::PROTOCOL_ERROR, "stderr: {stderr}");
    match message {
        Some(AgentMessage::Error { message }) => assert!(message.contains(needle), "{message}"),
        other => panic!("expected an error message, got {other:?}"),
    }
    assert!(stderr.contains("mop-agent: protocol error"), "{stderr}");
}

#[test]
fn garbage_truncated_oversized_and_unknown_frames_are_protocol_errors() {
    assert_protocol_error(
        feed_bad(false, b"GET / HTTP/1.1\r\n\r\n"),
        "unknown frame kind",
    );
    assert_protocol_error(feed_bad(false, &[0, 0, 0, 100, 0, b'{']), "truncated");
    assert_protocol_error(feed_bad(true, &[0xff, 0xff, 0xff, 0xff, 0]), "oversized");
    assert_protocol_error(feed_bad(true, &[0, 0, 0, 0, 0]), "empty frame");
    let mut unknown = Vec::new();
    write_json_frame(&mut unknown, &serde_json::json!({"msg": "format_disk"})).expect("encode");
    assert_protocol_error(feed_bad(true, &unknown), "malformed message");
    let mut data = Vec::new();
    write_data_frame(&mut data, b"stray").expect("encode");
    assert_protocol_error(feed_bad(true, &data), "outside a file transfer");
    let mut role_first = Vec::new();
    write_json_frame(
        &mut role_first,
        &ControllerMessage::Role(Box::new(plan("apply", serde_json::json!([])))),
    )
    .expect("encode");
    assert_protocol_error(feed_bad(false, &role_first), "expected `hello`");
}

#[test]
fn a_truncated_role_touches_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("created");
    let role = plan(
        "apply",
        serde_json::json!([{"type": "file", "path": target.display().to_string(), "content": "x"}]),
    );
    let mut frame = Vec::new();
    write_json_frame(&mut frame, &ControllerMessage::Role(Box::new(role))).expect("encode");
    frame.truncate(frame.len() - 3);
    assert_protocol_error(feed_bad(true, &frame), "truncated");
    assert!(!target.exists());
}

#[test]
fn a_broken_transfer_ends_the_session_without_touching_the_destination() {
    let root = tempfile::tempdir().expect("tempdir");
    let dest = root.path().join("blob");
    let content = vec![1u8; 1000];
    let mut agent = Agent::spawn(&[]);
    agent.hello();
    agent.send(&ControllerMessage::Role(Box::new(served_plan(
        &dest, &content,
    ))));
    assert!(
        matches!(agent.receive(), Some(AgentMessage::Started(started)) if started.index == 0),
        "the resource is announced first"
    );
    assert_eq!(agent.receive(), Some(AgentMessage::FileRequest { id: 42 }));
    agent.send(&ControllerMessage::FileBegin { id: 42, size: 1000 });
    write_data_frame(agent.stdin(), &content[..500]).expect("data");
    agent.send(&ControllerMessage::Shutdown);
    let (code, rest, _) = agent.finish();
    assert_eq!(code, exit_code::PROTOCOL_ERROR);
    let message = read_frame::<_, AgentMessage>(&mut rest.as_slice());
    assert!(
        matches!(
            message,
            Ok(Some(Frame::Message(AgentMessage::Error { .. })))
        ),
        "{message:?}"
    );
    assert_eq!(
        std::fs::read_dir(root.path()).expect("dir").count(),
        0,
        "destination or temporary file left"
    );
}

#[test]
fn another_protocol_version_is_refused() {
    let mut agent = Agent::spawn(&[]);
    agent.send(&ControllerMessage::Hello {
        protocol_version: PROTOCOL_VERSION + 1,
        controller_version: "future".into(),
    });
    let (code, rest, stderr) = agent.finish();
    assert_eq!(code, exit_code::VERSION_MISMATCH);
    match read_frame::<_, AgentMessage>(&mut rest.as_slice()) {
        Ok(Some(Frame::Message(AgentMessage::Error { message }))) => {
            assert!(
                message.contains(&format!("protocol version {}", PROTOCOL_VERSION + 1)),
                "{message}"
            )
        }
        other => panic!("expected an error message, got {other:?}"),
    }
    assert!(stderr.contains("version mismatch"), "{stderr}");
}

#[test]
fn help_version_and_bad_arguments() {
    let run = |arg: &str| {
        Command::new(agent_binary())
            .arg(arg)
            .output()
            .expect("runs")
    };
    let help = run("--help");
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("Exit codes:") && text.contains("never exits with 127 or 255"),
        "{text}"
    );
    let version = run("--version");
    assert_eq!(version.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("mop-agent "));
    let bad = run("--frobnicate");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unexpected argument `--frobnicate`"));
}

/// Not a timed assertion: prints how long a check run of 1,000 converged files takes (debug
/// build), for the record.
#[test]
fn thousand_unchanged_files_in_check_mode() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut resources = Vec::new();
    for i in 0..1000 {
        let path = root.path().join(format!("f{i}"));
        let content = format!("file number {i}\n");
        std::fs::write(&path, &content).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        resources.push(serde_json::json!({"type": "file", "path": path.display().to_string(), "content": content, "mode": "0644"}));
    }
    let plan = plan("check", serde_json::Value::Array(resources));
    let mut agent = Agent::spawn(&[]);
    agent.hello();
    let started = Instant::now();
    let run = agent.run_role(&plan, &BTreeMap::new());
    let elapsed = started.elapsed();
    assert_eq!(counts(&run.summary), (1000, 0, 0, 0));
    eprintln!(
        "1000 unchanged file resources, check mode, {}: {elapsed:?} (agent-side {} ms)",
        agent_binary().display(),
        run.summary.duration_ms
    );
    agent.shutdown();
}

#[test]
fn remote_log_appends_events_in_apply_mode_only() {
    let home = tempfile::tempdir().expect("tempdir");
    let home_path = home.path().display().to_string();
    let mut agent = Agent::spawn(&[("HOME", home_path.as_str())]);
    let facts = agent.hello();
    assert_eq!(facts.home, home_path);
    let mut role = plan(
        "apply",
        serde_json::json!([{"type": "echo", "msg": "logged"}]),
    );
    role.remote_log = true;
    agent.run_role(&role, &BTreeMap::new());
    let log = home.path().join(".mop/mop.log");
    let text = std::fs::read_to_string(&log).expect("log written");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["role"], "test");
    assert_eq!(lines[0]["message"], "logged");
    assert!(lines[0]["ts"].as_str().expect("ts").ends_with('Z'));
    assert_eq!(lines[1]["summary"]["ok"], 1);
    assert_eq!(
        std::fs::metadata(home.path().join(".mop"))
            .expect("dir")
            .permissions()
            .mode()
            & 0o777,
        0o700
    );

    role.mode = mop_protocol::Mode::Check;
    agent.run_role(&role, &BTreeMap::new());
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        text,
        "check mode wrote to the log"
    );
    agent.shutdown();
}
