//! Least-privilege tokens, AppRole, renewal and re-login.

use std::time::{Duration, Instant};

use kmsd_openbao_testkit::documented_policy;
use serde_json::json;

use super::*;
use crate::backend::{KeyState, StateChange};
use crate::clock::Clock as _;

/// The approle table for a role id inline and a secret id in a file.
fn approle_auth(bao: &OpenBao, role_id: &str, secret_id: &str) -> String {
    let path = bao.dir().join("secret-id");
    std::fs::write(&path, format!("{secret_id}\n")).unwrap();
    format!(
        "[backend.auth_method.approle]\nrole_id = \"{role_id}\"\nsecret_id_file = \"{}\"\n",
        path.display()
    )
}

#[tokio::test]
async fn the_documented_policy_is_enough_for_everything() {
    let bao = OpenBao::dev().await;
    bao.write_policy("kmsd", &documented_policy()).await;
    let token = bao.create_token(&["kmsd"], "1h").await;
    let clock = clock();
    let backend = backend(&bao, &token_auth(&token), "", &clock).await;

    create(&backend, "k").await;
    let context = ctx(&[("bucket", "b")]);
    let generated = backend.generate_data_key(&id("k"), &context).await.unwrap();
    open(&backend, &generated.sealed.blob, &context)
        .await
        .unwrap();
    backend.describe_key(&id("k")).await.unwrap();
    assert_eq!(backend.list_keys(None, 10).await.unwrap().len(), 1);
    assert_eq!(
        backend.rotate_key(&id("k")).await.unwrap().current_version,
        2
    );
    open(&backend, &generated.sealed.blob, &context)
        .await
        .unwrap();
    backend
        .change_state(&id("k"), StateChange::Disable)
        .await
        .unwrap();
    backend
        .change_state(&id("k"), StateChange::Enable)
        .await
        .unwrap();
    let deletion_date = clock.now() + time::Duration::days(7);
    let meta = backend
        .change_state(&id("k"), StateChange::ScheduleDeletion { deletion_date })
        .await
        .unwrap();
    assert_eq!(meta.state, KeyState::PendingDeletion);
    clock.advance(time::Duration::days(8));
    assert_eq!(
        backend
            .destroy_due_keys(clock.now())
            .await
            .into_result()
            .unwrap(),
        [id("k")]
    );
    assert!(!bao.transit_key_exists("k").await);
    assert_eq!(backend.auth_stats().relogins, 0);

    // The policy does not let kmsd make its keys exportable.
    create(&backend, "k2").await;
    let (status, _) = bao
        .try_api(
            "POST",
            "transit/keys/k2/config",
            Some(json!({ "exportable": true })),
            Some(&token),
        )
        .await;
    assert_eq!(status, 403);

    // Outside the policy: denied, naming the path and never the token,
    // and a live token is not replaced.
    let outside = super::backend(
        &bao,
        &token_auth(&token),
        "key_path_prefix = \"elsewhere\"",
        &clock,
    )
    .await;
    let err = outside
        .create_key(NewKey {
            key_id: id("x"),
            description: String::new(),
            tags: BTreeMap::new(),
        })
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, KmsError::BackendPermissionDenied { .. }),
        "{err:?}"
    );
    assert!(message.contains("secret/data/elsewhere/x"), "{message}");
    assert!(!message.contains(&token), "{message}");
    assert_eq!(outside.auth_stats().relogins, 0);

    // A revoked token cannot be replaced (it was given, not logged in):
    // permission denied, again without the token.
    bao.api("POST", "auth/token/revoke", Some(json!({ "token": token })))
        .await;
    let err = backend
        .generate_data_key(&id("k2"), &context)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, KmsError::BackendPermissionDenied { .. }),
        "{err:?}"
    );
    assert!(!message.contains(&token), "{message}");
}

/// A dev OpenBao with the documented policy and an AppRole `kmsd` whose
/// tokens live `ttl` (at most `max_ttl`); its role id and secret id.
async fn approle_bao(ttl: &str, max_ttl: &str) -> (OpenBao, String, String) {
    let bao = OpenBao::dev().await;
    bao.write_policy("kmsd", &documented_policy()).await;
    let (role_id, secret_id) = bao.approle("kmsd", &["kmsd"], ttl, max_ttl).await;
    (bao, role_id, secret_id)
}

