//! The `shell` and `command` resources: guards (`creates`, `removes`, `unless`, `onlyif`),
//! working directory, environment, and a timeout that kills the command's whole process group.
//!
//! Check mode: `creates`/`removes` are path tests and `unless`/`onlyif` are queries, so they
//! are evaluated (the guard commands DO run in check mode, like any query); the command itself
//! never runs, and is reported as "would run" (changed, simulated), unless it is `read_only`:
//! then it runs in both modes and never counts as a change.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mop_protocol::CommandSpec;

use super::{process, words};
use crate::outcome::{Outcome, ResourceError};

/// How `cmd` becomes an argv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `/bin/sh -c cmd`.
    Shell,
    /// Split into words (see [`words::split`]), no shell.
    Argv,
}

pub fn converge(spec: &CommandSpec, style: Style, check: bool) -> Result<Outcome, ResourceError> {
    let argv = match style {
        Style::Shell => vec!["/bin/sh".to_string(), "-c".to_string(), spec.cmd.clone()],
        Style::Argv => words::split(&spec.cmd)
            .map_err(|err| ResourceError::new(format!("cannot split `cmd`: {err}")))?,
    };
    if argv.is_empty() || (style == Style::Shell && spec.cmd.trim().is_empty()) {
        return Err(ResourceError::new("`cmd` is empty"));
    }
    if let Some(reason) = guard_says_skip(spec)? {
        return Ok(Outcome {
            message: Some(reason),
            ..Outcome::unchanged()
        });
    }
    if check && !spec.read_only {
        return Ok(Outcome::simulated(Vec::new(), "would run"));
    }
    let run = run(&argv, spec)?;
    if run.timed_out {
        return Err(ResourceError::with_output(
            format!(
                "timed out after {} s; the command's process group was killed",
                spec.timeout.unwrap_or_default()
            ),
            run.output,
        ));
    }
    if run.output.rc != 0 {
        let mut message = format!("command exited with code {}", run.output.rc);
        if let Some(line) = run
            .output
            .stderr
            .lines()
            .map(str::trim)
            .rfind(|line| !line.is_empty())
        {
            message.push_str(": ");
            message.push_str(line);
        }
        return Err(ResourceError::with_output(message, run.output));
    }
    // A read-only command ran to look, not to change anything.
    let outcome = if spec.read_only {
        Outcome::unchanged()
    } else {
        Outcome::changed(Vec::new())
    };
    Ok(Outcome {
        output: Some(run.output),
        ..outcome
    })
}

/// `Some(reason)` when a guard says the command must not run.
fn guard_says_skip(spec: &CommandSpec) -> Result<Option<String>, ResourceError> {
    if let Some(creates) = &spec.creates {
        if resolve(spec, creates).exists() {
            return Ok(Some(format!("skipped: `{creates}` exists (creates)")));
        }
    }
    if let Some(removes) = &spec.removes {
        if !resolve(spec, removes).exists() {
            return Ok(Some(format!(
                "skipped: `{removes}` does not exist (removes)"
            )));
        }
    }
    if let Some(unless) = &spec.unless {
        let guard = run_guard(unless, spec)?;
        if guard.output.rc == 0 {
            return Ok(Some("skipped: the `unless` command succeeded".to_string()));
        }
    }
    if let Some(onlyif) = &spec.onlyif {
        let guard = run_guard(onlyif, spec)?;
        if guard.output.rc != 0 {
            return Ok(Some(format!(
                "skipped: the `onlyif` command failed (exit code {})",
                guard.output.rc
            )));
        }
    }
    Ok(None)
}

fn run_guard(command: &str, spec: &CommandSpec) -> Result<Run, ResourceError> {
    let argv = ["/bin/sh".to_string(), "-c".to_string(), command.to_string()];
    let run = run(&argv, spec)?;
    if run.timed_out {
        return Err(ResourceError::with_output(
            format!(
                "the guard command `{command}` timed out after {} s",
                spec.timeout.unwrap_or_default()
            ),
            run.output,
        ));
    }
    Ok(run)
}

