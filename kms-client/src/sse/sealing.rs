//! From a decision to a data key (writes), and from stored metadata to the
//! data key again (reads): the only part of SSE that calls kmsd.

use std::future::Future;

use super::{
    CustomerKey, Decision, KeySlot, ObjectId, SealedKey, SseError, SseResponse, StoredSse,
    object::encode_context,
};
use crate::{
    DataKey, EncryptionContext, GeneratedDataKey, KmsClient,
    bucket_key::{BucketKeyCache, BucketKeyPolicy},
    crypto::fill_random,
    stream::{Decryptor, Layout, StreamError},
};

/// Where data keys come from: kmsd ([`KmsClient`]) in production, a fake
/// in tests.
pub trait KeySource: Send + Sync {
    /// A fresh data key under `key_id` (`None`: the default key), sealed
    /// with `context`.
    fn generate_data_key(
        &self,
        key_id: Option<&str>,
        context: &EncryptionContext,
    ) -> impl Future<Output = Result<GeneratedDataKey, crate::Error>> + Send;

    /// Opens a sealed data key with the context it was sealed with.
    fn decrypt_data_key(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
    ) -> impl Future<Output = Result<DataKey, crate::Error>> + Send;
}

impl KeySource for KmsClient {
    fn generate_data_key(
        &self,
        key_id: Option<&str>,
        context: &EncryptionContext,
    ) -> impl Future<Output = Result<GeneratedDataKey, crate::Error>> + Send {
        KmsClient::generate_data_key(self, key_id, context)
    }

    fn decrypt_data_key(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
    ) -> impl Future<Output = Result<DataKey, crate::Error>> + Send {
        KmsClient::decrypt_data_key(self, blob, context)
    }
}

/// The data key of a new object, what to store, and what to answer.
#[derive(Debug)]
pub struct Sealing {
    /// Encrypt the payload with this ([`crate::stream::Encryptor`], with
    /// [`ObjectId::binding`]); it is wiped on drop.
    pub key: DataKey,
    /// Persist this ([`StoredSse::to_map`], plus the layout at the end).
    pub stored: StoredSse,
    /// Answer with this.
    pub response: SseResponse,
}

/// The data key of an existing object and what to answer.
#[derive(Debug)]
pub struct Opened {
    /// The object's data key; wiped on drop.
    pub key: DataKey,
    /// Answer with this.
    pub response: SseResponse,
}

impl Opened {
    /// A decryptor for the object's payload (whole, or ranges planned with
    /// [`Layout::plan_range`]); fails unless `layout` authenticates under
    /// this key and the object's binding.
    pub fn decryptor(&self, object: &ObjectId<'_>, layout: &Layout) -> Result<Decryptor, SseError> {
        Ok(Decryptor::new(&self.key, &object.binding(), layout)?)
    }
}

/// SSE for one storage server: kmsd plus the bucket-key cache.
#[derive(Debug)]
pub struct SseKeys<S> {
    source: S,
    bucket_keys: BucketKeyCache,
}

fn random_salt() -> Result<[u8; 32], SseError> {
    let mut salt = [0u8; 32];
    fill_random(&mut salt).map_err(|_| SseError::Stream(StreamError::Random))?;
    Ok(salt)
}

fn managed_response(stored: &StoredSse) -> SseResponse {
    match stored {
        StoredSse::S3(_) => SseResponse {
            server_side_encryption: Some("AES256"),
            ..SseResponse::default()
        },
        StoredSse::Kms(sealed, context) => SseResponse {
            server_side_encryption: Some("aws:kms"),
            kms_key_id: Some(sealed.key_id.clone()),
            context: (!context.is_empty()).then(|| encode_context(context)),
            bucket_key_enabled: Some(sealed.bucket_key_salt.is_some()),
            ..SseResponse::default()
        },
        StoredSse::Customer { .. } => SseResponse::default(),
    }
}

impl<S: KeySource> SseKeys<S> {
    /// SSE over `source` (usually a [`KmsClient`]) with bucket keys cached
    /// per `policy`.
    pub fn new(source: S, policy: BucketKeyPolicy) -> Self {
        Self {
            source,
            bucket_keys: BucketKeyCache::new(policy),
        }
    }

