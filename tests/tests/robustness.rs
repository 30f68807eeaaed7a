//! No input crashes kmsd: random field values through the generated client,
//! and malformed HTTP/2 and gRPC framing through a raw HTTP/2 client. Every
//! answer is a precise status; kmsd keeps serving.

// Test code: a failed unwrap is a failed test, with its context.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use bytes::Bytes;
use kms_client::proto;
use kmsd_tests::{Kmsd, ctx};
use tokio::io::AsyncWriteExt;
use tonic::Code;

/// A small deterministic generator, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
    fn text(&mut self, max: usize) -> String {
        const PIECES: [&str; 12] = [
            "a", "Z", "9", "-", ".", "_", "/", " ", "é", "\u{0}", "..", "ключ",
        ];
        (0..self.below(max + 1))
            .map(|_| PIECES[self.below(PIECES.len())])
            .collect()
    }
}

fn expected(code: Code) -> bool {
    matches!(
        code,
        Code::Ok
            | Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::ResourceExhausted
    )
}

async fn assert_serving(kmsd: &Kmsd) {
    let client = kmsd.client().await;
    let generated = client.generate_data_key(None, &ctx(&[])).await.unwrap();
    client
        .decrypt(&generated.blob, &ctx(&[]), None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_field_values_get_precise_errors() {
    let kmsd = Kmsd::start_local().await;
    let client = kmsd
        .client_with(|c| c.retry = kms_client::RetryPolicy::NEVER)
        .await;
    let valid = client
        .generate_data_key(None, &ctx(&[]))
        .await
        .unwrap()
        .blob;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut codes = std::collections::BTreeMap::new();
    for i in 0..400 {
        let mut blob = match rng.below(3) {
            0 => rng.bytes(300),
            1 => [b"km\x01\x01".as_slice(), &rng.bytes(200)].concat(),
            _ => valid.clone(),
        };
        if !blob.is_empty() && rng.below(2) == 0 {
            let at = rng.below(blob.len());
            blob[at] ^= rng.next() as u8 | 1;
        }
        let context: kms_client::EncryptionContext = (0..rng.below(4))
            .map(|_| (rng.text(6), rng.text(6)))
            .collect();
        let key = rng.text(10);
        let key = (!key.is_empty()).then_some(key.as_str());
        let result = match i % 6 {
            0 => client.decrypt(&blob, &context, key).await.map(|_| ()),
            1 => client.generate_data_key(key, &context).await.map(|_| ()),
            2 => client
                .encrypt(key, &rng.bytes(5000), &context)
                .await
                .map(|_| ()),
            3 => client
                .re_encrypt(&blob, &context, key, Some(&context))
                .await
                .map(|_| ()),
            4 => client
                .key_admin()
                .describe_key(proto::DescribeKeyRequest {
                    key_id: rng.text(10),
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(Into::into),
            _ => client
                .key_admin()
                .list_keys(proto::ListKeysRequest {
                    page_size: rng.next() as u32 % 2000,
                    page_token: rng.text(12),
                })
                .await
                .map(|_| ())
                .map_err(Into::into),
        };
        let code = result
            .err()
            .map_or(Code::Ok, |e| e.code().unwrap_or(Code::Unknown));
        assert!(expected(code), "input {i} got {code:?}");
        *codes.entry(format!("{code:?}")).or_insert(0) += 1;
    }
    assert!(
        codes.len() >= 3,
        "the inputs were not varied enough: {codes:?}"
    );
    assert_serving(&kmsd).await;
}

/// Sends one gRPC request with a hand-made body over a raw HTTP/2
/// connection; returns the grpc-status (from headers or trailers), or
/// `None` if the stream was reset.
async fn raw_call(
    kmsd: &Kmsd,
    path: &str,
    body: Vec<u8>,
    compressed_header: bool,
) -> Option<String> {
    let io = tokio::net::UnixStream::connect(kmsd.socket())
        .await
        .unwrap();
    let (mut sender, connection) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://kmsd.local{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if compressed_header {
        request = request.header("grpc-encoding", "snappy");
    }
    let (response, mut stream) = sender
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    stream.send_data(Bytes::from(body), true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("kmsd answers")
        .ok()?;
    if let Some(status) = response.headers().get("grpc-status") {
        return Some(status.to_str().unwrap().to_owned());
    }
    let mut body = response.into_body();
    while body.data().await.is_some() {}
    let trailers = body.trailers().await.ok()??;
    trailers
        .get("grpc-status")
        .map(|s| s.to_str().unwrap().to_owned())
}

fn frame(flag: u8, declared_len: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&declared_len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[tokio::test]
async fn malformed_frames_are_refused_and_kmsd_keeps_serving() {
    let kmsd = Kmsd::start_local().await;
    const DECRYPT: &str = "/kms.v1.KeyManagement/Decrypt";
    /// What is sent, where, with or without a `grpc-encoding`, and the
    /// grpc-status values accepted in answer.
    type Case = (
        &'static str,
        &'static str,
        Vec<u8>,
        bool,
        &'static [&'static str],
    );
    let cases: Vec<Case> = vec![
        // grpc-status values: 3 INVALID_ARGUMENT, 8 RESOURCE_EXHAUSTED,
        // 12 UNIMPLEMENTED, 13 INTERNAL. The gRPC spec (statuscodes.md)
        // prescribes INTERNAL for a request that does not parse and for
        // framing protocol errors, and RESOURCE_EXHAUSTED for one over the
        // size limit.
        (
            "a length prefix of 4 GiB",
            DECRYPT,
            frame(0, u32::MAX, b"abc"),
            false,
            &["8"],
        ),
        (
            "a prefix longer than the body",
            DECRYPT,
            frame(0, 100, b"abc"),
            false,
            &["13"],
        ),
        (
            "bytes that are not protobuf",
            DECRYPT,
            frame(0, 6, &[0xff; 6]),
            false,
            &["13"],
        ),
        (
            "a compressed flag without an encoding",
            DECRYPT,
            frame(1, 3, b"abc"),
            false,
            &["13"],
        ),
        (
            "an unsupported encoding",
            DECRYPT,
            frame(1, 3, b"abc"),
            true,
            &["12"],
        ),
        (
            "a method that does not exist",
            "/kms.v1.KeyManagement/Frobnicate",
            frame(0, 0, b""),
            false,
            &["12"],
        ),
        ("a truncated prefix", DECRYPT, vec![0, 0], false, &["13"]),
    ];
    for (what, path, body, compressed, allowed) in cases {
        let status = raw_call(&kmsd, path, body, compressed).await;
        // No status means the stream was reset: also a refusal.
        if let Some(code) = status {
            assert!(
                allowed.contains(&code.as_str()),
                "{what}: grpc-status {code}"
            );
        }
        assert_serving(&kmsd).await;
    }

    // Not HTTP/2 at all.
    for garbage in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0u8; 100],
        (0..=255u8).collect(),
    ] {
        let mut io = tokio::net::UnixStream::connect(kmsd.socket())
            .await
            .unwrap();
        let _ = io.write_all(&garbage).await;
        let _ = io.shutdown().await;
    }
    assert_serving(&kmsd).await;
    assert!(kmsd.logs().contains("kmsd ready"));
    assert!(!kmsd.logs().contains("panicked"), "{}", kmsd.logs());
}
