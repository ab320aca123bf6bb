"""Just enough BER reading to lift the ciphertext out of a CMS (Auth)EnvelopedData without copying it.

asn1crypto slices its input at every nesting level it parses, so the
ciphertext of a 50 MB message would exist several times over before
decryption started. Instead the encrypted content is found by its offsets,
the structure around it is rebuilt without it (a few hundred bytes, which
asn1crypto then parses and checks as usual), and the ciphertext goes to the
cipher as views of the decoded message.

Only the path to the encrypted content is read here; anything unexpected on
it returns None, and asn1crypto's full parse of the original decides.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

SEQUENCE = 0x30
SET = 0x31
EXPLICIT_0 = 0xA0  # [0] constructed: ContentInfo's content, or an encryptedContent in pieces
IMPLICIT_0 = 0x80  # [0] primitive: an encryptedContent in one piece
OCTET_STRING = 0x04
OBJECT_IDENTIFIER = 0x06
CONSTRUCTED = 0x20
EMPTY_CONTENT = bytes([IMPLICIT_0, 0])  # what the encrypted content is replaced with in the rebuilt structure


# Indefinite lengths inside one another: a CMS message nests about six (ContentInfo down to the
# pieces of its encrypted content); deeper ones go to asn1crypto's parser, which refuses them.
MAX_INDEFINITE_DEPTH = 16

Ends = dict[int, int]  # content offset of an indefinite-length element -> where its end-of-contents starts


class BerError(ValueError):
    """The bytes are not the BER this module expects."""


class Tlv(NamedTuple):
    """One BER element by its offsets; with indefinite length, ``end`` is where its end-of-contents starts.

    A named tuple, not a frozen dataclass: one is made per element read, and
    a frozen dataclass's ``__init__`` cost a third of lifting a 20 KB message.
    """

    start: int
    tag: int  # the first identifier octet
    length_at: int  # where the length octets start (the identifier may take several octets)
    content: int
    end: int
    indefinite: bool

    @property
    def next(self) -> int:
        """Offset of whatever follows this element."""
        return self.end + 2 if self.indefinite else self.end


def read(buf: memoryview, pos: int, limit: int, depth: int = 0, ends: Ends | None = None) -> Tlv:
    """The element that starts at ``pos`` and must end by ``limit``.

    An indefinite length is found by reading every element inside it, and
    every level of a walk reads its children again. ``ends`` (one dict for
    one walk) keeps each end found, so every element is measured once;
    ``depth`` counts the indefinite lengths being measured, and past
    MAX_INDEFINITE_DEPTH the reader gives up. Without either, 200 nested
    levels made 321 KB cost 15 s, and 10 levels 3.6 s per 1.3 MB.
    """
    if pos >= limit:
        raise BerError("element expected")
    tag = buf[pos]
    length_at = pos + 1
    if tag & 0x1F == 0x1F:  # high tag number: base-128 octets follow
        while length_at < limit and buf[length_at] & 0x80:
            length_at += 1
        length_at += 1
    if length_at >= limit:
        raise BerError("truncated identifier")
    first = buf[length_at]
    content = length_at + 1
    if first == 0x80:
        if not tag & CONSTRUCTED:
            raise BerError("indefinite length on a primitive element")
        end = ends.get(content) if ends is not None else None
        if end is None:
            end = _end_of_contents(buf, content, limit, depth + 1, ends)
            if ends is not None:
                ends[content] = end
        elif end + 2 > limit:
            raise BerError("element runs past its parent")
        return Tlv(pos, tag, length_at, content, end, True)
    if first & 0x80:
        count = first & 0x7F
        if count > 8 or content + count > limit:
            raise BerError("bad length")
        length = int.from_bytes(buf[content:content + count], "big")
        content += count
    else:
        length = first
    if content + length > limit:
        raise BerError("element runs past its parent")
    return Tlv(pos, tag, length_at, content, content + length, False)


def _end_of_contents(buf: memoryview, pos: int, limit: int, depth: int, ends: Ends | None) -> int:
    if depth > MAX_INDEFINITE_DEPTH:
        raise BerError("indefinite lengths nested too deep")
    while pos + 2 <= limit:
        if buf[pos] == 0 and buf[pos + 1] == 0:
            return pos
        pos = read(buf, pos, limit, depth, ends).next
    raise BerError("missing end-of-contents")


def children(buf: memoryview, parent: Tlv, ends: Ends | None = None) -> Iterator[Tlv]:
    pos = parent.content
    while pos < parent.end:
        child = read(buf, pos, parent.end, ends=ends)
        yield child
        pos = child.next


def octets(buf: memoryview, element: Tlv, ends: Ends | None = None) -> list[memoryview]:
    """The pieces of an OCTET STRING (or an implicitly tagged one), primitive or constructed, in order."""
    if not element.tag & CONSTRUCTED:
        return [buf[element.content:element.end]]
    pieces: list[memoryview] = []
    for child in children(buf, element, ends):
        if child.tag & ~CONSTRUCTED != OCTET_STRING:
            raise BerError("constructed OCTET STRING with a piece of another type")
        pieces += octets(buf, child, ends)
    return pieces


def _encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets_ = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets_)]) + octets_


def rebuild(buf: memoryview, path: list[Tlv], replacement: bytes) -> bytes:
    """The whole input with ``path[-1]`` replaced, every element on ``path`` re-encoded around it."""
    new = replacement
    for outer, inner in reversed(list(zip(path, path[1:]))):
        content = bytes(buf[outer.content:inner.start]) + new + bytes(buf[inner.next:outer.end])
        identifier = bytes(buf[outer.start:outer.length_at])
        if outer.indefinite:
            new = identifier + b"\x80" + content + b"\x00\x00"
        else:
            new = identifier + _encode_length(len(content)) + content
    return bytes(buf[:path[0].start]) + new + bytes(buf[path[0].next:])


def _encrypted_content_path(buf: memoryview, content_types: tuple[bytes, ...], ends: Ends) -> list[Tlv] | None:
    """ContentInfo, its [0], the (Auth)EnvelopedData, its EncryptedContentInfo and the encryptedContent."""
    info = read(buf, 0, len(buf), ends=ends)
    if info.tag != SEQUENCE:
        return None
    fields = list(children(buf, info, ends))
    if len(fields) != 2 or fields[0].tag != OBJECT_IDENTIFIER or fields[1].tag != EXPLICIT_0:
        return None
    if bytes(buf[fields[0].content:fields[0].end]) not in content_types:
        return None
    wrapper = fields[1]
    data = read(buf, wrapper.content, wrapper.end, ends=ends)
    if data.tag != SEQUENCE:
        return None
    # version, [0] originatorInfo (optional), recipientInfos (a SET), then the EncryptedContentInfo
    members = list(children(buf, data, ends))
    after_set = [m for i, m in enumerate(members) if i and members[i - 1].tag == SET]
    if not after_set or after_set[0].tag != SEQUENCE:
        return None
    encrypted_info = after_set[0]
    parts = list(children(buf, encrypted_info, ends))  # contentType, contentEncryptionAlgorithm, encryptedContent
    if len(parts) < 3 or parts[2].tag not in (IMPLICIT_0, EXPLICIT_0):
        return None
    return [info, wrapper, data, encrypted_info, parts[2]]


def lift_encrypted_content(der: bytes | bytearray | memoryview, content_types: tuple[bytes, ...]) -> tuple[bytes, list[memoryview]] | None:
    """The structure without its encrypted content, and that content as views of ``der``.

    ``content_types`` are the encoded OIDs (contents octets) of the ContentInfo
    types to lift from. None when ``der`` is not such a structure with its
    encrypted content inside, or not one this reader follows.
    """
    buf = memoryview(der)
    try:
        ends: Ends = {}  # where each indefinite length ends, found once for the whole walk
        path = _encrypted_content_path(buf, content_types, ends)
        if path is None:
            return None
        return rebuild(buf, path, EMPTY_CONTENT), octets(buf, path[-1], ends)
    except (BerError, RecursionError):  # hostile nesting of indefinite lengths included
        return None
