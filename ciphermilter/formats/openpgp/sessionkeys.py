"""Session keys: one PKESK (version 3 or 6) opened with one secret subkey (RFC 9580 sections 5.1.3 to 5.1.7).

RSA, ElGamal, ECDH (RFC 6637 KDF on NIST, brainpool and Curve25519 legacy
keys) and the native X25519 and X448 (HKDF over ephemeral || recipient ||
shared secret, then AES key unwrap). Every failure of one key -- bad padding,
a point off the curve, a library error -- is "not this key" (None), never an
exception for the message: the caller goes on with the next key (issue 16:
one brainpool key made every hidden-recipient message fail with TypeError).
"""

from __future__ import annotations

import logging

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, x448, x25519
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

from ciphermilter.formats.openpgp.algorithms import CIPHERS
from ciphermilter.formats.openpgp.keyring import SecretSubkey, algorithm_family
from ciphermilter.formats.openpgp.packets import X448_ALGORITHM, X25519_ALGORITHM, EncryptedSessionKey, OpenPGPError

log = logging.getLogger(__name__)

# A PKESKv6 carries no symmetric algorithm: the SEIPDv2 packet names it. Its session keys have this "algorithm".
NAMED_BY_DATA = 0
SessionKey = tuple[int, bytes]  # (symmetric algorithm or NAMED_BY_DATA, key)
# RFC 9580 sections 5.1.6 and 5.1.7: (HKDF hash, info, key-wrap key length)
_NATIVE_KDF = {X25519_ALGORITHM: (hashes.SHA256, b"OpenPGP X25519", 16),
               X448_ALGORITHM: (hashes.SHA512, b"OpenPGP X448", 32)}
_SESSION_KEY_SIZES = (16, 24, 32)


def _eme_pkcs1_decode(block: bytes) -> bytes | None:
    """EME-PKCS1-v1_5 decoding (RFC 8017 section 7.2.2) for ElGamal, where no library does it for us."""
    if len(block) < 11 or block[0] != 0 or block[1] != 2:
        return None
    separator = block.find(b"\x00", 2)
    return block[separator + 1:] if separator >= 10 else None


def _ecdh_shared_secret(subkey: SecretSubkey, point: bytes) -> bytes:
    curve, private = subkey.material.curve, subkey.private
    if isinstance(private, x25519.X25519PrivateKey):
        if len(point) != 33 or point[0] != 0x40:
            raise OpenPGPError("malformed Curve25519 ephemeral key")
        return private.exchange(x25519.X25519PublicKey.from_public_bytes(point[1:]))
    if not isinstance(private, ec.EllipticCurvePrivateKey) or curve is None or curve.ec_curve is None:
        raise OpenPGPError("not an elliptic curve key")
    public = ec.EllipticCurvePublicKey.from_encoded_point(curve.ec_curve(), point)
    return private.exchange(ec.ECDH(), public)


def _unwrap_ecdh(subkey: SecretSubkey, point: bytes, wrapped: bytes) -> bytes | None:
    """RFC 6637 section 8: shared point -> KDF -> AES key unwrap -> PKCS#5 unpadding."""
    if subkey.kdf is None:
        return None
    hash_algorithm, length, param = subkey.kdf
    kek = ConcatKDFHash(hash_algorithm(), length, param).derive(_ecdh_shared_secret(subkey, point))
    try:
        padded = aes_key_unwrap(kek, wrapped)
    except InvalidUnwrap:
        return None
    pad = padded[-1] if padded else 0
    if not 1 <= pad <= 8 or padded[-pad:] != bytes([pad]) * pad:
        return None
    return padded[:-pad]


def _unwrap_native(subkey: SecretSubkey, ephemeral: bytes, wrapped: bytes) -> bytes | None:
    """RFC 9580 sections 5.1.6 and 5.1.7: HKDF over ephemeral || recipient public || shared secret, key unwrap."""
    private = subkey.private
    if isinstance(private, x25519.X25519PrivateKey):
        shared = private.exchange(x25519.X25519PublicKey.from_public_bytes(ephemeral))
    elif isinstance(private, x448.X448PrivateKey):
        shared = private.exchange(x448.X448PublicKey.from_public_bytes(ephemeral))
    else:
        return None
    hash_algorithm, info, length = _NATIVE_KDF[subkey.algorithm]
    kek = HKDF(hash_algorithm(), length, None, info).derive(ephemeral + subkey.material.native + shared)
    try:
        return aes_key_unwrap(kek, wrapped)
    except InvalidUnwrap:
        return None


