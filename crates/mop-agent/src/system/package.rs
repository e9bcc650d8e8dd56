//! The `package` resource: apt, dnf, yum, apk, pacman and zypper.
//!
//! Installed versions are queried one package at a time with the low-level database tool
//! (`dpkg-query`, `rpm`, `apk info`, `pacman -Q`) because its answer is exact; available
//! upgrades come from the high-level tool. After a change every package is queried again, so
//! the outcome reports real versions and a tool that exits 0 without doing the work (old yum
//! on an unknown name, apt on a virtual package) is caught instead of reported as converged.

use std::collections::BTreeMap;

use mop_protocol::{CommandOutput, PackageSpec, PackageState};
use serde_json::Value;

use super::{append_output, check_argument_name, run_change, run_change_with, run_query};
use super::{display_command, SystemContext};
use crate::outcome::{Outcome, ResourceError, Runner};

/// Options that keep `apt-get` from asking anything, keep the host's changed config files, and
/// wait for a dpkg lock held by e.g. unattended-upgrades on a freshly booted host.
const APT_INSTALL: &[&str] = &[
    "env",
    "DEBIAN_FRONTEND=noninteractive",
    "apt-get",
    "install",
    "-y",
    "-q",
    "--no-install-recommends",
    "-o",
    "DPkg::Lock::Timeout=120",
    "-o",
    "Dpkg::Options::=--force-confdef",
    "-o",
    "Dpkg::Options::=--force-confold",
];

/// The manager names a policy may write, as the hint lists them.
fn managers() -> String {
    mop_protocol::PACKAGE_MANAGERS.join(", ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Manager {
    Apt,
    Dnf,
    Yum,
    Apk,
    Pacman,
    Zypper,
}

impl Manager {
    fn from_name(name: &str) -> Option<Manager> {
        Some(match name {
            "apt" | "apt-get" => Manager::Apt,
            "dnf" => Manager::Dnf,
            "yum" => Manager::Yum,
            "apk" => Manager::Apk,
            "pacman" => Manager::Pacman,
            "zypper" => Manager::Zypper,
            _ => return None,
        })
    }

    /// `spec.manager` wins over the detected fact.
    fn resolve(
        spec_manager: Option<&str>,
        detected: Option<&str>,
    ) -> Result<Manager, ResourceError> {
        match (spec_manager, detected) {
            (Some(name), _) => Manager::from_name(name).ok_or_else(|| {
                ResourceError::new(format!(
                    "unknown package manager `{name}`\nhint: `manager` must be one of {}",
                    managers()
                ))
            }),
            (None, Some(name)) => Manager::from_name(name).ok_or_else(|| {
                ResourceError::new(format!(
                    "the detected package manager `{name}` is not supported\nhint: set `manager` to one of {}",
                    managers()
                ))
            }),
            (None, None) => Err(ResourceError::new(format!(
                "no package manager was detected on this host\nhint: set `manager` to one of {}",
                    managers()
            ))),
        }
    }

    /// The name a policy writes for it (`apt` for `apt-get`).
    fn name(self) -> &'static str {
        match self {
            Manager::Apt => "apt",
            Manager::Dnf => "dnf",
            Manager::Yum => "yum",
            Manager::Apk => "apk",
            Manager::Pacman => "pacman",
            Manager::Zypper => "zypper",
        }
    }

    /// Fails, in both modes alike, when the manager is not on this host. Apply would otherwise
    /// fail at whichever of its programs runs first (and `rpm` may well be there without `dnf`,
    /// so check mode would report an install that apply cannot do). The detected manager is
    /// there by definition: facts found it the same way (`on_host` is
    /// [`Runner::has_program`]).
    fn require_on_host(
        self,
        detected: Option<&str>,
        on_host: impl Fn(&str) -> bool,
    ) -> Result<(), ResourceError> {
        if detected.and_then(Manager::from_name) == Some(self) || on_host(self.tool()) {
            return Ok(());
        }
        let hint = match detected {
            Some(name) => format!(
                "this host has `{name}`: set `manager = \"{name}\"` or leave `manager` unset"
            ),
            None => format!(
                "install `{}`, or set `manager` to a package manager this host has",
                self.tool()
            ),
        };
        Err(ResourceError::new(format!(
            "package manager `{}` is not installed on this host: no `{}` on PATH or in the standard bin directories\nhint: {hint}",
            self.name(),
            self.tool()
        )))
    }

    fn tool(self) -> &'static str {
        match self {
            Manager::Apt => "apt-get",
            Manager::Dnf => "dnf",
            Manager::Yum => "yum",
            Manager::Apk => "apk",
            Manager::Pacman => "pacman",
            Manager::Zypper => "zypper",
        }
    }

    fn update_cache_command(self) -> Vec<&'static str> {
        match self {
            Manager::Apt => vec!["apt-get", "update", "-q"],
            Manager::Dnf => vec!["dnf", "-y", "makecache"],
            Manager::Yum => vec!["yum", "-y", "makecache"],
            Manager::Apk => vec!["apk", "update"],
            Manager::Pacman => vec!["pacman", "-Sy", "--noconfirm"],
            Manager::Zypper => vec!["zypper", "-n", "refresh"],
        }
    }

    fn install_command(self) -> Vec<&'static str> {
        match self {
            Manager::Apt => APT_INSTALL.to_vec(),
            Manager::Dnf => vec!["dnf", "-y", "install"],
            Manager::Yum => vec!["yum", "-y", "install"],
            Manager::Apk => vec!["apk", "add"],
            Manager::Pacman => vec!["pacman", "-S", "--noconfirm", "--needed"],
            Manager::Zypper => vec!["zypper", "-n", "install"],
        }
    }

    fn upgrade_command(self) -> Vec<&'static str> {
        match self {
            // Installing an installed package upgrades it to the candidate.
            Manager::Apt | Manager::Pacman => self.install_command(),
            Manager::Dnf => vec!["dnf", "-y", "upgrade"],
            Manager::Yum => vec!["yum", "-y", "update"],
            Manager::Apk => vec!["apk", "add", "--upgrade"],
            Manager::Zypper => vec!["zypper", "-n", "update"],
        }
    }

    fn remove_command(self) -> Vec<&'static str> {
        match self {
            Manager::Apt => vec![
                "env",
                "DEBIAN_FRONTEND=noninteractive",
                "apt-get",
                "remove",
                "-y",
                "-q",
                "-o",
                "DPkg::Lock::Timeout=120",
            ],
            Manager::Dnf => vec!["dnf", "-y", "remove"],
            Manager::Yum => vec!["yum", "-y", "remove"],
            Manager::Apk => vec!["apk", "del"],
            Manager::Pacman => vec!["pacman", "-R", "--noconfirm"],
            Manager::Zypper => vec!["zypper", "-n", "remove"],
        }
    }

    /// zypper exits 102/103 after a successful transaction that wants a reboot or restart,
    /// and 106 when some repository could not be refreshed; the re-query after the change
    /// decides whether the packages really are there.
    fn change_succeeded(self, rc: i32) -> bool {
        match self {
            Manager::Zypper => matches!(rc, 0 | 102 | 103 | 106),
            _ => rc == 0,
        }
    }

    /// The installed version of one package, `None` when it is not installed.
    fn installed_version(
        self,
        runner: &mut dyn Runner,
        name: &str,
    ) -> Result<Option<String>, ResourceError> {
        let argv: Vec<&str> = match self {
            Manager::Apt => vec!["dpkg-query", "-W", "-f=${Status} ${Version}\\n", name],
            Manager::Dnf | Manager::Yum | Manager::Zypper => {
                vec!["rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}\\n", name]
            }
            Manager::Apk => vec!["apk", "-v", "info", "-e", name],
            Manager::Pacman => vec!["pacman", "-Q", name],
        };
        let output = run_query(runner, &argv)?;
        let parsed = match self {
            Manager::Apt => parse_dpkg_query(&output),
            Manager::Dnf | Manager::Yum | Manager::Zypper => parse_rpm_query(&output),
            Manager::Apk => parse_apk_info_exists(name, &output),
            Manager::Pacman => parse_pacman_query(&output),
        };
        parsed.map_err(|reason| {
            ResourceError::with_output(
                format!(
                    "cannot tell whether `{name}` is installed: `{}` {reason}",
                    display_command(&argv)
                ),
                output,
            )
        })
    }

    /// Available upgrades among installed packages: name -> newer version.
    fn upgrades(
        self,
        runner: &mut dyn Runner,
        installed: &[&str],
    ) -> Result<BTreeMap<String, String>, ResourceError> {
        let mut argv: Vec<&str> = match self {
            Manager::Apt => vec!["apt-cache", "policy"],
            Manager::Dnf => vec!["dnf", "-q", "check-update"],
            Manager::Yum => vec!["yum", "-q", "check-update"],
            Manager::Apk => vec!["apk", "version", "-l", "<"],
            Manager::Pacman => vec!["pacman", "-Qu"],
            // `list-updates` takes no package names; the table is filtered below.
            Manager::Zypper => vec!["zypper", "-n", "-q", "list-updates"],
        };
        if self != Manager::Zypper {
            argv.extend_from_slice(installed);
        }
        let output = run_query(runner, &argv)?;
        let parsed = match self {
            Manager::Apt => parse_apt_policy_upgrades(&output),
            Manager::Dnf | Manager::Yum => parse_check_update(&output),
            Manager::Apk => parse_apk_version(installed, &output),
            Manager::Pacman => parse_pacman_upgrades(&output),
            Manager::Zypper => parse_zypper_list_updates(&output),
        };
        let mut upgrades = parsed.map_err(|reason| {
            ResourceError::with_output(
                format!(
                    "cannot list available upgrades: `{}` {reason}",
                    display_command(&argv)
                ),
                output,
            )
        })?;
        upgrades.retain(|name, _| installed.contains(&name.as_str()));
        Ok(upgrades)
    }
}

