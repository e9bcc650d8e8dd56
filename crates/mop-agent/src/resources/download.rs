//! The `download` resource: a URL fetched on the host with its own `curl` or `wget` into a
//! temporary file beside the destination, verified against `sha256`, then renamed into place.
//!
//! The agent carries no TLS of its own (it must stay small); the host's tools already trust
//! the host's certificates and proxies. A destination that already has the checksum is not
//! fetched at all, and a fetch that fails or does not match leaves the destination as it was.

use std::path::{Path, PathBuf};

use mop_protocol::fetch_rules::{download_url_problem, sha256_problem};
use mop_protocol::DownloadSpec;

use super::file::absolute_path;
use super::ResourceContext;
use crate::diff::hash_diff;
use crate::fsutil::{self, io_error, FinalAttributes, TempFile, WantedAttributes};
use crate::outcome::{Outcome, ResourceError, Runner};

pub fn converge(
    spec: &DownloadSpec,
    ctx: &mut ResourceContext<'_>,
) -> Result<Outcome, ResourceError> {
    if let Some(problem) = download_url_problem(&spec.url) {
        return Err(ResourceError::new(format!("field `url`: {problem}")));
    }
    if let Some(problem) = sha256_problem(spec.sha256.trim()) {
        return Err(ResourceError::new(format!("field `sha256`: {problem}")));
    }
    let expected = spec.sha256.trim().to_ascii_lowercase();
    let dest = absolute_path(&spec.dest)?;
    let wanted =
        WantedAttributes::resolve(spec.owner.as_deref(), spec.group.as_deref(), spec.mode)?;
    let existing = fsutil::symlink_metadata(dest)?;
    let old_hash = match &existing {
        Some(meta) if meta.is_file() => Some(
            fsutil::content_sha256(dest, meta, ctx.check)
                .map_err(|err| io_error("cannot read", dest, &err))?,
        ),
        Some(_) => {
            return Err(ResourceError::new(format!(
                "`{}` exists and is not a regular file",
                dest.display()
            )))
        }
        None => None,
    };
    if old_hash.as_deref() == Some(expected.as_str()) {
        let meta = existing
            .as_ref()
            .expect("a hash was read from an existing file");
        let changes = wanted.changes(meta);
        if changes.is_empty() {
            return Ok(Outcome::unchanged());
        }
        if !ctx.check {
            wanted.apply_to_path(dest)?;
        }
        return Ok(Outcome::changed(changes));
    }
    let mut outcome = Outcome::changed(vec![if existing.is_some() {
        format!("content (downloaded from {})", spec.url)
    } else {
        format!("created (downloaded from {})", spec.url)
    }]);
    if ctx.diff {
        outcome.diff = Some(hash_diff(old_hash.as_deref(), &expected));
    }
    if ctx.check {
        return Ok(outcome);
    }
    let attributes = FinalAttributes::for_replacement(&wanted, existing.as_ref())?;
    let temp = TempFile::next_to(dest)?;
    fetch(ctx.runner, &spec.url, temp.path())?;
    let received = fsutil::file_sha256(temp.path())
        .map_err(|err| io_error("cannot read", temp.path(), &err))?;
    if received != expected {
        // Dropping `temp` removes it: the destination was never touched.
        return Err(ResourceError::new(format!(
            "sha256 mismatch for `{}`: expected {expected}, received {received}; `{}` was left as it was\nhint: the file at the URL changed, or `sha256` is wrong",
            spec.url,
            dest.display()
        )));
    }
    temp.persist(dest, attributes)?;
    Ok(outcome)
}

/// The first of `names` found as an executable file on `PATH`.
pub(super) fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin".into());
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Fetches `url` into `into` (truncating it) with curl or wget; the URL was checked to be
/// `http(s)://`, so it can never be read as an option, and it still goes after `--`.
fn fetch(runner: &mut dyn Runner, url: &str, into: &Path) -> Result<(), ResourceError> {
    let program = find_program(&["curl", "wget"]).ok_or_else(|| {
        ResourceError::new(
            "neither `curl` nor `wget` is installed on this host (searched PATH)\nhint: install one of them first, e.g. with a `package` resource",
        )
    })?;
    let program_text = program.to_string_lossy().into_owned();
    let into_text = into
        .to_str()
        .ok_or_else(|| ResourceError::new(format!("`{}` is not valid UTF-8", into.display())))?;
    let is_curl = program.file_name().is_some_and(|name| name == "curl");
    let argv: Vec<&str> = if is_curl {
        // --fail: an HTTP error is an error, not a saved error page; --proto keeps redirects
        // from leaving http(s) (to file:// or others).
        vec![
            &program_text,
            "--fail",
            "--silent",
            "--show-error",
            "--location",
            "--proto",
            "=http,https",
            "--proto-redir",
            "=http,https",
            "--connect-timeout",
            "30",
            "--output",
            into_text,
            "--",
            url,
        ]
    } else {
        vec![
            &program_text,
            "--quiet",
            "--timeout=30",
            "--output-document",
            into_text,
            "--",
            url,
        ]
    };
    let output = runner
        .run(&argv)
        .map_err(|err| ResourceError::new(format!("cannot run `{program_text}`: {err}")))?;
    if output.rc != 0 {
        let reason = output
            .stderr
            .lines()
            .map(str::trim)
            .rfind(|line| !line.is_empty())
            .unwrap_or("no message")
            .to_string();
        return Err(ResourceError::with_output(
            format!(
                "cannot download `{url}`: `{}` exited with code {}: {reason}; the destination was left as it was",
                program.file_name().map(|name| name.to_string_lossy()).unwrap_or_default(),
                output.rc
            ),
            output,
        ));
    }
    Ok(())
}
