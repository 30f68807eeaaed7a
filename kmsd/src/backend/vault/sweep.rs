//! The deletion sweep: keys whose deletion window has passed lose their
//! Transit key, then their KV record.

use time::OffsetDateTime;

use super::{error::VaultError, metadata::Keys};
use crate::{backend::KeyState, error::KmsError, key_id::KeyId};

/// The deletion sweep; `destroyed` collects the keys as they go.
pub(super) async fn sweep(
    keys: &Keys,
    now: OffsetDateTime,
    destroyed: &mut Vec<KeyId>,
) -> Result<(), KmsError> {
    let due = |state: KeyState, date: Option<OffsetDateTime>| {
        state == KeyState::PendingDeletion && date.is_some_and(|d| d <= now)
    };
    for key_id in keys.records.list().await? {
        // A cached entry rules keys out cheaply (windows are days long,
        // the cache seconds); a fresh read confirms before destroying.
        if let Some(cached) = keys.cache.get(&key_id)
            && !due(cached.meta.state, cached.meta.deletion_date)
        {
            continue;
        }
        let current = match keys.records.read(&key_id).await {
            Ok(Some(current)) => current,
            Ok(None) => continue,
            Err(VaultError::Decode { reason, .. }) => {
                tracing::error!(%key_id, %reason, "skipping an unreadable key record in the deletion sweep");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if !due(current.record.state, current.record.deletion_date) {
            continue;
        }
        // Transit key first: once it is gone the key is unusable even
        // if removing the record fails (the next sweep retries).
        keys.transit.destroy(&key_id).await?;
        keys.records.delete(&key_id).await?;
        keys.cache.remove(&key_id);
        keys.forget_intermediates(Some(&key_id));
        tracing::info!(%key_id, "key destroyed: its deletion window has passed (Transit key and KV record deleted)");
        destroyed.push(key_id);
    }
    Ok(())
}
