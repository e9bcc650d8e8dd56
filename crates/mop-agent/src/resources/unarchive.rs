//! The `unarchive` resource: a tar, tar.gz, tar.xz or zip archive (a path on the host, or a
//! file the controller serves) unpacked into a directory.
//!
//! Safety first: every entry is read and checked before anything is written. An absolute
//! path, a `..` component, a link whose target leaves the destination, an entry below a link,
//! or a device node refuses the whole archive. The entries are then unpacked into a temporary
//! directory beside the destination and moved into it, so a failure leaves the destination as
//! it was. A marker file (`DEST/.mop-unarchive-NAME`) records the archive's sha256 and what it
//! unpacked: the next run skips the archive when its sha256 is the same and every unpacked
//! entry is still as the archive had it, and otherwise names exactly what differs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use mop_protocol::{ArchiveFormat, UnarchiveSpec};

use super::file::{absolute_path, receive, served_sha256};
use super::ResourceContext;
use crate::diff::hash_diff;
use crate::fsutil::{self, io_error, FinalAttributes, TempFile, WantedAttributes};
use crate::outcome::{Outcome, ResourceError};

pub fn converge(
    spec: &UnarchiveSpec,
    ctx: &mut ResourceContext<'_>,
) -> Result<Outcome, ResourceError> {
    let dest = absolute_path(&spec.dest)?;
    if let Some(creates) = &spec.creates {
        if fsutil::symlink_metadata(absolute_path(creates)?)?.is_some() {
            let mut outcome = Outcome::unchanged();
            outcome.message = Some(format!("skipped: `{creates}` exists"));
            return Ok(outcome);
        }
    }
    let (label, host_archive) = match (&spec.src, &spec.source) {
        (Some(src), None) => (src.as_str(), Some(absolute_path(src)?)),
        (None, Some(source)) => (source.as_str(), None),
        _ => return Err(ResourceError::new("set exactly one of `src` and `source`")),
    };
    let format = spec.format.as_ref().map(|format| format.resolved());
    let marker_path = dest.join(marker_name(label));

    let sha256 = match host_archive {
        Some(path) => fsutil::file_sha256(path)
            .map_err(|err| io_error("cannot read the archive", path, &err))?,
        None => {
            let entry = served_entry(label, ctx)?;
            served_sha256(label, entry, ctx)?
        }
    };
    let dest_meta = fsutil::symlink_metadata(dest)?;
    if dest_meta.as_ref().is_some_and(|meta| !meta.is_dir()) {
        return Err(ResourceError::new(format!(
            "`{}` exists and is not a directory",
            dest.display()
        )));
    }
    let marker = match dest_meta {
        Some(_) => fsutil::read_optional(&marker_path)?
            .and_then(|bytes| Marker::parse(&String::from_utf8_lossy(&bytes))),
        None => None,
    };
    let mut changes = Vec::new();
    let old_sha256 = marker.as_ref().map(|marker| marker.sha256.clone());
    match &marker {
        Some(marker) if marker.sha256 == sha256 => {
            changes = marker.drift(dest);
            if changes.is_empty() {
                return Ok(Outcome::unchanged());
            }
        }
        _ => {}
    }

    if ctx.check && host_archive.is_none() {
        // Checking a served archive's entries would mean fetching it in check mode.
        if changes.is_empty() {
            changes.push(format!("unpacked `{label}` into `{}`", dest.display()));
        }
        return Ok(with_diff(
            Outcome::changed(changes),
            ctx.diff,
            old_sha256,
            &sha256,
        ));
    }

    let parent = match dest.parent() {
        Some(parent) if parent.is_dir() => parent,
        _ => return Err(fsutil::missing_parent(dest)),
    };
    // A served archive lands in a temporary file beside the destination first.
    let received = match host_archive {
        Some(_) => None,
        None => {
            let entry = served_entry(label, ctx)?;
            let (temp, received_sha256) = receive(dest, label, entry, ctx)?;
            if received_sha256 != sha256 {
                return Err(ResourceError::new(format!(
                    "`{label}` changed on the controller during the run; run again"
                )));
            }
            Some(temp)
        }
    };
    let archive_path = host_archive.unwrap_or_else(|| {
        received
            .as_ref()
            .map(TempFile::path)
            .expect("a served archive was received above")
    });
    let format = match format {
        Some(format) => format,
        None => sniff_format(archive_path)?,
    };
    // xz has no streaming reader here: decompress to a temporary tar beside the destination.
    let decompressed = match format {
        ArchiveFormat::TarXz => Some(decompress_xz(archive_path, dest, label)?),
        _ => None,
    };
    let (reader_path, reader_format) = match &decompressed {
        Some(temp) => (temp.path(), ArchiveFormat::Tar),
        None => (archive_path, format),
    };

    let entries = read_entries(reader_path, reader_format, label)?;
    check_against_destination(&entries, dest)?;
    let counts = Counts::of(&entries);
    // Drift is reported as what drifted; a new or changed archive as what it unpacks.
    if changes.is_empty() {
        changes.push(format!(
            "unpacked `{label}` into `{}` ({counts})",
            dest.display()
        ));
    }
    let outcome = with_diff(Outcome::changed(changes), ctx.diff, old_sha256, &sha256);
    if ctx.check {
        return Ok(outcome);
    }

    let staging = StagingDir::create(parent, dest)?;
    unpack(reader_path, reader_format, &entries, staging.path(), label)?;
    let records = Marker::record(&entries, staging.path(), sha256)?;
    move_into_place(staging.path(), dest)?;
    write_marker(&marker_path, &records.render())?;
    Ok(outcome)
}

