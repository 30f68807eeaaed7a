#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use loona_hpack::{Decoder, Encoder};
use proptest::prelude::*;

use super::rewrite::{MAX_BLOCK, REPLACEMENT, Rewriter};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// What gRPC C-core sends for `unix:/tmp/kmsd.sock`.
const SOCKET_AUTHORITY: &[u8] = b"%2Ftmp%2Fkmsd.sock";

type Headers = Vec<(Vec<u8>, Vec<u8>)>;

fn request(authority: &[u8], path: &str) -> Headers {
    vec![
        (b":method".to_vec(), b"POST".to_vec()),
        (b":scheme".to_vec(), b"http".to_vec()),
        (b":path".to_vec(), path.as_bytes().to_vec()),
        (b":authority".to_vec(), authority.to_vec()),
        (b"content-type".to_vec(), b"application/grpc".to_vec()),
        (b"te".to_vec(), b"trailers".to_vec()),
        (b"grpc-timeout".to_vec(), b"5S".to_vec()),
    ]
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// A client's bytes: preface, SETTINGS, then per request a HEADERS frame
/// (encoded with the dynamic table, as C-core does) and a DATA frame.
fn client_bytes(requests: &[Headers]) -> Vec<u8> {
    let mut encoder = Encoder::new();
    let mut out = PREFACE.to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    for (i, headers) in requests.iter().enumerate() {
        let stream = 2 * i as u32 + 1;
        let block = encoder.encode(headers.iter().map(|(n, v)| (&n[..], &v[..])));
        out.extend(frame(0x1, 0x4, stream, &block));
        out.extend(frame(0x0, 0x1, stream, b"\0\0\0\0\x02hi"));
    }
    out
}

fn run(input: &[u8], step: usize) -> Result<Vec<u8>, super::rewrite::RewriteError> {
    let mut rewriter = Rewriter::default();
    let (mut pending, mut out) = (BytesMut::new(), BytesMut::new());
    for chunk in input.chunks(step) {
        pending.extend_from_slice(chunk);
        rewriter.process(&mut pending, &mut out)?;
    }
    Ok(out.to_vec())
}

/// What hyper would see: every frame, header blocks decoded with one
/// connection-wide decoder.
#[derive(Debug, PartialEq)]
enum Seen {
    Headers(u32, u8, Headers),
    Other(u8, u8, u32, Vec<u8>),
}

fn parse(bytes: &[u8]) -> Vec<Seen> {
    assert!(bytes.starts_with(PREFACE));
    let mut rest = &bytes[PREFACE.len()..];
    let mut decoder = Decoder::new();
    let mut seen = Vec::new();
    let mut block: Option<(u32, u8, Vec<u8>)> = None;
    while !rest.is_empty() {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        let (kind, flags) = (rest[3], rest[4]);
        let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
        let payload = &rest[9..9 + len];
        rest = &rest[9 + len..];
        match kind {
            0x1 => {
                assert!(block.is_none());
                let mut p = payload;
                let mut pad = 0;
                if flags & 0x8 != 0 {
                    pad = p[0] as usize;
                    p = &p[1..];
                }
                if flags & 0x20 != 0 {
                    p = &p[5..];
                }
                block = Some((stream, flags & 0x21, p[..p.len() - pad].to_vec()));
            }
            0x9 => block.as_mut().unwrap().2.extend(payload),
            _ => seen.push(Seen::Other(kind, flags, stream, payload.to_vec())),
        }
        if (kind == 0x1 || kind == 0x9) && flags & 0x4 != 0 {
            let (stream, flags, fragment) = block.take().unwrap();
            seen.push(Seen::Headers(
                stream,
                flags,
                decoder.decode(&fragment).unwrap(),
            ));
        }
    }
    seen
}

fn authorities(seen: &[Seen]) -> Vec<Vec<u8>> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Headers(_, _, h) => h
                .iter()
                .find(|(n, _)| n == b":authority")
                .map(|(_, v)| v.clone()),
            Seen::Other(..) => None,
        })
        .collect()
}

