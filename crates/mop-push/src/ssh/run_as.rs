//! Running remote commands under sudo without the password ever touching argv or a message.
//!
//! Without a password mop runs `sudo -n` (never prompt). With one it runs
//! `sudo -S -k -p ''` and writes the password as the first line of the command's stdin: `-S`
//! reads it from stdin (one byte at a time, up to the newline, so the rest of the stream stays
//! for the command), `-k` ignores cached credentials so sudo always consumes exactly that one
//! line, and `-p ''` keeps the prompt out of the command's stderr.
//!
//! Every sudo decision of the agent start lives here too (when to check sudo first, what a
//! check's answer means, when the password is sent); `start.rs` only applies them.

use std::fmt;
use std::fmt::Write as _;

use openssh::Session;

use super::bootstrap::parse_probe;
use super::exec::{exec, exec_failure};
use super::shell::quote;
use super::start::Install;
use super::SshError;

/// A password: printed as `<redacted>` by `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: &str) -> Secret {
        Secret(value.to_string())
    }

    /// The password itself, for the one place that writes it to sudo's stdin.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("<redacted>")
    }
}

/// Run the agent under sudo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SudoSpec {
    /// The user to become; `None` = root.
    pub user: Option<String>,
    pub password: Option<Secret>,
}

/// The identity a remote command runs as: the login user, or a sudo target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RunAs {
    Login,
    /// `sudo -u <user>`; `None` = root.
    Sudo {
        user: Option<String>,
        with_password: bool,
    },
}

impl RunAs {
    pub(crate) fn from_spec(sudo: Option<&SudoSpec>) -> RunAs {
        match sudo {
            None => RunAs::Login,
            Some(spec) => RunAs::Sudo {
                user: spec.user.clone().filter(|user| user != "root"),
                with_password: spec.password.is_some(),
            },
        }
    }

    /// Whether the agent runs as a user other than the login user and root, who therefore
    /// needs read and execute access to files the login user uploaded.
    pub(crate) fn needs_shared_access(&self) -> bool {
        matches!(self, RunAs::Sudo { user: Some(_), .. })
    }

    /// The prefix that makes a command run as this identity (empty for the login user).
    pub(crate) fn command_prefix(&self) -> String {
        match self {
            RunAs::Login => String::new(),
            RunAs::Sudo {
                user,
                with_password,
            } => {
                let mut prefix = String::from(if *with_password {
                    "sudo -S -k -p '' "
                } else {
                    "sudo -n "
                });
                if let Some(user) = user {
                    prefix.push_str(&format!("-u {} ", quote(user)));
                }
                prefix.push_str("-- ");
                prefix
            }
        }
    }

    /// For messages: `root`, `postgres` or `the login user`.
    pub(crate) fn describe(&self) -> String {
        match self {
            RunAs::Login => "the login user".to_string(),
            RunAs::Sudo { user, .. } => user.clone().unwrap_or_else(|| "root".to_string()),
        }
    }
}

/// Refuses passwords sudo could not read as one line.
pub(crate) fn check_password(host: &str, sudo: Option<&SudoSpec>) -> Result<(), SshError> {
    if let Some(password) = sudo.and_then(|spec| spec.password.as_ref()) {
        // The inventory refuses these at load time with the same grammar; this is for
        // passwords that reach the transport another way.
        if let Err(invalid) = mop_inventory::grammar::check_password_line(password.expose()) {
            return Err(SshError::InvalidHost {
                host: host.to_string(),
                reason: format!("the sudo password is invalid: {invalid}"),
            });
        }
    }
    Ok(())
}

/// The bytes to write to a sudo'd command's stdin before anything else.
pub(crate) fn password_line(sudo: Option<&SudoSpec>) -> Option<Vec<u8>> {
    let password = sudo?.password.as_ref()?;
    let mut line = password.expose().as_bytes().to_vec();
    line.push(b'\n');
    Some(line)
}

/// Replaces every occurrence of the password in text that came from the host.
pub(crate) fn redact(text: &str, sudo: Option<&SudoSpec>) -> String {
    match sudo.and_then(|spec| spec.password.as_ref()) {
        Some(password) if !password.expose().is_empty() => {
            text.replace(password.expose(), "<redacted>")
        }
        _ => text.to_string(),
    }
}

