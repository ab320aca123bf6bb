"""A bare CR (a CR not followed by LF) in a header line, sent over SMTP to a real Postfix 3.7 in front of the daemon.

tests/test_attacks_round6.py (F4-F6) runs the offline ``ciphermilter decrypt`` on messages whose header lines
hide a field behind a bare CR: Python's email package ends a line at a bare CR and reads the hidden field
(a forged X-CipherMail-Info result, a second From:). This module asks what reaches the daemon, and the
recipient, when such a message comes in over SMTP.

What Postfix does (measured here, Debian 12's Postfix 3.7.11, the e2e chain's settings, 2026-12-03): it
REPLACES EVERY BARE CR WITH A SPACE (0x20), one for one, and keeps the line. It does not refuse the message,
does not split the line and logs no warning. ``Subject: Wire 50,000 EUR today\\rX-CipherMail-Info-SMIME-Signed:
True\\r...`` is delivered as ``Subject: Wire 50,000 EUR today X-CipherMail-Info-SMIME-Signed: True ...``
(bytes 79 6f 64 61 79 20 58 2d ...), one Subject field. The same happened to a bare CR in a body line
(qp-bare-cr-soft-break.eml: ``=\\rALICE ADDS`` arrived as ``= ALICE ADDS``), so the rewrite is not one of
header processing. It happens on the way in, before cleanup(8) reads the fields (and cleanup hands the
milters the fields it read): in a one-off run (not kept: it reconfigures the session's Postfix) with
header_checks ``/today\\rX-/ WARN bare CR kept`` and ``/today X-/ WARN space``, and body_checks likewise
for ``=\\rALICE`` / ``= ALICE``, cleanup logged only ``warning: header Subject: Wire 50,000 EUR today
X-CipherMail-Info-... : space in header`` and ``warning: body = ALICE ADDS: ...: space in body``. The
daemon agrees: for the F4 vector it logged ``result=verified format=smime
signer=<alice@sender-pub.example>`` and wrote no Signer-Mismatch, which the branch's fix (a bare CR makes
the header block ambiguous: From: names no signer) would have written had it seen a bare CR. The line in
Postfix's source that does it was not looked up.

So through this Postfix the F4-F6 header attacks cannot reach a reader: what is delivered holds no bare
CR, Python's email reads the fields the milter read, and no hidden field exists. The tests below assert
that fact on the delivered bytes, and send the very same bytes with the very same SMTP client straight to
the sink as a control: there the bare CRs arrive and Python's email does read the forged fields (so the
client does put the bare CR on the wire, and it is Postfix that removes it). Should a Postfix version or
setting keep bare CRs, these tests fail, and the daemon's own defence (core/info.hides_reserved_field,
core/triage.forged_header_deletions, the ambiguous header block) is then what stands.
"""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

from support.chain import DELIVERY_TIMEOUT, PREFIX, delivered, ours, submit
from support.messages import INTERNAL_RECIPIENT

VECTORS = Path(__file__).parent.parent / "vectors" / "attack6"
BARE_CR = re.compile(rb"\r(?!\n)")


def python_reads(message: bytes) -> email.message.EmailMessage:
    """The message as the library Python filters and helpers use reads it (a bare CR ends a line there)."""
    return email.message_from_bytes(message, policy=email.policy.default)


def reserved_fields(message: bytes) -> list[str]:
    return [name for name in python_reads(message).keys() if name.lower().startswith("x-ciphermail-")]


def straight_to_sink(sink, message: bytes, hidden_line: bytes) -> bytes:
    """``message`` sent with the chain's SMTP client to the sink itself, no Postfix between: what arrived.

    ``hidden_line`` (a header line with its bare CR) finds the copy among the sink's deliveries."""
    assert submit(sink.port, message, [INTERNAL_RECIPIENT]).code == 250
    arrived = sink.mailbox.wait_for(lambda d: hidden_line in d.data, DELIVERY_TIMEOUT)
    assert arrived is not None, "the bare CR never reached the sink: the client rewrote it"
    return arrived.data


def line_with(message: bytes, start: bytes) -> bytes:
    """The header line (up to its CRLF, bare CRs included) that begins with ``start``."""
    return next(line for line in message.split(b"\r\n") if line.startswith(start))


def test_forged_info_behind_a_bare_cr_arrives_as_one_subject_with_no_reserved_field(postfix, sink):
    message = (VECTORS / "forged-info-behind-bare-cr.eml").read_bytes()
    subject = line_with(message, b"Subject:")
    assert subject.count(b"\r") == 4

    sent_as_is = straight_to_sink(sink, message, subject)
    assert reserved_fields(sent_as_is) == [
        "X-CipherMail-Info-SMIME-Signed", "X-CipherMail-Info-Signer-Email-0-0",
        "X-CipherMail-Info-Signer-Verified-0-0", "X-CipherMail-Info-Signer-Trusted-0-0"]

    received = delivered(sink, submit(postfix.port, message, [INTERNAL_RECIPIENT])).data

    assert line_with(received, b"Subject:") == subject.replace(b"\r", b" ")
    assert BARE_CR.search(received) is None
    assert reserved_fields(received) == []


def test_from_behind_a_bare_cr_arrives_inside_to_and_alices_signature_matches_the_one_from(postfix, sink):
    """F4 over SMTP: the From: CEO hidden in the To: line becomes text of the To: field."""
    message = (VECTORS / "smime-signed-bare-cr-from.eml").read_bytes()
    to = line_with(message, b"To:")
    assert to == b"To: Bob Recipient <bob@corp-pub.example>\rFrom: CEO <ceo@corp-pub.example>"

    sent_as_is = straight_to_sink(sink, message, to)
    assert python_reads(sent_as_is).get_all("From") == [
        "CEO <ceo@corp-pub.example>", "Alice Sender <alice@sender-pub.example>"]

    received = delivered(sink, submit(postfix.port, message, [INTERNAL_RECIPIENT])).data

    assert line_with(received, b"To:") == b"To: Bob Recipient <bob@corp-pub.example> From: CEO <ceo@corp-pub.example>"
    assert BARE_CR.search(received) is None
    assert python_reads(received).get_all("From") == ["Alice Sender <alice@sender-pub.example>"]
    # The reader sees From: alice, who signed: nothing to flag. A Signer-Mismatch here would mean the
    # daemon saw a bare CR that the delivered copy no longer holds.
    head = received.partition(b"\r\n\r\n")[0]
    assert [f for f in ours(head) if not f.startswith(PREFIX + b"Signer-ID-0-0:")] == [
        PREFIX + b"SMIME-Signed: True",
        PREFIX + b"Signer-Email-0-0: alice@sender-pub.example",
        PREFIX + b"Signer-Verified-0-0: True",
        PREFIX + b"Signer-Trusted-0-0: True",
    ]
