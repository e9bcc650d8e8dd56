//! The `git` resource: a working tree at a branch, tag or commit, with the host's `git`.
//!
//! The wanted commit is found with `git ls-remote` (which changes nothing, so check mode
//! knows it too) and compared with the checkout's `HEAD`. A new checkout is cloned into a
//! temporary directory beside the destination and renamed into place only once the commit
//! is checked out; an existing one is fetched and checked out, and a revision that does not
//! exist fails before its `HEAD` moves. Every repository and revision goes after `--` or was
//! checked by [`mop_protocol::fetch_rules`], so none can be read as an option.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mop_protocol::fetch_rules::{git_repo_problem, git_version_problem};
use mop_protocol::{CommandOutput, GitSpec};

use super::download::find_program;
use super::file::absolute_path;
use super::ResourceContext;
use crate::fsutil::{self, io_error};
use crate::outcome::{Outcome, ResourceError};

/// Options given to every git command: git's `ext::` transport runs arbitrary commands, and
/// `file::` is fine (tests and local mirrors use it).
const GIT_SAFETY: [&str; 2] = ["-c", "protocol.ext.allow=never"];

/// The commit a revision names on the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A full commit id (from `ls-remote`, or written in full).
    Commit(String),
    /// An abbreviated commit id, resolved once it has been fetched.
    Abbreviated(String),
}

impl Target {
    fn matches(&self, commit: &str) -> bool {
        match self {
            Target::Commit(full) => full == commit,
            Target::Abbreviated(prefix) => commit.starts_with(prefix.as_str()),
        }
    }

