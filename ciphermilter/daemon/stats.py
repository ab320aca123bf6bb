"""Statistics: what the daemon counts, the file ``ciphermilter stats`` reads, and the Prometheus exposition.

The daemon calls :func:`record` once per message with the core's outcome.
Counting reads only the outcome's :class:`~ciphermilter.core.findings.Facts`
(flags and failure reasons the handlers rendered from their findings, as they
rendered the info headers), never the message, so it costs microseconds and
cannot disagree with what the message says about itself.

Counters live in memory (one lock, held only to add) and an
:class:`Exporter` thread writes a snapshot atomically every few seconds to
the stats file and, when configured, a Prometheus textfile (for
node_exporter's textfile collector); it can also serve ``/metrics`` on a
loopback port. Nothing is exported unless the daemon starts an exporter.
"""

from __future__ import annotations

import bisect
import datetime
import http.server
import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NotRequired, TypedDict

from ciphermilter import files
from ciphermilter.core.outcome import Outcome
from ciphermilter.core.result import Result
from ciphermilter.store import keyfacts
from ciphermilter.store.holder import StoreHolder, StoreUnavailable

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
TIMING_WINDOW = 10_000  # the most recent messages the percentiles are computed from
PERCENTILES = (0.5, 0.9, 0.99)
MAX_REASONS = 200  # distinct failure reasons kept; more are counted under OTHER_REASON (bounded label set)
OTHER_REASON = "other"
LOOPBACK = "127.0.0.1"
# The latency histogram's upper bounds, seconds, per result: plain mail takes under a millisecond in the
# core, an S/MIME message 1-20 ms, a large or RSA-4096 one 0.1-1 s; the deadline is 30 s by default.
RESULT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Key expiry moves in days: the store's keys are parsed for it at most this often (seconds), not every write.
EXPIRY_REFRESH = 300.0
# node_exporter (a user of its own) reads the Prometheus textfile through the file's group; the stats file
# is only read by `ciphermilter stats`, run as root or as the daemon's user, so it stays 0600.
TEXTFILE_MODE = 0o640

# name -> help text; the order is the order of `ciphermilter stats` and of the exposition.
COUNTERS = {
    "messages": "Messages the milter handled.",
    "not_internal": "Messages with no recipient in an internal domain (only forged headers stripped).",
    "not_processed": "Messages passed on unprocessed (a limit, broken MIME, store unavailable, an internal error).",
    "errors": "Messages whose processing failed for a reason of ours (the on_error policy applied).",
    "rejected": "Messages refused with 554 5.7.0 at end of headers: a forged-header flood (reasons counted as failures).",
    "limit_held": "Messages a limit stopped while they held encrypted content we hold a key for (on_limit applied).",
    "smime_encrypted": "Messages with an S/MIME encrypted layer.",
    "smime_decrypted": "Messages whose S/MIME encryption was removed.",
    "smime_key_not_found": "S/MIME encrypted messages for which no private key is in the store.",
    "smime_signed": "Messages with an S/MIME signature.",
    "smime_verified": "S/MIME signed messages whose every signature verified.",
    "smime_trusted": "S/MIME signed messages whose every signer chains to a trust anchor.",
    "pgp_encrypted": "Messages with OpenPGP encrypted content.",
    "pgp_decrypted": "Messages whose OpenPGP encryption was removed.",
    "pgp_key_not_found": "OpenPGP encrypted messages for which no secret key is in the store.",
    "pgp_signed": "Messages with an OpenPGP signature.",
    "pgp_verified": "OpenPGP signed messages whose every signature verified.",
}

# Info headers whose value is a reason something failed, in the order failures are counted.
FAILURE_HEADERS = (
    "Not-Processed",
    "SMIME-Decryption-Failed",
    "SMIME-Decryption-Refused",
    "SMIME-Not-Decrypted",
    "SMIME-Signature-Failed",
    "SMIME-Unsupported",
    "Signer-Verification-Info",
    "Signer-Trusted-Info",
    "PGP-Decryption-Failed",
    "PGP-Decryption-Refused",
    "PGP-Decryption-Withheld",
    "PGP-Signature-Failure",
)


