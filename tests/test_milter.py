"""The milter glue at the protocol level: the real daemon on a temp unix socket, driven by ``miltertest``.

The test plays the MTA, honouring what was negotiated (no reply for MAIL,
RCPT and headers; SKIP ends the body), and asserts the exact replies. For
every corpus case the end-of-message actions must be exactly the core's
EditPlan in the documented order, so what the daemon does is what
``ciphermilter decrypt`` shows offline.
"""

from __future__ import annotations

import socket
from pathlib import Path

import miltertest
import pytest

from ciphermilter import mime

from ciphermilter.core import pipeline as core

from ciphermilter.core.outcome import non_utf8_header
from ciphermilter.core.triage import may_carry_crypto
from ciphermilter.daemon.milter import ACTIONS, FEATURES, NO_REPLY_STEPS, SKIPPED_STEPS, TEMPFAIL_REPLY
from ciphermilter.core.plan import EditPlan, HeaderAdd, HeaderChange
from ciphermilter.store.keystore import KeyStore
from ciphermilter.daemon.workers import FILE_THRESHOLD
from ciphermilter.store import admin
from conftest import CORPUS, case_message, corpus_cases
from support.messages import large_plaintext, large_smime_message
from support.milter import (EXTERNAL, INTERNAL, NO_KEY, QUEUE_ID, READER, SENDER, Daemon, Mta, expected_eom,
                            limit_reject, one_message, reply_code, snapshot_counting)

# The daemon is driven through miltertest, which must carry bytes (support/milter_fixtures.py).
pytestmark = pytest.mark.usefixtures("bytes_on_the_wire")

PLAIN = b"From: alice@sender-pub.example\r\nSubject: hello\r\n\r\nhello\r\n"


# --- the daemon -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def daemon(daemons, store_file) -> Daemon:
    return daemons("main", store_file)


# --- the MTA side ----------------------------------------------------------------------------------

@pytest.fixture
def mta(daemon):
    client = Mta(daemon.socket)
    yield client
    client.close()


def core_and_daemon(daemon: Daemon, store_file: Path, message: bytes):
    """The core's outcome for ``message`` to an internal recipient, and the daemon's replies to the same."""
    with KeyStore.open(str(store_file)) as store:
        outcome = core.process(message, core.Envelope(SENDER, [INTERNAL], QUEUE_ID), store, daemon.settings())
    return outcome, one_message(daemon, message)


def add_header(name: str, value: str):
    return (miltertest.SMFIR_ADDHEADER, {"name": name, "value": " " + value})


# --- negotiation ------------------------------------------------------------------------------------

def test_negotiates_only_the_actions_and_steps_it_uses(mta):
    assert mta.actions == ACTIONS == (miltertest.SMFIF_ADDHDRS | miltertest.SMFIF_CHGHDRS | miltertest.SMFIF_CHGBODY)
    # mixed_recipients = "split" (the default) answers RCPT: no NR_RCPT
    assert mta.protocol == SKIPPED_STEPS | NO_REPLY_STEPS & ~miltertest.SMFIP_NR_RCPT | FEATURES == (
        miltertest.SMFIP_NOCONNECT | miltertest.SMFIP_NOHELO | miltertest.SMFIP_NOUNKNOWN | miltertest.SMFIP_NODATA
        | miltertest.SMFIP_NR_MAIL | miltertest.SMFIP_NR_HDR
        | miltertest.SMFIP_HDR_LEADSPC | miltertest.SMFIP_SKIP)


def test_decrypt_for_all_needs_no_reply_at_rcpt(daemons, store_file):
    daemon = daemons("decrypt-for-all", store_file, 'mixed_recipients = "decrypt-for-all"')
    client = Mta(daemon.socket)
    try:
        assert client.protocol & miltertest.SMFIP_NR_RCPT
        assert client.envelope(SENDER, [INTERNAL, EXTERNAL, NO_KEY]) == [None] * 4
    finally:
        client.close()


SPLIT = (miltertest.SMFIR_REPLYCODE, {"smtpcode": "452", "space": " ", "text": "4.5.3 Too many recipients"})
ACCEPTED = (miltertest.SMFIR_CONTINUE, {})


