//! Import of key material ("bring your own key"), as AWS KMS's
//! GetParametersForImport and ImportKeyMaterial.
//!
//! A caller asks for import parameters and gets a single-use token with a
//! fresh RSA-3072 public key; it encrypts 32 bytes of its own material
//! under that key with RSAES-OAEP (SHA-256, MGF1-SHA-256, no label) and
//! hands the result back with the token. kmsd decrypts it here and gives
//! the plaintext material to the backend, which stores it as version 1 of
//! a new key (docs/security.md, "Imported key material").
//!
//! Why the tokens are the way they are:
//! - a fresh key pair per token, never reused: a wrapped blob cannot be
//!   replayed against another token, and a stolen token's private key
//!   exists only in this process;
//! - single use, spent by any ImportKey that names it, successful or not:
//!   RSA decryption failures are the raw material of padding-oracle
//!   attacks (Bleichenbacher, Marvin), which need many queries against
//!   one key; one query per key gives them nothing;
//! - a TTL and a cap on pending tokens: each holds an RSA private key in
//!   memory, and a caller must not be able to make kmsd hold (or generate)
//!   an unbounded number.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use rsa::{
    Oaep, RsaPrivateKey, RsaPublicKey,
    pkcs8::{EncodePublicKey, LineEnding},
};
use sha2::Sha256;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::{crypto, error::KmsError, key_id::KeyId};

/// The wrapping algorithm's name, as AWS KMS spells it.
pub const WRAPPING_ALGORITHM: &str = "RSAES_OAEP_SHA_256";
/// The size of each token's RSA key.
pub const WRAPPING_KEY_BITS: usize = 3072;
/// The only length of key material that can be imported (AES-256).
pub const MATERIAL_LEN: usize = crypto::KEY_LEN;

/// `[limits] import_token_ttl_secs` and `max_pending_imports`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// How long a token can be used.
    pub token_ttl: Duration,
    /// Tokens that may be pending (issued, unused, unexpired) at once.
    pub max_pending: usize,
}

impl Default for ImportLimits {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(600),
            max_pending: 16,
        }
    }
}

/// What GetParametersForImport answers.
#[derive(Debug, Clone)]
pub struct ImportParameters {
    /// The single-use token to hand back with the wrapped material.
    pub token: String,
    /// The wrapping key, DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
    /// The same key, PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public_key_pem: String,
    /// When the token stops being accepted.
    pub expires_at: OffsetDateTime,
    /// The key the token was asked for, if one was named.
    pub key_id: Option<KeyId>,
}

/// A token's private key, spent once. Its `Debug` never shows the key.
pub struct WrappingKey {
    private: RsaPrivateKey,
    key_id: Option<KeyId>,
}

impl std::fmt::Debug for WrappingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappingKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl WrappingKey {
    /// The key the token was issued for, if one was named.
    pub fn key_id(&self) -> Option<&KeyId> {
        self.key_id.as_ref()
    }

    /// Decrypts the caller's wrapped material. Off the async runtime: an
    /// RSA-3072 private-key operation takes milliseconds.
    pub async fn unwrap(self, wrapped: Vec<u8>) -> Result<Zeroizing<[u8; MATERIAL_LEN]>, KmsError> {
        tokio::task::spawn_blocking(move || unwrap_material(&self.private, &wrapped))
            .await
            .map_err(|e| KmsError::Internal(format!("import unwrap task: {e}")))?
    }
}

fn unwrap_material(
    private: &RsaPrivateKey,
    wrapped: &[u8],
) -> Result<Zeroizing<[u8; MATERIAL_LEN]>, KmsError> {
    // One message for every decryption failure, whatever its cause, so
    // the answer tells nothing about the padding.
    let plain = Zeroizing::new(private.decrypt(Oaep::new::<Sha256>(), wrapped).map_err(|_| {
        KmsError::InvalidArgument(format!(
            "the encrypted key material does not decrypt under the import token's wrapping key ({WRAPPING_ALGORITHM})"
        ))
    })?);
    if plain.len() != MATERIAL_LEN {
        return Err(KmsError::InvalidArgument(format!(
            "imported key material must be {MATERIAL_LEN} bytes (256 bits), not {}",
            plain.len()
        )));
    }
    let mut material = Zeroizing::new([0u8; MATERIAL_LEN]);
    material.copy_from_slice(&plain);
    Ok(material)
}

/// A token as held: its key until it is spent or expires, then a
/// tombstone for one more TTL so a late caller hears "expired" rather
/// than "not found".
struct Pending {
    key: Option<WrappingKey>,
    expires_at: OffsetDateTime,
}

#[derive(Default)]
struct State {
    tokens: HashMap<String, Pending>,
    /// Key pairs being generated, counted against the cap.
    generating: usize,
}

impl State {
    /// Drops the keys of expired tokens and forgets old tombstones.
    fn purge(&mut self, now: OffsetDateTime, ttl: Duration) {
        self.tokens.retain(|_, p| now < p.expires_at + ttl);
        for p in self.tokens.values_mut() {
            if now >= p.expires_at {
                p.key = None;
            }
        }
    }

    fn pending(&self) -> usize {
        self.tokens.values().filter(|p| p.key.is_some()).count() + self.generating
    }
}

/// The pending import tokens of one kmsd.
pub struct ImportTokens {
    state: Mutex<State>,
    limits: ImportLimits,
    /// One key pair generated ahead, once imports are in use: RSA-3072
    /// generation takes about a second (more on a busy host), longer than
    /// a client's usual deadline should have to cover. Not a token: it
    /// belongs to nobody until issued, and is wiped on drop like any.
    spare: std::sync::Arc<Mutex<Spare>>,
}

