//! The role runner: runs a role plan's resources in order, then its notified handlers, and
//! streams one event per resource.
//!
//! Per resource: `when` (skipped when false) -> render every string field -> dispatch ->
//! `changed_when` / `failed_when` with `result` in scope -> `register` -> notify handlers if it
//! changed. A failed resource (not `ignore_errors`) ends the role: later resources get no
//! event, and handlers do not run, not even those notified before the failure (Ansible's
//! default), since the role did not reach the state they react to. Handlers that were not
//! notified get a `skipped` event with the message `not notified`; in check mode notified
//! handlers are reported as "would run" (changed, simulated) without running.

use std::collections::BTreeSet;
use std::time::Instant;

use minijinja::Value;
use mop_protocol::{
    CommandOutput, Facts, LoopSource, Mode, Resource, ResourceEvent, ResourceStarted,
    ResourceStatus, RolePlan, RoleSummary, DEFAULT_LOOP_VAR,
};

use crate::channel::SessionError;
use crate::outcome::{Outcome, ResourceError, Runner};
use crate::remote_log::RemoteLog;
use crate::resources::{self, FileFetcher, ResourceContext};
use crate::spec_render::render_spec;
use crate::template::{Engine, Scope};

/// What the role runner needs from the controller channel.
pub trait RoleIo: FileFetcher {
    /// Sends one event and flushes it.
    fn emit(&mut self, event: ResourceEvent) -> Result<(), SessionError>;
    /// Says which resource is about to run (the controller shows it while it runs), flushed.
    fn started(&mut self, started: ResourceStarted) -> Result<(), SessionError>;
    /// A fatal channel error met during a file transfer, if any.
    fn take_broken(&mut self) -> Option<SessionError>;
    /// This channel as the file fetcher resources use.
    fn fetcher(&mut self) -> &mut dyn FileFetcher;
}

/// State that lives for the whole agent session: facts, the template engine, and variables
/// registered or set by earlier resources (visible to later roles on the same host).
pub struct SessionState {
    pub facts: Facts,
    pub engine: Engine,
    pub scope: Scope,
    /// Check mode: what the session's earlier resources would have created (all roles).
    pub predicted: crate::resources::Predicted,
}

impl SessionState {
    pub fn new(facts: Facts) -> SessionState {
        let scope = Scope::new(&facts);
        SessionState {
            facts,
            engine: Engine::new(),
            scope,
            predicted: crate::resources::Predicted::default(),
        }
    }
}

/// Runs one role; `Err` only when the session must end (channel broken or protocol error).
pub fn run_role(
    plan: &RolePlan,
    state: &mut SessionState,
    io: &mut dyn RoleIo,
    runner: &mut dyn Runner,
) -> Result<RoleSummary, SessionError> {
    let started = Instant::now();
    state.scope.start_role(&plan.vars, &state.facts);
    let check = plan.mode == Mode::Check;
    // The run log is host state too: check mode leaves it alone.
    let mut log = (plan.remote_log && !check)
        .then(|| RemoteLog::open(std::path::Path::new(&state.facts.home)));
    let mut run = RoleRun {
        plan,
        state,
        io,
        runner,
        check,
        summary: RoleSummary::default(),
        log: log.as_mut(),
    };
    let mut notified: BTreeSet<&str> = BTreeSet::new();

    for (index, resource) in plan.resources.iter().enumerate() {
        run.start(index, false, resource)?;
        let events = run.resource_or_loop(index, false, resource)?;
        let (changed, failed) = run.emit_all(events)?;
        // However many items changed, a handler is notified once.
        if changed {
            notified.extend(resource.notify.iter().map(String::as_str));
        }
        if failed {
            run.summary.role_failed = true;
            break;
        }
    }
    if !run.summary.role_failed {
        for (index, handler) in plan.handlers.iter().enumerate() {
            let is_notified = handler
                .name
                .as_deref()
                .is_some_and(|name| notified.contains(name));
            let events = if !is_notified {
                vec![run.skipped(index, true, handler, "not notified".to_string())]
            } else if check {
                vec![run.would_run(index, handler)]
            } else {
                run.start(index, true, handler)?;
                run.resource_or_loop(index, true, handler)?
            };
            let (changed, failed) = run.emit_all(events)?;
            // A handler may notify handlers defined after it.
            if changed && is_notified {
                notified.extend(handler.notify.iter().map(String::as_str));
            }
            if failed {
                run.summary.role_failed = true;
                break;
            }
        }
    }
    let mut summary = run.summary;
    summary.duration_ms = elapsed_ms(started);
    if let Some(log) = &mut log {
        if let Ok(summary_json) = serde_json::to_vec(&summary) {
            let mut record = b"{\"summary\":".to_vec();
            record.extend_from_slice(&summary_json);
            record.push(b'}');
            log.append(&plan.role, &record);
        }
    }
    Ok(summary)
}

