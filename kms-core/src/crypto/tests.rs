use super::*;

const DOMAIN: &[u8] = b"kmsd/test";

// RFC 5869 test case 1, truncated to our 32-byte output.
#[test]
fn hkdf_matches_rfc5869() {
    let ikm = [0x0b; 22];
    let salt: Vec<u8> = (0x00..=0x0c).collect();
    let info: Vec<u8> = (0xf0..=0xf9).collect();
    let okm = hkdf_sha256(&salt, &ikm, &[&info[..4], &info[4..]]);
    assert_eq!(
        hex::encode(okm.as_ref()),
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
    );
}

/// The key-file KEK is HKDF-SHA-256 expanded to the hash's own length, as
/// kmsd derived it before the two crypto modules were merged.
#[test]
fn key_file_kek_is_the_documented_hkdf() {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"salt").extract(b"key file contents");
    let mut expected = [0u8; KEY_LEN];
    prk.expand(&[b"kmsd/v1/key-file-kek"], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut expected))
        .unwrap();
    assert_eq!(*hkdf_key_file(b"key file contents", b"salt"), expected);
}

// RFC 4231 test case 2.
#[test]
fn hmac_matches_rfc4231() {
    let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
    assert_eq!(
        hex::encode(mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

// FIPS 180-2, appendix B.1.
#[test]
fn sha256_matches_fips180() {
    assert_eq!(
        hex::encode(sha256(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn aead_seal_then_open_and_reject_a_flip() {
    let key = AeadKey::new(&[7; KEY_LEN]);
    let mut buf = b"hello, world".to_vec();
    let tag = key.seal_in_place([1; NONCE_LEN], b"aad", &mut buf);
    buf.extend_from_slice(&tag);
    let mut copy = buf.clone();
    assert_eq!(key.open_in_place([1; NONCE_LEN], b"aad", &mut copy), Ok(12));
    assert_eq!(&copy[..12], b"hello, world");
    buf[3] ^= 1;
    assert_eq!(
        key.open_in_place([1; NONCE_LEN], b"aad", &mut buf),
        Err(CryptoError::Authentication)
    );
}

// RFC 1321, appendix A.5.
#[test]
fn md5_matches_rfc1321() {
    assert_eq!(hex::encode(md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
}

#[test]
fn constant_time_eq_matches_eq() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(constant_time_eq(b"", b""));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(!constant_time_eq(b"", b"a"));
}

#[test]
fn wrapping_key_seal_open_round_trip_and_tamper() {
    let key = WrappingKey::new(&[1; KEY_LEN], DOMAIN);
    let seed = [2; SEED_LEN];
    let mut out = Vec::new();
    key.seal_append(&seed, b"aad", b"secret", &mut out).unwrap();
    assert_eq!(out.len(), 6 + TAG_LEN);
    assert_eq!(
        key.open(&seed, b"aad", &out).unwrap().expose_secret(),
        b"secret"
    );
    assert_eq!(
        key.open(&seed, b"aae", &out).unwrap_err(),
        CryptoError::Authentication
    );
    assert!(key.open(&[3; SEED_LEN], b"aad", &out).is_err());
    let other = WrappingKey::new(&[1; KEY_LEN], b"kmsd/other-domain");
    assert!(other.open(&seed, b"aad", &out).is_err());
    for i in 0..out.len() * 8 {
        let mut bad = out.clone();
        bad[i / 8] ^= 1 << (i % 8);
        assert!(key.open(&seed, b"aad", &bad).is_err(), "bit {i}");
    }
    assert!(key.open(&seed, b"aad", &out[..TAG_LEN - 1]).is_err());
}

#[test]
fn different_seeds_give_different_ciphertexts() {
    let key = WrappingKey::new(&[1; KEY_LEN], DOMAIN);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    key.seal_append(&[0; SEED_LEN], b"", b"same", &mut a)
        .unwrap();
    key.seal_append(&[1; SEED_LEN], b"", b"same", &mut b)
        .unwrap();
    assert_ne!(a, b);
}

#[test]
fn argon2id_is_deterministic_and_salted() {
    let params = Argon2Params {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };
    let a = argon2id(b"pw", b"saltsaltsaltsalt", params).unwrap();
    let b = argon2id(b"pw", b"saltsaltsaltsalt", params).unwrap();
    let c = argon2id(b"pw", b"SALTsaltsaltsalt", params).unwrap();
    assert_eq!(*a, *b);
    assert_ne!(*a, *c);
}