/// What a run will do, package by package.
#[derive(Debug, Default)]
struct Plan {
    install: Vec<String>,
    /// name, installed version, available version
    upgrade: Vec<(String, String, String)>,
    remove: Vec<String>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.install.is_empty() && self.upgrade.is_empty() && self.remove.is_empty()
    }
}

pub(super) fn converge(
    spec: &PackageSpec,
    ctx: &SystemContext,
    runner: &mut dyn Runner,
) -> Result<Outcome, ResourceError> {
    let names = package_names(&spec.name)?;
    let manager = Manager::resolve(
        spec.manager.as_deref(),
        ctx.facts.package_manager.as_deref(),
    )?;
    manager.require_on_host(ctx.facts.package_manager.as_deref(), |tool| {
        runner.has_program(tool)
    })?;
    let mut outcome = Outcome::unchanged();

    if spec.update_cache && spec.state.resolved() != PackageState::Absent {
        if ctx.check {
            outcome.message = Some("the package index is not refreshed in check mode".to_string());
        } else {
            let argv = manager.update_cache_command();
            let output = run_change(runner, &argv).map_err(|err| ResourceError {
                message: format!("cannot refresh the package index: {}", err.message),
                ..err
            })?;
            append_output(&mut outcome.output, output);
        }
    }

    let mut before = BTreeMap::new();
    for name in &names {
        before.insert(name.clone(), manager.installed_version(runner, name)?);
    }
    let plan = make_plan(manager, spec.state.resolved(), &names, &before, runner)?;
    if plan.is_empty() {
        outcome
            .extra
            .insert("versions".to_string(), versions_json(&before));
        return Ok(outcome);
    }

    if ctx.check {
        let candidates = if manager == Manager::Apt && !plan.install.is_empty() {
            apt_install_candidates(runner, &plan.install, spec.update_cache)?
        } else {
            BTreeMap::new()
        };
        outcome.changed = true;
        for name in &plan.install {
            outcome.changes.push(match candidates.get(name) {
                Some(version) => format!("installed {name} {version}"),
                None => format!("installed {name}"),
            });
        }
        for (name, from, to) in &plan.upgrade {
            outcome
                .changes
                .push(format!("upgraded {name} {from} -> {to}"));
        }
        for name in &plan.remove {
            outcome.changes.push(format!("removed {name}"));
        }
        outcome
            .extra
            .insert("versions".to_string(), versions_json(&before));
        return Ok(outcome);
    }

    let upgrade_names: Vec<String> = plan.upgrade.iter().map(|(name, ..)| name.clone()).collect();
    let mut commands: Vec<Vec<&str>> = Vec::new();
    if !plan.install.is_empty() {
        commands.push(with_names(manager.install_command(), &plan.install));
    }
    if !upgrade_names.is_empty() {
        commands.push(with_names(manager.upgrade_command(), &upgrade_names));
    }
    if !plan.remove.is_empty() {
        commands.push(with_names(manager.remove_command(), &plan.remove));
    }
    for argv in &commands {
        let output = run_change_with(runner, argv, |rc| manager.change_succeeded(rc))?;
        append_output(&mut outcome.output, output);
    }

    let mut after = BTreeMap::new();
    for name in &names {
        after.insert(name.clone(), manager.installed_version(runner, name)?);
    }
    report_changes(manager, &plan, &after, &mut outcome)?;
    outcome
        .extra
        .insert("versions".to_string(), versions_json(&after));
    Ok(outcome)
}

fn with_names<'a>(mut argv: Vec<&'a str>, names: &'a [String]) -> Vec<&'a str> {
    argv.extend(names.iter().map(String::as_str));
    argv
}

