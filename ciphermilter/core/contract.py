"""What the core hands a format handler (S/MIME, OpenPGP) and what it gets back."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from collections.abc import Callable
from typing import TypeVar

from ciphermilter import mime
from ciphermilter.core import harvest
from ciphermilter.core.findings import Facts, Report
from ciphermilter.core.info import InfoHeaders, header_block_is_ambiguous
from ciphermilter.core.seams import NO_KEYS, KeyLookup
from ciphermilter.core.settings import Limits, Settings
from ciphermilter.formats.readers import NO_RULE, ReaderRule

# Called during long work so the MTA does not time out (the milter's progress()).
Progress = Callable[[], None]
Group = TypeVar("Group")  # a handler's key group (its own type: CMS candidates, OpenPGP keys)


class LimitExceeded(Exception):
    """A configured limit was reached; the message passes unchanged with this reason."""


DEADLINE_EXCEEDED = "processing deadline exceeded"


class DeadlineExceeded(LimitExceeded):
    """The per-message processing deadline passed."""


class DecompressionBudget:
    """The bytes decompression may still produce for one mail message.

    Every compressed packet of the message takes from the one budget: nested
    ones, every armored block of a part, every part (three blocks of 600 KiB
    each passed a 1 MiB bound when each block had its own). Bounded so is the
    memory their outputs hold at once.
    """

    def __init__(self, max_output: int):
        self.remaining = max_output
        self.max_output = max_output

    def take(self, produced: int, what: str) -> None:
        """Count ``produced`` bytes; past the budget, a limit whose reason names ``what`` was inflated."""
        self.remaining -= produced
        if self.remaining < 0:
            raise LimitExceeded(f"{what} decompresses to more than {self.max_output} bytes")


def check_part_count(entity: mime.Entity, limit: int) -> None:
    """Bound the parts of a whole entity, at every depth (its parts are parsed once and cached)."""
    for count, _ in enumerate(entity.walk()):
        if count > limit:
            raise LimitExceeded(f"more than {limit} MIME parts")


def is_whole(entity: mime.Entity, whole: bool) -> bool:
    """Whether an entity found where ``whole`` says is whole content: never one whose structure or header
    block mail clients may read otherwise than we do (:attr:`mime.Entity.structure_is_ambiguous`,
    :func:`header_block_is_ambiguous`), nor anything under it. A part that is alone for us may be beside the
    sender's HTML for them (EFAIL by parser differential)."""
    return whole and not entity.structure_is_ambiguous and not header_block_is_ambiguous(entity)


def is_whole_part(parts: list[mime.Entity], parent_whole: bool) -> bool:
    """Whether a part of a multipart is the whole content (spec, "what is decrypted where").

    The root of the message, or of the content under other protection layers,
    is whole; a multipart's lone part is as whole as its parent; parts side by
    side never are, whatever their types: any sibling is content the sender
    chose, and beside it decrypted text can be sent away (EFAIL) or quoted
    back in a reply, and a signature seems to cover what it does not.
    """
    return parent_whole and len(parts) == 1


def parse_content(content: bytes, limits: Limits) -> mime.Entity:
    """Decrypted or unwrapped content as MIME, refused past the depth and part limits before anyone walks it."""
    entity = mime.parse(content, limits.max_mime_depth)
    check_part_count(entity, limits.max_mime_parts)
    return entity


def check_new_content(content: bytes, limits: Limits) -> None:
    """Decrypted (or unpacked) content becomes the message's new body: above max_message_size it is a limit.
    Postfix refuses a replaced body above its message_size_limit ("552 5.3.4 message file too big", a
    permanent error for the client: a 280 KB message once unpacked to 200 MiB here), and max_message_size
    must not exceed that (ciphermilter.conf(5))."""
    if len(content) > limits.max_message_size:
        raise LimitExceeded(f"decrypted content larger than {limits.max_message_size} bytes")


def new_content(content: bytes, limits: Limits, parsed: mime.Entity | None = None) -> mime.Entity:
    """A handler's new content for the message (:attr:`HandlerResult.content`): first bounded by
    max_message_size, then parsed, or ``parsed`` itself when the handler parsed these very bytes already
    (with :func:`parse_content`, so under the same depth and part limits): decrypted content is parsed once."""
    check_new_content(content, limits)
    if parsed is not None and parsed.raw is content:
        return parsed
    return parse_content(content, limits)


@dataclass
class Context:
    store: KeyLookup | None  # None: tests and tools that run the handlers without a key store
    settings: Settings
    from_fields: tuple[str, ...] = ()  # the values of every From: field, for the signer mismatch flags
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    deadline: float | None = None  # time.monotonic() value after which work stops
    progress: Progress | None = None  # called during long work so the MTA does not time out
    # Whom the plaintext is for: the core always sets it from the envelope (core.reader_rule). Handler tests
    # that build a Context themselves get the rule off, every stored key usable, as before the rule.
    readers: ReaderRule = NO_RULE
    harvest: harvest.Batch = field(default_factory=harvest.Batch)  # what the store may keep, written at the end
    # Set by a handler once the store gave a key the reader rule allows for encrypted content it would
    # decrypt (whole content, or any with decrypt_embedded): a limit met after that stopped us from
    # inspecting content we could decrypt (core.Outcome.held_at_limit).
    key_held: bool = False
    # Called once when key_held becomes true: a worker tells the daemon at once, so the finding outlives a
    # kill at the deadline (workers.KeyHeldFlag).
    on_key_held: Callable[[], None] | None = None
    # What the message may still unpack to; None: Limits.decompressed_limit (the core sets it by the message's
    # own size, Limits.decompression_budget).
    decompression: DecompressionBudget | None = None

    def __post_init__(self) -> None:
        if self.decompression is None:
            self.decompression = DecompressionBudget(self.settings.limits.decompressed_limit)

    @property
    def keys(self) -> KeyLookup:
        """The key store to look keys up in: an empty one when the handlers run without a store."""
        return NO_KEYS if self.store is None else self.store

    @property
    def budget(self) -> DecompressionBudget:
        """The message's decompression budget (made in __post_init__ when none was given)."""
        assert self.decompression is not None
        return self.decompression

    def note_keys(self, groups: list[Group], decrypts: bool) -> list[Group]:
        """Pass on the reader rule's key groups for a layer, noting whether they make the content ours to decrypt."""
        if groups and decrypts:
            self.hold_key()
        return groups

    def hold_key(self) -> None:
        """Note that a stored key the reader rule allows opens content we would decrypt (see key_held)."""
        if not self.key_held and self.on_key_held is not None:
            self.on_key_held()
        self.key_held = True

    def check_deadline(self) -> None:
        """Call between expensive steps: raises once the deadline has passed, else reports progress."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineExceeded(DEADLINE_EXCEEDED)
        if self.progress is not None:
            self.progress()


@dataclass
class HandlerResult:
    """A handler's findings, rendered: its info headers, its counters and its part of the report.

    ``content`` is the new content of the message as a complete MIME entity
    (its content headers, a blank line, its body), or ``None`` when the
    content stays as received; ``parsed`` is the handler's own parse of those
    very bytes, if it made one. The core takes the report first, then the
    content through :func:`new_content` (a limit there keeps what the handler
    found in ``--explain``), turns it into header changes and a new body, and
    hands the parsed entity to the next handler as it is.
    """

    info: InfoHeaders = field(default_factory=InfoHeaders)
    content: bytes | None = None
    parsed: mime.Entity | None = None
    facts: Facts = field(default_factory=Facts)
    report: Report = field(default_factory=lambda: Report())
