//! kmsd: a key management daemon for S3-compatible object storage.
//!
//! It runs beside each storage node, holds or reaches the master keys, and
//! answers the `kms.v1` gRPC API (docs/api.md) and, on an optional admin
//! HTTP listener, the RustFS-compatible admin REST API with SigV4
//! authentication (`http/`, docs/admin-api.md). The binary (`main.rs`) only
//! parses the command line; everything lives here so tests can build it.
//!
//! One request, end to end: `grpc/` (or `http/`) decodes and validates it,
//! `service/` resolves the key and calls the active backend
//! (`lifecycle.rs`), the backend (`backend/`) seals or opens a blob
//! (`blob.rs`, kms-core's `crypto`), and errors become a gRPC status or an HTTP
//! status in exactly one place each (`error.rs`).
#![forbid(unsafe_code)]

pub mod audit;
pub mod backend;
pub mod bench;
pub mod blob;
pub mod breaker;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod context;
pub mod daemon;
pub mod error;
pub mod fingerprint;
pub mod fsutil;
pub mod grpc;
pub mod hardening;
pub mod http;
pub mod key_id;
pub mod lifecycle;
pub mod metrics;
pub mod persist;
pub mod policy;
pub mod request;
pub mod service;
pub mod status;
pub mod tls;

/// The one crypto module of the workspace, kms-core's: `crate::crypto`
/// inside the daemon.
use kms_core::crypto;