/// Names in order, duplicates dropped, each checked.
fn package_names(raw: &[String]) -> Result<Vec<String>, ResourceError> {
    if raw.is_empty() {
        return Err(ResourceError::new("no package name given"));
    }
    let mut names: Vec<String> = Vec::new();
    for name in raw {
        check_argument_name("package", name)?;
        if name.contains(['=', '<', '>']) {
            return Err(ResourceError::new(format!(
                "invalid package name `{name}`: version constraints are not supported\nhint: name the package only and use `state = \"latest\"` or `\"present\"`"
            )));
        }
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    Ok(names)
}

fn make_plan(
    manager: Manager,
    state: PackageState,
    names: &[String],
    before: &BTreeMap<String, Option<String>>,
    runner: &mut dyn Runner,
) -> Result<Plan, ResourceError> {
    let installed_version = |name: &String| before.get(name).cloned().flatten();
    let mut plan = Plan::default();
    match state {
        PackageState::Present | PackageState::Latest => {
            plan.install = names
                .iter()
                .filter(|name| installed_version(name).is_none())
                .cloned()
                .collect();
        }
        PackageState::Absent => {
            plan.remove = names
                .iter()
                .filter(|name| installed_version(name).is_some())
                .cloned()
                .collect();
        }
    }
    if state == PackageState::Latest {
        let installed: Vec<&str> = names
            .iter()
            .filter(|name| installed_version(name).is_some())
            .map(String::as_str)
            .collect();
        if !installed.is_empty() {
            let upgrades = manager.upgrades(runner, &installed)?;
            for name in installed {
                if let (Some(to), Some(from)) =
                    (upgrades.get(name), installed_version(&name.to_string()))
                {
                    plan.upgrade.push((name.to_string(), from, to.clone()));
                }
            }
        }
    }
    Ok(plan)
}

/// Candidate versions for apt check mode, so `installed hello 2.10-3` can be reported and
/// an unknown name fails in check mode as it would when applied.
fn apt_install_candidates(
    runner: &mut dyn Runner,
    names: &[String],
    update_cache: bool,
) -> Result<BTreeMap<String, String>, ResourceError> {
    let mut argv = vec!["apt-cache", "policy"];
    argv.extend(names.iter().map(String::as_str));
    let output = run_query(runner, &argv)?;
    let policies = parse_apt_policy(&output.stdout);
    let mut candidates = BTreeMap::new();
    for name in names {
        match policies.get(name.as_str()).and_then(|policy| policy.candidate.clone()) {
            Some(candidate) => {
                candidates.insert(name.clone(), candidate);
            }
            // The index is refreshed before installing, so the name may appear then.
            None if update_cache => {}
            None => {
                return Err(ResourceError::with_output(
                    format!("package `{name}` has no installation candidate in the apt sources\nhint: check the name, or set `update_cache = true`"),
                    output,
                ))
            }
        }
    }
    Ok(candidates)
}

fn report_changes(
    manager: Manager,
    plan: &Plan,
    after: &BTreeMap<String, Option<String>>,
    outcome: &mut Outcome,
) -> Result<(), ResourceError> {
    let version_after = |name: &str| after.get(name).cloned().flatten();
    let tool = manager.tool();
    for name in &plan.install {
        match version_after(name) {
            Some(version) => outcome.changes.push(format!("installed {name} {version}")),
            None => {
                return Err(ResourceError {
                    message: format!(
                        "`{name}` is still not installed after `{tool}` reported success\nhint: `{name}` may be a virtual package or not exist; name the real package"
                    ),
                    output: outcome.output.clone(),
                })
            }
        }
    }
    let mut not_upgraded = Vec::new();
    for (name, from, available) in &plan.upgrade {
        match version_after(name) {
            Some(to) if &to != from => outcome
                .changes
                .push(format!("upgraded {name} {from} -> {to}")),
            _ => not_upgraded.push(format!("{name} stays at {from} ({available} is available)")),
        }
    }
    if !not_upgraded.is_empty() {
        outcome.message = Some(format!(
            "`{tool}` did not upgrade: {}",
            not_upgraded.join(", ")
        ));
    }
    for name in &plan.remove {
        if let Some(version) = version_after(name) {
            return Err(ResourceError {
                message: format!(
                    "`{name}` {version} is still installed after `{tool}` reported success"
                ),
                output: outcome.output.clone(),
            });
        }
        outcome.changes.push(format!("removed {name}"));
    }
    outcome.changed = !outcome.changes.is_empty();
    Ok(())
}

fn versions_json(versions: &BTreeMap<String, Option<String>>) -> Value {
    Value::Object(
        versions
            .iter()
            .map(|(name, version)| {
                (
                    name.clone(),
                    version.clone().map(Value::String).unwrap_or(Value::Null),
                )
            })
            .collect(),
    )
}

/// `dpkg-query -W -f='${Status} ${Version}\n' NAME`: `install ok installed 1.2-3`. A removed
/// package whose config files remain reads `deinstall ok config-files 1.2-3`.
fn parse_dpkg_query(output: &CommandOutput) -> Result<Option<String>, String> {
    if output.rc != 0 {
        if output.stderr.contains("no packages found") {
            return Ok(None);
        }
        return Err(format!("failed with exit code {}", output.rc));
    }
    for line in output.stdout.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [_want, _flag, status, version, ..] = fields[..] {
            // triggers-* are installed packages whose triggers have not run yet.
            if matches!(
                status,
                "installed" | "triggers-pending" | "triggers-awaiting"
            ) {
                return Ok(Some(version.to_string()));
            }
        }
    }
    Ok(None)
}

/// `rpm -q --qf '%{VERSION}-%{RELEASE}\n' NAME`; not installed: `package x is not installed`.
fn parse_rpm_query(output: &CommandOutput) -> Result<Option<String>, String> {
    match output.rc {
        0 => match output
            .stdout
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
        {
            Some(version) => Ok(Some(version.to_string())),
            None => Err("printed no version".to_string()),
        },
        _ if output.stdout.contains("is not installed") => Ok(None),
        rc => Err(format!("failed with exit code {rc}")),
    }
}

/// `apk -v info -e NAME` prints `name-version` and exits 0 when installed, prints nothing
/// and exits 1 when not.
fn parse_apk_info_exists(name: &str, output: &CommandOutput) -> Result<Option<String>, String> {
    if output.rc != 0 {
        if output.stdout.trim().is_empty() && !output.stderr.contains("ERROR") {
            return Ok(None);
        }
        return Err(format!("failed with exit code {}", output.rc));
    }
    let line = output
        .stdout
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("");
    Ok(Some(split_apk_package(name, line).unwrap_or_default()))
}

/// `nginx-1.24.0-r7` -> `1.24.0-r7`. The printed name can be another package that provides
/// `name`; then the version starts at the first `-` followed by a digit.
fn split_apk_package(name: &str, package: &str) -> Option<String> {
    if let Some(version) = package
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('-'))
    {
        return Some(version.to_string());
    }
    let bytes = package.as_bytes();
    (1..bytes.len())
        .find(|&index| bytes[index - 1] == b'-' && bytes[index].is_ascii_digit())
        .map(|index| package[index..].to_string())
}

/// `pacman -Q NAME`: `nginx 1.26.1-1`; not installed: `error: package 'x' was not found`.
fn parse_pacman_query(output: &CommandOutput) -> Result<Option<String>, String> {
    if output.rc != 0 {
        if output.stderr.contains("was not found") {
            return Ok(None);
        }
        return Err(format!("failed with exit code {}", output.rc));
    }
    match output.stdout.split_whitespace().nth(1) {
        Some(version) => Ok(Some(version.to_string())),
        None => Err("printed no version".to_string()),
    }
}

#[derive(Debug, Default, PartialEq)]
struct AptPolicy {
    installed: Option<String>,
    candidate: Option<String>,
}