/// A guard path relative to `cwd` when one is given.
fn resolve(spec: &CommandSpec, path: &str) -> PathBuf {
    match &spec.cwd {
        Some(cwd) => Path::new(cwd).join(path),
        None => PathBuf::from(path),
    }
}

struct Run {
    output: mop_protocol::CommandOutput,
    timed_out: bool,
}

/// Runs `argv` with the spec's cwd, env and timeout, capturing its output. The child gets its
/// own process group, so a timeout kills everything it started, not just the shell.
fn run(argv: &[String], spec: &CommandSpec) -> Result<Run, ResourceError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| ResourceError::new("`cmd` is empty"))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    command.envs(&spec.env);
    if let Some(cwd) = &spec.cwd {
        if !Path::new(cwd).is_dir() {
            return Err(ResourceError::new(format!(
                "working directory `{cwd}` does not exist"
            )));
        }
        command.current_dir(cwd);
    }
    let mut child = command.spawn().map_err(|err| {
        let mut message = format!("cannot run `{program}`: {err}");
        if err.kind() == std::io::ErrorKind::NotFound {
            message.push_str(&format!(
                "\nhint: `{program}` is not installed or not on PATH; use `shell` for shell syntax"
            ));
        }
        ResourceError::new(message)
    })?;
    let deadline = spec
        .timeout
        .map(|seconds| Instant::now() + Duration::from_secs(seconds));
    let finished = process::finish(&mut child, deadline)
        .map_err(|err| ResourceError::new(format!("cannot collect the command's output: {err}")))?;
    Ok(Run {
        output: mop_protocol::CommandOutput {
            rc: finished.rc(),
            stdout: String::from_utf8_lossy(&finished.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&finished.stderr).into_owned(),
        },
        timed_out: finished.timed_out,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;

    use super::*;

    fn spec(cmd: &str) -> CommandSpec {
        CommandSpec {
            cmd: cmd.to_string(),
            creates: None,
            removes: None,
            unless: None,
            onlyif: None,
            cwd: None,
            env: BTreeMap::new(),
            timeout: None,
            read_only: false,
        }
    }

    #[test]
    fn shell_runs_and_captures_output() {
        let mut command = spec("echo out; echo err >&2; echo $GREETING");
        command.env.insert("GREETING".into(), "hi there".into());
        let outcome = converge(&command, Style::Shell, false).expect("runs");
        assert!(outcome.changed);
        let output = outcome.output.expect("output");
        assert_eq!(output.rc, 0);
        assert_eq!(output.stdout, "out\nhi there\n");
        assert_eq!(output.stderr, "err\n");
    }

    #[test]
    fn command_splits_words_without_a_shell() {
        let outcome =
            converge(&spec("printf '%s|' 'a b' $HOME *"), Style::Argv, false).expect("runs");
        assert_eq!(outcome.output.expect("output").stdout, "a b|$HOME|*|");
        let err = converge(&spec("no-such-program-mop"), Style::Argv, false).expect_err("missing");
        assert!(
            err.message
                .contains("hint: `no-such-program-mop` is not installed"),
            "{err}"
        );
    }

    #[test]
    fn non_zero_exit_fails_with_output() {
        let err = converge(&spec("echo oops >&2; exit 3"), Style::Shell, false).expect_err("rc 3");
        assert_eq!(err.message, "command exited with code 3: oops");
        assert_eq!(err.output.expect("output").rc, 3);
    }

    #[test]
    fn guards_skip_and_check_mode_does_not_run() {
        let root = tempfile::tempdir().expect("tempdir");
        let marker = root.path().join("marker");
        let touch = format!("touch {}", marker.display());

        let mut creates = spec(&touch);
        creates.creates = Some(marker.display().to_string());
        let outcome = converge(&creates, Style::Shell, true).expect("check");
        assert!(outcome.changed && outcome.is_simulated());
        assert!(!marker.exists(), "check mode ran the command");
        assert!(
            converge(&creates, Style::Shell, false)
                .expect("apply")
                .changed
        );
        assert!(marker.exists());
        let outcome = converge(&creates, Style::Shell, false).expect("again");
        assert!(!outcome.changed);
        assert!(outcome
            .message
            .expect("reason")
            .contains("exists (creates)"));

        let mut removes = spec("true");
        removes.removes = Some("relative-missing".into());
        removes.cwd = Some(root.path().display().to_string());
        assert!(
            !converge(&removes, Style::Shell, false)
                .expect("skip")
                .changed
        );
        removes.removes = Some("marker".into());
        assert!(
            converge(&removes, Style::Shell, false)
                .expect("runs")
                .changed
        );

        // Guard commands are queries: they run even in check mode.
        let probe = root.path().join("probe");
        let mut unless = spec("false");
        unless.unless = Some(format!("touch {}; true", probe.display()));
        assert!(
            !converge(&unless, Style::Shell, true)
                .expect("check")
                .changed
        );
        assert!(probe.exists());

        let mut onlyif = spec("false");
        onlyif.onlyif = Some("exit 1".into());
        let outcome = converge(&onlyif, Style::Shell, false).expect("skipped");
        assert!(outcome
            .message
            .expect("reason")
            .contains("`onlyif` command failed (exit code 1)"));
        onlyif.onlyif = Some("true".into());
        assert!(
            converge(&onlyif, Style::Shell, false).is_err(),
            "onlyif passed, so `false` ran and failed"
        );
    }

    #[test]
    fn large_output_on_both_pipes_does_not_deadlock() {
        let command = spec(
            "head -c 300000 /dev/zero | tr '\\0' a; head -c 200000 /dev/zero | tr '\\0' b >&2",
        );
        let output = converge(&command, Style::Shell, false)
            .expect("runs")
            .output
            .expect("output");
        assert_eq!(output.stdout.len(), 300_000);
        assert_eq!(output.stderr.len(), 200_000);
        assert!(output.stdout.bytes().all(|byte| byte == b'a'));
    }

    #[test]
    fn a_background_process_holding_stdout_does_not_block_the_run() {
        let root = tempfile::tempdir().expect("tempdir");
        let pid_file = root.path().join("pid");
        let command = spec(&format!(
            "sleep 30 & echo $! > {}; echo done",
            pid_file.display()
        ));
        let started = Instant::now();
        let outcome = converge(&command, Style::Shell, false).expect("runs");
        let elapsed = started.elapsed();
        let pid = fs::read_to_string(&pid_file)
            .expect("pid written")
            .trim()
            .to_string();
        // Clean up the background sleep this test started.
        let _ = std::process::Command::new("kill").arg(&pid).status();
        assert!(
            elapsed < Duration::from_secs(10),
            "waited {elapsed:?} for a background process"
        );
        assert_eq!(outcome.output.expect("output").stdout, "done\n");
    }

    #[test]
    fn timeout_kills_the_whole_process_group() {
        let root = tempfile::tempdir().expect("tempdir");
        let pid_file = root.path().join("pid");
        let mut command = spec(&format!(
            "sleep 60 & echo $! > {}; echo started; wait",
            pid_file.display()
        ));
        command.timeout = Some(1);
        let started = Instant::now();
        let err = converge(&command, Style::Shell, false).expect_err("times out");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        assert!(err.message.starts_with("timed out after 1 s"), "{err}");
        let output = err.output.expect("partial output");
        assert_eq!(output.rc, 128 + process::SIGKILL);
        assert_eq!(output.stdout, "started\n");
        let pid: u32 = fs::read_to_string(&pid_file)
            .expect("pid written")
            .trim()
            .parse()
            .expect("pid");
        // The background `sleep` was in the group: it must be gone (or at most a zombie
        // waiting for init to reap it), not sleeping on.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let state = fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    stat.rsplit(") ")
                        .next()
                        .and_then(|rest| rest.chars().next())
                });
            match state {
                None | Some('Z') | Some('X') => break,
                Some(other) if Instant::now() > deadline => {
                    panic!("sleep {pid} survived the timeout in state {other}")
                }
                Some(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}
