//! The backup bundle of the local backend (docs/format.md, "Backup
//! bundle"): every key and version, sealed under a key the operator
//! supplies, with a manifest that says what is inside.
//!
//! ```json
//! {
//!   "format": "kmsd-backup-v1",
//!   "created_at": "2026-12-06T03:00:00Z",
//!   "kdf": "argon2id",
//!   "salt": "<base64, 16 bytes>",
//!   "argon2": { "m_cost_kib": 65536, "t_cost": 3, "p_cost": 1 },
//!   "check": "<base64: seed || AES-256-GCM of a fixed text>",
//!   "manifest": {
//!     "keys": 2, "versions": 3, "aliases": 1,
//!     "entries": [ { "key_id": "a", "current_version": 2 }, … ],
//!     "payload_sha256": "<hex>"
//!   },
//!   "manifest_sha256": "<hex of the manifest's JSON>",
//!   "payload": "<base64: seed || AES-256-GCM of the key records || tag>"
//! }
//! ```
//!
//! The KEK comes from the secret as for a sealed key directory
//! (`sealing.rs`: Argon2id for a passphrase, HKDF for a key file), in its
//! own domain. The payload's associated data is a label and the manifest's
//! digest, so neither part can be altered or swapped without the payload
//! failing to open; the check value tells a wrong secret apart from a
//! damaged bundle. Inside, every version's material is in the clear (the
//! whole payload is sealed), so a bundle restores into a directory sealed
//! under any secret, or none. The payload holds the aliases too (a bundle
//! without any has no `aliases` in its manifest or payload, as bundles
//! made before aliases were backed up, which still open).

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{
    aliases::AliasRecord,
    file::KeyFile,
    sealing::{BACKUP, Kdf, MIN_PASSPHRASE_LEN, Sealer, SealingSecret},
};
use crate::crypto::{self, Argon2Params, CryptoError};

/// The only bundle format this version writes and reads.
pub(super) const BUNDLE_FORMAT: &str = "kmsd-backup-v1";
const PAYLOAD_AAD_LABEL: &[u8] = b"kmsd/v1/backup-payload";
/// Argon2id costs above these are refused before deriving: a bundle
/// handed to `restore` must not make kmsd allocate without bound.
const MAX_ARGON2: Argon2Params = Argon2Params {
    m_cost_kib: 1024 * 1024,
    t_cost: 16,
    p_cost: 8,
};

/// Why a bundle cannot be made or opened.
#[derive(Debug, thiserror::Error)]
pub(super) enum BundleError {
    /// Not a bundle at all, or cut short.
    #[error("not a kmsd backup bundle (truncated or damaged): {0}")]
    Malformed(String),
    /// The passphrase or key file is not the one the bundle was made with.
    #[error("wrong backup passphrase or key file for this bundle")]
    WrongSecret,
    /// The bundle opens with the secret but its parts do not agree.
    #[error("the backup bundle was altered: {0}")]
    Tampered(&'static str),
    /// A new bundle was asked for with a short passphrase.
    #[error(
        "the backup passphrase is shorter than {MIN_PASSPHRASE_LEN} bytes; use a longer one (or a key file of 32 random bytes)"
    )]
    WeakPassphrase,
    /// A cryptographic primitive failed.
    #[error("{0}")]
    Crypto(#[from] CryptoError),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleFile {
    format: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    kdf: Kdf,
    salt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    argon2: Option<Argon2Params>,
    check: String,
    manifest: Manifest,
    manifest_sha256: String,
    payload: String,
}

/// What a bundle holds, readable without the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Manifest {
    pub(super) keys: usize,
    pub(super) versions: usize,
    /// Absent (0) in bundles without aliases, so their digest is unchanged.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(super) aliases: usize,
    pub(super) entries: Vec<ManifestEntry>,
    pub(super) payload_sha256: String,
}

/// One key of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ManifestEntry {
    pub(super) key_id: String,
    pub(super) current_version: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    keys: Vec<KeyFile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<AliasRecord>,
}

