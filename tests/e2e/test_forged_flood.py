"""A flood of forged X-CipherMail headers through the real chain (issue 14, section 3).

Deleting each forged field costs Postfix's cleanup a reverse jump record, and the cost grows with the square
of their number: 10,000 took 23 s and 20,000 ended in "451 4.3.0 queue file write error", a message that
could never be accepted. Above ``limits.max_forged_headers`` (100) ciphermilter refuses it at end of headers.
"""

from __future__ import annotations

import pytest

from e2e.load import header_fields
from support.messages import INTERNAL_RECIPIENT
from support.chain import EXTERNAL_RECIPIENT, RESERVED, assert_nothing_queued, delivered, submit, without_trace
from support.flood import BODY, KEPT, LIMIT, REASON, flooded

RECIPIENTS = pytest.mark.parametrize("recipient", [INTERNAL_RECIPIENT, EXTERNAL_RECIPIENT],
                                     ids=["internal", "external"])


@RECIPIENTS
def test_ten_thousand_forged_headers_are_rejected_in_the_smtp_session(postfix, sink, recipient):
    reply = submit(postfix.port, flooded(10_000), [recipient])

    assert (reply.code, reply.text) == (554, f"5.7.0 Message rejected: {REASON}"), reply
    assert_nothing_queued(postfix)


@RECIPIENTS
def test_a_hundred_forged_headers_are_all_deleted_on_delivery(postfix, sink, recipient):
    head, body = delivered(sink, submit(postfix.port, flooded(LIMIT), [recipient])).split()

    assert [f for f in header_fields(head) if RESERVED.match(f)] == []
    assert without_trace(header_fields(head)) == KEPT
    assert body == BODY
