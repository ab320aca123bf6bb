"""What no input may break, shared by the atheris harness and the hypothesis properties."""

from __future__ import annotations

import re

from ciphermilter import mime

from ciphermilter.core import pipeline as core
from ciphermilter.core.info import is_reserved
from ciphermilter.core.outcome import INTERNAL_ERROR
from ciphermilter.core.plan import apply_plan

_BARE_LINE_BREAK = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def check_output(message: bytes, outcome: core.Outcome) -> bytes:
    """Replay the plan and check the result; returns the new message.

    The header block has no bare CR or LF (a value cannot break into a new
    field), every reserved header is one the core added, and every other
    field of the input that the plan does not name is still there, once.
    """
    assert not (outcome.error or "").startswith(INTERNAL_ERROR), outcome.error  # a bug of ours; other errors are decisions
    out = apply_plan(message, outcome.plan)
    received = mime.split_headers(message)[0]
    headers = mime.split_headers(out)[0]
    new = set(headers) - set(received)
    assert not any(_BARE_LINE_BREAK.search(h.raw) for h in new), "a written header holds a bare line break"
    ours = [(name, value.replace("\n", "").strip()) for name, value in outcome.info]  # a reader strips the ends
    assert [(h.name, h.value) for h in headers if is_reserved(h.name)] == ours
    touched = {e.name.lower() for e in (*outcome.plan.deletions, *outcome.plan.changes)}
    kept_in = [h.raw for h in received if not is_reserved(h.name) and h.name.lower() not in touched]
    kept_out = [h.raw for h in headers if not is_reserved(h.name) and h.name.lower() not in touched]
    assert kept_out[:len(kept_in)] == kept_in  # nothing lost, nothing duplicated, order kept
    return out
