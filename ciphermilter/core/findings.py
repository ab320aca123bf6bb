"""What a message was found to hold, as values: the :class:`Facts` the statistics count, the failures they
count by reason, and the JSON shape ``ciphermilter decrypt --explain`` writes.

Each format handler keeps frozen dataclasses of its own findings (``formats/smime/findings.py``,
``formats/openpgp/findings.py``) and renders three things from them: its info headers, its :class:`Facts`
and its part of the report. The statistics once recovered their counters by parsing the info header names
back with a regex (18 counters from 12 header names, a renamed header silently broke one); they now read
these fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeAlias, TypedDict, TypeVar

from ciphermilter.core.info import printable

Finding = TypeVar("Finding")


def revised(finding: Finding, **changes: Any) -> Finding:
    """A copy of a frozen finding with ``changes``: what ``dataclasses.replace`` does, without running
    ``__init__`` over every field again (11 us a call, four calls a layer: 44 us of the 0.7 ms an S/MIME
    message costs in the core). Findings have no ``__post_init__`` to skip."""
    copy = object.__new__(type(finding))
    copy.__dict__.update(finding.__dict__, **changes)
    return copy


# What json.dumps writes: the --explain report is made of these.
Json: TypeAlias = "None | bool | int | float | str | list[Json] | dict[str, Json]"


@dataclass(frozen=True)
class Failure:
    """A reason something failed, counted by the info header that carries it (``ciphermilter stats``)."""

    header: str  # the info header name without its prefix, INDEX and LEVEL (``SMIME-Decryption-Failed``)
    reason: str  # its value as the header carries it (printable ASCII)

    @classmethod
    def of(cls, header: str, reason: str) -> Failure:
        return cls(header, printable(reason))


@dataclass(frozen=True)
class Protection:
    """What one format's handler found in a message (S/MIME or OpenPGP)."""

    encrypted: bool = False  # encrypted content was found
    decrypted: bool = False  # ... and all of it was decrypted
    key_not_found: bool = False  # ... and no stored key opens some of it (or the reader rule refused those that do)
    signed: bool = False  # a signature was found, readable or not
    verified: bool = False  # ... and every one verified
    trusted: bool = False  # ... and every signer chains to a trust anchor (S/MIME only)

    def __or__(self, other: Protection) -> Protection:
        return Protection(self.encrypted or other.encrypted, self.decrypted or other.decrypted,
                          self.key_not_found or other.key_not_found, self.signed or other.signed,
                          self.verified or other.verified, self.trusted or other.trusted)

    def counted(self, prefix: str) -> set[str]:
        """The counter names (``smime_decrypted``) of the flags that are true."""
        # What nearly every message finds of at least one format: no flag to name. Identity first: Facts of a
        # format that found nothing share this value, and a dataclass __eq__ builds two 6-tuples to compare.
        if self is _NOTHING or self == _NOTHING:
            return set()
        return {f"{prefix}_{name}" for name in _PROTECTION_FLAGS if getattr(self, name)}


_PROTECTION_FLAGS = tuple(f.name for f in dataclasses.fields(Protection))
_NOTHING = Protection()


@dataclass(frozen=True)
class Facts:
    """The counters one message adds 1 to, and its failures (names as in ``daemon.stats.COUNTERS``)."""

    not_internal: bool = False
    not_processed: bool = False
    smime: Protection = _NOTHING
    pgp: Protection = _NOTHING
    failures: tuple[Failure, ...] = ()
    refused: bool = False  # the reader rule refused a stored key that opens the content (for the report)
    # For the log line (daemon/logline.py): the content ciphers found, and who signed (an address the
    # signature proves, else the key or certificate ID), in the order found.
    ciphers: tuple[str, ...] = ()
    signers: tuple[str, ...] = ()

    def __or__(self, other: Facts) -> Facts:
        """Both handlers' facts: each reports its own format, so a flag is true when either found it."""
        return Facts(self.not_internal or other.not_internal, self.not_processed or other.not_processed,
                     self.smime | other.smime, self.pgp | other.pgp, self.failures + other.failures,
                     self.refused or other.refused, self.ciphers + other.ciphers, self.signers + other.signers)

    def counted(self) -> set[str]:
        """The names of the counters this message adds 1 to (not ``messages``, nor the outcome's own)."""
        flags = self.smime.counted("smime") | self.pgp.counted("pgp")
        if self.not_internal:
            flags.add("not_internal")
        if self.not_processed:
            flags.add("not_processed")
        return flags


class Readers(TypedDict, total=False):
    required: bool
    recipients: list[str]
    refused: str


class OnLimit(TypedDict):
    reason: str
    policy: str


class Report(TypedDict, total=False):
    """The ``--explain`` report (less ``headers`` and ``error``, which ``decrypt`` adds from the outcome).

    The keys are user-visible: tests/test_explain_snapshot.py pins them.
    """

    queue_id: str | None
    skipped: str
    rejected: str
    forged_headers: int
    readers: Readers
    smime: dict[str, Json]
    openpgp: dict[str, Json]
    harvest: list[str]
    protected_headers_restored: list[str]
    protected_headers_refused: list[str]
    on_limit: OnLimit
    elapsed_ms: float
