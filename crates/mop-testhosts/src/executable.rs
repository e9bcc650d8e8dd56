//! Writing a script or program that a test then executes.

use std::io::Write;
use std::path::Path;
use std::process::Command;

/// Writes `contents` to `path` with permission bits `mode`, through a child process.
///
/// A test that writes an executable itself and then runs it can fail with "Text file busy"
/// (ETXTBSY): while the file is open for writing, another test thread may fork, and that child
/// keeps a copy of the write descriptor until it execs. Here only an `install` child ever holds
/// a descriptor open for writing on `path`, and it has exited when this returns. The staging
/// copy this process writes is never executed.
pub fn write_executable(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut staging = tempfile::NamedTempFile::new()?;
    staging.write_all(contents)?;
    staging.flush()?;
    let status = Command::new("install")
        .arg("-m")
        .arg(format!("{mode:o}"))
        .arg(staging.path())
        .arg(path)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "`install` could not write `{}`: {status}",
            path.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_file_gets_its_contents_and_mode_and_runs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("hello");
        super::write_executable(&path, b"#!/bin/sh\necho hello \"$1\"\n", 0o750).expect("write");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o7777, 0o750);
        let output = std::process::Command::new(&path)
            .arg("there")
            .output()
            .expect("run");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "hello there\n");
        // Rewriting in place keeps working (tests replace a script between runs).
        super::write_executable(&path, b"#!/bin/sh\nexit 7\n", 0o700).expect("rewrite");
        let status = std::process::Command::new(&path).status().expect("run");
        assert_eq!(status.code(), Some(7));
    }
}
