//! The control plane for master keys.

use std::{collections::BTreeMap, time::Instant};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64URL};
use time::Duration;

use super::{Kms, observe::Audit};
use crate::{
    backend::{KeyBackend, KeyMetadata, NewKey, StateChange, Sweep},
    crypto,
    error::KmsError,
    key_id::KeyId,
    request::{Operation, RequestContext},
    usage::DeletionImpact,
};

/// The audit operation of a key destroyed by the deletion sweep.
const DESTROY_KEY: &str = "DestroyKey";

/// ListKeys pages hold this many keys unless asked otherwise.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// ListKeys pages hold at most this many keys.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// The shortest deletion window, in days.
pub const MIN_DELETION_WINDOW_DAYS: u32 = 7;
/// The longest deletion window, in days (also the default).
pub const MAX_DELETION_WINDOW_DAYS: u32 = 30;
pub use crate::backend::update::MAX_DESCRIPTION_LEN;

/// One page of keys.
#[derive(Debug)]
pub struct KeyPage {
    /// The keys, by id.
    pub keys: Vec<KeyMetadata>,
    /// The token of the next page; `None` on the last.
    pub next_page_token: Option<String>,
}

impl Kms {
    /// Runs a key-admin operation on one key with admission, policy, the
    /// backend call, audit and metrics. `checked` is the request's own
    /// validation: a failure is answered (and audited) once the caller is
    /// known to be allowed, without calling the backend.
    pub(super) async fn on_key<T>(
        &self,
        cx: &RequestContext,
        op: Operation,
        key_id: &KeyId,
        checked: Result<(), KmsError>,
        backend_operation: &'static str,
        call: impl AsyncFnOnce(&crate::lifecycle::Active) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let started = Instant::now();
        let audit = Audit {
            key_id: Some(key_id.clone()),
            ..Audit::default()
        };
        let result = async {
            let _admission = self.admit()?;
            let active = self.active()?;
            self.authorize(cx, op, Some(key_id))?;
            checked?;
            self.backend_call(&active, backend_operation, call(&active))
                .await
        }
        .await;
        self.finish(cx, op, started, &audit, result).await
    }

    /// CreateKey. Without an id, kmsd picks a random one.
    pub async fn create_key(
        &self,
        cx: &RequestContext,
        key_id: Option<KeyId>,
        description: String,
        tags: BTreeMap<String, String>,
    ) -> Result<KeyMetadata, KmsError> {
        let key_id = match key_id {
            Some(id) => id,
            None => random_key_id()?,
        };
        let checked = validate_new_key(&key_id, &description, &tags);
        let new = NewKey {
            key_id: key_id.clone(),
            description,
            tags,
        };
        self.on_key(
            cx,
            Operation::CreateKey,
            &key_id,
            checked,
            "create_key",
            async |active| active.backend.create_key(new).await,
        )
        .await
    }

    /// DescribeKey.
    pub async fn describe_key(
        &self,
        cx: &RequestContext,
        key_id: &KeyId,
    ) -> Result<KeyMetadata, KmsError> {
        self.describe_as(cx, Operation::DescribeKey, key_id)
            .await
            .map(|meta| self.with_usage(meta))
    }

    /// The key's metadata, as operation `op` (DescribeKey, or one that
    /// reads a part of it under a policy grant of its own).
    pub(super) async fn describe_as(
        &self,
        cx: &RequestContext,
        op: Operation,
        key_id: &KeyId,
    ) -> Result<KeyMetadata, KmsError> {
        self.on_key(cx, op, key_id, Ok(()), "describe_key", async |active| {
            active.backend.describe_key(key_id).await
        })
        .await
    }

    /// DescribeKey with the deletion impact (`include_impact`, REST
    /// `?impact=true`): what kmsd has seen of the key's use.
    pub async fn describe_key_with_impact(
        &self,
        cx: &RequestContext,
        key: crate::alias::KeyRef,
    ) -> Result<(KeyMetadata, DeletionImpact), KmsError> {
        let meta = self.describe_key_ref(cx, key).await?;
        let impact = self.deletion_impact(&meta.key_id).await;
        Ok((self.with_usage(meta), impact))
    }

