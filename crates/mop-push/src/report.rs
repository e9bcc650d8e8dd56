//! Rendering a run for people (one line per change, a summary table) or for machines (JSON
//! lines with `host` and `role` on every event, then one summary object).
//!
//! Shared by `mop local` and `mop push`, so both print the same schema
//! (`docs/reference/events.md`).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indexmap::IndexMap;
use mop_protocol::{ResourceEvent, ResourceStarted, ResourceStatus, RoleSummary};
use serde::Serialize;

/// How to print.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReportStyle {
    /// JSON lines instead of text.
    pub json: bool,
    /// ANSI colours in text output.
    pub color: bool,
    /// Print diffs carried by events.
    pub diff: bool,
    /// `-v`: print unchanged and skipped resources too, and every command's output.
    pub verbose: bool,
}

/// Lines of a command's stdout (and of its stderr) printed under its resource with `-v`; the
/// rest is summed up in one line (`--json` carries everything).
pub const VERBOSE_OUTPUT_LINES: usize = 50;

/// The live view of a run on a terminal (the binary draws it with indicatif): the reporter
/// tells it what starts and ends. It only draws; the change lines and the summary still go
/// through the reporter's writers, which the binary makes print above the live lines. The
/// library never draws anything itself (it does not know whether there is a terminal).
pub trait Progress: Send {
    /// A role starts on `hosts` hosts, in `batches` batches (`serial`; 1 without).
    fn role_started(&mut self, role: &str, hosts: usize, batches: usize);
    /// Batch `batch` (1-based) of the current role starts.
    fn batch_started(&mut self, batch: usize);
    /// A host starts working on the current role.
    fn host_started(&mut self, host: &str);
    /// A host's agent is about to run `resource`.
    fn resource_started(&mut self, host: &str, resource: &str);
    /// A resource finished on a host (for the running counts).
    fn resource_finished(&mut self, host: &str, status: ResourceStatus);
    /// A host is done with the current role, however it ended.
    fn host_finished(&mut self, host: &str);
    /// The run is over: remove every live line before the summary.
    fn finish(&mut self);
}

/// A host's one final status in the summary (`status` in the JSON summary).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    /// Every role ran and nothing changed.
    #[default]
    Ok,
    /// Every role ran and something changed (or would have, in check mode).
    Changed,
    /// A resource failed (and ended its role), the role timed out, or the agent broke down.
    Failed,
    /// The login failed or the connection was lost; `error` carries ssh's reason.
    Unreachable,
    /// Ctrl-C stopped the run while this host was working.
    Interrupted,
    /// The role's `before` or `after` hook failed; `error` carries the hook's stderr.
    HookFailed,
    /// The host missed a role it was selected for (`role` names it, `not_attempted` says why).
    NotAttempted,
}

impl HostStatus {
    /// The status as printed in the text summary.
    pub fn label(self) -> &'static str {
        match self {
            HostStatus::Ok => "ok",
            HostStatus::Changed => "changed",
            HostStatus::Failed => "failed",
            HostStatus::Unreachable => "unreachable",
            HostStatus::Interrupted => "interrupted",
            HostStatus::HookFailed => "hook failed",
            HostStatus::NotAttempted => "not attempted",
        }
    }
}

/// How a host's run ended badly (the first such end wins: it is the cause, later ones follow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Failed,
    Unreachable,
    Interrupted,
    HookFailed,
}

/// What happened to one host over the whole run.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct HostTotals {
    pub ok: u32,
    pub changed: u32,
    pub failed: u32,
    pub skipped: u32,
    /// The login failed or the connection was lost (status `unreachable`).
    pub unreachable: bool,
    /// The host's first error, on one line (a `hint:` follows after `; `).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the host missed the role named in `role`, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_attempted: Option<String>,
    /// The role the status is about: where the host failed, or the first role it missed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Later roles a failed host was selected for but skipped, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missed_roles: Vec<String>,
    /// File bytes sent to the host.
    pub bytes_sent: u64,
    /// Agent binary bytes uploaded to the host (as sent, compressed when the host has `gzip`);
    /// 0 when the run used the agent cached on the host.
    pub agent_bytes: u64,
    #[serde(skip)]
    failure: Option<FailureKind>,
}

impl HostTotals {
    /// The host failed in some role (resource failure, unreachable, hook failure, interrupted).
    pub fn is_failed(&self) -> bool {
        self.failed > 0 || self.unreachable || self.error.is_some()
    }

