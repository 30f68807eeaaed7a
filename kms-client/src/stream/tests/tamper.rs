//! Every way of tampering with a stored object, each refused with its own
//! error.

use super::*;
use crate::stream::{CHUNK_OVERHEAD, HEADER_LEN, PartId, format::StreamKeys};

const LOG2: u8 = 6;
const C: usize = 1 << LOG2;
const STORED_CHUNK: usize = C + CHUNK_OVERHEAD;

/// Where chunk `i` of a single-part object starts.
fn chunk_at(i: usize) -> usize {
    HEADER_LEN + i * STORED_CHUNK
}

/// A single-part object of 3.5 chunks: chunks 0-2 full, chunk 3 final.
fn object() -> Object {
    single(&data(3 * C + C / 2, 3), chunk(LOG2))
}

#[test]
fn every_flipped_bit_is_refused_where_it_is() {
    let object = object();
    for at in 0..object.stored.len() {
        for bit in 0..8 {
            let mut stored = object.stored.clone();
            stored[at] ^= 1 << bit;
            let error = decrypt(&object.layout, &stored).unwrap_err();
            if at < HEADER_LEN {
                let header_error = match at {
                    0..=3 | 7 => StreamError::MalformedHeader,
                    4 => StreamError::UnsupportedVersion(1 ^ (1 << bit)),
                    5 => StreamError::UnsupportedSuite(1 ^ (1 << bit)),
                    // Bit flips of the chunk size are out of range or a
                    // different size; of the part number, another part.
                    6 => {
                        let log2 = LOG2 ^ (1 << bit);
                        if (6..=24).contains(&log2) {
                            StreamError::ChunkSizeMismatch {
                                expected: LOG2,
                                found: log2,
                            }
                        } else {
                            StreamError::InvalidChunkSize(log2)
                        }
                    }
                    8..=11 => {
                        let found = 1u32 << (8 * (11 - at) + bit);
                        if found <= 10_000 {
                            StreamError::PartMismatch { expected: 0, found }
                        } else {
                            StreamError::InvalidPartNumber(found)
                        }
                    }
                    _ => StreamError::HeaderAuthentication,
                };
                assert_eq!(error, header_error, "byte {at} bit {bit}");
            } else {
                let index = ((at - HEADER_LEN) / STORED_CHUNK) as u32;
                assert_eq!(
                    error,
                    StreamError::ChunkAuthentication { part: 0, index },
                    "byte {at} bit {bit}"
                );
            }
        }
    }
}

#[test]
fn truncation_anywhere_is_refused_also_at_chunk_boundaries() {
    let object = object();
    for len in 0..object.stored.len() {
        let error = decrypt(&object.layout, &object.stored[..len]).unwrap_err();
        assert_eq!(error, StreamError::Truncated, "truncated to {len}");
    }
    // Exactly at each boundary, through the decrypting writer too.
    for boundary in [HEADER_LEN, chunk_at(1), chunk_at(2), chunk_at(3)] {
        let decryptor = Decryptor::new(&key(), BINDING, &object.layout).unwrap();
        let mut writer = decryptor.writer(Vec::new());
        writer.write_all(&object.stored[..boundary]).unwrap();
        assert_eq!(
            stream_error(writer.finish().unwrap_err()),
            StreamError::Truncated
        );
    }
}

#[test]
fn a_truncated_reader_fails_instead_of_ending() {
    // An object whose last chunk is empty: dropping that 16-byte chunk
    // leaves a stream that ends cleanly at a chunk boundary.
    let object = single(&data(2 * C, 1), chunk(LOG2));
    let cut = &object.stored[..object.stored.len() - CHUNK_OVERHEAD];
    let decryptor = Decryptor::new(&key(), BINDING, &object.layout).unwrap();
    let mut reader = decryptor.reader(cut);
    let mut out = Vec::new();
    let error = reader.read_to_end(&mut out).unwrap_err();
    assert_eq!(stream_error(error), StreamError::Truncated);
    // What was released before the failure is authentic and in order.
    assert_eq!(out, object.plaintext);
}

#[test]
fn appended_data_is_refused() {
    let object = object();
    for extra in [
        &[0u8][..],
        &[0; CHUNK_OVERHEAD],
        &object.stored[HEADER_LEN..chunk_at(1)],
    ] {
        let stored = [&object.stored[..], extra].concat();
        assert_eq!(
            decrypt(&object.layout, &stored).unwrap_err(),
            StreamError::TrailingData
        );
        let decryptor = Decryptor::new(&key(), BINDING, &object.layout).unwrap();
        let mut writer = decryptor.writer(Vec::new());
        let error = writer.write_all(&stored).unwrap_err();
        assert_eq!(stream_error(error), StreamError::TrailingData);
    }
}

