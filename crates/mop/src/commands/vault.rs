//! `mop vault`: encrypt, decrypt, view, edit and rekey age-encrypted files. Plaintext exists
//! only in this process's memory, on stdout (`view`), in a file the operator asked for
//! (`decrypt`), or in `edit`'s private temporary file, which is removed however the edit ends.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use mop_vault::{Recipients, SecretString, UnlockedWith, Unlocker};

use crate::cli::{
    VaultCommand, VaultDecryptArgs, VaultEditArgs, VaultEncryptArgs, VaultFileArg,
    VaultRecipientArgs, VaultRekeyArgs,
};
use crate::exit;

/// The environment variable naming the new passphrase's file for `rekey --passphrase`.
const NEW_PASSWORD_FILE_ENV: &str = "MOP_VAULT_NEW_PASSWORD_FILE";

pub fn run(command: VaultCommand) -> Result<u8> {
    match command {
        VaultCommand::Encrypt(args) => encrypt(args),
        VaultCommand::Decrypt(args) => decrypt(args),
        VaultCommand::View(args) => view(args),
        VaultCommand::Edit(args) => edit(args),
        VaultCommand::Rekey(args) => rekey(args),
    }
}

fn encrypt(args: VaultEncryptArgs) -> Result<u8> {
    let output = args.output.clone().unwrap_or_else(|| {
        let mut name = args.file.clone().into_os_string();
        name.push(".age");
        PathBuf::from(name)
    });
    refuse_overwrite(&output, args.force)?;
    let plaintext = mop_vault::Plaintext::new(
        std::fs::read(&args.file)
            .with_context(|| format!("cannot read `{}`", args.file.display()))?,
    );
    let recipients = recipients_for(&args.recipients, &output, Some(PasswordSource::Current))?
        .ok_or_else(|| anyhow!("no recipients"))?;
    let sealed = mop_vault::encrypt(plaintext.expose(), &recipients)?;
    write_file(&output, &sealed, 0o644)?;
    eprintln!(
        "encrypted `{}` into `{}` ({})\n  hint: the plaintext `{}` is still there; remove it \
         once you no longer need it",
        args.file.display(),
        output.display(),
        describe(&recipients),
        args.file.display()
    );
    Ok(exit::SUCCESS)
}

fn decrypt(args: VaultDecryptArgs) -> Result<u8> {
    let output = match args.output.clone() {
        Some(output) => output,
        None => {
            let name = args.file.to_string_lossy();
            let Some(stripped) = name.strip_suffix(".age") else {
                bail!(
                    "cannot tell where to write the plaintext of `{}`\n  hint: give --output",
                    args.file.display()
                );
            };
            PathBuf::from(stripped)
        }
    };
    refuse_overwrite(&output, args.force)?;
    let plaintext = Unlocker::global().decrypt_file(&args.file)?;
    // 0600: the plaintext of a secret is nobody else's to read.
    write_file(&output, plaintext.expose(), 0o600)?;
    eprintln!(
        "decrypted `{}` into `{}`",
        args.file.display(),
        output.display()
    );
    Ok(exit::SUCCESS)
}

fn view(args: VaultFileArg) -> Result<u8> {
    let plaintext = Unlocker::global().decrypt_file(&args.file)?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(plaintext.expose())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    Ok(exit::SUCCESS)
}

