//! Sealing and opening data keys: directly through Transit, or under an
//! intermediate key (see `intermediate`).

use std::{sync::Arc, time::Duration};

use super::{REVALIDATE_AFTER, VaultBackend, VaultError, has_version, intermediate, transit};
use crate::{
    backend::{KeyMetadata, Opened, Sealed},
    blob::{self, BackendKind, BlobHeader, ParsedBlob, VaultIntermediatePayload},
    context::EncryptionContext,
    error::KmsError,
    key_id::KeyId,
};

impl VaultBackend {
    pub(super) async fn seal(
        &self,
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
        let out = match &self.intermediates {
            Some(intermediates) => {
                let intermediate = intermediates
                    .for_wrap(&self.transit, key_id, key_version)
                    .await;
                let intermediate = self.refused_seal(key_id, intermediate).await?;
                let out = header.encode(200 + plaintext.len());
                intermediate.seal_after(out, plaintext, context)?
            }
            None => {
                let mut out = header.encode(40 + plaintext.len().div_ceil(3) * 4);
                let aad = blob::aad(&out, context);
                let ciphertext = self
                    .transit
                    .encrypt(key_id, plaintext, &aad, key_version)
                    .await;
                let ciphertext = self.refused_seal(key_id, ciphertext).await?;
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
        &self,
        key_id: &KeyId,
        result: Result<T, VaultError>,
    ) -> Result<T, KmsError> {
        match result {
            Ok(value) => Ok(value),
            Err(VaultError::BadRequest { op, message }) => {
                self.reload(key_id).await?;
                Err(KmsError::Internal(format!("Vault refused {op}: {message}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Transit answers 400 when a ciphertext does not authenticate (another
    /// context, changed bytes), when the version does not exist, and when
    /// the key was destroyed since it was cached: tell them apart.
    pub(super) async fn refused_open(&self, key_id: &KeyId, version: u32) -> KmsError {
        let current = match self.lookup(key_id, REVALIDATE_AFTER).await {
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
    pub(super) async fn open_intermediate(
        &self,
        blob: &ParsedBlob<'_>,
        payload: &VaultIntermediatePayload<'_>,
        context: &EncryptionContext,
    ) -> Result<Opened, KmsError> {
        let header = &blob.header;
        let key_id = &header.key_id;
        if transit::ciphertext_version(payload.wrapped) != Some(header.key_version) {
            return Err(KmsError::InvalidCiphertext);
        }
        self.usable(key_id).await?;
        let cached = self
            .intermediates
            .as_ref()
            .and_then(|i| i.cached(key_id, payload.wrapped.as_bytes()));
        let intermediate = match cached {
            Some(intermediate) => intermediate,
            None => {
                let ttl = self
                    .intermediates
                    .as_ref()
                    .map_or(Duration::ZERO, |i| i.ttl());
                match intermediate::unwrap(
                    &self.transit,
                    key_id,
                    header.key_version,
                    payload.wrapped,
                    ttl,
                )
                .await
                {
                    Ok(opened) => match &self.intermediates {
                        Some(intermediates) => intermediates.remember(opened),
                        None => Arc::new(opened),
                    },
                    Err(VaultError::BadRequest { .. }) => {
                        return Err(self.refused_open(key_id, header.key_version).await);
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
}