#[test]
fn reordered_chunks_are_refused() {
    let object = object();
    let mut stored = object.stored.clone();
    let (first, second) = stored[chunk_at(0)..chunk_at(2)].split_at_mut(STORED_CHUNK);
    first.swap_with_slice(second);
    assert_eq!(
        decrypt(&object.layout, &stored).unwrap_err(),
        StreamError::ChunkAuthentication { part: 0, index: 0 }
    );
}

#[test]
fn duplicated_chunks_are_refused() {
    let object = object();
    let mut stored = object.stored.clone();
    stored.copy_within(chunk_at(0)..chunk_at(1), chunk_at(1));
    assert_eq!(
        decrypt(&object.layout, &stored).unwrap_err(),
        StreamError::ChunkAuthentication { part: 0, index: 1 }
    );
}

#[test]
fn chunks_spliced_from_another_object_under_the_same_key_are_refused() {
    let object = object();
    // The same data key and plaintext: another object name, and another
    // upload of this very object.
    let (other_name, _) = encrypt_stream(
        &key(),
        b"photos/dog.jpg",
        PartNumber::SINGLE,
        chunk(LOG2),
        &object.plaintext,
    );
    let (other_upload, _) = encrypt_stream(
        &key(),
        BINDING,
        PartNumber::SINGLE,
        chunk(LOG2),
        &object.plaintext,
    );
    for donor in [other_name, other_upload] {
        let mut stored = object.stored.clone();
        stored[chunk_at(2)..chunk_at(3)].copy_from_slice(&donor[chunk_at(2)..chunk_at(3)]);
        assert_eq!(
            decrypt(&object.layout, &stored).unwrap_err(),
            StreamError::ChunkAuthentication { part: 0, index: 2 }
        );
    }
}

#[test]
fn a_whole_stream_from_another_object_or_upload_is_refused() {
    let object = object();
    let (other_name, _) = encrypt_stream(
        &key(),
        b"photos/dog.jpg",
        PartNumber::SINGLE,
        chunk(LOG2),
        &object.plaintext,
    );
    assert_eq!(
        decrypt(&object.layout, &other_name).unwrap_err(),
        StreamError::HeaderAuthentication
    );
    // A retry of the same upload is authentic, but not the one recorded.
    let (retry, _) = encrypt_stream(
        &key(),
        BINDING,
        PartNumber::SINGLE,
        chunk(LOG2),
        &object.plaintext,
    );
    assert_eq!(
        decrypt(&object.layout, &retry).unwrap_err(),
        StreamError::PartIdMismatch { part: 0 }
    );
}

#[test]
fn a_changed_header_is_refused() {
    let object = object();
    let mut stored = object.stored.clone();
    stored[20] ^= 0x80; // the salt
    assert_eq!(
        decrypt(&object.layout, &stored).unwrap_err(),
        StreamError::HeaderAuthentication
    );
    let mut stored = object.stored.clone();
    stored[HEADER_LEN - 1] ^= 0x01; // the tag
    assert_eq!(
        decrypt(&object.layout, &stored).unwrap_err(),
        StreamError::HeaderAuthentication
    );
}

#[test]
fn the_wrong_key_or_binding_is_refused_before_any_byte() {
    let object = object();
    let other_key = DataKey::from_bytes([0x43; 32]);
    assert_eq!(
        Decryptor::new(&other_key, BINDING, &object.layout).unwrap_err(),
        StreamError::LayoutAuthentication
    );
    assert_eq!(
        Decryptor::new(&key(), b"photos/dog.jpg", &object.layout).unwrap_err(),
        StreamError::LayoutAuthentication
    );
}

#[test]
fn a_non_final_chunk_cannot_pass_as_the_final_one() {
    let mut header = crate::stream::format::Header::new(chunk(LOG2), PartNumber::SINGLE, &[9; 32]);
    let keys = StreamKeys::for_new(&key(), BINDING, &mut header);
    let mut buf = vec![5u8; C + CHUNK_OVERHEAD];
    keys.seal(4, false, &mut buf, C);
    let mut copy = buf.clone();
    assert_eq!(keys.open(PartNumber::SINGLE, 4, false, &mut copy), Ok(C));
    assert_eq!(
        keys.open(PartNumber::SINGLE, 4, true, &mut buf),
        Err(StreamError::ChunkAuthentication { part: 0, index: 4 })
    );
}

