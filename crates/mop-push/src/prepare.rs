//! Everything the controller settles once per run, before any host is contacted: the file
//! server for each role, the manifest of exactly the files the selected roles use (hashed once),
//! and the template texts. Every problem is collected and reported with its policy position.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mop_fileserver::{
    FileId, FileServer, FileServerConfig, Manifest, ManifestBuilder, PatternSpec, RootSpec,
};
use mop_policy::{FileReference, Policy, PolicyError};
use mop_protocol::{FileEntry, ResourceSpec, TreeListing};

use crate::session::{DigestFuture, FileError, FileProvider};

/// Largest template the controller reads (templates travel inside the role plan).
const MAX_TEMPLATE_BYTES: u64 = 16 * 1024 * 1024;

/// The per-role files of a prepared run.
#[derive(Debug, Clone, Default)]
pub struct PreparedRole {
    /// Template texts keyed by the `template` string as written.
    pub templates: BTreeMap<String, String>,
    /// Served files keyed by the `source` string as written (a tree's files by
    /// `mop_protocol::tree::file_key`).
    pub files: BTreeMap<String, FileEntry>,
    /// Served directory trees keyed by the `tree` resource's `source` string as written.
    pub trees: BTreeMap<String, TreeListing>,
}

/// The result of [`prepare`]: one [`PreparedRole`] per policy role (empty for roles that were
/// not selected) and the shared manifest.
pub struct PreparedRun {
    pub roles: Vec<PreparedRole>,
    pub manifest: Arc<Manifest>,
}

/// Makes the manifests of this process take digests of served files unchanged since an earlier
/// run from the controller's digest cache (`mop_fileserver::DigestCache`), at
/// [`digest_cache_path`] of the environment. For `push` and `local`; `validate` reads every
/// file, as it says. Returns a warning to print when `MOP_DIGEST_CACHE` was not taken.
pub fn use_digest_cache() -> Option<String> {
    let env = |name: &str| std::env::var_os(name);
    mop_fileserver::DigestCache::configure(digest_cache_path(env));
    digest_cache_warning(env)
}

/// Why `MOP_DIGEST_CACHE` was not taken, when it names a relative path.
pub fn digest_cache_warning(env: impl Fn(&str) -> Option<OsString>) -> Option<String> {
    let value = env("MOP_DIGEST_CACHE")?;
    if value.is_empty() || value == "off" || PathBuf::from(&value).is_absolute() {
        return None;
    }
    Some(format!(
        "MOP_DIGEST_CACHE `{}` is not an absolute path: this run uses no digest cache\n  hint: give an absolute path, or `off` for none",
        value.to_string_lossy().escape_debug()
    ))
}

