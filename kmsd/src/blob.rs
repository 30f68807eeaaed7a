//! The sealed-blob format (docs/format.md, "Sealed blob v1").
//!
//! ```text
//! offset  len  field
//! 0       2    magic "km" (0x6B 0x6D)
//! 2       1    format version, 0x01
//! 3       1    backend: 0x01 local, 0x02 vault
//! 4       1    n = key id length, 1..=128
//! 5       n    key id (ASCII)
//! 5+n     4    key version, u32 big-endian, >= 1
//! 9+n     ..   backend payload
//!              local: seed (32) || AES-256-GCM ciphertext || tag (16)
//!              vault: the Transit ciphertext, "vault:v<N>:<base64>", or,
//!                     under an intermediate key, see
//!                     [`VaultIntermediatePayload`]
//! ```
//!
//! The authenticated data of every blob is `bytes 0 .. 5+n || canonical
//! context`: magic, format, backend and key id are bound explicitly. The key
//! version is bound by key selection: each version is an independent key, so
//! a blob whose version field was changed is opened under the wrong key and
//! fails. The Vault backend also checks the header's version against
//! Transit's own `vault:v<N>:` prefix.

use crate::{context::EncryptionContext, crypto, error::KmsError, key_id::KeyId};

const MAGIC: [u8; 2] = *b"km";
const FORMAT_V1: u8 = 0x01;
/// The largest blob accepted for decoding: a 4 KiB secret sealed by Vault,
/// base64-encoded, with the longest key id, fits with room to spare.
pub const MAX_BLOB_LEN: usize = 8192;

/// Which backend sealed a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// Key files on disk.
    Local,
    /// Vault or OpenBao Transit.
    Vault,
}

impl BackendKind {
    fn to_byte(self) -> u8 {
        match self {
            BackendKind::Local => 0x01,
            BackendKind::Vault => 0x02,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0x01 => Some(BackendKind::Local),
            0x02 => Some(BackendKind::Vault),
            _ => None,
        }
    }

    /// Whether the backend is reached over the network (its calls cost a
    /// round trip, so opened data keys are worth caching).
    pub fn is_remote(self) -> bool {
        match self {
            BackendKind::Local => false,
            BackendKind::Vault => true,
        }
    }

    /// The name used in configuration, metrics and status.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Vault => "vault",
        }
    }
}

/// The self-describing part of a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobHeader {
    /// The backend that sealed the blob.
    pub backend: BackendKind,
    /// The master key.
    pub key_id: KeyId,
    /// The master key's version.
    pub key_version: u32,
}

impl BlobHeader {
    /// Encodes the header as the start of a new blob.
    pub fn encode(&self, payload_capacity: usize) -> Vec<u8> {
        let id = self.key_id.as_str().as_bytes();
        let mut out = Vec::with_capacity(9 + id.len() + payload_capacity);
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_V1);
        out.push(self.backend.to_byte());
        // Invariant: a KeyId is at most 128 bytes long.
        out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(id);
        out.extend_from_slice(&self.key_version.to_be_bytes());
        out
    }
}

/// The authenticated data for a blob whose encoded header is
/// `header_bytes`: everything up to the key version, then the context.
pub fn aad(header_bytes: &[u8], context: &EncryptionContext) -> Vec<u8> {
    let prefix = &header_bytes[..header_bytes.len().saturating_sub(4)];
    let ctx = context.canonical_bytes();
    let mut aad = Vec::with_capacity(prefix.len() + ctx.len());
    aad.extend_from_slice(prefix);
    aad.extend_from_slice(ctx);
    aad
}

/// A decoded blob, borrowing from the bytes it was parsed from.
#[derive(Debug)]
pub struct ParsedBlob<'a> {
    /// The decoded header.
    pub header: BlobHeader,
    /// The header's encoded bytes (see [`aad`]).
    pub header_bytes: &'a [u8],
    /// What follows the header.
    pub payload: &'a [u8],
}

