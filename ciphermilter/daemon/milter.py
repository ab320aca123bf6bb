"""The pymilter glue: collect one message per SMTP transaction, hand it to the core, replay the EditPlan.

No crypto lives here, and the only judgement about content is whether the
body is needed at all (below); :func:`core.process` makes every other
decision. This module turns libmilter callbacks into message bytes
and an :class:`~ciphermilter.core.Envelope`, and the core's
:class:`~ciphermilter.plan.EditPlan` back into ``chgheader``/``addheader``/
``replacebody`` calls.

Header reconstruction: we negotiate ``SMFIP_HDR_LEADSPC`` so that the MTA
passes each header value exactly as it travelled (the white space after the
colon included), which makes ``name + ":" + value`` the original field byte for
byte. The price is that the MTA then also writes our values verbatim, so every
value we send gets its leading space back (:meth:`CipherMilter._wire_value`).

Skipping the body: the body is only needed when the core could decrypt or
verify something, which takes a recipient in an internal domain *and* a
top-level Content-Type that can carry S/MIME or OpenPGP. Inline PGP can hide in
any text part at any depth of a multipart, and armored blocks or CMS files in
``application/*`` attachments, so the only types ruled out from the headers
are the discrete binary media types (:data:`CRYPTO_FREE_TYPES`). When the body
is not needed and the sender forged no reserved header we answer ACCEPT at
end of headers (the MTA then sends us nothing more for this message); when
forged headers must still be deleted we answer SKIP to the first body chunk
and strip them at end of message. A message with more forged headers than
the core allows (:func:`core.forged_flood`) is rejected at end of headers.
"""

from __future__ import annotations

import functools
import io
import logging
import tempfile
import time
from dataclasses import dataclass, field

import Milter

from ciphermilter import mime
from ciphermilter.mime import write

from ciphermilter.core import pipeline as core

from ciphermilter.daemon import stats

from ciphermilter.daemon import workers
from ciphermilter.config import DaemonConfig
from ciphermilter.core.contract import DEADLINE_EXCEEDED
from ciphermilter.core.info import INFO_PREFIX, InfoHeaders, is_reserved
from ciphermilter.core.plan import EditPlan

log = logging.getLogger("ciphermilter.milter")

CRLF = b"\r\n"
REPLACEBODY_CHUNK = 65535  # libmilter's MILTER_CHUNK_SIZE: larger replacebody calls are split anyway
# Discrete media types that are binary by nature: no armored block, no CMS structure the core looks for.
CRYPTO_FREE_TYPES = ("image/", "audio/", "video/", "font/", "model/")
# Actions we may take: delete/change headers (forged results, content headers), add info headers, new body.
ACTIONS = Milter.ADDHDRS | Milter.CHGHDRS | Milter.MODBODY
# Protocol steps we ask the MTA to leave out (connect, HELO, unknown commands and DATA are of no
# use to us) and replies it need not wait for (MAIL and each header always continue; RCPT too,
# unless mixed_recipients = "split" answers some recipients with a 452).
SKIPPED_STEPS = Milter.P_NOCONNECT | Milter.P_NOHELO | Milter.P_NOUNKNOWN | Milter.P_NODATA
NO_REPLY_STEPS = Milter.P_NR_MAIL | Milter.P_NR_RCPT | Milter.P_NR_HDR
# Features we use when the MTA offers them: exact header values, and SKIP for the body.
FEATURES = Milter.P_HDR_LEADSPC | Milter.P_SKIP
TEMPFAIL_REPLY = ("451", "4.3.0", "Message could not be processed now, please try again later")
# RFC 5321 section 4.5.3.1.10: the client sends the recipients refused so in another transaction.
SPLIT_REPLY = ("452", "4.5.3", "Too many recipients")


class StoreUnavailable(Exception):
    """The key store cannot be opened or read; the message is handled by the on_error policy."""


def guarded(no_reply_bit: int = 0):
    """No exception may escape a callback: pymilter would answer 451 4.3.0 for the whole message.

    A failure is logged with its traceback and remembered; end of message
    then applies the on_error policy (tempfail, or pass with forged headers
    stripped and a reason header).
    """
    def decorate(callback):
        @functools.wraps(callback)
        def wrapper(self, *args):
            try:
                return callback(self, *args)
            except Exception:
                log.exception("queue %s: %s callback failed", self._queue_id() or "-", callback.__name__)
                if self.msg is not None:
                    self.msg.failed = "internal error"
                return self._continue(no_reply_bit)
        return wrapper
    return decorate


