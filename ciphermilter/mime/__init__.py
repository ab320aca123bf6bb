"""Byte-exact MIME walking.

Signatures are computed over the exact bytes of a part as it travelled, and a
decrypted entity must reach the recipient byte for byte, so this module never
re-serialises anything: headers keep their raw bytes (folding, case, non-ASCII
included) and every part is a slice of its parent. The stdlib ``email``
package normalises too much for that.
"""

from __future__ import annotations

import binascii
import os
import re
from dataclasses import dataclass
from functools import cached_property

_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_CR = ord("\r")
_FOLDING_WHITE_SPACE = (ord(" "), ord("\t"))
_TOKEN = r"[^\s()<>@,;:\\\"/\[\]?=]+"
_PARAM = re.compile(
    r';\s*(' + _TOKEN + r')\s*=\s*("(?:[^"\\]|\\.)*"|' + _TOKEN + r')', re.DOTALL
)
# RFC 2046 section 5.1.1: 1 to 70 of bchars, not ending in a space (bcharsnospace).
_VALID_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_BOUNDARY_PARAM = re.compile(r"boundary(\*.*)?", re.IGNORECASE | re.DOTALL)  # RFC 2231 also names boundary*, boundary*0...
_EMBEDDED_MESSAGES = ("message/rfc822", "message/global")  # shown by clients as messages of their own
_DELIMITER_LINE_END = re.compile(rb"(?:--)?[ \t]*(\r\n|\r|\n|\Z)")  # after "--boundary", any reader's way
DEFAULT_MAX_DEPTH = 50
DECODE_CHUNK = 1 << 20  # bytes of base64 text decoded at a time
HEADER_CHUNK = 1 << 16  # bytes read at a time while looking for the end of a spooled message's headers
# Every byte outside the base64 alphabet: bytes.translate deletes them several times faster than a regex.
# (Leaving them to a2b_base64 instead made the carry between pieces grow with a body of line breaks
# after an unfinished group: quadratic, 9.5 s for 16 MB.)
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
        if b":" not in raw:
            raise MimeError(f"header line without a colon: {raw[:60]!r}")
        return cls(field_name(raw), raw)

    @property
    def value(self) -> str:
        """Unfolded value with surrounding white space removed (undecodable bytes kept as surrogates)."""
        raw_value = self.raw.partition(b":")[2]
        # Removing CRLF pairs, then what LFs remain, is what removing every match of \r?\n does.
        unfolded = raw_value.replace(b"\r\n", b"").replace(b"\n", b"")
        return unfolded.strip().decode("utf-8", "surrogateescape")


def field_name(raw: bytes) -> str:
    """The name of a header field (undecodable bytes replaced, surrounding white space removed)."""
    return raw.partition(b":")[0].decode("ascii", "replace").strip()


def split_headers(data: bytes, start: int = 0, end: int | None = None) -> tuple[list[Header], int]:
    """Split ``data[start:end]`` into its header fields and the offset in ``data`` where the body starts.

    A line starting with white space continues the previous field. A line
    without a colon ends the header block (as most MTAs treat it) and starts
    the body; a message without a blank line has an empty body.
    """
    fields: list[list[int]] = []  # [start, end] of each field: a field is sliced once, when its last line is known
    pos = start
    length = len(data) if end is None else end
    while pos < length:
        line_end, next_pos = _line_bounds(data, pos, length)
        if line_end == pos:
            next_body = next_pos
            break
        if data[pos] in _FOLDING_WHITE_SPACE and fields:
            fields[-1][1] = line_end  # re-slicing the field per line was quadratic: 80,000 lines took 1.9 s
        elif data.find(b":", pos, line_end) >= 0:
            fields.append([pos, line_end])
        else:
            next_body = pos
            break
        pos = next_pos
    else:
        next_body = length
    return [Header.from_raw(data[field_start:field_end]) for field_start, field_end in fields], next_body