fn edit(args: VaultEditArgs) -> Result<u8> {
    let unlocker = Unlocker::global();
    let (old, unlocked_with) = if args.file.exists() {
        let bytes = std::fs::read(&args.file)
            .with_context(|| format!("cannot read `{}`", args.file.display()))?;
        let (plaintext, with) = unlocker.decrypt(&bytes, &args.file)?;
        (plaintext, Some(with))
    } else {
        (mop_vault::Plaintext::new(Vec::new()), None)
    };
    // Decide whom to encrypt to before the operator spends time editing.
    let recipients = match unlocked_with {
        // A passphrase file stays a passphrase file, with the passphrase that opened it.
        Some(UnlockedWith::Passphrase) if !has_explicit(&args.recipients) => {
            Recipients::Passphrase(unlocker.passphrase(&args.file)?)
        }
        // A file for keys never silently turns into a passphrase file.
        Some(UnlockedWith::Identity) if !has_explicit(&args.recipients) => {
            match recipients_for(&args.recipients, &args.file, None)? {
                Some(recipients) => recipients,
                None => bail!(
                    "cannot tell whom to encrypt `{}` to after the edit\n  hint: add a `{}` \
                     file listing the team's public keys, or give --recipients-file",
                    args.file.display(),
                    mop_vault::RECIPIENTS_FILE_NAME
                ),
            }
        }
        _ => recipients_for(&args.recipients, &args.file, Some(PasswordSource::Current))?
            .ok_or_else(|| anyhow!("no recipients"))?,
    };

    // The directory is created 0700 and removed when `workspace` drops: after the editor
    // exits, on every error path below, and on a panic; and by `_remover` if mop is killed.
    let workspace = tempfile::Builder::new()
        .prefix("mop-vault-")
        .tempdir()
        .context("cannot create a private temporary directory")?;
    let _remover = RemovedWhenMopEnds::start(workspace.path())?;
    let file_name = args
        .file
        .file_name()
        .map(|name| name.to_string_lossy().replace(".age", ""))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "vault".to_string());
    let scratch = workspace.path().join(file_name);
    write_file(&scratch, old.expose(), 0o600)?;
    run_editor(&scratch)?;
    let new = mop_vault::Plaintext::new(
        std::fs::read(&scratch).context("cannot read the edited temporary file")?,
    );
    drop(workspace);
    if new.expose() == old.expose() && unlocked_with.is_some() {
        eprintln!("`{}` unchanged", args.file.display());
        return Ok(exit::SUCCESS);
    }
    let sealed = mop_vault::encrypt(new.expose(), &recipients)?;
    write_file(&args.file, &sealed, 0o644)?;
    eprintln!(
        "saved `{}` ({})",
        args.file.display(),
        describe(&recipients)
    );
    Ok(exit::SUCCESS)
}

/// What removes `edit`'s temporary directory when mop ends however it ends (SIGKILL, SIGTERM,
/// Ctrl-C on the terminal, a crash): a `sh` in its own process group, deaf to terminal signals,
/// reads a pipe whose only writer is mop (close-on-exec, so the editor does not hold it) and
/// removes the directory at end of file. Dropped, it closes the pipe and waits for the `sh`,
/// so nothing outlives a normal exit.
struct RemovedWhenMopEnds {
    child: Option<std::process::Child>,
}

/// The remover's script; `$1` is the directory.
const REMOVER_SCRIPT: &str = r#"trap '' HUP INT QUIT TERM PIPE; IFS= read -r line; rm -rf -- "$1""#;

impl RemovedWhenMopEnds {
    fn start(dir: &Path) -> Result<RemovedWhenMopEnds> {
        use std::os::unix::process::CommandExt as _;
        let child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(REMOVER_SCRIPT)
            .arg("sh")
            .arg(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .context("cannot start the process that removes the plaintext if mop is killed")?;
        Ok(RemovedWhenMopEnds { child: Some(child) })
    }
}

impl Drop for RemovedWhenMopEnds {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

/// Runs `$VISUAL`/`$EDITOR` (else `vi`) on `path`. The editor value may carry arguments
/// (`code --wait`), so it goes through `sh`; the path is passed as `$1`, never spliced into
/// the script.
fn run_editor(path: &Path) -> Result<()> {
    let editor = ["VISUAL", "EDITOR"]
        .iter()
        .find_map(|name| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        })
        .unwrap_or_else(|| "vi".to_string());
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(path)
        .status()
        .with_context(|| format!("cannot start the editor `{editor}`"))?;
    if !status.success() {
        bail!("the editor `{editor}` failed ({status}): the vault file was not changed");
    }
    Ok(())
}

fn rekey(args: VaultRekeyArgs) -> Result<u8> {
    let unlocker = Unlocker::global();
    // Everything is decrypted first: a file nobody here can open stops the rekey before any
    // file is rewritten.
    let mut opened = Vec::new();
    for file in &args.files {
        opened.push((file, unlocker.decrypt_file(file)?));
    }
    let first = args.files.first().expect("clap requires one file");
    let recipients = recipients_for(&args.recipients, first, Some(PasswordSource::New))?
        .ok_or_else(|| anyhow!("no recipients"))?;
    for (file, plaintext) in opened {
        let sealed = mop_vault::encrypt(plaintext.expose(), &recipients)?;
        write_file(file, &sealed, 0o644)?;
        eprintln!("rekeyed `{}` ({})", file.display(), describe(&recipients));
    }
    Ok(exit::SUCCESS)
}

/// Which passphrase `--passphrase` means: the current one (encrypt, edit) or a new one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PasswordSource {
    Current,
    New,
}

