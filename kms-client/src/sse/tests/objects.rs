//! Rows R2–R6 and M1, and whole objects sealed and opened through a fake
//! kmsd: metadata, bindings, bucket keys.

use std::{io::Read, io::Write, time::Duration};

use super::*;
use crate::{
    bucket_key::BucketKeyPolicy,
    stream::{ChunkSize, Encryptor, Layout, PartNumber},
};

const OBJECT: ObjectId<'static> = ObjectId {
    bucket: "photos",
    key: "cat.jpg",
};

fn sse(policy: BucketKeyPolicy) -> SseKeys<FakeKms> {
    SseKeys::new(FakeKms::default(), policy)
}

/// Seals `body` as `object` under `decision`; returns the stored metadata
/// map and the stored bytes.
async fn put(
    keys: &SseKeys<FakeKms>,
    decision: &Decision,
    object: &ObjectId<'_>,
    body: &[u8],
) -> (
    std::collections::BTreeMap<String, String>,
    Vec<u8>,
    SseResponse,
) {
    let sealing = keys.seal(decision, object).await.unwrap().unwrap();
    let binding = object.binding();
    let chunk = ChunkSize::from_log2(6).unwrap();
    let mut writer = Encryptor::new(&sealing.key, &binding, PartNumber::SINGLE, chunk)
        .unwrap()
        .writer(Vec::new());
    writer.write_all(body).unwrap();
    let (stored, info) = writer.finish().unwrap();
    let layout = Layout::seal(&sealing.key, &binding, [info]).unwrap();
    let map = StoredObject {
        sse: sealing.stored,
        layout,
    }
    .to_map();
    (map, stored, sealing.response)
}

async fn get(
    keys: &SseKeys<FakeKms>,
    map: &std::collections::BTreeMap<String, String>,
    stored: &[u8],
    customer: Option<&CustomerKey>,
    object: &ObjectId<'_>,
) -> Result<Vec<u8>, SseError> {
    let stored_object = StoredObject::from_map(map)?.unwrap();
    let opened = keys
        .open(&stored_object.sse, customer, KeySlot::Object, object)
        .await?;
    let mut out = Vec::new();
    opened
        .decryptor(object, &stored_object.layout)?
        .reader(stored)
        .read_to_end(&mut out)
        .map_err(|e| SseError::Stream(crate::stream::StreamError::from_io(&e).unwrap().clone()))?;
    Ok(out)
}

fn kms(bucket_key: bool) -> Decision {
    Decision::Kms {
        key_id: Some("app".into()),
        context: EncryptionContext::from([("team".into(), "blue".into())]),
        bucket_key,
    }
}

#[tokio::test]
async fn every_mode_round_trips_and_answers_its_headers() {
    let keys = sse(BucketKeyPolicy::default());
    let body = b"a secret payload, longer than one 64-byte chunk of the test format......";
    for decision in [
        Decision::S3,
        kms(false),
        kms(true),
        Decision::Customer(customer(KEY_A)),
    ] {
        let (map, stored, response) = put(&keys, &decision, &OBJECT, body).await;
        assert!(!stored.windows(8).any(|w| body.windows(8).any(|b| b == w)));
        // Nothing in the metadata is the key or its MD5.
        let md5 = b64(&crate::crypto::md5(&KEY_A));
        assert!(
            map.values()
                .all(|v| !v.contains(&md5) && !v.contains(&b64(&KEY_A)))
        );
        let key = customer(KEY_A);
        let customer = matches!(decision, Decision::Customer(_)).then_some(&key);
        assert_eq!(
            get(&keys, &map, &stored, customer, &OBJECT).await.unwrap(),
            body
        );
        let stored_sse = StoredSse::from_map(&map).unwrap().unwrap();
        let head = SseKeys::<FakeKms>::head(&stored_sse, customer).unwrap();
        match decision {
            Decision::S3 => assert_eq!(head.server_side_encryption, Some("AES256")),
            Decision::Kms { bucket_key, .. } => {
                assert_eq!(head.server_side_encryption, Some("aws:kms"));
                assert_eq!(head.kms_key_id.as_deref(), Some("app"));
                assert_eq!(head.bucket_key_enabled, Some(bucket_key));
                assert!(response.context.is_some());
                assert!(head.for_operation(Operation::HeadObject).context.is_none());
            }
            Decision::Customer(_) => {
                assert_eq!(head.customer_algorithm, Some("AES256"));
                assert_eq!(head.customer_key_md5.as_deref(), Some(md5.as_str()));
                assert_eq!(response.server_side_encryption, None);
            }
            Decision::None => unreachable!(),
        }
    }
    assert!(keys.seal(&Decision::None, &OBJECT).await.unwrap().is_none());
}