fn with_diff(mut outcome: Outcome, diff: bool, old: Option<String>, new: &str) -> Outcome {
    if diff {
        outcome.diff = Some(hash_diff(old.as_deref(), new));
    }
    outcome
}

fn served_entry<'c>(
    source: &str,
    ctx: &ResourceContext<'c>,
) -> Result<&'c mop_protocol::FileEntry, ResourceError> {
    ctx.files.get(source).ok_or_else(|| {
        ResourceError::new(format!(
            "the role plan carries no served file `{source}`\nhint: the controller should have listed it; check the path"
        ))
    })
}

/// `.mop-unarchive-NAME` with the archive's file name, reduced to safe characters.
fn marker_name(label: &str) -> String {
    let base = label.rsplit('/').next().unwrap_or(label);
    let safe: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(".mop-unarchive-{safe}")
}

fn sniff_format(path: &Path) -> Result<ArchiveFormat, ResourceError> {
    let mut head = [0u8; 512];
    let mut file = File::open(path).map_err(|err| io_error("cannot open", path, &err))?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(io_error("cannot read", path, &err)),
        }
    }
    let head = &head[..filled];
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(ArchiveFormat::TarGz)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Ok(ArchiveFormat::TarXz)
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Ok(ArchiveFormat::Zip)
    } else if head.len() == 512 && tar_checksum_matches(head) {
        Ok(ArchiveFormat::Tar)
    } else {
        Err(ResourceError::new(format!(
            "`{}` is not a tar, tar.gz, tar.xz or zip archive\nhint: set `format` if it is one",
            path.display()
        )))
    }
}

/// A tar header block (ustar or the older v7 layout, which has no magic) whose checksum field
/// matches the sum of its bytes, that field counted as spaces.
fn tar_checksum_matches(block: &[u8]) -> bool {
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|byte| **byte != 0)
        .map(|byte| *byte as char)
        .collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(index, byte)| {
            if (148..156).contains(&index) {
                32
            } else {
                u32::from(*byte)
            }
        })
        .sum();
    sum == stored
}

fn decompress_xz(archive: &Path, dest: &Path, label: &str) -> Result<TempFile, ResourceError> {
    let mut temp = TempFile::next_to(dest)?;
    let file = File::open(archive).map_err(|err| io_error("cannot open", archive, &err))?;
    let mut reader = BufReader::new(file);
    lzma_rs::xz_decompress(&mut reader, temp.file())
        .map_err(|err| ResourceError::new(format!("cannot decompress `{label}` as xz: {err}")))?;
    Ok(temp)
}

/// What one entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    File,
    Directory,
    Symlink(PathBuf),
    /// A hard link to an earlier file entry (its path inside the archive).
    Hardlink(PathBuf),
}

/// One checked entry: a relative path with only normal components.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    path: PathBuf,
    kind: Kind,
    mode: Option<u32>,
}

/// An entry as the archive states it, before any check.
struct RawEntry {
    path: PathBuf,
    kind: RawKind,
    mode: Option<u32>,
}

