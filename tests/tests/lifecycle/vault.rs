//! The lifecycle with the vault backend: inline tokens kept out of
//! `runtime.json`, and swaps between local and Vault under load.

use super::*;

fn vault_json(openbao: &kmsd::backend::vault::testing::OpenBao) -> String {
    format!(
        r#"{{"backend_type": "vault", "address": "{}", "auth_method": {{"token": "{}"}}, "mount_path": "transit", "kv_mount": "secret", "key_path_prefix": "rustfs/kms/keys", "default_key_id": "default"}}"#,
        openbao.address(),
        openbao.root_token()
    )
}

/// The seed's Vault configure body carries the token inline; persisting it
/// must not write the token into runtime.json, and a restart must still
/// come back Running on Vault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_vault_token_is_persisted_only_in_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let openbao = kmsd::backend::vault::testing::OpenBao::dev().await;
    let mut kmsd = Kmsd::start(not_configured()).await;
    let client = kmsd.client().await;
    configure(&client, &vault_json(&openbao)).await.unwrap();
    start(&client).await.unwrap();
    let blob = client.generate_data_key(None, &ctx(&[])).await.unwrap();

    let state = kmsd.dir().join("state");
    let runtime = std::fs::read_to_string(state.join("runtime.json")).unwrap();
    assert!(
        !runtime.contains(&openbao.root_token()),
        "the token reached runtime.json"
    );
    let secrets: Vec<_> = std::fs::read_dir(state.join("secrets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(secrets.len(), 1);
    assert!(runtime.contains(secrets[0].to_str().unwrap()), "{runtime}");
    assert_eq!(
        std::fs::read_to_string(&secrets[0]).unwrap(),
        openbao.root_token()
    );
    assert_eq!(
        std::fs::metadata(&secrets[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let reported = status(&client).await;
    assert!(!format!("{reported:?}").contains(&openbao.root_token()));

    kmsd.restart().await;
    let client = kmsd.client().await;
    let restored = status(&client).await;
    assert_eq!(restored.state(), proto::ServiceState::Running);
    assert_eq!(restored.backend.unwrap().backend_type, "vault");
    let opened = client.decrypt(&blob.blob, &ctx(&[]), None).await.unwrap();
    assert_eq!(opened.plaintext.expose_secret(), blob.key.expose_secret());

    // Switching back to local leaves Vault as a previous backend, so its
    // secret stays; discarding it removes the file.
    rpc(client
        .admin()
        .reconfigure(proto::ReconfigureRequest {
            backend_config_json: local_json(&kmsd, "keys-a"),
            discard_previous: true,
            decrypt_only: false,
        })
        .await)
    .unwrap();
    assert_eq!(std::fs::read_dir(state.join("secrets")).unwrap().count(), 0);
}

/// Local -> Vault -> local -> Vault -> local under a steady load of
/// GenerateDataKey and Decrypt: not one request fails, and every blob
/// opens at the end, whichever backend sealed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_between_local_and_vault_under_load_fails_no_request() {
    let openbao = kmsd::backend::vault::testing::OpenBao::dev().await;
    let kmsd = Kmsd::start(not_configured()).await;
    let admin = kmsd.client().await;
    configure(&admin, &local_json(&kmsd, "keys-a"))
        .await
        .unwrap();
    start(&admin).await.unwrap();
    let (vault, local) = (vault_json(&openbao), local_json(&kmsd, "keys-a"));
    let targets = [vault.clone(), local.clone(), vault, local];
    let blobs = swap_under_load(&kmsd, &targets, Duration::from_millis(300)).await;
    let local_blobs = blobs.iter().filter(|b| **b == 0x01).count();
    let vault_blobs = blobs.len() - local_blobs;
    assert!(
        local_blobs > 50 && vault_blobs > 50,
        "local {local_blobs}, vault {vault_blobs}"
    );
}
