//! `mop-agent --tty-password -- PROGRAM ARGS...`: runs a become program that reads its password
//! from a terminal only (doas), answering its prompt with the password the controller sent as
//! the first line of stdin.
//!
//! The controller never puts a password in argv, the environment or a file: it writes it as the
//! first line of the command's stdin, as for `sudo -S`. doas reads passwords from `/dev/tty` only,
//! so this wrapper (the login user's own agent binary, already on the host) reads that line one
//! byte at a time (the rest of stdin stays for the program), opens a pseudo-terminal, and starts
//! PROGRAM in a new session whose controlling terminal is the pty, with stdin, stdout and
//! stderr inherited (the ssh channel: nothing of the protocol stream passes through here). When
//! PROGRAM writes a password prompt on the terminal, the wrapper types the password once; when it
//! ends without asking, nothing is typed. Then it waits for PROGRAM and exits with its status.
//! The agent starts in the pty's session; it leaves it (setsid) or lets go of the terminal
//! (`resources::process::drop_controlling_terminal`) as it starts, so it runs without a
//! controlling terminal, as under sudo.
//!
//! Only PROGRAM's own messages say whether authentication failed (`doas: Authentication failed`
//! on stderr); the controller classifies them (`mop-push/src/ssh/run_as.rs`).

use std::ffi::c_int;
use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::Command;

/// Exit code for a missing password line or a pty that cannot be made.
const EXIT_SETUP: i32 = 2;
/// The longest password line read (the controller's grammar allows any one line).
const MAX_PASSWORD: usize = 64 * 1024;
/// How much of the terminal output is kept to look for the prompt.
const PROMPT_WINDOW: usize = 512;

/// Runs `mop-agent --tty-password -- PROGRAM ARGS...`; returns the exit code.
pub fn run(args: &[String]) -> i32 {
    let Some(("--", command)) = args
        .split_first()
        .map(|(first, rest)| (first.as_str(), rest))
    else {
        eprintln!("mop-agent: --tty-password needs `-- PROGRAM ARGS...`");
        return EXIT_SETUP;
    };
    let Some((program, program_args)) = command.split_first() else {
        eprintln!("mop-agent: --tty-password needs a program after `--`");
        return EXIT_SETUP;
    };
    let mut password = match read_password_line() {
        Ok(password) => password,
        Err(message) => {
            eprintln!("mop-agent: {message}");
            return EXIT_SETUP;
        }
    };
    let code = match run_on_pty(program, program_args, &password) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("mop-agent: {message}");
            EXIT_SETUP
        }
    };
    password.fill(0);
    code
}

/// Reads stdin one byte at a time up to the first newline, so nothing after it is consumed.
fn read_password_line() -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    loop {
        let mut byte = 0u8;
        // SAFETY: reads at most one byte into a live local.
        let read = unsafe { libc::read(0, (&mut byte as *mut u8).cast(), 1) };
        match read {
            1 if byte == b'\n' => return Ok(line),
            1 if line.len() < MAX_PASSWORD => line.push(byte),
            1 => return Err("the password line on stdin is too long".to_string()),
            0 => return Err("stdin ended before the password line".to_string()),
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => {
                return Err(format!(
                    "cannot read the password line: {}",
                    std::io::Error::last_os_error()
                ))
            }
        }
    }
}

/// A new pty: the master, and the slave opened without becoming anyone's controlling terminal.
/// Through the ioctls rather than grantpt/ptsname, which may consult NSS for the `tty` group
/// in a static glibc build.
fn open_pty() -> Result<(OwnedFd, OwnedFd), String> {
    let failure = |what: &str| format!("cannot {what}: {}", std::io::Error::last_os_error());
    // SAFETY: plain syscalls on a path literal and on fds this function owns.
    unsafe {
        let master = libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if master < 0 {
            return Err(failure("open /dev/ptmx"));
        }
        let master = OwnedFd::from_raw_fd(master);
        let unlock: c_int = 0;
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0 {
            return Err(failure("unlock the pty"));
        }
        let mut number: libc::c_uint = 0;
        if libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) != 0 {
            return Err(failure("name the pty"));
        }
        let path = std::ffi::CString::new(format!("/dev/pts/{number}"))
            .expect("a formatted number has no NUL");
        let slave = libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if slave < 0 {
            return Err(failure("open the pty"));
        }
        Ok((master, OwnedFd::from_raw_fd(slave)))
    }
}

