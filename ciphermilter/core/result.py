"""The result of one message in one word: what the log line says after ``result=`` and what the
statistics count failures and latency by (``ciphermilter_result_seconds{result=...}``).

A closed vocabulary, decided from the outcome's typed values (:class:`~ciphermilter.core.findings.Facts` and
the kind of outcome its constructor made), never from header names: an admin greps ``result=no-key`` and
alerts on ``result="store-unavailable"``, so a value may be added but never renamed. ciphermilter(8) shows an
example line for each value, and tests/test_logline.py checks that every value is there.

Signatures do not make a result of their own when the message was also encrypted: ``result=decrypted``
then carries ``verified=`` and ``trusted=`` beside it, so one grep finds every decrypted message.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ciphermilter.core.findings import Facts, Protection


class Result(enum.Enum):
    """What became of one message; the value is the word the log line and the metrics use."""

    PLAIN = "plain"  # for an internal recipient, but nothing encrypted or signed in it
    DECRYPTED = "decrypted"  # every encrypted layer decrypted (its signatures: verified=, trusted=)
    VERIFIED = "verified"  # signed, not encrypted, and every signature verified
    BAD_SIGNATURE = "bad-signature"  # signed, not encrypted, and a signature did not verify
    NO_KEY = "no-key"  # encrypted to no key the store holds: passed still encrypted
    REFUSED = "refused"  # a stored key opens it, but the reader rule refused it for these recipients
    FAILED = "failed"  # encrypted content that could not be decrypted (corrupt, unsupported, EFAIL rule)
    NOT_INTERNAL = "not-internal"  # no recipient in an internal domain: not inspected
    TOO_LARGE = "too-large"  # larger than max_message_size: not inspected
    TIMEOUT = "timeout"  # the processing deadline passed
    LIMIT = "limit"  # another limit stopped processing (parts, nesting, decompression, recipients)
    MALFORMED = "malformed"  # MIME too broken to process
    STORE_UNAVAILABLE = "store-unavailable"  # the key store could not be opened
    REJECTED = "rejected"  # refused with 554 5.7.0 (a forged-header flood)
    ERROR = "error"  # a fault of ours (or a header libmilter cannot carry): the on_error policy applied


@dataclass(frozen=True)
class Verdict:
    """A result and, for the results that have one, the reason in words."""

    result: Result
    reason: str | None = None


def of_facts(facts: Facts) -> Verdict:
    """The result of a message the handlers inspected, from what they found."""
    encrypted = [found for found in (facts.smime, facts.pgp) if found.encrypted]
    if encrypted:
        return _decryption(encrypted, facts)
    if facts.smime.signed or facts.pgp.signed:
        if _all_verified(facts):
            return Verdict(Result.VERIFIED)
        return Verdict(Result.BAD_SIGNATURE, _first_reason(facts, _SIGNATURE_HEADERS))
    return Verdict(Result.PLAIN)


def _decryption(encrypted: list[Protection], facts: Facts) -> Verdict:
    if all(found.decrypted for found in encrypted):
        return Verdict(Result.DECRYPTED)
    if facts.refused:
        return Verdict(Result.REFUSED, _first_reason(facts, _REFUSAL_HEADERS))
    if any(found.key_not_found for found in encrypted):
        return Verdict(Result.NO_KEY)
    return Verdict(Result.FAILED, _first_reason(facts, _DECRYPTION_HEADERS) or "not decrypted")


def _all_verified(facts: Facts) -> bool:
    return all(found.verified for found in (facts.smime, facts.pgp) if found.signed)


def _first_reason(facts: Facts, headers: tuple[str, ...]) -> str | None:
    return next((failure.reason for failure in facts.failures if failure.header in headers), None)


_REFUSAL_HEADERS = ("SMIME-Decryption-Refused", "PGP-Decryption-Refused")
_DECRYPTION_HEADERS = ("SMIME-Decryption-Failed", "SMIME-Not-Decrypted", "SMIME-Unsupported",
                       "PGP-Decryption-Failed", "PGP-Decryption-Withheld")
_SIGNATURE_HEADERS = ("SMIME-Signature-Failed", "Signer-Verification-Info", "PGP-Signature-Failure")