@pytest.mark.parametrize("recipients, replies", [
    ([INTERNAL, EXTERNAL, NO_KEY, READER], [ACCEPTED, SPLIT, SPLIT, ACCEPTED]),
    ([EXTERNAL, INTERNAL, "<someone@else.example>", NO_KEY], [ACCEPTED, SPLIT, ACCEPTED, SPLIT]),
    ([NO_KEY, READER, "<nobody@corp-pub.example>", EXTERNAL], [ACCEPTED, SPLIT, ACCEPTED, SPLIT]),
    (["<Bob@Corp-Pub.EXAMPLE>", INTERNAL], [ACCEPTED, ACCEPTED]),  # readers compare without regard to case
], ids=["reader-first", "external-first", "no-key-first", "case"])
def test_split_answers_recipients_of_another_class_with_452(mta, recipients, replies):
    """RFC 5321 section 4.5.3.1.10: the sending MTA delivers the refused recipients in a transaction of their own."""
    assert mta.envelope(SENDER, recipients) == [None] + replies


def test_mta_without_no_reply_options_gets_a_reply_to_every_command(daemon):
    """An MTA that can leave steps out but offers no NR_* bits, SKIP or leading spaces (milter protocol 2)."""
    client = Mta.__new__(Mta)
    client.sock = socket.socket(socket.AF_UNIX)
    client.sock.connect(str(daemon.socket))
    client.conn = miltertest.MilterConnection(client.sock)
    client.actions, client.protocol = client.conn.optneg_mta(protocol=SKIPPED_STEPS)
    try:
        assert client.protocol == SKIPPED_STEPS
        assert client.envelope(SENDER, [EXTERNAL]) == [(miltertest.SMFIR_CONTINUE, {})] * 2
        assert client.headers(b"Subject: hi") == [(miltertest.SMFIR_CONTINUE, {})]
        assert client.eoh() == (miltertest.SMFIR_ACCEPT, {})
    finally:
        client.close()


# --- every corpus case: the replies are the core's plan -------------------------------------------

CASES = corpus_cases()


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_corpus_case_end_of_message_replays_the_core_plan(daemon, store_file, case):
    outcome, (eoh, body_replies, eom) = core_and_daemon(daemon, store_file, case_message(case))

    assert eoh == (miltertest.SMFIR_CONTINUE, {})
    assert {reply[0] for reply in body_replies} == {miltertest.SMFIR_CONTINUE}
    assert eom == expected_eom(outcome)


# --- skipping what is not needed --------------------------------------------------------------------

def test_external_recipient_without_forged_headers_is_accepted_at_end_of_headers(mta, encrypted):
    message = encrypted
    head = message.partition(b"\r\n\r\n")[0]

    assert mta.envelope(SENDER, [EXTERNAL]) == [None, (miltertest.SMFIR_CONTINUE, {})]
    assert mta.headers(head) == [None] * len(mime.split_headers(head + b"\r\n")[0])
    assert mta.eoh() == (miltertest.SMFIR_ACCEPT, {})


def test_binary_media_type_for_an_internal_recipient_is_accepted_at_end_of_headers(mta):
    mta.envelope(SENDER, [INTERNAL])
    mta.headers(b"From: alice@sender-pub.example\r\nContent-Type: image/png")

    assert mta.eoh() == (miltertest.SMFIR_ACCEPT, {})


def test_forged_headers_for_an_external_recipient_skip_the_body_and_are_deleted(mta):
    message = (b"From: alice@sender-pub.example\r\nX-CipherMail-Info-SMIME-Signed: True\r\n"
               b"x-ciphermail-info-smime-signed: True\r\nX-Djigzo-Info-Signer-Verified:\r\n True\r\n\r\n"
               b"text\r\n")

    eoh, body_replies, eom = mta.message(message, [EXTERNAL])

    assert eoh == (miltertest.SMFIR_CONTINUE, {})
    assert body_replies == [(miltertest.SMFIR_SKIP, {})]
    assert eom == [
        (miltertest.SMFIR_CHGHEADER, {"index": 2, "name": "x-ciphermail-info-smime-signed", "value": ""}),
        (miltertest.SMFIR_CHGHEADER, {"index": 1, "name": "X-CipherMail-Info-SMIME-Signed", "value": ""}),
        (miltertest.SMFIR_CHGHEADER, {"index": 1, "name": "X-Djigzo-Info-Signer-Verified", "value": ""}),
        (miltertest.SMFIR_CONTINUE, {}),
    ]


