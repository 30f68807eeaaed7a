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
//! wiped when evicted.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use tokio::sync::Mutex;

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
    born: Instant,
    uses: u64,
}

impl Entry {
    fn usable(&self, policy: &BucketKeyPolicy, now: Instant) -> bool {
        now.duration_since(self.born) < policy.ttl && self.uses < policy.max_uses
    }
}

/// The bucket keys of one process. Both maps are behind async mutexes
/// held across the kmsd call of a miss, so concurrent writes to a bucket
/// whose key expired cause one GenerateDataKey, not one each.
pub(crate) struct BucketKeyCache {
    policy: BucketKeyPolicy,
    /// For writing, by (bucket, requested key id).
    sealing: Mutex<HashMap<(String, Option<String>), Entry>>,
    /// For reading, by sealed blob.
    opened: Mutex<HashMap<Vec<u8>, Entry>>,
}

impl std::fmt::Debug for BucketKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketKeyCache")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Drops expired entries, then the oldest ones, until one more fits.
fn make_room<K: Clone + Eq + std::hash::Hash>(
    map: &mut HashMap<K, Entry>,
    policy: &BucketKeyPolicy,
    now: Instant,
) {
    map.retain(|_, entry| entry.usable(policy, now));
    while map.len() >= policy.max_entries.max(1) {
        let oldest = map
            .iter()
            .min_by_key(|(_, entry)| entry.born)
            .map(|(key, _)| key.clone());
        match oldest {
            Some(key) => map.remove(&key),
            None => break,
        };
    }
}

impl BucketKeyCache {
    pub(crate) fn new(policy: BucketKeyPolicy) -> Self {
        Self {
            policy,
            sealing: Mutex::new(HashMap::new()),
            opened: Mutex::new(HashMap::new()),
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
        let mut sealing = self.sealing.lock().await;
        let now = Instant::now();
        if !sealing
            .get(&slot)
            .is_some_and(|entry| entry.usable(&self.policy, now))
        {
            let generated = source
                .generate_data_key(key_id, &object.bucket_context())
                .await
                .map_err(SseError::Kms)?;
            make_room(&mut sealing, &self.policy, now);
            // A writer's own reads need no Decrypt: remember the key opened.
            self.remember_opened(&generated.key, &generated.blob, &generated.key_id)
                .await;
            sealing.insert(
                slot.clone(),
                Entry {
                    key: generated.key,
                    blob: generated.blob,
                    key_id: generated.key_id,
                    born: now,
                    uses: 0,
                },
            );
        }
        let Some(entry) = sealing.get_mut(&slot) else {
            // Inserted just above under the same lock.
            unreachable!("the bucket key slot was just filled");
        };
        entry.uses += 1;
        let key = derive(&entry.key, &salt, object, client_context);
        Ok((
            key,
            SealedKey {
                blob: entry.blob.clone(),
                key_id: entry.key_id.clone(),
                bucket_key_salt: Some(salt),
            },
        ))
    }

    async fn remember_opened(&self, key: &DataKey, blob: &[u8], key_id: &str) {
        let mut opened = self.opened.lock().await;
        make_room(&mut opened, &self.policy, Instant::now());
        opened.insert(
            blob.to_vec(),
            Entry {
                key: key.clone_secret(),
                blob: blob.to_vec(),
                key_id: key_id.to_owned(),
                born: Instant::now(),
                uses: 0,
            },
        );
    }

    /// An existing object's key, from its sealed bucket key (opened by kmsd
    /// at most once per TTL and use budget) and its salt.
    pub(crate) async fn open<S: KeySource>(
        &self,
        source: &S,
        object: &ObjectId<'_>,
        sealed: &SealedKey,
        salt: &[u8; 32],
        client_context: &EncryptionContext,
    ) -> Result<DataKey, SseError> {
        let mut opened = self.opened.lock().await;
        let now = Instant::now();
        if !opened
            .get(&sealed.blob)
            .is_some_and(|entry| entry.usable(&self.policy, now))
        {
            let key = source
                .decrypt_data_key(&sealed.blob, &object.bucket_context())
                .await
                .map_err(SseError::Kms)?;
            make_room(&mut opened, &self.policy, now);
            opened.insert(
                sealed.blob.clone(),
                Entry {
                    key,
                    blob: sealed.blob.clone(),
                    key_id: sealed.key_id.clone(),
                    born: now,
                    uses: 0,
                },
            );
        }
        let Some(entry) = opened.get_mut(&sealed.blob) else {
            unreachable!("the opened bucket key was just inserted");
        };
        entry.uses += 1;
        Ok(derive(&entry.key, salt, object, client_context))
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
