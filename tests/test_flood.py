"""Forged-header floods (issue 14, section 3): every reserved-namespace field a message arrives with costs
Postfix's cleanup one deletion, and deletions are quadratic there (10,000 took 23 s, 20,000 ended in
"451 4.3.0 queue file write error"). Up to ``limits.max_forged_headers`` they are deleted; one more and the
message is refused with 554 5.7.0, by the daemon at end of headers and by ``ciphermilter decrypt`` alike.
Forged fields inside decrypted content cost nothing per field: they go with the one new body."""

from __future__ import annotations

import json

import miltertest
import pytest
from click.testing import CliRunner

from ciphermilter import mime

from ciphermilter.core import pipeline as core
from ciphermilter.core.outcome import refusal, reject_reply
from ciphermilter.core.triage import forged_flood

from ciphermilter.daemon import stats
from ciphermilter.cli.main import main
from ciphermilter.core.settings import Limits, Settings
from ciphermilter.core.info import is_reserved
from ciphermilter.core.plan import apply_plan
from conftest import BOB
from support.flood import BODY, FORGED_NAMES, KEPT, LIMIT, REASON, flooded, forged_fields
from support.man import page, rendered
from support.messages import smime_encrypt
from support.milter import EXTERNAL, INTERNAL, SENDER, Mta, expected_eom, snapshot_counting

# The daemon is driven through miltertest, which must carry bytes (support/milter_fixtures.py).
pytestmark = pytest.mark.usefixtures("bytes_on_the_wire")


INTERNAL_SETTINGS = Settings(internal_domains=["corp-pub.example"])


def process(message: bytes, recipient: str = "bob@corp-pub.example", settings: Settings = INTERNAL_SETTINGS):
    return core.process(message, core.Envelope(recipients=[recipient]), None, settings)


# --- the core ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("recipient", ["bob@corp-pub.example", "zed@elsewhere.example"], ids=["internal", "external"])
def test_up_to_the_limit_every_forged_field_is_deleted(recipient):
    message = flooded(LIMIT)

    outcome = process(message, recipient)

    assert outcome.reject is None
    assert len(outcome.plan.deletions) == LIMIT
    assert apply_plan(message, outcome.plan) == b"\r\n".join(KEPT) + b"\r\n\r\n" + BODY


@pytest.mark.parametrize("recipient", ["bob@corp-pub.example", "zed@elsewhere.example"], ids=["internal", "external"])
def test_one_more_than_the_limit_rejects_the_message(recipient):
    message = flooded(LIMIT + 1)
    assert max(message.lower().count(name.lower() + b":") for name in FORGED_NAMES) < LIMIT  # no name alone

    outcome = process(message, recipient)

    assert outcome.reject == REASON == "more than 100 forged X-CipherMail headers"
    assert reject_reply(outcome.reject) == ("554", "5.7.0", f"Message rejected: {REASON}")
    assert (outcome.plan.deletions, outcome.plan.additions, outcome.plan.body, len(outcome.info)) == ([], [], None, 0)
    assert outcome.report["forged_headers"] == LIMIT + 1 and outcome.error is None


def test_the_limit_is_a_setting():
    settings = Settings(internal_domains=["corp-pub.example"], limits=Limits(max_forged_headers=3))

    assert process(flooded(3), settings=settings).reject is None
    assert process(flooded(4), settings=settings).reject == "more than 3 forged X-CipherMail headers"


def test_forged_flood_is_the_one_rule_for_the_daemon_and_the_core():
    """The daemon counts the fields it is handed and asks the same function the core asks."""
    assert forged_flood(LIMIT, Limits()) is None
    assert forged_flood(LIMIT + 1, Limits()) == REASON
    message = flooded(LIMIT + 1)
    forged = sum(is_reserved(h.name) for h in mime.split_headers(message)[0])
    assert forged == LIMIT + 1


def test_a_flood_is_refused_before_any_other_limit():
    message = flooded(LIMIT + 1)
    settings = Settings(internal_domains=["corp-pub.example"], limits=Limits(max_message_size=100))
    assert process(message, settings=settings).reject == REASON


