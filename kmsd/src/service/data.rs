//! The data plane: data keys, small secrets, re-encryption.

use std::{sync::Arc, time::Instant};

use super::{Kms, MAX_PLAINTEXT_LEN, observe::Audit};
use crate::{
    alias::KeyRef,
    backend::{GeneratedKey, KeyBackend, Opened, Sealed},
    blob::{self, ParsedBlob},
    cache::{DataKeyCache, Hit, Lookup},
    context::EncryptionContext,
    error::KmsError,
    key_id::KeyId,
    lifecycle::{Active, Runtime},
    request::{Operation, RequestContext},
};

/// The result of ReEncrypt.
#[derive(Debug)]
pub struct ReEncrypted {
    /// The key that had sealed the source blob.
    pub source_key_id: KeyId,
    /// Its version.
    pub source_key_version: u32,
    /// The new blob.
    pub sealed: Sealed,
}

impl Kms {
    /// GenerateDataKey, and GenerateDataKeyWithoutPlaintext (`op`), which
    /// is the same work with the plaintext dropped by the caller.
    pub async fn generate_data_key(
        &self,
        cx: &RequestContext,
        op: Operation,
        key_id: Option<KeyRef>,
        context: &EncryptionContext,
    ) -> Result<GeneratedKey, KmsError> {
        let started = Instant::now();
        let mut audit = Audit {
            context: Some(context),
            ..Audit::default()
        };
        let result = async {
            let _admission = self.admit()?;
            let active = self.active()?;
            let key_id = self
                .resolve_ref(cx, op, &active, key_id, &mut audit)
                .await?;
            let generated = self
                .backend_call(
                    &active,
                    "generate_data_key",
                    active.backend.generate_data_key(&key_id, context),
                )
                .await?;
            audit.key_version = Some(generated.sealed.key_version);
            audit.intermediate_key = blob::sealed_intermediate_key_id(&generated.sealed.blob);
            Ok(generated)
        }
        .await;
        self.finish(cx, op, started, &audit, result).await
    }

