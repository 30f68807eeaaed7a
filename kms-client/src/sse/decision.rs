//! How a write is encrypted: its headers, else the bucket default.

use super::{BucketEncryption, CustomerKey, DefaultAlgorithm, RequestedSse, WriteHeaders};
use crate::EncryptionContext;

/// The encryption of one new object (or multipart upload).
#[derive(Debug)]
pub enum Decision {
    /// Stored as sent: no SSE header and no bucket default.
    None,
    /// SSE-S3: a data key from kmsd under the server's SSE-S3 key.
    S3,
    /// SSE-KMS.
    Kms {
        /// The KMS key; `None` is the server's default key.
        key_id: Option<String>,
        /// The client's encryption context (the server adds the object's).
        context: EncryptionContext,
        /// Derive the object key from a cached bucket key
        /// ([`crate::bucket_key`]) instead of asking kmsd per object.
        bucket_key: bool,
    },
    /// SSE-C: a key derived from the customer's.
    Customer(CustomerKey),
}

impl Decision {
    /// Whether the object is stored encrypted.
    pub fn encrypts(&self) -> bool {
        !matches!(self, Decision::None)
    }
}

/// Applies S3's precedence: the request's own SSE headers (SSE-C included)
/// win over the bucket default; without them the bucket default applies;
/// `x-amz-server-side-encryption-bucket-key-enabled` overrides the
/// bucket's `BucketKeyEnabled` for SSE-KMS and is ignored otherwise.
pub fn decide(request: WriteHeaders, bucket_default: Option<&BucketEncryption>) -> Decision {
    let bucket_key = |request: Option<bool>| {
        request.unwrap_or_else(|| bucket_default.is_some_and(|d| d.bucket_key_enabled))
    };
    match request.requested {
        RequestedSse::Customer(key) => Decision::Customer(key),
        RequestedSse::S3 => Decision::S3,
        RequestedSse::Kms { key_id, context } => Decision::Kms {
            key_id,
            context,
            bucket_key: bucket_key(request.bucket_key),
        },
        RequestedSse::Unspecified => match bucket_default.map(|d| &d.algorithm) {
            None => Decision::None,
            Some(DefaultAlgorithm::S3) => Decision::S3,
            Some(DefaultAlgorithm::Kms { key_id }) => Decision::Kms {
                key_id: key_id.clone(),
                context: EncryptionContext::new(),
                bucket_key: bucket_key(request.bucket_key),
            },
        },
    }
}
