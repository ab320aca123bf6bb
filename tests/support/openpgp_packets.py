"""OpenPGP packets built by hand (RFC 4880 section 4.2), for the engine's limits and the bombs."""

from __future__ import annotations

from ciphermilter.formats.openpgp import engine as openpgp


def packet(tag: int, body: bytes) -> bytes:
    """A new-format packet with a five-octet length (RFC 4880 section 4.2.2.3)."""
    return bytes([0xC0 | tag]) + b"\xff" + len(body).to_bytes(4, "big") + body


def literal(data: bytes) -> bytes:
    return packet(openpgp.TAG_LITERAL, b"b\x00\x00\x00\x00\x00" + data)
