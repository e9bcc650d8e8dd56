//! Thin wrappers over the operating system: root check, tool lookup, helper commands, file locks.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Error;

/// Fails with a clear message unless the effective uid is 0.
pub fn require_root() -> Result<(), Error> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        Ok(())
    } else {
        Err(Error::NotRoot { uid })
    }
}

/// Finds an executable by name in PATH and the usual sbin directories (root's PATH under
/// `cargo test` may lack /usr/sbin). sshd must be started by absolute path to re-exec itself.
pub(crate) fn find_tool(name: &str) -> Result<PathBuf, Error> {
    let path_dirs = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let fallback = [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ];
    path_dirs
        .into_iter()
        .chain(fallback.iter().map(PathBuf::from))
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| Error::ToolMissing {
            tool: name.to_owned(),
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Renders a command line for error messages.
pub(crate) fn describe(program: &Path, args: &[&OsStr]) -> String {
    let mut line = program.display().to_string();
    for arg in args {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Runs a helper command to completion, feeding `stdin` if given, and returns its stdout.
pub(crate) fn run(program: &Path, args: &[&OsStr], stdin: Option<&[u8]>) -> Result<String, Error> {
    use std::io::Write;
    let command_line = describe(program, args);
    let failed = |status: String, stderr: String| Error::CommandFailed {
        command: command_line.clone(),
        status,
        stderr,
    };
    let mut child = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| failed(format!("cannot start: {error}"), String::new()))?;
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was configured as piped");
        pipe.write_all(input)
            .map_err(|error| failed(format!("cannot write stdin: {error}"), String::new()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| failed(format!("cannot wait: {error}"), String::new()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(failed(
            output.status.to_string(),
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ))
    }
}

/// An exclusive `flock` held until dropped; serialises user setup across test processes.
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    pub(crate) fn acquire(path: &Path) -> Result<FileLock, Error> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|error| Error::io("open lock file", path, error))?;
        loop {
            // SAFETY: the descriptor is owned by `file`, which outlives this call.
            let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if result == 0 {
                return Ok(FileLock { _file: file });
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::io("lock", path, error));
            }
        }
    }
}

/// The directory for lock files: /run when writable (tmpfs, cleared at boot), else the temp dir.
pub(crate) fn lock_dir() -> PathBuf {
    let run = PathBuf::from("/run");
    if run.is_dir() {
        run
    } else {
        std::env::temp_dir()
    }
}

/// Sends `signal` to `pid`, ignoring "no such process".
pub(crate) fn send_signal(pid: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid <= 0 {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions; a stale pid yields ESRCH, which we ignore.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Whether a process with this pid exists (in our pid namespace) and is not a zombie.
pub(crate) fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => parse_stat(&stat).is_some_and(|(state, _)| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// Parses `/proc/PID/stat` into (state, parent pid); the command name may contain spaces and
/// parentheses, so we split after the last `)`.
pub(crate) fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// The last `lines` lines of a log file, or a note that it cannot be read.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            if all.is_empty() {
                "  (empty)".to_owned()
            } else {
                all[start..]
                    .iter()
                    .map(|line| format!("  {line}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        Err(error) => format!("  (cannot read log: {error})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_name() {
        let stat = "1234 (sshd: moptest (x)) S 99 1234 1234 0 -1 4194560";
        assert_eq!(parse_stat(stat), Some(('S', 99)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (init) "), None);
    }

    #[test]
    fn finds_sh_and_rejects_unknown_tools() {
        assert!(find_tool("sh").is_ok());
        let missing = find_tool("definitely-not-a-tool-mop").unwrap_err();
        assert!(
            missing.to_string().contains("install-test-deps"),
            "{missing}"
        );
    }

    #[test]
    fn run_reports_command_and_stderr() {
        let sh = find_tool("sh").expect("sh exists on every test machine");
        let error = run(
            &sh,
            &["-c".as_ref(), "echo oops >&2; exit 3".as_ref()],
            None,
        )
        .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("sh -c"), "{message}");
        assert!(message.contains("oops"), "{message}");
        let output = run(&sh, &["-c".as_ref(), "cat".as_ref()], Some(b"fed")).expect("cat works");
        assert_eq!(output, "fed");
    }
}