/// `MOP_DIGEST_CACHE` when set (empty or `off`: no cache), else `$XDG_CACHE_HOME/mop/digests`,
/// else `$HOME/.cache/mop/digests`; relative paths are not taken.
pub fn digest_cache_path(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let absolute = |name: &str| {
        env(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    match env("MOP_DIGEST_CACHE") {
        Some(value) if value.is_empty() || value == "off" => None,
        Some(value) => Some(PathBuf::from(value)).filter(|path| path.is_absolute()),
        None => absolute("XDG_CACHE_HOME")
            .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
            .map(|cache| cache.join("mop").join("digests")),
    }
}

/// Validates every `source` and `template` of the selected roles against the file server,
/// hashes what they use, and reads the templates.
///
/// `protected_files` (the policy and inventory files) are never served.
pub fn prepare(
    policy: &Policy,
    selected_roles: &[usize],
    protected_files: &[PathBuf],
) -> Result<PreparedRun, Vec<PolicyError>> {
    match prepare_partially(policy, selected_roles, protected_files) {
        (Some(prepared), errors) if errors.is_empty() => Ok(prepared),
        (_, errors) => Err(errors),
    }
}

/// Like [`prepare`], but keeps what could be prepared next to the errors: the templates
/// that resolved are read even when another reference is refused, so their own checks run
/// in the same report. `None` only when the manifest itself cannot be built.
pub fn prepare_partially(
    policy: &Policy,
    selected_roles: &[usize],
    protected_files: &[PathBuf],
) -> (Option<PreparedRun>, Vec<PolicyError>) {
    let mut errors = Vec::new();
    // Per role: the server for `source` (the served roots) and the one for `template` (the
    // policy's directory plus the served roots: templates are part of the policy, but what
    // they contain leaves the controller, so the allow/deny rules still apply).
    let mut servers: Vec<Option<(FileServer, FileServer)>> = Vec::with_capacity(policy.roles.len());
    // Per role using a role directory: the server for the `source`s its resources name, rooted
    // at its `files/` (the same allow/deny rules apply).
    let mut role_dir_servers: Vec<Option<FileServer>> = Vec::with_capacity(policy.roles.len());
    for (index, role) in policy.roles.iter().enumerate() {
        if !selected_roles.contains(&index) {
            servers.push(None);
            role_dir_servers.push(None);
            continue;
        }
        match &role.role_dir {
            // No `files/`: nothing to serve; a `source` of the role directory is reported below.
            Some(role_dir) if role_dir.join("files").is_dir() => {
                // Absolute: the file server resolves relative roots against the policy's
                // directory, and `role_dir` is already relative to the working directory.
                let files = role_dir.join("files");
                let root = (
                    std::path::absolute(&files).unwrap_or(files),
                    format!("role directory of role `{}`", role.name),
                );
                match file_server(policy, std::iter::once(root), protected_files) {
                    Ok(server) => role_dir_servers.push(Some(server)),
                    Err(error) => {
                        let (message, hint) = split_hint(&error.to_string());
                        errors.push(PolicyError {
                            file: role.origin.file.clone(),
                            position: Some(role.origin.position),
                            context: format!("role `{}`", role.name),
                            message,
                            hint,
                        });
                        role_dir_servers.push(None);
                    }
                }
            }
            _ => role_dir_servers.push(None),
        }
        let paths = role
            .fileserver_paths
            .as_ref()
            .unwrap_or(&policy.fileserver.paths);
        let mut template_roots =
            vec![std::path::absolute(&policy.dir).unwrap_or_else(|_| policy.dir.clone())];
        // A used role directory's templates are served wherever the directory lives.
        template_roots.extend(
            role.role_dir
                .as_ref()
                .map(|dir| dir.join("templates"))
                .filter(|templates| templates.is_dir())
                .map(|templates| std::path::absolute(&templates).unwrap_or(templates)),
        );
        template_roots.extend(paths.iter().map(|spec| spec.path.clone()));
        let built = file_server(
            policy,
            paths
                .iter()
                .map(|spec| (spec.path.clone(), spec.origin.to_string())),
            protected_files,
        )
        .and_then(|sources| {
            let roots = template_roots
                .into_iter()
                .map(|root| (root, "the policy directory".to_string()));
            file_server(policy, roots, protected_files).map(|templates| (sources, templates))
        });
        match built {
            Ok(pair) => servers.push(Some(pair)),
            Err(error) => {
                let (message, hint) = split_hint(&error.to_string());
                errors.push(PolicyError {
                    file: policy.path.clone(),
                    position: Some(role.origin.position),
                    context: format!("role `{}`", role.name),
                    message,
                    hint,
                });
                servers.push(None);
            }
        }
    }

    let mut builder = ManifestBuilder::new();
    let mut sources: Vec<(usize, String, FileId)> = Vec::new();
    let mut templates: Vec<(usize, String, FileId)> = Vec::new();
    let mut trees: Vec<(usize, String, TreeListing)> = Vec::new();
    let references = policy
        .source_paths()
        .map(|reference| (false, reference))
        .chain(policy.template_paths().map(|reference| (true, reference)));
    for (is_template, reference) in references {
        let Some((source_server, template_server)) =
            servers.get(reference.role_index).and_then(Option::as_ref)
        else {
            continue;
        };
        let from_role_dir = reference.role.defined_in_role_dir(&reference.origin.file);
        let role_dir_server = role_dir_servers
            .get(reference.role_index)
            .and_then(Option::as_ref);
        let (server, requested) = if is_template {
            (template_server, absolute_text(&reference.resolved))
        } else if from_role_dir {
            let Some(role_dir_server) = role_dir_server else {
                let files = reference
                    .role
                    .role_dir
                    .as_ref()
                    .map(|dir| dir.join("files"))
                    .unwrap_or_default();
                errors.push(reference_error(
                    &reference,
                    false,
                    &format!(
                        "the role directory has no `{}`\n  hint: a role directory's `source` files live in its `files/`",
                        files.display()
                    ),
                ));
                continue;
            };
            (role_dir_server, reference.path.to_string())
        } else {
            (source_server, reference.path.to_string())
        };
        if let ResourceSpec::Tree(tree) = &reference.resource.spec {
            let excluded = |relative: &str, is_dir: bool| {
                mop_protocol::tree::is_excluded(&tree.exclude, relative, is_dir)
            };
            match server.resolve_tree(&requested, &excluded) {
                Ok(served) => {
                    for (relative, file) in &served.files {
                        let id = builder.add(file);
                        let key = mop_protocol::tree::file_key(reference.path, relative);
                        sources.push((reference.role_index, key, id));
                    }
                    let listing = TreeListing {
                        dirs: served.dirs,
                        files: served
                            .files
                            .into_iter()
                            .map(|(relative, _)| relative)
                            .collect(),
                    };
                    trees.push((reference.role_index, reference.path.to_string(), listing));
                }
                Err(rejected) => errors.extend(
                    rejected
                        .iter()
                        .map(|rejected| reference_error(&reference, false, &rejected.to_string())),
                ),
            }
            continue;
        }
        match server.resolve(&requested) {
            Ok(served) => {
                let id = builder.add(&served);
                let entry = (reference.role_index, reference.path.to_string(), id);
                if is_template {
                    templates.push(entry);
                } else {
                    sources.push(entry);
                }
            }
            Err(rejected) => errors.push(reference_error(
                &reference,
                is_template,
                &rejected.to_string(),
            )),
        }
    }
    let manifest = match builder.finish() {
        Ok(manifest) => manifest,
        Err(err) => {
            errors.push(PolicyError {
                file: policy.path.clone(),
                position: None,
                context: "file server".to_string(),
                message: err.to_string(),
                hint: None,
            });
            return (None, errors);
        }
    };
    let mut roles = vec![PreparedRole::default(); policy.roles.len()];
    for (role_index, source, id) in sources {
        if let Some(entry) = manifest.entry_by_id(id) {
            roles[role_index].files.insert(
                source,
                FileEntry {
                    id: id.0,
                    // Filled in per host when the plan is sent, if hashing has finished.
                    sha256: None,
                    size: entry.size,
                    mode: entry.mode,
                    secret: entry.secret,
                    mtime_ns: entry.mtime_ns,
                },
            );
        }
    }
    for (role_index, source, listing) in trees {
        // Two `tree`s of one role may name the same source with different excludes: the
        // listing is their union, and each agent-side resource applies its own excludes.
        let entry = roles[role_index].trees.entry(source).or_default();
        entry.dirs.extend(listing.dirs);
        entry.dirs.sort();
        entry.dirs.dedup();
        entry.files.extend(listing.files);
        entry.files.sort();
        entry.files.dedup();
    }
    for (role_index, template, id) in templates {
        // A template is inlined into the plan and rendered into a diffable file on the host:
        // a vault file's plaintext must not travel that way.
        if manifest.entry_by_id(id).is_some_and(|entry| entry.secret) {
            errors.push(PolicyError {
                file: policy.path.clone(),
                position: None,
                context: format!("template `{template}`"),
                message: "a vault file cannot be a template".to_string(),
                hint: Some("serve it as it is with `source`".to_string()),
            });
            continue;
        }
        match manifest
            .read_whole(id, MAX_TEMPLATE_BYTES)
            .map(String::from_utf8)
        {
            Ok(Ok(text)) => {
                roles[role_index].templates.insert(template, text);
            }
            Ok(Err(_)) => errors.push(PolicyError {
                file: policy.path.clone(),
                position: None,
                context: format!("template `{template}`"),
                message: "is not valid UTF-8 text".to_string(),
                hint: Some("serve binary files with `source`, not `template`".to_string()),
            }),
            Err(err) => errors.push(PolicyError {
                file: policy.path.clone(),
                position: None,
                context: format!("template `{template}`"),
                message: err.to_string(),
                hint: None,
            }),
        }
    }
    let prepared = PreparedRun {
        roles,
        manifest: Arc::new(manifest),
    };
    (Some(prepared), errors)
}

fn file_server(
    policy: &Policy,
    roots: impl Iterator<Item = (PathBuf, String)>,
    protected_files: &[PathBuf],
) -> Result<FileServer, mop_fileserver::FileServerError> {
    let origin_of = |origin: &mop_policy::Origin| origin.to_string();
    let config = FileServerConfig {
        base_dir: policy.dir.clone(),
        roots: roots
            .map(|(path, origin)| RootSpec::new(path, origin))
            .collect(),
        allow: policy
            .fileserver
            .allow
            .iter()
            .map(|spec| PatternSpec::new(spec.pattern.clone(), origin_of(&spec.origin)))
            .collect(),
        deny: policy
            .fileserver
            .deny
            .iter()
            .map(|spec| PatternSpec::new(spec.pattern.clone(), origin_of(&spec.origin)))
            .collect(),
        protected_files: protected_files.to_vec(),
    };
    FileServer::new(config)
}

fn absolute_text(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

fn reference_error(reference: &FileReference<'_>, is_template: bool, reason: &str) -> PolicyError {
    let (first_line, hint) = split_hint(reason);
    let kind = if is_template { "template" } else { "source" };
    PolicyError {
        file: reference.origin.file.clone(),
        position: Some(reference.origin.position),
        context: reference.context(),
        message: format!("{kind} `{}`: {first_line}", reference.path),
        hint,
    }
}

/// Serves manifest entries to agent sessions, by id only.
pub struct ManifestFiles(pub Arc<Manifest>);

impl FileProvider for ManifestFiles {
    fn known_sha256(&self, id: u32) -> Option<String> {
        self.0.sha256(FileId(id)).map(str::to_owned)
    }

    fn sha256(&self, id: u32) -> DigestFuture<'_> {
        if let Some(sha256) = self.known_sha256(id) {
            return Box::pin(std::future::ready(Ok(sha256)));
        }
        let manifest = Arc::clone(&self.0);
        Box::pin(async move {
            // The hashing threads have not got to it yet: wait off the async workers.
            tokio::task::spawn_blocking(move || match manifest.wait_sha256(FileId(id)) {
                Some(Ok(sha256)) => Ok(sha256.to_owned()),
                Some(Err(error)) => Err(FileError::Source(error.to_string())),
                None => Err(FileError::NotInManifest(id)),
            })
            .await
            .unwrap_or_else(|error| {
                Err(FileError::Source(format!(
                    "hashing file id {id} failed: {error}"
                )))
            })
        })
    }

    fn open(&self, id: u32) -> Result<(u64, Box<dyn Read + Send>), FileError> {
        let size = self
            .0
            .entry_by_id(FileId(id))
            .map(|entry| entry.size)
            .ok_or(FileError::NotInManifest(id))?;
        // No hash pass while streaming: the agent hashes what it receives and refuses anything
        // that does not match the manifest's sha256 (sent at the end of the stream) before its
        // atomic rename, so a source that changed after hashing still never lands. The size
        // is checked here.
        let reader = self
            .0
            .open(FileId(id))
            .map_err(|err| FileError::Source(err.to_string()))?;
        Ok((size, Box::new(ChunkRead { reader })))
    }
}

/// Adapts the file server's size-checked chunk reader to `std::io::Read`, reading straight
/// into the caller's buffer (no intermediate copy).
struct ChunkRead {
    reader: mop_fileserver::ChunkReader,
}

impl Read for ChunkRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.reader.read_chunk(buf).map_err(std::io::Error::from)
    }
}