#[tokio::test]
async fn approle_logs_in_and_a_revoked_token_costs_one_login() {
    let (bao, role_id, secret_id) = approle_bao("1h", "4h").await;
    let auth = approle_auth(&bao, &role_id, &secret_id);
    let backend = Arc::new(backend(&bao, &auth, "", &clock()).await);
    create(backend.as_ref(), "k").await;
    let ttl = backend.token_ttl().unwrap();
    assert!(
        ttl > Duration::from_secs(3500) && ttl <= Duration::from_secs(3600),
        "{ttl:?}"
    );

    // Revoke every token AppRole issued: the next requests all get 403.
    bao.api("PUT", "sys/leases/revoke-prefix/auth/approle/login", None)
        .await;
    generate_concurrently(&backend, "k", 16).await;
    assert_eq!(backend.auth_stats().relogins, 1, "one 403 storm, one login");

    // Wrong credentials are a clear startup error without the secret.
    let wrong = approle_auth(&bao, &role_id, "not-the-secret-id");
    let err = try_backend(&bao, &wrong, "", &clock())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("AppRole login at auth/approle refused"),
        "{err}"
    );
    assert!(!err.contains("not-the-secret-id"), "{err}");
}

#[tokio::test]
async fn an_expired_token_costs_one_login() {
    let (bao, role_id, secret_id) = approle_bao("2s", "2s").await;
    let auth = approle_auth(&bao, &role_id, &secret_id);
    let backend = Arc::new(backend(&bao, &auth, "", &clock()).await);
    create(backend.as_ref(), "k").await;
    // Without the renewal task nothing replaces the token before it dies.
    backend.stop_renewal();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(backend.token_ttl(), Some(Duration::ZERO));

    generate_concurrently(&backend, "k", 16).await;
    assert_eq!(backend.auth_stats().relogins, 1, "sixteen 403s, one login");
}

#[tokio::test]
async fn short_lived_tokens_are_renewed_then_replaced() {
    let (bao, role_id, secret_id) = approle_bao("2s", "4s").await;
    let backend = backend(
        &bao,
        &approle_auth(&bao, &role_id, &secret_id),
        "",
        &clock(),
    )
    .await;
    create(&backend, "k").await;
    let context = ctx(&[]);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(6500) {
        // Past the token's max TTL: only renewals and re-logins keep these
        // working.
        backend.generate_data_key(&id("k"), &context).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = backend.auth_stats();
    assert!(stats.renewals >= 1, "{stats:?}");
    assert!(stats.relogins >= 1, "{stats:?}");
    assert!(
        stats.token_ttl.unwrap() <= Duration::from_secs(2),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_token_file_is_re_read_when_vault_rejects_the_token() {
    let bao = OpenBao::dev().await;
    bao.write_policy("kmsd", &documented_policy()).await;
    let first = bao.create_token(&["kmsd"], "1h").await;
    let file = bao.dir().join("token");
    std::fs::write(&file, format!("{first}\n")).unwrap();
    let auth = format!(
        "[backend.auth_method]\ntoken_file = \"{}\"\n",
        file.display()
    );
    let backend = backend(&bao, &auth, "", &clock()).await;
    create(&backend, "k").await;

    // Vault Agent (say) put a new token in the file; the old one dies.
    let second = bao.create_token(&["kmsd"], "1h").await;
    std::fs::write(&file, &second).unwrap();
    bao.api("POST", "auth/token/revoke", Some(json!({ "token": first })))
        .await;
    backend
        .generate_data_key(&id("k"), &ctx(&[]))
        .await
        .unwrap();
    assert_eq!(backend.auth_stats().relogins, 1);

    // Revoked with nothing new in the file: a clear, secret-free denial.
    bao.api(
        "POST",
        "auth/token/revoke",
        Some(json!({ "token": second })),
    )
    .await;
    let err = backend
        .generate_data_key(&id("k"), &ctx(&[]))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, KmsError::BackendPermissionDenied { .. }),
        "{err:?}"
    );
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(!message.contains(&second), "{message}");
}
