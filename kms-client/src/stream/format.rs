//! The OSE1 byte format: constants, the header, the key schedule and the
//! size arithmetic. Spec and rationale: docs/format.md, "Object stream
//! format".

use std::fmt;

use zeroize::Zeroizing;

use super::StreamError;
use crate::{
    DataKey,
    crypto::{self, AeadKey, KEY_LEN, NONCE_LEN, TAG_LEN},
};

/// The first four bytes of every stream.
pub(crate) const MAGIC: [u8; 4] = *b"OSE1";
/// The format version this crate writes and reads.
pub(crate) const VERSION: u8 = 1;
/// AES-256-GCM chunks, HKDF-SHA-256 key derivation, HMAC-SHA-256 header tag.
pub(crate) const SUITE: u8 = 1;
/// Bytes of random salt per stream.
pub(crate) const SALT_LEN: usize = 32;
/// The authenticated part of the header: everything but the tag.
pub(crate) const HEADER_BODY_LEN: usize = 12 + SALT_LEN;
/// Bytes of stream header: body plus HMAC-SHA-256 tag.
pub const HEADER_LEN: usize = HEADER_BODY_LEN + KEY_LEN;
/// Bytes added to every chunk (the GCM tag).
pub const CHUNK_OVERHEAD: usize = TAG_LEN;
/// Bytes of a part id (a prefix of the header tag, recorded in the layout).
pub(crate) const PART_ID_LEN: usize = 16;
/// Chunks per stream: the chunk index must fit in 32 bits.
pub(crate) const MAX_CHUNKS: u64 = 1 << 32;
/// The largest caller-supplied binding, in bytes.
pub const MAX_BINDING_LEN: usize = 4096;

// Readers read the header into their chunk buffer, so the smallest chunk
// must hold it.
const _: () = assert!(HEADER_LEN <= (1 << ChunkSize::MIN_LOG2) + CHUNK_OVERHEAD);

const LABEL_HEADER: &[u8] = b"OSE1/header-mac\0";
const LABEL_CHUNK: &[u8] = b"OSE1/chunk-key\0";

/// The plaintext size of every chunk but the last: a power of two from
/// 64 bytes to 16 MiB, recorded in each stream header.
///
/// Small sizes exist for tests; production streams use the 1 MiB default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkSize(u8);

impl ChunkSize {
    /// 1 MiB, the default.
    pub const DEFAULT: ChunkSize = ChunkSize(20);
    /// The smallest chunk, 64 bytes (2^6).
    pub const MIN_LOG2: u8 = 6;
    /// The largest chunk, 16 MiB (2^24): readers refuse larger ones, which
    /// bounds their memory.
    pub const MAX_LOG2: u8 = 24;

    /// A chunk of `2^log2` bytes.
    pub fn from_log2(log2: u8) -> Result<Self, StreamError> {
        if (Self::MIN_LOG2..=Self::MAX_LOG2).contains(&log2) {
            Ok(Self(log2))
        } else {
            Err(StreamError::InvalidChunkSize(log2))
        }
    }

    /// A chunk of `bytes` bytes, which must be a power of two in range.
    pub fn from_bytes(bytes: u64) -> Result<Self, StreamError> {
        if !bytes.is_power_of_two() {
            return Err(StreamError::InvalidChunkSize(u8::MAX));
        }
        // trailing_zeros of a u64 is at most 63, so it fits in a u8.
        Self::from_log2(bytes.trailing_zeros() as u8)
    }

    /// log2 of the size, as stored in the header.
    pub fn log2(self) -> u8 {
        self.0
    }

    /// Plaintext bytes per full chunk.
    pub fn bytes(self) -> u64 {
        1 << self.0
    }

    /// Plaintext bytes per full chunk, as a buffer length. At most 16 MiB,
    /// so it fits every `usize` this crate builds for.
    pub(crate) fn len(self) -> usize {
        1 << self.0
    }

    /// Stored bytes per full chunk.
    pub(crate) fn stored_len(self) -> u64 {
        self.bytes() + CHUNK_OVERHEAD as u64
    }
}

impl Default for ChunkSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Which stream of an object: the whole of a single-part object, or one
/// part of a multipart upload. It enters the key derivation, so a stream
/// cannot be moved to another position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartNumber(u32);

impl PartNumber {
    /// The one stream of an object uploaded in one piece (stored as 0).
    pub const SINGLE: PartNumber = PartNumber(0);
    /// The largest S3 part number.
    pub const MAX_PART: u32 = 10_000;

