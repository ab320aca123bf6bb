"""The daemon and ``ciphermilter decrypt`` agree on every message, byte for byte.

Both promise that what an admin sees offline is what the milter does. Each
corpus message (and a decrypted header that is not UTF-8, which the daemon
once refused alone) goes through the real daemon, driven as Postfix drives
it (the MTA of tests/support/milter.py), and through ``ciphermilter decrypt`` with
the same configuration, store and accepted recipients. The daemon's replies
are replayed on the message as Postfix would (``plan.apply_plan``); a
refusal is compared by its SMTP reply.
"""

from __future__ import annotations

import pytest

from ciphermilter import mime
from conftest import case_envelope, case_message, corpus_cases
from support.agreement import through_decrypt, through_the_daemon
from support.messages import smime_encrypt
from support.milter import Daemon

# The daemon is driven through miltertest, which must carry bytes (support/milter_fixtures.py).
pytestmark = pytest.mark.usefixtures("bytes_on_the_wire")

CASES = corpus_cases()
# Content whose Content-Disposition holds a raw Latin-1 byte: libmilter carries UTF-8 header values only.
LATIN1_ENTITY = (b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n"
                 b"Content-Disposition: attachment; filename=\"caf\xe9.txt\"\r\n\r\ncaf\xe9 cr\xe8me\r\n")


@pytest.fixture(scope="module")
def daemon(daemons, store_file) -> Daemon:
    return daemons("agreement", store_file)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_the_daemon_and_decrypt_agree_on_every_corpus_message(daemon, case, tmp_path):
    message = case_message(case)
    by_daemon, accepted = through_the_daemon(daemon, message, case_envelope(case).recipients)

    assert through_decrypt(daemon, message, accepted, tmp_path) == by_daemon


@pytest.mark.parametrize("recipient", ["bob@corp-pub.example", "zed@elsewhere-pub.example"], ids=["internal", "external"])
def test_a_message_past_max_message_size_gets_the_same_answer_from_both(daemon, recipient, tmp_path):
    """The daemon learns the size while it reads the body, and reads it only for internal recipients."""
    padding = b"x" * 76 + b"\r\n"
    entity = b"Content-Type: text/plain\r\n\r\n" + padding * (10_300_000 // len(padding))
    message = smime_encrypt(entity, tmp_path)
    by_daemon, accepted = through_the_daemon(daemon, message, [recipient])

    assert through_decrypt(daemon, message, accepted, tmp_path) == by_daemon
    kind, delivered = by_daemon
    assert isinstance(delivered, (bytes, str))
    if recipient.endswith("elsewhere-pub.example"):
        assert by_daemon == ("delivered", message)
    else:  # held at the limit (bob reads the key): on_limit's default refuses it
        assert kind == "refused" and "message larger than" in str(delivered)


def test_a_decrypted_header_that_is_not_utf8_is_refused_by_both(daemon, tmp_path):
    """libmilter cannot carry the value: the message passes still encrypted, offline as in the daemon."""
    message = smime_encrypt(LATIN1_ENTITY, tmp_path)
    by_daemon, accepted = through_the_daemon(daemon, message, ["bob@corp-pub.example"])

    assert through_decrypt(daemon, message, accepted, tmp_path) == by_daemon
    kind, delivered = by_daemon
    assert kind == "delivered" and isinstance(delivered, bytes)
    added = {header.name: " ".join(header.value.split()) for header in mime.split_headers(delivered)[0]}
    reason = "header Content-Disposition of the decrypted content is not UTF-8"
    assert added["X-CipherMail-Info-Not-Processed"] == reason