def test_a_flood_is_counted_as_rejected():
    assert stats.counted(process(flooded(LIMIT + 1))) == ({"messages", "rejected"}, [("rejected", REASON)])
    assert "rejected" not in stats.counted(process(flooded(LIMIT)))[0]


# --- forged fields in decrypted content: no per-field cost ------------------------------------------

DECRYPTED_FIELDS = 20_000


@pytest.fixture(scope="module")
def encrypted_flood(tmp_path_factory) -> bytes:
    """An S/MIME message (openssl) whose plaintext carries 20,000 forged fields in a part's header block and in
    the header block of a message/rfc822 part: far above the limit, which counts only the message's own."""
    forged = b"\r\n".join(forged_fields(DECRYPTED_FIELDS)) + b"\r\n"
    embedded = b"Subject: inner\r\n" + forged + b"\r\ninner text\r\n"
    content = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
               b"--b\r\nContent-Type: text/plain\r\n" + forged + b"\r\nouter text\r\n"
               b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + embedded + b"--b--\r\n")
    return smime_encrypt(content, tmp_path_factory.mktemp("flood"))


def test_forged_fields_in_decrypted_content_go_with_the_one_new_body(corpus_store, encrypted_flood):
    outcome = core.process(encrypted_flood, BOB, corpus_store)

    assert outcome.reject is None and outcome.plan.body is not None
    assert outcome.info.as_dict()["X-CipherMail-Info-SMIME-Encrypted"] == "True"
    assert not [d for d in outcome.plan.deletions if is_reserved(d.name)]  # nothing for Postfix to delete
    decrypted = mime.parse(apply_plan(encrypted_flood, outcome.plan))
    fields = [h.name for part in decrypted.walk_with_embedded() for h in part.headers]
    assert not [name for name in fields if is_reserved(name) and not name.startswith("X-CipherMail-Info-")]
    assert b"outer text" in outcome.plan.body and b"inner text" in outcome.plan.body


DELETIONS = f"more than {LIMIT} header fields to remove"


def test_forged_and_content_deletions_are_bounded_together(corpus_store, tmp_path):
    """Every extra outer copy of a content header is one more deletion when the body is replaced: with the
    forged ones, at most max_forged_headers in all, or the message is held at a limit (on_limit applies)."""
    encrypted = smime_encrypt(b"Content-Type: text/plain\r\n\r\nhi\r\n", tmp_path)
    own = len(core.process(encrypted, BOB, corpus_store).plan.deletions)  # e.g. its Content-Transfer-Encoding
    forged = LIMIT // 2

    def with_extra(descriptions: int) -> bytes:
        first, _, rest = encrypted.partition(b"\r\n")
        extra = forged_fields(forged) + [b"Content-Description: copy %d" % i for i in range(descriptions)]
        return first + b"\r\n" + b"\r\n".join(extra) + b"\r\n" + rest

    at_bound = core.process(with_extra(LIMIT - forged - own), BOB, corpus_store)
    assert at_bound.plan.body is not None and len(at_bound.plan.deletions) == LIMIT
    assert at_bound.info.as_dict()["X-CipherMail-Info-SMIME-Encrypted"] == "True"

    over = core.process(with_extra(LIMIT - forged - own + 1), BOB, corpus_store)
    assert over.plan.body is None and over.held_at_limit == DELETIONS == "more than 100 header fields to remove"
    assert over.info.as_dict() == {"X-CipherMail-Info-Not-Processed": DELETIONS}
    assert len(over.plan.deletions) == forged and all(is_reserved(d.name) for d in over.plan.deletions)
    assert refusal(over, Settings()) == ("554", "5.7.0", f"Encrypted content could not be inspected: {DELETIONS}")
    assert refusal(over, Settings(on_limit="pass")) is None


# --- ciphermilter decrypt -----------------------------------------------------------------------------

