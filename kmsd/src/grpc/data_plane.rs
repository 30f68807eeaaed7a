//! `kms.v1.KeyManagement`: decode, validate, call the service, encode.

use kms_proto::v1::{self as pb, key_management_server::KeyManagement};
use tonic::{Request, Response, Status};
use zeroize::Zeroize;

use super::identity::request_context;
use crate::{
    alias::KeyRef, backend::GeneratedKey, context::EncryptionContext, request::Operation,
    service::Kms,
};

/// The data-plane gRPC service.
#[derive(Debug, Clone)]
pub struct DataPlane {
    kms: Kms,
}

impl DataPlane {
    /// Serves `kms`.
    pub fn new(kms: Kms) -> Self {
        Self { kms }
    }
}

impl DataPlane {
    /// GenerateDataKey and GenerateDataKeyWithoutPlaintext take the same
    /// request and do the same work; only the response differs.
    async fn generate(
        &self,
        request: Request<pb::GenerateDataKeyRequest>,
        op: Operation,
    ) -> Result<GeneratedKey, Status> {
        let cx = request_context(&request);
        let req = request.into_inner();
        let key_id = KeyRef::parse_optional(&req.key_id)?;
        let context = EncryptionContext::new(req.encryption_context)?;
        Ok(self
            .kms
            .generate_data_key(&cx, op, key_id, &context)
            .await?)
    }
}

#[tonic::async_trait]
impl KeyManagement for DataPlane {
    async fn generate_data_key(
        &self,
        request: Request<pb::GenerateDataKeyRequest>,
    ) -> Result<Response<pb::GenerateDataKeyResponse>, Status> {
        let generated = self.generate(request, Operation::GenerateDataKey).await?;
        Ok(Response::new(pb::GenerateDataKeyResponse {
            plaintext: generated.key.expose_secret().to_vec(),
            ciphertext_blob: generated.sealed.blob,
            key_id: generated.sealed.key_id.to_string(),
            key_version: generated.sealed.key_version,
        }))
    }

    async fn generate_data_key_without_plaintext(
        &self,
        request: Request<pb::GenerateDataKeyRequest>,
    ) -> Result<Response<pb::GenerateDataKeyWithoutPlaintextResponse>, Status> {
        let generated = self
            .generate(request, Operation::GenerateDataKeyWithoutPlaintext)
            .await?;
        Ok(Response::new(pb::GenerateDataKeyWithoutPlaintextResponse {
            ciphertext_blob: generated.sealed.blob,
            key_id: generated.sealed.key_id.to_string(),
            key_version: generated.sealed.key_version,
        }))
    }

    async fn encrypt(
        &self,
        request: Request<pb::EncryptRequest>,
    ) -> Result<Response<pb::EncryptResponse>, Status> {
        let cx = request_context(&request);
        let mut req = request.into_inner();
        let result = async {
            let key_id = KeyRef::parse_optional(&req.key_id)?;
            let context = EncryptionContext::new(std::mem::take(&mut req.encryption_context))?;
            self.kms
                .encrypt(&cx, key_id, &req.plaintext, &context)
                .await
        }
        .await;
        req.plaintext.zeroize();
        let sealed = result?;
        Ok(Response::new(pb::EncryptResponse {
            ciphertext_blob: sealed.blob,
            key_id: sealed.key_id.to_string(),
            key_version: sealed.key_version,
        }))
    }

    async fn decrypt(
        &self,
        request: Request<pb::DecryptRequest>,
    ) -> Result<Response<pb::DecryptResponse>, Status> {
        let cx = request_context(&request);
        let req = request.into_inner();
        let expected = KeyRef::parse_optional(&req.expected_key_id)?;
        let context = EncryptionContext::new(req.encryption_context)?;
        let opened = self
            .kms
            .decrypt(&cx, &req.ciphertext_blob, &context, expected.as_ref())
            .await?;
        Ok(Response::new(pb::DecryptResponse {
            plaintext: opened.plaintext.expose_secret().to_vec(),
            key_id: opened.key_id.to_string(),
            key_version: opened.key_version,
        }))
    }

    async fn re_encrypt(
        &self,
        request: Request<pb::ReEncryptRequest>,
    ) -> Result<Response<pb::ReEncryptResponse>, Status> {
        let cx = request_context(&request);
        let req = request.into_inner();
        let expected = KeyRef::parse_optional(&req.expected_source_key_id)?;
        let destination = KeyRef::parse_optional(&req.destination_key_id)?;
        let source_context = EncryptionContext::new(req.source_encryption_context)?;
        let destination_context = req
            .destination_encryption_context
            .map(|c| EncryptionContext::new(c.entries))
            .transpose()?;
        let re = self
            .kms
            .re_encrypt(
                &cx,
                &req.ciphertext_blob,
                &source_context,
                expected.as_ref(),
                destination,
                destination_context.as_ref(),
            )
            .await?;
        Ok(Response::new(pb::ReEncryptResponse {
            ciphertext_blob: re.sealed.blob,
            source_key_id: re.source_key_id.to_string(),
            source_key_version: re.source_key_version,
            key_id: re.sealed.key_id.to_string(),
            key_version: re.sealed.key_version,
        }))
    }
}
