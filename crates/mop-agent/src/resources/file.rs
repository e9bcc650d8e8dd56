//! The `file` resource: content (literal, template or served file), owner, group, mode, absent.

use std::collections::BTreeMap;
use std::fs::{self, Metadata};
use std::path::Path;

use mop_protocol::{FileEntry, FileSpec, Presence};
use sha2::{Digest, Sha256};

use super::{FetchError, ResourceContext};
use crate::diff::{self, content_diff, hash_diff};
use crate::fsutil::{self, io_error, FinalAttributes, TempFile, WantedAttributes};
use crate::outcome::{Outcome, ResourceError};
use crate::stamp;

/// Served files up to this size get a unified diff in apply mode (they are on disk by then).
const MAX_SOURCE_DIFF: u64 = 1024 * 1024;

/// What the file's content should be.
enum Desired<'a> {
    /// Bytes known here: literal `content` or a rendered `template`.
    Bytes(Vec<u8>),
    /// A file on the controller, known by its hash until it is needed.
    Served {
        source: &'a str,
        entry: &'a FileEntry,
    },
    /// No content given: the file must exist, whatever it holds.
    Any,
}

pub fn converge(spec: &FileSpec, ctx: &mut ResourceContext<'_>) -> Result<Outcome, ResourceError> {
    let path = absolute_path(&spec.path)?;
    let existing = fsutil::symlink_metadata(path)?;
    if let Some(meta) = &existing {
        refuse_non_file(path, meta)?;
    }
    match spec.state.resolved() {
        Presence::Absent => remove(path, existing.is_some(), ctx.check),
        Presence::Present => {
            let files = ctx.files;
            let desired = desired_content(spec, files, ctx)?;
            let secret = matches!(&desired, Desired::Served { entry, .. } if entry.secret);
            let mut outcome = present(path, existing.as_ref(), desired, spec, ctx)?;
            // A vault file's diff says that the content changed, never how: neither lines
            // nor the plaintext's sha256 (a short secret's hash is a guessable one).
            if secret && outcome.diff.is_some() {
                outcome.diff = Some(diff::SECRET_DIFF.to_string());
            }
            Ok(outcome)
        }
    }
}

/// Resource paths must be absolute: a relative path would depend on the agent's working
/// directory.
pub(super) fn absolute_path(path: &str) -> Result<&Path, ResourceError> {
    let as_path = Path::new(path);
    if !as_path.is_absolute() {
        return Err(ResourceError::new(format!(
            "path `{path}` is not absolute\nhint: write the full path, e.g. `/etc/{path}`"
        )));
    }
    Ok(as_path)
}

fn refuse_non_file(path: &Path, meta: &Metadata) -> Result<(), ResourceError> {
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        let target = fs::read_link(path)
            .map(|target| target.display().to_string())
            .unwrap_or_default();
        return Err(ResourceError::new(format!(
            "`{}` is a symbolic link to `{target}`, not a regular file\nhint: manage the link's target path instead, or remove the link first with a `link` resource (state = \"absent\")",
            path.display()
        )));
    }
    if file_type.is_dir() {
        return Err(ResourceError::new(format!(
            "`{}` is a directory, not a regular file",
            path.display()
        )));
    }
    if !file_type.is_file() {
        return Err(ResourceError::new(format!(
            "`{}` exists and is not a regular file",
            path.display()
        )));
    }
    Ok(())
}

fn desired_content<'s>(
    spec: &'s FileSpec,
    files: &'s BTreeMap<String, FileEntry>,
    ctx: &mut ResourceContext<'_>,
) -> Result<Desired<'s>, ResourceError> {
    let given = [
        spec.content.is_some(),
        spec.template.is_some(),
        spec.source.is_some(),
    ]
    .iter()
    .filter(|set| **set)
    .count();
    if given > 1 {
        return Err(ResourceError::new(
            "set only one of `content`, `template` and `source`",
        ));
    }
    if let Some(content) = &spec.content {
        return Ok(Desired::Bytes(content.clone().into_bytes()));
    }
    if let Some(template_path) = &spec.template {
        let source = ctx.templates.get(template_path).ok_or_else(|| {
            ResourceError::new(format!("the role plan carries no template `{template_path}`\nhint: the controller should have sent it; check the path"))
        })?;
        let context = ctx.scope.context();
        let rendered = ctx
            .engine
            .render(&format!("template `{template_path}`"), source, &context)
            .map_err(ResourceError::new)?;
        return Ok(Desired::Bytes(rendered.into_bytes()));
    }
    if let Some(source) = &spec.source {
        let entry = files.get(source).ok_or_else(|| {
            ResourceError::new(format!("the role plan carries no served file `{source}`\nhint: the controller should have listed it; check the path"))
        })?;
        return Ok(Desired::Served { source, entry });
    }
    Ok(Desired::Any)
}

