"""Secret-key packets: their protection (RFC 9580 section 5.5.3) and string-to-key (section 3.7).

A protected key is unlocked once, at import, with the passphrase the admin
gives; the store keeps it unprotected under its master key (the milter never
needs a passphrase). Read: S2K usage 0 (clear, with its checksum), 254
(SHA-1 check, CFB), 255 (checksum, CFB) and 253 (AEAD: OCB or GCM, key
from HKDF as RFC 9580 section 5.5.3 says); S2K specifiers simple, salted,
iterated and salted, and Argon2 (type 4, ``cryptography``'s Argon2id).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESOCB3
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ciphermilter.formats.openpgp.algorithms import CIPHERS, HASHES
from ciphermilter.formats.openpgp.keymaterial import KeyMaterialError, Reader

USAGE_CLEAR, USAGE_AEAD, USAGE_SHA1, USAGE_CHECKSUM = 0, 253, 254, 255
S2K_SIMPLE, S2K_SALTED, S2K_ITERATED, S2K_ARGON2, S2K_GNU = 0, 1, 3, 4, 101
AEAD_EAX, AEAD_OCB, AEAD_GCM = 1, 2, 3
_NONCE_SIZES = {AEAD_EAX: 16, AEAD_OCB: 15, AEAD_GCM: 12}
_TAG_SIZE = 16
# Argon2 (RFC 9580 section 3.7.1.4): memory is 2**encoded_m KiB. The RFC's first recommended setting uses
# 2 GiB (m = 21); more than that at import would let a key file take the machine's memory.
MAX_ARGON2_MEMORY_EXPONENT = 21
MAX_ARGON2_PASSES = 64
WRONG_PASSPHRASE = "wrong passphrase"


@dataclass
class S2K:
    type: int
    hash: int = 0
    salt: bytes = b""
    count: int = 0  # iterated: octets to hash; Argon2: passes
    parallelism: int = 0  # Argon2
    memory_exponent: int = 0  # Argon2
    gnu_mode: int = 0  # GnuPG's extension 101: 1001 is a key without its secret ("stub")


@dataclass
class SecretFields:
    """The protection of a secret-key packet and what follows it (encrypted unless ``usage`` is 0)."""

    usage: int
    data: bytes  # usage 0: the cleartext secret fields (checksum removed); otherwise the encrypted octets
    cipher: int = 0
    aead: int = 0
    s2k: S2K | None = None
    iv: bytes = b""

    @property
    def present(self) -> bool:
        """False for GnuPG's stub of a primary key exported without its secret (--export-secret-subkeys)."""
        return not (self.s2k is not None and self.s2k.type == S2K_GNU and self.s2k.gnu_mode == 1001)


def parse(version: int, body: bytes, pos: int) -> SecretFields:
    """The secret part of a secret-key packet whose public fields end at ``pos``."""
    cursor = Reader(body, pos, len(body), "truncated secret key packet")
    usage = cursor.octet()
    if usage == USAGE_CLEAR:
        return SecretFields(usage, _clear_fields(version, body[cursor.pos:]))
    if version == 6:
        cursor.octet()  # the count of the optional fields: they are read one by one below
    if usage not in (USAGE_AEAD, USAGE_SHA1, USAGE_CHECKSUM):
        raise KeyMaterialError(f"unsupported secret key protection (S2K usage {usage})")
    fields = SecretFields(usage, b"", cipher=cursor.octet())
    if usage == USAGE_AEAD:
        fields.aead = cursor.octet()
    if version == 6 and usage != USAGE_CHECKSUM:
        cursor.octet()  # the S2K specifier's length: the specifier itself says it
    fields.s2k = _read_s2k(cursor)
    if not fields.present:
        return fields
    if usage == USAGE_AEAD:
        if fields.aead not in _NONCE_SIZES:
            raise KeyMaterialError(f"unknown AEAD algorithm {fields.aead} protects the secret key")
        fields.iv = cursor.take(_NONCE_SIZES[fields.aead])
    else:
        fields.iv = cursor.take(_block_size(fields.cipher))
    fields.data = body[cursor.pos:]
    return fields


def _clear_fields(version: int, rest: bytes) -> bytes:
    """Cleartext secret fields; v4 keys end them with a two-octet checksum (v6 keys with none)."""
    if version == 6:
        return rest
    if len(rest) < 2 or sum(rest[:-2]) & 0xFFFF != int.from_bytes(rest[-2:], "big"):
        raise KeyMaterialError("secret key checksum does not match (corrupt key)")
    return rest[:-2]


