import pytest

from ciphermilter import mime

from ciphermilter.core import pipeline as core
from ciphermilter.core.outcome import NOT_PROCESSED
from ciphermilter.core.settings import Limits, Settings
from ciphermilter.core.info import is_reserved
from ciphermilter.core.plan import EditPlan, apply_plan
from conftest import NO_HARVEST, case_envelope, case_message, corpus_cases, ids, spooled

INTERNAL = Settings(internal_domains=["corp-pub.example"])
SPOOFED = corpus_cases(lambda c: c["family"] == "malformed-spoofed-headers")


def _headers(message: bytes) -> list[bytes]:
    return [h.raw for h in mime.split_headers(message)[0]]


def test_spoofed_case_loses_every_reserved_header_and_nothing_else():
    for case in SPOOFED:
        message = case_message(case)
        outcome = core.process(message, core.Envelope(recipients=["<bob@corp-pub.example>"]), None, INTERNAL)
        out = apply_plan(message, outcome.plan)
        before, after = _headers(message), _headers(out)
        assert after == [h for h in before if not is_reserved(h.split(b":")[0].decode())]
        assert len(after) < len(before)
        assert not outcome.info  # no S/MIME or OpenPGP content: no info headers at all
        assert out.endswith(mime.parse(message).body)


def test_forged_headers_are_stripped_for_external_recipients_too():
    message = b"X-CIPHERMAIL-INFO-SMIME-Signed: True\r\nSubject: x\r\nx-ciphermail-info-a :\r\n folded\r\n\r\nbody\r\n"
    outcome = core.process(message, core.Envelope(recipients=["<a@elsewhere.example>"]), None, INTERNAL)
    assert outcome.report["skipped"] == "no recipient in an internal domain"
    assert apply_plan(message, outcome.plan) == b"Subject: x\r\n\r\nbody\r\n"


def test_deletion_indexes_count_per_name_case_insensitively():
    message = b"X-CipherMail-A: 1\r\nX-Other: k\r\nx-ciphermail-a: 2\r\nX-CIPHERMAIL-A: 3\r\n\r\n"
    plan = core.process(message, core.Envelope(), None, INTERNAL).plan
    assert [(d.name.lower(), d.index) for d in plan.replay_deletions()] == [("x-ciphermail-a", 3), ("x-ciphermail-a", 2),
                                                                    ("x-ciphermail-a", 1)]


def test_oversized_message_passes_with_a_reason():
    message = b"Subject: big\r\n\r\n" + b"x" * 200
    settings = Settings(internal_domains=["corp-pub.example"], limits=Limits(max_message_size=100))
    outcome = core.process(message, core.Envelope(recipients=["bob@corp-pub.example"]), None, settings)
    assert outcome.plan.body is None
    assert outcome.info.as_dict() == {"X-CipherMail-Info-Not-Processed": "message larger than 100 bytes"}


def test_a_bug_in_a_handler_passes_the_message_unchanged(monkeypatch):
    def broken(message, ctx):
        raise KeyError("boom")

    monkeypatch.setattr(core, "HANDLERS", (broken,))
    message = b"Subject: x\r\nX-CipherMail-Info-Forged: 1\r\n\r\nbody\r\n"
    outcome = core.process(message, core.Envelope(recipients=["bob@corp-pub.example"]), None, INTERNAL)
    assert outcome.error == "internal error: KeyError"
    assert apply_plan(message, outcome.plan) == (
        b"Subject: x\r\nX-CipherMail-Info-Not-Processed: internal error: KeyError\r\n\r\nbody\r\n"
    )


def test_content_headers_follow_the_new_entity():
    outer, _ = mime.split_headers(
        b"Subject: s\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
        b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=smime.p7m\r\n\r\n"
    )
    plan = EditPlan()
    report = {}
    new_entity = mime.parse(b"Content-Type: text/plain;\r\n charset=utf-8\r\n\r\nhi\r\n")
    core._apply_new_entity(plan, outer, new_entity, Settings(), report)
    assert [(c.name, c.index, c.value) for c in plan.changes] == [("Content-Type", 1, "text/plain;\n charset=utf-8")]
    assert sorted((d.name, d.index) for d in plan.deletions) == [("Content-Disposition", 1),
                                                                  ("Content-Transfer-Encoding", 1)]
    assert plan.body == b"hi\r\n"


def test_protected_headers_are_restored_but_not_identity_headers():
    message = b"Subject: ...\r\nFrom: a@x.example\r\nContent-Type: application/pkcs7-mime\r\n\r\nxx\r\n"
    entity = (
        b'Content-Type: text/plain; charset=utf-8; protected-headers="v1"\r\n'
        b"Subject: =?utf-8?q?Real_subject?=\r\nFrom: evil@y.example\r\nCc: c@x.example\r\n\r\nhello\r\n"
    )
    plan = EditPlan()
    report = {}
    core._apply_new_entity(plan, mime.split_headers(message)[0], mime.parse(entity), Settings(), report)
    out = apply_plan(message, plan)
    assert out == (
        b"Subject: =?utf-8?q?Real_subject?=\r\nFrom: a@x.example\r\n"
        b'Content-Type: text/plain; charset=utf-8; protected-headers="v1"\r\nCc: c@x.example\r\n\r\nhello\r\n'
    )
    assert report["protected_headers_restored"] == ["Subject", "Cc"]


