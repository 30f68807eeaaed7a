//! Fuzzes the OSE1 decoder with an oracle: a valid object (the multipart
//! test vector of docs/format.md) is edited as the input says, then read
//! whole, by a range, and through the decrypting writer. Every read must
//! succeed with the original plaintext if and only if the bytes it reads
//! are unchanged; anything else must be an error, never a panic and never
//! wrong plaintext. Inputs starting with 0xff are instead read as a whole
//! stored object, unedited, to exercise the header parser on junk; inputs
//! starting with 0xfe edit the layout's parts instead of the bytes, keep
//! the genuine tag, and read a range planned from that forged layout
//! through the genuine decryptor, which must refuse it unless the parts
//! are unchanged.
#![no_main]

use std::{
    io::{Read, Write},
    sync::OnceLock,
};

use kms_client::{
    DataKey,
    stream::{ChunkSize, Decryptor, Encryptor, Layout, PartId, PartInfo, PartNumber},
};
use libfuzzer_sys::fuzz_target;

const BINDING: &[u8] = b"photos/cat.jpg";
const PART_1: &str = concat!(
    "4f5345310101060000000001404142434445464748494a4b4c4d4e4f",
    "505152535455565758595a5b5c5d5e5f",
    "3e19b931914e3b6906207bdd835c025d475e4174a4d5b378391b66e9327b6a3e",
    "f87346be183c4c87d110dc853361a27fb13067d4e70a329bfaa77484e041f323",
    "77854fb9283f409568af2e3c911b3473673290ab43135a0330a581600571d2ab",
    "4ea438ac97f49ad22f2d8e3a581842f4c00d92a476a01bf222967a801edebf71",
);
const PART_3: &str = concat!(
    "4f5345310101060000000003606162636465666768696a6b6c6d6e6f",
    "707172737475767778797a7b7c7d7e7f",
    "ccd597c47cecc041f245cc96b562ac22d4d840ce6d516a860e59291b11fbeddf",
    "092f781812c4ed7642f2fe5d39e64e7c3c3c3efd",
);

struct Object {
    stored: Vec<u8>,
    streams: Vec<Vec<u8>>,
    /// Another upload attempt of each part: same size, other bytes.
    stale: Vec<(Vec<u8>, PartInfo)>,
    plaintext: Vec<u8>,
    layout: Layout,
    decryptor: Decryptor,
}

fn object() -> &'static Object {
    static OBJECT: OnceLock<Object> = OnceLock::new();
    OBJECT.get_or_init(|| {
        let key = DataKey::from_bytes(std::array::from_fn(|i| i as u8));
        let streams = vec![hex::decode(PART_1).unwrap(), hex::decode(PART_3).unwrap()];
        let stored = streams.concat();
        let chunk_size = ChunkSize::from_log2(6).unwrap();
        let part = |n, size, id: &str| PartInfo {
            part: PartNumber::multipart(n).unwrap(),
            chunk_size,
            plaintext_size: size,
            id: PartId(hex::decode(id).unwrap().try_into().unwrap()),
        };
        let parts = [
            part(1, 64, "3e19b931914e3b6906207bdd835c025d"),
            part(3, 4, "ccd597c47cecc041f245cc96b562ac22"),
        ];
        let stale = parts
            .iter()
            .map(|part| {
                let mut writer = Encryptor::new(&key, BINDING, part.part, chunk_size)
                    .unwrap()
                    .writer(Vec::new());
                writer
                    .write_all(&vec![0x55; part.plaintext_size as usize])
                    .unwrap();
                writer.finish().unwrap()
            })
            .collect();
        let layout = Layout::seal(&key, BINDING, parts).unwrap();
        let decryptor = Decryptor::new(&key, BINDING, &layout).unwrap();
        let plaintext = [vec![0xaa; 64], b"meow".to_vec()].concat();
        Object {
            stored,
            streams,
            stale,
            plaintext,
            layout,
            decryptor,
        }
    })
}

/// Applies the input's edits: pairs of (position, xor mask), then an
/// optional length change.
fn edit(original: &[u8], input: &[u8]) -> Vec<u8> {
    let mut stored = original.to_vec();
    let (resize, edits) = input.split_first().unwrap_or((&0, &[]));
    for pair in edits.chunks_exact(2) {
        let at = pair[0] as usize * 3 % stored.len().max(1);
        if let Some(byte) = stored.get_mut(at) {
            *byte ^= pair[1];
        }
    }
    match resize {
        0x80..=0xbf => stored.truncate(stored.len().saturating_sub((resize & 0x3f) as usize)),
        0xc0..=0xfe => stored.extend(std::iter::repeat_n(*resize, (resize & 0x3f) as usize)),
        _ => {}
    }
    stored
}

