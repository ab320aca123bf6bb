"""Worker processes for :func:`pipeline.process`: the daemon's way past the GIL.

libmilter runs every connection in its own thread, but the private-key
operations (cryptography's RSA) and the MIME and CMS parsing hold the
GIL, so threads use one core: measured, two threads decrypting RSA-2048
ran at 0.93x one thread, and the daemon on two cores at 1.1x its speed on
one. Each worker is a fresh interpreter (``spawn``: forking a process whose
libmilter threads hold locks is unsafe) with its own key store connection,
opened and kept fresh by the same :class:`StoreHolder` logic the daemon uses.

A milter thread borrows an idle worker, hands it the message over the
worker's own pipe and waits, reporting progress to the MTA, for the outcome.
A message larger than ``spool_memory`` goes as its spool file's descriptor
and a new body over 1 MiB comes back as a file, so neither is ever pickled
(a 50 MB message peaks at 194 MB over all processes, see bench/README.md).
This costs one round trip; ``concurrent.futures`` added two more thread hops
(its feeder and result threads), measured at 0.55 ms per message, three
times the core's own cost for plain mail. A worker that dies (killed, out
of memory) fails only the message it had (the on_error policy applies); its
slot starts a new worker for the next message.

The deadline holds whatever the core does: the core checks
``deadline_seconds`` between its steps, but one slow step (a quadratic
search, a long run of private-key operations) overran it by minutes. So the
milter thread waits for the reply at most ``deadline_seconds`` +
:data:`DEADLINE_MARGIN` after hand-off; past that it kills the worker
(SIGKILL), starts a fresh one in its slot and raises :class:`DeadlineOverrun`
(the message gets its outcome at once: the deadline is a limit, on_limit
applies). The clock starts at the hand-off to :meth:`Workers.process`, the
final dot: a message waits for an idle worker at most ``deadline_seconds``
(with workers = 1 and two slow messages at once, the second waited a whole
deadline more, 5.15 s for a 1 s deadline) and its worker gets only what is
left, the core too (its own check agrees); only a new worker's start, about
0.5 s, never counts against a message. A worker that finds a key the
reader rule lets us use for the content says so at once (:class:`KeyHeldFlag`),
so a message whose worker is killed afterwards is still held (on_limit).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import pickle
import queue
import select
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing import reduction
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from typing import Any, BinaryIO, Protocol

from ciphermilter.core import pipeline
from ciphermilter.core.contract import Progress
from ciphermilter.core.findings import Report
from ciphermilter.core.outcome import Outcome
from ciphermilter.core.seams import KeyLookup
from ciphermilter.core.settings import Settings
from ciphermilter.core.triage import Envelope, Triage
from ciphermilter.store.holder import StoreHolder

log = logging.getLogger(__name__)

# Seconds a worker may take before the MTA hears progress, and between reports after that: none for a quick
# message (a packet at hand-off woke the MTA once more per message), far inside Postfix's 300 s content timeout.
PROGRESS_INTERVAL = 10.0
STOP_TIMEOUT = 10.0
# Seconds past deadline_seconds a worker gets to answer before it is killed: the core's own deadline check
# (between steps) answers first whenever no single step overruns; this covers the pickling and the pipe.
DEADLINE_MARGIN = 1.0
# Seconds a new worker may take to import and say it is ready (measured: about 0.5 s on an idle host).
STARTUP_TIMEOUT = 60.0
READY = "ready"
# New bodies larger than this come back as a file passed over the pipe, not as a pickled copy.
FILE_THRESHOLD = 1 << 20


class WorkerDied(Exception):
    """The worker process ended while it had the message."""


class DeadlineOverrun(Exception):
    """No reply within deadline_seconds + DEADLINE_MARGIN of the hand-off (the worker was killed and replaced),
    or no idle worker within deadline_seconds. ``key_held``: the worker had found a key for the content."""

    def __init__(self, reason: str, key_held: bool = False):
        super().__init__(reason)
        self.key_held = key_held


class WorkersCannotStart(Exception):
    """The worker processes cannot start as the daemon's user: the daemon refuses to run (one line, the reason)."""


