//! Recipient lists: `age1...` keys and OpenSSH public keys (`ssh-ed25519 ...`, `ssh-rsa ...`,
//! as in `~/.ssh/id_ed25519.pub` or `authorized_keys`), one a line, `#` comments. A team keeps
//! one `.mop-vault-recipients` file in its repository; `mop vault` finds the nearest one.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::VaultError;

/// The file `mop vault` looks for in a vault file's directory and its parents.
pub const RECIPIENTS_FILE_NAME: &str = ".mop-vault-recipients";

/// Parses recipient lines; `origin` names the text in errors (`file` gives `file:LINE:1`).
/// Every bad line is reported, not only the first.
pub fn parse_recipients(
    text: &str,
    origin: &str,
) -> Result<Vec<Box<dyn age::Recipient + Send>>, VaultError> {
    let mut recipients: Vec<Box<dyn age::Recipient + Send>> = Vec::new();
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_one(line) {
            Ok(recipient) => recipients.push(recipient),
            Err(message) => problems.push(format!("{origin}:{}:1: {message}", index + 1)),
        }
    }
    if !problems.is_empty() {
        return Err(VaultError::BadRecipient {
            location: origin.to_string(),
            message: format!("invalid recipients\n{}", problems.join("\n")),
        });
    }
    if recipients.is_empty() {
        return Err(VaultError::BadRecipient {
            location: origin.to_string(),
            message: "no recipients\nhint: add one public key a line: `age1...` or the \
                      content of an `~/.ssh/id_ed25519.pub`"
                .to_string(),
        });
    }
    Ok(recipients)
}

fn parse_one(line: &str) -> Result<Box<dyn age::Recipient + Send>, String> {
    if line.starts_with("age1") {
        return age::x25519::Recipient::from_str(line)
            .map(|key| Box::new(key) as _)
            .map_err(|_| "not a valid `age1...` public key".to_string());
    }
    if line.starts_with("ssh-") {
        return age::ssh::Recipient::from_str(line)
            .map(|key| Box::new(key) as _)
            .map_err(|_| {
                "not a usable ssh public key\n  hint: ssh-ed25519 and ssh-rsa keys work".to_string()
            });
    }
    // Never echo the line: someone may have pasted a private key here by mistake.
    Err("expected an `age1...` or `ssh-ed25519 ...` public key".to_string())
}

/// The nearest `.mop-vault-recipients` in `dir` or one of its parents.
pub fn find_recipients_file(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .map(|ancestor| ancestor.join(RECIPIENTS_FILE_NAME))
        .find(|candidate| candidate.is_file())
}
