//! Key files sealed at rest under a key-encryption key (KEK).
//!
//! The KEK comes from a passphrase (Argon2id, memory-hard) or from a key
//! file (HKDF; the file is already high-entropy). Its salt and cost
//! parameters live in `<key_dir>/.kmsd-sealing.json` with a check value, so
//! a wrong passphrase is caught at startup with a clear error instead of
//! surfacing as failed decryptions later.
//!
//! Each version's material is sealed with the blob construction of
//! kms-core's `crypto.rs` (fresh derived key per seal) and authenticated data
//! `"kmsd/v1/key-material" || u8(len(key id)) || key id || u32be(version)`,
//! so sealed material cannot be moved to another key or version.

use std::path::Path;

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use kms_core::SecretBytes;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{LocalError, file};
use crate::{
    crypto::{self, Argon2Params, CryptoError, KEY_LEN, SEED_LEN, WrappingKey},
    key_id::KeyId,
};

/// The file that marks a directory as sealed.
pub(super) const SEALING_FILE: &str = ".kmsd-sealing.json";
const MATERIAL_AAD_LABEL: &[u8] = b"kmsd/v1/key-material";

/// The shortest passphrase a new sealing accepts, in bytes. An existing
/// directory sealed with a shorter one still opens (with a warning), so an
/// upgrade never locks an operator out of their keys.
pub const MIN_PASSPHRASE_LEN: usize = 16;

/// What a sealing protects. Each domain has its own KEK derivation and
/// check value, so a key directory's passphrase file and a state
/// directory's can never be swapped for each other unnoticed.
#[derive(Debug, Clone, Copy)]
pub struct SealDomain {
    kek_info: &'static [u8],
    check_plaintext: &'static [u8],
    check_aad: &'static [u8],
    what: &'static str,
}

/// A local key directory (`[backend.sealing]`).
pub(super) const KEY_DIR: SealDomain = SealDomain {
    kek_info: b"kmsd/v1/key-file",
    check_plaintext: b"kmsd sealed key directory v1",
    check_aad: b"kmsd/v1/sealing-check",
    what: "key directory",
};

/// The state directory's secrets (`[server.state_sealing]`).
pub const STATE_DIR: SealDomain = SealDomain {
    kek_info: b"kmsd/v1/state-secret",
    check_plaintext: b"kmsd sealed state directory v1",
    check_aad: b"kmsd/v1/state-sealing-check",
    what: "state directory",
};

/// A backup bundle (`bundle.rs`): its own KEK derivation, so a bundle's
/// passphrase can never open a key directory's sealing or the reverse.
pub(super) const BACKUP: SealDomain = SealDomain {
    kek_info: b"kmsd/v1/backup",
    check_plaintext: b"kmsd backup bundle v1",
    check_aad: b"kmsd/v1/backup-check",
    what: "backup bundle",
};

/// The secret a sealed directory is opened with.
#[derive(Debug)]
pub enum SealingSecret {
    /// A human passphrase; stretched with Argon2id.
    Passphrase(SecretBytes),
    /// The contents of a key file (at least 32 random bytes).
    KeyFile(SecretBytes),
}

