//! The `tree` resource: a directory tree served by the controller, copied below a host
//! directory. Files whose size and sha256 match are not transferred; owner, group and mode are
//! managed for files (`mode`) and directories (`dir_mode`); `delete` removes what the source
//! does not have; `exclude` paths are neither copied nor deleted.
//!
//! Symlink safety: only `path` itself is followed when it is a link (as `directory` does).
//! Below it nothing is: directories are walked parents first and each is checked to be a real
//! directory (a link or a file where the source has a directory is replaced by one) before
//! anything is written inside it, so no write and no removal reaches outside `path`.

use std::collections::BTreeSet;
use std::fs::{self, Metadata};
use std::path::Path;

use mop_protocol::tree::{file_key, is_excluded};
use mop_protocol::{FileEntry, TreeListing, TreeSpec};

use super::file::{absolute_path, receive, served_sha256};
use super::ResourceContext;
use crate::fsutil::{self, io_error, FinalAttributes, Staged, WantedAttributes};
use crate::outcome::{Outcome, ResourceError};
use crate::stamp;

/// Up to this many path changes are listed one by one in the outcome; more are counted.
const LISTED_CHANGES: usize = 10;

/// One path that differs from the source.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    /// A directory or file the host does not have.
    Added,
    /// Something else stands where the source has a directory or a file.
    Replaced(&'static str),
    /// Content and/or attributes differ (`content`, `mode 0644 -> 0600`...).
    Changed(Vec<String>),
    /// Not in the source (`delete = true`).
    Removed,
}

struct Plan<'s> {
    dest: &'s Path,
    /// `(relative path, is directory, change)` in the order they are made.
    changes: Vec<(String, bool, Change)>,
}

pub fn converge(spec: &TreeSpec, ctx: &mut ResourceContext<'_>) -> Result<Outcome, ResourceError> {
    let dest = absolute_path(&spec.path)?;
    let (served_files, trees) = (ctx.files, ctx.trees);
    let listing: &TreeListing = trees.get(&spec.source).ok_or_else(|| {
        ResourceError::new(format!(
            "the role plan carries no served tree `{}`\nhint: the controller should have listed it; check the path",
            spec.source
        ))
    })?;
    let dirs: Vec<&str> = listing
        .dirs
        .iter()
        .map(String::as_str)
        .filter(|relative| !is_excluded(&spec.exclude, relative, true))
        .collect();
    let mut files: Vec<(&str, &FileEntry)> = Vec::with_capacity(listing.files.len());
    for relative in &listing.files {
        if is_excluded(&spec.exclude, relative, false) {
            continue;
        }
        let key = file_key(&spec.source, relative);
        let entry = served_files.get(&key).ok_or_else(|| {
            ResourceError::new(format!(
                "the role plan carries no served file `{key}`\nhint: the controller should have listed it"
            ))
        })?;
        files.push((relative, entry));
    }
    let wanted_files =
        WantedAttributes::resolve(spec.owner.as_deref(), spec.group.as_deref(), spec.mode)?;
    let wanted_dirs =
        WantedAttributes::resolve(spec.owner.as_deref(), spec.group.as_deref(), spec.dir_mode)?;
    if !ctx.check {
        wanted_files.require_accounts()?;
    }

    let mut plan = Plan {
        dest,
        changes: Vec::new(),
    };
    // Directories made (or to be made) here: nothing below them exists on the host yet, so
    // nothing below them is inspected (it might be a link's target, in check mode).
    let mut fresh: BTreeSet<&str> = BTreeSet::new();
    converge_top(dest, &wanted_dirs, ctx.check, &mut plan, &mut fresh)?;
    for relative in dirs.iter().copied() {
        converge_dir(relative, &wanted_dirs, ctx.check, &mut plan, &mut fresh)?;
    }
    if spec.delete && !fresh.contains("") {
        let source_dirs: BTreeSet<&str> = dirs.iter().copied().collect();
        let source_files: BTreeSet<&str> = files.iter().map(|(relative, _)| *relative).collect();
        let sets = SourceSets {
            dirs: &source_dirs,
            files: &source_files,
            exclude: &spec.exclude,
        };
        delete_extra(dest, "", &sets, ctx.check, &mut plan)?;
    }
    // Every changed file is written in full first, then made durable and put in place in one
    // step (see `Staged`); a failure part way leaves every file as it was.
    let mut staged = Staged::default();
    for (relative, entry) in files {
        let file = FileStep {
            relative,
            entry,
            spec,
            wanted: &wanted_files,
        };
        converge_file(&file, ctx, &mut plan, &fresh, &mut staged)?;
    }
    staged.commit()?;
    Ok(outcome(&plan, ctx.diff))
}

