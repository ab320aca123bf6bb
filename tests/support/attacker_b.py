"""The vectors of the round-three attacker B (issue 14), shared by its offline tests (test_attacks_round3b) and
their twins through the real chain (e2e/test_attacks_round3b): forged fields in every spelling, OpenPGP
compression bombs, S/MIME compressed data."""

from __future__ import annotations

import base64
import zlib

from asn1crypto import cms as asn1_cms

from ciphermilter.core.settings import Limits
from ciphermilter.formats.openpgp import engine as openpgp
from support.attack_messages import message
from support.openpgp_packets import literal, packet

MIB = 1 << 20
LIMIT = Limits().max_forged_headers
FLOOD = 20_000  # the count that ends in "451 4.3.0 queue file write error"
UNDER_THE_BOUND = 200 * MIB  # under the default max_decompressed_size (256 MiB): not refused, so kept whole


def fields(name: bytes, count: int) -> bytes:
    return b"".join(name + b": value %d\r\n" % i for i in range(count))


def spelled(count: int) -> bytes:
    """``count`` reserved fields in the spellings a filter might miss: any case, both namespaces, white space
    before the colon, folded values."""
    names = (b"X-CipherMail-Info-SMIME-Signed", b"x-CIPHERMAIL-info-Signer-Verified-0-0 ", b"X-Djigzo-Info-X\t",
             b"X-DJIGZO-anything", b"x-ciphermail-")
    return b"".join(names[i % len(names)] + b": True\r\n folded %d\r\n" % i for i in range(count))


def armored(binary: bytes) -> bytes:
    checksum = base64.b64encode(openpgp.crc24(binary).to_bytes(3, "big"))
    return (b"-----BEGIN PGP MESSAGE-----\r\n\r\n" + base64.encodebytes(binary).replace(b"\n", b"\r\n")
            + b"=" + checksum + b"\r\n-----END PGP MESSAGE-----\r\n")


def zlib_literal(size: int) -> bytes:
    """A binary OpenPGP message: a ZLIB compressed packet holding a literal of ``size`` zero bytes."""
    compressor = zlib.compressobj(9)
    data = literal(bytes(size))
    return packet(openpgp.TAG_COMPRESSED, b"\x02" + compressor.compress(data) + compressor.flush())


def under_the_bound_bomb() -> bytes:
    """A 280 KB message whose one armored block inflates to 200 MiB (no key, no signature needed)."""
    return message(b"Content-Type: text/plain\r\n\r\n" + armored(zlib_literal(UNDER_THE_BOUND)))


def compressed_data_entity(content: bytes) -> bytes:
    """An S/MIME compressed-data entity (RFC 3274, ZLIB) of ``content``, as any CMS library writes it."""
    info = asn1_cms.ContentInfo({"content_type": "compressed_data", "content": asn1_cms.CompressedData({
        "version": "v0", "compression_algorithm": {"algorithm": "zlib"},
        "encap_content_info": {"content_type": "data", "content": zlib.compress(content)}})})
    return (b'Content-Type: application/pkcs7-mime; smime-type=compressed-data; name="smime.p7z"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(info.dump()).replace(b"\n", b"\r\n"))
