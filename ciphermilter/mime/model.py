"""Byte-exact MIME entities: header fields, header lists, entities of bytes or of a spool file.

Signatures are computed over the exact bytes of a part as it travelled, and a
decrypted entity must reach the recipient byte for byte, so nothing here
re-serialises anything: headers keep their raw bytes (folding, case, non-ASCII
included) and every part is a slice of its parent. The stdlib ``email``
package normalises too much for that. The scanners live in
:mod:`ciphermilter.mime.parser`; what is written back goes through
:mod:`ciphermilter.mime.write`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import BinaryIO, overload

from ciphermilter.mime.parser import (DepthLimitExceeded, MimeError, Span, decode_base64_chunks,
                                      decode_transfer_encoding, field_name, field_spans, has_one_valid_boundary,
                                      has_uniform_delimiter_lines, multipart_spans, parse_content_type,
                                      read_header_block, DECODE_CHUNK)

_EMBEDDED_MESSAGES = ("message/rfc822", "message/global")  # shown by clients as messages of their own
DEFAULT_MAX_DEPTH = 50


@dataclass(frozen=True, slots=True)  # slots: every field of every parsed block is one; creating them is 10 % faster
class Header:
    name: str
    raw: bytes  # the whole field, name and folded value, without the final line break

    @classmethod
    def from_raw(cls, raw: bytes) -> Header:
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


class HeaderList:
    """The header fields of an entity, in order; names compare case-insensitively, as libmilter counts them.

    Immutable: an edit gives a new list. Counts per name are taken in one
    pass, when first asked for, so that asking for several names costs one
    walk of a message's (possibly 80,000) fields.
    """

    def __init__(self, fields: Iterable[Header] = ()) -> None:
        self._fields = tuple(fields)

    def __iter__(self) -> Iterator[Header]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    @overload
    def __getitem__(self, index: int) -> Header: ...
    @overload
    def __getitem__(self, index: slice) -> HeaderList: ...
    def __getitem__(self, index: int | slice) -> Header | HeaderList:
        if isinstance(index, slice):
            return HeaderList(self._fields[index])
        return self._fields[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HeaderList) and self._fields == other._fields

    def __hash__(self) -> int:
        return hash(self._fields)

    def __repr__(self) -> str:
        return f"HeaderList({list(self._fields)!r})"

    @cached_property
    def _counts(self) -> Counter[str]:
        return Counter(header.name.lower() for header in self._fields)

    def count(self, name: str) -> int:
        """How many fields are called ``name``."""
        return self._counts[name.lower()]

    def numbered(self) -> Iterator[tuple[Header, int]]:
        """Each field with its 1-based index among the fields of its name (libmilter's header index)."""
        seen: Counter[str] = Counter()
        for header in self._fields:
            key = header.name.lower()
            seen[key] += 1
            yield header, seen[key]

    def occurrence(self, name: str, index: int) -> int | None:
        """Position of the ``index``-th (1-based) field called ``name``, or None."""
        lname = name.lower()
        for pos, (header, number) in enumerate(self.numbered()):
            if number == index and header.name.lower() == lname:
                return pos
        return None

    def first(self, name: str) -> Header | None:
        lname = name.lower()
        return next((header for header in self._fields if header.name.lower() == lname), None)

    def without(self, pos: int) -> HeaderList:
        return HeaderList(self._fields[:pos] + self._fields[pos + 1:])

    def replacing(self, pos: int, header: Header) -> HeaderList:
        return HeaderList(self._fields[:pos] + (header,) + self._fields[pos + 1:])

    def plus(self, headers: Iterable[Header]) -> HeaderList:
        return HeaderList(self._fields + tuple(headers))


def split_headers(data: bytes, start: int = 0, end: int | None = None) -> tuple[HeaderList, int]:
    """The header fields of ``data[start:end]`` and the offset in ``data`` where the body starts
    (:func:`ciphermilter.mime.parser.field_spans` says how a header block ends)."""
    spans, body_start = field_spans(data, start, end)
    raws = [data[field_start:field_end] for field_start, field_end in spans]
    return HeaderList([Header(field_name(raw), raw) for raw in raws]), body_start  # every span has its colon


class Entity:
    """A MIME entity: its raw header fields and its body, both byte-exact slices of the input.

    Every entity of a message shares the message's bytes and knows its place
    in them by offsets; ``raw`` and ``body`` are sliced when asked for (bind
    them once in a loop) and never kept. A part deep in a large message thus
    costs no memory until it is read, and nothing after: holding a copy per
    nesting level made a 37 MB attachment cost four times its size.
    """

    headers: HeaderList
    _bytes: bytes
    header_bytes: bytes
    depth: int
    max_depth: int
    _start: int
    _end: int
    _body_start: int

    def __init__(self, data: bytes, depth: int = 0, max_depth: int = DEFAULT_MAX_DEPTH,
                 start: int = 0, end: int | None = None):
        self._bytes = data
        self._start = start
        self._end = len(data) if end is None else end
        self.headers, self._body_start = split_headers(data, start, self._end)
        self.header_bytes = data[start:self._body_start]
        self.depth = depth
        self.max_depth = max_depth

    @property
    def _data(self) -> bytes:
        """The bytes of the whole message this entity is a part of."""
        return self._bytes

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
        header = self.headers.first(name)
        return None if header is None else header.value

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
        if self.headers.count("content-type") != 1:
            return True
        if not has_one_valid_boundary(self.get("Content-Type")):
            return True
        return not has_uniform_delimiter_lines(self._data, self.params["boundary"], self._body_start, self._end)

    def decoded_body(self) -> bytes:
        return decode_transfer_encoding(memoryview(self._data)[self._body_start:self._end], self.cte)

    @cached_property
    def part_spans(self) -> list[Span]:
        """Where each body part of a multipart lies in ``body``; empty for anything else."""
        if not self.is_multipart:
            return []
        return multipart_spans(self._data, self.params["boundary"], self._body_start, self._end)

    @cached_property
    def parts(self) -> list[Entity]:
        """The body parts of a multipart, each a byte-exact slice; empty for anything else."""
        if not self.is_multipart:
            return []
        self._check_depth()
        base = self._body_start
        return [Entity(self._data, self.depth + 1, self.max_depth, base + start, base + end)
                for start, end in self.part_spans]

    def _check_depth(self) -> None:
        if self.depth + 1 > self.max_depth:
            raise DepthLimitExceeded(f"MIME nesting deeper than {self.max_depth}")

    def walk(self) -> Iterator[Entity]:
        """Yield this entity and every entity below it, depth first."""
        yield self
        for part in self.parts:
            yield from part.walk()

    @property
    def embedded_message(self) -> Entity | None:
        """The message a ``message/rfc822`` entity holds as it is (RFC 2046 section 5.2.1: never encoded), else None."""
        if self.content_type not in _EMBEDDED_MESSAGES or self.cte not in ("7bit", "8bit", "binary"):
            return None
        self._check_depth()
        return Entity(self._data, self.depth + 1, self.max_depth, self._body_start, self._end)

    def walk_with_embedded(self) -> Iterator[Entity]:
        """:meth:`walk`, entering the messages of ``message/rfc822`` parts too: clients open those as
        messages of their own."""
        yield self
        embedded = self.embedded_message
        for part in self.parts if embedded is None else [embedded]:
            yield from part.walk_with_embedded()

    def field_spans(self, selected: Callable[[str], bool]) -> list[Span]:
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


def body_without_part_fields(entity: Entity, selected: Callable[[str], bool]) -> bytes | None:
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


class SpooledEntity(Entity):
    """A whole message in a file (the daemon's spool): its headers are read at once, the rest when needed.

    A large encrypted message is mostly one base64 body. Decoding it straight
    from the file keeps the message text itself out of memory, so only the
    ciphertext and the plaintext are ever held (issue #6: peak memory within
    three times the message size). Anything else that needs the bytes loads
    the file then.
    """

    def __init__(self, file: BinaryIO, max_depth: int = DEFAULT_MAX_DEPTH):
        self.file = file
        head = read_header_block(file)
        self._start = 0
        self._end = os.fstat(file.fileno()).st_size
        self.headers, self._body_start = split_headers(head)
        self.header_bytes = head[:self._body_start]
        self.depth = 0
        self.max_depth = max_depth

    @cached_property
    def _data(self) -> bytes:
        """The file's bytes, read when first needed, then kept."""
        self.file.seek(0)
        return self.file.read()

    def decoded_body(self) -> bytes:
        if self.cte != "base64" or "_data" in self.__dict__:
            return super().decoded_body()
        self.file.seek(self._body_start)
        return decode_base64_chunks(iter(lambda: self.file.read(DECODE_CHUNK), b""))


def parse(data: bytes | bytearray | memoryview | BinaryIO, max_depth: int = DEFAULT_MAX_DEPTH) -> Entity:
    """An entity from bytes, or from a binary file holding a whole message (see :class:`SpooledEntity`)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return Entity(bytes(data), max_depth=max_depth)  # bytes stay as they are; a bytearray becomes bytes
    return SpooledEntity(data, max_depth)
