//! The example object store (examples/objstore, docs/integration.md)
//! against a real kmsd: PUT, GET, HEAD, range GET, multipart and copy
//! under SSE-S3, SSE-KMS and SSE-C, S3 error codes, and the `rewrap`
//! command moving 1,000 objects to a rotated key version.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{process::Command, sync::Arc, time::Instant};

use http::HeaderMap;
use kms_client::{KmsClient, proto, sse::CustomerKey};
use kms_objstore::{ObjectStore, S3Error};
use kmsd_tests::{Kmsd, binary};

const SSE: &str = "x-amz-server-side-encryption";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(n, v)| {
            (
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            )
        })
        .collect()
}

/// The SSE-C request headers for a 32-byte key (or the copy-source ones).
fn customer(key: [u8; 32], prefix: &str) -> Vec<(String, String)> {
    use base64::Engine as _;
    let md5 = CustomerKey::from_bytes(key).key_md5().to_owned();
    vec![
        (format!("{prefix}algorithm"), "AES256".into()),
        (
            format!("{prefix}key"),
            base64::engine::general_purpose::STANDARD.encode(key),
        ),
        (format!("{prefix}key-md5"), md5),
    ]
}

fn owned(pairs: &[(String, String)]) -> HeaderMap {
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    headers(&refs)
}

const SSE_C: &str = "x-amz-server-side-encryption-customer-";
const COPY_SSE_C: &str = "x-amz-copy-source-server-side-encryption-customer-";