def may_carry_crypto(content_type: str) -> bool:
    """False only for top-level types that cannot hold S/MIME or OpenPGP content (see module docstring)."""
    return not content_type.startswith(CRYPTO_FREE_TYPES)


def unprocessed_outcome(header_block: bytes, reason: str, envelope: core.Envelope, error: str | None) -> core.Outcome:
    """The outcome for a message the core did not look at: forged headers stripped, a reason header added."""
    headers, _ = mime.split_headers(header_block + CRLF)
    return core.not_processed(headers, reason, envelope, error)


def non_utf8_header(plan: EditPlan) -> str | None:
    """Name of a header value libmilter cannot carry, or None.

    pymilter passes values as UTF-8 text, so raw 8-bit bytes from a decrypted
    entity (kept as surrogates) cannot reach the MTA as they are; sending the
    rest without them would leave headers that no longer describe the body.
    """
    for edit in (*plan.changes, *plan.additions):
        try:
            edit.value.encode("utf-8")
        except UnicodeEncodeError:
            return edit.name
    return None


@dataclass
class Runtime:
    """What every connection shares: the configuration and the key store provider.

    ``stores`` has a ``current()`` method that returns an open, up-to-date
    key store or raises :class:`StoreUnavailable` (see ``daemon.StoreHolder``).
    ``workers`` (a :class:`~ciphermilter.workers.Workers` pool) runs the core
    in other processes, past the GIL; without it, and for light messages
    (:func:`core.is_light`: nothing to decrypt or verify, only a scan), the
    core runs in the connection's own thread.
    """

    config: DaemonConfig
    stores: object
    workers: object | None = None


@dataclass
class MessageState:
    """One SMTP transaction: reset at MAIL FROM, because one connection carries many messages."""

    mail_from: str
    spool_memory: int
    recipients: list[str] = field(default_factory=list)
    recipient_class: str | None = None  # the class of the first accepted recipient (mixed_recipients = "split")
    header_fields: list[bytes] = field(default_factory=list)  # each field as received, CRLF inside folds
    forged: int = 0
    needs_body: bool = True
    internal: bool = True  # a recipient is in an internal domain (decided at end of headers)
    store: object | None = None
    store_error: str | None = None
    head: bytes = b""  # the header block, fixed at end of headers
    body_size: int = 0
    oversized: bool = False
    edits_sent: bool = False  # after a failure halfway through, indexes no longer match: send no more
    failed: str | None = None  # why a callback failed: the message gets the on_error policy
    started: float = field(default_factory=time.monotonic)

    spool: tempfile.SpooledTemporaryFile | None = None  # made at end of headers, only when the body is read

    def open_spool(self) -> None:
        """The spool for the message: in memory up to spool_memory bytes, then a mode 0600 temp file."""
        self.spool = tempfile.SpooledTemporaryFile(max_size=self.spool_memory, prefix="ciphermilter-")

    def spooled_message(self):
        """The whole message: bytes when the spool is still in memory, else the spool file itself.

        A message too large for memory goes to the core (and to a worker
        process) as the file, so it is never read whole into this process.
        """
        in_memory = self.spool.tell() <= self.spool_memory  # the spool's own rule for rolling over to a file
        self.spool.seek(0)
        return self.spool.read() if in_memory else self.spool

    def header_block(self) -> bytes:
        return b"".join(f + CRLF for f in self.header_fields)

    @property
    def header_size(self) -> int:
        return len(self.head)

    def content_type(self) -> str:
        field = next((f for f in self.header_fields if mime.field_name(f).lower() == "content-type"), None)
        return mime.parse_content_type(mime.Header.from_raw(field).value if field else None)[0]

    def close(self):
        if self.spool is None:
            return
        try:
            self.spool.close()
        except OSError:  # a spool that could not be written may fail to flush too: nothing in it matters now
            pass