    /// The host's one final status.
    pub fn status(&self) -> HostStatus {
        match self.failure {
            Some(FailureKind::Failed) => HostStatus::Failed,
            Some(FailureKind::Unreachable) => HostStatus::Unreachable,
            Some(FailureKind::Interrupted) => HostStatus::Interrupted,
            Some(FailureKind::HookFailed) => HostStatus::HookFailed,
            None if self.not_attempted.is_some() => HostStatus::NotAttempted,
            None if self.is_failed() => HostStatus::Failed,
            None if self.changed > 0 => HostStatus::Changed,
            None => HostStatus::Ok,
        }
    }

    /// Records how the host failed in `role`; only the first failure is kept, it is the cause.
    /// `message` may span lines (hints): the summary keeps it on one line.
    pub fn record_failure(&mut self, kind: FailureKind, role: &str, message: &str) {
        if self.failure.is_some() {
            return;
        }
        self.failure = Some(kind);
        self.unreachable = kind == FailureKind::Unreachable;
        self.role = Some(role.to_string());
        self.error = Some(one_line(message));
        // A host that was working when it failed is not "not attempted".
        self.not_attempted = None;
    }

    /// Records that the host missed `role` and why; only the first missed role is kept, and
    /// a failed host stays failed.
    pub fn record_not_attempted(&mut self, role: &str, reason: &str) {
        if self.is_failed() || self.not_attempted.is_some() {
            return;
        }
        self.not_attempted = Some(reason.to_string());
        self.role = Some(role.to_string());
    }

    fn add_role(&mut self, summary: &RoleSummary) {
        self.ok += summary.ok;
        self.changed += summary.changed;
        self.failed += summary.failed;
        self.skipped += summary.skipped;
    }
}

/// A message on one line, for the summary: its lines (a `hint:` included, it says how to fix
/// the problem) joined with `; `.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The end-of-run summary: per host, in first-seen order.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub hosts: IndexMap<String, HostTotals>,
    pub elapsed_ms: u64,
    pub check: bool,
}

/// The JSON form of [`RunSummary`]: every host's totals with its `status`.
#[derive(Serialize)]
struct JsonSummary<'a> {
    hosts: IndexMap<&'a str, JsonHost<'a>>,
    elapsed_ms: u64,
    check: bool,
}

#[derive(Serialize)]
struct JsonHost<'a> {
    status: HostStatus,
    #[serde(flatten)]
    totals: &'a HostTotals,
}

impl RunSummary {
    /// Hosts that failed or were unreachable.
    pub fn failed_hosts(&self) -> Vec<&str> {
        self.hosts
            .iter()
            .filter(|(_, totals)| totals.is_failed())
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Hosts that missed a role (a stopped rollout, Ctrl-C before they started).
    pub fn not_attempted_hosts(&self) -> Vec<&str> {
        self.hosts
            .iter()
            .filter(|(_, totals)| totals.not_attempted.is_some())
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Every host ran every role without failure.
    pub fn success(&self) -> bool {
        self.hosts
            .values()
            .all(|totals| !totals.is_failed() && totals.not_attempted.is_none())
    }

    pub fn host_mut(&mut self, host: &str) -> &mut HostTotals {
        self.hosts.entry(host.to_string()).or_default()
    }

    pub fn add_role(&mut self, host: &str, summary: &RoleSummary, bytes_sent: u64) {
        let totals = self.host_mut(host);
        totals.add_role(summary);
        totals.bytes_sent += bytes_sent;
    }

    fn json(&self) -> JsonSummary<'_> {
        JsonSummary {
            hosts: self
                .hosts
                .iter()
                .map(|(name, totals)| {
                    (
                        name.as_str(),
                        JsonHost {
                            status: totals.status(),
                            totals,
                        },
                    )
                })
                .collect(),
            elapsed_ms: self.elapsed_ms,
            check: self.check,
        }
    }
}

#[derive(Serialize)]
struct JsonEvent<'a> {
    event: &'static str,
    host: &'a str,
    role: &'a str,
    #[serde(flatten)]
    body: JsonBody<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum JsonBody<'a> {
    Resource(&'a ResourceEvent),
    Note {
        message: &'a str,
    },
    Role {
        summary: &'a RoleSummary,
        bytes_sent: u64,
    },
    Failure {
        status: HostStatus,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        stderr: Option<&'a str>,
    },
}

/// Where diagnostics go (warnings, lines an agent wrote on its stderr, "interrupted"): the
/// binary's stderr, or a buffer in tests. Cloneable and `'static`, so a task forwarding an
/// agent's stderr can hold one while the run's [`Reporter`] is borrowed elsewhere.
#[derive(Clone)]
pub struct Diagnostics {
    err: Arc<Mutex<Box<dyn Write + Send>>>,
    /// `-vv`: print the connection and agent steps ([`Diagnostics::step`]).
    steps: bool,
}

impl Diagnostics {
    pub fn new(err: Box<dyn Write + Send>) -> Diagnostics {
        Diagnostics {
            err: Arc::new(Mutex::new(err)),
            steps: false,
        }
    }

