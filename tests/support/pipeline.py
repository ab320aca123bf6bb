"""The real core on one message, with no error allowed: what the format tests (test_openpgp_mime, test_bombs)
run every vector through."""

from __future__ import annotations

from ciphermilter.core import pipeline as core
from conftest import message_envelope


def run(message: bytes, store, settings=None, envelope=None):
    outcome = core.process(message, envelope or message_envelope(message), store, settings)
    assert outcome.error is None
    return outcome