    /// ListKeys. `page_size` 0 means the default. Only keys the caller's
    /// policy lets it list are shown; kmsd's own reserved keys never are.
    pub async fn list_keys(
        &self,
        cx: &RequestContext,
        page_size: u32,
        page_token: &str,
    ) -> Result<KeyPage, KmsError> {
        let started = Instant::now();
        let result = async {
            let _admission = self.admit()?;
            let page_size = match page_size {
                0 => DEFAULT_PAGE_SIZE,
                n if n > MAX_PAGE_SIZE => {
                    return Err(KmsError::InvalidArgument(format!(
                        "page_size {n} is above the maximum of {MAX_PAGE_SIZE}"
                    )));
                }
                n => n,
            };
            let after = decode_page_token(page_token)?;
            let limit = usize::try_from(page_size).unwrap_or(usize::MAX);
            let active = self.active()?;
            self.authorize(cx, Operation::ListKeys, None)?;
            // One extra key tells whether another page follows.
            let mut keys = self
                .backend_call(
                    &active,
                    "list_keys",
                    active.backend.list_keys(after.as_ref(), limit + 1),
                )
                .await?;
            let next_page_token = if keys.len() > limit {
                keys.truncate(limit);
                keys.last().map(|k| encode_page_token(&k.key_id))
            } else {
                None
            };
            // Only keys the caller's patterns match: a caller allowed
            // `rustfs-*` does not learn that `secret-hr` exists. A page may
            // therefore hold fewer keys than asked; the token still follows.
            keys.retain(|k| self.may_list(cx, &k.key_id));
            let keys = keys.into_iter().map(|k| self.with_usage(k)).collect();
            Ok(KeyPage {
                keys,
                next_page_token,
            })
        }
        .await;
        self.finish(cx, Operation::ListKeys, started, &Audit::default(), result)
            .await
    }

    /// RotateKey.
    pub async fn rotate_key(
        &self,
        cx: &RequestContext,
        key_id: &KeyId,
    ) -> Result<KeyMetadata, KmsError> {
        let result = self
            .on_key(
                cx,
                Operation::RotateKey,
                key_id,
                Ok(()),
                "rotate_key",
                async |active| active.backend.rotate_key(key_id).await,
            )
            .await
            .map(|meta| self.with_usage(meta));
        self.inner.metrics.key_rotation("manual", result.is_ok());
        result
    }

    /// EnableKey, DisableKey and CancelKeyDeletion.
    pub async fn change_state(
        &self,
        cx: &RequestContext,
        key_id: &KeyId,
        change: StateChange,
    ) -> Result<KeyMetadata, KmsError> {
        let op = match change {
            StateChange::Enable => Operation::EnableKey,
            StateChange::Disable => Operation::DisableKey,
            StateChange::ScheduleDeletion { .. } => Operation::ScheduleKeyDeletion,
            StateChange::CancelDeletion => Operation::CancelKeyDeletion,
        };
        let result = self
            .on_key(cx, op, key_id, Ok(()), "change_state", async |active| {
                active.backend.change_state(key_id, change).await
            })
            .await;
        self.after_state_change(key_id, change, &result);
        result.map(|meta| self.with_usage(meta))
    }

    /// What a state change makes every cache forget.
    fn after_state_change<T>(
        &self,
        key_id: &KeyId,
        change: StateChange,
        result: &Result<T, KmsError>,
    ) {
        if result.is_ok() {
            // Cached data keys of a key that may no longer be used go at
            // once...
            if change != StateChange::Enable {
                self.inner.cache.invalidate_key(key_id);
            }
            // ...and so does what every backend (decrypt-only ones kept by
            // a reconfiguration may reach the same store) cached about the
            // key: from now on every path reads its new state.
            self.forget_key_everywhere(key_id);
        }
    }

    /// Makes every backend forget what it caches about `key_id`.
    pub(super) fn forget_key_everywhere(&self, key_id: &KeyId) {
        let runtime = self.runtime();
        for candidate in runtime.active.iter().chain(runtime.previous.iter()) {
            candidate.backend.forget_key(key_id);
        }
    }

