#!/usr/bin/env python3
"""Recomputes the OSE1 object-stream test vectors of docs/format.md
("Object stream format") from the specification alone, with Python's
`cryptography` package, which shares no code with kms-client. Exits
non-zero on a mismatch.

    python3 -m venv venv && venv/bin/pip install cryptography
    venv/bin/python tests/vectors/ose1.py
"""

import hashlib
import hmac
import struct
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

DEK = bytes(range(0x00, 0x20))
BINDING = b"photos/cat.jpg"
CHUNK_LOG2 = 6

EXPECTED = {
    "single stream": (
        "4f5345310101060000000000202122232425262728292a2b2c2d2e2f"
        "303132333435363738393a3b3c3d3e3f"
        "4730168b39414eaebb8f77f44c2f0ad137050aa360e7a177353f97c02357ee98"
        "1163cdd1edbeadf155c5ba1edf760061f69845ed1d6100eefa864b205ae5710f"
        "080d0403c4335c85137a0b8a4234d73f5f076a17712fdf493c85657d8ac8f98a"
        "ff5931d0f397b389cfae2f1118d2c4f7e22b39edd9faa123595932d9aa4a6a83"
        "f54362cde624e5721d956e09df0434fef548e640fb4798191dc4869bc04aa714"
        "d6cfa4d9"
    ),
    "single layout tag": "11d1afbfb7dab66d320128c02523692d7bb43afe7535103cce72b41e1b9fea07",
    "part 1 stream": (
        "4f5345310101060000000001404142434445464748494a4b4c4d4e4f"
        "505152535455565758595a5b5c5d5e5f"
        "3e19b931914e3b6906207bdd835c025d475e4174a4d5b378391b66e9327b6a3e"
        "f87346be183c4c87d110dc853361a27fb13067d4e70a329bfaa77484e041f323"
        "77854fb9283f409568af2e3c911b3473673290ab43135a0330a581600571d2ab"
        "4ea438ac97f49ad22f2d8e3a581842f4c00d92a476a01bf222967a801edebf71"
    ),
    "part 3 stream": (
        "4f5345310101060000000003606162636465666768696a6b6c6d6e6f"
        "707172737475767778797a7b7c7d7e7f"
        "ccd597c47cecc041f245cc96b562ac22d4d840ce6d516a860e59291b11fbeddf"
        "092f781812c4ed7642f2fe5d39e64e7c3c3c3efd"
    ),
    "multipart layout tag": "d71921e67c1108e95df91bad8eac0c39d5277e71cc63efbb82bf11e809392adf",
}


def hkdf_sha256(salt: bytes, ikm: bytes, info: bytes) -> bytes:
    """RFC 5869 with L = 32: one block of expansion."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def binding_field() -> bytes:
    return struct.pack(">I", len(BINDING)) + BINDING


def stream(part: int, salt: bytes, plaintext: bytes) -> bytes:
    body = b"OSE1" + bytes([1, 1, CHUNK_LOG2, 0]) + struct.pack(">I", part) + salt
    mac_key = hkdf_sha256(salt, DEK, b"OSE1/header-mac\x00" + body + binding_field())
    chunk_key = hkdf_sha256(salt, DEK, b"OSE1/chunk-key\x00" + body + binding_field())
    header_tag = hmac.new(mac_key, body, hashlib.sha256).digest()
    size = 1 << CHUNK_LOG2
    out = body + header_tag
    # floor(len / size) + 1 chunks; the last is shorter than `size`.
    count = len(plaintext) // size + 1
    for index in range(count):
        last = index == count - 1
        nonce = b"\x00" * 4 + struct.pack(">Q", index)
        aad = header_tag + struct.pack(">QB", index, int(last))
        piece = plaintext[index * size : (index + 1) * size]
        out += AESGCM(chunk_key).encrypt(nonce, piece, aad)
    return out


def part_id(stored: bytes) -> bytes:
    return stored[44:60]


def layout_tag(parts) -> bytes:
    key = hkdf_sha256(b"OSE1/layout", DEK, b"OSE1/layout-mac\x00" + binding_field())
    message = b"OSE1" + bytes([1, CHUNK_LOG2]) + struct.pack(">I", len(parts))
    for number, size, pid in parts:
        message += struct.pack(">IQ", number, size) + pid
    return hmac.new(key, message, hashlib.sha256).digest()


def main() -> int:
    single_plain = bytes(range(100))
    single = stream(0, bytes(range(0x20, 0x40)), single_plain)
    one = stream(1, bytes(range(0x40, 0x60)), b"\xaa" * 64)
    three = stream(3, bytes(range(0x60, 0x80)), b"meow")
    got = {
        "single stream": single.hex(),
        "single layout tag": layout_tag([(0, 100, part_id(single))]).hex(),
        "part 1 stream": one.hex(),
        "part 3 stream": three.hex(),
        "multipart layout tag": layout_tag([(1, 64, part_id(one)), (3, 4, part_id(three))]).hex(),
    }
    failed = False
    for name, expected in EXPECTED.items():
        if got[name] != expected:
            print(f"OSE1 vector '{name}' MISMATCH:\n  got      {got[name]}\n  expected {expected}")
            failed = True
    if failed:
        return 1
    print("OSE1 vectors OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
