//! The `user` and `group` resources, read from `/etc/passwd` and `/etc/group` and changed with
//! shadow-utils (`useradd`, `usermod`, `groupadd`...) or, where those are missing (Alpine's
//! busybox), with `adduser`, `addgroup`, `deluser`, `delgroup`.
//!
//! The files are parsed directly rather than through NSS because the agent is statically
//! linked. After a change the files are read again and the spec compared once more, so a tool
//! that exits 0 without doing everything asked is reported, not trusted.

use mop_protocol::{GroupSpec, Presence, UserSpec};
use serde_json::Value;

use super::{append_output, check_argument_name, display_command, run_change, SystemContext};
use crate::accounts::{self, GroupEntry, UserEntry, GROUP_PATH, PASSWD_PATH};
use crate::outcome::{Outcome, ResourceError, Runner};

/// Which family of account tools the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tools {
    /// shadow-utils: useradd, usermod, userdel, groupadd, groupmod, groupdel.
    Shadow,
    /// busybox: adduser, deluser, addgroup, delgroup; nothing modifies an existing account.
    Busybox,
}

impl Tools {
    /// shadow-utils when `shadow_tool` exists (`useradd`/`groupadd`), else busybox.
    fn detect(shadow_tool: &str, busybox_tool: &str) -> Result<Tools, ResourceError> {
        if program_exists(shadow_tool) {
            Ok(Tools::Shadow)
        } else if program_exists(busybox_tool) {
            Ok(Tools::Busybox)
        } else {
            Err(ResourceError::new(format!(
                "neither `{shadow_tool}` nor `{busybox_tool}` is installed on this host\nhint: install shadow-utils (the `passwd` package on Debian, `shadow` on Alpine)"
            )))
        }
    }
}

fn program_exists(program: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .filter(|dir| !dir.is_empty())
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .any(|dir| std::path::Path::new(dir).join(program).is_file());
    found
}

/// Appends `flag value` when there is a value.
fn push_flag(argv: &mut Vec<String>, flag: &str, value: Option<String>) {
    if let Some(value) = value {
        argv.push(flag.to_string());
        argv.push(value);
    }
}

/// The local account database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Accounts {
    users: Vec<UserEntry>,
    groups: Vec<GroupEntry>,
}

impl Accounts {
    fn load() -> Result<Accounts, ResourceError> {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map_err(|err| ResourceError::new(format!("cannot read `{path}`: {err}")))
        };
        let passwd = read(PASSWD_PATH)?;
        let group = read(GROUP_PATH)?;
        Accounts::parse(&passwd, &group).map_err(ResourceError::new)
    }

    /// Strict: a malformed line fails with its file and line rather than being skipped, since
    /// a skipped account would be created again or judged wrongly.
    fn parse(passwd: &str, group: &str) -> Result<Accounts, String> {
        Ok(Accounts {
            users: accounts::parse_passwd_strict(passwd)?,
            groups: accounts::parse_group_strict(group)?,
        })
    }

    fn user(&self, name: &str) -> Option<&UserEntry> {
        self.users.iter().find(|user| user.name == name)
    }

    fn group(&self, name: &str) -> Option<&GroupEntry> {
        self.groups.iter().find(|group| group.name == name)
    }

    /// The group's name, or the number when no group has that gid.
    fn group_name(&self, gid: u32) -> String {
        self.groups
            .iter()
            .find(|group| group.gid == gid)
            .map(|group| group.name.clone())
            .unwrap_or_else(|| gid.to_string())
    }

    /// Groups that list `user` as a member, in file order.
    fn supplementary_groups(&self, user: &str) -> Vec<String> {
        self.groups
            .iter()
            .filter(|group| group.members.iter().any(|member| member == user))
            .map(|group| group.name.clone())
            .collect()
    }
}

/// User and group names end up as one field of `/etc/passwd` or a member list.
fn check_account_name(kind: &str, name: &str) -> Result<(), ResourceError> {
    check_argument_name(kind, name)?;
    if name.contains([':', ',']) || name.len() > 32 {
        return Err(ResourceError::new(format!(
            "invalid {kind} name `{name}`: it must be at most 32 characters without `:` or `,`"
        )));
    }
    Ok(())
}

fn check_field(field: &str, value: &str) -> Result<(), ResourceError> {
    if value.contains(':') || value.contains('\n') {
        return Err(ResourceError::new(format!(
            "invalid {field} `{value}`: it must not contain `:` or a line break"
        )));
    }
    Ok(())
}

// ---- users ------------------------------------------------------------------------------

pub(super) fn converge_user_on_host(
    spec: &UserSpec,
    ctx: &SystemContext,
    runner: &mut dyn Runner,
) -> Result<Outcome, ResourceError> {
    check_user_spec(spec)?;
    let tools = Tools::detect("useradd", "adduser")?;
    let accounts = Accounts::load()?;
    converge_user(
        spec,
        ctx.check,
        tools,
        &accounts,
        runner,
        &mut Accounts::load,
    )
}

fn check_user_spec(spec: &UserSpec) -> Result<(), ResourceError> {
    check_account_name("user", &spec.name)?;
    if let Some(group) = &spec.group {
        check_account_name("group", group)?;
    }
    for group in spec.groups.iter().flatten() {
        check_account_name("group", group)?;
    }
    for (field, value) in [
        ("home", &spec.home),
        ("shell", &spec.shell),
        ("comment", &spec.comment),
    ] {
        if let Some(value) = value {
            check_field(field, value)?;
        }
    }
    Ok(())
}