fn remove(path: &Path, exists: bool, check: bool) -> Result<Outcome, ResourceError> {
    if !exists {
        return Ok(Outcome::unchanged());
    }
    if !check {
        fs::remove_file(path).map_err(|err| io_error("cannot remove", path, &err))?;
    }
    Ok(Outcome::changed(vec!["removed".to_string()]))
}

fn present(
    path: &Path,
    existing: Option<&Metadata>,
    desired: Desired<'_>,
    spec: &FileSpec,
    ctx: &mut ResourceContext<'_>,
) -> Result<Outcome, ResourceError> {
    let wanted =
        WantedAttributes::resolve(spec.owner.as_deref(), spec.group.as_deref(), spec.mode)?;
    let Some(meta) = existing else {
        return create(path, desired, &wanted, ctx);
    };
    let (content_changes, old_bytes) = match &desired {
        Desired::Any => (false, None),
        Desired::Bytes(new) => {
            // Equal lengths are compared byte for byte; the old bytes are also read for a diff.
            if meta.len() != new.len() as u64 && !ctx.diff {
                (true, None)
            } else {
                let old = fsutil::read_optional(path)?.unwrap_or_default();
                (old != *new, Some(old))
            }
        }
        Desired::Served { source, entry } => {
            // A different size needs no hash on either side; an equal one compares sha256s,
            // the controller's from the plan or, when it had not finished hashing, asked for.
            let differs = meta.len() != entry.size || {
                let local = fsutil::content_sha256(path, meta, ctx.check)
                    .map_err(|err| io_error("cannot read", path, &err))?;
                local != served_sha256(source, entry, ctx)?
            };
            (differs, None)
        }
    };
    let mut changes = Vec::new();
    if content_changes {
        changes.push("content".to_string());
    }
    changes.extend(wanted.changes(meta));
    if changes.is_empty() {
        return Ok(Outcome::unchanged());
    }
    let mut outcome = Outcome::changed(changes);
    if !content_changes {
        if !ctx.check {
            wanted.apply_to_path(path)?;
        }
        return Ok(outcome);
    }
    if ctx.check {
        ctx.predicted.parent_takes_new_files(path)?;
    }
    let attributes = FinalAttributes::for_replacement(&wanted, Some(meta));
    match desired {
        Desired::Bytes(new) => {
            if ctx.diff {
                outcome.diff = Some(content_diff(&spec.path, old_bytes.as_deref(), &new));
            }
            if !ctx.check {
                fsutil::write_atomic(path, &new, attributes?)?;
            }
        }
        Desired::Served { source, entry } => {
            if ctx.check {
                if ctx.diff {
                    let old_hash = fsutil::file_sha256(path).ok();
                    let new_hash = served_sha256(source, entry, ctx)?;
                    outcome.diff = Some(hash_diff(old_hash.as_deref(), &new_hash));
                }
            } else {
                let (temp, sha256) = receive(path, source, entry, ctx)?;
                stamp::record_written(temp.file_ref(), entry.mtime_ns, &sha256);
                if ctx.diff {
                    outcome.diff = Some(served_diff(
                        &spec.path,
                        Some(path),
                        &temp,
                        entry.size,
                        &sha256,
                    ));
                }
                temp.persist(path, attributes?)?;
            }
        }
        Desired::Any => unreachable!("no content change without content"),
    }
    Ok(outcome)
}