fn three_parts() -> Object {
    multipart(
        &[
            (1, data(2 * C + 5, 1)),
            (2, data(3 * C, 2)),
            (4, data(7, 4)),
        ],
        chunk(LOG2),
    )
}

#[test]
fn swapped_parts_are_refused() {
    let object = three_parts();
    let streams = &object.streams;
    let stored = [&streams[1][..], &streams[0], &streams[2]].concat();
    // The stored sizes differ, so the layout cuts the swapped bytes at the
    // original boundaries: part 2's header sits where part 1's should.
    assert_eq!(
        decrypt(&object.layout, &stored).unwrap_err(),
        StreamError::PartMismatch {
            expected: 1,
            found: 2
        }
    );
}

#[test]
fn a_dropped_last_part_is_refused_even_with_edited_metadata() {
    let object = three_parts();
    let stored = [&object.streams[0][..], &object.streams[1]].concat();
    assert_eq!(
        decrypt(&object.layout, &stored).unwrap_err(),
        StreamError::Truncated
    );
    // Editing the layout to match needs the key: the tag no longer verifies.
    let edited =
        Layout::from_parts(object.layout.parts()[..2].to_vec(), *object.layout.tag()).unwrap();
    assert_eq!(
        Decryptor::new(&key(), BINDING, &edited).unwrap_err(),
        StreamError::LayoutAuthentication
    );
}

#[test]
fn any_edit_to_the_layout_is_refused() {
    let object = three_parts();
    let parts = object.layout.parts().to_vec();
    let tag = *object.layout.tag();
    let mut resized = parts.clone();
    resized[2].plaintext_size += 1;
    let mut renumbered = parts.clone();
    renumbered[2].part = PartNumber::multipart(3).unwrap();
    let mut reattempted = parts.clone();
    reattempted[0].id = PartId([0; 16]);
    let mut retagged = tag;
    retagged[0] ^= 1;
    for layout in [
        Layout::from_parts(resized, tag).unwrap(),
        Layout::from_parts(renumbered, tag).unwrap(),
        Layout::from_parts(reattempted, tag).unwrap(),
        Layout::from_parts(parts, retagged).unwrap(),
    ] {
        assert_eq!(
            Decryptor::new(&key(), BINDING, &layout).unwrap_err(),
            StreamError::LayoutAuthentication
        );
    }
}

#[test]
fn a_stale_attempt_of_a_part_is_refused() {
    let object = three_parts();
    // Part 2 uploaded again with the same bytes: same size, authentic, but
    // not the attempt the layout records.
    let (retry, _) = encrypt_stream(
        &key(),
        BINDING,
        PartNumber::multipart(2).unwrap(),
        chunk(LOG2),
        &data(3 * C, 2),
    );
    let stored = [&object.streams[0][..], &retry, &object.streams[2]].concat();
    assert_eq!(
        decrypt(&object.layout, &stored).unwrap_err(),
        StreamError::PartIdMismatch { part: 2 }
    );
}

/// A range plan made from parts edited to name a stale attempt of part 2,
/// with the genuine layout tag, must not steer a decryptor of the genuine
/// layout to that attempt's bytes: plans come from the decryptor's own
/// authenticated layout, whatever tag they carry.
#[test]
fn a_plan_from_edited_parts_with_the_genuine_tag_is_refused() {
    let object = three_parts();
    let (retry, retry_info) = encrypt_stream(
        &key(),
        BINDING,
        PartNumber::multipart(2).unwrap(),
        chunk(LOG2),
        &data(3 * C, 7),
    );
    // The storage holds the stale attempt where part 2 was completed.
    let stored = [&object.streams[0][..], &retry, &object.streams[2]].concat();
    let mut parts = object.layout.parts().to_vec();
    parts[1].id = retry_info.id;
    let forged = Layout::from_parts(parts, *object.layout.tag()).unwrap();
    let decryptor = Decryptor::new(&key(), BINDING, &object.layout).unwrap();
    let start = (2 * C + 5) as u64;
    for range in [start..start + 10, 0..object.plaintext.len() as u64] {
        let plan = forged.plan_range(range.clone()).unwrap();
        let fetched = fetch(&stored, &plan);
        let refused = match decryptor.range_reader(&plan, &fetched[..]) {
            Err(error) => error,
            Ok(mut reader) => {
                let mut out = Vec::new();
                match reader.read_to_end(&mut out) {
                    Ok(_) => panic!("released {} bytes of a stale part upload", out.len()),
                    Err(error) => stream_error(error),
                }
            }
        };
        assert_eq!(
            refused,
            StreamError::InvalidLayout("the plan was made from another layout"),
            "{range:?}"
        );
    }
    // The decryptor's own plan reads the genuine bytes and refuses the
    // stale ones.
    let plan = decryptor.plan_range(start..start + 10).unwrap();
    let mut out = Vec::new();
    decryptor
        .range_reader(&plan, &fetch(&object.stored, &plan)[..])
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, object.plaintext[start as usize..start as usize + 10]);
    let error = decryptor
        .range_reader(&plan, &fetch(&stored, &plan)[..])
        .unwrap()
        .read_to_end(&mut Vec::new())
        .unwrap_err();
    assert_eq!(stream_error(error), StreamError::PartIdMismatch { part: 2 });
}

