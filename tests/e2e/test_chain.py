"""The whole chain on loopback: Postfix -> ciphermilter -> clamav-milter -> rspamd -> sink.

Each case asserts the SMTP reply the sending client gets and what reached the
sink (or that nothing did and nothing waits in Postfix's queue).
"""

from __future__ import annotations

import pytest

from conftest import case_message, corpus_cases
from e2e.conftest import GTUBE, VIRUS_MARKER
from e2e.load import header_fields
from support.chain import EXTERNAL_RECIPIENT, RESERVED, assert_nothing_queued, delivered, submit, without_trace
from support.messages import INTERNAL_RECIPIENT, SENDER, plain_entity, smime_encrypt

# --- the cases ------------------------------------------------------------------------------------

def test_encrypted_virus_is_rejected_by_clamav_after_decryption(postfix, sink, tmp_path):
    message = smime_encrypt(plain_entity(b"Hello,\r\n" + VIRUS_MARKER + b"\r\n"), tmp_path)
    assert VIRUS_MARKER not in message

    reply = submit(postfix.port, message, [INTERNAL_RECIPIENT])

    assert reply.code == 550 and "Virus found: CipherMilter.E2E.TestVirus" in reply.text, reply
    assert_nothing_queued(postfix)


def test_early_accept_by_ciphermilter_does_not_skip_the_scanners_after_it(postfix, sink):
    """External recipient, nothing to strip: ciphermilter accepts at end of headers; ClamAV must still scan."""
    message = b"From: " + SENDER.encode() + b"\r\nSubject: plain\r\n\r\n" + VIRUS_MARKER + b"\r\n"

    reply = submit(postfix.port, message, [EXTERNAL_RECIPIENT])

    assert reply.code == 550 and "Virus found: CipherMilter.E2E.TestVirus" in reply.text, reply
    assert_nothing_queued(postfix)


def test_encrypted_gtube_is_rejected_by_rspamd_after_decryption(postfix, sink, tmp_path):
    message = smime_encrypt(plain_entity(b"Buy now\r\n" + GTUBE + b"\r\n"), tmp_path)
    assert GTUBE not in message

    reply = submit(postfix.port, message, [INTERNAL_RECIPIENT])

    assert (reply.code, reply.text) == (554, "5.7.1 Gtube pattern"), reply
    assert_nothing_queued(postfix)


def test_clean_encrypted_message_is_delivered_decrypted(postfix, sink, e2e_dir, tmp_path):
    entity = plain_entity(b"Quarterly numbers attached.\r\nNothing else.\r\n")
    message = smime_encrypt(entity, tmp_path)

    reply = submit(postfix.port, message, [INTERNAL_RECIPIENT])

    head, body = delivered(sink, reply).split()
    assert body == entity.partition(b"\r\n\r\n")[2]
    fields = header_fields(head)
    assert b"X-CipherMail-Info-SMIME-Encrypted: True" in fields
    assert b"X-CipherMail-Info-Encryption-Algorithm-0: AES-256-CBC" in fields
    assert b"Content-Type: text/plain; charset=us-ascii" in fields
    assert b"Content-Transfer-Encoding: 7bit" in fields
    # The summary line carries Postfix's queue ID (macro i); it is logged before Postfix answers 250.
    summary = [line for line in (e2e_dir / "ciphermilter.out").read_text().splitlines()
               if f" {reply.queue_id}: " in line]
    assert len(summary) == 1 and " result=decrypted format=smime cipher=AES-256-CBC " in summary[0], summary


# Larger than the daemon's spool_memory (1 MiB) and than a body the worker returns in its reply
# (1 MiB): the message reaches the worker as its spool file and comes back as a body file.
LARGE_TEXT = b"".join(b"line %07d of a report too long to keep in memory twice\r\n" % n for n in range(60_000))


def test_large_encrypted_virus_is_rejected_by_clamav_after_decryption(postfix, sink, tmp_path):
    message = smime_encrypt(plain_entity(LARGE_TEXT + VIRUS_MARKER + b"\r\n"), tmp_path)
    assert len(message) > 4 * 1024 * 1024 and VIRUS_MARKER not in message

    reply = submit(postfix.port, message, [INTERNAL_RECIPIENT])

    assert reply.code == 550 and "Virus found: CipherMilter.E2E.TestVirus" in reply.text, reply
    assert_nothing_queued(postfix)


