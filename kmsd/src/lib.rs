//! kmsd: a key management daemon for S3-compatible object storage.
//!
//! It runs beside each storage node, holds or reaches the master keys, and
//! answers the `kms.v1` gRPC API (docs/api.md) and, on an optional admin
//! HTTP listener, the RustFS-compatible admin REST API with SigV4
//! authentication (`http/`, docs/admin-api.md). The binary (`main.rs`) only
//! parses the command line; everything lives here so tests can build it.
//!
//! The layers, bottom up (README.md, "Repository"): `config` →
//! `backend/` → `service/` (with `lifecycle.rs`) → `grpc/` and `http/` →
//! `daemon/` → `cli/`. Each reaches only downwards; kmsd's own types
//! (secrets, contexts, crypto, error reasons) come from kms-core, and only
//! the operator CLI and `kmsd bench` use kms-client.
//!
//! One request, end to end: `grpc/` (or `http/`) decodes and validates it,
//! `service/` resolves the key and calls the active backend
//! (`lifecycle.rs`), the backend (`backend/`) seals or opens a blob
//! (`blob.rs`, kms-core's `crypto`), and errors become a gRPC status or an HTTP
//! status in exactly one place each (`error.rs`).
//!
//! What leaves the crate is decided here, not item by item: the binary
//! needs `cli`, the end-to-end tests `cluster` (their OpenBao kit is the
//! `tests/openbao` crate), the fuzz targets (kmsd/fuzz) `blob`, `config`
//! and `policy`. Every other module is `pub(crate)`, so the dead-code lint
//! sees into it; the `pub` inside those modules means "the rest of the
//! crate" (hence the allowed `unreachable_pub`). The layering rules between these modules are
//! checked by `tests/tests/layering.rs`.
#![forbid(unsafe_code)]

#[allow(unreachable_pub)]
pub(crate) mod alias;
#[allow(unreachable_pub)]
pub(crate) mod audit;
pub mod backend;
#[allow(unreachable_pub)]
pub(crate) mod bench;
pub mod blob;
#[allow(unreachable_pub)]
pub(crate) mod breaker;
#[allow(unreachable_pub)]
pub(crate) mod cache;
pub mod cli;
#[allow(unreachable_pub)]
pub(crate) mod clock;
pub mod cluster;
pub mod config;
#[allow(unreachable_pub)]
pub(crate) mod context;
#[allow(unreachable_pub)]
pub(crate) mod daemon;
#[allow(unreachable_pub)]
pub(crate) mod error;
#[allow(unreachable_pub)]
pub(crate) mod fingerprint;
#[allow(unreachable_pub)]
pub(crate) mod fsutil;
#[allow(unreachable_pub)]
pub(crate) mod grpc;
#[allow(unreachable_pub)]
pub(crate) mod hardening;
#[allow(unreachable_pub)]
pub(crate) mod http;
#[allow(unreachable_pub)]
pub(crate) mod import;
#[allow(unreachable_pub)]
pub(crate) mod key_id;
#[allow(unreachable_pub)]
pub(crate) mod lifecycle;
#[allow(unreachable_pub)]
pub(crate) mod metrics;
#[allow(unreachable_pub)]
pub(crate) mod persist;
pub mod policy;
#[allow(unreachable_pub)]
pub(crate) mod request;
#[allow(unreachable_pub)]
pub(crate) mod service;
#[allow(unreachable_pub)]
pub(crate) mod status;
#[allow(unreachable_pub)]
pub(crate) mod tls;
#[allow(unreachable_pub)]
pub(crate) mod usage;

/// What `benches/audit.rs` and `benches/hotpath.rs` measure directly: the
/// audit log's writer and line, and the metrics.
pub use crate::{
    audit::{AuditEvent, AuditWriter},
    metrics::Metrics,
};

/// The one crypto module of the workspace, kms-core's: `crate::crypto`
/// inside the daemon.
use kms_core::crypto;
