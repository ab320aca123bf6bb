"""OpenPGP ASCII armor (RFC 4880 section 6, RFC 9580 section 6.2): find blocks in text, decode one.

One reader for every caller: a message's parts (lenient, as mail readers
are: any base64 garbage is skipped, every packet we act on carries its own
integrity) and key files an administrator imports or a message carries
(``strict``: RFC 4880 "Key: Value" headers and clean base64, so that a
damaged key is refused with a reason rather than half read). pgpy checks the
CRC-24 in pure Python; here it is table-driven and only asked afterwards
(:func:`checksum_mismatch`), to explain a failure.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from ciphermilter.formats.openpgp.packets import OpenPGPError

ARMOR_BEGIN = b"-----BEGIN PGP "  # every armor line starts so (RFC 9580 section 6.2)
ARMOR_MESSAGE = b"-----BEGIN PGP MESSAGE-----"  # an encrypted (or signed, compressed) message's armor line
_ARMOR_HEADER_LINE = re.compile(rb"-----BEGIN PGP ([A-Z ,/0-9]+)-----")
_ARMOR_CHECKSUM = re.compile(rb"=[A-Za-z0-9+/]{4}")
_CLEAN_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")  # what base64.b64decode(validate=True) accepts


@dataclass
class Armor:
    kind: str  # "MESSAGE", "SIGNATURE", "PUBLIC KEY BLOCK", ...
    headers: dict[str, str]
    data: bytes
    checksum: bytes | None  # the 3 CRC-24 bytes of the "=XXXX" line, when present
    clean: bool  # the body held only base64 lines and one checksum line: no text the decoder skipped


@dataclass
class ArmorSpan:
    kind: str  # as in Armor, plus "SIGNED MESSAGE" for cleartext signatures
    start: int
    end: int  # just past the END line's line break


def _crc24_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
        table.append(crc & 0xFFFFFF)
    return table


_CRC24_TABLE = _crc24_table()


def crc24(data: bytes) -> int:
    """The armor checksum (RFC 4880 section 6.1), table-driven."""
    crc = 0xB704CE
    table = _CRC24_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFF) ^ table[(crc >> 16) ^ byte]
    return crc


def find_at_line_start(text: bytes, marker: bytes, pos: int = 0) -> int:
    """The first ``marker`` at or after ``pos`` that starts a line, or -1.

    A search for the line break before the marker: markers inside a line are
    skipped by ``bytes.find`` itself. Looking at each marker and then for its
    line's end was quadratic on one long line of markers (issue 14: 320,000
    on a 16 MB line took 75 s).
    """
    if pos == 0 and text.startswith(marker):
        return 0
    found = text.find(b"\n" + marker, max(pos - 1, 0))
    return found + 1 if found != -1 else -1


def _line_end(text: bytes, pos: int) -> int:
    end = text.find(b"\n", pos)
    return len(text) if end == -1 else end


def find_armor(text: bytes) -> list[ArmorSpan]:
    """Every armored block in ``text``, in order; a block without its END line runs to the end.

    Plain ``bytes.find`` for the markers: regular expressions anchored at line
    starts scan a 20 KB part byte by byte. Each byte is searched a bounded
    number of times (tests/test_linear.py counts it).
    """
    spans = []
    pos = 0
    while (start := find_at_line_start(text, ARMOR_BEGIN, pos)) != -1:
        header_end = _line_end(text, start)
        match = _ARMOR_HEADER_LINE.fullmatch(text[start:header_end].rstrip())
        if not match:
            pos = header_end  # the next armor line starts after this line
            continue
        kind = match.group(1)
        # A cleartext-signed message ends with its signature block's END line.
        marker = b"-----END PGP " + (b"SIGNATURE" if kind == b"SIGNED MESSAGE" else kind) + b"-----"
        stop = _block_stop(text, find_at_line_start(text, marker, header_end), marker)
        spans.append(ArmorSpan(kind.decode("ascii"), start, stop))
        pos = stop
    return spans


def _block_stop(text: bytes, found: int, marker: bytes) -> int:
    """Where a block whose END line starts at ``found`` stops: past the line break of a bare END line, but
    right after the marker when text follows it on that line (a reader sees that text, nothing signs or
    encrypts it: it is text beside the block). A block without its END line runs to the end."""
    if found == -1:
        return len(text)
    after, line_end = found + len(marker), _line_end(text, found)
    return after if text[after:line_end].strip() else line_end + 1


def dearmor(block: bytes, *, strict: bool = False) -> Armor:
    """Decode the first armored block of ``block`` (RFC 4880 section 6.2).

    The CRC-24 is parsed but not checked here: every packet we act on carries
    its own integrity (MDC, signature), and RFC 9580 makes the checksum
    optional. :func:`checksum_mismatch` explains a failure afterwards.

    Lenient by default, as mail readers are: a header is any line with a colon
    and the base64 decoder skips what is not base64, but :attr:`Armor.clean`
    says whether it skipped anything: a line written into a cleartext
    signature's armor (after the checksum, or of non-base64 words between the
    base64 lines) is shown to the reader inside the block and signed by
    nobody, and gpg 2.2 is as lenient ("Good signature"). ``strict`` (key
    files): only "Key: Value" lines are headers and the base64 must be clean,
    so that a damaged key raises :class:`OpenPGPError` rather than decoding
    to other bytes.
    """
    text = block  # CR before LF is stripped with the white space of each line, and skipped by a2b_base64
    start = find_at_line_start(text, ARMOR_BEGIN)
    header_end = _line_end(text, start) if start != -1 else -1
    match = _ARMOR_HEADER_LINE.fullmatch(text[start:header_end].rstrip()) if start != -1 else None
    if match is None:
        raise OpenPGPError("no armor header line")
    headers, pos = _armor_headers(text, header_end + 1, b": " if strict else b":")
    # The END line of this block's kind: another END line inside the body is text the reader sees there.
    end = text.find(b"\n-----END PGP " + match.group(1) + b"-----", pos - 1)
    body = text[pos:end if end != -1 else len(text)].rstrip()
    last_line_start = body.rfind(b"\n") + 1
    checksum = None
    if _ARMOR_CHECKSUM.fullmatch(body[last_line_start:].strip()):
        checksum = binascii.a2b_base64(body[last_line_start:].strip()[1:])
        body = body[:last_line_start]
    joined = b"".join(body.split())
    clean = _CLEAN_BASE64.fullmatch(joined) is not None
    if strict and not clean:
        raise OpenPGPError("corrupt armor: text that is not base64 in the armor body")
    try:
        data = binascii.a2b_base64(joined if clean else body)
    except binascii.Error as exc:
        raise OpenPGPError(f"corrupt armor: {exc}") from None
    return Armor(match.group(1).decode("ascii"), headers, data, checksum, clean)


def _armor_headers(text: bytes, pos: int, separator: bytes) -> tuple[dict[str, str], int]:
    """The armor headers from ``pos`` (the line after the BEGIN line) and where the base64 body starts: after
    the blank line, or at the first line without ``separator`` (some writers omit both headers and blank line)."""
    headers: dict[str, str] = {}
    while pos < len(text):
        eol = _line_end(text, pos)
        line = text[pos:eol]
        name, _, value = line.strip().partition(b":")
        if not name:  # the blank line: the body follows
            return headers, eol + 1
        if separator not in line:  # no blank line after the header line: the body starts here
            break
        headers[name.strip().decode("ascii", "replace")] = value.strip().decode("utf-8", "replace")
        pos = eol + 1
    return headers, pos


def checksum_mismatch(armor: Armor) -> bool:
    """True when the armor carried a CRC-24 that does not match its data (corrupted in transit)."""
    return armor.checksum is not None and armor.checksum != crc24(armor.data).to_bytes(3, "big")


def enarmor(kind: str, data: bytes) -> str:
    """``data`` armored (RFC 9580 section 6.2) as ``-----BEGIN PGP {kind}-----``: what key exports write."""
    body = base64.b64encode(data).decode("ascii")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    checksum = base64.b64encode(crc24(data).to_bytes(3, "big")).decode("ascii")
    return "\n".join([f"-----BEGIN PGP {kind}-----", "", *lines, f"={checksum}", f"-----END PGP {kind}-----", ""])
