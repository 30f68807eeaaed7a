//! The rotation sweep: a due key gets a new version (old blobs still
//! open), a disabled key waits, and two kmsd on one OpenBao rotate once
//! per period.

use std::time::{Duration, Instant};

use kms_client::proto;
use kmsd_openbao_testkit::OpenBao;
use kmsd_tests::ctx;

use crate::{Backend, Node, documented_token_toml, next_rotation, start, version_times};

pub(crate) async fn the_sweep_rotates_due_keys(backend: Backend) {
    let (node, _openbao) = start(backend).await;
    node.create("s1").await;
    node.create("s2").await;
    let context = ctx(&[("bucket", "b")]);
    let old = node
        .client
        .encrypt(Some("s1"), b"before", &context)
        .await
        .unwrap();
    assert_eq!(old.key_version, 1);
    let meta = node.enable_secs("s1", 3).await;
    let first_next = next_rotation(&meta).unwrap();
    // s2's rotation is due while the key is disabled: it waits.
    node.enable_secs("s2", 2).await;
    let mut admin = node.client.key_admin();
    admin
        .disable_key(proto::DisableKeyRequest {
            key_id: "s2".into(),
        })
        .await
        .unwrap();

    node.wait_for_version("s1", 2, Duration::from_secs(15))
        .await;
    let meta = node.describe("s1").await;
    assert!(meta.rotation_enabled);
    assert!(
        next_rotation(&meta).unwrap() >= first_next + 3,
        "the schedule moved on: {meta:?}"
    );
    // Old blobs still open; new ones use the new version.
    let opened = node
        .client
        .decrypt(&old.blob, &context, None)
        .await
        .unwrap();
    assert_eq!(opened.plaintext.expose_secret(), b"before");
    assert_eq!(opened.key_version, 1);
    let new = node
        .client
        .encrypt(Some("s1"), b"after", &context)
        .await
        .unwrap();
    assert!(new.key_version >= 2, "{new:?}");
    // Audited as kmsd's own, with the new version; counted.
    let lines = node.audit("RotateKeyOnSchedule");
    let first = lines
        .iter()
        .find(|l| l["key_id"] == "s1")
        .unwrap_or_else(|| panic!("no audit line: {lines:?}"));
    assert_eq!(first["caller"], "kmsd");
    assert_eq!(first["outcome"], "ok");
    assert_eq!(first["key_version"], 2);
    assert!(node.rotations_counted("schedule", "ok").await.unwrap() >= 1.0);
    assert_eq!(node.rotations_counted("schedule", "error").await, Some(0.0));

    // s2 was not rotated while disabled; enabled again, it is due at once.
    assert_eq!(node.describe("s2").await.current_version, 1);
    admin
        .enable_key(proto::EnableKeyRequest {
            key_id: "s2".into(),
        })
        .await
        .unwrap();
    node.wait_for_version("s2", 2, Duration::from_secs(10))
        .await;

    // Disabling rotation stops the sweep (after one that may be under
    // way); on-demand rotation still works.
    for key_id in ["s1", "s2"] {
        admin
            .disable_key_rotation(proto::DisableKeyRotationRequest {
                key_id: key_id.into(),
            })
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settled = node.describe("s1").await.current_version;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(node.describe("s1").await.current_version, settled);
    let rotated = admin
        .rotate_key(proto::RotateKeyRequest {
            key_id: "s1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .key_metadata
        .unwrap();
    assert_eq!(rotated.current_version, settled + 1);
    assert!(!rotated.rotation_enabled);
}

pub(crate) async fn two_kmsd_on_one_openbao_rotate_once_per_period() {
    let openbao = OpenBao::dev().await;
    let toml = documented_token_toml(&openbao).await;
    let a = Node::start(toml.clone()).await;
    let b = Node::start(toml).await;
    a.create("shared").await;
    let period: i64 = 3;
    a.enable_secs("shared", period.unsigned_abs()).await;
    let started = Instant::now();
    // Both sweep every second; let a few periods pass.
    a.wait_for_version("shared", 4, Duration::from_secs(20))
        .await;
    b.client
        .key_admin()
        .disable_key_rotation(proto::DisableKeyRotationRequest {
            key_id: "shared".into(),
        })
        .await
        .unwrap();
    let elapsed = started.elapsed().as_secs();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let meta = b.describe("shared").await;
    let rotations = meta.current_version - 1;
    // One rotation per due date: never more than the periods that passed.
    let periods = u32::try_from(elapsed / period.unsigned_abs()).unwrap() + 1;
    assert!(
        (3..=periods).contains(&rotations),
        "{rotations} rotations in {elapsed} s with a {period} s period"
    );
    // Consecutive versions are a period apart (Transit dates are whole
    // seconds): two kmsd rotating for the same date would make two
    // versions within a second.
    let times = version_times(&meta);
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= period - 1,
            "versions made at {times:?}"
        );
    }
    // Each rotation is audited once, by the kmsd that made it, with the
    // version it made.
    let mut audited: Vec<u64> = a
        .audit("RotateKeyOnSchedule")
        .into_iter()
        .chain(b.audit("RotateKeyOnSchedule"))
        .inspect(|l| assert_eq!(l["outcome"], "ok", "{l}"))
        .map(|l| l["key_version"].as_u64().unwrap())
        .collect();
    audited.sort_unstable();
    let expected: Vec<u64> = (2..=u64::from(meta.current_version)).collect();
    assert_eq!(audited, expected);
    let counted = a.rotations_counted("schedule", "ok").await.unwrap()
        + b.rotations_counted("schedule", "ok").await.unwrap();
    assert_eq!(counted, f64::from(rotations));
}
