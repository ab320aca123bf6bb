"""Byte-exact MIME walking.

Signatures are computed over the exact bytes of a part as it travelled, and a
decrypted entity must reach the recipient byte for byte, so this module never
re-serialises anything: headers keep their raw bytes (folding, case, non-ASCII
included) and every part is a slice of its parent. The stdlib ``email``
package normalises too much for that.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from functools import cached_property

CRLF = b"\r\n"
_LINE_END = re.compile(rb"\r?\n")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_TOKEN = r"[^\s()<>@,;:\\\"/\[\]?=]+"
_PARAM = re.compile(
    r';\s*(' + _TOKEN + r')\s*=\s*("(?:[^"\\]|\\.)*"|' + _TOKEN + r')', re.DOTALL
)
DEFAULT_MAX_DEPTH = 50
# Every byte outside the base64 alphabet: bytes.translate deletes them several times faster than a regex.
_NOT_BASE64 = bytes(sorted(set(range(256)) - set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")))


class MimeError(ValueError):
    """The message cannot be parsed as MIME."""


class DepthLimitExceeded(MimeError):
    """Multiparts are nested deeper than allowed."""


@dataclass(frozen=True)
class Header:
    name: str
    raw: bytes  # the whole field, name and folded value, without the final line break

    @classmethod
    def from_raw(cls, raw: bytes) -> "Header":
        name, sep, _ = raw.partition(b":")
        if not sep:
            raise MimeError(f"header line without a colon: {raw[:60]!r}")
        return cls(name.decode("ascii", "replace").strip(), raw)

    @property
    def value(self) -> str:
        """Unfolded value with surrounding white space removed (undecodable bytes kept as surrogates)."""
        raw_value = self.raw.partition(b":")[2]
        return _LINE_END.sub(b"", raw_value).strip().decode("utf-8", "surrogateescape")


def split_headers(data: bytes) -> tuple[list[Header], int]:
    """Split ``data`` into its header fields and the offset where the body starts.

    A line starting with white space continues the previous field. A line
    without a colon ends the header block (as most MTAs treat it) and starts
    the body; a message without a blank line has an empty body.
    """
    headers: list[Header] = []
    pos = 0
    current_start = None
    length = len(data)
    while pos < length:
        match = _LINE_END.search(data, pos)
        line_end, next_pos = (match.start(), match.end()) if match else (length, length)
        line = data[pos:line_end]
        if line == b"":
            next_body = next_pos
            break
        if line[:1] in (b" ", b"\t") and current_start is not None:
            headers[-1] = Header.from_raw(data[current_start:line_end])
        elif b":" in line:
            current_start = pos
            headers.append(Header.from_raw(line))
        else:
            next_body = pos
            break
        pos = next_pos
    else:
        next_body = length
    return headers, next_body


def parse_content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """Return the lower-case ``type/subtype`` and the parameters (lower-case names, unquoted values)."""
    if not value:
        return "text/plain", {}
    main, _, _ = value.partition(";")
    ctype = main.strip().lower() or "text/plain"
    if "/" not in ctype:
        ctype = "text/plain"
    params: dict[str, str] = {}
    for name, raw in _PARAM.findall(value[len(main):]):
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params.setdefault(name.lower(), raw)
    return ctype, params


def decode_transfer_encoding(body: bytes, cte: str) -> bytes:
    """Decode a body by its Content-Transfer-Encoding; unknown encodings return the bytes as they are."""
    if cte == "base64":
        cleaned = body.translate(None, _NOT_BASE64)
        cleaned = cleaned.split(b"=")[0]
        cleaned += b"=" * (-len(cleaned) % 4)
        try:
            return base64.b64decode(cleaned)
        except binascii.Error as exc:
            raise MimeError(f"corrupt base64: {exc}") from None
    if cte == "quoted-printable":
        return binascii.a2b_qp(body)
    return body


class Entity:
    """A MIME entity: its raw header fields and its body, both byte-exact slices of the input."""

    def __init__(self, data: bytes, depth: int = 0, max_depth: int = DEFAULT_MAX_DEPTH):
        self.raw = data
        self.headers, body_offset = split_headers(data)
        self.body = data[body_offset:]
        self.header_bytes = data[:body_offset]
        self.depth = depth
        self.max_depth = max_depth

    def get(self, name: str) -> str | None:
        """Value of the first header called ``name`` (case-insensitive), or None."""
        lname = name.lower()
        for header in self.headers:
            if header.name.lower() == lname:
                return header.value
        return None

    @cached_property
    def _content_type(self) -> tuple[str, dict[str, str]]:
        return parse_content_type(self.get("Content-Type"))

    @property
    def content_type(self) -> str:
        return self._content_type[0]

    @property
    def params(self) -> dict[str, str]:
        return self._content_type[1]

    @property
    def cte(self) -> str:
        return (self.get("Content-Transfer-Encoding") or "7bit").strip().lower()

    @property
    def is_multipart(self) -> bool:
        return self.content_type.startswith("multipart/") and bool(self.params.get("boundary"))

    def decoded_body(self) -> bytes:
        return decode_transfer_encoding(self.body, self.cte)

    @cached_property
    def parts(self) -> list["Entity"]:
        """The body parts of a multipart, each a byte-exact slice; empty for anything else."""
        if not self.is_multipart:
            return []
        if self.depth + 1 > self.max_depth:
            raise DepthLimitExceeded(f"MIME nesting deeper than {self.max_depth}")
        return [
            Entity(self.body[start:end], self.depth + 1, self.max_depth)
            for start, end in multipart_spans(self.body, self.params["boundary"])
        ]

    def walk(self):
        """Yield this entity and every entity below it, depth first."""
        yield self
        for part in self.parts:
            yield from part.walk()


def multipart_spans(body: bytes, boundary: str) -> list[tuple[int, int]]:
    """Offsets of each body part of a multipart body (RFC 2046 section 5.1.1).

    A part runs from after its delimiter line to before the line break that
    precedes the next delimiter; that line break belongs to the delimiter.
    """
    delimiter = re.escape(b"--" + boundary.encode("utf-8", "surrogateescape"))
    # A pattern that starts with a literal lets re jump between candidates with a fast
    # search (an "\A or \r?\n" start made it step byte by byte); the CR and the \A case
    # are checked by hand.
    rest = delimiter + rb"(--)?[ \t]*(?:\r?\n|\Z)"
    first = re.compile(rest).match(body)
    matches = ([first] if first else []) + list(re.compile(rb"\n" + rest).finditer(body, first.end() if first else 0))
    spans = []
    start = None
    for match in matches:
        line_break = match.start() - (match.start() > 0 and body[match.start() - 1:match.start()] == b"\r")
        if start is not None:
            spans.append((start, line_break))
        if match.group(1):
            return spans
        start = match.end()
    if start is not None:  # missing close delimiter: the last part runs to the end
        spans.append((start, len(body)))
    return spans


def parse(data: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Entity:
    return Entity(data, max_depth=max_depth)