async fn create_key(client: &KmsClient, key_id: &str) {
    client
        .key_admin()
        .create_key(proto::CreateKeyRequest {
            key_id: key_id.into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn code(result: Result<impl std::fmt::Debug, S3Error>) -> (&'static str, u16) {
    let error = result.expect_err("the request should fail");
    (error.code, error.status)
}

#[tokio::test]
async fn every_s3_operation_works_under_each_sse_mode() {
    let kmsd = Kmsd::start_local().await;
    let client = kmsd.client().await;
    create_key(&client, "app-key").await;
    let root = tempfile::tempdir().unwrap();
    let store = ObjectStore::new(
        root.path().into(),
        client.clone(),
        kms_client::sse::Transport::Secure,
    );
    let context = "eyJkZXB0IjoiZmluYW5jZSJ9"; // {"dept":"finance"}
    let sse_c_key = [7u8; 32];
    let modes: Vec<(&str, Vec<(String, String)>)> = vec![
        ("SSE-S3", vec![(SSE.into(), "AES256".into())]),
        (
            "SSE-KMS",
            vec![
                (SSE.into(), "aws:kms".into()),
                (format!("{SSE}-aws-kms-key-id"), "app-key".into()),
                (format!("{SSE}-context"), context.into()),
            ],
        ),
        ("SSE-C", customer(sse_c_key, SSE_C)),
    ];
    // Three chunks of the default 1 MiB, the last one short.
    let data = body(2_500_000, 1);
    for (mode, write) in &modes {
        let write = owned(write);
        let read = if *mode == "SSE-C" {
            write.clone()
        } else {
            HeaderMap::new()
        };
        let key = format!("{mode}/object");
        let answered = store
            .put_object("photos", &key, &write, &data)
            .await
            .unwrap();
        println!("{mode} PUT answered {answered:?}");
        match *mode {
            "SSE-S3" => assert!(answered.contains(&(SSE, "AES256".into()))),
            "SSE-KMS" => assert!(answered.contains(&(
                "x-amz-server-side-encryption-aws-kms-key-id",
                "app-key".into()
            ))),
            _ => assert!(
                answered
                    .iter()
                    .any(|(n, _)| n.ends_with("customer-key-md5"))
            ),
        }
        let (size, _) = store.head_object("photos", &key, &read).unwrap();
        assert_eq!(size, data.len() as u64, "{mode} HEAD");
        let whole = store.get_object("photos", &key, &read, None).await.unwrap();
        assert_eq!(whole.body, data, "{mode} GET");
        // A range across the first chunk boundary reads two chunks, not three.
        let range = 1_048_000..1_049_000;
        let part = store
            .get_object("photos", &key, &read, Some(range.clone()))
            .await
            .unwrap();
        assert_eq!(part.body, &data[1_048_000..1_049_000], "{mode} range");
        assert!(
            part.fetched < whole.fetched,
            "{mode}: {} of {}",
            part.fetched,
            whole.fetched
        );
        assert_eq!(
            code(
                store
                    .get_object("photos", &key, &read, Some(0..3_000_000))
                    .await
            ),
            ("InvalidRange", 416)
        );

        // Multipart: three parts, read across a part boundary.
        let (id, _) = store
            .create_multipart_upload("photos", &format!("{key}.mp"), &write)
            .await
            .unwrap();
        let parts = [body(1_200_000, 2), body(1_200_000, 3), body(10, 4)];
        for (n, part) in parts.iter().enumerate() {
            store
                .upload_part(&id, n as u32 + 1, &read, part)
                .await
                .unwrap();
        }
        store
            .complete_multipart_upload(&id, &[1, 2, 3], &read)
            .await
            .unwrap();
        let joined = parts.concat();
        let got = store
            .get_object("photos", &format!("{key}.mp"), &read, None)
            .await
            .unwrap();
        assert_eq!(got.body, joined, "{mode} multipart");
        let across = store
            .get_object(
                "photos",
                &format!("{key}.mp"),
                &read,
                Some(1_199_990..1_200_010),
            )
            .await
            .unwrap();
        assert_eq!(across.body, &joined[1_199_990..1_200_010]);

        // Copy to an SSE-KMS object (bucket key on), re-encrypted on the way.
        let mut copy = vec![
            (SSE.to_owned(), "aws:kms".to_owned()),
            (format!("{SSE}-bucket-key-enabled"), "true".to_owned()),
        ];
        if *mode == "SSE-C" {
            copy.extend(customer(sse_c_key, COPY_SSE_C));
        }
        store
            .copy_object(("photos", &key), ("archive", &key), &owned(&copy))
            .await
            .unwrap();
        let copied = store
            .get_object("archive", &key, &HeaderMap::new(), None)
            .await
            .unwrap();
        assert_eq!(copied.body, data, "{mode} copy");
    }

    // The S3 answers of the usual mistakes.
    let sse_c_object = "SSE-C/object";
    assert_eq!(
        code(
            store
                .get_object("photos", sse_c_object, &HeaderMap::new(), None)
                .await
        ),
        ("InvalidRequest", 400)
    );
    assert_eq!(
        code(
            store
                .get_object(
                    "photos",
                    sse_c_object,
                    &owned(&customer([8; 32], SSE_C)),
                    None
                )
                .await
        ),
        ("AccessDenied", 403)
    );
    assert_eq!(
        code(
            store
                .get_object("photos", "missing", &HeaderMap::new(), None)
                .await
        ),
        ("NoSuchKey", 404)
    );
    assert_eq!(
        code(
            store
                .put_object("photos", "x", &headers(&[(SSE, "aws:kms:dsse")]), b"x")
                .await
        ),
        ("NotImplemented", 501)
    );
    // A disabled master key: KMS.DisabledException until it is enabled.
    client
        .key_admin()
        .disable_key(proto::DisableKeyRequest {
            key_id: "app-key".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        code(
            store
                .get_object("photos", "SSE-KMS/object", &HeaderMap::new(), None)
                .await
        ),
        ("KMS.DisabledException", 400)
    );
    client
        .key_admin()
        .enable_key(proto::EnableKeyRequest {
            key_id: "app-key".into(),
        })
        .await
        .unwrap();
    store
        .get_object("photos", "SSE-KMS/object", &HeaderMap::new(), None)
        .await
        .unwrap();
}

fn objstore(kmsd: &Kmsd, root: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(binary("objstore"))
        .arg("--kmsd")
        .arg(kmsd.endpoint().to_string())
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "objstore {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn rewrap_moves_1000_objects_to_the_rotated_key_version() {
    let kmsd = Kmsd::start_local().await;
    let client = kmsd.client().await;
    create_key(&client, "app-key").await;
    let root = tempfile::tempdir().unwrap();
    let store = Arc::new(ObjectStore::new(
        root.path().into(),
        client.clone(),
        kms_client::sse::Transport::Secure,
    ));
    // 500 SSE-S3 (default key), 400 SSE-KMS (app-key), 100 SSE-KMS under one
    // bucket key, and one SSE-C object (nothing to re-wrap).
    let mode = |i: usize| match i {
        0..500 => vec![(SSE, "AES256")],
        500..900 => vec![
            (SSE, "aws:kms"),
            ("x-amz-server-side-encryption-aws-kms-key-id", "app-key"),
        ],
        _ => vec![
            (SSE, "aws:kms"),
            ("x-amz-server-side-encryption-aws-kms-key-id", "app-key"),
            ("x-amz-server-side-encryption-bucket-key-enabled", "true"),
        ],
    };
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let store = store.clone();
        let write = headers(&mode(i));
        tasks.spawn(async move {
            store
                .put_object(
                    "bucket",
                    &format!("object-{i:04}"),
                    &write,
                    &body(100 + i, i as u8),
                )
                .await
                .unwrap();
        });
        if tasks.len() >= 16 {
            tasks.join_next().await.unwrap().unwrap();
        }
    }
    tasks.join_all().await;
    store
        .put_object(
            "bucket",
            "sse-c",
            &owned(&customer([9; 32], SSE_C)),
            b"secret",
        )
        .await
        .unwrap();
    println!("1,000 PUTs took {:.1?}", started.elapsed());

    for key_id in ["default", "app-key"] {
        client
            .key_admin()
            .rotate_key(proto::RotateKeyRequest {
                key_id: key_id.into(),
            })
            .await
            .unwrap();
    }
    let started = Instant::now();
    let out = objstore(&kmsd, root.path(), &["rewrap", "--concurrency", "16"]);
    println!("rewrap took {:.1?}: {out}", started.elapsed());
    assert!(
        out.contains("objects 1000 sealed_keys 901 rewrapped 901 already_current 0 failed 0 interrupted false"),
        "{out}"
    );
    let checkpoint = out
        .lines()
        .find_map(|l| l.strip_prefix("checkpoint "))
        .expect("a checkpoint")
        .to_owned();
    let check = |version: u32, keys: std::ops::Range<usize>| {
        let store = store.clone();
        async move {
            for i in keys {
                let key = format!("object-{i:04}");
                let (key_id, got) = store.sealed_key("bucket", &key).unwrap().unwrap();
                assert_eq!(got, version, "{key} ({key_id})");
                let object = store
                    .get_object("bucket", &key, &HeaderMap::new(), None)
                    .await
                    .unwrap();
                assert_eq!(object.body, body(100 + i, i as u8), "{key}");
            }
        }
    };
    check(2, 0..1000).await;

    // Resuming: after another rotation, a run resumed after the checkpoint
    // of object-0449 moves only what follows it; a full run then finishes.
    for key_id in ["default", "app-key"] {
        client
            .key_admin()
            .rotate_key(proto::RotateKeyRequest {
                key_id: key_id.into(),
            })
            .await
            .unwrap();
    }
    assert!(checkpoint.ends_with(".meta"), "{checkpoint}");
    let middle = format!("buckets/bucket/objects/{}.meta", hex::encode("object-0449"));
    let out = objstore(&kmsd, root.path(), &["rewrap", "--resume-after", &middle]);
    assert!(
        out.contains("rewrapped 451 already_current 0 failed 0"),
        "{out}"
    );
    check(2, 0..450).await;
    check(3, 450..1000).await;
    let out = objstore(&kmsd, root.path(), &["rewrap"]);
    assert!(out.contains("failed 0 interrupted false"), "{out}");
    check(3, 0..1000).await;
    let object = store
        .get_object("bucket", "sse-c", &owned(&customer([9; 32], SSE_C)), None)
        .await
        .unwrap();
    assert_eq!(object.body, b"secret");
}