#[test]
fn a_range_reader_checks_what_it_reads() {
    let object = three_parts();
    let start = (2 * C + 5) as u64 + 70;
    let plan = object.layout.plan_range(start..start + 3).unwrap();
    let decryptor = Decryptor::new(&key(), BINDING, &object.layout).unwrap();
    let mut fetched = fetch(&object.stored, &plan);
    let last = fetched.len() - 1;
    fetched[last] ^= 1;
    let mut out = Vec::new();
    let error = decryptor
        .range_reader(&plan, &fetched[..])
        .unwrap()
        .read_to_end(&mut out)
        .unwrap_err();
    assert_eq!(
        stream_error(error),
        StreamError::ChunkAuthentication { part: 2, index: 1 }
    );
    assert!(out.is_empty(), "released unauthenticated bytes");
    // A plan from another layout is refused.
    let other = three_parts();
    let foreign = other.layout.plan_range(0..1).unwrap();
    assert!(matches!(
        decryptor.range_reader(&foreign, &[][..]),
        Err(StreamError::InvalidLayout(_))
    ));
}

#[test]
fn every_stream_has_its_own_key_so_nonces_never_repeat() {
    // Two encryptions of the same part, same key, binding and plaintext
    // (a retried upload): different salts, so different keys and bytes.
    let plaintext = data(2 * C, 9);
    let part = PartNumber::multipart(5).unwrap();
    let (a, info_a) = encrypt_stream(&key(), BINDING, part, chunk(LOG2), &plaintext);
    let (b, info_b) = encrypt_stream(&key(), BINDING, part, chunk(LOG2), &plaintext);
    assert_ne!(a[12..44], b[12..44], "salts repeat");
    assert_ne!(info_a.id, info_b.id);
    for i in 0..3 {
        assert_ne!(
            a[chunk_at(i)..chunk_at(i) + 16],
            b[chunk_at(i)..chunk_at(i) + 16]
        );
    }
}

#[test]
fn parameters_out_of_range_are_refused() {
    assert_eq!(
        PartNumber::multipart(0),
        Err(StreamError::InvalidPartNumber(0))
    );
    assert_eq!(
        PartNumber::multipart(10_001),
        Err(StreamError::InvalidPartNumber(10_001))
    );
    assert_eq!(
        ChunkSize::from_log2(5),
        Err(StreamError::InvalidChunkSize(5))
    );
    assert_eq!(
        ChunkSize::from_log2(25),
        Err(StreamError::InvalidChunkSize(25))
    );
    assert!(ChunkSize::from_bytes(1000).is_err());
    assert_eq!(ChunkSize::from_bytes(1 << 20), Ok(ChunkSize::DEFAULT));
    let long = vec![0u8; crate::stream::MAX_BINDING_LEN + 1];
    let error = Encryptor::new(&key(), &long, PartNumber::SINGLE, ChunkSize::DEFAULT).unwrap_err();
    assert_eq!(error, StreamError::BindingTooLong(long.len()));
    let object = object();
    let (a, b) = (
        object.plaintext.len() as u64,
        object.plaintext.len() as u64 + 1,
    );
    assert_eq!(
        object.layout.plan_range(a..b).unwrap_err(),
        StreamError::RangeOutOfBounds {
            start: a,
            end: b,
            size: a
        }
    );
    // A single-part stream cannot sit among parts.
    let mut parts = three_parts().layout.parts().to_vec();
    parts[0].part = PartNumber::SINGLE;
    assert!(matches!(
        Layout::seal(&key(), BINDING, parts),
        Err(StreamError::InvalidLayout(_))
    ));
}
