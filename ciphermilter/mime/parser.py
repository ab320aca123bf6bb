"""MIME syntax: header lines, Content-Type parameters, multipart delimiters, transfer encodings.

Pure scanners over bytes that give offsets and values, never objects of the
model (:mod:`ciphermilter.mime.model` builds those from them), so the model
and its parser stay one import apart. Each one is linear in its input: the
comments give the measurements that made them so.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable
from typing import BinaryIO

_CR = ord("\r")
_FOLDING_WHITE_SPACE = (ord(" "), ord("\t"))
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_TOKEN = r"[^\s()<>@,;:\\\"/\[\]?=]+"
_PARAM = re.compile(
    r';\s*(' + _TOKEN + r')\s*=\s*("(?:[^"\\]|\\.)*"|' + _TOKEN + r')', re.DOTALL
)
# RFC 2046 section 5.1.1: 1 to 70 of bchars, not ending in a space (bcharsnospace).
_VALID_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_BOUNDARY_PARAM = re.compile(r"boundary(\*.*)?", re.IGNORECASE | re.DOTALL)  # RFC 2231 also names boundary*, boundary*0...
_DELIMITER_LINE_END = re.compile(rb"(?:--)?[ \t]*(\r\n|\r|\n|\Z)")  # after "--boundary", any reader's way
_QP_EQUALS_BARE_CR = re.compile(rb"=(?=\r(?!\n))")  # "=" then a CR that ends no line: no soft line break
_BARE_CR = re.compile(rb"\r(?!\n)")
DECODE_CHUNK = 1 << 20  # bytes of base64 text decoded at a time
HEADER_CHUNK = 1 << 16  # bytes read at a time while looking for the end of a spooled message's headers
# Every byte outside the base64 alphabet: bytes.translate deletes them several times faster than a regex.
# (Leaving them to a2b_base64 instead made the carry between pieces grow with a body of line breaks
# after an unfinished group: quadratic, 9.5 s for 16 MB.)
_NOT_BASE64 = bytes(sorted(set(range(256)) - set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")))

Span = tuple[int, int]  # [start, end) offsets in the message's bytes


class MimeError(ValueError):
    """The message cannot be parsed as MIME."""


class DepthLimitExceeded(MimeError):
    """Multiparts are nested deeper than allowed."""


def field_name(raw: bytes) -> str:
    """The name of a header field (undecodable bytes replaced, surrounding white space removed)."""
    return raw.partition(b":")[0].decode("ascii", "replace").strip()


def field_spans(data: bytes, start: int = 0, end: int | None = None) -> tuple[list[Span], int]:
    """Where each header field of ``data[start:end]`` lies (without its final line break), and the offset in
    ``data`` where the body starts.

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
    return [(field_start, field_end) for field_start, field_end in fields], next_body


def _line_bounds(data: bytes, pos: int, end: int) -> Span:
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


def multipart_spans(data: bytes, boundary: str, start: int = 0, end: int | None = None) -> list[Span]:
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


def decode_transfer_encoding(body: bytes | memoryview, cte: str) -> bytes:
    """Decode a body (bytes or a memoryview) by its Content-Transfer-Encoding; other encodings give it as it is.

    Quoted-printable: ``binascii.a2b_qp`` takes "=" and a bare CR for a soft
    line break and drops the rest of the line, which RFC 2045 readers (Perl's
    MIME::QuotedPrint in SpamAssassin) show: so such an "=" is kept as a
    literal one, as RFC 2045 section 6.7 advises for an "=" that starts no
    escape (round-6 attack F3: a hidden line inside a signed block).
    """
    if cte == "base64":
        view = memoryview(body)
        return decode_base64_chunks(view[start:start + DECODE_CHUNK] for start in range(0, len(body), DECODE_CHUNK))
    if cte == "quoted-printable":
        return binascii.a2b_qp(_QP_EQUALS_BARE_CR.sub(b"=3D", body))
    return bytes(body)


def has_bare_cr(data: bytes) -> bool:
    """Whether ``data`` holds a CR that is not part of a CRLF.

    RFC 5322 allows none in a header block, and readers differ on it: CPython's
    ``email`` ends a line there (a field behind it is a field of its own, two
    end the header block), Postfix and ciphermilter do not (round-6 attacks
    F4 to F6).
    """
    return data.find(b"\r") != -1 and _BARE_CR.search(data) is not None


def decode_base64_chunks(chunks: Iterable[bytes | memoryview]) -> bytes:
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


def read_header_block(file: BinaryIO) -> bytes:
    """The file from its start up to and including the blank line after the headers (or all of it)."""
    file.seek(0)
    head = bytearray()
    while True:
        chunk = file.read(HEADER_CHUNK)
        searched_from = max(0, len(head) - 3)  # its blank line may have started in the last chunk
        head += chunk
        if not chunk or _BLANK_LINE.search(head, searched_from):
            return bytes(head)
