"""Issue 14: the armor flood through the daemon behind a real Postfix gets its verdict.

An 8 MB quoted-printable part whose decoded text is one line of 160,000 armor markers (the issue sent
16 MB, over today's default max_message_size). Before the armor search was linear such a message held
a worker for 259 s at 16 MB (272 s at 8 MB offline here), far past the 30 s deadline. No time is
asserted: the message simply completes, and the armored block after the flood shows that the search
went through to its end."""

from __future__ import annotations

from ciphermilter.core import pipeline as core
from conftest import BOB
from e2e.load import header_fields
from support.messages import INTERNAL_RECIPIENT
from support.chain import OURS, delivered, submit, unfolded, without_trace
from bench.linear import armor_flood_message

FLOOD_SIZE = 8 * 1024 * 1024  # under the default max_message_size (10,240,000): the daemon searches it all
# An armored block at a line start after the flood, which decrypts to nothing: a result the core reports.
AFTER = b"-----BEGIN PGP MESSAGE-----\n\nhQEMA0hlbGxvIHdvcmxk\n-----END PGP MESSAGE-----\n"


def test_armor_flood_gets_its_verdict_through_the_daemon(postfix, sink, corpus_store):
    message = armor_flood_message(FLOOD_SIZE, AFTER)
    planned = core.process(message, BOB, corpus_store)  # the daemon's store holds the same corpus keys
    assert planned.error is None and "Not-Processed" not in str(planned.info.as_dict())
    assert planned.info.as_dict()  # the block after the flood was found and reported on

    head, body = delivered(sink, submit(postfix.port, message, [INTERNAL_RECIPIENT])).split()

    fields = without_trace(header_fields(head))
    assert dict(unfolded(f) for f in fields if OURS.match(f)) == planned.info.as_dict()
    sent_head, _, sent_body = message.partition(b"\r\n\r\n")
    assert [f for f in fields if not OURS.match(f)] == header_fields(sent_head)
    assert body == sent_body
