//! Tests of the stream format: round trips, tampering, vectors, adapters.

mod adapters;
mod roundtrip;
mod tamper;
mod vectors;

use std::io::{Read, Write};

use super::{ChunkSize, Decryptor, Encryptor, Layout, PartInfo, PartNumber, StreamError};
use crate::DataKey;

pub(super) const BINDING: &[u8] = b"photos/cat.jpg";

pub(super) fn key() -> DataKey {
    DataKey::from_bytes([0x42; 32])
}

pub(super) fn chunk(log2: u8) -> ChunkSize {
    ChunkSize::from_log2(log2).unwrap()
}

/// Deterministic, position-dependent plaintext.
pub(super) fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Encrypts one stream with the std writer, in writes of `step` bytes.
pub(super) fn encrypt_stream(
    key: &DataKey,
    binding: &[u8],
    part: PartNumber,
    chunk_size: ChunkSize,
    plaintext: &[u8],
) -> (Vec<u8>, PartInfo) {
    let mut writer = Encryptor::new(key, binding, part, chunk_size)
        .unwrap()
        .writer(Vec::new());
    writer.write_all(plaintext).unwrap();
    writer.finish().unwrap()
}

/// A whole object: its stored bytes, layout and plaintext.
pub(super) struct Object {
    pub(super) stored: Vec<u8>,
    pub(super) layout: Layout,
    pub(super) plaintext: Vec<u8>,
    pub(super) streams: Vec<Vec<u8>>,
}

pub(super) fn single(plaintext: &[u8], chunk_size: ChunkSize) -> Object {
    let (stored, info) = encrypt_stream(&key(), BINDING, PartNumber::SINGLE, chunk_size, plaintext);
    let layout = Layout::seal(&key(), BINDING, [info]).unwrap();
    Object {
        streams: vec![stored.clone()],
        stored,
        layout,
        plaintext: plaintext.to_vec(),
    }
}

pub(super) fn multipart(parts: &[(u32, Vec<u8>)], chunk_size: ChunkSize) -> Object {
    let (mut stored, mut infos, mut plaintext, mut streams) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (number, body) in parts {
        let part = PartNumber::multipart(*number).unwrap();
        let (bytes, info) = encrypt_stream(&key(), BINDING, part, chunk_size, body);
        stored.extend_from_slice(&bytes);
        streams.push(bytes);
        infos.push(info);
        plaintext.extend_from_slice(body);
    }
    let layout = Layout::seal(&key(), BINDING, infos).unwrap();
    Object {
        stored,
        layout,
        plaintext,
        streams,
    }
}

/// Decrypts a whole object with the std reader.
pub(super) fn decrypt(layout: &Layout, stored: &[u8]) -> Result<Vec<u8>, StreamError> {
    let decryptor = Decryptor::new(&key(), BINDING, layout)?;
    let mut out = Vec::new();
    decryptor
        .reader(stored)
        .read_to_end(&mut out)
        .map_err(stream_error)?;
    Ok(out)
}

pub(super) fn stream_error(error: std::io::Error) -> StreamError {
    match StreamError::from_io(&error) {
        Some(stream) => stream.clone(),
        None => panic!("not a stream error: {error}"),
    }
}

/// The concatenation of a plan's fetch ranges.
pub(super) fn fetch(stored: &[u8], plan: &super::RangePlan) -> Vec<u8> {
    plan.fetch_ranges()
        .iter()
        .flat_map(|r| stored[r.start as usize..r.end as usize].iter().copied())
        .collect()
}

pub(super) fn read_range(
    object: &Object,
    range: std::ops::Range<u64>,
) -> Result<Vec<u8>, StreamError> {
    let plan = object.layout.plan_range(range)?;
    let fetched = fetch(&object.stored, &plan);
    let decryptor = Decryptor::new(&key(), BINDING, &object.layout)?;
    let mut out = Vec::new();
    decryptor
        .range_reader(&plan, &fetched[..])?
        .read_to_end(&mut out)
        .map_err(stream_error)?;
    Ok(out)
}