impl SealingSecret {
    pub(super) fn kdf(&self) -> Kdf {
        match self {
            SealingSecret::Passphrase(_) => Kdf::Argon2id,
            SealingSecret::KeyFile(_) => Kdf::HkdfSha256,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Kdf {
    Argon2id,
    HkdfSha256,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealingFile {
    format: u32,
    kdf: Kdf,
    salt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    argon2: Option<Argon2Params>,
    check: String,
}

/// Seals and opens key material (or state secrets) under the directory's
/// KEK.
pub struct Sealer {
    kek: WrappingKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([secret elided])")
    }
}

/// Whether `dir` has been sealed.
pub(super) fn is_sealed(dir: &Path) -> bool {
    dir.join(SEALING_FILE).exists()
}

impl Sealer {
    /// Opens the sealing of key directory `dir`, or seals one that holds
    /// no key yet.
    pub(super) fn open_or_init(
        dir: &Path,
        secret: &SealingSecret,
        dir_has_keys: bool,
    ) -> Result<Self, LocalError> {
        Self::open_or_init_in(dir, secret, dir_has_keys, &KEY_DIR)
    }

    /// Opens the sealing of `dir` in `domain`, or seals `dir` (which must
    /// not hold data sealed otherwise: `dir_has_data`).
    pub fn open_or_init_in(
        dir: &Path,
        secret: &SealingSecret,
        dir_has_data: bool,
        domain: &SealDomain,
    ) -> Result<Self, LocalError> {
        let path = dir.join(SEALING_FILE);
        let io = |source| LocalError::Io {
            path: path.clone(),
            source,
        };
        if !path.exists() {
            if dir_has_data {
                return Err(LocalError::UnsealedKeysPresent(dir.to_owned()));
            }
            return Self::init(dir, secret, domain);
        }
        if let SealingSecret::Passphrase(p) = secret
            && p.len() < MIN_PASSPHRASE_LEN
        {
            tracing::warn!(
                dir = %dir.display(),
                "the sealing passphrase is shorter than {MIN_PASSPHRASE_LEN} bytes; a new {} would refuse it",
                domain.what
            );
        }
        if file::loose_mode_bits(&path).map_err(io)? != 0 {
            return Err(LocalError::LoosePermissions { path });
        }
        let bad = |reason: &'static str| LocalError::BadSealingFile {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read(&path).map_err(io)?;
        let sealing: SealingFile =
            serde_json::from_slice(&text).map_err(|_| bad("not a valid sealing file"))?;
        if sealing.format != 1 {
            return Err(bad("unknown format"));
        }
        if sealing.kdf != secret.kdf() {
            return Err(LocalError::SealingSecretKindMismatch {
                path,
                sealed_with: match sealing.kdf {
                    Kdf::Argon2id => "a passphrase",
                    Kdf::HkdfSha256 => "a key file",
                },
            });
        }
        let salt = B64
            .decode(&sealing.salt)
            .map_err(|_| bad("salt is not base64"))?;
        let check = B64
            .decode(&sealing.check)
            .map_err(|_| bad("check is not base64"))?;
        let kek =
            derive_kek(secret, &salt, sealing.argon2).map_err(|_| bad("invalid KDF parameters"))?;
        let sealer = Self {
            kek: WrappingKey::new(&kek, domain.kek_info),
        };
        if check.len() < SEED_LEN {
            return Err(bad("check value too short"));
        }
        let (seed, sealed) = check.split_at(SEED_LEN);
        let seed: &[u8; SEED_LEN] = seed.try_into().map_err(|_| bad("check value too short"))?;
        match sealer.kek.open(seed, domain.check_aad, sealed) {
            Ok(plain) if plain.expose_secret() == domain.check_plaintext => Ok(sealer),
            _ => Err(LocalError::WrongSealingSecret(dir.to_owned())),
        }
    }

    fn init(dir: &Path, secret: &SealingSecret, domain: &SealDomain) -> Result<Self, LocalError> {
        if let SealingSecret::Passphrase(p) = secret
            && p.len() < MIN_PASSPHRASE_LEN
        {
            return Err(LocalError::WeakPassphrase {
                min: MIN_PASSPHRASE_LEN,
            });
        }
        Self::init_with(dir, secret, domain, Argon2Params::default())
    }

    /// Seals `dir` with explicit Argon2id parameters (tests use the old
    /// defaults to prove such directories still open).
    pub(super) fn init_with(
        dir: &Path,
        secret: &SealingSecret,
        domain: &SealDomain,
        params: Argon2Params,
    ) -> Result<Self, LocalError> {
        let crypto_err = |e: CryptoError| LocalError::Crypto(e);
        let salt = crypto::random_array::<16>().map_err(crypto_err)?;
        let argon2 = matches!(secret, SealingSecret::Passphrase(_)).then_some(params);
        let kek = derive_kek(secret, &salt, argon2).map_err(crypto_err)?;
        let sealer = Self {
            kek: WrappingKey::new(&kek, domain.kek_info),
        };
        let seed = crypto::random_array::<SEED_LEN>().map_err(crypto_err)?;
        let mut check = seed.to_vec();
        sealer
            .kek
            .seal_append(&seed, domain.check_aad, domain.check_plaintext, &mut check)
            .map_err(crypto_err)?;
        let sealing = SealingFile {
            format: 1,
            kdf: secret.kdf(),
            salt: B64.encode(salt),
            argon2,
            check: B64.encode(check),
        };
        let json =
            serde_json::to_vec_pretty(&sealing).map_err(|e| LocalError::Encode(e.to_string()))?;
        file::write_atomic(dir, SEALING_FILE, &json).map_err(|source| LocalError::Io {
            path: dir.join(SEALING_FILE),
            source,
        })?;
        Ok(sealer)
    }

    /// A sealer for `domain` from `secret` with no sealing file: a backup
    /// bundle carries its own salt and parameters.
    pub(super) fn derive(
        secret: &SealingSecret,
        salt: &[u8],
        argon2: Option<Argon2Params>,
        domain: &SealDomain,
    ) -> Result<Self, CryptoError> {
        let kek = derive_kek(secret, salt, argon2)?;
        Ok(Self {
            kek: WrappingKey::new(&kek, domain.kek_info),
        })
    }

    /// `domain`'s check value under this KEK: `seed || ciphertext || tag`.
    pub(super) fn check_value(&self, domain: &SealDomain) -> Result<Vec<u8>, CryptoError> {
        self.seal_value(domain.check_aad, domain.check_plaintext)
    }

    /// Whether `check` is `domain`'s check value under this KEK, i.e.
    /// whether the secret was the right one.
    pub(super) fn verify_check(&self, domain: &SealDomain, check: &[u8]) -> bool {
        self.open_value(domain.check_aad, check)
            .is_ok_and(|plain| plain.expose_secret() == domain.check_plaintext)
    }

    /// Seals a secret value under `aad`: `seed || ciphertext || tag`.
    pub fn seal_value(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let seed = crypto::random_array::<SEED_LEN>()?;
        let mut out = seed.to_vec();
        self.kek.seal_append(&seed, aad, plaintext, &mut out)?;
        Ok(out)
    }

    /// Opens what [`Self::seal_value`] sealed under the same `aad`.
    pub fn open_value(&self, aad: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
        if sealed.len() < SEED_LEN {
            return Err(CryptoError::Authentication);
        }
        let (seed, rest) = sealed.split_at(SEED_LEN);
        let seed: &[u8; SEED_LEN] = seed.try_into().map_err(|_| CryptoError::Authentication)?;
        self.kek.open(seed, aad, rest)
    }

    /// Seals one version's material: `seed || ciphertext || tag`.
    pub(super) fn seal(
        &self,
        key_id: &KeyId,
        version: u32,
        material: &[u8; KEY_LEN],
    ) -> Result<Vec<u8>, CryptoError> {
        let seed = crypto::random_array::<SEED_LEN>()?;
        let mut out = seed.to_vec();
        self.kek
            .seal_append(&seed, &material_aad(key_id, version), material, &mut out)?;
        Ok(out)
    }

    /// Opens one version's sealed material.
    pub(super) fn open(
        &self,
        key_id: &KeyId,
        version: u32,
        sealed: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
        if sealed.len() < SEED_LEN {
            return Err(CryptoError::Authentication);
        }
        let (seed, rest) = sealed.split_at(SEED_LEN);
        let seed: &[u8; SEED_LEN] = seed.try_into().map_err(|_| CryptoError::Authentication)?;
        let plain = self.kek.open(seed, &material_aad(key_id, version), rest)?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if plain.len() != KEY_LEN {
            return Err(CryptoError::Authentication);
        }
        key.copy_from_slice(plain.expose_secret());
        Ok(key)
    }
}

fn derive_kek(
    secret: &SealingSecret,
    salt: &[u8],
    argon2: Option<Argon2Params>,
) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
    match secret {
        SealingSecret::Passphrase(passphrase) => crypto::argon2id(
            passphrase.expose_secret(),
            salt,
            argon2.ok_or(CryptoError::KdfParameters)?,
        ),
        SealingSecret::KeyFile(contents) => {
            Ok(crypto::hkdf_key_file(contents.expose_secret(), salt))
        }
    }
}

fn material_aad(key_id: &KeyId, version: u32) -> Vec<u8> {
    let id = key_id.as_str().as_bytes();
    let mut aad = Vec::with_capacity(MATERIAL_AAD_LABEL.len() + 1 + id.len() + 4);
    aad.extend_from_slice(MATERIAL_AAD_LABEL);
    // Invariant: key ids are at most 128 bytes.
    aad.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    aad.extend_from_slice(id);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}
