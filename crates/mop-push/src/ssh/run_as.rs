//! Who a remote command runs as, and every become decision (sudo, doas, su), without the
//! password ever touching argv or a message.
//!
//! - **sudo**: without a password `sudo -n` (never prompt); with one `sudo -S -k -p ''`, the
//!   password as the first line of the command's stdin: `-S` reads it from stdin (one byte at a
//!   time, up to the newline, so the rest of the stream stays for the command), `-k` ignores
//!   cached credentials so sudo always consumes exactly that one line, and `-p ''` keeps the
//!   prompt out of the command's stderr.
//! - **doas**: without a password `doas -n`. With one, doas reads only from a terminal, so the
//!   run's own agent binary wraps it (`mop-agent --tty-password -- doas ...`, see
//!   `crates/mop-agent/src/tty_password.rs`): it reads the first line of stdin one byte at a
//!   time and types it at doas's prompt on a pseudo-terminal. That needs the agent on the host,
//!   so the check happens after the upload and ad hoc commands refuse it.
//! - **su**: `su -s /bin/sh -c 'exec "$0" "$@"' -- USER CMD...`, always with the target user's
//!   password as the first line of stdin (PAM's conversation reads a non-terminal stdin one byte
//!   at a time, as `sudo -S` does). su's own stderr (its `Password: ` prompt) goes to
//!   `/dev/null` and the command's to the real stderr through fd 3, except in the check, which
//!   captures su's messages to classify them.
//!
//! Every become decision of the agent start lives here too (when to check first, what a
//! check's answer means, when the password is sent); `start.rs` only applies them.

use std::fmt;
use std::fmt::Write as _;

pub use mop_inventory::BecomeMethod;
use openssh::Session;

use super::bootstrap::parse_probe;
use super::error::BecomeFailure;
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

    /// The password itself, for the one place that writes it to the become program's stdin.
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

/// Run the agent (or an ad hoc command) as another user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BecomeSpec {
    /// The user to become; `None` = root.
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// The program that switches users (`mop_become_method`).
    pub method: BecomeMethod,
}

/// The identity a remote command runs as: the login user, or a become target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RunAs {
    Login,
    /// `sudo -u <user>`, `doas -u <user>` or `su <user>`; `None` = root.
    Become {
        method: BecomeMethod,
        user: Option<String>,
        with_password: bool,
    },
}

impl RunAs {
    pub(crate) fn from_spec(spec: Option<&BecomeSpec>) -> RunAs {
        match spec {
            None => RunAs::Login,
            Some(spec) => RunAs::Become {
                method: spec.method,
                user: spec.user.clone().filter(|user| user != "root"),
                with_password: spec.password.is_some(),
            },
        }
    }

    /// Whether the agent runs as a user other than the login user and root, who therefore
    /// needs read and execute access to files the login user uploaded.
    pub(crate) fn needs_shared_access(&self) -> bool {
        matches!(self, RunAs::Become { user: Some(_), .. })
    }

    /// Whether becoming this identity runs through the agent binary on the host (doas with a
    /// password: see the module docs).
    pub(crate) fn needs_agent_wrapper(&self) -> bool {
        matches!(
            self,
            RunAs::Become {
                method: BecomeMethod::Doas,
                with_password: true,
                ..
            }
        )
    }

    /// The prefix that makes a command run as this identity (empty for the login user), on a
    /// host where this run's agent is `<work>/mop-agent`.
    pub(crate) fn command_prefix_in(&self, work: &str) -> String {
        self.prefix(Some(work))
    }

    /// The prefix for commands run without an agent on the host (the ad hoc commands, which
    /// refuse identities that need the agent before any login: `needs_agent_wrapper`).
    pub(crate) fn command_prefix(&self) -> String {
        self.prefix(None)
    }

