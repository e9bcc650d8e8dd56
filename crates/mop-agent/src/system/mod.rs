//! System resources that drive the host's own tools: `package`, `service`, `user`, `group`.
//!
//! Every host command goes through [`Runner`], so planning and output parsing are tested
//! against recorded outputs for the tools this machine lacks, and for real where it has them.
//! In check mode only query commands run; the outcome lists what would change.

mod package;
mod service;
mod users;

use mop_protocol::{CommandOutput, Facts, GroupSpec, PackageSpec, ServiceSpec, UserSpec};

use crate::outcome::{Outcome, ResourceError, Runner};

/// What a system resource needs to know about the run besides its spec.
pub struct SystemContext<'a> {
    /// Query only: change nothing, report what would change.
    pub check: bool,
    pub facts: &'a Facts,
}

/// Converges one or more packages with the host's package manager.
pub fn package(
    spec: &PackageSpec,
    ctx: &SystemContext,
    runner: &mut dyn Runner,
) -> Result<Outcome, ResourceError> {
    package::converge(spec, ctx, runner)
}

/// Converges a service's run state and boot-time enablement.
pub fn service(
    spec: &ServiceSpec,
    ctx: &SystemContext,
    runner: &mut dyn Runner,
) -> Result<Outcome, ResourceError> {
    service::converge(spec, ctx, runner)
}

/// Converges a local user account (read from `/etc/passwd` and `/etc/group`).
pub fn user(
    spec: &UserSpec,
    ctx: &SystemContext,
    runner: &mut dyn Runner,
) -> Result<Outcome, ResourceError> {
    users::converge_user_on_host(spec, ctx, runner)
}

/// Converges a local group (read from `/etc/group`).
pub fn group(
    spec: &GroupSpec,
    ctx: &SystemContext,
    runner: &mut dyn Runner,
) -> Result<Outcome, ResourceError> {
    users::converge_group_on_host(spec, ctx, runner)
}

/// Joins an argv for messages: `apt-get install -y hello`.
fn display_command(argv: &[&str]) -> String {
    argv.join(" ")
}

/// Runs a command that only reads host state. The caller interprets the exit code; only a
/// failure to start the program is an error here.
pub(crate) fn run_query(
    runner: &mut dyn Runner,
    argv: &[&str],
) -> Result<CommandOutput, ResourceError> {
    runner.run(argv).map_err(|err| {
        let program = argv.first().copied().unwrap_or_default();
        let mut message = format!("cannot run `{}`: {err}", display_command(argv));
        if err.kind() == std::io::ErrorKind::NotFound {
            message.push_str(&format!(
                "\nhint: `{program}` is not installed or not on PATH"
            ));
        }
        ResourceError::new(message)
    })
}

/// Runs a command that changes the host and fails unless `succeeded(rc)`. The error names
/// the command and quotes the last line it printed on stderr (or stdout).
fn run_change_with(
    runner: &mut dyn Runner,
    argv: &[&str],
    succeeded: impl Fn(i32) -> bool,
) -> Result<CommandOutput, ResourceError> {
    let output = run_query(runner, argv)?;
    if succeeded(output.rc) {
        return Ok(output);
    }
    let mut message = format!(
        "`{}` failed with exit code {}",
        display_command(argv),
        output.rc
    );
    if let Some(line) = last_line(&output.stderr).or_else(|| last_line(&output.stdout)) {
        message.push_str(": ");
        message.push_str(line);
    }
    Err(ResourceError::with_output(message, output))
}

/// [`run_change_with`] for tools that exit 0 on success.
pub(crate) fn run_change(
    runner: &mut dyn Runner,
    argv: &[&str],
) -> Result<CommandOutput, ResourceError> {
    run_change_with(runner, argv, |rc| rc == 0)
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|line| !line.is_empty())
}

/// Appends one command's output to the outcome's, so a resource that ran several commands
/// (refresh, install, upgrade) reports all of them; the exit code is the last one's.
fn append_output(total: &mut Option<CommandOutput>, next: CommandOutput) {
    match total {
        None => *total = Some(next),
        Some(total) => {
            total.rc = next.rc;
            total.stdout.push_str(&next.stdout);
            total.stderr.push_str(&next.stderr);
        }
    }
}