#[test]
fn a_socket_path_authority_becomes_localhost_and_nothing_else_changes() {
    let requests = [
        request(SOCKET_AUTHORITY, "/kms.v1.KeyManagement/GenerateDataKey"),
        // Refers to the first block's dynamic-table entries.
        request(SOCKET_AUTHORITY, "/kms.v1.KeyManagement/Decrypt"),
        request(SOCKET_AUTHORITY, "/kms.v1.KeyManagement/Decrypt"),
    ];
    let input = client_bytes(&requests);
    let output = run(&input, input.len()).unwrap();
    let (sent, got) = (parse(&input), parse(&output));
    assert_eq!(authorities(&got), vec![REPLACEMENT.to_vec(); 3]);
    // Everything but the authority is what the client sent.
    let expected: Vec<Seen> = sent
        .into_iter()
        .map(|s| match s {
            Seen::Headers(stream, flags, mut h) => {
                for (n, v) in &mut h {
                    if n == b":authority" {
                        *v = REPLACEMENT.to_vec();
                    }
                }
                Seen::Headers(stream, flags, h)
            }
            other => other,
        })
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn the_output_does_not_depend_on_how_the_input_is_split() {
    let input = client_bytes(&[
        request(b"/tmp/kmsd.sock", "/a"),
        request(b"/tmp/kmsd.sock", "/b"),
    ]);
    let whole = run(&input, input.len()).unwrap();
    for step in [1, 2, 7, 9, 10, 100] {
        assert_eq!(run(&input, step).unwrap(), whole, "step {step}");
    }
}

#[test]
fn a_valid_first_authority_passes_the_connection_through_unchanged() {
    let input = client_bytes(&[request(b"localhost", "/a"), request(b"kmsd.local", "/b")]);
    assert_eq!(run(&input, input.len()).unwrap(), input);
    assert_eq!(run(&input, 3).unwrap(), input);
}

#[test]
fn what_is_not_http2_passes_through() {
    let input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    assert_eq!(run(&input, 1).unwrap(), input);
}

#[test]
fn padding_priority_and_continuation_frames_are_understood() {
    let mut encoder = Encoder::new();
    let headers = request(SOCKET_AUTHORITY, "/p");
    let block = encoder.encode(headers.iter().map(|(n, v)| (&n[..], &v[..])));
    let (a, b) = block.split_at(block.len() / 2);
    let mut payload = vec![3u8]; // pad length
    payload.extend([0, 0, 0, 0, 16]); // priority: no dependency, weight 16
    payload.extend(a);
    payload.extend([0, 0, 0]);
    let mut input = PREFACE.to_vec();
    input.extend(frame(0x1, 0x8 | 0x20 | 0x1, 1, &payload));
    input.extend(frame(0x9, 0x4, 1, b));
    let got = parse(&run(&input, 5).unwrap());
    let mut want = headers;
    want[3].1 = REPLACEMENT.to_vec();
    assert_eq!(got, vec![Seen::Headers(1, 0x21, want)]);
}

#[test]
fn a_block_too_large_for_one_frame_is_split_into_continuations() {
    let mut headers = request(SOCKET_AUTHORITY, "/big");
    headers.push((b"x-big".to_vec(), vec![b'v'; 40_000]));
    let input = client_bytes(&[headers.clone()]);
    let output = run(&input, 4096).unwrap();
    assert!(output.len() > input.len() - 40_000, "the value was kept");
    headers[3].1 = REPLACEMENT.to_vec();
    assert!(matches!(&parse(&output)[1], Seen::Headers(1, 0, h) if *h == headers));
}

#[test]
fn hostile_header_blocks_are_refused_not_buffered() {
    // A block that never ends.
    let mut input = PREFACE.to_vec();
    input.extend(frame(0x1, 0, 1, &[0x82]));
    for _ in 0..5 {
        input.extend(frame(0x9, 0, 1, &vec![0x82; 16_000]));
    }
    assert!(run(&input, input.len()).is_err());
    // Another frame inside a block.
    let mut input = PREFACE.to_vec();
    input.extend(frame(0x1, 0, 1, &[0x82]));
    input.extend(frame(0x0, 0, 1, b"x"));
    assert!(run(&input, input.len()).is_err());
    // A small block that expands past the bound through the dynamic table.
    let mut encoder = Encoder::new();
    let big = (b"x-a".to_vec(), vec![b'a'; 4000]);
    let mut input = PREFACE.to_vec();
    let first = encoder.encode([
        (&big.0[..], &big.1[..]),
        (&b":authority"[..], SOCKET_AUTHORITY),
    ]);
    input.extend(frame(0x1, 0x4, 1, &first));
    let again = vec![0xbe; MAX_BLOCK / 4000 + 2]; // index 62, over and over
    input.extend(frame(0x1, 0x4, 3, &again));
    assert!(run(&input, input.len()).is_err());
}

proptest! {
    #[test]
    fn arbitrary_frames_never_panic(frames in proptest::collection::vec(
        (0u8..12, any::<u8>(), 0u32..4, proptest::collection::vec(any::<u8>(), 0..64)), 0..12),
        step in 1usize..40)
    {
        let mut input = PREFACE.to_vec();
        for (kind, flags, stream, payload) in &frames {
            input.extend(frame(*kind, *flags, *stream, payload));
        }
        let _ = run(&input, step);
    }
}
