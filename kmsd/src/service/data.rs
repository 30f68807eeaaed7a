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

/// What GenerateDataKey and Encrypt return: a result with a blob sealed
/// under a key version, which the audit line records.
trait HasSealed {
    fn sealed(&self) -> &Sealed;
}

impl HasSealed for GeneratedKey {
    fn sealed(&self) -> &Sealed {
        &self.sealed
    }
}

impl HasSealed for Sealed {
    fn sealed(&self) -> &Sealed {
        self
    }
}

impl Kms {
    /// Runs a data-plane operation: admission, then `body` (which resolves
    /// and authorises the key, calls the backend and fills in the audit line
    /// as it learns), then the audit line, with `context`, and metrics.
    async fn on_data<T>(
        &self,
        cx: &RequestContext,
        op: Operation,
        context: &EncryptionContext,
        body: impl AsyncFnOnce(&mut Audit) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let started = Instant::now();
        let mut audit = Audit::default();
        let result = async {
            let _admission = self.admit()?;
            body(&mut audit).await
        }
        .await;
        self.finish_in_context(cx, op, started, &audit, Some(context), result)
            .await
    }

    /// The sealing half of GenerateDataKey and Encrypt: resolves and
    /// authorises the key, runs `call` against the active backend and
    /// records the version and intermediate key that sealed the result.
    async fn seal_with<T>(
        &self,
        cx: &RequestContext,
        op: Operation,
        key_id: Option<KeyRef>,
        audit: &mut Audit,
        backend_operation: &'static str,
        call: impl AsyncFnOnce(&Active, &KeyId) -> Result<T, KmsError>,
    ) -> Result<T, KmsError>
    where
        T: HasSealed,
    {
        let active = self.active()?;
        let key_id = self.resolve_ref(cx, op, &active, key_id, audit).await?;
        let result = self
            .backend_call(&active, backend_operation, call(&active, &key_id))
            .await?;
        let sealed = result.sealed();
        self.record_wrap(&sealed.key_id, sealed.key_version);
        audit.key_version = Some(sealed.key_version);
        audit.intermediate_key = blob::sealed_intermediate_key_id(&sealed.blob);
        Ok(result)
    }

    /// Takes the running view, resolves the key a request expects (if it
    /// names one), then parses the blob and checks it against that key and
    /// the caller's policy: the start of Decrypt and ReEncrypt.
    async fn running_parsed<'b>(
        &self,
        cx: &RequestContext,
        op: Operation,
        blob: &'b [u8],
        expected_key_id: Option<&KeyRef>,
        audit: &mut Audit,
    ) -> Result<(Arc<Runtime>, ParsedBlob<'b>), KmsError> {
        let runtime = self.inner.lifecycle.running()?;
        let expected = self
            .resolve_expected(cx, op, &runtime, expected_key_id, audit)
            .await?;
        let parsed = self.parse_for(cx, op, blob, expected.as_ref(), audit)?;
        Ok((runtime, parsed))
    }

    /// GenerateDataKey, and GenerateDataKeyWithoutPlaintext (`op`), which
    /// is the same work with the plaintext dropped by the caller.
    pub async fn generate_data_key(
        &self,
        cx: &RequestContext,
        op: Operation,
        key_id: Option<KeyRef>,
        context: &EncryptionContext,
    ) -> Result<GeneratedKey, KmsError> {
        self.on_data(cx, op, context, async |audit| {
            self.seal_with(
                cx,
                op,
                key_id,
                audit,
                "generate_data_key",
                async |active, key_id| active.backend.generate_data_key(key_id, context).await,
            )
            .await
        })
        .await
    }

    /// Encrypt.
    pub async fn encrypt(
        &self,
        cx: &RequestContext,
        key_id: Option<KeyRef>,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Sealed, KmsError> {
        let op = Operation::Encrypt;
        self.on_data(cx, op, context, async |audit| {
            if plaintext.len() > MAX_PLAINTEXT_LEN {
                return Err(KmsError::InvalidArgument(format!(
                    "plaintext is {} bytes; Encrypt takes at most {MAX_PLAINTEXT_LEN} (use GenerateDataKey for bulk data)",
                    plaintext.len()
                )));
            }
            self.seal_with(
                cx,
                op,
                key_id,
                audit,
                "encrypt",
                async |active, key_id| active.backend.encrypt(key_id, plaintext, context).await,
            )
            .await
        })
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
        let op = Operation::Decrypt;
        self.on_data(cx, op, context, async |audit| {
            let (runtime, parsed) = self
                .running_parsed(cx, op, blob, expected_key_id, audit)
                .await?;
            let opened = self
                .open(&runtime, &parsed, blob, context, &mut audit.offline)
                .await?;
            self.record_decrypt(&opened.key_id, opened.key_version);
            Ok(opened)
        })
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
        let op = Operation::ReEncrypt;
        self.on_data(cx, op, source_context, async |audit| {
            let (runtime, parsed) = self
                .running_parsed(cx, op, blob, expected_source_key_id, audit)
                .await?;
            let Some(active) = runtime.active.clone() else {
                return Err(KmsError::NotRunning(runtime.state.as_str()));
            };
            let destination = self
                .resolve_destination(cx, &active, destination_key_id, &parsed, audit)
                .await?;
            let opened = self
                .open(&runtime, &parsed, blob, source_context, &mut audit.offline)
                .await?;
            self.record_decrypt(&opened.key_id, opened.key_version);
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
            self.record_wrap(&sealed.key_id, sealed.key_version);
            audit.destination_intermediate_key = blob::sealed_intermediate_key_id(&sealed.blob);
            Ok(ReEncrypted {
                source_key_id: opened.key_id,
                source_key_version: opened.key_version,
                sealed,
            })
        })
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
        audit: &mut Audit,
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