fn run_on_pty(program: &str, args: &[String], password: &[u8]) -> Result<i32, String> {
    let (master, slave) = open_pty()?;
    let slave_fd = slave.as_raw_fd();
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: only async-signal-safe syscalls between fork and exec. The slave is close-on-exec,
    // so PROGRAM keeps the terminal as its controlling terminal but no open descriptor of it.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|error| format!("cannot start `{program}`: {error}"))?;
    // The wrapper holds the slave until the prompt is answered or the program ended: without
    // it, reads on the master fail (EIO) whenever the program has not opened `/dev/tty` yet.
    answer_prompt(&master, &mut child, password);
    drop(slave);
    let status = child
        .wait()
        .map_err(|error| format!("cannot wait for `{program}`: {error}"))?;
    drop(master);
    Ok(match (status.code(), status.signal()) {
        // 127 and 255 are OpenSSH's; the agent never exits with them.
        (Some(127 | 255), _) => 1,
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    })
}

/// Reads the terminal until a password prompt (a line ending in `:` that mentions a password)
/// and types the password once, or until the program ends without asking.
fn answer_prompt(master: &OwnedFd, child: &mut std::process::Child, password: &[u8]) {
    let mut seen: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 256];
    loop {
        let mut poll_fd = libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        let ready = unsafe { libc::poll(&mut poll_fd, 1, 100) };
        if ready == 0
            || (ready < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted)
        {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            continue;
        }
        // SAFETY: reads into a live local buffer of the given length.
        let read =
            unsafe { libc::read(master.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
        if read < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        if read <= 0 {
            return;
        }
        seen.extend_from_slice(&buffer[..read as usize]);
        if seen.len() > PROMPT_WINDOW {
            seen.drain(..seen.len() - PROMPT_WINDOW);
        }
        if is_password_prompt(&seen) {
            let mut line = password.to_vec();
            line.push(b'\n');
            let mut terminal = std::fs::File::from(master.try_clone().expect("dup of a live fd"));
            let _ = terminal.write_all(&line);
            line.fill(0);
            return;
        }
    }
}

/// `doas (user@host) password: `, `Password: `: the last line ends in `:` and names a password.
fn is_password_prompt(seen: &[u8]) -> bool {
    let text = String::from_utf8_lossy(seen);
    let last_line = text.rsplit(['\n', '\r']).next().unwrap_or("").trim_end();
    last_line.ends_with(':') && last_line.to_ascii_lowercase().contains("password")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_recognised() {
        assert!(is_password_prompt(b"doas (moptestpw@box) password: "));
        assert!(is_password_prompt(b"\r\nPassword: "));
        assert!(!is_password_prompt(b"doas (moptestpw@box) password: \r\n"));
        assert!(!is_password_prompt(b"Last login: today"));
        assert!(!is_password_prompt(b""));
    }

    #[test]
    fn answers_a_prompt_on_the_terminal_and_keeps_the_rest_of_stdin() {
        // A shell that prompts on its terminal like doas, reads the answer there, and then
        // reads its stdin (inherited, untouched by the wrapper).
        let script = r#"printf 'doas (u@h) password: ' > /dev/tty; IFS= read -r answer < /dev/tty; [ "$answer" = "s3cret" ] || exit 9; exit 0"#;
        let code = run_on_pty(
            "/bin/sh",
            &["-c".to_string(), script.to_string()],
            b"s3cret",
        )
        .expect("runs");
        assert_eq!(code, 0);
        let wrong =
            run_on_pty("/bin/sh", &["-c".to_string(), script.to_string()], b"nope").expect("runs");
        assert_eq!(wrong, 9);
        // No prompt: nothing typed, the status passes through.
        let quiet = run_on_pty(
            "/bin/sh",
            &["-c".to_string(), "exit 3".to_string()],
            b"unused",
        )
        .expect("runs");
        assert_eq!(quiet, 3);
    }
}
