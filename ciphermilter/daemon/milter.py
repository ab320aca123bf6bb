"""The pymilter glue: collect one message per SMTP transaction, hand it to the core, replay the EditPlan.

No crypto lives here and no judgement about content: at end of headers the
core's :func:`~ciphermilter.core.triage.triage` decides, once, whether the
body is needed at all (an internal recipient and a top-level type that can
carry S/MIME or OpenPGP), whether forged headers must go or flood the
message (then it is rejected before the body), and whether it is too large;
:func:`~ciphermilter.core.pipeline.process` takes that verdict and makes
every other decision. This module turns libmilter callbacks into message
bytes and an :class:`~ciphermilter.core.triage.Envelope`, and the core's
:class:`~ciphermilter.core.plan.EditPlan` back into ``chgheader``/
``addheader``/``replacebody`` calls.

Header reconstruction: we negotiate ``SMFIP_HDR_LEADSPC`` so that the MTA
passes each header value exactly as it travelled (the white space after the
colon included), which makes ``name + ":" + value`` the original field byte for
byte. The price is that the MTA then also writes our values verbatim, so every
value we send gets its leading space back (:meth:`CipherMilter._wire_value`).

Skipping the body: when triage says the body is not needed and the sender
forged no reserved header we answer ACCEPT at end of headers (the MTA then
sends us nothing more for this message); when forged headers must still be
deleted we answer SKIP to the first body chunk and strip them at end of
message.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO, TypeVar

import Milter

from ciphermilter import mime
from ciphermilter.mime import write
from ciphermilter.config import DaemonConfig
from ciphermilter.core import pipeline
from ciphermilter.core.contract import DEADLINE_EXCEEDED
from ciphermilter.core.outcome import INTERNAL_ERROR, Outcome, not_processed, refusal
from ciphermilter.core.plan import EditPlan
from ciphermilter.core.seams import KeyLookup
from ciphermilter.core.triage import Envelope, QueueLog, Skip, Triage, exceeds_size, triage
from ciphermilter.core.result import Result
from ciphermilter.daemon import logline, stats
from ciphermilter.daemon.workers import DeadlineOverrun, StoreProvider, Workers
from ciphermilter.store.holder import StoreUnavailable

log = logging.getLogger(__name__)

CRLF = b"\r\n"
REPLACEBODY_CHUNK = 65535  # libmilter's MILTER_CHUNK_SIZE: larger replacebody calls are split anyway
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
# What a libmilter callback answers: one of Milter's reply codes (pymilter is untyped).
Reply = Any
Callback = TypeVar("Callback", bound=Callable[..., Reply])


def guarded(no_reply_bit: int = 0) -> Callable[[Callback], Callback]:
    """No exception may escape a callback: pymilter would answer 451 4.3.0 for the whole message.

    A failure is logged with its traceback and remembered; end of message
    then applies the on_error policy (tempfail, or pass with forged headers
    stripped and a reason header).
    """
    def decorate(callback: Callback) -> Callback:
        @functools.wraps(callback)
        def wrapper(self: CipherMilter, *args: Any) -> Reply:
            try:
                return callback(self, *args)
            except Exception:
                self._log().exception("%s callback failed", callback.__name__)
                if self.msg is not None:
                    self.msg.failed = INTERNAL_ERROR
                return self._continue(no_reply_bit)
        return wrapper  # type: ignore[return-value]  # functools.wraps keeps the signature mypy cannot see
    return decorate


@dataclass
class Runtime:
    """What every connection shares: the configuration and the key store provider.

    ``stores`` returns an open, up-to-date key store or raises
    :class:`StoreUnavailable`. ``workers`` runs the core in other processes,
    past the GIL; without it, and for light messages
    (:func:`pipeline.is_light`: nothing to decrypt or verify, only a scan),
    the core runs in the connection's own thread.
    """

    config: DaemonConfig
    stores: StoreProvider
    workers: Workers | None = None


@dataclass
class MessageState:
    """One SMTP transaction: reset at MAIL FROM, because one connection carries many messages."""

    mail_from: str
    spool_memory: int
    recipients: list[str] = field(default_factory=list)
    recipient_class: str | None = None  # the class of the first accepted recipient (mixed_recipients = "split")
    header_fields: list[mime.Header] = field(default_factory=list)  # each field as received, CRLF inside folds
    # The same fields as the list triage reads: the MTA split them already (and numbers them so for chgheader).
    # Parsing the joined block again cost 8 us of the 33 us our end of headers took for a message it accepts
    # there (an external recipient: bench/README.md, "plain, external recipient").
    headers: mime.HeaderList = field(default_factory=mime.HeaderList)
    verdict: Triage | None = None  # the core's triage, taken once at end of headers
    store: KeyLookup | None = None
    store_error: str | None = None
    head: bytes = b""  # the header block, fixed at end of headers
    body_size: int = 0
    oversized: bool = False  # past max_message_size: spooling stopped
    edits_sent: bool = False  # after a failure halfway through, indexes no longer match: send no more
    failed: str | None = None  # why a callback failed: the message gets the on_error policy
    started: float = field(default_factory=time.monotonic)

    spool: IO[bytes] | None = None  # made at end of headers, only when the body is read

    @property
    def needs_body(self) -> bool:
        return self.verdict is not None and self.verdict.needs_body

    def open_spool(self) -> None:
        """The spool for the message: in memory up to spool_memory bytes, then a mode 0600 temp file."""
        self.spool = tempfile.SpooledTemporaryFile(max_size=self.spool_memory, prefix="ciphermilter-")

    def spooled_message(self) -> bytes | BinaryIO:
        """The whole message: bytes when the spool is still in memory, else the spool file itself.

        A message too large for memory goes to the core (and to a worker
        process) as the file, so it is never read whole into this process.
        """
        assert self.spool is not None  # opened at end of headers whenever the body is needed
        in_memory = self.spool.tell() <= self.spool_memory  # the spool's own rule for rolling over to a file
        self.spool.seek(0)
        return self.spool.read() if in_memory else self.spool  # type: ignore[return-value]  # a binary file

    def head_entity(self) -> mime.Entity:
        """The header block as an entity without body: parsed only for the outcomes decided without the body."""
        return mime.parse(self.head + CRLF)

    def header_block(self) -> bytes:
        return b"".join(f.raw + CRLF for f in self.header_fields)

    @property
    def header_size(self) -> int:
        return len(self.head)

    @property
    def size(self) -> int:
        """The message's size as the core counts it (``ciphermilter decrypt`` too): header block, blank line, body."""
        return len(self.head) + len(CRLF) + self.body_size

    def close(self) -> None:
        if self.spool is None:
            return
        try:
            self.spool.close()
        except OSError:  # a spool that could not be written may fail to flush too: nothing in it matters now
            pass