    /// The key source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The data key and stored form of a new object (or multipart upload);
    /// `Ok(None)` for [`Decision::None`].
    ///
    /// SSE-S3 and SSE-KMS ask kmsd for a data key sealed with the context
    /// [`ObjectId::object_context`] (SSE-S3 under kmsd's default key), or,
    /// with bucket keys, derive it from the bucket's cached key. SSE-C
    /// derives it from the customer key and a fresh salt, and stores only
    /// the salt and the key's fingerprint.
    pub async fn seal(
        &self,
        decision: &Decision,
        object: &ObjectId<'_>,
    ) -> Result<Option<Sealing>, SseError> {
        let (key, stored) = match decision {
            Decision::None => return Ok(None),
            Decision::Customer(customer) => {
                let salt = random_salt()?;
                let stored = StoredSse::Customer {
                    salt,
                    fingerprint: customer.fingerprint(&salt),
                };
                let key = customer.object_key(&salt, &object.binding());
                let response = SseResponse::customer(customer.key_md5());
                return Ok(Some(Sealing {
                    key,
                    stored,
                    response,
                }));
            }
            Decision::S3 => {
                let (key, sealed) = self.fresh(None, object, &EncryptionContext::new()).await?;
                (key, StoredSse::S3(sealed))
            }
            Decision::Kms {
                key_id,
                context,
                bucket_key,
            } => {
                let (key, sealed) = if *bucket_key {
                    self.bucket_keys
                        .seal(&self.source, object, key_id.as_deref(), context)
                        .await?
                } else {
                    self.fresh(key_id.as_deref(), object, context).await?
                };
                (key, StoredSse::Kms(sealed, context.clone()))
            }
        };
        let response = managed_response(&stored);
        Ok(Some(Sealing {
            key,
            stored,
            response,
        }))
    }

    async fn fresh(
        &self,
        key_id: Option<&str>,
        object: &ObjectId<'_>,
        client_context: &EncryptionContext,
    ) -> Result<(DataKey, SealedKey), SseError> {
        let generated = self
            .source
            .generate_data_key(key_id, &object.object_context(client_context))
            .await
            .map_err(SseError::Kms)?;
        Ok((
            generated.key,
            SealedKey {
                blob: generated.blob,
                key_id: generated.key_id,
                bucket_key_salt: None,
            },
        ))
    }

    /// The data key of an existing object (or upload) for a request that
    /// carries `customer` (its SSE-C key, if any), after checking that key
    /// ([`StoredSse::check_customer_key`]).
    pub async fn open(
        &self,
        stored: &StoredSse,
        customer: Option<&CustomerKey>,
        slot: KeySlot,
        object: &ObjectId<'_>,
    ) -> Result<Opened, SseError> {
        stored.check_customer_key(customer, slot)?;
        let (sealed, context) = match (stored, customer) {
            (StoredSse::Customer { salt, .. }, Some(customer)) => {
                return Ok(Opened {
                    key: customer.object_key(salt, &object.binding()),
                    response: SseResponse::customer(customer.key_md5()),
                });
            }
            (StoredSse::S3(sealed), _) => (sealed, EncryptionContext::new()),
            (StoredSse::Kms(sealed, context), _) => (sealed, context.clone()),
            // check_customer_key refused an SSE-C object without a key.
            (StoredSse::Customer { .. }, None) => {
                return Err(SseError::CustomerKeyRequired { slot });
            }
        };
        let key = match &sealed.bucket_key_salt {
            Some(salt) => {
                self.bucket_keys
                    .open(&self.source, object, sealed, salt, &context)
                    .await?
            }
            None => self
                .source
                .decrypt_data_key(&sealed.blob, &object.object_context(&context))
                .await
                .map_err(SseError::Kms)?,
        };
        Ok(Opened {
            key,
            response: managed_response(stored),
        })
    }

    /// What HEAD answers for a stored object, after checking the request's
    /// SSE-C key; no key is opened.
    pub fn head(
        stored: &StoredSse,
        customer: Option<&CustomerKey>,
    ) -> Result<SseResponse, SseError> {
        stored.check_customer_key(customer, KeySlot::Object)?;
        Ok(match (stored, customer) {
            (StoredSse::Customer { .. }, Some(customer)) => {
                SseResponse::customer(customer.key_md5())
            }
            _ => managed_response(stored),
        })
    }
}