    fn prefix(&self, work: Option<&str>) -> String {
        let RunAs::Become {
            method,
            user,
            with_password,
        } = self
        else {
            return String::new();
        };
        let user_option = user
            .as_ref()
            .map(|user| format!("-u {} ", quote(user)))
            .unwrap_or_default();
        match (method, with_password) {
            (BecomeMethod::Sudo, true) => format!("sudo -S -k -p '' {user_option}-- "),
            (BecomeMethod::Sudo, false) => format!("sudo -n {user_option}-- "),
            (BecomeMethod::Doas, false) => format!("doas -n {user_option}-- "),
            (BecomeMethod::Doas, true) => match work {
                Some(work) => format!(
                    "{} --tty-password -- doas {user_option}-- ",
                    quote(&format!("{work}/mop-agent"))
                ),
                // Unreachable through the ad hoc commands (they refuse it); without a terminal
                // doas fails at once rather than waiting for a password.
                None => format!("doas {user_option}-- "),
            },
            (BecomeMethod::Su, _) => format!(
                r#"3>&2 2>/dev/null su -s /bin/sh -c 'exec "$0" "$@" 2>&3 3>&-' -- {} "#,
                quote(user.as_deref().unwrap_or("root"))
            ),
        }
    }

    /// The method, for messages (`sudo` for the login user, who runs nothing through one).
    pub(crate) fn method(&self) -> BecomeMethod {
        match self {
            RunAs::Login => BecomeMethod::Sudo,
            RunAs::Become { method, .. } => *method,
        }
    }

    /// For messages: `root`, `postgres` or `the login user`.
    pub(crate) fn describe(&self) -> String {
        match self {
            RunAs::Login => "the login user".to_string(),
            RunAs::Become { user, .. } => user.clone().unwrap_or_else(|| "root".to_string()),
        }
    }
}

/// Refuses an identity the ad hoc commands cannot become, before any login: doas with a
/// password needs the agent on the host to answer its terminal prompt (ad hoc commands do not
/// upload it), and under su a wrong password could not be told from the command failing (su's
/// own messages are kept off the command's stderr).
pub(crate) fn check_adhoc_become(host: &str, spec: Option<&BecomeSpec>) -> Result<(), SshError> {
    let run_as = RunAs::from_spec(spec);
    let reason = match &run_as {
        RunAs::Become {
            method: BecomeMethod::Su,
            ..
        } => {
            "ad hoc commands do not run through su: a wrong password could not be told from \
              the command failing"
        }
        run_as if run_as.needs_agent_wrapper() => {
            "doas with a password needs mop's agent on the host to answer its terminal prompt, \
             and ad hoc commands do not upload it"
        }
        _ => return Ok(()),
    };
    Err(SshError::BecomeUnsupported {
        host: host.to_string(),
        method: run_as.method().to_string(),
        reason: reason.to_string(),
        hint: "use `mop push` (a policy with a `command` or `file` resource), allow the \
               commands without a password (sudoers NOPASSWD, doas.conf `nopass`), or set \
               `mop_become_method` to `sudo`"
            .to_string(),
    })
}

/// Refuses passwords the become program could not read as one line.
pub(crate) fn check_password(host: &str, spec: Option<&BecomeSpec>) -> Result<(), SshError> {
    if let Some(spec) = spec {
        if let Some(password) = &spec.password {
            // The inventory refuses these at load time with the same grammar; this is for
            // passwords that reach the transport another way.
            if let Err(invalid) = mop_inventory::grammar::check_password_line(password.expose()) {
                return Err(SshError::InvalidHost {
                    host: host.to_string(),
                    reason: format!("the {} password is invalid: {invalid}", spec.method),
                });
            }
        }
    }
    Ok(())
}

/// The bytes to write to a become command's stdin before anything else.
pub(crate) fn password_line(spec: Option<&BecomeSpec>) -> Option<Vec<u8>> {
    let password = spec?.password.as_ref()?;
    let mut line = password.expose().as_bytes().to_vec();
    line.push(b'\n');
    Some(line)
}

/// Replaces every occurrence of the password in text that came from the host.
pub(crate) fn redact(text: &str, spec: Option<&BecomeSpec>) -> String {
    match spec.and_then(|spec| spec.password.as_ref()) {
        Some(password) if !password.expose().is_empty() => {
            text.replace(password.expose(), "<redacted>")
        }
        _ => text.to_string(),
    }
}