class KeyHeldFlag:
    """A byte in shared memory per worker: the worker sets it once it finds that a key the reader rule lets us
    use opens the content (``Context.on_key_held``); the daemon reads it only when it kills the worker at the
    deadline, so that the message is still held (on_limit).

    Shared memory, not a note on the pipe: the note woke the waiting milter thread once more for every message
    it decrypts (measured with ``perf stat -a``, S/MIME at 16 connections on 2 cores: 39–40.5 context switches
    per message with the note, 37.8–38.9 without).
    """

    def __init__(self, context: multiprocessing.context.SpawnContext):
        self._byte = context.RawValue("B", 0)

    def set(self) -> None:
        self._byte.value = 1

    def clear(self) -> None:
        self._byte.value = 0

    def __bool__(self) -> bool:
        return bool(self._byte.value)


class StoreProvider(Protocol):
    """Hands out an open, up-to-date key store, or raises :class:`~ciphermilter.store.holder.StoreUnavailable`
    with the reason (:class:`~ciphermilter.store.holder.StoreHolder`: the daemon's threads and each worker have one)."""

    def current(self) -> KeyLookup: ...


def _serve(conn: Connection, key_held: KeyHeldFlag, store_path: str, master_key_path: str) -> None:
    """A worker's life: messages in, outcomes (or the exception) out, until the daemon closes the pipe."""
    holder: StoreProvider = StoreHolder(store_path, master_key_path)
    settings: Settings | None = None
    conn.send(READY)  # imports done: the daemon's deadline clock may start with the first message
    while True:
        try:
            message, envelope, verdict, new_settings, deadline = conn.recv()
            settings = new_settings or settings
            if message is None:  # the message comes as its spool file
                message = os.fdopen(reduction.recv_handle(conn), "rb")
        except EOFError:
            return
        try:
            outcome = pipeline.process(message, envelope, holder.current(), settings, verdict=verdict,
                                       deadline=deadline, on_key_held=key_held.set)
            reply: tuple[bool, Outcome | Exception] = (True, _for_the_daemon(outcome))
        except Exception as exc:  # StoreUnavailable, or OSError reading the spool file: the daemon decides
            reply = (False, exc)
        if not isinstance(message, bytes):
            message.close()
        del message  # a large message must not stay alive until the next one arrives
        _send_outcome(conn, reply)


def _for_the_daemon(outcome: Outcome) -> Outcome:
    """The outcome without the detailed report, which only ``ciphermilter decrypt`` shows: less to pickle.

    The daemon reads the plan, the info headers, the error, the rejection, why a message was skipped
    (for the log line) and whom the reader rule refused a decryption for.
    """
    kept: Report = {}
    if "skipped" in outcome.report:
        kept["skipped"] = outcome.report["skipped"]
    if "readers" in outcome.report:
        kept["readers"] = outcome.report["readers"]
    return dataclasses.replace(outcome, report=kept)


def _send_outcome(conn: Connection, reply: tuple[bool, Outcome | Exception]) -> None:
    """Send the reply; a large new body follows it as a file, not inside the pickle."""
    ok, outcome = reply
    body = outcome.plan.body if isinstance(outcome, Outcome) else None
    if not isinstance(body, bytes) or len(body) <= FILE_THRESHOLD:  # a worker's core gives bytes
        _send(conn, reply)
        return
    assert isinstance(outcome, Outcome)
    with tempfile.TemporaryFile(prefix="ciphermilter-body-") as file:
        file.write(body)
        file.seek(0)  # the daemon's copy of the descriptor shares this offset
        outcome.plan.body = None
        del body
        _send(conn, (ok, outcome, True))
        reduction.send_handle(conn, file.fileno(), os.getppid())


def _send(conn: Connection, value: object) -> None:
    """``conn.send(value)`` with the plain pickler: what crosses (bytes, the core's dataclasses, an exception)
    needs none of multiprocessing's own reducers, and its ForkingPickler copies the copyreg dispatch table on
    every call: 42 k of the 103 k instructions it took to pickle a 20 KB message (callgrind). The other end's
    ``recv()`` is ``pickle.loads``, so it reads both."""
    conn.send_bytes(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))


def _receive_outcome(conn: Connection, reply: tuple[Any, ...]) -> Outcome | Exception:
    """The worker's outcome or exception; a new body sent as a file becomes the plan's body (an open file)."""
    _, value, *body_file = reply
    if body_file:
        value.plan.body = os.fdopen(reduction.recv_handle(conn), "rb")
    assert isinstance(value, (Outcome, Exception))  # what _serve sends
    return value