/// The top directory: created with its parents when missing; a link to a directory is
/// followed (like `directory`).
fn converge_top(
    dest: &Path,
    wanted: &WantedAttributes,
    check: bool,
    plan: &mut Plan<'_>,
    fresh: &mut BTreeSet<&str>,
) -> Result<(), ResourceError> {
    match fs::metadata(dest) {
        Ok(meta) if meta.is_dir() => {
            let changes = wanted.changes(&meta);
            if !changes.is_empty() {
                if !check {
                    wanted.apply_to_path(dest)?;
                }
                plan.changes
                    .push((String::new(), true, Change::Changed(changes)));
            }
            Ok(())
        }
        Ok(_) => Err(ResourceError::new(format!(
            "`{}` exists and is not a directory\nhint: remove it first with a `file` resource (state = \"absent\")",
            dest.display()
        ))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if !check {
                wanted.require_accounts()?;
                fs::create_dir_all(dest).map_err(|err| io_error("cannot create", dest, &err))?;
                set_new_dir_attributes(dest, wanted)?;
            }
            fresh.insert("");
            plan.changes.push((String::new(), true, Change::Added));
            Ok(())
        }
        Err(err) => Err(io_error("cannot inspect", dest, &err)),
    }
}

fn converge_dir<'r>(
    relative: &'r str,
    wanted: &WantedAttributes,
    check: bool,
    plan: &mut Plan<'_>,
    fresh: &mut BTreeSet<&'r str>,
) -> Result<(), ResourceError> {
    let path = plan.dest.join(relative);
    if fresh.contains(parent_of(relative)) {
        if !check {
            make_dir(&path, wanted)?;
        }
        fresh.insert(relative);
        plan.changes
            .push((relative.to_string(), true, Change::Added));
        return Ok(());
    }
    let change = match fsutil::symlink_metadata(&path)? {
        Some(meta) if meta.is_dir() => {
            let changes = wanted.changes(&meta);
            if changes.is_empty() {
                return Ok(());
            }
            if !check {
                wanted.apply_to_path(&path)?;
            }
            Change::Changed(changes)
        }
        Some(meta) => {
            // A link (never followed) or a file where the source has a directory.
            if !check {
                fs::remove_file(&path).map_err(|err| io_error("cannot remove", &path, &err))?;
                make_dir(&path, wanted)?;
            }
            fresh.insert(relative);
            Change::Replaced(kind_of(&meta))
        }
        None => {
            if !check {
                make_dir(&path, wanted)?;
            }
            fresh.insert(relative);
            Change::Added
        }
    };
    plan.changes.push((relative.to_string(), true, change));
    Ok(())
}

fn make_dir(path: &Path, wanted: &WantedAttributes) -> Result<(), ResourceError> {
    fs::create_dir(path).map_err(|err| io_error("cannot create", path, &err))?;
    set_new_dir_attributes(path, wanted)
}

/// A new directory gets `dir_mode` (else the umask's default) and the owner and group.
fn set_new_dir_attributes(path: &Path, wanted: &WantedAttributes) -> Result<(), ResourceError> {
    let with_mode = WantedAttributes {
        mode: Some(wanted.mode.unwrap_or_else(fsutil::default_dir_mode)),
        ..wanted.clone()
    };
    with_mode.apply_to_path(path)
}

struct SourceSets<'a> {
    dirs: &'a BTreeSet<&'a str>,
    files: &'a BTreeSet<&'a str>,
    exclude: &'a [String],
}

