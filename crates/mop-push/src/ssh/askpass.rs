//! Handing a host's `mop_ssh_password` to the one ssh login that needs it, through OpenSSH's
//! askpass mechanism, without the password ever being in argv, an environment or a file.
//!
//! Flow of one password login (`connect.rs` drives it):
//! 1. [`PasswordServer::start`] binds a unix socket in the private (0700) run directory (or
//!    the private connection directory, for `--persist`) and keeps the password in memory.
//! 2. mop starts the master itself (`ssh -M -f -N`) with `SSH_ASKPASS=<the mop binary>`,
//!    `SSH_ASKPASS_REQUIRE=force` and [`ASKPASS_SOCKET_ENV`]`=<the socket's path>`: only a
//!    path is in the environment. `-o BatchMode=no` on the master's command line allows the
//!    prompt; the run's ssh_config keeps `BatchMode yes` for every other ssh (`ssh -W` hops,
//!    `ssh -tt`), and says `NumberOfPasswordPrompts 1`.
//! 3. ssh runs `mop '<user>@<host>'"'"'s password: '`; `main` sees [`ASKPASS_SOCKET_ENV`]
//!    before anything else and calls [`answer_askpass`], which sends the prompt over the
//!    socket and prints what comes back (ssh reads it from a pipe).
//! 4. The server answers a peer of this uid only (`SO_PEERCRED`), a prompt that asks for a
//!    password only (never a key passphrase or a confirmation), and at most once: then it
//!    stops listening and removes the socket. A wrong password therefore fails the login
//!    after exactly one try, and [`PasswordServer::finish`] tells the caller whether the
//!    password was asked for (a rejected password, or a host that never asked for one).
//!
//! ssh closes every inherited descriptor before it runs the askpass program, so a pipe or
//! descriptor could not carry the password there: the socket is the private channel.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use zeroize::Zeroizing;

use super::run_as::Secret;

/// Set (to the socket's path) in the environment of a password master only. When the `mop`
/// binary starts with it set and one argument (ssh's prompt), it answers as askpass and exits.
pub const ASKPASS_SOCKET_ENV: &str = "MOP_ASKPASS_SOCKET";

/// The longest prompt read (ssh's are one short line).
const PROMPT_LIMIT: u64 = 4096;

/// The longest answer the helper accepts (a password is one line).
const ANSWER_LIMIT: u64 = 64 * 1024;

/// How long either side waits for the other on the socket.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether ssh's prompt asks for the login password (the `password` method's
/// `user@host's password: `, or a keyboard-interactive `Password:`), as opposed to a key's
/// passphrase, a confirmation or a one-time code: only those get the password.
pub(crate) fn is_password_prompt(prompt: &str) -> bool {
    let prompt = prompt.to_ascii_lowercase();
    prompt.contains("password") && !prompt.contains("passphrase")
}

