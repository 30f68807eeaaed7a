//! Admin Reload: the service's side. What a reload re-reads (files, TLS,
//! log level) belongs to the daemon, which registers itself here once its
//! listeners exist; the service authorises, audits and counts the call like
//! every other admin operation.

use std::{future::Future, pin::Pin, sync::Arc};

use serde::Serialize;

use super::Kms;
use crate::{
    error::KmsError,
    request::{Operation, RequestContext},
};

/// What a reload put in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// The parts re-read and now in force ("policy", "tls:grpc", ...).
    pub reloaded: Vec<String>,
    /// Config keys whose new value takes effect only at the next start.
    pub restart_required: Vec<String>,
}

/// The boxed future a [`Reload`] returns.
pub type ReloadFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ReloadReport, KmsError>> + Send + 'a>>;

/// Re-reads the settings kmsd can change while serving (the daemon). It is
/// handed the service on each call rather than holding it, so the service
/// and its reloader do not keep each other alive.
pub trait Reload: Send + Sync + std::fmt::Debug {
    /// Validates every new file first and changes nothing unless all are
    /// good ([`KmsError::ReloadFailed`] otherwise).
    fn reload<'a>(&'a self, kms: &'a Kms) -> ReloadFuture<'a>;
}

impl Kms {
    /// Registers what Admin Reload calls; the first registration wins.
    pub fn set_reloader(&self, reloader: Arc<dyn Reload>) {
        // Once per daemon: a second registration would be a bug, and the
        // first one is the daemon that owns the listeners.
        let _ = self.inner.reloader.set(reloader);
    }

    /// Admin: re-read the config file's reloadable parts, the policy and
    /// every TLS file (as SIGHUP does).
    pub async fn reload(&self, cx: &RequestContext) -> Result<ReloadReport, KmsError> {
        self.admin_op(cx, Operation::Reload, async || {
            let reloader = self.inner.reloader.get().ok_or_else(|| {
                KmsError::ReloadFailed(
                    "this kmsd was started without a reloadable configuration".into(),
                )
            })?;
            reloader.reload(self).await
        })
        .await
    }
}
