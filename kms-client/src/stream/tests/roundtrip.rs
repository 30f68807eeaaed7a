//! Property tests: every size and layout round-trips, every range reads
//! back exactly, sizes convert both ways, and no input makes the decoder
//! panic or release data.

use std::io::{BufRead, Read, Write};

use proptest::prelude::*;

use super::*;
use crate::stream::{CHUNK_OVERHEAD, HEADER_LEN, plaintext_size, stored_size};

/// Lengths around the chunk boundaries of a `2^log2` chunk, plus any length
/// up to ten chunks.
fn interesting_len(log2: u8) -> impl Strategy<Value = usize> {
    let c = 1usize << log2;
    prop_oneof![
        Just(0),
        Just(1),
        Just(c - 1),
        Just(c),
        Just(c + 1),
        Just(3 * c),
        0..10 * c,
    ]
}

fn single_case() -> impl Strategy<Value = (u8, usize, usize)> {
    // 2^13 exceeds the sealer's first buffer, so its growth is exercised.
    prop_oneof![6u8..=8, Just(13u8)]
        .prop_flat_map(|log2| (Just(log2), interesting_len(log2), 1usize..300))
}

/// 1 to 5 parts with ascending, possibly gapped part numbers.
fn parts_case() -> impl Strategy<Value = (u8, Vec<(u32, usize)>)> {
    (6u8..=7).prop_flat_map(|log2| {
        let c = 1usize << log2;
        let sizes = prop::collection::vec(
            prop_oneof![Just(0), Just(c), Just(c - 1), Just(c + 1), 0..5 * c],
            1..=5,
        );
        let gaps = prop::collection::vec(1u32..4, 5);
        (Just(log2), sizes, gaps).prop_map(|(log2, sizes, gaps)| {
            let mut number = 0;
            let parts = sizes
                .into_iter()
                .zip(gaps)
                .map(|(size, gap)| {
                    number += gap;
                    (number, size)
                })
                .collect();
            (log2, parts)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn single_round_trips_through_every_adapter((log2, len, step) in single_case()) {
        let plaintext = data(len, 7);
        let object = single(&plaintext, chunk(log2));
        let expected_stored = stored_size(len as u64, chunk(log2)).unwrap();
        prop_assert_eq!(object.stored.len() as u64, expected_stored);
        prop_assert_eq!(object.layout.stored_size(), expected_stored);
        prop_assert_eq!(object.layout.plaintext_size(), len as u64);
        prop_assert_eq!(decrypt(&object.layout, &object.stored).unwrap(), plaintext.clone());

        // The encrypting reader, drained in `step`-sized reads.
        let encryptor = Encryptor::new(&key(), BINDING, PartNumber::SINGLE, chunk(log2)).unwrap();
        let mut reader = encryptor.reader(&plaintext[..]);
        let mut stored = Vec::new();
        let mut buf = vec![0; step];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 { break; }
            stored.extend_from_slice(&buf[..n]);
        }
        let info = reader.info().unwrap();
        prop_assert_eq!(info.plaintext_size, len as u64);
        let layout = Layout::seal(&key(), BINDING, [info]).unwrap();
        prop_assert_eq!(decrypt(&layout, &stored).unwrap(), plaintext.clone());

        // The decrypting writer, fed in `step`-sized writes.
        let decryptor = Decryptor::new(&key(), BINDING, &layout).unwrap();
        let mut writer = decryptor.writer(Vec::new());
        for piece in stored.chunks(step) {
            writer.write_all(piece).unwrap();
        }
        prop_assert_eq!(writer.finish().unwrap(), plaintext.clone());

        // The decrypting reader through BufRead, without copies.
        let mut reader = decryptor.reader(&stored[..]);
        let mut out = Vec::new();
        loop {
            let available = reader.fill_buf().unwrap();
            if available.is_empty() { break; }
            let n = available.len().min(step);
            out.extend_from_slice(&available[..n]);
            reader.consume(n);
        }
        prop_assert_eq!(out, plaintext);
    }

    #[test]
    fn arbitrary_ranges_read_back_exactly(
        (log2, parts) in parts_case(),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let bodies: Vec<(u32, Vec<u8>)> =
            parts.iter().map(|&(n, size)| (n, data(size, n as u8))).collect();
        let object = multipart(&bodies, chunk(log2));
        let total = object.plaintext.len();
        prop_assert_eq!(decrypt(&object.layout, &object.stored).unwrap(), object.plaintext.clone());

        let (x, y) = (a.index(total + 1), b.index(total + 1));
        let (start, end) = (x.min(y), x.max(y));
        let got = read_range(&object, start as u64..end as u64).unwrap();
        prop_assert_eq!(&got[..], &object.plaintext[start..end]);

        // Only the covering chunks and their parts' headers are fetched.
        let plan = object.layout.plan_range(start as u64..end as u64).unwrap();
        let c = 1u64 << log2;
        let mut bound = 0;
        for index in 0..object.layout.parts().len() {
            let (bounds, _) = object.layout.part_bounds(index).unwrap();
            let (from, to) = (bounds.start.max(start as u64), bounds.end.min(end as u64));
            if from < to {
                let chunks = (to - 1 - bounds.start) / c - (from - bounds.start) / c + 1;
                bound += HEADER_LEN as u64 + chunks * (c + CHUNK_OVERHEAD as u64);
            }
        }
        prop_assert!(plan.fetch_len() <= bound, "fetched {} > {}", plan.fetch_len(), bound);
        prop_assert!(plan.fetch_ranges().iter().all(|r| r.end <= object.stored.len() as u64));
    }

    /// The oracle of the `decrypt` fuzz target's layout case: a plan made
    /// from the object's parts edited one way or another under the genuine
    /// tag (one edit names a stale upload attempt of a part, which the
    /// storage holds instead of the completed one) is read through a
    /// decryptor of the genuine layout. Whatever it releases is exactly the
    /// object's plaintext of the range, and an unedited plan always reads.
    #[test]
    fn plans_from_edited_layouts_release_only_the_objects_bytes(
        (log2, parts) in parts_case(),
        edit in 0u8..4,
        which in any::<prop::sample::Index>(),
        delta in 1u64..70,
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let bodies: Vec<(u32, Vec<u8>)> =
            parts.iter().map(|&(n, size)| (n, data(size, n as u8))).collect();
        let object = multipart(&bodies, chunk(log2));
        let mut edited = object.layout.parts().to_vec();
        let at = which.index(edited.len());
        let mut stored = object.stored.clone();
        match edit {
            0 => {
                // Another attempt of the part, same size, other bytes.
                let (stale, info) = encrypt_stream(
                    &key(), BINDING, edited[at].part, chunk(log2),
                    &data(bodies[at].1.len(), 0x80 ^ bodies[at].0 as u8),
                );
                edited[at].id = info.id;
                let mut streams = object.streams.clone();
                streams[at] = stale;
                stored = streams.concat();
            }
            1 => edited[at].plaintext_size = edited[at].plaintext_size.saturating_sub(delta),
            2 => edited[at].plaintext_size += delta,
            _ => edited[at].part = PartNumber::multipart(edited[at].part.get() + 1).unwrap(),
        }
        let Ok(forged) = Layout::from_parts(edited, *object.layout.tag()) else {
            return Ok(());
        };
        let total = forged.plaintext_size() as usize;
        let (x, y) = (a.index(total + 1), b.index(total + 1));
        let range = x.min(y) as u64..x.max(y) as u64;
        let plan = forged.plan_range(range.clone()).unwrap();
        let mut fetched = Vec::new();
        for r in plan.fetch_ranges() {
            let end = (r.end as usize).min(stored.len());
            fetched.extend_from_slice(stored.get(r.start as usize..end).unwrap_or(&[]));
        }
        let decryptor = Decryptor::new(&key(), BINDING, &object.layout).unwrap();
        let mut out = Vec::new();
        let read = decryptor
            .range_reader(&plan, &fetched[..])
            .and_then(|mut reader| reader.read_to_end(&mut out).map_err(stream_error));
        if read.is_ok() {
            let genuine = object.plaintext.get(range.start as usize..range.end as usize);
            prop_assert_eq!(Some(&out[..]), genuine, "released bytes that are not the object's");
        }
        if forged.parts() == object.layout.parts() {
            prop_assert!(read.is_ok(), "{:?}", read);
        }
    }

    #[test]
    fn sizes_convert_both_ways(len in 0u64..1 << 40, log2 in 6u8..=24) {
        if (len >> log2) + 1 > 1 << 32 {
            // Beyond 2^32 chunks the format refuses rather than wrap.
            prop_assert_eq!(stored_size(len, chunk(log2)), Err(StreamError::TooLarge));
        } else {
            let stored = stored_size(len, chunk(log2)).unwrap();
            prop_assert_eq!(plaintext_size(stored, chunk(log2)).unwrap(), len);
        }
    }

    #[test]
    fn every_valid_stored_size_has_one_plaintext_size(stored in 0u64..1 << 20, log2 in 6u8..=10) {
        match plaintext_size(stored, chunk(log2)) {
            Ok(len) => prop_assert_eq!(stored_size(len, chunk(log2)).unwrap(), stored),
            Err(error) => prop_assert_eq!(error, StreamError::InvalidStoredSize(stored)),
        }
    }

    #[test]
    fn the_decoder_rejects_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        // A real layout, so the decoder runs its full course on junk.
        let object = single(&data(300, 1), chunk(6));
        let error = decrypt(&object.layout, &bytes).unwrap_err();
        let expected_kinds = matches!(
            error,
            StreamError::Truncated
                | StreamError::MalformedHeader
                | StreamError::UnsupportedVersion(_)
                | StreamError::UnsupportedSuite(_)
                | StreamError::InvalidChunkSize(_)
                | StreamError::InvalidPartNumber(_)
                | StreamError::PartMismatch { .. }
                | StreamError::ChunkSizeMismatch { .. }
                | StreamError::HeaderAuthentication
        );
        prop_assert!(expected_kinds, "{error:?}");
    }

    #[test]
    fn the_decoder_rejects_arbitrary_edits(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let object = single(&data(300, 1), chunk(6));
        let mut stored = object.stored.clone();
        for (at, mask) in edits {
            let at = at.index(stored.len());
            stored[at] ^= mask;
        }
        prop_assert!(decrypt(&object.layout, &stored).is_err());
    }

    #[test]
    fn metadata_parsing_never_panics(
        entries in prop::collection::vec(
            (prop_oneof![
                Just("x-kms-parts".to_owned()),
                Just("x-kms-chunk-size".to_owned()),
                Just("x-kms-layout-tag".to_owned()),
                Just("x-kms-sealed-key".to_owned()),
                "x-kms-[a-z-]{0,12}",
                ".{0,12}",
            ], "[0-9a-f:,]{0,80}|.{0,40}"),
            0..8,
        ),
    ) {
        // Junk must be refused or, if it happens to parse, survive a round
        // trip unchanged; either way without a panic.
        if let Ok(metadata) = crate::metadata::ObjectMetadata::from_map(entries) {
            let again = crate::metadata::ObjectMetadata::from_map(&metadata.to_map());
            prop_assert_eq!(again, Ok(metadata));
        }
    }
}
