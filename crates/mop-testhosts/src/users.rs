//! The four local test users, their sudoers drop-in and their doas rules, created idempotently
//! under a file lock.
//!
//! `moptest` has passwordless sudo and doas; `moptestpw` must type [`TEST_SUDO_PASSWORD`] every
//! time, for sudo and for doas; `moptestnosudo` has no sudoers or doas rule at all;
//! `moptestsu` is the target of `su` tests, with the password [`TEST_SU_PASSWORD`] (root's own
//! password is never touched, so su to root fails as it should).
//! Both log in with the run's client key only (sshd has password authentication off unless a
//! test asks for it). Their homes are real and shared by every test host: all hosts are this
//! machine, so "a file on host3" is a file on this machine.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::system::{find_tool, lock_dir, require_root, run, FileLock};
use crate::Error;

/// The user every test host logs in as by default; passwordless sudo.
pub const TEST_USER: &str = "moptest";
/// A second user whose sudo requires [`TEST_SUDO_PASSWORD`] (no cached credentials).
pub const TEST_SUDO_PASSWORD_USER: &str = "moptestpw";
/// A third user with no sudo rights at all (no sudoers rule), who logs in with the key only.
pub const TEST_NO_SUDO_USER: &str = "moptestnosudo";
/// The login and sudo password of [`TEST_SUDO_PASSWORD_USER`].
pub const TEST_SUDO_PASSWORD: &str = "mop-test-sudo-password";
/// A fourth user, never logged in as: `su` becomes it with [`TEST_SU_PASSWORD`].
pub const TEST_SU_USER: &str = "moptestsu";
/// The password of [`TEST_SU_USER`].
pub const TEST_SU_PASSWORD: &str = "mop-test-su-password";
/// doas's configuration; this crate owns the block between its markers (see [`doas_block`]).
pub const DOAS_CONF: &str = "/etc/doas.conf";
/// The sudoers drop-in this crate owns.
pub const SUDOERS_DROP_IN: &str = "/etc/sudoers.d/mop-testhosts";

const LOGIN_SHELL: &str = "/bin/bash";

/// The exact sudoers drop-in; sudo ignores files in sudoers.d whose name contains a dot, which
/// is why the temporary copy we validate is called `.mop-testhosts.tmp`.
fn sudoers_text() -> String {
    format!(
        "# Managed by mop-testhosts (crates/mop-testhosts): throwaway users for mop's end-to-end tests.\n\
         # {TEST_USER}: passwordless sudo. {TEST_SUDO_PASSWORD_USER}: sudo asks for the password every time.\n\
         Defaults:{TEST_USER} !requiretty, lecture=never\n\
         Defaults:{TEST_SUDO_PASSWORD_USER} !requiretty, lecture=never, timestamp_timeout=0\n\
         {TEST_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n\
         {TEST_SUDO_PASSWORD_USER} ALL=(ALL:ALL) ALL\n"
    )
}

const DOAS_BEGIN: &str =
    "# BEGIN mop-testhosts (crates/mop-testhosts): throwaway users for mop's end-to-end tests";
const DOAS_END: &str = "# END mop-testhosts";

/// The doas rules of the test users: `moptest` without a password, `moptestpw` with its own,
/// each as root and as [`TEST_SU_USER`].
fn doas_block() -> String {
    format!(
        "{DOAS_BEGIN}\n\
         permit nopass {TEST_USER} as root\n\
         permit nopass {TEST_USER} as {TEST_SU_USER}\n\
         permit {TEST_SUDO_PASSWORD_USER} as root\n\
         permit {TEST_SUDO_PASSWORD_USER} as {TEST_SU_USER}\n\
         {DOAS_END}\n"
    )
}

/// `current` with this crate's block replaced by (or, when missing, followed by) [`doas_block`];
/// other lines stay as they are.
fn doas_conf_with_block(current: &str) -> String {
    let mut kept = String::new();
    let mut inside = false;
    for line in current.lines() {
        if line == DOAS_BEGIN {
            inside = true;
        } else if line == DOAS_END {
            inside = false;
        } else if !inside {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept + &doas_block()
}

/// What [`ensure_test_users`] had to change; empty when everything was already in place.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UserSetupReport {
    /// One line per change, e.g. "created user `moptest`".
    pub changes: Vec<String>,
}

/// One line of /etc/passwd.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    uid: u32,
    gid: u32,
    home: PathBuf,
    shell: String,
}

fn parse_passwd(text: &str, user: &str) -> Option<PasswdEntry> {
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() != 7 || fields[0] != user {
            return None;
        }
        Some(PasswdEntry {
            uid: fields[2].parse().ok()?,
            gid: fields[3].parse().ok()?,
            home: PathBuf::from(fields[5]),
            shell: fields[6].to_owned(),
        })
    })
}