/// Rejects names that a tool would take for an option or that cannot be one argument.
fn check_argument_name(kind: &str, name: &str) -> Result<(), ResourceError> {
    if name.is_empty() {
        return Err(ResourceError::new(format!("{kind} name is empty")));
    }
    if name.starts_with('-') {
        return Err(ResourceError::new(format!(
            "invalid {kind} name `{name}`: it must not start with `-`"
        )));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ResourceError::new(format!(
            "invalid {kind} name `{name}`: it must not contain whitespace"
        )));
    }
    Ok(())
}

/// A [`Runner`] that replays recorded command outputs and fails the test on any command it
/// was not told to expect, in order.
#[cfg(test)]
pub(crate) mod recorded {
    use std::collections::VecDeque;
    use std::io;

    use mop_protocol::CommandOutput;

    use crate::outcome::Runner;

    pub(crate) struct RecordedRunner {
        expected: VecDeque<(Vec<String>, Option<CommandOutput>)>,
        /// Programs [`Runner::has_program`] says are not installed (all others are).
        missing: Vec<String>,
    }

    impl RecordedRunner {
        pub(crate) fn new() -> RecordedRunner {
            RecordedRunner {
                expected: VecDeque::new(),
                missing: Vec::new(),
            }
        }

        /// A host where `program` is not installed.
        pub(crate) fn lacking(mut self, program: &str) -> Self {
            self.missing.push(program.to_string());
            self
        }

        /// Expects `argv` (exact) next and answers with this output.
        pub(crate) fn expect(mut self, argv: &[&str], rc: i32, stdout: &str, stderr: &str) -> Self {
            let output = CommandOutput {
                rc,
                stdout: stdout.to_string(),
                stderr: stderr.to_string(),
            };
            self.expected.push_back((
                argv.iter().map(|arg| arg.to_string()).collect(),
                Some(output),
            ));
            self
        }

        /// [`RecordedRunner::expect`] with the command split on spaces.
        pub(crate) fn cmd(self, command: &str, rc: i32, stdout: &str) -> Self {
            let argv: Vec<&str> = command.split(' ').collect();
            self.expect(&argv, rc, stdout, "")
        }

        /// Expects `argv` next and answers as if the program were not installed.
        pub(crate) fn missing_program(mut self, command: &str) -> Self {
            self.expected
                .push_back((command.split(' ').map(str::to_string).collect(), None));
            self
        }
    }

    impl Runner for RecordedRunner {
        fn has_program(&self, program: &str) -> bool {
            !self.missing.iter().any(|missing| missing == program)
        }

        fn run(&mut self, argv: &[&str]) -> io::Result<CommandOutput> {
            let got: Vec<String> = argv.iter().map(|arg| arg.to_string()).collect();
            let Some((want, output)) = self.expected.pop_front() else {
                panic!("unexpected command {got:?}: no more commands were recorded");
            };
            assert_eq!(got, want, "commands ran out of the recorded order");
            output
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
        }
    }

    impl Drop for RecordedRunner {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let left: Vec<_> = self
                    .expected
                    .iter()
                    .map(|(argv, _)| argv.join(" "))
                    .collect();
                assert!(left.is_empty(), "recorded commands never ran: {left:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::recorded::RecordedRunner;
    use super::*;

    #[test]
    fn failed_change_names_command_and_last_stderr_line() {
        let mut runner =
            RecordedRunner::new().expect(&["tool", "x"], 3, "out\n", "first\nlast words\n\n");
        let err = run_change(&mut runner, &["tool", "x"]).expect_err("rc 3 fails");
        assert_eq!(err.message, "`tool x` failed with exit code 3: last words");
        assert_eq!(err.output.map(|output| output.rc), Some(3));
    }

    #[test]
    fn missing_program_gets_a_hint() {
        let mut runner = RecordedRunner::new().missing_program("zypper -n refresh");
        let err = run_query(&mut runner, &["zypper", "-n", "refresh"]).expect_err("not found");
        assert!(
            err.message.starts_with("cannot run `zypper -n refresh`"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("hint: `zypper` is not installed"),
            "{}",
            err.message
        );
    }

    #[test]
    fn argument_names_are_checked() {
        fn check(name: &str, ok: bool) {
            assert_eq!(check_argument_name("package", name).is_ok(), ok, "{name:?}");
        }
        check("nginx", true);
        check("libc6:amd64", true);
        check("", false);
        check("-rf", false);
        check("a b", false);
        check("a\nb", false);
    }
}
