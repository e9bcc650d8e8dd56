//! The `cron` resource: one job in a user's crontab, read and written with the host's own
//! `crontab` program (`-l` to read, `-` to install), so cron's locking, permission checks and
//! reload notification all apply. The job is the `# mop: NAME` marker line, the environment
//! lines right after it and one schedule line; everything else in the crontab is kept as is.

use std::io::Write;
use std::process::{Command, Stdio};

use mop_protocol::{
    cron_env_name_problem, cron_field, cron_special_problem, CommandOutput, CronSpec, Presence,
};

use crate::accounts;
use crate::diff::content_diff;
use crate::outcome::{Outcome, ResourceError};

/// The program this resource needs on the host.
const CRONTAB: &str = "crontab";

/// The first line of a job's entry.
fn marker(name: &str) -> String {
    format!("# mop: {name}")
}

pub fn converge(spec: &CronSpec, check: bool, diff: bool) -> Result<Outcome, ResourceError> {
    validate(spec)?;
    let user = spec.user.as_deref();
    if let Some(user) = user {
        let exists = accounts::lookup_user(user)
            .map_err(|err| {
                ResourceError::new(format!("cannot read `{}`: {err}", accounts::PASSWD_PATH))
            })?
            .is_some();
        if !exists {
            if check && spec.state.resolved() == Presence::Present {
                // An earlier `user` resource would have created the account in apply mode.
                return Ok(Outcome::changed(vec![format!(
                    "added job `{}` (user `{user}` does not exist yet)",
                    spec.name
                )]));
            }
            if spec.state.resolved() == Presence::Absent {
                return Ok(Outcome::unchanged());
            }
            return Err(ResourceError::new(format!(
                "user `{user}` does not exist\nhint: add a `user` resource for it before this one"
            )));
        }
    }
    let old = read_crontab(user)?;
    let wanted = match spec.state.resolved() {
        Presence::Present => Some(entry_lines(spec)?),
        Presence::Absent => None,
    };
    let Some((new, change)) = edit(&old, &spec.name, wanted) else {
        return Ok(Outcome::unchanged());
    };
    let mut outcome = Outcome::changed(vec![change]);
    if diff {
        let label = format!("crontab of {}", user.unwrap_or("the connecting user"));
        outcome.diff = Some(content_diff(&label, Some(old.as_bytes()), new.as_bytes()));
    }
    if !check {
        outcome.output = Some(write_crontab(user, &new)?);
    }
    Ok(outcome)
}

/// What `mop validate` checks, again after rendering: templates may have produced anything.
fn validate(spec: &CronSpec) -> Result<(), ResourceError> {
    let single_line = |field: &str, text: &str| {
        if text.contains(['\n', '\r']) {
            Err(ResourceError::new(format!(
                "`{field}` must be a single line"
            )))
        } else {
            Ok(())
        }
    };
    if spec.name.trim().is_empty() {
        return Err(ResourceError::new("`cron` (the job's name) is empty"));
    }
    single_line("cron", &spec.name)?;
    if let Some(user) = &spec.user {
        if user.is_empty() || user.starts_with('-') || user.contains(char::is_whitespace) {
            return Err(ResourceError::new(format!("invalid user name `{user}`")));
        }
    }
    if let Some(command) = &spec.command {
        single_line("command", command)?;
    }
    match &spec.special {
        Some(special) => {
            if let Some(problem) = cron_special_problem(special) {
                return Err(ResourceError::new(problem));
            }
        }
        None => {
            for (name, text) in schedule(spec) {
                let field = cron_field(name).expect("the five schedule fields are described");
                if let Some(problem) = field.problem(text) {
                    return Err(ResourceError::new(problem));
                }
            }
        }
    }
    for (name, value) in &spec.env {
        if let Some(problem) = cron_env_name_problem(name) {
            return Err(ResourceError::new(format!("`env`: {problem}")));
        }
        single_line(&format!("env.{name}"), value)?;
    }
    Ok(())
}

