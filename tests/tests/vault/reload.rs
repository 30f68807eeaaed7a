//! Reload on a Vault backend: the backend is rebuilt (its client TLS files
//! and token read again, a new login) and swapped in under load without a
//! failed request; blobs sealed before open after.

use kmsd_tests::load::{Counters, data_key_round_trips};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rebuilds_the_vault_backend_without_a_failed_request() {
    let bao = OpenBao::dev().await;
    let (kmsd, _) = start_on(&bao, "", "").await;
    let client = kmsd.client().await;
    let context = ctx(&[("bucket", "b")]);
    let before = client.generate_data_key(None, &context).await.unwrap();

    let counters = Counters::default();
    let mut load = Vec::new();
    for _ in 0..2 {
        load.push(data_key_round_trips(kmsd.client().await, counters.clone()));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let report = rpc(client.admin().reload(proto::ReloadRequest {}).await).unwrap();
        assert!(
            report.reloaded.iter().any(|part| part == "backend"),
            "{report:?}"
        );
        assert!(report.restart_required.is_empty(), "{report:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    kmsd.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed, errors) = counters.finish(load).await;
    assert_eq!(failed, 0, "requests failed during the reloads: {errors:?}");
    assert!(ok > 20, "too little load");
    let opened = client.decrypt(&before.blob, &context, None).await.unwrap();
    assert_eq!(opened.plaintext.expose_secret(), before.key.expose_secret());
    // One login at start, one per reload (three by the API, one by SIGHUP).
    let logins = kmsd.logs().matches("authenticated to Vault").count();
    assert_eq!(logins, 5, "{}", kmsd.logs());
}