struct RoleRun<'r> {
    plan: &'r RolePlan,
    state: &'r mut SessionState,
    io: &'r mut dyn RoleIo,
    runner: &'r mut dyn Runner,
    check: bool,
    summary: RoleSummary,
    log: Option<&'r mut RemoteLog>,
}

impl RoleRun<'_> {
    /// Tells the controller what runs next, before `when` and rendering: those can take time
    /// too (a slow `loop` expression), and the host is on this resource meanwhile.
    fn start(
        &mut self,
        index: usize,
        handler: bool,
        resource: &Resource,
    ) -> Result<(), SessionError> {
        let started = ResourceStarted {
            index,
            handler,
            kind: resource.spec.type_name().to_string(),
            resource: self.display_name(resource),
        };
        self.io.started(started)
    }

    fn emit(&mut self, event: ResourceEvent) -> Result<(), SessionError> {
        match event.status {
            ResourceStatus::Ok => self.summary.ok += 1,
            ResourceStatus::Changed => self.summary.changed += 1,
            ResourceStatus::Failed => self.summary.failed += 1,
            ResourceStatus::Skipped => self.summary.skipped += 1,
        }
        self.summary.bytes_received += event.bytes_received;
        if let Some(log) = &mut self.log {
            if let Ok(record) = serde_json::to_vec(&event) {
                log.append(&self.plan.role, &record);
            }
        }
        self.io.emit(event)
    }

    /// Emits a resource's events (one per loop item); returns whether any changed and whether
    /// any failed without `ignore_errors`.
    fn emit_all(&mut self, events: Vec<ResourceEvent>) -> Result<(bool, bool), SessionError> {
        let mut changed = false;
        let mut failed = false;
        for event in events {
            changed |= event.status == ResourceStatus::Changed;
            failed |= event.status == ResourceStatus::Failed && !event.ignored;
            self.emit(event)?;
        }
        Ok((changed, failed))
    }

    /// Runs a resource once, or once per item of its `loop`: every item gets its own `when`,
    /// rendering and event (named with the item), and `register` ends up holding every item's
    /// result under `results`. A failed item does not stop the others (as Ansible); the role
    /// stops after the loop.
    fn resource_or_loop(
        &mut self,
        index: usize,
        handler: bool,
        resource: &Resource,
    ) -> Result<Vec<ResourceEvent>, SessionError> {
        let Some(source) = &resource.loop_items else {
            return Ok(vec![self.resource(index, handler, resource)?]);
        };
        let started = Instant::now();
        let items = match self.loop_items(source) {
            Ok(items) => items,
            Err(message) => {
                return Ok(vec![self.failed(index, handler, resource, started, message)])
            }
        };
        let loop_var = resource.loop_var.as_deref().unwrap_or(DEFAULT_LOOP_VAR);
        if items.is_empty() {
            let event = self.skipped(index, handler, resource, "`loop` has no items".into());
            if let Some(name) = &resource.register {
                let result = loop_result(Vec::new(), &[]);
                self.state.scope.set(name, Value::from_serialize(&result));
            }
            return Ok(vec![event]);
        }
        let mut events = Vec::with_capacity(items.len());
        let mut results = Vec::new();
        for (position, item) in items.iter().enumerate() {
            self.state.scope.set_loop_vars([
                (loop_var.to_string(), Value::from_serialize(item)),
                ("loop_index".to_string(), Value::from(position + 1)),
                ("loop_index0".to_string(), Value::from(position)),
            ]);
            let mut event = self.resource(index, handler, resource)?;
            let label = self.item_label(resource, item);
            event.resource = format!("{} [{loop_var}={label}]", event.resource);
            if let Some(name) = &resource.register {
                let mut result = self
                    .state
                    .scope
                    .get(name)
                    .and_then(|value| serde_json::to_value(value).ok())
                    .unwrap_or(serde_json::Value::Null);
                if let serde_json::Value::Object(object) = &mut result {
                    object.insert(loop_var.to_string(), item.clone());
                    object.insert("loop_index".into(), (position + 1).into());
                }
                results.push(result);
            }
            events.push(event);
        }
        self.state.scope.clear_loop_vars();
        if let Some(name) = &resource.register {
            let result = loop_result(results, &events);
            self.state.scope.set(name, Value::from_serialize(&result));
        }
        Ok(events)
    }

    /// The items of a loop: written in the policy, or an expression's list, or a map's
    /// `{key, value}` pairs in key order.
    fn loop_items(&mut self, source: &LoopSource) -> Result<Vec<serde_json::Value>, String> {
        let context = self.state.scope.context();
        let expression = match source {
            // Strings in written items are templates, as everywhere else in a resource.
            LoopSource::Items(items) => {
                return items
                    .iter()
                    .enumerate()
                    .map(|(position, item)| {
                        self.state.engine.render_native(
                            &format!("field `loop[{position}]`"),
                            item,
                            &context,
                        )
                    })
                    .collect()
            }
            LoopSource::Expression(expression) => expression,
        };
        let value = self
            .state
            .engine
            .eval("`loop` expression", expression, &context)?;
        let json =
            serde_json::to_value(&value).map_err(|err| format!("`loop` expression: {err}"))?;
        match json {
            serde_json::Value::Array(items) => Ok(items),
            serde_json::Value::Object(map) => Ok(map
                .into_iter()
                .map(|(key, value)| serde_json::json!({"key": key, "value": value}))
                .collect()),
            other => Err(format!(
                "`loop` expression `{}` gave {}, expected a list or a map\nhint: loop over a list (`[\"a\", \"b\"]`) or a map, for example `{{{{ users }}}}` or `{{{{ ports | list }}}}`",
                expression.trim(),
                json_type_name(&other)
            )),
        }
    }

    /// How an item is named in events: `label` rendered, else the item itself on one short
    /// line.
    fn item_label(&mut self, resource: &Resource, item: &serde_json::Value) -> String {
        let fallback = || match item {
            serde_json::Value::String(text) => one_line(text),
            other => one_line(&other.to_string()),
        };
        let Some(label) = &resource.label else {
            return fallback();
        };
        let context = self.state.scope.context();
        self.state
            .engine
            .render("field `label`", label, &context)
            .map(|text| one_line(&text))
            .unwrap_or_else(|_| fallback())
    }

    /// What output calls the resource: its `name` as written, or `type main-argument` with
    /// the argument rendered (`file /srv/app/web1.conf`, not `file {{ base }}/...`). A render
    /// failure (the resource's own error says why) leaves the argument as written.
    fn display_name(&mut self, resource: &Resource) -> String {
        let raw = resource.display_name();
        if resource.name.is_some() || !raw.contains("{{") {
            return raw;
        }
        let context = self.state.scope.context();
        self.state
            .engine
            .render("name", &raw, &context)
            .unwrap_or(raw)
    }

    fn event(
        &mut self,
        index: usize,
        handler: bool,
        resource: &Resource,
        status: ResourceStatus,
    ) -> ResourceEvent {
        ResourceEvent {
            index,
            handler,
            kind: resource.spec.type_name().to_string(),
            resource: self.display_name(resource),
            status,
            changes: Vec::new(),
            diff: None,
            message: None,
            output: None,
            ignored: false,
            simulated: false,
            bytes_received: 0,
            duration_ms: 0,
        }
    }

    fn skipped(
        &mut self,
        index: usize,
        handler: bool,
        resource: &Resource,
        message: String,
    ) -> ResourceEvent {
        let mut event = self.event(index, handler, resource, ResourceStatus::Skipped);
        event.message = Some(message.clone());
        if let Some(name) = &resource.register {
            let result = result_object(&ResultFields {
                skipped: true,
                msg: Some(&message),
                ..ResultFields::default()
            });
            self.state.scope.set(name, Value::from_serialize(&result));
        }
        event
    }

    fn would_run(&mut self, index: usize, handler: &Resource) -> ResourceEvent {
        let mut event = self.event(index, true, handler, ResourceStatus::Changed);
        event.message = Some("would run (notified)".to_string());
        event.simulated = true;
        event
    }

    fn failed(
        &mut self,
        index: usize,
        handler: bool,
        resource: &Resource,
        started: Instant,
        message: String,
    ) -> ResourceEvent {
        let mut event = self.event(index, handler, resource, ResourceStatus::Failed);
        event.message = Some(message.clone());
        event.ignored = resource.ignore_errors;
        event.duration_ms = elapsed_ms(started);
        if let Some(name) = &resource.register {
            let result = result_object(&ResultFields {
                failed: true,
                msg: Some(&message),
                ..ResultFields::default()
            });
            self.state.scope.set(name, Value::from_serialize(&result));
        }
        event
    }

    /// Runs one resource (or handler) through `when`, rendering, dispatch and the result
    /// expressions.
    fn resource(
        &mut self,
        index: usize,
        handler: bool,
        resource: &Resource,
    ) -> Result<ResourceEvent, SessionError> {
        let started = Instant::now();
        if let Some(unknown) = resource.notify.iter().find(|name| {
            !self
                .plan
                .handlers
                .iter()
                .any(|h| h.name.as_deref() == Some(name.as_str()))
        }) {
            let message = format!("notifies handler `{unknown}`, which this role does not define\nhint: check the handler's `name`");
            return Ok(self.failed(index, handler, resource, started, message));
        }
        if let Some(when) = &resource.when {
            let context = self.state.scope.context();
            match self
                .state
                .engine
                .is_true("`when` expression", when, &context)
            {
                Ok(true) => {}
                Ok(false) => {
                    return Ok(self.skipped(
                        index,
                        handler,
                        resource,
                        format!("`when` is false: {}", when.trim()),
                    ))
                }
                Err(message) => return Ok(self.failed(index, handler, resource, started, message)),
            }
        }
        let context = self.state.scope.context();
        let spec = match render_spec(&self.state.engine, &resource.spec, &context) {
            Ok(spec) => spec,
            Err(message) => return Ok(self.failed(index, handler, resource, started, message)),
        };
        let mut ctx = ResourceContext {
            check: self.check,
            diff: self.plan.diff,
            facts: &self.state.facts,
            engine: &self.state.engine,
            scope: &mut self.state.scope,
            templates: &self.plan.templates,
            files: &self.plan.files,
            trees: &self.plan.trees,
            fetcher: self.io.fetcher(),
            runner: &mut *self.runner,
            bytes_received: 0,
            predicted: &mut self.state.predicted,
        };
        let result = resources::dispatch(&spec, &mut ctx);
        let bytes_received = ctx.bytes_received;
        if let Some(broken) = self.io.take_broken() {
            return Err(broken);
        }
        let mut event = self.judge(index, handler, resource, result);
        event.bytes_received = bytes_received;
        event.duration_ms = elapsed_ms(started);
        Ok(event)
    }

    /// Turns a resource's result into its event, applying `changed_when`, `failed_when` and
    /// `register`.
    fn judge(
        &mut self,
        index: usize,
        handler: bool,
        resource: &Resource,
        result: Result<Outcome, ResourceError>,
    ) -> ResourceEvent {
        let (outcome, error) = match result {
            Ok(outcome) => (outcome, None),
            Err(err) => {
                // A failure that ran a command still ran it: it counts as changed if
                // `failed_when` forgives it.
                let outcome = Outcome {
                    changed: err.output.is_some(),
                    output: err.output.clone(),
                    ..Outcome::default()
                };
                (outcome, Some(err.message))
            }
        };
        let mut changed = outcome.changed;
        let mut failed = error.is_some();
        let mut message = error.clone().or_else(|| outcome.message.clone());
        let fields = |changed: bool, failed: bool, msg: Option<&str>| {
            result_object(&ResultFields {
                changed,
                failed,
                skipped: false,
                msg,
                output: outcome.output.as_ref(),
                extra: Some(&outcome.extra),
            })
        };
        // A simulated outcome (check mode, nothing ran) has no real result to judge.
        if !outcome.is_simulated() {
            if let Some(expression) = &resource.changed_when {
                let result = Value::from_serialize(fields(changed, failed, message.as_deref()));
                let context = self.state.scope.context_with_result(&result);
                match self
                    .state
                    .engine
                    .is_true("`changed_when` expression", expression, &context)
                {
                    Ok(value) => changed = value,
                    Err(err) => {
                        failed = true;
                        message = Some(err);
                    }
                }
            }
            if let Some(expression) = &resource.failed_when {
                let result = Value::from_serialize(fields(changed, failed, message.as_deref()));
                let context = self.state.scope.context_with_result(&result);
                match self
                    .state
                    .engine
                    .is_true("`failed_when` expression", expression, &context)
                {
                    Ok(true) if !failed => {
                        failed = true;
                        message = Some(format!("`failed_when` is true: {}", expression.trim()));
                    }
                    Ok(true) => {}
                    Ok(false) => {
                        failed = false;
                        // The error is forgiven; keep the resource's own message, if any.
                        if error.is_some() {
                            message = outcome.message.clone();
                        }
                    }
                    Err(err) => {
                        failed = true;
                        message = Some(err);
                    }
                }
            }
        }
        if let Some(name) = &resource.register {
            let result = fields(changed, failed, message.as_deref());
            self.state.scope.set(name, Value::from_serialize(&result));
        }
        let status = if failed {
            ResourceStatus::Failed
        } else if changed {
            ResourceStatus::Changed
        } else {
            ResourceStatus::Ok
        };
        let mut event = self.event(index, handler, resource, status);
        if status == ResourceStatus::Changed {
            event.changes = outcome.changes;
            event.diff = outcome.diff;
            event.simulated = self.check;
        }
        event.message = message;
        event.output = outcome.output;
        event.ignored = failed && resource.ignore_errors;
        event
    }
}