    /// With `-vv`: also print the connection and agent steps.
    pub fn with_steps(mut self, steps: bool) -> Diagnostics {
        self.steps = steps;
        self
    }

    /// Whether `-vv` steps are printed (callers skip building costly messages otherwise).
    pub fn shows_steps(&self) -> bool {
        self.steps
    }

    /// A connection or agent step for a host (`-vv` only), e.g. `[web1] ssh: ...`. Callers
    /// never pass secrets: passwords are named as "sent on stdin", never shown.
    pub fn step(&self, host: &str, topic: &str, message: &str) {
        if self.steps {
            self.line(&format!("[{host}] {topic}: {}", inert(message)));
        }
    }

    /// Diagnostics on stderr.
    pub fn stderr() -> Diagnostics {
        Diagnostics::new(Box::new(std::io::stderr()))
    }

    fn line(&self, text: &str) {
        // A poisoned lock only means another writer panicked mid-line; keep reporting.
        let mut err = self
            .err
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = writeln!(err, "{text}");
        let _ = err.flush();
    }

    /// `warning: ...`: something went wrong that does not change the run's outcome.
    pub fn warning(&self, message: &str) {
        self.line(&format!("warning: {}", inert_lines(message)));
    }

    /// A run-level notice such as `interrupted: ...`, printed as given.
    pub fn notice(&self, message: &str) {
        self.line(&inert_lines(message));
    }

    /// A line a host's agent wrote on its stderr, prefixed with the host.
    pub fn host_line(&self, host: &str, line: &str) {
        self.line(&format!("[{host}] {}", inert(line)));
    }
}

/// Prints a run as it happens.
pub struct Reporter {
    style: ReportStyle,
    out: Box<dyn Write + Send>,
    diagnostics: Diagnostics,
    progress: Option<Box<dyn Progress>>,
}

impl Reporter {
    pub fn new(
        style: ReportStyle,
        out: Box<dyn Write + Send>,
        diagnostics: Diagnostics,
    ) -> Reporter {
        Reporter {
            style,
            out,
            diagnostics,
            progress: None,
        }
    }

    /// Draws a live view of the run too (never with `--json`: ignored then).
    pub fn with_progress(mut self, progress: Box<dyn Progress>) -> Reporter {
        if !self.style.json {
            self.progress = Some(progress);
        }
        self
    }

    /// Batch `batch` of `batches` of the current role starts (live view only).
    pub fn batch_started(&mut self, batch: usize) {
        if let Some(progress) = &mut self.progress {
            progress.batch_started(batch);
        }
    }

    /// A host starts working on the current role (live view only).
    pub fn host_started(&mut self, host: &str) {
        if let Some(progress) = &mut self.progress {
            progress.host_started(host);
        }
    }

    /// A host is done with the current role (live view only).
    pub fn host_finished(&mut self, host: &str) {
        if let Some(progress) = &mut self.progress {
            progress.host_finished(host);
        }
    }

    /// A host's agent is about to run a resource (live view only).
    pub fn resource_started(&mut self, host: &str, started: &ResourceStarted) {
        if let Some(progress) = &mut self.progress {
            let kind = if started.handler { "handler " } else { "" };
            progress.resource_started(host, &format!("{kind}{}", inert(&started.resource)));
        }
    }

    /// What the agent says while a role runs, to [`Reporter::resource_started`] or
    /// [`Reporter::resource`].
    pub fn role_event(&mut self, host: &str, role: &str, event: &crate::session::RoleEvent) {
        match event {
            crate::session::RoleEvent::Started(started) => self.resource_started(host, started),
            crate::session::RoleEvent::Finished(finished) => self.resource(host, role, finished),
        }
    }

    /// A reporter on stdout, with diagnostics on stderr.
    pub fn stdout(style: ReportStyle) -> Reporter {
        Reporter::new(style, Box::new(std::io::stdout()), Diagnostics::stderr())
    }

