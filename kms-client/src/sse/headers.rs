//! The SSE request headers: their names and the pure functions that parse
//! and validate them for each kind of request.

use http::HeaderMap;

use super::{CustomerKey, KeySlot, SseError, object::decode_context};
use crate::EncryptionContext;

/// The header names, lower case (HTTP header names are case-insensitive).
pub mod names {
    /// `AES256` (SSE-S3) or `aws:kms` (SSE-KMS).
    pub const SSE: &str = "x-amz-server-side-encryption";
    /// The KMS key of SSE-KMS.
    pub const KMS_KEY_ID: &str = "x-amz-server-side-encryption-aws-kms-key-id";
    /// The client's encryption context: base64 of a JSON object of strings.
    pub const CONTEXT: &str = "x-amz-server-side-encryption-context";
    /// `true` or `false`: use a bucket key for SSE-KMS.
    pub const BUCKET_KEY_ENABLED: &str = "x-amz-server-side-encryption-bucket-key-enabled";
    /// SSE-C: `AES256`.
    pub const CUSTOMER_ALGORITHM: &str = "x-amz-server-side-encryption-customer-algorithm";
    /// SSE-C: the 256-bit key, base64.
    pub const CUSTOMER_KEY: &str = "x-amz-server-side-encryption-customer-key";
    /// SSE-C: the key's MD5, base64.
    pub const CUSTOMER_KEY_MD5: &str = "x-amz-server-side-encryption-customer-key-md5";
    /// The SSE-C algorithm of a copy source.
    pub const COPY_SOURCE_CUSTOMER_ALGORITHM: &str =
        "x-amz-copy-source-server-side-encryption-customer-algorithm";
    /// The SSE-C key of a copy source.
    pub const COPY_SOURCE_CUSTOMER_KEY: &str =
        "x-amz-copy-source-server-side-encryption-customer-key";
    /// The SSE-C key MD5 of a copy source.
    pub const COPY_SOURCE_CUSTOMER_KEY_MD5: &str =
        "x-amz-copy-source-server-side-encryption-customer-key-md5";
}

/// Whether the connection a request came over keeps headers secret from
/// the network (TLS, or a connection that never leaves the host). SSE-C
/// keys are refused over anything else, as AWS refuses them over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TLS, or loopback / a unix socket.
    Secure,
    /// Plain HTTP across a network.
    Insecure,
}

/// The encryption a write asks for in its own headers, before the bucket
/// default is considered.
#[derive(Debug)]
pub enum RequestedSse {
    /// No SSE header: the bucket default applies, if any.
    Unspecified,
    /// `x-amz-server-side-encryption: AES256`.
    S3,
    /// `x-amz-server-side-encryption: aws:kms`.
    Kms {
        /// The KMS key; `None` means the server's default key.
        key_id: Option<String>,
        /// The client's encryption context (may be empty).
        context: EncryptionContext,
    },
    /// SSE-C.
    Customer(CustomerKey),
}

/// What the headers of a write (PutObject, CopyObject's destination,
/// CreateMultipartUpload) ask for.
#[derive(Debug)]
pub struct WriteHeaders {
    /// The encryption asked for.
    pub requested: RequestedSse,
    /// `x-amz-server-side-encryption-bucket-key-enabled`, if sent. It may
    /// come alone, to override the bucket default's setting.
    pub bucket_key: Option<bool>,
}

fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<Option<&'h str>, SseError> {
    match headers.get(name) {
        None => Ok(None),
        // A value that is not visible ASCII is not a value S3 accepts for
        // any of these headers.
        Some(value) => value.to_str().map(Some).map_err(|_| match name {
            names::SSE => SseError::UnknownAlgorithm("<not ASCII>".into()),
            names::CONTEXT => SseError::InvalidContext("not base64"),
            names::BUCKET_KEY_ENABLED => SseError::InvalidBucketKeyFlag,
            names::CUSTOMER_ALGORITHM => SseError::InvalidCustomerAlgorithm {
                slot: KeySlot::Object,
            },
            names::COPY_SOURCE_CUSTOMER_ALGORITHM => SseError::InvalidCustomerAlgorithm {
                slot: KeySlot::CopySource,
            },
            names::CUSTOMER_KEY_MD5 => SseError::CustomerKeyMd5Mismatch {
                slot: KeySlot::Object,
            },
            names::COPY_SOURCE_CUSTOMER_KEY_MD5 => SseError::CustomerKeyMd5Mismatch {
                slot: KeySlot::CopySource,
            },
            names::COPY_SOURCE_CUSTOMER_KEY => SseError::InvalidCustomerKey {
                slot: KeySlot::CopySource,
            },
            names::CUSTOMER_KEY => SseError::InvalidCustomerKey {
                slot: KeySlot::Object,
            },
            _ => SseError::NotAllowedHere { header: name },
        }),
    }
}