/// Whether `stderr` (of a command run under sudo, with `LC_ALL=C`) is sudo refusing rather
/// than the command failing: every line is one sudo prints when it will not run anything.
pub(crate) fn is_sudo_refusal(stderr: &str) -> bool {
    let refusal = |line: &str| {
        line.starts_with("sudo: ")
            || line == "Sorry, try again."
            || line.contains("is not in the sudoers file")
            || line.contains("may not run sudo")
            || line == NO_SUDO_RIGHTS_MARK
    };
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    !lines.is_empty() && lines.iter().all(|line| refusal(line))
}

/// Why sudo refused a command an ad hoc step ran under it: asks `sudo -n -v` whether the user
/// has any sudo rights (the refusal alone cannot tell), then classifies like the agent start.
pub(crate) async fn diagnose_refusal(
    session: &super::RemoteSession,
    host: &str,
    login_user: &str,
    run_as: &RunAs,
    sudo: Option<&SudoSpec>,
    stderr: &str,
) -> SshError {
    let mut output = stderr.to_string();
    let probe = format!("LC_ALL=C; export LC_ALL; {}", no_rights_probe());
    if let Ok(rights) = session.exec(&probe, None).await {
        output.push('\n');
        output.push_str(&rights.stdout);
    }
    classify_sudo_failure(host, login_user, run_as, sudo, &output)
}

/// Turns what sudo printed when it refused into an error (sudo runs with `LC_ALL=C`).
pub(crate) fn classify_sudo_failure(
    host: &str,
    login_user: &str,
    run_as: &RunAs,
    sudo: Option<&SudoSpec>,
    output: &str,
) -> SshError {
    let output = redact(output.trim(), sudo);
    // sudoers asks for a password before it looks the user up, so a user with no rule at all
    // gets the same "a password is required" as one who only lacks the password: the check
    // scripts ask `sudo -n -v` too, which says "may not run sudo" for the former only.
    if output
        .lines()
        .any(|line| line.trim() == NO_SUDO_RIGHTS_MARK)
        || output.contains("is not in the sudoers file")
    {
        return SshError::SudoNoRights {
            host: host.to_string(),
            login_user: login_user.to_string(),
        };
    }
    let with_password = matches!(
        run_as,
        RunAs::Sudo {
            with_password: true,
            ..
        }
    );
    if output.contains("a password is required") || output.contains("a terminal is required") {
        if with_password {
            return SshError::SudoWrongPassword {
                host: host.to_string(),
                login_user: login_user.to_string(),
            };
        }
        return SshError::SudoNeedsPassword {
            host: host.to_string(),
            login_user: login_user.to_string(),
        };
    }
    if output.contains("incorrect password") || output.contains("Sorry, try again") {
        return SshError::SudoWrongPassword {
            host: host.to_string(),
            login_user: login_user.to_string(),
        };
    }
    let detail = if output.is_empty() {
        "sudo failed without saying why".to_string()
    } else {
        output
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    };
    SshError::SudoRefused {
        host: host.to_string(),
        login_user: login_user.to_string(),
        run_as: run_as.describe(),
        detail,
    }
}

// The sudo decisions of `mop push`, all here: whether to check sudo before the agent starts,
// which prefixes to check with, what the check's answer means, and what the agent's stdin
// starts with.

/// Whether sudo must be checked before the agent starts: with a password, mop must know
/// whether sudo will ask for it (NOPASSWD hosts do not), or the agent would read it as protocol
/// bytes. Without one, `sudo -n` fails fast and a failed start is diagnosed afterwards.
pub(super) fn checks_sudo_first(requested: &RunAs) -> bool {
    matches!(
        requested,
        RunAs::Sudo {
            with_password: true,
            ..
        }
    )
}

/// The sudo prefix to check with, and the `-n` form to try first when a password is given.
pub(super) fn sudo_prefixes(requested: &RunAs) -> (Option<String>, Option<String>) {
    match requested {
        RunAs::Login => (None, None),
        RunAs::Sudo {
            user,
            with_password,
        } => {
            let nopasswd = RunAs::Sudo {
                user: user.clone(),
                with_password: false,
            };
            let first = with_password.then(|| nopasswd.command_prefix());
            (Some(requested.command_prefix()), first)
        }
    }
}