    /// The handle for warnings and agent stderr lines.
    pub fn diagnostics(&self) -> Diagnostics {
        self.diagnostics.clone()
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.style.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn emit_json(&mut self, value: &impl Serialize) {
        // A closed stdout (e.g. `| head`) must not abort the run: the summary and exit code
        // still matter.
        if let Ok(line) = serde_json::to_string(value) {
            let _ = writeln!(self.out, "{line}");
            let _ = self.out.flush();
        }
    }

    /// A role starts on a set of hosts.
    pub fn role_started(&mut self, role: &str, hosts: &[String]) {
        self.role_started_in_batches(role, hosts, 1);
    }

    /// A role starts on a set of hosts split into `batches` batches (`serial`).
    pub fn role_started_in_batches(&mut self, role: &str, hosts: &[String], batches: usize) {
        if let Some(progress) = &mut self.progress {
            progress.role_started(role, hosts.len(), batches);
        }
        if self.style.json {
            return;
        }
        let header = self.paint("1", &format!("role {role}"));
        let _ = writeln!(
            self.out,
            "{header} ({} host{})",
            hosts.len(),
            plural(hosts.len())
        );
        let _ = self.out.flush();
    }

    /// A resource finished on a host.
    pub fn resource(&mut self, host: &str, role: &str, event: &ResourceEvent) {
        if let Some(progress) = &mut self.progress {
            progress.resource_finished(host, event.status);
        }
        if self.style.json {
            self.emit_json(&JsonEvent {
                event: "resource",
                host,
                role,
                body: JsonBody::Resource(event),
            });
            return;
        }
        // `echo` exists to tell the operator something: always shown.
        let show = match event.status {
            ResourceStatus::Changed | ResourceStatus::Failed => true,
            ResourceStatus::Ok => {
                self.style.verbose || (event.kind == "echo" && event.message.is_some())
            }
            ResourceStatus::Skipped => self.style.verbose,
        };
        if !show {
            return;
        }
        if event.kind == "echo" && event.status == ResourceStatus::Ok {
            if let Some(message) = &event.message {
                let label = self.paint("36", "echo");
                let message = inert_lines(message);
                let _ = writeln!(self.out, "  {host}  {label}  {message}");
                let _ = self.out.flush();
                return;
            }
        }
        let (label, code) = match (event.status, event.simulated) {
            (ResourceStatus::Changed, true) => ("would change", "33"),
            (ResourceStatus::Changed, false) => ("changed", "33"),
            (ResourceStatus::Failed, _) if event.ignored => ("failed (ignored)", "31"),
            (ResourceStatus::Failed, _) => ("failed", "31"),
            (ResourceStatus::Ok, _) => ("ok", "32"),
            (ResourceStatus::Skipped, _) => ("skipped", "36"),
        };
        let kind = if event.handler { "handler " } else { "" };
        let mut line = format!(
            "  {host}  {}  {kind}{}",
            self.paint(code, label),
            inert(&event.resource)
        );
        if !event.changes.is_empty() {
            line.push_str(&format!(" ({})", inert(&event.changes.join(", "))));
        }
        if let Some(message) = shown_message(event) {
            line.push_str(&format!(": {}", inert_lines(message)));
        }
        let _ = writeln!(self.out, "{line}");
        if self.style.verbose {
            if let Some(output) = &event.output {
                self.command_output(host, output);
            }
        } else if event.status == ResourceStatus::Failed {
            if let Some(output) = &event.output {
                for (stream, text) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
                    for text_line in text.lines().take(20) {
                        let text_line = inert(text_line);
                        let _ = writeln!(self.out, "      {stream}: {text_line}");
                    }
                }
                let _ = writeln!(self.out, "      rc: {}", output.rc);
            }
        }
        if self.style.diff {
            if let Some(diff) = &event.diff {
                for diff_line in diff.lines() {
                    let diff_line = &*inert(diff_line);
                    let painted = match diff_line.chars().next() {
                        Some('+') if !diff_line.starts_with("+++") => self.paint("32", diff_line),
                        Some('-') if !diff_line.starts_with("---") => self.paint("31", diff_line),
                        _ => diff_line.to_string(),
                    };
                    let _ = writeln!(self.out, "      {painted}");
                }
            }
        }
        let _ = self.out.flush();
    }

    /// `-v`: a command's stdout and stderr under its line, each line prefixed with the host
    /// (several hosts print at once), at most [`VERBOSE_OUTPUT_LINES`] of each stream.
    fn command_output(&mut self, host: &str, output: &mop_protocol::CommandOutput) {
        for (stream, text) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
            let total = text.lines().count();
            for text_line in text.lines().take(VERBOSE_OUTPUT_LINES) {
                let _ = writeln!(self.out, "      {host} {stream}: {}", inert(text_line));
            }
            if total > VERBOSE_OUTPUT_LINES {
                let _ = writeln!(
                    self.out,
                    "      {host} {stream}: ... {} more lines not shown (--json has them all)",
                    total - VERBOSE_OUTPUT_LINES
                );
            }
        }
        let _ = writeln!(self.out, "      {host} rc: {}", output.rc);
    }