/// The SSE-C triple of `slot`, validated; `None` if none of it was sent.
/// SSE-C over an insecure transport is refused before anything else.
pub fn parse_customer_key(
    headers: &HeaderMap,
    slot: KeySlot,
    transport: Transport,
) -> Result<Option<CustomerKey>, SseError> {
    let [algorithm, key, md5] = customer_names(slot);
    let any = [algorithm, key, md5]
        .iter()
        .any(|name| headers.contains_key(*name));
    if any && transport == Transport::Insecure {
        return Err(SseError::InsecureTransport);
    }
    CustomerKey::from_header_values(
        slot,
        header(headers, algorithm)?,
        header(headers, key)?,
        header(headers, md5)?,
    )
}

fn parse_bucket_key(value: &str) -> Result<bool, SseError> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(SseError::InvalidBucketKeyFlag)
    }
}

/// Parses the headers of a write: PutObject, CopyObject (its destination;
/// see [`parse_copy_source_headers`] for the source) and
/// CreateMultipartUpload.
pub fn parse_write_headers(
    headers: &HeaderMap,
    transport: Transport,
) -> Result<WriteHeaders, SseError> {
    #[derive(PartialEq)]
    enum Managed {
        S3,
        Kms,
    }
    let managed = match header(headers, names::SSE)? {
        None => None,
        Some("AES256") => Some(Managed::S3),
        Some("aws:kms") => Some(Managed::Kms),
        Some("aws:kms:dsse") => return Err(SseError::DsseNotImplemented),
        Some(other) => return Err(SseError::UnknownAlgorithm(other.to_owned())),
    };
    let key_id = header(headers, names::KMS_KEY_ID)?;
    let context = header(headers, names::CONTEXT)?;
    let bucket_key = header(headers, names::BUCKET_KEY_ENABLED)?
        .map(parse_bucket_key)
        .transpose()?;
    if let Some(customer) = parse_customer_key(headers, KeySlot::Object, transport)? {
        if managed.is_some() || key_id.is_some() || context.is_some() || bucket_key.is_some() {
            return Err(SseError::CustomerKeyWithManagedSse);
        }
        return Ok(WriteHeaders {
            requested: RequestedSse::Customer(customer),
            bucket_key: None,
        });
    }
    for (name, value) in [(names::KMS_KEY_ID, key_id), (names::CONTEXT, context)] {
        if value.is_some() && managed != Some(Managed::Kms) {
            return Err(SseError::RequiresKms { header: name });
        }
    }
    let requested = match managed {
        None => RequestedSse::Unspecified,
        Some(Managed::S3) => RequestedSse::S3,
        Some(Managed::Kms) => RequestedSse::Kms {
            key_id: key_id
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(str::to_owned),
            context: context.map(decode_context).transpose()?.unwrap_or_default(),
        },
    };
    Ok(WriteHeaders {
        requested,
        bucket_key,
    })
}

/// Parses the headers of a request that reads or extends an existing
/// object or upload (GetObject, HeadObject, UploadPart,
/// CompleteMultipartUpload): only the SSE-C triple may be sent; the
/// object's encryption was fixed when it was written.
pub fn parse_read_headers(
    headers: &HeaderMap,
    transport: Transport,
) -> Result<Option<CustomerKey>, SseError> {
    for name in [
        names::SSE,
        names::KMS_KEY_ID,
        names::CONTEXT,
        names::BUCKET_KEY_ENABLED,
    ] {
        if headers.contains_key(name) {
            return Err(SseError::NotAllowedHere { header: name });
        }
    }
    parse_customer_key(headers, KeySlot::Object, transport)
}

/// The SSE-C key of a copy source (CopyObject, UploadPartCopy), if sent.
pub fn parse_copy_source_headers(
    headers: &HeaderMap,
    transport: Transport,
) -> Result<Option<CustomerKey>, SseError> {
    parse_customer_key(headers, KeySlot::CopySource, transport)
}

/// The SSE-C header names of `slot`: algorithm, key and key MD5.
pub(crate) fn customer_names(slot: KeySlot) -> [&'static str; 3] {
    match slot {
        KeySlot::Object => [
            names::CUSTOMER_ALGORITHM,
            names::CUSTOMER_KEY,
            names::CUSTOMER_KEY_MD5,
        ],
        KeySlot::CopySource => [
            names::COPY_SOURCE_CUSTOMER_ALGORITHM,
            names::COPY_SOURCE_CUSTOMER_KEY,
            names::COPY_SOURCE_CUSTOMER_KEY_MD5,
        ],
    }
}
