//! The `mount` resource: a filesystem's fstab entry (`/etc/fstab` unless `fstab` says
//! otherwise) and whether it is mounted. The entry is found by its mount point; the fstab file
//! is rewritten atomically with every other line kept as it was. Mounting runs `mount` with the
//! entry's fields on its command line (so an fstab other than the system's works too), and
//! whether something is mounted is read from `/proc/self/mountinfo`.

use std::fs;
use std::path::Path;

use mop_protocol::{MountSpec, MountState, DEFAULT_FSTAB};

use super::file::absolute_path;
use crate::diff::content_diff;
use crate::fsutil::{self, io_error};
use crate::outcome::{Outcome, ResourceError, Runner};
use crate::system::run_change;

const MOUNTINFO: &str = "/proc/self/mountinfo";

pub fn converge(
    spec: &MountSpec,
    check: bool,
    diff: bool,
    runner: &mut dyn Runner,
) -> Result<Outcome, ResourceError> {
    let path_text = spec.path.trim_end_matches('/');
    let path_text = if path_text.is_empty() { "/" } else { path_text };
    let path = absolute_path(path_text)?;
    let state = spec.state.resolved();
    let fstab_text = spec.fstab.as_deref().unwrap_or(DEFAULT_FSTAB);
    let fstab = absolute_path(fstab_text)?;

    let wanted_entry = match state {
        MountState::Mounted | MountState::Present => Some(Entry::from_spec(spec, path_text)?),
        MountState::Unmounted | MountState::Absent => None,
    };

    let existing = fsutil::read_optional(fstab)?;
    let old_text = match &existing {
        Some(bytes) => std::str::from_utf8(bytes).map_err(|_| {
            ResourceError::new(format!(
                "`{}` is not UTF-8 text; refusing to edit it",
                fstab.display()
            ))
        })?,
        None => "",
    };
    let edited = match (state, &wanted_entry) {
        (_, Some(entry)) => set_entry(old_text, path_text, &entry.line()),
        (MountState::Absent, None) => remove_entry(old_text, path_text),
        // `unmounted` leaves fstab as it is.
        _ => None,
    };

    let mounted = is_mounted(path_text)?;
    let mut changes: Vec<String> = Vec::new();
    if let Some((_, change)) = &edited {
        changes.push(format!("`{}`: {change}", fstab.display()));
    }
    enum Action {
        Mount,
        Remount,
        Unmount,
    }
    let action = match (state, mounted) {
        (MountState::Mounted, false) => Some(Action::Mount),
        // A changed entry of a mounted filesystem takes effect through a remount (new options).
        (MountState::Mounted, true) if edited.is_some() => Some(Action::Remount),
        (MountState::Unmounted | MountState::Absent, true) => Some(Action::Unmount),
        _ => None,
    };
    match action {
        Some(Action::Mount) => changes.push(format!("mounted `{path_text}`")),
        Some(Action::Remount) => changes.push(format!("remounted `{path_text}`")),
        Some(Action::Unmount) => changes.push(format!("unmounted `{path_text}`")),
        None => {}
    }
    if changes.is_empty() {
        return Ok(Outcome::unchanged());
    }
    let mut outcome = Outcome::changed(changes);
    if let (true, Some((new_text, _))) = (diff, &edited) {
        outcome.diff = Some(content_diff(
            fstab_text,
            existing.as_deref(),
            new_text.as_bytes(),
        ));
    }
    if check {
        return Ok(outcome);
    }
    // fstab first: a mount that then fails leaves the entry the operator asked for, and the
    // next run retries the mount.
    if let Some((new_text, _)) = &edited {
        fsutil::write_config_file(fstab, new_text, existing.is_some())?;
    }
    let mut output = None;
    match (action, &wanted_entry) {
        (Some(Action::Mount), Some(entry)) => {
            if fsutil::symlink_metadata(path)?.is_none() {
                fs::create_dir_all(path)
                    .map_err(|err| io_error("cannot create the mount point", path, &err))?;
            }
            output = Some(run_change(
                runner,
                &[
                    "mount",
                    "-t",
                    &entry.fstype,
                    "-o",
                    &entry.opts,
                    "--",
                    &entry.src,
                    path_text,
                ],
            )?);
        }
        (Some(Action::Remount), Some(entry)) => {
            let opts = format!("remount,{}", entry.opts);
            output = Some(run_change(
                runner,
                &["mount", "-o", &opts, "--", path_text],
            )?);
        }
        (Some(Action::Unmount), _) => {
            output = Some(run_change(runner, &["umount", "--", path_text])?);
        }
        _ => {}
    }
    outcome.output = output;
    Ok(outcome)
}