/// The environment of the ssh master that logs in with a password: only paths and fixed words.
pub(crate) fn askpass_environment(program: &Path, socket: &Path) -> [(&'static str, PathBuf); 3] {
    [
        ("SSH_ASKPASS", program.to_path_buf()),
        ("SSH_ASKPASS_REQUIRE", PathBuf::from("force")),
        (ASKPASS_SOCKET_ENV, socket.to_path_buf()),
    ]
}

/// Serves one host's password to one askpass request of this uid, at most once.
pub(crate) struct PasswordServer {
    socket: PathBuf,
    served: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl PasswordServer {
    /// Listens on `socket` (in a private directory; replaced if a dead run left one).
    pub(crate) fn start(socket: &Path, password: &Secret) -> std::io::Result<PasswordServer> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        std::fs::set_permissions(socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let served = Arc::new(AtomicBool::new(false));
        let password = Zeroizing::new(format!("{}\n", password.expose()));
        let task = tokio::spawn(serve(listener, password, Arc::clone(&served)));
        Ok(PasswordServer {
            socket: socket.to_path_buf(),
            served,
            task,
        })
    }

    /// Stops serving and removes the socket; true when the password was handed out.
    pub(crate) fn finish(self) -> bool {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for PasswordServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

async fn serve(listener: UnixListener, password: Zeroizing<String>, served: Arc<AtomicBool>) {
    let own_uid = super::connect::effective_uid();
    loop {
        let Ok((mut stream, _address)) = listener.accept().await else {
            continue;
        };
        // The socket sits in a directory only this uid can enter; the check holds even if
        // that directory's mode were ever wrong.
        if !stream
            .peer_cred()
            .is_ok_and(|credentials| credentials.uid() == own_uid)
        {
            continue;
        }
        let mut prompt = Vec::new();
        let mut limited = (&mut stream).take(PROMPT_LIMIT);
        let read = limited.read_to_end(&mut prompt);
        if !matches!(tokio::time::timeout(SOCKET_TIMEOUT, read).await, Ok(Ok(_))) {
            continue;
        }
        if !is_password_prompt(&String::from_utf8_lossy(&prompt)) {
            // Nothing written: the helper exits 1 and ssh goes on without this answer.
            continue;
        }
        served.store(true, Ordering::SeqCst);
        let write = async {
            stream.write_all(password.as_bytes()).await?;
            stream.shutdown().await
        };
        let _ = tokio::time::timeout(SOCKET_TIMEOUT, write).await;
        // Once only: a second password prompt finds no listener, and the login fails.
        return;
    }
}

/// Why the askpass helper could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum AskpassError {
    #[error("cannot reach mop's password socket `{}`: {source}", path.display())]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot talk to mop's password socket: {0}")]
    Exchange(std::io::Error),
}

/// The askpass side (the `mop` binary run by ssh): sends ssh's prompt to the run's socket and
/// returns the answer, `None` when mop has none for this prompt. Blocking, std only: it runs
/// before any runtime exists.
pub fn answer_askpass(
    socket: &Path,
    prompt: &str,
) -> Result<Option<Zeroizing<Vec<u8>>>, AskpassError> {
    // Confirmations and notices (`SSH_ASKPASS_PROMPT=confirm|none`) never get a password.
    if std::env::var_os("SSH_ASKPASS_PROMPT").is_some_and(|hint| !hint.is_empty()) {
        return Ok(None);
    }
    let mut stream = StdUnixStream::connect(socket).map_err(|source| AskpassError::Connect {
        path: socket.to_path_buf(),
        source,
    })?;
    let exchange = |stream: &mut StdUnixStream| -> std::io::Result<Zeroizing<Vec<u8>>> {
        stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
        stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
        stream.write_all(prompt.as_bytes())?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut answer = Zeroizing::new(Vec::new());
        stream.take(ANSWER_LIMIT).read_to_end(&mut answer)?;
        Ok(answer)
    };
    let answer = exchange(&mut stream).map_err(AskpassError::Exchange)?;
    Ok((!answer.is_empty()).then_some(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_password_prompts_get_the_password() {
        for prompt in [
            "moptestpw@127.0.0.1's password: ",
            "(moptestpw@127.0.0.1) Password: ",
            "Password:",
        ] {
            assert!(is_password_prompt(prompt), "{prompt}");
        }
        for prompt in [
            "Enter passphrase for key '/root/.ssh/id_ed25519': ",
            "Enter password or passphrase for key: ",
            "Verification code: ",
            "Are you sure you want to continue connecting (yes/no/[fingerprint])? ",
            "",
        ] {
            assert!(!is_password_prompt(prompt), "{prompt}");
        }
    }

    #[test]
    fn the_environment_holds_paths_only() {
        let environment = askpass_environment(
            Path::new("/usr/bin/mop"),
            Path::new("/tmp/mop-x/mop-h1.askpass"),
        );
        let names: Vec<&str> = environment.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            ["SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", ASKPASS_SOCKET_ENV]
        );
    }

    /// The real socket, the real helper function: the password once, to a password prompt.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_password_is_served_once_and_only_for_a_password_prompt() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("h.askpass");
        let server =
            PasswordServer::start(&socket, &Secret::new("hunter2 with spaces")).expect("bind");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&socket).expect("socket").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let ask = |prompt: &'static str| {
            let socket = socket.clone();
            tokio::task::spawn_blocking(move || answer_askpass(&socket, prompt))
        };
        let passphrase = ask("Enter passphrase for key '/k': ")
            .await
            .expect("join")
            .expect("answered");
        assert!(passphrase.is_none(), "a key passphrase prompt gets nothing");
        let answer = ask("u@h's password: ")
            .await
            .expect("join")
            .expect("answered")
            .expect("a password");
        assert_eq!(answer.as_slice(), b"hunter2 with spaces\n");
        let again = ask("u@h's password: ").await.expect("join");
        assert!(
            matches!(again, Err(AskpassError::Connect { .. })),
            "a second prompt finds nobody listening: {again:?}"
        );
        assert!(server.finish());
        assert!(!socket.exists(), "the socket is removed");
    }

    #[tokio::test]
    async fn an_unused_server_says_so_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("h.askpass");
        let server = PasswordServer::start(&socket, &Secret::new("x")).expect("bind");
        assert!(socket.exists());
        assert!(!server.finish());
        assert!(!socket.exists());
    }
}
