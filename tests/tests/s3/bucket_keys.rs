//! Bucket keys through the gateway: kmsd calls counted by its metrics.

use super::*;

const OBJECTS: &str = "1000";

#[tokio::test]
async fn a_thousand_puts_cost_a_handful_of_data_keys() {
    let (kmsd, metrics) = start_kmsd().await;
    let root = private_dir();
    let gateway = Gateway::start(&kmsd, root.path(), &[]);
    let started = Instant::now();
    boto3(&gateway, &["bucket-keys-put", "bucket-keys", OBJECTS]);
    let puts = started.elapsed();
    let generated = ok_calls(metrics, "GenerateDataKey").await;
    println!("{OBJECTS} PUTs with bucket keys: {generated} GenerateDataKey calls in {puts:?}");
    assert!(
        (1.0..=3.0).contains(&generated),
        "{generated} GenerateDataKey calls"
    );

    // All of them read back; the writer cached the bucket key it made, so
    // no Decrypt is needed either.
    boto3(&gateway, &["bucket-keys-get", "bucket-keys", OBJECTS]);
    assert_eq!(ok_calls(metrics, "Decrypt").await, 0.0);

    // A restarted gateway (empty cache, a 1 s TTL) opens the bucket key
    // once, and again once the cache expired.
    drop(gateway);
    let gateway = Gateway::start(&kmsd, root.path(), &["--bucket-key-ttl-secs", "1"]);
    boto3(&gateway, &["bucket-keys-get", "bucket-keys", "50"]);
    let after_restart = ok_calls(metrics, "Decrypt").await;
    assert!(
        (1.0..=3.0).contains(&after_restart),
        "{after_restart} Decrypt calls"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    boto3(&gateway, &["bucket-keys-get", "bucket-keys", "50"]);
    let after_expiry = ok_calls(metrics, "Decrypt").await;
    assert!(
        after_expiry > after_restart,
        "the expired bucket key was reused"
    );
    assert_eq!(ok_calls(metrics, "GenerateDataKey").await, generated);
}
