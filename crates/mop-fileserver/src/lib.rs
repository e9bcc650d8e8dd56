//! The controller's file server: decides which files may leave the controller and streams
//! exactly those, by manifest id.
//!
//! Flow for one run:
//! 1. [`FileServer::new`] per distinct set of roots (checks patterns and roots);
//! 2. [`FileServer::resolve`] every `source` at validation time, before any host is contacted
//!    ([`FileServer::resolve_tree`] lists a `tree`'s directory and resolves each file in it
//!    the same way);
//! 3. [`ManifestBuilder::add`] each [`ServedFile`] a selected role uses, then
//!    [`ManifestBuilder::finish`] stats them and starts hashing each once, in parallel, in the
//!    background;
//! 4. [`Manifest::open`] streams an entry that a host asked for by [`FileId`], and
//!    [`Manifest::wait_sha256`] gives the digest the host checks it against (or compares its
//!    own copy with).
//!
//! Architecture invariant: [`rules`] is pure (no IO); filesystem access lives in `resolve`,
//! `manifest` and `stream`. The crate is synchronous: async callers use `spawn_blocking`.

mod digest_cache;
mod hash;
mod manifest;
mod resolve;
pub mod rules;
mod server;
mod stream;
mod tree;

pub use digest_cache::{DigestCache, SETTLED as DIGEST_CACHE_SETTLED};
pub use hash::{sha256_file, sha256_hex};
pub use manifest::{Entry, FileId, Manifest, ManifestBuilder, ManifestError, ManifestStats};
pub use resolve::{ServedFile, SourceRejected};
pub use rules::{Denial, PatternError, PatternSpec, Rules};
pub use server::{FileServer, FileServerConfig, FileServerError, RootSpec, DEFAULT_ROOT_ORIGIN};
pub use stream::{ChunkReader, StreamError, DEFAULT_CHUNK_SIZE};
pub use tree::{ServedTree, TreeRejected};

#[cfg(test)]
mod tests {
    /// The executor shares these across tasks and `spawn_blocking`.
    #[test]
    fn shared_types_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<super::FileServer>();
        send_sync::<super::Manifest>();
        send_sync::<super::ServedFile>();
        send::<super::ChunkReader>();
        send_sync::<super::SourceRejected>();
        send_sync::<super::ServedTree>();
        send_sync::<super::TreeRejected>();
        send_sync::<super::StreamError>();
    }
}