#[derive(Default)]
struct ResultFields<'a> {
    changed: bool,
    failed: bool,
    skipped: bool,
    msg: Option<&'a str>,
    output: Option<&'a CommandOutput>,
    extra: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// The registered result: `{changed, failed, skipped, rc, stdout, stderr, stdout_lines,
/// stderr_lines, msg}` plus the resource's extra fields. `rc` is null when no command ran.
fn result_object(fields: &ResultFields<'_>) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    object.insert("changed".into(), fields.changed.into());
    object.insert("failed".into(), fields.failed.into());
    object.insert("skipped".into(), fields.skipped.into());
    let (rc, stdout, stderr) = match fields.output {
        Some(output) => (
            serde_json::Value::from(output.rc),
            output.stdout.as_str(),
            output.stderr.as_str(),
        ),
        None => (serde_json::Value::Null, "", ""),
    };
    object.insert("rc".into(), rc);
    object.insert("stdout".into(), stdout.into());
    object.insert("stderr".into(), stderr.into());
    object.insert(
        "stdout_lines".into(),
        stdout.lines().collect::<Vec<_>>().into(),
    );
    object.insert(
        "stderr_lines".into(),
        stderr.lines().collect::<Vec<_>>().into(),
    );
    object.insert("msg".into(), fields.msg.unwrap_or_default().into());
    if let Some(extra) = fields.extra {
        for (key, value) in extra {
            object.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    serde_json::Value::Object(object)
}

/// A looped resource's registered result: Ansible's shape, `results` holding each item's
/// result (with the item), and the flags summed up.
fn loop_result(results: Vec<serde_json::Value>, events: &[ResourceEvent]) -> serde_json::Value {
    let any = |status: ResourceStatus| events.iter().any(|event| event.status == status);
    serde_json::json!({
        "changed": any(ResourceStatus::Changed),
        "failed": any(ResourceStatus::Failed),
        "skipped": events.iter().all(|event| event.status == ResourceStatus::Skipped),
        "msg": "",
        "results": results,
    })
}

fn json_type_name(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "none".into(),
        serde_json::Value::Bool(flag) => format!("the boolean `{flag}`"),
        serde_json::Value::Number(number) => format!("the number `{number}`"),
        serde_json::Value::String(text) => format!("the string `{}`", one_line(text)),
        serde_json::Value::Array(_) => "a list".into(),
        serde_json::Value::Object(_) => "a map".into(),
    }
}

/// Whitespace collapsed and cut at 48 characters, so an item names itself on one line.
fn one_line(text: &str) -> String {
    const LIMIT: usize = 48;
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= LIMIT {
        return collapsed;
    }
    let cut: String = collapsed.chars().take(LIMIT - 3).collect();
    format!("{}...", cut.trim_end())
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::io;

    use mop_protocol::RolePlan;

    use super::*;
    use crate::outcome::SystemRunner;
    use crate::resources::testing::MemoryFetcher;
    use crate::resources::{FetchError, Fetched};

    #[derive(Default)]
    struct Recorder {
        events: Vec<ResourceEvent>,
        /// Every message in order: `started <resource>` or `event <resource>`.
        order: Vec<String>,
        fetcher: MemoryFetcher,
    }

    impl FileFetcher for Recorder {
        fn fetch(
            &mut self,
            id: u32,
            sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
            received: &mut u64,
        ) -> Result<Fetched, FetchError> {
            self.fetcher.fetch(id, sink, received)
        }

        fn digest(&mut self, id: u32) -> Result<String, FetchError> {
            self.fetcher.digest(id)
        }
    }

    impl RoleIo for Recorder {
        fn emit(&mut self, event: ResourceEvent) -> Result<(), SessionError> {
            self.order.push(format!("event {}", event.resource));
            self.events.push(event);
            Ok(())
        }

        fn started(&mut self, started: ResourceStarted) -> Result<(), SessionError> {
            self.order.push(format!("started {}", started.resource));
            Ok(())
        }

        fn take_broken(&mut self) -> Option<SessionError> {
            None
        }

        fn fetcher(&mut self) -> &mut dyn FileFetcher {
            self
        }
    }

    fn plan(mode: &str, resources: serde_json::Value, handlers: serde_json::Value) -> RolePlan {
        serde_json::from_value(serde_json::json!({
            "role": "test",
            "mode": mode,
            "vars": {"greeting": "hello"},
            "resources": resources,
            "handlers": handlers,
        }))
        .expect("valid plan")
    }

    fn run(plan: &RolePlan) -> (RoleSummary, Vec<ResourceEvent>) {
        let mut state = SessionState::new(Facts {
            hostname: "web1".into(),
            ..Facts::default()
        });
        let mut recorder = Recorder::default();
        let summary =
            run_role(plan, &mut state, &mut recorder, &mut SystemRunner).expect("no channel error");
        (summary, recorder.events)
    }

    #[test]
    fn each_run_resource_is_announced_before_its_event() {
        let plan = plan(
            "apply",
            serde_json::json!([
                {"type": "shell", "cmd": "true", "notify": ["h1"]},
                {"type": "echo", "msg": "{{ item }}", "loop": ["a", "b"]},
            ]),
            serde_json::json!([
                {"type": "echo", "msg": "ran", "name": "h1"},
                {"type": "echo", "msg": "never", "name": "h2"},
            ]),
        );
        let mut state = SessionState::new(Facts::default());
        let mut recorder = Recorder::default();
        run_role(&plan, &mut state, &mut recorder, &mut SystemRunner).expect("no channel error");
        assert_eq!(
            recorder.order,
            [
                "started shell true",
                "event shell true",
                // Announced once, before the items exist: the name as written.
                "started echo {{ item }}",
                "event echo a [item=a]",
                "event echo b [item=b]",
                "started h1",
                "event h1",
                "event h2",
            ]
        );
    }

    fn statuses(events: &[ResourceEvent]) -> Vec<(bool, usize, ResourceStatus)> {
        events
            .iter()
            .map(|event| (event.handler, event.index, event.status))
            .collect()
    }

    #[test]
    fn register_when_and_result_expressions() {
        let plan = plan(
            "apply",
            serde_json::json!([
                {"type": "shell", "cmd": "echo {{ greeting }}; exit 3", "register": "probe", "failed_when": "result.rc not in [0, 3]", "changed_when": "false"},
                {"type": "echo", "msg": "rc={{ probe.rc }} out={{ probe.stdout_lines[0] }}", "when": "probe.rc == 3"},
                {"type": "echo", "msg": "never", "when": "probe.changed", "register": "skipped_one"},
                {"type": "assert", "that": ["skipped_one.skipped", "not probe.failed"]},
                {"type": "shell", "cmd": "true", "failed_when": "result.rc == 0"},
            ]),
            serde_json::json!([]),
        );
        let (summary, events) = run(&plan);
        assert_eq!(events[0].status, ResourceStatus::Ok, "{:?}", events[0]);
        assert_eq!(events[0].output.as_ref().map(|output| output.rc), Some(3));
        assert_eq!(events[1].message.as_deref(), Some("rc=3 out=hello"));
        assert_eq!(events[2].status, ResourceStatus::Skipped);
        assert_eq!(
            events[2].message.as_deref(),
            Some("`when` is false: probe.changed")
        );
        assert_eq!(events[3].status, ResourceStatus::Ok, "{:?}", events[3]);
        assert_eq!(events[4].status, ResourceStatus::Failed);
        assert_eq!(
            events[4].message.as_deref(),
            Some("`failed_when` is true: result.rc == 0")
        );
        assert_eq!(
            (summary.ok, summary.changed, summary.failed, summary.skipped),
            (3, 0, 1, 1)
        );
        assert!(summary.role_failed);
    }

    #[test]
    fn undefined_variable_fails_the_resource_and_stops_the_role() {
        let plan = plan(
            "apply",
            serde_json::json!([
                {"type": "echo", "msg": "first"},
                {"type": "echo", "msg": "{{ greeting }} {{ nobody }}"},
                {"type": "echo", "msg": "never reached"},
            ]),
            serde_json::json!([]),
        );
        let (summary, events) = run(&plan);
        assert_eq!(events.len(), 2, "no event after the failure");
        let message = events[1].message.as_deref().expect("message");
        assert!(
            message.starts_with("field `msg` line 1: undefined value: `nobody`\nhint:"),
            "{message}"
        );
        assert!(summary.role_failed);
    }

    #[test]
    fn ignore_errors_goes_on() {
        let plan = plan(
            "apply",
            serde_json::json!([
                {"type": "fail", "msg": "boom", "ignore_errors": true, "register": "f"},
                {"type": "echo", "msg": "failed={{ f.failed }} msg={{ f.msg }}"},
            ]),
            serde_json::json!([]),
        );
        let (summary, events) = run(&plan);
        assert!(events[0].ignored);
        assert_eq!(events[1].message.as_deref(), Some("failed=True msg=boom"));
        assert!(!summary.role_failed);
        assert_eq!(summary.failed, 1);
    }

    #[test]
    fn handlers_run_once_in_definition_order_when_notified() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let append = |word: &str| format!("echo {word} >> {}", log.display());
        let plan = plan(
            "apply",
            serde_json::json!([
                {"type": "shell", "cmd": append("r1"), "notify": ["second", "first"]},
                {"type": "shell", "cmd": append("r2"), "notify": "first"},
                {"type": "echo", "msg": "unchanged", "notify": "third"},
            ]),
            serde_json::json!([
                {"name": "first", "type": "shell", "cmd": append("h1"), "notify": "fourth"},
                {"name": "second", "type": "shell", "cmd": append("h2")},
                {"name": "third", "type": "shell", "cmd": append("h3")},
                {"name": "fourth", "type": "shell", "cmd": append("h4")},
            ]),
        );
        let (summary, events) = run(&plan);
        assert_eq!(
            std::fs::read_to_string(&log).expect("log"),
            "r1\nr2\nh1\nh2\nh4\n"
        );
        assert_eq!(
            statuses(&events),
            vec![
                (false, 0, ResourceStatus::Changed),
                (false, 1, ResourceStatus::Changed),
                (false, 2, ResourceStatus::Ok),
                (true, 0, ResourceStatus::Changed),
                (true, 1, ResourceStatus::Changed),
                (true, 2, ResourceStatus::Skipped),
                (true, 3, ResourceStatus::Changed),
            ]
        );
        assert_eq!(events[5].message.as_deref(), Some("not notified"));
        assert_eq!(summary.changed, 5);
    }

    #[test]
    fn handlers_do_not_run_after_a_failure_and_are_simulated_in_check_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("handler-ran");
        let handlers = serde_json::json!([{"name": "h", "type": "shell", "cmd": format!("touch {}", marker.display())}]);
        let failing = plan(
            "apply",
            serde_json::json!([{"type": "shell", "cmd": "true", "notify": "h"}, {"type": "fail", "msg": "stop"}]),
            handlers.clone(),
        );
        let (summary, events) = run(&failing);
        assert!(summary.role_failed);
        assert_eq!(
            events.len(),
            2,
            "handlers must not run or report after a failure"
        );
        assert!(!marker.exists());

        let checking = plan(
            "check",
            serde_json::json!([{"type": "shell", "cmd": "true", "notify": "h"}]),
            handlers,
        );
        let (summary, events) = run(&checking);
        assert!(!marker.exists(), "check mode ran a handler");
        assert!(
            events
                .iter()
                .all(|event| event.status == ResourceStatus::Changed && event.simulated),
            "{events:?}"
        );
        assert_eq!(events[1].message.as_deref(), Some("would run (notified)"));
        assert_eq!(summary.changed, 2);
    }

    #[test]
    fn unknown_handler_and_set_variables() {
        let plan = plan(
            "apply",
            serde_json::json!([
                {"type": "set", "vars": {"port": "{{ 8000 + 80 }}"}},
                {"type": "echo", "msg": "{{ port + 1 }}"},
                {"type": "echo", "msg": "x", "notify": "nope"},
            ]),
            serde_json::json!([]),
        );
        let (_, events) = run(&plan);
        assert_eq!(events[1].message.as_deref(), Some("8081"));
        assert_eq!(events[2].status, ResourceStatus::Failed);
        assert!(events[2]
            .message
            .as_deref()
            .expect("message")
            .contains("handler `nope`"));
    }

    #[test]
    fn loops_run_per_item_with_when_labels_and_register() {
        let plan = plan(
            "apply",
            serde_json::json!([
                {"type": "echo", "msg": "{{ loop_index }}:{{ item }}", "loop": ["a", "{{ 'b' }}", "c"], "when": "item != 'b'", "register": "said"},
                {"type": "echo", "msg": "{{ said.results | map(attribute='msg') | join(',') }} {{ said.results[1].skipped }} {{ said.results[2].item }}"},
                {"type": "echo", "msg": "{{ user.name }}={{ user.uid }}", "loop": [{"name": "ann", "uid": 1}, {"name": "bob", "uid": 2}], "loop_var": "user", "label": "{{ user.name }}"},
                {"type": "echo", "msg": "{{ item.key }}->{{ item.value }}", "loop": "{{ ports }}"},
                {"type": "echo", "msg": "item is {{ item is defined }}"},
            ]),
            serde_json::json!([]),
        );
        let mut plan = plan;
        plan.vars
            .insert("ports".into(), serde_json::json!({"web": 80, "db": 5432}));
        let (summary, events) = run(&plan);
        let shown: Vec<(&str, ResourceStatus, Option<&str>)> = events
            .iter()
            .map(|event| {
                (
                    event.resource.as_str(),
                    event.status,
                    event.message.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                ("echo 1:a [item=a]", ResourceStatus::Ok, Some("1:a")),
                (
                    "echo 2:b [item=b]",
                    ResourceStatus::Skipped,
                    Some("`when` is false: item != 'b'")
                ),
                ("echo 3:c [item=c]", ResourceStatus::Ok, Some("3:c")),
                (
                    "echo 1:a,`when` is false: item != 'b',3:c True c",
                    ResourceStatus::Ok,
                    Some("1:a,`when` is false: item != 'b',3:c True c")
                ),
                ("echo ann=1 [user=ann]", ResourceStatus::Ok, Some("ann=1")),
                ("echo bob=2 [user=bob]", ResourceStatus::Ok, Some("bob=2")),
                (
                    "echo db->5432 [item={\"key\":\"db\",\"value\":5432}]",
                    ResourceStatus::Ok,
                    Some("db->5432")
                ),
                (
                    "echo web->80 [item={\"key\":\"web\",\"value\":80}]",
                    ResourceStatus::Ok,
                    Some("web->80")
                ),
                (
                    "echo item is False",
                    ResourceStatus::Ok,
                    Some("item is False")
                ),
            ]
        );
        assert!(events.iter().take(3).all(|event| event.index == 0));
        assert_eq!((summary.ok, summary.skipped), (8, 1));
    }

    #[test]
    fn a_loop_notifies_once_and_a_failed_item_stops_the_role_after_the_loop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let plan = plan(
            "apply",
            serde_json::json!([
                {"type": "shell", "cmd": format!("echo {{{{ item }}}} >> {}", log.display()), "loop": ["x", "y", "z"], "notify": "h"},
            ]),
            serde_json::json!([
                {"name": "h", "type": "shell", "cmd": format!("echo h{{{{ item }}}} >> {}", log.display()), "loop": [1, 2]},
            ]),
        );
        let (summary, _) = run(&plan);
        // Three changed items notify once; the handler runs once per its own item.
        assert_eq!(
            std::fs::read_to_string(&log).expect("log"),
            "x\ny\nz\nh1\nh2\n"
        );
        assert_eq!(summary.changed, 5);

        let failing = plan_with(serde_json::json!([
            {"type": "fail", "msg": "no {{ item }}", "loop": [1, 2], "register": "r"},
            {"type": "echo", "msg": "never"},
        ]));
        let (summary, events) = run(&failing);
        assert_eq!(events.len(), 2, "both items ran, nothing after: {events:?}");
        assert_eq!(events[1].message.as_deref(), Some("no 2"));
        assert!(summary.role_failed);
    }

    fn plan_with(resources: serde_json::Value) -> RolePlan {
        plan("apply", resources, serde_json::json!([]))
    }

    #[test]
    fn a_loop_over_a_non_list_and_a_bad_rendered_choice_fail_naming_what_they_got() {
        let plan = plan_with(serde_json::json!([
            {"type": "echo", "msg": "x", "loop": "{{ greeting }}", "ignore_errors": true},
            {"type": "echo", "msg": "x", "loop": "{{ [] }}", "register": "empty"},
            {"type": "echo", "msg": "{{ empty.skipped }} {{ empty.results | length }}"},
            {"type": "file", "path": "/tmp/mop-never-{{ item }}", "state": "{{ item }}", "loop": ["gone"], "ignore_errors": true},
            {"type": "package", "packages": "x", "manager": "{{ greeting }}", "ignore_errors": true},
        ]));
        let (_, events) = run(&plan);
        assert_eq!(
            events[0].message.as_deref(),
            Some("`loop` expression `{{ greeting }}` gave the string `hello`, expected a list or a map\nhint: loop over a list (`[\"a\", \"b\"]`) or a map, for example `{{ users }}` or `{{ ports | list }}`")
        );
        assert_eq!(events[1].status, ResourceStatus::Skipped);
        assert_eq!(events[2].message.as_deref(), Some("True 0"));
        assert_eq!(events[3].resource, "file /tmp/mop-never-gone [item=gone]");
        assert_eq!(
            events[3].message.as_deref(),
            Some("field `state`: invalid value `gone`, expected one of `present`, `absent`")
        );
        assert_eq!(
            events[4].message.as_deref(),
            Some("field `manager`: invalid value `hello`, expected one of `apt`, `dnf`, `yum`, `apk`, `pacman`, `zypper`")
        );
    }
}