/// What a bundle holds.
#[derive(Debug)]
pub(super) struct Contents {
    /// Every key with every version's material.
    pub(super) keys: Vec<KeyFile>,
    /// Every alias (of a key in `keys`).
    pub(super) aliases: Vec<AliasRecord>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Seals `contents` (every version with its `material`) into a bundle.
/// Blocks for the KDF; call it from a blocking context.
pub(super) fn seal(
    contents: Contents,
    secret: &SealingSecret,
    now: OffsetDateTime,
) -> Result<Vec<u8>, BundleError> {
    if let SealingSecret::Passphrase(p) = secret
        && p.len() < MIN_PASSPHRASE_LEN
    {
        return Err(BundleError::WeakPassphrase);
    }
    let Contents { keys, aliases } = contents;
    let entries: Vec<ManifestEntry> = keys
        .iter()
        .map(|k| ManifestEntry {
            key_id: k.key_id.clone(),
            current_version: k.current_version,
        })
        .collect();
    let versions = keys.iter().map(|k| k.versions.len()).sum();
    let alias_count = aliases.len();
    let payload = Zeroizing::new(
        serde_json::to_vec(&Payload { keys, aliases }).map_err(|e| encode_failed(&e))?,
    );
    let manifest = Manifest {
        keys: entries.len(),
        versions,
        aliases: alias_count,
        entries,
        payload_sha256: hex::encode(crypto::sha256(&payload)),
    };
    let digest = manifest_digest(&manifest)?;
    let salt = crypto::random_array::<16>()?;
    let argon2 = matches!(secret, SealingSecret::Passphrase(_)).then(Argon2Params::default);
    let sealer = Sealer::derive(secret, &salt, argon2, &BACKUP)?;
    let sealed = sealer.seal_value(&payload_aad(&digest), &payload)?;
    let file = BundleFile {
        format: BUNDLE_FORMAT.into(),
        created_at: now,
        kdf: secret.kdf(),
        salt: B64.encode(salt),
        argon2,
        check: B64.encode(sealer.check_value(&BACKUP)?),
        manifest,
        manifest_sha256: hex::encode(digest),
        payload: B64.encode(sealed),
    };
    serde_json::to_vec_pretty(&file).map_err(|e| encode_failed(&e))
}

/// Verifies and opens a bundle: its key records, in the bundle's order,
/// and its aliases. Blocks for the KDF; call it from a blocking context.
pub(super) fn open(bundle: &[u8], secret: &SealingSecret) -> Result<Contents, BundleError> {
    let file: BundleFile =
        serde_json::from_slice(bundle).map_err(|e| BundleError::Malformed(e.to_string()))?;
    if file.format != BUNDLE_FORMAT {
        return Err(BundleError::Malformed(format!(
            "unknown format {:?}",
            file.format
        )));
    }
    let malformed = |what: &str| BundleError::Malformed(format!("{what} is not valid base64"));
    let salt = B64.decode(&file.salt).map_err(|_| malformed("salt"))?;
    let check = B64.decode(&file.check).map_err(|_| malformed("check"))?;
    let sealed = B64
        .decode(&file.payload)
        .map_err(|_| malformed("payload"))?;
    if file.kdf != secret.kdf() {
        return Err(BundleError::WrongSecret);
    }
    if let Some(p) = file.argon2
        && (p.m_cost_kib > MAX_ARGON2.m_cost_kib
            || p.t_cost > MAX_ARGON2.t_cost
            || p.p_cost > MAX_ARGON2.p_cost)
    {
        return Err(BundleError::Malformed(
            "Argon2id costs above kmsd's limits".into(),
        ));
    }
    let digest = manifest_digest(&file.manifest)?;
    if hex::encode(digest) != file.manifest_sha256 {
        return Err(BundleError::Tampered(
            "the manifest does not match its digest",
        ));
    }
    let sealer = Sealer::derive(secret, &salt, file.argon2, &BACKUP)
        .map_err(|_| BundleError::Malformed("invalid KDF parameters".into()))?;
    if !sealer.verify_check(&BACKUP, &check) {
        return Err(BundleError::WrongSecret);
    }
    let opened = sealer
        .open_value(&payload_aad(&digest), &sealed)
        .map_err(|_| BundleError::Tampered("the payload does not authenticate"))?;
    let payload = opened.expose_secret();
    if hex::encode(crypto::sha256(payload)) != file.manifest.payload_sha256 {
        return Err(BundleError::Tampered(
            "the payload does not match the manifest",
        ));
    }
    let Payload { keys, aliases } = serde_json::from_slice::<Payload>(payload)
        .map_err(|_| BundleError::Tampered("the payload is not a list of key records"))?;
    let listed = keys.iter().map(|k| ManifestEntry {
        key_id: k.key_id.clone(),
        current_version: k.current_version,
    });
    let versions: usize = keys.iter().map(|k| k.versions.len()).sum();
    if !listed.eq(file.manifest.entries.iter().cloned())
        || file.manifest.keys != keys.len()
        || file.manifest.versions != versions
        || file.manifest.aliases != aliases.len()
    {
        return Err(BundleError::Tampered(
            "the payload does not match the manifest",
        ));
    }
    Ok(Contents { keys, aliases })
}

fn manifest_digest(manifest: &Manifest) -> Result<[u8; 32], BundleError> {
    Ok(crypto::sha256(
        &serde_json::to_vec(manifest).map_err(|e| encode_failed(&e))?,
    ))
}

fn payload_aad(digest: &[u8; 32]) -> Vec<u8> {
    [PAYLOAD_AAD_LABEL, digest.as_slice()].concat()
}

fn encode_failed(e: &serde_json::Error) -> BundleError {
    BundleError::Malformed(format!("cannot encode the bundle: {e}"))
}