fn create(
    path: &Path,
    desired: Desired<'_>,
    wanted: &WantedAttributes,
    ctx: &mut ResourceContext<'_>,
) -> Result<Outcome, ResourceError> {
    let parent_exists = path.parent().is_some_and(Path::is_dir);
    let mut outcome = Outcome::changed(vec!["created".to_string()]);
    if ctx.check {
        ctx.predicted.parent_takes_new_files(path)?;
        if !parent_exists {
            outcome.changes = vec![format!(
                "created (its parent directory does not exist yet: `{}`)",
                parent_display(path)
            )];
        }
        if ctx.diff {
            outcome.diff = match &desired {
                Desired::Bytes(new) => Some(content_diff(&path.display().to_string(), None, new)),
                Desired::Served { source, entry } => {
                    Some(hash_diff(None, &served_sha256(source, entry, ctx)?))
                }
                Desired::Any => None,
            };
        }
        return Ok(outcome);
    }
    if !parent_exists {
        return Err(fsutil::missing_parent(path));
    }
    let attributes = FinalAttributes::for_replacement(wanted, None)?;
    match desired {
        Desired::Bytes(new) => {
            if ctx.diff {
                outcome.diff = Some(content_diff(&path.display().to_string(), None, &new));
            }
            fsutil::write_atomic(path, &new, attributes)?;
        }
        Desired::Served { source, entry } => {
            let (temp, sha256) = receive(path, source, entry, ctx)?;
            stamp::record_written(temp.file_ref(), entry.mtime_ns, &sha256);
            if ctx.diff {
                let label = path.display().to_string();
                outcome.diff = Some(served_diff(&label, None, &temp, entry.size, &sha256));
            }
            temp.persist(path, attributes)?;
        }
        Desired::Any => fsutil::write_atomic(path, b"", attributes)?,
    }
    Ok(outcome)
}

fn parent_display(path: &Path) -> String {
    path.parent()
        .map(|parent| parent.display().to_string())
        .unwrap_or_default()
}

/// The sha256 of a served file: the plan's, or asked of the controller when the plan was sent
/// before the controller had hashed the file.
pub(super) fn served_sha256(
    source: &str,
    entry: &FileEntry,
    ctx: &mut ResourceContext<'_>,
) -> Result<String, ResourceError> {
    if let Some(sha256) = &entry.sha256 {
        return Ok(sha256.clone());
    }
    ctx.fetcher.digest(entry.id).map_err(|err| {
        let why = match err {
            FetchError::Refused(why) | FetchError::Broken(why) => why,
            FetchError::Sink(err) => err.to_string(),
        };
        ResourceError::new(format!(
            "cannot get the sha256 of `{source}` from the controller: {why}"
        ))
    })
}

/// Streams a served file into a temporary file next to `path`, hashing as it arrives, and
/// checks its size against the plan and its sha256 against the one the controller announced
/// at the end of the stream (and the plan's, if it had one). Returns the file and that sha256.
/// On any mismatch the temporary file is dropped (removed) and the destination is untouched.
pub(super) fn receive(
    path: &Path,
    source: &str,
    entry: &FileEntry,
    ctx: &mut ResourceContext<'_>,
) -> Result<(TempFile, String), ResourceError> {
    let mut temp = TempFile::next_to(path)?;
    let mut hasher = Sha256::new();
    let mut stored = 0u64;
    let result = {
        let mut sink = |chunk: &[u8]| -> std::io::Result<()> {
            hasher.update(chunk);
            // Never store more than the plan announced: a runaway stream cannot fill the disk.
            let room = entry.size.saturating_sub(stored);
            let keep = chunk.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            stored += chunk.len() as u64;
            temp.write_streamed(&chunk[..keep])
        };
        ctx.fetcher
            .fetch(entry.id, &mut sink, &mut ctx.bytes_received)
    };
    let fetched = match result {
        Ok(fetched) => fetched,
        Err(FetchError::Refused(reason)) => {
            return Err(ResourceError::new(format!(
                "the controller refused to send `{source}`: {reason}"
            )))
        }
        Err(FetchError::Sink(err)) => {
            return Err(io_error("cannot write a temporary file for", path, &err))
        }
        Err(FetchError::Broken(why)) => {
            return Err(ResourceError::new(format!(
                "the transfer of `{source}` broke off: {why}"
            )))
        }
    };
    if fetched.size != entry.size || stored != entry.size {
        return Err(ResourceError::new(format!(
            "size mismatch for `{source}`: the plan says {} bytes, the controller announced {} and sent {stored}; `{}` was left untouched",
            entry.size,
            fetched.size,
            path.display()
        )));
    }
    let received_hash = diff::hex(&hasher.finalize());
    let expected = entry.sha256.as_deref().unwrap_or(&fetched.sha256);
    if received_hash != fetched.sha256 || received_hash != expected {
        return Err(ResourceError::new(format!(
            "sha256 mismatch for `{source}`: expected {expected}, received {received_hash}; `{}` was left untouched\nhint: the file changed on the controller during the run, or the transfer was corrupted; run again",
            path.display()
        )));
    }
    Ok((temp, received_hash))
}