    fn short(&self) -> &str {
        match self {
            Target::Commit(full) => short(full),
            Target::Abbreviated(prefix) => prefix,
        }
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

pub fn converge(spec: &GitSpec, ctx: &mut ResourceContext<'_>) -> Result<Outcome, ResourceError> {
    let version = spec.version.as_deref().unwrap_or("HEAD").trim();
    if let Some(problem) = git_repo_problem(&spec.repo) {
        return Err(ResourceError::new(format!("field `repo`: {problem}")));
    }
    if let Some(problem) = git_version_problem(version) {
        return Err(ResourceError::new(format!("field `version`: {problem}")));
    }
    let dest = absolute_path(&spec.dest)?;
    let git = Git::find()?;
    let target = git.resolve_remote(&spec.repo, version)?;
    let current = current_commit(&git, dest)?;
    if let Some(commit) = &current {
        if target.matches(commit) {
            let mut outcome = Outcome::unchanged();
            outcome.extra.insert("commit".into(), commit.clone().into());
            return Ok(outcome);
        }
    }
    let change = match &current {
        Some(commit) => format!("commit {} -> {}", short(commit), target.short()),
        None => format!("cloned {} at {}", spec.repo, target.short()),
    };
    let mut outcome = Outcome::changed(vec![change]);
    if let Some(commit) = &current {
        outcome.extra.insert("before".into(), commit.clone().into());
    }
    if ctx.check {
        return Ok(outcome);
    }
    let after = match current {
        Some(_) => update(&git, &spec.repo, dest, &target, version)?,
        None => clone(&git, &spec.repo, dest, &target, version)?,
    };
    outcome.extra.insert("commit".into(), after.into());
    Ok(outcome)
}

/// The checked-out commit, `None` when there is no checkout yet (nothing, or an empty
/// directory); anything else at `dest` is refused rather than overwritten.
fn current_commit(git: &Git, dest: &Path) -> Result<Option<String>, ResourceError> {
    let Some(meta) = fsutil::symlink_metadata(dest)? else {
        return Ok(None);
    };
    if !meta.is_dir() {
        return Err(ResourceError::new(format!(
            "`{}` exists and is not a directory",
            dest.display()
        )));
    }
    if !dest.join(".git").exists() {
        let empty = fs::read_dir(dest)
            .map_err(|err| io_error("cannot read", dest, &err))?
            .next()
            .is_none();
        if empty {
            return Ok(None);
        }
        return Err(ResourceError::new(format!(
            "`{}` exists, is not empty and is not a git checkout\nhint: point `dest` at a new or empty directory",
            dest.display()
        )));
    }
    let output = git.run_in(dest, &["rev-parse", "--verify", "--quiet", "HEAD"])?;
    if output.rc != 0 {
        // A repository without commits: nothing is checked out yet.
        return Ok(None);
    }
    Ok(Some(output.stdout.trim().to_string()))
}

/// Clones into a temporary directory beside `dest`, checks the commit out there, then renames
/// it into place: a failure leaves `dest` as it was.
fn clone(
    git: &Git,
    repo: &str,
    dest: &Path,
    target: &Target,
    version: &str,
) -> Result<String, ResourceError> {
    let parent = dest.parent().filter(|parent| parent.is_dir());
    let Some(parent) = parent else {
        return Err(fsutil::missing_parent(dest));
    };
    let base = dest
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = TempDir {
        path: parent.join(format!(".{base}.mop-{}", std::process::id())),
    };
    if temp.path.exists() {
        fs::remove_dir_all(&temp.path)
            .map_err(|err| io_error("cannot remove", &temp.path, &err))?;
    }
    let temp_text = utf8(&temp.path)?;
    git.run_checked(
        &["clone", "--quiet", "--no-checkout", "--", repo, temp_text],
        repo,
    )?;
    let commit = git.verify_commit(&temp.path, target, version, repo)?;
    git.run_in_checked(&temp.path, &["checkout", "--quiet", &commit], repo)?;
    fs::rename(&temp.path, dest)
        .map_err(|err| io_error("cannot rename a clone onto", dest, &err))?;
    std::mem::forget(temp);
    Ok(commit)
}

/// Fetches when the commit is not there yet, then checks it out.
fn update(
    git: &Git,
    repo: &str,
    dest: &Path,
    target: &Target,
    version: &str,
) -> Result<String, ResourceError> {
    if git.commit_in(dest, target)?.is_none() {
        git.run_in_checked(
            dest,
            &[
                "fetch",
                "--quiet",
                "--tags",
                "--force",
                "--",
                repo,
                "+refs/heads/*:refs/remotes/origin/*",
            ],
            repo,
        )?;
    }
    let commit = git.verify_commit(dest, target, version, repo)?;
    git.run_in_checked(dest, &["checkout", "--quiet", &commit], repo)?;
    Ok(commit)
}

fn utf8(path: &Path) -> Result<&str, ResourceError> {
    path.to_str()
        .ok_or_else(|| ResourceError::new(format!("`{}` is not valid UTF-8", path.display())))
}

/// A clone in progress, removed unless it was renamed into place.
struct TempDir {
    path: PathBuf,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The host's git, run without a terminal prompt and with `LC_ALL=C`.
struct Git {
    program: PathBuf,
}

impl Git {
    fn find() -> Result<Git, ResourceError> {
        find_program(&["git"]).map(|program| Git { program }).ok_or_else(|| {
            ResourceError::new(
                "`git` is not installed on this host (searched PATH)\nhint: install it first, e.g. with a `package` resource",
            )
        })
    }

    fn run(&self, dir: Option<&Path>, args: &[&str]) -> Result<CommandOutput, ResourceError> {
        let mut command = Command::new(&self.program);
        command.args(GIT_SAFETY);
        if let Some(dir) = dir {
            command.arg("-C").arg(dir);
        }
        let output = command
            .args(args)
            .env("LC_ALL", "C")
            // Never wait for a password on a terminal the operator cannot see.
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .output()
            .map_err(|err| {
                ResourceError::new(format!("cannot run `{}`: {err}", self.program.display()))
            })?;
        Ok(CommandOutput {
            rc: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    fn run_in(&self, dir: &Path, args: &[&str]) -> Result<CommandOutput, ResourceError> {
        self.run(Some(dir), args)
    }

    fn checked(
        output: CommandOutput,
        args: &[&str],
        repo: &str,
    ) -> Result<CommandOutput, ResourceError> {
        if output.rc == 0 {
            return Ok(output);
        }
        let reason = output
            .stderr
            .lines()
            .map(str::trim)
            .rfind(|line| !line.is_empty())
            .unwrap_or("no message")
            .to_string();
        let what = args.first().copied().unwrap_or_default();
        Err(ResourceError::with_output(
            format!(
                "`git {what}` failed for `{repo}` with exit code {}: {reason}",
                output.rc
            ),
            output,
        ))
    }

    fn run_checked(&self, args: &[&str], repo: &str) -> Result<CommandOutput, ResourceError> {
        Git::checked(self.run(None, args)?, args, repo)
    }

    fn run_in_checked(
        &self,
        dir: &Path,
        args: &[&str],
        repo: &str,
    ) -> Result<CommandOutput, ResourceError> {
        Git::checked(self.run_in(dir, args)?, args, repo)
    }

    /// The commit `version` names on the remote: a branch, a tag (peeled to its commit),
    /// `HEAD`, or a commit id (which `ls-remote` cannot list; checked once fetched).
    fn resolve_remote(&self, repo: &str, version: &str) -> Result<Target, ResourceError> {
        let output = self.run_checked(&["ls-remote", "--", repo], repo)?;
        let refs = parse_ls_remote(&output.stdout);
        let wanted = [
            if version == "HEAD" {
                "HEAD".to_string()
            } else {
                format!("refs/heads/{version}")
            },
            format!("refs/tags/{version}^{{}}"),
            format!("refs/tags/{version}"),
        ];
        for name in &wanted {
            if let Some((commit, _)) = refs.iter().find(|(_, reference)| reference == name) {
                return Ok(Target::Commit(commit.clone()));
            }
        }
        let is_hex = version.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex && version.len() == 40 {
            return Ok(Target::Commit(version.to_ascii_lowercase()));
        }
        if is_hex && version.len() >= 4 {
            return Ok(Target::Abbreviated(version.to_ascii_lowercase()));
        }
        Err(ResourceError::new(format!(
            "revision `{version}` does not exist in `{repo}`: no such branch or tag\nhint: check `version`; a commit is written as its hexadecimal id"
        )))
    }

    /// The full id of `target` if the repository at `dir` has that commit.
    fn commit_in(&self, dir: &Path, target: &Target) -> Result<Option<String>, ResourceError> {
        let name = match target {
            Target::Commit(full) => full,
            Target::Abbreviated(prefix) => prefix,
        };
        let spec = format!("{name}^{{commit}}");
        let output = self.run_in(dir, &["rev-parse", "--verify", "--quiet", &spec])?;
        Ok((output.rc == 0).then(|| output.stdout.trim().to_string()))
    }

    fn verify_commit(
        &self,
        dir: &Path,
        target: &Target,
        version: &str,
        repo: &str,
    ) -> Result<String, ResourceError> {
        self.commit_in(dir, target)?.ok_or_else(|| {
            ResourceError::new(format!(
                "revision `{version}` does not exist in `{repo}`: no such commit; the checkout was left as it was"
            ))
        })
    }
}

/// `ls-remote` lines: `<commit>\t<ref>`.
fn parse_ls_remote(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let (commit, reference) = line.split_once('\t')?;
            Some((commit.trim().to_string(), reference.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ls_remote_output_is_parsed_and_targets_match_prefixes() {
        let refs = parse_ls_remote("aaaa\tHEAD\nbbbb\trefs/heads/main\ncccc\trefs/tags/v1^{}\n");
        assert_eq!(refs.len(), 3);
        assert_eq!(refs[2], ("cccc".to_string(), "refs/tags/v1^{}".to_string()));
        assert!(Target::Abbreviated("abcd".into()).matches("abcdef0123"));
        assert!(!Target::Commit("abcd".into()).matches("abcdef0123"));
    }
}
