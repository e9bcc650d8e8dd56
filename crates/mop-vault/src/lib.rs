//! The vault: age-encrypted files (ASCII-armored), unlocked with a passphrase or with the
//! operators' own keys (age X25519 or ssh-ed25519/ssh-rsa), and the one cache of those keys a
//! run shares.
//!
//! Flow: [`Unlocker::from_env`] (or [`Unlocker::global`]) collects where keys come from without
//! reading anything; [`Unlocker::decrypt`] reads the keys a file needs the first time one needs
//! them (a passphrase is asked once on the terminal and kept for the rest of the run) and returns
//! a [`Plaintext`] that never prints and is wiped when dropped. [`encrypt`] writes a new file
//! for a [`Recipients`] set.
//!
//! Architecture invariant: this crate never prints and never writes plaintext to disk; what to
//! do with a [`Plaintext`] is the caller's business (the inventory parses it, the file server
//! streams it, `mop vault` shows or edits it).

mod prompt;
mod recipients;

use std::fmt;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

pub use age::secrecy::SecretString;
pub use recipients::{find_recipients_file, parse_recipients, RECIPIENTS_FILE_NAME};

/// The environment variable naming a file whose first line is the vault passphrase.
pub const PASSWORD_FILE_ENV: &str = "MOP_VAULT_PASSWORD_FILE";
/// The environment variable naming an identity file (age `AGE-SECRET-KEY-1...` lines or an
/// unencrypted OpenSSH private key).
pub const IDENTITY_ENV: &str = "MOP_VAULT_IDENTITY";

/// True when `path` names a vault file: `*.age`, or `*.age.toml` (so editors still see TOML
/// in the name of a variable file).
pub fn is_vault_path(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default();
    name.ends_with(".age") || name.ends_with(".age.toml")
}

/// The name a vault file's plaintext lands under on a host when a `tree` copies it:
/// `server.key.age` is `server.key`, `app.age.toml` is `app.toml`; `None` for a file that is
/// not a vault file.
pub fn plaintext_name(name: &str) -> Option<String> {
    if let Some(stem) = name.strip_suffix(".age.toml") {
        return Some(format!("{stem}.toml"));
    }
    name.strip_suffix(".age").map(str::to_string)
}

/// Decrypted content. Debug shows only its length; the bytes are zeroed when dropped.
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    pub fn new(bytes: Vec<u8>) -> Plaintext {
        Plaintext(Zeroizing::new(bytes))
    }

    /// The decrypted bytes, for parsing or streaming, never for display.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext(<{} bytes redacted>)", self.0.len())
    }
}

/// Everything that can go wrong opening or writing a vault file. Messages name the file and
/// never contain key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("cannot read `{}`: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is not an age file: {reason}\nhint: create vault files with `mop vault encrypt`", .path.display())]
    NotAgeFile { path: PathBuf, reason: String },
    #[error(
        "`{}` is encrypted with a passphrase and none is available\nhint: set {PASSWORD_FILE_ENV} \
         to a file holding the passphrase, or run from a terminal to be asked",
        .path.display()
    )]
    NoPassphrase { path: PathBuf },
    #[error("wrong passphrase for `{}`", .path.display())]
    WrongPassphrase { path: PathBuf },
    #[error(
        "none of the identities tried can decrypt `{}` (tried: {tried})\nhint: set \
         {IDENTITY_ENV} to the private key whose public key the file was encrypted to, or ask \
         someone who can to `mop vault rekey` it for your key",
        .path.display()
    )]
    NoMatchingIdentity { path: PathBuf, tried: String },
    #[error("cannot use identity `{}`: {reason}", .path.display())]
    BadIdentity { path: PathBuf, reason: String },
    #[error("cannot decrypt `{}`: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{location}: {message}")]
    BadRecipient { location: String, message: String },
    #[error("cannot encrypt: {0}")]
    Encrypt(String),
    #[error("cannot read the passphrase from the terminal: {0}")]
    Prompt(std::io::Error),
    #[error("the passphrases do not match")]
    PassphraseMismatch,
    #[error("the passphrase is empty")]
    EmptyPassphrase,
}

/// Whom a file is encrypted to.
pub enum Recipients {
    /// Anyone with this passphrase (age's scrypt recipient).
    Passphrase(SecretString),
    /// Public keys: `age1...`, `ssh-ed25519 ...`, `ssh-rsa ...`.
    Keys(Vec<Box<dyn age::Recipient + Send>>),
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipients::Passphrase(_) => write!(f, "Recipients::Passphrase(<redacted>)"),
            Recipients::Keys(keys) => write!(f, "Recipients::Keys({} keys)", keys.len()),
        }
    }
}

