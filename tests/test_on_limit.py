"""on_limit: a limit met inside encrypted content we hold the key for is not a plain Not-Processed pass.

The attacker's aim (issue 14): wrap a virus with 1,001 tiny MIME parts (or any
other limit) inside S/MIME encrypted to a key the gateway holds, so that the
core gives up and the message reaches the scanners still encrypted. The core
marks such an outcome (``Outcome.held_at_limit``) and the daemon rejects it by
default. Messages we could not decrypt anyway are unaffected.
"""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import replace

import pytest
from click.testing import CliRunner

from asn1crypto import cms as asn1_cms

from support.attack_messages import ATTACKER_TEXT, SECRET, SECRET_ENTITY, SMIME_BOB, Tools, message, multipart, virus_with_parts
from ciphermilter import config, mime
from ciphermilter.cli import check
from ciphermilter.core import pipeline as core
from ciphermilter.core.outcome import refusal
from ciphermilter.daemon import stats
from ciphermilter.cli.main import main
from ciphermilter.core.settings import Limits, Settings
from ciphermilter.core.info import INFO_PREFIX
from ciphermilter.core.plan import apply_plan
from conftest import CORPUS

BOB = "bob@corp-pub.example"
BOB_PGP = "bob.pgp@corp-pub.example"
NO_KEY = "nokey@corp-pub.example"  # an internal domain, but no key of ours reads this address
EXTERNAL = "zed@elsewhere-pub.example"
NOT_PROCESSED = INFO_PREFIX + "Not-Processed"
PARTS = "more than 1000 MIME parts"
ATTACHED = b'filename="eicar.com"'  # the virus's part header, readable only once decrypted
SETTINGS = Settings(harvest_certificates=False, harvest_pgp_keys=False)
BOMB = CORPUS / "malformed-pgp-compression-bomb-bzip2-1GiB" / "message.eml"  # 1 GiB of zeros for bob.pgp
SMALL_INFLATION = replace(SETTINGS, limits=Limits(max_decompressed_size=1 << 20))


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    return Tools(tmp_path_factory.mktemp("tools"))


@pytest.fixture(scope="module")
def encrypted_virus(tools) -> bytes:
    """S/MIME for bob (``openssl cms -encrypt``), its payload the virus plus 1,001 parts."""
    return message(tools.smime_encrypted(virus_with_parts()))


def process(raw: bytes, recipients: list[str], store, settings: Settings = SETTINGS) -> core.Outcome:
    return core.process(raw, core.Envelope(recipients=recipients), store, settings)


def assert_passed_with(raw: bytes, outcome: core.Outcome, reason: str) -> None:
    """The plan on_limit = "pass" replays: the message as received (nothing forged in it), plus the reason."""
    assert outcome.info.as_dict() == {NOT_PROCESSED: reason}
    assert apply_plan(raw, outcome.plan) == _with_header(raw, reason)


def _with_header(raw: bytes, reason: str) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head + f"\r\n{NOT_PROCESSED}: {reason}\r\n\r\n".encode() + body


# --- what the core classifies as held -----------------------------------------------------------------

def test_a_decrypted_payload_of_1001_parts_is_held(corpus_store, encrypted_virus):
    outcome = process(encrypted_virus, [BOB], corpus_store)

    assert outcome.held_at_limit == PARTS
    assert outcome.report["on_limit"] == {"reason": PARTS, "policy": "reject"}
    assert outcome.error is None
    assert_passed_with(encrypted_virus, outcome, PARTS)  # what on_limit = "pass" delivers: still encrypted
    assert ATTACHED not in apply_plan(encrypted_virus, outcome.plan)


def test_the_same_payload_in_1000_parts_is_decrypted_for_the_scanners(corpus_store, tools):
    """The control: one part fewer is within the limit, so the test above can fail."""
    raw = message(tools.smime_encrypted(virus_with_parts(999)))
    outcome = process(raw, [BOB], corpus_store)

    assert outcome.held_at_limit is None and ATTACHED in outcome.plan.body


