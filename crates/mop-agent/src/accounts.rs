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

/// Fields of a passwd line: name, password, uid, gid, comment, home, shell.
const PASSWD_FIELDS: usize = 7;
/// Fields of a group line: name, password, gid, members.
const GROUP_FIELDS: usize = 4;

/// Parses the text of a passwd file. Comments, blank lines, NIS `+`/`-` lines and malformed
/// lines are skipped: a broken line must not hide every other account.
pub fn parse_passwd(text: &str) -> Vec<UserEntry> {
    parse_lenient(text, user_from_fields)
}

/// Parses the text of a group file, with the same tolerance as [`parse_passwd`].
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    parse_lenient(text, group_from_fields)
}

/// Parses the text of [`PASSWD_PATH`] for code that changes accounts and so must not misjudge
/// them: any malformed line is an error naming the file and line.
pub fn parse_passwd_strict(text: &str) -> Result<Vec<UserEntry>, String> {
    parse_strict(text, PASSWD_PATH, PASSWD_FIELDS, user_from_fields)
}

/// Parses the text of [`GROUP_PATH`], as strictly as [`parse_passwd_strict`].
pub fn parse_group_strict(text: &str) -> Result<Vec<GroupEntry>, String> {
    parse_strict(text, GROUP_PATH, GROUP_FIELDS, group_from_fields)
}

/// Why one record could not become an entry.
enum FieldError<'a> {
    /// The line has fewer fields than the format.
    TooFew,
    /// A numeric field (`what` is `uid` or `gid`) holds something else.
    NotANumber { what: &'static str, text: &'a str },
}

/// The one mapping from the fields of a passwd line to an entry, shared by both parsers.
/// Extra trailing fields are ignored here; the strict parser rejects them before.
fn user_from_fields<'a>(fields: &[&'a str]) -> Result<UserEntry, FieldError<'a>> {
    let [name, _password, uid, gid, comment, home, shell, ..] = *fields else {
        return Err(FieldError::TooFew);
    };
    Ok(UserEntry {
        name: name.to_string(),
        uid: number(uid, "uid")?,
        gid: number(gid, "gid")?,
        comment: comment.to_string(),
        home: home.to_string(),
        shell: shell.to_string(),
    })
}

/// The one mapping from the fields of a group line to an entry, shared by both parsers.
fn group_from_fields<'a>(fields: &[&'a str]) -> Result<GroupEntry, FieldError<'a>> {
    let [name, _password, gid, members, ..] = *fields else {
        return Err(FieldError::TooFew);
    };
    Ok(GroupEntry {
        name: name.to_string(),
        gid: number(gid, "gid")?,
        members: members
            .split(',')
            .map(str::trim)
            .filter(|member| !member.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

fn number<'a>(text: &'a str, what: &'static str) -> Result<u32, FieldError<'a>> {
    text.parse()
        .map_err(|_| FieldError::NotANumber { what, text })
}

/// [`user_from_fields`] or [`group_from_fields`].
type FieldMapping<T> = for<'a> fn(&[&'a str]) -> Result<T, FieldError<'a>>;

/// `(line number, fields)` of each record. Comments, blank lines and NIS `+`/`-` entries are
/// not records.
fn records(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with(['#', '+', '-']))
        .map(|(index, line)| (index + 1, line.split(':').collect()))
}

fn parse_lenient<T>(text: &str, map: FieldMapping<T>) -> Vec<T> {
    records(text)
        .filter_map(|(_, fields)| map(&fields).ok())
        .collect()
}

fn parse_strict<T>(
    text: &str,
    path: &str,
    field_count: usize,
    map: FieldMapping<T>,
) -> Result<Vec<T>, String> {
    let wrong_count = |line_number: usize, found: usize| {
        format!("`{path}` line {line_number}: expected {field_count} fields separated by `:`, found {found}")
    };
    // Every line's shape is checked before any value, so a file with several problems reports
    // the first misshapen line, as users of this parser have always seen.
    let records: Vec<(usize, Vec<&str>)> = records(text).collect();
    if let Some((line_number, fields)) = records
        .iter()
        .find(|(_, fields)| fields.len() != field_count)
    {
        return Err(wrong_count(*line_number, fields.len()));
    }
    records
        .iter()
        .map(|(line_number, fields)| {
            map(fields).map_err(|err| match err {
                FieldError::TooFew => wrong_count(*line_number, fields.len()),
                FieldError::NotANumber { what, text } => {
                    format!("`{path}` line {line_number}: {what} `{text}` is not a number")
                }
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
    fn strict_parsers_agree_with_lenient_ones_on_good_files() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n# comment\n  \n-nis\nbob:x:1001:100:Bob:/home/bob:/bin/sh\n";
        let group = "wheel:x:10: alice , bob,\n+nis\nusers:x:100:\n";
        assert_eq!(parse_passwd_strict(passwd), Ok(parse_passwd(passwd)));
        assert_eq!(parse_group_strict(group), Ok(parse_group(group)));
        assert_eq!(
            parse_group(group)[0].members,
            vec!["alice".to_string(), "bob".to_string()]
        );
    }

    #[test]
    fn strict_parsers_name_file_and_line() {
        fn check(result: Result<impl std::fmt::Debug, String>, expected: &str) {
            assert_eq!(result.expect_err("malformed").as_str(), expected);
        }
        // Lenient lookups take the first seven fields of a longer line; the strict parser refuses it.
        let long = "root:x:0:0:root:/root:/bin/sh:extra\n";
        assert_eq!(parse_passwd(long).len(), 1);
        check(
            parse_passwd_strict(long),
            "`/etc/passwd` line 1: expected 7 fields separated by `:`, found 8",
        );
        check(
            parse_passwd_strict("a:x:1:gid:::\n"),
            "`/etc/passwd` line 1: gid `gid` is not a number",
        );
        // Shapes are checked before values: the misshapen line 2 is reported, not line 1's uid.
        check(
            parse_passwd_strict("a:x:one:1:::\nb:x:2\n"),
            "`/etc/passwd` line 2: expected 7 fields separated by `:`, found 3",
        );
        check(
            parse_group_strict("# groups\nwheel:x:10\n"),
            "`/etc/group` line 2: expected 4 fields separated by `:`, found 3",
        );
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
