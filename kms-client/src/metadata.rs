//! What a storage server persists next to an encrypted object.
//!
//! The sealed data key lives here, never in the payload, so moving it to a
//! new master-key version (kmsd `ReEncrypt`) rewrites only
//! [`keys::SEALED_KEY`] and [`keys::KEY_ID`]: the layout tag is keyed by the
//! data key itself, which a re-wrap does not change.

use std::collections::BTreeMap;

use base64::Engine as _;

use crate::stream::{ChunkSize, LAYOUT_TAG_LEN, Layout, PartId, PartInfo, PartNumber, StreamError};

/// The metadata keys, all lower case and prefixed `x-kms-`. Readers match
/// them case-insensitively and ignore keys without the prefix, and keys
/// with the [`SSE_PREFIX`](keys::SSE_PREFIX), which [`crate::sse`] reads.
pub mod keys {
    /// The prefix of every key below.
    pub const PREFIX: &str = "x-kms-";
    /// The prefix of the S3 SSE keys ([`crate::sse::keys`]), skipped here.
    pub const SSE_PREFIX: &str = "x-kms-sse-";
    /// The sealed data key exactly as kmsd returned it, base64 (standard
    /// alphabet, padded).
    pub const SEALED_KEY: &str = "x-kms-sealed-key";
    /// The master key that sealed it (informational: the blob names it too).
    pub const KEY_ID: &str = "x-kms-key-id";
    /// The payload format: `OSE1`.
    pub const FORMAT: &str = "x-kms-format";
    /// Plaintext bytes per chunk, decimal (a power of two).
    pub const CHUNK_SIZE: &str = "x-kms-chunk-size";
    /// The streams, in order, comma-separated: `part:plaintext-size:part-id`
    /// with the part number in decimal (0 for a single-part object), the
    /// plaintext size in decimal and the 16-byte part id in hex.
    pub const PARTS: &str = "x-kms-parts";
    /// The layout tag, 32 bytes in hex.
    pub const LAYOUT_TAG: &str = "x-kms-layout-tag";
}

/// The value of [`keys::FORMAT`].
pub const FORMAT_OSE1: &str = "OSE1";

/// Why object metadata could not be read.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// A required key is absent.
    #[error("object metadata lacks {0}")]
    Missing(&'static str),
    /// A key appears twice (differing only in case).
    #[error("object metadata has {0} twice")]
    Duplicate(String),
    /// A key with the `x-kms-` prefix that this version does not know:
    /// written by a newer version, so refused rather than misread.
    #[error("unknown object metadata key {0}")]
    Unknown(String),
    /// A value cannot be parsed.
    #[error("invalid {key}: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The parts do not form a valid layout.
    #[error("invalid layout in object metadata: {0}")]
    Layout(#[source] StreamError),
}

/// The encryption metadata of one object.
///
/// Why there are two schemas: this one is the plain envelope of a client
/// that seals its own objects (one data key from kmsd, always present).
/// [`crate::sse::StoredObject`] is the S3 SSE one: it adds the SSE mode,
/// context, bucket-key salt and SSE-C fingerprint, and an SSE-C object has
/// no sealed key at all. Both write the same `x-kms-*` names for what they
/// share ([`keys`], and [`layout_to_map`] for the layout), so the two are
/// one format on disk, and each reader skips the other's extra names.
///
/// ```
/// use std::io::Write;
/// use kms_client::{DataKey, metadata::ObjectMetadata, stream::{ChunkSize, Encryptor, Layout, PartNumber}};
///
/// let key = DataKey::from_bytes([7; 32]);
/// let mut writer = Encryptor::new(&key, b"b/o", PartNumber::SINGLE, ChunkSize::DEFAULT)?
///     .writer(Vec::new());
/// writer.write_all(b"hello")?;
/// let (_stored, info) = writer.finish()?;
/// let metadata = ObjectMetadata {
///     sealed_key: b"sealed blob from kmsd".to_vec(),
///     key_id: "default".into(),
///     layout: Layout::seal(&key, b"b/o", [info])?,
/// };
/// let map = metadata.to_map();
/// assert_eq!(ObjectMetadata::from_map(&map)?, metadata);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMetadata {
    /// The data key sealed by kmsd (`GenerateDataKey`'s blob).
    pub sealed_key: Vec<u8>,
    /// The master key that sealed it.
    pub key_id: String,
    /// The streams of the payload.
    pub layout: Layout,
}