enum RawKind {
    Regular,
    Directory,
    Symlink(PathBuf),
    Hardlink(PathBuf),
    /// Skipped (tar's global pax headers).
    Ignored,
    Unsupported(&'static str),
}

type Visitor<'v> = dyn FnMut(RawEntry, &mut dyn Read) -> Result<(), ResourceError> + 'v;

/// Calls `visit` with every entry of the archive and a reader of its content.
fn walk(
    path: &Path,
    format: ArchiveFormat,
    label: &str,
    visit: &mut Visitor<'_>,
) -> Result<(), ResourceError> {
    let file = File::open(path).map_err(|err| io_error("cannot open", path, &err))?;
    let broken = |err: &dyn std::fmt::Display| {
        ResourceError::new(format!("cannot read archive `{label}`: {err}"))
    };
    match format {
        ArchiveFormat::Zip => walk_zip(file, &broken, visit),
        ArchiveFormat::TarGz => walk_tar(
            flate2::read::MultiGzDecoder::new(BufReader::new(file)),
            &broken,
            visit,
        ),
        ArchiveFormat::Tar | ArchiveFormat::TarXz => walk_tar(BufReader::new(file), &broken, visit),
    }
}

fn walk_tar(
    reader: impl Read,
    broken: &dyn Fn(&dyn std::fmt::Display) -> ResourceError,
    visit: &mut Visitor<'_>,
) -> Result<(), ResourceError> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(|err| broken(&err))? {
        let mut entry = entry.map_err(|err| broken(&err))?;
        let path = entry.path().map_err(|err| broken(&err))?.into_owned();
        let header = entry.header();
        let mode = header.mode().ok();
        let link = || -> Result<PathBuf, ResourceError> {
            match entry.link_name() {
                Ok(Some(target)) => Ok(target.into_owned()),
                Ok(None) => Err(broken(&format!("link `{}` has no target", path.display()))),
                Err(err) => Err(broken(&err)),
            }
        };
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => RawKind::Regular,
            tar::EntryType::Directory => RawKind::Directory,
            tar::EntryType::Symlink => RawKind::Symlink(link()?),
            tar::EntryType::Link => RawKind::Hardlink(link()?),
            tar::EntryType::XGlobalHeader => RawKind::Ignored,
            tar::EntryType::Char | tar::EntryType::Block => RawKind::Unsupported("a device node"),
            tar::EntryType::Fifo => RawKind::Unsupported("a fifo"),
            _ => RawKind::Unsupported("an entry type mop does not unpack"),
        };
        visit(RawEntry { path, kind, mode }, &mut entry)?;
    }
    Ok(())
}

fn walk_zip(
    file: File,
    broken: &dyn Fn(&dyn std::fmt::Display) -> ResourceError,
    visit: &mut Visitor<'_>,
) -> Result<(), ResourceError> {
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|err| broken(&err))?;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|err| broken(&err))?;
        let name = entry.name().map_err(|err| broken(&err))?.into_owned();
        let mode = entry.unix_mode();
        let is_symlink = mode.is_some_and(|mode| mode & 0o170000 == 0o120000);
        let kind = if entry.is_dir() {
            RawKind::Directory
        } else if is_symlink {
            // A zip stores a link's target as its content.
            let mut target = String::new();
            entry
                .read_to_string(&mut target)
                .map_err(|err| broken(&err))?;
            RawKind::Symlink(PathBuf::from(target))
        } else {
            RawKind::Regular
        };
        visit(
            RawEntry {
                path: PathBuf::from(name),
                kind,
                mode: mode.map(|mode| mode & 0o7777),
            },
            &mut entry,
        )?;
    }
    Ok(())
}

/// Pass one: every entry, checked; the first hostile one refuses the archive.
fn read_entries(
    path: &Path,
    format: ArchiveFormat,
    label: &str,
) -> Result<Vec<Entry>, ResourceError> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    let refuse = |entry: &Path, why: String| {
        ResourceError::new(format!(
            "archive `{label}`: entry `{}` {why}; nothing was unpacked",
            entry.display()
        ))
    };
    walk(path, format, label, &mut |raw, _| {
        let relative = relative_path(&raw.path).map_err(|why| refuse(&raw.path, why))?;
        let kind = match raw.kind {
            RawKind::Ignored => return Ok(()),
            RawKind::Unsupported(what) => return Err(refuse(&raw.path, format!("is {what}"))),
            // `./` itself: the destination.
            _ if relative.as_os_str().is_empty() => return Ok(()),
            RawKind::Regular => Kind::File,
            RawKind::Directory => Kind::Directory,
            RawKind::Symlink(target) => Kind::Symlink(target),
            RawKind::Hardlink(target) => {
                let target = relative_path(&target).map_err(|why| {
                    refuse(&raw.path, format!("is a hard link whose target {why}"))
                })?;
                if !files.contains(&target) {
                    return Err(refuse(
                        &raw.path,
                        format!(
                            "is a hard link to `{}`, which is not a file earlier in the archive",
                            target.display()
                        ),
                    ));
                }
                Kind::Hardlink(target)
            }
        };
        if matches!(kind, Kind::File | Kind::Hardlink(_)) {
            files.insert(relative.clone());
        } else {
            files.remove(&relative);
        }
        entries.push(Entry {
            path: relative,
            kind,
            mode: raw.mode,
        });
        Ok(())
    })?;
    let links: BTreeSet<&Path> = entries
        .iter()
        .filter(|entry| matches!(entry.kind, Kind::Symlink(_)))
        .map(|entry| entry.path.as_path())
        .collect();
    for entry in &entries {
        // Writing below a link would write wherever the link points.
        if let Some(link) = entry.path.ancestors().skip(1).find(|up| links.contains(up)) {
            return Err(refuse(
                &entry.path,
                format!("lies below the link `{}`", link.display()),
            ));
        }
        if let Kind::Symlink(target) = &entry.kind {
            check_link_target(&entry.path, target, &links)
                .map_err(|why| refuse(&entry.path, why))?;
        }
    }
    Ok(entries)
}

