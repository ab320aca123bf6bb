"""The log line: one real outcome per result word, rendered as the daemon writes it and compared with the
example ciphermilter(8) shows for that word (docs tested against code); escaping of what a sender chose."""

from __future__ import annotations

import re
import time

import pytest

from ciphermilter import mime
from ciphermilter.core import pipeline as core
from ciphermilter.core.info import INFO_PREFIX
from ciphermilter.core.outcome import not_processed
from ciphermilter.core.result import Result
from ciphermilter.core.settings import Limits, Settings
from ciphermilter.core.triage import Envelope, QueueLog, Skip, Triage
from ciphermilter.daemon import logline
from conftest import case_envelope, case_message, corpus_cases
from support.man import page, rendered
from support.to_bob import OUTER, smime_encrypt, smime_part

QUEUE_ID = "4Bq2Xk1yZ"
ELAPSED = 0.0123
SENDER = "alice@example.org"
INTERNAL = "bob@corp-pub.example"
PLAIN = b"From: alice@example.org\r\nTo: bob@corp-pub.example\r\nSubject: lunch\r\n\r\nAt noon?\r\n"
NO_HARVEST = Settings(harvest_certificates=False, harvest_pgp_keys=False)


def case(name: str) -> dict:
    return next(found for found in corpus_cases(lambda c: c["id"] == name))


def corpus(name: str, store, settings: Settings = NO_HARVEST, envelope: Envelope | None = None, **kwargs):
    message = case_message(case(name))
    envelope = envelope or case_envelope(case(name))
    envelope = Envelope(SENDER, envelope.recipients, QUEUE_ID)
    return message, envelope, core.process(message, envelope, store, settings, **kwargs)


def plain(store, recipients=(INTERNAL,)):
    envelope = Envelope(SENDER, list(recipients), QUEUE_ID)
    return PLAIN, envelope, core.process(PLAIN, envelope, store, NO_HARVEST)


def flood(store):
    message = b"".join(b"X-CipherMail-Info-SMIME-Encrypted: True\r\n" for _ in range(4)) + PLAIN
    envelope = Envelope(SENDER, [INTERNAL], QUEUE_ID)
    settings = Settings(harvest_certificates=False, limits=Limits(max_forged_headers=3))
    return message, envelope, core.process(message, envelope, store, settings)


def store_unavailable(store):
    envelope = Envelope(SENDER, [INTERNAL], QUEUE_ID)
    verdict = Triage(internal=True, skip=Skip.STORE_UNAVAILABLE, store_error="key store /var/lib/ciphermilter/"
                     "ciphermilter.db: Permission denied")
    outcome = core.decided(verdict, lambda: mime.parse(PLAIN), envelope, None, NO_HARVEST)
    return PLAIN, envelope, outcome


def spool_failure(store):
    """What the daemon's fail-safe builds when it cannot spool a message (daemon/milter.py)."""
    envelope = Envelope(SENDER, [INTERNAL], QUEUE_ID)
    reason = "cannot spool the message"
    return PLAIN, envelope, not_processed(mime.parse(PLAIN).headers, reason, envelope, Result.ERROR, reason)


def broken_mime(store):
    """Encrypted content whose own header block is broken (a bare CR hiding a Bcc:), as test_security sends it."""
    content = b"Content-Type: text/plain\rBcc: evil@attacker.example\r\n\r\nsecret body\r\n"
    message = OUTER + b"MIME-Version: 1.0\r\n" + smime_part(smime_encrypt(content))
    envelope = Envelope(SENDER, [INTERNAL], QUEUE_ID)
    return message, envelope, core.process(message, envelope, store, NO_HARVEST)


# One way to reach each result with real messages and the real core; the action the daemon takes with it.
EXAMPLES = {
    Result.PLAIN: (lambda store: plain(store), "pass"),
    Result.DECRYPTED: (lambda store: corpus("smime-nested-sign-then-encrypt", store), "pass"),
    Result.VERIFIED: (lambda store: corpus("pgpmime-signed-gpg-ed25519", store), "pass"),
    Result.BAD_SIGNATURE: (lambda store: corpus("smime-sig-tampered-body", store), "pass"),
    Result.NO_KEY: (lambda store: corpus("smime-env-not-ours", store), "pass"),
    Result.REFUSED: (lambda store: corpus("smime-env-rsa15-aes128-cbc", store,
                                          envelope=Envelope(recipients=["carol@corp-pub.example"])), "pass"),
    Result.FAILED: (lambda store: corpus("malformed-smime-unknown-cipher-oid", store), "pass"),
    Result.NOT_INTERNAL: (lambda store: plain(store, ["dave@elsewhere.example"]), "pass"),
    Result.TOO_LARGE: (lambda store: corpus("smime-env-rsa15-aes128-cbc", store, settings=Settings(
        harvest_certificates=False, limits=Limits(max_message_size=1000))), "tempfail"),
    Result.TIMEOUT: (lambda store: corpus("smime-env-rsa15-aes128-cbc", store,
                                          deadline=time.monotonic() - 1), "tempfail"),
    Result.LIMIT: (lambda store: corpus("malformed-deep-mime-nesting-200", store), "pass"),
    Result.MALFORMED: (broken_mime, "pass"),
    Result.STORE_UNAVAILABLE: (store_unavailable, "tempfail"),
    Result.REJECTED: (flood, "reject"),
    Result.ERROR: (spool_failure, "tempfail"),
}


