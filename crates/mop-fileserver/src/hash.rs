//! SHA-256 helpers for the manifest's hashing threads and for callers that hash one file.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

/// Read buffer for hashing: large enough that syscalls are not the bottleneck, small enough
/// to keep one per hashing thread.
pub(crate) const HASH_BUFFER_SIZE: usize = 256 * 1024;

/// Lowercase hex of a digest.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// Hashes everything `reader` yields through `buffer` (reused across files by the hashing
/// threads); returns the byte count and the lowercase hex digest. Gives up with an error as
/// soon as `cancelled` is set (checked once per buffer).
pub(crate) fn hash_reader(
    reader: &mut impl Read,
    buffer: &mut [u8],
    cancelled: &AtomicBool,
) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    loop {
        if cancelled.load(Ordering::Relaxed) {
            return Err(io::Error::other("hashing was cancelled"));
        }
        let read = match reader.read(buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        hasher.update(&buffer[..read]);
        total += read as u64;
    }
    Ok((total, to_hex(&hasher.finalize())))
}

/// Lowercase hex SHA-256 of the file at `path`, read in 256 KiB pieces.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut buffer = vec![0u8; HASH_BUFFER_SIZE];
    hash_reader(&mut file, &mut buffer, &AtomicBool::new(false)).map(|(_, hex)| hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn file_digest_matches_in_memory_digest_across_buffer_boundaries() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("data");
        let content: Vec<u8> = (0..HASH_BUFFER_SIZE * 2 + 17)
            .map(|index| (index % 251) as u8)
            .collect();
        std::fs::write(&path, &content).expect("write");
        assert_eq!(sha256_file(&path).expect("hash"), sha256_hex(&content));
    }
}