/// The entry's path with `.` dropped; refuses absolute paths, `..` and control characters
/// (the marker file is line-based).
fn relative_path(path: &Path) -> Result<PathBuf, String> {
    let text = path.to_string_lossy();
    if text.chars().any(char::is_control) {
        return Err("has a control character in its name".to_string());
    }
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err("is an absolute path".to_string())
            }
            Component::ParentDir => return Err("has a `..` component".to_string()),
        }
    }
    Ok(out)
}

/// A link's target must be relative and, read from the link's directory, stay inside the
/// destination without stepping back out of another link (whose real target is elsewhere).
fn check_link_target(link: &Path, target: &Path, links: &BTreeSet<&Path>) -> Result<(), String> {
    if target.has_root() {
        return Err(format!(
            "is a link to the absolute path `{}`",
            target.display()
        ));
    }
    let mut at: Vec<&std::ffi::OsStr> = link
        .parent()
        .map(|parent| parent.iter().collect())
        .unwrap_or_default();
    for component in target.components() {
        match component {
            Component::Normal(part) => at.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                let here: PathBuf = at.iter().collect();
                if links.contains(here.as_path()) {
                    return Err(format!(
                        "is a link whose target `{}` steps out of the link `{}`",
                        target.display(),
                        here.display()
                    ));
                }
                if at.pop().is_none() {
                    return Err(format!(
                        "is a link to `{}`, outside the destination",
                        target.display()
                    ));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("is a link to an absolute path".to_string())
            }
        }
    }
    Ok(())
}

/// Refuses an archive that needs a directory where the destination has a link or a file, or
/// a file where it has a directory: moving it in would follow the link or lose the directory.
fn check_against_destination(entries: &[Entry], dest: &Path) -> Result<(), ResourceError> {
    let mut checked: BTreeSet<PathBuf> = BTreeSet::new();
    for entry in entries {
        let mut directories: Vec<&Path> = entry.path.ancestors().skip(1).collect();
        directories.pop(); // the empty path: `dest` itself
        if entry.kind == Kind::Directory {
            directories.push(&entry.path);
        }
        for directory in directories {
            if !checked.insert(directory.to_path_buf()) {
                continue;
            }
            let on_host = dest.join(directory);
            if let Some(meta) = fsutil::symlink_metadata(&on_host)? {
                if !meta.is_dir() {
                    return Err(ResourceError::new(format!(
                        "`{}` is {} where the archive has a directory; nothing was unpacked",
                        on_host.display(),
                        if meta.file_type().is_symlink() {
                            "a link"
                        } else {
                            "a file"
                        }
                    )));
                }
            }
        }
        if entry.kind != Kind::Directory {
            let on_host = dest.join(&entry.path);
            if fsutil::symlink_metadata(&on_host)?.is_some_and(|meta| meta.is_dir()) {
                return Err(ResourceError::new(format!(
                    "`{}` is a directory where the archive has a file or link; nothing was unpacked",
                    on_host.display()
                )));
            }
        }
    }
    Ok(())
}

/// How many of each kind, for the change message.
struct Counts {
    files: usize,
    directories: usize,
    links: usize,
}

impl Counts {
    fn of(entries: &[Entry]) -> Counts {
        let count = |wanted: fn(&Kind) -> bool| entries.iter().filter(|e| wanted(&e.kind)).count();
        Counts {
            files: count(|kind| matches!(kind, Kind::File | Kind::Hardlink(_))),
            directories: count(|kind| *kind == Kind::Directory),
            links: count(|kind| matches!(kind, Kind::Symlink(_))),
        }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} files, {} directories, {} links",
            self.files, self.directories, self.links
        )
    }
}