/// A sudo check for an identity the probe did not check (a later role asks for it).
pub(super) async fn check_sudo(
    host: &str,
    session: &Session,
    install: &Install,
    sudo: Option<&SudoSpec>,
    requested: &RunAs,
) -> Result<RunAs, SshError> {
    let (sudo_prefix, nopasswd_prefix) = sudo_prefixes(requested);
    let Some(sudo_prefix) = sudo_prefix else {
        return Ok(RunAs::Login);
    };
    let script = sudo_check_script(&install.work, &sudo_prefix, nopasswd_prefix.as_deref());
    let output = exec(session, &script, password_line(sudo))
        .await
        .map_err(|detail| SshError::Bootstrap {
            host: host.to_string(),
            detail: detail.to_string(),
        })?;
    match parse_probe(&output.stdout).sudo {
        Some(check) => sudo_outcome(host, install, sudo, requested, check),
        None => Err(SshError::Bootstrap {
            host: host.to_string(),
            detail: exec_failure(&output, sudo),
        }),
    }
}

/// What to run as, given what a sudo check for `requested` found: NOPASSWD drops the password,
/// a failed check becomes the error that says why.
pub(super) fn sudo_outcome(
    host: &str,
    install: &Install,
    sudo: Option<&SudoSpec>,
    requested: &RunAs,
    check: SudoCheck,
) -> Result<RunAs, SshError> {
    match check {
        SudoCheck::Ok => Ok(requested.clone()),
        SudoCheck::NoPassword => match requested {
            RunAs::Sudo { user, .. } => Ok(RunAs::Sudo {
                user: user.clone(),
                with_password: false,
            }),
            RunAs::Login => Ok(RunAs::Login),
        },
        SudoCheck::Failed(output) if output.trim().is_empty() => {
            Err(SshError::AgentDirUnreachable {
                host: host.to_string(),
                login_user: install.login_user.clone(),
                run_as: requested.describe(),
                agent_dir: install.dir.clone(),
            })
        }
        SudoCheck::Failed(output) => Err(classify_sudo_failure(
            host,
            &install.login_user,
            requested,
            sudo,
            &output,
        )),
    }
}

/// The line the agent's stdin starts with when it runs as `effective`: the password, read by
/// `sudo -S`, only when the check found that sudo asks for it.
pub(super) fn agent_stdin_line(effective: &RunAs, sudo: Option<&SudoSpec>) -> Option<Vec<u8>> {
    match effective {
        RunAs::Sudo {
            with_password: true,
            ..
        } => password_line(sudo),
        _ => None,
    }
}

/// Checks that sudo works and that the identity it switches to can reach `$work` (a third user
/// may not be able to traverse the login user's home). With a password, `sudo -n` is tried
/// first: if sudo does not ask (NOPASSWD), the password must not be sent, or the agent would
/// read it as protocol bytes.
pub(super) fn sudo_check_line(prefix: &str, nopasswd_prefix: Option<&str>) -> String {
    let check = r#"test -x "$work""#;
    let mut line = String::new();
    if let Some(nopasswd) = nopasswd_prefix {
        let _ = write!(
            line,
            r#"if {nopasswd}{check} 2>/dev/null </dev/null; then echo sudo=nopasswd; el"#
        );
    }
    let _ = write!(
        line,
        r#"if out=$({prefix}{check} 2>&1); then echo sudo=ok; else echo sudo=fail; printf '%s\n' "$out"; {}; exit 0; fi"#,
        no_rights_probe()
    );
    line
}

/// The line the check scripts print when the login user has no sudoers rule on the host.
pub(crate) const NO_SUDO_RIGHTS_MARK: &str = "mop-sudo-rights=none";

/// Shell that prints [`NO_SUDO_RIGHTS_MARK`] when `sudo -n -v` says the user may not run sudo
/// at all (run with `LC_ALL=C`; `-v` with `-n` never prompts and never runs anything).
pub(crate) fn no_rights_probe() -> String {
    format!(
        r#"case $(sudo -n -v 2>&1 </dev/null) in *"may not run sudo"*) echo {NO_SUDO_RIGHTS_MARK};; esac"#
    )
}