/// How an existing user differs from the spec: the new value of each field that changes.
#[derive(Debug, Default, PartialEq)]
struct UserDiff {
    uid: Option<u32>,
    group: Option<String>,
    /// The complete new supplementary list, and what it adds and removes.
    groups: Option<(Vec<String>, Vec<String>, Vec<String>)>,
    home: Option<String>,
    shell: Option<String>,
    comment: Option<String>,
    /// `shell /bin/sh -> /bin/bash`, in field order.
    changes: Vec<String>,
}

fn list_or_none(groups: &[String]) -> String {
    if groups.is_empty() {
        "(none)".to_string()
    } else {
        groups.join(",")
    }
}

fn diff_user(spec: &UserSpec, user: &UserEntry, accounts: &Accounts) -> UserDiff {
    let mut diff = UserDiff::default();
    if let Some(uid) = spec.uid.filter(|uid| *uid != user.uid) {
        diff.uid = Some(uid);
        diff.changes.push(format!("uid {} -> {uid}", user.uid));
    }
    if let Some(group) = &spec.group {
        let wanted_gid = match group.parse::<u32>() {
            Ok(gid) => Some(gid),
            Err(_) => accounts.group(group).map(|entry| entry.gid),
        };
        if wanted_gid != Some(user.gid) {
            diff.group = Some(group.clone());
            diff.changes.push(format!(
                "group {} -> {group}",
                accounts.group_name(user.gid)
            ));
        }
    }
    if let Some(wanted) = &spec.groups {
        let current = accounts.supplementary_groups(&user.name);
        let mut wanted_unique: Vec<String> = Vec::new();
        for group in wanted {
            if !wanted_unique.contains(group) {
                wanted_unique.push(group.clone());
            }
        }
        let add: Vec<String> = wanted_unique
            .iter()
            .filter(|group| !current.contains(group))
            .cloned()
            .collect();
        let remove: Vec<String> = if spec.append {
            Vec::new()
        } else {
            current
                .iter()
                .filter(|group| !wanted_unique.contains(group))
                .cloned()
                .collect()
        };
        if !add.is_empty() || !remove.is_empty() {
            let target = if spec.append {
                current.iter().chain(&add).cloned().collect()
            } else {
                wanted_unique
            };
            diff.changes.push(format!(
                "groups {} -> {}",
                list_or_none(&current),
                list_or_none(&target)
            ));
            diff.groups = Some((target, add, remove));
        }
    }
    for (field, wanted, current, slot) in [
        ("home", &spec.home, &user.home, &mut diff.home),
        ("shell", &spec.shell, &user.shell, &mut diff.shell),
        ("comment", &spec.comment, &user.comment, &mut diff.comment),
    ] {
        if let Some(wanted) = wanted.as_ref().filter(|wanted| *wanted != current) {
            *slot = Some(wanted.clone());
            diff.changes
                .push(format!("{field} {} -> {wanted}", shown(current)));
        }
    }
    diff
}

fn shown(value: &str) -> &str {
    if value.is_empty() {
        "(empty)"
    } else {
        value
    }
}

/// The commands that create the user.
fn create_user_commands(spec: &UserSpec, tools: Tools, accounts: &Accounts) -> Vec<Vec<String>> {
    let name = spec.name.clone();
    // Without a primary group both tools try to create one named after the user, and fail
    // when it already exists (e.g. made by a `group` resource just before).
    let group = spec
        .group
        .clone()
        .or_else(|| accounts.group(&spec.name).map(|_| spec.name.clone()));
    let groups: Vec<String> = spec.groups.clone().unwrap_or_default();
    let mut argv: Vec<String> = Vec::new();
    let mut push = |flag: &str, value: Option<String>| push_flag(&mut argv, flag, value);
    match tools {
        Tools::Shadow => {
            push("-u", spec.uid.map(|uid| uid.to_string()));
            push("-g", group);
            push("-G", (!groups.is_empty()).then(|| groups.join(",")));
            push("-d", spec.home.clone());
            push("-s", spec.shell.clone());
            push("-c", spec.comment.clone());
            let mut command = vec!["useradd".to_string()];
            if spec.system {
                command.push("-r".to_string());
            }
            command.push(if spec.create_home { "-m" } else { "-M" }.to_string());
            command.extend(argv);
            command.push(name);
            vec![command]
        }
        Tools::Busybox => {
            push("-u", spec.uid.map(|uid| uid.to_string()));
            push("-G", group);
            push("-h", spec.home.clone());
            push("-s", spec.shell.clone());
            push("-g", spec.comment.clone());
            let mut command = vec!["adduser".to_string(), "-D".to_string()];
            if spec.system {
                command.push("-S".to_string());
            }
            if !spec.create_home {
                command.push("-H".to_string());
            }
            command.extend(argv);
            command.push(name.clone());
            let mut commands = vec![command];
            for group in groups {
                commands.push(vec!["addgroup".to_string(), name.clone(), group]);
            }
            commands
        }
    }
}