/// `apt-cache policy A B`: a `name:` header per known package followed by indented
/// `Installed:` and `Candidate:` lines, where `(none)` means none. Unknown names print nothing.
fn parse_apt_policy(text: &str) -> BTreeMap<String, AptPolicy> {
    let mut policies: BTreeMap<String, AptPolicy> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(' ') {
            current = line.trim_end().strip_suffix(':').map(str::to_string);
            if let Some(name) = &current {
                policies.entry(name.clone()).or_default();
            }
            continue;
        }
        let Some(name) = &current else { continue };
        let line = line.trim();
        let version = |value: &str| match value.trim() {
            "(none)" | "" => None,
            version => Some(version.to_string()),
        };
        let policy = policies.entry(name.clone()).or_default();
        if let Some(value) = line.strip_prefix("Installed:") {
            policy.installed = version(value);
        } else if let Some(value) = line.strip_prefix("Candidate:") {
            policy.candidate = version(value);
        }
    }
    policies
}

fn parse_apt_policy_upgrades(output: &CommandOutput) -> Result<BTreeMap<String, String>, String> {
    if output.rc != 0 {
        return Err(format!("failed with exit code {}", output.rc));
    }
    Ok(parse_apt_policy(&output.stdout)
        .into_iter()
        .filter_map(
            |(name, policy)| match (policy.installed, policy.candidate) {
                (Some(installed), Some(candidate)) if installed != candidate => {
                    Some((name, candidate))
                }
                _ => None,
            },
        )
        .collect())
}

/// `dnf/yum -q check-update NAMES`: exit 100 and `name.arch  [epoch:]version-release  repo`
/// lines when upgrades exist, exit 0 when none. A long name wraps the rest onto the next
/// line. The `Obsoleting Packages` section that may follow is not a list of upgrades.
fn parse_check_update(output: &CommandOutput) -> Result<BTreeMap<String, String>, String> {
    match output.rc {
        0 => return Ok(BTreeMap::new()),
        100 => {}
        rc => return Err(format!("failed with exit code {rc}")),
    }
    let mut upgrades = BTreeMap::new();
    let mut wrapped_name: Option<&str> = None;
    for line in output.stdout.lines() {
        if line.starts_with("Obsoleting") {
            break;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (name_arch, version) = match (wrapped_name.take(), &fields[..]) {
            (None, [name_arch, version, _repo]) => (*name_arch, *version),
            (Some(name_arch), [version, _repo]) => (name_arch, *version),
            (None, [name_arch]) if name_arch.contains('.') => {
                wrapped_name = Some(name_arch);
                continue;
            }
            _ => continue,
        };
        let Some((name, _arch)) = name_arch.rsplit_once('.') else {
            continue;
        };
        upgrades.insert(name.to_string(), strip_epoch(version).to_string());
    }
    Ok(upgrades)
}

/// rpm's `%{VERSION}-%{RELEASE}` has no epoch; drop it from repository versions to match.
fn strip_epoch(version: &str) -> &str {
    match version.split_once(':') {
        Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => version,
    }
}

/// `apk version -l '<' NAMES`: a header line, then `name-1.0-r0   < 1.1-r0 [tag]`.
fn parse_apk_version(
    installed: &[&str],
    output: &CommandOutput,
) -> Result<BTreeMap<String, String>, String> {
    if output.rc != 0 {
        return Err(format!("failed with exit code {}", output.rc));
    }
    let mut upgrades = BTreeMap::new();
    for line in output.stdout.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [package, "<", available, ..] = fields[..] else {
            continue;
        };
        // apk versions start with a digit, so `py3-foo-2.0-r0` is not `py3` at `foo-2.0-r0`.
        let matches = |name: &&&str| {
            package
                .strip_prefix(**name)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|version| version.starts_with(|c: char| c.is_ascii_digit()))
        };
        if let Some(name) = installed.iter().find(matches) {
            upgrades.insert(name.to_string(), available.to_string());
        }
    }
    Ok(upgrades)
}

/// `pacman -Qu NAMES`: `name old -> new` per upgradable package, exit 1 and no output when
/// there is none. Ignored packages end with `[ignored]` and are skipped.
fn parse_pacman_upgrades(output: &CommandOutput) -> Result<BTreeMap<String, String>, String> {
    if output.rc != 0 {
        if output.stdout.trim().is_empty() && output.stderr.trim().is_empty() {
            return Ok(BTreeMap::new());
        }
        return Err(format!("failed with exit code {}", output.rc));
    }
    let mut upgrades = BTreeMap::new();
    for line in output.stdout.lines() {
        if line.contains("[ignored]") {
            continue;
        }
        if let [name, _old, "->", new] = line.split_whitespace().collect::<Vec<_>>()[..] {
            upgrades.insert(name.to_string(), new.to_string());
        }
    }
    Ok(upgrades)
}