#[tokio::test]
async fn r2_r3_r4_customer_key_checks() {
    let keys = sse(BucketKeyPolicy::default());
    let (map, stored, _) = put(&keys, &Decision::Customer(customer(KEY_A)), &OBJECT, b"x").await;
    // R2: no key.
    assert_s3(
        get(&keys, &map, &stored, None, &OBJECT).await,
        "InvalidRequest",
        400,
    );
    // R3: the wrong key.
    let wrong = customer(KEY_B);
    assert_s3(
        get(&keys, &map, &stored, Some(&wrong), &OBJECT).await,
        "AccessDenied",
        403,
    );
    let stored_sse = StoredSse::from_map(&map).unwrap().unwrap();
    assert_s3(
        SseKeys::<FakeKms>::head(&stored_sse, Some(&wrong)),
        "AccessDenied",
        403,
    );
    assert_s3(
        SseKeys::<FakeKms>::head(&stored_sse, None),
        "InvalidRequest",
        400,
    );
    // R4: a key for an object that is not SSE-C, managed or plain.
    let (map, stored, _) = put(&keys, &Decision::S3, &OBJECT, b"x").await;
    let key = customer(KEY_A);
    assert_s3(
        get(&keys, &map, &stored, Some(&key), &OBJECT).await,
        "InvalidRequest",
        400,
    );
    assert_s3(
        check_plain_object(Some(&key), KeySlot::Object),
        "InvalidRequest",
        400,
    );
    assert!(check_plain_object(None, KeySlot::Object).is_ok());
}

#[tokio::test]
async fn r5_copy_source_slot_reports_its_own_headers() {
    let keys = sse(BucketKeyPolicy::default());
    let (map, _, _) = put(&keys, &Decision::Customer(customer(KEY_A)), &OBJECT, b"x").await;
    let stored = StoredSse::from_map(&map).unwrap().unwrap();
    let wrong = customer(KEY_B);
    for (result, code, status) in [
        (
            stored.check_customer_key(None, KeySlot::CopySource),
            "InvalidRequest",
            400,
        ),
        (
            stored.check_customer_key(Some(&wrong), KeySlot::CopySource),
            "AccessDenied",
            403,
        ),
    ] {
        let error = result.unwrap_err();
        assert!(error.to_string().contains("x-amz-copy-source"), "{error}");
        assert_eq!((error.s3_code(), error.http_status()), (code, status));
    }
}

#[test]
fn r6_ranges_beyond_the_object() {
    let key = DataKey::from_bytes([1; 32]);
    let mut writer = Encryptor::new(&key, b"b", PartNumber::SINGLE, ChunkSize::DEFAULT)
        .unwrap()
        .writer(Vec::new());
    writer.write_all(b"0123456789").unwrap();
    let (_, info) = writer.finish().unwrap();
    let layout = Layout::seal(&key, b"b", [info]).unwrap();
    assert_s3(
        layout.plan_range(5..11).map_err(SseError::from),
        "InvalidRange",
        416,
    );
}

#[tokio::test]
async fn k5_a_sealed_key_moved_to_another_name_does_not_open() {
    let keys = sse(BucketKeyPolicy::default());
    let other = ObjectId::new("photos", "dog.jpg");
    for decision in [
        Decision::S3,
        kms(false),
        Decision::Customer(customer(KEY_A)),
    ] {
        let (map, stored, _) = put(&keys, &decision, &OBJECT, b"payload").await;
        let key = customer(KEY_A);
        let customer = matches!(decision, Decision::Customer(_)).then_some(&key);
        // Metadata and bytes copied verbatim under another name.
        let error = get(&keys, &map, &stored, customer, &other)
            .await
            .unwrap_err();
        assert_eq!(
            (error.s3_code(), error.http_status()),
            ("InternalError", 500),
            "{error}"
        );
    }
}