def test_a_plain_message_of_1001_parts_passes(corpus_store):
    raw = message(virus_with_parts())
    outcome = process(raw, [BOB], corpus_store)

    assert outcome.held_at_limit is None and "on_limit" not in outcome.report
    assert_passed_with(raw, outcome, PARTS)


def test_a_p7m_beside_text_is_not_held(corpus_store, tools):
    """EFAIL rule: an encrypted part beside the sender's own is not decrypted anyway, limit or not."""
    fillers = [b"Content-Type: text/plain\r\n\r\nx\r\n"] * 999
    raw = message(multipart(b"mixed", [ATTACKER_TEXT, tools.smime_encrypted(SECRET_ENTITY), *fillers]))
    outcome = process(raw, [BOB], corpus_store)

    assert outcome.held_at_limit is None
    assert_passed_with(raw, outcome, PARTS)


def test_the_encrypted_bomb_is_held(corpus_store):
    """Decompression stops inside content bob.pgp's key opened: held (rule a, noted when the key was found)."""
    raw = BOMB.read_bytes()
    outcome = process(raw, [BOB_PGP], corpus_store, SMALL_INFLATION)

    assert outcome.held_at_limit == "OpenPGP data decompresses to more than 1048576 bytes"


def test_decrypted_content_above_the_message_size_is_held(tools, corpus_store):
    """gpg --encrypt (compressed) of 200 KB of text to bob: a 3 KB message whose plaintext would be a new body
    above max_message_size, which Postfix would refuse (552 5.3.4) were the limits equal: a limit, held."""
    text = b"".join(b"line %d of a long text\r\n" % n for n in range(9000))
    raw = message(tools.pgp_encrypted(b"Content-Type: text/plain\r\n\r\n" + text))
    settings = replace(SETTINGS, limits=Limits(max_message_size=100_000, max_decompressed_size=1 << 20))
    assert len(raw) < 100_000 < len(text)

    outcome = process(raw, [BOB_PGP], corpus_store, settings)

    assert outcome.held_at_limit == "decrypted content larger than 100000 bytes"
    assert_passed_with(raw, outcome, "decrypted content larger than 100000 bytes")
    assert refusal(outcome, settings) == (
        "554", "5.7.0", "Encrypted content could not be inspected: decrypted content larger than 100000 bytes")
    # what the handler found before the limit stays in --explain (the report is taken before the new content)
    assert outcome.report["openpgp"]["blocks"][0]["encrypted"] is True


def test_the_encrypted_bomb_beside_text_is_not_held(corpus_store):
    """The same armored bomb inline beside the attacker's text: withheld there, so no content of ours is hidden."""
    armored = BOMB.read_bytes().partition(b"-----BEGIN")[2].partition(b"-----END PGP MESSAGE-----")[0]
    block = b"-----BEGIN" + armored + b"-----END PGP MESSAGE-----\r\n"
    raw = message(multipart(b"mixed", [ATTACKER_TEXT, b"Content-Type: text/plain\r\n\r\n" + block]))
    outcome = process(raw, [BOB_PGP], corpus_store, SMALL_INFLATION)

    assert outcome.info.as_dict() == {NOT_PROCESSED: "OpenPGP data decompresses to more than 1048576 bytes"}
    assert outcome.held_at_limit is None


@pytest.mark.parametrize("recipients, held", [
    ([BOB], True),
    ([NO_KEY], False),  # internal, but no key of ours reads it: we could not decrypt it
    ([BOB, NO_KEY], False),  # the reader rule decrypts only when every internal recipient reads a key
], ids=["reader", "internal-without-key", "reader-and-one-without"])
def test_a_message_larger_than_the_limit_is_held_when_its_recipients_read_a_key(corpus_store, tools, recipients,
                                                                               held):
    """Rule (b): nothing was tried, the top-level type and the envelope decide."""
    raw = message(tools.smime_encrypted(SECRET_ENTITY))
    settings = replace(SETTINGS, limits=Limits(max_message_size=100))
    outcome = process(raw, recipients, corpus_store, settings)

    reason = "message larger than 100 bytes"
    assert outcome.info.as_dict() == {NOT_PROCESSED: reason}
    assert outcome.held_at_limit == (reason if held else None)


