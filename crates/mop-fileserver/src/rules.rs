//! Pure allow/deny logic for served files: pattern compilation, built-in denies and lexical
//! root containment. Nothing here touches the filesystem.
//!
//! Matching follows gitignore where it can:
//! - a pattern without `/` (ignoring a trailing one) matches any single component of the
//!   relative path, so `*.bak` matches `x.bak` and `a/b/x.bak`, and `secrets` matches
//!   `secrets/db.yml` as well as `a/secrets`;
//! - a pattern with a `/` is anchored at the root and matched against the whole relative path
//!   or any of its leading directories (`conf/secrets` matches `conf/secrets/db.yml`); a
//!   leading `/` only anchors;
//! - a trailing `/` restricts a pattern to directories (`cache/` never matches a file named
//!   `cache`);
//! - `*` and `?` never cross `/`; `**` as a whole component crosses directories;
//! - matching is case-sensitive and `*` matches a leading dot (no special case for dotfiles);
//!   the built-in denies alone match case-insensitively.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

/// An allow or deny pattern as the user wrote it, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternSpec {
    /// The glob, e.g. `secrets/**` or `*.pem`.
    pub pattern: String,
    /// Where it came from, e.g. `policies/site.toml:7:10`; used in error messages.
    pub origin: String,
}

impl PatternSpec {
    pub fn new(pattern: impl Into<String>, origin: impl Into<String>) -> PatternSpec {
        PatternSpec {
            pattern: pattern.into(),
            origin: origin.into(),
        }
    }
}

/// A pattern that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: invalid file server pattern `{pattern}`: {reason}{}", hint_line(.hint))]
pub struct PatternError {
    pub pattern: String,
    pub origin: String,
    pub reason: String,
    pub hint: Option<String>,
}

fn hint_line(hint: &Option<String>) -> String {
    match hint {
        Some(hint) => format!("\nhint: {hint}"),
        None => String::new(),
    }
}

/// Why a relative path string is not a valid path inside a root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelPathError {
    /// The path is absolute.
    Absolute,
    /// A `..` climbs above the root.
    EscapesRoot,
    /// A component is not valid UTF-8.
    NotUtf8,
}

/// A lexically normalised path relative to a root: `/`-separated, no empty, `.` or `..`
/// components. The empty path is the root itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(String);

impl RelPath {
    /// Normalises `a/./b//c/../d` to `a/b/d`; fails if `..` climbs above the root.
    pub fn new(path: &str) -> Result<RelPath, RelPathError> {
        if path.starts_with('/') {
            return Err(RelPathError::Absolute);
        }
        let mut components: Vec<&str> = Vec::new();
        for component in path.split('/') {
            match component {
                "" | "." => {}
                ".." => {
                    if components.pop().is_none() {
                        return Err(RelPathError::EscapesRoot);
                    }
                }
                name => components.push(name),
            }
        }
        Ok(RelPath(components.join("/")))
    }

    /// Same as [`RelPath::new`] for an OS path (which must be UTF-8).
    pub fn from_path(path: &Path) -> Result<RelPath, RelPathError> {
        if path.is_absolute() {
            return Err(RelPathError::Absolute);
        }
        let text = path.to_str().ok_or(RelPathError::NotUtf8)?;
        RelPath::new(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|component| !component.is_empty())
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Resolves `.` and `..` without touching the disk. `..` at `/` stays at `/`; a relative
/// path keeps the leading `..` it cannot resolve.
pub fn normalize_lexically(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                let last = normalized.components().next_back();
                match last {
                    Some(Component::Normal(_)) => {
                        normalized.pop();
                    }
                    Some(Component::RootDir | Component::Prefix(_)) => {}
                    Some(Component::ParentDir | Component::CurDir) | None => {
                        normalized.push("..");
                    }
                }
            }
            other => normalized.push(other.as_os_str()),
        }
    }
    normalized
}