/// `zypper list-updates`: a `|`-separated table whose header names the columns (`Name`,
/// `Available Version`; older zypper has a single `Version` column).
fn parse_zypper_list_updates(output: &CommandOutput) -> Result<BTreeMap<String, String>, String> {
    if output.rc != 0 {
        return Err(format!("failed with exit code {}", output.rc));
    }
    let mut upgrades = BTreeMap::new();
    let mut columns: Option<(usize, usize)> = None;
    for line in output.stdout.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 3 {
            continue;
        }
        match columns {
            None => {
                let name = cells.iter().position(|cell| *cell == "Name");
                let version = cells
                    .iter()
                    .position(|cell| *cell == "Available Version")
                    .or_else(|| cells.iter().position(|cell| *cell == "Version"));
                if let (Some(name), Some(version)) = (name, version) {
                    columns = Some((name, version));
                }
            }
            Some((name, version)) => {
                if let (Some(name), Some(version)) = (cells.get(name), cells.get(version)) {
                    if !name.is_empty() && !name.starts_with('-') {
                        upgrades.insert(name.to_string(), strip_epoch(version).to_string());
                    }
                }
            }
        }
    }
    if columns.is_none() && output.stdout.contains('|') {
        return Err("printed a table without `Name` and `Version` columns".to_string());
    }
    Ok(upgrades)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use mop_protocol::Facts;

    use super::*;
    use crate::outcome::SystemRunner;
    use crate::system::recorded::RecordedRunner;

    fn spec(names: &[&str], state: PackageState) -> PackageSpec {
        PackageSpec {
            name: names.iter().map(|name| name.to_string()).collect(),
            state: state.into(),
            manager: None,
            update_cache: false,
        }
    }

    fn facts(manager: &str) -> Facts {
        Facts {
            package_manager: Some(manager.to_string()),
            ..Facts::default()
        }
    }

    fn run(
        spec: &PackageSpec,
        manager: &str,
        check: bool,
        runner: &mut dyn Runner,
    ) -> Result<Outcome, ResourceError> {
        let facts = facts(manager);
        converge(
            spec,
            &SystemContext {
                check,
                facts: &facts,
            },
            runner,
        )
    }

    fn output(rc: i32, stdout: &str, stderr: &str) -> CommandOutput {
        CommandOutput {
            rc,
            stdout: stdout.to_string(),
            stderr: stderr.to_string(),
        }
    }

    fn apt_install<'a>(names: &[&'a str]) -> Vec<&'a str> {
        let mut argv = APT_INSTALL.to_vec();
        argv.extend_from_slice(names);
        argv
    }

    const DPKG_QUERY_FORMAT: &str = "-f=${Status} ${Version}\\n";
    const RPM_FORMAT: &str = "%{VERSION}-%{RELEASE}\\n";

    /// The policy accepts exactly `mop_protocol::PACKAGE_MANAGERS`: each must work here.
    #[test]
    fn every_manager_a_policy_may_name_is_known() {
        for name in mop_protocol::PACKAGE_MANAGERS {
            assert!(Manager::from_name(name).is_some(), "`{name}`");
        }
    }

    #[test]
    fn manager_comes_from_spec_then_facts() {
        fn check(
            spec_manager: Option<&str>,
            detected: Option<&str>,
            expected: Result<Manager, &str>,
        ) {
            let got = Manager::resolve(spec_manager, detected).map_err(|err| err.message);
            match expected {
                Ok(manager) => assert_eq!(got, Ok(manager)),
                Err(fragment) => {
                    let message = got.expect_err("should fail");
                    assert!(message.contains(fragment), "{message}");
                }
            }
        }
        check(None, Some("apt"), Ok(Manager::Apt));
        check(Some("dnf"), Some("apt"), Ok(Manager::Dnf));
        check(
            Some("emerge"),
            Some("apt"),
            Err("unknown package manager `emerge`"),
        );
        check(
            None,
            Some("brew"),
            Err("detected package manager `brew` is not supported"),
        );
        check(None, None, Err("no package manager was detected"));
    }

    #[test]
    fn a_named_manager_must_be_on_the_host() {
        let nothing = |_: &str| false;
        // The detected manager was found by the same lookup: no second look.
        assert!(Manager::Apt.require_on_host(Some("apt"), nothing).is_ok());
        assert!(Manager::Apt
            .require_on_host(Some("apt-get"), nothing)
            .is_ok());
        assert!(Manager::Yum
            .require_on_host(Some("dnf"), |tool| tool == "yum")
            .is_ok());
        let message = Manager::Dnf
            .require_on_host(Some("apt"), |tool| tool == "rpm")
            .expect_err("no dnf")
            .message;
        assert_eq!(
            message,
            "package manager `dnf` is not installed on this host: no `dnf` on PATH or in the \
             standard bin directories\nhint: this host has `apt`: set `manager = \"apt\"` or leave \
             `manager` unset"
        );
        let message = Manager::Apt
            .require_on_host(None, nothing)
            .expect_err("no apt-get")
            .message;
        assert!(
            message
                .starts_with("package manager `apt` is not installed on this host: no `apt-get`")
                && message.ends_with(
                    "hint: install `apt-get`, or set `manager` to a package manager this host has"
                ),
            "{message}"
        );
    }

    /// Check mode fails where apply fails, with its message, before any program runs: on a
    /// host with no known package manager, and when the policy names a manager the host lacks
    /// (even where the query tool, `rpm`, is there: check would otherwise report an install).
    #[test]
    fn check_fails_like_apply_when_the_manager_is_absent() {
        let named = PackageSpec {
            manager: Some("dnf".to_string()),
            ..spec(&["hello"], PackageState::Present)
        };
        let cases = [
            (
                spec(&["hello"], PackageState::Present),
                None,
                "no package manager was detected on this host",
            ),
            (
                named,
                Some("apt"),
                "package manager `dnf` is not installed on this host",
            ),
        ];
        for (spec, detected, expected) in cases {
            let facts = Facts {
                package_manager: detected.map(str::to_string),
                ..Facts::default()
            };
            let mut errors = Vec::new();
            for check in [true, false] {
                // No command recorded: running any would panic.
                let mut runner = RecordedRunner::new().lacking("dnf");
                let context = SystemContext {
                    check,
                    facts: &facts,
                };
                let error = converge(&spec, &context, &mut runner).expect_err("no manager");
                errors.push(error.message);
            }
            assert_eq!(errors[0], errors[1], "check and apply agree");
            assert!(errors[0].starts_with(expected), "{}", errors[0]);
        }
    }

    #[test]
    fn names_are_deduplicated_and_checked() {
        assert_eq!(
            package_names(&["a".into(), "b".into(), "a".into()]).expect("valid"),
            vec!["a".to_string(), "b".to_string()]
        );
        assert!(package_names(&[]).is_err());
        let err = package_names(&["nginx=1.2".into()]).expect_err("pinned");
        assert!(
            err.message
                .contains("version constraints are not supported"),
            "{}",
            err.message
        );
        assert!(package_names(&["--purge".into()]).is_err());
    }

    #[test]
    fn dpkg_query_states() {
        fn check(rc: i32, stdout: &str, stderr: &str, expected: Result<Option<&str>, ()>) {
            let got = parse_dpkg_query(&output(rc, stdout, stderr)).map_err(|_| ());
            assert_eq!(
                got,
                expected.map(|version| version.map(str::to_string)),
                "{stdout:?}"
            );
        }
        check(0, "install ok installed 2.10-3\n", "", Ok(Some("2.10-3")));
        check(0, "hold ok installed 1:2.3-4\n", "", Ok(Some("1:2.3-4")));
        check(
            0,
            "install ok triggers-pending 5.2-1\n",
            "",
            Ok(Some("5.2-1")),
        );
        check(0, "deinstall ok config-files 2.10-3\n", "", Ok(None));
        check(0, "install ok half-configured 2.10-3\n", "", Ok(None));
        check(0, "unknown ok not-installed \n", "", Ok(None));
        // Multi-arch: one line per architecture.
        check(
            0,
            "unknown ok not-installed \ninstall ok installed 2.36-9\n",
            "",
            Ok(Some("2.36-9")),
        );
        check(
            1,
            "",
            "dpkg-query: no packages found matching hello\n",
            Ok(None),
        );
        check(2, "", "dpkg-query: error: cannot open database\n", Err(()));
    }

    #[test]
    fn rpm_apk_pacman_queries() {
        assert_eq!(
            parse_rpm_query(&output(0, "1.20.1-14.el9\n", "")),
            Ok(Some("1.20.1-14.el9".into()))
        );
        assert_eq!(
            parse_rpm_query(&output(1, "package nginx is not installed\n", "")),
            Ok(None)
        );
        assert!(parse_rpm_query(&output(1, "", "error: rpmdb open failed\n")).is_err());

        assert_eq!(
            parse_apk_info_exists("nginx", &output(0, "nginx-1.24.0-r7\n", "")),
            Ok(Some("1.24.0-r7".into()))
        );
        // Installed through a provider with another name.
        assert_eq!(
            parse_apk_info_exists("cmd:vi", &output(0, "busybox-1.36.1-r15\n", "")),
            Ok(Some("1.36.1-r15".into()))
        );
        assert_eq!(parse_apk_info_exists("nginx", &output(1, "", "")), Ok(None));
        assert!(
            parse_apk_info_exists("nginx", &output(1, "", "ERROR: Unable to lock database\n"))
                .is_err()
        );

        assert_eq!(
            parse_pacman_query(&output(0, "nginx 1.26.1-1\n", "")),
            Ok(Some("1.26.1-1".into()))
        );
        assert_eq!(
            parse_pacman_query(&output(1, "", "error: package 'nginx' was not found\n")),
            Ok(None)
        );
    }

    #[test]
    fn upgrade_lists() {
        fn check(parsed: Result<BTreeMap<String, String>, String>, expected: &[(&str, &str)]) {
            let expected: BTreeMap<String, String> = expected
                .iter()
                .map(|(name, version)| (name.to_string(), version.to_string()))
                .collect();
            assert_eq!(parsed, Ok(expected));
        }
        check(
            parse_apt_policy_upgrades(&output(
                0,
                include_str!("fixtures/apt-cache-policy.txt"),
                "",
            )),
            &[("dpkg", "1.21.23")],
        );
        check(
            parse_check_update(&output(
                100,
                include_str!("fixtures/dnf-check-update.txt"),
                "",
            )),
            &[
                ("nginx", "1.20.1-14.el9_2.1"),
                (
                    "python3-very-long-package-name-for-wrapping",
                    "3.9.18-1.el9",
                ),
                ("curl", "7.76.1-26.el9_3.3"),
            ],
        );
        check(parse_check_update(&output(0, "", "")), &[]);
        assert!(parse_check_update(&output(1, "", "Error: Failed to download metadata")).is_err());
        check(
            parse_apk_version(
                &["nginx", "py3"],
                &output(0, include_str!("fixtures/apk-version.txt"), ""),
            ),
            &[("nginx", "1.24.0-r7")],
        );
        check(
            parse_pacman_upgrades(&output(
                0,
                "nginx 1.24.0-1 -> 1.26.1-1\nlinux 6.9.1-1 -> 6.9.3-1 [ignored]\n",
                "",
            )),
            &[("nginx", "1.26.1-1")],
        );
        check(parse_pacman_upgrades(&output(1, "", "")), &[]);
        check(
            parse_zypper_list_updates(&output(
                0,
                include_str!("fixtures/zypper-list-updates.txt"),
                "",
            )),
            &[
                ("curl", "8.0.1-150400.5.41.1"),
                ("nginx", "1.21.5-150400.3.9.1"),
            ],
        );
        check(
            parse_zypper_list_updates(&output(0, "No updates found.\n", "")),
            &[],
        );
    }

    #[test]
    fn apt_policy_sections() {
        let policies = parse_apt_policy(include_str!("fixtures/apt-cache-policy.txt"));
        assert_eq!(
            policies.get("hello"),
            Some(&AptPolicy {
                installed: None,
                candidate: Some("2.10-3".into())
            })
        );
        assert_eq!(
            policies.get("dpkg"),
            Some(&AptPolicy {
                installed: Some("1.21.22".into()),
                candidate: Some("1.21.23".into())
            })
        );
        assert_eq!(
            policies.get("libc6"),
            Some(&AptPolicy {
                installed: Some("2.36-9".into()),
                candidate: Some("2.36-9".into())
            })
        );
        assert_eq!(policies.get("nosuchpkg"), None);
    }

    #[test]
    fn apt_recorded_update_cache_runs_before_queries() {
        let mut spec = spec(&["hello"], PackageState::Present);
        spec.update_cache = true;
        let mut runner = RecordedRunner::new()
            .cmd("apt-get update -q", 0, "Reading package lists...\n")
            .expect(
                &["dpkg-query", "-W", DPKG_QUERY_FORMAT, "hello"],
                0,
                "install ok installed 2.10-3\n",
                "",
            );
        let outcome = run(&spec, "apt", false, &mut runner).expect("converges");
        assert!(!outcome.changed, "{outcome:?}");
        assert_eq!(
            outcome.extra.get("versions"),
            Some(&serde_json::json!({"hello": "2.10-3"}))
        );
    }

    #[test]
    fn apt_recorded_check_mode_does_not_refresh_and_fails_on_unknown_name() {
        let mut runner = RecordedRunner::new()
            .expect(
                &["dpkg-query", "-W", DPKG_QUERY_FORMAT, "nosuch"],
                1,
                "",
                "dpkg-query: no packages found matching nosuch\n",
            )
            .cmd("apt-cache policy nosuch", 0, "");
        let err = run(
            &spec(&["nosuch"], PackageState::Present),
            "apt",
            true,
            &mut runner,
        )
        .expect_err("unknown package");
        assert!(
            err.message
                .starts_with("package `nosuch` has no installation candidate"),
            "{}",
            err.message
        );
    }

    #[test]
    fn apt_recorded_failing_install_returns_output() {
        let mut runner = RecordedRunner::new()
            .expect(
                &["dpkg-query", "-W", DPKG_QUERY_FORMAT, "nosuch"],
                1,
                "",
                "dpkg-query: no packages found matching nosuch\n",
            )
            .expect(
                &apt_install(&["nosuch"]),
                100,
                "Reading package lists...\n",
                "E: Unable to locate package nosuch\n",
            );
        let err = run(
            &spec(&["nosuch"], PackageState::Present),
            "apt",
            false,
            &mut runner,
        )
        .expect_err("install fails");
        assert!(
            err.message
                .ends_with("failed with exit code 100: E: Unable to locate package nosuch"),
            "{}",
            err.message
        );
        assert!(err
            .output
            .expect("output attached")
            .stderr
            .contains("Unable to locate"));
    }

    #[test]
    fn dnf_recorded_install_several_skips_installed() {
        let mut runner = RecordedRunner::new()
            .expect(
                &["rpm", "-q", "--qf", RPM_FORMAT, "nginx"],
                1,
                "package nginx is not installed\n",
                "",
            )
            .expect(
                &["rpm", "-q", "--qf", RPM_FORMAT, "curl"],
                0,
                "7.76.1-26.el9\n",
                "",
            )
            .cmd("dnf -y install nginx", 0, "Complete!\n")
            .expect(
                &["rpm", "-q", "--qf", RPM_FORMAT, "nginx"],
                0,
                "1.20.1-14.el9_2.1\n",
                "",
            )
            .expect(
                &["rpm", "-q", "--qf", RPM_FORMAT, "curl"],
                0,
                "7.76.1-26.el9\n",
                "",
            );
        let outcome = run(
            &spec(&["nginx", "curl"], PackageState::Present),
            "dnf",
            false,
            &mut runner,
        )
        .expect("converges");
        assert!(outcome.changed);
        assert_eq!(outcome.changes, vec!["installed nginx 1.20.1-14.el9_2.1"]);
        assert_eq!(
            outcome.output.map(|output| output.stdout),
            Some("Complete!\n".to_string())
        );
    }

    #[test]
    fn dnf_recorded_latest_check_mode_reports_upgrade_without_changing() {
        let mut runner = RecordedRunner::new()
            .expect(
                &["rpm", "-q", "--qf", RPM_FORMAT, "nginx"],
                0,
                "1.20.1-14.el9\n",
                "",
            )
            .cmd(
                "dnf -q check-update nginx",
                100,
                "\nnginx.x86_64   1:1.20.1-14.el9_2.1   appstream\n",
            );
        let outcome = run(
            &spec(&["nginx"], PackageState::Latest),
            "dnf",
            true,
            &mut runner,
        )
        .expect("plans");
        assert_eq!(
            outcome.changes,
            vec!["upgraded nginx 1.20.1-14.el9 -> 1.20.1-14.el9_2.1"]
        );
    }

    #[test]
    fn dnf_recorded_latest_apply_installs_and_upgrades() {
        let mut runner = RecordedRunner::new()
            .expect(
                &["rpm", "-q", "--qf", RPM_FORMAT, "nginx"],
                0,
                "1.20.1-14.el9\n",
                "",
            )
            .expect(
                &["rpm", "-q", "--qf", RPM_FORMAT, "jq"],
                1,
                "package jq is not installed\n",
                "",
            )
            .cmd(
                "dnf -q check-update nginx",
                100,
                "nginx.x86_64   1:1.20.1-14.el9_2.1   appstream\n",
            )
            .cmd("dnf -y install jq", 0, "")
            .cmd("dnf -y upgrade nginx", 0, "")
            .expect(
                &["rpm", "-q", "--qf", RPM_FORMAT, "nginx"],
                0,
                "1.20.1-14.el9_2.1\n",
                "",
            )
            .expect(
                &["rpm", "-q", "--qf", RPM_FORMAT, "jq"],
                0,
                "1.6-15.el9\n",
                "",
            );
        let outcome = run(
            &spec(&["nginx", "jq"], PackageState::Latest),
            "dnf",
            false,
            &mut runner,
        )
        .expect("converges");
        assert_eq!(
            outcome.changes,
            vec![
                "installed jq 1.6-15.el9",
                "upgraded nginx 1.20.1-14.el9 -> 1.20.1-14.el9_2.1"
            ]
        );
    }

    #[test]
    fn yum_recorded_exit_zero_without_installing_is_an_error() {
        // yum 3 exits 0 on `No package nosuch available.`
        let mut runner = RecordedRunner::new()
            .expect(
                &["rpm", "-q", "--qf", RPM_FORMAT, "nosuch"],
                1,
                "package nosuch is not installed\n",
                "",
            )
            .cmd(
                "yum -y install nosuch",
                0,
                "No package nosuch available.\nNothing to do\n",
            )
            .expect(
                &["rpm", "-q", "--qf", RPM_FORMAT, "nosuch"],
                1,
                "package nosuch is not installed\n",
                "",
            );
        let err = run(
            &spec(&["nosuch"], PackageState::Present),
            "yum",
            false,
            &mut runner,
        )
        .expect_err("not installed");
        assert!(
            err.message
                .starts_with("`nosuch` is still not installed after `yum`"),
            "{}",
            err.message
        );
        assert!(err
            .output
            .expect("output")
            .stdout
            .contains("No package nosuch available"));
    }

    #[test]
    fn apk_recorded_remove() {
        let mut runner = RecordedRunner::new()
            .cmd("apk -v info -e nginx", 0, "nginx-1.24.0-r7\n")
            .cmd(
                "apk del nginx",
                0,
                "(1/1) Purging nginx (1.24.0-r7)\nOK: 8 MiB in 15 packages\n",
            )
            .cmd("apk -v info -e nginx", 1, "");
        let outcome = run(
            &spec(&["nginx"], PackageState::Absent),
            "apk",
            false,
            &mut runner,
        )
        .expect("converges");
        assert_eq!(outcome.changes, vec!["removed nginx"]);
        assert_eq!(
            outcome.extra.get("versions"),
            Some(&serde_json::json!({"nginx": null}))
        );
    }

    #[test]
    fn apk_recorded_latest_upgrades() {
        let mut runner = RecordedRunner::new()
            .cmd("apk -v info -e nginx", 0, "nginx-1.24.0-r6\n")
            .cmd(
                "apk version -l < nginx",
                0,
                include_str!("fixtures/apk-version.txt"),
            )
            .cmd(
                "apk add --upgrade nginx",
                0,
                "(1/1) Upgrading nginx (1.24.0-r6 -> 1.24.0-r7)\n",
            )
            .cmd("apk -v info -e nginx", 0, "nginx-1.24.0-r7\n");
        let outcome = run(
            &spec(&["nginx"], PackageState::Latest),
            "apk",
            false,
            &mut runner,
        )
        .expect("converges");
        assert_eq!(
            outcome.changes,
            vec!["upgraded nginx 1.24.0-r6 -> 1.24.0-r7"]
        );
    }

    #[test]
    fn pacman_recorded_latest_and_needed_install() {
        let mut runner = RecordedRunner::new()
            .cmd("pacman -Q nginx", 0, "nginx 1.24.0-1\n")
            .cmd("pacman -Qu nginx", 0, "nginx 1.24.0-1 -> 1.26.1-1\n")
            .cmd("pacman -S --noconfirm --needed nginx", 0, "")
            .cmd("pacman -Q nginx", 0, "nginx 1.26.1-1\n");
        let outcome = run(
            &spec(&["nginx"], PackageState::Latest),
            "pacman",
            false,
            &mut runner,
        )
        .expect("converges");
        assert_eq!(outcome.changes, vec!["upgraded nginx 1.24.0-1 -> 1.26.1-1"]);

        let mut runner = RecordedRunner::new()
            .cmd("pacman -Q nginx", 0, "nginx 1.26.1-1\n")
            .cmd("pacman -Qu nginx", 1, "");
        let outcome = run(
            &spec(&["nginx"], PackageState::Latest),
            "pacman",
            false,
            &mut runner,
        )
        .expect("converges");
        assert!(!outcome.changed);
    }

    #[test]
    fn zypper_recorded_reboot_needed_counts_as_success() {
        let mut spec = spec(&["nginx"], PackageState::Present);
        spec.manager = Some("zypper".to_string());
        spec.update_cache = true;
        let mut runner = RecordedRunner::new()
            .cmd(
                "zypper -n refresh",
                0,
                "All repositories have been refreshed.\n",
            )
            .expect(
                &["rpm", "-q", "--qf", RPM_FORMAT, "nginx"],
                1,
                "package nginx is not installed\n",
                "",
            )
            .cmd("zypper -n install nginx", 103, "")
            .expect(
                &["rpm", "-q", "--qf", RPM_FORMAT, "nginx"],
                0,
                "1.21.5-150400.3.9.1\n",
                "",
            );
        // The spec's manager overrides the detected apt.
        let outcome = run(&spec, "apt", false, &mut runner).expect("converges");
        assert_eq!(outcome.changes, vec!["installed nginx 1.21.5-150400.3.9.1"]);
        assert_eq!(outcome.output.map(|output| output.rc), Some(103));
    }

    #[test]
    fn zypper_recorded_latest_filters_the_table() {
        let mut runner = RecordedRunner::new()
            .expect(
                &["rpm", "-q", "--qf", RPM_FORMAT, "curl"],
                0,
                "8.0.1-150400.5.38.1\n",
                "",
            )
            .cmd(
                "zypper -n -q list-updates",
                0,
                include_str!("fixtures/zypper-list-updates.txt"),
            );
        let outcome = run(
            &spec(&["curl"], PackageState::Latest),
            "zypper",
            true,
            &mut runner,
        )
        .expect("plans");
        assert_eq!(
            outcome.changes,
            vec!["upgraded curl 8.0.1-150400.5.38.1 -> 8.0.1-150400.5.41.1"]
        );
    }

    // ---- apt for real, against a throwaway local repository -------------------------------
    //
    // The package comes from a `file:` repository the test builds with dpkg-deb, so the test
    // installs and removes a real package through the real apt-get and dpkg without any
    // network traffic, and can also publish a newer version to test `latest`.

    fn require_root_with(tools: &[&str]) {
        let uid = Command::new("id").arg("-u").output().expect("run `id -u`");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "this test installs packages for real and must run as root"
        );
        for tool in tools {
            let found = std::env::var("PATH")
                .unwrap_or_default()
                .split(':')
                .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
                .any(|dir| Path::new(dir).join(tool).exists());
            assert!(
                found,
                "this test needs `{tool}` on this machine (Debian with apt and dpkg-dev)"
            );
        }
    }

    fn sh(argv: &[&str]) -> std::process::Output {
        let output = Command::new(argv[0])
            .args(&argv[1..])
            .output()
            .expect("spawn test helper");
        assert!(
            output.status.success(),
            "{argv:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    struct LocalAptRepo {
        package: String,
        dir: PathBuf,
        sources_list: PathBuf,
    }

    impl LocalAptRepo {
        fn new() -> LocalAptRepo {
            let package = format!("mop-real-test-{}", std::process::id());
            let dir = std::env::temp_dir().join(format!("mop-apt-repo-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("pool")).expect("create repo dir");
            let sources_list = PathBuf::from(format!("/etc/apt/sources.list.d/{package}.list"));
            std::fs::write(
                &sources_list,
                format!("deb [trusted=yes] file:{}/pool ./\n", dir.display()),
            )
            .expect("write sources list");
            LocalAptRepo {
                package,
                dir,
                sources_list,
            }
        }

        /// Builds `version` of the package, indexes the pool and refreshes only this source.
        fn publish(&self, version: &str) {
            let root = self.dir.join(format!("build-{version}"));
            std::fs::create_dir_all(root.join("DEBIAN")).expect("create build dir");
            std::fs::create_dir_all(root.join("usr/share").join(&self.package))
                .expect("create data dir");
            std::fs::write(
                root.join("usr/share").join(&self.package).join("version"),
                version,
            )
            .expect("write data");
            std::fs::write(
                root.join("DEBIAN/control"),
                format!(
                    "Package: {}\nVersion: {version}\nArchitecture: all\nMaintainer: mop tests <root@localhost>\nDescription: throwaway package built by mop's tests\n",
                    self.package
                ),
            )
            .expect("write control");
            let deb = self
                .dir
                .join("pool")
                .join(format!("{}_{version}_all.deb", self.package));
            sh(&[
                "dpkg-deb",
                "--root-owner-group",
                "--build",
                &root.to_string_lossy(),
                &deb.to_string_lossy(),
            ]);
            let index = Command::new("dpkg-scanpackages")
                .args(["--multiversion", "."])
                .current_dir(self.dir.join("pool"))
                .output()
                .expect("run dpkg-scanpackages");
            assert!(index.status.success(), "dpkg-scanpackages failed");
            std::fs::write(self.dir.join("pool/Packages"), &index.stdout).expect("write Packages");
            sh(&[
                "apt-get",
                "update",
                "-q",
                "-o",
                &format!("Dir::Etc::sourcelist={}", self.sources_list.display()),
                "-o",
                "Dir::Etc::sourceparts=-",
                "-o",
                "APT::Get::List-Cleanup=0",
                "-o",
                "DPkg::Lock::Timeout=120",
            ]);
        }

        fn installed(&self) -> Option<String> {
            let output = Command::new("dpkg-query")
                .args(["-W", "-f=${Status} ${Version}", &self.package])
                .output()
                .expect("run dpkg-query");
            let text = String::from_utf8_lossy(&output.stdout).to_string();
            text.strip_prefix("install ok installed ")
                .map(str::to_string)
        }
    }

    impl Drop for LocalAptRepo {
        fn drop(&mut self) {
            let _ = Command::new("dpkg")
                .args(["--purge", &self.package])
                .output();
            let _ = std::fs::remove_file(&self.sources_list);
            let list_prefix = format!("{}_pool_", self.dir.display()).replace('/', "_");
            if let Ok(entries) = std::fs::read_dir("/var/lib/apt/lists") {
                for entry in entries.flatten() {
                    if entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with(&list_prefix)
                    {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn apt_real_install_upgrade_remove_with_check_mode() {
        require_root_with(&["apt-get", "dpkg-deb", "dpkg-scanpackages"]);
        let repo = LocalAptRepo::new();
        repo.publish("1.0-1");
        let name = repo.package.as_str();
        let mut runner = SystemRunner;

        let present = spec(&[name], PackageState::Present);
        let outcome = run(&present, "apt", true, &mut runner).expect("check present");
        assert!(outcome.changed);
        assert_eq!(outcome.changes, vec![format!("installed {name} 1.0-1")]);
        assert_eq!(repo.installed(), None, "check mode must not install");

        let outcome = run(&present, "apt", false, &mut runner).expect("install");
        assert_eq!(outcome.changes, vec![format!("installed {name} 1.0-1")]);
        assert_eq!(repo.installed().as_deref(), Some("1.0-1"));
        let outcome = run(&present, "apt", false, &mut runner).expect("present again");
        assert!(
            !outcome.changed,
            "second apply must be unchanged: {outcome:?}"
        );

        repo.publish("1.1-1");
        let outcome = run(&present, "apt", false, &mut runner).expect("present after publish");
        assert!(!outcome.changed, "present does not upgrade: {outcome:?}");
        let latest = spec(&[name], PackageState::Latest);
        let outcome = run(&latest, "apt", true, &mut runner).expect("check latest");
        assert_eq!(
            outcome.changes,
            vec![format!("upgraded {name} 1.0-1 -> 1.1-1")]
        );
        assert_eq!(
            repo.installed().as_deref(),
            Some("1.0-1"),
            "check mode must not upgrade"
        );
        let outcome = run(&latest, "apt", false, &mut runner).expect("upgrade");
        assert_eq!(
            outcome.changes,
            vec![format!("upgraded {name} 1.0-1 -> 1.1-1")]
        );
        assert_eq!(repo.installed().as_deref(), Some("1.1-1"));
        let outcome = run(&latest, "apt", false, &mut runner).expect("latest again");
        assert!(!outcome.changed, "{outcome:?}");

        let absent = spec(&[name], PackageState::Absent);
        let outcome = run(&absent, "apt", true, &mut runner).expect("check absent");
        assert_eq!(outcome.changes, vec![format!("removed {name}")]);
        assert_eq!(
            repo.installed().as_deref(),
            Some("1.1-1"),
            "check mode must not remove"
        );
        let outcome = run(&absent, "apt", false, &mut runner).expect("remove");
        assert_eq!(outcome.changes, vec![format!("removed {name}")]);
        assert_eq!(repo.installed(), None);
        let outcome = run(&absent, "apt", false, &mut runner).expect("absent again");
        assert!(!outcome.changed, "{outcome:?}");

        let missing = format!("{name}-does-not-exist");
        let err = run(
            &spec(&[&missing], PackageState::Present),
            "apt",
            false,
            &mut runner,
        )
        .expect_err("unknown package fails");
        assert!(
            err.message.contains("failed with exit code 100"),
            "{}",
            err.message
        );
        let output = err
            .output
            .expect("the failing command's output is attached");
        assert!(
            output.stderr.contains("Unable to locate package"),
            "{output:?}"
        );
    }
}