/// Removes (or, in check mode, lists) what is below `dir` on the host but not in the source.
/// Only real directories of the source are entered; links are removed as links.
fn delete_extra(
    dir: &Path,
    prefix: &str,
    sets: &SourceSets<'_>,
    check: bool,
    plan: &mut Plan<'_>,
) -> Result<(), ResourceError> {
    let mut names: Vec<String> = Vec::new();
    let entries = fs::read_dir(dir).map_err(|err| io_error("cannot list", dir, &err))?;
    for entry in entries {
        let entry = entry.map_err(|err| io_error("cannot list", dir, &err))?;
        match entry.file_name().into_string() {
            Ok(name) => names.push(name),
            Err(name) => {
                return Err(ResourceError::new(format!(
                    "`{}` has a name that is not valid utf-8; a tree with `delete = true` cannot tell whether it belongs\nhint: rename or remove it",
                    dir.join(name).display()
                )))
            }
        }
    }
    names.sort();
    for name in names {
        let relative = format!("{prefix}{name}");
        let path = dir.join(&name);
        let Some(meta) = fsutil::symlink_metadata(&path)? else {
            continue;
        };
        let is_dir = meta.is_dir();
        if is_excluded(sets.exclude, &relative, is_dir) || is_temporary(&name) {
            continue;
        }
        if is_dir && sets.dirs.contains(relative.as_str()) {
            delete_extra(&path, &format!("{relative}/"), sets, check, plan)?;
            continue;
        }
        // A file of the source (of whatever kind on the host: the file pass decides), or a
        // directory of the source that is a link here (already replaced, or to be).
        if sets.files.contains(relative.as_str()) || sets.dirs.contains(relative.as_str()) {
            continue;
        }
        if !check {
            let removed = if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(|err| io_error("cannot remove", &path, &err))?;
        }
        plan.changes.push((relative, is_dir, Change::Removed));
    }
    Ok(())
}

/// The temporary files of another resource's atomic write in progress are not ours to remove.
fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(".mop-")
}

/// One file of the source tree and what the resource wants of it.
struct FileStep<'a> {
    relative: &'a str,
    entry: &'a FileEntry,
    spec: &'a TreeSpec,
    wanted: &'a WantedAttributes,
}

fn converge_file(
    file: &FileStep<'_>,
    ctx: &mut ResourceContext<'_>,
    plan: &mut Plan<'_>,
    fresh: &BTreeSet<&str>,
    staged: &mut Staged,
) -> Result<(), ResourceError> {
    let FileStep {
        relative,
        entry,
        spec,
        wanted,
    } = *file;
    let path = plan.dest.join(relative);
    let label = file_key(&spec.source, relative);
    let existing = if fresh.contains(parent_of(relative)) {
        None
    } else {
        fsutil::symlink_metadata(&path)?
    };
    let (change, replace_meta) = match &existing {
        None => (Change::Added, None),
        Some(meta) if meta.is_file() => {
            // A different size needs no hash; an equal one compares sha256s.
            let differs = meta.len() != entry.size || {
                let local = fsutil::content_sha256(&path, meta, ctx.check)
                    .map_err(|err| io_error("cannot read", &path, &err))?;
                local != served_sha256(&label, entry, ctx)?
            };
            let mut changes = Vec::new();
            if differs {
                changes.push("content".to_string());
            }
            changes.extend(wanted.changes(meta));
            if changes.is_empty() {
                return Ok(());
            }
            if !differs {
                if !ctx.check {
                    wanted.apply_to_path(&path)?;
                }
                plan.changes
                    .push((relative.to_string(), false, Change::Changed(changes)));
                return Ok(());
            }
            (Change::Changed(changes), Some(meta))
        }
        Some(meta) if meta.is_dir() && !spec.delete => {
            return Err(ResourceError::new(format!(
                "`{}` is a directory where the tree has a file\nhint: remove it, or set `delete = true` to let the tree replace it",
                path.display()
            )))
        }
        Some(meta) => (Change::Replaced(kind_of(meta)), None),
    };
    if !ctx.check {
        let (temp, sha256) = receive(&path, &label, entry, ctx)?;
        stamp::record_written(temp.file_ref(), entry.mtime_ns, &sha256);
        let mut attributes = FinalAttributes::for_replacement(wanted, replace_meta)?;
        if wanted.mode.is_none() && replace_meta.is_none() {
            // A new file takes the source's permission bits, less set-id and sticky bits.
            attributes.mode = entry.mode & 0o777;
        }
        if existing.as_ref().is_some_and(Metadata::is_dir) {
            fs::remove_dir_all(&path).map_err(|err| io_error("cannot remove", &path, &err))?;
        }
        temp.stage(&path, attributes, staged)?;
    }
    plan.changes.push((relative.to_string(), false, change));
    Ok(())
}

