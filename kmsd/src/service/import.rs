//! Import of key material: GetParametersForImport and ImportKey
//! (`crate::import` holds the tokens and the RSA unwrap).

use std::{collections::BTreeMap, time::Instant};

use super::{
    Kms,
    keys::{random_key_id, validate_new_key},
    observe::Audit,
};
use crate::{
    backend::{KeyBackend, KeyMetadata, NewKey},
    error::KmsError,
    import::ImportParameters,
    key_id::KeyId,
    request::{Operation, RequestContext},
};

/// An ImportKey request.
#[derive(Debug)]
pub struct ImportRequest {
    /// From GetParametersForImport.
    pub import_token: String,
    /// The key to create; empty: the one the token was issued for, or a
    /// random id.
    pub key_id: Option<KeyId>,
    /// The 32 bytes of material, RSA-OAEP-SHA256 encrypted under the
    /// token's public key.
    pub encrypted_key_material: Vec<u8>,
    /// Free text.
    pub description: String,
    /// Free labels.
    pub tags: BTreeMap<String, String>,
}

impl Kms {
    /// GetParametersForImport: a single-use import token and its wrapping
    /// key, bound to `key_id` if one is named.
    pub async fn get_parameters_for_import(
        &self,
        cx: &RequestContext,
        key_id: Option<KeyId>,
    ) -> Result<ImportParameters, KmsError> {
        let started = Instant::now();
        let audit = Audit {
            key_id: key_id.clone(),
            ..Audit::default()
        };
        let result = async {
            let _admission = self.admit()?;
            self.active()?;
            self.authorize(cx, Operation::GetParametersForImport, key_id.as_ref())?;
            let clock = || self.inner.clock.now();
            self.inner.imports.issue(clock, key_id.clone()).await
        }
        .await;
        self.finish(
            cx,
            Operation::GetParametersForImport,
            started,
            &audit,
            result,
        )
        .await
    }

    /// ImportKey: creates a key whose version 1 is the caller's material.
    /// The token is spent by any authorised, well-formed call that names
    /// it, whatever the outcome (crate::import says why).
    pub async fn import_key(
        &self,
        cx: &RequestContext,
        request: ImportRequest,
    ) -> Result<KeyMetadata, KmsError> {
        let started = Instant::now();
        let key_id = match request.key_id.clone() {
            Some(id) => Ok(id),
            None => match self.inner.imports.bound_key(&request.import_token) {
                Some(id) => Ok(id),
                None => random_key_id(),
            },
        };
        let audit = Audit {
            key_id: key_id.as_ref().ok().cloned(),
            ..Audit::default()
        };
        let result = async {
            let key_id = key_id?;
            let _admission = self.admit()?;
            let active = self.active()?;
            self.authorize(cx, Operation::ImportKey, Some(&key_id))?;
            validate_new_key(&key_id, &request.description, &request.tags)?;
            let wrapping = self
                .inner
                .imports
                .redeem(self.inner.clock.now(), &request.import_token)?;
            if let Some(bound) = wrapping.key_id()
                && *bound != key_id
            {
                return Err(KmsError::InvalidArgument(format!(
                    "the import token was issued for key {bound}, not {key_id}"
                )));
            }
            let material = wrapping.unwrap(request.encrypted_key_material).await?;
            let new = NewKey {
                key_id,
                description: request.description,
                tags: request.tags,
            };
            self.backend_call(
                &active,
                "import_key",
                active.backend.import_key(new, material),
            )
            .await
        }
        .await;
        self.inner.metrics.key_import(import_result(&result));
        self.finish(cx, Operation::ImportKey, started, &audit, result)
            .await
    }
}

/// The `result` label of `kmsd_key_imports_total`.
fn import_result<T>(result: &Result<T, KmsError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(KmsError::ImportTokenNotFound) => "token_not_found",
        Err(KmsError::ImportTokenExpired) => "token_expired",
        Err(
            KmsError::InvalidArgument(_)
            | KmsError::InvalidKeyId { .. }
            | KmsError::KeyAlreadyExists(_),
        ) => "invalid",
        Err(KmsError::PermissionDenied | KmsError::ReservedKeyId(_)) => "denied",
        Err(_) => "error",
    }
}