def counted(outcome: Outcome) -> tuple[set[str], list[tuple[str, str]]]:
    """(the counters one message adds 1 to, its (header, reason) failures), from the outcome's facts."""
    found = {"messages", *outcome.facts.counted()}
    found |= {name for name, happened in (("errors", outcome.error), ("rejected", outcome.reject),
                                          ("limit_held", outcome.held_at_limit)) if happened}
    failures = sorted(((failure.header, failure.reason) for failure in outcome.facts.failures
                       if failure.header in _FAILURE_ORDER), key=lambda failure: _FAILURE_ORDER[failure[0]])
    if outcome.error and not failures:
        failures.append(("error", outcome.error))
    if outcome.reject:
        failures.append(("rejected", outcome.reject))
    return found, failures


_FAILURE_ORDER = {header: position for position, header in enumerate(FAILURE_HEADERS)}


class Timing(TypedDict):
    count: int
    sum: float
    window: int  # messages the quantiles are computed from
    quantiles: dict[str, float]  # "0.5" -> seconds
    max: float | None


class ResultTiming(TypedDict):
    """One result's latency histogram: ``buckets[i]`` messages took at most RESULT_BUCKETS[i] seconds
    (cumulative, as Prometheus counts them), ``count`` of them in all."""

    buckets: list[int]
    sum: float
    count: int


class StoreHealth(TypedDict):
    reachable: bool  # the store opened and answered at the last check
    earliest_key_expiry: float | None  # Unix time the first private key still in use expires; None: none does


class Snapshot(TypedDict):
    """The stats file: what ``ciphermilter stats`` shows (FORMAT_VERSION; the keys marked NotRequired came
    later within the version: a reader takes their absence as "not known")."""

    version: int
    pid: int
    started: str  # ISO 8601
    updated: str
    counters: dict[str, int]
    failures: dict[str, dict[str, int]]  # header -> reason -> count
    processing_seconds: Timing
    results: NotRequired[dict[str, ResultTiming]]  # result word (core/result.py) -> its latency
    store: NotRequired[StoreHealth]  # absent until the exporter checked the store


class Counters:
    """The daemon's counters; every connection thread records into the same instance."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = _utcnow()
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.failures: dict[str, dict[str, int]] = {}
        self.times: deque[float] = deque(maxlen=TIMING_WINDOW)
        self.time_sum = 0.0
        self._reasons = 0
        self.results = {result.value: _empty_timing() for result in Result}
        self.store: StoreHealth | None = None  # set by the exporter's checks

    def record(self, outcome: Outcome, elapsed_s: float) -> None:
        found, failures = counted(outcome)
        result = outcome.verdict().result.value
        first_bucket = bisect.bisect_left(RESULT_BUCKETS, elapsed_s)
        with self._lock:
            for name in found:
                self.counts[name] += 1
            for header, reason in failures:
                self._count_failure(header, reason)
            self.times.append(elapsed_s)
            self.time_sum += elapsed_s
            timing = self.results[result]
            for index in range(first_bucket, len(RESULT_BUCKETS)):
                timing["buckets"][index] += 1
            timing["sum"] += elapsed_s
            timing["count"] += 1

    def _count_failure(self, header: str, reason: str) -> None:
        reasons = self.failures.setdefault(header, {})
        if reason not in reasons:
            if self._reasons >= MAX_REASONS:
                reason = OTHER_REASON
            else:
                self._reasons += 1
        reasons[reason] = reasons.get(reason, 0) + 1

    def snapshot(self) -> Snapshot:
        """Everything ``ciphermilter stats`` shows, as JSON-ready data."""
        with self._lock:
            counts = dict(self.counts)
            failures = {header: dict(reasons) for header, reasons in self.failures.items()}
            times = sorted(self.times)
            time_sum = self.time_sum
            results = {result: {**timing, "buckets": list(timing["buckets"]), "sum": round(timing["sum"], 6)}
                       for result, timing in self.results.items()}
            store = self.store
        timing: Timing = {"count": counts["messages"], "sum": round(time_sum, 6), "window": len(times),
                  "quantiles": {f"{q:g}": round(_quantile(times, q), 6) for q in PERCENTILES} if times else {},
                  "max": round(times[-1], 6) if times else None}
        snapshot: Snapshot = {"version": FORMAT_VERSION, "pid": os.getpid(), "started": _iso(self.started),
                              "updated": _iso(_utcnow()), "counters": counts, "failures": failures,
                              "processing_seconds": timing, "results": results}  # type: ignore[typeddict-item]
        if store is not None:
            snapshot["store"] = store
        return snapshot


def _empty_timing() -> ResultTiming:
    return {"buckets": [0] * len(RESULT_BUCKETS), "sum": 0.0, "count": 0}


class StoreProbe:
    """The store's health for the metrics: reachable at every check (a stat and a query, as each message
    asks), the earliest key expiry recomputed every EXPIRY_REFRESH seconds while the store is reachable."""

    def __init__(self, holder: StoreHolder):
        self.holder = holder
        self._expiry: float | None = None
        self._expiry_checked: float | None = None

    def __call__(self) -> StoreHealth:
        try:
            store = self.holder.current()
            now = time.monotonic()
            if self._expiry_checked is None or now - self._expiry_checked >= EXPIRY_REFRESH:
                earliest = keyfacts.earliest_expiry(store, _utcnow())
                self._expiry = None if earliest is None else earliest.timestamp()
                self._expiry_checked = now
        except StoreUnavailable:  # logged by the holder, once
            return {"reachable": False, "earliest_key_expiry": self._expiry}
        except Exception as exc:  # a store that opens but cannot answer: unreachable all the same, and say why
            log.warning("key store check failed: %s", exc)
            return {"reachable": False, "earliest_key_expiry": self._expiry}
        return {"reachable": True, "earliest_key_expiry": self._expiry}


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of a sorted, non-empty list."""
    rank = math.ceil(round(len(ordered) * q, 9))  # rounded first: 0.07 * 100 is 7.000000000000001
    return ordered[max(rank, 1) - 1]


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(moment: datetime.datetime) -> str:
    return moment.isoformat(timespec="seconds")


