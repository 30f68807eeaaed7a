//! UpdateKeyDescription, TagKey and UntagKey.

use super::Kms;
use crate::{
    backend::{KeyMetadata, MetadataChange, MetadataStore},
    error::KmsError,
    key_id::KeyId,
    request::{Operation, RequestContext},
};

impl Kms {
    /// Changes a key's description (UpdateKeyDescription) or tags (TagKey,
    /// UntagKey), after the change's own validation and the caller's
    /// policy for that operation on the key.
    pub async fn update_key_metadata(
        &self,
        cx: &RequestContext,
        key_id: &KeyId,
        change: MetadataChange,
    ) -> Result<KeyMetadata, KmsError> {
        let op = match change {
            MetadataChange::Description(_) => Operation::UpdateKeyDescription,
            MetadataChange::Tag(_) => Operation::TagKey,
            MetadataChange::Untag(_) => Operation::UntagKey,
        };
        let checked = change.validate();
        let result = self
            .on_key(cx, op, key_id, checked, "update_metadata", async |active| {
                active.backend.update_metadata(key_id, &change).await
            })
            .await;
        if result.is_ok() {
            // Decrypt-only backends kept by a reconfiguration may cache the
            // key's metadata from the same store.
            self.forget_key_everywhere(key_id);
        }
        result
    }
}
