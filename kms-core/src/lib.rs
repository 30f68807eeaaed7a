//! What kmsd and its client library share.
//!
//! The workspace's crates, from the bottom up: `kms-proto` (the generated
//! `kms.v1` types), this crate, `kms-client` (the storage server's library)
//! and `kmsd` (the daemon). Both kmsd and kms-client build on this crate;
//! it depends on neither, and kmsd's library does not depend on kms-client
//! for its own types (a test in `tests/tests/layering.rs` checks both).
//!
//! - [`secret`]: the types that hold secrets ([`SecretBytes`],
//!   [`SecretString`], [`DataKey`]): wiped on drop, never printed through
//!   `Debug`, never cloned by accident.
//! - [`context`]: encryption contexts and their canonical encoding, the
//!   authenticated data every blob is bound to.
//! - [`crypto`]: the one module that calls ring (or aws-lc-rs, with the
//!   `aws-lc` feature).
//! - [`backoff`]: capped exponential backoff with full jitter.
//! - [`reason`]: the machine-readable reasons of kmsd's errors.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod backoff;
pub mod context;
pub mod crypto;
pub mod reason;
pub mod secret;

pub use backoff::Backoff;
pub use context::{CanonicalContext, EncryptionContext};
pub use reason::ErrorReason;
pub use secret::{DataKey, SecretBytes, SecretString};