class CipherMilter(Milter.Base):  # type: ignore[misc]  # pymilter is untyped: its Base is Any to mypy
    """One instance per MTA connection (libmilter runs each connection in its own thread)."""

    runtime: Runtime  # set on the class by the daemon before serving

    def __init__(self) -> None:
        self.msg: MessageState | None = None
        self.leading_space = False
        self._protocol = 0

    # --- negotiation --------------------------------------------------------------------------

    def negotiate(self, opts: list[int]) -> Reply:
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

    def _continue(self, no_reply_bit: int) -> Reply:
        """CONTINUE, or NOREPLY when the MTA agreed not to wait for this step's reply."""
        return Milter.NOREPLY if self._protocol & no_reply_bit else Milter.CONTINUE

    # --- per-message callbacks ----------------------------------------------------------------

    @Milter.decode("bytes")  # type: ignore[untyped-decorator]  # pymilter's decorators are untyped
    @guarded(Milter.P_NR_MAIL)
    def envfrom(self, mail_from: bytes | str, *params: bytes | str) -> Reply:
        self._reset()
        self.msg = MessageState(_text(mail_from), self.runtime.config.spool_memory)
        return self._continue(Milter.P_NR_MAIL)

    @Milter.decode("bytes")  # type: ignore[untyped-decorator]  # pymilter's decorators are untyped
    @guarded(Milter.P_NR_RCPT)
    def envrcpt(self, recipient: bytes | str, *params: bytes | str) -> Reply:
        if self.msg is None:
            return self._continue(Milter.P_NR_RCPT)
        address = _text(recipient)
        if self._splits() and not self._same_class(self.msg, address):
            self.setreply(*SPLIT_REPLY)
            return Milter.TEMPFAIL
        self.msg.recipients.append(address)
        return self._continue(Milter.P_NR_RCPT)

    def _same_class(self, msg: MessageState, address: str) -> bool:
        """Whether ``address`` is of the transaction's class (the first recipient's), or starts it.

        Without the key store nobody can tell the classes apart: every
        recipient is accepted, and end of message applies on_error.
        """
        self._open_store(msg)
        if msg.store_error:
            return True
        kind = pipeline.recipient_class(address, msg.store, self.runtime.config.settings)
        if msg.recipient_class is None:
            msg.recipient_class = kind
        if kind == msg.recipient_class:
            return True
        log.info("rcpt <%s> answered 452 4.5.3: %s, the transaction's recipients are %s", address.strip("<>"),
                 kind, msg.recipient_class)
        return False

    @Milter.decode("bytes")  # type: ignore[untyped-decorator]  # pymilter's decorators are untyped
    @guarded(Milter.P_NR_HDR)
    def header(self, name: bytes | str, value: bytes) -> Reply:
        """Keep the field as raw bytes: non-ASCII and non-UTF-8 headers must survive untouched."""
        if self.msg is not None:
            name_bytes = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
            if not self.leading_space:
                value = b" " + value  # the MTA dropped the white space after the colon; put back the usual one
            # Folded? Most fields are not, and this runs for every field of every message. Not `b"\n" in value`:
            # bytes.__contains__ first tries its operand as an integer and formats a TypeError to discard
            # (callgrind: 9.5 k of the daemon's 307 k instructions per message accepted at end of headers).
            if value.find(b"\n") != -1:
                value = write.to_crlf(value)
            # The MTA split the field at its first colon: its name is the field's name (mime.field_name).
            self.msg.header_fields.append(mime.Header(mime.field_name(name_bytes), name_bytes + b":" + value))
        return self._continue(Milter.P_NR_HDR)

    @guarded()
    def eoh(self) -> Reply:
        msg = self.msg
        if msg is None:
            return Milter.CONTINUE
        msg.head = msg.header_block()
        msg.headers = mime.HeaderList(msg.header_fields)
        envelope = self._envelope(msg)
        verdict = msg.verdict = self._triage(msg, envelope)
        if verdict.flood:  # decided before the body: the message can only be refused
            outcome = self._decided(msg, verdict, envelope)
            return self._refuse(msg, outcome, refusal(outcome, self.runtime.config.settings))
        if not verdict.needs_body and not verdict.forged:
            self._summarise(msg, self._decided(msg, verdict, envelope), "pass")
            self._reset()
            return Milter.ACCEPT
        if verdict.needs_body:
            msg.open_spool()
            self._spool(msg, msg.head + CRLF)  # the spool holds the whole message, as the core reads it
        return Milter.CONTINUE

    def _triage(self, msg: MessageState, envelope: Envelope) -> Triage:
        """The core's verdict on the header block, taken once (a bug of ours in it reads the body)."""
        settings = self.runtime.config.settings
        self._open_store(msg)
        try:
            return triage(msg.headers, envelope, msg.store, settings, store_error=msg.store_error)
        except Exception:  # never let a bug of ours turn into the MTA's 451 for this callback
            log.exception("end of headers: cannot decide, reading the body")
            unsure = triage(msg.headers, Envelope(), None, settings)  # no recipient, no store: only the headers
            return Triage(internal=True, deletions=unsure.deletions, flood=unsure.flood)

    @guarded()
    def body(self, chunk: bytes) -> Reply:
        msg = self.msg
        if msg is None or not msg.needs_body or msg.oversized or msg.failed or msg.verdict is None:
            return self._skip_body()
        msg.body_size += len(chunk)
        if exceeds_size(msg.size, self.runtime.config.settings.limits):
            msg.oversized = True
            msg.verdict = msg.verdict.oversized()
            msg.close()  # stop spooling: the message passes untouched apart from stripping
            return self._skip_body()
        if not self._spool(msg, chunk):
            return self._skip_body()
        return Milter.CONTINUE

    def eom(self) -> Reply:
        msg = self.msg
        if msg is None:
            return Milter.CONTINUE
        try:
            if msg.failed:
                return self._fail_safe(msg)
            return self._end_of_message(msg)
        except Exception:
            self._log().exception("end of message failed")
            return self._fail_safe(msg)
        finally:
            self._reset()

    def abort(self) -> Reply:
        self._reset()
        return Milter.CONTINUE

    def close(self) -> Reply:
        self._reset()
        return Milter.CONTINUE

    # --- helpers ------------------------------------------------------------------------------

    def _reset(self) -> None:
        if self.msg is not None:
            self.msg.close()
            self.msg = None

    def _log(self) -> QueueLog:
        """The log for this transaction's lines: each starts with Postfix's queue ID."""
        return QueueLog(log, self._queue_id())

    def _spool(self, msg: MessageState, data: bytes) -> bool:
        """Append to the message's spool; on failure (disk full, unwritable) the on_error policy applies."""
        assert msg.spool is not None  # opened at end of headers whenever the body is needed
        try:
            msg.spool.write(data)
        except OSError as exc:
            self._log().error("cannot spool the message: %s", exc)
            msg.failed = "cannot spool the message"
            return False
        return True

    def _skip_body(self) -> Reply:
        return Milter.SKIP if self._protocol & Milter.P_SKIP else Milter.CONTINUE

    def _envelope(self, msg: MessageState) -> Envelope:
        return Envelope(mail_from=msg.mail_from, recipients=list(msg.recipients), queue_id=self._queue_id())

    def _queue_id(self) -> str | None:
        try:
            queue_id: str | None = self.getsymval("i")
        except Exception:  # outside a callback context (tests) there are no macros
            return None
        return queue_id

    def _open_store(self, msg: MessageState) -> None:
        """The key store for this transaction, opened once: at the first RCPT (split) or at end of headers."""
        if msg.store is not None or msg.store_error:
            return
        try:
            msg.store = self.runtime.stores.current()
        except StoreUnavailable as exc:
            msg.store_error = str(exc)

    def _decided(self, msg: MessageState, verdict: Triage, envelope: Envelope) -> Outcome:
        """The outcome triage decided alone (refused, skipped, too large, no store), from the header block."""
        outcome = pipeline.decided(verdict, msg.head_entity, envelope, msg.store, self.runtime.config.settings)
        assert outcome is not None  # only asked when the verdict refuses or skips the message
        return outcome

    def _outcome(self, msg: MessageState) -> Outcome:
        verdict = msg.verdict
        if verdict is None:
            raise RuntimeError("end of message before end of headers")
        envelope = self._envelope(msg)
        if verdict.skip is not None:
            return self._decided(msg, verdict, envelope)
        settings = self.runtime.config.settings
        message = msg.spooled_message()
        pool = self.runtime.workers
        if pool is None:
            return pipeline.process(message, envelope, msg.store, settings, verdict=verdict, progress=self.progress)
        if isinstance(message, bytes) and pipeline.is_light(message):
            # A parse and a scan, here where no worker can be killed: its cost is bounded by LIGHT_SIZE (256 KiB)
            # alone, every search being linear (tests/test_linear.py). Measured: a header folded 80,000 times
            # 0.02 s, 20,000 empty parts 0.06 s; plain mail of that size under 0.25 s. Well inside the deadline,
            # too quick for progress reports.
            return pipeline.process(message, envelope, msg.store, settings, verdict=verdict)
        try:
            return pool.process(message, envelope, settings, self.progress, verdict)
        except StoreUnavailable as exc:  # the worker's own store connection failed: as if triage had known it
            return self._decided(msg, dataclasses.replace(verdict, skip=Skip.STORE_UNAVAILABLE, store_error=str(exc)),
                                 envelope)
        except DeadlineOverrun as exc:  # killed and replaced, or none idle in time: the deadline is a limit
            # Nothing is known of the body but what the worker said before it was killed (key_held, rule (a)).
            return pipeline.stopped_at_limit(msg.head_entity(), DEADLINE_EXCEEDED, envelope, msg.store, settings,
                                             key_held=exc.key_held)

    def _end_of_message(self, msg: MessageState) -> Reply:
        outcome = self._outcome(msg)
        settings = self.runtime.config.settings
        reply = refusal(outcome, settings)
        if reply:
            return self._refuse(msg, outcome, reply)
        if outcome.error and settings.on_error == "tempfail":
            self._summarise(msg, outcome, "tempfail")
            return self._tempfail()
        self._apply(msg, outcome.plan)
        self._summarise(msg, outcome, "pass")
        return Milter.CONTINUE

    def _fail_safe(self, msg: MessageState) -> Reply:
        """After a failure: tempfail, or pass with forged headers stripped (unless edits were already sent)."""
        reason = msg.failed or INTERNAL_ERROR
        headers = mime.HeaderList(msg.header_fields)  # the failure may have come before end of headers
        outcome = not_processed(headers, reason, self._envelope(msg), Result.ERROR, reason)
        tempfail = self.runtime.config.settings.on_error == "tempfail"
        self._summarise(msg, outcome, "tempfail" if tempfail else "pass")
        if tempfail:
            return self._tempfail()
        if not msg.edits_sent:
            try:
                self._apply(msg, outcome.plan)
            except Exception:
                self._log().exception("cannot even strip forged headers")
        return Milter.CONTINUE

    def _tempfail(self) -> Reply:
        self.setreply(*TEMPFAIL_REPLY)
        return Milter.TEMPFAIL

    def _refuse(self, msg: MessageState, outcome: Outcome, reply: tuple[str, str, str] | None) -> Reply:
        """Answer the core's refusal (logged and counted); the MTA sends nothing more of the message."""
        assert reply is not None  # a rejected or held outcome always has its refusal
        permanent = reply[0].startswith("5")
        self._summarise(msg, outcome, "reject" if permanent else "tempfail")
        self._reset()
        self.setreply(*reply)
        return Milter.REJECT if permanent else Milter.TEMPFAIL

    def _wire_value(self, value: str) -> str:
        """A plan value as the MTA must receive it: with HDR_LEADSPC it writes the value verbatim."""
        return " " + value if self.leading_space else value

    def _apply(self, msg: MessageState, plan: EditPlan) -> None:
        """Replay the plan: deletions (highest index first), changes, additions, then the whole body."""
        msg.edits_sent = True
        for deletion in plan.replay_deletions():
            self.chgheader(deletion.name, deletion.index, None)
        for change in plan.changes:
            self.chgheader(change.name, change.index, self._wire_value(change.value))
        for addition in plan.additions:
            self.addheader(addition.name, self._wire_value(addition.value))
        if plan.body is not None:
            for chunk in _body_chunks(plan.body):
                self.replacebody(chunk)

    def _summarise(self, msg: MessageState, outcome: Outcome, action: str) -> None:
        """The one log line per message (daemon/logline.py), and the message counted for ``ciphermilter stats``.

        ``action``: what the MTA was told, pass, tempfail or reject. The log may name the envelope recipients,
        the headers never do (Bcc)."""
        elapsed = time.monotonic() - msg.started
        stats.record(outcome, elapsed)
        if not log.isEnabledFor(logging.INFO):  # log_level = "warning": the line would be built to be dropped
            return
        body = outcome.plan.body
        line = logline.summary(self._envelope(msg), outcome, msg.header_size + msg.body_size,
                               None if body is None else _size(body), action, elapsed)
        self._log().info(line)


def _size(body: bytes | BinaryIO) -> int:
    """The size of a new body, bytes or a worker's body file (its position kept for the replay)."""
    if isinstance(body, bytes):
        return len(body)
    return os.fstat(body.fileno()).st_size


def _body_chunks(body: bytes | BinaryIO) -> Iterator[bytes]:
    """A new body in replacebody-sized pieces, from bytes or from a worker's body file (closed at the end)."""
    with io.BytesIO(body) if isinstance(body, bytes) else body as source:
        yield from iter(lambda: source.read(REPLACEBODY_CHUNK), b"")


def _text(value: bytes | str) -> str:
    """An envelope address as text: undecodable bytes kept as surrogates, like the core expects."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