impl ObjectMetadata {
    /// The metadata as key-value pairs, keyed by [`keys`].
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut map = layout_to_map(&self.layout);
        map.insert(
            keys::SEALED_KEY.into(),
            base64::engine::general_purpose::STANDARD.encode(&self.sealed_key),
        );
        map.insert(keys::KEY_ID.into(), self.key_id.clone());
        map
    }

    /// Reads the metadata back from any map or list of pairs (keys in any
    /// case; keys without the `x-kms-` prefix are ignored). The layout is
    /// checked for structure here and authenticated by
    /// [`Decryptor::new`](crate::stream::Decryptor::new).
    pub fn from_map<K: AsRef<str>, V: AsRef<str>>(
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, MetadataError> {
        let [sealed_key, key_id, format, chunk_size, parts, tag] = collect(entries)?;
        let sealed_key = sealed_key.ok_or(MetadataError::Missing(keys::SEALED_KEY))?;
        let key_id = key_id.ok_or(MetadataError::Missing(keys::KEY_ID))?;
        let layout = parse_layout(format, chunk_size, parts, tag)?;
        let sealed_key = base64::engine::general_purpose::STANDARD
            .decode(sealed_key)
            .map_err(|_| invalid(keys::SEALED_KEY, "not base64"))?;
        Ok(Self {
            sealed_key,
            key_id,
            layout,
        })
    }

    /// The same object with its data key re-wrapped: only the sealed key
    /// and key id change; the payload and the layout stay as they are.
    pub fn rewrapped(self, sealed_key: Vec<u8>, key_id: String) -> Self {
        Self {
            sealed_key,
            key_id,
            ..self
        }
    }
}

/// The layout keys alone ([`keys::FORMAT`], [`keys::CHUNK_SIZE`],
/// [`keys::PARTS`], [`keys::LAYOUT_TAG`]), for objects whose key kmsd does
/// not seal (SSE-C: the customer brings the key on every request).
pub fn layout_to_map(layout: &Layout) -> BTreeMap<String, String> {
    let parts: Vec<String> = layout
        .parts()
        .iter()
        .map(|part| format!("{}:{}:{}", part.part.get(), part.plaintext_size, part.id))
        .collect();
    BTreeMap::from([
        (keys::FORMAT.into(), FORMAT_OSE1.into()),
        (
            keys::CHUNK_SIZE.into(),
            layout.chunk_size().bytes().to_string(),
        ),
        (keys::PARTS.into(), parts.join(",")),
        (keys::LAYOUT_TAG.into(), hex::encode(layout.tag())),
    ])
}

/// Reads a layout written by [`layout_to_map`] (or [`ObjectMetadata::to_map`],
/// whose key entries it ignores), with the rules of
/// [`ObjectMetadata::from_map`].
pub fn layout_from_map<K: AsRef<str>, V: AsRef<str>>(
    entries: impl IntoIterator<Item = (K, V)>,
) -> Result<Layout, MetadataError> {
    let [_, _, format, chunk_size, parts, tag] = collect(entries)?;
    parse_layout(format, chunk_size, parts, tag)
}

/// The values of the known keys, in the order of `KNOWN`.
fn collect<K: AsRef<str>, V: AsRef<str>>(
    entries: impl IntoIterator<Item = (K, V)>,
) -> Result<[Option<String>; 6], MetadataError> {
    const KNOWN: [&str; 6] = [
        keys::SEALED_KEY,
        keys::KEY_ID,
        keys::FORMAT,
        keys::CHUNK_SIZE,
        keys::PARTS,
        keys::LAYOUT_TAG,
    ];
    let mut values: [Option<String>; 6] = Default::default();
    for (key, value) in entries {
        let key = key.as_ref().to_ascii_lowercase();
        if !key.starts_with(keys::PREFIX) || key.starts_with(keys::SSE_PREFIX) {
            continue;
        }
        let slot = KNOWN
            .iter()
            .position(|known| *known == key)
            .ok_or_else(|| MetadataError::Unknown(key.clone()))?;
        if values[slot].replace(value.as_ref().to_owned()).is_some() {
            return Err(MetadataError::Duplicate(key));
        }
    }
    Ok(values)
}