/// A private directory beside the destination, removed with what is left in it on drop.
struct StagingDir(PathBuf);

impl StagingDir {
    fn create(parent: &Path, dest: &Path) -> Result<StagingDir, ResourceError> {
        let base = dest
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        for attempt in 0u32.. {
            let path = parent.join(format!(
                ".{base}.mop-unpack-{}-{attempt}",
                std::process::id()
            ));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(StagingDir(path)),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(io_error("cannot create a directory in", parent, &err)),
            }
        }
        unreachable!("the loop returns")
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Pass two: the checked entries into `staging`. The archive is read again; an entry that is
/// not the next checked one means the file changed in between, which fails the resource.
fn unpack(
    path: &Path,
    format: ArchiveFormat,
    entries: &[Entry],
    staging: &Path,
    label: &str,
) -> Result<(), ResourceError> {
    let mut expected = entries.iter();
    let mut directory_modes: BTreeMap<PathBuf, u32> = BTreeMap::new();
    walk(path, format, label, &mut |raw, content| {
        let Ok(relative) = relative_path(&raw.path) else {
            return Err(changed_meanwhile(label));
        };
        if matches!(raw.kind, RawKind::Ignored) || relative.as_os_str().is_empty() {
            return Ok(());
        }
        let entry = expected
            .next()
            .filter(|entry| entry.path == relative)
            .ok_or_else(|| changed_meanwhile(label))?;
        let target = staging.join(&entry.path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|err| io_error("cannot create", parent, &err))?;
        }
        // A later entry of the same name replaces an earlier one, as tar does.
        if let Some(meta) = fsutil::symlink_metadata(&target)? {
            if !(meta.is_dir() && entry.kind == Kind::Directory) {
                let removed = if meta.is_dir() {
                    fs::remove_dir_all(&target)
                } else {
                    fs::remove_file(&target)
                };
                removed.map_err(|err| io_error("cannot replace", &target, &err))?;
            }
        }
        match &entry.kind {
            Kind::Directory => {
                fs::create_dir_all(&target)
                    .map_err(|err| io_error("cannot create", &target, &err))?;
                directory_modes.insert(
                    target.clone(),
                    entry
                        .mode
                        .map_or_else(fsutil::default_dir_mode, |mode| mode & 0o777),
                );
            }
            Kind::File => {
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(|err| io_error("cannot create", &target, &err))?;
                io::copy(content, &mut file).map_err(|err| {
                    ResourceError::new(format!(
                        "cannot unpack `{}` from `{label}`: {err}",
                        entry.path.display()
                    ))
                })?;
                // Set-id bits are not carried over from an archive.
                let mode = entry
                    .mode
                    .map_or_else(fsutil::default_file_mode, |mode| mode & 0o777);
                file.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(|err| io_error("cannot set the mode of", &target, &err))?;
            }
            Kind::Symlink(link_target) => std::os::unix::fs::symlink(link_target, &target)
                .map_err(|err| io_error("cannot create the link", &target, &err))?,
            Kind::Hardlink(original) => fs::hard_link(staging.join(original), &target)
                .map_err(|err| io_error("cannot create the hard link", &target, &err))?,
        }
        Ok(())
    })?;
    if expected.next().is_some() {
        return Err(changed_meanwhile(label));
    }
    // Last, so that a read-only directory did not stop its own entries from being written.
    for (directory, mode) in directory_modes.iter().rev() {
        fs::set_permissions(directory, fs::Permissions::from_mode(mode | 0o700))
            .map_err(|err| io_error("cannot set the mode of", directory, &err))?;
    }
    Ok(())
}

fn changed_meanwhile(label: &str) -> ResourceError {
    ResourceError::new(format!(
        "archive `{label}` changed while it was being unpacked; nothing was moved into place"
    ))
}

/// Moves the staged tree into `dest`: a rename of the whole directory when `dest` does not
/// exist, else entry by entry (directories merged, files and links replaced).
fn move_into_place(staging: &Path, dest: &Path) -> Result<(), ResourceError> {
    if fsutil::symlink_metadata(dest)?.is_none() {
        fs::set_permissions(
            staging,
            fs::Permissions::from_mode(fsutil::default_dir_mode()),
        )
        .map_err(|err| io_error("cannot set the mode of", staging, &err))?;
        return fs::rename(staging, dest)
            .map_err(|err| io_error("cannot move the unpacked archive to", dest, &err));
    }
    merge(staging, dest)
}

