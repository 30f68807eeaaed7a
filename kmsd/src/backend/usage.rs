//! Where usage figures ([`crate::usage`]) are persisted: a trait of its
//! own beside [`KeyBackend`](super::KeyBackend), with the same enum
//! dispatch.

use std::future::Future;

use super::Backend;
use crate::{
    error::KmsError,
    usage::{Figures, StoredUsage},
};

/// Persistence of usage figures, as every backend provides it.
pub trait UsageStore: Send + Sync {
    /// Every node's persisted figures: `node`'s own, and the rest merged.
    fn load_usage(&self, node: &str) -> impl Future<Output = Result<StoredUsage, KmsError>> + Send;

    /// Replaces `node`'s persisted figures with `own`.
    fn store_usage(
        &self,
        node: &str,
        own: &Figures,
    ) -> impl Future<Output = Result<(), KmsError>> + Send;
}

impl UsageStore for Backend {
    async fn load_usage(&self, node: &str) -> Result<StoredUsage, KmsError> {
        dispatch_async!(self, b => b.load_usage(node))
    }
    async fn store_usage(&self, node: &str, own: &Figures) -> Result<(), KmsError> {
        dispatch_async!(self, b => b.store_usage(node, own))
    }
}