fn schedule(spec: &CronSpec) -> [(&'static str, &str); 5] {
    [
        ("minute", spec.minute.as_str()),
        ("hour", spec.hour.as_str()),
        ("day", spec.day.as_str()),
        ("month", spec.month.as_str()),
        ("weekday", spec.weekday.as_str()),
    ]
}

/// The job's lines: marker, environment, schedule and command.
fn entry_lines(spec: &CronSpec) -> Result<Vec<String>, ResourceError> {
    let command = spec
        .command
        .as_deref()
        .filter(|command| !command.trim().is_empty())
        .ok_or_else(|| ResourceError::new("`command` is required when the job is present"))?;
    let mut lines = vec![marker(&spec.name)];
    // Quoted: cron strips one pair of quotes, and refuses an empty unquoted value
    // (`MAILTO=` makes Debian's cron reject the whole crontab).
    lines.extend(
        spec.env
            .iter()
            .map(|(name, value)| format!("{name}=\"{value}\"")),
    );
    let when = match &spec.special {
        Some(special) => special.clone(),
        None => schedule(spec)
            .iter()
            .map(|(_, text)| *text)
            .collect::<Vec<_>>()
            .join(" "),
    };
    lines.push(format!("{when} {command}"));
    Ok(lines)
}

/// Whether a crontab line sets an environment variable (`NAME=value`, spaces allowed around
/// `=`), as cron reads it.
fn is_env_line(line: &str) -> bool {
    line.split_once('=').is_some_and(|(name, _)| {
        let name = name.trim();
        cron_env_name_problem(name).is_none()
    })
}

/// The crontab with the job set to `wanted` (or removed), and what changed; `None` when it
/// already is.
fn edit(old: &str, name: &str, wanted: Option<Vec<String>>) -> Option<(String, String)> {
    let mut lines: Vec<String> = old.lines().map(str::to_string).collect();
    let marker = marker(name);
    let found = lines
        .iter()
        .position(|line| line.trim_end() == marker)
        .map(|start| {
            // The marker, the environment lines after it, and the job line if one follows.
            let mut end = start + 1;
            while end < lines.len() && is_env_line(&lines[end]) {
                end += 1;
            }
            let job = lines
                .get(end)
                .is_some_and(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'));
            start..end + usize::from(job)
        });
    let change = match (found, wanted) {
        (None, None) => return None,
        (Some(range), None) => {
            lines.drain(range);
            format!("removed job `{name}`")
        }
        (Some(range), Some(wanted)) => {
            if lines[range.clone()] == wanted[..] {
                return None;
            }
            lines.splice(range, wanted);
            format!("changed job `{name}`")
        }
        (None, Some(wanted)) => {
            lines.extend(wanted);
            format!("added job `{name}`")
        }
    };
    let mut text = lines.join("\n");
    if !text.is_empty() {
        // cron ignores a last line without a newline.
        text.push('\n');
    }
    Some((text, change))
}

fn user_args(user: Option<&str>) -> Vec<&str> {
    match user {
        Some(user) => vec!["-u", user],
        None => Vec::new(),
    }
}

fn spawn_error(err: &std::io::Error) -> ResourceError {
    let mut message = format!("cannot run `{CRONTAB}`: {err}");
    if err.kind() == std::io::ErrorKind::NotFound {
        message.push_str(&format!(
            "\nhint: `{CRONTAB}` is not installed on this host; install cron (the `cron` or `cronie` package) first"
        ));
    }
    ResourceError::new(message)
}

fn to_output(output: &std::process::Output) -> CommandOutput {
    CommandOutput {
        rc: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The user's crontab; empty when they have none.
fn read_crontab(user: Option<&str>) -> Result<String, ResourceError> {
    let output = Command::new(CRONTAB)
        .args(user_args(user))
        .arg("-l")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|err| spawn_error(&err))?;
    let result = to_output(&output);
    if result.rc == 0 {
        return Ok(result.stdout);
    }
    if result.stderr.contains("no crontab for") {
        return Ok(String::new());
    }
    Err(ResourceError::with_output(
        format!(
            "`crontab -l` failed with exit code {}: {}",
            result.rc,
            result.stderr.trim()
        ),
        result,
    ))
}

/// Installs `text` as the user's crontab; `crontab` checks it and replaces the old one
/// whole, or leaves it as it was.
fn write_crontab(user: Option<&str>, text: &str) -> Result<CommandOutput, ResourceError> {
    let mut child = Command::new(CRONTAB)
        .args(user_args(user))
        .arg("-")
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| spawn_error(&err))?;
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(text.as_bytes()));
    let output = child.wait_with_output().map_err(|err| spawn_error(&err))?;
    let result = to_output(&output);
    if let Some(Err(err)) = written {
        return Err(ResourceError::with_output(
            format!("cannot send the crontab to `crontab -`: {err}"),
            result,
        ));
    }
    if result.rc != 0 {
        return Err(ResourceError::with_output(
            format!(
                "`crontab -` refused the new crontab (exit code {}): {}",
                result.rc,
                result.stderr.trim()
            ),
            result,
        ));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn spec(name: &str) -> CronSpec {
        CronSpec {
            name: name.into(),
            user: None,
            command: Some("/usr/local/bin/backup".into()),
            minute: "0".into(),
            hour: "3".into(),
            day: "*".into(),
            month: "*".into(),
            weekday: "*".into(),
            special: None,
            env: BTreeMap::new(),
            state: Presence::Present.into(),
        }
    }

    #[test]
    fn entry_has_marker_env_and_schedule() {
        let mut backup = spec("backup");
        backup.env.insert("MAILTO".into(), "ops@example.com".into());
        assert_eq!(
            entry_lines(&backup).expect("valid"),
            vec![
                "# mop: backup".to_string(),
                "MAILTO=\"ops@example.com\"".to_string(),
                "0 3 * * * /usr/local/bin/backup".to_string(),
            ]
        );
        backup.special = Some("@daily".into());
        assert_eq!(
            entry_lines(&backup).expect("valid")[2],
            "@daily /usr/local/bin/backup"
        );
    }

    #[test]
    fn edit_adds_replaces_and_removes_only_its_entry() {
        let other = "# keep me\n*/5 * * * * /bin/true\n";
        let entry = entry_lines(&spec("backup")).expect("valid");
        let (added, change) = edit(other, "backup", Some(entry.clone())).expect("added");
        assert_eq!(change, "added job `backup`");
        assert_eq!(
            added,
            format!("{other}# mop: backup\n0 3 * * * /usr/local/bin/backup\n")
        );
        assert!(edit(&added, "backup", Some(entry)).is_none(), "idempotent");
        let hand_edited = added.replace("0 3 *", "0 4 *");
        let (fixed, change) = edit(
            &hand_edited,
            "backup",
            Some(entry_lines(&spec("backup")).expect("valid")),
        )
        .expect("changed");
        assert_eq!(change, "changed job `backup`");
        assert_eq!(fixed, added);
        let (removed, _) = edit(&added, "backup", None).expect("removed");
        assert_eq!(removed, other);
        assert!(edit(other, "backup", None).is_none());
    }

    #[test]
    fn invalid_specs_are_refused() {
        let mut bad = spec("x");
        bad.hour = "24".into();
        let err = validate(&bad).expect_err("hour");
        assert!(err.message.starts_with("invalid hour `24`"), "{err}");
        let mut bad = spec("x");
        bad.command = Some("a\nb".into());
        assert!(validate(&bad).is_err());
        let mut bad = spec("x");
        bad.special = Some("@sometimes".into());
        assert!(validate(&bad).is_err());
        let mut bad = spec("x");
        bad.user = Some("-r".into());
        assert!(validate(&bad).is_err());
    }
}
