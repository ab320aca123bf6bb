"""The X-CipherMail-Info header contract (``shared/spec/info-headers.md``).

Format handlers record what they found in an :class:`InfoHeaders`; this module
owns the names, the value rules (printable ASCII, folded never cut) and the
test for headers a sender may have forged.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

from ciphermilter import mime
from ciphermilter.core.plan import check_header_name, check_header_value

INFO_PREFIX = "X-CipherMail-Info-"
# Headers in these namespaces report a gateway's verdict. Whoever sent the
# message must never be able to set one, so every one that arrives is removed.
# X-Djigzo- is the CipherMail gateway's former name; its users' rules still read it.
RESERVED_PREFIXES = ("x-ciphermail-", "x-djigzo-")
FOLD_WIDTH = 78


def is_reserved(name: str) -> bool:
    """True for a header name in a namespace only the gateway may write (any case)."""
    return name.strip().lower().startswith(RESERVED_PREFIXES)


_RESERVED_BEHIND_BARE_CR = re.compile(rb"\r(?!\n)\s*(?:" + b"|".join(p.encode() for p in RESERVED_PREFIXES) + rb")",
                                      re.IGNORECASE)


def hides_reserved_field(raw: bytes) -> bool:
    """True for a raw header field that holds a reserved name behind a bare CR.

    The MTA and we read one field, ``Subject: x\\rX-CipherMail-Info-...: True``;
    CPython's ``email`` ends the line at the CR and reads a forged result of
    ours (round-6 attack F6). The ``find`` keeps the usual field at C speed (``in`` on bytes first tries the
    needle as an integer and builds a TypeError to discard: 1 k instructions a field).
    """
    return raw.find(b"\r") != -1 and _RESERVED_BEHIND_BARE_CR.search(raw) is not None


def header_block_is_ambiguous(entity: mime.Entity) -> bool:
    """Whether readers may find other fields in ``entity``'s header block than we do, once forged fields are
    removed: a bare CR ends a line for some (CPython's ``email``: a From: or Content-Type of the sender's
    behind it, or two ending the header block early above the content, round-6 attacks F4 and F5), not for
    the MTA or us. Fields removed as forged (:func:`is_reserved`, :func:`hides_reserved_field`) reach no
    reader. The whole block is searched first, at C speed: a bare CR is rare."""
    return mime.has_bare_cr(entity.header_bytes) and any(
        mime.has_bare_cr(header.raw) for header in entity.headers
        if not is_reserved(header.name) and not hides_reserved_field(header.raw))


def printable(text: str) -> str:
    """Make ``text`` printable ASCII: other characters become ``\\XX`` per UTF-8 byte (RFC 4514 style)."""
    if text.isascii() and text.isprintable():  # the usual case, at C speed
        return text
    out = []
    for char in text:
        if " " <= char <= "~":
            out.append(char)
        else:
            out.extend(f"\\{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    return "".join(out)


def fold(name: str, value: str, width: int = FOLD_WIDTH) -> str:
    """Fold ``value`` at spaces (milter form: the space becomes LF plus space) so lines stay near ``width``.

    Unfolding (removing the LF) gives back ``value`` exactly; a word longer
    than the width stays whole, because a value is never cut.
    """
    room = width - len(name) - 2  # the first line also holds "Name: "
    if len(value) <= room:
        return value
    lines: list[str] = []
    words: list[str] = []  # of the line being filled, joined once it is full: adding them to a string one by
    length = -1  # one was quadratic on a value of spaces (800,000: 9.6 s). Its length joined; -1: no word yet
    for word in value.split(" "):
        if length > 0 and length + 1 + len(word) > room and word:  # a fold before an empty word leaves a blank line
            lines.append(" ".join(words))
            words, length, room = [word], len(word), width - 1
        else:
            words.append(word)
            length += 1 + len(word)
    lines.append(" ".join(words))
    return "\n ".join(lines)


@functools.lru_cache(maxsize=1024)  # the same few names on every message; checking them is a regex each
def info_name(name: str, index: int | None = None, level: int | None = None) -> str:
    parts = [INFO_PREFIX + name]
    parts += [str(n) for n in (index, level) if n is not None]
    return check_header_name("-".join(parts))


class InfoHeaders:
    """An ordered list of info headers for one message, in the order they will be added."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, name: str, value: str, *, index: int | None = None, level: int | None = None) -> None:
        """Add ``X-CipherMail-Info-<name>[-<index>][-<level>]: value``."""
        if index is not None and level is None:
            raise ValueError("an INDEX needs a LEVEL")
        full = info_name(name, index, level)
        self.items.append((full, check_header_value(fold(full, printable(value)))))

    def flag(self, name: str) -> None:
        """Add a flag header; flags are written only when true (spec, common rules)."""
        if not self.has(name):
            self.add(name, "True")

    def boolean(self, name: str, value: bool, *, index: int | None = None, level: int | None = None) -> None:
        self.add(name, "True" if value else "False", index=index, level=level)

    def has(self, name: str) -> bool:
        full = (INFO_PREFIX + name).lower()
        return any(existing.lower() == full for existing, _ in self.items)

    def extend(self, other: "InfoHeaders") -> None:
        for full, value in other.items:
            if not (_is_flag_value(value) and any(n.lower() == full.lower() for n, _ in self.items)):
                self.items.append((full, value))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def as_dict(self) -> dict[str, str]:
        """Name to unfolded value, for reports and tests."""
        return {name: value.replace("\n", "") for name, value in self.items}


def _is_flag_value(value: str) -> bool:
    return value == "True"
