//! Chunked streaming of manifest entries, including files that change after hashing.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use mop_fileserver::{
    sha256_hex, FileId, FileServer, FileServerConfig, Manifest, ManifestBuilder, RootSpec,
    StreamError, DEFAULT_CHUNK_SIZE,
};

fn content(length: usize) -> Vec<u8> {
    (0..length).map(|index| (index % 253) as u8).collect()
}

/// Writes `name` with `bytes` in a fresh root and builds a one-entry manifest.
fn manifest_with(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, Manifest) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = fs::canonicalize(dir.path()).expect("canonical");
    let path = root.join("data.bin");
    fs::write(&path, bytes).expect("write");
    let server = FileServer::new(FileServerConfig {
        base_dir: root.clone(),
        roots: vec![RootSpec::new(".", "test")],
        ..FileServerConfig::default()
    })
    .expect("valid");
    let mut builder = ManifestBuilder::new();
    builder.add(&server.resolve("data.bin").expect("served"));
    let manifest = builder.finish().expect("hashed");
    (dir, path, manifest)
}

fn append(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(path).expect("open");
    file.write_all(bytes).expect("append");
}

#[test]
fn streams_a_multi_chunk_file_in_bounded_chunks() {
    let original = content(3 * DEFAULT_CHUNK_SIZE + 1234);
    let (_dir, _path, manifest) = manifest_with(&original);
    let reader = manifest.open(FileId(0)).expect("open");
    assert_eq!(reader.size(), original.len() as u64);
    let mut received = Vec::new();
    let mut chunks = 0;
    for chunk in reader {
        let chunk = chunk.expect("chunk");
        assert!(!chunk.is_empty() && chunk.len() <= DEFAULT_CHUNK_SIZE);
        received.extend_from_slice(&chunk);
        chunks += 1;
    }
    assert_eq!(chunks, 4);
    assert_eq!(received, original);
}

#[test]
fn read_chunk_with_a_small_caller_buffer() {
    let original = content(100_000);
    let (_dir, _path, manifest) = manifest_with(&original);
    let mut reader = manifest.open(FileId(0)).expect("open");
    let mut buffer = [0u8; 4096];
    let mut received = Vec::new();
    loop {
        let read = reader.read_chunk(&mut buffer).expect("read");
        if read == 0 {
            break;
        }
        received.extend_from_slice(&buffer[..read]);
        assert_eq!(reader.bytes_delivered(), received.len() as u64);
    }
    assert_eq!(received, original);
    assert_eq!(reader.read_chunk(&mut buffer).expect("end stays end"), 0);
}

#[test]
fn custom_chunk_size_and_empty_file() {
    let original = content(10);
    let (_dir, _path, manifest) = manifest_with(&original);
    let chunks: Vec<Vec<u8>> = manifest
        .open(FileId(0))
        .expect("open")
        .with_chunk_size(3)
        .collect::<Result<_, _>>()
        .expect("chunks");
    assert_eq!(
        chunks.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 3, 1]
    );

    let (_dir, _path, manifest) = manifest_with(b"");
    let mut reader = manifest.open(FileId(0)).expect("open");
    assert!(reader.next().is_none());
}

#[test]
fn a_file_that_changed_size_before_open_is_refused() {
    let (_dir, path, manifest) = manifest_with(&content(1000));
    append(&path, b"more");
    let error = manifest.open(FileId(0)).expect_err("size changed");
    assert!(
        matches!(
            error,
            StreamError::SizeChanged {
                expected: 1000,
                actual: 1004,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().starts_with("`data.bin` ("), "{error}");
    assert!(error
        .to_string()
        .contains("changed on disk during the run: it is now 1004 bytes, the manifest says 1000"));
}

#[test]
fn a_file_that_grows_while_streaming_withholds_the_last_chunk() {
    let original = content(2 * DEFAULT_CHUNK_SIZE);
    let (_dir, path, manifest) = manifest_with(&original);
    let mut reader = manifest.open(FileId(0)).expect("open");
    let first = reader.next().expect("first chunk").expect("ok");
    assert_eq!(first.len(), DEFAULT_CHUNK_SIZE);
    append(&path, b"tail");
    let error = reader.next().expect("second item").expect_err("grew");
    assert!(
        matches!(error, StreamError::SizeChanged { actual, .. } if actual > original.len() as u64),
        "{error:?}"
    );
    // The bytes of the failing read were not handed out.
    assert_eq!(reader.bytes_delivered(), DEFAULT_CHUNK_SIZE as u64);
    assert!(reader.next().is_none());
    let mut buffer = [0u8; 16];
    assert!(matches!(
        reader.read_chunk(&mut buffer),
        Err(StreamError::AlreadyFailed { .. })
    ));
}

#[test]
fn a_file_that_shrinks_while_streaming_is_an_error() {
    let original = content(3 * DEFAULT_CHUNK_SIZE);
    let (_dir, path, manifest) = manifest_with(&original);
    let mut reader = manifest.open(FileId(0)).expect("open");
    reader.next().expect("first").expect("ok");
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.set_len((DEFAULT_CHUNK_SIZE + 10) as u64)
        .expect("truncate");
    let error = reader.next().expect("second").expect_err("shrank");
    assert!(
        matches!(error, StreamError::SizeChanged { actual, .. } if actual == (DEFAULT_CHUNK_SIZE + 10) as u64),
        "{error:?}"
    );
}

/// A same-size rewrite keeps the size the manifest recorded: the stream delivers it, and the
/// manifest's sha256 (what the agent checks the stream against) still names the content that
/// was hashed, so the agent refuses it.
#[test]
fn same_size_rewrite_streams_but_no_longer_matches_the_digest() {
    let original = content(5000);
    let (_dir, path, manifest) = manifest_with(&original);
    let digest = manifest
        .wait_sha256(FileId(0))
        .expect("known id")
        .expect("hashed")
        .to_owned();
    assert_eq!(digest, sha256_hex(&original));
    let mut file = OpenOptions::new().write(true).open(&path).expect("open");
    file.seek(SeekFrom::Start(100)).expect("seek");
    file.write_all(b"XXXX").expect("write");
    let chunks: Vec<Vec<u8>> = manifest
        .open(FileId(0))
        .expect("same size opens")
        .collect::<Result<_, _>>()
        .expect("the size check passes");
    let streamed = chunks.concat();
    assert_eq!(streamed.len(), original.len());
    assert_ne!(sha256_hex(&streamed), digest);
}

#[test]
fn read_whole_checks_and_caps_the_size() {
    let original = content(DEFAULT_CHUNK_SIZE + 5);
    let (_dir, path, manifest) = manifest_with(&original);
    assert_eq!(
        manifest
            .read_whole(FileId(0), 1 << 20)
            .expect("small enough"),
        original
    );
    let error = manifest
        .read_whole(FileId(0), 1000)
        .expect_err("over the cap");
    assert!(
        matches!(
            error,
            StreamError::TooLarge {
                max_bytes: 1000,
                ..
            }
        ),
        "{error:?}"
    );
    append(&path, b"grown");
    assert!(matches!(
        manifest.read_whole(FileId(0), 1 << 20),
        Err(StreamError::SizeChanged { .. })
    ));
    assert!(matches!(
        manifest.read_whole(FileId(7), 1 << 20),
        Err(StreamError::UnknownId(FileId(7)))
    ));
}
