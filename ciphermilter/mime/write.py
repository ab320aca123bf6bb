"""Writing MIME: header fields, leaf entities, spliced multiparts, multipart/signed, CRLF line ends.

The one place that turns values back into message bytes, so that the edit
plan, both format handlers and the offline ``decrypt`` write fields, lines
and parts the same way. Nothing is re-serialised: a multipart keeps its
delimiters, preamble and epilogue byte for byte around the parts replaced.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping

from ciphermilter.mime.model import Entity, Header

CRLF = b"\r\n"
MAX_LINE = 998  # RFC 5322 section 2.1.1: characters per line, without its CRLF
# Input encoded at a time: whole 76-character lines (57 bytes each), about 1 MiB. One object per line for
# the whole data cost three times the data again (a decompressed part may be hundreds of MB).
_BASE64_STEP = 57 * 18396


def to_crlf(data: bytes) -> bytes:
    """Bare LF to CRLF (SMTP line ends); C-level counts and replaces are much faster than a look-behind regex."""
    if data.count(b"\n") == data.count(b"\r\n"):
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def field(name: str, value: str) -> bytes:
    """A header field from a value in milter form (LF before each continuation line): CRLF inside folds,
    no final line break; undecodable bytes kept as they arrived (surrogate escapes)."""
    return f"{name}: {value}".replace("\n", "\r\n").encode("utf-8", "surrogateescape")


def milter_value(header: Header) -> str:
    """A header's value as libmilter wants it: no leading space, LF before continuation lines."""
    raw_value = header.raw.partition(b":")[2].lstrip(b" \t")
    return raw_value.replace(b"\r\n", b"\n").decode("utf-8", "surrogateescape")


def entity(fields: Iterable[bytes], body: bytes) -> bytes:
    """An entity (or a message) from its raw fields, without line breaks, and its body."""
    return b"".join(raw + CRLF for raw in fields) + CRLF + body


def leaf(fields: Iterable[bytes], content_type: str, body: bytes, cte: str) -> bytes:
    """A single-part entity: ``fields`` as they are, then its Content-Type and Content-Transfer-Encoding."""
    return entity([*fields, field("Content-Type", content_type), field("Content-Transfer-Encoding", cte)], body)


def splice(multipart: Entity, replacements: Mapping[int, bytes]) -> bytes:
    """``multipart`` with the parts at the given 0-based indexes replaced; its header block, delimiters,
    preamble, epilogue and the other parts stay byte-exact."""
    body = multipart.body
    out, pos = [multipart.header_bytes], 0
    for index, (start, end) in enumerate(multipart.part_spans):
        new = replacements.get(index)
        if new is None:
            continue
        out += [body[pos:start], new]
        pos = end
    out.append(body[pos:])
    return b"".join(out)


def base64_lines(data: bytes) -> bytes:
    """Base64 in 76-character lines, each ending in CRLF (RFC 2045 section 6.8)."""
    return b"".join(base64.encodebytes(data[i:i + _BASE64_STEP]).replace(b"\n", CRLF)
                    for i in range(0, len(data), _BASE64_STEP))


def multipart_signed(content: bytes, signature: bytes, micalg: str) -> bytes:
    """A multipart/signed entity (RFC 8551 section 3.5) carrying ``content`` byte for byte beside its
    detached S/MIME ``signature``."""
    boundary = "----=_ciphermilter_" + hashlib.sha256(content).hexdigest()[:24]
    marker = b"--" + boundary.encode("ascii")
    if marker in content:  # practically impossible; a longer digest slice would do, but never loop
        boundary = "----=_ciphermilter_" + hashlib.sha256(signature + content).hexdigest()
        marker = b"--" + boundary.encode("ascii")
    return b"".join([
        b"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n",
        f" micalg={micalg}; boundary=\"{boundary}\"\r\n".encode("ascii"),
        b"\r\n",
        b"This is an S/MIME signed message\r\n\r\n",
        marker, b"\r\n", content, b"\r\n",
        marker, b"\r\n",
        b"Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Disposition: attachment; filename=\"smime.p7s\"\r\n",
        b"\r\n", base64_lines(signature),
        marker, b"--\r\n",
    ])
