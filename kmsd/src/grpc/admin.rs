//! `kms.v1.Admin`: the runtime admin API.

use kms_proto::v1::{self as pb, admin_server::Admin};
use tonic::{Request, Response, Status};

use super::convert::timestamp;
use crate::{lifecycle::ServiceState, service::Kms};

/// The runtime-admin gRPC service.
#[derive(Debug, Clone)]
pub struct AdminService {
    kms: Kms,
}

impl AdminService {
    /// Serves `kms`.
    pub fn new(kms: Kms) -> Self {
        Self { kms }
    }
}

pub(crate) fn service_state(state: ServiceState) -> pb::ServiceState {
    match state {
        ServiceState::NotConfigured => pb::ServiceState::NotConfigured,
        ServiceState::Configured => pb::ServiceState::Configured,
        ServiceState::Running => pb::ServiceState::Running,
        ServiceState::Stopped => pb::ServiceState::Stopped,
        ServiceState::Error => pb::ServiceState::Error,
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let runtime = self.kms.runtime();
        let healthy = self.kms.health().await.is_ok();
        let backend = runtime.active.as_ref().map(|active| pb::BackendSummary {
            backend_type: active.kind().as_str().to_owned(),
            default_key_id: active
                .default_key_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            settings: active
                .summary
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        });
        Ok(Response::new(pb::StatusResponse {
            state: service_state(runtime.state).into(),
            error: runtime.error.clone().unwrap_or_default(),
            backend,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: Some(timestamp(self.kms.started_at())),
            healthy,
        }))
    }
}