def _line_bounds(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Where the line at ``pos`` ends before its CRLF or LF, and where the next line starts (``end`` at most).

    ``bytes.find`` of the LF is a memchr; with a regex search for ``\\r?\\n`` per line,
    splitting a message's headers took twice as long.
    """
    newline = data.find(b"\n", pos, end)
    if newline < 0:
        return end, end
    if newline > pos and data[newline - 1] == _CR:
        return newline - 1, newline + 1
    return newline, newline + 1


def parse_content_type(value: str | None) -> tuple[str, dict[str, str]]:
    """Return the lower-case ``type/subtype`` and the parameters (lower-case names, unquoted values)."""
    if not value:
        return "text/plain", {}
    main, _, _ = value.partition(";")
    ctype = main.strip().lower() or "text/plain"
    if "/" not in ctype:
        ctype = "text/plain"
    params: dict[str, str] = {}
    for name, raw in _raw_parameters(value):
        if raw.startswith('"'):
            raw = raw[1:-1]
            if "\\" in raw:  # rare: most quoted values need no regex substitution
                raw = re.sub(r"\\(.)", r"\1", raw)
        params.setdefault(name.lower(), raw)
    return ctype, params


def _raw_parameters(value: str) -> list[tuple[str, str]]:
    """Every ``name=value`` parameter of a header value, in order, as written (quotes included)."""
    semicolon = value.find(";")
    return _PARAM.findall(value, semicolon) if semicolon >= 0 else []


def has_one_valid_boundary(value: str | None) -> bool:
    """Whether a Content-Type value names its boundary once, plainly, as RFC 2046 allows it.

    :func:`parse_content_type` takes the first ``boundary`` and knows no RFC
    2231 parameters; a reader that takes the last one, decodes ``boundary*``,
    or strips a trailing space (Python's email) finds other parts in the same body.
    """
    boundaries = [(name.lower(), raw) for name, raw in _raw_parameters(value or "") if _BOUNDARY_PARAM.fullmatch(name)]
    if [name for name, _ in boundaries] != ["boundary"]:
        return False
    return bool(_VALID_BOUNDARY.fullmatch(boundaries[0][1].strip('"')))


def has_uniform_delimiter_lines(data: bytes, boundary: str, start: int = 0, end: int | None = None) -> bool:
    """Whether every delimiter line of the multipart body ``data[start:end]`` starts and ends with the same line
    break, CRLF or LF.

    :func:`multipart_spans` ends lines at LF; readers that also end them at a
    bare CR (Python's email, RFC 5322 obsolete text), or only at CRLF, find
    other delimiters where line breaks are bare or mixed around one.
    """
    end = len(data) if end is None else end
    delimiter = b"--" + boundary.encode("utf-8", "surrogateescape")
    breaks = set()
    pos = data.find(delimiter, start, end)
    while pos >= 0:
        before = data[max(start, pos - 2):pos]
        line_end = _DELIMITER_LINE_END.match(data, pos + len(delimiter), end)
        if line_end and (pos == start or before[-1:] in (b"\r", b"\n")):
            breaks.add(b"\r\n" if before == b"\r\n" else before[-1:])
            breaks.add(line_end.group(1))
        pos = data.find(delimiter, pos + len(delimiter), end)
    breaks.discard(b"")  # the start and the end of the body
    return breaks <= {b"\r\n"} or breaks == {b"\n"}


def decode_transfer_encoding(body, cte: str) -> bytes:
    """Decode a body (bytes or a memoryview) by its Content-Transfer-Encoding; other encodings give it as it is."""
    if cte == "base64":
        view = memoryview(body)
        return decode_base64_chunks(view[start:start + DECODE_CHUNK] for start in range(0, len(body), DECODE_CHUNK))
    if cte == "quoted-printable":
        return binascii.a2b_qp(body)
    return bytes(body)


def decode_base64_chunks(chunks) -> bytes:
    """Decode base64 text given in pieces, as lenient as mail readers are.

    Bytes outside the alphabet (line breaks, stray characters) are ignored,
    the text ends at the first ``=``, and missing padding is tolerated.
    Decoding a piece at a time, four characters to a group, means a large
    body never has a cleaned copy of itself in memory beside the result.
    """
    decoded = []
    carry = b""
    for chunk in chunks:
        cleaned = carry + bytes(chunk).translate(None, _NOT_BASE64)
        end = cleaned.find(b"=")
        if end >= 0:
            carry = cleaned[:end]
            break
        whole_groups = len(cleaned) - len(cleaned) % 4
        decoded.append(binascii.a2b_base64(cleaned[:whole_groups]))
        carry = cleaned[whole_groups:]
    try:
        decoded.append(binascii.a2b_base64(carry + b"=" * (-len(carry) % 4)))
    except binascii.Error as exc:
        raise MimeError(f"corrupt base64: {exc}") from None
    return b"".join(piece for piece in decoded if piece)  # one piece is returned as it is, not copied


class Entity:
    """A MIME entity: its raw header fields and its body, both byte-exact slices of the input.

    Every entity of a message shares the message's bytes and knows its place
    in them by offsets; ``raw`` and ``body`` are sliced when asked for (bind
    them once in a loop) and never kept. A part deep in a large message thus
    costs no memory until it is read, and nothing after: holding a copy per
    nesting level made a 37 MB attachment cost four times its size.
    """

    def __init__(self, data: bytes, depth: int = 0, max_depth: int = DEFAULT_MAX_DEPTH,
                 start: int = 0, end: int | None = None):
        self._data = data
        self._start = start
        self._end = len(data) if end is None else end
        self.headers, self._body_start = split_headers(data, start, self._end)
        self.header_bytes = data[start:self._body_start]
        self.depth = depth
        self.max_depth = max_depth

    @property
    def raw(self) -> bytes:
        if self._start == 0 and self._end == len(self._data):
            return self._data
        return self._data[self._start:self._end]

    @property
    def body(self) -> bytes:
        return self._data[self._body_start:self._end]

    @property
    def size(self) -> int:
        return self._end - self._start

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

    @cached_property
    def cte(self) -> str:
        return (self.get("Content-Transfer-Encoding") or "7bit").strip().lower()

    @property
    def is_multipart(self) -> bool:
        return self.content_type.startswith("multipart/") and bool(self.params.get("boundary"))

    @cached_property
    def structure_is_ambiguous(self) -> bool:
        """Whether mail clients may find other parts in this multipart than :attr:`parts` holds (EFAIL by
        parser differential): a boundary named twice, in RFC 2231 form or not as RFC 2046 allows it, or
        delimiter lines with bare CR, or CRLF and LF mixed, around them. Several Content-Type fields too:
        readers differ on which one counts."""
        if not self.content_type.startswith("multipart/"):
            return False
        if [h.name.lower() for h in self.headers].count("content-type") != 1:
            return True
        if not has_one_valid_boundary(self.get("Content-Type")):
            return True
        return not has_uniform_delimiter_lines(self._data, self.params["boundary"], self._body_start, self._end)

    def decoded_body(self) -> bytes:
        return decode_transfer_encoding(memoryview(self._data)[self._body_start:self._end], self.cte)

    @cached_property
    def part_spans(self) -> list[tuple[int, int]]:
        """Where each body part of a multipart lies in ``body``; empty for anything else."""
        if not self.is_multipart:
            return []
        return multipart_spans(self._data, self.params["boundary"], self._body_start, self._end)

    @cached_property
    def parts(self) -> list["Entity"]:
        """The body parts of a multipart, each a byte-exact slice; empty for anything else."""
        if not self.is_multipart:
            return []
        if self.depth + 1 > self.max_depth:
            raise DepthLimitExceeded(f"MIME nesting deeper than {self.max_depth}")
        base = self._body_start
        return [Entity(self._data, self.depth + 1, self.max_depth, base + start, base + end)
                for start, end in self.part_spans]

    def walk(self):
        """Yield this entity and every entity below it, depth first."""
        yield self
        for part in self.parts:
            yield from part.walk()

    @property
    def embedded_message(self) -> "Entity | None":
        """The message a ``message/rfc822`` entity holds as it is (RFC 2046 section 5.2.1: never encoded), else None."""
        if self.content_type not in _EMBEDDED_MESSAGES or self.cte not in ("7bit", "8bit", "binary"):
            return None
        if self.depth + 1 > self.max_depth:
            raise DepthLimitExceeded(f"MIME nesting deeper than {self.max_depth}")
        return Entity(self._data, self.depth + 1, self.max_depth, self._body_start, self._end)

    def walk_with_embedded(self):
        """:meth:`walk`, entering the messages of ``message/rfc822`` parts too: clients open those as
        messages of their own."""
        yield self
        embedded = self.embedded_message
        for part in self.parts if embedded is None else [embedded]:
            yield from part.walk_with_embedded()

    def field_spans(self, selected) -> list[tuple[int, int]]:
        """Where the header fields whose name ``selected(name)`` picks lie: offsets in the message's bytes,
        each field with its line break."""
        spans = []
        pos = self._start
        for header in self.headers:  # consecutive lines from the entity's start, folded ones inside ``raw``
            end = pos + len(header.raw)
            end += 2 if self._data[end:end + 2] == b"\r\n" else 1 if self._data[end:end + 1] == b"\n" else 0
            if selected(header.name):
                spans.append((pos, end))
            pos = end
        return spans


def body_without_part_fields(entity: Entity, selected) -> bytes | None:
    """``entity.body`` without the header fields ``selected(name)`` picks in the header block of any part
    below it, or of any message embedded there, byte for byte otherwise; None when no part has one."""
    spans = [span for part in entity.walk_with_embedded() if part is not entity for span in part.field_spans(selected)]
    if not spans:
        return None
    data, pos, pieces = entity._data, entity._body_start, []
    for start, end in spans:  # walked in document order, so the spans are in order and apart
        pieces.append(data[pos:start])
        pos = end
    pieces.append(data[pos:entity._end])
    return b"".join(pieces)


def multipart_spans(data: bytes, boundary: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Offsets, from ``start``, of each body part of the multipart body ``data[start:end]`` (RFC 2046 5.1.1).

    A part runs from after its delimiter line to before the line break that
    precedes the next delimiter; that line break belongs to the delimiter.
    """
    end = len(data) if end is None else end
    delimiter = re.escape(b"--" + boundary.encode("utf-8", "surrogateescape"))
    # A pattern that starts with a literal lets re jump between candidates with a fast
    # search (an "\A or \r?\n" start made it step byte by byte); the CR and the start of the
    # body are checked by hand.
    rest = delimiter + rb"(--)?[ \t]*(?:\r?\n|\Z)"
    first = re.compile(rest).match(data, start, end)
    following = re.compile(rb"\n" + rest).finditer(data, first.end() if first else start, end)
    spans = []
    part_start = None
    for match in ([first] if first else []) + list(following):
        line_break = match.start() - (match.start() > start and data[match.start() - 1:match.start()] == b"\r")
        if part_start is not None:
            spans.append((part_start - start, line_break - start))
        if match.group(1):
            return spans
        part_start = match.end()
    if part_start is not None:  # missing close delimiter: the last part runs to the end
        spans.append((part_start - start, end - start))
    return spans


class SpooledEntity(Entity):
    """A whole message in a file (the daemon's spool): its headers are read at once, the rest when needed.

    A large encrypted message is mostly one base64 body. Decoding it straight
    from the file keeps the message text itself out of memory, so only the
    ciphertext and the plaintext are ever held (issue #6: peak memory within
    three times the message size). Anything else that needs the bytes loads
    the file then.
    """

    def __init__(self, file, max_depth: int = DEFAULT_MAX_DEPTH):
        self.file = file
        head = _read_header_block(file)
        self._start = 0
        self._end = os.fstat(file.fileno()).st_size
        self.headers, self._body_start = split_headers(head)
        self.header_bytes = head[:self._body_start]
        self.depth = 0
        self.max_depth = max_depth

    @cached_property
    def _data(self) -> bytes:
        self.file.seek(0)
        return self.file.read()

    def decoded_body(self) -> bytes:
        if self.cte != "base64" or "_data" in self.__dict__:
            return super().decoded_body()
        self.file.seek(self._body_start)
        return decode_base64_chunks(iter(lambda: self.file.read(DECODE_CHUNK), b""))


def _read_header_block(file) -> bytes:
    """The file from its start up to and including the blank line after the headers (or all of it)."""
    file.seek(0)
    head = bytearray()
    while True:
        chunk = file.read(HEADER_CHUNK)
        searched_from = max(0, len(head) - 3)  # its blank line may have started in the last chunk
        head += chunk
        if not chunk or _BLANK_LINE.search(head, searched_from):
            return bytes(head)


def parse(data, max_depth: int = DEFAULT_MAX_DEPTH) -> Entity:
    """An entity from bytes, or from a binary file holding a whole message (see :class:`SpooledEntity`)."""
    if hasattr(data, "read"):
        return SpooledEntity(data, max_depth)
    return Entity(bytes(data), max_depth=max_depth)  # bytes stay as they are; a bytearray becomes bytes
