//! The identity of an object, and everything derived from it: the stream
//! binding and the default encryption contexts.

use base64::Engine as _;

use super::SseError;
use crate::EncryptionContext;

/// The encryption-context key the server sets; AWS S3 uses the same one.
pub const ARN_CONTEXT_KEY: &str = "aws:s3:arn";

/// Keys with this prefix are the server's; clients may not set them.
pub const RESERVED_CONTEXT_PREFIX: &str = "aws:";

/// One object: its bucket and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectId<'a> {
    /// The bucket name.
    pub bucket: &'a str,
    /// The object key.
    pub key: &'a str,
}

impl<'a> ObjectId<'a> {
    /// The object `key` in `bucket`.
    pub fn new(bucket: &'a str, key: &'a str) -> Self {
        Self { bucket, key }
    }

    /// The OSE1 stream binding: `u32(len(bucket)) || bucket || key`. Every
    /// stream, layout and derived key of the object is bound to it, so
    /// stored bytes moved to another name do not decrypt there.
    pub fn binding(&self) -> Vec<u8> {
        let mut binding = Vec::with_capacity(4 + self.bucket.len() + self.key.len());
        binding.extend_from_slice(&(self.bucket.len() as u32).to_be_bytes());
        binding.extend_from_slice(self.bucket.as_bytes());
        binding.extend_from_slice(self.key.as_bytes());
        binding
    }

    /// `arn:aws:s3:::bucket/key`, as AWS names objects.
    pub fn object_arn(&self) -> String {
        format!("arn:aws:s3:::{}/{}", self.bucket, self.key)
    }

    /// `arn:aws:s3:::bucket`.
    pub fn bucket_arn(&self) -> String {
        format!("arn:aws:s3:::{}", self.bucket)
    }

    /// The context a per-object data key is sealed under: the client's
    /// pairs plus `aws:s3:arn` = the object's ARN. A sealed key copied to
    /// another object name therefore does not open there.
    pub fn object_context(&self, client: &EncryptionContext) -> EncryptionContext {
        let mut context = client.clone();
        context.insert(ARN_CONTEXT_KEY.to_owned(), self.object_arn());
        context
    }

    /// The context a bucket key is sealed under: only `aws:s3:arn` = the
    /// bucket's ARN, as AWS does, since one bucket key serves many objects.
    pub fn bucket_context(&self) -> EncryptionContext {
        EncryptionContext::from([(ARN_CONTEXT_KEY.to_owned(), self.bucket_arn())])
    }
}

/// Decodes `x-amz-server-side-encryption-context`: base64 of a UTF-8 JSON
/// object whose values are strings. Keys starting with `aws:` are refused.
pub fn decode_context(header: &str) -> Result<EncryptionContext, SseError> {
    let json = base64::engine::general_purpose::STANDARD
        .decode(header.trim())
        .map_err(|_| SseError::InvalidContext("not base64"))?;
    let value: serde_json::Value =
        serde_json::from_slice(&json).map_err(|_| SseError::InvalidContext("not UTF-8 JSON"))?;
    let serde_json::Value::Object(map) = value else {
        return Err(SseError::InvalidContext("not a JSON object"));
    };
    let mut context = EncryptionContext::new();
    for (key, value) in map {
        let serde_json::Value::String(value) = value else {
            return Err(SseError::InvalidContext("a value is not a string"));
        };
        if key.is_empty() {
            return Err(SseError::InvalidContext("an empty key"));
        }
        if key
            .to_ascii_lowercase()
            .starts_with(RESERVED_CONTEXT_PREFIX)
        {
            return Err(SseError::ReservedContextKey(key));
        }
        context.insert(key, value);
    }
    Ok(context)
}

/// Encodes a context as the header carries it: base64 of its JSON, with
/// keys in ascending order (so equal contexts encode equally).
pub fn encode_context(context: &EncryptionContext) -> String {
    // A map of strings always serializes.
    let json = serde_json::to_vec(context).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(json)
}

/// The canonical byte form of a context (docs/format.md, "Canonical
/// encryption context"), for binding one into a key derivation: the same
/// encoding kmsd binds to its blobs.
pub(crate) use kms_core::context::canonical_encoding as canonical_context;