# --------------------------------------------------------------------------- Prometheus text format


def _label(value: str) -> str:
    """A label value escaped as the text exposition format requires."""
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def prometheus(snapshot: Snapshot) -> str:
    """The snapshot in the Prometheus text exposition format (version 0.0.4)."""
    lines = []
    for name, help_text in COUNTERS.items():
        metric = f"ciphermilter_{name}_total"
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter",
                  f"{metric} {snapshot['counters'].get(name, 0)}"]
    lines += ["# HELP ciphermilter_failures_total Failures by info header and reason.",
              "# TYPE ciphermilter_failures_total counter"]
    for header, reasons in sorted(snapshot["failures"].items()):
        for reason, count in sorted(reasons.items()):
            lines.append(f'ciphermilter_failures_total{{header="{_label(header)}",reason="{_label(reason)}"}} {count}')
    timing = snapshot["processing_seconds"]
    lines += ["# HELP ciphermilter_processing_seconds Time to process one message"
              f" (quantiles over the last {TIMING_WINDOW} messages).",
              "# TYPE ciphermilter_processing_seconds summary"]
    for quantile, value in timing["quantiles"].items():
        lines.append(f'ciphermilter_processing_seconds{{quantile="{quantile}"}} {value}')
    lines += [f"ciphermilter_processing_seconds_sum {timing['sum']}",
              f"ciphermilter_processing_seconds_count {timing['count']}"]
    started = datetime.datetime.fromisoformat(snapshot["started"]).timestamp()
    lines += ["# HELP ciphermilter_start_time_seconds When the daemon started (Unix time).",
              "# TYPE ciphermilter_start_time_seconds gauge", f"ciphermilter_start_time_seconds {started:.0f}"]
    lines += _result_histogram(snapshot.get("results", {})) + _store_gauges(snapshot.get("store"))
    return "\n".join(lines) + "\n"


def _result_histogram(results: dict[str, ResultTiming]) -> list[str]:
    """The latency histogram, one series per result word (core/result.py; the log line's ``result=``)."""
    lines = ["# HELP ciphermilter_result_seconds Time from the end of a message to the reply, by result.",
             "# TYPE ciphermilter_result_seconds histogram"]
    for result, timing in results.items():
        label = f'result="{_label(result)}"'
        lines += [f'ciphermilter_result_seconds_bucket{{{label},le="{bound:g}"}} {count}'
                  for bound, count in zip(RESULT_BUCKETS, timing["buckets"])]
        lines += [f'ciphermilter_result_seconds_bucket{{{label},le="+Inf"}} {timing["count"]}',
                  f"ciphermilter_result_seconds_sum{{{label}}} {timing['sum']}",
                  f"ciphermilter_result_seconds_count{{{label}}} {timing['count']}"]
    return lines


