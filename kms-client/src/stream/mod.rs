//! OSE1: the streaming AES-256-GCM format of object payloads.
//!
//! An object is one stream (a single-part upload) or one stream per part
//! (a multipart upload). A stream is a 76-byte header followed by chunks of
//! a fixed plaintext size (1 MiB by default), each sealed with AES-256-GCM
//! and a 16-byte tag; the last chunk is always shorter than the others,
//! possibly empty. The full specification and its rationale are in
//! docs/format.md, "Object stream format". In short:
//!
//! - **Keys.** Each stream draws a fresh 256-bit salt; its chunk key and
//!   header-MAC key are derived with HKDF-SHA-256 from the data key, the
//!   salt, the whole header (including the part number and chunk size) and
//!   the caller's *binding* (for example `bucket/object`). Every stream,
//!   including every retry of a part, thus has a key of its own, and chunk
//!   nonces are simply the chunk index: a (key, nonce) pair cannot repeat.
//! - **Chunks.** The authenticated data of chunk `i` is the header tag, `i`
//!   and an end-of-stream flag, so a chunk cannot be moved, repeated,
//!   spliced from another stream, or passed off as the last one.
//! - **Header.** An HMAC-SHA-256 tag over the header, which also commits to
//!   the key: a stream decrypts under exactly one data key and binding.
//! - **Layout.** The object's streams, their sizes and which upload attempt
//!   each is, under an HMAC (see [`Layout`]), kept in object metadata; it
//!   makes the part list tamper-evident and tells range reads where to go.
//!
//! Adapters exist for `std::io` ([`EncryptWriter`], [`EncryptReader`],
//! [`DecryptReader`], [`DecryptWriter`]) and for tokio (the `Async*` types).
//! Each holds one chunk of buffer whatever the object size, and releases
//! plaintext only after its chunk authenticated; a decrypting reader fails
//! with [`StreamError::Truncated`], rather than ending, on a short stream.
//!
//! # A multipart upload
//!
//! ```
//! use std::io::{Read, Write};
//! use kms_client::{DataKey, stream::{ChunkSize, Decryptor, Encryptor, Layout, PartNumber}};
//!
//! let key = DataKey::from_bytes([7; 32]);
//! let binding = b"photos/cat.mp4";
//! // Each part may be encrypted anywhere, in any order, retried at will.
//! let mut stored = Vec::new();
//! let mut parts = Vec::new();
//! for (n, body) in [(1, vec![1u8; 3000]), (2, vec![2u8; 10])] {
//!     let encryptor = Encryptor::new(&key, binding, PartNumber::multipart(n)?, ChunkSize::from_log2(10)?)?;
//!     let mut writer = encryptor.writer(Vec::new());
//!     writer.write_all(&body)?;
//!     let (bytes, info) = writer.finish()?;
//!     stored.extend_from_slice(&bytes);
//!     parts.push(info);
//! }
//! // CompleteMultipartUpload: authenticate the part list.
//! let layout = Layout::seal(&key, binding, parts)?;
//! assert_eq!(layout.plaintext_size(), 3010);
//! assert_eq!(layout.stored_size(), stored.len() as u64);
//!
//! // A range across the part boundary.
//! let plan = layout.plan_range(2990..3005)?;
//! let fetched: Vec<u8> = plan.fetch_ranges().iter()
//!     .flat_map(|r| stored[r.start as usize..r.end as usize].to_vec())
//!     .collect();
//! let mut out = Vec::new();
//! Decryptor::new(&key, binding, &layout)?.range_reader(&plan, &fetched[..])?.read_to_end(&mut out)?;
//! assert_eq!(out, [[1u8; 10].as_slice(), &[2u8; 5]].concat());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod async_io;
mod driver;
mod error;
mod format;
mod layout;
mod open;
mod seal;
mod sync_io;

pub use async_io::{
    AsyncDecryptReader, AsyncDecryptWriter, AsyncEncryptReader, AsyncEncryptWriter,
};
pub use error::StreamError;
pub use format::{
    CHUNK_OVERHEAD, ChunkSize, HEADER_LEN, MAX_BINDING_LEN, PartId, PartNumber, plaintext_size,
    stored_size,
};
pub use layout::{LAYOUT_TAG_LEN, Layout, RangePlan};
pub use open::Decryptor;
pub use seal::{Encryptor, PartInfo};
pub use sync_io::{DecryptReader, DecryptWriter, EncryptReader, EncryptWriter};

#[cfg(test)]
mod tests;
