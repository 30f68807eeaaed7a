//! The audit log: one JSON line per key operation, data plane and admin
//! alike (docs/audit.md).
//!
//! A line records who asked for what, on which key, with which outcome and
//! how long it took; the encryption context only as a SHA-256 digest
//! (unless configured otherwise), and never a key, a data key, a plaintext
//! or a token, because none of those reach this module.
//!
//! To a file, a request writes its own line: one `write(2)` with
//! `O_APPEND`, about a microsecond, with no lock in kmsd (`writer.rs`).
//! To stdout, which can block, lines are written by
//! one writer thread of their own (`writer.rs`), off the runtime's workers,
//! as a group commit: a request serialises its line, appends it to a shared
//! buffer and waits; the writer takes everything buffered, writes it with
//! one `write(2)`, and wakes the requests it covered. Either way a request
//! is answered only once its line is written; what
//! happens when it cannot be is `[audit] on_failure`: `refuse` (the
//! default, as Vault does) answers the request with an error, `continue`
//! answers it as if the line had been written. Either way the failure is
//! counted and logged.

mod encode;
mod writer;

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

use serde::Serialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

pub use self::writer::{AuditWriter, WriteFailed};
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
    /// The alias the caller named the key with (`alias/<name>`), or the
    /// alias an alias operation changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
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

/// What a request whose audit line cannot be written gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// An error (`UNAVAILABLE` / `AUDIT_UNAVAILABLE`) instead of its answer:
    /// nothing is done without a record (Vault's rule).
    #[default]
    Refuse,
    /// Its answer, as if the line had been written.
    Continue,
}

impl OnFailure {
    /// Parses `[audit] on_failure`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "refuse" => Some(Self::Refuse),
            "continue" => Some(Self::Continue),
            _ => None,
        }
    }
}

/// `[audit]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Where lines go.
    pub output: AuditOutput,
    /// Whether lines carry the encryption context itself.
    pub include_context: bool,
    /// What a request whose line cannot be written gets.
    pub on_failure: OnFailure,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            output: AuditOutput::Stdout,
            include_context: false,
            on_failure: OnFailure::Refuse,
        }
    }
}

/// The audit log.
pub struct AuditLog {
    writer: Option<AuditWriter>,
    include_context: bool,
    on_failure: OnFailure,
    /// Whether the last write failed: failures are logged when they start
    /// and when they end, not once per request.
    failing: AtomicBool,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("include_context", &self.include_context)
            .field("on_failure", &self.on_failure)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the configured output and starts its writer thread.
    pub fn open(settings: &AuditSettings, metrics: Metrics) -> io::Result<Self> {
        let sink: Box<dyn Write + Send> = match &settings.output {
            AuditOutput::Off => {
                return Ok(Self::off());
            }
            AuditOutput::Stdout => Box::new(io::stdout()),
            // A file takes a line in about a microsecond: written by the
            // requests themselves (see `writer.rs`).
            AuditOutput::File(path) => {
                let writer = AuditWriter::append_only(open_append(path)?, metrics);
                return Ok(Self::with_writer(writer, settings));
            }
        };
        Self::with_sink(sink, settings, metrics)
    }

    /// A log writing to `sink` (any `Write`: a benchmark can measure the
    /// writer against `/dev/null` or a slow pipe).
    pub fn with_sink(
        sink: Box<dyn Write + Send>,
        settings: &AuditSettings,
        metrics: Metrics,
    ) -> io::Result<Self> {
        let writer = AuditWriter::start(sink, metrics)?;
        Ok(Self::with_writer(writer, settings))
    }

    fn with_writer(writer: AuditWriter, settings: &AuditSettings) -> Self {
        Self {
            writer: Some(writer),
            include_context: settings.include_context,
            on_failure: settings.on_failure,
            failing: AtomicBool::new(false),
        }
    }

    /// A log that writes nothing (tests, tools).
    pub fn off() -> Self {
        Self {
            writer: None,
            include_context: false,
            on_failure: OnFailure::Continue,
            failing: AtomicBool::new(false),
        }
    }

    /// Whether events should carry the context itself.
    pub fn include_context(&self) -> bool {
        self.include_context
    }

    /// Whether anything is written at all.
    pub fn is_enabled(&self) -> bool {
        self.writer.is_some()
    }

    /// What a request whose line cannot be written gets.
    pub fn on_failure(&self) -> OnFailure {
        self.on_failure
    }

    /// Writes one event as one line, and waits until it is written.
    pub async fn record(&self, event: &AuditEvent<'_>) -> Result<(), WriteFailed> {
        let Some(writer) = &self.writer else {
            return Ok(());
        };
        // A GenerateDataKey line with a context digest is about 300 bytes.
        let mut line = Vec::with_capacity(384);
        event.encode_line(&mut line);
        let result = writer.append(line).await;
        match &result {
            Ok(()) => {
                // Read first: a swap on every request would bounce the
                // flag's cache line between the workers.
                if self.failing.load(Ordering::Acquire)
                    && self.failing.swap(false, Ordering::AcqRel)
                {
                    tracing::info!("the audit log is written again");
                }
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::AcqRel) {
                    tracing::error!(error = %e, on_failure = ?self.on_failure, "cannot write the audit log");
                }
            }
        }
        result
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
mod tests;