/// The commands that apply `diff` to an existing user.
fn modify_user_commands(
    spec: &UserSpec,
    diff: &UserDiff,
    tools: Tools,
) -> Result<Vec<Vec<String>>, ResourceError> {
    let name = spec.name.clone();
    match tools {
        Tools::Shadow => {
            let mut command = vec!["usermod".to_string()];
            push_flag(&mut command, "-u", diff.uid.map(|uid| uid.to_string()));
            push_flag(&mut command, "-g", diff.group.clone());
            if let Some((target, add, _)) = &diff.groups {
                if spec.append {
                    command.push("-a".to_string());
                    command.push("-G".to_string());
                    command.push(add.join(","));
                } else {
                    command.push("-G".to_string());
                    command.push(target.join(","));
                }
            }
            push_flag(&mut command, "-d", diff.home.clone());
            push_flag(&mut command, "-s", diff.shell.clone());
            push_flag(&mut command, "-c", diff.comment.clone());
            command.push(name);
            Ok(vec![command])
        }
        Tools::Busybox => {
            let unsupported: Vec<&str> = diff
                .changes
                .iter()
                .filter(|change| !change.starts_with("groups "))
                .map(String::as_str)
                .collect();
            if !unsupported.is_empty() {
                return Err(ResourceError::new(format!(
                    "cannot change user `{name}` ({}) with busybox tools: busybox has no usermod\nhint: install shadow-utils (`apk add shadow`)",
                    unsupported.join(", ")
                )));
            }
            let mut commands = Vec::new();
            if let Some((_, add, remove)) = &diff.groups {
                for group in add {
                    commands.push(vec!["addgroup".to_string(), name.clone(), group.clone()]);
                }
                for group in remove {
                    commands.push(vec!["delgroup".to_string(), name.clone(), group.clone()]);
                }
            }
            Ok(commands)
        }
    }
}

fn converge_user(
    spec: &UserSpec,
    check: bool,
    tools: Tools,
    accounts: &Accounts,
    runner: &mut dyn Runner,
    reload: &mut dyn FnMut() -> Result<Accounts, ResourceError>,
) -> Result<Outcome, ResourceError> {
    let name = spec.name.as_str();
    let existing = accounts.user(name);
    let (commands, changes) = match (spec.state.resolved(), existing) {
        (Presence::Absent, None) => return Ok(Outcome::unchanged()),
        (Presence::Absent, Some(_)) => {
            let tool = if tools == Tools::Shadow {
                "userdel"
            } else {
                "deluser"
            };
            (
                vec![vec![tool.to_string(), name.to_string()]],
                vec![format!("removed user {name}")],
            )
        }
        (Presence::Present, None) => (
            create_user_commands(spec, tools, accounts),
            vec![format!("created user {name}")],
        ),
        (Presence::Present, Some(user)) => {
            let diff = diff_user(spec, user, accounts);
            if diff.changes.is_empty() {
                let mut outcome = Outcome::unchanged();
                outcome.extra = user_extra(user, accounts);
                return Ok(outcome);
            }
            (modify_user_commands(spec, &diff, tools)?, diff.changes)
        }
    };
    let mut outcome = Outcome::changed(changes);
    if check {
        return Ok(outcome);
    }
    run_all(runner, &commands, &mut outcome, &format!("user `{name}`"))?;

    let after = reload()?;
    match (spec.state.resolved(), after.user(name)) {
        (Presence::Absent, None) => {}
        (Presence::Absent, Some(_)) => {
            return Err(still("user", name, "exists", &commands, outcome));
        }
        (Presence::Present, None) => {
            return Err(still("user", name, "does not exist", &commands, outcome));
        }
        (Presence::Present, Some(user)) => {
            let left = diff_user(spec, user, &after).changes;
            if !left.is_empty() {
                let what = format!("differs ({})", left.join(", "));
                return Err(still("user", name, &what, &commands, outcome));
            }
            outcome.extra = user_extra(user, &after);
        }
    }
    Ok(outcome)
}

fn user_extra(user: &UserEntry, accounts: &Accounts) -> serde_json::Map<String, Value> {
    let mut extra = serde_json::Map::new();
    extra.insert("uid".to_string(), user.uid.into());
    extra.insert("gid".to_string(), user.gid.into());
    extra.insert("group".to_string(), accounts.group_name(user.gid).into());
    extra.insert(
        "groups".to_string(),
        accounts.supplementary_groups(&user.name).into(),
    );
    extra.insert("home".to_string(), user.home.clone().into());
    extra.insert("shell".to_string(), user.shell.clone().into());
    extra
}

fn run_all(
    runner: &mut dyn Runner,
    commands: &[Vec<String>],
    outcome: &mut Outcome,
    subject: &str,
) -> Result<(), ResourceError> {
    for argv in commands {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let output = run_change(runner, &argv).map_err(|err| ResourceError {
            message: format!("cannot change {subject}: {}", err.message),
            ..err
        })?;
        append_output(&mut outcome.output, output);
    }
    Ok(())
}

fn still(
    kind: &str,
    name: &str,
    what: &str,
    commands: &[Vec<String>],
    outcome: Outcome,
) -> ResourceError {
    let ran: Vec<String> = commands
        .iter()
        .map(|argv| display_command(&argv.iter().map(String::as_str).collect::<Vec<_>>()))
        .collect();
    ResourceError {
        message: format!(
            "{kind} `{name}` still {what} after `{}` reported success",
            ran.join("; ")
        ),
        output: outcome.output,
    }
}

