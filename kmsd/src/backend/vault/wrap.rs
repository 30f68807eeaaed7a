//! Sealing and opening data keys: directly through Transit, or under an
//! intermediate key (see `intermediate`).

use std::{sync::Arc, time::Duration};

use super::{
    error::VaultError,
    intermediate,
    metadata::{Keys, has_version},
    transit,
};
use crate::{
    backend::{KeyMetadata, Opened, Sealed},
    blob::{self, BackendKind, BlobHeader, ParsedBlob, VaultIntermediatePayload},
    context::EncryptionContext,
    error::KmsError,
    key_id::KeyId,
};

/// When Transit refuses a blob, a cached entry older than this is re-read
/// to tell a bad blob from a key destroyed or a version unknown (another
/// kmsd may have changed the key). Younger entries are trusted, so a flood
/// of bad blobs cannot become a flood of Vault reads.
const REVALIDATE_AFTER: Duration = Duration::from_secs(1);

/// Seals `plaintext` under the key's current version: under an
/// intermediate key when that mode is on, else through Transit.
pub(super) async fn seal(
    keys: &Keys,
    key_id: &KeyId,
    meta: &KeyMetadata,
    plaintext: &[u8],
    context: &EncryptionContext,
) -> Result<Sealed, KmsError> {
    let key_version = meta.current_version;
    let header = BlobHeader {
        backend: BackendKind::Vault,
        key_id: key_id.clone(),
        key_version,
    };
    let out = match &keys.intermediates {
        Some(intermediates) => {
            let intermediate = intermediates
                .for_wrap(&keys.transit, key_id, key_version)
                .await;
            let intermediate = refused_seal(keys, key_id, intermediate).await?;
            let out = header.encode(200 + plaintext.len());
            intermediate.seal_after(out, plaintext, context)?
        }
        None => {
            let mut out = header.encode(40 + plaintext.len().div_ceil(3) * 4);
            let aad = blob::aad(&out, context);
            let ciphertext = keys
                .transit
                .encrypt(key_id, plaintext, &aad, key_version)
                .await;
            let ciphertext = refused_seal(keys, key_id, ciphertext).await?;
            if transit::ciphertext_version(&ciphertext) != Some(key_version) {
                return Err(KmsError::Internal(format!(
                    "Transit sealed under another version than the requested {key_version} of {key_id}"
                )));
            }
            out.extend_from_slice(ciphertext.as_bytes());
            out
        }
    };
    if out.len() > blob::MAX_BLOB_LEN {
        return Err(KmsError::Internal(
            "the sealed blob outgrew the format's limit".into(),
        ));
    }
    Ok(Sealed {
        blob: out,
        key_id: key_id.clone(),
        key_version,
    })
}

/// Maps Transit's refusal to seal: the key (or version) is gone since
/// it was cached, so the cache is refreshed for the next request.
async fn refused_seal<T>(
    keys: &Keys,
    key_id: &KeyId,
    result: Result<T, VaultError>,
) -> Result<T, KmsError> {
    match result {
        Ok(value) => Ok(value),
        Err(VaultError::BadRequest { op, message }) => {
            keys.reload(key_id).await?;
            Err(KmsError::Internal(format!("Vault refused {op}: {message}")))
        }
        Err(e) => Err(e.into()),
    }
}

/// Transit answers 400 when a ciphertext does not authenticate (another
/// context, changed bytes), when the version does not exist, and when
/// the key was destroyed since it was cached: tell them apart.
async fn refused_open(keys: &Keys, key_id: &KeyId, version: u32) -> KmsError {
    let current = match keys.lookup(key_id, REVALIDATE_AFTER).await {
        Ok(current) => current,
        Err(e) => return e,
    };
    if let Err(e) = current.meta.check_usable() {
        return e;
    }
    if has_version(&current.meta, version) {
        KmsError::InvalidCiphertext
    } else {
        KmsError::KeyVersionNotFound {
            key_id: key_id.clone(),
            version,
        }
    }
}

/// Decrypts a blob sealed under an intermediate key.
async fn open_intermediate(
    keys: &Keys,
    blob: &ParsedBlob<'_>,
    payload: &VaultIntermediatePayload<'_>,
    context: &EncryptionContext,
) -> Result<Opened, KmsError> {
    let header = &blob.header;
    let key_id = &header.key_id;
    if transit::ciphertext_version(payload.wrapped) != Some(header.key_version) {
        return Err(KmsError::InvalidCiphertext);
    }
    keys.usable(key_id).await?;
    let cached = keys
        .intermediates
        .as_ref()
        .and_then(|i| i.cached(key_id, payload.wrapped.as_bytes()));
    let intermediate = match cached {
        Some(intermediate) => intermediate,
        None => {
            let ttl = keys
                .intermediates
                .as_ref()
                .map_or(Duration::ZERO, |i| i.ttl());
            match intermediate::unwrap(
                &keys.transit,
                key_id,
                header.key_version,
                payload.wrapped,
                ttl,
            )
            .await
            {
                Ok(opened) => match &keys.intermediates {
                    Some(intermediates) => intermediates.remember(opened),
                    None => Arc::new(opened),
                },
                Err(VaultError::BadRequest { .. }) => {
                    return Err(refused_open(keys, key_id, header.key_version).await);
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    Ok(Opened {
        plaintext: intermediate.open(blob, payload, context)?,
        key_id: key_id.clone(),
        key_version: header.key_version,
    })
}

/// Opens a blob: under an intermediate key, or through Transit. Transit's
/// refusal is told apart by [`refused_open`].
pub(super) async fn open(
    keys: &Keys,
    blob: &ParsedBlob<'_>,
    context: &EncryptionContext,
) -> Result<Opened, KmsError> {
    if let Some(payload) = VaultIntermediatePayload::parse(blob.payload)? {
        return open_intermediate(keys, blob, &payload, context).await;
    }
    let header = &blob.header;
    let key_id = &header.key_id;
    // The version sits outside the explicit AAD; Transit picks the key
    // version from its own prefix, so the two must agree.
    let ciphertext = std::str::from_utf8(blob.payload)
        .ok()
        .filter(|ct| transit::ciphertext_version(ct) == Some(header.key_version))
        .ok_or(KmsError::InvalidCiphertext)?;
    keys.usable(key_id).await?;
    let aad = blob::aad(blob.header_bytes, context);
    match keys.transit.decrypt(key_id, ciphertext, &aad).await {
        // A version this kmsd does not know yet was made by a rotation
        // through another kmsd: Transit knows it, which is enough.
        Ok(plaintext) => Ok(Opened {
            plaintext,
            key_id: key_id.clone(),
            key_version: header.key_version,
        }),
        Err(VaultError::BadRequest { .. }) => {
            Err(refused_open(keys, key_id, header.key_version).await)
        }
        Err(e) => Err(e.into()),
    }
}