    /// Something the controller did for a host (a hook ran, would run, failed).
    pub fn note(&mut self, host: &str, role: &str, message: &str) {
        if self.style.json {
            self.emit_json(&JsonEvent {
                event: "note",
                host,
                role,
                body: JsonBody::Note { message },
            });
            return;
        }
        let message = inert_lines(message);
        let _ = writeln!(self.out, "  {host}  {message}");
        let _ = self.out.flush();
    }

    /// A host's role ended badly: `status` says how (failed, unreachable, hook failed,
    /// interrupted), `stderr` is a hook's own output when there is one. Printed once, here;
    /// the summary repeats only the first line.
    pub fn host_failed(
        &mut self,
        host: &str,
        role: &str,
        status: HostStatus,
        message: &str,
        stderr: Option<&str>,
    ) {
        let stderr = stderr.filter(|text| !text.trim().is_empty());
        if self.style.json {
            self.emit_json(&JsonEvent {
                event: "host_failed",
                host,
                role,
                body: JsonBody::Failure {
                    status,
                    message,
                    stderr,
                },
            });
            return;
        }
        let label = match status {
            HostStatus::Unreachable => "UNREACHABLE",
            HostStatus::HookFailed => "HOOK FAILED",
            HostStatus::Interrupted => "INTERRUPTED",
            _ => "FAILED",
        };
        let label = self.paint("31", label);
        let message = inert_lines(message);
        let _ = writeln!(self.out, "  {host}  {label}  {message}");
        if let Some(stderr) = stderr {
            for text_line in stderr.lines().take(20) {
                let _ = writeln!(self.out, "      stderr: {}", inert(text_line));
            }
        }
        let _ = self.out.flush();
    }

    /// A host selected for `role` is not worked on in it (it failed in an earlier role, the
    /// rollout stopped): named in that role, once.
    pub fn not_attempted(&mut self, host: &str, role: &str, reason: &str) {
        if self.style.json {
            self.emit_json(&JsonEvent {
                event: "not_attempted",
                host,
                role,
                body: JsonBody::Note { message: reason },
            });
            return;
        }
        let label = self.paint("36", "not attempted");
        let reason = inert_lines(reason);
        let _ = writeln!(self.out, "  {host}  {label}  {reason}");
        let _ = self.out.flush();
    }

    /// A role finished on a host.
    pub fn role_done(&mut self, host: &str, role: &str, summary: &RoleSummary, bytes_sent: u64) {
        if self.style.json {
            self.emit_json(&JsonEvent {
                event: "role_done",
                host,
                role,
                body: JsonBody::Role {
                    summary,
                    bytes_sent,
                },
            });
        }
    }

    /// The end-of-run summary: a table with one status per host, then one line per host that
    /// did not end `ok` or `changed` (its status, the role, its first error); or, in JSON, one
    /// `{"summary": ...}` object.
    pub fn finish(&mut self, summary: &RunSummary) {
        if let Some(progress) = &mut self.progress {
            progress.finish();
        }
        if self.style.json {
            #[derive(Serialize)]
            struct Final<'a> {
                summary: JsonSummary<'a>,
            }
            self.emit_json(&Final {
                summary: summary.json(),
            });
            return;
        }
        let name_width = summary
            .hosts
            .keys()
            .map(String::len)
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(self.out);
        let _ = writeln!(
            self.out,
            "{:<name_width$}  {:<13}  {:>5}  {:>7}  {:>6}  {:>7}  {:>10}",
            "host", "status", "ok", "changed", "failed", "skipped", "sent"
        );
        for (host, totals) in &summary.hosts {
            let _ = writeln!(
                self.out,
                "{host:<name_width$}  {:<13}  {:>5}  {:>7}  {:>6}  {:>7}  {:>10}",
                totals.status().label(),
                totals.ok,
                totals.changed,
                totals.failed,
                totals.skipped,
                human_bytes(totals.bytes_sent)
            );
        }
        for (host, totals) in &summary.hosts {
            let status = totals.status();
            let why = match status {
                HostStatus::Ok | HostStatus::Changed => continue,
                HostStatus::NotAttempted => totals.not_attempted.as_deref(),
                _ => totals.error.as_deref(),
            };
            let mut line = format!("{host}: {}", status.label());
            if let Some(role) = &totals.role {
                line.push_str(&format!(" in role `{}`", inert(role)));
            }
            if let Some(why) = why {
                line.push_str(&format!(": {}", inert(&one_line(why))));
            }
            if !totals.missed_roles.is_empty() {
                line.push_str(&format!(
                    " (then not attempted: {})",
                    inert(&totals.missed_roles.join(", "))
                ));
            }
            let _ = writeln!(self.out, "{line}");
        }
        let mode = if summary.check {
            " (check mode: nothing was changed)"
        } else {
            ""
        };
        let _ = writeln!(
            self.out,
            "elapsed {}{mode}",
            format_duration(Duration::from_millis(summary.elapsed_ms))
        );
        let _ = self.out.flush();
    }
}