def _rsa_session_key(private: rsa.RSAPrivateKey, c: int) -> bytes | None:
    size = (private.key_size + 7) // 8
    if c >= 1 << (size * 8):
        return None
    return private.decrypt(c.to_bytes(size, "big"), padding.PKCS1v15())


def _elgamal_session_key(subkey: SecretSubkey, c1: int, c2: int, x: int) -> bytes | None:
    if subkey.material.elgamal is None:
        return None
    p = subkey.material.elgamal[0]
    plain = c2 * pow(c1, p - 1 - x, p) % p
    return _eme_pkcs1_decode(plain.to_bytes((p.bit_length() + 7) // 8, "big"))


def fits(esk: EncryptedSessionKey, subkey: SecretSubkey) -> bool:
    """True when ``subkey`` can attempt ``esk`` at all (public facts: algorithm, fields, a v6 fingerprint)."""
    if esk.fingerprint and esk.fingerprint != subkey.fingerprint:
        return False
    return algorithm_family(esk.algorithm) == algorithm_family(subkey.algorithm) and bool(esk.fields)


def _decrypted_block(esk: EncryptedSessionKey, subkey: SecretSubkey) -> bytes | None:
    fields, private = esk.fields, subkey.private  # the shapes parse_pkesk and the Keyring give each family
    if len(fields) == 1 and isinstance(private, rsa.RSAPrivateKey):
        return _rsa_session_key(private, fields[0])
    if len(fields) == 2 and isinstance(fields[0], int) and isinstance(private, int):
        return _elgamal_session_key(subkey, fields[0], fields[1], private)
    if len(fields) == 2 and isinstance(fields[0], bytes) and isinstance(fields[1], bytes):
        if esk.algorithm in _NATIVE_KDF:
            return _unwrap_native(subkey, fields[0], fields[1])
        return _unwrap_ecdh(subkey, fields[0], fields[1])
    return None


def session_key_block(esk: EncryptedSessionKey, subkey: SecretSubkey) -> bytes | None:
    """The decrypted session key block, or None when this key does not fit or fails, whatever the reason."""
    if not fits(esk, subkey):
        return None
    try:
        return _decrypted_block(esk, subkey)
    except ValueError:  # bad padding, a point not on the curve: not this key
        return None
    except Exception as exc:  # noqa: BLE001  a library error of one key must not fail the message (issue 16)
        log.error("OpenPGP subkey %s: session key not decrypted (%s: %s)", subkey.keyid, type(exc).__name__, exc)
        return None


def parse_session_key(esk: EncryptedSessionKey, block: bytes | None) -> SessionKey | None:
    """The session key in a decrypted block, checked (RFC 9580 section 5.1.3): v3 ``algorithm || key ||
    checksum``; v6 ``key || checksum``; X25519 and X448 the bare key (v3: its algorithm in the clear)."""
    if not block:
        return None
    if esk.algorithm in _NATIVE_KDF:
        algorithm = NAMED_BY_DATA if esk.version == 6 else esk.cipher
        if algorithm is None or (algorithm != NAMED_BY_DATA and CIPHERS.get(algorithm, ("", None, 0))[2] != len(block)):
            return None
        return (algorithm, block) if len(block) in _SESSION_KEY_SIZES else None
    if esk.version == 6:
        algorithm, key, checksum = NAMED_BY_DATA, block[:-2], block[-2:]
        if len(key) not in _SESSION_KEY_SIZES:
            return None
    else:
        if block[0] not in CIPHERS or len(block) != 3 + CIPHERS[block[0]][2]:
            return None
        algorithm, key, checksum = block[0], block[1:-2], block[-2:]
    if sum(key) & 0xFFFF != int.from_bytes(checksum, "big"):
        return None
    return algorithm, key


def session_key(esk: EncryptedSessionKey, subkey: SecretSubkey) -> SessionKey | None:
    """The checked session key ``subkey`` opens ``esk`` to; None when it does not."""
    return parse_session_key(esk, session_key_block(esk, subkey))