def _read_s2k(cursor: Reader) -> S2K:
    kind = cursor.octet()
    if kind in (S2K_SIMPLE, S2K_SALTED, S2K_ITERATED):
        s2k = S2K(kind, hash=cursor.octet())
        if kind != S2K_SIMPLE:
            s2k.salt = cursor.take(8)
        if kind == S2K_ITERATED:
            c = cursor.octet()
            s2k.count = (16 + (c & 15)) << ((c >> 4) + 6)
        return s2k
    if kind == S2K_ARGON2:
        salt, passes, lanes, memory = cursor.take(16), cursor.octet(), cursor.octet(), cursor.octet()
        return S2K(kind, salt=salt, count=passes, parallelism=lanes, memory_exponent=memory)
    if kind == S2K_GNU:
        cursor.octet()  # hash octet (unused)
        if cursor.take(3) != b"GNU":
            raise KeyMaterialError("unknown GnuPG S2K extension")
        return S2K(kind, gnu_mode=1000 + cursor.octet())
    raise KeyMaterialError(f"unsupported S2K specifier {kind}")


def _block_size(cipher: int) -> int:
    name, cipher_class, size = CIPHERS.get(cipher, (str(cipher), None, 0))
    if cipher_class is None:
        raise KeyMaterialError(f"unsupported cipher {name} protects the secret key")
    return int(cipher_class(bytes(size)).block_size) // 8


def derive(s2k: S2K, passphrase: bytes, size: int) -> bytes:
    """The ``size``-octet key the S2K specifier makes of the passphrase (RFC 9580 section 3.7.1)."""
    if s2k.type == S2K_ARGON2:
        if s2k.memory_exponent > MAX_ARGON2_MEMORY_EXPONENT or s2k.count > MAX_ARGON2_PASSES:
            raise KeyMaterialError(f"Argon2 parameters beyond this importer's bounds (memory 2^{s2k.memory_exponent}"
                                   f" KiB, {s2k.count} passes)")
        try:
            return Argon2id(salt=s2k.salt, length=size, iterations=s2k.count, lanes=s2k.parallelism,
                            memory_cost=1 << s2k.memory_exponent).derive(passphrase)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise KeyMaterialError(f"invalid Argon2 parameters ({exc})") from None
    if s2k.hash not in HASHES:
        raise KeyMaterialError(f"unsupported S2K hash algorithm {s2k.hash}")
    name = HASHES[s2k.hash]().name.replace("-", "_")  # hashlib's spelling of cryptography's names
    seed = s2k.salt + passphrase
    total = max(s2k.count, len(seed)) if s2k.type == S2K_ITERATED else len(seed)
    key = b""
    preload = 0
    while len(key) < size:  # each further hash context starts with one more zero octet
        context = hashlib.new(name)
        context.update(bytes(preload))
        repeats, tail = divmod(total, len(seed))
        context.update(seed * repeats + seed[:tail])
        key += context.digest()
        preload += 1
    return key[:size]


def unlock(fields: SecretFields, passphrase: str, version: int, public_body: bytes, primary: bool,
           material_length: Callable[[bytes], int]) -> bytes:
    """The cleartext secret fields of a protected packet; KeyMaterialError (:data:`WRONG_PASSPHRASE`) when the
    passphrase does not open them. ``material_length`` tells where the algorithm's fields end."""
    if fields.s2k is None:
        raise KeyMaterialError("secret key without an S2K specifier")
    name, _, size = CIPHERS.get(fields.cipher, (str(fields.cipher), None, 0))
    key = derive(fields.s2k, passphrase.encode("utf-8"), size)
    if fields.usage == USAGE_AEAD:
        return _open_aead(fields, key, version, public_body, primary)
    plain = _cfb_decrypt(fields, key)
    if fields.usage == USAGE_SHA1:
        if len(plain) < 20 or not hmac.compare_digest(hashlib.sha1(plain[:-20]).digest(), plain[-20:]):
            raise KeyMaterialError(WRONG_PASSPHRASE)
        return plain[:-20]
    if len(plain) < 2 or sum(plain[:-2]) & 0xFFFF != int.from_bytes(plain[-2:], "big"):
        raise KeyMaterialError(WRONG_PASSPHRASE)
    clear = plain[:-2]
    if material_length(clear) != len(clear):
        raise KeyMaterialError(WRONG_PASSPHRASE)
    return clear