def unreachable_installation() -> str | None:
    """Why this process could not start a worker, or None: the interpreter, the package, the libraries
    and the working directory (a spawned worker changes into it) must be reachable by the current user."""
    needs = [(sys.executable, os.X_OK), (os.path.dirname(os.path.abspath(pipeline.__file__)), os.R_OK | os.X_OK),
             (sysconfig.get_paths()["purelib"], os.R_OK | os.X_OK), (os.getcwd(), os.X_OK)]
    for path, mode in needs:
        blocked = _first_blocked(path, mode)
        if blocked:
            return f"uid {os.getuid()} may not enter {blocked}, on the way to {path}"
    return None


def _first_blocked(path: str, mode: int) -> str | None:
    """The first directory on the way to ``path`` the current user may not enter, or ``path`` itself when
    it lacks ``mode``; None when all is reachable."""
    for directory in directories_on_the_way(path):
        if not os.access(directory, os.X_OK):
            return directory
    return None if os.access(path, mode) else path


def directories_on_the_way(path: str) -> list[str]:
    """Every directory from / down to the one holding ``path`` (each needs search permission to reach it)."""
    parts = os.path.abspath(path).split(os.sep)[1:-1]
    return [os.sep + os.sep.join(parts[:depth]) for depth in range(len(parts) + 1)]


