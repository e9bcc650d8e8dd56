//! The `service` resource: systemd, OpenRC and sysvinit.
//!
//! Each manager is asked for the service's run state and, only when `enabled` is set, its
//! boot-time state; the plan is a list of actions, each one or more commands. `restarted` and
//! `reloaded` always act (reloading a stopped service starts it instead), so they always
//! count as a change.

use mop_protocol::{ServiceSpec, ServiceState};

use super::{append_output, check_argument_name, run_change, run_query, SystemContext};
use crate::outcome::{Outcome, ResourceError, Runner};

/// sysvinit runlevels in which an enabled service has a start link.
const SYSV_RUNLEVEL_DIRS: &[&str] = &["/etc/rc2.d", "/etc/rc3.d", "/etc/rc4.d", "/etc/rc5.d"];

/// The manager names a policy may write, as the hint lists them.
fn managers() -> String {
    mop_protocol::SERVICE_MANAGERS.join(", ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Manager {
    Systemd,
    OpenRc,
    SysVinit,
}

impl Manager {
    fn resolve(
        spec_manager: Option<&str>,
        detected: Option<&str>,
    ) -> Result<Manager, ResourceError> {
        let parse = |name: &str| match name {
            "systemd" => Some(Manager::Systemd),
            "openrc" => Some(Manager::OpenRc),
            "sysvinit" | "sysv" => Some(Manager::SysVinit),
            _ => None,
        };
        match (spec_manager, detected) {
            (Some(name), _) => parse(name).ok_or_else(|| {
                ResourceError::new(format!(
                    "unknown service manager `{name}`\nhint: `manager` must be one of {}",
                    managers()
                ))
            }),
            (None, Some(name)) => parse(name).ok_or_else(|| {
                ResourceError::new(format!(
                    "the detected service manager `{name}` is not supported\nhint: set `manager` to one of {}",
                    managers()
                ))
            }),
            (None, None) => Err(ResourceError::new(format!(
                "no service manager was detected on this host\nhint: set `manager` to one of {}",
                    managers()
            ))),
        }
    }
}

impl Manager {
    fn name(self) -> &'static str {
        match self {
            Manager::Systemd => "systemd",
            Manager::OpenRc => "openrc",
            Manager::SysVinit => "sysvinit",
        }
    }
}

/// What `daemon_reload = true` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DaemonReload {
    /// Not asked for, or check mode (a reload changes no state the check reports on).
    Skip,
    /// `systemctl daemon-reload` before the service is probed, so a unit file written by an
    /// earlier resource is what systemd acts on.
    Run,
    /// Other managers read their scripts on every call: nothing to reload, said in the message.
    NotSystemd,
}

fn daemon_reload_decision(wanted: bool, manager: Manager, check: bool) -> DaemonReload {
    match (wanted, manager) {
        (false, _) => DaemonReload::Skip,
        (true, Manager::Systemd) if check => DaemonReload::Skip,
        (true, Manager::Systemd) => DaemonReload::Run,
        (true, Manager::OpenRc | Manager::SysVinit) => DaemonReload::NotSystemd,
    }
}

/// Whether the service runs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Running {
    Yes,
    No,
    /// OpenRC: marked started but its daemon died; `start` would be a no-op.
    Crashed,
}

/// Whether the service starts at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Boot {
    Enabled,
    Disabled,
    /// systemd: the unit is masked; it can neither start nor be enabled.
    Masked,
    /// systemd: `static`, `indirect`, `generated`...: enablement is not the unit's to change.
    Fixed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Status {
    running: Option<Running>,
    boot: Option<Boot>,
    /// OpenRC runlevels that list the service (removed one by one to disable it).
    runlevels: Vec<String>,
    /// sysvinit: the tool that manages boot links.
    sysv_links: SysvLinks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SysvLinks {
    UpdateRcD,
    Chkconfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Start,
    /// OpenRC: clear a crashed state and start again.
    Revive,
    Stop,
    Restart,
    Reload,
    Enable,
    Disable,
}

impl Action {
    fn change(self) -> &'static str {
        match self {
            Action::Start | Action::Revive => "started",
            Action::Stop => "stopped",
            Action::Restart => "restarted",
            Action::Reload => "reloaded",
            Action::Enable => "enabled",
            Action::Disable => "disabled",
        }
    }
}