def _cfb_decrypt(fields: SecretFields, key: bytes) -> bytes:
    _, cipher_class, _ = CIPHERS[fields.cipher]
    assert cipher_class is not None  # _block_size refused it when the packet was parsed
    decryptor = Cipher(cipher_class(key), CFB(fields.iv)).decryptor()
    return decryptor.update(fields.data) + decryptor.finalize()


def _open_aead(fields: SecretFields, key: bytes, version: int, public_body: bytes, primary: bool) -> bytes:
    """RFC 9580 section 5.5.3: the key from HKDF-SHA256, info and associated data naming the packet."""
    if fields.cipher not in (7, 8, 9):
        raise KeyMaterialError(f"unsupported cipher {fields.cipher} for an AEAD-protected secret key")
    if fields.aead not in (AEAD_OCB, AEAD_GCM):
        raise KeyMaterialError("EAX-protected secret keys are not supported")
    packet_type = 0xC5 if primary else 0xC7  # the packet type octet in OpenPGP format
    info = bytes([packet_type, version, fields.cipher, fields.aead])
    kek = HKDF(hashes.SHA256(), len(key), None, info).derive(key)
    aead = AESOCB3(kek) if fields.aead == AEAD_OCB else AESGCM(kek)
    try:
        return aead.decrypt(fields.iv, fields.data, bytes([packet_type]) + public_body)
    except InvalidTag:
        raise KeyMaterialError(WRONG_PASSPHRASE) from None


def clear_body(version: int, public_body: bytes, clear: bytes) -> bytes:
    """A secret-key packet body holding ``clear`` unprotected (usage 0; v4 with its checksum)."""
    checksum = b"" if version == 6 else (sum(clear) & 0xFFFF).to_bytes(2, "big")
    return public_body + b"\x00" + clear + checksum


# What an export protects secret keys with (RFC 9580 section 3.7.2.1): v4 keys CFB with a SHA-1 check under an
# iterated and salted SHA-256 S2K (what gpg 2.2 reads), v6 keys AEAD (OCB) under Argon2 with the RFC's second
# recommended parameters (t=3, p=4, 64 MiB; RFC 9580 section 3.7.1.4).
_EXPORT_CIPHER, _EXPORT_COUNT_OCTET = 9, 0xFF
_EXPORT_ARGON2 = (3, 4, 16)


def protect(version: int, public_body: bytes, primary: bool, clear: bytes, passphrase: str) -> bytes:
    """A secret-key packet body holding ``clear`` under ``passphrase`` (what :func:`unlock` opens)."""
    secret = passphrase.encode("utf-8")
    if version == 6:
        passes, lanes, memory = _EXPORT_ARGON2
        s2k = S2K(S2K_ARGON2, salt=os.urandom(16), count=passes, parallelism=lanes, memory_exponent=memory)
        specifier = bytes([S2K_ARGON2]) + s2k.salt + bytes([passes, lanes, memory])
        nonce, packet_type = os.urandom(_NONCE_SIZES[AEAD_OCB]), 0xC5 if primary else 0xC7
        info = bytes([packet_type, version, _EXPORT_CIPHER, AEAD_OCB])
        kek = HKDF(hashes.SHA256(), 32, None, info).derive(derive(s2k, secret, 32))
        sealed = AESOCB3(kek).encrypt(nonce, clear, bytes([packet_type]) + public_body)
        fields = bytes([_EXPORT_CIPHER, AEAD_OCB, len(specifier)]) + specifier + nonce
        return public_body + bytes([USAGE_AEAD, len(fields)]) + fields + sealed
    s2k = S2K(S2K_ITERATED, hash=8, salt=os.urandom(8), count=(16 + 15) << (15 + 6))
    specifier = bytes([S2K_ITERATED, 8]) + s2k.salt + bytes([_EXPORT_COUNT_OCTET])
    iv = os.urandom(16)
    plain = clear + hashlib.sha1(clear).digest()
    encryptor = Cipher(AES(derive(s2k, secret, 32)), CFB(iv)).encryptor()
    sealed = encryptor.update(plain) + encryptor.finalize()
    return public_body + bytes([USAGE_SHA1, _EXPORT_CIPHER]) + specifier + iv + sealed
