//! `mop_become_method` with the real programs: doas without a password (`moptest`, `permit
//! nopass`), doas with the login user's password (`moptestpw`, answered on a pty by the agent),
//! su with the target user's password (`moptestsu`); files end up owned by the user become, a
//! wrong password fails once in mop's words, the password is in no process's argv or
//! environment and in no output, and the ad hoc commands use doas or refuse what they cannot do.

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use mop_testhosts::{
    TestHostsBuilder, TEST_SUDO_PASSWORD, TEST_SUDO_PASSWORD_USER, TEST_SU_PASSWORD, TEST_SU_USER,
    TEST_USER,
};

use crate::security_secrets::{assert_watch_clean, ProcessWatch};
use crate::support::{
    agent_dir_leftovers, assert_no_orphaned_ssh, assert_not_leaked, cached_agents,
    processes_matching, run_mop, unique_name, JsonRun, Output, Sandbox,
};

/// A file owned by whoever the agent runs as, a command long enough for the process watch to
/// see it (its argv carries the marker), and a check that the agent has no terminal.
const BECOME_POLICY: &str = r#"
[[roles]]
name = "become"
groups = ["web"]

[[roles.resources]]
type = "file"
path = "@OUT@/{{ host.name }}.txt"
content = "written by {{ facts.user }} on {{ host.name }}\n"
mode = "0600"

[[roles.resources]]
type = "shell"
cmd = ": @MARKER@; sleep 0.6"

# No method leaves the agent a controlling terminal (doas's pty is given up at start).
[[roles.resources]]
type = "shell"
cmd = "if (: < /dev/tty) 2>/dev/null; then echo the agent has a controlling terminal; exit 1; fi"
"#;

/// The inventory additions of one case: log in as `login`, become `target` with `method`.
/// Returns the case's agent directory (in the login user's home).
fn become_vars(
    sandbox: &Sandbox,
    login: &str,
    method: &str,
    target: Option<&str>,
    password: Option<&str>,
) -> String {
    let target = target
        .map(|user| format!("mop_sudo_username = \"{user}\"\n"))
        .unwrap_or_default();
    let password = password
        .map(|password| format!("mop_sudo_password = \"{password}\"\n"))
        .unwrap_or_default();
    let agent_dir = format!("/home/{login}/.mop-e2e-{}", unique_name("become"));
    sandbox.set_inventory_extra(
        "",
        &format!(
            "[groups.web.vars]\nmop_ssh_username = \"{login}\"\nmop_sudo = true\nmop_become_method = \"{method}\"\n{target}{password}mop_agent_dir = \"{agent_dir}\"\n"
        ),
    );
    agent_dir
}

/// What `Sandbox::assert_hosts_clean` checks, for a case's own agent directory: at most the
/// cached agent, no process of it, no stray ssh.
fn assert_clean(agent_dir: &str) {
    let left = agent_dir_leftovers(Path::new(agent_dir));
    assert!(left.is_empty(), "left in `{agent_dir}`: {left:?}");
    assert!(cached_agents(Path::new(agent_dir)).len() <= 1);
    let processes = processes_matching(agent_dir);
    assert!(processes.is_empty(), "still running: {processes:?}");
    assert_no_orphaned_ssh();
}

fn uid_of(user: &str) -> u32 {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&user)).then(|| fields[2].parse().expect("a uid"))
        })
        .unwrap_or_else(|| panic!("no user `{user}`"))
}

fn assert_files_of(sandbox: &Sandbox, hosts: &[&str], user: &str) {
    for host in hosts {
        let path = sandbox.out.join(format!("{host}.txt"));
        let meta = std::fs::metadata(&path)
            .unwrap_or_else(|error| panic!("`{}`: {error}", path.display()));
        assert_eq!(meta.uid(), uid_of(user), "`{}` owner", path.display());
        let content = std::fs::read_to_string(&path).expect("read the file");
        assert_eq!(content, format!("written by {user} on {host}\n"));
        std::fs::remove_file(&path).expect("remove for the next case");
    }
}