def test_one_connection_carries_several_messages_with_their_own_state(mta, encrypted):
    first = mta.message(encrypted, [INTERNAL])
    second = mta.message(b"Subject: second\r\nX-CipherMail-Info-PGP-Signed: True\r\n\r\nplain\r\n", [EXTERNAL])

    assert (miltertest.SMFIR_REPLBODY in {reply[0] for reply in first[2]})
    assert second[2] == [
        (miltertest.SMFIR_CHGHEADER, {"index": 1, "name": "X-CipherMail-Info-PGP-Signed", "value": ""}),
        (miltertest.SMFIR_CONTINUE, {}),
    ]


def test_non_utf8_headers_survive_and_keep_their_indexes(mta):
    message = (b"Subject: caf\xe9 cr\xe8me\r\nX-CipherMail-Info-Forged: caf\xe9\r\nFrom: a@sender-pub.example\r\n"
               b"X-CIPHERMAIL-INFO-FORGED: again\r\n\r\nbody\r\n")

    eoh, body_replies, eom = mta.message(message, [EXTERNAL])

    assert eom == [
        (miltertest.SMFIR_CHGHEADER, {"index": 2, "name": "X-CIPHERMAIL-INFO-FORGED", "value": ""}),
        (miltertest.SMFIR_CHGHEADER, {"index": 1, "name": "X-CipherMail-Info-Forged", "value": ""}),
        (miltertest.SMFIR_CONTINUE, {}),
    ]


def test_abort_drops_the_message_and_the_connection_goes_on(mta):
    mta.envelope(SENDER, [INTERNAL])
    mta.headers(b"X-CipherMail-Info-Forged: yes")
    mta.conn._send(miltertest.SMFIC_ABORT)

    eoh, body_replies, eom = mta.message(PLAIN, [INTERNAL])

    assert eom == [(miltertest.SMFIR_CONTINUE, {})]


# --- limits and failures ------------------------------------------------------------------------------

def oversized(message: bytes) -> bytes:
    head, _, body = message.partition(b"\r\n\r\n")
    return head + b"\r\nX-CipherMail-Info-Forged: yes\r\n\r\n" + body + b"\r\n" * 70000


def test_oversized_message_stops_spooling_and_passes_with_a_reason(daemons, store_file):
    small = daemons("small", store_file, "[limits]\nmax_message_size = 4096\n")
    eoh, body_replies, eom = one_message(small, oversized(PLAIN))

    assert body_replies == [(miltertest.SMFIR_SKIP, {})]
    assert eom == [
        (miltertest.SMFIR_CHGHEADER, {"index": 1, "name": "X-CipherMail-Info-Forged", "value": ""}),
        add_header("X-CipherMail-Info-Not-Processed", "message larger than 4096 bytes"),
        (miltertest.SMFIR_CONTINUE, {}),
    ]


def test_oversized_encrypted_message_to_a_reader_is_rejected(daemons, store_file, encrypted):
    """S/MIME to bob, whose key we hold, padded past max_message_size: it must not pass unscanned (on_limit)."""
    small = daemons("small-encrypted", store_file, "[limits]\nmax_message_size = 4096\n")
    eoh, body_replies, eom = one_message(small, oversized(encrypted))

    assert body_replies == [(miltertest.SMFIR_SKIP, {})]
    assert eom == limit_reject("message larger than 4096 bytes")
    assert any("result=too-large (message larger than 4096 bytes) " in line and " action=reject " in line
               for line in small.log.read_text().splitlines()), "the one log line says why"


def test_on_limit_tempfail_answers_451(daemons, store_file, encrypted):
    small = daemons("small-tempfail", store_file, 'on_limit = "tempfail"\n[limits]\nmax_message_size = 4096\n')
    eoh, body_replies, eom = one_message(small, oversized(encrypted))

    assert eom == [reply_code("451", "4.7.0", "Encrypted content could not be inspected now"
                                              " (message larger than 4096 bytes), please try again later")]


def test_spool_that_cannot_be_written_passes_the_message_with_a_reason(daemons, store_file):
    """A real write failure: the daemon may not write files beyond 64 KiB (Python ignores SIGXFSZ: EFBIG)."""
    cramped = daemons("cramped", store_file, "spool_memory = 1024\n", max_file_size=65536)
    message = b"X-CipherMail-Info-PGP-Encrypted: True\r\nSubject: big\r\n\r\n" + (b"y" * 78 + b"\r\n") * 2000
    eoh, body_replies, eom = one_message(cramped, message)

    # The spool holds the headers before the body, so the first 64 KiB body chunk already fails.
    assert body_replies == [(miltertest.SMFIR_SKIP, {})]
    assert eom == [
        (miltertest.SMFIR_CHGHEADER, {"index": 1, "name": "X-CipherMail-Info-PGP-Encrypted", "value": ""}),
        add_header("X-CipherMail-Info-Not-Processed", "cannot spool the message"),
        (miltertest.SMFIR_CONTINUE, {}),
    ]


