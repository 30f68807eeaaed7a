//! The client side of kmsd, linked into a storage server.
//!
//! kmsd holds (or reaches) the master keys; this crate asks it for
//! per-object data keys and keeps object payloads local.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kms_client::Error> {
//! use kms_client::{EncryptionContext, KmsClient};
//!
//! let client = KmsClient::connect("unix:/run/kmsd/kmsd.sock".parse()?).await?;
//! let context = EncryptionContext::from([("bucket".to_owned(), "photos".to_owned())]);
//! let data_key = client.generate_data_key(None, &context).await?;
//! // ... encrypt with data_key.key, store data_key.blob next to the object ...
//! let again = client.decrypt_data_key(&data_key.blob, &context).await?;
//! assert_eq!(again.expose_secret(), data_key.key.expose_secret());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
#[cfg(test)]
mod client_tests;
mod crypto;
mod endpoint;
mod error;
pub mod metadata;
mod retry;
pub mod secret;
pub mod stream;

use std::collections::BTreeMap;

pub use client::{ClientConfig, Decrypted, GeneratedDataKey, KmsClient, ReEncrypted, SealedBlob};
pub use endpoint::Endpoint;
pub use error::Error;
/// The generated `kms.v1` types, for calls this crate does not wrap.
pub use kms_proto::v1 as proto;
pub use retry::RetryPolicy;
pub use secret::{DataKey, SecretBytes, SecretString};

/// An encryption context: non-secret key-value pairs bound to a blob as
/// authenticated data. The same pairs must be given to open it.
pub type EncryptionContext = BTreeMap<String, String>;
