#!/usr/bin/env python3
"""Recomputes the sealed-blob v1 test vectors of docs/format.md (local, and
Vault under an intermediate key) with Python's
`cryptography` package, which shares no code with kmsd. Exits non-zero on a
mismatch."""

import hashlib
import hmac
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

EXPECTED = (
    "6b6d01010764656661756c7400000001"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "41cd64c0ad3ae63835157e992bd324a87346a012f0db3f05d8d961c66fd24125"
    "9b2d1d7d5140b33a7000ace7b86a0693"
)

EXPECTED_INTERMEDIATE = (
    "6b6d01020764656661756c74000000010100517661756c743a76313a41414141"
    "4141414141414141414141414141414141414141414141414141414141414141"
    "4141414141414141414141414141414141414141414141414141414141414141"
    "41414141202122232425262728292a2b2c2d2e2f303132333435363738393a3b"
    "3c3d3e3f93887ac8d6830712afdcf88a828cb1f442357f15b2d79070383dbb2e"
    "31489f5633440289fa8b67289eec02a225cafa88"
)
WRAPPED = b"vault:v1:" + b"A" * 72


def canonical_context(context: dict) -> bytes:
    out = len(context).to_bytes(4, "big")
    for key in sorted(context, key=lambda k: k.encode()):
        for part in (key, context[key]):
            raw = part.encode()
            out += len(raw).to_bytes(4, "big") + raw
    return out


def seal(backend: int, domain: bytes, payload_prefix: bytes) -> bytes:
    material = bytes(range(0x00, 0x20))
    seed = bytes(range(0x20, 0x40))
    plaintext = bytes(range(0x40, 0x60))
    key_id = b"default"
    header = b"km\x01" + bytes([backend, len(key_id)]) + key_id + (1).to_bytes(4, "big")
    aad = header[:-4] + canonical_context({"bucket": "photos", "object": "cat.jpg"})
    prk = hmac.new(domain, material, hashlib.sha256).digest()  # HKDF-Extract
    key = hmac.new(prk, seed + b"\x01", hashlib.sha256).digest()  # HKDF-Expand, L = 32
    return header + payload_prefix + seed + AESGCM(key).encrypt(b"\x00" * 12, plaintext, aad)


def main() -> int:
    failed = 0
    local = seal(0x01, b"kmsd/v1/local-blob", b"")
    intermediate = seal(
        0x02,
        b"kmsd/v1/vault-intermediate-wrap",
        b"\x01" + len(WRAPPED).to_bytes(2, "big") + WRAPPED,
    )
    for name, got, expected in [
        ("local", local, EXPECTED),
        ("vault intermediate-key", intermediate, EXPECTED_INTERMEDIATE),
    ]:
        if got.hex() != expected:
            print(f"blob v1 {name} vector MISMATCH:\n  got      {got.hex()}\n  expected {expected}")
            failed = 1
        else:
            print(f"blob v1 {name} vector OK")
    return failed


if __name__ == "__main__":
    sys.exit(main())
