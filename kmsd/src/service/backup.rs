//! Backup and restore of the local backend's keys: admin-plane
//! operations, authorised by the policy and audited like the others
//! (docs/operations.md, "Backup and restore"). A Vault backend's keys are
//! backed up with Vault's own snapshot instead.

use std::time::Instant;

use super::{Kms, observe::Audit};
use crate::{
    backend::{
        Backend,
        local::{LocalBackend, OnConflict, RestoreReport, SealingSecret},
    },
    error::KmsError,
    request::{Operation, RequestContext},
};

impl Kms {
    /// Admin: a bundle of every key and version, sealed under `secret`.
    pub async fn backup(
        &self,
        cx: &RequestContext,
        secret: SealingSecret,
    ) -> Result<Vec<u8>, KmsError> {
        let started = Instant::now();
        let result = async {
            self.authorize(cx, Operation::Backup, None)?;
            let active = self.active()?;
            local(&active.backend)?.backup(secret).await
        }
        .await;
        self.finish(cx, Operation::Backup, started, &Audit::default(), result)
            .await
    }

    /// Admin: verifies `bundle` under `secret` and restores its keys (or,
    /// in a dry run, says what it would do).
    pub async fn restore(
        &self,
        cx: &RequestContext,
        bundle: Vec<u8>,
        secret: SealingSecret,
        dry_run: bool,
        on_conflict: OnConflict,
    ) -> Result<RestoreReport, KmsError> {
        let started = Instant::now();
        let result = async {
            self.authorize(cx, Operation::Restore, None)?;
            let active = self.active()?;
            local(&active.backend)?
                .restore(bundle, secret, dry_run, on_conflict)
                .await
        }
        .await;
        self.finish(cx, Operation::Restore, started, &Audit::default(), result)
            .await
    }
}

fn local(backend: &Backend) -> Result<&LocalBackend, KmsError> {
    match backend {
        Backend::Local(local) => Ok(local),
        Backend::Vault(_) => Err(KmsError::InvalidArgument(
            "backup and restore through kmsd are for the local backend; back up Vault or OpenBao with its own snapshot, which holds kmsd's keys and metadata (docs/operations.md)".into(),
        )),
    }
}