#[tokio::test]
async fn m1_corrupt_metadata_is_a_server_error() {
    let keys = sse(BucketKeyPolicy::default());
    let (map, _, _) = put(&keys, &kms(false), &OBJECT, b"x").await;
    for (key, value) in [
        (keys::MODE, "SSE-X"),
        (keys::CUSTOMER_SALT, "zz"),
        ("x-kms-sse-unknown", "1"),
        (crate::metadata::keys::SEALED_KEY, "%%%"),
        (crate::metadata::keys::LAYOUT_TAG, "00"),
    ] {
        let mut bad = map.clone();
        bad.insert(key.into(), value.into());
        assert_s3(StoredObject::from_map(&bad), "InternalError", 500);
    }
    let mut missing = map.clone();
    missing.remove(crate::metadata::keys::SEALED_KEY);
    assert_s3(StoredObject::from_map(&missing), "InternalError", 500);
    // Without a mode the object is simply not SSE.
    let plain: [(&str, &str); 1] = [("content-type", "text/plain")];
    assert!(StoredObject::from_map(plain).unwrap().is_none());
}

#[tokio::test]
async fn bucket_keys_cost_one_generate_per_ttl_and_budget() {
    let keys = sse(BucketKeyPolicy {
        ttl: Duration::from_secs(3600),
        max_uses: 40,
        max_entries: 8,
    });
    let mut objects = Vec::new();
    for i in 0..100 {
        let name = format!("o{i}");
        let object = ObjectId::new("photos", &name);
        let (map, stored, response) = put(&keys, &kms(true), &object, name.as_bytes()).await;
        assert_eq!(response.bucket_key_enabled, Some(true));
        objects.push((name, map, stored));
    }
    // 100 objects at 40 per bucket key: three GenerateDataKey calls.
    assert_eq!(keys.source().generated.load(Ordering::SeqCst), 3);
    // Reading needs no Decrypt while the keys are cached (the writer
    // remembered them)...
    for (name, map, stored) in &objects {
        let object = ObjectId::new("photos", name);
        assert_eq!(
            get(&keys, map, stored, None, &object).await.unwrap(),
            name.as_bytes()
        );
    }
    assert!(keys.source().decrypted.load(Ordering::SeqCst) <= 3);
    // ...and a fresh process (empty cache) opens each bucket key once.
    let restarted = sse(BucketKeyPolicy::default());
    for (name, map, stored) in &objects {
        let object = ObjectId::new("photos", name);
        assert_eq!(
            get(&restarted, map, stored, None, &object).await.unwrap(),
            name.as_bytes()
        );
    }
    assert_eq!(restarted.source().decrypted.load(Ordering::SeqCst), 3);
    assert_eq!(restarted.source().generated.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn bucket_keys_expire_and_objects_stay_readable() {
    let keys = sse(BucketKeyPolicy {
        ttl: Duration::from_millis(50),
        max_uses: 1000,
        max_entries: 1,
    });
    let first = put(&keys, &kms(true), &OBJECT, b"first").await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    let other = ObjectId::new("videos", "a");
    let second = put(&keys, &kms(true), &other, b"second").await;
    assert_eq!(keys.source().generated.load(Ordering::SeqCst), 2);
    // Both readable after expiry, with one entry allowed at a time.
    assert_eq!(
        get(&keys, &first.0, &first.1, None, &OBJECT).await.unwrap(),
        b"first"
    );
    assert_eq!(
        get(&keys, &second.0, &second.1, None, &other)
            .await
            .unwrap(),
        b"second"
    );
    // Each object has its own derived key: same bucket key, other salts.
    let a = put(&keys, &kms(true), &OBJECT, b"same").await;
    let b = put(&keys, &kms(true), &OBJECT, b"same").await;
    assert_eq!(
        a.0[crate::metadata::keys::SEALED_KEY],
        b.0[crate::metadata::keys::SEALED_KEY]
    );
    assert_ne!(a.0[keys::BUCKET_KEY_SALT], b.0[keys::BUCKET_KEY_SALT]);
}

#[tokio::test]
async fn the_client_context_is_bound_and_stored() {
    let keys = sse(BucketKeyPolicy::default());
    for bucket_key in [false, true] {
        let (mut map, stored, _) = put(&keys, &kms(bucket_key), &OBJECT, b"x").await;
        assert_eq!(decode_context(&map[keys::CONTEXT]).unwrap()["team"], "blue");
        // Another context in the metadata: the key no longer opens.
        let other = encode_context(&EncryptionContext::from([("team".into(), "red".into())]));
        map.insert(keys::CONTEXT.into(), other);
        assert!(get(&keys, &map, &stored, None, &OBJECT).await.is_err());
    }
}

/// A fake kmsd whose calls for buckets named `slow…` wait for a permit.
struct Gated {
    inner: FakeKms,
    gate: tokio::sync::Semaphore,
    waiting: AtomicUsize,
}

impl Default for Gated {
    fn default() -> Self {
        Self {
            inner: FakeKms::default(),
            gate: tokio::sync::Semaphore::new(0),
            waiting: AtomicUsize::new(0),
        }
    }
}

impl Gated {
    async fn pass(&self, context: &EncryptionContext) {
        if context.values().any(|arn| arn.contains(":::slow")) {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            self.gate.acquire().await.unwrap().forget();
        }
    }
}

impl KeySource for Gated {
    async fn generate_data_key(
        &self,
        key_id: Option<&str>,
        context: &EncryptionContext,
    ) -> Result<crate::GeneratedDataKey, crate::Error> {
        self.pass(context).await;
        self.inner.generate_data_key(key_id, context).await
    }

    async fn decrypt_data_key(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<DataKey, crate::Error> {
        self.pass(context).await;
        self.inner.decrypt_data_key(blob, context).await
    }
}

/// One bucket whose bucket key is slow to come from kmsd holds up only
/// its own requests: another bucket's writes and reads go on (the cache
/// fills per key, not under one lock for the process). Concurrent writes
/// to the slow bucket still cost one GenerateDataKey.
#[tokio::test]
async fn a_slow_bucket_key_holds_up_only_its_own_bucket() {
    let keys = std::sync::Arc::new(SseKeys::new(Gated::default(), BucketKeyPolicy::default()));
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let keys = std::sync::Arc::clone(&keys);
            tokio::spawn(async move {
                let object = ObjectId::new("slow", "a");
                keys.seal(&kms(true), &object).await.map(|s| s.is_some())
            })
        })
        .collect();
    while keys.source().waiting.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let fast = ObjectId::new("fast", "b");
    let sealing = tokio::time::timeout(Duration::from_secs(10), keys.seal(&kms(true), &fast))
        .await
        .expect("a slow bucket key held up another bucket's write")
        .unwrap()
        .unwrap();
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        keys.open(&sealing.stored, None, KeySlot::Object, &fast),
    )
    .await
    .expect("a slow bucket key held up another bucket's read")
    .unwrap();
    assert_eq!(
        read.key.expose_secret(),
        sealing.key.expose_secret(),
        "the writer's own bucket key opens its object"
    );
    keys.source().gate.add_permits(16);
    for task in slow {
        assert!(task.await.unwrap().unwrap());
    }
    // One for the slow bucket (shared by its four writes), one for "fast".
    assert_eq!(keys.source().inner.generated.load(Ordering::SeqCst), 2);
}

/// An object's sealed bucket key copied into an object of another bucket
/// is opened by kmsd under that bucket's context (and refused), never
/// answered from the key cached for the first bucket.
#[tokio::test]
async fn a_cached_bucket_key_is_not_reused_for_another_bucket() {
    let keys = sse(BucketKeyPolicy::default());
    let (map, stored, _) = put(&keys, &kms(true), &OBJECT, b"x").await;
    // Cached (the writer remembered it): the object reads with no Decrypt.
    assert_eq!(
        get(&keys, &map, &stored, None, &OBJECT).await.unwrap(),
        b"x"
    );
    assert_eq!(keys.source().decrypted.load(Ordering::SeqCst), 0);

    let elsewhere = ObjectId::new("videos", OBJECT.key);
    let copied = StoredObject::from_map(&map).unwrap().unwrap();
    let result = keys
        .open(&copied.sse, None, KeySlot::Object, &elsewhere)
        .await;
    assert_eq!(keys.source().decrypted.load(Ordering::SeqCst), 1);
    match result {
        Err(SseError::Kms(error)) => assert_eq!(error.reason(), Some("INVALID_CIPHERTEXT")),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a bucket key cached for photos opened an object of videos"),
    }
}