fn merge(from: &Path, into: &Path) -> Result<(), ResourceError> {
    let children = fs::read_dir(from).map_err(|err| io_error("cannot list", from, &err))?;
    for child in children {
        let child = child.map_err(|err| io_error("cannot list", from, &err))?;
        let source = child.path();
        let target = into.join(child.file_name());
        let source_is_dir = child
            .file_type()
            .map_err(|err| io_error("cannot inspect", &source, &err))?
            .is_dir();
        let target_is_dir = fsutil::symlink_metadata(&target)?.is_some_and(|meta| meta.is_dir());
        if source_is_dir && target_is_dir {
            merge(&source, &target)?;
        } else {
            fs::rename(&source, &target)
                .map_err(|err| io_error("cannot move an unpacked entry to", &target, &err))?;
        }
    }
    Ok(())
}

/// What the marker file says: the archive's sha256 and each unpacked entry as it was left.
#[derive(Debug, PartialEq, Eq)]
struct Marker {
    sha256: String,
    /// By relative path: `f SHA256`, `l TARGET` or `d`.
    entries: BTreeMap<String, String>,
}

const MARKER_HEADER: &str = "mop-unarchive 1";

impl Marker {
    fn parse(text: &str) -> Option<Marker> {
        let mut lines = text.lines();
        if lines.next()? != MARKER_HEADER {
            return None;
        }
        let sha256 = lines.next()?.strip_prefix("sha256 ")?.to_string();
        let mut entries = BTreeMap::new();
        for line in lines {
            let (state, path) = line.split_once('\t')?;
            entries.insert(path.to_string(), state.to_string());
        }
        Some(Marker { sha256, entries })
    }

    fn render(&self) -> String {
        let mut text = format!("{MARKER_HEADER}\nsha256 {}\n", self.sha256);
        for (path, state) in &self.entries {
            text.push_str(&format!("{state}\t{path}\n"));
        }
        text
    }

    /// The final state of every entry, read from the staged tree (a later entry of the same
    /// name has replaced an earlier one there).
    fn record(entries: &[Entry], staging: &Path, sha256: String) -> Result<Marker, ResourceError> {
        let mut records = BTreeMap::new();
        for entry in entries {
            let key = entry.path.to_string_lossy().into_owned();
            if records.contains_key(&key) {
                continue;
            }
            let state = state_of(&staging.join(&entry.path))?
                .ok_or_else(|| ResourceError::new(format!("`{key}` vanished while unpacking")))?;
            records.insert(key, state);
        }
        Ok(Marker {
            sha256,
            entries: records,
        })
    }

    /// Every entry that is no longer as the archive left it.
    fn drift(&self, dest: &Path) -> Vec<String> {
        let mut changes = Vec::new();
        for (path, wanted) in &self.entries {
            let on_host = dest.join(path);
            match state_of(&on_host) {
                Ok(Some(state)) if &state == wanted => {}
                Ok(Some(_)) => {
                    changes.push(format!("`{}` differs from the archive", on_host.display()))
                }
                Ok(None) => changes.push(format!("`{}` is missing", on_host.display())),
                Err(err) => changes.push(err.message),
            }
        }
        changes
    }
}

/// `f SHA256`, `l TARGET` or `d` for what is at `path`, `None` when nothing is.
fn state_of(path: &Path) -> Result<Option<String>, ResourceError> {
    let Some(meta) = fsutil::symlink_metadata(path)? else {
        return Ok(None);
    };
    Ok(Some(if meta.file_type().is_symlink() {
        let target = fs::read_link(path).map_err(|err| io_error("cannot read", path, &err))?;
        format!("l {}", target.display())
    } else if meta.is_dir() {
        "d".to_string()
    } else {
        let sha256 =
            fsutil::file_sha256(path).map_err(|err| io_error("cannot read", path, &err))?;
        format!("f {sha256}")
    }))
}