/// One fstab entry, its fields unescaped.
struct Entry {
    src: String,
    path: String,
    fstype: String,
    opts: String,
    dump: u32,
    passno: u32,
}

impl Entry {
    fn from_spec(spec: &MountSpec, path: &str) -> Result<Entry, ResourceError> {
        let required = |field: &str, value: &Option<String>| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_string)
                .ok_or_else(|| {
                    ResourceError::new(format!(
                        "`{field}` is required when the filesystem is mounted or present"
                    ))
                })
        };
        let entry = Entry {
            src: required("src", &spec.src)?,
            path: path.to_string(),
            fstype: required("fstype", &spec.fstype)?,
            opts: spec
                .opts
                .as_deref()
                .map(str::trim)
                .filter(|opts| !opts.is_empty())
                .unwrap_or("defaults")
                .to_string(),
            dump: spec.dump.unwrap_or(0),
            passno: spec.passno.unwrap_or(0),
        };
        // A leading `-` would reach `mount` as an option; whitespace is escaped in fstab but
        // `fstype` and `opts` never hold it legitimately.
        for (field, value) in [("fstype", &entry.fstype), ("opts", &entry.opts)] {
            if value.starts_with('-') || value.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(ResourceError::new(format!(
                    "invalid `{field}` `{value}`: expected a word without spaces, not starting with `-`"
                )));
            }
        }
        if entry.src.chars().any(char::is_control) {
            return Err(ResourceError::new("`src` contains a control character"));
        }
        Ok(entry)
    }

    fn line(&self) -> String {
        format!(
            "{} {} {} {} {} {}",
            escape(&self.src),
            escape(&self.path),
            escape(&self.fstype),
            escape(&self.opts),
            self.dump,
            self.passno
        )
    }
}

