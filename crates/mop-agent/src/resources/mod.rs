//! The resource dispatcher: one rendered spec in, one [`Outcome`] out.
//!
//! Every resource computes exactly what differs between the host and its spec; in check mode
//! it reports that and stops, in apply mode it makes exactly that change. A converged host
//! therefore reports no change on a second run.

mod authorized_key;
mod block;
mod command;
mod cron;
mod directory;
mod download;
mod file;
mod git;
mod line;
mod link;
mod meta;
mod mount;
mod predicted;
pub(crate) mod process;
mod repository;
mod sysctl;
mod tree;
mod unarchive;
mod words;

pub use predicted::Predicted;

use std::collections::BTreeMap;
use std::io;

use mop_protocol::{Facts, FileEntry, ResourceSpec, TreeListing};

use crate::outcome::{Outcome, ResourceError, Runner};
use crate::system::{self, SystemContext};
use crate::template::{Engine, Scope};

/// Why a file transfer did not deliver content.
#[derive(Debug)]
pub enum FetchError {
    /// The controller refused to send the file; the resource fails, the session goes on.
    Refused(String),
    /// Storing the data failed on this host (disk full...); the stream was drained, so the
    /// session goes on.
    Sink(io::Error),
    /// The channel broke or the controller broke the protocol; the role runner ends the
    /// session after this resource.
    Broken(String),
}

/// What the controller said about a file it streamed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The size announced in `file_begin`.
    pub size: u64,
    /// The sha256 that ended the stream (`file_digest`): what the received bytes must hash to.
    pub sha256: String,
}

/// Fetches file contents and digests from the controller by id (see
/// `docs/reference/protocol.md`).
pub trait FileFetcher {
    /// Requests file `id` and feeds its content to `sink` chunk by chunk, adding every data
    /// byte received to `received`.
    fn fetch(
        &mut self,
        id: u32,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
        received: &mut u64,
    ) -> Result<Fetched, FetchError>;

    /// Asks for the sha256 of file `id` (for plan entries that do not carry it).
    fn digest(&mut self, id: u32) -> Result<String, FetchError>;
}

/// Everything a resource may use besides its spec.
pub struct ResourceContext<'a> {
    /// Check mode: change nothing, report what would change.
    pub check: bool,
    /// Produce diffs for content changes.
    pub diff: bool,
    pub facts: &'a Facts,
    pub engine: &'a Engine,
    /// Template and `set` variables; `set` writes into it.
    pub scope: &'a mut Scope,
    /// The plan's template sources, by the path the policy wrote.
    pub templates: &'a BTreeMap<String, String>,
    /// The plan's served files, by the `source` string the policy wrote.
    pub files: &'a BTreeMap<String, FileEntry>,
    /// The plan's served directory trees, by the `source` string of the `tree` resource.
    pub trees: &'a BTreeMap<String, TreeListing>,
    pub fetcher: &'a mut dyn FileFetcher,
    pub runner: &'a mut dyn Runner,
    /// File bytes received for this resource, filled in by `file`.
    pub bytes_received: u64,
    /// Check mode: what earlier resources would have created (see `predicted.rs`).
    pub predicted: &'a mut Predicted,
}

/// Runs one resource whose string fields are already rendered.
pub fn dispatch(
    spec: &ResourceSpec,
    ctx: &mut ResourceContext<'_>,
) -> Result<Outcome, ResourceError> {
    if !ctx.check {
        return converge(spec, ctx);
    }
    // Check mode fails where apply would, with apply's message.
    ctx.predicted.preflight(spec)?;
    let result = converge(spec, ctx);
    if let Ok(outcome) = &result {
        ctx.predicted.record(spec, outcome);
    }
    result
}