    /// ScheduleKeyDeletion. `days` 0 means the maximum window (30). A key
    /// used within the deletion guard window is refused
    /// (`KeyStillReferenced`) unless `force`; the answer carries what kmsd
    /// had seen of the key's use.
    pub async fn schedule_key_deletion(
        &self,
        cx: &RequestContext,
        key_id: &KeyId,
        days: u32,
        force: bool,
    ) -> Result<(KeyMetadata, DeletionImpact), KmsError> {
        let days = match days {
            0 => MAX_DELETION_WINDOW_DAYS,
            d if (MIN_DELETION_WINDOW_DAYS..=MAX_DELETION_WINDOW_DAYS).contains(&d) => d,
            d => {
                return Err(KmsError::InvalidArgument(format!(
                    "pending_window_in_days is {d}; it must be between {MIN_DELETION_WINDOW_DAYS} and {MAX_DELETION_WINDOW_DAYS}"
                )));
            }
        };
        let deletion_date = self.inner.clock.now() + Duration::days(i64::from(days));
        let change = StateChange::ScheduleDeletion { deletion_date };
        // The guard runs after the policy check (inside `on_key`), so a
        // caller who may not delete the key learns nothing of its use.
        let result = self
            .on_key(
                cx,
                Operation::ScheduleKeyDeletion,
                key_id,
                Ok(()),
                "change_state",
                async |active| {
                    let impact = self.deletion_impact(key_id).await;
                    self.guard_deletion(key_id, &impact, force)?;
                    let meta = active.backend.change_state(key_id, change).await?;
                    Ok((meta, impact))
                },
            )
            .await;
        self.after_state_change(key_id, change, &result);
        result.map(|(meta, impact)| (self.with_usage(meta), impact))
    }

    /// Destroys the keys whose deletion window has passed (the sweeper),
    /// writing one audit line per key destroyed (operation `DestroyKey`,
    /// caller `kmsd`), and one for a sweep that failed.
    pub async fn sweep_deletions(&self) -> Result<Vec<KeyId>, KmsError> {
        let active = self.active()?;
        let started = Instant::now();
        let sweep = self
            .backend_call(&active, "destroy_due_keys", async {
                Ok(active
                    .backend
                    .destroy_due_keys(self.inner.clock.now())
                    .await)
            })
            .await
            .unwrap_or_else(|e| Sweep {
                destroyed: Vec::new(),
                failed: Some(e),
            });
        for key_id in &sweep.destroyed {
            self.forget_usage(key_id);
            self.inner.cache.invalidate_key(key_id);
            self.forget_key_everywhere(key_id);
            let audit = Audit {
                key_id: Some(key_id.clone()),
                ..Audit::default()
            };
            self.audit_internal(DESTROY_KEY, started, &audit, None)
                .await;
        }
        if let Some(e) = &sweep.failed {
            self.audit_internal(DESTROY_KEY, started, &Audit::default(), Some(e))
                .await;
        }
        sweep.into_result()
    }

    /// Counts the active backend's keys by state (for the metrics).
    pub async fn count_keys(&self) -> Result<(usize, usize, usize), KmsError> {
        use crate::backend::KeyState;
        let active = self.active()?;
        let (mut counts, mut after) = ((0, 0, 0), None::<KeyId>);
        loop {
            let page = self
                .backend_call(
                    &active,
                    "list_keys",
                    active.backend.list_keys(after.as_ref(), 1000),
                )
                .await?;
            for key in page.iter().filter(|k| !k.key_id.is_reserved()) {
                match key.state {
                    KeyState::Enabled => counts.0 += 1,
                    KeyState::Disabled => counts.1 += 1,
                    KeyState::PendingDeletion => counts.2 += 1,
                }
            }
            match page.last() {
                Some(last) if page.len() == 1000 => after = Some(last.key_id.clone()),
                _ => return Ok(counts),
            }
        }
    }
}

