//! One test (or more) per row of the table in docs/sse.md; the row ids
//! (W1, C3, …) are in the test names.

use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use http::HeaderMap;

use super::*;
use crate::{
    DataKey, EncryptionContext, GeneratedDataKey,
    crypto::{AeadKey, fill_random},
};

mod arbitrary;
mod bucket;
mod headers;
mod kms;
mod objects;

/// Headers from name/value pairs.
fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

const KEY_A: [u8; 32] = [0x11; 32];
const KEY_B: [u8; 32] = [0x22; 32];

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The SSE-C triple for `key` in `slot`, as a client sends it.
fn customer_headers(slot: KeySlot, key: &[u8]) -> Vec<(&'static str, String)> {
    let md5 = b64(&crate::crypto::md5(key));
    let [a, k, m] = super::headers::customer_names(slot);
    vec![(a, "AES256".into()), (k, b64(key)), (m, md5)]
}

fn customer(key: [u8; 32]) -> CustomerKey {
    CustomerKey::from_bytes(key)
}

/// Asserts the S3 code and status of an error.
#[track_caller]
fn assert_s3<T: std::fmt::Debug>(result: Result<T, SseError>, code: &str, status: u16) {
    match result {
        Ok(value) => panic!("expected {code} {status}, got Ok({value:?})"),
        Err(error) => assert_eq!(
            (error.s3_code(), error.http_status()),
            (code, status),
            "{error}"
        ),
    }
}

/// A kmsd stand-in: seals data keys with AES-GCM under a fixed master key
/// with the canonical context as AAD, and counts calls.
#[derive(Default)]
struct FakeKms {
    generated: AtomicUsize,
    decrypted: AtomicUsize,
}

const MASTER: [u8; 32] = [0x5a; 32];

impl KeySource for FakeKms {
    async fn generate_data_key(
        &self,
        key_id: Option<&str>,
        context: &EncryptionContext,
    ) -> Result<GeneratedDataKey, crate::Error> {
        if key_id == Some("missing") {
            return Err(rpc(tonic::Code::NotFound, "KEY_NOT_FOUND"));
        }
        self.generated.fetch_add(1, Ordering::SeqCst);
        let mut key = [0u8; 32];
        let mut nonce = [0u8; 12];
        fill_random(&mut key).unwrap();
        fill_random(&mut nonce).unwrap();
        let aad = object::canonical_context(context);
        let mut sealed = key.to_vec();
        let tag = AeadKey::new(&MASTER).seal_in_place(nonce, &aad, &mut sealed);
        let blob = [&nonce[..], &sealed, &tag].concat();
        Ok(GeneratedDataKey {
            key: DataKey::from_bytes(key),
            blob,
            key_id: key_id.unwrap_or("default").to_owned(),
            key_version: 1,
        })
    }

    async fn decrypt_data_key(
        &self,
        blob: &[u8],
        context: &EncryptionContext,
    ) -> Result<DataKey, crate::Error> {
        self.decrypted.fetch_add(1, Ordering::SeqCst);
        let nonce: [u8; 12] = blob[..12].try_into().unwrap();
        let mut sealed = blob[12..].to_vec();
        let aad = object::canonical_context(context);
        let n = AeadKey::new(&MASTER)
            .open_in_place(nonce, &aad, &mut sealed)
            .map_err(|_| rpc(tonic::Code::InvalidArgument, "INVALID_CIPHERTEXT"))?;
        Ok(DataKey::take_from_vec(sealed[..n].to_vec()).unwrap())
    }
}

fn rpc(code: tonic::Code, reason: &str) -> crate::Error {
    crate::Error::Rpc {
        code,
        reason: Some(reason.into()),
        message: "from the fake".into(),
    }
}
