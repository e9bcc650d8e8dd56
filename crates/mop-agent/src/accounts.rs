//! Users and groups read straight from `/etc/passwd` and `/etc/group`.
//!
//! The agent is linked statically and must behave the same whatever the host's libc, so it never
//! calls the C library's NSS functions (`getpwnam` and friends): a static glibc would try to
//! `dlopen` NSS modules of another glibc version. Local accounts are what configuration
//! management manages anyway; accounts that live only in LDAP/SSSD are not visible here.

use std::io;
use std::path::Path;

/// The file listing local users.
pub const PASSWD_PATH: &str = "/etc/passwd";
/// The file listing local groups.
pub const GROUP_PATH: &str = "/etc/group";

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    pub name: String,
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// The GECOS (comment) field.
    pub comment: String,
    pub home: String,
    pub shell: String,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    /// Supplementary members, by user name.
    pub members: Vec<String>,
}

/// Parses the text of a passwd file. Comments, blank lines, NIS `+`/`-` lines and malformed
/// lines are skipped: a broken line must not hide every other account.
pub fn parse_passwd(text: &str) -> Vec<UserEntry> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with(['+', '-']))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 7 {
                return None;
            }
            Some(UserEntry {
                name: fields[0].to_string(),
                uid: fields[2].parse().ok()?,
                gid: fields[3].parse().ok()?,
                comment: fields[4].to_string(),
                home: fields[5].to_string(),
                shell: fields[6].to_string(),
            })
        })
        .collect()
}

/// Parses the text of a group file, with the same tolerance as [`parse_passwd`].
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with(['+', '-']))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 {
                return None;
            }
            Some(GroupEntry {
                name: fields[0].to_string(),
                gid: fields[2].parse().ok()?,
                members: fields[3]
                    .split(',')
                    .filter(|member| !member.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// Every user in `path` (normally [`PASSWD_PATH`]). A missing file means no users.
pub fn read_users(path: &Path) -> io::Result<Vec<UserEntry>> {
    read_optional(path).map(|text| parse_passwd(&text))
}

/// Every group in `path` (normally [`GROUP_PATH`]). A missing file means no groups.
pub fn read_groups(path: &Path) -> io::Result<Vec<GroupEntry>> {
    read_optional(path).map(|text| parse_group(&text))
}

fn read_optional(path: &Path) -> io::Result<String> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(err) => Err(err),
    }
}

/// The local user called `name`.
pub fn lookup_user(name: &str) -> io::Result<Option<UserEntry>> {
    Ok(read_users(Path::new(PASSWD_PATH))?
        .into_iter()
        .find(|user| user.name == name))
}

/// The first local user with id `uid`.
pub fn lookup_uid(uid: u32) -> io::Result<Option<UserEntry>> {
    Ok(read_users(Path::new(PASSWD_PATH))?
        .into_iter()
        .find(|user| user.uid == uid))
}

/// The local group called `name`.
pub fn lookup_group(name: &str) -> io::Result<Option<GroupEntry>> {
    Ok(read_groups(Path::new(GROUP_PATH))?
        .into_iter()
        .find(|group| group.name == name))
}

/// The first local group with id `gid`.
pub fn lookup_gid(gid: u32) -> io::Result<Option<GroupEntry>> {
    Ok(read_groups(Path::new(GROUP_PATH))?
        .into_iter()
        .find(|group| group.gid == gid))
}

/// A user given as a name or a numeric id, resolved to a uid. `Ok(None)`: no such user.
pub fn resolve_uid(user: &str) -> io::Result<Option<u32>> {
    if let Some(entry) = lookup_user(user)? {
        return Ok(Some(entry.uid));
    }
    Ok(user.parse().ok())
}

/// A group given as a name or a numeric id, resolved to a gid. `Ok(None)`: no such group.
pub fn resolve_gid(group: &str) -> io::Result<Option<u32>> {
    if let Some(entry) = lookup_group(group)? {
        return Ok(Some(entry.gid));
    }
    Ok(group.parse().ok())
}

/// The name of `uid`, or the number when no local user has it.
pub fn user_display(uid: u32) -> String {
    match lookup_uid(uid) {
        Ok(Some(entry)) => entry.name,
        _ => uid.to_string(),
    }
}

/// The name of `gid`, or the number when no local group has it.
pub fn group_display(gid: u32) -> String {
    match lookup_gid(gid) {
        Ok(Some(entry)) => entry.name,
        _ => gid.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_parse_and_bad_lines_are_skipped() {
        let text = "root:x:0:0:root:/root:/bin/bash\n# comment\n\n+nis\nbroken:x:notanumber:0::/:/bin/sh\nshort:x:1\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n";
        let users = parse_passwd(text);
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].name, "root");
        assert_eq!(users[1].uid, 33);
        assert_eq!(users[1].home, "/var/www");
        assert_eq!(users[1].shell, "/usr/sbin/nologin");
    }

    #[test]
    fn group_members_split_on_commas() {
        let groups = parse_group("sudo:x:27:alice,bob\nempty:x:100:\nbad:x:y:\n");
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups[0].members,
            vec!["alice".to_string(), "bob".to_string()]
        );
        assert!(groups[1].members.is_empty());
    }

    #[test]
    fn the_host_has_a_root_user_and_group() {
        // Every Linux host (and container) this agent targets has uid 0 in /etc/passwd.
        assert_eq!(
            lookup_uid(0).expect("readable").map(|user| user.name),
            Some("root".to_string())
        );
        assert_eq!(resolve_gid("root").expect("readable"), Some(0));
        assert_eq!(resolve_uid("4242").expect("readable"), Some(4242));
        assert_eq!(resolve_uid("no-such-user-here").expect("readable"), None);
    }
}