fn has_explicit(args: &VaultRecipientArgs) -> bool {
    args.passphrase || !args.recipients.is_empty() || args.recipients_file.is_some()
}

/// The recipients from the flags, else the nearest `.mop-vault-recipients` above `vault_file`,
/// else a passphrase from `passphrase` (none when that is `None`).
fn recipients_for(
    args: &VaultRecipientArgs,
    vault_file: &Path,
    passphrase: Option<PasswordSource>,
) -> Result<Option<Recipients>> {
    if !args.recipients.is_empty() || args.recipients_file.is_some() {
        let mut keys = Vec::new();
        if !args.recipients.is_empty() {
            keys.extend(mop_vault::parse_recipients(
                &args.recipients.join("\n"),
                "--recipient",
            )?);
        }
        if let Some(file) = &args.recipients_file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read `{}`", file.display()))?;
            keys.extend(mop_vault::parse_recipients(
                &text,
                &file.display().to_string(),
            )?);
        }
        return Ok(Some(Recipients::Keys(keys)));
    }
    if !args.passphrase {
        let dir = absolute_parent(vault_file);
        if let Some(file) = mop_vault::find_recipients_file(&dir) {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read `{}`", file.display()))?;
            let keys = mop_vault::parse_recipients(&text, &file.display().to_string())?;
            return Ok(Some(Recipients::Keys(keys)));
        }
    }
    match passphrase {
        Some(source) => Ok(Some(Recipients::Passphrase(new_passphrase(source)?))),
        None => Ok(None),
    }
}

fn new_passphrase(source: PasswordSource) -> Result<SecretString> {
    let variable = match source {
        PasswordSource::Current => mop_vault::PASSWORD_FILE_ENV,
        PasswordSource::New => NEW_PASSWORD_FILE_ENV,
    };
    if let Some(file) = std::env::var_os(variable).filter(|value| !value.is_empty()) {
        return Ok(mop_vault::read_password_file(Path::new(&file))?);
    }
    if !mop_vault::can_prompt() {
        bail!(
            "a passphrase is needed and there is no terminal to ask on\n  hint: set {variable} \
             to a file holding it, or give --recipient/--recipients-file"
        );
    }
    Ok(mop_vault::ask_new_passphrase()?)
}

fn absolute_parent(path: &Path) -> PathBuf {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::canonicalize(&parent).unwrap_or(parent)
}

fn describe(recipients: &Recipients) -> String {
    match recipients {
        Recipients::Passphrase(_) => "passphrase".to_string(),
        Recipients::Keys(keys) if keys.len() == 1 => "1 recipient".to_string(),
        Recipients::Keys(keys) => format!("{} recipients", keys.len()),
    }
}

fn refuse_overwrite(path: &Path, force: bool) -> Result<()> {
    if !force && path.exists() {
        bail!(
            "`{}` already exists\n  hint: give --force to replace it, or --output",
            path.display()
        );
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in the same directory (created with
/// `mode` from the start, so plaintext is never briefly world-readable) and a rename.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".mop-vault-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(&dir)
        .with_context(|| format!("cannot write into `{}`", dir.display()))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    temp.persist(path)
        .map_err(|error| error.error)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}
