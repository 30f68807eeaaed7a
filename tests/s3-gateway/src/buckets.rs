//! Bucket default encryption: PutBucketEncryption, GetBucketEncryption,
//! DeleteBucketEncryption, kept per bucket in the gateway's store.

use kms_client::sse::{BucketEncryption, DefaultAlgorithm};
use s3s::{S3Request, S3Response, S3Result, dto::*, s3_error};

use crate::{error, gateway::Gateway};

impl Gateway {
    fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        // s3s has validated the name, so it is a plain directory name.
        if self.root.join(bucket).is_dir() {
            Ok(())
        } else {
            Err(s3_error!(NoSuchBucket))
        }
    }

    pub(crate) async fn put_bucket_encryption_impl(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        let input = req.input;
        self.require_bucket(&input.bucket)?;
        let rules = &input.server_side_encryption_configuration.rules;
        let [rule] = rules.as_slice() else {
            return Err(s3_error!(MalformedXML, "exactly one Rule is required"));
        };
        let default = rule
            .apply_server_side_encryption_by_default
            .as_ref()
            .ok_or_else(|| {
                s3_error!(
                    MalformedXML,
                    "the Rule needs ApplyServerSideEncryptionByDefault"
                )
            })?;
        let encryption = BucketEncryption::new(
            default.sse_algorithm.as_str(),
            default.kms_master_key_id.as_deref(),
            rule.bucket_key_enabled,
        )
        .map_err(error::sse)?;
        self.store
            .put_bucket_encryption(&input.bucket, &encryption)
            .map_err(error::internal)?;
        Ok(S3Response::new(PutBucketEncryptionOutput::default()))
    }

    pub(crate) async fn get_bucket_encryption_impl(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        self.require_bucket(&req.input.bucket)?;
        let Some(encryption) = self.bucket_default(&req.input.bucket)? else {
            let mut error = s3_error!(
                ServerSideEncryptionConfigurationNotFoundError,
                "the bucket has no default encryption"
            );
            error.set_status_code(http::StatusCode::NOT_FOUND);
            return Err(error);
        };
        let (algorithm, key_id) = match encryption.algorithm {
            DefaultAlgorithm::S3 => (ServerSideEncryption::AES256, None),
            DefaultAlgorithm::Kms { key_id } => (ServerSideEncryption::AWS_KMS, key_id),
        };
        let rule = ServerSideEncryptionRule {
            apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                sse_algorithm: ServerSideEncryption::from_static(algorithm),
                kms_master_key_id: key_id,
            }),
            bucket_key_enabled: Some(encryption.bucket_key_enabled),
        };
        Ok(S3Response::new(GetBucketEncryptionOutput {
            server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration {
                rules: vec![rule],
            }),
        }))
    }

    pub(crate) async fn delete_bucket_encryption_impl(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        self.require_bucket(&req.input.bucket)?;
        self.store
            .remove_bucket_encryption(&req.input.bucket)
            .map_err(error::internal)?;
        Ok(S3Response::new(DeleteBucketEncryptionOutput::default()))
    }
}
