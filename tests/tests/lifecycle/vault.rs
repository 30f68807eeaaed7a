//! The lifecycle with the vault backend: inline tokens persisted only
//! sealed, and swaps between local and Vault under load.

use super::*;

fn vault_json(openbao: &kmsd_openbao_testkit::OpenBao) -> String {
    format!(
        r#"{{"backend_type": "vault", "address": "{}", "auth_method": {{"token": "{}"}}, "mount_path": "transit", "kv_mount": "secret", "key_path_prefix": "rustfs/kms/keys", "default_key_id": "default"}}"#,
        openbao.address(),
        openbao.root_token()
    )
}

/// NotConfigured, with the state directory's secrets sealed under a
/// passphrase (inline tokens given to the admin API need it).
fn sealed_state() -> KmsdOptions {
    let mut options = not_configured();
    options
        .server_toml
        .push_str("\n[server.state_sealing]\npassphrase_env = \"KMSD_TEST_STATE_PASSPHRASE\"\n");
    options.env.push((
        "KMSD_TEST_STATE_PASSPHRASE".into(),
        "state sealing passphrase 4c1e".into(),
    ));
    options
}

/// The seed's Vault configure body carries the token inline; persisting it
/// must not put the token on disk in any readable form, and a restart must
/// still come back Running on Vault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_vault_token_is_persisted_only_sealed() {
    let openbao = kmsd_openbao_testkit::OpenBao::dev().await;
    let token = openbao.root_token();
    let mut kmsd = Kmsd::start(sealed_state()).await;
    let client = kmsd.client().await;
    configure(&client, &vault_json(&openbao)).await.unwrap();
    start(&client).await.unwrap();
    let blob = client.generate_data_key(None, &ctx(&[])).await.unwrap();

    let state = kmsd.dir().join("state");
    let runtime = std::fs::read_to_string(state.join("runtime.json")).unwrap();
    assert!(runtime.contains("\"sealed\""), "{runtime}");
    let on_disk = every_file(&state);
    assert!(
        !on_disk.windows(token.len()).any(|w| w == token.as_bytes()),
        "the token is on disk in the clear"
    );
    assert!(!state.join("secrets").exists());
    let reported = status(&client).await;
    assert!(!format!("{reported:?}").contains(&token));

    kmsd.restart().await;
    let client = kmsd.client().await;
    let restored = status(&client).await;
    assert_eq!(restored.state(), proto::ServiceState::Running);
    assert_eq!(restored.backend.unwrap().backend_type, "vault");
    let opened = client.decrypt(&blob.blob, &ctx(&[]), None).await.unwrap();
    assert_eq!(opened.plaintext.expose_secret(), blob.key.expose_secret());

    // Without [server.state_sealing] the same configure is refused before
    // anything changes, naming the field.
    let unsealed = Kmsd::start(not_configured()).await;
    let err = configure(&unsealed.client().await, &vault_json(&openbao))
        .await
        .unwrap_err();
    assert_eq!(
        kmsd_tests::code_and_reason(&err),
        (Code::InvalidArgument, "INVALID_CONFIG".to_owned()),
        "{err}"
    );
    assert!(
        err.to_string().contains("backend.auth_method.token"),
        "{err}"
    );
    assert!(!err.to_string().contains(&token), "{err}");
    assert!(!unsealed.dir().join("state/runtime.json").exists());
}

/// Local -> Vault -> local -> Vault -> local under a steady load of
/// GenerateDataKey and Decrypt: not one request fails, and every blob
/// opens at the end, whichever backend sealed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_between_local_and_vault_under_load_fails_no_request() {
    let openbao = kmsd_openbao_testkit::OpenBao::dev().await;
    let (kmsd, _admin) = running_on_keys_a_with(sealed_state()).await;
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
