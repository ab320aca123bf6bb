"""The signature packet (RFC 9580 section 5.2): versions 3, 4 and 6, their subpackets and the hash they sign.

Read here rather than by pgpy, which reads version 4 only. A signature the
engine cannot use raises :class:`UnreadableSignature` whose text is the
reason a header shows ("unsupported signature version 7", "unsupported hash
algorithm 1 (MD5)"); nothing here trusts a field before it is bounded.

Hash policy: SHA-2 and SHA3-256/512 (RFC 9580 section 9.5). SHA-1 is accepted in
version 3 and 4 signatures because pgpy accepted it for data signatures
before (it only warns), and mail signed by older keys still uses it; RFC 9580
section 9.5 forbids it in version 6 signatures, so there it is refused. MD5
and RIPEMD-160 are refused everywhere (cryptography has no RIPEMD-160; RFC
9580 forbids making either).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ciphermilter.formats.openpgp.packets import OpenPGPError

SIGNATURE_BINARY, SIGNATURE_TEXT = 0x00, 0x01
_SUB_CREATED, _SUB_EXPIRES, _SUB_ISSUER, _SUB_ISSUER_FINGERPRINT = 2, 3, 16, 33
_SUB_EMBEDDED = 32  # an embedded signature: a signing subkey's back-signature (RFC 9580 5.2.3.34)
# Subpackets that may be marked critical without making a data signature invalid (RFC 9580 section
# 5.2.3.7): the ones read here, and those that say something about keys, not about this signature's data.
# A critical notation (20), regular expression (6) or trust signature (5), or any type not listed, is
# something a signer required us to honour and we do not: the signature is invalid.
_CRITICAL_UNDERSTOOD = frozenset({2, 3, 4, 7, 9, 11, 16, 21, 22, 23, 24, 25, 26, 27, 28, 30, 32, 33, 34, 35, 39})
# RFC 9580 section 9.5: id -> (name, hashlib name, salt size of a v6 signature)
_HASHES = {2: ("SHA-1", "sha1", 0), 8: ("SHA-256", "sha256", 16), 9: ("SHA-384", "sha384", 24),
           10: ("SHA-512", "sha512", 32), 11: ("SHA-224", "sha224", 16), 12: ("SHA3-256", "sha3_256", 16),
           14: ("SHA3-512", "sha3_512", 32)}
_REFUSED_HASHES = {1: "MD5", 3: "RIPEMD-160"}
_FINGERPRINT_SIZES = {b"\x04": 20, b"\x06": 32}  # issuer fingerprint subpacket: key version -> octets
V6_SHA1 = "SHA-1 in a version 6 signature"


class UnreadableSignature(OpenPGPError):
    """A signature packet the engine cannot use; ``str()`` is the reason in words."""


@dataclass
class Signature:
    """One parsed signature packet: what the hash covers and who claims to have made it."""

    version: int
    signature_type: int
    algorithm: int  # public-key algorithm (RFC 9580 section 9.1)
    hash_algorithm: int
    hash_name: str
    trailer: bytes  # what is hashed after the data (RFC 9580 section 5.2.4)
    left16: bytes
    material: bytes  # the algorithm-specific signature fields, unparsed
    created: int = 0  # seconds since the epoch
    expires_after: int = 0  # seconds after creation; 0: never
    salt: bytes = b""  # version 6
    issuer_keyid: str = ""  # 16 upper-case hex digits, from the hashed area before the unhashed one
    issuer_fingerprint: bytes = b""  # v4 20 octets, v6 32 octets; only from the hashed area
    critical_unknown: list[int] = field(default_factory=list)
    embedded: list[bytes] = field(default_factory=list)  # embedded signature packet bodies, either area

    @property
    def keyid(self) -> str:
        """The key ID the signature names: a v6 key's ID is the start of its fingerprint, a v4 key's its end."""
        if self.issuer_fingerprint:
            fingerprint = self.issuer_fingerprint
            return (fingerprint[:8] if len(fingerprint) == 32 else fingerprint[-8:]).hex().upper()
        return self.issuer_keyid

    def digest(self, data: bytes) -> bytes:
        """The hash the signature is over: salt (v6), the data (line ends made CRLF for a text signature),
        the trailer."""
        if self.signature_type == SIGNATURE_TEXT:
            data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        hasher = hashlib.new(_HASHES[self.hash_algorithm][1])
        hasher.update(self.salt)
        hasher.update(data)
        hasher.update(self.trailer)
        return hasher.digest()


def _take(body: bytes, pos: int, size: int, what: str) -> tuple[bytes, int]:
    if size < 0 or pos + size > len(body):
        raise UnreadableSignature(f"truncated signature packet ({what})")
    return body[pos:pos + size], pos + size


def _hash_name(version: int, algorithm: int) -> str:
    if algorithm in _REFUSED_HASHES:
        raise UnreadableSignature(f"unsupported hash algorithm {algorithm} ({_REFUSED_HASHES[algorithm]})")
    if algorithm not in _HASHES:
        raise UnreadableSignature(f"unsupported hash algorithm {algorithm}")
    if version == 6 and algorithm == 2:
        raise UnreadableSignature(V6_SHA1)
    return _HASHES[algorithm][0]


def _subpacket_length(area: bytes, pos: int) -> tuple[int, int]:
    """A subpacket length at ``pos`` (RFC 9580 section 5.2.3.7): (length, position after it)."""
    first = area[pos]
    if first < 192:
        return first, pos + 1
    if first < 255:
        octets, _ = _take(area, pos, 2, "subpacket length")
        return ((first - 192) << 8) + octets[1] + 192, pos + 2
    octets, _ = _take(area, pos + 1, 4, "subpacket length")
    return int.from_bytes(octets, "big"), pos + 5


def _subpackets(area: bytes) -> list[tuple[int, bool, bytes]]:
    """(type, critical, body) of each subpacket of one area."""
    found = []
    pos = 0
    while pos < len(area):
        length, pos = _subpacket_length(area, pos)
        if length == 0:
            raise UnreadableSignature("truncated signature packet (empty subpacket)")
        content, pos = _take(area, pos, length, "subpacket")
        found.append((content[0] & 0x7F, bool(content[0] & 0x80), content[1:]))
    return found


def _read_hashed(signature: Signature, area: bytes) -> None:
    for kind, critical, content in _subpackets(area):
        if kind == _SUB_CREATED and len(content) == 4:
            signature.created = int.from_bytes(content, "big")
        elif kind == _SUB_EXPIRES and len(content) == 4:
            signature.expires_after = int.from_bytes(content, "big")
        elif kind == _SUB_ISSUER and len(content) == 8 and not signature.issuer_keyid:
            signature.issuer_keyid = content.hex().upper()
        elif kind == _SUB_ISSUER_FINGERPRINT and _FINGERPRINT_SIZES.get(content[:1]) == len(content) - 1:
            signature.issuer_fingerprint = signature.issuer_fingerprint or content[1:]
        elif kind == _SUB_EMBEDDED:
            signature.embedded.append(content)
        if critical and kind not in _CRITICAL_UNDERSTOOD:
            signature.critical_unknown.append(kind)
    if not signature.created:
        raise UnreadableSignature("signature without a hashed creation time")


def _read_unhashed(signature: Signature, area: bytes) -> None:
    """The unhashed area names an issuer only when the hashed one does not: anyone may change it, and a
    wrong one only costs a failed verification (the key it names cannot have made the signature)."""
    for kind, _, content in _subpackets(area):
        if kind == _SUB_ISSUER and len(content) == 8 and not signature.issuer_keyid:
            signature.issuer_keyid = content.hex().upper()
        elif kind == _SUB_EMBEDDED:  # gpg writes the back-signature here; it is itself signed by the subkey
            signature.embedded.append(content)


def _parse_v3(body: bytes) -> Signature:
    """RFC 9580 section 5.2.2: the hashed part is 5 octets, type and creation time."""
    fixed, pos = _take(body, 1, 18, "version 3 fields")
    if fixed[0] != 5:
        raise UnreadableSignature("malformed version 3 signature")
    hashed, (keyid, algorithm, hash_algorithm, left16) = fixed[1:6], (fixed[6:14], fixed[14], fixed[15], fixed[16:18])
    return Signature(3, fixed[1], algorithm, hash_algorithm, _hash_name(3, hash_algorithm), hashed, left16,
                     body[pos:], created=int.from_bytes(fixed[2:6], "big"), issuer_keyid=keyid.hex().upper())


def _parse_v4_v6(body: bytes, version: int) -> Signature:
    """RFC 9580 section 5.2.3: v6 has 4-octet area lengths and a salt after the quick check."""
    size = 4 if version == 6 else 2
    fixed, pos = _take(body, 1, 3, "header")
    length, pos = _take(body, pos, size, "hashed area length")
    hashed, pos = _take(body, pos, int.from_bytes(length, "big"), "hashed area")
    hashed_end = pos
    length, pos = _take(body, pos, size, "unhashed area length")
    unhashed, pos = _take(body, pos, int.from_bytes(length, "big"), "unhashed area")
    left16, pos = _take(body, pos, 2, "quick check")
    hash_name = _hash_name(version, fixed[2])
    salt = b""
    if version == 6:
        salt_size, pos = _take(body, pos, 1, "salt size")
        salt, pos = _take(body, pos, salt_size[0], "salt")
        if len(salt) != _HASHES[fixed[2]][2]:
            raise UnreadableSignature(f"salt of {len(salt)} octets for {hash_name} in a version 6 signature")
    trailer = body[:hashed_end] + bytes([version, 0xFF]) + hashed_end.to_bytes(4, "big")
    signature = Signature(version, fixed[0], fixed[1], fixed[2], hash_name, trailer, left16, body[pos:], salt=salt)
    _read_hashed(signature, hashed)
    _read_unhashed(signature, unhashed)
    return signature


def parse_signature(body: bytes) -> Signature:
    """A signature packet body, read; :class:`UnreadableSignature` says in words why one cannot be used."""
    if not body:
        raise UnreadableSignature("empty signature packet")
    if body[0] == 3:
        return _parse_v3(body)
    if body[0] in (4, 6):
        return _parse_v4_v6(body, body[0])
    raise UnreadableSignature(f"unsupported signature version {body[0]}")
