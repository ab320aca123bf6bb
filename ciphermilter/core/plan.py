"""The edit plan: what the core wants done to a message, in the milter's own terms.

The core never touches a socket. It returns an :class:`EditPlan`, which the
milter glue replays with ``chgheader``/``addheader``/``replacebody`` and which
:func:`apply_plan` replays on bytes for the offline ``ciphermilter decrypt``
command, so both paths produce the same message.

Header values are kept in *milter form*: a folded value continues on a new
line written as ``"\\n"`` followed by a space or tab, never with a CR (libmilter
adds the CR itself). Everything is validated here, at the boundary, so that no
decrypted or sender-controlled text can smuggle a header break into the
message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import BinaryIO

from ciphermilter import mime
from ciphermilter.mime import write

# RFC 5322 section 3.6.8: field names are printable ASCII except the colon.
_FIELD_NAME = re.compile(r"[!-9;-~]+\Z")
# A line feed must always start a continuation line; no CR, no NUL, no other controls.
_BAD_VALUE_CHAR = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]|\n(?![ \t])")
MAX_HEADER_NAME = 200


class PlanError(ValueError):
    """A header edit that would corrupt the message or inject a header."""


def check_header_name(name: str) -> str:
    if not isinstance(name, str) or not _FIELD_NAME.match(name) or len(name) > MAX_HEADER_NAME:
        raise PlanError(f"invalid header name {name!r}")
    return name


def check_header_value(value: str) -> str:
    if not isinstance(value, str):
        raise PlanError(f"header value must be str, not {type(value).__name__}")
    if _BAD_VALUE_CHAR.search(value) or value.endswith("\n"):
        raise PlanError(f"header value contains a control character or a bare line break: {value!r}")
    return value


@dataclass(frozen=True)
class HeaderDelete:
    name: str
    index: int  # 1-based among the headers of this name (case-insensitive), as libmilter counts

    def __post_init__(self) -> None:
        # A deletion names a field the message arrived with and writes nothing, so it cannot inject a
        # header: a forged reserved field with a name RFC 5322 refuses (a space, 8-bit bytes, 300
        # characters) must still be deletable, so only the type is checked here.
        if not isinstance(self.name, str) or not self.name:
            raise PlanError(f"invalid header name {self.name!r}")
        if self.index < 1:
            raise PlanError(f"header index must be >= 1, got {self.index}")


@dataclass(frozen=True)
class HeaderChange:
    name: str
    index: int  # counted after every deletion of the plan has been applied
    value: str

    def __post_init__(self) -> None:
        check_header_name(self.name)
        check_header_value(self.value)
        if self.index < 1:
            raise PlanError(f"header index must be >= 1, got {self.index}")


@dataclass(frozen=True)
class HeaderAdd:
    name: str
    value: str

    def __post_init__(self) -> None:
        check_header_name(self.name)
        check_header_value(self.value)


@dataclass
class EditPlan:
    """Header deletions, changes and additions, and a new body or ``None``.

    Replay order is fixed: deletions (in :meth:`replay_deletions` order), then
    changes, then additions, then the body. The core gives the body as bytes;
    the daemon's worker processes hand a large one over as an open binary file
    (see :mod:`ciphermilter.workers`).
    """

    deletions: list[HeaderDelete] = field(default_factory=list)
    changes: list[HeaderChange] = field(default_factory=list)
    additions: list[HeaderAdd] = field(default_factory=list)
    body: bytes | BinaryIO | None = None

    def replay_deletions(self) -> list[HeaderDelete]:
        """Deletions highest index first per name, so that none shifts the index of a later one."""
        return sorted(self.deletions, key=lambda d: (d.name.lower(), -d.index))


def apply_plan(message: bytes, plan: EditPlan) -> bytes:
    """Replay ``plan`` on ``message`` exactly as Postfix would, returning the new message."""
    headers, body_offset = mime.split_headers(message)
    for deletion in plan.replay_deletions():
        pos = headers.occurrence(deletion.name, deletion.index)
        if pos is not None:
            headers = headers.without(pos)
    for change in plan.changes:
        pos = headers.occurrence(change.name, change.index)
        new = mime.Header.from_raw(write.field(change.name, change.value))
        headers = headers.plus([new]) if pos is None else headers.replacing(pos, new)
    headers = headers.plus(mime.Header.from_raw(write.field(a.name, a.value)) for a in plan.additions)
    body = message[body_offset:] if plan.body is None else plan.body
    return write.entity((h.raw for h in headers), _as_bytes(body))


def _as_bytes(body: bytes | BinaryIO) -> bytes:
    """A body the workers handed over as an open file, read (the offline command holds bytes already)."""
    if isinstance(body, bytes):
        return body
    body.seek(0)
    return body.read()