/// A resource's message as the change line shows it, so each message is printed once: not at
/// all when the resource's label already ends with it (`fail <msg>`), and without the last line
/// of stderr the agent appends to a failed command's message when the full stderr is printed
/// under the line anyway.
fn shown_message(event: &ResourceEvent) -> Option<&str> {
    let message = event.message.as_deref()?;
    if event.resource.ends_with(message) {
        return None;
    }
    if event.status == ResourceStatus::Failed {
        if let Some(output) = &event.output {
            let last = output
                .stderr
                .lines()
                .map(str::trim)
                .rfind(|line| !line.is_empty());
            if let Some(stripped) = last
                .and_then(|last| message.strip_suffix(last))
                .and_then(|rest| rest.strip_suffix(": "))
            {
                return Some(stripped);
            }
        }
    }
    Some(message)
}

/// A failed resource on one line for the summary: its label and, unless the label already
/// says it, its message (with the command's last stderr line, which the summary does not
/// print otherwise).
pub fn failure_line(event: &ResourceEvent) -> String {
    match &event.message {
        Some(message) if !event.resource.ends_with(message.as_str()) => {
            format!("{}: {}", event.resource, one_line(message))
        }
        _ => event.resource.clone(),
    }
}

/// Text that came from a host (messages, command output, diffs, resource names), made safe to
/// print on the operator's terminal: a hostile or broken host must not be able to send escape
/// sequences (set the window title, write the clipboard with OSC 52, move the cursor) or forge
/// lines of mop's own output with a line break. Control characters other than tab, including
/// C1 controls, are shown as `\u{..}` escapes; everything else is printed as it is.
pub fn inert(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c != '\t' && (c.is_control() || c == '\u{2028}' || c == '\u{2029}');
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            shown.push_str(&c.escape_unicode().to_string());
        } else {
            shown.push(c);
        }
    }
    std::borrow::Cow::Owned(shown)
}

/// [`inert`] for text that may span lines (messages, hints): line breaks stay, every other
/// control character is escaped.
pub fn inert_lines(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\n') {
        return inert(text);
    }
    std::borrow::Cow::Owned(text.split('\n').map(inert).collect::<Vec<_>>().join("\n"))
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