/// Whether `stderr` (of a command run under sudo or doas, with `LC_ALL=C`) is the become
/// program refusing rather than the command failing: every line is one sudo or doas prints
/// when it will not run anything. (su's own messages never reach the command's stderr.)
pub(crate) fn is_become_refusal(stderr: &str) -> bool {
    let refusal = |line: &str| {
        line.starts_with("sudo: ")
            || line.starts_with("doas: ")
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

/// Why the become program refused a command an ad hoc step ran under it: for sudo, asks
/// `sudo -n -v` whether the user has any sudo rights (the refusal alone cannot tell), then
/// classifies like the agent start.
pub(crate) async fn diagnose_refusal(
    session: &super::RemoteSession,
    host: &str,
    login_user: &str,
    run_as: &RunAs,
    spec: Option<&BecomeSpec>,
    stderr: &str,
) -> SshError {
    let mut output = stderr.to_string();
    if let Some(rights_probe) = no_rights_probe(run_as.method()) {
        let probe = format!("LC_ALL=C; export LC_ALL; {rights_probe}");
        if let Ok(rights) = session.exec(&probe, None).await {
            output.push('\n');
            output.push_str(&rights.stdout);
        }
    }
    classify_become_failure(host, login_user, run_as, spec, &output)
}

/// Turns what the become program printed when it refused into an error (run with `LC_ALL=C`).
pub(crate) fn classify_become_failure(
    host: &str,
    login_user: &str,
    run_as: &RunAs,
    spec: Option<&BecomeSpec>,
    output: &str,
) -> SshError {
    let output = redact(output.trim(), spec);
    match run_as.method() {
        BecomeMethod::Sudo => classify_sudo(host, login_user, run_as, &output),
        method @ (BecomeMethod::Doas | BecomeMethod::Su) => {
            classify_doas_or_su(method, host, login_user, run_as, &output)
        }
    }
}

fn with_password(run_as: &RunAs) -> bool {
    matches!(
        run_as,
        RunAs::Become {
            with_password: true,
            ..
        }
    )
}

/// The lines of a refusal worth showing: not empty, not su's `Password:` prompt.
fn refusal_detail(method: BecomeMethod, output: &str) -> String {
    let lines: Vec<&str> = output
        .lines()
        .map(|line| line.trim().trim_start_matches("Password:").trim())
        .filter(|line| !line.is_empty())
        .collect();
    if lines.is_empty() {
        format!("{method} failed without saying why")
    } else {
        lines.join("; ")
    }
}

fn classify_sudo(host: &str, login_user: &str, run_as: &RunAs, output: &str) -> SshError {
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
    if output.contains("a password is required") || output.contains("a terminal is required") {
        if with_password(run_as) {
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
    SshError::SudoRefused {
        host: host.to_string(),
        login_user: login_user.to_string(),
        run_as: run_as.describe(),
        detail: refusal_detail(BecomeMethod::Sudo, output),
    }
}

/// doas and su (both run with `LC_ALL=C`): `doas: Operation not permitted` (no doas.conf rule),
/// `doas: Authentication required` (`-n` and a rule without `nopass`), `doas: Authentication
/// failed` and `su: Authentication failure` (a wrong password, or none).
fn classify_doas_or_su(
    method: BecomeMethod,
    host: &str,
    login_user: &str,
    run_as: &RunAs,
    output: &str,
) -> SshError {
    let target = run_as.describe();
    let failure = |detail: String, hint: String| {
        Box::new(BecomeFailure {
            method: method.to_string(),
            host: host.to_string(),
            login_user: login_user.to_string(),
            run_as: target.clone(),
            detail,
            hint,
        })
    };
    match method {
        BecomeMethod::Doas if output.contains("Operation not permitted") => {
            return SshError::BecomeNoRights(failure(
                String::new(),
                format!(
                    "add a rule such as `permit {login_user} as {target}` to /etc/doas.conf on \
                     {host} (owned by root, mode 0600), or log in as a user that has one"
                ),
            ));
        }
        BecomeMethod::Doas if output.contains("Authentication failed") && with_password(run_as) => {
            return SshError::BecomeWrongPassword(failure(
                String::new(),
                format!(
                    "doas asks for the login user's own password: check that the host's \
                     mop_sudo_password is the password of {login_user}"
                ),
            ));
        }
        BecomeMethod::Doas
            if output.contains("Authentication required")
                || output.contains("Authentication failed")
                || output.contains("a tty is required") =>
        {
            return SshError::BecomeNeedsPassword(failure(
                String::new(),
                format!(
                    "set the host's mop_sudo_password to the password of {login_user}, or add \
                     `nopass` to the doas.conf rule that lets {login_user} become {target}"
                ),
            ));
        }
        BecomeMethod::Su if output.contains("Authentication failure") => {
            let root_note = if target == "root" {
                "; su to root needs root's password and fails when root has none (then use \
                 sudo or doas)"
            } else {
                ""
            };
            let hint = format!(
                "su asks for the password of {target}, the user it becomes (not of \
                 {login_user}): check the host's mop_sudo_password{root_note}"
            );
            return if with_password(run_as) {
                SshError::BecomeWrongPassword(failure(String::new(), hint))
            } else {
                SshError::BecomeNeedsPassword(failure(String::new(), hint))
            };
        }
        _ => {}
    }
    SshError::BecomeRefused(failure(
        refusal_detail(method, output),
        format!(
            "check that {method} is installed on {host} and lets {login_user} become {target}, \
             or choose another mop_become_method"
        ),
    ))
}

// The become decisions of `mop push`, all here: whether to check before the agent starts,
// which prefixes to check with, what the check's answer means, and what the agent's stdin
// starts with.

/// Whether the become program must be checked before the agent starts: with a password, mop
/// must know whether sudo or doas will ask for it (NOPASSWD and `nopass` rules do not), or
/// the agent would read it as protocol bytes; su always asks, and a wrong password must fail
/// in the check, once, not as an agent that never came up. Without a password, `sudo -n` and
/// `doas -n` fail fast and a failed start is diagnosed afterwards.
pub(super) fn checks_first(requested: &RunAs) -> bool {
    matches!(
        requested,
        RunAs::Become {
            with_password: true,
            ..
        } | RunAs::Become {
            method: BecomeMethod::Su,
            ..
        }
    )
}

/// Whether the check can run in the probe, before the agent is on the host: not when it goes
/// through the agent itself (doas with a password), which is checked after the upload.
pub(super) fn checks_in_probe(requested: &RunAs) -> bool {
    checks_first(requested) && !requested.needs_agent_wrapper()
}

/// The prefix to check with, and the no-password form to try first when a password is given
/// (`sudo -n`, `doas -n`; su has none: it always asks).
pub(super) fn check_prefixes(requested: &RunAs, work: &str) -> (Option<String>, Option<String>) {
    match requested {
        RunAs::Login => (None, None),
        RunAs::Become {
            method,
            user,
            with_password,
        } => {
            let without_password = RunAs::Become {
                method: *method,
                user: user.clone(),
                with_password: false,
            };
            let first = (*with_password && *method != BecomeMethod::Su)
                .then(|| without_password.command_prefix_in(work));
            (Some(requested.command_prefix_in(work)), first)
        }
    }
}

/// A check for an identity not checked yet (the probe did not, or a later role asks for it).
pub(super) async fn check_become(
    host: &str,
    session: &Session,
    install: &Install,
    spec: Option<&BecomeSpec>,
    requested: &RunAs,
) -> Result<RunAs, SshError> {
    let (prefix, nopasswd_prefix) = check_prefixes(requested, &install.work);
    let Some(prefix) = prefix else {
        return Ok(RunAs::Login);
    };
    let script = become_check_script(
        &install.work,
        &prefix,
        nopasswd_prefix.as_deref(),
        requested.method(),
    );
    let output = exec(session, &script, password_line(spec))
        .await
        .map_err(|detail| SshError::Bootstrap {
            host: host.to_string(),
            detail: detail.to_string(),
        })?;
    match parse_probe(&output.stdout).sudo {
        Some(check) => check_outcome(host, install, spec, requested, check),
        None => Err(SshError::Bootstrap {
            host: host.to_string(),
            detail: exec_failure(&output, spec),
        }),
    }
}

/// What to run as, given what a check for `requested` found: a rule without a password drops
/// the password, a failed check becomes the error that says why.
pub(super) fn check_outcome(
    host: &str,
    install: &Install,
    spec: Option<&BecomeSpec>,
    requested: &RunAs,
    check: BecomeCheck,
) -> Result<RunAs, SshError> {
    match check {
        BecomeCheck::Ok => Ok(requested.clone()),
        BecomeCheck::NoPassword => match requested {
            RunAs::Become { method, user, .. } => Ok(RunAs::Become {
                method: *method,
                user: user.clone(),
                with_password: false,
            }),
            RunAs::Login => Ok(RunAs::Login),
        },
        BecomeCheck::Failed(output) if output.trim().is_empty() => {
            Err(SshError::AgentDirUnreachable {
                host: host.to_string(),
                login_user: install.login_user.clone(),
                run_as: requested.describe(),
                agent_dir: install.dir.clone(),
            })
        }
        BecomeCheck::Failed(output) => Err(classify_become_failure(
            host,
            &install.login_user,
            requested,
            spec,
            &output,
        )),
    }
}

/// The line the agent's stdin starts with when it runs as `effective`: the password, read by
/// `sudo -S`, su or the doas wrapper, only when the check found that it is asked for.
pub(super) fn agent_stdin_line(effective: &RunAs, spec: Option<&BecomeSpec>) -> Option<Vec<u8>> {
    match effective {
        RunAs::Become {
            with_password: true,
            ..
        } => password_line(spec),
        _ => None,
    }
}

/// Checks that the become program works and that the identity it switches to can reach `$work`
/// (a third user may not be able to traverse the login user's home). With a password, the
/// no-password form is tried first: if sudo or doas does not ask, the password must not be
/// sent, or the agent would read it as protocol bytes.
pub(super) fn become_check_line(
    prefix: &str,
    nopasswd_prefix: Option<&str>,
    method: BecomeMethod,
) -> String {
    let check = r#"test -x "$work""#;
    let mut line = String::new();
    if let Some(nopasswd) = nopasswd_prefix {
        let _ = write!(
            line,
            r#"if {nopasswd}{check} 2>/dev/null </dev/null; then echo sudo=nopasswd; el"#
        );
    }
    let rights = no_rights_probe(method).unwrap_or_else(|| ":".to_string());
    let _ = write!(
        line,
        r#"if out=$({prefix}{check} 2>&1); then echo sudo=ok; else echo sudo=fail; printf '%s\n' "$out"; {rights}; exit 0; fi"#
    );
    line
}

/// The line the check scripts print when the login user has no sudoers rule on the host.
pub(crate) const NO_SUDO_RIGHTS_MARK: &str = "mop-sudo-rights=none";

/// For sudo, shell that prints [`NO_SUDO_RIGHTS_MARK`] when `sudo -n -v` says the user may not
/// run sudo at all (run with `LC_ALL=C`; `-v` with `-n` never prompts and never runs anything).
/// doas says so itself (`Operation not permitted`), and su has no rules to ask about.
pub(crate) fn no_rights_probe(method: BecomeMethod) -> Option<String> {
    (method == BecomeMethod::Sudo).then(|| {
        format!(
            r#"case $(sudo -n -v 2>&1 </dev/null) in *"may not run sudo"*) echo {NO_SUDO_RIGHTS_MARK};; esac"#
        )
    })
}

/// A check on its own, for an identity the probe did not check.
pub(super) fn become_check_script(
    work: &str,
    prefix: &str,
    nopasswd_prefix: Option<&str>,
    method: BecomeMethod,
) -> String {
    format!(
        "LC_ALL=C; export LC_ALL; work={}; {}; echo done=yes",
        quote(work),
        become_check_line(prefix, nopasswd_prefix, method)
    )
}

/// What a become check (in the probe or on its own) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BecomeCheck {
    Ok,
    /// It works without the password (NOPASSWD, `nopass`): do not send it.
    NoPassword,
    /// The become program (or the directory check under it) failed; what it printed.
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(user: Option<&str>, password: Option<&str>) -> BecomeSpec {
        with_method(BecomeMethod::Sudo, user, password)
    }

    fn with_method(method: BecomeMethod, user: Option<&str>, password: Option<&str>) -> BecomeSpec {
        BecomeSpec {
            user: user.map(str::to_string),
            password: password.map(Secret::new),
            method,
        }
    }

    #[test]
    fn secrets_never_print() {
        let sudo = spec(None, Some("hunter2"));
        assert_eq!(
            format!("{sudo:?}"),
            "BecomeSpec { user: None, password: Some(<redacted>), method: Sudo }"
        );
        assert_eq!(Secret::new("hunter2").to_string(), "<redacted>");
    }

    #[test]
    fn prefixes_never_hold_the_password() {
        let check = |spec: Option<BecomeSpec>, expected: &str| {
            let run_as = RunAs::from_spec(spec.as_ref());
            let prefix = run_as.command_prefix_in("/h/.mop/w-1");
            assert_eq!(prefix, expected);
            assert!(!prefix.contains("hunter2"), "{prefix}");
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
        check(
            Some(with_method(BecomeMethod::Doas, None, None)),
            "doas -n -- ",
        );
        check(
            Some(with_method(BecomeMethod::Doas, Some("app"), None)),
            "doas -n -u app -- ",
        );
        // doas reads passwords from a terminal only: the run's agent answers its prompt.
        check(
            Some(with_method(
                BecomeMethod::Doas,
                Some("root"),
                Some("hunter2"),
            )),
            "/h/.mop/w-1/mop-agent --tty-password -- doas -- ",
        );
        check(
            Some(with_method(BecomeMethod::Su, Some("app"), Some("hunter2"))),
            r#"3>&2 2>/dev/null su -s /bin/sh -c 'exec "$0" "$@" 2>&3 3>&-' -- app "#,
        );
        check(
            Some(with_method(BecomeMethod::Su, None, Some("hunter2"))),
            r#"3>&2 2>/dev/null su -s /bin/sh -c 'exec "$0" "$@" 2>&3 3>&-' -- root "#,
        );
        // Without an agent (ad hoc), doas with a password fails at once rather than waiting.
        assert_eq!(
            RunAs::from_spec(Some(&with_method(BecomeMethod::Doas, None, Some("pw"))))
                .command_prefix(),
            "doas -- "
        );
    }

    #[test]
    fn checks_follow_the_method() {
        let run_as = |method, password: Option<&str>| {
            RunAs::from_spec(Some(&with_method(method, Some("app"), password)))
        };
        // sudo and doas with a password try their no-password form first; su always asks.
        let (check, first) = check_prefixes(&run_as(BecomeMethod::Doas, Some("pw")), "/w");
        assert_eq!(
            check.as_deref(),
            Some("/w/mop-agent --tty-password -- doas -u app -- ")
        );
        assert_eq!(first.as_deref(), Some("doas -n -u app -- "));
        let (_, first) = check_prefixes(&run_as(BecomeMethod::Su, Some("pw")), "/w");
        assert_eq!(first, None);
        assert!(checks_first(&run_as(BecomeMethod::Su, Some("pw"))));
        assert!(checks_in_probe(&run_as(BecomeMethod::Su, Some("pw"))));
        assert!(checks_first(&run_as(BecomeMethod::Doas, Some("pw"))));
        assert!(!checks_in_probe(&run_as(BecomeMethod::Doas, Some("pw"))));
        assert!(!checks_first(&run_as(BecomeMethod::Doas, None)));
        assert!(become_check_line("doas -n -- ", None, BecomeMethod::Doas).contains("; :; exit 0"));
        assert!(become_check_line("sudo -n -- ", None, BecomeMethod::Sudo).contains("sudo -n -v"));
    }

    #[test]
    fn the_ad_hoc_commands_refuse_what_needs_the_agent_or_hides_su() {
        let refused = |method, password: Option<&str>| {
            check_adhoc_become("web1", Some(&with_method(method, None, password))).is_err()
        };
        assert!(!refused(BecomeMethod::Sudo, Some("pw")));
        assert!(!refused(BecomeMethod::Doas, None));
        assert!(refused(BecomeMethod::Doas, Some("pw")));
        assert!(refused(BecomeMethod::Su, Some("pw")));
        let message = check_adhoc_become(
            "web1",
            Some(&with_method(BecomeMethod::Doas, None, Some("hunter2"))),
        )
        .expect_err("refused")
        .to_string();
        assert!(
            message.starts_with("cannot become another user with doas on web1: "),
            "{message}"
        );
        assert!(message.contains("\n  hint: "), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn classifies_what_sudo_says() {
        let login = RunAs::from_spec(Some(&spec(None, None)));
        let with_password = RunAs::from_spec(Some(&spec(None, Some("pw"))));
        let check = |run_as: &RunAs, output: &str, expected: &str| {
            let sudo = spec(None, Some("s3cret"));
            let message =
                classify_become_failure("web1", "deploy", run_as, Some(&sudo), output).to_string();
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
    fn classifies_what_doas_and_su_say() {
        let check = |method,
                     password: Option<&str>,
                     user: Option<&str>,
                     output: &str,
                     expected: &[&str]| {
            let spec = with_method(method, user, password);
            let run_as = RunAs::from_spec(Some(&spec));
            let message =
                classify_become_failure("web1", "deploy", &run_as, Some(&spec), output).to_string();
            for part in expected {
                assert!(message.contains(part), "{message}\nlacks: {part}");
            }
            assert!(message.contains("\n  hint: "), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
            assert!(!message.contains("Password:"), "{message}");
        };
        check(
            BecomeMethod::Doas,
            None,
            None,
            "doas: Operation not permitted\n",
            &[
                "user deploy may not use doas on web1 to become root",
                "permit deploy as root",
            ],
        );
        check(
            BecomeMethod::Doas,
            None,
            None,
            "doas: Authentication required\n",
            &[
                "doas on web1 needs a password for user deploy to become root",
                "nopass",
            ],
        );
        check(
            BecomeMethod::Doas,
            Some("s3cret"),
            Some("app"),
            "doas: Authentication failed\n",
            &[
                "doas on web1 rejected the password for becoming app (login user deploy); mop tried it once",
                "the password of deploy",
            ],
        );
        check(
            BecomeMethod::Su,
            Some("s3cret"),
            Some("app"),
            "Password: su: Authentication failure\n",
            &[
                "su on web1 rejected the password for becoming app",
                "the password of app",
            ],
        );
        check(
            BecomeMethod::Su,
            Some("s3cret"),
            None,
            "Password: su: Authentication failure\n",
            &["becoming root", "su to root needs root's password"],
        );
        check(
            BecomeMethod::Su,
            Some("s3cret"),
            Some("ghost"),
            "su: user ghost does not exist or the user entry does not contain all the required fields\n",
            &["su on web1 refused to run the agent as ghost: su: user ghost does not exist"],
        );
        check(
            BecomeMethod::Doas,
            None,
            None,
            "sh: 1: doas: not found\n",
            &[
                "doas on web1 refused to run the agent as root: sh: 1: doas: not found",
                "installed",
            ],
        );
        assert!(is_become_refusal("doas: Operation not permitted\n"));
        assert!(!is_become_refusal(
            "doas: Operation not permitted\nreal output\n"
        ));
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