/// A sudo check on its own, for an identity the probe did not check.
pub(super) fn sudo_check_script(work: &str, prefix: &str, nopasswd_prefix: Option<&str>) -> String {
    format!(
        "LC_ALL=C; export LC_ALL; work={}; {}; echo done=yes",
        quote(work),
        sudo_check_line(prefix, nopasswd_prefix)
    )
}

/// What a sudo check (in the probe or on its own) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SudoCheck {
    Ok,
    /// sudo works without the password (NOPASSWD): do not send it.
    NoPassword,
    /// sudo (or the directory check under it) failed; what it printed.
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(user: Option<&str>, password: Option<&str>) -> SudoSpec {
        SudoSpec {
            user: user.map(str::to_string),
            password: password.map(Secret::new),
        }
    }

    #[test]
    fn secrets_never_print() {
        let sudo = spec(None, Some("hunter2"));
        assert_eq!(
            format!("{sudo:?}"),
            "SudoSpec { user: None, password: Some(<redacted>) }"
        );
        assert_eq!(Secret::new("hunter2").to_string(), "<redacted>");
    }

    #[test]
    fn prefixes_never_hold_the_password() {
        let check = |sudo: Option<SudoSpec>, expected: &str| {
            assert_eq!(RunAs::from_spec(sudo.as_ref()).command_prefix(), expected);
        };
        check(None, "");
        check(Some(spec(None, None)), "sudo -n -- ");
        check(Some(spec(Some("root"), None)), "sudo -n -- ");
        check(
            Some(spec(Some("post gres"), None)),
            "sudo -n -u 'post gres' -- ",
        );
        check(
            Some(spec(Some("app"), Some("hunter2"))),
            "sudo -S -k -p '' -u app -- ",
        );
    }

    #[test]
    fn classifies_what_sudo_says() {
        let login = RunAs::from_spec(Some(&spec(None, None)));
        let with_password = RunAs::from_spec(Some(&spec(None, Some("pw"))));
        let check = |run_as: &RunAs, output: &str, expected: &str| {
            let sudo = spec(None, Some("s3cret"));
            let message =
                classify_sudo_failure("web1", "deploy", run_as, Some(&sudo), output).to_string();
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains("a password is required"), "{message}");
            assert!(!message.contains(NO_SUDO_RIGHTS_MARK), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        };
        check(
            &login,
            "sudo: a password is required\n",
            "sudo on web1 needs a password for user deploy",
        );
        check(
            &with_password,
            "Sorry, try again.\nsudo: no password was provided\nsudo: 1 incorrect password attempt\n",
            "rejected the sudo password of user deploy",
        );
        // No sudoers rule at all: told apart from a missing password, sudo's words never shown.
        check(
            &with_password,
            "deploy is not in the sudoers file.\n",
            "user deploy may not use sudo on web1",
        );
        check(
            &login,
            &format!("sudo: a password is required\n{NO_SUDO_RIGHTS_MARK}\n"),
            "user deploy may not use sudo on web1",
        );
        check(
            &with_password,
            &format!(
                "Sorry, try again.\nsudo: 1 incorrect password attempt\n{NO_SUDO_RIGHTS_MARK}\n"
            ),
            "user deploy may not use sudo on web1",
        );
        check(
            &login,
            "sudo: no tty present and no askpass program specified\n",
            "sudo on web1 refused to run the agent as root: sudo: no tty present",
        );
        check(
            &login,
            "sudo: unknown user s3cret\n",
            "unknown user <redacted>",
        );
    }

    #[test]
    fn refuses_multi_line_passwords_without_printing_them() {
        let sudo = spec(None, Some("line1\nline2"));
        let message = check_password("web1", Some(&sudo))
            .expect_err("refused")
            .to_string();
        assert!(message.contains("line break"), "{message}");
        assert!(!message.contains("line1"), "{message}");
        assert_eq!(
            password_line(Some(&spec(None, Some("pw")))),
            Some(b"pw\n".to_vec())
        );
        assert_eq!(password_line(Some(&spec(None, None))), None);
    }
}
