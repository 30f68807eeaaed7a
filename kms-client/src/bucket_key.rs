//! Bucket keys: one data key from kmsd serves many objects of a bucket.
//!
//! With bucket keys on, an SSE-KMS write asks kmsd for a *bucket key*
//! (GenerateDataKey with the context `aws:s3:arn` = the bucket's ARN, as AWS
//! S3 does) and derives each object's key from it:
//!
//! ```text
//! object key = HKDF-SHA-256(salt = 32 random bytes per object, IKM = bucket key,
//!                           info = "kms-sse/v1/bucket-key-object" || 00
//!                                  || u32(len(binding)) || binding
//!                                  || canonical(client context))
//! ```
//!
//! The object stores the sealed bucket key and its salt, so a read needs
//! one kmsd Decrypt per bucket key (then cached), never per object, and
//! works after the cache expired or the process restarted.
//!
//! The cache is bounded three ways: a bucket key is used for at most
//! [`BucketKeyPolicy::ttl`] and [`BucketKeyPolicy::max_uses`] objects (or
//! reads) before kmsd is asked again, and at most
//! [`BucketKeyPolicy::max_entries`] keys are held. Keys are [`DataKey`]s,
//! wiped when evicted. Opened bucket keys are cached per sealed blob *and*
//! bucket context, so kmsd checks the context of every bucket a blob is
//! read for. Filling is single-flight per key, never across keys.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use moka::{future::Cache, ops::compute::Op, policy::EvictionPolicy};

use crate::{
    DataKey, EncryptionContext,
    crypto::{self, fill_random},
    sse::{KeySource, ObjectId, SealedKey, SseError, object::canonical_context},
};

const LABEL_OBJECT: &[u8] = b"kms-sse/v1/bucket-key-object\0";

/// How long and how often a cached bucket key may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketKeyPolicy {
    /// The longest a bucket key is used after kmsd made (or opened) it.
    pub ttl: Duration,
    /// The most objects one cached bucket key encrypts (or reads open).
    pub max_uses: u64,
    /// The most bucket keys held at once, for writing and for reading each.
    pub max_entries: usize,
}

impl Default for BucketKeyPolicy {
    /// Five minutes, 10,000 uses, 1,024 keys.
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            max_uses: 10_000,
            max_entries: 1024,
        }
    }
}

struct Entry {
    key: DataKey,
    blob: Vec<u8>,
    key_id: String,
    uses: AtomicU64,
}

impl Entry {
    fn new(key: DataKey, blob: Vec<u8>, key_id: String) -> Arc<Self> {
        Arc::new(Self {
            key,
            blob,
            key_id,
            uses: AtomicU64::new(0),
        })
    }

    /// Takes one use of the budget, if any is left.
    fn take_use(&self, policy: &BucketKeyPolicy) -> bool {
        self.uses.fetch_add(1, Ordering::Relaxed) < policy.max_uses
    }
}

/// For writing: the bucket and the key id the request named.
type SealingSlot = (String, Option<String>);
/// For reading: the sealed blob and the canonical context it is opened
/// under. The context is part of the key: a blob copied into an object of
/// another bucket must reach kmsd, which checks it against that bucket's
/// context, rather than be answered from the cache.
type OpenedSlot = (Vec<u8>, Vec<u8>);

/// The bucket keys of one process: one cache for writing and one for
/// reading, each a bounded TTL cache with single-flight filling per key
/// (moka's `try_get_with`): concurrent requests for a bucket whose key is
/// missing cause one kmsd call, and a slow call for one bucket holds up no
/// other bucket.
pub(crate) struct BucketKeyCache {
    policy: BucketKeyPolicy,
    sealing: Cache<SealingSlot, Arc<Entry>>,
    opened: Cache<OpenedSlot, Arc<Entry>>,
}

impl std::fmt::Debug for BucketKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketKeyCache")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn cache<K>(policy: &BucketKeyPolicy) -> Cache<K, Arc<Entry>>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(u64::try_from(policy.max_entries.max(1)).unwrap_or(u64::MAX))
        .time_to_live(policy.ttl)
        // Least recently used goes first; TinyLFU could refuse to admit a
        // new bucket's key, which would then be asked of kmsd every time.
        .eviction_policy(EvictionPolicy::lru())
        .build()
}