/// The path of `path` inside `root`, comparing lexically normalised forms; `None` when
/// `path` is not inside `root` (or is not UTF-8 below it). Symlinks are not looked at.
pub fn relative_to_root(root: &Path, path: &Path) -> Option<RelPath> {
    let root = normalize_lexically(root);
    let path = normalize_lexically(path);
    let inside = path.strip_prefix(&root).ok()?;
    RelPath::from_path(inside).ok()
}

/// Why the rules refuse a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// A user `deny` pattern matched.
    DeniedByPattern { pattern: String, origin: String },
    /// The `allow` list is not empty and no pattern in it matched.
    NotAllowed { allow: Vec<PatternSpec> },
    /// A built-in deny matched `component` and no allow pattern named it.
    DeniedByDefault {
        pattern: &'static str,
        component: String,
        reason: &'static str,
    },
}

impl Denial {
    /// A suggestion for the operator, given the relative path that was denied.
    pub fn hint(&self, relative: &str) -> Option<String> {
        match self {
            Denial::DeniedByPattern { .. } => None,
            Denial::NotAllowed { .. } => Some(format!(
                "add a pattern matching `{relative}` to the file server `allow` list"
            )),
            Denial::DeniedByDefault { .. } => Some(format!(
                "to serve it anyway, add `{relative}` to the file server `allow` list (and `**` if \
                 the list was empty, since a non-empty list serves only what it matches); broad \
                 patterns like `**` never lift a built-in deny"
            )),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::DeniedByPattern { pattern, origin } => {
                write!(f, "denied by pattern `{pattern}` ({origin})")
            }
            Denial::NotAllowed { allow } => {
                f.write_str("matched by no allow pattern (")?;
                for (index, spec) in allow.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "`{}` at {}", spec.pattern, spec.origin)?;
                }
                f.write_str(")")
            }
            Denial::DeniedByDefault {
                pattern,
                component,
                reason,
            } => write!(
                f,
                "denied by default: `{component}` {reason} (built-in pattern `{pattern}`)"
            ),
        }
    }
}

/// A compiled pattern with its gitignore-style placement.
#[derive(Debug, Clone)]
struct CompiledPattern {
    spec: PatternSpec,
    matcher: GlobMatcher,
    /// Matched against the whole path and its leading directories rather than components.
    anchored: bool,
    /// Never matches the last component (the file itself).
    dir_only: bool,
}

impl CompiledPattern {
    fn compile(spec: &PatternSpec) -> Result<CompiledPattern, PatternError> {
        let error = |reason: &str, hint: Option<&str>| PatternError {
            pattern: spec.pattern.clone(),
            origin: spec.origin.clone(),
            reason: reason.to_owned(),
            hint: hint.map(str::to_owned),
        };
        let mut body = spec.pattern.as_str();
        if body.is_empty() {
            return Err(error("the pattern is empty", None));
        }
        if body.starts_with('!') {
            return Err(error(
                "a leading `!` (negation) is not supported",
                Some("use an `allow` pattern to serve a path, a `deny` pattern to refuse one"),
            ));
        }
        while let Some(rest) = body.strip_prefix("./") {
            body = rest;
        }
        let mut anchored = false;
        if let Some(rest) = body.strip_prefix('/') {
            anchored = true;
            body = rest;
        }
        let mut dir_only = false;
        while let Some(rest) = body.strip_suffix('/') {
            dir_only = true;
            body = rest;
        }
        if body.is_empty() {
            return Err(error(
                "the pattern names only the root",
                Some("use `**` to match every path"),
            ));
        }
        anchored |= body.contains('/');
        let glob = GlobBuilder::new(body)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|glob_error| error(&glob_error.kind().to_string(), None))?;
        Ok(CompiledPattern {
            spec: spec.clone(),
            matcher: glob.compile_matcher(),
            anchored,
            dir_only,
        })
    }

    /// `path` is a normalised `/`-separated relative path.
    fn matches(&self, path: &str) -> bool {
        if path.is_empty() {
            return false;
        }
        if self.anchored {
            // Leading directories, then (unless directory-only) the whole path.
            let directories = path.match_indices('/').map(|(index, _)| &path[..index]);
            let mut candidates: Vec<&str> = directories.collect();
            if !self.dir_only {
                candidates.push(path);
            }
            candidates
                .into_iter()
                .any(|candidate| self.matcher.is_match(candidate))
        } else {
            let components: Vec<&str> = path.split('/').collect();
            let considered = if self.dir_only {
                &components[..components.len() - 1]
            } else {
                &components[..]
            };
            considered
                .iter()
                .any(|component| self.matcher.is_match(component))
        }
    }
}

