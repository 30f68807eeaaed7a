//! The test vectors of docs/format.md ("Object stream format"), which
//! tests/vectors/ose1.py recomputes from the specification with Python's
//! `cryptography` package, sharing no code with this crate.

use super::*;

const FORMAT_MD: &str = include_str!("../../../../docs/format.md");

const SINGLE_STREAM: &[&str] = &[
    "4f5345310101060000000000202122232425262728292a2b2c2d2e2f",
    "303132333435363738393a3b3c3d3e3f",
    "4730168b39414eaebb8f77f44c2f0ad137050aa360e7a177353f97c02357ee98",
    "1163cdd1edbeadf155c5ba1edf760061f69845ed1d6100eefa864b205ae5710f",
    "080d0403c4335c85137a0b8a4234d73f5f076a17712fdf493c85657d8ac8f98a",
    "ff5931d0f397b389cfae2f1118d2c4f7e22b39edd9faa123595932d9aa4a6a83",
    "f54362cde624e5721d956e09df0434fef548e640fb4798191dc4869bc04aa714",
    "d6cfa4d9",
];
const SINGLE_LAYOUT_TAG: &[&str] =
    &["11d1afbfb7dab66d320128c02523692d7bb43afe7535103cce72b41e1b9fea07"];
const PART_1_STREAM: &[&str] = &[
    "4f5345310101060000000001404142434445464748494a4b4c4d4e4f",
    "505152535455565758595a5b5c5d5e5f",
    "3e19b931914e3b6906207bdd835c025d475e4174a4d5b378391b66e9327b6a3e",
    "f87346be183c4c87d110dc853361a27fb13067d4e70a329bfaa77484e041f323",
    "77854fb9283f409568af2e3c911b3473673290ab43135a0330a581600571d2ab",
    "4ea438ac97f49ad22f2d8e3a581842f4c00d92a476a01bf222967a801edebf71",
];
const PART_3_STREAM: &[&str] = &[
    "4f5345310101060000000003606162636465666768696a6b6c6d6e6f",
    "707172737475767778797a7b7c7d7e7f",
    "ccd597c47cecc041f245cc96b562ac22d4d840ce6d516a860e59291b11fbeddf",
    "092f781812c4ed7642f2fe5d39e64e7c3c3c3efd",
];
const MULTIPART_LAYOUT_TAG: &[&str] =
    &["d71921e67c1108e95df91bad8eac0c39d5277e71cc63efbb82bf11e809392adf"];

/// Encrypts with a fixed salt: only a test may, since reusing a salt with
/// the same key and binding would reuse nonces.
fn fixed(part: PartNumber, salt_start: u8, plaintext: &[u8]) -> (Vec<u8>, PartInfo) {
    let salt: [u8; 32] = std::array::from_fn(|i| salt_start + i as u8);
    let encryptor = Encryptor::with_salt(&vector_key(), BINDING, part, chunk(6), &salt).unwrap();
    let mut writer = encryptor.writer(Vec::new());
    writer.write_all(plaintext).unwrap();
    writer.finish().unwrap()
}

/// Bytes 0x00 to 0x1f.
fn vector_key() -> DataKey {
    DataKey::from_bytes(std::array::from_fn(|i| i as u8))
}

/// Checks `hex` against the expected lines, and that docs/format.md shows
/// every line.
fn check(hex: String, expected: &[&str]) {
    assert_eq!(hex, expected.concat());
    for line in expected {
        assert!(FORMAT_MD.contains(line), "docs/format.md lacks {line}");
    }
}

#[test]
fn single_part_vector() {
    let plaintext: Vec<u8> = (0..100).collect();
    let (stored, info) = fixed(PartNumber::SINGLE, 0x20, &plaintext);
    let layout = Layout::seal(&vector_key(), BINDING, [info]).unwrap();
    check(hex::encode(&stored), SINGLE_STREAM);
    check(hex::encode(layout.tag()), SINGLE_LAYOUT_TAG);
    let decryptor = Decryptor::new(&vector_key(), BINDING, &layout).unwrap();
    let mut out = Vec::new();
    decryptor.reader(&stored[..]).read_to_end(&mut out).unwrap();
    assert_eq!(out, plaintext);
}

#[test]
fn multipart_vector() {
    let (one, info_one) = fixed(PartNumber::multipart(1).unwrap(), 0x40, &[0xaa; 64]);
    let (three, info_three) = fixed(PartNumber::multipart(3).unwrap(), 0x60, b"meow");
    let layout = Layout::seal(&vector_key(), BINDING, [info_three, info_one]).unwrap();
    check(hex::encode(&one), PART_1_STREAM);
    check(hex::encode(&three), PART_3_STREAM);
    check(hex::encode(layout.tag()), MULTIPART_LAYOUT_TAG);
    let metadata = crate::metadata::ObjectMetadata {
        sealed_key: b"blob".to_vec(),
        key_id: "default".into(),
        layout,
    };
    let parts = &metadata.to_map()[crate::metadata::keys::PARTS];
    assert!(
        FORMAT_MD.contains(parts.as_str()),
        "docs/format.md lacks {parts}"
    );
}