fn parse_layout(
    format: Option<String>,
    chunk_size: Option<String>,
    parts: Option<String>,
    tag: Option<String>,
) -> Result<Layout, MetadataError> {
    let format = format.ok_or(MetadataError::Missing(keys::FORMAT))?;
    let chunk_size = chunk_size.ok_or(MetadataError::Missing(keys::CHUNK_SIZE))?;
    let parts = parts.ok_or(MetadataError::Missing(keys::PARTS))?;
    let tag = tag.ok_or(MetadataError::Missing(keys::LAYOUT_TAG))?;
    if format != FORMAT_OSE1 {
        return Err(invalid(keys::FORMAT, "not OSE1"));
    }
    let chunk_size = chunk_size
        .parse::<u64>()
        .ok()
        .and_then(|bytes| ChunkSize::from_bytes(bytes).ok())
        .ok_or(invalid(
            keys::CHUNK_SIZE,
            "not a power of two from 64 to 16777216",
        ))?;
    let parts = parts
        .split(',')
        .map(|entry| parse_part(entry, chunk_size))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tag_bytes = [0u8; LAYOUT_TAG_LEN];
    hex::decode_to_slice(&tag, &mut tag_bytes)
        .map_err(|_| invalid(keys::LAYOUT_TAG, "not 64 hex digits"))?;
    Layout::from_parts(parts, tag_bytes).map_err(MetadataError::Layout)
}

fn invalid(key: &'static str, reason: &'static str) -> MetadataError {
    MetadataError::Invalid { key, reason }
}