/// What CreateKey's request must satisfy before the backend is asked.
pub(super) fn validate_new_key(
    key_id: &KeyId,
    description: &str,
    tags: &BTreeMap<String, String>,
) -> Result<(), KmsError> {
    if key_id.is_reserved() {
        return Err(KmsError::ReservedKeyId(key_id.clone()));
    }
    if description.len() > MAX_DESCRIPTION_LEN {
        return Err(KmsError::InvalidArgument(format!(
            "description is longer than {MAX_DESCRIPTION_LEN} bytes"
        )));
    }
    validate_tags(tags)
}

/// AWS KMS's tag rules, as TagKey applies them (backend/update.rs).
fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), KmsError> {
    crate::backend::update::validate_tags(tags)
}

/// The version byte of page tokens.
const PAGE_TOKEN_V1: u8 = 1;
/// The domain the check of a page token is computed in.
const PAGE_TOKEN_DOMAIN: &[u8] = b"kmsd/v1/list-keys-page-token";
/// Bytes of that check.
const PAGE_TOKEN_CHECK_LEN: usize = 8;

fn page_token_check(key_id: &KeyId) -> [u8; PAGE_TOKEN_CHECK_LEN] {
    let mac = crypto::hmac_sha256(PAGE_TOKEN_DOMAIN, &[key_id.as_str().as_bytes()]);
    let mut check = [0; PAGE_TOKEN_CHECK_LEN];
    check.copy_from_slice(&mac[..PAGE_TOKEN_CHECK_LEN]);
    check
}

/// A page token: base64url of version 1, the last key id of the page, and
/// a check over that id. The check lets kmsd tell the tokens it issued
/// from anything else (the base64url of an id, another API's token, a
/// truncated copy) and answer those with INVALID_ARGUMENT. Its key is a
/// constant, not a secret: a token must stay valid across restarts and on
/// every kmsd sharing a Vault, and one made by hand grants nothing (it
/// only says where a listing starts, and what is listed is filtered as
/// always).
fn encode_page_token(last: &KeyId) -> String {
    let id = last.as_str().as_bytes();
    let mut raw = Vec::with_capacity(1 + id.len() + PAGE_TOKEN_CHECK_LEN);
    raw.push(PAGE_TOKEN_V1);
    raw.extend_from_slice(id);
    raw.extend_from_slice(&page_token_check(last));
    B64URL.encode(raw)
}

fn decode_page_token(token: &str) -> Result<Option<KeyId>, KmsError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || KmsError::InvalidArgument("page_token is not one kmsd issued".into());
    let raw = B64URL.decode(token).map_err(|_| invalid())?;
    let Some((&PAGE_TOKEN_V1, rest)) = raw.split_first() else {
        return Err(invalid());
    };
    let split = rest
        .len()
        .checked_sub(PAGE_TOKEN_CHECK_LEN)
        .ok_or_else(invalid)?;
    let (id, check) = rest.split_at(split);
    let text = std::str::from_utf8(id).map_err(|_| invalid())?;
    let key_id = KeyId::parse(text).map_err(|_| invalid())?;
    if !crypto::constant_time_eq(check, &page_token_check(&key_id)) {
        return Err(invalid());
    }
    Ok(Some(key_id))
}

/// A random key id in UUID v4 form.
pub(super) fn random_key_id() -> Result<KeyId, KmsError> {
    let mut b = crypto::random_array::<16>().map_err(|e| KmsError::Internal(e.to_string()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    KeyId::parse(&format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_foreign_ones_are_refused() {
        let id = KeyId::parse("key-7").unwrap();
        let token = encode_page_token(&id);
        assert_eq!(decode_page_token(&token).unwrap(), Some(id));
        assert_eq!(decode_page_token("").unwrap(), None);
        let mut tampered = B64URL.decode(&token).unwrap();
        tampered[2] ^= 1;
        for foreign in [
            B64URL.encode("not-a-token"),
            B64URL.encode("key-7"),
            B64URL.encode(tampered),
            token[..token.len() - 2].to_owned(),
            "%%%".to_owned(),
            B64URL.encode([1u8]),
        ] {
            let err = decode_page_token(&foreign).unwrap_err();
            assert!(matches!(err, KmsError::InvalidArgument(_)), "{foreign}");
        }
    }
}
