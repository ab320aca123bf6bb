"""Signatures we make ourselves with ``cryptography`` (Ed25519), for the cases no tool writes on request: an
unknown critical subpacket, a creation time in the future, a v3 signature, issuers only in the unhashed area.
And the vectors of tests/vectors/openpgp-signatures."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from ciphermilter.formats.openpgp.armor import dearmor
from ciphermilter.formats.openpgp.keyring import Keyring
from ciphermilter.formats.openpgp.keys import parse_key
from ciphermilter.formats.openpgp.packets import signature_packets
from ciphermilter.formats.openpgp.signer_keys import SignerKey

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "openpgp-signatures"
PART = (VECTORS / "part.mime").read_bytes()  # the signed part of a PGP/MIME message
PLAIN = (VECTORS / "plain.txt").read_bytes()  # the text of the inline, cleartext and text-mode signatures


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def signature_body(name: str) -> bytes:
    """The one signature packet body of an armored detached signature vector."""
    (body,) = signature_packets(dearmor(vector(name)).data)
    return body


def key_ids(name: str) -> set[str]:
    """The key IDs of a vector key's primary key and subkeys."""
    return set(parse_key(dearmor(vector(f"{name}.pub.asc")).data).key_ids)


def subpacket(kind: int, content: bytes, critical: bool = False) -> bytes:
    return bytes([len(content) + 1, kind | (0x80 if critical else 0)]) + content


def created(when: float | None = None) -> bytes:
    return subpacket(2, int(time.time() if when is None else when).to_bytes(4, "big"))


HASHLIB = {8: "sha256", 10: "sha512", 12: "sha3_256", 14: "sha3_512"}


def sign_v6(private: ed25519.Ed25519PrivateKey, data: bytes, hashed: bytes, unhashed: bytes = b"",
            signature_type: int = 0, salt: bytes | None = None, hash_algorithm: int = 8) -> bytes:
    """A v6 Ed25519 (algorithm 27) signature packet body over ``data`` (SHA-256 unless told)."""
    salt = os.urandom(16 if hash_algorithm in (8, 12) else 32) if salt is None else salt
    head = bytes([6, signature_type, 27, hash_algorithm]) + len(hashed).to_bytes(4, "big") + hashed
    hasher = hashlib.new(HASHLIB[hash_algorithm], salt + data + head + b"\x06\xff" + len(head).to_bytes(4, "big"))
    digest = hasher.digest()
    return (head + len(unhashed).to_bytes(4, "big") + unhashed + digest[:2] + bytes([len(salt)]) + salt
            + private.sign(digest))


def sign_v4(private: ed25519.Ed25519PrivateKey, data: bytes, hashed: bytes, unhashed: bytes = b"",
            hash_algorithm: int = 8) -> bytes:
    """A v4 Ed25519 (algorithm 27, RFC 9580 allows it in v4) binary signature packet body (SHA-256 unless told)."""
    head = bytes([4, 0, 27, hash_algorithm]) + len(hashed).to_bytes(2, "big") + hashed
    digest = hashlib.new(HASHLIB[hash_algorithm], data + head + b"\x04\xff" + len(head).to_bytes(4, "big")).digest()
    return head + len(unhashed).to_bytes(2, "big") + unhashed + digest[:2] + private.sign(digest)


def sign_v3(private: ed25519.Ed25519PrivateKey, data: bytes, keyid: bytes, when: int) -> bytes:
    """A v3 signature (RFC 9580 section 5.2.2) by an Ed25519 key (algorithm 27)."""
    hashed = bytes([0]) + when.to_bytes(4, "big")
    digest = hashlib.sha256(data + hashed).digest()
    return bytes([3, 5]) + hashed + keyid + bytes([27, 8]) + digest[:2] + private.sign(digest)


def made_key(private: ed25519.Ed25519PrivateKey, keyid: str, version: int = 6, email: str = "",
             flags: int | None = None) -> SignerKey:
    """A :class:`SignerKey` for our own key, with a made-up fingerprint that starts (v6) with ``keyid``."""
    fingerprint = bytes.fromhex(keyid) + bytes(24) if version == 6 else bytes(12) + bytes.fromhex(keyid)
    return SignerKey(keyid, fingerprint, version, 27, 0, None, private.public_key(), [email] if email else [], flags)


class WithKeys(Keyring):
    """A keyring over a store that also knows signer keys of our own making (no key packets, no user IDs)."""

    def __init__(self, source, extra: list[SignerKey]):
        super().__init__(source)
        self.extra = extra

    def signer_keys(self, keyid: str) -> list[SignerKey]:
        return [key for key in self.extra if key.keyid == keyid] + super().signer_keys(keyid)
