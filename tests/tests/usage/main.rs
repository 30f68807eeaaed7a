//! Usage figures, rotation by wrap budget and the deletion guard (issue 20
//! items 4 and 5) against the real binary: on a local key directory
//! (`local.rs`: counted per version, shown by gRPC, REST and the CLI,
//! persisted across a restart, a tiny budget rotating once) and on one
//! OpenBao shared by two nodes (`vault.rs`: figures merged across nodes,
//! the budget counting both).

// Test code: a failed unwrap is a failed test, with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod local;
mod vault;

use std::time::{Duration, Instant};

use kms_client::{KmsClient, proto};
use kmsd_tests::{Kmsd, KmsdOptions, assert_error, ctx, free_port};
use tonic::Code;

fn rpc<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<T, kms_client::Error> {
    r.map(tonic::Response::into_inner)
        .map_err(kms_client::Error::from)
}

async fn create(client: &KmsClient, key_id: &str) {
    rpc(client
        .key_admin()
        .create_key(proto::CreateKeyRequest {
            key_id: key_id.into(),
            ..Default::default()
        })
        .await)
    .unwrap();
}

async fn describe(client: &KmsClient, key_id: &str) -> proto::KeyMetadata {
    rpc(client
        .key_admin()
        .describe_key(proto::DescribeKeyRequest {
            key_id: key_id.into(),
            ..Default::default()
        })
        .await)
    .unwrap()
    .key_metadata
    .unwrap()
}

async fn impact(client: &KmsClient, key_id: &str) -> proto::DescribeKeyResponse {
    rpc(client
        .key_admin()
        .describe_key(proto::DescribeKeyRequest {
            key_id: key_id.into(),
            include_impact: true,
        })
        .await)
    .unwrap()
}

async fn schedule(
    client: &KmsClient,
    key_id: &str,
    force: bool,
) -> Result<proto::ScheduleKeyDeletionResponse, kms_client::Error> {
    rpc(client
        .key_admin()
        .schedule_key_deletion(proto::ScheduleKeyDeletionRequest {
            key_id: key_id.into(),
            pending_window_in_days: 7,
            force,
        })
        .await)
}

/// `n` data keys under `key_id`; their blobs.
async fn wrap(client: &KmsClient, key_id: &str, n: usize) -> Vec<Vec<u8>> {
    let mut blobs = Vec::new();
    for _ in 0..n {
        let generated = client
            .generate_data_key(Some(key_id), &ctx(&[("bucket", "b")]))
            .await
            .unwrap();
        blobs.push(generated.blob);
    }
    blobs
}

async fn unwrap_all(client: &KmsClient, blobs: &[Vec<u8>]) {
    for blob in blobs {
        client
            .decrypt(blob, &ctx(&[("bucket", "b")]), None)
            .await
            .unwrap();
    }
}

/// The wraps of `version` in `meta` (0 if absent).
fn wraps(meta: &proto::KeyMetadata, version: u32) -> u64 {
    meta.versions
        .iter()
        .find(|v| v.version == version)
        .map_or(0, |v| v.wraps)
}

/// Polls `describe` until `done` holds (figures are flushed and read
/// asynchronously), failing after 20 s with the last answer.
async fn until(
    client: &KmsClient,
    key_id: &str,
    what: &str,
    done: impl Fn(&proto::KeyMetadata) -> bool,
) -> proto::KeyMetadata {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let meta = describe(client, key_id).await;
        if done(&meta) {
            return meta;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never happened; last {meta:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
