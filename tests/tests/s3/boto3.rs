//! boto3: every mode, the error codes, bucket defaults, and what is on disk.

use super::*;

#[tokio::test]
async fn every_mode_round_trips_and_stores_only_ciphertext() {
    let (kmsd, _) = start_kmsd().await;
    let root = private_dir();
    let gateway = Gateway::start(&kmsd, root.path(), &[]);
    let results = json(&boto3(&gateway, &["modes", "modes"]));

    // A 100-byte range of a 300 kB object reads one 64 KiB chunk and the
    // stream header (two fetches), never the whole object.
    for (mode, fetched) in results["fetched"].as_object().unwrap() {
        let fetched = fetched.as_u64().unwrap();
        if mode == "none" {
            assert_eq!(fetched, 100);
        } else {
            assert_eq!(fetched, 76 + 65536 + 16, "{mode}");
        }
    }

    // The scan works (the plain objects are found)...
    assert!(on_disk(root.path(), b"PLAINTEXT-none-"));
    // ...and no encrypted object left a plaintext byte pattern anywhere,
    // nor did an SSE-C key.
    for mode in [
        "sse-s3",
        "sse-kms-default",
        "sse-kms-key",
        "sse-kms-context",
        "sse-c",
    ] {
        let marker = format!("PLAINTEXT-{mode}-");
        assert!(
            !on_disk(root.path(), marker.as_bytes()),
            "{mode} plaintext on disk"
        );
    }
    assert!(
        !on_disk(root.path(), b"sse-c-test-key-A-0123456789abcde"),
        "an SSE-C key on disk"
    );

    // A sealed key and payload moved to another object name (the files
    // copied, as an attacker with disk access could) do not open there.
    let bucket = root.path().join("modes");
    fs::copy(
        bucket.join("sse-kms-key/single"),
        bucket.join("sse-kms-key/moved"),
    )
    .unwrap();
    fs::copy(
        root.path()
            .join(".kms/objects")
            .join(sidecar("modes", "sse-kms-key/single")),
        root.path()
            .join(".kms/objects")
            .join(sidecar("modes", "sse-kms-key/moved")),
    )
    .unwrap();
    let moved = json(&boto3(&gateway, &["get", "modes", "sse-kms-key/moved"]));
    assert_eq!(moved["status"], 500, "{moved}");
    assert_eq!(moved["code"], "InternalError", "{moved}");
}

/// The gateway's metadata file name of an object (see its store.rs).
fn sidecar(bucket: &str, key: &str) -> String {
    let mut input = (bucket.len() as u32).to_be_bytes().to_vec();
    input.extend_from_slice(bucket.as_bytes());
    input.extend_from_slice(key.as_bytes());
    hex_string(ring::digest::digest(&ring::digest::SHA256, &input).as_ref())
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn errors_carry_the_s3_codes() {
    let (kmsd, _) = start_kmsd().await;
    let root = private_dir();
    let gateway = Gateway::start(&kmsd, root.path(), &[]);
    boto3(&gateway, &["errors", "errors"]);
}

#[tokio::test]
async fn bucket_default_encryption_applies_without_headers() {
    let (kmsd, _) = start_kmsd().await;
    let root = private_dir();
    let gateway = Gateway::start(&kmsd, root.path(), &[]);
    boto3(&gateway, &["bucket-default", "defaults"]);
    let contains_plaintext = |key: &str| {
        let bytes = fs::read(root.path().join("defaults").join(key)).unwrap();
        bytes.windows(25).any(|w| w == b"PLAINTEXT-bucket-default-")
    };
    for key in ["default", "s3", "c", "no-bucket-key"] {
        assert!(!contains_plaintext(key), "{key} is stored in plaintext");
    }
    // Written after DeleteBucketEncryption, without headers: stored as sent.
    assert!(contains_plaintext("after"));
}
