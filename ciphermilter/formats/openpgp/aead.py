"""AEAD-encrypted data, chunk by chunk: RFC 9580 SEIPDv2 and LibrePGP's AEAD packet (tag 20).

Both split the plaintext into chunks of 2**(c + 6) octets (c the chunk size
octet), seal each with its own nonce and a 16-octet tag, and end with a tag
over no data whose associated data holds the total length: a dropped,
repeated, reordered or cut chunk fails a tag. They differ in key and nonce:

- SEIPDv2 (tag 18 version 2, RFC 9580 section 5.13.2): HKDF-SHA256 over the
  session key with the packet's 32-octet salt gives the message key and an
  IV of (nonce length - 8) octets; a chunk's nonce is the IV followed by the
  chunk index (8 octets, big-endian); its associated data is the packet
  header (tag octet 0xD2, version, cipher, AEAD algorithm, chunk size octet).
- LibrePGP (tag 20 version 1, what GnuPG 2.4 and ``rnp --aead`` send): the
  session key itself; the nonce is the packet's IV with the chunk index
  XORed into its last 8 octets; the associated data is the header (0xD4 ...)
  followed by the chunk index, and for the final tag by the total length too.

Every tag is checked before any plaintext leaves this module: a message is
in memory already (the milter has it whole), so holding the plaintext back
costs nothing, and a client never sees the first chunks of changed data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESOCB3
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ciphermilter.formats.openpgp.eax import EAX
from ciphermilter.formats.openpgp.packets import (TAG_OCB_AEAD, TAG_SEIPD, IntegrityError, OpenPGPError, Packet,
                                                  UnsupportedFormat)

TAG_LENGTH = 16  # every OpenPGP AEAD mode: a 16-octet tag
SALT_LENGTH = 32  # SEIPDv2
# RFC 9580 section 5.13.2: a decoder must accept chunk size octets 0 to 16 (64 octets to 4 MiB) and nothing
# makes larger ones; GnuPG 2.4 writes 16 unless --chunk-size says less, rnp 0.16 writes 12 (256 KiB).
MAX_CHUNK_SIZE_OCTET = 16
AES_KEY_SIZES = {7: 16, 8: 24, 9: 32}  # cryptography has OCB and GCM for AES only; EAX is built on AES here
SEIPDV2, LIBREPGP = "SEIPDv2", "LibrePGP AEAD packet"
Check = Callable[[], None]
CHECK_EVERY = 1024  # chunks between deadline checks: 64 KiB of the smallest chunks, 4 GiB of the largest


class Sealer(Protocol):
    """What the three modes share: cryptography's AESOCB3 and AESGCM, and :class:`.eax.EAX`."""

    def decrypt(self, nonce: bytes, data: memoryview, associated_data: bytes) -> bytes: ...


@dataclass(frozen=True)
class Mode:
    name: str
    sealer: Callable[[bytes], Sealer]
    nonce_length: int


MODES = {1: Mode("EAX", EAX, 16), 2: Mode("OCB", AESOCB3, 15), 3: Mode("GCM", AESGCM, 12)}
LIBREPGP_MODES = (1, 2)  # LibrePGP defines EAX and OCB only


@dataclass(frozen=True)
class AeadData:
    """An AEAD packet's header, read and checked before any key is tried, and its sealed chunks."""

    tag: int
    version: int
    cipher: int
    mode: int
    chunk_octet: int
    iv: bytes  # SEIPDv2: the HKDF salt; LibrePGP: the starting nonce
    sealed: memoryview  # the chunks with their tags, then the final tag

    @property
    def header(self) -> bytes:
        """The octets both formats authenticate: packet tag octet (new format), version, algorithms, chunk size."""
        return bytes([0xC0 | self.tag, self.version, self.cipher, self.mode, self.chunk_octet])

    @property
    def key_size(self) -> int:
        return AES_KEY_SIZES.get(self.cipher, 0)  # 0: a cipher this module cannot use

    @property
    def chunk_size(self) -> int:
        return 1 << (self.chunk_octet + 6)

    @property
    def format(self) -> str:
        """The format as reasons name it, mode included: an EAX packet is never called OCB."""
        return f"{SEIPDV2 if self.tag == TAG_SEIPD else LIBREPGP}, {MODES[self.mode].name}"