fn shadow_password_field(text: &str, user: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == user).then(|| fields.next().unwrap_or("").to_owned())
    })
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|error| Error::io("read", path, error))
}

/// Creates or repairs `moptest`, `moptestpw` and the sudoers drop-in. Safe to call from many
/// processes at once (serialised by `flock` on /run/mop-testhosts.lock) and quick when nothing
/// needs doing (it only reads /etc/passwd, /etc/shadow and the drop-in).
pub fn ensure_test_users() -> Result<UserSetupReport, Error> {
    require_root()?;
    let _lock = FileLock::acquire(&lock_dir().join("mop-testhosts.lock"))?;
    let mut report = UserSetupReport::default();
    ensure_user(TEST_USER, None, &mut report)?;
    ensure_user(
        TEST_SUDO_PASSWORD_USER,
        Some(TEST_SUDO_PASSWORD),
        &mut report,
    )?;
    ensure_user(TEST_NO_SUDO_USER, None, &mut report)?;
    ensure_user(TEST_SU_USER, Some(TEST_SU_PASSWORD), &mut report)?;
    ensure_sudoers(&mut report)?;
    ensure_doas_conf(&mut report)?;
    Ok(report)
}

fn ensure_user(
    user: &str,
    password: Option<&str>,
    report: &mut UserSetupReport,
) -> Result<(), Error> {
    let home = PathBuf::from("/home").join(user);
    let passwd_path = Path::new("/etc/passwd");
    let mut created = false;
    let entry = match parse_passwd(&read(passwd_path)?, user) {
        Some(entry) => entry,
        None => {
            let useradd = find_tool("useradd")?;
            let args: [&OsStr; 7] = [
                "--create-home".as_ref(),
                "--home-dir".as_ref(),
                home.as_os_str(),
                "--shell".as_ref(),
                LOGIN_SHELL.as_ref(),
                "--user-group".as_ref(),
                user.as_ref(),
            ];
            run(&useradd, &args, None)?;
            report.changes.push(format!("created user `{user}`"));
            created = true;
            parse_passwd(&read(passwd_path)?, user).ok_or_else(|| Error::UserMismatch {
                user: user.to_owned(),
                problem: "is still missing from /etc/passwd after useradd".to_owned(),
            })?
        }
    };
    if entry.home != home {
        return Err(Error::UserMismatch {
            user: user.to_owned(),
            problem: format!(
                "has home `{}` instead of `{}`",
                entry.home.display(),
                home.display()
            ),
        });
    }
    if entry.shell != LOGIN_SHELL {
        let usermod = find_tool("usermod")?;
        run(
            &usermod,
            &["--shell".as_ref(), LOGIN_SHELL.as_ref(), user.as_ref()],
            None,
        )?;
        report
            .changes
            .push(format!("set login shell of `{user}` to {LOGIN_SHELL}"));
    }
    ensure_home(&home, &entry, report)?;

    let shadow = read(Path::new("/etc/shadow"))?;
    let field = shadow_password_field(&shadow, user).unwrap_or_default();
    match password {
        // sshd without PAM refuses every login, keys included, for a locked ("!...") account;
        // "*" means "no password can match" without locking.
        None if field.is_empty() || field.starts_with('!') => {
            let usermod = find_tool("usermod")?;
            run(
                &usermod,
                &["--password".as_ref(), "*".as_ref(), user.as_ref()],
                None,
            )?;
            report.changes.push(format!(
                "unlocked `{user}` for key login (password field `*`)"
            ));
        }
        Some(password) if created || !field.starts_with('$') => {
            let chpasswd = find_tool("chpasswd")?;
            run(
                &chpasswd,
                &[],
                Some(format!("{user}:{password}\n").as_bytes()),
            )?;
            report.changes.push(format!("set the password of `{user}`"));
        }
        _ => {}
    }
    Ok(())
}

fn ensure_home(
    home: &Path,
    entry: &PasswdEntry,
    report: &mut UserSetupReport,
) -> Result<(), Error> {
    if home.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(home).map_err(|error| Error::io("create home", home, error))?;
    std::os::unix::fs::chown(home, Some(entry.uid), Some(entry.gid))
        .map_err(|error| Error::io("chown home", home, error))?;
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o755))
        .map_err(|error| Error::io("chmod home", home, error))?;
    report
        .changes
        .push(format!("recreated home `{}`", home.display()));
    Ok(())
}

