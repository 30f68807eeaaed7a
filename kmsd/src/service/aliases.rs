//! Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases, and the
//! resolution of `alias/<name>` wherever a key id is accepted.
//!
//! Authorisation is on the resolved key, as in AWS KMS; a policy's key
//! pattern `alias/<pattern>` also matches a request made through a
//! matching alias ([`Policy::allows_via`](crate::policy::Policy::allows_via)).
//! Changing an alias needs the operation on the keys involved: the target
//! for CreateAlias and DeleteAlias, the old and the new target for
//! UpdateAlias (as AWS asks for both).

use std::time::Instant;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64URL};

use super::{DEFAULT_PAGE_SIZE, Kms, MAX_PAGE_SIZE, observe::Audit};
use crate::{
    alias::{AliasEntry, AliasName, AliasWrite, KeyRef},
    backend::{KeyBackend, KeyMetadata, KeyState, MetadataStore},
    blob::ParsedBlob,
    error::KmsError,
    key_id::KeyId,
    lifecycle::{Active, Runtime},
    request::{Operation, RequestContext},
};

/// One page of aliases.
#[derive(Debug)]
pub struct AliasPage {
    /// The aliases, by name.
    pub aliases: Vec<AliasEntry>,
    /// The token of the next page; `None` on the last.
    pub next_page_token: Option<String>,
}

impl Kms {
    /// Policy for `op` on `key_id`, named through `alias` if it was.
    fn authorize_via(
        &self,
        cx: &RequestContext,
        op: Operation,
        key_id: &KeyId,
        alias: Option<&AliasName>,
    ) -> Result<(), KmsError> {
        if alias.is_none() {
            return self.authorize(cx, op, Some(key_id));
        }
        if key_id.is_reserved() && cx.caller != crate::request::Identity::Internal {
            return Err(KmsError::ReservedKeyId(key_id.clone()));
        }
        if self
            .inner
            .policy
            .load()
            .allows_via(&cx.caller, op, Some(key_id), alias)
        {
            Ok(())
        } else {
            Err(KmsError::PermissionDenied)
        }
    }

    /// The key an alias points at. A caller who may not make `op` at all
    /// learns nothing about which aliases exist.
    async fn resolve_alias(
        &self,
        cx: &RequestContext,
        op: Operation,
        active: &Active,
        alias: &AliasName,
    ) -> Result<KeyId, KmsError> {
        let resolved = self
            .backend_call(active, "resolve_alias", active.backend.resolve_alias(alias))
            .await;
        match resolved {
            Err(KmsError::AliasNotFound(_))
                if !self.inner.policy.load().allows(&cx.caller, op, None) =>
            {
                Err(KmsError::PermissionDenied)
            }
            other => other,
        }
    }

    /// The key a data-plane request names (its id, an alias's target, or
    /// the default key), authorised for `op` and recorded in `audit`.
    pub(super) async fn resolve_ref(
        &self,
        cx: &RequestContext,
        op: Operation,
        active: &Active,
        key: Option<KeyRef>,
        audit: &mut Audit,
    ) -> Result<KeyId, KmsError> {
        let (key_id, alias) = match key {
            Some(KeyRef::Alias(alias)) => {
                audit.alias = Some(alias.clone());
                (
                    self.resolve_alias(cx, op, active, &alias).await?,
                    Some(alias),
                )
            }
            Some(KeyRef::Key(key_id)) => (key_id, None),
            None => (
                active
                    .default_key_id
                    .clone()
                    .ok_or(KmsError::NoDefaultKey)?,
                None,
            ),
        };
        audit.key_id = Some(key_id.clone());
        self.authorize_via(cx, op, &key_id, alias.as_ref())?;
        Ok(key_id)
    }

