//! `kms.v1.KeyAdmin`: the master-key control plane.

use kms_proto::v1::{self as pb, key_admin_server::KeyAdmin};
use tonic::{Request, Response, Status};

use super::{
    convert::{alias, deletion_impact, import_parameters, key_metadata, rotation_status},
    identity::request_context,
};
use crate::{
    alias::{AliasName, AliasWrite, KeyRef},
    backend::{MetadataChange, StateChange},
    key_id::KeyId,
    request::RequestContext,
    service::{ImportRequest, Kms},
};

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

    async fn update(
        &self,
        cx: &RequestContext,
        key_id: &str,
        change: MetadataChange,
    ) -> Result<Option<pb::KeyMetadata>, Status> {
        let key_id = KeyId::parse(key_id)?;
        let meta = self.kms.update_key_metadata(cx, &key_id, change).await?;
        Ok(Some(key_metadata(meta)))
    }

    async fn put_alias(
        &self,
        cx: &RequestContext,
        name: &str,
        target: &str,
        write: AliasWrite,
    ) -> Result<Option<pb::Alias>, Status> {
        let name = AliasName::parse(name)?;
        let target = KeyId::parse(target)?;
        Ok(Some(alias(
            self.kms.put_alias(cx, name, target, write).await?,
        )))
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
        let req = request.into_inner();
        let key = KeyRef::parse(&req.key_id)?;
        if req.include_impact {
            let (meta, impact) = self.kms.describe_key_with_impact(&cx, key).await?;
            return Ok(Response::new(pb::DescribeKeyResponse {
                key_metadata: Some(key_metadata(meta)),
                impact: Some(deletion_impact(impact)),
            }));
        }
        let meta = self.kms.describe_key_ref(&cx, key).await?;
        Ok(Response::new(pb::DescribeKeyResponse {
            key_metadata: Some(key_metadata(meta)),
            impact: None,
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
        let (meta, impact) = self
            .kms
            .schedule_key_deletion(&cx, &key_id, req.pending_window_in_days, req.force)
            .await?;
        Ok(Response::new(pb::ScheduleKeyDeletionResponse {
            key_metadata: Some(key_metadata(meta)),
            impact: Some(deletion_impact(impact)),
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

    async fn update_key_description(
        &self,
        request: Request<pb::UpdateKeyDescriptionRequest>,
    ) -> Result<Response<pb::UpdateKeyDescriptionResponse>, Status> {
        let cx = request_context(&request);
        let req = request.into_inner();
        let change = MetadataChange::Description(req.description);
        let key_metadata = self.update(&cx, &req.key_id, change).await?;
        Ok(Response::new(pb::UpdateKeyDescriptionResponse {
            key_metadata,
        }))
    }

    async fn tag_key(
        &self,
        request: Request<pb::TagKeyRequest>,
    ) -> Result<Response<pb::TagKeyResponse>, Status> {
        let cx = request_context(&request);
        let req = request.into_inner();
        let change = MetadataChange::Tag(req.tags);
        let key_metadata = self.update(&cx, &req.key_id, change).await?;
        Ok(Response::new(pb::TagKeyResponse { key_metadata }))
    }

    async fn untag_key(
        &self,
        request: Request<pb::UntagKeyRequest>,
    ) -> Result<Response<pb::UntagKeyResponse>, Status> {
        let cx = request_context(&request);
        let req = request.into_inner();
        let change = MetadataChange::Untag(req.tag_keys);
        let key_metadata = self.update(&cx, &req.key_id, change).await?;
        Ok(Response::new(pb::UntagKeyResponse { key_metadata }))
    }

    async fn create_alias(
        &self,
        request: Request<pb::CreateAliasRequest>,
    ) -> Result<Response<pb::CreateAliasResponse>, Status> {
        let cx = request_context(&request);
        let req = request.into_inner();
        let alias = self
            .put_alias(&cx, &req.alias_name, &req.target_key_id, AliasWrite::Create)
            .await?;
        Ok(Response::new(pb::CreateAliasResponse { alias }))
    }

    async fn update_alias(
        &self,
        request: Request<pb::UpdateAliasRequest>,
    ) -> Result<Response<pb::UpdateAliasResponse>, Status> {
        let cx = request_context(&request);
        let req = request.into_inner();
        let alias = self
            .put_alias(&cx, &req.alias_name, &req.target_key_id, AliasWrite::Update)
            .await?;
        Ok(Response::new(pb::UpdateAliasResponse { alias }))
    }

    async fn delete_alias(
        &self,
        request: Request<pb::DeleteAliasRequest>,
    ) -> Result<Response<pb::DeleteAliasResponse>, Status> {
        let cx = request_context(&request);
        let name = AliasName::parse(&request.into_inner().alias_name)?;
        self.kms.delete_alias(&cx, name).await?;
        Ok(Response::new(pb::DeleteAliasResponse {}))
    }

    async fn list_aliases(
        &self,
        request: Request<pb::ListAliasesRequest>,
    ) -> Result<Response<pb::ListAliasesResponse>, Status> {
        let cx = request_context(&request);
        let req = request.into_inner();
        let key_id = KeyId::parse_optional(&req.key_id)?;
        let page = self
            .kms
            .list_aliases(&cx, key_id, req.page_size, &req.page_token)
            .await?;
        Ok(Response::new(pb::ListAliasesResponse {
            aliases: page.aliases.into_iter().map(alias).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn enable_key_rotation(
        &self,
        request: Request<pb::EnableKeyRotationRequest>,
    ) -> Result<Response<pb::EnableKeyRotationResponse>, Status> {
        let cx = request_context(&request);
        let req = request.into_inner();
        let key_id = KeyId::parse(&req.key_id)?;
        let meta = self
            .kms
            .enable_key_rotation(
                &cx,
                &key_id,
                req.rotation_period_in_days,
                req.rotation_period_seconds,
            )
            .await?;
        Ok(Response::new(pb::EnableKeyRotationResponse {
            key_metadata: Some(key_metadata(meta)),
        }))
    }

    async fn disable_key_rotation(
        &self,
        request: Request<pb::DisableKeyRotationRequest>,
    ) -> Result<Response<pb::DisableKeyRotationResponse>, Status> {
        let cx = request_context(&request);
        let key_id = KeyId::parse(&request.into_inner().key_id)?;
        let meta = self.kms.disable_key_rotation(&cx, &key_id).await?;
        Ok(Response::new(pb::DisableKeyRotationResponse {
            key_metadata: Some(key_metadata(meta)),
        }))
    }

    async fn get_key_rotation_status(
        &self,
        request: Request<pb::GetKeyRotationStatusRequest>,
    ) -> Result<Response<pb::GetKeyRotationStatusResponse>, Status> {
        let cx = request_context(&request);
        let key_id = KeyId::parse(&request.into_inner().key_id)?;
        let meta = self.kms.key_rotation_status(&cx, &key_id).await?;
        Ok(Response::new(rotation_status(&meta)))
    }
    async fn get_parameters_for_import(
        &self,
        request: Request<pb::GetParametersForImportRequest>,
    ) -> Result<Response<pb::GetParametersForImportResponse>, Status> {
        let cx = request_context(&request);
        let key_id = KeyId::parse_optional(&request.into_inner().key_id)?;
        let params = self.kms.get_parameters_for_import(&cx, key_id).await?;
        Ok(Response::new(import_parameters(params)))
    }

    async fn import_key(
        &self,
        request: Request<pb::ImportKeyRequest>,
    ) -> Result<Response<pb::ImportKeyResponse>, Status> {
        let cx = request_context(&request);
        let req = request.into_inner();
        let import = ImportRequest {
            key_id: KeyId::parse_optional(&req.key_id)?,
            import_token: req.import_token,
            encrypted_key_material: req.encrypted_key_material,
            description: req.description,
            tags: req.tags,
        };
        let meta = self.kms.import_key(&cx, import).await?;
        Ok(Response::new(pb::ImportKeyResponse {
            key_metadata: Some(key_metadata(meta)),
        }))
    }
}
