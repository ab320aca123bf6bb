"""AEAD packets sealed here, for what no tool writes: many chunks, chunk sizes past the limit, other versions.

A second, independent writer of both formats (RFC 9580 section 5.13.2, LibrePGP's tag 20) over
cryptography's OCB and GCM; the engine reading what it writes, and the RFC's own sample packets,
check the two against each other.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESOCB3
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

OCB, GCM = 2, 3
AES_256 = 9
_SEALERS = {OCB: (AESOCB3, 15), GCM: (AESGCM, 12)}


def _sealed(sealer, nonce_of, header: bytes, ad_of, plain: bytes, chunk_size: int) -> bytes:
    chunks = [plain[i:i + chunk_size] for i in range(0, len(plain), chunk_size)]
    out = b"".join(sealer.encrypt(nonce_of(i), chunk, ad_of(i)) for i, chunk in enumerate(chunks))
    total = len(plain).to_bytes(8, "big")
    return out + sealer.encrypt(nonce_of(len(chunks)), b"", ad_of(len(chunks)) + total)


def seipd_v2(plain: bytes, session_key: bytes, *, mode: int = OCB, chunk_octet: int = 0,
             cipher: int = AES_256, version: int = 2) -> bytes:
    """A SEIPDv2 body: header, salt, the chunks and the final tag."""
    sealer_class, nonce_length = _SEALERS[mode]
    salt = os.urandom(32)
    header = bytes([0xD2, version, cipher, mode, chunk_octet])
    derived = HKDF(hashes.SHA256(), len(session_key) + nonce_length - 8, salt, header).derive(session_key)
    key, iv = derived[:len(session_key)], derived[len(session_key):]
    body = _sealed(sealer_class(key), lambda i: iv + i.to_bytes(8, "big"), header, lambda i: header, plain,
                   1 << (chunk_octet + 6))
    return header[1:] + salt + body


def librepgp(plain: bytes, session_key: bytes, *, chunk_octet: int = 0, cipher: int = AES_256) -> bytes:
    """A LibrePGP AEAD packet body (tag 20, version 1, OCB): header, IV, the chunks and the final tag."""
    iv = os.urandom(15)
    header = bytes([0xD4, 1, cipher, OCB, chunk_octet])

    def nonce(index: int) -> bytes:
        return iv[:-8] + (int.from_bytes(iv[-8:], "big") ^ index).to_bytes(8, "big")

    body = _sealed(AESOCB3(session_key), nonce, header, lambda i: header + i.to_bytes(8, "big"), plain,
                   1 << (chunk_octet + 6))
    return header[1:] + iv + body
