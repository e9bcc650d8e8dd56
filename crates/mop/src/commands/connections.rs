//! `mop connections list|close`: the SSH master connections kept open by `--persist`.

use std::io::Write as _;

use anyhow::Result;
use mop_push::ssh::{
    close_connections, control_dir_location, list_connections, PersistedConnection,
};
use serde_json::{json, Value};

use crate::cli::{ConnectionsAction, ConnectionsArgs};
use crate::commands::run::{plural, runtime};
use crate::exit;

pub fn run(args: ConnectionsArgs) -> Result<u8> {
    match args.action {
        ConnectionsAction::List { json } => list(json),
        ConnectionsAction::Close { hosts, json } => close(&hosts, json),
    }
}

fn list(json: bool) -> Result<u8> {
    let dir = control_dir_location();
    let connections = runtime()?.block_on(list_connections(&dir))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        for connection in &connections {
            writeln!(out, "{}", connection_json(connection))?;
        }
        return Ok(exit::SUCCESS);
    }
    if connections.is_empty() {
        eprintln!("no persistent connections (in `{}`)", dir.display());
        return Ok(exit::SUCCESS);
    }
    let header = [
        "HOST",
        "USER",
        "ADDRESS",
        "VIA",
        "AGE",
        "IDLE LIMIT",
        "MASTER PID",
    ];
    let rows: Vec<[String; 7]> = connections
        .iter()
        .map(|connection| {
            [
                connection.host.clone(),
                connection.user.clone(),
                connection.address.clone(),
                via_text(connection),
                human_duration(connection.age_secs()),
                human_duration(connection.persist_secs),
                connection
                    .master_pid
                    .map_or("-".to_string(), |pid| pid.to_string()),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(exit::SUCCESS)
}

fn close(hosts: &[String], json: bool) -> Result<u8> {
    let dir = control_dir_location();
    let closed = runtime()?.block_on(close_connections(&dir, hosts))??;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failures = 0;
    let mut left_open = 0;
    for entry in &closed {
        let connection = &entry.connection;
        if let Some(reason) = &entry.left_open {
            if json {
                let mut object = connection_json(connection);
                object["closed"] = json!(false);
                object["left_open"] = json!(reason);
                writeln!(out, "{object}")?;
            } else {
                eprintln!(
                    "left open {} ({}@{}): {reason}\n  hint: name its host to close it anyway (`mop connections close HOST`)",
                    connection.host, connection.user, connection.address
                );
            }
            left_open += 1;
            continue;
        }
        if json {
            let mut object = connection_json(connection);
            object["closed"] = json!(entry.error.is_none());
            object["through"] = json!(entry.through);
            object["error"] = json!(entry.error);
            writeln!(out, "{object}")?;
        } else {
            let reason = match &entry.through {
                Some(through) => format!(" (it jumps through {through})"),
                None => String::new(),
            };
            match &entry.error {
                None => writeln!(
                    out,
                    "closed {} ({}@{}){reason}",
                    connection.host, connection.user, connection.address
                )?,
                Some(error) => eprintln!(
                    "error: cannot close {} ({}@{}): {error}",
                    connection.host, connection.user, connection.address
                ),
            }
        }
        failures += usize::from(entry.error.is_some());
    }
    if !json {
        if closed.is_empty() {
            eprintln!("no persistent connections to close");
        } else {
            let count = closed.len() - failures - left_open;
            eprintln!("{count} connection{} closed", plural(count));
        }
    }
    Ok(if failures == 0 {
        exit::SUCCESS
    } else {
        exit::HOST_FAILED
    })
}

fn via_text(connection: &PersistedConnection) -> String {
    if connection.via.is_empty() {
        "-".to_string()
    } else {
        connection.via.join(" > ")
    }
}

fn connection_json(connection: &PersistedConnection) -> Value {
    json!({
        "host": connection.host,
        "user": connection.user,
        "address": connection.address,
        "via": connection.via,
        "age_secs": connection.age_secs(),
        "idle_limit_secs": connection.persist_secs,
        "master_pid": connection.master_pid,
        "created": connection.created,
    })
}

/// `45s`, `12m05s`, `3h02m`, `2d04h`.
fn human_duration(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        3600..=86_399 => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d{:02}h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations_read_at_a_glance() {
        for (seconds, expected) in [
            (0, "0s"),
            (59, "59s"),
            (60, "1m00s"),
            (725, "12m05s"),
            (3600, "1h00m"),
            (10_920, "3h02m"),
            (187_200, "2d04h"),
        ] {
            assert_eq!(human_duration(seconds), expected);
        }
    }
}