@dataclass
class _Worker:
    process: SpawnProcess
    conn: Connection
    key_held: KeyHeldFlag
    settings: Settings | None = None  # the settings this worker was last sent
    ready: bool = False  # the worker has sent READY
    # Waits for the worker's reply. Connection.poll() builds a selector on every call (py-spy --gil:
    # 17 % of the daemon's time holding the GIL for S/MIME); one poll object per worker builds none.
    replies: select.poll = field(default_factory=select.poll)

    def __post_init__(self) -> None:
        self.replies.register(self.conn.fileno(), select.POLLIN)

    def reply_within(self, seconds: float) -> bool:
        """True once the worker has written its reply (or died: the read then fails); False after ``seconds``."""
        return bool(self.replies.poll(seconds * 1000))

    def wait_until_ready(self) -> None:
        """Wait for READY once; EOFError (a dead worker, for the caller) when it ends or stays silent that long."""
        if self.ready:
            return
        if not self.reply_within(STARTUP_TIMEOUT):
            raise EOFError(f"no {READY!r} within {STARTUP_TIMEOUT:g} s")
        self.ready = self.conn.recv() == READY  # EOFError when it died while starting

    def answers_within(self, seconds: float, progress: Progress) -> bool:
        """True once the worker has replied (or died); False after ``seconds``. ``progress()`` after every
        PROGRESS_INTERVAL of waiting: the MTA knows the message is being worked on."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            if self.reply_within(min(PROGRESS_INTERVAL, left)):
                return True
            if left > PROGRESS_INTERVAL:  # not when the deadline has just run out: the verdict follows at once
                progress()

    def stop(self) -> None:
        self.conn.close()  # the worker sees EOF and returns
        self.process.join(STOP_TIMEOUT)
        if self.process.is_alive():
            self.kill()

    def kill(self) -> None:
        """SIGKILL: whatever the worker is doing, it stops now (it holds nothing that needs cleaning up)."""
        self.process.kill()
        self.process.join()
        self.conn.close()


def _send_message(worker: _Worker, message: bytes | BinaryIO, envelope: Envelope, verdict: Triage | None,
                  settings: Settings, deadline: float) -> None:
    """Bytes go inside the pickle; a spool file goes as its descriptor, so the message is not copied.

    The settings go only when they are not the ones the worker already has
    (the daemon's never change): pickling them cost more than the envelope.
    ``deadline`` is a time.monotonic() value: the clock is the host's, the same in every process.
    """
    new_settings = None if settings is worker.settings else settings
    worker.settings = settings
    if isinstance(message, bytes):
        _send(worker.conn, (message, envelope, verdict, new_settings, deadline))
        return
    _send(worker.conn, (None, envelope, verdict, new_settings, deadline))
    reduction.send_handle(worker.conn, message.fileno(), worker.process.pid)


class Workers:
    """``count`` worker processes that run :func:`pipeline.process`, started by :meth:`start` (the daemon) or
    each on first use."""

    def __init__(self, count: int, store_path: str, master_key_path: str):
        self.count = count
        self._args = (store_path, master_key_path)
        self._context = multiprocessing.get_context("spawn")
        # SimpleQueue is C code: with 16 connections waiting on 2 workers, Queue's Condition
        # machinery in Python took a sixth of the daemon's own CPU time (py-spy --gil).
        self._idle: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()
        for _ in range(count):
            self._idle.put(None)  # a slot whose worker is not started yet

    def start(self) -> None:
        """Start every worker now and wait until each has imported the pipeline; :class:`WorkersCannotStart`.

        The daemon calls this after dropping root, so that a user who cannot
        run the installation stops the start instead of failing every message
        (issue 17: cloned under /root, mode 0700, every message passed with
        "Not-Processed: internal error", still encrypted, past the scanners).
        """
        blocked = unreachable_installation()
        if blocked:
            raise WorkersCannotStart(blocked)
        started: list[_Worker] = []
        try:
            for _ in range(self.count):
                started.append(self._start())
            for worker in started:
                worker.wait_until_ready()
        except (OSError, EOFError) as exc:
            for worker in started:
                worker.kill()
            raise WorkersCannotStart(f"a worker process ended while starting ({exc})") from None
        for worker in started:
            self._idle.get_nowait()  # an empty slot gives way to its started worker
            self._idle.put(worker)

    def _start(self) -> _Worker:
        parent_end, child_end = self._context.Pipe()
        key_held = KeyHeldFlag(self._context)
        process = self._context.Process(target=_serve, args=(child_end, key_held, *self._args), daemon=True,
                                        name="ciphermilter-worker")
        process.start()
        child_end.close()
        return _Worker(process, parent_end, key_held)

    def process(self, message: bytes | BinaryIO, envelope: Envelope, settings: Settings, progress: Progress,
                verdict: Triage | None = None) -> Outcome:
        """:func:`pipeline.process` in a worker; ``progress()`` after every PROGRESS_INTERVAL of waiting.

        ``message`` is bytes or the spool file (its descriptor is passed);
        ``verdict`` is the message's triage, taken by the daemon at end of
        headers (without it, the worker takes it). A large new body comes back as an open file in ``plan.body``.

        Raises :class:`WorkerDied`, :class:`DeadlineOverrun` (the worker was
        killed and replaced), or what the worker raised (:class:`~ciphermilter.store.holder.StoreUnavailable`).
        """
        seconds = settings.limits.deadline_seconds
        deadline = time.monotonic() + seconds
        try:
            worker = self._idle.get(timeout=seconds)
        except queue.Empty:
            raise DeadlineOverrun(f"no idle worker within {seconds:g} s") from None
        try:
            if worker is None:
                worker = self._start()
            starting = time.monotonic()
            worker.wait_until_ready()
            deadline += time.monotonic() - starting  # a new worker's imports (about 0.5 s) never count
            worker.key_held.clear()
            _send_message(worker, message, envelope, verdict, settings, deadline)
            if not worker.answers_within(deadline + DEADLINE_MARGIN - time.monotonic(), progress):
                killed = worker
                worker = self._replace(killed)  # kills and joins it first: its flag can no longer change
                raise DeadlineOverrun(f"no reply within {seconds:g} s", bool(killed.key_held))
            value = _receive_outcome(worker.conn, worker.conn.recv())
        except (EOFError, OSError):
            if worker is not None:  # None: it died while starting
                worker.stop()
            worker = None
            raise WorkerDied("the worker process ended while it had the message") from None
        finally:
            self._idle.put(worker)
        if isinstance(value, Outcome):
            return value
        raise value

    def _replace(self, worker: _Worker) -> _Worker:
        """Kill a worker that overran the deadline and start its successor at once (it imports meanwhile)."""
        worker.kill()
        successor = self._start()
        log.warning("worker %d killed: no reply within the deadline; worker %d replaces it", worker.process.pid,
                    successor.process.pid)
        return successor

    def close(self) -> None:
        """Stop the idle workers (the daemon calls this once libmilter has stopped serving)."""
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            if worker is not None:
                worker.stop()