/// The 0xfe case: `input` is (part index, field, value bytes..., with the
/// last and middle bytes choosing the range). Field 0 swaps the part for a
/// stale upload attempt (same size, other bytes) in storage and names it
/// in the forged layout: the attack. Whatever a read releases must be the
/// object's plaintext of the range, and unedited parts must always read.
fn forged_layout(object: &Object, input: &[u8]) {
    let [which, field, rest @ ..] = input else {
        return;
    };
    let mut parts = object.layout.parts().to_vec();
    let at = *which as usize % parts.len();
    let byte = rest.first().copied().unwrap_or(0);
    let mut stored = object.stored.clone();
    match field % 4 {
        0 => {
            let (stale, info) = &object.stale[at];
            parts[at].id = info.id;
            let mut streams = object.streams.clone();
            streams[at] = stale.clone();
            stored = streams.concat();
        }
        1 => parts[at].id.0[byte as usize % 16] ^= rest.get(1).copied().unwrap_or(1),
        2 => parts[at].plaintext_size ^= u64::from(byte),
        _ => match PartNumber::multipart(u32::from(byte)) {
            Ok(part) => parts[at].part = part,
            Err(_) => return,
        },
    }
    let Ok(forged) = Layout::from_parts(parts, *object.layout.tag()) else {
        return;
    };
    let size = forged.plaintext_size();
    let a = u64::from(input[input.len() - 1]) % (size + 1);
    let b = u64::from(input[input.len() / 2]) % (size + 1);
    let range = a.min(b)..a.max(b);
    let Ok(plan) = forged.plan_range(range.clone()) else {
        return;
    };
    let mut fetched = Vec::new();
    for r in plan.fetch_ranges() {
        let end = (r.end as usize).min(stored.len());
        fetched.extend_from_slice(stored.get(r.start as usize..end).unwrap_or(&[]));
    }
    let mut out = Vec::new();
    let read = object
        .decryptor
        .range_reader(&plan, &fetched[..])
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|mut reader| reader.read_to_end(&mut out));
    if read.is_ok() {
        let genuine = object.plaintext.get(range.start as usize..range.end as usize);
        assert_eq!(Some(&out[..]), genuine, "released bytes that are not the object's");
    }
    if forged.parts() == object.layout.parts() {
        assert!(read.is_ok(), "an unedited layout did not read");
    }
}

fuzz_target!(|input: &[u8]| {
    let object = object();
    if let Some((0xff, junk)) = input.split_first() {
        let mut out = Vec::new();
        assert!(
            object.decryptor.reader(junk).read_to_end(&mut out).is_err() || junk == object.stored
        );
        return;
    }
    if let Some((0xfe, rest)) = input.split_first() {
        forged_layout(object, rest);
        return;
    }
    let stored = edit(&object.stored, input);
    let unchanged = stored == object.stored;

    let mut out = Vec::new();
    let result = object.decryptor.reader(&stored[..]).read_to_end(&mut out);
    assert_eq!(result.is_ok(), unchanged, "whole read");
    if unchanged {
        assert_eq!(out, object.plaintext);
    }

    // The same bytes through the writer, split where the input says.
    let split = input.len() % (stored.len() + 1);
    let mut writer = object.decryptor.writer(Vec::new());
    let written = writer
        .write_all(&stored[..split])
        .and_then(|()| writer.write_all(&stored[split..]))
        .and_then(|()| writer.finish());
    match written {
        Ok(plaintext) => assert!(unchanged && plaintext == object.plaintext, "writer"),
        Err(_) => assert!(!unchanged, "writer refused the original"),
    }

    // A range chosen by the input: only the fetched bytes matter.
    let size = object.plaintext.len() as u64;
    let a = u64::from(input.first().copied().unwrap_or(0)) % (size + 1);
    let b = u64::from(input.last().copied().unwrap_or(0)) % (size + 1);
    let plan = object.layout.plan_range(a.min(b)..a.max(b)).unwrap();
    let fetch = |bytes: &[u8]| -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for r in plan.fetch_ranges() {
            out.extend_from_slice(bytes.get(r.start as usize..r.end as usize)?);
        }
        Some(out)
    };
    let expected = fetch(&object.stored).unwrap();
    let fetched = fetch(&stored).unwrap_or_else(|| stored.clone());
    let mut out = Vec::new();
    let result = object
        .decryptor
        .range_reader(&plan, &fetched[..])
        .unwrap()
        .read_to_end(&mut out);
    assert_eq!(result.is_ok(), fetched == expected, "range read");
    if fetched == expected {
        assert_eq!(out, object.plaintext[a.min(b) as usize..a.max(b) as usize]);
    }
});
