//! A reader that goes away (`mop ... | head -2`) ends mop like other Unix tools: killed by
//! SIGPIPE, with nothing on stderr, on every command that prints lists.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use mop_testhosts::TestHostsBuilder;

use crate::support::{mop, Sandbox, MOP_DEADLINE};

const POLICY: &str = r#"
[[roles]]
name = "listed"
groups = ["web"]

[[roles.resources]]
type = "echo"
msg = "one"

[[roles.resources]]
type = "echo"
msg = "two"
"#;

/// Makes a pipe with no reader and runs the rest of the arguments with it as stdout.
///
/// The pipe is a FIFO the `sh` opens for reading and writing, then closes for reading: it never
/// exists in this process. A pipe made here would have its reading end inherited, for a moment,
/// by any child another test thread is forking, and on a loaded machine that moment can last
/// long enough for mop's write to find a reader and succeed.
const WITHOUT_READER: &str = r#"fifo="$1/stdout-fifo-$$"; shift
mkfifo "$fifo" || exit 97
exec 4<>"$fifo" 5>"$fifo"
exec 4<&-
rm -f "$fifo"
exec "$@" >&5 5>&-"#;

/// Runs mop with a stdout that has no reader, so its first write fails (deterministic, unlike
/// a racing `| head`).
fn with_closed_stdout(
    args: &[OsString],
    control_dir: &std::path::Path,
) -> (Option<i32>, Option<i32>, String) {
    let template = mop();
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg(WITHOUT_READER)
        .arg("sh")
        .arg(
            control_dir
                .parent()
                .expect("the control directory is in the sandbox"),
        )
        .arg(template.get_program())
        .args(args);
    if let Some(dir) = template.get_current_dir() {
        command.current_dir(dir);
    }
    for (key, value) in template.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command
        .env("MOP_CONTROL_DIR", control_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn sh running mop");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for mop") {
            break status;
        }
        assert!(started.elapsed() < MOP_DEADLINE, "mop {args:?} hung");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status.code(), status.signal(), stderr)
}

#[test]
fn list_commands_die_of_sigpipe_quietly_when_the_reader_is_gone() {
    let sandbox = Sandbox::start("pipe", TestHostsBuilder::new().hosts(2).group("web"));
    let policy = sandbox.policy("listed", POLICY);
    let control_dir = sandbox.dir().join("control");
    let inventory: OsString = sandbox.inventory.clone().into();
    let policy: OsString = policy.into();
    let os = |items: &[&str]| -> Vec<OsString> { items.iter().map(Into::into).collect() };
    let mut commands: Vec<Vec<OsString>> = vec![
        [os(&["inventory", "-i"]), vec![inventory.clone()]].concat(),
        [os(&["inventory", "--json", "-i"]), vec![inventory.clone()]].concat(),
        [
            os(&["push"]),
            vec![policy.clone()],
            os(&["--list-hosts", "-i"]),
            vec![inventory.clone()],
        ]
        .concat(),
        [
            os(&["push"]),
            vec![policy.clone()],
            os(&["--list-tasks", "--json", "-i"]),
            vec![inventory.clone()],
        ]
        .concat(),
        [
            os(&["run", "-i"]),
            vec![inventory.clone()],
            os(&["web", "--stream", "--", "seq 1 1000"]),
        ]
        .concat(),
        [
            os(&["run", "--json", "-i"]),
            vec![inventory.clone()],
            os(&["web", "--", "seq 1 1000"]),
        ]
        .concat(),
        [
            os(&["run", "-i"]),
            vec![inventory.clone()],
            os(&["web", "--", "seq 1 1000"]),
        ]
        .concat(),
        [os(&["clean", "-i"]), vec![inventory.clone()], os(&["web"])].concat(),
        [
            os(&["clean", "--json", "-i"]),
            vec![inventory.clone()],
            os(&["web"]),
        ]
        .concat(),
    ];
    // With a persisted master there is a line to print.
    let persisted = crate::support::run(
        mop()
            .env("MOP_CONTROL_DIR", &control_dir)
            .args([OsString::from("run"), "-i".into(), inventory.clone()])
            .args(["host1", "--persist", "60s", "--", "true"]),
    );
    assert_eq!(persisted.exit, 0, "{}", persisted.describe());
    commands.push(os(&["connections", "list", "--json"]));
    commands.push(os(&["connections", "list"]));
    for args in &commands {
        let (code, signal, stderr) = with_closed_stdout(args, &control_dir);
        assert_eq!(
            (code, signal),
            (None, Some(libc_sigpipe())),
            "mop {args:?} should end by SIGPIPE; stderr: {stderr}"
        );
        assert!(
            !stderr.contains("Broken pipe")
                && !stderr.contains("error")
                && !stderr.contains("panicked"),
            "mop {args:?} complained about the closed pipe: {stderr}"
        );
    }
    let closed = crate::support::run(mop().env("MOP_CONTROL_DIR", &control_dir).args([
        "connections",
        "close",
        "host1",
    ]));
    assert_eq!(closed.exit, 0, "{}", closed.describe());
    // Nothing of the master is left in the directory, its lock file included.
    let left: Vec<_> = std::fs::read_dir(&control_dir)
        .expect("list the control directory")
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    assert!(left.is_empty(), "left in the control directory: {left:?}");
}

fn libc_sigpipe() -> i32 {
    13
}