    /// Encrypt.
    pub async fn encrypt(
        &self,
        cx: &RequestContext,
        key_id: Option<KeyRef>,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Sealed, KmsError> {
        let started = Instant::now();
        let mut audit = Audit {
            context: Some(context),
            ..Audit::default()
        };
        let result = async {
            let _admission = self.admit()?;
            if plaintext.len() > MAX_PLAINTEXT_LEN {
                return Err(KmsError::InvalidArgument(format!(
                    "plaintext is {} bytes; Encrypt takes at most {MAX_PLAINTEXT_LEN} (use GenerateDataKey for bulk data)",
                    plaintext.len()
                )));
            }
            let active = self.active()?;
            let key_id = self
                .resolve_ref(cx, Operation::Encrypt, &active, key_id, &mut audit)
                .await?;
            let sealed = self
                .backend_call(
                    &active,
                    "encrypt",
                    active.backend.encrypt(&key_id, plaintext, context),
                )
                .await?;
            audit.key_version = Some(sealed.key_version);
            audit.intermediate_key = blob::sealed_intermediate_key_id(&sealed.blob);
            Ok(sealed)
        }
        .await;
        self.finish(cx, Operation::Encrypt, started, &audit, result)
            .await
    }

    /// Decrypt.
    pub async fn decrypt(
        &self,
        cx: &RequestContext,
        blob: &[u8],
        context: &EncryptionContext,
        expected_key_id: Option<&KeyRef>,
    ) -> Result<Opened, KmsError> {
        let started = Instant::now();
        let mut audit = Audit {
            context: Some(context),
            ..Audit::default()
        };
        let result = async {
            let _admission = self.admit()?;
            let runtime = self.inner.lifecycle.running()?;
            let expected = self
                .resolve_expected(
                    cx,
                    Operation::Decrypt,
                    &runtime,
                    expected_key_id,
                    &mut audit,
                )
                .await?;
            let parsed =
                self.parse_for(cx, Operation::Decrypt, blob, expected.as_ref(), &mut audit)?;
            self.open(&runtime, &parsed, blob, context, &mut audit.offline)
                .await
        }
        .await;
        self.finish(cx, Operation::Decrypt, started, &audit, result)
            .await
    }

    /// ReEncrypt: open, then seal under the destination key (the blob's own
    /// key, newest version, when none is named) and context (the source
    /// context when none is given). The plaintext stays in this process.
    pub async fn re_encrypt(
        &self,
        cx: &RequestContext,
        blob: &[u8],
        source_context: &EncryptionContext,
        expected_source_key_id: Option<&KeyRef>,
        destination_key_id: Option<KeyRef>,
        destination_context: Option<&EncryptionContext>,
    ) -> Result<ReEncrypted, KmsError> {
        let started = Instant::now();
        let mut audit = Audit {
            context: Some(source_context),
            ..Audit::default()
        };
        let result = async {
            let _admission = self.admit()?;
            let runtime = self.inner.lifecycle.running()?;
            let Some(active) = runtime.active.clone() else {
                return Err(KmsError::NotRunning(runtime.state.as_str()));
            };
            let expected = self
                .resolve_expected(
                    cx,
                    Operation::ReEncrypt,
                    &runtime,
                    expected_source_key_id,
                    &mut audit,
                )
                .await?;
            let parsed = self.parse_for(
                cx,
                Operation::ReEncrypt,
                blob,
                expected.as_ref(),
                &mut audit,
            )?;
            let destination = self
                .resolve_destination(cx, &active, destination_key_id, &parsed, &mut audit)
                .await?;
            let opened = self
                .open(&runtime, &parsed, blob, source_context, &mut audit.offline)
                .await?;
            let context = destination_context.unwrap_or(source_context);
            let sealed = self
                .backend_call(
                    &active,
                    "encrypt",
                    active
                        .backend
                        .encrypt(&destination, opened.plaintext.expose_secret(), context),
                )
                .await?;
            audit.destination_intermediate_key = blob::sealed_intermediate_key_id(&sealed.blob);
            Ok(ReEncrypted {
                source_key_id: opened.key_id,
                source_key_version: opened.key_version,
                sealed,
            })
        }
        .await;
        self.finish(cx, Operation::ReEncrypt, started, &audit, result)
            .await
    }

    /// Parses a blob, checks the expected key and the caller's policy for
    /// the key it names.
    fn parse_for<'b>(
        &self,
        cx: &RequestContext,
        op: Operation,
        blob: &'b [u8],
        expected_key_id: Option<&KeyId>,
        audit: &mut Audit<'_>,
    ) -> Result<ParsedBlob<'b>, KmsError> {
        let parsed = blob::parse(blob)?;
        audit.key_id = Some(parsed.header.key_id.clone());
        audit.key_version = Some(parsed.header.key_version);
        audit.intermediate_key = blob::intermediate_key_id(&parsed);
        if let Some(expected) = expected_key_id
            && *expected != parsed.header.key_id
        {
            return Err(KmsError::IncorrectKey {
                expected: expected.clone(),
                actual: parsed.header.key_id,
            });
        }
        self.authorize(cx, op, Some(&parsed.header.key_id))?;
        Ok(parsed)
    }

    /// Opens a blob, through the data-key cache when its backend is remote.
    ///
    /// A cache hit is served only if the backend that opened it still lets
    /// the key be used (see `cache.rs`). If that cannot be checked because
    /// the backend is unreachable, a fresh entry is served all the same (as
    /// it was before the outage) and the audit line says `offline`.
    async fn open(
        &self,
        runtime: &Runtime,
        parsed: &ParsedBlob<'_>,
        blob: &[u8],
        context: &EncryptionContext,
        offline: &mut bool,
    ) -> Result<Opened, KmsError> {
        // A local unwrap is an in-memory computation, cheaper than the cache
        // lookup and without a second copy of the plaintext key.
        if !parsed.header.backend.is_remote() {
            return self
                .open_uncached(runtime, parsed, context)
                .await
                .map(|(opened, _)| opened);
        }
        let cache_key = DataKeyCache::key(blob, context.canonical_bytes());
        let stale = match self.inner.cache.get(&cache_key) {
            Lookup::Fresh(Hit {
                opened,
                origin: Some(origin),
            }) => match origin.backend.key_usable(&opened.key_id).await {
                Ok(()) => return Ok(opened),
                Err(KmsError::BackendUnavailable { .. }) => {
                    *offline = true;
                    return Ok(opened);
                }
                Err(e) => {
                    self.inner.cache.invalidate_key(&opened.key_id);
                    return Err(e);
                }
            },
            Lookup::Stale(hit) => Some(hit.opened),
            Lookup::Fresh(_) | Lookup::Miss => None,
        };
        match self.open_uncached(runtime, parsed, context).await {
            Ok((opened, origin)) => {
                self.inner
                    .cache
                    .insert(cache_key, &opened, Arc::downgrade(&origin));
                Ok(opened)
            }
            Err(KmsError::BackendUnavailable { .. }) if stale.is_some() => {
                *offline = true;
                tracing::warn!(key_id = %parsed.header.key_id, "backend unreachable: serving a cached data key (offline window)");
                stale.ok_or(KmsError::Internal("stale entry vanished".into()))
            }
            Err(e) => Err(e),
        }
    }

    /// Opens a blob with the active backend or, failing that, with the
    /// decrypt-only backends kept by reconfigurations, newest first; returns
    /// the backend that opened it too.
    ///
    /// Two stores of the same kind may both hold a key of the blob's id
    /// (say `default` in two key directories), so a candidate that cannot
    /// open the blob does not end the search; the first success wins. If
    /// none succeeds, the answer is the first error that is not "no such
    /// key", so a disabled key or a wrong context is reported as such.
    async fn open_uncached(
        &self,
        runtime: &Runtime,
        parsed: &ParsedBlob<'_>,
        context: &EncryptionContext,
    ) -> Result<(Opened, Arc<Active>), KmsError> {
        let (mut first_error, mut not_found, mut tried) = (None, None, false);
        for candidate in runtime.active.iter().chain(runtime.previous.iter()) {
            if candidate.kind() != parsed.header.backend {
                continue;
            }
            tried = true;
            let result = self
                .backend_call(
                    candidate,
                    "decrypt",
                    candidate.backend.decrypt(parsed, context),
                )
                .await;
            match result {
                Ok(opened) => return Ok((opened, Arc::clone(candidate))),
                Err(e @ (KmsError::KeyNotFound(_) | KmsError::KeyVersionNotFound { .. })) => {
                    not_found.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if !tried {
            return Err(KmsError::BackendNotConfigured(
                parsed.header.backend.as_str(),
            ));
        }
        Err(first_error
            .or(not_found)
            .unwrap_or_else(|| KmsError::KeyNotFound(parsed.header.key_id.clone())))
    }
}