def decrypt(store, message: bytes, *args):
    return CliRunner().invoke(main, ["--store", str(store.path), "decrypt", "--rcpt", "bob@corp-pub.example",
                                     *args, "-"], input=message)


def test_decrypt_reports_the_rejection_with_its_own_exit_status(corpus_store, tmp_path):
    report = tmp_path / "report.json"

    result = decrypt(corpus_store, flooded(LIMIT + 1), "--explain-file", str(report))

    assert (result.exit_code, result.stdout_bytes) == (3, b"")  # the daemon passes nothing on
    assert result.stderr == f"ciphermilter: rejected: 554 5.7.0 Message rejected: {REASON}\n"
    explained = json.loads(report.read_text())
    assert (explained["rejected"], explained["forged_headers"], explained["headers"]) == (REASON, LIMIT + 1, {})


def test_decrypt_at_the_limit_writes_the_message_without_them(corpus_store):
    result = decrypt(corpus_store, flooded(LIMIT))

    assert (result.exit_code, result.stdout_bytes) == (0, b"\r\n".join(KEPT) + b"\r\n\r\n" + BODY)


# --- the daemon, at the protocol level -----------------------------------------------------------------

@pytest.fixture(scope="module")
def flood_daemon(daemons, store_file):
    return daemons("flood", store_file, "[limits]\nmax_forged_headers = 100\n")


@pytest.mark.parametrize("recipient", [INTERNAL, EXTERNAL], ids=["internal", "external"])
def test_daemon_rejects_a_flood_at_end_of_headers(flood_daemon, recipient):
    client = Mta(flood_daemon.socket)
    try:
        eoh, body_replies, eom = client.message(flooded(LIMIT + 1), [recipient])
    finally:
        client.close()

    assert eoh == (miltertest.SMFIR_REPLYCODE, {"smtpcode": "554", "space": " ",
                                                 "text": f"5.7.0 Message rejected: {REASON}"})
    assert (body_replies, eom) == ([], [])  # the body is never read


def test_daemon_deletes_a_flood_up_to_the_limit(flood_daemon):
    message = flooded(LIMIT)
    client = Mta(flood_daemon.socket)
    try:
        eoh, body_replies, eom = client.message(message, [EXTERNAL])
    finally:
        client.close()

    outcome = core.process(message, core.Envelope(SENDER, [EXTERNAL]), None, flood_daemon.settings())
    assert eoh == (miltertest.SMFIR_CONTINUE, {})
    assert body_replies == [(miltertest.SMFIR_SKIP, {})]
    assert eom == expected_eom(outcome) and len(eom) == LIMIT + 1


def test_daemon_logs_and_counts_the_rejection(daemons, store_file):
    counted = daemons("flood-counted", store_file)
    client = Mta(counted.socket)
    try:
        client.message(flooded(LIMIT + 1), [INTERNAL])
    finally:
        client.close()

    snapshot = snapshot_counting(counted, 1)
    assert (snapshot["counters"]["rejected"], snapshot["failures"]) == (1, {"rejected": {REASON: 1}})
    line = next(line for line in counted.log.read_text().splitlines() if " result=rejected " in line)
    assert f"result=rejected ({REASON})" in line and line.endswith("action=reject", 0, line.rindex(" time="))


# --- documentation --------------------------------------------------------------------------------------

def test_the_reply_and_the_setting_are_documented():
    headers = " ".join(rendered(page("ciphermilter-headers.7")).split())
    reply = " ".join(reject_reply(forged_flood(LIMIT + 1, Limits())))
    assert reply.replace(str(LIMIT), "N") in headers
    assert "exit status 3 too when the daemon would refuse the message outright" in " ".join(
        rendered(page("ciphermilter.1")).split()).lower()


def test_the_deletion_bound_is_documented():
    assert DELETIONS.replace(str(LIMIT), "N") in " ".join(rendered(page("ciphermilter-headers.7")).split())
    assert DELETIONS.replace(str(LIMIT), "N") in " ".join(rendered(page("ciphermilter.conf.5")).split())
