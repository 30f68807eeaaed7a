//! `kms.v1.KeyAdmin`: the master-key control plane.

use kms_proto::v1::{self as pb, key_admin_server::KeyAdmin};
use tonic::{Request, Response, Status};

use super::{convert::key_metadata, identity::request_context};
use crate::{backend::StateChange, key_id::KeyId, request::RequestContext, service::Kms};

/// The key-admin gRPC service.
#[derive(Debug, Clone)]
pub struct KeyAdminService {
    kms: Kms,
}

impl KeyAdminService {
    /// Serves `kms`.
    pub fn new(kms: Kms) -> Self {
        Self { kms }
    }

    async fn change(
        &self,
        cx: &RequestContext,
        key_id: &str,
        change: StateChange,
    ) -> Result<pb::KeyMetadata, Status> {
        let key_id = KeyId::parse(key_id)?;
        Ok(key_metadata(
            self.kms.change_state(cx, &key_id, change).await?,
        ))
    }
}

#[tonic::async_trait]
impl KeyAdmin for KeyAdminService {
    async fn create_key(
        &self,
        request: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::CreateKeyResponse>, Status> {
        let cx = request_context(&request);
        let req = request.into_inner();
        let key_id = KeyId::parse_optional(&req.key_id)?;
        let meta = self
            .kms
            .create_key(&cx, key_id, req.description, req.tags)
            .await?;
        Ok(Response::new(pb::CreateKeyResponse {
            key_metadata: Some(key_metadata(meta)),
        }))
    }

    async fn describe_key(
        &self,
        request: Request<pb::DescribeKeyRequest>,
    ) -> Result<Response<pb::DescribeKeyResponse>, Status> {
        let cx = request_context(&request);
        let key_id = KeyId::parse(&request.into_inner().key_id)?;
        let meta = self.kms.describe_key(&cx, &key_id).await?;
        Ok(Response::new(pb::DescribeKeyResponse {
            key_metadata: Some(key_metadata(meta)),
        }))
    }

    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        let cx = request_context(&request);
        let req = request.into_inner();
        let page = self
            .kms
            .list_keys(&cx, req.page_size, &req.page_token)
            .await?;
        Ok(Response::new(pb::ListKeysResponse {
            keys: page.keys.into_iter().map(key_metadata).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn rotate_key(
        &self,
        request: Request<pb::RotateKeyRequest>,
    ) -> Result<Response<pb::RotateKeyResponse>, Status> {
        let cx = request_context(&request);
        let key_id = KeyId::parse(&request.into_inner().key_id)?;
        let meta = self.kms.rotate_key(&cx, &key_id).await?;
        Ok(Response::new(pb::RotateKeyResponse {
            key_metadata: Some(key_metadata(meta)),
        }))
    }

    async fn enable_key(
        &self,
        request: Request<pb::EnableKeyRequest>,
    ) -> Result<Response<pb::EnableKeyResponse>, Status> {
        let cx = request_context(&request);
        let meta = self
            .change(&cx, &request.into_inner().key_id, StateChange::Enable)
            .await?;
        Ok(Response::new(pb::EnableKeyResponse {
            key_metadata: Some(meta),
        }))
    }

    async fn disable_key(
        &self,
        request: Request<pb::DisableKeyRequest>,
    ) -> Result<Response<pb::DisableKeyResponse>, Status> {
        let cx = request_context(&request);
        let meta = self
            .change(&cx, &request.into_inner().key_id, StateChange::Disable)
            .await?;
        Ok(Response::new(pb::DisableKeyResponse {
            key_metadata: Some(meta),
        }))
    }

    async fn schedule_key_deletion(
        &self,
        request: Request<pb::ScheduleKeyDeletionRequest>,
    ) -> Result<Response<pb::ScheduleKeyDeletionResponse>, Status> {
        let cx = request_context(&request);
        let req = request.into_inner();
        let key_id = KeyId::parse(&req.key_id)?;
        let meta = self
            .kms
            .schedule_key_deletion(&cx, &key_id, req.pending_window_in_days)
            .await?;
        Ok(Response::new(pb::ScheduleKeyDeletionResponse {
            key_metadata: Some(key_metadata(meta)),
        }))
    }

    async fn cancel_key_deletion(
        &self,
        request: Request<pb::CancelKeyDeletionRequest>,
    ) -> Result<Response<pb::CancelKeyDeletionResponse>, Status> {
        let cx = request_context(&request);
        let meta = self
            .change(
                &cx,
                &request.into_inner().key_id,
                StateChange::CancelDeletion,
            )
            .await?;
        Ok(Response::new(pb::CancelKeyDeletionResponse {
            key_metadata: Some(meta),
        }))
    }
}
