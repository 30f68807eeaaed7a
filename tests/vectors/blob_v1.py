#!/usr/bin/env python3
"""Recomputes the sealed-blob v1 test vector of docs/format.md with Python's
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


def canonical_context(context: dict) -> bytes:
    out = len(context).to_bytes(4, "big")
    for key in sorted(context, key=lambda k: k.encode()):
        for part in (key, context[key]):
            raw = part.encode()
            out += len(raw).to_bytes(4, "big") + raw
    return out


def main() -> int:
    material = bytes(range(0x00, 0x20))
    seed = bytes(range(0x20, 0x40))
    plaintext = bytes(range(0x40, 0x60))
    key_id = b"default"
    header = b"km\x01\x01" + bytes([len(key_id)]) + key_id + (1).to_bytes(4, "big")
    aad = header[:-4] + canonical_context({"bucket": "photos", "object": "cat.jpg"})
    prk = hmac.new(b"kmsd/v1/local-blob", material, hashlib.sha256).digest()
    key = hmac.new(prk, seed + b"\x01", hashlib.sha256).digest()  # HKDF-Expand, L = 32
    blob = header + seed + AESGCM(key).encrypt(b"\x00" * 12, plaintext, aad)
    if blob.hex() != EXPECTED:
        print(f"blob v1 vector MISMATCH:\n  got      {blob.hex()}\n  expected {EXPECTED}")
        return 1
    print("blob v1 vector OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