/// Where a built-in deny applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Any component: the file name or any directory above it.
    AnyComponent,
    /// Only the file name.
    FileName,
}

struct BuiltinDeny {
    pattern: &'static str,
    except: Option<&'static str>,
    scope: Scope,
    reason: &'static str,
}

const VCS: &str = "is a version-control directory";
const EDITOR: &str = "looks like an editor swap or backup file";
const SSH_KEY: &str = "looks like a private SSH key";
const KEY_FILE: &str = "may hold a private key";
const ENV_FILE: &str = "is an environment file, which usually holds secrets";
const CREDENTIALS: &str = "holds passwords";

const fn builtin(
    pattern: &'static str,
    except: Option<&'static str>,
    scope: Scope,
    reason: &'static str,
) -> BuiltinDeny {
    BuiltinDeny {
        pattern,
        except,
        scope,
        reason,
    }
}

/// The built-in denies, in the order they are reported. They match case-insensitively
/// (`ID_RSA`, `Server.PEM` and `.ENV` are as secret as their lowercase forms, and
/// case-insensitive filesystems serve them under either name); the user's patterns do not.
const BUILTIN_DENIES: &[BuiltinDeny] = &[
    builtin(".git", None, Scope::AnyComponent, VCS),
    builtin(".hg", None, Scope::AnyComponent, VCS),
    builtin(".svn", None, Scope::AnyComponent, VCS),
    builtin("*.swp", None, Scope::FileName, EDITOR),
    builtin("*~", None, Scope::FileName, EDITOR),
    builtin("*.bak", None, Scope::FileName, EDITOR),
    builtin("id_*", Some("id_*.pub"), Scope::FileName, SSH_KEY),
    builtin("*.pem", None, Scope::FileName, KEY_FILE),
    builtin("*.key", None, Scope::FileName, KEY_FILE),
    builtin("*.p12", None, Scope::FileName, KEY_FILE),
    builtin("*.pfx", None, Scope::FileName, KEY_FILE),
    builtin(".env", None, Scope::FileName, ENV_FILE),
    builtin(".env.*", None, Scope::FileName, ENV_FILE),
    builtin(".netrc", None, Scope::FileName, CREDENTIALS),
    builtin(".pgpass", None, Scope::FileName, CREDENTIALS),
];