#[derive(Default)]
struct Spare {
    key: Option<Generated>,
    refilling: bool,
}

impl std::fmt::Debug for ImportTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportTokens")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ImportTokens {
    /// No tokens yet.
    pub fn new(limits: ImportLimits) -> Self {
        Self {
            state: Mutex::default(),
            limits,
            spare: std::sync::Arc::default(),
        }
    }

    /// The spare key pair, or a fresh one; then a spare is made ready for
    /// the next call, in the background.
    async fn key_pair(&self) -> Result<Generated, KmsError> {
        let taken = lock(&self.spare).key.take();
        let pair = match taken {
            Some(pair) => pair,
            None => generate().await?,
        };
        let refill = {
            let mut spare = lock(&self.spare);
            let start = spare.key.is_none() && !spare.refilling;
            spare.refilling |= start;
            start
        };
        if refill {
            let spare = std::sync::Arc::clone(&self.spare);
            tokio::spawn(async move {
                let generated = generate().await.ok();
                let mut spare = lock(&spare);
                spare.refilling = false;
                if spare.key.is_none() {
                    spare.key = generated;
                }
            });
        }
        Ok(pair)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Issues a token with a fresh wrapping key, bound to `key_id` if one
    /// is named. Refused while `max_pending` tokens are pending. Its TTL
    /// runs from when the key is ready, not from the call, so a slow
    /// generation does not eat the caller's time.
    pub async fn issue(
        &self,
        clock: impl Fn() -> OffsetDateTime,
        key_id: Option<KeyId>,
    ) -> Result<ImportParameters, KmsError> {
        let now = clock();
        {
            let mut state = self.lock();
            state.purge(now, self.limits.token_ttl);
            if state.pending() >= self.limits.max_pending {
                return Err(KmsError::Overloaded(format!(
                    "{} import tokens are pending (limits.max_pending_imports); import with one or let them expire",
                    self.limits.max_pending
                )));
            }
            state.generating += 1;
        }
        let generated = self.key_pair().await;
        let now = clock();
        let mut state = self.lock();
        state.generating -= 1;
        let (private, public_key_der, public_key_pem) = generated?;
        let token = format!(
            "imp-{}",
            hex::encode(
                crypto::random_array::<16>().map_err(|e| KmsError::Internal(e.to_string()))?
            )
        );
        let expires_at = now + self.limits.token_ttl;
        state.tokens.insert(
            token.clone(),
            Pending {
                key: Some(WrappingKey {
                    private,
                    key_id: key_id.clone(),
                }),
                expires_at,
            },
        );
        Ok(ImportParameters {
            token,
            public_key_der,
            public_key_pem,
            expires_at,
            key_id,
        })
    }

    /// The key `token` was issued for, if it is pending and names one
    /// (without spending it).
    pub fn bound_key(&self, token: &str) -> Option<KeyId> {
        self.lock().tokens.get(token)?.key.as_ref()?.key_id.clone()
    }

    /// Spends `token`: its wrapping key, or why there is none. A token is
    /// spent whatever the import then does with it.
    pub fn redeem(&self, now: OffsetDateTime, token: &str) -> Result<WrappingKey, KmsError> {
        let mut state = self.lock();
        let Some(pending) = state.tokens.remove(token) else {
            return Err(KmsError::ImportTokenNotFound);
        };
        match pending.key {
            Some(key) if now < pending.expires_at => Ok(key),
            _ => Err(KmsError::ImportTokenExpired),
        }
    }

    /// Tokens pending now (for tests and status).
    #[cfg(test)]
    fn pending(&self, now: OffsetDateTime) -> usize {
        let mut state = self.lock();
        state.purge(now, self.limits.token_ttl);
        state.pending()
    }
}

/// What a caller does with the parameters (the CLI's `kmsd key import`,
/// and tests): wraps `material` under the DER public key of a token.
pub fn wrap_material(public_key_der: &[u8], material: &[u8]) -> Result<Vec<u8>, KmsError> {
    use rsa::pkcs8::DecodePublicKey;
    let public = RsaPublicKey::from_public_key_der(public_key_der)
        .map_err(|e| KmsError::InvalidArgument(format!("not an RSA public key: {e}")))?;
    public
        .encrypt(&mut rsa::rand_core::OsRng, Oaep::new::<Sha256>(), material)
        .map_err(|e| KmsError::InvalidArgument(format!("cannot wrap the key material: {e}")))
}

type Generated = (RsaPrivateKey, Vec<u8>, String);

/// A panic while holding one of these locks leaves consistent data (every
/// change is one insert, remove or take), so a poisoned lock is usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A fresh RSA key pair and its public half in DER and PEM, generated off
/// the async runtime (it takes a good part of a second).
async fn generate() -> Result<Generated, KmsError> {
    tokio::task::spawn_blocking(|| {
        let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, WRAPPING_KEY_BITS)
            .map_err(|e| KmsError::Internal(format!("import wrapping key generation: {e}")))?;
        let public = RsaPublicKey::from(&private);
        let der = public
            .to_public_key_der()
            .map_err(|e| KmsError::Internal(format!("import wrapping key encoding: {e}")))?
            .into_vec();
        let pem = public
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KmsError::Internal(format!("import wrapping key encoding: {e}")))?;
        Ok((private, der, pem))
    })
    .await
    .map_err(|e| KmsError::Internal(format!("import key generation task: {e}")))?
}

#[cfg(test)]
mod tests;
