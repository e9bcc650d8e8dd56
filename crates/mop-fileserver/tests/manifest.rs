//! Manifest building on real files: laziness, deduplication, digests, modes and parallel
//! hashing.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use mop_fileserver::{
    sha256_file, FileId, FileServer, FileServerConfig, ManifestBuilder, ManifestError, RootSpec,
    ServedFile, StreamError,
};

fn server(root: &Path) -> FileServer {
    FileServer::new(FileServerConfig {
        base_dir: root.to_path_buf(),
        roots: vec![RootSpec::new(".", "test")],
        ..FileServerConfig::default()
    })
    .expect("valid file server")
}

fn temp_root() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = fs::canonicalize(dir.path()).expect("canonical");
    (dir, root)
}

fn resolve(server: &FileServer, source: &str) -> ServedFile {
    server
        .resolve(source)
        .unwrap_or_else(|error| panic!("`{source}` should resolve: {error}"))
}

#[test]
fn known_digest_size_and_mode() {
    let (_dir, root) = temp_root();
    fs::write(root.join("abc"), "abc").expect("write");
    fs::write(root.join("empty"), "").expect("write");
    fs::set_permissions(root.join("abc"), fs::Permissions::from_mode(0o640)).expect("chmod");
    let server = server(&root);
    let mut builder = ManifestBuilder::new();
    let abc = builder.add(&resolve(&server, "abc"));
    let empty = builder.add(&resolve(&server, "empty"));
    assert_eq!((abc, empty), (FileId(0), FileId(1)));
    let manifest = builder.finish().expect("hashed");

    let entry = manifest.entry_by_id(abc).expect("entry 0");
    assert_eq!(entry.relative, "abc");
    assert_eq!(entry.size, 3);
    assert_eq!(entry.mode, 0o640);
    assert_eq!(
        manifest
            .wait_sha256(abc)
            .expect("known id")
            .expect("hashed"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        manifest
            .wait_sha256(empty)
            .expect("known id")
            .expect("hashed"),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        manifest.sha256(abc),
        Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        "once hashed, the digest is there without waiting"
    );
    assert!(manifest.wait_sha256(FileId(2)).is_none(), "unknown id");
    let stats = manifest.wait_all().expect("all hashed");
    assert_eq!((stats.files, stats.bytes), (2, 3));
    assert!(stats.threads >= 1);
}

#[test]
fn only_added_files_are_read() {
    let (_dir, root) = temp_root();
    fs::write(root.join("used"), "used").expect("write");
    fs::write(root.join("unused"), "unused").expect("write");
    let server = server(&root);
    let used = resolve(&server, "used");
    let _unused = resolve(&server, "unused");
    // Hashing the unused file now would fail; a lazy builder never looks at it.
    fs::remove_file(root.join("unused")).expect("remove");
    let mut builder = ManifestBuilder::new();
    builder.add(&used);
    let manifest = builder.finish().expect("only `used` is hashed");
    assert_eq!(manifest.len(), 1);
    assert_eq!(manifest.entries()[0].relative, "used");
    assert_eq!(manifest.wait_all().expect("hashed").bytes, 4);
}

#[test]
fn same_file_through_different_spellings_is_one_entry() {
    let (_dir, root) = temp_root();
    fs::create_dir(root.join("sub")).expect("mkdir");
    fs::write(root.join("motd"), "hello").expect("write");
    symlink("motd", root.join("link")).expect("symlink");
    let server = server(&root);
    // A second file server over the same directory (another role's roots).
    let other_server = FileServer::new(FileServerConfig {
        base_dir: root.join("sub"),
        roots: vec![RootSpec::new("..", "role web")],
        ..FileServerConfig::default()
    })
    .expect("valid");
    let absolute = root.join("motd");
    let spellings = [
        resolve(&server, "motd"),
        resolve(&server, "./motd"),
        resolve(&server, "sub/../motd"),
        resolve(&server, absolute.to_str().expect("utf-8")),
        resolve(&server, "link"),
        resolve(&other_server, "motd"),
    ];
    let mut builder = ManifestBuilder::new();
    let ids: Vec<FileId> = spellings.iter().map(|file| builder.add(file)).collect();
    assert!(ids.iter().all(|id| *id == FileId(0)), "{ids:?}");
    assert_eq!(builder.len(), 1);
    let manifest = builder.finish().expect("hashed");
    assert_eq!(manifest.len(), 1);
}

#[test]
fn parallel_hashing_matches_sequential_hashing() {
    let (_dir, root) = temp_root();
    let mut sources = Vec::new();
    for index in 0..300usize {
        let name = format!("dir{}/file{index}", index % 7);
        fs::create_dir_all(root.join(format!("dir{}", index % 7))).expect("mkdir");
        // Varied sizes, including empty and multi-buffer files.
        let length = (index * 7919) % 70_000 + if index % 50 == 0 { 600_000 } else { 0 };
        let content: Vec<u8> = (0..length).map(|byte| (byte * 31 + index) as u8).collect();
        fs::write(root.join(&name), content).expect("write");
        sources.push(name);
    }
    let server = server(&root);
    let build = |threads: usize| {
        let mut builder = ManifestBuilder::new();
        for source in &sources {
            builder.add(&resolve(&server, source));
        }
        builder.finish_with_threads(threads).expect("hashed")
    };
    let sequential = build(1);
    let parallel = build(8);
    assert_eq!(sequential.entries(), parallel.entries());
    assert_eq!(sequential.wait_all().expect("hashed").threads, 1);
    assert_eq!(parallel.wait_all().expect("hashed").threads, 8);
    for entry in parallel.entries() {
        let expected = sha256_file(&root.join(&entry.relative)).expect("hash");
        let parallel_digest = parallel.sha256(entry.id).expect("hashed");
        assert_eq!(parallel_digest, expected, "{}", entry.relative);
        assert_eq!(sequential.sha256(entry.id), Some(parallel_digest));
    }
    // Ids follow the order of `add`, whatever order the threads hashed in.
    for (index, entry) in parallel.entries().iter().enumerate() {
        assert_eq!(entry.id, FileId(index as u32));
        assert_eq!(entry.relative, sources[index]);
    }
}

#[test]
fn lookups_are_by_id_or_hash_only() {
    let (_dir, root) = temp_root();
    fs::write(root.join("a"), "same").expect("write");
    fs::write(root.join("b"), "same").expect("write");
    fs::write(root.join("c"), "other").expect("write");
    let server = server(&root);
    let mut builder = ManifestBuilder::new();
    for source in ["a", "b", "c"] {
        builder.add(&resolve(&server, source));
    }
    let manifest = builder.finish().expect("hashed");
    let sha = manifest
        .wait_sha256(FileId(1))
        .expect("known id")
        .expect("hashed")
        .to_owned();
    // Shared content maps to the lowest id.
    assert_eq!(
        manifest.entry_by_sha256(&sha).map(|entry| entry.id),
        Some(FileId(0))
    );
    assert_eq!(
        manifest
            .entry_by_sha256(&sha.to_ascii_uppercase())
            .map(|entry| entry.id),
        Some(FileId(0))
    );
    assert!(manifest.entry_by_sha256(&"0".repeat(64)).is_none());
    assert!(manifest.entry_by_sha256("a").is_none());
    assert!(manifest.entry_by_sha256("/etc/passwd").is_none());
    assert!(manifest.entry_by_id(FileId(3)).is_none());
    assert!(manifest.entry_by_id(FileId(u32::MAX)).is_none());
    assert!(matches!(
        manifest.open(FileId(3)),
        Err(StreamError::UnknownId(FileId(3)))
    ));
    assert_eq!(
        manifest.source_path(FileId(2)),
        Some(root.join("c").as_path())
    );
}

#[test]
fn a_file_removed_before_hashing_is_reported() {
    let (_dir, root) = temp_root();
    fs::write(root.join("gone"), "x").expect("write");
    let server = server(&root);
    let mut builder = ManifestBuilder::new();
    builder.add(&resolve(&server, "gone"));
    fs::remove_file(root.join("gone")).expect("remove");
    let error = builder.finish().expect_err("missing file");
    assert!(matches!(error, ManifestError::Read { .. }), "{error:?}");
    assert!(
        error.to_string().starts_with(&format!(
            "cannot read `gone` (`{}`) to hash it: ",
            root.join("gone").display()
        )),
        "{error}"
    );
}

#[test]
fn empty_builder_gives_empty_manifest() {
    let manifest = ManifestBuilder::new().finish().expect("nothing to hash");
    assert!(manifest.is_empty());
    assert_eq!(manifest.wait_all().expect("nothing to wait for").bytes, 0);
}

/// With a digest cache, a file unchanged since an earlier run is not read again; a file
/// rewritten with its size and modification time put back is (its status-change time moved),
/// and a file changed less than the settle time ago is hashed but not recorded.
#[test]
fn a_digest_cache_skips_unchanged_files_only() {
    let (_dir, root) = temp_root();
    fs::write(root.join("a"), "one").expect("write");
    fs::write(root.join("b"), "two").expect("write");
    // Older than the settle time, as a file of the operator's repository usually is.
    std::thread::sleep(
        mop_fileserver::DIGEST_CACHE_SETTLED + std::time::Duration::from_millis(100),
    );
    fs::write(root.join("fresh"), "new").expect("write");
    let cache = root.join("cache/digests");
    let server = server(&root);
    let run = || {
        let mut builder = ManifestBuilder::new().with_digest_cache(Some(cache.clone()));
        let ids: Vec<FileId> = ["a", "b", "fresh"]
            .iter()
            .map(|name| builder.add(&resolve(&server, name)))
            .collect();
        let manifest = builder.finish().expect("stat");
        let stats = manifest.wait_all().expect("hashed");
        let digests: Vec<String> = ids
            .iter()
            .map(|id| {
                manifest
                    .wait_sha256(*id)
                    .expect("id")
                    .expect("hashed")
                    .to_string()
            })
            .collect();
        (stats.cached, digests)
    };
    let expected = |name: &str| sha256_file(&root.join(name)).expect("hash");

    let (cached, digests) = run();
    assert_eq!(cached, 0);
    assert_eq!(digests, [expected("a"), expected("b"), expected("fresh")]);
    let (cached, digests) = run();
    assert_eq!(
        cached, 2,
        "a and b from the cache, the fresh file read again"
    );
    assert_eq!(digests, [expected("a"), expected("b"), expected("fresh")]);

    // Same size, same modification time, other content.
    let modified = fs::metadata(root.join("a"))
        .expect("stat")
        .modified()
        .expect("mtime");
    fs::write(root.join("a"), "uno").expect("rewrite");
    fs::File::options()
        .write(true)
        .open(root.join("a"))
        .expect("open")
        .set_modified(modified)
        .expect("put the time back");
    let (cached, digests) = run();
    assert_eq!(cached, 1, "only b");
    assert_eq!(digests[0], expected("a"));
    assert_eq!(digests[0], mop_fileserver::sha256_hex(b"uno"));

    // Without a cache every file is read.
    let mut builder = ManifestBuilder::new().with_digest_cache(None);
    builder.add(&resolve(&server, "b"));
    let manifest = builder.finish().expect("stat");
    assert_eq!(manifest.wait_all().expect("hashed").cached, 0);
}