fn parse_part(entry: &str, chunk_size: ChunkSize) -> Result<PartInfo, MetadataError> {
    let bad = || invalid(keys::PARTS, "expected part:plaintext-size:part-id");
    let mut fields = entry.split(':');
    let (Some(part), Some(size), Some(id), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(bad());
    };
    // Plain decimal only: `parse` would also take a leading `+`.
    let decimal = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !decimal(part) || !decimal(size) {
        return Err(bad());
    }
    let part = part.parse::<u32>().map_err(|_| bad())?;
    let part =
        PartNumber::from_u32(part).map_err(|_| invalid(keys::PARTS, "part number out of range"))?;
    let plaintext_size = size.parse::<u64>().map_err(|_| bad())?;
    let mut id_bytes = [0u8; 16];
    hex::decode_to_slice(id, &mut id_bytes).map_err(|_| bad())?;
    Ok(PartInfo {
        part,
        chunk_size,
        plaintext_size,
        id: PartId(id_bytes),
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::{
        DataKey,
        stream::{Decryptor, Encryptor},
    };

    fn sample() -> (ObjectMetadata, DataKey) {
        let key = DataKey::from_bytes([3; 32]);
        let chunk_size = ChunkSize::from_log2(6).unwrap();
        let parts = [2, 5].map(|n| {
            let encryptor =
                Encryptor::new(&key, b"b/o", PartNumber::multipart(n).unwrap(), chunk_size)
                    .unwrap();
            let mut writer = encryptor.writer(Vec::new());
            writer.write_all(&[n as u8; 100]).unwrap();
            writer.finish().unwrap().1
        });
        let layout = Layout::seal(&key, b"b/o", parts).unwrap();
        let metadata = ObjectMetadata {
            sealed_key: vec![1, 2, 3],
            key_id: "k1".into(),
            layout,
        };
        (metadata, key)
    }

    #[test]
    fn round_trips_through_a_map_in_any_case() {
        let (metadata, _) = sample();
        let map = metadata.to_map();
        assert_eq!(map[keys::FORMAT], "OSE1");
        assert_eq!(map[keys::CHUNK_SIZE], "64");
        assert_eq!(map[keys::SEALED_KEY], "AQID");
        // A server that title-cases its header names, plus foreign keys.
        let shouted: Vec<(String, String)> = map
            .iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
            .chain([("content-type".into(), "image/jpeg".into())])
            .collect();
        assert_eq!(ObjectMetadata::from_map(shouted), Ok(metadata));
    }

    #[test]
    fn rewrapping_changes_only_the_sealed_key() {
        let (metadata, key) = sample();
        let before = metadata.to_map();
        let after = metadata
            .clone()
            .rewrapped(vec![9; 40], "k2".into())
            .to_map();
        for (name, value) in &before {
            let changed = *name == keys::SEALED_KEY || *name == keys::KEY_ID;
            assert_eq!(after[name] != *value, changed, "{name}");
        }
        // The layout still authenticates under the same data key.
        let reread = ObjectMetadata::from_map(&after).unwrap();
        assert!(Decryptor::new(&key, b"b/o", &reread.layout).is_ok());
    }

    #[test]
    fn refuses_missing_unknown_duplicate_and_malformed_entries() {
        let (metadata, _) = sample();
        let map = metadata.to_map();
        let without = |key: &str| {
            let mut map = map.clone();
            map.remove(key);
            ObjectMetadata::from_map(&map)
        };
        assert_eq!(
            without(keys::PARTS),
            Err(MetadataError::Missing(keys::PARTS))
        );
        assert_eq!(
            without(keys::LAYOUT_TAG),
            Err(MetadataError::Missing(keys::LAYOUT_TAG))
        );

        let with = |key: &str, value: &str| {
            let mut map = map.clone();
            map.insert(key.into(), value.into());
            ObjectMetadata::from_map(&map)
        };
        assert_eq!(
            with("x-kms-iv", "00"),
            Err(MetadataError::Unknown("x-kms-iv".into()))
        );
        assert_eq!(
            with(keys::FORMAT, "DARE"),
            Err(invalid(keys::FORMAT, "not OSE1"))
        );
        assert!(matches!(
            with(keys::CHUNK_SIZE, "100"),
            Err(MetadataError::Invalid { .. })
        ));
        assert!(matches!(
            with(keys::PARTS, "1:+5:00000000000000000000000000000000"),
            Err(MetadataError::Invalid { .. })
        ));
        assert!(matches!(
            with(keys::SEALED_KEY, "not base64!"),
            Err(MetadataError::Invalid { .. })
        ));
        let reversed =
            "5:100:00000000000000000000000000000000,2:100:00000000000000000000000000000000";
        assert!(matches!(
            with(keys::PARTS, reversed),
            Err(MetadataError::Layout(_))
        ));

        let mut pairs: Vec<(String, String)> = map.clone().into_iter().collect();
        pairs.push(("X-KMS-KEY-ID".into(), "other".into()));
        assert_eq!(
            ObjectMetadata::from_map(pairs),
            Err(MetadataError::Duplicate("x-kms-key-id".into()))
        );
    }

    #[test]
    fn a_layout_alone_round_trips_for_sse_c() {
        let (metadata, _) = sample();
        let map = layout_to_map(&metadata.layout);
        assert!(!map.contains_key(keys::SEALED_KEY));
        assert_eq!(layout_from_map(&map), Ok(metadata.layout.clone()));
        assert_eq!(layout_from_map(&metadata.to_map()), Ok(metadata.layout));
        assert_eq!(
            ObjectMetadata::from_map(&map),
            Err(MetadataError::Missing(keys::SEALED_KEY))
        );
    }

    #[test]
    fn sizes_for_head_need_no_key() {
        let (metadata, _) = sample();
        let reread = ObjectMetadata::from_map(&metadata.to_map()).unwrap();
        assert_eq!(reread.layout.plaintext_size(), 200);
        // Two streams of 100 bytes in 64-byte chunks: 76 + 100 + 2 * 16 each.
        assert_eq!(reread.layout.stored_size(), 2 * (76 + 100 + 32));
        let whole = reread.layout.plan_all();
        assert_eq!(whole.fetch_ranges().len(), 1);
        assert_eq!(whole.fetch_ranges()[0], 0..reread.layout.stored_size());
    }
}