    /// The key a Decrypt's `expected_key_id` (or ReEncrypt's expected
    /// source) names: an alias stands for the key it points at now, as in
    /// AWS KMS, so a blob sealed before a retarget no longer matches it.
    pub(super) async fn resolve_expected(
        &self,
        cx: &RequestContext,
        op: Operation,
        runtime: &Runtime,
        expected: Option<&KeyRef>,
        audit: &mut Audit,
    ) -> Result<Option<KeyId>, KmsError> {
        match expected {
            None => Ok(None),
            Some(KeyRef::Key(key_id)) => Ok(Some(key_id.clone())),
            Some(KeyRef::Alias(alias)) => {
                audit.alias = Some(alias.clone());
                let Some(active) = &runtime.active else {
                    return Err(KmsError::NotRunning(runtime.state.as_str()));
                };
                self.resolve_alias(cx, op, active, alias).await.map(Some)
            }
        }
    }

    /// ReEncrypt's destination: the named key or alias, else the blob's
    /// own key.
    pub(super) async fn resolve_destination(
        &self,
        cx: &RequestContext,
        active: &Active,
        destination: Option<KeyRef>,
        parsed: &ParsedBlob<'_>,
        audit: &mut Audit,
    ) -> Result<KeyId, KmsError> {
        let (key_id, alias) = match destination {
            Some(KeyRef::Alias(alias)) => {
                audit.alias = Some(alias.clone());
                let key_id = self
                    .resolve_alias(cx, Operation::ReEncrypt, active, &alias)
                    .await?;
                (key_id, Some(alias))
            }
            Some(KeyRef::Key(key_id)) => (key_id, None),
            None => (parsed.header.key_id.clone(), None),
        };
        audit.destination_key_id = Some(key_id.clone());
        self.authorize_via(cx, Operation::ReEncrypt, &key_id, alias.as_ref())?;
        Ok(key_id)
    }

    /// DescribeKey of a key named by id or alias.
    pub async fn describe_key_ref(
        &self,
        cx: &RequestContext,
        key: KeyRef,
    ) -> Result<KeyMetadata, KmsError> {
        let alias = match key {
            KeyRef::Key(key_id) => return self.describe_key(cx, &key_id).await,
            KeyRef::Alias(alias) => alias,
        };
        let started = Instant::now();
        let mut audit = Audit {
            alias: Some(alias.clone()),
            ..Audit::default()
        };
        let result = async {
            let _admission = self.admit()?;
            let active = self.active()?;
            let key_id = self
                .resolve_alias(cx, Operation::DescribeKey, &active, &alias)
                .await?;
            audit.key_id = Some(key_id.clone());
            self.authorize_via(cx, Operation::DescribeKey, &key_id, Some(&alias))?;
            self.backend_call(
                &active,
                "describe_key",
                active.backend.describe_key(&key_id),
            )
            .await
        }
        .await;
        self.finish(cx, Operation::DescribeKey, started, &audit, result)
            .await
            .map(|meta| self.with_usage(meta))
    }

    /// CreateAlias (`write` Create) and UpdateAlias (`write` Update). The
    /// target must exist and not be pending deletion.
    pub async fn put_alias(
        &self,
        cx: &RequestContext,
        alias: AliasName,
        target: KeyId,
        write: AliasWrite,
    ) -> Result<AliasEntry, KmsError> {
        let op = match write {
            AliasWrite::Create => Operation::CreateAlias,
            AliasWrite::Update => Operation::UpdateAlias,
        };
        let started = Instant::now();
        let mut audit = Audit {
            alias: Some(alias.clone()),
            key_id: Some(target.clone()),
            ..Audit::default()
        };
        let result = async {
            let _admission = self.admit()?;
            let active = self.active()?;
            if write == AliasWrite::Update {
                // The key the alias leaves must allow it too.
                let old = self.resolve_alias(cx, op, &active, &alias).await?;
                audit.key_id = Some(old.clone());
                audit.destination_key_id = Some(target.clone());
                self.authorize_via(cx, op, &old, Some(&alias))?;
            }
            self.authorize_via(cx, op, &target, Some(&alias))?;
            let meta = self
                .backend_call(
                    &active,
                    "describe_key",
                    active.backend.describe_key(&target),
                )
                .await?;
            if meta.state == KeyState::PendingDeletion {
                return Err(KmsError::InvalidStateTransition {
                    key_id: target.clone(),
                    state: meta.state.as_str(),
                    action: "point an alias at",
                });
            }
            self.backend_call(
                &active,
                "put_alias",
                active.backend.put_alias(&alias, &target, write),
            )
            .await
        }
        .await;
        if result.is_ok() {
            self.forget_alias_everywhere(&alias);
        }
        self.finish(cx, op, started, &audit, result).await
    }