/// Encrypts `plaintext` for `recipients`, ASCII-armored (vault files live in git, where text
/// diffs and merges better than binary).
pub fn encrypt(plaintext: &[u8], recipients: &Recipients) -> Result<Vec<u8>, VaultError> {
    let encryptor = match recipients {
        Recipients::Passphrase(passphrase) => {
            age::Encryptor::with_user_passphrase(passphrase.clone())
        }
        Recipients::Keys(keys) => {
            age::Encryptor::with_recipients(keys.iter().map(|key| key.as_ref() as _))
                .map_err(|error| VaultError::Encrypt(error.to_string()))?
        }
    };
    let encrypt_error = |error: std::io::Error| VaultError::Encrypt(error.to_string());
    let mut output = Vec::new();
    let armored =
        ArmoredWriter::wrap_output(&mut output, Format::AsciiArmor).map_err(encrypt_error)?;
    let mut writer = encryptor.wrap_output(armored).map_err(encrypt_error)?;
    writer.write_all(plaintext).map_err(encrypt_error)?;
    writer
        .finish()
        .and_then(|armored| armored.finish())
        .map_err(encrypt_error)?;
    Ok(output)
}

/// How the last file was unlocked, so `mop vault edit` can re-encrypt it the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlockedWith {
    Passphrase,
    Identity,
}

/// Where keys come from, and the keys read so far (shared by every decryption of a run).
#[derive(Debug)]
pub struct Unlocker {
    identity_files: Vec<PathBuf>,
    password_file: Option<PathBuf>,
    prompt: bool,
    passphrase: Mutex<Option<SecretString>>,
}

impl Unlocker {
    /// Keys from the environment: `MOP_VAULT_IDENTITY` (else `~/.ssh/id_ed25519` and
    /// `~/.ssh/id_rsa` where they exist), `MOP_VAULT_PASSWORD_FILE`, else a prompt on the
    /// controlling terminal when there is one.
    pub fn from_env() -> Unlocker {
        let identity_files = match std::env::var_os(IDENTITY_ENV) {
            Some(path) if !path.is_empty() => vec![PathBuf::from(path)],
            _ => std::env::var_os("HOME")
                .map(PathBuf::from)
                .map(|home| {
                    ["id_ed25519", "id_rsa"]
                        .iter()
                        .map(|name| home.join(".ssh").join(name))
                        .filter(|path| path.is_file())
                        .collect()
                })
                .unwrap_or_default(),
        };
        let password_file = std::env::var_os(PASSWORD_FILE_ENV)
            .filter(|path| !path.is_empty())
            .map(PathBuf::from);
        Unlocker {
            identity_files,
            password_file,
            prompt: prompt::have_terminal(),
            passphrase: Mutex::new(None),
        }
    }

    /// An unlocker with exactly these sources and no terminal prompt (tests, tools).
    pub fn new(identity_files: Vec<PathBuf>, password_file: Option<PathBuf>) -> Unlocker {
        Unlocker {
            identity_files,
            password_file,
            prompt: false,
            passphrase: Mutex::new(None),
        }
    }

