//! The on-disk form of the local backend: one JSON file per key, written
//! atomically and durably.
//!
//! ```json
//! {
//!   "format": 1,
//!   "key_id": "default",
//!   "state": "Enabled",
//!   "description": "",
//!   "tags": {},
//!   "created_at": "2026-11-28T20:00:00Z",
//!   "deletion_date": null,
//!   "current_version": 2,
//!   "versions": [
//!     { "version": 1, "created_at": "…", "material": "<base64, 32 bytes>" },
//!     { "version": 2, "created_at": "…", "sealed_material": "<base64>" }
//!   ],
//!   "origin": "External"
//! }
//! ```
//!
//! `origin` is written only for imported keys (ImportKey).
//!
//! A directory is either unsealed (every version has `material`) or sealed
//! (every version has `sealed_material`, see `sealing.rs`), never mixed.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use zeroize::{Zeroize, Zeroizing};

pub(super) use crate::fsutil::{ensure_private_dir, loose_mode_bits, remove_durably, write_atomic};
use crate::{
    backend::{KeyOrigin, KeyState},
    crypto::KEY_LEN,
    key_id::KeyId,
};

/// Key files are named `<key id>.key`.
pub(super) const KEY_FILE_SUFFIX: &str = ".key";
/// The only key-file format this version reads and writes.
pub(super) const KEY_FILE_FORMAT: u32 = 1;

/// One key file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyFile {
    pub(super) format: u32,
    pub(super) key_id: String,
    pub(super) state: KeyState,
    #[serde(default)]
    pub(super) description: String,
    #[serde(default)]
    pub(super) tags: BTreeMap<String, String>,
    #[serde(with = "time::serde::rfc3339")]
    pub(super) created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub(super) deletion_date: Option<OffsetDateTime>,
    pub(super) current_version: u32,
    pub(super) versions: Vec<VersionFile>,
    /// Automatic rotation, when on (absent in files of older kmsd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) rotation: Option<crate::backend::RotationSchedule>,
    /// `External` for imported keys; absent (kmsd) otherwise, so files of
    /// generated keys are as before.
    #[serde(default, skip_serializing_if = "KeyOrigin::is_kmsd")]
    pub(super) origin: KeyOrigin,
}

/// One version inside a key file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VersionFile {
    pub(super) version: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub(super) created_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) material: Option<PlainMaterial>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "base64_bytes"
    )]
    pub(super) sealed_material: Option<Vec<u8>>,
}

/// Unsealed key material, base64 in the file. Never held in a `String`
/// that outlives the (de)serialisation call.
pub(super) struct PlainMaterial(pub(super) Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for PlainMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlainMaterial([secret elided])")
    }
}

impl Serialize for PlainMaterial {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let encoded = Zeroizing::new(B64.encode(self.0.as_slice()));
        serializer.serialize_str(&encoded)
    }
}

impl<'de> Deserialize<'de> for PlainMaterial {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = PlainMaterial;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("32 bytes of base64 key material")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PlainMaterial, E> {
                let mut decoded = Zeroizing::new(
                    B64.decode(v)
                        .map_err(|_| E::custom("key material is not valid base64"))?,
                );
                let mut key = Zeroizing::new([0u8; KEY_LEN]);
                if decoded.len() != KEY_LEN {
                    return Err(E::custom("key material is not 32 bytes long"));
                }
                key.copy_from_slice(&decoded);
                decoded.zeroize();
                Ok(PlainMaterial(key))
            }
            fn visit_string<E: serde::de::Error>(self, mut v: String) -> Result<PlainMaterial, E> {
                let result = self.visit_str(&v);
                v.zeroize();
                result
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

mod base64_bytes {
    use base64::{Engine, engine::general_purpose::STANDARD as B64};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_str(&B64.encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| {
            B64.decode(t)
                .map_err(|_| serde::de::Error::custom("not valid base64"))
        })
        .transpose()
    }
}

/// The path of a key's file.
pub(super) fn key_path(dir: &Path, key_id: &KeyId) -> PathBuf {
    dir.join(format!("{key_id}{KEY_FILE_SUFFIX}"))
}

/// Temporary files are hidden (`.`) and end in `.tmp`; a crash can leave
/// one behind, and loading removes it. They can never be mistaken for keys:
/// a key id cannot start with a dot.
pub(super) fn is_temp_file(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_are_recognised() {
        assert!(is_temp_file(".k.key.0011223344556677.tmp"));
        assert!(!is_temp_file("k.key"));
        assert!(!is_temp_file(".kmsd-sealing.json"));
    }

    #[test]
    fn plain_material_round_trips_through_json() {
        let v = VersionFile {
            version: 1,
            created_at: OffsetDateTime::UNIX_EPOCH,
            material: Some(PlainMaterial(Zeroizing::new([9; KEY_LEN]))),
            sealed_material: None,
        };
        let json = serde_json::to_string(&v).unwrap();
        let back: VersionFile = serde_json::from_str(&json).unwrap();
        assert_eq!(*back.material.unwrap().0, [9; KEY_LEN]);
        assert!(format!("{:?}", back.sealed_material).contains("None"));
    }
}
