//! What a resource reports back to the role runner, and the seam through which resources run
//! host commands.
//!
//! Every resource module returns an [`Outcome`]; the role runner turns it into a protocol event
//! (applying `changed_when`/`failed_when`, `register`, `notify`). Resources that shell out to
//! system tools (package managers, service managers, user tools) do so through [`Runner`], so
//! their planning and output parsing can be unit-tested against recorded outputs.

use std::io;
use std::process::{Command, Stdio};

use mop_protocol::CommandOutput;

/// The result of checking or converging one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The host differs (check mode) or was changed (apply mode).
    pub changed: bool,
    /// Field-level changes, e.g. `mode 0644 -> 0600`, `installed nginx`.
    pub changes: Vec<String>,
    /// Unified diff or `sha256 a -> b`, filled only when the plan asked for diffs.
    pub diff: Option<String>,
    /// A message for the operator (what `echo` says, why a command was skipped).
    pub message: Option<String>,
    /// Output of the main command, when the resource ran one.
    pub output: Option<CommandOutput>,
    /// Extra fields for the registered result (e.g. `{"version": "1.2"}`).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Outcome {
    /// Nothing to do.
    pub fn unchanged() -> Outcome {
        Outcome::default()
    }

    /// A change described by `changes`.
    pub fn changed(changes: Vec<String>) -> Outcome {
        Outcome {
            changed: true,
            changes,
            ..Outcome::default()
        }
    }
}

/// A resource failed; the message is shown to the operator as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceError {
    pub message: String,
    /// Output of the command that failed, if one did.
    pub output: Option<CommandOutput>,
}

impl ResourceError {
    pub fn new(message: impl Into<String>) -> ResourceError {
        ResourceError {
            message: message.into(),
            output: None,
        }
    }

    pub fn with_output(message: impl Into<String>, output: CommandOutput) -> ResourceError {
        ResourceError {
            message: message.into(),
            output: Some(output),
        }
    }
}

impl std::fmt::Display for ResourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs a host command to completion, capturing its output. Query commands run in check
/// mode too; commands that change the host are only run in apply mode (the caller decides).
pub trait Runner {
    /// Runs `argv[0]` with the rest as arguments, no shell, stdin closed.
    fn run(&mut self, argv: &[&str]) -> io::Result<CommandOutput>;

    /// Whether `program` is installed, looked up as facts look up the package managers (`PATH`
    /// and the standard bin directories), without running it.
    fn has_program(&self, program: &str) -> bool;
}

/// The real runner: spawns processes on this host. The environment gets `LC_ALL=C` so that
/// tool output is parseable whatever the host's locale.
#[derive(Debug, Default)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn has_program(&self, program: &str) -> bool {
        crate::facts::find_executable(&crate::facts::FactSources::default(), program).is_some()
    }

    fn run(&mut self, argv: &[&str]) -> io::Result<CommandOutput> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        let output = Command::new(program)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()?;
        Ok(CommandOutput {
            rc: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// Key in [`Outcome::extra`] marking a check-mode outcome for something that was not run
/// (a command, a handler): the role runner then leaves `changed_when`/`failed_when` alone,
/// since there is no real result to judge.
pub const SIMULATED_KEY: &str = "simulated";

impl Outcome {
    /// A check-mode "would run": changed, marked simulated, with a message.
    pub fn simulated(changes: Vec<String>, message: impl Into<String>) -> Outcome {
        let mut outcome = Outcome::changed(changes);
        outcome.message = Some(message.into());
        outcome
            .extra
            .insert(SIMULATED_KEY.to_string(), serde_json::Value::Bool(true));
        outcome
    }

    /// Whether this outcome is a check-mode simulation (see [`SIMULATED_KEY`]).
    pub fn is_simulated(&self) -> bool {
        self.extra.get(SIMULATED_KEY) == Some(&serde_json::Value::Bool(true))
    }
}
