//! The control plane for master keys.

use std::{collections::BTreeMap, time::Instant};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64URL};
use time::Duration;

use super::{Kms, observe::Audit};
use crate::{
    backend::{KeyBackend, KeyMetadata, NewKey, StateChange},
    crypto,
    error::KmsError,
    key_id::KeyId,
    request::{Operation, RequestContext},
};

/// ListKeys pages hold this many keys unless asked otherwise.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// ListKeys pages hold at most this many keys.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// The shortest deletion window, in days.
pub const MIN_DELETION_WINDOW_DAYS: u32 = 7;
/// The longest deletion window, in days (also the default).
pub const MAX_DELETION_WINDOW_DAYS: u32 = 30;
/// Longest key description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Most tags on a key.
pub const MAX_TAGS: usize = 50;

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
    /// backend call, audit and metrics.
    async fn on_key<T>(
        &self,
        cx: &RequestContext,
        op: Operation,
        key_id: &KeyId,
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
            self.backend_call(&active, backend_operation, call(&active))
                .await
        }
        .await;
        self.finish(cx, op, started, &audit, &result);
        result
    }

    /// CreateKey. Without an id, kmsd picks a random one.
    pub async fn create_key(
        &self,
        cx: &RequestContext,
        key_id: Option<KeyId>,
        description: String,
        tags: BTreeMap<String, String>,
    ) -> Result<KeyMetadata, KmsError> {
        if description.len() > MAX_DESCRIPTION_LEN {
            return Err(KmsError::InvalidArgument(format!(
                "description is longer than {MAX_DESCRIPTION_LEN} bytes"
            )));
        }
        validate_tags(&tags)?;
        let key_id = match key_id {
            Some(id) if id.is_reserved() => return Err(KmsError::ReservedKeyId(id)),
            Some(id) => id,
            None => random_key_id()?,
        };
        let new = NewKey {
            key_id: key_id.clone(),
            description,
            tags,
        };
        self.on_key(
            cx,
            Operation::CreateKey,
            &key_id,
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
        self.on_key(
            cx,
            Operation::DescribeKey,
            key_id,
            "describe_key",
            async |active| active.backend.describe_key(key_id).await,
        )
        .await
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
                keys.last().map(|k| B64URL.encode(k.key_id.as_str()))
            } else {
                None
            };
            // Only keys the caller's patterns match: a caller allowed
            // `rustfs-*` does not learn that `secret-hr` exists. A page may
            // therefore hold fewer keys than asked; the token still follows.
            keys.retain(|k| self.may_list(cx, &k.key_id));
            Ok(KeyPage {
                keys,
                next_page_token,
            })
        }
        .await;
        self.finish(cx, Operation::ListKeys, started, &Audit::default(), &result);
        result
    }

    /// RotateKey.
    pub async fn rotate_key(
        &self,
        cx: &RequestContext,
        key_id: &KeyId,
    ) -> Result<KeyMetadata, KmsError> {
        self.on_key(
            cx,
            Operation::RotateKey,
            key_id,
            "rotate_key",
            async |active| active.backend.rotate_key(key_id).await,
        )
        .await
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
            .on_key(cx, op, key_id, "change_state", async |active| {
                active.backend.change_state(key_id, change).await
            })
            .await;
        // Cached data keys of a key that may no longer be used go at once.
        if result.is_ok() && change != StateChange::Enable {
            self.inner.cache.invalidate_key(key_id);
        }
        result
    }

    /// ScheduleKeyDeletion. `days` 0 means the maximum window (30).
    pub async fn schedule_key_deletion(
        &self,
        cx: &RequestContext,
        key_id: &KeyId,
        days: u32,
    ) -> Result<KeyMetadata, KmsError> {
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
        self.change_state(cx, key_id, StateChange::ScheduleDeletion { deletion_date })
            .await
    }

    /// Destroys the keys whose deletion window has passed (the sweeper).
    pub async fn sweep_deletions(&self) -> Result<Vec<KeyId>, KmsError> {
        let active = self.active()?;
        let destroyed = self
            .backend_call(
                &active,
                "destroy_due_keys",
                active.backend.destroy_due_keys(self.inner.clock.now()),
            )
            .await?;
        for key_id in &destroyed {
            self.inner.cache.invalidate_key(key_id);
        }
        Ok(destroyed)
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

fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), KmsError> {
    if tags.len() > MAX_TAGS {
        return Err(KmsError::InvalidArgument(format!(
            "{} tags; at most {MAX_TAGS} are allowed",
            tags.len()
        )));
    }
    for (key, value) in tags {
        if key.is_empty() || key.len() > 128 || value.len() > 256 {
            return Err(KmsError::InvalidArgument(
                "tag keys must be 1-128 bytes and values at most 256 bytes".into(),
            ));
        }
    }
    Ok(())
}

fn decode_page_token(token: &str) -> Result<Option<KeyId>, KmsError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || KmsError::InvalidArgument("page_token is not one kmsd issued".into());
    let bytes = B64URL.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    KeyId::parse(&text).map(Some).map_err(|_| invalid())
}

/// A random key id in UUID v4 form.
fn random_key_id() -> Result<KeyId, KmsError> {
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