/// fstab and mountinfo write space, tab, newline and backslash as octal escapes.
fn escape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let digits = bytes.get(index + 1..index + 4);
        if let (b'\\', Some(digits)) = (bytes[index], digits) {
            if digits
                .iter()
                .all(|digit| (b'0'..=b'3').contains(&digits[0]) && (b'0'..=b'7').contains(digit))
            {
                out.push(
                    digits
                        .iter()
                        .fold(0u8, |value, digit| value * 8 + (digit - b'0')),
                );
                index += 4;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount point of an fstab line, or `None` for comments and blanks.
fn entry_mount_point(line: &str) -> Option<String> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    let mount_point = trimmed.split_whitespace().nth(1)?;
    let unescaped = unescape(mount_point);
    let unescaped = unescaped.trim_end_matches('/');
    Some(if unescaped.is_empty() {
        "/".to_string()
    } else {
        unescaped.to_string()
    })
}

fn lines_of(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

fn render(lines: &[String]) -> String {
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    text
}

/// The file with `path`'s entry set to `line` (the first one replaced, later duplicates
/// removed, or the line appended); `None` when it already is.
fn set_entry(text: &str, path: &str, line: &str) -> Option<(String, String)> {
    let mut lines = lines_of(text);
    let matching: Vec<usize> = (0..lines.len())
        .filter(|index| entry_mount_point(&lines[*index]).as_deref() == Some(path))
        .collect();
    let change = match matching.first() {
        None => {
            lines.push(line.to_string());
            "added the entry".to_string()
        }
        Some(&first) => {
            let same = lines[first].split_whitespace().collect::<Vec<_>>()
                == line.split_whitespace().collect::<Vec<_>>();
            if same && matching.len() == 1 {
                return None;
            }
            lines[first] = line.to_string();
            for index in matching.iter().skip(1).rev() {
                lines.remove(*index);
            }
            format!("replaced the entry on line {}", first + 1)
        }
    };
    Some((render(&lines), change))
}

fn remove_entry(text: &str, path: &str) -> Option<(String, String)> {
    let mut lines = lines_of(text);
    let before = lines.len();
    lines.retain(|line| entry_mount_point(line).as_deref() != Some(path));
    let removed = before - lines.len();
    if removed == 0 {
        return None;
    }
    let noun = if removed == 1 { "entry" } else { "entries" };
    Some((render(&lines), format!("removed {removed} {noun}")))
}

/// Whether something is mounted on `path`, from the kernel's mount table.
fn is_mounted(path: &str) -> Result<bool, ResourceError> {
    let table = fs::read_to_string(MOUNTINFO)
        .map_err(|err| io_error("cannot read", Path::new(MOUNTINFO), &err))?;
    Ok(mounted_in(&table, path))
}

fn mounted_in(mountinfo: &str, path: &str) -> bool {
    // The fifth field is the mount point.
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mount_point| unescape(mount_point) == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_set_replaced_and_removed_by_mount_point() {
        let text = "# static\nUUID=1 / ext4 defaults 0 1\ntmpfs /srv/a tmpfs size=1m 0 0\n";
        let line = "tmpfs /srv/a tmpfs size=2m 0 0";
        let (new_text, change) = set_entry(text, "/srv/a", line).expect("changes");
        assert_eq!(
            new_text,
            "# static\nUUID=1 / ext4 defaults 0 1\ntmpfs /srv/a tmpfs size=2m 0 0\n"
        );
        assert_eq!(change, "replaced the entry on line 3");
        assert_eq!(set_entry(&new_text, "/srv/a", line), None);
        assert_eq!(
            set_entry("", "/srv/b", "x /srv/b tmpfs defaults 0 0"),
            Some((
                "x /srv/b tmpfs defaults 0 0\n".to_string(),
                "added the entry".to_string()
            ))
        );
        assert_eq!(
            remove_entry(&new_text, "/srv/a"),
            Some((
                "# static\nUUID=1 / ext4 defaults 0 1\n".to_string(),
                "removed 1 entry".to_string()
            ))
        );
        assert_eq!(remove_entry(text, "/srv/c"), None);
    }

    #[test]
    fn spaces_are_escaped_both_ways() {
        assert_eq!(escape("/mnt/my disk"), "/mnt/my\\040disk");
        assert_eq!(unescape("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(
            entry_mount_point("a /mnt/my\\040disk/ ext4 defaults 0 0").as_deref(),
            Some("/mnt/my disk")
        );
        let info = "36 35 98:0 / /mnt/my\\040disk rw,noatime master:1 - ext3 /dev/root rw";
        assert!(mounted_in(info, "/mnt/my disk"));
        assert!(!mounted_in(info, "/mnt/my"));
    }

    #[test]
    fn option_like_fields_are_refused() {
        let spec = MountSpec {
            path: "/srv/x".into(),
            src: Some("tmpfs".into()),
            fstype: Some("-oexec".into()),
            opts: None,
            dump: None,
            passno: None,
            state: MountState::Present.into(),
            fstab: None,
        };
        let err = Entry::from_spec(&spec, "/srv/x").err().expect("refused");
        assert!(err.message.contains("invalid `fstype`"), "{err}");
    }
}