fn parent_of(relative: &str) -> &str {
    relative.rsplit_once('/').map_or("", |(parent, _)| parent)
}

fn kind_of(meta: &Metadata) -> &'static str {
    if meta.file_type().is_symlink() {
        "a symbolic link"
    } else if meta.is_dir() {
        "a directory"
    } else if meta.is_file() {
        "a file"
    } else {
        "a special file"
    }
}

/// `css/` for a directory, `css/a.css` for a file, `.` for the top.
fn shown(relative: &str, is_dir: bool) -> String {
    match (relative.is_empty(), is_dir) {
        (true, _) => ".".to_string(),
        (false, true) => format!("{relative}/"),
        (false, false) => relative.to_string(),
    }
}

fn outcome(plan: &Plan<'_>, diff: bool) -> Outcome {
    if plan.changes.is_empty() {
        return Outcome::unchanged();
    }
    let mut added = Vec::new();
    let mut changed = Vec::new();
    let mut removed = Vec::new();
    let mut lines = Vec::new();
    let mut listed = Vec::new();
    for (relative, is_dir, change) in &plan.changes {
        let path = shown(relative, *is_dir);
        let (sign, text) = match change {
            Change::Added => {
                added.push(path.clone());
                ('+', format!("added {path}"))
            }
            Change::Replaced(what) => {
                changed.push(path.clone());
                ('~', format!("replaced {what} with the source's {path}"))
            }
            Change::Changed(details) => {
                changed.push(path.clone());
                ('~', format!("changed {path}: {}", details.join(", ")))
            }
            Change::Removed => {
                removed.push(path.clone());
                ('-', format!("removed {path}"))
            }
        };
        lines.push(match change {
            Change::Changed(details) => format!("{sign} {path} ({})", details.join(", ")),
            Change::Replaced(what) => format!("{sign} {path} (was {what})"),
            _ => format!("{sign} {path}"),
        });
        listed.push(text);
    }
    let changes = if listed.len() <= LISTED_CHANGES {
        listed
    } else {
        let count = |what: &str, list: &[String]| match list.len() {
            0 => None,
            n => Some(format!("{what} {n} path{}", if n == 1 { "" } else { "s" })),
        };
        [
            count("added", &added),
            count("changed", &changed),
            count("removed", &removed),
        ]
        .into_iter()
        .flatten()
        .collect()
    };
    let mut outcome = Outcome::changed(changes);
    if diff {
        outcome.diff = Some(lines.join("\n") + "\n");
    }
    for (name, list) in [("added", added), ("changed", changed), ("removed", removed)] {
        outcome.extra.insert(name.into(), list.into());
    }
    outcome
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::PathBuf;

    use mop_protocol::{Facts, FileMode, ResourceSpec};

    use super::super::testing::{snapshot, MemoryFetcher};
    use super::super::{dispatch, Predicted, ResourceContext};
    use super::*;
    use crate::outcome::SystemRunner;
    use crate::template::{Engine, Scope};

    const SOURCE: &str = "files/static";

    /// A served tree in memory (the controller's side) and a host directory to copy it to.
    struct Harness {
        host: tempfile::TempDir,
        listing: TreeListing,
        files: BTreeMap<String, FileEntry>,
        fetcher: MemoryFetcher,
    }

    impl Harness {
        fn new(dirs: &[&str], files: &[(&str, &[u8], u32)]) -> Harness {
            let mut harness = Harness {
                host: tempfile::tempdir().expect("tempdir"),
                listing: TreeListing {
                    dirs: dirs.iter().map(|dir| dir.to_string()).collect(),
                    files: Vec::new(),
                },
                files: BTreeMap::new(),
                fetcher: MemoryFetcher::default(),
            };
            for (relative, content, mode) in files {
                harness.serve(relative, content, *mode);
            }
            harness
        }

        fn serve(&mut self, relative: &str, content: &[u8], mode: u32) {
            let id = self.files.len() as u32 + 1;
            self.files.insert(
                file_key(SOURCE, relative),
                FileEntry {
                    id,
                    sha256: Some(crate::diff::sha256_hex(content)),
                    size: content.len() as u64,
                    mode,
                    secret: false,
                    mtime_ns: None,
                },
            );
            self.fetcher.files.insert(id, content.to_vec());
            self.listing.files.push(relative.to_string());
            self.listing.files.sort();
        }

        fn dest(&self) -> PathBuf {
            self.host.path().join("www")
        }

        fn spec(&self) -> TreeSpec {
            TreeSpec {
                path: self.dest().display().to_string(),
                source: SOURCE.to_string(),
                owner: None,
                group: None,
                mode: None,
                dir_mode: None,
                delete: false,
                exclude: Vec::new(),
            }
        }

        fn run(&mut self, spec: &TreeSpec, check: bool) -> Result<Outcome, ResourceError> {
            let facts = Facts::default();
            let engine = Engine::new();
            let mut scope = Scope::new(&facts);
            let templates = BTreeMap::new();
            let trees = BTreeMap::from([(SOURCE.to_string(), self.listing.clone())]);
            let mut runner = SystemRunner;
            let mut predicted = Predicted::default();
            let mut ctx = ResourceContext {
                check,
                diff: true,
                facts: &facts,
                engine: &engine,
                scope: &mut scope,
                templates: &templates,
                files: &self.files,
                trees: &trees,
                fetcher: &mut self.fetcher,
                runner: &mut runner,
                bytes_received: 0,
                predicted: &mut predicted,
            };
            dispatch(&ResourceSpec::Tree(spec.clone()), &mut ctx)
        }
    }

    fn site() -> Harness {
        Harness::new(
            &["css", "empty", "img"],
            &[
                ("index.html", b"<h1>hello</h1>\n", 0o644),
                ("css/site.css", b"body {}\n", 0o644),
                ("img/logo.svg", b"<svg/>\n", 0o600),
                ("run.sh", b"#!/bin/sh\n", 0o755),
            ],
        )
    }

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).expect("exists").mode() & 0o7777
    }

    #[test]
    fn apply_copies_the_tree_and_a_second_apply_changes_and_transfers_nothing() {
        let mut harness = site();
        let spec = harness.spec();
        let check = harness.run(&spec, true).expect("check");
        assert!(check.changed);
        assert!(!harness.dest().exists(), "check mode wrote nothing");
        assert_eq!(
            check.diff.as_deref(),
            Some("+ .\n+ css/\n+ empty/\n+ img/\n+ css/site.css\n+ img/logo.svg\n+ index.html\n+ run.sh\n")
        );
        assert!(
            harness.fetcher.requests.is_empty(),
            "check mode transfers nothing"
        );

        let applied = harness.run(&spec, false).expect("apply");
        assert!(applied.changed);
        assert_eq!(applied.changes.len(), 8, "{:?}", applied.changes);
        let dest = harness.dest();
        assert_eq!(
            fs::read(dest.join("index.html")).expect("copied"),
            b"<h1>hello</h1>\n"
        );
        assert_eq!(
            fs::read(dest.join("css/site.css")).expect("copied"),
            b"body {}\n"
        );
        assert!(dest.join("empty").is_dir());
        // Without `mode`, new files keep the source's permission bits.
        assert_eq!(mode_of(&dest.join("run.sh")), 0o755);
        assert_eq!(mode_of(&dest.join("img/logo.svg")), 0o600);
        assert_eq!(harness.fetcher.requests.len(), 4);

        let again = harness.run(&spec, false).expect("second apply");
        assert_eq!(again, Outcome::unchanged());
        assert_eq!(
            harness.fetcher.requests.len(),
            4,
            "unchanged files are not transferred"
        );
    }

    /// Files land together: a transfer that fails part way leaves every file as it was (the
    /// ones already received included) and no temporary file behind.
    #[test]
    fn a_failed_transfer_part_way_changes_no_file() {
        let mut harness = site();
        let spec = harness.spec();
        harness.run(&spec, false).expect("first apply");
        let dest = harness.dest();
        fs::write(dest.join("css/site.css"), "old css\n").expect("edit");
        fs::write(dest.join("run.sh"), "old script\n").expect("edit");
        // `run.sh` comes after `css/site.css`: its transfer is refused.
        let run_id = harness.files[&file_key(SOURCE, "run.sh")].id;
        harness.fetcher.files.remove(&run_id);
        let err = harness.run(&spec, false).expect_err("refused transfer");
        assert!(err.to_string().contains("refused"), "{err}");
        assert_eq!(
            fs::read(dest.join("css/site.css")).expect("kept"),
            b"old css\n",
            "a file received before the failure is not put in place"
        );
        assert_eq!(
            fs::read(dest.join("run.sh")).expect("kept"),
            b"old script\n"
        );
        for dir in [dest.clone(), dest.join("css"), dest.join("img")] {
            let names = fsutil::sorted_names(&dir);
            assert!(
                !names.iter().any(|name| name.contains(".mop-")),
                "{names:?}"
            );
        }
    }

    #[test]
    fn check_after_a_manual_edit_reports_exactly_that_and_writes_nothing() {
        let mut harness = site();
        let spec = harness.spec();
        harness.run(&spec, false).expect("apply");
        let dest = harness.dest();
        fs::write(dest.join("css/site.css"), b"body { color: red }\n").expect("edit");
        fs::set_permissions(dest.join("img"), fs::Permissions::from_mode(0o700)).expect("chmod");
        let before = snapshot(harness.host.path());
        let requests = harness.fetcher.requests.len();

        let mut with_dir_mode = spec.clone();
        with_dir_mode.dir_mode = Some(FileMode(0o755));
        let check = harness.run(&with_dir_mode, true).expect("check");
        assert_eq!(
            snapshot(harness.host.path()),
            before,
            "check mode changed nothing"
        );
        assert_eq!(harness.fetcher.requests.len(), requests);
        let dir_mode = mode_of(&dest);
        let mut expected = vec![
            "changed img/: mode 0700 -> 0755".to_string(),
            "changed css/site.css: content".to_string(),
        ];
        if dir_mode != 0o755 {
            expected.insert(0, format!("changed .: mode {dir_mode:04o} -> 0755"));
        }
        let others: Vec<&String> = check
            .changes
            .iter()
            .filter(|change| {
                !change.starts_with("changed css/:") && !change.starts_with("changed empty/:")
            })
            .collect();
        assert_eq!(others, expected.iter().collect::<Vec<_>>());

        let applied = harness.run(&with_dir_mode, false).expect("apply");
        assert_eq!(applied.changes, check.changes);
        assert_eq!(
            fs::read(dest.join("css/site.css")).expect("restored"),
            b"body {}\n"
        );
        assert_eq!(mode_of(&dest.join("img")), 0o755);
        assert_eq!(
            harness.run(&with_dir_mode, false).expect("again"),
            Outcome::unchanged()
        );
    }

    #[test]
    fn delete_removes_what_the_source_lacks_but_keeps_excluded_paths() {
        let mut harness = site();
        let mut spec = harness.spec();
        harness.run(&spec, false).expect("apply");
        let dest = harness.dest();
        fs::write(dest.join("stale.html"), b"old").expect("extra file");
        fs::create_dir_all(dest.join("old/deep")).expect("extra dir");
        fs::write(dest.join("old/deep/x"), b"x").expect("extra file");
        fs::write(dest.join("css/upload.tmp"), b"keep").expect("excluded file");

        let untouched = harness.run(&spec, false).expect("without delete");
        assert_eq!(
            untouched,
            Outcome::unchanged(),
            "extra files are left alone"
        );

        spec.delete = true;
        spec.exclude = vec!["*.tmp".to_string()];
        let check = harness.run(&spec, true).expect("check");
        assert_eq!(check.changes, ["removed old/", "removed stale.html"]);
        assert!(
            dest.join("stale.html").exists(),
            "check mode removed nothing"
        );
        let applied = harness.run(&spec, false).expect("apply");
        assert_eq!(applied.changes, check.changes);
        assert_eq!(
            applied.extra["removed"],
            serde_json::json!(["old/", "stale.html"])
        );
        assert!(!dest.join("stale.html").exists());
        assert!(!dest.join("old").exists());
        assert_eq!(
            fs::read(dest.join("css/upload.tmp")).expect("kept"),
            b"keep"
        );
        assert_eq!(
            harness.run(&spec, false).expect("again"),
            Outcome::unchanged()
        );
    }

    #[test]
    fn excluded_source_files_are_neither_copied_nor_asked_for() {
        let mut harness = site();
        let mut spec = harness.spec();
        spec.exclude = vec!["img/".to_string(), "*.sh".to_string()];
        harness.run(&spec, false).expect("apply");
        let dest = harness.dest();
        assert!(dest.join("index.html").is_file());
        assert!(!dest.join("img").exists());
        assert!(!dest.join("run.sh").exists());
        assert_eq!(harness.fetcher.requests.len(), 2);
    }

    #[test]
    fn links_below_the_top_are_replaced_or_removed_never_followed() {
        let mut harness = site();
        let mut spec = harness.spec();
        spec.delete = true;
        let outside = harness.host.path().join("outside");
        fs::create_dir_all(&outside).expect("outside dir");
        fs::write(outside.join("site.css"), b"not yours").expect("outside file");
        fs::write(outside.join("keep"), b"keep").expect("outside file");
        let dest = harness.dest();
        fs::create_dir_all(&dest).expect("dest");
        // Where the source has a directory, a file and nothing, links to the outside.
        std::os::unix::fs::symlink(&outside, dest.join("css")).expect("link");
        std::os::unix::fs::symlink(outside.join("keep"), dest.join("index.html")).expect("link");
        std::os::unix::fs::symlink(&outside, dest.join("elsewhere")).expect("link");
        let before_outside = snapshot(&outside);

        let check = harness.run(&spec, true).expect("check");
        assert!(
            check
                .changes
                .contains(&"replaced a symbolic link with the source's css/".to_string()),
            "{:?}",
            check.changes
        );
        harness.run(&spec, false).expect("apply");
        assert_eq!(
            snapshot(&outside),
            before_outside,
            "nothing outside the top changed"
        );
        assert!(fs::symlink_metadata(dest.join("css"))
            .expect("css")
            .is_dir());
        assert_eq!(
            fs::read(dest.join("css/site.css")).expect("copied"),
            b"body {}\n"
        );
        assert!(fs::symlink_metadata(dest.join("index.html"))
            .expect("file")
            .is_file());
        assert!(
            fs::symlink_metadata(dest.join("elsewhere")).is_err(),
            "link removed"
        );
        assert_eq!(
            harness.run(&spec, false).expect("again"),
            Outcome::unchanged()
        );
    }

    #[test]
    fn mode_and_dir_mode_apply_to_every_file_and_directory() {
        let mut harness = site();
        let mut spec = harness.spec();
        spec.mode = Some(FileMode(0o640));
        spec.dir_mode = Some(FileMode(0o750));
        harness.run(&spec, false).expect("apply");
        let dest = harness.dest();
        assert_eq!(mode_of(&dest), 0o750);
        assert_eq!(mode_of(&dest.join("empty")), 0o750);
        assert_eq!(mode_of(&dest.join("run.sh")), 0o640);
        assert_eq!(mode_of(&dest.join("css/site.css")), 0o640);
        fs::set_permissions(dest.join("run.sh"), fs::Permissions::from_mode(0o600)).expect("chmod");
        let fixed = harness.run(&spec, false).expect("apply");
        assert_eq!(fixed.changes, ["changed run.sh: mode 0600 -> 0640"]);
        assert_eq!(
            harness.fetcher.requests.len(),
            4,
            "a mode change transfers nothing"
        );
    }
}