def _store_gauges(store: StoreHealth | None) -> list[str]:
    """Whether the key store answers, and when its first private key in use expires; nothing before the first
    check (an absent series, not a false 0)."""
    if store is None:
        return []
    lines = ["# HELP ciphermilter_store_up Whether the key store opened and answered at the last check (1) or not (0).",
             "# TYPE ciphermilter_store_up gauge", f"ciphermilter_store_up {int(store['reachable'])}"]
    expiry = store["earliest_key_expiry"]
    if expiry is not None:
        metric = "ciphermilter_key_earliest_expiry_timestamp_seconds"
        lines += [f"# HELP {metric} When the first private key that still decrypts expires (Unix time).",
                  f"# TYPE {metric} gauge", f"{metric} {expiry:.0f}"]
    return lines


# --------------------------------------------------------------------------- files and the exporter


def read_stats_file(path: str) -> Snapshot:
    """The snapshot the daemon last wrote; ValueError with one clear line when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            data: Snapshot = json.load(fh)  # checked below: a dict of this version
    except FileNotFoundError:
        raise ValueError(f"no statistics at {path}: is the daemon running with this stats_file?") from None
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):  # the parser's position is no help to the admin
        raise ValueError(f"{path} is not a statistics file: it does not hold the JSON the daemon writes") from None
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} is not a statistics file of this ciphermilter version")
    return data


class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    counters: Counters  # set on the subclass the exporter makes

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.split("?")[0] != "/metrics":
            self.send_error(404, "only /metrics is served here")
            return
        body = prometheus(self.counters.snapshot()).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # noqa: A002 (http.server names it format); scrapes every few seconds must not flood the mail log
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class Exporter:
    """Writes the counters to the stats file (and a Prometheus textfile) every ``interval`` seconds,
    and serves ``/metrics`` on ``127.0.0.1:port`` when a port is given. ``probe`` checks the key store before
    each write: ``/metrics`` shows the last check, at most ``interval`` seconds old."""

    def __init__(self, counters: Counters, stats_file: str, interval: float,
                 textfile: str | None = None, port: int | None = None,
                 probe: Callable[[], StoreHealth] | None = None):
        self.counters = counters
        self.probe = probe
        self.stats_file = stats_file
        self.interval = interval
        self.textfile = textfile
        self.port = port
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self.server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        """Start exporting; OSError only when the port cannot be bound (a file that cannot be written is
        logged and tried again every interval: statistics must never stop the mail)."""
        if self.port is not None:
            handler = type("MetricsHandler", (_MetricsHandler,), {"counters": self.counters})
            self.server = http.server.ThreadingHTTPServer((LOOPBACK, self.port), handler)
            self.server.daemon_threads = True
            threading.Thread(target=self.server.serve_forever, name="stats-http", daemon=True).start()
        self._write_logged()
        self._writer = threading.Thread(target=self._run, name="stats-writer", daemon=True)
        self._writer.start()

    def write(self) -> None:
        if self.probe is not None:
            self.counters.store = self.probe()
        snapshot = self.counters.snapshot()
        files.write_atomically(self.stats_file, json.dumps(snapshot, indent=2, sort_keys=True) + "\n")
        if self.textfile:
            files.write_atomically(self.textfile, prometheus(snapshot), TEXTFILE_MODE)

    def _write_logged(self) -> None:
        try:
            self.write()
        except OSError as exc:  # a full disk or a wrong path must not stop the milter
            log.warning("cannot write statistics: %s", exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._write_logged()

    def stop(self) -> None:
        """Write a last snapshot and stop serving."""
        self._stop.set()
        if self._writer is not None:
            self._writer.join()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        self._write_logged()


# The daemon's counters: one per process, shared by every connection thread.
COUNTERS_OF_THIS_PROCESS = Counters()


def record(outcome: Outcome, elapsed_s: float) -> None:
    """Count one message the daemon handled (call once per message, at end of message)."""
    COUNTERS_OF_THIS_PROCESS.record(outcome, elapsed_s)
