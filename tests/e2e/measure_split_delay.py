"""How long the recipients deferred by ``452 4.5.3`` wait, with the sending Postfix's default retry settings.

Not part of the suite (it takes more than five minutes): run it by name,
``.venv/bin/python -m pytest -q -s tests/e2e/measure_split_delay.py``. It
prints each recipient's ``delay=`` from the sending Postfix's log (seconds
from the message's arrival to its delivery to the gateway); README.rst and
ciphermilter.conf(5) quote the figure.

Measured on 2026-12-03 with Postfix 3.7.11 (queue_run_delay = 300s,
minimal_backoff_time = 300s, maximal_backoff_time = 4000s): bob and erin
0.62 s, carol (second class) 300 s, zed (third class) 600 s; all copies at
the sink after 600.0 s.
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from e2e.conftest import STOP_TIMEOUT
from e2e.load import send
from support.messages import SENDER
from support.split import EXTERNAL, NO_KEY, READERS, copies, smime_message, start_sender
from bench.postfix_instance import stop_master

DEFAULTS_TIMEOUT = 1200.0


@pytest.fixture
def default_sender(e2e_dir, postfix):
    sender = start_sender(e2e_dir / "sender-postfix-defaults", postfix.port, {})
    yield sender
    stop_master(sender.queue_dir, STOP_TIMEOUT)


def test_deferred_recipients_wait_for_the_next_queue_run(sink, default_sender, tmp_path, monkeypatch):
    monkeypatch.setattr("support.split.DELIVERY_TIMEOUT", DEFAULTS_TIMEOUT)
    marker = f"split-defaults-{time.monotonic_ns()}"
    started = time.monotonic()
    assert send(default_sender.port, smime_message(marker, tmp_path), READERS + [NO_KEY, EXTERNAL], SENDER).code == 250
    found = copies(sink, marker, READERS + [NO_KEY, EXTERNAL])
    assert all(found.values())
    print(f"all copies at the sink after {time.monotonic() - started:.1f} s")
    sent = re.findall(r"to=<([^>]+)>.*? delay=([\d.]+).*?status=sent", default_sender.maillog.read_text())
    print("delay= per recipient:", sent)
    print(subprocess.run(["postconf", "-c", str(default_sender.queue_dir.parent / "config"), "queue_run_delay",
                          "minimal_backoff_time", "maximal_backoff_time"], capture_output=True, text=True).stdout)