/// The error of a call several requests waited for, for one of them.
fn shared(error: Arc<crate::Error>) -> SseError {
    SseError::Kms(Arc::try_unwrap(error).unwrap_or_else(|error| error.shared_copy()))
}

/// Removes `slot`'s entry if it is still `spent` (a concurrent request may
/// have replaced it already).
async fn retire<K>(cache: &Cache<K, Arc<Entry>>, slot: &K, spent: &Arc<Entry>)
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    cache
        .entry(slot.clone())
        .and_compute_with(|current| {
            let op = match current {
                Some(entry) if Arc::ptr_eq(entry.value(), spent) => Op::Remove,
                _ => Op::Nop,
            };
            std::future::ready(op)
        })
        .await;
}

impl BucketKeyCache {
    pub(crate) fn new(policy: BucketKeyPolicy) -> Self {
        Self {
            policy,
            sealing: cache(&policy),
            opened: cache(&policy),
        }
    }

    /// A new object's key: from the bucket's cached key when it is still
    /// usable, else from a bucket key kmsd makes now.
    pub(crate) async fn seal<S: KeySource>(
        &self,
        source: &S,
        object: &ObjectId<'_>,
        key_id: Option<&str>,
        client_context: &EncryptionContext,
    ) -> Result<(DataKey, SealedKey), SseError> {
        let mut salt = [0u8; 32];
        fill_random(&mut salt).map_err(|_| SseError::Stream(crate::stream::StreamError::Random))?;
        let slot = (object.bucket.to_owned(), key_id.map(str::to_owned));
        let bucket_context = object.bucket_context();
        loop {
            let entry = self
                .sealing
                .try_get_with(slot.clone(), async {
                    let generated = source.generate_data_key(key_id, &bucket_context).await?;
                    let entry = Entry::new(generated.key, generated.blob, generated.key_id);
                    // A writer's own reads need no Decrypt: remember the
                    // key opened, under the context it was sealed with.
                    let opened = Entry::new(
                        entry.key.clone_secret(),
                        entry.blob.clone(),
                        entry.key_id.clone(),
                    );
                    self.opened
                        .insert(
                            (entry.blob.clone(), canonical_context(&bucket_context)),
                            opened,
                        )
                        .await;
                    Ok::<_, crate::Error>(entry)
                })
                .await
                .map_err(shared)?;
            if entry.take_use(&self.policy) {
                let key = derive(&entry.key, &salt, object, client_context);
                return Ok((
                    key,
                    SealedKey {
                        blob: entry.blob.clone(),
                        key_id: entry.key_id.clone(),
                        bucket_key_salt: Some(salt),
                    },
                ));
            }
            // Its budget is spent: the next turn makes a new one.
            retire(&self.sealing, &slot, &entry).await;
        }
    }

    /// An existing object's key, from its sealed bucket key (opened by kmsd
    /// at most once per TTL and use budget, and per context) and its salt.
    pub(crate) async fn open<S: KeySource>(
        &self,
        source: &S,
        object: &ObjectId<'_>,
        sealed: &SealedKey,
        salt: &[u8; 32],
        client_context: &EncryptionContext,
    ) -> Result<DataKey, SseError> {
        let bucket_context = object.bucket_context();
        let slot = (sealed.blob.clone(), canonical_context(&bucket_context));
        loop {
            let entry = self
                .opened
                .try_get_with(slot.clone(), async {
                    let key = source
                        .decrypt_data_key(&sealed.blob, &bucket_context)
                        .await?;
                    Ok::<_, crate::Error>(Entry::new(
                        key,
                        sealed.blob.clone(),
                        sealed.key_id.clone(),
                    ))
                })
                .await
                .map_err(shared)?;
            if entry.take_use(&self.policy) {
                return Ok(derive(&entry.key, salt, object, client_context));
            }
            retire(&self.opened, &slot, &entry).await;
        }
    }
}

fn derive(
    bucket_key: &DataKey,
    salt: &[u8; 32],
    object: &ObjectId<'_>,
    client_context: &EncryptionContext,
) -> DataKey {
    let binding = object.binding();
    let binding_len = (binding.len() as u32).to_be_bytes();
    let context = canonical_context(client_context);
    let okm = crypto::hkdf_sha256(
        salt,
        bucket_key.expose_secret(),
        &[LABEL_OBJECT, &binding_len, &binding, &context],
    );
    DataKey::from_bytes(*okm)
}