def is_aead(packet: Packet) -> bool:
    """True for the packets this module opens (SEIPDv1 is not one of them)."""
    return packet.tag == TAG_OCB_AEAD or (packet.tag == TAG_SEIPD and packet.body[:1] == b"\x02")


def read_header(packet: Packet) -> AeadData:
    """The header of a SEIPDv2 or LibrePGP AEAD packet; :class:`UnsupportedFormat` naming the exact format.

    Its cipher is the caller's to check against :data:`AES_KEY_SIZES` (the caller names ciphers)."""
    body = packet.body
    seipd = packet.tag == TAG_SEIPD
    name, modes, version = (SEIPDV2, MODES, 2) if seipd else (LIBREPGP, LIBREPGP_MODES, 1)
    if len(body) < 4:
        raise OpenPGPError(f"truncated {name}")
    if body[0] != version:
        raise UnsupportedFormat(f"unknown {name} version {body[0]}")
    cipher, mode, chunk_octet = body[1], body[2], body[3]
    if mode not in modes:
        raise UnsupportedFormat(f"unknown AEAD algorithm {mode} ({name})")
    where = f"{name}, {MODES[mode].name}"
    if chunk_octet > MAX_CHUNK_SIZE_OCTET:
        raise UnsupportedFormat(f"chunk size octet {chunk_octet} above {MAX_CHUNK_SIZE_OCTET} ({where})")
    iv_end = 4 + (SALT_LENGTH if seipd else MODES[mode].nonce_length)
    if len(body) < iv_end:
        raise OpenPGPError(f"truncated {name}")
    return AeadData(packet.tag, version, cipher, mode, chunk_octet, body[4:iv_end], memoryview(body)[iv_end:])


def _message_key(data: AeadData, session_key: bytes) -> tuple[bytes, bytes]:
    """(key, IV) of the data: SEIPDv2 derives them (RFC 9580 section 5.13.2), LibrePGP uses the session key."""
    if data.tag != TAG_SEIPD:
        return session_key, data.iv
    iv_length = MODES[data.mode].nonce_length - 8
    derived = HKDF(hashes.SHA256(), data.key_size + iv_length, data.iv, data.header).derive(session_key)
    return derived[:data.key_size], derived[data.key_size:]


def _nonce_and_ad(data: AeadData, iv: bytes, index: int) -> tuple[bytes, bytes]:
    """The nonce and associated data of chunk ``index`` (the final tag's index is the chunk count)."""
    counter = index.to_bytes(8, "big")
    if data.tag == TAG_SEIPD:
        return iv + counter, data.header
    return iv[:-8] + (int.from_bytes(iv[-8:], "big") ^ index).to_bytes(8, "big"), data.header + counter


def decrypt(data: AeadData, session_key: bytes, check: Check = lambda: None) -> bytes:
    """The plaintext, once every chunk's tag and the final tag matched; else :class:`IntegrityError`.

    ``session_key`` has the cipher's key size (:attr:`AeadData.key_size`).
    A wrong session key fails the first tag, as changed data does: AEAD cannot
    tell them apart, the caller's key checks (checksum, key wrap) can.
    """
    key, iv = _message_key(data, session_key)
    sealer = MODES[data.mode].sealer(key)
    chunks, final = data.sealed[:-TAG_LENGTH], data.sealed[-TAG_LENGTH:]
    if len(final) < TAG_LENGTH:
        raise IntegrityError()
    step = data.chunk_size + TAG_LENGTH
    plain: list[bytes] = []
    try:
        for index, start in enumerate(range(0, len(chunks), step)):
            if index % CHECK_EVERY == CHECK_EVERY - 1:
                check()
            nonce, associated = _nonce_and_ad(data, iv, index)
            plain.append(sealer.decrypt(nonce, chunks[start:start + step], associated))
        total = sum(len(chunk) for chunk in plain)
        nonce, associated = _nonce_and_ad(data, iv, len(plain))
        sealer.decrypt(nonce, final, associated + total.to_bytes(8, "big"))
    except InvalidTag:
        raise IntegrityError() from None
    return b"".join(plain)