def test_a_message_larger_than_the_limit_for_an_external_recipient_passes_untouched(corpus_store, tools):
    """Not ours to inspect: as in the daemon, which lets it pass at end of headers before it knows the size."""
    raw = message(tools.smime_encrypted(SECRET_ENTITY))
    settings = replace(SETTINGS, limits=Limits(max_message_size=100))
    outcome = process(raw, [EXTERNAL], corpus_store, settings)

    assert outcome.info.as_dict() == {} and outcome.held_at_limit is None
    assert outcome.report["skipped"] == "no recipient in an internal domain"


def test_without_the_reader_rule_any_private_key_holds_it(corpus_store, tools):
    raw = message(tools.smime_encrypted(SECRET_ENTITY))
    settings = replace(SETTINGS, require_reader=False, limits=Limits(max_message_size=100))

    assert process(raw, [NO_KEY], corpus_store, settings).held_at_limit == "message larger than 100 bytes"


def test_too_many_recipient_infos_before_any_decryption_is_held(corpus_store, tools):
    """101 RecipientInfos: the limit comes before a key is looked up, rule (b) holds it."""
    raw = message(tools.smime_with_decoys(SECRET_ENTITY, 100))
    outcome = process(raw, [BOB], corpus_store)

    assert outcome.held_at_limit == "more than 100 recipients in one layer"


@pytest.fixture(scope="module")
def stranger_first(tmp_path_factory, tools):
    """S/MIME beside a text part (rule (b) does not see it; with decrypt_embedded the handler decrypts it):
    ``count`` RecipientInfos for a stranger's new certificate, then, ``for_bob``, bob's own, past
    max_recipient_infos where the limit stops the parse."""
    work = tmp_path_factory.mktemp("stranger")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=stranger",
                    "-keyout", str(work / "k.pem"), "-out", str(work / "c.pem")], check=True, capture_output=True)

    def make(count: int, for_bob: bool) -> bytes:
        der = tools._openssl(["-encrypt", "-binary", "-aes256", "-outform", "DER", str(work / "c.pem"),
                              str(SMIME_BOB[0])], SECRET_ENTITY)
        info = asn1_cms.ContentInfo.load(der)
        stranger, bob = (asn1_cms.RecipientInfo.load(r.dump()) for r in info["content"]["recipient_infos"])
        info["content"]["recipient_infos"] = [stranger] * count + ([bob] if for_bob else [])
        return message(multipart(b"mixed", [ATTACKER_TEXT, Tools.smime_entity(info.dump(force=True), "enveloped-data")]))
    return make


EMBEDDED = replace(SETTINGS, decrypt_embedded=True)


def test_a_recipient_info_for_us_past_the_limit_holds_a_part(corpus_store, stranger_first):
    """Bob's RecipientInfo is the 151st: past the limit every entry is still looked up by its identifier."""
    outcome = process(stranger_first(150, True), [BOB], corpus_store, EMBEDDED)

    assert outcome.held_at_limit == "more than 100 recipients in one layer"


def test_recipient_infos_only_for_a_stranger_past_the_limit_pass(corpus_store, stranger_first):
    """The same without bob's entry: nothing in it could be decrypted here, so the limit holds nothing."""
    raw = stranger_first(150, False)
    outcome = process(raw, [BOB], corpus_store, EMBEDDED)

    assert outcome.held_at_limit is None
    assert_passed_with(raw, outcome, "more than 100 recipients in one layer")