/// `0 B`, `1.5 KiB`, `12.0 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `0.41s`, `12.3s`, `2m05s`.
pub fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.2}s")
    } else {
        format!(
            "{}m{:02}s",
            duration.as_secs() / 60,
            duration.as_secs() % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_durations_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 * 1024 * 1024), "10.0 MiB");
        assert_eq!(format_duration(Duration::from_millis(410)), "0.41s");
        assert_eq!(format_duration(Duration::from_secs(125)), "2m05s");
    }

    #[test]
    fn host_text_cannot_drive_the_terminal_or_forge_lines() {
        assert_eq!(inert("plain\ttext é"), "plain\ttext é");
        assert_eq!(inert("\x1b]52;c;aGk=\x07"), "\\u{1b}]52;c;aGk=\\u{7}");
        assert_eq!(inert("a\n  web2  ok"), "a\\u{a}  web2  ok");
        assert_eq!(inert("\u{9b}2J\r"), "\\u{9b}2J\\u{d}");
    }

    #[test]
    fn a_reporter_prints_host_text_inert() {
        #[derive(Clone, Default)]
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("not poisoned").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Shared::default();
        let style = ReportStyle {
            diff: true,
            ..ReportStyle::default()
        };
        let mut reporter = Reporter::new(
            style,
            Box::new(out.clone()),
            Diagnostics::new(Box::new(out.clone())),
        );
        reporter.note("web1", "r", "hook said \x1b[2J");
        reporter.host_failed(
            "web1",
            "r",
            HostStatus::Failed,
            "boom\r\n  hint: \x1b]0;title\x07",
            None,
        );
        let event: ResourceEvent = serde_json::from_value(serde_json::json!({
            "index": 0, "type": "file", "resource": "file /x\n  web2  ok", "status": "failed",
            "message": "m\x1b[1m", "diff": "+a\x1b[2J\n-b", "duration_ms": 1
        }))
        .expect("a resource event");
        reporter.resource("web1", "r", &event);
        let printed =
            String::from_utf8(out.0.lock().expect("not poisoned").clone()).expect("utf-8");
        assert!(!printed.contains('\x1b'), "{printed:?}");
        assert!(!printed.contains('\r'), "{printed:?}");
        assert!(printed.contains("file /x\\u{a}  web2  ok"), "{printed:?}");
        assert_eq!(printed.lines().count(), 6, "{printed:?}");
    }

    #[test]
    fn each_message_is_shown_once() {
        let event = |value: serde_json::Value| -> ResourceEvent {
            serde_json::from_value(value).expect("a resource event")
        };
        // `fail`: the label is the message already.
        let fail = event(serde_json::json!({
            "index": 0, "type": "fail", "resource": "fail web1 is broken", "status": "failed",
            "message": "web1 is broken", "duration_ms": 1
        }));
        assert_eq!(shown_message(&fail), None);
        assert_eq!(failure_line(&fail), "fail web1 is broken");
        // A command: its last stderr line is printed under the line, not in the message; the
        // summary's one line keeps it.
        let command = event(serde_json::json!({
            "index": 0, "type": "shell", "resource": "shell false", "status": "failed",
            "message": "command exited with code 1: no disk", "duration_ms": 1,
            "output": {"rc": 1, "stdout": "", "stderr": "warming up\nno disk\n"}
        }));
        assert_eq!(shown_message(&command), Some("command exited with code 1"));
        assert_eq!(
            failure_line(&command),
            "shell false: command exited with code 1: no disk"
        );
        // Anything else is shown as it is.
        let file = event(serde_json::json!({
            "index": 0, "type": "file", "resource": "file /x", "status": "failed",
            "message": "permission denied", "duration_ms": 1
        }));
        assert_eq!(shown_message(&file), Some("permission denied"));
    }

    #[test]
    fn the_text_summary_gives_one_status_and_one_line_per_troubled_host() {
        #[derive(Clone, Default)]
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("not poisoned").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Shared::default();
        let mut reporter = Reporter::new(
            ReportStyle::default(),
            Box::new(out.clone()),
            Diagnostics::new(Box::new(out.clone())),
        );
        let mut summary = RunSummary::default();
        summary.host_mut("web1").changed = 2;
        let web2 = summary.host_mut("web2");
        web2.record_failure(
            FailureKind::HookFailed,
            "deploy",
            "before hook `x` exited with 3: no",
        );
        web2.missed_roles.push("later".into());
        summary.host_mut("web3").record_not_attempted(
            "deploy",
            "role `deploy` stopped: 1 host failed, max_fail allows 0",
        );
        reporter.finish(&summary);
        let printed =
            String::from_utf8(out.0.lock().expect("not poisoned").clone()).expect("utf-8");
        let lines: Vec<&str> = printed.lines().collect();
        assert_eq!(
            lines[1..],
            [
                "host  status            ok  changed  failed  skipped        sent",
                "web1  changed            0        2       0        0         0 B",
                "web2  hook failed        0        0       0        0         0 B",
                "web3  not attempted      0        0       0        0         0 B",
                "web2: hook failed in role `deploy`: before hook `x` exited with 3: no (then not attempted: later)",
                "web3: not attempted in role `deploy`: role `deploy` stopped: 1 host failed, max_fail allows 0",
                "elapsed 0.00s",
            ],
            "{printed}"
        );
    }

    /// Records what a reporter tells its live view.
    #[derive(Clone, Default)]
    struct Recorded(Arc<Mutex<Vec<String>>>);

    impl Progress for Recorded {
        fn role_started(&mut self, role: &str, hosts: usize, batches: usize) {
            self.push(format!("role {role} {hosts} {batches}"));
        }
        fn batch_started(&mut self, batch: usize) {
            self.push(format!("batch {batch}"));
        }
        fn host_started(&mut self, host: &str) {
            self.push(format!("host {host}"));
        }
        fn resource_started(&mut self, host: &str, resource: &str) {
            self.push(format!("on {host} {resource}"));
        }
        fn resource_finished(&mut self, host: &str, status: ResourceStatus) {
            self.push(format!("done {host} {status:?}"));
        }
        fn host_finished(&mut self, host: &str) {
            self.push(format!("end {host}"));
        }
        fn finish(&mut self) {
            self.push("finish".into());
        }
    }

    impl Recorded {
        fn push(&self, line: String) {
            self.0.lock().expect("not poisoned").push(line);
        }
    }

    #[test]
    fn the_live_view_hears_every_start_and_end_and_never_with_json() {
        let run = |json: bool| {
            let recorded = Recorded::default();
            let mut reporter = Reporter::new(
                ReportStyle {
                    json,
                    ..ReportStyle::default()
                },
                Box::new(std::io::sink()),
                Diagnostics::new(Box::new(std::io::sink())),
            )
            .with_progress(Box::new(recorded.clone()));
            reporter.role_started_in_batches("web", &["a".into(), "b".into()], 2);
            reporter.batch_started(1);
            reporter.host_started("a");
            let started: ResourceStarted = serde_json::from_value(serde_json::json!({
                "index": 0, "handler": true, "type": "shell", "resource": "restart\u{1b}[2J"
            }))
            .expect("a started event");
            reporter.role_event("a", "web", &crate::session::RoleEvent::Started(started));
            let event: ResourceEvent = serde_json::from_value(serde_json::json!({
                "index": 0, "type": "shell", "resource": "restart", "status": "changed",
                "duration_ms": 1
            }))
            .expect("a resource event");
            reporter.role_event("a", "web", &crate::session::RoleEvent::Finished(event));
            reporter.host_finished("a");
            reporter.finish(&RunSummary::default());
            let mut recorded_lines = recorded.0.lock().expect("not poisoned");
            std::mem::take(&mut *recorded_lines)
        };
        assert_eq!(
            run(false),
            [
                "role web 2 2",
                "batch 1",
                "host a",
                "on a handler restart\\u{1b}[2J",
                "done a Changed",
                "end a",
                "finish",
            ]
        );
        assert!(run(true).is_empty());
    }

    /// A writer whose bytes the test reads back after the reporter wrote them.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn verbose_prints_command_output_per_host_and_cuts_it() {
        let out = Shared::default();
        let mut reporter = Reporter::new(
            ReportStyle {
                verbose: true,
                ..ReportStyle::default()
            },
            Box::new(out.clone()),
            Diagnostics::new(Box::new(std::io::sink())),
        );
        let stdout: String = (1..=52).map(|n| format!("{n}\n")).collect();
        let event: ResourceEvent = serde_json::from_value(serde_json::json!({
            "index": 0, "type": "shell", "resource": "shell seq", "status": "ok",
            "duration_ms": 1, "output": {"rc": 0, "stdout": stdout, "stderr": "careful\u{1b}[2J\n"}
        }))
        .expect("a resource event");
        reporter.resource("web1", "r", &event);
        let printed =
            String::from_utf8(out.0.lock().expect("not poisoned").clone()).expect("utf-8");
        let lines: Vec<&str> = printed.lines().collect();
        assert_eq!(lines[0], "  web1  ok  shell seq");
        assert_eq!(lines[1], "      web1 stdout: 1");
        assert_eq!(lines[50], "      web1 stdout: 50");
        assert_eq!(
            lines[51..],
            [
                "      web1 stdout: ... 2 more lines not shown (--json has them all)",
                "      web1 stderr: careful\\u{1b}[2J",
                "      web1 rc: 0",
            ]
        );
    }

    #[test]
    fn steps_are_printed_only_with_vv() {
        let out = Shared::default();
        Diagnostics::new(Box::new(out.clone())).step("web1", "ssh", "quiet");
        Diagnostics::new(Box::new(out.clone()))
            .with_steps(true)
            .step("web1", "ssh", "ssh -F x\n");
        let printed =
            String::from_utf8(out.0.lock().expect("not poisoned").clone()).expect("utf-8");
        assert_eq!(printed, "[web1] ssh: ssh -F x\\u{a}\n");
    }

    #[test]
    fn failures_and_not_attempted_hosts_decide_success() {
        let mut summary = RunSummary::default();
        summary.host_mut("a").ok = 3;
        assert!(summary.success());
        summary
            .host_mut("b")
            .record_not_attempted("deploy", "stopped");
        assert!(!summary.success());
        assert_eq!(summary.not_attempted_hosts(), vec!["b"]);
        assert_eq!(summary.hosts["b"].status(), HostStatus::NotAttempted);
        summary.host_mut("c").record_failure(
            FailureKind::Unreachable,
            "deploy",
            "lost\n  hint: retry",
        );
        assert_eq!(summary.failed_hosts(), vec!["c"]);
        assert_eq!(summary.hosts["c"].status(), HostStatus::Unreachable);
        assert_eq!(
            summary.hosts["c"].error.as_deref(),
            Some("lost; hint: retry")
        );
        // The first failure is the cause; a failed host is never "not attempted" later.
        summary
            .host_mut("c")
            .record_failure(FailureKind::Failed, "later", "other");
        summary
            .host_mut("c")
            .record_not_attempted("later", "stopped");
        assert_eq!(summary.hosts["c"].status(), HostStatus::Unreachable);
        assert_eq!(summary.hosts["c"].role.as_deref(), Some("deploy"));
    }
}