/// Splits `message\n  hint: text` into its parts, so the policy error renders the hint itself.
fn split_hint(text: &str) -> (String, Option<String>) {
    match text.split_once('\n') {
        Some((message, rest)) => {
            let rest = rest.trim();
            let hint = rest.strip_prefix("hint:").unwrap_or(rest).trim();
            (message.to_string(), Some(hint.to_string()))
        }
        None => (text.to_string(), None),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mop_fileserver::{FileServerConfig, ManifestBuilder, RootSpec};

    #[test]
    fn the_digest_cache_lives_in_the_users_cache_directory_unless_told_otherwise() {
        let path = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect();
            digest_cache_path(|name| {
                vars.iter()
                    .find(|(var, _)| var == name)
                    .map(|(_, value)| OsString::from(value))
            })
        };
        let home = [("HOME", "/home/op")];
        assert_eq!(
            path(&home),
            Some(PathBuf::from("/home/op/.cache/mop/digests"))
        );
        assert_eq!(
            path(&[("HOME", "/home/op"), ("XDG_CACHE_HOME", "/var/cache/op")]),
            Some(PathBuf::from("/var/cache/op/mop/digests"))
        );
        assert_eq!(
            path(&[("HOME", "/home/op"), ("XDG_CACHE_HOME", "relative")]),
            Some(PathBuf::from("/home/op/.cache/mop/digests"))
        );
        assert_eq!(
            path(&[("HOME", "/home/op"), ("MOP_DIGEST_CACHE", "/tmp/d")]),
            Some(PathBuf::from("/tmp/d"))
        );
        for off in ["", "off", "relative/path"] {
            assert_eq!(
                path(&[("HOME", "/home/op"), ("MOP_DIGEST_CACHE", off)]),
                None
            );
        }
        assert_eq!(path(&[]), None);
        assert_eq!(path(&[("HOME", "relative")]), None);
    }

    #[test]
    fn a_relative_digest_cache_path_is_warned_about() {
        let warning = |value: &str| {
            let value = OsString::from(value);
            digest_cache_warning(|name| (name == "MOP_DIGEST_CACHE").then(|| value.clone()))
        };
        let text = warning("cache/digests").expect("a warning");
        assert!(
            text.contains("`cache/digests` is not an absolute path"),
            "{text}"
        );
        assert!(text.contains("hint: "), "{text}");
        for taken in ["", "off", "/var/cache/mop/digests"] {
            assert_eq!(warning(taken), None, "{taken}");
        }
        assert_eq!(digest_cache_warning(|_| None), None);
    }

    /// A one-entry manifest of `bytes`, and the source's path.
    pub(crate) fn served(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, ManifestFiles) {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical temp dir");
        let path = root.join("data.bin");
        std::fs::write(&path, bytes).expect("write the source");
        let server = FileServer::new(FileServerConfig {
            base_dir: root,
            roots: vec![RootSpec::new(".", "test")],
            ..FileServerConfig::default()
        })
        .expect("valid file server");
        let mut builder = ManifestBuilder::new();
        builder.add(&server.resolve("data.bin").expect("served"));
        let manifest = builder.finish().expect("hashed");
        (dir, path, ManifestFiles(Arc::new(manifest)))
    }

    fn read_all(files: &ManifestFiles, id: u32) -> Result<Vec<u8>, String> {
        let (_size, mut reader) = files.open(id).map_err(|err| err.to_string())?;
        let mut content = Vec::new();
        reader
            .read_to_end(&mut content)
            .map_err(|err| err.to_string())?;
        Ok(content)
    }

    #[test]
    fn streams_the_whole_file_through_small_and_large_reads() {
        let bytes: Vec<u8> = (0..(3 * mop_protocol::frame::DATA_CHUNK + 17))
            .map(|index| (index % 251) as u8)
            .collect();
        let (_dir, _path, files) = served(&bytes);
        assert_eq!(read_all(&files, 0).expect("streamed"), bytes);
        let (size, mut reader) = files.open(0).expect("open");
        assert_eq!(size, bytes.len() as u64);
        let mut small = [0u8; 7];
        assert_eq!(reader.read(&mut small).expect("read"), 7);
        assert_eq!(small, bytes[..7]);
        assert_eq!(reader.read(&mut []).expect("empty read"), 0);
    }

    #[test]
    fn unknown_ids_are_refused() {
        let (_dir, _path, files) = served(b"abc");
        let refused = files.open(7).map(|_| ()).expect_err("not in the manifest");
        assert!(matches!(refused, FileError::NotInManifest(7)), "{refused}");
        assert!(refused.to_string().contains("file id 7"), "{refused}");
    }

    #[test]
    fn a_size_change_fails_but_same_size_content_is_left_to_the_agent() {
        let (_dir, path, files) = served(b"0123456789");
        // Same size, other bytes: streamed as is; the agent's sha256 check refuses it before
        // the rename (the controller does not hash a second time).
        std::fs::write(&path, b"abcdefghij").expect("rewrite");
        assert_eq!(read_all(&files, 0).expect("streamed"), b"abcdefghij");
        std::fs::write(&path, b"longer than before").expect("rewrite");
        let error = read_all(&files, 0).expect_err("size changed");
        assert!(error.contains("changed on disk"), "{error}");
    }
}