/// The built-in deny patterns with the reason each gives, for documentation and `--help`.
pub fn builtin_denies() -> impl Iterator<Item = (&'static str, Option<&'static str>, &'static str)>
{
    BUILTIN_DENIES
        .iter()
        .map(|deny| (deny.pattern, deny.except, deny.reason))
}

#[derive(Debug, Clone)]
struct CompiledBuiltin {
    pattern: &'static str,
    matcher: GlobMatcher,
    except: Option<GlobMatcher>,
    scope: Scope,
    reason: &'static str,
}

impl CompiledBuiltin {
    fn matches_component(&self, component: &str) -> bool {
        self.matcher.is_match(component)
            && !self
                .except
                .as_ref()
                .is_some_and(|except| except.is_match(component))
    }
}

fn compile_builtin_glob(pattern: &str) -> GlobMatcher {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .case_insensitive(true)
        .build()
        .expect("built-in file server patterns are valid globs")
        .compile_matcher()
}

/// Stands in for a denied component when asking "would this allow pattern still match if
/// that name were anything else?". A pattern that still matches only says `*` or `**` at
/// that place and so does not name the denied file. It contains no `/` and no realistic name.
const STAND_IN: &str = "\u{1}mop-any-name\u{1}";

/// Compiled allow/deny rules. Pure: decisions depend only on the relative path.
#[derive(Debug, Clone)]
pub struct Rules {
    allow: Vec<CompiledPattern>,
    deny: Vec<CompiledPattern>,
    builtin: Vec<CompiledBuiltin>,
}

impl Rules {
    /// Compiles the user's patterns. Patterns that match nothing are fine; the first invalid
    /// one (allow list first) is reported with its origin.
    pub fn new(allow: &[PatternSpec], deny: &[PatternSpec]) -> Result<Rules, PatternError> {
        let allow = allow
            .iter()
            .map(CompiledPattern::compile)
            .collect::<Result<Vec<_>, _>>()?;
        let deny = deny
            .iter()
            .map(CompiledPattern::compile)
            .collect::<Result<Vec<_>, _>>()?;
        let builtin = BUILTIN_DENIES
            .iter()
            .map(|deny| CompiledBuiltin {
                pattern: deny.pattern,
                matcher: compile_builtin_glob(deny.pattern),
                except: deny.except.map(compile_builtin_glob),
                scope: deny.scope,
                reason: deny.reason,
            })
            .collect();
        Ok(Rules {
            allow,
            deny,
            builtin,
        })
    }

    /// Decides whether `path` may be served:
    /// 1. a matching user deny pattern refuses it (nothing lifts that);
    /// 2. with a non-empty allow list, a path no allow pattern matches is refused;
    /// 3. a built-in deny refuses it unless an allow pattern names the denied component
    ///    specifically (`id_deploy`, `*.pem`, `.git`; not `*`, `**` or a parent directory);
    /// 4. otherwise it is allowed.
    pub fn check(&self, path: &RelPath) -> Result<(), Denial> {
        let text = path.as_str();
        if let Some(deny) = self.deny.iter().find(|deny| deny.matches(text)) {
            return Err(Denial::DeniedByPattern {
                pattern: deny.spec.pattern.clone(),
                origin: deny.spec.origin.clone(),
            });
        }
        let matching_allows: Vec<&CompiledPattern> = self
            .allow
            .iter()
            .filter(|allow| allow.matches(text))
            .collect();
        if !self.allow.is_empty() && matching_allows.is_empty() {
            return Err(Denial::NotAllowed {
                allow: self.allow.iter().map(|allow| allow.spec.clone()).collect(),
            });
        }
        let components: Vec<&str> = path.components().collect();
        for (index, component) in components.iter().enumerate() {
            let is_file_name = index + 1 == components.len();
            let hit = self.builtin.iter().find(|builtin| {
                (builtin.scope == Scope::AnyComponent || is_file_name)
                    && builtin.matches_component(component)
            });
            let Some(builtin) = hit else { continue };
            let mut replaced = components.clone();
            replaced[index] = STAND_IN;
            let replaced = replaced.join("/");
            let lifted = matching_allows
                .iter()
                .any(|allow| !allow.matches(&replaced));
            if !lifted {
                return Err(Denial::DeniedByDefault {
                    pattern: builtin.pattern,
                    component: (*component).to_owned(),
                    reason: builtin.reason,
                });
            }
        }
        Ok(())
    }

    /// The user's allow patterns, in order.
    pub fn allow_patterns(&self) -> impl Iterator<Item = &PatternSpec> {
        self.allow.iter().map(|allow| &allow.spec)
    }

    /// The user's deny patterns, in order.
    pub fn deny_patterns(&self) -> impl Iterator<Item = &PatternSpec> {
        self.deny.iter().map(|deny| &deny.spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(patterns: &[&str]) -> Vec<PatternSpec> {
        patterns
            .iter()
            .enumerate()
            .map(|(index, pattern)| {
                PatternSpec::new(*pattern, format!("site.toml:{}:1", index + 1))
            })
            .collect()
    }

    /// `expected` is `"ok"`, `"deny:<pattern>"`, `"not-allowed"` or `"default:<pattern>"`.
    #[track_caller]
    fn check(allow: &[&str], deny: &[&str], path: &str, expected: &str) {
        let rules = Rules::new(&specs(allow), &specs(deny)).expect("valid test patterns");
        let relative = RelPath::new(path).expect("valid test path");
        let actual = match rules.check(&relative) {
            Ok(()) => "ok".to_owned(),
            Err(Denial::DeniedByPattern { pattern, .. }) => format!("deny:{pattern}"),
            Err(Denial::NotAllowed { .. }) => "not-allowed".to_owned(),
            Err(Denial::DeniedByDefault { pattern, .. }) => format!("default:{pattern}"),
        };
        assert_eq!(
            actual, expected,
            "allow={allow:?} deny={deny:?} path={path:?}"
        );
    }

    #[test]
    fn plain_paths_are_allowed_by_default() {
        check(&[], &[], "motd", "ok");
        check(&[], &[], "etc/nginx/nginx.conf", "ok");
        check(&[], &[], ".bashrc", "ok");
        check(&[], &[], "home/.config/app.toml", "ok");
        check(&[], &[], ".gitignore", "ok");
        check(&[], &[], ".github/workflows/ci.yml", "ok");
        check(&[], &[], "a.git/x", "ok");
    }

    #[test]
    fn builtin_denies_ignore_case() {
        check(&[], &[], "ID_RSA", "default:id_*");
        check(&[], &[], "keys/Id_Ed25519", "default:id_*");
        check(&[], &[], "keys/ID_RSA.PUB", "ok");
        check(&[], &[], "SERVER.PEM", "default:*.pem");
        check(&[], &[], "tls/Server.Key", "default:*.key");
        check(&[], &[], ".ENV", "default:.env");
        check(&[], &[], "app/.Env.Local", "default:.env.*");
        check(&[], &[], ".GIT/config", "default:.git");
        check(&[], &[], "X.SWP", "default:*.swp");
        // An allow naming the file lifts it, as for lowercase names.
        check(&["deploy/ID_DEPLOY"], &[], "deploy/ID_DEPLOY", "ok");
        // The user's own patterns stay case-sensitive.
        check(&[], &["secrets"], "SECRETS/db.yml", "ok");
    }

    #[test]
    fn builtin_denies() {
        check(&[], &[], ".git/config", "default:.git");
        check(&[], &[], "a/.git/HEAD", "default:.git");
        check(&[], &[], "a/.hg/store", "default:.hg");
        check(&[], &[], ".svn/entries", "default:.svn");
        check(&[], &[], "x.swp", "default:*.swp");
        check(&[], &[], "dir/.x.conf.swp", "default:*.swp");
        check(&[], &[], "notes~", "default:*~");
        check(&[], &[], "conf/app.bak", "default:*.bak");
        check(&[], &[], "id_rsa", "default:id_*");
        check(&[], &[], "keys/id_ed25519", "default:id_*");
        check(&[], &[], "id_rsa.pub", "ok");
        check(&[], &[], "keys/id_ed25519.pub", "ok");
        check(&[], &[], "server.pem", "default:*.pem");
        check(&[], &[], "tls/server.key", "default:*.key");
        check(&[], &[], "tls/bundle.p12", "default:*.p12");
        check(&[], &[], "tls/bundle.pfx", "default:*.pfx");
        check(&[], &[], ".env", "default:.env");
        check(&[], &[], "app/.env", "default:.env");
        check(&[], &[], "app/.env.production", "default:.env.*");
        check(&[], &[], "home/.netrc", "default:.netrc");
        check(&[], &[], ".pgpass", "default:.pgpass");
        check(&[], &[], "app/env", "ok");
        check(&[], &[], "app/x.env", "ok");
        check(&[], &[], "app/.envrc", "ok");
        check(&[".env"], &[], "app/.env", "ok");
        // File-name denies do not look at directories.
        check(&[], &[], "id_files/readme", "ok");
        check(&[], &[], "old.bak/readme", "ok");
    }

    #[test]
    fn user_deny_patterns() {
        check(&[], &["*.secret"], "db.secret", "deny:*.secret");
        check(&[], &["*.secret"], "a/b/db.secret", "deny:*.secret");
        check(&[], &["secrets"], "secrets/db.yml", "deny:secrets");
        check(&[], &["secrets"], "app/secrets/db.yml", "deny:secrets");
        check(
            &[],
            &["conf/secrets"],
            "conf/secrets/db.yml",
            "deny:conf/secrets",
        );
        check(&[], &["conf/secrets"], "app/conf/secrets/db.yml", "ok");
        check(&[], &["/motd"], "motd", "deny:/motd");
        check(&[], &["/motd"], "etc/motd", "ok");
        check(&[], &["conf/*.yml"], "conf/a.yml", "deny:conf/*.yml");
        // `*` does not cross `/` in an anchored pattern.
        check(&[], &["conf/*.yml"], "conf/sub/a.yml", "ok");
        check(
            &[],
            &["conf/**/*.yml"],
            "conf/sub/a.yml",
            "deny:conf/**/*.yml",
        );
        check(&[], &["conf/**/*.yml"], "conf/a.yml", "deny:conf/**/*.yml");
        // Directory-only patterns.
        check(&[], &["cache/"], "cache/x", "deny:cache/");
        check(&[], &["cache/"], "cache", "ok");
        // `*` matches dotfiles.
        check(&[], &["*rc"], ".bashrc", "deny:*rc");
        check(&[], &["[ab].txt"], "b.txt", "deny:[ab].txt");
        check(&[], &["{a,b}.txt"], "c.txt", "ok");
    }

    #[test]
    fn allow_list_restricts() {
        check(&["templates/**"], &[], "templates/nginx.conf.j2", "ok");
        check(&["templates/**"], &[], "files/motd", "not-allowed");
        check(&["*.conf"], &[], "etc/app.conf", "ok");
        check(&["*.conf"], &[], "etc/app.yml", "not-allowed");
        check(&["files/"], &[], "files/a/b", "ok");
    }

    #[test]
    fn deny_beats_allow() {
        check(&["**"], &["*.secret"], "db.secret", "deny:*.secret");
        check(
            &["files/**"],
            &["files/private"],
            "files/private/x",
            "deny:files/private",
        );
        // A user deny wins even over an allow that lifts a built-in deny.
        check(&["deploy/id_rsa"], &["id_*"], "deploy/id_rsa", "deny:id_*");
        check(&["*.pem"], &["tls/**"], "tls/ca.pem", "deny:tls/**");
    }

    #[test]
    fn explicit_allow_lifts_builtin_deny() {
        check(&["deploy/id_deploy"], &[], "deploy/id_deploy", "ok");
        check(&["**", "deploy/id_deploy"], &[], "deploy/id_deploy", "ok");
        check(&["*.pem"], &[], "certs/ca.pem", "ok");
        check(&["certs/*.pem"], &[], "certs/ca.pem", "ok");
        check(&["id_*"], &[], "id_rsa", "ok");
        check(&[".git"], &[], "repo/.git/HEAD", "ok");
        check(&["repo/.git/**"], &[], "repo/.git/HEAD", "ok");
    }

    #[test]
    fn broad_allow_does_not_lift_builtin_deny() {
        check(&["**"], &[], "deploy/id_rsa", "default:id_*");
        check(&["**"], &[], ".git/config", "default:.git");
        check(&["*"], &[], "x.swp", "default:*.swp");
        check(&["files/**"], &[], "files/.git/config", "default:.git");
        check(&["certs/"], &[], "certs/server.key", "default:*.key");
        check(&["certs/*"], &[], "certs/server.key", "default:*.key");
        // An allow naming a file inside `.git` does not lift the `.git` directory deny.
        check(&["HEAD"], &[], "a/.git/HEAD", "default:.git");
        // Lifting one built-in deny does not lift another on the same path.
        check(&[".git"], &[], ".git/x.swp", "default:*.swp");
        check(&[".git", "*.swp"], &[], ".git/x.swp", "ok");
    }

    #[test]
    fn rel_path_normalisation() {
        let ok = |input: &str| RelPath::new(input).map(RelPath::into_string);
        assert_eq!(ok("a/./b//c/../d"), Ok("a/b/d".to_owned()));
        assert_eq!(ok("./motd"), Ok("motd".to_owned()));
        assert_eq!(ok("a/.."), Ok(String::new()));
        assert_eq!(ok("../x"), Err(RelPathError::EscapesRoot));
        assert_eq!(ok("a/../../x"), Err(RelPathError::EscapesRoot));
        assert_eq!(ok("/etc/passwd"), Err(RelPathError::Absolute));
        assert_eq!(ok("..."), Ok("...".to_owned()));
    }

    #[test]
    fn lexical_containment() {
        let inside = |root: &str, path: &str| {
            relative_to_root(Path::new(root), Path::new(path)).map(RelPath::into_string)
        };
        assert_eq!(
            inside("/srv/files", "/srv/files/a/b"),
            Some("a/b".to_owned())
        );
        assert_eq!(
            inside("/srv/files", "/srv/files/a/../b"),
            Some("b".to_owned())
        );
        assert_eq!(inside("/srv/files", "/srv/files/../x"), None);
        assert_eq!(inside("/srv/files", "/srv/filesystem/x"), None);
        assert_eq!(
            inside("/srv/files/", "/srv/./files/x"),
            Some("x".to_owned())
        );
        assert_eq!(inside("/srv/files", "/etc/passwd"), None);
        assert_eq!(
            normalize_lexically(Path::new("/../a/./b/..")),
            PathBuf::from("/a")
        );
        assert_eq!(
            normalize_lexically(Path::new("../a/../../b")),
            PathBuf::from("../../b")
        );
    }

    #[test]
    fn invalid_patterns_name_their_origin() {
        let error = Rules::new(&[], &[PatternSpec::new("[a", "policies/site.toml:7:10")])
            .expect_err("unclosed class is invalid");
        assert_eq!(error.origin, "policies/site.toml:7:10");
        let message = error.to_string();
        assert!(
            message.starts_with("policies/site.toml:7:10: invalid file server pattern `[a`: "),
            "{message}"
        );
        assert!(message.contains("unclosed character class"), "{message}");

        for bad in ["", "!x", "/", "{a,b", "x\\"] {
            assert!(
                Rules::new(&specs(&[bad]), &[]).is_err(),
                "pattern {bad:?} should be rejected"
            );
        }
        let negation = Rules::new(&specs(&["!x"]), &[]).expect_err("negation is rejected");
        assert!(negation.to_string().contains("\nhint: "), "{negation}");
    }

    #[test]
    fn patterns_that_match_nothing_are_fine() {
        check(&[], &["no/such/dir/**", "*.nothing"], "motd", "ok");
    }

    #[test]
    fn denial_messages() {
        let rules = Rules::new(&[], &specs(&["secrets"])).expect("valid");
        let denial = rules
            .check(&RelPath::new("secrets/db.yml").expect("valid"))
            .expect_err("denied");
        assert_eq!(
            denial.to_string(),
            "denied by pattern `secrets` (site.toml:1:1)"
        );
        let rules = Rules::new(&[], &[]).expect("valid");
        let denial = rules
            .check(&RelPath::new("deploy/id_rsa").expect("valid"))
            .expect_err("denied");
        assert_eq!(
            denial.to_string(),
            "denied by default: `id_rsa` looks like a private SSH key (built-in pattern `id_*`)"
        );
        let hint = denial
            .hint("deploy/id_rsa")
            .expect("default denies have a hint");
        assert!(hint.contains("add `deploy/id_rsa` to the file server `allow` list"));
    }
}
