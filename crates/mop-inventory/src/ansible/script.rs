//! Running a dynamic inventory script: `SCRIPT --list`, argv only (no shell), stdin closed, a
//! time limit, bounded output, the exit status checked and stderr shown when it fails.
//!
//! The script is code the operator chose to run (`-i ./script`): mop runs only a script named
//! with `-i` itself, never an executable it finds in an inventory directory (docs/security.md).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::InventoryError;

/// How long `--list` may take.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// The most `--list` may print on stdout.
pub const MAX_SCRIPT_OUTPUT: usize = 64 * 1024 * 1024;
/// How much of stderr is kept to show on failure.
const MAX_STDERR_SHOWN: usize = 4096;

/// Runs `path --list` and returns what it printed on stdout.
pub(crate) fn run_list(path: &Path) -> Result<String, InventoryError> {
    run_list_with(path, SCRIPT_TIMEOUT, MAX_SCRIPT_OUTPUT)
}

pub(crate) fn run_list_with(
    path: &Path,
    timeout: Duration,
    max_output: usize,
) -> Result<String, InventoryError> {
    let fail = |message: String, hint: Option<String>| InventoryError::Script {
        path: path.to_path_buf(),
        message,
        hint,
    };
    // `inv.sh` alone would be looked up in PATH: run the file that was named.
    let program: PathBuf = if path.is_absolute() || path.starts_with(".") {
        path.to_path_buf()
    } else {
        Path::new(".").join(path)
    };
    let mut child = Command::new(&program)
        .arg("--list")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout ends whatever it started too.
        .process_group(0)
        .spawn()
        .map_err(|error| {
            fail(
                format!("cannot run `{} --list`: {error}", program.display()),
                Some(
                    "a file given with `-i` that is executable is run as a dynamic inventory \
                     script; remove its exec bit if it is an INI file"
                        .into(),
                ),
            )
        })?;
    let (sender, receiver) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let out_sender = sender.clone();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let result = stdout
            .take(max_output as u64 + 1)
            .read_to_end(&mut bytes)
            .map(|_| bytes);
        let _ = out_sender.send(Stream::Out(result));
    });
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut stderr = stderr;
        let mut buffer = [0u8; 8192];
        // Read it all (a full pipe would stall the script), keep the end.
        while let Ok(count) = stderr.read(&mut buffer) {
            if count == 0 {
                break;
            }
            kept.extend_from_slice(&buffer[..count]);
            if kept.len() > 2 * MAX_STDERR_SHOWN {
                kept.drain(..kept.len() - MAX_STDERR_SHOWN);
            }
        }
        let _ = sender.send(Stream::Err(kept));
    });

    let deadline = Instant::now() + timeout;
    let mut stdout_bytes = None;
    let mut stderr_bytes = None;
    while stdout_bytes.is_none() || stderr_bytes.is_none() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(remaining) {
            Ok(Stream::Out(result)) => {
                let bytes = result.map_err(|error| {
                    kill_group(&mut child);
                    fail(format!("cannot read its output: {error}"), None)
                })?;
                if bytes.len() > max_output {
                    kill_group(&mut child);
                    return Err(fail(
                        format!("`--list` printed more than {max_output} bytes"),
                        Some("a dynamic inventory prints one JSON object on stdout".into()),
                    ));
                }
                stdout_bytes = Some(bytes);
            }
            Ok(Stream::Err(bytes)) => stderr_bytes = Some(bytes),
            Err(_) => {
                kill_group(&mut child);
                return Err(fail(
                    format!("`--list` did not finish within {} s", timeout.as_secs()),
                    Some("the script was stopped; check what it waits for".into()),
                ));
            }
        }
    }
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                kill_group(&mut child);
                return Err(fail(
                    format!("`--list` did not finish within {} s", timeout.as_secs()),
                    Some("the script was stopped; check what it waits for".into()),
                ));
            }
            Err(error) => return Err(fail(format!("cannot wait for it: {error}"), None)),
        }
    };
    let stderr_text = shown_stderr(stderr_bytes.as_deref().unwrap_or_default());
    if !status.success() {
        let how = match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "was killed by a signal".to_string(),
        };
        return Err(fail(format!("`--list` {how}{stderr_text}"), None));
    }
    String::from_utf8(stdout_bytes.unwrap_or_default()).map_err(|_| {
        fail(
            format!("`--list` printed text that is not UTF-8{stderr_text}"),
            None,
        )
    })
}

enum Stream {
    Out(std::io::Result<Vec<u8>>),
    Err(Vec<u8>),
}

fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) with a negative pid signals the process group the child leads
        // (`process_group(0)` above); it touches no memory.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The end of stderr, one indented line each, control characters escaped (the terminal shows
/// text, not what the script's output would make of it).
fn shown_stderr(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let skip = text.len().saturating_sub(MAX_STDERR_SHOWN);
    let start = (skip..=text.len())
        .find(|index| text.is_char_boundary(*index))
        .unwrap_or(text.len());
    let lines: Vec<String> = text[start..]
        .lines()
        .map(|line| {
            let shown: String = line
                .chars()
                .flat_map(|c| {
                    let escaped: Vec<char> = if c.is_control() {
                        c.escape_default().collect()
                    } else {
                        vec![c]
                    };
                    escaped
                })
                .collect();
            format!("\n  stderr: {shown}")
        })
        .collect();
    lines.concat()
}
