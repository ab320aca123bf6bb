"""OpenPGP packet framing (RFC 4880 section 4, RFC 9580 section 4): packets, PKESKs, the errors of the engine.

The engine reads the packet stream itself rather than through pgpy, whose
decryption path cannot be used as is (see :mod:`.decrypt`). Partial body
lengths are joined through a memoryview, so a streamed packet costs one copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

WILDCARD_KEYID = "0" * 16
TAG_PKESK, TAG_SIGNATURE, TAG_SKESK, TAG_ONE_PASS = 1, 2, 3, 4
TAG_COMPRESSED, TAG_SED, TAG_MARKER, TAG_LITERAL = 8, 9, 10, 11
TAG_SEIPD, TAG_OCB_AEAD, TAG_PADDING = 18, 20, 21
RSA_ALGORITHMS = (1, 2)
ELGAMAL_ALGORITHMS = (16, 20)
ECDH_ALGORITHM = 18
INTEGRITY_FAILED = "integrity check failed"


class OpenPGPError(ValueError):
    """The OpenPGP data cannot be processed; ``str()`` is a short reason for a header."""


class IntegrityError(OpenPGPError):
    """The data was changed: the session key opened SEIPDv1 data (its quick check passed) but the MDC does not
    match, or a tag of AEAD data does not (where a wrong key fails too: the caller's key checks tell them apart)."""

    def __init__(self) -> None:
        super().__init__(INTEGRITY_FAILED)


class UnsupportedFormat(OpenPGPError):
    """Valid OpenPGP we cannot read (a cipher cryptography lacks, an AEAD algorithm or version we do not know)."""



@dataclass
class Packet:
    tag: int
    body: bytes
    start: int = 0  # offset of its header in the data
    streamed: bool = False  # partial or indeterminate length: fine in a message, never in a key


def _new_length(data: bytes, pos: int) -> tuple[int, int, bool]:
    """A new-format length at ``pos``: (length, next position, is a partial length)."""
    first = data[pos]
    if first < 192:
        return first, pos + 1, False
    if first < 224:
        if pos + 1 >= len(data):
            raise OpenPGPError("truncated packet length")
        return ((first - 192) << 8) + data[pos + 1] + 192, pos + 2, False
    if first == 255:
        if pos + 5 > len(data):
            raise OpenPGPError("truncated packet length")
        return int.from_bytes(data[pos + 1:pos + 5], "big"), pos + 5, False
    return 1 << (first & 0x1F), pos + 1, True


def packets(data: bytes) -> Iterator[Packet]:
    """Yield the packets of ``data`` (RFC 4880 section 4.2), joining partial body lengths."""
    view = memoryview(data)  # the pieces of a partial body are joined without a copy of each first
    pos = 0
    while pos < len(data):
        start, header = pos, data[pos]
        if not header & 0x80:
            raise OpenPGPError("not an OpenPGP packet")
        if header & 0x40:
            tag = header & 0x3F
            if pos + 1 >= len(data):
                raise OpenPGPError("truncated packet header")
            chunks = []
            length, pos, partial = _new_length(data, pos + 1)
            streamed = partial
            while partial:
                chunks.append(view[pos:pos + length])
                pos += length
                if pos >= len(data):
                    raise OpenPGPError("truncated partial packet")
                length, pos, partial = _new_length(data, pos)
            chunks.append(view[pos:pos + length])
            if len(chunks[-1]) < length:
                raise OpenPGPError("truncated packet")
            body = b"".join(chunks) if len(chunks) > 1 else chunks[0].tobytes()
        else:
            tag, length_type = (header >> 2) & 0x0F, header & 0x03
            streamed = length_type == 3
            if streamed:  # indeterminate: to the end of the data
                body, length = data[pos + 1:], len(data) - pos - 1
                pos += 1
            else:
                size = 1 << length_type
                if pos + 1 + size > len(data):
                    raise OpenPGPError("truncated packet header")
                length = int.from_bytes(data[pos + 1:pos + 1 + size], "big")
                pos += 1 + size
                body = data[pos:pos + length]
                if len(body) < length:
                    raise OpenPGPError("truncated packet")
        pos += length
        yield Packet(tag, body, start, streamed)


def _mpi_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    """The octets of an MPI at ``pos`` (RFC 4880 section 3.2): (octets, next position)."""
    if pos + 2 > len(data):
        raise OpenPGPError("truncated MPI")
    end = pos + 2 + (int.from_bytes(data[pos:pos + 2], "big") + 7) // 8
    if end > len(data):
        raise OpenPGPError("truncated MPI")
    return data[pos + 2:end], end


def _mpi(data: bytes, pos: int) -> tuple[int, int]:
    octets, end = _mpi_bytes(data, pos)
    return int.from_bytes(octets, "big"), end


# RSA: (c,), ElGamal: (c1, c2), ECDH: (ephemeral point bytes, wrapped key), X25519/X448: (ephemeral key,
# wrapped key); () for other algorithms
SessionKeyFields = tuple[int] | tuple[int, int] | tuple[bytes, bytes] | tuple[()]
X25519_ALGORITHM, X448_ALGORITHM = 25, 26
_NATIVE_EPHEMERAL = {X25519_ALGORITHM: 32, X448_ALGORITHM: 56}  # RFC 9580 sections 5.1.6 and 5.1.7


@dataclass
class EncryptedSessionKey:
    """A public-key encrypted session key packet, version 3 or 6 (RFC 9580 section 5.1)."""

    keyid: str
    algorithm: int
    fields: SessionKeyFields
    version: int = 3
    fingerprint: bytes = b""  # v6: the recipient key's fingerprint (empty: anonymous recipient)
    cipher: int | None = None  # v3 X25519/X448: the symmetric algorithm, sent in the clear


def _pkesk_v6_recipient(body: bytes) -> tuple[str, bytes, int]:
    """The key ID, fingerprint and end of the recipient field of a PKESKv6 (RFC 9580 section 5.1.2): v4
    fingerprints end with their key ID, v6 ones start with it; an empty field is an anonymous recipient."""
    if len(body) < 2:
        raise OpenPGPError("truncated PKESK packet")
    size = body[1]
    if size == 0:
        return WILDCARD_KEYID, b"", 2
    if 2 + size > len(body) or size < 2:
        raise OpenPGPError("truncated PKESK packet")
    key_version, fingerprint = body[2], body[3:2 + size]
    if (key_version, len(fingerprint)) not in ((4, 20), (6, 32)):
        raise OpenPGPError(f"PKESK names a version {key_version} key with a {len(fingerprint)}-octet fingerprint")
    return (fingerprint[:8] if key_version == 6 else fingerprint[-8:]).hex().upper(), fingerprint, 2 + size


def parse_pkesk(body: bytes) -> EncryptedSessionKey:
    """A PKESK v3, or v6 (RFC 9580 section 5.1.2) with the fields of the algorithms v4 keys have.

    A v6 PKESK's algorithm fields are those of v3 for RSA and ECDH; X25519 and
    X448 (v6 keys) keep none here, so no key tries them.
    """
    if not body:
        raise OpenPGPError("empty PKESK packet")
    if body[0] == 6:
        keyid, fingerprint, pos = _pkesk_v6_recipient(body)
        if pos >= len(body):
            raise OpenPGPError("truncated PKESK packet")
        esk = EncryptedSessionKey(keyid, body[pos], (), 6, fingerprint)
    elif body[0] == 3 and len(body) >= 10:
        esk, pos = EncryptedSessionKey(body[1:9].hex().upper(), body[9], ()), 9
    else:
        raise OpenPGPError(f"unknown PKESK version {body[0]}")
    _read_session_key_fields(esk, body, pos + 1)
    return esk


def _read_session_key_fields(esk: EncryptedSessionKey, body: bytes, pos: int) -> None:
    """The algorithm-specific fields (RFC 9580 section 5.1.3 to 5.1.7); unknown algorithms keep none."""
    if esk.algorithm in RSA_ALGORITHMS:
        esk.fields = (_mpi(body, pos)[0],)
    elif esk.algorithm in ELGAMAL_ALGORITHMS and esk.version == 3:  # RFC 9580 section 5.1.4: no ElGamal in v6
        c1, pos = _mpi(body, pos)
        esk.fields = (c1, _mpi(body, pos)[0])
    elif esk.algorithm == ECDH_ALGORITHM:
        point, pos = _mpi_bytes(body, pos)
        size = body[pos] if pos < len(body) else 0
        esk.fields = (point, body[pos + 1:pos + 1 + size])
    elif esk.algorithm in _NATIVE_EPHEMERAL:
        end = pos + _NATIVE_EPHEMERAL[esk.algorithm]
        if end + 1 > len(body) or end + 1 + body[end] != len(body):
            raise OpenPGPError("truncated or malformed PKESK packet")
        rest = body[end + 1:]
        if esk.version == 3:  # the symmetric algorithm in the clear, then the wrapped key
            if not rest:
                raise OpenPGPError("truncated PKESK packet")
            esk.cipher, rest = rest[0], rest[1:]
        esk.fields = (body[pos:end], rest)


def looks_binary_openpgp(data: bytes) -> bool:
    """True when ``data`` starts like a binary OpenPGP message (a PKESK, SKESK, compressed, signed... packet)."""
    if not data or not data[0] & 0x80:
        return False
    tag = data[0] & 0x3F if data[0] & 0x40 else (data[0] >> 2) & 0x0F
    return tag in (TAG_PKESK, TAG_SIGNATURE, TAG_SKESK, TAG_ONE_PASS, TAG_COMPRESSED, TAG_LITERAL, TAG_SEIPD)


def frame(tag: int, body: bytes) -> bytes:
    length = len(body)
    if length < 192:
        header = bytes([length])
    elif length < 8384:
        header = bytes([((length - 192) >> 8) + 192, (length - 192) & 0xFF])
    else:
        header = b"\xff" + length.to_bytes(4, "big")
    return bytes([0xC0 | tag]) + header + body


def signature_packets(data: bytes) -> list[bytes]:
    """The signature packet bodies of a (dearmored) detached signature, which holds nothing else.

    Another packet there is refused, not skipped: in a cleartext signature's
    armor, words of the base64 alphabet (188 letters and digits, "you must
    ALSO wire ...") decode to a marker packet before the real signature, and
    the reader sees them inside the signed block (round-6 attack F2).
    """
    found = list(packets(data))
    for packet in found:
        if packet.tag != TAG_SIGNATURE:
            raise OpenPGPError(f"a packet of type {packet.tag} where only signatures belong")
    return [packet.body for packet in found]
