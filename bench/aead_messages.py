"""OpenPGP AEAD messages sealed here: the bench's SEIPDv2 and LibrePGP rows, and the tests' attack packets.

A second, independent writer of both formats (RFC 9580 section 5.13.2, LibrePGP's tag 20) over
cryptography's OCB and GCM; the engine reading what it writes, and the RFC's own sample packets,
check the two against each other (tests/test_openpgp_aead.py). No tool here writes either format to a
key of the corpus at any size: gpg 2.2 writes neither, and rnp and Sequoia are no dependency of the
bench. The session key goes to an RSA key in a PKESK as GnuPG 2.4 (v3 PKESK, then the tag 20 packet)
and Sequoia 2 (v6 PKESK without the algorithm octet, then SEIPDv2) send it.
"""

from __future__ import annotations

import os
import warnings
import zlib
from pathlib import Path

import pgpy
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESOCB3
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

OCB, GCM = 2, 3
AES_256 = 9
_SEALERS = {OCB: (AESOCB3, 15), GCM: (AESGCM, 12)}
TAG_PKESK, TAG_COMPRESSED, TAG_LITERAL, TAG_SEIPD, TAG_LIBREPGP = 1, 8, 11, 18, 20
ZLIB = 2


def _sealed(sealer, nonce_of, ad_of, plain: bytes, chunk_size: int) -> bytes:
    chunks = [plain[i:i + chunk_size] for i in range(0, len(plain), chunk_size)]
    out = b"".join(sealer.encrypt(nonce_of(i), chunk, ad_of(i)) for i, chunk in enumerate(chunks))
    total = len(plain).to_bytes(8, "big")
    return out + sealer.encrypt(nonce_of(len(chunks)), b"", ad_of(len(chunks)) + total)


def seipd_v2(plain: bytes, session_key: bytes, *, mode: int = OCB, chunk_octet: int = 0,
             cipher: int = AES_256) -> bytes:
    """A SEIPDv2 body: header, salt, the chunks and the final tag."""
    sealer_class, nonce_length = _SEALERS[mode]
    salt = os.urandom(32)
    header = bytes([0xC0 | TAG_SEIPD, 2, cipher, mode, chunk_octet])
    derived = HKDF(hashes.SHA256(), len(session_key) + nonce_length - 8, salt, header).derive(session_key)
    key, iv = derived[:len(session_key)], derived[len(session_key):]
    body = _sealed(sealer_class(key), lambda i: iv + i.to_bytes(8, "big"), lambda i: header, plain,
                   1 << (chunk_octet + 6))
    return header[1:] + salt + body


def librepgp(plain: bytes, session_key: bytes, *, chunk_octet: int = 0, cipher: int = AES_256) -> bytes:
    """A LibrePGP AEAD packet body (tag 20, version 1, OCB): header, IV, the chunks and the final tag."""
    iv = os.urandom(15)
    header = bytes([0xC0 | TAG_LIBREPGP, 1, cipher, OCB, chunk_octet])

    def nonce(index: int) -> bytes:
        return iv[:-8] + (int.from_bytes(iv[-8:], "big") ^ index).to_bytes(8, "big")

    body = _sealed(AESOCB3(session_key), nonce, lambda i: header + i.to_bytes(8, "big"), plain,
                   1 << (chunk_octet + 6))
    return header[1:] + iv + body


def frame(tag: int, body: bytes) -> bytes:
    """A new-format packet with a five-octet length."""
    return bytes([0xC0 | tag, 0xFF]) + len(body).to_bytes(4, "big") + body


def _mpi(value: int) -> bytes:
    return value.bit_length().to_bytes(2, "big") + value.to_bytes((value.bit_length() + 7) // 8, "big")


def rsa_recipient(key_file: Path) -> tuple[rsa.RSAPublicKey, bytes]:
    """The RSA encryption subkey of an armored OpenPGP key file: (public key, v4 fingerprint)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key, _ = pgpy.PGPKey.from_file(str(key_file))
    subkey = next(iter(key.subkeys.values()))
    material = subkey._key.keymaterial
    public = rsa.RSAPublicNumbers(int(material.e), int(material.n)).public_key()
    return public, bytes.fromhex(str(subkey.fingerprint).replace(" ", ""))


def _pkesk(recipient: tuple[rsa.RSAPublicKey, bytes], version: int, session_key: bytes) -> bytes:
    public, fingerprint = recipient
    checksum = (sum(session_key) & 0xFFFF).to_bytes(2, "big")
    named = bytes([AES_256]) if version == 3 else b""  # RFC 9580 section 5.1.3: v6 names no cipher
    wrapped = public.encrypt(named + session_key + checksum, padding.PKCS1v15())
    field = bytes([3]) + fingerprint[-8:] if version == 3 else bytes([6, 21, 4]) + fingerprint
    return frame(TAG_PKESK, field + bytes([1]) + _mpi(int.from_bytes(wrapped, "big")))


def message(data: bytes, recipient: tuple[rsa.RSAPublicKey, bytes], packet_format: str) -> bytes:
    """``data`` as a literal packet, encrypted to ``recipient``: ``"SEIPDv2"`` (OCB) or ``"LibrePGP"`` (OCB).

    As the senders write them: Sequoia 2 uncompressed with chunk size octet 6 (4 KiB chunks), GnuPG 2.4
    ZLIB-compressed (the first compression of a gpg-made key's preferences) with chunk size octet 16 (4 MiB).
    """
    session_key = os.urandom(32)
    plain = frame(TAG_LITERAL, b"b\x00\x00\x00\x00\x00" + data)
    if packet_format == "SEIPDv2":
        return _pkesk(recipient, 6, session_key) + frame(TAG_SEIPD, seipd_v2(plain, session_key, chunk_octet=6))
    compressed = frame(TAG_COMPRESSED, bytes([ZLIB]) + zlib.compress(plain))
    return _pkesk(recipient, 3, session_key) + frame(TAG_LIBREPGP, librepgp(compressed, session_key, chunk_octet=16))