    /// The process's unlocker, made from the environment on first use: every vault file of a
    /// run is opened through it, so a passphrase is asked at most once.
    pub fn global() -> &'static Unlocker {
        static GLOBAL: OnceLock<Unlocker> = OnceLock::new();
        GLOBAL.get_or_init(Unlocker::from_env)
    }

    /// Reads and decrypts the vault file at `path`.
    pub fn decrypt_file(&self, path: &Path) -> Result<Plaintext, VaultError> {
        let bytes = std::fs::read(path).map_err(|source| VaultError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.decrypt(&bytes, path).map(|(plaintext, _)| plaintext)
    }

    /// Decrypts `bytes` read from `path` (which names it in errors).
    pub fn decrypt(
        &self,
        bytes: &[u8],
        path: &Path,
    ) -> Result<(Plaintext, UnlockedWith), VaultError> {
        let not_age = |error: age::DecryptError| VaultError::NotAgeFile {
            path: path.to_path_buf(),
            reason: error.to_string(),
        };
        let decryptor = age::Decryptor::new_buffered(BufReader::new(ArmoredReader::new(bytes)))
            .map_err(not_age)?;
        if decryptor.is_scrypt() {
            let passphrase = self.passphrase(path)?;
            let identity = age::scrypt::Identity::new(passphrase);
            let reader = match decryptor.decrypt(std::iter::once(&identity as _)) {
                Ok(reader) => reader,
                Err(age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys) => {
                    // A wrong passphrase is forgotten so a retry can ask again.
                    *self
                        .passphrase
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = None;
                    return Err(VaultError::WrongPassphrase {
                        path: path.to_path_buf(),
                    });
                }
                Err(error) => return Err(corrupt(path, &error)),
            };
            return Ok((read_all(reader, path)?, UnlockedWith::Passphrase));
        }
        let identities = self.identities()?;
        let reader = match decryptor.decrypt(identities.iter().map(|identity| identity.as_ref())) {
            Ok(reader) => reader,
            Err(age::DecryptError::NoMatchingKeys) => {
                let tried = if self.identity_files.is_empty() {
                    "no identity found".to_string()
                } else {
                    self.identity_files
                        .iter()
                        .map(|path| format!("`{}`", path.display()))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(VaultError::NoMatchingIdentity {
                    path: path.to_path_buf(),
                    tried,
                });
            }
            Err(error) => return Err(corrupt(path, &error)),
        };
        Ok((read_all(reader, path)?, UnlockedWith::Identity))
    }

    /// The run's passphrase: the cached one, else the password file's first line, else asked.
    pub fn passphrase(&self, for_path: &Path) -> Result<SecretString, VaultError> {
        let mut cached = self
            .passphrase
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(passphrase) = cached.as_ref() {
            return Ok(passphrase.clone());
        }
        let passphrase = if let Some(file) = &self.password_file {
            read_password_file(file)?
        } else if self.prompt {
            let text = prompt::ask(&format!("vault passphrase for `{}`: ", for_path.display()))
                .map_err(VaultError::Prompt)?;
            SecretString::from(text.to_string())
        } else {
            return Err(VaultError::NoPassphrase {
                path: for_path.to_path_buf(),
            });
        };
        *cached = Some(passphrase.clone());
        Ok(passphrase)
    }

    fn identities(&self) -> Result<Vec<Box<dyn age::Identity>>, VaultError> {
        let mut identities: Vec<Box<dyn age::Identity>> = Vec::new();
        for path in &self.identity_files {
            let bad = |reason: String| VaultError::BadIdentity {
                path: path.clone(),
                reason,
            };
            let text = Zeroizing::new(std::fs::read(path).map_err(|source| VaultError::Io {
                path: path.clone(),
                source,
            })?);
            if text.windows(15).any(|window| window == b"AGE-SECRET-KEY-") {
                let file = age::IdentityFile::from_buffer(&text[..])
                    .map_err(|error| bad(error.to_string()))?;
                identities.extend(
                    file.into_identities()
                        .map_err(|error| bad(error.to_string()))?,
                );
                continue;
            }
            let identity =
                age::ssh::Identity::from_buffer(&text[..], Some(path.display().to_string()))
                    .map_err(|error| bad(error.to_string()))?;
            match identity {
                age::ssh::Identity::Unencrypted(_) => identities.push(Box::new(identity)),
                age::ssh::Identity::Encrypted(_) => {
                    return Err(bad(
                        "the key is protected by a passphrase, which `mop vault` \
                                    cannot ask for yet\nhint: point MOP_VAULT_IDENTITY at an \
                                    unencrypted age identity (`age-keygen`) kept in a private \
                                    file"
                            .to_string(),
                    ))
                }
                age::ssh::Identity::Unsupported(_) => {
                    return Err(bad(
                        "unsupported key type (use ssh-ed25519 or ssh-rsa)".to_string()
                    ))
                }
            }
        }
        Ok(identities)
    }
}

/// The first line of a password file, without its line ending.
pub fn read_password_file(file: &Path) -> Result<SecretString, VaultError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(file).map_err(|source| VaultError::Io {
            path: file.to_path_buf(),
            source,
        })?,
    );
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(VaultError::EmptyPassphrase);
    }
    Ok(SecretString::from(line.to_string()))
}

/// Asks for a new passphrase twice on the terminal.
pub fn ask_new_passphrase() -> Result<SecretString, VaultError> {
    let first = prompt::ask("new vault passphrase: ").map_err(VaultError::Prompt)?;
    if first.is_empty() {
        return Err(VaultError::EmptyPassphrase);
    }
    let second = prompt::ask("repeat the passphrase: ").map_err(VaultError::Prompt)?;
    if first.as_str() != second.as_str() {
        return Err(VaultError::PassphraseMismatch);
    }
    Ok(SecretString::from(first.to_string()))
}

/// Whether a passphrase can be asked on this process's terminal.
pub fn can_prompt() -> bool {
    prompt::have_terminal()
}

/// True when two passphrases are equal (without exposing either to the caller).
pub fn same_passphrase(a: &SecretString, b: &SecretString) -> bool {
    a.expose_secret() == b.expose_secret()
}

fn corrupt(path: &Path, error: &age::DecryptError) -> VaultError {
    VaultError::Corrupt {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

fn read_all(mut reader: impl Read, path: &Path) -> Result<Plaintext, VaultError> {
    let mut plaintext = Zeroizing::new(Vec::new());
    reader
        .read_to_end(&mut plaintext)
        .map_err(|error| VaultError::Corrupt {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
    Ok(Plaintext(plaintext))
}

#[cfg(test)]
mod tests;
