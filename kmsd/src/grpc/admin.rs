//! `kms.v1.Admin`: the runtime admin API.

use kms_proto::v1::{self as pb, admin_server::Admin};
use tonic::{Request, Response, Status};

use super::{convert::timestamp, identity::request_context};
use crate::{
    backend::capabilities::Capabilities,
    error::KmsError,
    lifecycle::ServiceState,
    service::Kms,
    status::{self, BackendSummary},
};

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

    fn status_response(&self) -> pb::StatusResponse {
        let report = status::report(&self.kms);
        let summary = |b: BackendSummary| pb::BackendSummary {
            backend_type: b.backend_type.to_owned(),
            default_key_id: b
                .default_key_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            capabilities: Capabilities::of_type(b.backend_type)
                .map(|c| c.names().into_iter().map(str::to_owned).collect())
                .unwrap_or_default(),
            settings: b
                .settings
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        };
        pb::StatusResponse {
            state: service_state(report.state).into(),
            error: report.error.unwrap_or_default(),
            backend: report.backend.map(summary),
            version: report.version.to_owned(),
            started_at: Some(timestamp(report.started_at)),
            healthy: report.healthy,
            previous_backends: report.previous_backends.into_iter().map(summary).collect(),
            persisted: report.persisted,
            config_fingerprint: report.fingerprint.hash.clone(),
            config_fields: report
                .fingerprint
                .fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            degraded: report.degraded.unwrap_or_default(),
        }
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
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.kms
            .authorize_status(&request_context(&request))
            .await?;
        Ok(Response::new(self.status_response()))
    }

    async fn configure(
        &self,
        request: Request<pb::ConfigureRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let cx = request_context(&request);
        self.kms
            .configure(&cx, &request.into_inner().backend_config_json)
            .await?;
        Ok(Response::new(self.status_response()))
    }

    async fn start(
        &self,
        request: Request<pb::StartRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.kms.start(&request_context(&request)).await?;
        Ok(Response::new(self.status_response()))
    }

    async fn stop(
        &self,
        request: Request<pb::StopRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.kms.stop(&request_context(&request)).await?;
        Ok(Response::new(self.status_response()))
    }

    async fn reconfigure(
        &self,
        request: Request<pb::ReconfigureRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let cx = request_context(&request);
        let request = request.into_inner();
        match (request.decrypt_only, request.discard_previous) {
            (true, true) => {
                return Err(KmsError::InvalidConfig(
                    "decrypt_only and discard_previous exclude each other".into(),
                )
                .into());
            }
            (true, false) => {
                self.kms
                    .add_decrypt_only(&cx, &request.backend_config_json)
                    .await?;
            }
            (false, discard_previous) => {
                self.kms
                    .reconfigure(&cx, &request.backend_config_json, discard_previous)
                    .await?;
            }
        }
        Ok(Response::new(self.status_response()))
    }

    async fn clear_cache(
        &self,
        request: Request<pb::ClearCacheRequest>,
    ) -> Result<Response<pb::ClearCacheResponse>, Status> {
        let entries_cleared = self.kms.clear_cache(&request_context(&request)).await?;
        Ok(Response::new(pb::ClearCacheResponse { entries_cleared }))
    }

    async fn reload(
        &self,
        request: Request<pb::ReloadRequest>,
    ) -> Result<Response<pb::ReloadResponse>, Status> {
        let report = self.kms.reload(&request_context(&request)).await?;
        Ok(Response::new(pb::ReloadResponse {
            reloaded: report.reloaded,
            restart_required: report.restart_required,
        }))
    }
}