fn ensure_sudoers(report: &mut UserSetupReport) -> Result<(), Error> {
    let target = Path::new(SUDOERS_DROP_IN);
    let wanted = sudoers_text();
    let current = std::fs::read_to_string(target).ok();
    let mode_ok = target
        .metadata()
        .map(|meta| meta.permissions().mode() & 0o777 == 0o440)
        .unwrap_or(false);
    if current.as_deref() == Some(wanted.as_str()) && mode_ok {
        return Ok(());
    }
    let directory = target.parent().expect("the drop-in path has a parent");
    std::fs::create_dir_all(directory).map_err(|error| Error::io("create", directory, error))?;
    let staging = directory.join(".mop-testhosts.tmp");
    std::fs::write(&staging, &wanted).map_err(|error| Error::io("write", &staging, error))?;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o440))
        .map_err(|error| Error::io("chmod", &staging, error))?;
    let visudo = find_tool("visudo")?;
    if let Err(error) = run(&visudo, &["-cf".as_ref(), staging.as_os_str()], None) {
        let _ = std::fs::remove_file(&staging);
        return Err(error);
    }
    std::fs::rename(&staging, target).map_err(|error| Error::io("install", target, error))?;
    report.changes.push(format!("wrote `{SUDOERS_DROP_IN}`"));
    Ok(())
}

/// doas refuses a configuration that is not root's or that others can write; 0600 like
/// Debian's example. Written through a temporary file and a rename.
fn ensure_doas_conf(report: &mut UserSetupReport) -> Result<(), Error> {
    let target = Path::new(DOAS_CONF);
    let current = std::fs::read_to_string(target).unwrap_or_default();
    let wanted = doas_conf_with_block(&current);
    let mode_ok = target
        .metadata()
        .map(|meta| meta.permissions().mode() & 0o777 == 0o600)
        .unwrap_or(false);
    if current == wanted && mode_ok {
        return Ok(());
    }
    let staging = Path::new("/etc/.doas.conf.mop-testhosts.tmp");
    std::fs::write(staging, &wanted).map_err(|error| Error::io("write", staging, error))?;
    std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o600))
        .map_err(|error| Error::io("chmod", staging, error))?;
    // `doas -C` parses a configuration without running anything; skipped where doas is missing.
    if let Ok(doas) = find_tool("doas") {
        if let Err(error) = run(&doas, &["-C".as_ref(), staging.as_os_str()], None) {
            let _ = std::fs::remove_file(staging);
            return Err(error);
        }
    }
    std::fs::rename(staging, target).map_err(|error| Error::io("install", target, error))?;
    report
        .changes
        .push(format!("wrote the mop-testhosts rules in `{DOAS_CONF}`"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_are_matched_by_exact_name() {
        let text = "moptestx:x:1:1::/home/moptestx:/bin/sh\nmoptest:x:1001:1002:,,,:/home/moptest:/bin/bash\n";
        let entry = parse_passwd(text, "moptest").expect("present");
        assert_eq!(entry.uid, 1001);
        assert_eq!(entry.gid, 1002);
        assert_eq!(entry.home, PathBuf::from("/home/moptest"));
        assert_eq!(entry.shell, "/bin/bash");
        assert_eq!(parse_passwd(text, "moptes"), None);
        assert_eq!(parse_passwd("broken:line\n", "broken"), None);
    }

    #[test]
    fn shadow_field_is_the_second_column() {
        let text = "moptest:*:19000:0:99999:7:::\nmoptestpw:$y$j9T$abc:19000::::::\n";
        assert_eq!(shadow_password_field(text, "moptest").as_deref(), Some("*"));
        assert_eq!(
            shadow_password_field(text, "moptestpw").as_deref(),
            Some("$y$j9T$abc")
        );
        assert_eq!(shadow_password_field(text, "nobody"), None);
    }

    #[test]
    fn the_doas_block_replaces_itself_and_keeps_other_rules() {
        let first = doas_conf_with_block("permit :wheel\n");
        assert!(first.starts_with("permit :wheel\n# BEGIN mop-testhosts"));
        assert!(first.contains("permit nopass moptest as root\n"));
        assert!(first.contains("permit moptestpw as root\n"));
        assert!(!first.contains("nopass moptestpw"));
        assert_eq!(doas_conf_with_block(&first), first, "idempotent");
        assert_eq!(doas_conf_with_block(""), doas_block());
    }

    #[test]
    fn sudoers_grants_nopasswd_only_to_the_first_user() {
        let text = sudoers_text();
        assert!(text.contains("moptest ALL=(ALL:ALL) NOPASSWD: ALL\n"));
        assert!(text.contains("moptestpw ALL=(ALL:ALL) ALL\n"));
        assert!(!text.contains("moptestpw ALL=(ALL:ALL) NOPASSWD"));
        assert!(!text.contains(" requiretty"));
    }
}