def test_the_milter_glue_gets_the_same_verdict_from_the_header_block(corpus_store, tools):
    """core.stopped_at_limit on the header block alone: what the milter calls when it kills a worker."""
    raw = message(tools.smime_encrypted(SECRET_ENTITY))
    head = raw.partition(b"\r\n\r\n")[0] + b"\r\n"
    reason = "processing deadline exceeded"

    envelope = core.Envelope(recipients=[BOB])
    held = core.stopped_at_limit(mime.parse(head + b"\r\n"), reason, envelope, corpus_store, SETTINGS)
    plain = core.stopped_at_limit(mime.parse(b"Subject: hi\r\n\r\n"), reason, envelope, corpus_store, SETTINGS)

    assert held.held_at_limit == reason and held.info.as_dict() == {NOT_PROCESSED: reason}
    assert plain.held_at_limit is None and plain.info.as_dict() == {NOT_PROCESSED: reason}


# --- decrypt --explain, statistics, configuration, check ---------------------------------------------------

def test_decrypt_exits_3_and_explains_the_limit(corpus_store, encrypted_virus, tmp_path):
    source = tmp_path / "virus.eml"
    source.write_bytes(encrypted_virus)
    result = CliRunner().invoke(main, ["--store", str(corpus_store.path), "decrypt", "--rcpt", BOB, "--explain",
                                       str(source)])

    assert result.exit_code == 3
    assert result.stdout_bytes == _with_header(encrypted_virus, PARTS)
    report, reply = result.stderr.rsplit("\n}\n", 1)
    assert reply == f"ciphermilter: rejected: 554 5.7.0 Encrypted content could not be inspected: {PARTS}\n"
    report = json.loads(report + "}")
    assert report["on_limit"] == {"reason": PARTS, "policy": "reject"}
    assert report["headers"] == {NOT_PROCESSED: PARTS}


def test_a_plain_message_over_a_limit_exits_0(corpus_store, tmp_path):
    source = tmp_path / "plain.eml"
    source.write_bytes(message(virus_with_parts()))
    result = CliRunner().invoke(main, ["--store", str(corpus_store.path), "decrypt", "--rcpt", BOB, str(source)])

    assert result.exit_code == 0


def test_held_messages_are_counted(corpus_store, encrypted_virus):
    counters = stats.Counters()
    counters.record(process(encrypted_virus, [BOB], corpus_store), 0.01)
    counters.record(process(message(virus_with_parts()), [BOB], corpus_store), 0.01)
    snapshot = counters.snapshot()

    assert snapshot["counters"]["limit_held"] == 1
    assert snapshot["counters"]["not_processed"] == 2
    assert "ciphermilter_limit_held_total 1" in stats.prometheus(snapshot).splitlines()


@pytest.mark.parametrize("value", ["reject", "tempfail", "pass"])
def test_on_limit_takes_its_three_values(tmp_path, value):
    path = tmp_path / "c.toml"
    path.write_text(f'on_limit = "{value}"\n')
    assert config.load(str(path)).settings.on_limit == value


