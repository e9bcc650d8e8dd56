//! The `repository` resource: an apt source in deb822 form with its signing key, or a yum/dnf
//! `.repo` file with its key; the repository's own package index refreshed only when one of
//! its files changed.
//!
//! The refresh reads only this repository (`apt-get update` limited to its source file, or
//! `makecache` with only it enabled): other sources may be slow or unreachable, and they are
//! not this resource's business. When the refresh fails, the files are put back as they were,
//! so the next run sees the change again and retries instead of reporting a stale cache as
//! converged.

use std::fs;
use std::path::{Path, PathBuf};

use mop_protocol::fetch_rules::{
    apt_word_problem, armored_key_problem, repository_name_problem, repository_url_problem,
};
use mop_protocol::{Presence, RepositorySpec};

use super::ResourceContext;
use crate::diff::content_diff;
use crate::fsutil::{self, io_error, FinalAttributes, WantedAttributes};
use crate::outcome::{Outcome, ResourceError, Runner};

/// Which family of files to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Apt,
    /// `yum` or `dnf`: the same `.repo` format, refreshed with that program.
    Yum(&'static str),
}

/// One file the repository consists of and what it should hold (`None`: absent).
struct ManagedFile {
    path: PathBuf,
    desired: Option<Vec<u8>>,
}

pub fn converge(
    spec: &RepositorySpec,
    ctx: &mut ResourceContext<'_>,
) -> Result<Outcome, ResourceError> {
    validate(spec)?;
    let family = family(spec, ctx.facts.package_manager.as_deref())?;
    let present = spec.state.resolved() == Presence::Present;
    let files = managed_files(spec, family, present)?;

    let mut changes = Vec::new();
    let mut diffs = Vec::new();
    let mut before = Vec::new();
    for file in &files {
        let old = fsutil::read_optional(&file.path)?;
        let label = file.path.display().to_string();
        match (&old, &file.desired) {
            (None, None) => {}
            (Some(old), Some(new)) if old == new => {}
            (None, Some(new)) => {
                changes.push(format!("created `{label}`"));
                diffs.push(content_diff(&label, None, new));
            }
            (Some(old), Some(new)) => {
                changes.push(format!("content of `{label}`"));
                diffs.push(content_diff(&label, Some(old), new));
            }
            (Some(old), None) => {
                changes.push(format!("removed `{label}`"));
                diffs.push(content_diff(&label, Some(old), b""));
            }
        }
        before.push(old);
    }
    if changes.is_empty() {
        return Ok(Outcome::unchanged());
    }
    let mut outcome = Outcome::changed(changes);
    if ctx.diff {
        outcome.diff = Some(diffs.concat());
    }
    if ctx.check {
        return Ok(outcome);
    }
    for file in &files {
        put(&file.path, file.desired.as_deref())?;
    }
    if present && spec.update_cache {
        if let Err(error) = refresh(ctx.runner, spec, family) {
            for (file, old) in files.iter().zip(&before) {
                // Best effort: the refresh error is what the operator needs to read.
                let _ = put(&file.path, old.as_deref());
            }
            return Err(ResourceError {
                message: format!(
                    "{}\nthe repository files were put back as they were",
                    error.message
                ),
                output: error.output,
            });
        }
        outcome.changes.push("package index refreshed".to_string());
    }
    Ok(outcome)
}

/// The rendered values go into file lines and paths: the same grammar `mop validate` checks.
fn validate(spec: &RepositorySpec) -> Result<(), ResourceError> {
    let fail = |field: &str, problem: String| {
        Err(ResourceError::new(format!("field `{field}`: {problem}")))
    };
    if let Some(problem) = repository_name_problem(&spec.name) {
        return fail("repository", problem);
    }
    if let Some(problem) = spec.url.as_deref().and_then(repository_url_problem) {
        return fail("url", problem);
    }
    for (field, words) in [("suites", &spec.suites), ("components", &spec.components)] {
        if let Some(problem) = words.iter().find_map(|word| apt_word_problem(word)) {
            return fail(field, problem);
        }
    }
    if let Some(problem) = spec.key.as_deref().and_then(armored_key_problem) {
        return fail("key", problem);
    }
    Ok(())
}

