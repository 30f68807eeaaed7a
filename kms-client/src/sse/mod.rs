//! S3 server-side encryption: SSE-S3, SSE-KMS and SSE-C on top of kmsd and
//! the OSE1 stream format. docs/sse.md has the rules, the error table and
//! the metadata names.
//!
//! A storage server hands this module the request's headers and gets back
//! everything it needs; the header logic is pure functions, and only
//! [`SseKeys`] talks to kmsd.
//!
//! - **Writes** (PutObject, CopyObject, CreateMultipartUpload):
//!   [`parse_write_headers`] → [`decide`] with the bucket default
//!   ([`BucketEncryption`]) → [`SseKeys::seal`] gives the data key, the
//!   [`StoredSse`] to persist and the [`SseResponse`]. Encrypt with
//!   [`Encryptor`](crate::stream::Encryptor) bound to
//!   [`ObjectId::binding`], then persist [`StoredObject::to_map`].
//! - **Reads** (GetObject, HeadObject; UploadPart and
//!   CompleteMultipartUpload reopen the upload's key): [`parse_read_headers`]
//!   → [`StoredObject::from_map`] → [`SseKeys::open`] (or [`SseKeys::head`],
//!   which needs no key) → [`Opened::decryptor`] for the whole object or a
//!   planned range.
//! - **Copies** also parse the source's SSE-C key
//!   ([`parse_copy_source_headers`]), open the source with it, and write
//!   the destination as a new object: its payload is re-encrypted under a
//!   fresh key, because the stream binding names the object.
//!
//! ```
//! use kms_client::sse::{self, BucketEncryption, Decision, Transport};
//!
//! let mut headers = http::HeaderMap::new();
//! headers.insert(sse::names::SSE, "aws:kms".parse()?);
//! headers.insert(sse::names::KMS_KEY_ID, "app-key".parse()?);
//! let request = sse::parse_write_headers(&headers, Transport::Secure)?;
//! let default = BucketEncryption::from_xml(
//!     "<ServerSideEncryptionConfiguration><Rule>\
//!      <ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm>\
//!      </ApplyServerSideEncryptionByDefault><BucketKeyEnabled>true</BucketKeyEnabled>\
//!      </Rule></ServerSideEncryptionConfiguration>",
//! )?;
//! // The request's own headers win; the bucket's BucketKeyEnabled applies.
//! match sse::decide(request, Some(&default)) {
//!     Decision::Kms { key_id, bucket_key, .. } => {
//!         assert_eq!(key_id.as_deref(), Some("app-key"));
//!         assert!(bucket_key);
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bucket;
mod customer;
mod decision;
mod error;
mod headers;
pub(crate) mod object;
mod response;
mod sealing;
mod stored;

#[cfg(test)]
mod tests;

pub use bucket::{BucketEncryption, DefaultAlgorithm};
pub use customer::{CUSTOMER_ALGORITHM, CustomerKey, FINGERPRINT_SALT_LEN};
pub use decision::{Decision, decide};
pub use error::{KeySlot, SseError};
pub use headers::{
    RequestedSse, Transport, WriteHeaders, names, parse_copy_source_headers, parse_customer_key,
    parse_read_headers, parse_write_headers,
};
pub use object::{
    ARN_CONTEXT_KEY, ObjectId, RESERVED_CONTEXT_PREFIX, decode_context, encode_context,
};
pub use response::{Operation, SseResponse};
pub use sealing::{KeySource, Opened, Sealing, SseKeys};
pub use stored::{SealedKey, StoredObject, StoredSse, check_plain_object, keys};
