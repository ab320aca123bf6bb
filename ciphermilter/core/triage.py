"""Decide once, from the header block, what a message needs: the verdict the glue and the core share.

Internal recipient, message size, forged headers and "may this carry
protected content" were each decided in the milter glue and again in the
core, in two processes with two store lookups (review 2026-12, section 2,
hops 3/17, 6/18, 7/13 and 10/16). Now the milter calls :func:`triage` once
at end of headers, before it reads a byte of the body, and hands the
:class:`Triage` to :func:`ciphermilter.core.pipeline.process`; given no
verdict (``ciphermilter decrypt``), ``process`` calls :func:`triage` on the
message it parsed, so both take the same decisions by construction.

Why a message is not inspected is a :class:`Skip`, not a string compared
across the pipeline, the glue, its workers and the statistics; its values
are the texts reports, log lines and ``--explain`` show, unchanged.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import logging
from dataclasses import dataclass, field
from typing import Any

from ciphermilter import mime
from ciphermilter.core.settings import Limits, Settings
from ciphermilter.core import domains
from ciphermilter.core.info import hides_reserved_field, is_reserved
from ciphermilter.core.plan import HeaderDelete
from ciphermilter.core.seams import Readers

# Discrete media types that are binary by nature: no armored block, no CMS structure the handlers look for.
CRYPTO_FREE_TYPES = ("image/", "audio/", "video/", "font/", "model/")


class Skip(enum.Enum):
    """Why triage let a message pass uninspected; the value is its text in reports, log lines and --explain."""

    NOT_INTERNAL = "no recipient in an internal domain"
    NO_PROTECTABLE_TYPE = "no content type that can be protected"
    STORE_UNAVAILABLE = "key store unavailable"
    TOO_LARGE = "message larger than {max_message_size} bytes"

    def reason(self, max_message_size: int) -> str:
        """The text for this message: TOO_LARGE names the configured bound."""
        return self.value.format(max_message_size=max_message_size)


@dataclass
class Envelope:
    mail_from: str = ""
    recipients: list[str] = field(default_factory=list)
    queue_id: str | None = None


class QueueLog(logging.LoggerAdapter[logging.Logger]):
    """A logger whose lines start with ``QUEUEID:``, Postfix's queue ID (``NOQUEUE`` before one is known),
    as Postfix's own lines do.

    Admins grep the daemon's log for the queue ID Postfix shows them, so the
    prefix is written here once instead of by hand in every line.
    """

    def __init__(self, logger: logging.Logger, queue_id: str | None):
        super().__init__(logger, {"queue_id": queue_id or "NOQUEUE"})

    def process(self, msg: object, kwargs: Any) -> tuple[str, Any]:
        extra = self.extra or {}
        return f"{extra['queue_id']}: {msg}", kwargs


@dataclass(frozen=True)
class Triage:
    """What the header block (and the size, once known) says of a message, decided once.

    ``flood`` is the reason a forged-header flood is refused (the message can
    only be rejected); ``skip`` why the message is not inspected at all;
    ``deletions`` strip the forged reserved-namespace fields it arrived with.
    """

    internal: bool
    deletions: tuple[HeaderDelete, ...] = ()
    flood: str | None = None
    skip: Skip | None = None
    store_error: str | None = None  # why the store could not be opened (Skip.STORE_UNAVAILABLE)

    @property
    def forged(self) -> int:
        """How many reserved-namespace fields the message arrived with (one deletion each)."""
        return len(self.deletions)

    @property
    def needs_body(self) -> bool:
        """Whether the body must be read: to inspect it, or, without a store, for the on_error policy at its end."""
        return self.flood is None and self.skip in (None, Skip.STORE_UNAVAILABLE)

    def oversized(self) -> Triage:
        """The verdict once the message turned out larger than max_message_size (:func:`exceeds_size`); a store
        that could not be opened still decides (the on_error policy applies, as without the size)."""
        return self if self.skip is Skip.STORE_UNAVAILABLE else dataclasses.replace(self, skip=Skip.TOO_LARGE)


def triage(headers: mime.HeaderList, envelope: Envelope, store: Readers | None, settings: Settings, *,
           size: int | None = None, store_error: str | None = None) -> Triage:
    """The verdict on a message from its top-level ``headers``, its envelope and (when known) its ``size``.

    A message without recipients (``ciphermilter decrypt`` without --rcpt)
    counts as internal. ``store_error`` says the store could not be opened:
    then nothing else can be decided, the on_error policy applies at the end.
    """
    deletions = tuple(forged_header_deletions(headers))
    internal = not envelope.recipients or store_error is not None or is_internal(envelope, store, settings)
    flood = forged_flood(len(deletions), settings.limits)
    skip = _skip(internal, store_error, headers, settings.limits, size)
    if not deletions and store_error is None:
        return _usual_verdict(internal, flood, skip)
    return Triage(internal=internal, deletions=deletions, flood=flood, skip=skip, store_error=store_error)


@functools.lru_cache(maxsize=None)  # a handful of values: internal or not, times the reasons to skip
def _usual_verdict(internal: bool, flood: str | None, skip: Skip | None) -> Triage:
    """A verdict without forged headers and with a store, built once: a frozen dataclass of five fields cost
    7 k instructions to build (callgrind), 3 % of the daemon's work on a message for an external recipient."""
    return Triage(internal=internal, flood=flood, skip=skip)


