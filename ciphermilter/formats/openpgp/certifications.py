"""Which user IDs of a key its own primary key certified (RFC 9580 sections 5.2.1 and 5.2.4), checked at import.

Anyone can append a user ID packet to a key on a keyserver (keyserver
pollution); only the key's own certification says its owner claims the
address. This checks the cryptographic binding of v4 and v6 certifications
with the key model's ``cryptography`` public keys -- RSA, DSA, ECDSA on every
curve :mod:`.keymaterial` reads (brainpool too, which pgpy could not verify),
EdDSA legacy, Ed25519 and Ed448 -- over the packets as received. Expiry and
revocation are the key's, judged when its signatures are verified.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa, utils

from ciphermilter.formats.openpgp import algorithms as alg
from ciphermilter.formats.openpgp.keys import (CERTIFICATIONS, TAG_SIGNATURE, TAG_USER_ID, KeyPart, OpenPGPKey)

_V6_SIGNATURE_SIZES = {alg.ED25519: 64, alg.ED448: 114}


@dataclass
class _Signature:
    version: int
    type: int
    algorithm: int
    hash: int
    hashed: bytes  # the signature's own hashed part: version to the end of the hashed subpackets
    salt: bytes
    fields: list[bytes]  # MPIs (RSA: one, DSA/ECDSA/EdDSA legacy: r and s) or the native signature


def _mpis(data: bytes, pos: int, count: int) -> list[bytes] | None:
    found = []
    for _ in range(count):
        if pos + 2 > len(data):
            return None
        end = pos + 2 + (int.from_bytes(data[pos:pos + 2], "big") + 7) // 8
        if end > len(data):
            return None
        found.append(data[pos + 2:end])
        pos = end
    return found


def _read_signature(body: bytes) -> _Signature | None:
    """A v4 or v6 signature packet's parts; None for another version or a malformed packet."""
    if len(body) < 6 or body[0] not in (4, 6):
        return None
    width = 2 if body[0] == 4 else 4
    hashed_end = 4 + width + int.from_bytes(body[4:4 + width], "big")
    if hashed_end + width > len(body):
        return None
    pos = hashed_end + width + int.from_bytes(body[hashed_end:hashed_end + width], "big") + 2  # past left 16 bits
    salt = b""
    if body[0] == 6:
        if pos >= len(body):
            return None
        salt, pos = body[pos + 1:pos + 1 + body[pos]], pos + 1 + body[pos]
    algorithm = body[2]
    if algorithm in _V6_SIGNATURE_SIZES:
        fields: list[bytes] | None = [body[pos:]] if len(body) - pos == _V6_SIGNATURE_SIZES[algorithm] else None
    else:
        fields = _mpis(body, pos, 1 if algorithm in (alg.RSA, alg.RSA_SIGN_ONLY) else 2)
    if fields is None:
        return None
    return _Signature(body[0], body[1], algorithm, body[3], body[:hashed_end], salt, fields)


def _hashed_data(key: KeyPart, user_id: bytes, signature: _Signature) -> bytes:
    """What a certification of ``user_id`` hashes (RFC 9580 section 5.2.4), salt first for v6."""
    body = key.public_body
    prefix = (b"\x9b" + len(body).to_bytes(4, "big") if key.version == 6 else b"\x99" + len(body).to_bytes(2, "big"))
    trailer = bytes([signature.version, 0xFF]) + len(signature.hashed).to_bytes(4, "big")
    return (signature.salt + prefix + body + b"\xb4" + len(user_id).to_bytes(4, "big") + user_id
            + signature.hashed + trailer)


def _verify(key: KeyPart, signature: _Signature, data: bytes) -> bool:
    """The signature's cryptographic check over ``data`` with the primary key's public key."""
    public, hash_class = key.public_key, alg.HASHES.get(signature.hash)
    if public is None or hash_class is None or signature.algorithm != key.algorithm:
        return False
    digest_context = hashes.Hash(hash_class())
    digest_context.update(data)
    digest = digest_context.finalize()
    prehashed = utils.Prehashed(hash_class())
    fields = signature.fields
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(fields[0].rjust((public.key_size + 7) // 8, b"\0"), digest, padding.PKCS1v15(), prehashed)
        elif isinstance(public, (dsa.DSAPublicKey, ec.EllipticCurvePublicKey)):
            der = utils.encode_dss_signature(int.from_bytes(fields[0], "big"), int.from_bytes(fields[1], "big"))
            if isinstance(public, dsa.DSAPublicKey):
                public.verify(der, digest, prehashed)
            else:
                public.verify(der, digest, ec.ECDSA(prehashed))
        elif isinstance(public, ed25519.Ed25519PublicKey):  # EdDSA signs the digest (RFC 9580 section 5.2.4)
            native = fields[0] if len(fields) == 1 else fields[0].rjust(32, b"\0") + fields[1].rjust(32, b"\0")
            public.verify(native, digest)
        elif isinstance(public, ed448.Ed448PublicKey):
            public.verify(fields[0], digest)
        else:
            return False
    except (InvalidSignature, ValueError, UnsupportedAlgorithm, IndexError):
        return False
    return True


def certified_user_ids(key: OpenPGPKey) -> set[bytes]:
    """The user ID packet bodies that a certification by the primary key verifies over."""
    certified: set[bytes] = set()
    user_id: bytes | None = None
    for tag, body in key.packets[1:]:
        if tag != TAG_SIGNATURE:
            user_id = body if tag == TAG_USER_ID else None
            continue
        if user_id is None or user_id in certified:
            continue
        signature = _read_signature(body)
        if (signature is not None and signature.type in CERTIFICATIONS and signature.version == key.version
                and _verify(key.primary, signature, _hashed_data(key.primary, user_id, signature))):
            certified.add(user_id)
    return certified


def user_id_packets(key: OpenPGPKey) -> list[bytes]:
    return [body for tag, body in key.packets if tag == TAG_USER_ID]