// ---- groups -----------------------------------------------------------------------------

pub(super) fn converge_group_on_host(
    spec: &GroupSpec,
    ctx: &SystemContext,
    runner: &mut dyn Runner,
) -> Result<Outcome, ResourceError> {
    check_account_name("group", &spec.name)?;
    let tools = Tools::detect("groupadd", "addgroup")?;
    let accounts = Accounts::load()?;
    converge_group(
        spec,
        ctx.check,
        tools,
        &accounts,
        runner,
        &mut Accounts::load,
    )
}

fn converge_group(
    spec: &GroupSpec,
    check: bool,
    tools: Tools,
    accounts: &Accounts,
    runner: &mut dyn Runner,
    reload: &mut dyn FnMut() -> Result<Accounts, ResourceError>,
) -> Result<Outcome, ResourceError> {
    let name = spec.name.as_str();
    let shadow = tools == Tools::Shadow;
    let (command, change) = match (spec.state.resolved(), accounts.group(name)) {
        (Presence::Absent, None) => return Ok(Outcome::unchanged()),
        (Presence::Absent, Some(_)) => {
            let tool = if shadow { "groupdel" } else { "delgroup" };
            (
                vec![tool.to_string(), name.to_string()],
                format!("removed group {name}"),
            )
        }
        (Presence::Present, None) => {
            let mut command = vec![if shadow { "groupadd" } else { "addgroup" }.to_string()];
            if spec.system {
                command.push(if shadow { "-r" } else { "-S" }.to_string());
            }
            if let Some(gid) = spec.gid {
                command.push("-g".to_string());
                command.push(gid.to_string());
            }
            command.push(name.to_string());
            (command, format!("created group {name}"))
        }
        (Presence::Present, Some(group)) => match spec.gid {
            Some(gid) if gid != group.gid => {
                if !shadow {
                    return Err(ResourceError::new(format!(
                        "cannot change the gid of group `{name}` ({} -> {gid}) with busybox tools: busybox has no groupmod\nhint: install shadow-utils (`apk add shadow`)",
                        group.gid
                    )));
                }
                let command = ["groupmod", "-g", &gid.to_string(), name].map(str::to_string);
                (command.to_vec(), format!("gid {} -> {gid}", group.gid))
            }
            _ => {
                let mut outcome = Outcome::unchanged();
                outcome.extra.insert("gid".to_string(), group.gid.into());
                return Ok(outcome);
            }
        },
    };
    let mut outcome = Outcome::changed(vec![change]);
    if check {
        return Ok(outcome);
    }
    let commands = vec![command];
    run_all(runner, &commands, &mut outcome, &format!("group `{name}`"))?;

    let after = reload()?;
    match (spec.state.resolved(), after.group(name)) {
        (Presence::Absent, None) => {}
        (Presence::Absent, Some(_)) => {
            return Err(still("group", name, "exists", &commands, outcome))
        }
        (Presence::Present, None) => {
            return Err(still("group", name, "does not exist", &commands, outcome))
        }
        (Presence::Present, Some(group)) => {
            if spec.gid.is_some_and(|gid| gid != group.gid) {
                let what = format!("has gid {}", group.gid);
                return Err(still("group", name, &what, &commands, outcome));
            }
            outcome.extra.insert("gid".to_string(), group.gid.into());
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::Mutex;

    use super::*;
    use crate::outcome::SystemRunner;
    use crate::system::recorded::RecordedRunner;

    fn fixture_accounts() -> Accounts {
        Accounts::parse(
            include_str!("fixtures/passwd"),
            include_str!("fixtures/group"),
        )
        .expect("fixtures parse")
    }

    fn user_spec(name: &str) -> UserSpec {
        UserSpec {
            name: name.to_string(),
            uid: None,
            group: None,
            groups: None,
            append: false,
            home: None,
            shell: None,
            comment: None,
            system: false,
            create_home: true,
            state: Presence::Present.into(),
        }
    }

    fn group_spec(name: &str, gid: Option<u32>, state: Presence) -> GroupSpec {
        GroupSpec {
            name: name.to_string(),
            gid,
            system: false,
            state: state.into(),
        }
    }

    fn groups(names: &[&str]) -> Option<Vec<String>> {
        Some(names.iter().map(|name| name.to_string()).collect())
    }

    #[test]
    fn passwd_and_group_parse() {
        let accounts = fixture_accounts();
        assert_eq!(
            accounts.users.len(),
            4,
            "comments, blanks and NIS entries are skipped"
        );
        assert_eq!(
            accounts.user("alice"),
            Some(&UserEntry {
                name: "alice".into(),
                uid: 1000,
                gid: 1000,
                comment: "Alice Liddell,,,".into(),
                home: "/home/alice".into(),
                shell: "/bin/sh".into(),
            })
        );
        assert_eq!(
            accounts.supplementary_groups("alice"),
            vec!["wheel", "docker"]
        );
        assert_eq!(accounts.supplementary_groups("bob"), vec!["wheel"]);
        assert_eq!(accounts.group_name(100), "users");
        assert_eq!(accounts.group_name(4242), "4242");
    }

    #[test]
    fn malformed_files_name_file_and_line() {
        fn check(passwd: &str, group: &str, expected: &str) {
            assert_eq!(Accounts::parse(passwd, group), Err(expected.to_string()));
        }
        check(
            "root:x:0:0:root:/root\n",
            "",
            "`/etc/passwd` line 1: expected 7 fields separated by `:`, found 6",
        );
        check(
            "root:x:0:0:root:/root:/bin/sh\nx:x:zero:0:::\n",
            "",
            "`/etc/passwd` line 2: uid `zero` is not a number",
        );
        check(
            "",
            "\nwheel:x:ten:\n",
            "`/etc/group` line 2: gid `ten` is not a number",
        );
    }

    #[test]
    fn names_and_fields_are_checked() {
        assert!(check_account_name("user", "deploy").is_ok());
        assert!(check_account_name("user", "a:b").is_err());
        assert!(check_account_name("user", "-o").is_err());
        assert!(check_account_name("user", &"x".repeat(33)).is_err());
        let mut spec = user_spec("deploy");
        spec.shell = Some("/bin/sh:evil".into());
        let err = check_user_spec(&spec).expect_err("colon");
        assert_eq!(
            err.message,
            "invalid shell `/bin/sh:evil`: it must not contain `:` or a line break"
        );
    }

    #[test]
    fn user_diff_reports_each_field() {
        let accounts = fixture_accounts();
        let alice = accounts.user("alice").expect("alice");
        fn check(spec: &UserSpec, user: &UserEntry, accounts: &Accounts, expected: &[&str]) {
            assert_eq!(
                diff_user(spec, user, accounts).changes,
                expected,
                "{spec:?}"
            );
        }
        let mut spec = user_spec("alice");
        check(&spec, alice, &accounts, &[]);
        spec.shell = Some("/bin/bash".into());
        spec.uid = Some(1000);
        spec.group = Some("alice".into());
        check(&spec, alice, &accounts, &["shell /bin/sh -> /bin/bash"]);
        spec.group = Some("users".into());
        spec.comment = Some("Alice".into());
        check(
            &spec,
            alice,
            &accounts,
            &[
                "group alice -> users",
                "shell /bin/sh -> /bin/bash",
                "comment Alice Liddell,,, -> Alice",
            ],
        );

        let mut spec = user_spec("alice");
        spec.group = Some("1000".into());
        spec.groups = groups(&["docker", "wheel"]);
        check(&spec, alice, &accounts, &[]);
        spec.groups = groups(&["docker", "adm"]);
        check(
            &spec,
            alice,
            &accounts,
            &["groups wheel,docker -> docker,adm"],
        );
        spec.append = true;
        check(
            &spec,
            alice,
            &accounts,
            &["groups wheel,docker -> wheel,docker,adm"],
        );
        spec.groups = groups(&["docker"]);
        check(&spec, alice, &accounts, &[]);
        spec.append = false;
        spec.groups = groups(&[]);
        check(&spec, alice, &accounts, &["groups wheel,docker -> (none)"]);
        spec.group = Some("nosuchgroup".into());
        spec.groups = None;
        check(&spec, alice, &accounts, &["group alice -> nosuchgroup"]);
    }

    #[test]
    fn shadow_recorded_create_uses_existing_same_name_group() {
        let accounts = fixture_accounts();
        let mut spec = user_spec("docker");
        spec.system = true;
        spec.create_home = false;
        spec.groups = groups(&["adm", "wheel"]);
        spec.shell = Some("/usr/sbin/nologin".into());
        let mut after = accounts.clone();
        after.users.push(UserEntry {
            name: "docker".into(),
            uid: 999,
            gid: 998,
            comment: String::new(),
            home: "/home/docker".into(),
            shell: "/usr/sbin/nologin".into(),
        });
        for group in after
            .groups
            .iter_mut()
            .filter(|group| group.name == "adm" || group.name == "wheel")
        {
            group.members.push("docker".into());
        }
        let mut runner = RecordedRunner::new().cmd(
            "useradd -r -M -g docker -G adm,wheel -s /usr/sbin/nologin docker",
            0,
            "",
        );
        let outcome = converge_user(
            &spec,
            false,
            Tools::Shadow,
            &accounts,
            &mut runner,
            &mut || Ok(after.clone()),
        )
        .expect("creates");
        assert_eq!(outcome.changes, vec!["created user docker"]);
        assert_eq!(outcome.extra.get("uid"), Some(&Value::from(999)));
        assert_eq!(
            outcome.extra.get("groups"),
            Some(&serde_json::json!(["wheel", "adm"]))
        );
    }

    #[test]
    fn shadow_recorded_modify_and_verify() {
        let accounts = fixture_accounts();
        let mut spec = user_spec("alice");
        spec.shell = Some("/bin/bash".into());
        spec.groups = groups(&["adm"]);
        spec.append = true;
        spec.home = Some("/srv/alice".into());
        // Check mode runs nothing.
        let outcome = converge_user(
            &spec,
            true,
            Tools::Shadow,
            &accounts,
            &mut RecordedRunner::new(),
            &mut || panic!("check mode must not re-read"),
        )
        .expect("plans");
        assert_eq!(
            outcome.changes,
            vec![
                "groups wheel,docker -> wheel,docker,adm",
                "home /home/alice -> /srv/alice",
                "shell /bin/sh -> /bin/bash"
            ]
        );

        // usermod exits 0 but the files did not change: reported, not trusted.
        let mut runner =
            RecordedRunner::new().cmd("usermod -a -G adm -d /srv/alice -s /bin/bash alice", 0, "");
        let err = converge_user(
            &spec,
            false,
            Tools::Shadow,
            &accounts,
            &mut runner,
            &mut || Ok(fixture_accounts()),
        )
        .expect_err("not applied");
        assert!(
            err.message.starts_with(
                "user `alice` still differs (groups wheel,docker -> wheel,docker,adm, home"
            ),
            "{}",
            err.message
        );

        spec.append = false;
        let mut runner = RecordedRunner::new().expect(
            &[
                "usermod",
                "-G",
                "adm",
                "-d",
                "/srv/alice",
                "-s",
                "/bin/bash",
                "alice",
            ],
            6,
            "",
            "usermod: group 'adm' does not exist\n",
        );
        let err = converge_user(
            &spec,
            false,
            Tools::Shadow,
            &accounts,
            &mut runner,
            &mut || Ok(fixture_accounts()),
        )
        .expect_err("usermod fails");
        assert_eq!(
            err.message,
            "cannot change user `alice`: `usermod -G adm -d /srv/alice -s /bin/bash alice` failed with exit code 6: usermod: group 'adm' does not exist"
        );
        assert!(err.output.is_some());
    }

    #[test]
    fn shadow_recorded_remove() {
        let accounts = fixture_accounts();
        let mut spec = user_spec("bob");
        spec.state = Presence::Absent.into();
        let mut after = accounts.clone();
        after.users.retain(|user| user.name != "bob");
        let mut runner = RecordedRunner::new().cmd("userdel bob", 0, "");
        let outcome = converge_user(
            &spec,
            false,
            Tools::Shadow,
            &accounts,
            &mut runner,
            &mut || Ok(after.clone()),
        )
        .expect("removes");
        assert_eq!(outcome.changes, vec!["removed user bob"]);
        let outcome = converge_user(
            &spec,
            false,
            Tools::Shadow,
            &after,
            &mut RecordedRunner::new(),
            &mut || Ok(after.clone()),
        )
        .expect("absent");
        assert!(!outcome.changed);
    }

    #[test]
    fn busybox_recorded_create_and_group_membership() {
        let accounts = fixture_accounts();
        let mut spec = user_spec("carol");
        spec.uid = Some(1200);
        spec.groups = groups(&["wheel"]);
        spec.create_home = false;
        spec.comment = Some("Carol".into());
        let mut after = accounts.clone();
        after.users.push(UserEntry {
            name: "carol".into(),
            uid: 1200,
            gid: 1200,
            comment: "Carol".into(),
            home: "/home/carol".into(),
            shell: "/bin/sh".into(),
        });
        after
            .groups
            .iter_mut()
            .filter(|group| group.name == "wheel")
            .for_each(|group| group.members.push("carol".into()));
        let mut runner = RecordedRunner::new()
            .expect(
                &["adduser", "-D", "-H", "-u", "1200", "-g", "Carol", "carol"],
                0,
                "",
                "",
            )
            .cmd("addgroup carol wheel", 0, "");
        let outcome = converge_user(
            &spec,
            false,
            Tools::Busybox,
            &accounts,
            &mut runner,
            &mut || Ok(after.clone()),
        )
        .expect("creates");
        assert_eq!(outcome.changes, vec!["created user carol"]);

        // Exact membership: busybox adds and removes one group at a time.
        let mut spec = user_spec("alice");
        spec.groups = groups(&["docker", "adm"]);
        let mut after = accounts.clone();
        for group in &mut after.groups {
            group.members.retain(|member| member != "alice");
            if group.name == "docker" || group.name == "adm" {
                group.members.push("alice".into());
            }
        }
        let mut runner = RecordedRunner::new().cmd("addgroup alice adm", 0, "").cmd(
            "delgroup alice wheel",
            0,
            "",
        );
        let outcome = converge_user(
            &spec,
            false,
            Tools::Busybox,
            &accounts,
            &mut runner,
            &mut || Ok(after.clone()),
        )
        .expect("changes groups");
        assert_eq!(outcome.changes, vec!["groups wheel,docker -> docker,adm"]);

        let mut spec = user_spec("alice");
        spec.shell = Some("/bin/bash".into());
        let err = converge_user(
            &spec,
            true,
            Tools::Busybox,
            &accounts,
            &mut RecordedRunner::new(),
            &mut || Ok(fixture_accounts()),
        )
        .expect_err("no usermod");
        assert!(
            err.message
                .contains("(shell /bin/sh -> /bin/bash) with busybox tools"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("hint: install shadow-utils"),
            "{}",
            err.message
        );
    }

    #[test]
    fn groups_recorded_for_both_tool_families() {
        let accounts = fixture_accounts();
        let mut after = accounts.clone();
        after.groups.push(GroupEntry {
            name: "app".into(),
            gid: 950,
            members: vec![],
        });
        let mut spec = group_spec("app", Some(950), Presence::Present);
        spec.system = true;
        let mut runner = RecordedRunner::new().cmd("groupadd -r -g 950 app", 0, "");
        let outcome = converge_group(
            &spec,
            false,
            Tools::Shadow,
            &accounts,
            &mut runner,
            &mut || Ok(after.clone()),
        )
        .expect("creates");
        assert_eq!(outcome.changes, vec!["created group app"]);
        let mut runner = RecordedRunner::new().cmd("addgroup -S -g 950 app", 0, "");
        converge_group(
            &spec,
            false,
            Tools::Busybox,
            &accounts,
            &mut runner,
            &mut || Ok(after.clone()),
        )
        .expect("creates with busybox");

        let spec = group_spec("docker", Some(990), Presence::Present);
        let outcome = converge_group(
            &spec,
            true,
            Tools::Shadow,
            &accounts,
            &mut RecordedRunner::new(),
            &mut || unreachable!(),
        )
        .expect("plans");
        assert_eq!(outcome.changes, vec!["gid 998 -> 990"]);
        let err = converge_group(
            &spec,
            true,
            Tools::Busybox,
            &accounts,
            &mut RecordedRunner::new(),
            &mut || unreachable!(),
        )
        .expect_err("no groupmod");
        assert!(
            err.message.contains("busybox has no groupmod"),
            "{}",
            err.message
        );

        let spec = group_spec("docker", None, Presence::Absent);
        let mut runner = RecordedRunner::new().expect(
            &["groupdel", "docker"],
            8,
            "",
            "groupdel: cannot remove the primary group of user 'dockerd'\n",
        );
        let err = converge_group(
            &spec,
            false,
            Tools::Shadow,
            &accounts,
            &mut runner,
            &mut || Ok(fixture_accounts()),
        )
        .expect_err("primary group");
        assert!(
            err.message
                .ends_with("cannot remove the primary group of user 'dockerd'"),
            "{}",
            err.message
        );
    }

    // ---- for real, as root, with throwaway accounts -----------------------------------------

    /// useradd/groupadd lock the account files; tests that change them take turns.
    static REAL_ACCOUNTS: Mutex<()> = Mutex::new(());

    const ACCOUNT_FILES: &[&str] = &["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"];

    fn snapshot() -> Vec<String> {
        ACCOUNT_FILES
            .iter()
            .map(|path| std::fs::read_to_string(path).unwrap_or_default())
            .collect()
    }

    fn require_root_with_shadow_utils() {
        let uid = Command::new("id").arg("-u").output().expect("run `id -u`");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "this test creates real accounts and must run as root"
        );
        assert!(
            program_exists("useradd"),
            "this test needs shadow-utils (useradd) on this machine"
        );
    }

    /// Removes the throwaway accounts however the test ends.
    struct Cleanup {
        users: Vec<String>,
        groups: Vec<String>,
        dirs: Vec<PathBuf>,
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            for user in &self.users {
                let _ = Command::new("userdel").arg(user).output();
            }
            for group in &self.groups {
                let _ = Command::new("groupdel").arg(group).output();
            }
            for dir in &self.dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    fn free_id(accounts: &Accounts, from: u32) -> u32 {
        (from..from + 4000)
            .find(|id| {
                !accounts
                    .users
                    .iter()
                    .any(|user| user.uid == *id || user.gid == *id)
                    && !accounts.groups.iter().any(|group| group.gid == *id)
            })
            .expect("a free id")
    }

    fn real_user(spec: &UserSpec, check: bool) -> Result<Outcome, ResourceError> {
        let facts = mop_protocol::Facts::default();
        converge_user_on_host(
            spec,
            &SystemContext {
                check,
                facts: &facts,
            },
            &mut SystemRunner,
        )
    }

    fn real_group(spec: &GroupSpec, check: bool) -> Result<Outcome, ResourceError> {
        let facts = mop_protocol::Facts::default();
        converge_group_on_host(
            spec,
            &SystemContext {
                check,
                facts: &facts,
            },
            &mut SystemRunner,
        )
    }

    #[test]
    fn shadow_real_group_create_change_gid_remove() {
        require_root_with_shadow_utils();
        let _turn = REAL_ACCOUNTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let name = format!("moptst_g{}", std::process::id());
        let _cleanup = Cleanup {
            users: vec![],
            groups: vec![name.clone()],
            dirs: vec![],
        };
        let accounts = Accounts::load().expect("load");
        let gid = free_id(&accounts, 61000);

        let spec = group_spec(&name, Some(gid), Presence::Present);
        let before = snapshot();
        let outcome = real_group(&spec, true).expect("check");
        assert_eq!(outcome.changes, vec![format!("created group {name}")]);
        assert_eq!(
            snapshot(),
            before,
            "check mode must not touch the account files"
        );

        let outcome = real_group(&spec, false).expect("create");
        assert_eq!(outcome.changes, vec![format!("created group {name}")]);
        assert_eq!(
            Accounts::load()
                .expect("load")
                .group(&name)
                .map(|group| group.gid),
            Some(gid)
        );
        assert!(!real_group(&spec, false).expect("again").changed);

        let new_gid = free_id(&Accounts::load().expect("load"), gid + 1);
        let spec = group_spec(&name, Some(new_gid), Presence::Present);
        let before = snapshot();
        assert_eq!(
            real_group(&spec, true).expect("check gid").changes,
            vec![format!("gid {gid} -> {new_gid}")]
        );
        assert_eq!(snapshot(), before);
        assert_eq!(
            real_group(&spec, false).expect("gid").changes,
            vec![format!("gid {gid} -> {new_gid}")]
        );
        assert!(!real_group(&spec, false).expect("again").changed);

        let spec = group_spec(&name, None, Presence::Absent);
        let before = snapshot();
        assert_eq!(
            real_group(&spec, true).expect("check absent").changes,
            vec![format!("removed group {name}")]
        );
        assert_eq!(snapshot(), before);
        assert_eq!(
            real_group(&spec, false).expect("remove").changes,
            vec![format!("removed group {name}")]
        );
        assert!(Accounts::load().expect("load").group(&name).is_none());
        assert!(!real_group(&spec, false).expect("again").changed);
    }

    #[test]
    fn shadow_real_user_create_modify_append_remove() {
        require_root_with_shadow_utils();
        let _turn = REAL_ACCOUNTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let pid = std::process::id();
        let name = format!("moptst_u{pid}");
        let (first, second) = (format!("moptst_a{pid}"), format!("moptst_b{pid}"));
        let home = PathBuf::from(format!("/tmp/moptst-home-{pid}"));
        let _cleanup = Cleanup {
            users: vec![name.clone()],
            groups: vec![name.clone(), first.clone(), second.clone()],
            dirs: vec![home.clone()],
        };
        for group in [&first, &second] {
            real_group(&group_spec(group, None, Presence::Present), false)
                .expect("supplementary group");
        }
        let uid = free_id(&Accounts::load().expect("load"), 62000);

        let mut spec = user_spec(&name);
        spec.uid = Some(uid);
        spec.shell = Some("/bin/sh".into());
        spec.groups = groups(&[&first]);
        spec.home = Some(home.display().to_string());
        spec.comment = Some("mop test".into());
        let before = snapshot();
        let outcome = real_user(&spec, true).expect("check create");
        assert_eq!(outcome.changes, vec![format!("created user {name}")]);
        assert_eq!(
            snapshot(),
            before,
            "check mode must not touch the account files"
        );
        assert!(!home.exists());

        let outcome = real_user(&spec, false).expect("create");
        assert_eq!(outcome.changes, vec![format!("created user {name}")]);
        assert_eq!(outcome.extra.get("uid"), Some(&Value::from(uid)));
        assert!(home.is_dir(), "create_home made the home directory");
        let accounts = Accounts::load().expect("load");
        let user = accounts.user(&name).expect("user exists");
        assert_eq!(
            (user.uid, user.shell.as_str(), user.comment.as_str()),
            (uid, "/bin/sh", "mop test")
        );
        assert_eq!(accounts.supplementary_groups(&name), vec![first.clone()]);
        assert!(!real_user(&spec, false).expect("again").changed);

        spec.shell = Some("/bin/bash".into());
        spec.groups = groups(&[&second]);
        let expected = vec![
            format!("groups {first} -> {second}"),
            "shell /bin/sh -> /bin/bash".to_string(),
        ];
        let before = snapshot();
        assert_eq!(
            real_user(&spec, true).expect("check modify").changes,
            expected
        );
        assert_eq!(
            snapshot(),
            before,
            "check mode must not touch the account files"
        );
        assert_eq!(real_user(&spec, false).expect("modify").changes, expected);
        let accounts = Accounts::load().expect("load");
        assert_eq!(
            accounts.user(&name).map(|user| user.shell.as_str()),
            Some("/bin/bash")
        );
        assert_eq!(accounts.supplementary_groups(&name), vec![second.clone()]);
        assert!(!real_user(&spec, false).expect("again").changed);

        spec.groups = groups(&[&first]);
        spec.append = true;
        let outcome = real_user(&spec, false).expect("append");
        assert_eq!(
            outcome.changes,
            vec![format!("groups {second} -> {second},{first}")]
        );
        let mut members = Accounts::load().expect("load").supplementary_groups(&name);
        members.sort();
        let mut expected_members = vec![first.clone(), second.clone()];
        expected_members.sort();
        assert_eq!(members, expected_members);
        assert!(!real_user(&spec, false).expect("again").changed);

        spec.state = Presence::Absent.into();
        let before = snapshot();
        assert_eq!(
            real_user(&spec, true).expect("check absent").changes,
            vec![format!("removed user {name}")]
        );
        assert_eq!(snapshot(), before);
        assert_eq!(
            real_user(&spec, false).expect("remove").changes,
            vec![format!("removed user {name}")]
        );
        assert!(Accounts::load().expect("load").user(&name).is_none());
        assert!(!real_user(&spec, false).expect("again").changed);
        assert!(
            Path::new(&home).exists(),
            "removing a user keeps its home directory"
        );
    }

    #[test]
    fn shadow_real_failure_carries_output() {
        require_root_with_shadow_utils();
        let _turn = REAL_ACCOUNTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let name = format!("moptst_f{}", std::process::id());
        let _cleanup = Cleanup {
            users: vec![name.clone()],
            groups: vec![name.clone()],
            dirs: vec![],
        };
        let mut spec = user_spec(&name);
        spec.create_home = false;
        spec.group = Some(format!("moptst_nogroup{}", std::process::id()));
        let err = real_user(&spec, false).expect_err("missing primary group");
        assert!(
            err.message.starts_with(&format!(
                "cannot change user `{name}`: `useradd -M -g moptst_nogroup"
            )),
            "{}",
            err.message
        );
        let output = err.output.expect("useradd output attached");
        assert!(output.stderr.contains("does not exist"), "{output:?}");
    }
}