class CipherMilter(Milter.Base):
    """One instance per MTA connection (libmilter runs each connection in its own thread)."""

    runtime: Runtime  # set on the class by the daemon before serving

    def __init__(self):
        self.msg: MessageState | None = None
        self.leading_space = False

    # --- negotiation --------------------------------------------------------------------------

    def negotiate(self, opts):
        """Ask only for the actions and protocol steps we use (pymilter ignores set_flags())."""
        offered_actions, offered_protocol, _, _ = opts
        actions = offered_actions & ACTIONS
        if actions != ACTIONS:
            log.warning("the MTA does not offer every action we need (offered 0x%x): plans may be incomplete",
                        offered_actions)
        no_reply = NO_REPLY_STEPS & ~Milter.P_NR_RCPT if self._splits() else NO_REPLY_STEPS
        self._protocol = offered_protocol & (SKIPPED_STEPS | no_reply | FEATURES)
        self.leading_space = bool(self._protocol & Milter.P_HDR_LEADSPC)
        opts[0], opts[1], opts[2], opts[3] = actions, self._protocol, 0, 0
        return Milter.CONTINUE

    def _splits(self) -> bool:
        return self.runtime.config.settings.mixed_recipients == "split"

    def _continue(self, no_reply_bit: int):
        """CONTINUE, or NOREPLY when the MTA agreed not to wait for this step's reply."""
        return Milter.NOREPLY if self._protocol & no_reply_bit else Milter.CONTINUE

    # --- per-message callbacks ----------------------------------------------------------------

    @Milter.decode("bytes")
    @guarded(Milter.P_NR_MAIL)
    def envfrom(self, mail_from, *params):
        self._reset()
        self.msg = MessageState(_text(mail_from), self.runtime.config.spool_memory)
        return self._continue(Milter.P_NR_MAIL)

    @Milter.decode("bytes")
    @guarded(Milter.P_NR_RCPT)
    def envrcpt(self, recipient, *params):
        if self.msg is None:
            return self._continue(Milter.P_NR_RCPT)
        address = _text(recipient)
        if self._splits() and not self._same_class(address):
            self.setreply(*SPLIT_REPLY)
            return Milter.TEMPFAIL
        self.msg.recipients.append(address)
        return self._continue(Milter.P_NR_RCPT)

    def _same_class(self, address: str) -> bool:
        """Whether ``address`` is of the transaction's class (the first recipient's), or starts it.

        Without the key store nobody can tell the classes apart: every
        recipient is accepted, and end of message applies on_error.
        """
        msg = self.msg
        self._open_store()
        if msg.store_error:
            return True
        kind = core.recipient_class(address, msg.store, self.runtime.config.settings)
        if msg.recipient_class is None:
            msg.recipient_class = kind
        if kind == msg.recipient_class:
            return True
        log.info("rcpt <%s> answered 452 4.5.3: %s, the transaction's recipients are %s", address.strip("<>"),
                 kind, msg.recipient_class)
        return False

    @Milter.decode("bytes")
    @guarded(Milter.P_NR_HDR)
    def header(self, name, value):
        """Keep the field as raw bytes: non-ASCII and non-UTF-8 headers must survive untouched."""
        if self.msg is not None:
            name_bytes = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
            if not self.leading_space:
                value = b" " + value  # the MTA dropped the white space after the colon; put back the usual one
            value = write.to_crlf(value)
            self.msg.header_fields.append(name_bytes + b":" + value)
            if is_reserved(name_bytes.decode("ascii", "replace")):
                self.msg.forged += 1
        return self._continue(Milter.P_NR_HDR)

    @guarded()
    def eoh(self):
        if self.msg is None:
            return Milter.CONTINUE
        self.msg.head = self.msg.header_block()
        flood = core.forged_flood(self.msg.forged, self.runtime.config.settings.limits)
        if flood:  # decided before the body: the message can only be refused
            outcome = core.rejected(flood, self._envelope(), self.msg.forged)
            return self._refuse(outcome, core.refusal(outcome, self.runtime.config.settings))
        try:
            self.msg.needs_body = self._needs_body()
        except Exception:  # never let a bug of ours turn into the MTA's 451 for this callback
            log.exception("end of headers: cannot decide, reading the body")
            self.msg.needs_body = True
        if not self.msg.needs_body and not self.msg.forged:
            skipped = stats.NOT_INTERNAL if not self.msg.internal else "no content type that can be protected"
            outcome = core.Outcome(EditPlan(), InfoHeaders(), {"skipped": skipped})
            self._summarise(outcome, "accepted at end of headers")
            self._reset()
            return Milter.ACCEPT
        if self.msg.needs_body:
            self.msg.open_spool()
            self._spool(self.msg.head + CRLF)  # the spool holds the whole message, as the core reads it
        return Milter.CONTINUE

    @guarded()
    def body(self, chunk):
        msg = self.msg
        if msg is None or not msg.needs_body or msg.oversized or msg.failed:
            return self._skip_body()
        msg.body_size += len(chunk)
        if msg.header_size + msg.body_size > self.runtime.config.settings.limits.max_message_size:
            msg.oversized = True
            msg.close()  # stop spooling: the message passes untouched apart from stripping
            return self._skip_body()
        if not self._spool(chunk):
            return self._skip_body()
        return Milter.CONTINUE

    def eom(self):
        msg = self.msg
        if msg is None:
            return Milter.CONTINUE
        try:
            if msg.failed:
                return self._fail_safe(msg)
            return self._end_of_message(msg)
        except Exception:
            log.exception("queue %s: end of message failed", self._queue_id())
            return self._fail_safe(msg)
        finally:
            self._reset()

    def abort(self):
        self._reset()
        return Milter.CONTINUE

    def close(self):
        self._reset()
        return Milter.CONTINUE

    # --- helpers ------------------------------------------------------------------------------

    def _reset(self):
        if self.msg is not None:
            self.msg.close()
            self.msg = None

    def _spool(self, data: bytes) -> bool:
        """Append to the message's spool; on failure (disk full, unwritable) the on_error policy applies."""
        try:
            self.msg.spool.write(data)
        except OSError as exc:
            log.error("queue %s: cannot spool the message: %s", self._queue_id() or "-", exc)
            self.msg.failed = "cannot spool the message"
            return False
        return True

    def _skip_body(self):
        return Milter.SKIP if self._protocol & Milter.P_SKIP else Milter.CONTINUE

    def _envelope(self) -> core.Envelope:
        return core.Envelope(mail_from=self.msg.mail_from, recipients=list(self.msg.recipients),
                             queue_id=self._queue_id())

    def _queue_id(self) -> str | None:
        try:
            return self.getsymval("i")
        except Exception:  # outside a callback context (tests) there are no macros
            return None

    def _open_store(self):
        """The key store for this transaction, opened once: at the first RCPT (split) or at end of headers."""
        if self.msg.store is not None or self.msg.store_error:
            return
        try:
            self.msg.store = self.runtime.stores.current()
        except StoreUnavailable as exc:
            self.msg.store_error = str(exc)

    def _needs_body(self) -> bool:
        """True unless the headers show the core has nothing to decrypt or verify (module docstring)."""
        self._open_store()
        if self.msg.store_error:
            return True  # the on_error policy decides at end of message
        settings = self.runtime.config.settings
        self.msg.internal = core.is_internal(self._envelope(), self.msg.store, settings)
        return self.msg.internal and may_carry_crypto(self.msg.content_type())

    def _outcome(self, msg: MessageState) -> core.Outcome:
        envelope = self._envelope()
        settings = self.runtime.config.settings
        head = msg.head
        if msg.store_error:
            return unprocessed_outcome(head, "key store unavailable", envelope, msg.store_error)
        if msg.oversized:
            return core.unfinished(head, core.too_large(settings), envelope, msg.store, settings)
        message = msg.spooled_message() if msg.needs_body else head + CRLF
        if self.runtime.workers is None:
            return core.process(message, envelope, msg.store, settings, progress=self.progress)
        if isinstance(message, bytes) and core.is_light(message):
            # A parse and a scan, here where no worker can be killed: its cost is bounded by LIGHT_SIZE (256 KiB)
            # alone, every search being linear (tests/test_linear.py). Measured: a header folded 80,000 times
            # 0.02 s, 20,000 empty parts 0.06 s; plain mail of that size under 0.25 s. Well inside the deadline,
            # too quick for progress reports.
            return core.process(message, envelope, msg.store, settings)
        try:
            return self.runtime.workers.process(message, envelope, settings, self.progress)
        except StoreUnavailable as exc:  # the worker's own store connection failed
            return unprocessed_outcome(head, "key store unavailable", envelope, str(exc))
        except workers.DeadlineOverrun as exc:  # killed and replaced, or none idle in time: the deadline is a limit
            return core.unfinished(head, DEADLINE_EXCEEDED, envelope, msg.store, settings, key_held=exc.key_held)

    def _end_of_message(self, msg: MessageState):
        outcome = self._outcome(msg)
        unsendable = non_utf8_header(outcome.plan)
        if unsendable:
            reason = f"header {unsendable} of the decrypted content is not UTF-8"
            outcome = unprocessed_outcome(msg.head, reason, self._envelope(), reason)
        settings = self.runtime.config.settings
        reply = core.refusal(outcome, settings)
        if reply:
            return self._refuse(outcome, reply)
        if outcome.error and settings.on_error == "tempfail":
            self._summarise(outcome, f"tempfail: {outcome.error}")
            return self._tempfail()
        self._apply(outcome.plan)
        note = outcome.error and f"passed on error: {outcome.error}"
        if outcome.held_at_limit:
            note = f"passed at limit, still encrypted: {outcome.held_at_limit}"
        self._summarise(outcome, note)
        return Milter.CONTINUE

    def _fail_safe(self, msg: MessageState):
        """After a failure: tempfail, or pass with forged headers stripped (unless edits were already sent)."""
        reason = msg.failed or "internal error"
        outcome = unprocessed_outcome(msg.header_block(), reason, self._envelope(), reason)
        self._summarise(outcome, f"failed: {reason}")
        if self.runtime.config.settings.on_error == "tempfail":
            return self._tempfail()
        if not msg.edits_sent:
            try:
                self._apply(outcome.plan)
            except Exception:
                log.exception("queue %s: cannot even strip forged headers", self._queue_id())
        return Milter.CONTINUE

    def _tempfail(self):
        self.setreply(*TEMPFAIL_REPLY)
        return Milter.TEMPFAIL

    def _refuse(self, outcome: core.Outcome, reply: tuple[str, str, str]):
        """Answer the core's refusal (logged and counted); the MTA sends nothing more of the message."""
        permanent = reply[0].startswith("5")
        if outcome.reject:
            self._summarise(outcome, f"rejected: {outcome.reject}")
        else:
            self._summarise(outcome, f"{'reject' if permanent else 'tempfail'} at limit: {outcome.held_at_limit}")
        self._reset()
        self.setreply(*reply)
        return Milter.REJECT if permanent else Milter.TEMPFAIL

    def _wire_value(self, value: str) -> str:
        """A plan value as the MTA must receive it: with HDR_LEADSPC it writes the value verbatim."""
        return " " + value if self.leading_space else value

    def _apply(self, plan: EditPlan) -> None:
        """Replay the plan: deletions (highest index first), changes, additions, then the whole body."""
        self.msg.edits_sent = True
        for deletion in plan.replay_deletions():
            self.chgheader(deletion.name, deletion.index, None)
        for change in plan.changes:
            self.chgheader(change.name, change.index, self._wire_value(change.value))
        for addition in plan.additions:
            self.addheader(addition.name, self._wire_value(addition.value))
        if plan.body is not None:
            for chunk in _body_chunks(plan.body):
                self.replacebody(chunk)

    def _summarise(self, outcome: core.Outcome, note: str | None) -> None:
        """The one log line per message, and the message counted for ``ciphermilter stats``."""
        msg = self.msg
        elapsed = time.monotonic() - msg.started
        stats.record(outcome, elapsed)
        plan = outcome.plan
        found = ",".join(name.removeprefix(INFO_PREFIX) for name, _ in outcome.info) or "nothing"
        parts = [f"queue {self._queue_id() or '-'}:", f"from=<{msg.mail_from.strip('<>')}>",
                 f"rcpts={len(msg.recipients)}", f"size={msg.header_size + msg.body_size}", f"info={found}",
                 f"deleted={len(plan.deletions)}", f"changed={len(plan.changes)}", f"added={len(plan.additions)}",
                 f"body={'replaced' if plan.body is not None else 'kept'}"]
        if outcome.report.get("skipped"):
            parts.append(f"skipped=\"{outcome.report['skipped']}\"")
        refused = outcome.report.get("readers", {}).get("refused")
        if refused:  # the log may name the envelope recipients, the headers never do (Bcc)
            readers = ",".join(outcome.report["readers"]["recipients"])
            parts.append(f"refused=\"{refused}\" readers=<{readers}>")
        if note:
            parts.append(f"note=\"{note}\"")
        parts.append(f"time={elapsed * 1000:.1f}ms")
        log.info(" ".join(parts))


def _body_chunks(body):
    """A new body in replacebody-sized pieces, from bytes or from a worker's body file (closed at the end)."""
    with io.BytesIO(body) if isinstance(body, bytes) else body as source:
        yield from iter(lambda: source.read(REPLACEBODY_CHUNK), b"")


def _text(value) -> str:
    """An envelope address as text: undecodable bytes kept as surrogates, like the core expects."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