/// Decodes a blob from untrusted input. Nothing here is authenticated yet:
/// the backend's open does that.
pub fn parse(blob: &[u8]) -> Result<ParsedBlob<'_>, KmsError> {
    let malformed = KmsError::MalformedBlob;
    if blob.len() > MAX_BLOB_LEN {
        return Err(malformed("longer than 8192 bytes"));
    }
    if blob.len() < 5 || blob[..2] != MAGIC {
        return Err(malformed("not a kmsd blob (bad magic)"));
    }
    if blob[2] != FORMAT_V1 {
        return Err(malformed("unknown format version"));
    }
    let backend = BackendKind::from_byte(blob[3]).ok_or(malformed("unknown backend"))?;
    let id_len = usize::from(blob[4]);
    let header_len = 9 + id_len;
    if blob.len() < header_len {
        return Err(malformed("truncated header"));
    }
    let key_id = std::str::from_utf8(&blob[5..5 + id_len])
        .ok()
        .and_then(|s| KeyId::parse(s).ok())
        .ok_or(malformed("invalid key id in header"))?;
    let mut version = [0u8; 4];
    version.copy_from_slice(&blob[5 + id_len..header_len]);
    let key_version = u32::from_be_bytes(version);
    if key_version == 0 {
        return Err(malformed("key version 0"));
    }
    Ok(ParsedBlob {
        header: BlobHeader {
            backend,
            key_id,
            key_version,
        },
        header_bytes: &blob[..header_len],
        payload: &blob[header_len..],
    })
}

/// The local backend's payload: `seed || ciphertext || tag`.
#[derive(Debug)]
pub struct LocalPayload<'a> {
    /// The per-message seed.
    pub seed: &'a [u8; crypto::SEED_LEN],
    /// Ciphertext and tag.
    pub sealed: &'a [u8],
}

impl<'a> LocalPayload<'a> {
    /// Splits a local payload.
    pub fn parse(payload: &'a [u8]) -> Result<Self, KmsError> {
        if payload.len() < crypto::SEED_LEN + crypto::TAG_LEN {
            return Err(KmsError::MalformedBlob("truncated payload"));
        }
        let (seed, sealed) = payload.split_at(crypto::SEED_LEN);
        let seed = seed
            .try_into()
            .map_err(|_| KmsError::MalformedBlob("truncated payload"))?;
        Ok(Self { seed, sealed })
    }
}

/// First byte of a Vault payload sealed under an intermediate key (Transit
/// ciphertexts start with "vault:").
const VAULT_INTERMEDIATE_MARKER: u8 = 0x01;

/// A Vault payload sealed under an intermediate key:
/// `0x01 || u16 BE length || Transit ciphertext of the intermediate key ||
/// seed (32) || AES-256-GCM ciphertext || tag (16)`.
#[derive(Debug)]
pub struct VaultIntermediatePayload<'a> {
    /// Transit's `vault:v<N>:…` ciphertext of the intermediate key.
    pub wrapped: &'a str,
    /// The per-message seed.
    pub seed: &'a [u8; crypto::SEED_LEN],
    /// Ciphertext and tag.
    pub sealed: &'a [u8],
}

impl<'a> VaultIntermediatePayload<'a> {
    /// Appends everything up to the ciphertext.
    pub fn encode_prefix(
        wrapped: &[u8],
        seed: &[u8; crypto::SEED_LEN],
        out: &mut Vec<u8>,
    ) -> Result<(), KmsError> {
        let len = u16::try_from(wrapped.len()).map_err(|_| {
            KmsError::Internal("an intermediate key's ciphertext is too long".into())
        })?;
        out.push(VAULT_INTERMEDIATE_MARKER);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(wrapped);
        out.extend_from_slice(seed);
        Ok(())
    }

    /// Splits a Vault payload; `None` when it is a plain Transit ciphertext.
    pub fn parse(payload: &'a [u8]) -> Result<Option<Self>, KmsError> {
        let Some((&VAULT_INTERMEDIATE_MARKER, rest)) = payload.split_first() else {
            return Ok(None);
        };
        let malformed = || KmsError::MalformedBlob("truncated intermediate-key payload");
        let (len, rest) = rest.split_first_chunk::<2>().ok_or_else(malformed)?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len + crypto::SEED_LEN + crypto::TAG_LEN {
            return Err(malformed());
        }
        let (wrapped, rest) = rest.split_at(len);
        let wrapped = std::str::from_utf8(wrapped)
            .map_err(|_| KmsError::MalformedBlob("intermediate key ciphertext is not text"))?;
        let (seed, sealed) = rest
            .split_first_chunk::<{ crypto::SEED_LEN }>()
            .ok_or_else(malformed)?;
        Ok(Some(Self {
            wrapped,
            seed,
            sealed,
        }))
    }
}

