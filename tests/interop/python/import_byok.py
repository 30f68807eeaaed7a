#!/usr/bin/env python3
"""The caller's side of kmsd's key import, with Python's `cryptography`
package, which shares no code with kmsd (tests/tests/conformance/import.rs).

    import_byok.py wrap PUBLIC_KEY_PEM_FILE MATERIAL_HEX
        prints base64(RSAES-OAEP-SHA-256(material)) under the PEM public key
        of GetParametersForImport (MGF1-SHA-256, no label).

    import_byok.py open MATERIAL_HEX BLOB_BASE64 CONTEXT_JSON
        opens a version-1 sealed blob v1 (docs/format.md) made under the
        imported material, independently of kmsd: a local blob (HKDF-SHA256
        of the material, AES-256-GCM), or a Vault blob, whose payload is a
        Transit ciphertext `vault:v1:base64(nonce || ciphertext || tag)`
        made with the material itself as the AES-256-GCM key; prints the
        plaintext as hex.
"""

import base64
import hashlib
import hmac
import json
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def wrap(pem_file: str, material_hex: str) -> str:
    with open(pem_file, "rb") as f:
        public = serialization.load_pem_public_key(f.read())
    wrapped = public.encrypt(
        bytes.fromhex(material_hex),
        padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    )
    return base64.b64encode(wrapped).decode()


def canonical_context(context: dict) -> bytes:
    out = len(context).to_bytes(4, "big")
    for key in sorted(context, key=lambda k: k.encode()):
        for part in (key, context[key]):
            raw = part.encode()
            out += len(raw).to_bytes(4, "big") + raw
    return out


def open_blob(material_hex: str, blob_b64: str, context_json: str) -> str:
    material = bytes.fromhex(material_hex)
    blob = base64.b64decode(blob_b64)
    assert blob[:3] == b"km\x01", "not a sealed blob v1"
    backend, n = blob[3], blob[4]
    header_end = 5 + n + 4
    version = int.from_bytes(blob[5 + n : header_end], "big")
    assert version == 1, f"version {version}: only version 1 holds the imported material"
    aad = blob[: 5 + n] + canonical_context(json.loads(context_json))
    payload = blob[header_end:]
    if backend == 0x01:
        seed, sealed = payload[:32], payload[32:]
        prk = hmac.new(b"kmsd/v1/local-blob", material, hashlib.sha256).digest()
        key = hmac.new(prk, seed + b"\x01", hashlib.sha256).digest()
        plaintext = AESGCM(key).decrypt(b"\x00" * 12, sealed, aad)
    elif backend == 0x02:
        text = payload.decode()
        assert text.startswith("vault:v1:"), "not a plain Transit ciphertext of version 1"
        raw = base64.b64decode(text[len("vault:v1:") :])
        plaintext = AESGCM(material).decrypt(raw[:12], raw[12:], aad)
    else:
        raise SystemExit(f"unknown backend {backend}")
    return plaintext.hex()


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "wrap":
        print(wrap(sys.argv[2], sys.argv[3]))
    elif len(sys.argv) == 5 and sys.argv[1] == "open":
        print(open_blob(sys.argv[2], sys.argv[3], sys.argv[4]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
