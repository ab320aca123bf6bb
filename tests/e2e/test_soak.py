"""Soak: thousands of messages through Postfix and one ciphermilter daemon; no message lost, no memory leak.

The suite sends ``CIPHERMILTER_SOAK_MESSAGES`` messages (default 1,500) at
concurrency 8 through Postfix's fault port (ciphermilter alone). The full run::

    CIPHERMILTER_SOAK_MESSAGES=10000 .venv/bin/pytest -s tests/e2e/test_soak.py

The mix cycles through four kinds: S/MIME and OpenPGP messages ours to
decrypt (every decryptable case of the corpus's smime-enveloped and
pgp-mime-encrypted families, plus one made with openssl), plain messages, and
plain messages with forged result headers. The daemon's resident set size is
sampled from /proc while the load runs.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass

import pytest

from conftest import case_message, corpus_cases
from e2e.conftest import wait_until
from e2e.load import (
    Ledger,
    Outgoing,
    Tally,
    marker_of,
    send_all,
    send_until_accepted,
    tagged,
)
from support.messages import INTERNAL_RECIPIENT, SENDER, plain_entity, smime_encrypt

MESSAGES = int(os.environ.get("CIPHERMILTER_SOAK_MESSAGES", "1500"))
CONCURRENCY = 8
DELIVERY_TIMEOUT = 300.0
RSS_INTERVAL = 0.25  # seconds between two samples of VmRSS
WARM_UP = 0.10  # share of the messages after which the caches and thread stacks have settled
LEAK_ALLOWANCE = 0.10  # the last quarter's peak may exceed the first quarter's by this share, no more
RESERVED = re.compile(rb"^(x-ciphermail-|x-djigzo-)", re.IGNORECASE | re.MULTILINE)
ENCRYPTED_FLAG = {"smime": b"X-CipherMail-Info-SMIME-Encrypted: True", "pgp": b"X-CipherMail-Info-PGP-Encrypted: True"}
FORGED = (b"X-CipherMail-Info-SMIME-Signed: True\r\nX-Djigzo-Info-Signer-Verified: True\r\n"
          b"x-ciphermail-info-signer-email-0-0:\r\n\tceo@corp-pub.example\r\n")

DECRYPTABLE = corpus_cases(lambda case: case["family"] in ("smime-enveloped", "pgp-mime-encrypted")
                           and case.get("decryptable_with_our_keys")
                           and case.get("expect_pgpy_supported") is not False)


def templates(workdir) -> dict[str, list[bytes]]:
    plain = b"From: " + SENDER.encode() + b"\r\nTo: " + INTERNAL_RECIPIENT.encode() + b"\r\nSubject: soak\r\n"
    return {
        "smime": [smime_encrypt(plain_entity(b"soak\r\n"), workdir),
                  *(case_message(c) for c in DECRYPTABLE if c["smime_or_pgp"] == "smime")],
        "pgp": [case_message(c) for c in DECRYPTABLE if c["smime_or_pgp"] == "pgp"],
        "plain": [plain + b"\r\nNothing to see here.\r\n"],
        "forged": [plain + FORGED + b"\r\nTrust me.\r\n"],
    }


def mixed_batch(kinds: dict[str, list[bytes]], count: int) -> list[Outgoing]:
    """``count`` messages, the kinds in turn, each kind cycling through its templates."""
    cycles = {kind: itertools.cycle(messages) for kind, messages in kinds.items()}
    batch = []
    for number, kind in zip(range(count), itertools.cycle(kinds)):
        name = f"soak{number}-{uuid.uuid4().hex}@soak.e2e.test"
        batch.append(Outgoing(name, tagged(next(cycles[kind]), name), (INTERNAL_RECIPIENT,), kind))
    return batch


@dataclass
class Sample:
    done: int  # replies received when the sample was taken
    rss_kib: int


def sample_rss(daemon, ledger: Ledger, stop: threading.Event, samples: list[Sample]) -> None:
    while not stop.wait(RSS_INTERVAL):
        samples.append(Sample(ledger.count, daemon.rss_kib()))


def quarter_peaks(samples: list[Sample], total: int) -> tuple[int, int]:
    """Peak RSS of the first and of the last quarter of the messages sent after the warm-up."""
    start = total * WARM_UP
    quarter = (total - start) / 4
    first = [s.rss_kib for s in samples if start <= s.done < start + quarter]
    last = [s.rss_kib for s in samples if s.done >= total - quarter]
    assert first and last, f"too few RSS samples: {len(samples)}"
    return max(first), max(last)


def assert_processed_as_its_kind(item: Outgoing, data: bytes) -> None:
    head = data.partition(b"\r\n\r\n")[0]
    if item.kind in ENCRYPTED_FLAG:
        assert ENCRYPTED_FLAG[item.kind] in head.split(b"\r\n"), (item.marker, head)
        assert b"X-CipherMail-Info-Not-Processed" not in head, (item.marker, head)
    else:  # plain and forged: nothing to report, and nothing forged may survive
        assert not RESERVED.search(head), (item.marker, head)


@pytest.mark.parametrize("count", [MESSAGES], ids=lambda n: f"{n}-messages")
def test_soak_loses_nothing_and_does_not_leak(postfix, sink, milter_under_test, tmp_path, count):
    assert {c["smime_or_pgp"] for c in DECRYPTABLE} == {"smime", "pgp"}
    batch = mixed_batch(templates(tmp_path), count)
    daemon = milter_under_test()
    tally = Tally(sink.mailbox)
    ledger, samples, stop = Ledger(), [], threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(daemon, ledger, stop, samples))
    started = time.monotonic()
    sampler.start()
    try:
        send_all(postfix.fault_port, batch, CONCURRENCY, SENDER, ledger)
    finally:
        stop.set()
        sampler.join()
    duration = time.monotonic() - started

    first_replies = [replies[0] for replies in ledger.replies.values()]
    assert [r for r in first_replies if not r.accepted] == [], "a healthy daemon tempfailed or refused"
    assert send_until_accepted(postfix.fault_port, batch, CONCURRENCY, SENDER, ledger) == []
    names = {item.marker for item in batch}
    assert tally.wait_for(names, DELIVERY_TIMEOUT) == set()
    wait_until(lambda: not postfix.queued(), DELIVERY_TIMEOUT, "Postfix queue drain", postfix.maillog)
    counts = tally.update()
    assert sorted(n for n in names if counts[n] != 1) == [], "duplicated"
    delivered = {marker_of(d.data): d.data for d in sink.mailbox.deliveries}
    for item in batch:
        assert_processed_as_its_kind(item, delivered[item.marker])
    first_peak, last_peak = quarter_peaks(samples, count)
    print(f"\nsoak: {count} messages in {duration:.1f} s ({count / duration:.1f}/s), concurrency {CONCURRENCY}; "
          f"accepted {len(ledger.accepted())}, delivered {sum(counts[n] for n in names)}, lost 0, duplicated 0; "
          f"RSS first sample {samples[0].rss_kib} KiB, first-quarter peak {first_peak} KiB, "
          f"last-quarter peak {last_peak} KiB, last sample {samples[-1].rss_kib} KiB")
    assert last_peak <= first_peak * (1 + LEAK_ALLOWANCE), (first_peak, last_peak)