def _skip(internal: bool, store_error: str | None, headers: mime.HeaderList, limits: Limits,
          size: int | None) -> Skip | None:
    if store_error is not None:
        return Skip.STORE_UNAVAILABLE
    # Recipients before size: the milter decides at end of headers, before it knows the size, and lets mail for
    # external recipients pass untouched whatever its size. Offline (the size known at once) the same order
    # gives the same answer: an external message past max_message_size passes without a Not-Processed header.
    if not internal:
        return Skip.NOT_INTERNAL
    if size is not None and exceeds_size(size, limits):
        return Skip.TOO_LARGE
    if not may_carry_crypto(_content_type(headers)):
        return Skip.NO_PROTECTABLE_TYPE
    return None


def exceeds_size(size: int, limits: Limits) -> bool:
    """Whether a message of ``size`` bytes (header block, blank line and body) is past max_message_size."""
    return size > limits.max_message_size


def may_carry_crypto(content_type: str) -> bool:
    """False only for top-level types that cannot hold S/MIME or OpenPGP content.

    Inline PGP can hide in any text part at any depth of a multipart, and
    armored blocks or CMS files in ``application/*`` attachments, so the only
    types ruled out from the headers are the discrete binary media types
    (:data:`CRYPTO_FREE_TYPES`).
    """
    return not content_type.startswith(CRYPTO_FREE_TYPES)


def _content_type(headers: mime.HeaderList) -> str:
    field_ = headers.first("Content-Type")
    return mime.parse_content_type(field_.value if field_ else None)[0]


def forged_flood(forged: int, limits: Limits) -> str | None:
    """Why a message that arrived with ``forged`` reserved-namespace fields is refused, or None.

    Each forged field is deleted with one chgheader, and Postfix's cleanup
    pays for deletions quadratically (a reverse jump record each): 10,000
    forged fields took 23 s, 20,000 ended in "451 4.3.0 queue file write
    error", so that such a message could never be accepted. Counted over all
    reserved names together, since the cost is per deletion. Decided at end
    of headers, before the body is read.
    """
    if forged <= limits.max_forged_headers:
        return None
    return f"more than {limits.max_forged_headers} forged X-CipherMail headers"


def forged_header_deletions(headers: mime.HeaderList) -> list[HeaderDelete]:
    """Delete every reserved-namespace header the message arrived with, by libmilter's per-name index.

    Only reserved names are counted: every field of a reserved name is
    reserved, so their indexes are the ones :meth:`HeaderList.numbered` would
    give, without numbering a whole block that (as nearly always) holds none.
    A field of another name that hides a reserved one behind a bare CR goes
    too (:func:`hides_reserved_field`); its index is counted when found.
    """
    seen: dict[str, int] = {}  # not a Counter: building one (0.3 us) cost 40 % of this walk of six fields
    deletions = []
    for position, header in enumerate(headers):
        if is_reserved(header.name):
            key = header.name.lower()
            seen[key] = seen.get(key, 0) + 1
            deletions.append(HeaderDelete(header.name, seen[key]))
        elif hides_reserved_field(header.raw):
            deletions.append(HeaderDelete(header.name, headers[:position + 1].count(header.name)))
    return deletions


def is_internal(envelope: Envelope, store: Readers | None, settings: Settings) -> bool:
    """True when at least one envelope recipient is in an internal domain (settings or store)."""
    return any(is_internal_address(recipient, store, settings) for recipient in envelope.recipients)


def is_internal_address(address: str, store: Readers | None, settings: Settings) -> bool:
    domain = domains.address_domain(address)
    if not domain:
        return False
    if any(domains.matches(domain, pattern) for pattern in settings.internal_domains):
        return True
    return store is not None and store.is_internal_domain(domain)