/// The audit id of the intermediate key a Vault blob was sealed under, if
/// any: the first 16 hex digits of the SHA-256 of its Transit ciphertext
/// (which the blob carries in the clear).
pub fn intermediate_key_id(blob: &ParsedBlob<'_>) -> Option<String> {
    if blob.header.backend != BackendKind::Vault {
        return None;
    }
    VaultIntermediatePayload::parse(blob.payload)
        .ok()
        .flatten()
        .map(|p| intermediate_id(p.wrapped.as_bytes()))
}

/// [`intermediate_key_id`] of a blob kmsd just sealed.
pub fn sealed_intermediate_key_id(blob: &[u8]) -> Option<String> {
    // Called for every blob sealed; the local backend's never qualify, so
    // they are not parsed again.
    if blob.get(3) != Some(&BackendKind::Vault.to_byte()) {
        return None;
    }
    parse(blob).ok().and_then(|p| intermediate_key_id(&p))
}

/// See [`intermediate_key_id`].
pub fn intermediate_id(wrapped: &[u8]) -> String {
    hex::encode(&crypto::sha256(wrapped)[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> BlobHeader {
        BlobHeader {
            backend: BackendKind::Local,
            key_id: KeyId::parse("k1").unwrap(),
            key_version: 3,
        }
    }

    #[test]
    fn header_round_trips() {
        let mut blob = header().encode(4);
        assert_eq!(blob, [b'k', b'm', 1, 1, 2, b'k', b'1', 0, 0, 0, 3]);
        blob.extend_from_slice(b"data");
        let parsed = parse(&blob).unwrap();
        assert_eq!(parsed.header, header());
        assert_eq!(parsed.header_bytes.len(), 11);
        assert_eq!(parsed.payload, b"data");
    }

    #[test]
    fn rejects_malformed_headers() {
        let good = header().encode(0);
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            b"km".to_vec(),
            {
                let mut b = good.clone();
                b[0] = b'x';
                b
            },
            {
                let mut b = good.clone();
                b[2] = 2;
                b
            },
            {
                let mut b = good.clone();
                b[3] = 9;
                b
            },
            {
                let mut b = good.clone();
                b[4] = 200;
                b
            },
            {
                let mut b = good.clone();
                b[5] = b'/';
                b
            },
            {
                let mut b = good.clone();
                b[10] = 0;
                b
            },
            good[..good.len() - 1].to_vec(),
            vec![0; MAX_BLOB_LEN + 1],
        ];
        for case in cases {
            assert!(
                matches!(parse(&case), Err(KmsError::MalformedBlob(_))),
                "{case:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse(&bytes).map(|p| LocalPayload::parse(p.payload));
        }
    }
}

/// Known-answer vectors, also printed in docs/format.md.
#[cfg(test)]
mod vectors {
    use std::collections::BTreeMap;

    use super::*;
    use crate::crypto::WrappingKey;

    /// Material 0x00..0x1f, seed 0x20..0x3f, key "default" version 1,
    /// context {"bucket": "photos", "object": "cat.jpg"}, plaintext
    /// 0x40..0x5f (a data key).
    pub(crate) const LOCAL_V1: &str = "6b6d01010764656661756c7400000001202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f41cd64c0ad3ae63835157e992bd324a87346a012f0db3f05d8d961c66fd241259b2d1d7d5140b33a7000ace7b86a0693";

    #[test]
    fn local_blob_vector() {
        let material: [u8; 32] = std::array::from_fn(|i| i as u8);
        let seed: [u8; 32] = std::array::from_fn(|i| 0x20 + i as u8);
        let plaintext: [u8; 32] = std::array::from_fn(|i| 0x40 + i as u8);
        let context = EncryptionContext::new(BTreeMap::from([
            ("bucket".to_owned(), "photos".to_owned()),
            ("object".to_owned(), "cat.jpg".to_owned()),
        ]))
        .unwrap();
        let header = BlobHeader {
            backend: BackendKind::Local,
            key_id: KeyId::parse("default").unwrap(),
            key_version: 1,
        };
        let mut blob = header.encode(80);
        let aad = aad(&blob, &context);
        blob.extend_from_slice(&seed);
        WrappingKey::new(&material, b"kmsd/v1/local-blob")
            .seal_append(&seed, &aad, &plaintext, &mut blob)
            .unwrap();
        println!("aad  {}", hex::encode(&aad));
        println!("blob {}", hex::encode(&blob));
        assert_eq!(hex::encode(&blob), LOCAL_V1);
    }
}
