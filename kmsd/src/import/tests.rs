use super::*;

fn at(secs: i64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(secs)
}

fn tokens(ttl: u64, max_pending: usize) -> ImportTokens {
    ImportTokens::new(ImportLimits {
        token_ttl: Duration::from_secs(ttl),
        max_pending,
    })
}

#[tokio::test]
async fn wrapped_material_comes_back_once() {
    let tokens = tokens(60, 4);
    let key_id = KeyId::parse("byok").unwrap();
    let params = tokens.issue(|| at(0), Some(key_id.clone())).await.unwrap();
    assert!(
        params
            .public_key_pem
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    assert_eq!(params.expires_at, at(60));
    let material = [7u8; MATERIAL_LEN];
    let wrapped = wrap_material(&params.public_key_der, &material).unwrap();
    assert_eq!(wrapped.len(), WRAPPING_KEY_BITS / 8);
    let key = tokens.redeem(at(1), &params.token).unwrap();
    assert_eq!(key.key_id(), Some(&key_id));
    assert!(!format!("{key:?}").contains("private"));
    assert_eq!(*key.unwrap(wrapped).await.unwrap(), material);
    // Single use.
    assert!(matches!(
        tokens.redeem(at(2), &params.token),
        Err(KmsError::ImportTokenNotFound)
    ));
}

#[tokio::test]
async fn material_of_another_length_or_key_is_refused() {
    let tokens = tokens(60, 4);
    let a = tokens.issue(|| at(0), None).await.unwrap();
    let b = tokens.issue(|| at(0), None).await.unwrap();
    let short = wrap_material(&a.public_key_der, &[1u8; 16]).unwrap();
    let err = tokens
        .redeem(at(1), &a.token)
        .unwrap()
        .unwrap(short)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("32 bytes"), "{err}");
    let for_a = wrap_material(&a.public_key_der, &[1u8; 32]).unwrap();
    let err = tokens
        .redeem(at(1), &b.token)
        .unwrap()
        .unwrap(for_a)
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::InvalidArgument(_)), "{err}");
}

#[tokio::test]
async fn tokens_expire_and_are_capped() {
    let tokens = tokens(10, 2);
    let a = tokens.issue(|| at(0), None).await.unwrap();
    let _b = tokens.issue(|| at(1), None).await.unwrap();
    assert!(matches!(
        tokens.issue(|| at(2), None).await,
        Err(KmsError::Overloaded(_))
    ));
    assert_eq!(tokens.pending(at(2)), 2);
    // a expired at 10: it no longer counts, and is answered as expired.
    assert_eq!(tokens.pending(at(10)), 1);
    let _c = tokens.issue(|| at(10), None).await.unwrap();
    assert!(matches!(
        tokens.redeem(at(12), &a.token),
        Err(KmsError::ImportTokenExpired)
    ));
    assert!(matches!(
        tokens.redeem(at(12), "imp-unknown"),
        Err(KmsError::ImportTokenNotFound)
    ));
}
