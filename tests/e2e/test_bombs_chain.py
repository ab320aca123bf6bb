"""Compression bombs through the real daemon behind a private Postfix: bounded in memory (issue 14, section 3).

Every bomb of tests/test_bombs.py (gpg-made 256 MiB zip and 1 GiB bzip2 bombs, signed only and
encrypted to bob, and the corpus's 1 GiB bzip2 bomb) is sent at once through the fault port
(ciphermilter alone) to a daemon started for the test, so that its workers inflate them side by
side. Afterwards the highest resident set of the daemon and of each of its processes (VmHWM, from
/proc) summed stays under the issue's 256 MB: 198 MB here, 718 MB when a refused bomb cost the whole bound.
"""

from __future__ import annotations

import re
import uuid

from ciphermilter.daemon import logline
from e2e.load import Ledger, Outgoing, Tally, header_fields, send_all, tagged
from support.messages import INTERNAL_RECIPIENT, SENDER
from support.bombs import BOMBS, TOO_LARGE

DELIVERY_TIMEOUT = 120.0
PEAK_RSS_KIB = 256 * 1000 * 1000 // 1024  # the bound: 256 MB over the daemon and its processes
NOT_PROCESSED = b"X-CipherMail-Info-Not-Processed: " + TOO_LARGE.encode()


def test_bombs_stay_within_256_mb_over_the_daemon_and_its_workers(postfix, sink, milter_under_test):
    daemon = milter_under_test()
    batch = [Outgoing(f"bomb-{uuid.uuid4().hex}@bombs.e2e.test", path.read_bytes(), (INTERNAL_RECIPIENT,))
             for path in BOMBS]
    ledger = Ledger()
    send_all(postfix.fault_port, [Outgoing(o.marker, tagged(o.message, o.marker), o.recipients) for o in batch],
             len(batch), SENDER, ledger)

    peak = daemon.peak_rss_kib()
    assert peak < PEAK_RSS_KIB, f"daemon and workers peaked at {peak * 1024 / 1e6:.0f} MB"
    assert len(daemon.processes()) > 2  # the daemon, multiprocessing's tracker and its workers were counted
    # Each bomb reached the core and was stopped at the bound, in a worker that is still there.
    assert len(re.findall(re.escape(f" result=limit {logline.reason(TOO_LARGE)} "), daemon.log_text())) == len(batch)
    # A final verdict for each, never a tempfail: delivered as received with the reason, or refused.
    replies = {marker: replies[-1] for marker, replies in ledger.replies.items()}
    assert all(reply.code in (250, 554) for reply in replies.values()), replies
    accepted = {marker for marker, reply in replies.items() if reply.accepted}
    tally = Tally(sink.mailbox)
    assert tally.wait_for(accepted, DELIVERY_TIMEOUT) == set()
    for outgoing in batch:
        if outgoing.marker in accepted:
            delivered = next(d.data for d in sink.mailbox.deliveries if outgoing.marker.encode() in d.split()[0])
            head, body = delivered.split(b"\r\n\r\n", 1)
            assert NOT_PROCESSED in [field.replace(b"\r\n", b"") for field in header_fields(head)]
            assert body == outgoing.message.split(b"\r\n\r\n", 1)[1]