pub(super) fn converge(
    spec: &ServiceSpec,
    ctx: &SystemContext,
    runner: &mut dyn Runner,
) -> Result<Outcome, ResourceError> {
    let name = spec.name.as_str();
    check_argument_name("service", name)?;
    if name.contains('/') {
        return Err(ResourceError::new(format!(
            "invalid service name `{name}`: it must not contain `/`"
        )));
    }
    let manager = Manager::resolve(
        spec.manager.as_deref(),
        ctx.facts.service_manager.as_deref(),
    )?;
    let mut reload_output = None;
    let mut reload_note = None;
    match daemon_reload_decision(spec.daemon_reload, manager, ctx.check) {
        DaemonReload::Skip => {}
        DaemonReload::Run => {
            let output = run_change(runner, &["systemctl", "daemon-reload"]).map_err(|err| {
                ResourceError {
                    message: format!("cannot reload systemd's units: {}", err.message),
                    ..err
                }
            })?;
            reload_output = Some(output);
        }
        DaemonReload::NotSystemd => {
            reload_note = Some(format!(
                "`daemon_reload` does nothing here: the service manager is {}, not systemd",
                manager.name()
            ));
        }
    }
    let status = probe(manager, name, spec, runner)?;
    let (actions, message) = plan(name, spec, &status)?;

    let mut outcome = Outcome::unchanged();
    outcome.message = match (message, reload_note) {
        (Some(message), Some(note)) => Some(format!("{message}; {note}")),
        (message, note) => message.or(note),
    };
    outcome.output = reload_output;
    if actions.is_empty() {
        return Ok(outcome);
    }
    outcome.changed = true;
    outcome.changes = actions
        .iter()
        .map(|action| action.change().to_string())
        .collect();
    if ctx.check {
        return Ok(outcome);
    }
    for action in actions {
        for argv in commands(manager, action, name, &status) {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let output = run_change(runner, &argv).map_err(|err| ResourceError {
                message: format!("cannot {} service `{name}`: {}", verb(action), err.message),
                ..err
            })?;
            append_output(&mut outcome.output, output);
        }
    }
    Ok(outcome)
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Start | Action::Revive => "start",
        Action::Stop => "stop",
        Action::Restart => "restart",
        Action::Reload => "reload",
        Action::Enable => "enable",
        Action::Disable => "disable",
    }
}

fn not_found(name: &str, output: mop_protocol::CommandOutput) -> ResourceError {
    ResourceError::with_output(
        format!("service `{name}` does not exist on this host\nhint: install the package that provides it first, or check the name"),
        output,
    )
}

/// Queries what the spec needs to know, and fails when the service does not exist.
fn probe(
    manager: Manager,
    name: &str,
    spec: &ServiceSpec,
    runner: &mut dyn Runner,
) -> Result<Status, ResourceError> {
    let mut status = Status {
        running: None,
        boot: None,
        runlevels: Vec::new(),
        sysv_links: SysvLinks::UpdateRcD,
    };
    let needs_running = matches!(
        spec.run_state(),
        Some(ServiceState::Started | ServiceState::Stopped | ServiceState::Reloaded)
    );
    match manager {
        Manager::Systemd => {
            let output = run_query(runner, &["systemctl", "show", "--property=LoadState", name])?;
            let load_state = output
                .stdout
                .lines()
                .find_map(|line| line.trim().strip_prefix("LoadState="))
                .map(str::to_string);
            match (output.rc, load_state.as_deref()) {
                (0, Some("not-found")) => return Err(not_found(name, output)),
                (0, Some("masked")) if matches!(spec.run_state(), Some(s) if s != ServiceState::Stopped) => {
                    return Err(ResourceError::with_output(
                        format!("service `{name}` is masked and cannot be started\nhint: run `systemctl unmask {name}` if it should run"),
                        output,
                    ))
                }
                (0, Some(_)) => {}
                _ => {
                    return Err(ResourceError::with_output(
                        format!("cannot query service `{name}` with systemctl (exit code {})\nhint: if this host does not run systemd, set `manager`", output.rc),
                        output,
                    ))
                }
            }
            if needs_running {
                let output = run_query(runner, &["systemctl", "is-active", name])?;
                status.running = Some(parse_systemd_active(&output.stdout));
            }
            if spec.enabled.is_some() {
                let output = run_query(runner, &["systemctl", "is-enabled", name])?;
                status.boot = Some(parse_systemd_enabled(&output.stdout).ok_or_else(|| {
                    ResourceError::with_output(
                        format!("cannot tell whether service `{name}` is enabled: `systemctl is-enabled` exited with code {}", output.rc),
                        output,
                    )
                })?);
            }
        }
        Manager::OpenRc => {
            let output = run_query(runner, &["rc-service", name, "status"])?;
            let text = format!("{}{}", output.stdout, output.stderr);
            if text.contains("does not exist") {
                return Err(not_found(name, output));
            }
            let running = parse_openrc_status(&text).ok_or_else(|| {
                ResourceError::with_output(
                    format!("cannot tell whether service `{name}` runs: `rc-service {name} status` printed no status"),
                    output.clone(),
                )
            })?;
            status.running = Some(running);
            if spec.enabled.is_some() {
                let output = run_query(runner, &["rc-update", "show"])?;
                if output.rc != 0 {
                    return Err(ResourceError::with_output(
                        format!(
                            "cannot list runlevels: `rc-update show` exited with code {}",
                            output.rc
                        ),
                        output,
                    ));
                }
                status.runlevels = parse_rc_update_show(name, &output.stdout);
                status.boot = Some(if status.runlevels.is_empty() {
                    Boot::Disabled
                } else {
                    Boot::Enabled
                });
            }
        }
        Manager::SysVinit => {
            let output = run_query(runner, &["service", name, "status"])?;
            if format!("{}{}", output.stdout, output.stderr).contains("unrecognized service") {
                return Err(not_found(name, output));
            }
            // LSB: 0 running, 1-3 not running, 4 unknown (treated as not running).
            status.running = Some(if output.rc == 0 {
                Running::Yes
            } else {
                Running::No
            });
            if spec.enabled.is_some() {
                let (links, enabled) = sysv_enabled(runner, name)?;
                status.sysv_links = links;
                status.boot = Some(if enabled {
                    Boot::Enabled
                } else {
                    Boot::Disabled
                });
            }
        }
    }
    Ok(status)
}