def test_deadline_from_the_configuration_reaches_the_core(daemons, store_file, encrypted):
    hurried = daemons("hurried", store_file, "[limits]\ndeadline_seconds = 0.000001\n")
    message = encrypted
    eoh, body_replies, eom = one_message(hurried, message)

    assert eom == limit_reject("processing deadline exceeded")  # S/MIME to bob: a key we hold (on_limit)


def test_a_quick_decryption_sends_the_mta_no_progress_packet(mta, encrypted):
    """Progress comes after each PROGRESS_INTERVAL (10 s) a worker takes, not at hand-off: a packet at once
    woke the MTA once more for every message (its cadence: test_workers). miltertest's recv() hides
    SMFIR_PROGRESS; read the raw replies to see them."""
    message = encrypted
    head, _, body = message.partition(b"\r\n\r\n")
    mta.envelope(SENDER, [INTERNAL])
    mta.headers(head)
    mta.eoh()
    mta.body(body)
    mta.conn._send(miltertest.SMFIC_BODYEOB)

    replies = []
    while not replies or replies[-1][0] not in miltertest.DISPOSITION_REPLIES:
        replies.append(mta.conn._recv())

    assert len(replies) > 1 and replies[-1][0] == miltertest.SMFIR_CONTINUE  # edits, then the verdict
    assert miltertest.SMFIR_PROGRESS not in [command for command, _ in replies]


def test_missing_store_with_tempfail_policy_tempfails(daemons, tmp_path):
    daemon = daemons("tempfail", tmp_path / "absent.db", 'on_error = "tempfail"\n')
    eoh, body_replies, eom = one_message(daemon, PLAIN)

    code, xcode, text = TEMPFAIL_REPLY
    assert eom == [(miltertest.SMFIR_REPLYCODE, {"smtpcode": code, "space": " ", "text": f"{xcode} {text}"})]


def test_missing_store_at_rcpt_accepts_every_recipient_and_end_of_message_applies_on_error(daemons, tmp_path):
    """No store, no classes: the split must not turn a store fault into refused recipients."""
    daemon = daemons("no-store-at-rcpt", tmp_path / "absent.db", 'on_error = "tempfail"\n')
    client = Mta(daemon.socket)
    try:
        assert client.envelope(SENDER, [INTERNAL, EXTERNAL, NO_KEY]) == [None] + [ACCEPTED] * 3
        client.headers(PLAIN.partition(b"\r\n\r\n")[0])
        assert client.eoh() == ACCEPTED
        client.body(b"hello\r\n")
        code, xcode, text = TEMPFAIL_REPLY
        assert client.eom() == [(miltertest.SMFIR_REPLYCODE, {"smtpcode": code, "space": " ",
                                                              "text": f"{xcode} {text}"})]
    finally:
        client.close()


def test_refusal_is_in_the_headers_without_addresses_and_in_the_log_with_them(daemon, encrypted):
    """Bob's message sent to erin (both readers, one class): refused; the header names no (Bcc) recipient."""
    client = Mta(daemon.socket)
    try:
        eoh, _, eom = client.message(encrypted, [READER])
    finally:
        client.close()
    added = {reply[1]["name"]: reply[1]["value"].replace("\n ", " ") for reply in eom
             if reply[0] == miltertest.SMFIR_ADDHEADER}  # values folded at 78 columns, unfolded here
    assert added["X-CipherMail-Info-SMIME-Decryption-Refused-0"] == (
        " not encrypted to a key of every recipient (reader policy)")
    assert miltertest.SMFIR_REPLBODY not in {reply[0] for reply in eom}
    assert not any("erin" in str(reply) for reply in eom)
    # the summary line is written before the end-of-message reply leaves the daemon
    line = next(line for line in daemon.log.read_text().splitlines() if " to=<erin@corp-pub.example> " in line)
    assert "result=refused (not encrypted to a key of every recipient [reader policy]) format=smime" in line