def test_header_protection_can_be_turned_off():
    entity = b'Content-Type: text/plain; protected-headers="v1"\r\nSubject: real\r\n\r\nhello\r\n'
    plan = EditPlan()
    core._apply_new_entity(plan, mime.split_headers(b"Subject: ...\r\n\r\n")[0], mime.parse(entity),
                           Settings(header_protection=False), {})
    assert [c.name for c in plan.changes] == [] and [a.name for a in plan.additions] == ["Content-Type"]


CASES = corpus_cases()
BOB = core.Envelope(mail_from="alice@sender-pub.example", recipients=["<bob@corp-pub.example>"], queue_id="Q1")


def comparable(outcome: core.Outcome) -> tuple:
    report = {key: value for key, value in outcome.report.items() if key != "elapsed_ms"}
    return outcome.plan, list(outcome.info), report, outcome.error


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_a_message_in_a_file_gives_the_plan_its_bytes_give(case, corpus_store):
    message = case_message(case)
    with spooled(message) as file:
        from_file = core.process(file, BOB, corpus_store, NO_HARVEST)
    from_bytes = core.process(message, BOB, corpus_store, NO_HARVEST)
    assert from_bytes.report.get("skipped") != "no recipient in an internal domain"
    assert comparable(from_file) == comparable(from_bytes)
    assert isinstance(from_file.plan.body, (bytes, type(None)))


def test_an_oversized_message_in_a_file_passes_with_a_reason():
    message = b"Subject: big\r\nX-CipherMail-Info-Forged: 1\r\n\r\n" + b"x" * 200
    settings = Settings(internal_domains=["corp-pub.example"], limits=Limits(max_message_size=100))
    with spooled(message) as file:
        outcome = core.process(file, core.Envelope(recipients=["bob@corp-pub.example"]), None, settings)
    assert outcome.info.as_dict() == {"X-CipherMail-Info-Not-Processed": "message larger than 100 bytes"}
    assert apply_plan(message, outcome.plan) == (
        b"Subject: big\r\nX-CipherMail-Info-Not-Processed: message larger than 100 bytes\r\n\r\n" + b"x" * 200)


def acted_on(case, store) -> bool:
    """The handlers found something in the case's message or decrypted it (a limit reached is no finding)."""
    outcome = core.process(case_message(case), case_envelope(case), store, NO_HARVEST)
    findings = [name for name, _ in outcome.info if name != "X-CipherMail-Info-" + NOT_PROCESSED]
    return bool(findings) or outcome.plan.body is not None


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_a_message_the_handlers_act_on_is_never_light(case, corpus_store):
    """The daemon runs light messages in the connection's thread: every corpus message with protected
    content must go to a worker (a wrong answer would cost speed, not correctness, but no marker may rot)."""
    assert not (acted_on(case, corpus_store) and core.is_light(case_message(case)))


def test_most_corpus_messages_are_acted_on_so_the_test_above_has_cases(corpus_store):
    assert sum(acted_on(case, corpus_store) for case in CASES) >= len(CASES) // 2


HEADER_SIGNS = [b"Content-Type: application/PKCS7-mime", b'Content-Type: application/octet-stream; name="x.P7M"',
                b"Content-Type: multipart/Signed", b"Content-Type: multipart/encrypted", b"Autocrypt: addr=a@b",
                b"Content-Type: application/PGP-keys", b"Content-Transfer-Encoding: BASE64"]


@pytest.mark.parametrize("sign", HEADER_SIGNS)
def test_a_sign_in_the_header_block_makes_a_message_heavy(sign):
    assert core.is_light(b"Subject: hello\r\n\r\nJust text.\r\n")
    assert not core.is_light(b"Subject: hello\r\n" + sign + b"\r\n\r\nJust text.\r\n")


_MIXED = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\n"
_TEXT = b"Subject: hello\r\nContent-Type: text/plain\r\n\r\n"
_QP = b"Subject: hello\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
_ARMOR_END = b"\r\n\r\nhQEMA8ZBfT0+2NwqAQf/\r\n-----END PGP MESSAGE-----\r\n"
# (a light message, the same message made heavy by a sign in its body where the handlers look)
BODY_SIGNS = {
    **{f"part header {n}": (_MIXED + b"\r\nsome data\r\n--b--\r\n", _MIXED + sign + b"\r\n\r\nsome data\r\n--b--\r\n")
       for n, sign in enumerate(HEADER_SIGNS)},
    "armor in a single part": (_TEXT + b"See application/pkcs7-mime, pgp and base64 in RFC 8551.\r\n",
                               _TEXT + b"-----BEGIN PGP MESSAGE-----\r\n"),
    "quoted-printable armor": (_QP + b"Caf=C3=A9 au lait.\r\n", _QP + b"=2D----BEGIN PGP MESSAGE-----" + _ARMOR_END),
    "quoted-printable soft break in armor": (_QP + b"Caf=C3=A9 au lait.\r\n",
                                             _QP + b"-----BEGIN PG=\r\nP MESSAGE-----" + _ARMOR_END),
}


@pytest.mark.parametrize(("light", "heavy"), BODY_SIGNS.values(), ids=BODY_SIGNS.keys())
def test_a_sign_in_the_body_makes_a_message_heavy_where_the_handlers_look(light, heavy):
    """Words in a multipart's part headers and armor in a single part, also behind quoted-printable;
    other words in a single part's body (the first light message) do not count."""
    assert core.is_light(light)
    assert not core.is_light(heavy)


def test_a_large_message_is_never_light():
    head = b"Subject: hello\r\n\r\n"
    assert core.is_light(head + b"x" * (core.LIGHT_SIZE - len(head)))
    assert not core.is_light(head + b"x" * (core.LIGHT_SIZE - len(head) + 1))