/// chkconfig where it exists (Red Hat family), else the `/etc/rcN.d` start links that
/// update-rc.d manages (Debian family).
fn sysv_enabled(runner: &mut dyn Runner, name: &str) -> Result<(SysvLinks, bool), ResourceError> {
    match runner.run(&["chkconfig", "--list", name]) {
        Ok(output) if output.rc == 0 => {
            return Ok((SysvLinks::Chkconfig, parse_chkconfig_list(name, &output.stdout)))
        }
        Ok(output) => {
            return Err(ResourceError::with_output(
                format!("cannot tell whether service `{name}` is enabled: `chkconfig --list {name}` exited with code {}", output.rc),
                output,
            ))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            return Err(ResourceError::new(format!("cannot run `chkconfig --list {name}`: {err}")))
        }
    }
    let mut argv = vec!["ls", "-1"];
    argv.extend_from_slice(SYSV_RUNLEVEL_DIRS);
    // `ls` exits 2 when one directory is missing and still lists the others.
    let output = run_query(runner, &argv)?;
    if output.rc != 0 && output.stdout.is_empty() {
        return Err(ResourceError::with_output(
            format!(
                "cannot list the runlevel directories: `{}` exited with code {}",
                argv.join(" "),
                output.rc
            ),
            output,
        ));
    }
    Ok((
        SysvLinks::UpdateRcD,
        has_sysv_start_link(name, &output.stdout),
    ))
}

/// The actions that bring `status` to what `spec` asks, plus a note for the operator.
fn plan(
    name: &str,
    spec: &ServiceSpec,
    status: &Status,
) -> Result<(Vec<Action>, Option<String>), ResourceError> {
    let mut actions = Vec::new();
    let mut message = None;
    match (spec.boot_enabled(), &status.boot) {
        (Some(true), Some(Boot::Disabled)) => actions.push(Action::Enable),
        (Some(false), Some(Boot::Enabled)) => actions.push(Action::Disable),
        (Some(true), Some(Boot::Masked)) => {
            return Err(ResourceError::new(format!(
                "service `{name}` is masked and cannot be enabled\nhint: run `systemctl unmask {name}` first"
            )))
        }
        (Some(false), Some(Boot::Fixed(state))) => {
            message = Some(format!(
                "service `{name}` is {state}: it cannot be disabled, only stopped or masked"
            ));
        }
        _ => {}
    }
    let running = status.running;
    match spec.run_state() {
        Some(ServiceState::Started) => match running {
            Some(Running::No) => actions.push(Action::Start),
            Some(Running::Crashed) => actions.push(Action::Revive),
            _ => {}
        },
        Some(ServiceState::Stopped) => {
            if matches!(running, Some(Running::Yes | Running::Crashed)) {
                actions.push(Action::Stop);
            }
        }
        Some(ServiceState::Restarted) => actions.push(Action::Restart),
        Some(ServiceState::Reloaded) => actions.push(match running {
            Some(Running::Yes) => Action::Reload,
            Some(Running::Crashed) => Action::Revive,
            _ => Action::Start,
        }),
        None => {}
    }
    Ok((actions, message))
}

fn commands(manager: Manager, action: Action, name: &str, status: &Status) -> Vec<Vec<String>> {
    let argv = |words: &[&str]| {
        words
            .iter()
            .map(|word| word.to_string())
            .collect::<Vec<_>>()
    };
    match manager {
        Manager::Systemd => {
            let word = match action {
                Action::Revive => "restart",
                other => verb(other),
            };
            vec![argv(&["systemctl", word, name])]
        }
        Manager::OpenRc => match action {
            Action::Enable => vec![argv(&["rc-update", "add", name, "default"])],
            Action::Disable => status
                .runlevels
                .iter()
                .map(|level| argv(&["rc-update", "del", name, level]))
                .collect(),
            Action::Revive => vec![argv(&["rc-service", name, "restart"])],
            other => vec![argv(&["rc-service", name, verb(other)])],
        },
        Manager::SysVinit => match (action, status.sysv_links) {
            (Action::Enable, SysvLinks::Chkconfig) => vec![argv(&["chkconfig", name, "on"])],
            (Action::Disable, SysvLinks::Chkconfig) => vec![argv(&["chkconfig", name, "off"])],
            // `enable` only flips existing links; `defaults` creates them when there are none.
            (Action::Enable, SysvLinks::UpdateRcD) => vec![
                argv(&["update-rc.d", name, "defaults"]),
                argv(&["update-rc.d", name, "enable"]),
            ],
            (Action::Disable, SysvLinks::UpdateRcD) => {
                vec![argv(&["update-rc.d", name, "disable"])]
            }
            (Action::Revive, _) => vec![argv(&["service", name, "restart"])],
            (other, _) => vec![argv(&["service", name, verb(other)])],
        },
    }
}