fn host_error(run: &JsonRun, host: &str) -> String {
    run.host_summary(host)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Pushes with the process watch on, as JSON and as verbose text; both must succeed.
fn push_watched(sandbox: &Sandbox, secret: &str, what: &str) {
    let marker = unique_name("become-marker");
    let policy = sandbox.policy("become", &BECOME_POLICY.replace("@MARKER@", &marker));
    let markers = vec![marker];
    let watch = ProcessWatch::start(secret, &markers);
    let json = sandbox.push(&policy, &["--apply", "-v", "--diff"]);
    let text = sandbox.push_text(&policy, &["--apply", "-vv"]);
    let report = watch.finish();
    json.assert_exit(0);
    assert_eq!(text.exit, 0, "{}", text.describe());
    assert_watch_clean(&report, &markers, what);
    for (stream, output) in [
        ("stdout of --json", &json.stdout),
        ("stderr of --json", &json.stderr),
        ("stdout of -vv", &text.stdout),
        ("stderr of -vv", &text.stderr),
    ] {
        assert_not_leaked(secret, stream, output);
    }
}

#[test]
fn doas_with_and_without_a_password_writes_as_root() {
    let sandbox = Sandbox::start_as(
        "doas",
        TestHostsBuilder::new().hosts(2).group("web"),
        TEST_SUDO_PASSWORD_USER,
    );
    let policy = sandbox.policy("become", &BECOME_POLICY.replace("@MARKER@", "doas"));

    // `permit nopass moptest as root`: `doas -n`, nothing to send.
    let agent_dir = become_vars(&sandbox, TEST_USER, "doas", None, None);
    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(0);
    assert_files_of(&sandbox, &["host1", "host2"], "root");
    assert_clean(&agent_dir);

    // `permit moptestpw as root`: doas asks moptestpw's own password on a terminal.
    let agent_dir = become_vars(
        &sandbox,
        TEST_SUDO_PASSWORD_USER,
        "doas",
        None,
        Some(TEST_SUDO_PASSWORD),
    );
    push_watched(&sandbox, TEST_SUDO_PASSWORD, "a doas push with a password");
    assert_files_of(&sandbox, &["host1", "host2"], "root");
    assert_clean(&agent_dir);

    // Without the password doas is diagnosed as needing one; a wrong one fails once, clearly.
    become_vars(&sandbox, TEST_SUDO_PASSWORD_USER, "doas", None, None);
    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(1);
    let error = host_error(&run, "host1");
    assert!(
        error.contains(&format!(
            "doas on host1 needs a password for user {TEST_SUDO_PASSWORD_USER} to become root"
        )),
        "{error}\n{}",
        run.describe()
    );
    let wrong = "not-the-doas-password-4711";
    let agent_dir = become_vars(&sandbox, TEST_SUDO_PASSWORD_USER, "doas", None, Some(wrong));
    let run = sandbox.push(&policy, &["--apply", "-v"]);
    run.assert_exit(1);
    for host in ["host1", "host2"] {
        let error = host_error(&run, host);
        assert!(
            error.contains(&format!(
                "doas on {host} rejected the password for becoming root (login user {TEST_SUDO_PASSWORD_USER}); mop tried it once"
            )),
            "{error}\n{}",
            run.describe()
        );
        assert!(error.contains("hint: "), "{error}");
    }
    assert!(
        !run.stderr.contains("doas: Authentication failed"),
        "doas's own words reached the operator:\n{}",
        run.stderr
    );
    for secret in [wrong, TEST_SUDO_PASSWORD] {
        assert_not_leaked(secret, "stdout with a wrong password", &run.stdout);
        assert_not_leaked(secret, "stderr with a wrong password", &run.stderr);
    }
    assert_clean(&agent_dir);
}

#[test]
fn su_with_the_target_password_writes_as_that_user() {
    let sandbox = Sandbox::start("su", TestHostsBuilder::new().hosts(2).group("web"));
    let agent_dir = become_vars(
        &sandbox,
        TEST_USER,
        "su",
        Some(TEST_SU_USER),
        Some(TEST_SU_PASSWORD),
    );
    let shown = run_mop([
        OsStr::new("inventory"),
        OsStr::new("--host"),
        OsStr::new("host1"),
        OsStr::new("-i"),
        sandbox.inventory.as_os_str(),
    ]);
    assert_eq!(shown.exit, 0, "{}", shown.describe());
    assert!(
        shown.stdout.contains(&format!("(su to {TEST_SU_USER})"))
            && shown.stdout.contains("mop_become_method"),
        "{}",
        shown.describe()
    );
    assert_not_leaked(TEST_SU_PASSWORD, "mop inventory --host", &shown.stdout);
    push_watched(&sandbox, TEST_SU_PASSWORD, "an su push");
    assert_files_of(&sandbox, &["host1", "host2"], TEST_SU_USER);
    assert_clean(&agent_dir);

    let policy = sandbox.policy("become", &BECOME_POLICY.replace("@MARKER@", "su"));
    let wrong = "not-the-su-password-4711";
    become_vars(&sandbox, TEST_USER, "su", Some(TEST_SU_USER), Some(wrong));
    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(1);
    let error = host_error(&run, "host1");
    assert!(
        error.contains(&format!(
            "su on host1 rejected the password for becoming {TEST_SU_USER} (login user {TEST_USER}); mop tried it once"
        )),
        "{error}\n{}",
        run.describe()
    );
    assert!(error.contains("the password of moptestsu"), "{error}");
    assert_not_leaked(wrong, "stdout with a wrong password", &run.stdout);
    assert_not_leaked(wrong, "stderr with a wrong password", &run.stderr);
    assert!(
        !run.stderr.contains("Password:"),
        "su's prompt reached the operator:\n{}",
        run.stderr
    );

    // su to root: root's password is not known (never set here), so it fails, clearly.
    let agent_dir = become_vars(&sandbox, TEST_USER, "su", None, Some(TEST_SU_PASSWORD));
    let run = sandbox.push(&policy, &["--apply"]);
    run.assert_exit(1);
    let error = host_error(&run, "host1");
    assert!(
        error.contains("su on host1 rejected the password for becoming root")
            && error.contains("su to root needs root's password"),
        "{error}\n{}",
        run.describe()
    );
    assert_clean(&agent_dir);

    // su without a password is refused before any host is contacted.
    let logins = sandbox.logins("host1");
    become_vars(&sandbox, TEST_USER, "su", Some(TEST_SU_USER), None);
    let text = sandbox.push_text(&policy, &["--apply"]);
    assert_eq!(text.exit, 2, "{}", text.describe());
    assert!(
        text.stderr.contains(&format!(
            "host `host1` becomes `{TEST_SU_USER}` with `su`, which needs `{TEST_SU_USER}`'s password, but `mop_sudo_password` is not set"
        )) && text.stderr.contains("hint: "),
        "{}",
        text.describe()
    );
    assert_eq!(sandbox.logins("host1"), logins, "a host was contacted");
}

fn mop_run(sandbox: &Sandbox, args: &[&str]) -> Output {
    let mut all: Vec<std::ffi::OsString> = vec![
        "run".into(),
        "web".into(),
        "-i".into(),
        sandbox.inventory.clone().into(),
    ];
    all.extend(args.iter().map(Into::into));
    run_mop(all)
}

#[test]
fn mop_run_becomes_root_with_doas_and_refuses_what_it_cannot_do() {
    let sandbox = Sandbox::start("doas-run", TestHostsBuilder::new().hosts(1).group("web"));
    let agent_dir = become_vars(&sandbox, TEST_USER, "doas", None, None);
    let output = mop_run(&sandbox, &["--sudo", "--", "id -un"]);
    assert_eq!(output.exit, 0, "{}", output.describe());
    assert!(output.stdout.contains("root"), "{}", output.describe());

    // doas with a password and su need what ad hoc commands do not have: refused, no login.
    let logins = sandbox.logins("host1");
    let cases = [
        (
            "doas",
            TEST_SUDO_PASSWORD_USER,
            None,
            TEST_SUDO_PASSWORD,
            "doas with a password needs mop's agent on the host",
        ),
        (
            "su",
            TEST_USER,
            Some(TEST_SU_USER),
            TEST_SU_PASSWORD,
            "ad hoc commands do not run through su",
        ),
    ];
    for (method, login, target, password, expected) in cases {
        become_vars(&sandbox, login, method, target, Some(password));
        let output = mop_run(&sandbox, &["--sudo", "--", "id -un"]);
        assert_eq!(output.exit, 1, "{}", output.describe());
        let all = format!("{}{}", output.stdout, output.stderr);
        assert!(
            all.contains(&format!(
                "cannot become another user with {method} on host1: {expected}"
            )) && all.contains("hint: "),
            "{}",
            output.describe()
        );
        assert_not_leaked(password, "mop run output", &all);
    }
    assert_eq!(
        sandbox.logins("host1"),
        logins,
        "a refused host was contacted"
    );
    assert_clean(&agent_dir);
}