fn write_marker(path: &Path, text: &str) -> Result<(), ResourceError> {
    let wanted = WantedAttributes {
        mode: Some(0o644),
        ..WantedAttributes::default()
    };
    let attributes = FinalAttributes::for_replacement(&wanted, None)?;
    fsutil::write_atomic(path, text.as_bytes(), attributes)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Write;

    use mop_protocol::{Facts, Templated};

    use super::super::testing::{snapshot, MemoryFetcher};
    use super::*;
    use crate::outcome::SystemRunner;
    use crate::template::{Engine, Scope};

    /// One tar entry as the test writes it: the name goes into the header raw, so hostile
    /// names (`../x`, `/etc/x`) that `tar::Builder` refuses can be written.
    enum Item<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
        Fifo(&'a str),
    }

    fn tar_bytes(items: &[Item<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for item in items {
            let mut header = tar::Header::new_old();
            let (name, kind, link, data): (&str, tar::EntryType, Option<&str>, &[u8]) = match item {
                Item::File(name, data) => (name, tar::EntryType::Regular, None, data),
                Item::Dir(name) => (name, tar::EntryType::Directory, None, b""),
                Item::Symlink(name, target) => (name, tar::EntryType::Symlink, Some(target), b""),
                Item::Hardlink(name, target) => (name, tar::EntryType::Link, Some(target), b""),
                Item::Fifo(name) => (name, tar::EntryType::Fifo, None, b""),
            };
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            header.set_entry_type(kind);
            header.set_mode(if kind == tar::EntryType::Directory {
                0o755
            } else {
                0o640
            });
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, data).expect("append");
        }
        builder.into_inner().expect("finish")
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).expect("gzip");
        encoder.finish().expect("gzip")
    }

    struct Host {
        root: tempfile::TempDir,
    }

    impl Host {
        fn new() -> Host {
            Host {
                root: tempfile::tempdir().expect("tempdir"),
            }
        }

        fn path(&self, relative: &str) -> PathBuf {
            self.root.path().join(relative)
        }

        fn run(&self, spec: &UnarchiveSpec, check: bool) -> Result<Outcome, ResourceError> {
            let facts = Facts::default();
            let engine = Engine::new();
            let mut scope = Scope::new(&facts);
            let templates = BTreeMap::new();
            let files = BTreeMap::new();
            let mut fetcher = MemoryFetcher::default();
            let mut runner = SystemRunner;
            let mut predicted = crate::resources::Predicted::default();
            let mut ctx = ResourceContext {
                check,
                diff: false,
                facts: &facts,
                engine: &engine,
                scope: &mut scope,
                templates: &templates,
                files: &files,
                trees: &BTreeMap::new(),
                fetcher: &mut fetcher,
                runner: &mut runner,
                bytes_received: 0,
                predicted: &mut predicted,
            };
            converge(spec, &mut ctx)
        }
    }

    fn spec(host: &Host, archive: &str) -> UnarchiveSpec {
        UnarchiveSpec {
            dest: host.path("dest").display().to_string(),
            src: Some(host.path(archive).display().to_string()),
            source: None,
            format: None,
            creates: None,
        }
    }

    #[test]
    fn unpacks_tar_gz_once_and_reports_exactly_an_edit() {
        let host = Host::new();
        let archive = tar_bytes(&[
            Item::Dir("app/"),
            Item::File("app/run.sh", b"#!/bin/sh\n"),
            Item::Symlink("app/current", "run.sh"),
            Item::Hardlink("app/again.sh", "app/run.sh"),
        ]);
        fs::write(host.path("app.tar.gz"), gzip(&archive)).expect("write");
        let spec = spec(&host, "app.tar.gz");
        let before = snapshot(host.root.path());
        let checked = host.run(&spec, true).expect("check");
        assert_eq!(snapshot(host.root.path()), before, "check mode wrote");
        assert!(
            checked.changes[0].contains("(2 files, 1 directories, 1 links)"),
            "{checked:?}"
        );
        host.run(&spec, false).expect("apply");
        assert_eq!(
            fs::read(host.path("dest/app/run.sh")).expect("read"),
            b"#!/bin/sh\n"
        );
        assert_eq!(
            fs::read_link(host.path("dest/app/current")).expect("link"),
            Path::new("run.sh")
        );
        assert!(!host.run(&spec, false).expect("again").changed);

        fs::write(host.path("dest/app/run.sh"), "edited").expect("edit");
        let before = snapshot(host.root.path());
        let checked = host.run(&spec, true).expect("check");
        assert_eq!(snapshot(host.root.path()), before, "check mode wrote");
        // `again.sh` is a hard link to `run.sh`: the edit shows in both.
        let edited =
            |name: &str| format!("`{}` differs from the archive", host.path(name).display());
        assert_eq!(
            checked.changes,
            vec![edited("dest/app/again.sh"), edited("dest/app/run.sh")]
        );
        host.run(&spec, false).expect("repair");
        assert_eq!(
            fs::read(host.path("dest/app/run.sh")).expect("read"),
            b"#!/bin/sh\n"
        );
        assert!(!host.run(&spec, false).expect("again").changed);
    }

    #[test]
    fn hostile_entries_refuse_the_archive_and_write_nothing() {
        let cases: Vec<(Vec<Item<'_>>, &str)> = vec![
            (
                vec![Item::File("ok", b"x"), Item::File("../evil", b"x")],
                "has a `..` component",
            ),
            (vec![Item::File("/tmp/evil", b"x")], "is an absolute path"),
            (
                vec![Item::Symlink("out", "../../etc")],
                "outside the destination",
            ),
            (vec![Item::Symlink("abs", "/etc")], "absolute path `/etc`"),
            (
                vec![
                    Item::Symlink("link", "sub"),
                    Item::File("link/passwd", b"x"),
                ],
                "lies below the link `link`",
            ),
            (
                vec![
                    Item::Dir("a/"),
                    Item::Symlink("a/deep", "b/c"),
                    Item::Symlink("up", "a/deep/../.."),
                ],
                "steps out of the link",
            ),
            (
                vec![Item::Hardlink("shadow", "/etc/shadow")],
                "is an absolute path",
            ),
            (
                vec![Item::Hardlink("h", "nothing")],
                "not a file earlier in the archive",
            ),
            (vec![Item::Fifo("pipe")], "is a fifo"),
        ];
        for (items, expected) in cases {
            let host = Host::new();
            fs::write(host.path("bad.tar"), tar_bytes(&items)).expect("write");
            fs::create_dir(host.path("dest")).expect("mkdir");
            fs::write(host.path("dest/keep"), "mine").expect("write");
            let before = snapshot(host.root.path());
            let err = host
                .run(&spec(&host, "bad.tar"), false)
                .expect_err(expected);
            assert!(err.message.contains(expected), "{expected}: {err}");
            assert!(err.message.contains("nothing was unpacked"), "{err}");
            assert_eq!(
                snapshot(host.root.path()),
                before,
                "{expected}: something was written"
            );
        }
    }

    #[test]
    fn a_link_in_the_destination_is_not_followed() {
        let host = Host::new();
        fs::create_dir_all(host.path("dest")).expect("mkdir");
        fs::create_dir_all(host.path("outside")).expect("mkdir");
        std::os::unix::fs::symlink(host.path("outside"), host.path("dest/conf")).expect("link");
        fs::write(host.path("a.tar"), tar_bytes(&[Item::File("conf/x", b"x")])).expect("write");
        let err = host.run(&spec(&host, "a.tar"), false).expect_err("refused");
        assert!(
            err.message
                .contains("is a link where the archive has a directory"),
            "{err}"
        );
        assert!(!host.path("outside/x").exists());
    }

    #[test]
    fn zip_and_xz_unpack_and_merge_into_an_existing_directory() {
        let host = Host::new();
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o600);
        writer.add_directory("docs/", options).expect("dir");
        writer.start_file("docs/readme.txt", options).expect("file");
        writer.write_all(b"read me\n").expect("write");
        writer
            .add_symlink("docs/latest", "readme.txt", options)
            .expect("link");
        fs::write(
            host.path("docs.zip"),
            writer.finish().expect("zip").into_inner(),
        )
        .expect("write");
        fs::create_dir_all(host.path("dest/docs")).expect("mkdir");
        fs::write(host.path("dest/docs/mine"), "kept").expect("write");
        host.run(&spec(&host, "docs.zip"), false).expect("zip");
        assert_eq!(
            fs::read(host.path("dest/docs/readme.txt")).expect("read"),
            b"read me\n"
        );
        assert_eq!(
            fs::read(host.path("dest/docs/mine")).expect("read"),
            b"kept"
        );
        assert_eq!(
            fs::read_link(host.path("dest/docs/latest")).expect("link"),
            Path::new("readme.txt")
        );
        assert!(
            !host
                .run(&spec(&host, "docs.zip"), false)
                .expect("again")
                .changed
        );

        let tar = tar_bytes(&[Item::File("x.txt", b"xz\n")]);
        let xz = std::process::Command::new("xz")
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn();
        // The system `xz` makes a real .tar.xz; without it this part has nothing to read.
        if let Ok(mut child) = xz {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(&tar)
                .expect("pipe");
            let output = child.wait_with_output().expect("xz");
            fs::write(host.path("x.tar.xz"), output.stdout).expect("write");
            let mut xz_spec = spec(&host, "x.tar.xz");
            xz_spec.format = Some(Templated::Value(ArchiveFormat::TarXz));
            host.run(&xz_spec, false).expect("xz");
            assert_eq!(fs::read(host.path("dest/x.txt")).expect("read"), b"xz\n");
        }
        // Nothing but the unpacked entries and the two markers is left behind.
        let names = crate::fsutil::sorted_names(host.root.path());
        assert!(names.iter().all(|name| !name.starts_with('.')), "{names:?}");
    }
}
