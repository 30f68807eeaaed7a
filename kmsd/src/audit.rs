//! The audit log: one JSON line per key operation, data plane and admin
//! alike (docs/audit.md).
//!
//! A line records who asked for what, on which key, with which outcome and
//! how long it took; the encryption context only as a SHA-256 digest
//! (unless configured otherwise), and never a key, a data key, a plaintext
//! or a token, because none of those reach this module.
//!
//! Each line is written with one `write(2)` and no user-space buffering, so
//! a crash loses at most the line being written. The file is opened with
//! `O_APPEND`, so each `write(2)` lands whole at the end of the file and
//! concurrent requests need no lock of their own: the kernel orders the
//! appends (a user-space mutex held across the system call made the two
//! workers queue behind each other under load).

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use serde::Serialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::metrics::Metrics;

/// Where audit lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditOutput {
    /// Nowhere.
    Off,
    /// Standard output (logs go to standard error).
    Stdout,
    /// Appended to a file (created with mode 0600).
    File(PathBuf),
}

/// One audit event.
#[derive(Debug, Serialize)]
pub struct AuditEvent<'a> {
    /// RFC 3339 UTC time the request finished.
    pub time: String,
    /// The caller's identity.
    pub caller: String,
    /// The operation (gRPC method name).
    pub operation: &'static str,
    /// The key the operation used or named, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<&'a str>,
    /// The key version used, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_version: Option<u32>,
    /// For ReEncrypt: the key sealed under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_key_id: Option<&'a str>,
    /// The Vault intermediate key that sealed or opened the data key
    /// (docs/vault.md, "Intermediate keys").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intermediate_key: Option<&'a str>,
    /// For ReEncrypt: the intermediate key sealed under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_intermediate_key: Option<&'a str>,
    /// Hex SHA-256 of the canonical encryption context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_sha256: Option<String>,
    /// The context itself, only when `audit.include_context` is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<&'a BTreeMap<String, String>>,
    /// `ok` or `error`.
    pub outcome: &'static str,
    /// The gRPC code.
    pub code: &'static str,
    /// The error reason (docs/api.md), on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// Served from the data-key cache while the backend was unreachable.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub offline: bool,
    /// Time to serve, in microseconds.
    pub duration_us: u64,
}

enum Sink {
    Off,
    Stdout,
    File(File),
}

/// The audit log writer.
pub struct AuditLog {
    sink: Sink,
    include_context: bool,
    metrics: Metrics,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("include_context", &self.include_context)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the configured output.
    pub fn open(output: &AuditOutput, include_context: bool, metrics: Metrics) -> io::Result<Self> {
        let sink = match output {
            AuditOutput::Off => Sink::Off,
            AuditOutput::Stdout => Sink::Stdout,
            AuditOutput::File(path) => Sink::File(open_append(path)?),
        };
        Ok(Self {
            sink,
            include_context,
            metrics,
        })
    }

    /// A log that writes nothing (tests, tools).
    pub fn off(metrics: Metrics) -> Self {
        Self {
            sink: Sink::Off,
            include_context: false,
            metrics,
        }
    }

    /// Whether events should carry the context itself.
    pub fn include_context(&self) -> bool {
        self.include_context
    }

    /// Whether anything is written at all.
    pub fn is_enabled(&self) -> bool {
        !matches!(self.sink, Sink::Off)
    }

    /// Writes one event as one line.
    pub fn record(&self, event: &AuditEvent<'_>) {
        if matches!(self.sink, Sink::Off) {
            return;
        }
        let mut line = match serde_json::to_vec(event) {
            Ok(line) => line,
            Err(e) => {
                self.metrics.audit_errors.inc();
                tracing::error!(error = %e, "cannot encode an audit event");
                return;
            }
        };
        line.push(b'\n');
        let written = match &self.sink {
            Sink::Off => Ok(()),
            Sink::Stdout => io::stdout().lock().write_all(&line),
            Sink::File(file) => append_line(file, &line),
        };
        match written {
            Ok(()) => self.metrics.audit_events.inc(),
            Err(e) => {
                self.metrics.audit_errors.inc();
                tracing::error!(error = %e, "cannot write the audit log");
            }
        }
    }
}

/// Appends `line` with a single `write(2)`. A regular file takes a whole
/// write unless the disk is full or the file too large; a short write is
/// reported rather than finished by a second call that another request's
/// line could land in front of.
fn append_line(mut file: &File, line: &[u8]) -> io::Result<()> {
    let written = file.write(line)?;
    if written == line.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write: {written} of {} bytes", line.len()),
        ))
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// The current time as audit lines show it.
pub fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_one_json_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&AuditOutput::File(path.clone()), false, Metrics::new()).unwrap();
        for key in ["a", "b"] {
            log.record(&AuditEvent {
                time: now(),
                caller: "unix:uid=0,gid=0".into(),
                operation: "Decrypt",
                key_id: Some(key),
                key_version: Some(1),
                destination_key_id: None,
                intermediate_key: None,
                destination_intermediate_key: None,
                context_sha256: Some("00".into()),
                context: None,
                outcome: "ok",
                code: "OK",
                reason: None,
                offline: false,
                duration_us: 12,
            });
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["key_id"], "b");
        assert_eq!(lines[0]["operation"], "Decrypt");
        assert!(lines[0].get("context").is_none());
        assert!(lines[0].get("offline").is_none());
    }

    #[test]
    fn concurrent_writers_never_interleave_lines() {
        const THREADS: usize = 8;
        const LINES: usize = 500;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&AuditOutput::File(path.clone()), false, Metrics::new()).unwrap();
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let log = &log;
                scope.spawn(move || {
                    // Long lines, so that a torn write would show.
                    let key = format!("{t}-{}", "k".repeat(200));
                    for _ in 0..LINES {
                        log.record(&AuditEvent {
                            time: now(),
                            caller: format!("thread {t}"),
                            operation: "GenerateDataKey",
                            key_id: Some(&key),
                            key_version: Some(1),
                            destination_key_id: None,
                            intermediate_key: None,
                            destination_intermediate_key: None,
                            context_sha256: Some("ab".repeat(32)),
                            context: None,
                            outcome: "ok",
                            code: "OK",
                            reason: None,
                            offline: false,
                            duration_us: 1,
                        });
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let mut per_thread = [0usize; THREADS];
        for line in text.lines() {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            let t: usize = event["caller"].as_str().unwrap()[7..].parse().unwrap();
            assert!(
                event["key_id"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{t}-"))
            );
            per_thread[t] += 1;
        }
        assert_eq!(per_thread, [LINES; THREADS]);
    }
}