def test_on_limit_defaults_to_reject_and_refuses_anything_else(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('\non_limit = "drop"\n')

    assert Settings().on_limit == "reject"
    with pytest.raises(config.ConfigError, match=r"c.toml:2: on_limit: must be one of reject, tempfail, pass"):
        config.load(str(path))


@pytest.mark.parametrize("deadline, timeout, expected", [
    (30.0, "300s", []),
    (30.0, "31s", ["postfix: milter_content_timeout = 31s is not above deadline_seconds (30) + 1 s"]),
    (30.0, "1m", []),
    (90.0, "10m", ["config: limits.deadline_seconds is 90: a verdict may take 91 s"]),
], ids=["default", "content-timeout-too-short", "minutes", "longer-than-clients-wait"])
def test_check_warns_when_the_verdict_may_come_too_late(deadline, timeout, expected):
    settings = Settings(limits=Limits(deadline_seconds=deadline))
    report = check.Report()
    check.check_deadline(settings, report)
    check.check_content_timeout(timeout, settings, report)

    lines = [f"{f.area}: {f.message}" for f in report.findings]
    assert len(lines) == len(expected)
    assert all(line.startswith(start) for line, start in zip(lines, expected))
    assert all(f.severity == "warning" for f in report.findings)


def test_the_content_timeout_of_our_own_milter_entry_counts():
    (entry,) = check.parse_milters("{ unix:ciphermilter/ciphermilter.sock, content_timeout=20s }")
    assert entry.content_timeout == "20s"


# Rule (b) over the whole-content chain (core.encrypted_whole_content): what the handlers would decrypt as whole
# content counts, whatever wraps it; anything beside other content does not.
_P7M = b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n\r\nMIAG\r\n"
_ARMOR = b"-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA\r\n-----END PGP MESSAGE-----\r\n"


def _nested(entity: bytes, depth: int) -> bytes:
    for level in range(depth):
        entity = multipart(b"mixed", [entity], boundary=b"n-%d" % level)
    return entity


@pytest.mark.parametrize("entity, encrypted", [
    (_P7M, True),
    (multipart(b"mixed", [_P7M]), True),
    (multipart(b"mixed", [b"Content-Type: text/plain\r\n\r\nread me\r\n", _P7M]), False),  # beside text: EFAIL
    (b"Content-Type: text/plain\r\n\r\n" + _ARMOR, True),
    (b"\r\n" + _ARMOR, True),  # no Content-Type: text/plain
    (b"Content-Type: text/plain\r\n\r\nquoted: " + _ARMOR, False),  # not at a line start
    (b"Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"
     + base64.encodebytes(_ARMOR).replace(b"\n", b"\r\n"), True),
    (b'Content-Type: application/octet-stream; name="m.gpg"\r\n\r\nx\r\n', True),
    (b'Content-Type: application/pdf; name="m.gpg"\r\n\r\nx\r\n', False),
    (b"Content-Type: application/pgp-encrypted\r\n\r\n" + _ARMOR, True),
    (_nested(_P7M, 50), True),
    (_nested(_P7M, 80), True),  # below the depth limit: the bytes name the type
    (_nested(b"Content-Type: text/plain\r\n\r\nhello\r\n", 80), False),
])
def test_rule_b_follows_the_whole_content_down(entity, encrypted):
    assert core.encrypted_whole_content(core.mime.parse(message(entity)), 50) is encrypted


def test_rule_b_takes_the_signed_part_of_a_multipart_signed(tools):
    signed = tools.smime_signed(tools.smime_encrypted(SECRET_ENTITY))
    assert core.encrypted_whole_content(core.mime.parse(message(signed)), 50)


def test_armor_inside_armor_counts_against_max_pgp_nesting(corpus_store, tools):
    """gpg -a -e three times: the third layer is one over max_pgp_nesting = 1 (the first layer is the
    message itself; each armored message found inside a plaintext counts), so the limit holds it."""
    thrice = tools.pgp_armored(tools.pgp_armored(tools.pgp_armored(SECRET_ENTITY)))
    settings = replace(SETTINGS, limits=Limits(max_pgp_nesting=1))
    raw = message(b"Content-Type: text/plain\r\n\r\n" + thrice)
    outcome = core.process(raw, core.Envelope(recipients=[BOB_PGP]), corpus_store, settings)
    assert outcome.held_at_limit == "more than 1 encrypted OpenPGP layers", outcome.report
    twice = message(b"Content-Type: text/plain\r\n\r\n" + tools.pgp_armored(tools.pgp_armored(SECRET_ENTITY)))
    outcome = core.process(twice, core.Envelope(recipients=[BOB_PGP]), corpus_store, settings)
    assert outcome.held_at_limit is None and SECRET in outcome.plan.body, outcome.report