def line_for(result: Result, store) -> str:
    make, action = EXAMPLES[result]
    message, envelope, outcome = make(store)
    assert outcome.verdict().result is result
    body = outcome.plan.body
    new_body = None if body is None else len(body) if isinstance(body, bytes) else len(body.read())
    text = logline.summary(envelope, outcome, len(message), new_body, action, ELAPSED)
    return QueueLog(None, QUEUE_ID).process(text, {})[0]  # type: ignore[arg-type]


def documented_examples() -> dict[str, str]:
    """result word -> the example line under LOGGING in ciphermilter(8)."""
    text = rendered(page("ciphermilter.8"))
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith(f"{QUEUE_ID}: ")]
    return {re.search(r" result=([a-z-]+)", line).group(1): line for line in lines}


def test_every_result_has_an_example_in_ciphermilter_8():
    assert set(documented_examples()) == {result.value for result in Result}


@pytest.mark.parametrize("result", list(Result), ids=lambda result: result.value)
def test_each_documented_example_is_what_the_daemon_writes(result, corpus_store):
    assert documented_examples()[result.value] == line_for(result, corpus_store)


def test_every_result_of_the_corpus_is_a_word_of_the_vocabulary(corpus_store):
    """The word agrees with the info headers the message carries on (the contract downstream trusts)."""
    seen = set()
    for found in corpus_cases():
        outcome = core.process(case_message(found), case_envelope(found), corpus_store, NO_HARVEST)
        result, names = outcome.verdict().result, {re.sub(r"(-[0-9]+)+\Z", "", name.removeprefix(INFO_PREFIX))
                                            for name, _ in outcome.info}
        seen.add(result)
        undecrypted = {"SMIME-Decryption-Key-Not-Found", "PGP-Decryption-Key-Not-Found", "SMIME-Decryption-Failed",
                       "PGP-Decryption-Failed", "PGP-Decryption-Withheld", "Not-Processed"}
        assert (result is Result.DECRYPTED) is bool({"SMIME-Encrypted", "PGP-Encrypted"} & names
                                                    and not undecrypted & names), found["id"]
        if result is Result.NO_KEY:
            assert {"SMIME-Decryption-Key-Not-Found", "PGP-Decryption-Key-Not-Found"} & names, found["id"]
    assert {Result.DECRYPTED, Result.VERIFIED, Result.BAD_SIGNATURE, Result.NO_KEY, Result.FAILED} <= seen


@pytest.mark.parametrize("hostile", [
    "x\r\nINFO 4TESTQ1D: from=<a@b> result=decrypted", "a b result=decrypted@evil.example", "a>,<b@c.example",
    "a\x1b[31m@evil.example", "a\u2028@evil.example", "a\x00@evil.example", "a=b(c)\\d\"e@evil.example",
])
def test_a_hostile_address_stays_inside_its_field(hostile):
    outcome = not_processed(mime.parse(PLAIN).headers, "cannot spool the message", Envelope(),
                            Result.ERROR, "cannot spool the message")
    line = logline.summary(Envelope(hostile, [hostile, INTERNAL]), outcome, 10, None, "pass", 0.001)
    assert line.isprintable() and "\n" not in line and "\r" not in line
    fields = line.split(" ")
    assert [field.partition("=")[0] for field in fields[:3]] == ["from", "to", "result"]
    assert fields[1].count("<") == 2 and fields[1].endswith(f",<{INTERNAL}>")
    assert line.count("result=") == 1


def test_a_reason_keeps_its_parentheses_from_closing_ours():
    assert logline.reason("left encrypted (EFAIL protection)\n x=y") == \
        "(left encrypted [EFAIL protection]\\x0a x\\x3dy)"