fn family(spec: &RepositorySpec, detected: Option<&str>) -> Result<Family, ResourceError> {
    let manager = spec.manager.as_deref().map(str::trim).or(detected);
    match manager {
        Some("apt") => Ok(Family::Apt),
        Some("dnf") => Ok(Family::Yum("dnf")),
        Some("yum") => Ok(Family::Yum("yum")),
        Some(other) => Err(ResourceError::new(format!(
            "this host's package manager is `{other}`: `repository` writes apt, dnf or yum repositories\nhint: set `manager` if the host has one of those as well"
        ))),
        None => Err(ResourceError::new(
            "no package manager found on this host (looked for apt, dnf and yum)\nhint: set `manager = \"apt\"`, `\"dnf\"` or `\"yum\"`",
        )),
    }
}

fn managed_files(
    spec: &RepositorySpec,
    family: Family,
    present: bool,
) -> Result<Vec<ManagedFile>, ResourceError> {
    let name = &spec.name;
    let (key_path, source_path) = match family {
        Family::Apt => (
            PathBuf::from(format!("/etc/apt/keyrings/{name}.asc")),
            PathBuf::from(format!("/etc/apt/sources.list.d/{name}.sources")),
        ),
        Family::Yum(_) => (
            PathBuf::from(format!("/etc/pki/rpm-gpg/RPM-GPG-KEY-{name}")),
            PathBuf::from(format!("/etc/yum.repos.d/{name}.repo")),
        ),
    };
    if !present {
        return Ok(vec![
            ManagedFile {
                path: source_path,
                desired: None,
            },
            ManagedFile {
                path: key_path,
                desired: None,
            },
        ]);
    }
    let url = spec.url.as_deref().ok_or_else(|| {
        ResourceError::new("missing field `url`: a repository that is present needs its URL")
    })?;
    let key = spec.key.as_deref().map(|key| format!("{}\n", key.trim()));
    let source = match family {
        Family::Apt => deb822(spec, url, key.as_ref().map(|_| key_path.as_path()))?,
        Family::Yum(_) => yum_repo(spec, url, key.as_ref().map(|_| key_path.as_path())),
    };
    Ok(vec![
        // The key first: a source that names a key must never be there without it.
        ManagedFile {
            path: key_path,
            desired: key.map(String::into_bytes),
        },
        ManagedFile {
            path: source_path,
            desired: Some(source.into_bytes()),
        },
    ])
}

fn deb822(spec: &RepositorySpec, url: &str, key: Option<&Path>) -> Result<String, ResourceError> {
    if spec.suites.is_empty() {
        return Err(ResourceError::new(
            "missing field `suites`: an apt repository needs its suites (`suites = [\"bookworm\"]`, or `\"./\"` for a flat repository)",
        ));
    }
    let mut text = format!(
        "# managed by mop: repository {}\nTypes: deb\nURIs: {url}\nSuites: {}\n",
        spec.name,
        spec.suites.join(" ")
    );
    if !spec.components.is_empty() {
        text.push_str(&format!("Components: {}\n", spec.components.join(" ")));
    }
    if let Some(key) = key {
        text.push_str(&format!("Signed-By: {}\n", key.display()));
    }
    if spec.trusted {
        text.push_str("Trusted: yes\n");
    }
    Ok(text)
}

fn yum_repo(spec: &RepositorySpec, url: &str, key: Option<&Path>) -> String {
    let name = &spec.name;
    let mut text = format!(
        "# managed by mop: repository {name}\n[{name}]\nname={name}\nbaseurl={url}\nenabled=1\ngpgcheck={}\n",
        if spec.trusted { 0 } else { 1 }
    );
    if let Some(key) = key {
        text.push_str(&format!("gpgkey=file://{}\n", key.display()));
    }
    text
}

/// Writes (atomically, root-readable 0644) or removes one file, creating a missing
/// key directory (`/etc/apt/keyrings` is new in Debian 12).
fn put(path: &Path, content: Option<&[u8]>) -> Result<(), ResourceError> {
    let Some(content) = content else {
        return match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_error("cannot remove", path, &err)),
        };
    };
    if let Some(parent) = path.parent() {
        if !parent.is_dir() {
            fs::create_dir_all(parent).map_err(|err| io_error("cannot create", parent, &err))?;
        }
    }
    let wanted = WantedAttributes {
        mode: Some(0o644),
        ..WantedAttributes::default()
    };
    let existing = fsutil::symlink_metadata(path)?;
    let attributes = FinalAttributes::for_replacement(&wanted, existing.as_ref())?;
    fsutil::write_atomic(path, content, attributes)
}

