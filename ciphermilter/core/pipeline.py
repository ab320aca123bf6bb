"""The pure core: message bytes + envelope + key store -> :class:`EditPlan`.

No milter import here. The daemon and the offline ``ciphermilter decrypt``
command both call :func:`~ciphermilter.core.triage.triage` on the header
block and then :func:`process`, so what an admin sees offline is what the
milter does: every decision is taken once, here or in triage, never again
in the glue (a decrypted header the milter cannot carry included).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import BinaryIO

from ciphermilter import mime
from ciphermilter.mime import write
from ciphermilter.core import harvest
from ciphermilter.core.contract import (Context, DeadlineExceeded, DecompressionBudget, LimitExceeded, Progress,
                                        check_part_count, new_content)
from ciphermilter.core.findings import Facts, Report
from ciphermilter.core.info import InfoHeaders, header_block_is_ambiguous, is_reserved
from ciphermilter.core.outcome import Outcome as Outcome
from ciphermilter.core.outcome import INTERNAL_ERROR, non_utf8_header, not_processed, rejected, skipped
from ciphermilter.core.plan import EditPlan, HeaderAdd, HeaderChange, HeaderDelete, PlanError, check_header_value
from ciphermilter.core.result import Result
from ciphermilter.core.seams import KeyLookup, Readers
from ciphermilter.core.settings import Limits, Settings
from ciphermilter.core.triage import Envelope as Envelope
from ciphermilter.core.triage import QueueLog, Skip, Triage, is_internal_address, triage
from ciphermilter.formats import readers
from ciphermilter.formats.openpgp import engine as openpgp
from ciphermilter.formats.openpgp import handler as openpgp_mime
from ciphermilter.formats.smime import handler as smime

log = logging.getLogger(__name__)

# The headers that describe a MIME entity's content. After decryption the
# outer ones must describe the decrypted entity: a base64 CTE left over a
# plaintext body would garble it.
CONTENT_HEADERS = (
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "Content-Description",
    "Content-ID",
)
# RFC 9788 protected headers we copy out of the decrypted entity. Identity and
# trace headers (From, Date, Message-ID) stay as received: downstream DKIM,
# DMARC and duplicate detection already judged those.
RESTORABLE_HEADERS = ("Subject", "To", "Cc", "Reply-To", "In-Reply-To", "References", "Keywords", "Comments")
_CONTENT_KEYS = frozenset(name.lower() for name in CONTENT_HEADERS)
_RESTORABLE_KEYS = frozenset(name.lower() for name in RESTORABLE_HEADERS)
HANDLERS = (smime.handle, openpgp_mime.handle)
# Words (in lower case) found in the header block of every entity the handlers act on: each handler's own
# HEADER_SIGNS, and base64, which can wrap any of them. Searched one by one in a lower-cased copy: a
# case-insensitive regex alternation stepped through the message byte by byte, ten times slower than
# processing a plain message.
_HEAVY_MARKERS = tuple(dict.fromkeys((*smime.HEADER_SIGNS, *openpgp_mime.HEADER_SIGNS, b"base64")))
# Header words after which the body itself must be searched for the words: a multipart body holds
# header blocks of its own, and quoted-printable can split or encode an armor line.
_WHOLE_MESSAGE_SIGNS = (b"multipart/", b"quoted-printable")
LIGHT_SIZE = 256 * 1024  # bytes; larger messages always go to a worker, whatever they hold
# The handlers' headers for keys the reader rule refused (ciphermilter-headers(7)).


def reader_rule(envelope: Envelope, ctx_store: Readers | None, settings: Settings) -> readers.ReaderRule:
    """Whom this message may be decrypted for: its internal recipients (readers module)."""
    internal = (readers.base_address(r, settings.recipient_delimiter) for r in envelope.recipients
                if is_internal_address(r, ctx_store, settings))
    return readers.ReaderRule(tuple(dict.fromkeys(internal)), required=settings.require_reader)


def recipient_class(address: str, ctx_store: Readers | None, settings: Settings) -> str:
    """External, internal reader of a key we hold, or internal without one: a transaction holds one class.

    The milter asks at RCPT time (``mixed_recipients = "split"``), so that a
    recipient of another class than the first goes in a transaction of its
    own, which the core then decrypts for that class alone.
    """
    if not is_internal_address(address, ctx_store, settings):
        return readers.EXTERNAL
    if not settings.require_reader:  # one shared gateway key: every internal recipient reads everything
        return readers.READER
    base = readers.base_address(address, settings.recipient_delimiter)
    known = ctx_store.reader_addresses() if ctx_store is not None else frozenset()
    return readers.READER if readers.reads(known, base) else readers.NO_KEY


def is_light(message: bytes) -> bool:
    """True when a small ``message`` shows no sign of S/MIME, OpenPGP or key material.

    The signs are the handlers' words in a header block (the message's, and
    every part's when it is a multipart) and an armored block in the body.

    Such a message is only parsed and scanned, which costs the daemon less in
    the connection's own thread than the hop to a worker process (measured in
    bench/README.md). It is a hint about where to run :func:`process`, never
    about what it does: a light message that does hold protected content
    (say, inline PGP behind quoted-printable) is decrypted all the same.
    """
    if len(message) > LIGHT_SIZE:
        return False
    end = message.find(b"\r\n\r\n")
    if end == -1:  # no body: the header words are the whole story
        return not _has_marker(message.lower())
    head = message[:end].lower()
    if _has_marker(head):
        return False
    if any(sign in head for sign in _WHOLE_MESSAGE_SIGNS):
        return not _has_marker(message.lower())
    # A single part: the handlers find nothing in its body but an armored block, which is case-sensitive.
    return message.find(openpgp.ARMOR_BEGIN, end) == -1


def _has_marker(lowered: bytes) -> bool:
    return any(marker in lowered for marker in _HEAVY_MARKERS)


def from_fields(entity: mime.Entity) -> tuple[str, ...]:
    """Every From: value, unparsed: only a signed message pays for the RFC 5322 parse (:mod:`ciphermilter.sender`).

    Empty when the header block holds a bare CR: a reader that ends a line there may see another From: first
    (round-6 attack F4), so no From: is certain and any signer is a mismatch.
    """
    if header_block_is_ambiguous(entity):
        return ()
    return tuple(header.value for header in entity.headers if header.name.lower() == "from")


def _replace_headers(outer: mime.HeaderList, inner: Iterable[mime.Header], names: tuple[str, ...], plan: EditPlan, *,
                     drop_missing: bool) -> None:
    """Make each of ``names`` in ``outer`` equal the first one in ``inner``.

    With ``drop_missing``, an outer header the inner side lacks is removed.
    Extra outer copies are removed so exactly one value stays.
    """
    first_inner: dict[str, mime.Header] = {}
    for header in inner:
        first_inner.setdefault(header.name.lower(), header)
    for name in names:
        outer_count = outer.count(name)
        source = first_inner.get(name.lower())
        if source is None:
            if drop_missing:
                plan.deletions.extend(HeaderDelete(name, i) for i in range(1, outer_count + 1))
            continue
        value = write.milter_value(source)
        if outer_count:
            plan.deletions.extend(HeaderDelete(name, i) for i in range(2, outer_count + 1))
            plan.changes.append(HeaderChange(name, 1, value))
        else:
            plan.additions.append(HeaderAdd(name, value))


def _restorable_protected_headers(entity: mime.Entity, report: Report) -> list[mime.Header]:
    """Protected headers (RFC 9788) of a decrypted entity that are safe to copy out."""
    if entity.params.get("protected-headers", "").lower() != "v1":
        return []
    safe = []
    for header in entity.headers:
        if header.name.lower() not in _RESTORABLE_KEYS:
            continue
        reason = _unsafe_reason(header)
        if reason:
            report.setdefault("protected_headers_refused", []).append(f"{header.name}: {reason}")
            continue
        safe.append(header)
    return safe


def _unsafe_reason(header: mime.Header) -> str | None:
    """Why a header of decrypted content must not be copied into the message, or None when it may."""
    try:
        check_header_value(write.milter_value(header))
    except PlanError as exc:
        return str(exc)
    if any(len(line) > write.MAX_LINE for line in header.raw.split(b"\r\n")):
        return "line too long"
    return None


def _check_content_headers(entity: mime.Entity) -> None:
    """The decrypted body cannot go out without the headers that describe it: a bad one leaves it encrypted."""
    for header in entity.headers:
        if header.name.lower() in _CONTENT_KEYS and _unsafe_reason(header):
            raise mime.MimeError(f"decrypted content has an invalid {header.name} header")


def _apply_new_entity(plan: EditPlan, outer: mime.HeaderList, entity: mime.Entity, settings: Settings,
                      report: Report) -> None:
    _check_content_headers(entity)
    _replace_headers(outer, entity.headers, CONTENT_HEADERS, plan, drop_missing=True)
    if settings.header_protection:
        protected = _restorable_protected_headers(entity, report)
        _replace_headers(outer, protected, RESTORABLE_HEADERS, plan, drop_missing=False)
        if protected:
            report["protected_headers_restored"] = [h.name for h in protected]
    # The new top entity's own reserved fields never reach the message (only the headers above are copied
    # out); the parts' header blocks are in the body: a sender could set our names there too.
    stripped = mime.body_without_part_fields(entity, is_reserved)
    plan.body = entity.body if stripped is None else stripped
    check_deletion_count(plan, settings.limits)


def check_deletion_count(plan: EditPlan, limits: Limits) -> None:
    """Refuse a plan that would make Postfix's cleanup remove more header fields than max_forged_headers.

    The new body makes every extra outer copy of a content or protected
    header a deletion too, and no key is needed for that: 20,000 repeated
    Content-Description fields on a stranger's opaque signature were 20,000
    deletions, the same quadratic cleanup and "451 4.3.0 queue file write
    error" as a forged flood. So the one bound holds for all deletions
    together, forged ones included (the end-of-headers check bounds those
    alone); the message then passes as received (:func:`stopped_at_limit`),
    which deletes only the forged fields.
    """
    if len(plan.deletions) > limits.max_forged_headers:
        raise LimitExceeded(f"more than {limits.max_forged_headers} header fields to remove")


def _run_handlers(message: mime.Entity, ctx: Context,
                  report: Report) -> tuple[InfoHeaders, Facts, mime.Entity | None]:
    """Run every handler on the message as the previous one left it; the new entity, or None if unchanged.

    A handler's new content is checked against max_message_size and parsed under the part limit
    (contract.new_content) after its report is taken, so that a limit there keeps what it found; the
    plaintext is parsed once, by the handler that decrypted it, whose parse comes along.
    """
    info = InfoHeaders()
    facts = Facts()
    current = message
    for handle in HANDLERS:
        ctx.check_deadline()
        result = handle(current, ctx)
        if result is None:
            continue
        info.extend(result.info)
        facts |= result.facts
        report.update(result.report)
        if result.content is not None:
            current = new_content(result.content, ctx.settings.limits, result.parsed)
    return info, facts, (None if current is message else current)


def process(
    message: bytes | BinaryIO,
    envelope: Envelope,
    store: KeyLookup | None,
    settings: Settings | None = None,
    *,
    verdict: Triage | None = None,
    progress: Progress | None = None,
    deadline: float | None = None,
    on_key_held: Callable[[], None] | None = None,
) -> Outcome:
    """Inspect ``message`` and return the edits that decrypt it and report on it.

    ``message`` is the whole message as bytes, or a seekable binary file that
    holds it (the daemon's spool: a large body is then decoded from the file
    instead of being held twice in memory). ``verdict`` is the message's
    :func:`~ciphermilter.core.triage.triage`, taken from its header block
    (the daemon's, at end of headers); without it, it is taken here.

    Never raises for anything the message contains: a limit, a parse error or
    a bug of ours gives a plan that only strips forged headers and adds a
    ``Not-Processed`` reason, with ``Outcome.error`` set for the daemon's
    ``on_error`` policy when the fault is ours. A flood of forged headers
    (:func:`~ciphermilter.core.triage.forged_flood`) sets ``Outcome.reject`` instead. Only an error reading a
    spool file (OSError) propagates: the daemon applies on_error to it.

    ``deadline`` (a time.monotonic() value) replaces now + deadline_seconds
    when the clock started earlier (a worker: at the final dot);
    ``on_key_held`` is :attr:`ciphermilter.core.contract.Context.on_key_held`.
    """
    settings = settings or Settings()
    started = time.monotonic()
    entity = mime.parse(message, settings.limits.max_mime_depth)
    if verdict is None:
        verdict = triage(entity.headers, envelope, store, settings, size=entity.size)
    outcome = decided(verdict, lambda: entity, envelope, store, settings)
    if outcome is None:
        deadline = started + settings.limits.deadline_seconds if deadline is None else deadline
        outcome = _inspect(entity, verdict, envelope, store, settings, deadline, progress, on_key_held)
    outcome.report["elapsed_ms"] = round((time.monotonic() - started) * 1000, 3)
    return outcome


def decided(verdict: Triage, entity: Callable[[], mime.Entity], envelope: Envelope, store: Readers | None,
            settings: Settings) -> Outcome | None:
    """The outcome triage alone decides (refused, skipped, too large, no store), or None: inspect the content.

    ``entity`` gives the message, or the header block alone (the daemon's, when it read no body). It is called
    only for the outcomes that read it: the daemon parses its header block for them alone, since that parse was
    8 of the 33 us its end of headers took for a message accepted there.
    """
    if verdict.flood:
        return rejected(verdict.flood, envelope, verdict.forged)
    if verdict.skip is None:
        return None
    reason = verdict.skip.reason(settings.limits.max_message_size)
    if verdict.skip is Skip.STORE_UNAVAILABLE:
        return not_processed(entity().headers, reason, envelope, Result.STORE_UNAVAILABLE, verdict.store_error)
    if verdict.skip is Skip.TOO_LARGE:
        return stopped_at_limit(entity(), reason, envelope, store, settings, result=Result.TOO_LARGE)
    return skipped(verdict, envelope, reason)


def _inspect(entity: mime.Entity, verdict: Triage, envelope: Envelope, store: KeyLookup | None, settings: Settings,
             deadline: float, progress: Progress | None, on_key_held: Callable[[], None] | None) -> Outcome:
    report: Report = {"queue_id": envelope.queue_id}
    headers = entity.headers
    plan = EditPlan(deletions=list(verdict.deletions))
    try:
        rule = reader_rule(envelope, store, settings)
        report["readers"] = {"required": rule.required, "recipients": list(rule.recipients)}
        ctx = Context(
            store=store,
            settings=settings,
            from_fields=from_fields(entity),
            deadline=deadline,
            progress=progress,
            readers=rule,
            on_key_held=on_key_held,
            decompression=DecompressionBudget(settings.limits.decompression_budget(entity.size)),
        )
        check_part_count(entity, settings.limits.max_mime_parts)
        info, facts, new_entity = _run_handlers(entity, ctx, report)
        harvested = harvest.keep(store, ctx.harvest, settings)
        if harvested:
            report["harvest"] = harvested
        if new_entity is not None:
            _apply_new_entity(plan, headers, new_entity, settings, report)
    except (LimitExceeded, mime.DepthLimitExceeded) as exc:  # only raised once ctx is set
        result = Result.TIMEOUT if isinstance(exc, DeadlineExceeded) else Result.LIMIT
        return stopped_at_limit(entity, str(exc), envelope, store, settings, key_held=ctx.key_held, report=report,
                                result=result)
    except mime.MimeError as exc:
        return not_processed(headers, str(exc), envelope, Result.MALFORMED, report=report)
    except Exception as exc:  # a bug of ours must never lose or reject the message
        QueueLog(log, envelope.queue_id).exception("processing failed")
        error = f"{INTERNAL_ERROR}: {type(exc).__name__}"
        return not_processed(headers, error, envelope, Result.ERROR, error, report)
    plan.additions.extend(HeaderAdd(name, value) for name, value in info)
    unsendable = non_utf8_header(plan)
    if unsendable:  # libmilter carries UTF-8 only: the daemon could not send the plan, so nobody does
        reason = f"header {unsendable} of the decrypted content is not UTF-8"
        return not_processed(headers, reason, envelope, Result.ERROR, reason, report)
    if facts.refused:  # for --explain and the log line
        report["readers"]["refused"] = rule.refusal()
    return Outcome(plan=plan, info=info, report=report, facts=facts)


def stopped_at_limit(entity: mime.Entity, reason: str, envelope: Envelope, store: Readers | None, settings: Settings,
                     *, key_held: bool = False, report: Report | None = None, result: Result = Result.LIMIT) -> Outcome:
    """The outcome when a limit stopped processing: passed as received with ``reason``, as any Not-Processed.

    It is marked :attr:`Outcome.held_at_limit` (the daemon's on_limit then
    applies) when the message carries encrypted content the store holds a key
    for, which means either

    (a) ``key_held``: before the limit, a handler found a stored key the
        reader rule allows for content it would decrypt (whole content, or any
        with decrypt_embedded), and may have opened it already
        (:attr:`handler.Context.key_held`); or
    (b) :func:`shows_held_content`: the message itself is encrypted whole
        content and its recipients read a stored private key. This is the
        rule for a limit met before any decryption was tried (message size,
        RecipientInfos, the deadline a worker overran).

    Any other message (plain mail of 1,001 parts, a .p7m beside text, a
    message to keys we do not hold) is unaffected: we could not decrypt it
    anyway, so nothing is hidden from the scanners that would not be.
    """
    outcome = not_processed(entity.headers, reason, envelope, result, report=report)
    if key_held or shows_held_content(entity, envelope, store, settings):
        outcome.held_at_limit = reason
        outcome.report["on_limit"] = {"reason": reason, "policy": settings.on_limit}
    return outcome


def shows_held_content(entity: mime.Entity, envelope: Envelope, store: Readers | None, settings: Settings) -> bool:
    """Rule (b) of :func:`stopped_at_limit`: the message's whole content is encrypted, for its readers.

    Kept cheap and linear: no key is looked up, nothing is decrypted. The
    content must be encrypted whole content as the handlers follow it
    (:func:`encrypted_whole_content`), and the message must be readable by
    its internal recipients: each reads a private key in the store
    (:func:`recipient_class`), or, with require_reader off, the store holds
    any private key. Whose key the content is encrypted to is not asked: that
    means reading what the limit forbade.
    """
    if not encrypted_whole_content(entity, settings.limits.max_mime_depth):
        return False
    internal = [r for r in envelope.recipients if is_internal_address(r, store, settings)]
    if store is None or (envelope.recipients and not internal):
        return False
    if not settings.require_reader:
        return store.holds_private_keys()
    return bool(internal) and all(recipient_class(r, store, settings) == readers.READER for r in internal)


_PGP_FILE_TYPES = ("application/octet-stream", openpgp_mime.ENCRYPTED_PROTOCOL)
# Marks of encrypted content in the bytes below the depth limit (lower case), which the walk cannot parse.
_ENCRYPTED_MARKS = (b"application/pkcs7-mime", b"application/x-pkcs7-mime", b".p7m", b"multipart/encrypted",
                    b"application/pgp-encrypted", b".pgp", b".gpg", openpgp.ARMOR_MESSAGE.lower())


def encrypted_whole_content(entity: mime.Entity, max_steps: int) -> bool:
    """Whether the whole content of ``entity`` is encrypted, following it down as the handlers do.

    From the message down: the lone part of a multipart, the first part of a
    multipart/signed (the signed content), until an entity shows encrypted
    content (:func:`shows_encrypted`) or anything else ends the chain: parts
    side by side (EFAIL: not whole content), a leaf of another type. Past the
    MIME depth limit, which the walk cannot parse, the rest of the chain is
    taken for encrypted when its bytes name an encrypted type or an armored
    message anywhere. On the header block alone (the milter's oversized
    message) only the top-level type can tell: inline armor in a text part
    is not seen there. One step per nesting level, ``max_steps`` at most; the
    parts are those the handlers parsed (cached on the entity).
    """
    current = entity
    for _ in range(max_steps + 1):
        if shows_encrypted(current):
            return True
        try:
            parts = current.parts
        except mime.DepthLimitExceeded:
            lowered = current.body.lower()
            return any(mark in lowered for mark in _ENCRYPTED_MARKS)
        if not (len(parts) == 1 or (current.content_type == "multipart/signed" and parts)):
            return False
        current = parts[0]
    return False


def shows_encrypted(entity: mime.Entity) -> bool:
    """An entity a handler decrypts as whole content: application/(x-)pkcs7-mime or a .p7m, whatever its
    smime-type label says (the sender sets it; the S/MIME handler goes by the CMS type inside), PGP/MIME,
    application/pgp-encrypted or an octet-stream named .pgp/.gpg/.asc, or a text (or untyped) part whose
    decoded body holds an armored PGP MESSAGE at a line start."""
    if smime.is_pkcs7_mime(entity) or openpgp_mime.is_pgp_mime_encrypted(entity):
        return True
    if entity.content_type in _PGP_FILE_TYPES and openpgp_mime.is_pgp_file(entity):
        return True
    if not entity.content_type.startswith("text/") or not entity.body:
        return False
    try:
        body = entity.decoded_body()
    except mime.MimeError:
        return False
    return openpgp.find_at_line_start(body, openpgp.ARMOR_MESSAGE) != -1