def test_large_clean_encrypted_message_is_delivered_decrypted_byte_for_byte(postfix, sink, tmp_path):
    entity = plain_entity(LARGE_TEXT)
    message = smime_encrypt(entity, tmp_path)

    reply = submit(postfix.port, message, [INTERNAL_RECIPIENT])

    head, body = delivered(sink, reply).split()
    assert body == LARGE_TEXT
    assert b"X-CipherMail-Info-SMIME-Encrypted: True" in header_fields(head)


FORGED = [
    b"X-CipherMail-Info-SMIME-Signed: True",
    b"x-ciphermail-info-signer-verified-0-0: True",
    b"X-CIPHERMAIL-INFO-SMIME-ENCRYPTED: True",
    b"X-CipherMail-Info-Signer-Email-0-0:\r\n\tceo@corp-pub.example",
    b"X-Djigzo-Info-Signer-Verified: True",
    # The same name as the first, in other case: Postfix must count it as the second of that name.
    b"x-ciphermail-info-smime-signed: True",
]


@pytest.mark.parametrize("recipient", [INTERNAL_RECIPIENT, EXTERNAL_RECIPIENT], ids=["internal", "external"])
def test_forged_result_headers_are_gone_on_delivery(postfix, sink, recipient):
    message = (b"From: " + SENDER.encode() + b"\r\nTo: " + recipient.encode() + b"\r\n"
               + b"\r\n".join(FORGED[:3]) + b"\r\nSubject: forged\r\n" + b"\r\n".join(FORGED[3:])
               + b"\r\n\r\nplain text\r\n")

    head, body = delivered(sink, submit(postfix.port, message, [recipient])).split()

    assert [f for f in header_fields(head) if RESERVED.match(f)] == []
    assert without_trace(header_fields(head)) == [
        b"From: " + SENDER.encode(), b"To: " + recipient.encode(), b"Subject: forged"]
    assert body == b"plain text\r\n"


def test_external_recipient_gets_the_message_untouched(postfix, sink, tmp_path):
    message = smime_encrypt(plain_entity(b"for someone else\r\n"), tmp_path)

    head, body = delivered(sink, submit(postfix.port, message, [EXTERNAL_RECIPIENT])).split()

    sent_head, _, sent_body = message.partition(b"\r\n\r\n")
    assert without_trace(header_fields(head)) == header_fields(sent_head)
    assert body == sent_body


def test_ciphermilter_not_running_tempfails_and_keeps_nothing(postfix, sink, tmp_path):
    message = smime_encrypt(plain_entity(b"try again later\r\n"), tmp_path)

    reply = submit(postfix.dead_milter_port, message, [INTERNAL_RECIPIENT])

    assert (reply.code, reply.text) == (451, "4.7.1 Service unavailable - try again later"), reply
    assert_nothing_queued(postfix)


MALFORMED = corpus_cases(lambda case: case.get("malformed") and not case.get("decryptable_with_our_keys"))
# Malformed inside content we decrypt (the 1 GiB bzip2 bomb for bob.pgp): a limit stops the inspection.
HELD = corpus_cases(lambda case: case.get("malformed") and case.get("decryptable_with_our_keys"))


@pytest.mark.parametrize("case", HELD, ids=[c["id"] for c in HELD])
def test_malformed_content_we_decrypt_is_rejected_by_on_limit(postfix, sink, case):
    reply = submit(postfix.port, case_message(case), [INTERNAL_RECIPIENT])

    assert reply.code == 554 and reply.text.startswith("5.7.0 Encrypted content could not be inspected: "), reply
    assert_nothing_queued(postfix)


@pytest.mark.parametrize("case", MALFORMED, ids=[c["id"] for c in MALFORMED])
def test_malformed_message_is_delivered_unchanged(postfix, sink, case):
    message = case_message(case)
    sent_head, _, sent_body = message.partition(b"\r\n\r\n")

    head, body = delivered(sink, submit(postfix.port, message, [INTERNAL_RECIPIENT])).split()

    assert body == sent_body
    received = without_trace(header_fields(head))
    kept = [f for f in header_fields(sent_head) if not RESERVED.match(f)]
    assert [f for f in received if not RESERVED.match(f)] == kept
    ours = [f for f in received if RESERVED.match(f)]
    assert not set(ours) & set(header_fields(sent_head)), "a forged header survived"
    if case["family"] != "malformed-spoofed-headers":  # the only one with nothing to inspect
        assert ours, "no reason header on a message that could not be processed"
