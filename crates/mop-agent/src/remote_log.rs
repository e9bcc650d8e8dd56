//! The host-side run log: when a plan asks for it, every event is appended as a JSON line to
//! `$HOME/.mop/mop.log`, rotated to `mop.log.1` past 1 MiB, so an operator on the host can see
//! what mop did there without the controller's output.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Past this size the log is rotated before the next line.
pub const ROTATE_BYTES: u64 = 1024 * 1024;

/// An open log. Failures to log are reported on stderr and never fail a role.
pub struct RemoteLog {
    path: PathBuf,
    file: Option<File>,
}

impl RemoteLog {
    /// Opens (creating `~/.mop` with mode 0700 if needed) the log under `home`.
    pub fn open(home: &Path) -> RemoteLog {
        let dir = home.join(".mop");
        let path = dir.join("mop.log");
        if let Err(err) = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
        {
            eprintln!("mop-agent: cannot create `{}`: {err}", dir.display());
            return RemoteLog { path, file: None };
        }
        let file = open_append(&path);
        RemoteLog { path, file }
    }

    /// Appends one serialized JSON object (`{...}`) as a line, with `ts` (UTC, RFC 3339) and
    /// `role` added in front.
    pub fn append(&mut self, role: &str, object_json: &[u8]) {
        let Some(file) = &mut self.file else { return };
        if file
            .metadata()
            .map(|meta| meta.len() > ROTATE_BYTES)
            .unwrap_or(false)
        {
            let rotated = self.path.with_extension("log.1");
            if let Err(err) = fs::rename(&self.path, &rotated) {
                eprintln!("mop-agent: cannot rotate `{}`: {err}", self.path.display());
            }
            self.file = open_append(&self.path);
        }
        let Some(file) = &mut self.file else { return };
        let role_json = serde_json::to_string(role).unwrap_or_else(|_| "\"\"".to_string());
        let mut line = format!(
            "{{\"ts\":\"{}\",\"role\":{role_json}",
            rfc3339_utc(SystemTime::now())
        )
        .into_bytes();
        // Splice the object's fields after ours: `{"a":1}` -> `,"a":1}`.
        match object_json.strip_prefix(b"{") {
            Some(rest) if rest.len() > 1 => {
                line.push(b',');
                line.extend_from_slice(rest);
            }
            _ => line.push(b'}'),
        }
        line.push(b'\n');
        if let Err(err) = file.write_all(&line) {
            eprintln!("mop-agent: cannot write `{}`: {err}", self.path.display());
        }
    }
}

fn open_append(path: &Path) -> Option<File> {
    match OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => Some(file),
        Err(err) => {
            eprintln!("mop-agent: cannot open `{}`: {err}", path.display());
            None
        }
    }
}

/// Formats a time as `2024-05-01T12:34:56.789Z` without a date crate.
pub fn rfc3339_utc(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH + Duration::from_millis(951_782_400_123)),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20.000Z"
        );
    }

    #[test]
    fn appends_json_lines_and_rotates() {
        let home = tempfile::tempdir().expect("tempdir");
        let mut log = RemoteLog::open(home.path());
        let dir = home.path().join(".mop");
        assert_eq!(
            fs::metadata(&dir).expect("dir").permissions().mode() & 0o777,
            0o700
        );
        log.append("web", br#"{"status":"ok"}"#);
        log.append("web", b"{}");
        let text = fs::read_to_string(dir.join("mop.log")).expect("log");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["role"], "web");
        assert_eq!(lines[0]["status"], "ok");
        assert!(lines[0]["ts"].as_str().expect("ts").ends_with('Z'));
        assert_eq!(lines[1].as_object().expect("object").len(), 2);

        let big = "x".repeat(ROTATE_BYTES as usize);
        log.append("web", format!("{{\"message\":\"{big}\"}}").as_bytes());
        log.append("web", br#"{"status":"after"}"#);
        assert!(fs::metadata(dir.join("mop.log.1")).expect("rotated").len() > ROTATE_BYTES);
        let current = fs::read_to_string(dir.join("mop.log")).expect("log");
        assert_eq!(current.lines().count(), 1);
        assert!(current.contains("after"));
    }
}