    /// Part `n` of a multipart upload, 1 to 10,000 as in S3.
    pub fn multipart(n: u32) -> Result<Self, StreamError> {
        if (1..=Self::MAX_PART).contains(&n) {
            Ok(Self(n))
        } else {
            Err(StreamError::InvalidPartNumber(n))
        }
    }

    /// Parses the stored form: 0 for a single object, else a part number.
    pub fn from_u32(n: u32) -> Result<Self, StreamError> {
        if n == 0 {
            Ok(Self::SINGLE)
        } else {
            Self::multipart(n)
        }
    }

    /// The stored form.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Whether this is the stream of a single-part object.
    pub fn is_single(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for PartNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            f.write_str("single")
        } else {
            write!(f, "part {}", self.0)
        }
    }
}

/// The first 16 bytes of a stream's header tag. The layout records it, so
/// a reader accepts exactly the upload attempt that the layout names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartId(pub [u8; PART_ID_LEN]);

impl fmt::Display for PartId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A parsed, not yet authenticated stream header.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) body: [u8; HEADER_BODY_LEN],
    pub(crate) tag: [u8; KEY_LEN],
    pub(crate) chunk_size: ChunkSize,
    pub(crate) part: PartNumber,
}

impl Header {
    pub(crate) fn new(chunk_size: ChunkSize, part: PartNumber, salt: &[u8; SALT_LEN]) -> Self {
        let mut body = [0u8; HEADER_BODY_LEN];
        body[0..4].copy_from_slice(&MAGIC);
        body[4] = VERSION;
        body[5] = SUITE;
        body[6] = chunk_size.log2();
        body[7] = 0;
        body[8..12].copy_from_slice(&part.get().to_be_bytes());
        body[12..].copy_from_slice(salt);
        Self {
            body,
            tag: [0; KEY_LEN],
            chunk_size,
            part,
        }
    }

    /// Checks the syntax; the tag is checked by [`StreamKeys::derive`].
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, StreamError> {
        if bytes.len() != HEADER_LEN || bytes[0..4] != MAGIC {
            return Err(StreamError::MalformedHeader);
        }
        if bytes[4] != VERSION {
            return Err(StreamError::UnsupportedVersion(bytes[4]));
        }
        if bytes[5] != SUITE {
            return Err(StreamError::UnsupportedSuite(bytes[5]));
        }
        let chunk_size = ChunkSize::from_log2(bytes[6])?;
        if bytes[7] != 0 {
            return Err(StreamError::MalformedHeader);
        }
        let mut part = [0u8; 4];
        part.copy_from_slice(&bytes[8..12]);
        let part = PartNumber::from_u32(u32::from_be_bytes(part))?;
        let mut body = [0u8; HEADER_BODY_LEN];
        body.copy_from_slice(&bytes[..HEADER_BODY_LEN]);
        let mut tag = [0u8; KEY_LEN];
        tag.copy_from_slice(&bytes[HEADER_BODY_LEN..]);
        Ok(Self {
            body,
            tag,
            chunk_size,
            part,
        })
    }

    pub(crate) fn salt(&self) -> &[u8] {
        &self.body[12..]
    }

    pub(crate) fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..HEADER_BODY_LEN].copy_from_slice(&self.body);
        out[HEADER_BODY_LEN..].copy_from_slice(&self.tag);
        out
    }

    pub(crate) fn part_id(&self) -> PartId {
        let mut id = [0u8; PART_ID_LEN];
        id.copy_from_slice(&self.tag[..PART_ID_LEN]);
        PartId(id)
    }
}

/// The keys of one stream, derived from the data key, the header and the
/// caller's binding.
#[derive(Debug)]
pub(crate) struct StreamKeys {
    chunk_key: AeadKey,
    header_tag: [u8; KEY_LEN],
}

impl StreamKeys {
    fn expand(key: &DataKey, binding: &[u8], header: &Header) -> (Zeroizing<[u8; 32]>, AeadKey) {
        let binding_len = (binding.len() as u32).to_be_bytes();
        let derive = |label: &[u8]| {
            crypto::hkdf_sha256(
                header.salt(),
                key.expose_secret(),
                &[label, &header.body, &binding_len, binding],
            )
        };
        let mac_key = derive(LABEL_HEADER);
        let chunk_key = AeadKey::new(&derive(LABEL_CHUNK));
        (mac_key, chunk_key)
    }