/// Refreshes only this repository's index.
fn refresh(
    runner: &mut dyn Runner,
    spec: &RepositorySpec,
    family: Family,
) -> Result<(), ResourceError> {
    let source_list;
    let enable;
    let argv: Vec<&str> = match family {
        Family::Apt => {
            source_list = format!(
                "Dir::Etc::sourcelist=/etc/apt/sources.list.d/{}.sources",
                spec.name
            );
            vec![
                "apt-get",
                "update",
                "-q",
                "-o",
                &source_list,
                "-o",
                "Dir::Etc::sourceparts=-",
                "-o",
                "APT::Get::List-Cleanup=0",
            ]
        }
        Family::Yum(program) => {
            enable = format!("--enablerepo={}", spec.name);
            vec![program, "-q", "makecache", "--disablerepo=*", &enable]
        }
    };
    let command = argv.join(" ");
    let output = runner.run(&argv).map_err(|err| {
        let mut message = format!("cannot run `{command}`: {err}");
        if err.kind() == std::io::ErrorKind::NotFound {
            message.push_str(&format!(
                "\nhint: `{}` is not installed or not on PATH",
                argv[0]
            ));
        }
        ResourceError::new(message)
    })?;
    // Older apt-get update exits 0 on some fetch failures; its `E:`/`W: Failed` lines say so
    // (`Err:` progress lines are not failures: apt retries, and may still succeed).
    let failed_line = output
        .stderr
        .lines()
        .chain(output.stdout.lines())
        .find(|line| line.starts_with("E:") || line.starts_with("W: Failed"));
    if output.rc != 0 || failed_line.is_some() {
        let reason = failed_line
            .or_else(|| output.stderr.lines().rfind(|line| !line.trim().is_empty()))
            .unwrap_or("no message")
            .trim()
            .to_string();
        return Err(ResourceError::with_output(
            format!(
                "refreshing repository `{}` failed: `{command}` exited with code {}: {reason}",
                spec.name, output.rc
            ),
            output,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RepositorySpec {
        RepositorySpec {
            name: "example".into(),
            url: Some("https://deb.example.org/debian".into()),
            suites: vec!["bookworm".into()],
            components: vec!["main".into(), "contrib".into()],
            key: Some(
                "-----BEGIN PGP PUBLIC KEY BLOCK-----\nabc\n-----END PGP PUBLIC KEY BLOCK-----"
                    .into(),
            ),
            manager: None,
            trusted: false,
            update_cache: true,
            state: Presence::Present.into(),
        }
    }

    #[test]
    fn apt_files_are_a_key_and_a_deb822_source_naming_it() {
        let files = managed_files(&spec(), Family::Apt, true).expect("valid");
        assert_eq!(files[0].path, Path::new("/etc/apt/keyrings/example.asc"));
        assert_eq!(
            files[1].path,
            Path::new("/etc/apt/sources.list.d/example.sources")
        );
        let source = String::from_utf8(files[1].desired.clone().expect("present")).expect("utf8");
        assert_eq!(
            source,
            "# managed by mop: repository example\nTypes: deb\nURIs: https://deb.example.org/debian\nSuites: bookworm\nComponents: main contrib\nSigned-By: /etc/apt/keyrings/example.asc\n"
        );
    }

    #[test]
    fn yum_file_names_its_key() {
        let files = managed_files(&spec(), Family::Yum("dnf"), true).expect("valid");
        let repo = String::from_utf8(files[1].desired.clone().expect("present")).expect("utf8");
        assert!(repo.contains("[example]\nname=example\nbaseurl=https://deb.example.org/debian\nenabled=1\ngpgcheck=1\ngpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-example\n"), "{repo}");
    }

    #[test]
    fn rendered_values_that_would_add_lines_are_refused() {
        let mut bad = spec();
        bad.url = Some("https://x/\nTrusted: yes".into());
        assert!(validate(&bad).is_err());
        let mut bad = spec();
        bad.name = "../../etc/passwd".into();
        assert!(validate(&bad).is_err());
        let mut bad = spec();
        bad.suites = vec!["bookworm main".into()];
        assert!(validate(&bad).is_err());
    }
}