/// `systemctl is-active`: `active`, `reloading`, `activating` run; `inactive`, `failed`,
/// `deactivating` do not.
fn parse_systemd_active(stdout: &str) -> Running {
    match stdout.trim() {
        "active" | "reloading" | "activating" | "refreshing" => Running::Yes,
        _ => Running::No,
    }
}

/// `systemctl is-enabled`; `None` when it printed nothing useful.
fn parse_systemd_enabled(stdout: &str) -> Option<Boot> {
    let state = stdout
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())?;
    Some(match state {
        "enabled" | "enabled-runtime" | "linked" | "linked-runtime" => Boot::Enabled,
        "disabled" => Boot::Disabled,
        "masked" | "masked-runtime" => Boot::Masked,
        other => Boot::Fixed(other.to_string()),
    })
}

/// `rc-service NAME status`: ` * status: started` (or stopped, crashed, starting...).
fn parse_openrc_status(text: &str) -> Option<Running> {
    let word = text
        .lines()
        .find_map(|line| line.split("status:").nth(1))?
        .trim();
    Some(match word {
        "started" | "starting" | "inactive" => Running::Yes,
        "crashed" => Running::Crashed,
        _ => Running::No,
    })
}

/// `rc-update show`: `            sshd | boot default` per service in some runlevel.
fn parse_rc_update_show(name: &str, stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| line.split_once('|'))
        .find(|(service, _)| service.trim() == name)
        .map(|(_, levels)| levels.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// `chkconfig --list NAME`: `nginx  0:off 1:off 2:on 3:on 4:on 5:on 6:off`.
fn parse_chkconfig_list(name: &str, stdout: &str) -> bool {
    stdout
        .lines()
        .filter(|line| line.split_whitespace().next() == Some(name))
        .flat_map(str::split_whitespace)
        .any(|field| matches!(field, "2:on" | "3:on" | "4:on" | "5:on"))
}

/// A start link `SNNname` in any listed runlevel directory.
fn has_sysv_start_link(name: &str, listing: &str) -> bool {
    listing.lines().map(str::trim).any(|entry| {
        entry
            .strip_prefix('S')
            .filter(|rest| rest.len() > 2 && rest.as_bytes()[..2].iter().all(u8::is_ascii_digit))
            .is_some_and(|rest| &rest[2..] == name)
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use mop_protocol::Facts;

    use super::*;
    use crate::outcome::SystemRunner;
    use crate::system::recorded::RecordedRunner;

    fn spec(name: &str, state: Option<ServiceState>, enabled: Option<bool>) -> ServiceSpec {
        ServiceSpec {
            name: name.to_string(),
            state: state.map(Into::into),
            enabled: enabled.map(Into::into),
            manager: None,
            daemon_reload: false,
        }
    }

    fn run(
        spec: &ServiceSpec,
        manager: &str,
        check: bool,
        runner: &mut dyn Runner,
    ) -> Result<Outcome, ResourceError> {
        let facts = Facts {
            service_manager: Some(manager.to_string()),
            ..Facts::default()
        };
        converge(
            spec,
            &SystemContext {
                check,
                facts: &facts,
            },
            runner,
        )
    }

    /// The policy accepts exactly `mop_protocol::SERVICE_MANAGERS`: each must work here.
    #[test]
    fn every_manager_a_policy_may_name_is_known() {
        for name in mop_protocol::SERVICE_MANAGERS {
            assert!(Manager::resolve(Some(name), None).is_ok(), "`{name}`");
        }
    }

    #[test]
    fn daemon_reload_runs_only_on_systemd_in_apply_mode() {
        use DaemonReload::{NotSystemd, Run, Skip};
        assert_eq!(daemon_reload_decision(true, Manager::Systemd, false), Run);
        assert_eq!(daemon_reload_decision(true, Manager::Systemd, true), Skip);
        assert_eq!(daemon_reload_decision(false, Manager::Systemd, false), Skip);
        assert_eq!(
            daemon_reload_decision(true, Manager::OpenRc, false),
            NotSystemd
        );
        assert_eq!(
            daemon_reload_decision(true, Manager::SysVinit, true),
            NotSystemd
        );
        assert_eq!(
            daemon_reload_decision(false, Manager::SysVinit, false),
            Skip
        );
    }

    #[test]
    fn daemon_reload_comes_before_the_probe_and_is_not_a_change() {
        let mut nginx = spec("nginx", Some(ServiceState::Started), None);
        nginx.daemon_reload = true;
        let mut runner = RecordedRunner::new()
            .cmd("systemctl daemon-reload", 0, "")
            .cmd(
                "systemctl show --property=LoadState nginx",
                0,
                "LoadState=loaded\n",
            )
            .cmd("systemctl is-active nginx", 0, "active\n");
        let outcome = run(&nginx, "systemd", false, &mut runner).expect("converges");
        assert!(!outcome.changed, "{outcome:?}");
    }

    #[test]
    fn state_parsers() {
        assert_eq!(parse_systemd_active("active\n"), Running::Yes);
        assert_eq!(parse_systemd_active("failed\n"), Running::No);
        assert_eq!(parse_systemd_active("inactive\n"), Running::No);
        assert_eq!(parse_systemd_enabled("enabled\n"), Some(Boot::Enabled));
        assert_eq!(parse_systemd_enabled("disabled\n"), Some(Boot::Disabled));
        assert_eq!(parse_systemd_enabled("masked\n"), Some(Boot::Masked));
        assert_eq!(
            parse_systemd_enabled("static\n"),
            Some(Boot::Fixed("static".into()))
        );
        assert_eq!(parse_systemd_enabled(""), None);

        assert_eq!(
            parse_openrc_status(" * status: started\n"),
            Some(Running::Yes)
        );
        assert_eq!(
            parse_openrc_status(" * status: stopped\n"),
            Some(Running::No)
        );
        assert_eq!(
            parse_openrc_status(" * status: crashed\n"),
            Some(Running::Crashed)
        );
        assert_eq!(parse_openrc_status("usage"), None);

        let show = include_str!("fixtures/rc-update-show.txt");
        assert_eq!(parse_rc_update_show("sshd", show), vec!["default"]);
        assert_eq!(parse_rc_update_show("networking", show), vec!["boot"]);
        assert_eq!(parse_rc_update_show("udev", show), vec!["sysinit"]);
        assert!(parse_rc_update_show("nginx", show).is_empty());
        assert!(parse_rc_update_show("ssh", show).is_empty());

        assert!(parse_chkconfig_list(
            "httpd",
            "httpd  0:off 1:off 2:on 3:on 4:on 5:on 6:off\n"
        ));
        assert!(!parse_chkconfig_list(
            "httpd",
            "httpd  0:off 1:off 2:off 3:off 4:off 5:off 6:off\n"
        ));

        let listing = "/etc/rc2.d:\nK01nginx\nS01ssh\nS02sshd-extra\n\n/etc/rc3.d:\nS01ssh\n";
        assert!(has_sysv_start_link("ssh", listing));
        assert!(!has_sysv_start_link("nginx", listing));
        assert!(!has_sysv_start_link("sshd", listing));
    }

    #[test]
    fn service_manager_is_required() {
        let facts = Facts::default();
        let err = converge(
            &spec("nginx", Some(ServiceState::Started), None),
            &SystemContext {
                check: false,
                facts: &facts,
            },
            &mut RecordedRunner::new(),
        )
        .expect_err("no manager");
        assert!(
            err.message.starts_with("no service manager was detected"),
            "{}",
            err.message
        );
    }

    #[test]
    fn systemd_recorded_start_and_enable() {
        let nginx = spec("nginx", Some(ServiceState::Started), Some(true));
        let mut runner = RecordedRunner::new()
            .cmd(
                "systemctl show --property=LoadState nginx",
                0,
                "LoadState=loaded\n",
            )
            .cmd("systemctl is-active nginx", 3, "inactive\n")
            .cmd("systemctl is-enabled nginx", 1, "disabled\n")
            .cmd("systemctl enable nginx", 0, "")
            .cmd("systemctl start nginx", 0, "");
        let outcome = run(&nginx, "systemd", false, &mut runner).expect("converges");
        assert_eq!(outcome.changes, vec!["enabled", "started"]);

        let mut runner = RecordedRunner::new()
            .cmd(
                "systemctl show --property=LoadState nginx",
                0,
                "LoadState=loaded\n",
            )
            .cmd("systemctl is-active nginx", 0, "active\n")
            .cmd("systemctl is-enabled nginx", 0, "enabled\n");
        let outcome = run(&nginx, "systemd", false, &mut runner).expect("converged");
        assert!(!outcome.changed, "{outcome:?}");
    }

    #[test]
    fn systemd_recorded_check_mode_only_queries() {
        let mut runner = RecordedRunner::new()
            .cmd(
                "systemctl show --property=LoadState nginx",
                0,
                "LoadState=loaded\n",
            )
            .cmd("systemctl is-active nginx", 0, "active\n")
            .cmd("systemctl is-enabled nginx", 0, "enabled\n");
        let outcome = run(
            &spec("nginx", Some(ServiceState::Stopped), Some(false)),
            "systemd",
            true,
            &mut runner,
        )
        .expect("plans");
        assert!(outcome.changed);
        assert_eq!(outcome.changes, vec!["disabled", "stopped"]);
        assert_eq!(outcome.output, None);
    }

    #[test]
    fn systemd_recorded_restarted_and_reloaded_always_change() {
        let mut runner = RecordedRunner::new()
            .cmd(
                "systemctl show --property=LoadState nginx",
                0,
                "LoadState=loaded\n",
            )
            .cmd("systemctl restart nginx", 0, "");
        let outcome = run(
            &spec("nginx", Some(ServiceState::Restarted), None),
            "systemd",
            false,
            &mut runner,
        )
        .expect("restarts");
        assert_eq!(outcome.changes, vec!["restarted"]);

        let mut runner = RecordedRunner::new()
            .cmd(
                "systemctl show --property=LoadState nginx",
                0,
                "LoadState=loaded\n",
            )
            .cmd("systemctl is-active nginx", 0, "active\n")
            .cmd("systemctl reload nginx", 0, "");
        let outcome = run(
            &spec("nginx", Some(ServiceState::Reloaded), None),
            "systemd",
            false,
            &mut runner,
        )
        .expect("reloads");
        assert_eq!(outcome.changes, vec!["reloaded"]);

        // A stopped service cannot reload: it is started instead.
        let mut runner = RecordedRunner::new()
            .cmd(
                "systemctl show --property=LoadState nginx",
                0,
                "LoadState=loaded\n",
            )
            .cmd("systemctl is-active nginx", 3, "inactive\n");
        let outcome = run(
            &spec("nginx", Some(ServiceState::Reloaded), None),
            "systemd",
            true,
            &mut runner,
        )
        .expect("plans");
        assert_eq!(outcome.changes, vec!["started"]);
    }

    #[test]
    fn systemd_recorded_missing_masked_static_and_failures() {
        let mut runner = RecordedRunner::new().cmd(
            "systemctl show --property=LoadState nope",
            0,
            "LoadState=not-found\n",
        );
        let err = run(
            &spec("nope", Some(ServiceState::Started), None),
            "systemd",
            true,
            &mut runner,
        )
        .expect_err("missing");
        assert!(
            err.message
                .starts_with("service `nope` does not exist on this host"),
            "{}",
            err.message
        );

        let mut runner = RecordedRunner::new().cmd(
            "systemctl show --property=LoadState x",
            0,
            "LoadState=masked\n",
        );
        let err = run(
            &spec("x", Some(ServiceState::Started), None),
            "systemd",
            true,
            &mut runner,
        )
        .expect_err("masked");
        assert!(err.message.contains("is masked"), "{}", err.message);

        let mut runner = RecordedRunner::new()
            .cmd(
                "systemctl show --property=LoadState x",
                0,
                "LoadState=loaded\n",
            )
            .cmd("systemctl is-enabled x", 0, "static\n");
        let outcome =
            run(&spec("x", None, Some(false)), "systemd", false, &mut runner).expect("static");
        assert!(!outcome.changed);
        assert!(outcome.message.expect("note").contains("is static"));

        let mut runner = RecordedRunner::new().expect(
            &["systemctl", "show", "--property=LoadState", "x"],
            1,
            "",
            "System has not been booted with systemd as init system (PID 1). Can't operate.\n",
        );
        let err = run(
            &spec("x", Some(ServiceState::Started), None),
            "systemd",
            false,
            &mut runner,
        )
        .expect_err("no systemd");
        assert!(
            err.message
                .contains("hint: if this host does not run systemd"),
            "{}",
            err.message
        );

        let mut runner = RecordedRunner::new()
            .cmd(
                "systemctl show --property=LoadState x",
                0,
                "LoadState=loaded\n",
            )
            .cmd("systemctl is-active x", 3, "inactive\n")
            .expect(
                &["systemctl", "start", "x"],
                1,
                "",
                "Job for x.service failed because the control process exited with error code.\n",
            );
        let err = run(
            &spec("x", Some(ServiceState::Started), None),
            "systemd",
            false,
            &mut runner,
        )
        .expect_err("start fails");
        assert!(
            err.message.starts_with(
                "cannot start service `x`: `systemctl start x` failed with exit code 1: Job for"
            ),
            "{}",
            err.message
        );
        assert!(err.output.is_some());
    }

    #[test]
    fn openrc_recorded_enable_start_and_disable_every_runlevel() {
        let mut runner = RecordedRunner::new()
            .cmd("rc-service nginx status", 3, " * status: stopped\n")
            .cmd(
                "rc-update show",
                0,
                include_str!("fixtures/rc-update-show.txt"),
            )
            .cmd(
                "rc-update add nginx default",
                0,
                " * service nginx added to runlevel default\n",
            )
            .cmd(
                "rc-service nginx start",
                0,
                " * Starting nginx ... [ ok ]\n",
            );
        let outcome = run(
            &spec("nginx", Some(ServiceState::Started), Some(true)),
            "openrc",
            false,
            &mut runner,
        )
        .expect("converges");
        assert_eq!(outcome.changes, vec!["enabled", "started"]);

        let mut runner = RecordedRunner::new()
            .cmd("rc-service chronyd status", 0, " * status: started\n")
            .cmd(
                "rc-update show",
                0,
                include_str!("fixtures/rc-update-show.txt"),
            )
            .cmd("rc-update del chronyd boot", 0, "")
            .cmd("rc-update del chronyd default", 0, "");
        let outcome = run(
            &spec("chronyd", None, Some(false)),
            "openrc",
            false,
            &mut runner,
        )
        .expect("converges");
        assert_eq!(outcome.changes, vec!["disabled"]);
    }

    #[test]
    fn openrc_recorded_crashed_and_missing() {
        let mut runner = RecordedRunner::new()
            .cmd("rc-service nginx status", 32, " * status: crashed\n")
            .cmd("rc-service nginx restart", 0, "");
        let outcome = run(
            &spec("nginx", Some(ServiceState::Started), None),
            "openrc",
            false,
            &mut runner,
        )
        .expect("revives");
        assert_eq!(outcome.changes, vec!["started"]);

        let mut runner = RecordedRunner::new().expect(
            &["rc-service", "nope", "status"],
            1,
            "",
            " * rc-service: service `nope' does not exist\n",
        );
        let err = run(
            &spec("nope", Some(ServiceState::Started), None),
            "openrc",
            true,
            &mut runner,
        )
        .expect_err("missing");
        assert!(
            err.message.starts_with("service `nope` does not exist"),
            "{}",
            err.message
        );
    }

    #[test]
    fn sysvinit_recorded_chkconfig() {
        let mut runner = RecordedRunner::new()
            .cmd("service httpd status", 3, "httpd is stopped\n")
            .cmd(
                "chkconfig --list httpd",
                0,
                "httpd  0:off 1:off 2:off 3:off 4:off 5:off 6:off\n",
            )
            .cmd("chkconfig httpd on", 0, "")
            .cmd("service httpd start", 0, "Starting httpd: [  OK  ]\n");
        let outcome = run(
            &spec("httpd", Some(ServiceState::Started), Some(true)),
            "sysvinit",
            false,
            &mut runner,
        )
        .expect("converges");
        assert_eq!(outcome.changes, vec!["enabled", "started"]);
    }

    #[test]
    fn sysvinit_recorded_unrecognized_service() {
        let mut runner = RecordedRunner::new().expect(
            &["service", "nope", "status"],
            1,
            "",
            "nope: unrecognized service\n",
        );
        let err = run(
            &spec("nope", Some(ServiceState::Stopped), None),
            "sysvinit",
            true,
            &mut runner,
        )
        .expect_err("missing");
        assert!(
            err.message.starts_with("service `nope` does not exist"),
            "{}",
            err.message
        );
    }

    // ---- sysvinit for real ---------------------------------------------------------------
    //
    // This machine boots without systemd but has `service` and `update-rc.d`. The test
    // installs a throwaway LSB init script whose daemon is a `sleep` it tracks by pid file,
    // and drives it through the real tools.

    struct ThrowawayInitScript {
        name: String,
        script: PathBuf,
        pidfile: PathBuf,
    }

    impl ThrowawayInitScript {
        fn install() -> ThrowawayInitScript {
            let name = format!("moptst{}", std::process::id());
            let script = PathBuf::from(format!("/etc/init.d/{name}"));
            let pidfile = PathBuf::from(format!("/run/{name}.pid"));
            let text = format!(
                r#"#!/bin/sh
### BEGIN INIT INFO
# Provides:          {name}
# Required-Start:
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: throwaway service of mop's tests
### END INIT INFO
PIDFILE={pidfile}
case "$1" in
  start) start-stop-daemon --start --quiet --background --make-pidfile --pidfile $PIDFILE --exec /bin/sleep -- 3600 ;;
  stop) start-stop-daemon --stop --quiet --pidfile $PIDFILE --remove-pidfile --retry 5; exit 0 ;;
  restart) "$0" stop && "$0" start ;;
  reload) start-stop-daemon --status --pidfile $PIDFILE && echo reloaded >> {pidfile}.log ;;
  status) start-stop-daemon --status --pidfile $PIDFILE ;;
  *) echo "usage: $0 start|stop|restart|reload|status"; exit 2 ;;
esac
"#,
                pidfile = pidfile.display()
            );
            // Through a child process: `service` runs the script while other test threads fork.
            mop_testhosts::write_executable(&script, text.as_bytes(), 0o755)
                .expect("write init script");
            ThrowawayInitScript {
                name,
                script,
                pidfile,
            }
        }

        fn running(&self) -> bool {
            Command::new("start-stop-daemon")
                .args(["--status", "--pidfile"])
                .arg(&self.pidfile)
                .status()
                .expect("start-stop-daemon --status")
                .success()
        }

        fn start_links(&self) -> usize {
            SYSV_RUNLEVEL_DIRS
                .iter()
                .filter_map(|dir| std::fs::read_dir(dir).ok())
                .flat_map(|entries| entries.flatten())
                .filter(|entry| {
                    let file = entry.file_name().to_string_lossy().to_string();
                    file.starts_with('S') && file.ends_with(&self.name)
                })
                .count()
        }

        fn pid(&self) -> String {
            std::fs::read_to_string(&self.pidfile).unwrap_or_default()
        }
    }

    impl Drop for ThrowawayInitScript {
        fn drop(&mut self) {
            let _ = Command::new(&self.script).arg("stop").output();
            let _ = Command::new("update-rc.d")
                .args(["-f", &self.name, "remove"])
                .output();
            let _ = std::fs::remove_file(&self.script);
            let _ = std::fs::remove_file(&self.pidfile);
            let _ = std::fs::remove_file(format!("{}.log", self.pidfile.display()));
        }
    }

    #[test]
    fn sysvinit_real_start_enable_reload_restart_stop_disable() {
        let uid = Command::new("id").arg("-u").output().expect("run `id -u`");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "this test installs an init script and must run as root"
        );
        for tool in ["service", "update-rc.d", "start-stop-daemon"] {
            assert!(
                ["/usr/sbin", "/sbin"]
                    .iter()
                    .any(|dir| Path::new(dir).join(tool).exists()),
                "this test needs `{tool}` (Debian's sysvinit tools)"
            );
        }
        assert!(
            !Path::new("/run/systemd/system").exists(),
            "this test drives sysvinit scripts and needs a host not booted with systemd"
        );
        let service = ThrowawayInitScript::install();
        let name = service.name.as_str();
        let mut runner = SystemRunner;

        let started = spec(name, Some(ServiceState::Started), Some(true));
        let outcome = run(&started, "sysvinit", true, &mut runner).expect("check");
        assert_eq!(outcome.changes, vec!["enabled", "started"]);
        assert!(!service.running(), "check mode must not start");
        assert_eq!(service.start_links(), 0, "check mode must not enable");

        let outcome = run(&started, "sysvinit", false, &mut runner).expect("start");
        assert_eq!(outcome.changes, vec!["enabled", "started"]);
        assert!(service.running());
        assert_eq!(service.start_links(), 4);
        let outcome = run(&started, "sysvinit", false, &mut runner).expect("again");
        assert!(!outcome.changed, "{outcome:?}");

        let pid_before = service.pid();
        let outcome = run(
            &spec(name, Some(ServiceState::Reloaded), None),
            "sysvinit",
            false,
            &mut runner,
        )
        .expect("reload");
        assert_eq!(outcome.changes, vec!["reloaded"]);
        assert_eq!(service.pid(), pid_before, "reload keeps the process");
        let outcome = run(
            &spec(name, Some(ServiceState::Restarted), None),
            "sysvinit",
            false,
            &mut runner,
        )
        .expect("restart");
        assert_eq!(outcome.changes, vec!["restarted"]);
        assert!(service.running());
        assert_ne!(service.pid(), pid_before, "restart replaces the process");

        let stopped = spec(name, Some(ServiceState::Stopped), Some(false));
        let outcome = run(&stopped, "sysvinit", true, &mut runner).expect("check stop");
        assert_eq!(outcome.changes, vec!["disabled", "stopped"]);
        assert!(service.running(), "check mode must not stop");
        let outcome = run(&stopped, "sysvinit", false, &mut runner).expect("stop");
        assert_eq!(outcome.changes, vec!["disabled", "stopped"]);
        assert!(!service.running());
        assert_eq!(service.start_links(), 0);
        let outcome = run(&stopped, "sysvinit", false, &mut runner).expect("stopped again");
        assert!(!outcome.changed, "{outcome:?}");

        // Enabling again flips the existing K links back.
        let outcome = run(
            &spec(name, None, Some(true)),
            "sysvinit",
            false,
            &mut runner,
        )
        .expect("enable");
        assert_eq!(outcome.changes, vec!["enabled"]);
        assert_eq!(service.start_links(), 4);

        let err = run(
            &spec(&format!("{name}-nope"), Some(ServiceState::Started), None),
            "sysvinit",
            false,
            &mut runner,
        )
        .expect_err("missing service");
        assert!(
            err.message.contains("does not exist on this host"),
            "{}",
            err.message
        );
    }
}