    /// Keys for a new stream; fills in the header's tag.
    pub(crate) fn for_new(key: &DataKey, binding: &[u8], header: &mut Header) -> Self {
        let (mac_key, chunk_key) = Self::expand(key, binding, header);
        header.tag = crypto::hmac_sha256(mac_key.as_ref(), &[&header.body]);
        Self {
            chunk_key,
            header_tag: header.tag,
        }
    }

    /// Keys for a stream being read; fails unless the header's tag verifies
    /// under this data key and binding.
    pub(crate) fn derive(
        key: &DataKey,
        binding: &[u8],
        header: &Header,
    ) -> Result<Self, StreamError> {
        let (mac_key, chunk_key) = Self::expand(key, binding, header);
        let expected = crypto::hmac_sha256(mac_key.as_ref(), &[&header.body]);
        if !crypto::constant_time_eq(&expected, &header.tag) {
            return Err(StreamError::HeaderAuthentication);
        }
        Ok(Self {
            chunk_key,
            header_tag: header.tag,
        })
    }

    fn nonce_and_aad(&self, index: u32, last: bool) -> ([u8; NONCE_LEN], [u8; KEY_LEN + 9]) {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[4..].copy_from_slice(&u64::from(index).to_be_bytes());
        let mut aad = [0u8; KEY_LEN + 9];
        aad[..KEY_LEN].copy_from_slice(&self.header_tag);
        aad[KEY_LEN..KEY_LEN + 8].copy_from_slice(&u64::from(index).to_be_bytes());
        aad[KEY_LEN + 8] = u8::from(last);
        (nonce, aad)
    }

    /// Seals `buf[..len]` in place and writes the tag to
    /// `buf[len..len + 16]`. Every index is sealed at most once per stream,
    /// and every stream has its own key, so nonces never repeat.
    pub(crate) fn seal(&self, index: u32, last: bool, buf: &mut [u8], len: usize) {
        let (nonce, aad) = self.nonce_and_aad(index, last);
        let tag = self.chunk_key.seal_in_place(nonce, &aad, &mut buf[..len]);
        buf[len..len + TAG_LEN].copy_from_slice(&tag);
    }

    /// Opens a sealed chunk in place; returns its plaintext length.
    pub(crate) fn open(
        &self,
        part: PartNumber,
        index: u32,
        last: bool,
        buf: &mut [u8],
    ) -> Result<usize, StreamError> {
        let (nonce, aad) = self.nonce_and_aad(index, last);
        self.chunk_key.open_in_place(nonce, &aad, buf).map_err(|_| {
            StreamError::ChunkAuthentication {
                part: part.get(),
                index,
            }
        })
    }
}

/// The stored size of one stream holding `plaintext` bytes.
///
/// A stream is the header and `⌊plaintext / chunk⌋ + 1` chunks; the last
/// is always shorter than a full chunk (possibly empty), so every length
/// has exactly one chunking.
pub fn stored_size(plaintext: u64, chunk_size: ChunkSize) -> Result<u64, StreamError> {
    let chunks = plaintext / chunk_size.bytes() + 1;
    if chunks > MAX_CHUNKS {
        return Err(StreamError::TooLarge);
    }
    chunks
        .checked_mul(CHUNK_OVERHEAD as u64)
        .and_then(|tags| tags.checked_add(plaintext))
        .and_then(|body| body.checked_add(HEADER_LEN as u64))
        .ok_or(StreamError::TooLarge)
}

/// The plaintext size of one stream of `stored` bytes, or an error if no
/// plaintext size encrypts to exactly that many bytes.
pub fn plaintext_size(stored: u64, chunk_size: ChunkSize) -> Result<u64, StreamError> {
    let invalid = StreamError::InvalidStoredSize(stored);
    let body = stored
        .checked_sub(HEADER_LEN as u64)
        .ok_or(invalid.clone())?;
    let full = body / chunk_size.stored_len();
    let rest = body % chunk_size.stored_len();
    if rest < CHUNK_OVERHEAD as u64 || full + 1 > MAX_CHUNKS {
        return Err(invalid);
    }
    Ok(full * chunk_size.bytes() + rest - CHUNK_OVERHEAD as u64)
}

pub(crate) fn check_binding(binding: &[u8]) -> Result<(), StreamError> {
    if binding.len() > MAX_BINDING_LEN {
        return Err(StreamError::BindingTooLong(binding.len()));
    }
    Ok(())
}