fn converge(spec: &ResourceSpec, ctx: &mut ResourceContext<'_>) -> Result<Outcome, ResourceError> {
    let system_context = SystemContext {
        check: ctx.check,
        facts: ctx.facts,
    };
    match spec {
        ResourceSpec::File(file_spec) => file::converge(file_spec, ctx),
        ResourceSpec::Directory(directory_spec) => directory::converge(directory_spec, ctx.check),
        ResourceSpec::Link(link_spec) => link::converge(link_spec, ctx.check),
        ResourceSpec::Line(line_spec) => line::converge(line_spec, ctx.check, ctx.diff),
        ResourceSpec::Block(block_spec) => block::converge(block_spec, ctx.check, ctx.diff),
        ResourceSpec::Cron(cron_spec) => cron::converge(cron_spec, ctx.check, ctx.diff),
        ResourceSpec::AuthorizedKey(key_spec) => {
            authorized_key::converge(key_spec, ctx.check, ctx.diff)
        }
        ResourceSpec::Shell(command_spec) => {
            command::converge(command_spec, command::Style::Shell, ctx.check)
        }
        ResourceSpec::Command(command_spec) => {
            command::converge(command_spec, command::Style::Argv, ctx.check)
        }
        ResourceSpec::Package(package_spec) => {
            system::package(package_spec, &system_context, ctx.runner)
        }
        ResourceSpec::Download(download_spec) => download::converge(download_spec, ctx),
        ResourceSpec::Git(git_spec) => git::converge(git_spec, ctx),
        ResourceSpec::Repository(repository_spec) => repository::converge(repository_spec, ctx),
        ResourceSpec::Service(service_spec) => {
            system::service(service_spec, &system_context, ctx.runner)
        }
        ResourceSpec::Sysctl(sysctl_spec) => sysctl::converge(sysctl_spec, ctx.check, ctx.diff),
        ResourceSpec::Mount(mount_spec) => {
            mount::converge(mount_spec, ctx.check, ctx.diff, ctx.runner)
        }
        ResourceSpec::Unarchive(unarchive_spec) => unarchive::converge(unarchive_spec, ctx),
        ResourceSpec::Tree(tree_spec) => tree::converge(tree_spec, ctx),
        ResourceSpec::User(user_spec) => system::user(user_spec, &system_context, ctx.runner),
        ResourceSpec::Group(group_spec) => system::group(group_spec, &system_context, ctx.runner),
        ResourceSpec::Echo(echo_spec) => Ok(meta::echo(echo_spec)),
        ResourceSpec::Set(set_spec) => meta::set(set_spec, ctx.engine, ctx.scope),
        ResourceSpec::Assert(assert_spec) => meta::assert(assert_spec, ctx.engine, ctx.scope),
        ResourceSpec::Fail(fail_spec) => Err(meta::fail(fail_spec)),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Shared helpers for the resource tests: a tree snapshot to prove check mode touches
    //! nothing, and an in-memory file server standing in for the controller's.

    use std::collections::BTreeMap;
    use std::io;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    use super::{FetchError, Fetched, FileFetcher};

    /// Every path under `root` with its mode and its content (or link target).
    pub fn snapshot(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
        let mut out = BTreeMap::new();
        walk(root, root, &mut out);
        out
    }

    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, Vec<u8>)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("readable dir")
            .map(|entry| entry.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let meta = std::fs::symlink_metadata(&path).expect("exists");
            let key = path
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let content = if meta.file_type().is_symlink() {
                std::fs::read_link(&path)
                    .expect("link")
                    .display()
                    .to_string()
                    .into_bytes()
            } else if meta.is_file() {
                std::fs::read(&path).expect("readable file")
            } else {
                Vec::new()
            };
            out.insert(key, (meta.mode(), content));
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }

    /// Serves files from memory, like the controller would.
    #[derive(Default)]
    pub struct MemoryFetcher {
        pub files: BTreeMap<u32, Vec<u8>>,
        /// Ids whose content was requested, in order.
        pub requests: Vec<u32>,
        /// Ids whose digest was requested, in order.
        pub digest_requests: Vec<u32>,
        /// Flip the first byte delivered (the announced sha256 stays the true one).
        pub corrupt: bool,
    }

    impl FileFetcher for MemoryFetcher {
        fn fetch(
            &mut self,
            id: u32,
            sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
            received: &mut u64,
        ) -> Result<Fetched, FetchError> {
            self.requests.push(id);
            let content = self
                .files
                .get(&id)
                .ok_or_else(|| FetchError::Refused(format!("unknown file id {id}")))?;
            let mut delivered = content.clone();
            if self.corrupt {
                if let Some(first) = delivered.first_mut() {
                    *first ^= 0xff;
                }
            }
            for chunk in delivered.chunks(7) {
                *received += chunk.len() as u64;
                sink(chunk).map_err(FetchError::Sink)?;
            }
            Ok(Fetched {
                size: content.len() as u64,
                sha256: crate::diff::sha256_hex(content),
            })
        }

        fn digest(&mut self, id: u32) -> Result<String, FetchError> {
            self.digest_requests.push(id);
            self.files
                .get(&id)
                .map(|content| crate::diff::sha256_hex(content))
                .ok_or_else(|| FetchError::Refused(format!("unknown file id {id}")))
        }
    }
}