def test_store_changes_take_effect_without_a_restart(daemons, tmp_path, encrypted):
    """Missing store: passed with a reason; created empty: key not found; key imported: decrypted."""
    store_path = tmp_path / "later.db"
    daemon = daemons("later", store_path)
    message = encrypted

    def end_of_message():
        return one_message(daemon, message)[2]

    assert end_of_message() == [add_header("X-CipherMail-Info-Not-Processed", "key store unavailable"),
                                (miltertest.SMFIR_CONTINUE, {})]

    with KeyStore.create(str(store_path)) as store:
        admin.add_domain(store, "corp-pub.example")
    assert add_header("X-CipherMail-Info-SMIME-Decryption-Key-Not-Found", "True") in end_of_message()

    with KeyStore.open(str(store_path)) as store:
        admin.import_file(store, (CORPUS / "keys" / "smime" / "pub-bob.p12").read_bytes(), password=b"corpus-public")
    replies = end_of_message()
    assert miltertest.SMFIR_REPLBODY in {reply[0] for reply in replies}
    assert add_header("X-CipherMail-Info-SMIME-Decryption-Key-Not-Found", "True") not in replies


def test_messages_are_counted_for_the_stats_command(daemons, store_file, encrypted):
    counted = daemons("counted", store_file)
    client = Mta(counted.socket)
    try:
        client.message(encrypted, [INTERNAL])
        client.message(PLAIN, [EXTERNAL])
    finally:
        client.close()

    counters = snapshot_counting(counted, 2)["counters"]
    assert (counters["messages"], counters["smime_decrypted"], counters["not_internal"]) == (2, 1, 1)


def test_summary_line_names_the_queue_id(daemon, mta):
    mta.message(PLAIN, [INTERNAL])

    # The line is written before the end-of-message reply leaves the daemon.
    line = f"{QUEUE_ID}: from=<alice@sender-pub.example> to={INTERNAL} result=plain size="
    assert line in daemon.log.read_text()


# --- pure helpers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type,carries", [
    ("image/png", False), ("audio/ogg", False), ("video/mp4", False), ("font/woff2", False), ("model/gltf", False),
    ("text/plain", True), ("text/html", True), ("multipart/mixed", True), ("multipart/signed", True),
    ("application/pkcs7-mime", True), ("application/octet-stream", True), ("message/rfc822", True),
], ids=lambda value: str(value))
def test_only_binary_media_types_are_ruled_out_from_the_headers(content_type, carries):
    assert may_carry_crypto(content_type) is carries


def test_a_header_value_libmilter_cannot_carry_is_named():
    latin1 = "attachment; filename=\"caf\udce9.pdf\""  # a raw 0xE9 byte kept as a surrogate

    assert non_utf8_header(EditPlan(changes=[HeaderChange("Content-Disposition", 1, latin1)])) == "Content-Disposition"
    assert non_utf8_header(EditPlan(additions=[HeaderAdd("Subject", "caf\u00e9")])) is None


# --- a large message: spooled to a file, decrypted by a worker, its new body sent from a file -------------

def test_a_large_encrypted_message_is_replaced_by_its_plaintext_byte_for_byte(daemons, store_file, tmp_path):
    small_spool = daemons("small-spool", store_file, "spool_memory = 65536\n")
    size = 1536 * 1024
    message = large_smime_message(tmp_path, size)
    plaintext = mime.parse(large_plaintext(size))
    assert len(message) > 2 * 1024 * 1024 and len(plaintext.body) > FILE_THRESHOLD
    outcome, (eoh, body_replies, eom) = core_and_daemon(small_spool, store_file, message)

    assert {reply[0] for reply in body_replies} == {miltertest.SMFIR_CONTINUE}
    new_body = b"".join(reply[1]["buf"] for reply in eom if reply[0] == miltertest.SMFIR_REPLBODY)
    assert new_body == plaintext.body
    assert eom == expected_eom(outcome)
    assert add_header("X-CipherMail-Info-SMIME-Encrypted", "True") in eom


def test_a_message_accepted_at_end_of_headers_logs_action_pass(daemons, store_file):
    """Mail for an external recipient is accepted at end of headers; its log line says action=pass, one word of
    the documented three (ciphermilter(8)), as every other message's line does."""
    own = daemons("external-log", store_file)
    client = Mta(own.socket)
    try:
        client.message(PLAIN, [EXTERNAL])
    finally:
        client.close()
    lines = [line for line in own.log.read_text().splitlines() if " result=not-internal" in line]
    assert lines and all(" action=pass " in line for line in lines), lines