fn served_diff(
    label: &str,
    old_path: Option<&Path>,
    temp: &TempFile,
    size: u64,
    sha256: &str,
) -> String {
    let old_size = old_path
        .and_then(|old| fs::metadata(old).ok())
        .map(|meta| meta.len())
        .unwrap_or(0);
    if size <= MAX_SOURCE_DIFF && old_size <= MAX_SOURCE_DIFF {
        if let Ok(new) = fs::read(temp.path()) {
            let old = match old_path {
                Some(old_path) => fs::read(old_path).ok(),
                None => None,
            };
            return content_diff(label, old.as_deref(), &new);
        }
    }
    let old_hash = old_path.and_then(|old| fsutil::file_sha256(old).ok());
    hash_diff(old_hash.as_deref(), sha256)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use mop_protocol::{Facts, FileMode, ResourceSpec};

    use super::super::testing::{snapshot, MemoryFetcher};
    use super::super::{dispatch, ResourceContext};
    use super::*;
    use crate::outcome::SystemRunner;
    use crate::template::{Engine, Scope};

    struct Harness {
        engine: Engine,
        scope: Scope,
        facts: Facts,
        templates: BTreeMap<String, String>,
        files: BTreeMap<String, FileEntry>,
        fetcher: MemoryFetcher,
        bytes_received: u64,
        predicted: crate::resources::Predicted,
    }

    impl Harness {
        fn new() -> Harness {
            let facts = Facts {
                hostname: "web1".into(),
                ..Facts::default()
            };
            Harness {
                engine: Engine::new(),
                scope: Scope::new(&facts),
                facts,
                templates: BTreeMap::new(),
                files: BTreeMap::new(),
                fetcher: MemoryFetcher::default(),
                bytes_received: 0,
                predicted: crate::resources::Predicted::default(),
            }
        }

        /// Serves `content` with its sha256 in the plan.
        fn serve(&mut self, source: &str, id: u32, content: &[u8]) {
            self.serve_unhashed(source, id, content);
            if let Some(entry) = self.files.get_mut(source) {
                entry.sha256 = Some(diff::sha256_hex(content));
            }
        }

        /// Serves `content` with a plan entry sent before the controller finished hashing it.
        fn serve_unhashed(&mut self, source: &str, id: u32, content: &[u8]) {
            self.files.insert(
                source.to_string(),
                FileEntry {
                    secret: false,
                    id,
                    sha256: None,
                    size: content.len() as u64,
                    mode: 0o644,
                    mtime_ns: None,
                },
            );
            self.fetcher.files.insert(id, content.to_vec());
        }

        fn run(
            &mut self,
            spec: &FileSpec,
            check: bool,
            diff: bool,
        ) -> Result<Outcome, ResourceError> {
            let mut runner = SystemRunner;
            let mut ctx = ResourceContext {
                check,
                diff,
                facts: &self.facts,
                engine: &self.engine,
                scope: &mut self.scope,
                templates: &self.templates,
                files: &self.files,
                trees: &BTreeMap::new(),
                fetcher: &mut self.fetcher,
                runner: &mut runner,
                bytes_received: 0,
                predicted: &mut self.predicted,
            };
            let result = dispatch(&ResourceSpec::File(spec.clone()), &mut ctx);
            self.bytes_received = ctx.bytes_received;
            result
        }
    }

    fn spec(path: &Path) -> FileSpec {
        FileSpec {
            path: path.display().to_string(),
            content: None,
            template: None,
            source: None,
            owner: None,
            group: None,
            mode: None,
            state: Presence::Present.into(),
        }
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).expect("exists").permissions().mode() & 0o7777
    }

    #[test]
    fn content_check_changes_nothing_then_apply_converges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("motd");
        fs::write(&path, "old\n").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut harness = Harness::new();
        let file = FileSpec {
            content: Some("new\n".into()),
            mode: Some(FileMode(0o600)),
            ..spec(&path)
        };

        let before = snapshot(dir.path());
        let outcome = harness.run(&file, true, true).expect("check");
        assert_eq!(snapshot(dir.path()), before, "check mode touched the tree");
        assert!(outcome.changed);
        assert_eq!(
            outcome.changes,
            vec!["content".to_string(), "mode 0644 -> 0600".to_string()]
        );
        let diff = outcome.diff.expect("diff asked");
        assert!(diff.contains("-old\n+new\n"), "{diff}");

        let outcome = harness.run(&file, false, false).expect("apply");
        assert!(outcome.changed);
        assert_eq!(fs::read_to_string(&path).expect("readable"), "new\n");
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).expect("dir").count(),
            1,
            "temporary files left behind"
        );

        let outcome = harness.run(&file, false, true).expect("second apply");
        assert_eq!(outcome, Outcome::unchanged());
    }

    #[test]
    fn no_content_means_exists_with_attributes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("flag");
        let mut harness = Harness::new();
        let file = FileSpec {
            mode: Some(FileMode(0o640)),
            ..spec(&path)
        };
        let outcome = harness.run(&file, false, false).expect("apply");
        assert_eq!(outcome.changes, vec!["created".to_string()]);
        assert_eq!(fs::read(&path).expect("exists"), b"");
        assert_eq!(mode_of(&path), 0o640);
        fs::write(&path, "kept").expect("write");
        assert!(!harness.run(&file, false, false).expect("apply").changed);
        assert_eq!(fs::read_to_string(&path).expect("exists"), "kept");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).expect("chmod");
        let outcome = harness.run(&file, false, false).expect("apply");
        assert_eq!(outcome.changes, vec!["mode 0666 -> 0640".to_string()]);
        assert_eq!(fs::read_to_string(&path).expect("exists"), "kept");
    }

    #[test]
    fn rewriting_content_keeps_the_existing_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        fs::write(&path, "a").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        let mut harness = Harness::new();
        harness
            .run(
                &FileSpec {
                    content: Some("b".into()),
                    ..spec(&path)
                },
                false,
                false,
            )
            .expect("apply");
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn template_renders_with_facts_and_undefined_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hosts");
        let mut harness = Harness::new();
        harness
            .templates
            .insert("t/hosts.j2".into(), "name={{ facts.hostname }}\n".into());
        harness
            .templates
            .insert("t/bad.j2".into(), "ok\n{{ nope }}\n".into());
        let file = FileSpec {
            template: Some("t/hosts.j2".into()),
            ..spec(&path)
        };
        harness.run(&file, false, false).expect("apply");
        assert_eq!(fs::read_to_string(&path).expect("exists"), "name=web1\n");
        let bad = FileSpec {
            template: Some("t/bad.j2".into()),
            ..spec(&path)
        };
        let err = harness.run(&bad, false, false).expect_err("undefined");
        assert!(
            err.message
                .starts_with("template `t/bad.j2` line 2: undefined value"),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&path).expect("exists"), "name=web1\n");
    }

    #[test]
    fn served_file_is_fetched_verified_and_not_refetched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        let mut harness = Harness::new();
        let content: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        harness.serve("files/blob", 7, &content);
        let file = FileSpec {
            source: Some("files/blob".into()),
            ..spec(&path)
        };

        let outcome = harness.run(&file, true, true).expect("check");
        assert!(outcome.changed);
        assert!(
            harness.fetcher.requests.is_empty(),
            "check mode requested content"
        );
        assert!(!path.exists());

        let outcome = harness.run(&file, false, true).expect("apply");
        assert_eq!(outcome.changes, vec!["created".to_string()]);
        assert_eq!(harness.bytes_received, 5000);
        assert_eq!(fs::read(&path).expect("exists"), content);
        assert!(
            outcome.diff.expect("diff").starts_with("sha256 (none) -> "),
            "binary content gets a hash diff"
        );

        let outcome = harness.run(&file, false, false).expect("second apply");
        assert!(!outcome.changed);
        assert_eq!(
            harness.fetcher.requests,
            vec![7],
            "an identical file was fetched again"
        );
        assert_eq!(harness.bytes_received, 0);
    }

    #[test]
    fn without_a_planned_sha256_the_digest_is_asked_only_for_a_same_size_destination() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        let mut harness = Harness::new();
        let content: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        harness.serve_unhashed("files/blob", 3, &content);
        let file = FileSpec {
            source: Some("files/blob".into()),
            ..spec(&path)
        };

        let outcome = harness.run(&file, false, false).expect("first apply");
        assert_eq!(outcome.changes, vec!["created".to_string()]);
        assert_eq!(fs::read(&path).expect("exists"), content);
        assert_eq!(harness.fetcher.requests, vec![3]);
        assert!(
            harness.fetcher.digest_requests.is_empty(),
            "a missing destination needs no digest"
        );

        let outcome = harness.run(&file, false, false).expect("second apply");
        assert!(!outcome.changed);
        assert_eq!(
            harness.fetcher.digest_requests,
            vec![3],
            "same size: compared"
        );
        assert_eq!(
            harness.fetcher.requests,
            vec![3],
            "identical: not fetched again"
        );

        fs::write(&path, b"shorter").expect("write");
        let outcome = harness
            .run(&file, false, false)
            .expect("apply after a change");
        assert_eq!(outcome.changes, vec!["content".to_string()]);
        assert_eq!(
            harness.fetcher.digest_requests,
            vec![3],
            "a different size needs no digest"
        );
        assert_eq!(harness.fetcher.requests, vec![3, 3]);
        assert_eq!(fs::read(&path).expect("exists"), content);

        // A check-mode diff names the new sha256, so it asks for it.
        fs::write(&path, b"shorter").expect("write");
        let outcome = harness.run(&file, true, true).expect("check with diff");
        assert_eq!(
            outcome.diff.expect("diff"),
            format!(
                "sha256 {} -> {}",
                diff::sha256_hex(b"shorter"),
                diff::sha256_hex(&content)
            )
        );
        assert_eq!(harness.fetcher.digest_requests, vec![3, 3]);

        // The controller's end-of-stream sha256 still guards the transfer.
        fs::remove_file(&path).expect("remove");
        harness.fetcher.corrupt = true;
        let err = harness.run(&file, false, false).expect_err("corrupted");
        assert!(
            err.message.starts_with("sha256 mismatch for `files/blob`"),
            "{err}"
        );
        assert!(!path.exists(), "a corrupted transfer landed");
    }

    #[test]
    fn corrupted_or_refused_transfer_leaves_the_destination_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("conf");
        fs::write(&path, "original").expect("write");
        let mut harness = Harness::new();
        harness.serve("files/conf", 1, b"wanted content");
        // The controller serves other bytes than the plan's hash describes.
        harness.fetcher.files.insert(1, b"WANTED CONTENT".to_vec());
        let file = FileSpec {
            source: Some("files/conf".into()),
            ..spec(&path)
        };
        let err = harness.run(&file, false, false).expect_err("mismatch");
        assert!(
            err.message.starts_with("sha256 mismatch for `files/conf`"),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&path).expect("exists"), "original");
        assert_eq!(
            fs::read_dir(dir.path()).expect("dir").count(),
            1,
            "temporary file left behind"
        );

        harness.fetcher.files.remove(&1);
        let err = harness.run(&file, false, false).expect_err("refused");
        assert!(err.message.contains("refused"), "{err}");
        assert_eq!(fs::read_to_string(&path).expect("exists"), "original");
    }

    #[test]
    fn absent_removes_and_parent_missing_fails_clearly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gone");
        fs::write(&path, "x").expect("write");
        let mut harness = Harness::new();
        let absent = FileSpec {
            state: Presence::Absent.into(),
            ..spec(&path)
        };
        assert!(harness.run(&absent, true, false).expect("check").changed);
        assert!(path.exists());
        assert!(harness.run(&absent, false, false).expect("apply").changed);
        assert!(!path.exists());
        assert!(!harness.run(&absent, false, false).expect("again").changed);

        let orphan = FileSpec {
            content: Some("x".into()),
            ..spec(&dir.path().join("missing/file"))
        };
        // Check mode predicts apply: the same failure, word for word.
        let predicted = harness
            .run(&orphan, true, false)
            .expect_err("check predicts the failure");
        let err = harness.run(&orphan, false, false).expect_err("apply fails");
        assert!(
            err.message.contains("hint: add a `directory` resource"),
            "{err}"
        );
        assert_eq!(predicted.message, err.message);
    }

    /// A directory the agent may not write to: apply cannot create the temporary file a new
    /// or changed content goes through, so check mode fails with the same message; it stays
    /// quiet where apply would write nothing.
    #[test]
    fn check_predicts_a_directory_that_takes_no_new_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut harness = Harness::new();
        harness.predicted = crate::resources::Predicted::refusing_writes();
        harness.serve("app.conf", 1, b"served\n");
        let apply_message =
            fsutil::temp_file_error(dir.path(), &std::io::Error::from_raw_os_error(13)).message;

        let new_file = FileSpec {
            source: Some("app.conf".into()),
            ..spec(&dir.path().join("new.conf"))
        };
        let before = snapshot(dir.path());
        let err = harness
            .run(&new_file, true, true)
            .expect_err("check predicts");
        assert_eq!(err.message, apply_message);
        assert!(harness.fetcher.requests.is_empty(), "nothing was fetched");

        let existing = dir.path().join("existing.conf");
        fs::write(&existing, "old\n").expect("write");
        let changed = FileSpec {
            source: Some("app.conf".into()),
            ..spec(&existing)
        };
        let err = harness
            .run(&changed, true, false)
            .expect_err("check predicts");
        assert_eq!(err.message, apply_message);
        let literal = FileSpec {
            content: Some("new\n".into()),
            ..spec(&existing)
        };
        let err = harness
            .run(&literal, true, false)
            .expect_err("check predicts");
        assert_eq!(err.message, apply_message);

        // No content to write: apply writes nothing there, check says nothing.
        let same = FileSpec {
            content: Some("old\n".into()),
            ..spec(&existing)
        };
        assert!(!harness.run(&same, true, false).expect("unchanged").changed);
        let mode_only = FileSpec {
            mode: Some(FileMode(0o600)),
            ..spec(&existing)
        };
        assert!(harness.run(&mode_only, true, false).expect("chmod").changed);
        fs::remove_file(&existing).expect("remove");
        assert_eq!(snapshot(dir.path()), before, "check mode touched the tree");
    }

    #[test]
    fn symlinks_directories_and_relative_paths_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut harness = Harness::new();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/etc/hostname", &link).expect("symlink");
        let err = harness
            .run(
                &FileSpec {
                    content: Some("x".into()),
                    ..spec(&link)
                },
                false,
                false,
            )
            .expect_err("link");
        assert!(err.message.contains("is a symbolic link"), "{err}");
        let err = harness
            .run(&spec(dir.path()), false, false)
            .expect_err("dir");
        assert!(err.message.contains("is a directory"), "{err}");
        let err = harness
            .run(&spec(Path::new("etc/motd")), false, false)
            .expect_err("relative");
        assert!(err.message.contains("is not absolute"), "{err}");
    }

    #[test]
    fn owner_and_group_are_set_before_the_rename() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("owned");
        let mut harness = Harness::new();
        if fs::metadata(dir.path()).expect("exists").uid() != 0 {
            eprintln!(
                "skipping: changing a file's owner needs root, and this test runs as another user"
            );
            return;
        }
        let file = FileSpec {
            content: Some("x".into()),
            owner: Some("65534".into()),
            group: Some("65534".into()),
            mode: Some(FileMode(0o4750)),
            ..spec(&path)
        };
        assert!(harness.run(&file, false, false).expect("apply").changed);
        let meta = fs::metadata(&path).expect("exists");
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
        // chown clears set-id bits; the mode is applied after it.
        assert_eq!(meta.mode() & 0o7777, 0o4750);
        assert!(!harness.run(&file, false, false).expect("again").changed);
        let root_owned = FileSpec {
            owner: Some("0".into()),
            ..file.clone()
        };
        let outcome = harness.run(&root_owned, true, false).expect("check");
        assert_eq!(outcome.changes.len(), 1, "{:?}", outcome.changes);
        assert!(
            outcome.changes[0].starts_with("owner "),
            "{:?}",
            outcome.changes
        );
        assert_eq!(
            fs::metadata(&path).expect("exists").uid(),
            65534,
            "check mode changed the owner"
        );
    }

    #[test]
    fn binary_content_diff_is_a_hash_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bin");
        fs::write(&path, b"a\0b").expect("write");
        let mut harness = Harness::new();
        let outcome = harness
            .run(
                &FileSpec {
                    content: Some("text".into()),
                    ..spec(&path)
                },
                true,
                true,
            )
            .expect("check");
        let diff = outcome.diff.expect("diff");
        assert_eq!(
            diff,
            format!(
                "sha256 {} -> {}",
                diff::sha256_hex(b"a\0b"),
                diff::sha256_hex(b"text")
            )
        );
    }
}
