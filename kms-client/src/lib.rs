//! The client side of kmsd, linked into a storage server.
//!
//! kmsd holds (or reaches) the master keys; this crate asks it for
//! per-object data keys and keeps object payloads local. It has these
//! parts:
//!
//! - [`KmsClient`]: the kms.v1 API over one shared HTTP/2 channel (unix
//!   socket or TCP), with a deadline per call and retries with exponential
//!   backoff and full jitter on transient errors ([`RetryPolicy`]) for the
//!   data-plane calls, which are safe to repeat. Admin calls are never
//!   retried.
//! - [`stream`]: OSE1, the streaming AES-256-GCM format of object payloads:
//!   `std::io` and tokio adapters with memory bounded by one chunk, sizes
//!   for HEAD, range reads that fetch only the covering chunks, and
//!   multipart uploads whose parts are encrypted independently.
//! - [`metadata`]: what the storage server persists next to each object (the
//!   sealed data key and the authenticated layout), so that re-wrapping a
//!   data key never rewrites the payload.
//! - [`sse`]: S3 server-side encryption (SSE-S3, SSE-KMS, SSE-C) from the
//!   request headers to the data key, the stored metadata and the response
//!   headers, with [`bucket_key`]s so many objects share one kmsd call.
//! - [`rewrap`]: after a rotation or a backend migration, moves every
//!   stored sealed key to the new key version with ReEncrypt, with bounded
//!   concurrency, progress and a resumable checkpoint; payloads are never
//!   touched.
//!
//! **Threat model.** Whoever can read or modify stored objects and their
//! metadata, but not kmsd's master keys, learns nothing of the plaintext
//! beyond its length, and cannot make a reader release a byte that was not
//! written to that object at that offset: every flipped bit, truncation,
//! extension, reordering, splice from another object under the same key,
//! stale part retry or metadata edit is refused with a specific
//! [`stream::StreamError`]. Key material lives only in zeroizing types that
//! never print through `Debug` ([`secret`]). The cryptography is ring's
//! (or aws-lc-rs's, with the `aws-lc` feature), reached through kms-core's
//! one crypto module.
//!
//! The secret types, [`EncryptionContext`] and the error reasons
//! ([`ErrorReason`]) come from `kms-core`, which kmsd builds on too; they are
//! re-exported here so a storage server needs only this crate.
//!
//! # A PUT and a GET
//!
//! ```no_run
//! # async fn demo(body: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
//! use std::io::{Read, Write};
//! use kms_client::{
//!     EncryptionContext, KmsClient,
//!     metadata::ObjectMetadata,
//!     stream::{ChunkSize, Decryptor, Encryptor, Layout, PartNumber},
//! };
//!
//! let client = KmsClient::connect("unix:/run/kmsd/kmsd.sock".parse()?).await?;
//! let context = EncryptionContext::from([
//!     ("bucket".to_owned(), "photos".to_owned()),
//!     ("object".to_owned(), "cat.jpg".to_owned()),
//! ]);
//! let binding = b"photos/cat.jpg";
//!
//! // PUT: a fresh data key, the payload encrypted as it streams through.
//! let data_key = client.generate_data_key(None, &context).await?;
//! let encryptor = Encryptor::new(&data_key.key, binding, PartNumber::SINGLE, ChunkSize::DEFAULT)?;
//! let mut writer = encryptor.writer(Vec::new()); // the object's storage
//! writer.write_all(body)?;
//! let (stored, info) = writer.finish()?;
//! let metadata = ObjectMetadata {
//!     sealed_key: data_key.blob,
//!     key_id: data_key.key_id,
//!     layout: Layout::seal(&data_key.key, binding, [info])?,
//! };
//! let map = metadata.to_map(); // persist next to the object
//!
//! // GET: HEAD needs no key; the payload needs the data key back.
//! let metadata = ObjectMetadata::from_map(&map)?;
//! assert_eq!(metadata.layout.plaintext_size(), body.len() as u64);
//! let key = client.decrypt_data_key(&metadata.sealed_key, &context).await?;
//! let mut plaintext = Vec::new();
//! Decryptor::new(&key, binding, &metadata.layout)?
//!     .reader(&stored[..])
//!     .read_to_end(&mut plaintext)?;
//! assert_eq!(plaintext, body);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bucket_key;
mod client;
#[cfg(test)]
mod client_tests;
mod endpoint;
mod error;
pub mod metadata;
mod retry;
pub mod rewrap;
pub mod sse;
pub mod stream;
mod tls;

use kms_core::crypto;

pub use client::{ClientConfig, Decrypted, GeneratedDataKey, KmsClient, ReEncrypted, SealedBlob};
pub use endpoint::Endpoint;
pub use error::Error;
/// The types that hold secrets (kms-core's, which kmsd uses too).
pub use kms_core::secret;
pub use kms_core::{
    context::EncryptionContext,
    reason::ErrorReason,
    secret::{DataKey, SecretBytes, SecretString},
};
/// The generated `kms.v1` types, for calls this crate does not wrap.
pub use kms_proto::v1 as proto;
pub use retry::RetryPolicy;
pub use tls::{ClientIdentity, TlsSettings};