    /// DeleteAlias. The target key is not touched.
    pub async fn delete_alias(
        &self,
        cx: &RequestContext,
        alias: AliasName,
    ) -> Result<(), KmsError> {
        let started = Instant::now();
        let mut audit = Audit {
            alias: Some(alias.clone()),
            ..Audit::default()
        };
        let op = Operation::DeleteAlias;
        let result = async {
            let _admission = self.admit()?;
            let active = self.active()?;
            let target = self.resolve_alias(cx, op, &active, &alias).await?;
            audit.key_id = Some(target.clone());
            self.authorize_via(cx, op, &target, Some(&alias))?;
            self.backend_call(&active, "delete_alias", active.backend.delete_alias(&alias))
                .await
        }
        .await;
        if result.is_ok() {
            self.forget_alias_everywhere(&alias);
        }
        self.finish(cx, op, started, &audit, result).await
    }

    /// ListAliases: by name, only those whose target the caller may list
    /// aliases of; with `key_id`, only that key's.
    pub async fn list_aliases(
        &self,
        cx: &RequestContext,
        key_id: Option<KeyId>,
        page_size: u32,
        page_token: &str,
    ) -> Result<AliasPage, KmsError> {
        let started = Instant::now();
        let audit = Audit {
            key_id: key_id.clone(),
            ..Audit::default()
        };
        let op = Operation::ListAliases;
        let result = async {
            let _admission = self.admit()?;
            let limit = match page_size {
                0 => DEFAULT_PAGE_SIZE,
                n if n > MAX_PAGE_SIZE => {
                    return Err(KmsError::InvalidArgument(format!(
                        "page_size {n} is above the maximum of {MAX_PAGE_SIZE}"
                    )));
                }
                n => n,
            };
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let after = decode_alias_token(page_token)?;
            let active = self.active()?;
            self.authorize(cx, op, key_id.as_ref())?;
            let policy = self.inner.policy.load();
            let mut aliases: Vec<AliasEntry> = self
                .backend_call(&active, "list_aliases", active.backend.list_aliases())
                .await?
                .into_iter()
                .filter(|a| after.as_ref().is_none_or(|after| a.name > *after))
                .filter(|a| key_id.as_ref().is_none_or(|k| a.target == *k))
                .filter(|a| policy.allows_via(&cx.caller, op, Some(&a.target), Some(&a.name)))
                .collect();
            let next_page_token = (aliases.len() > limit).then(|| {
                aliases.truncate(limit);
                aliases.last().map(|a| B64URL.encode(a.name.name()))
            });
            Ok(AliasPage {
                aliases,
                next_page_token: next_page_token.flatten(),
            })
        }
        .await;
        self.finish(cx, op, started, &audit, result).await
    }

    /// Drops what every backend caches about `alias` (decrypt-only
    /// backends kept by a reconfiguration may share the store).
    fn forget_alias_everywhere(&self, alias: &AliasName) {
        let runtime = self.runtime();
        for candidate in runtime.active.iter().chain(runtime.previous.iter()) {
            candidate.backend.forget_alias(alias);
        }
    }
}

/// A ListAliases page token: base64url of the last name of the previous
/// page. Unlike ListKeys' tokens it needs no check: a forged one only
/// says where a listing starts, and what is listed is filtered as always.
fn decode_alias_token(token: &str) -> Result<Option<AliasName>, KmsError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || KmsError::InvalidArgument("page_token is not one kmsd issued".into());
    let raw = B64URL.decode(token).map_err(|_| invalid())?;
    let name = std::str::from_utf8(&raw).map_err(|_| invalid())?;
    AliasName::parse(name).map(Some).map_err(|_| invalid())
}
