"""Round-4 outsider attacks on the header claims (shared/spec/info-headers.md, "From and the signer" and "What a
signature covers, and what is decrypted where").

Black box, two doors: every vector goes through ``ciphermilter --store S decrypt --explain --rcpt R -`` as a
subprocess ("cli") and, where parametrized, through ``core.pipeline.process`` on the same store opened read-only,
the plan replayed with ``core.plan.apply_plan`` ("core"). Each test asserts the EXACT set of X-CipherMail-Info-*
headers of the result (names and values), and whether the body is byte-identical to the one received.

Vectors are built at test time with the real tools (support/attack_suite.py, support/attack_fixtures.py):
gpg in a throwaway home (Sigrid's admin-imported signing key, bob.pgp's public key), ``openssl cms -encrypt``
to the corpus S/MIME bob, ``openssl cms -sign`` with the corpus S/MIME erin (P-256, chains to the corpus root,
which the store trusts), the corpus case smime-sig-detached-chain (alice, valid and trusted). The attacker's
part is only MIME and header fields: wrapping, re-typing, relabelling, From: spelling, the envelope.

Families (the brief's numbering):
  1 wrap the signed part in a multipart of one's own (mixed/alternative/related, before/after, nested twice)
  2 re-type the parts around a ciphertext (octet-stream, text/plain base64, .p7m name, protocol mismatches,
    message/rfc822)
  3 two addresses in From: with a message validly signed by one of them
  4 a colleague's ciphertext sent to oneself (internal user without a key, a mix, an external recipient)
  5 signed-only content labelled as encrypted

Found on the merged code (4af2c66) and settled: (a) a display name that is another address written with a
look-alike at sign (U+FF20, U+FE6B, in an encoded-word) got no Signer-Mismatch/PGP-Signer-Mismatch: the sender
rule now reads display names after NFKC, as an eye does; (b) a multipart/signed whose signature part holds no
signature is reported as a signature that failed (fail-closed, now documented in ciphermilter-headers(7)), never
as valid. Never a Signer-Verified/PGP-Signature-Valid True nor an *-Encrypted claim beyond what was proven.
"""

from __future__ import annotations

import base64

import pytest

from ciphermilter.core import pipeline as core
from ciphermilter.core.plan import apply_plan
from ciphermilter.store.keystore import KeyStore
from support.attack_suite import (ALICE, BOB, BOB_PGP, EVE, INNER, KEYS, SIGRID, Result, b64_lines,
                                  corpus_smime_signed_entity, crlf, message, multipart, p7m_entity, pgp_encrypt,
                                  pgpmime_encrypted_entity, run, smime_encrypted, text_part)

NOKEY = "nokey@corp-pub.example"      # an internal user with no key at all
ERIN = "erin@corp-pub.example"        # S/MIME signer of family 5 (corpus pub-erin-p256)
OUTSIDER = "someone@elsewhere-pub.example"
ATTACKER_TEXT = text_part("ATTACKER: wire 1,000,000 EUR to account 666 today.\n")
ATTACKER_HTML = text_part("<html><body>ATTACKER: wire 1,000,000 EUR to account 666</body></html>\n",
                          "text/html; charset=us-ascii")
MARKER = "ROUND4-SECRET-7"


# ----------------------------------------------------------------------------------------- the two doors

@pytest.fixture(params=["cli", "core"])
def through(request, store):
    """A function (message, *recipients) -> Result, through the CLI or through core.process."""
    if request.param == "cli":
        return store.decrypt

    def via_core(msg: bytes, *rcpts: str) -> Result:
        ks = KeyStore.open_read_only(str(store.path))
        try:
            outcome = core.process(msg, core.Envelope(recipients=list(rcpts)), ks, None)
        finally:
            ks.close()
        assert outcome.error is None, outcome.error
        return Result(msg, apply_plan(msg, outcome.plan), {})
    return via_core


def exact(result: Result, expected: dict[str, str]) -> None:
    assert result.info == {k.lower(): v for k, v in expected.items()}, result


# ----------------------------------------------------------------------------------------- what is proven

@pytest.fixture(scope="session")
def sigrid_keyid(gpg) -> str:
    listing = gpg("--with-colons", "--list-keys", SIGRID).decode()
    return next(line.split(":")[4] for line in listing.splitlines() if line.startswith("pub:")).upper()


def pgp_sig(keyid: str, encoding: str = "PGP/MIME", **more: str) -> dict[str, str]:
    return {"PGP-Encoding": encoding, "PGP-Signed": "True", "PGP-Signer-KeyID": keyid, "PGP-Signature-Valid": "True",
            "PGP-Signer-Email": SIGRID, **more}


SMIME_ALICE = {"SMIME-Signed": "True",
               "Signer-ID-0-0": "issuer=CN=Corpus Public Test Issuing CA,O=Corpus Public Test Org; serial=5A000007",
               "Signer-Email-0-0": ALICE, "Signer-Verified-0-0": "True", "Signer-Trusted-0-0": "True"}
SMIME_TO_BOB = {"SMIME-Encrypted": "True", "Encryption-Algorithm-0": "AES-256-CBC",
                "Encryption-Recipient-0-0": "issuer=CN=Corpus Public Test Root CA,O=Corpus Public Test Org; "
                                            "serial=5A000003"}
MIXED_PGP = {"PGP-Mixed-Content": "True"}
MIXED_SMIME = {"SMIME-Mixed-Content": "True"}


# ============================================================================ 1. wrapping the signed part

def wraps(entity: bytes) -> dict[str, bytes]:
    """The signed ``entity`` inside multiparts the attacker builds around it."""
    return {
        "mixed-before": multipart("mixed", [ATTACKER_TEXT, entity], "w1"),
        "mixed-after": multipart("mixed", [entity, ATTACKER_TEXT], "w1"),
        # a client shows the last alternative it can render: the attacker's HTML, under the signature's result
        "alternative-html-last": multipart("alternative", [entity, ATTACKER_HTML], "w1"),
        "alternative-text-first": multipart("alternative", [ATTACKER_TEXT, entity], "w1"),
        # related: the root part (the first) is what is shown; the signed part is a "resource"
        "related-attacker-root": multipart("related", [ATTACKER_HTML, entity], "w1"),
        "related-signed-root": multipart("related", [entity, ATTACKER_HTML], "w1"),
        # nested twice: the sibling is one level up, the signed part alone in its own multipart
        "nested-twice-sibling-outside": multipart("mixed", [ATTACKER_TEXT, multipart(
            "mixed", [multipart("mixed", [entity], "w3")], "w2")], "w1"),
        "nested-twice-sibling-inside": multipart("mixed", [multipart(
            "alternative", [multipart("mixed", [entity, ATTACKER_TEXT], "w3")], "w2")], "w1"),
        "mixed-then-alternative": multipart("mixed", [multipart("alternative", [entity, ATTACKER_HTML], "w2")],
                                            "w1"),
        # a forwarded copy (message/rfc822) of the signed message next to the attacker's text
        "rfc822-beside-text": multipart("mixed", [ATTACKER_TEXT, b"Content-Type: message/rfc822\r\n\r\n" + message(
            entity, from_lines=(f"From: <{SIGRID}>",))], "w1"),
    }


WRAPS = list(wraps(b""))


def exact_or_silent(result: Result, expected: dict[str, str], how: str) -> None:
    """A signed message forwarded as message/rfc822 is not inspected (no info headers at all: no claim); every
    other wrap is, and must carry the Mixed-Content flag with the signature's result."""
    if how.startswith("rfc822") and not result.info:
        return
    exact(result, expected)


def test_1_control_pgp_signed_whole_message(through, sigrid_signed, sigrid_keyid):
    exact(through(message(sigrid_signed, from_lines=(f"From: <{SIGRID}>",)), BOB), pgp_sig(sigrid_keyid))


@pytest.mark.parametrize("how", WRAPS)
def test_1_pgp_signed_part_wrapped_is_mixed(through, sigrid_signed, sigrid_keyid, how):
    """The PGP/MIME signed part covers only itself: its valid result comes with PGP-Mixed-Content."""
    result = through(message(wraps(sigrid_signed)[how], from_lines=(f"From: <{SIGRID}>",)), BOB)
    exact_or_silent(result, pgp_sig(sigrid_keyid, **MIXED_PGP), how)
    assert result.untouched, result


@pytest.mark.parametrize("how", WRAPS)
def test_1_clearsigned_part_wrapped_is_mixed(through, clearsigned, sigrid_keyid, how):
    """A text/plain part holding only a clearsigned block, beside the attacker's parts."""
    result = through(message(wraps(text_part(clearsigned))[how], from_lines=(f"From: <{SIGRID}>",)), BOB)
    exact_or_silent(result, pgp_sig(sigrid_keyid, "PGP/INLINE", **MIXED_PGP), how)
    assert result.untouched, result


def test_1_control_smime_signed_whole_message(through):
    exact(through(message(corpus_smime_signed_entity(), from_lines=(f"From: <{ALICE}>",)), BOB), SMIME_ALICE)


@pytest.mark.parametrize("how", WRAPS)
def test_1_smime_signed_part_wrapped_is_mixed(through, how):
    result = through(message(wraps(corpus_smime_signed_entity())[how], from_lines=(f"From: <{ALICE}>",)), BOB)
    exact_or_silent(result, {**SMIME_ALICE, **MIXED_SMIME}, how)
    assert result.untouched, result


@pytest.fixture(scope="session")
def forged_signed(forger) -> bytes:
    """A PGP/MIME signed part by the forger's key (never imported: its signature cannot be valid)."""
    from support.attack_suite import CEO, pgpmime_signed
    return pgpmime_signed(forger, text_part("ATTACKER: the payment above is approved.\n"), CEO, "forged-sig")


@pytest.mark.parametrize("order", ["valid-first", "forged-first"])
def test_1_valid_and_unverifiable_signed_parts_side_by_side(through, sigrid_signed, forged_signed, order):
    """Two signed parts, one by an admin-imported key, one by an unknown key: PGP-Signature-Valid is True only
    when EVERY signature verified."""
    parts = [sigrid_signed, forged_signed] if order == "valid-first" else [forged_signed, sigrid_signed]
    result = through(message(multipart("mixed", parts, "w1"), from_lines=(f"From: <{SIGRID}>",)), BOB)
    assert result.info.get("pgp-signed") == "True", result
    assert result.info.get("pgp-signature-valid") == "False", result
    assert result.info.get("pgp-mixed-content") == "True", result
    assert result.untouched, result


@pytest.mark.parametrize("order", ["valid-first", "attacker-first"])
def test_1_two_valid_smime_signers_side_by_side(through, erin_opaque, order):
    """alice's signed part beside erin's opaque signed part: each signature covers only its own part; From:
    alice names one of two signers of different content, so the message is mixed."""
    parts = [corpus_smime_signed_entity(), p7m_entity(erin_opaque, "signed-data")]
    parts = parts if order == "valid-first" else parts[::-1]
    result = through(message(multipart("mixed", parts, "w1"), from_lines=(f"From: <{ALICE}>",)), BOB)
    assert result.info.get("smime-mixed-content") == "True", result
    assert result.untouched, result


@pytest.mark.parametrize("how", ["mixed-before", "mixed-after", "alternative-html-last", "related-attacker-root"])
def test_1_smime_opaque_signed_part_wrapped_is_mixed(through, erin_opaque, how):
    result = through(message(wraps(p7m_entity(erin_opaque, "signed-data"))[how], from_lines=(f"From: <{ERIN}>",)),
                     BOB)
    assert result.info.get("smime-signed") == "True", result
    assert result.info.get("signer-verified-0-0") == "True", result
    assert result.info.get("smime-mixed-content") == "True", result
    assert "signer-mismatch" not in result.info, result


# ============================================================================ 2. re-typing around a ciphertext

@pytest.fixture(scope="session")
def bob_der(work) -> bytes:
    return smime_encrypted(work, crlf(INNER.format(marker=MARKER)))


@pytest.fixture(scope="session")
def bob_pgp_armored(gpg) -> bytes:
    return pgp_encrypt(gpg, crlf(INNER.format(marker=MARKER)))


def smime_retyped(der: bytes) -> dict[str, bytes]:
    b64 = b"Content-Transfer-Encoding: base64\r\n\r\n" + b64_lines(der)
    return {
        "octet-stream-p7m-name": b'Content-Type: application/octet-stream; name="smime.p7m"\r\n' + b64,
        "octet-stream-p7m-filename": (b"Content-Type: application/octet-stream\r\n"
                                      b'Content-Disposition: attachment; filename="smime.p7m"\r\n' + b64),
        "x-pkcs7-mime": b"Content-Type: application/x-pkcs7-mime; smime-type=enveloped-data\r\n" + b64,
        "labelled-signed-data": b"Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n" + b64,
        "labelled-compressed-data": b"Content-Type: application/pkcs7-mime; smime-type=compressed-data\r\n" + b64,
        "labelled-pkcs7-signature": b"Content-Type: application/pkcs7-signature\r\n" + b64,
        "text-plain-base64": b"Content-Type: text/plain; charset=us-ascii\r\n" + b64,
        "text-plain-p7m-name": b'Content-Type: text/plain; name="smime.p7m"\r\n' + b64,
        "p7m-quoted-printable-label": (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
                                       b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + b64_lines(der)),
        "mixed-alone-text-plain-base64": multipart("mixed", [b"Content-Type: text/plain\r\n" + b64], "m1"),
        "alternative-p7m-and-text": multipart("alternative", [ATTACKER_TEXT, p7m_entity(der)], "m1"),
        "multipart-encrypted-pgp-protocol": multipart("encrypted", [
            b"Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n",
            b'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\r\n' + b64],
            "e1", '; protocol="application/pgp-encrypted"'),
    }


SMIME_RETYPED = list(smime_retyped(b"x"))


@pytest.mark.parametrize("how", SMIME_RETYPED)
def test_2_smime_ciphertext_retyped_claims_only_what_it_is(through, bob_der, how):
    """Whatever the label, the content is an EnvelopedData for bob: either it is decrypted (and then the
    headers say encrypted, never signed) or it is left exactly as received; no label makes it "signed"."""
    result = through(message(smime_retyped(bob_der)[how]), BOB)
    if how == "alternative-p7m-and-text":  # an encrypted part beside the attacker's alternative: never opened
        assert result.untouched and result.info.get("smime-mixed-content") == "True", result
    if result.untouched:
        assert not any(k.startswith("signer") or k == "smime-signed" or k.startswith("pgp-encrypted")
                       or k.startswith("pgp-sign") for k in result.info), result
        assert result.info.get("smime-encrypted", "True") == "True", result
    else:
        exact(result, SMIME_TO_BOB)
        assert result.shows(MARKER), result


def pgp_retyped(armored: bytes) -> dict[str, bytes]:
    data = (b'Content-Type: application/octet-stream; name="encrypted.asc"\r\n\r\n' + crlf(armored.decode()))
    return {
        "protocol-pgp-signature": multipart("encrypted", [
            b"Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n", data], "e1",
            '; protocol="application/pgp-signature"'),
        "protocol-pkcs7-mime": multipart("encrypted", [
            b"Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n", data], "e1",
            '; protocol="application/pkcs7-mime"'),
        "control-part-pgp-signature": multipart("encrypted", [
            b"Content-Type: application/pgp-signature\r\n\r\nVersion: 1\r\n", data], "e1",
            '; protocol="application/pgp-encrypted"'),
        "parts-swapped": multipart("encrypted", [
            data, b"Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"], "e1",
            '; protocol="application/pgp-encrypted"'),
        "three-parts": multipart("encrypted", [
            b"Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n", data, ATTACKER_TEXT], "e1",
            '; protocol="application/pgp-encrypted"'),
    }


PGP_RETYPED = list(pgp_retyped(b""))
PGP_TO_BOB = {"PGP-Encoding": "PGP/MIME", "PGP-Encrypted": "True", "PGP-Encryption-Algorithm": "AES-256"}


@pytest.mark.parametrize("how", PGP_RETYPED)
def test_2_pgp_ciphertext_retyped_claims_only_what_it_is(through, bob_pgp_armored, how):
    """A PGP/MIME-ish wrapper with a wrong protocol or layout around bob's ciphertext: either decrypted (then
    encrypted, never signed; Mixed-Content with the attacker's third part) or left as received."""
    result = through(message(pgp_retyped(bob_pgp_armored)[how], to=BOB_PGP), BOB_PGP)
    assert not any(k.startswith("pgp-sign") for k in result.info), result
    if how == "three-parts" and result.untouched:
        assert result.info.get("pgp-mixed-content") == "True", result
    elif not result.untouched:
        assert b"ATTACKER" not in result.out, result  # plaintext never beside the attacker's part
        assert result.shows(MARKER), result
        assert {k: v for k, v in result.info.items() if k != "pgp-encoding"} == {
            "pgp-encrypted": "True", "pgp-encryption-algorithm": "AES-256"}, result


NOT_A_SIGNATURE = {
    "ciphertext-as-signature": lambda armored: (b'Content-Type: application/octet-stream; name="encrypted.asc"\r\n\r\n'
                                                + crlf(armored.decode())),
    "text-as-signature": lambda armored: b"Content-Type: application/pgp-signature\r\n\r\nnot a signature\r\n",
}


@pytest.mark.parametrize("second", list(NOT_A_SIGNATURE))
def test_2_multipart_signed_without_any_signature_is_a_failed_signature(through, bob_pgp_armored, second):
    """multipart/signed; protocol="application/pgp-signature" around bob's ciphertext: the first part is the
    PGP/MIME control part, the second holds no OpenPGP signature packet (the ciphertext, or plain text under
    the application/pgp-signature label). Fail-closed, as ciphermilter-headers(7) says: a part labelled as a
    signature that cannot be read is a signature that failed (PGP-Signed with the placeholder key ID
    0000000000000000, Signature-Valid False and the reason, a mismatch), never a valid one and never an
    unsigned message a rule could take for plain mail; the ciphertext is not decrypted."""
    entity = multipart("signed", [b"Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n",
                                  NOT_A_SIGNATURE[second](bob_pgp_armored)], "e1",
                       '; protocol="application/pgp-signature"')
    result = through(message(entity, to=BOB_PGP), BOB_PGP)
    assert result.info["pgp-signed"] == "True" and result.info["pgp-signature-valid"] == "False", result
    assert result.info["pgp-signer-keyid"] == "0000000000000000" and result.info["pgp-signature-failure"], result
    assert result.info["pgp-signer-mismatch"] == "True", result
    assert "pgp-encrypted" not in result.info and result.untouched, result


@pytest.mark.parametrize("second", ["enveloped-data-as-signature", "text-as-signature"])
def test_2_smime_multipart_signed_without_any_signature_is_a_failed_signature(through, bob_der, second):
    """The S/MIME twin: multipart/signed; protocol="application/pkcs7-signature" whose second part is bob's
    EnvelopedData (or text) under the application/pkcs7-signature label: no SignedData, so a signed layer
    whose signature failed (SMIME-Signature-Failed-0 says why), no verified signer, nothing decrypted."""
    body = (b64_lines(bob_der) if second.startswith("enveloped") else b64_lines(b"not a signature"))
    sig = b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    entity = multipart("signed", [text_part("Pay invoice 17.\n"), sig + body], "s1",
                       '; protocol="application/pkcs7-signature"; micalg=sha-256')
    result = through(message(entity), BOB)
    assert result.info["smime-signed"] == "True" and result.info["smime-signature-failed-0"], result
    assert result.info["signer-mismatch"] == "True", result
    assert not [k for k in result.info if k.startswith("signer-verified") or k.startswith("smime-encrypted")], result
    assert result.untouched, result


@pytest.mark.parametrize("fmt", ["smime", "pgp"])
def test_2_ciphertext_in_a_message_rfc822_beside_text_is_not_decrypted(through, bob_der, bob_pgp_armored, fmt):
    inner_entity = p7m_entity(bob_der) if fmt == "smime" else pgpmime_encrypted_entity(bob_pgp_armored)
    rcpt = BOB if fmt == "smime" else BOB_PGP
    forwarded = b"Content-Type: message/rfc822\r\n\r\n" + message(inner_entity, to=rcpt)
    result = through(message(multipart("mixed", [ATTACKER_TEXT, forwarded], "f1"), to=rcpt), rcpt)
    assert result.untouched, result
    assert not result.shows(MARKER), result
    # not inspected inside the forwarded message (no claim at all), or inspected and flagged
    assert result.info == {} or result.info.get("smime-mixed-content" if fmt == "smime"
                                                else "pgp-mixed-content") == "True", result


@pytest.mark.parametrize("fmt", ["smime", "pgp"])
def test_2_ciphertext_as_the_only_message_rfc822_claims_only_what_it_is(through, bob_der, bob_pgp_armored, fmt):
    inner_entity = p7m_entity(bob_der) if fmt == "smime" else pgpmime_encrypted_entity(bob_pgp_armored)
    rcpt = BOB if fmt == "smime" else BOB_PGP
    root = b"Content-Type: message/rfc822\r\n\r\n" + message(inner_entity, to=rcpt)
    result = through(message(root, to=rcpt), rcpt)
    assert not any("sign" in k for k in result.info), result
    if not result.untouched:
        assert result.shows(MARKER), result


# ============================================================================ 3. two addresses in From:

def b_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def from_attacks(signer: str) -> dict[str, tuple[str, ...]]:
    b64 = base64.b64encode(f"{EVE}, ".encode()).decode()
    return {
        "comment-with-other-address": (f"From: {signer} ({EVE})",),
        "comment-inside-angle": (f"From: <{signer}> (via {EVE})",),
        "obs-from-space-before-colon": (f"From: <{signer}>", f"From : <{EVE}>"),
        "upper-case-second-field": (f"From: <{signer}>", f"FROM: <{EVE}>"),
        "second-field-first": (f"From: <{EVE}>", f"From: <{signer}>"),
        "encoded-word-whole-mailbox-before": (f"From: =?utf-8?b?{b64}?= <{signer}>",),
        "encoded-word-angle-address": (f"From: =?utf-8?q?Eve_=3C{EVE.replace('@', '=40')}=3E?= <{signer}>",),
        "encoded-word-as-addr-spec": (f"From: =?utf-8?q?{signer.replace('@', '=40')}?=",),
        "folded-display-name-address": (f'From: "Board\r\n {EVE}"\r\n <{signer}>',),
        "escaped-quote-display-name": (f'From: "x\\" <{EVE}> \\"" <{signer}>',),
        "empty-group-then-mailbox": (f"From: undisclosed:;, <{signer}>",),
        "group-of-one": (f"From: Board: {signer};",),
        "mailbox-then-group": (f"From: <{signer}>, Friends: {EVE};",),
        "two-angles": (f"From: <{EVE}> <{signer}>",),
        "display-name-at-without-dot": (f"From: eve@evil <{signer}>",),
        "obs-route": (f"From: <@evil.example:{EVE}>, <{signer}>",),
        # clients decode encoded-words that RFC 2047 forbids to decode, and join adjacent ones
        "encoded-word-inside-quotes": (f'From: "=?utf-8?q?{EVE.replace("@", "=40")}?=" <{signer}>',),
        "encoded-words-split-address": (f"From: =?utf-8?q?{EVE.split('@')[0]}?= =?utf-8?q?=40{EVE.split('@')[1]}?="
                                        f" <{signer}>",),
        "encoded-word-language-tag": (f"From: =?utf-8*en?q?{EVE.replace('@', '=40')}?= <{signer}>",),
        "encoded-word-utf16": (f"From: =?utf-16be?b?{base64.b64encode(EVE.encode('utf-16-be')).decode()}?="
                               f" <{signer}>",),
        "comment-in-display-name": (f"From: Sigrid ({EVE}) <{signer}>",),
        # eve\uff20evil.example: what a reader sees is another address (NFKC maps U+FF20 to "@")
        "fullwidth-at-display-name": (f"From: {b_word(EVE.replace('@', chr(0xFF20)))} <{signer}>",),
        "small-commercial-at-display-name": (f"From: {b_word(EVE.replace('@', chr(0xFE6B)))} <{signer}>",),
    }


FROM = list(from_attacks(SIGRID))


# Failed on 4af2c66 for fullwidth-at-display-name and small-commercial-at-display-name (both doors, both formats):
# "=?utf-8?b?...?= <signer>" decoding to "eve\uff20evil.example" (or U+FE6B) gets no Signer-Mismatch / PGP-Signer-
# Mismatch: the display name shows another address (NFKC folds both to "@"), the headers say From: is the signer.
@pytest.mark.parametrize("variant", FROM)
def test_3_pgp_signer_mismatch(through, sigrid_signed, sigrid_keyid, variant):
    result = through(message(sigrid_signed, from_lines=from_attacks(SIGRID)[variant]), BOB)
    exact(result, pgp_sig(sigrid_keyid, **{"PGP-Signer-Mismatch": "True"}))


@pytest.mark.parametrize("variant", FROM)
def test_3_smime_signer_mismatch(through, variant):
    result = through(message(corpus_smime_signed_entity(), from_lines=from_attacks(ALICE)[variant]), BOB)
    exact(result, {**SMIME_ALICE, "Signer-Mismatch": "True"})


# ============================================================================ 4. a colleague's ciphertext

SMIME_REFUSED = {**SMIME_TO_BOB, "SMIME-Decryption-Key-Not-Found": "True",
                 "SMIME-Decryption-Refused-0": "not encrypted to a key of every recipient (reader policy)"}
PGP_REFUSED = {"PGP-Encoding": "PGP/MIME", "PGP-Encrypted": "True", "PGP-Decryption-Key-Not-Found": "True",
               "PGP-Decryption-Refused": "not encrypted to a key of every recipient (reader policy)"}
WRONG_READERS = {"nokey": (NOKEY,), "bob+nokey": (BOB, NOKEY), "nokey+bob": (NOKEY, BOB), "erin+nokey": (ERIN, NOKEY),
                 "erin": (ERIN,), "angle-bob+nokey": (f"<{BOB}>", NOKEY),
                 "bob-plus-detail": ("bob+x@corp-pub.example",),
                 "bob-twice+nokey": (BOB, BOB.upper(), NOKEY)}


@pytest.mark.parametrize("who", list(WRONG_READERS))
def test_4_smime_to_bob_sent_to_someone_else_is_not_decrypted(through, bob_der, who):
    rcpts = WRONG_READERS[who]
    result = through(message(p7m_entity(bob_der), to=BOB), *rcpts)
    assert result.untouched, result
    assert not result.shows(MARKER), result
    exact(result, SMIME_REFUSED)


@pytest.mark.parametrize("who", list(WRONG_READERS))
@pytest.mark.parametrize("shape", ["pgpmime", "inline", "hidden-recipient"])
def test_4_pgp_to_bob_sent_to_someone_else_is_not_decrypted(through, bob_pgp_armored, gpg, who, shape):
    rcpts = tuple(r.replace("bob@", "bob.pgp@").replace("bob+x@", "bob.pgp+x@").replace("BOB@", "BOB.PGP@")
                  for r in WRONG_READERS[who])
    entity = {"pgpmime": lambda: pgpmime_encrypted_entity(bob_pgp_armored),
              "inline": lambda: text_part(pgp_encrypt(gpg, f"{MARKER}\n".encode()).decode()),
              "hidden-recipient": lambda: pgpmime_encrypted_entity(
                  pgp_encrypt(gpg, crlf(INNER.format(marker=MARKER)), "--throw-keyids"))}[shape]()
    result = through(message(entity, to=BOB_PGP), *rcpts)
    assert result.untouched, result
    assert not result.shows(MARKER), result
    exact(result, {**PGP_REFUSED, "PGP-Encoding": "PGP/INLINE" if shape == "inline" else "PGP/MIME"})


# Controls: the reader himself, in the spellings Postfix delivers to him, and (ciphermilter.conf(5), the reader
# rule counts internal recipients only; mixed_recipients=split keeps an external one out of the transaction at
# RCPT time) the reader beside an external recipient.
READERS = {"bob": (BOB,), "upper-case": (BOB.upper(),), "trailing-dot": ("bob@corp-pub.example.",),
           "angle": (f"<{BOB}>",), "bob+outsider": (BOB, OUTSIDER)}


@pytest.mark.parametrize("who", list(READERS))
def test_4_control_smime_to_bob_is_decrypted(through, bob_der, who):
    result = through(message(p7m_entity(bob_der)), *READERS[who])
    exact(result, SMIME_TO_BOB)
    assert result.shows(MARKER) and not result.untouched, result


@pytest.mark.parametrize("who", list(READERS))
def test_4_control_pgp_to_bob_is_decrypted(through, bob_pgp_armored, who):
    rcpts = tuple(r.replace("bob@", "bob.pgp@").replace("BOB@", "BOB.PGP@") for r in READERS[who])
    result = through(message(pgpmime_encrypted_entity(bob_pgp_armored), to=BOB_PGP), *rcpts)
    exact(result, PGP_TO_BOB)
    assert result.shows(MARKER), result


# ============================================================================ 5. signed-only, labelled encrypted

@pytest.fixture(scope="session")
def erin_opaque(work) -> bytes:
    """An opaque SignedData (openssl cms -sign -nodetach) by the corpus S/MIME erin over a text part."""
    src = work / "r4-erin.mime"
    src.write_bytes(text_part("Signed, not encrypted.\n"))
    return run(["openssl", "cms", "-sign", "-binary", "-nodetach", "-md", "sha256", "-in", str(src),
                "-signer", str(KEYS / "smime/pub-erin-p256.cert.pem"),
                "-inkey", str(KEYS / "smime/pub-erin-p256.key.pem"), "-outform", "DER"])


# The claims that content was encrypted: the spec's flags and per-layer headers (a project header such as
# PGP-Decryption-Failed, saying that something labelled encrypted did not open, is not one of them).
ENCRYPTION_CLAIMS = ("smime-encrypted", "pgp-encrypted", "encryption-algorithm", "encryption-recipient",
                     "pgp-encryption-algorithm", "smime-decryption-key-not-found", "pgp-decryption-key-not-found")


def no_encryption_claim(result: Result) -> None:
    assert not [k for k in result.info if k.startswith(ENCRYPTION_CLAIMS)], result


def signed_labelled_encrypted(der: bytes) -> dict[str, bytes]:
    b64 = b"Content-Transfer-Encoding: base64\r\n\r\n" + b64_lines(der)
    return {
        "smime-type-enveloped": p7m_entity(der, "enveloped-data"),
        "smime-type-authenveloped": p7m_entity(der, "authEnveloped-data"),
        "octet-stream-p7m": b'Content-Type: application/octet-stream; name="smime.p7m"\r\n' + b64,
        "multipart-encrypted-pkcs7": multipart("encrypted", [
            b"Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n", p7m_entity(der, "enveloped-data")],
            "e1", '; protocol="application/pkcs7-mime"'),
        "multipart-encrypted-pgp": multipart("encrypted", [
            b"Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n", p7m_entity(der, "enveloped-data")],
            "e1", '; protocol="application/pgp-encrypted"'),
    }


SIGNED_AS_ENCRYPTED = list(signed_labelled_encrypted(b""))


@pytest.mark.parametrize("how", SIGNED_AS_ENCRYPTED)
def test_5_smime_signed_data_labelled_encrypted(through, erin_opaque, how):
    result = through(message(signed_labelled_encrypted(erin_opaque)[how], from_lines=(f"From: <{ERIN}>",)), BOB)
    no_encryption_claim(result)


PGP_SIGNED_ONLY = ["signed-message-compressed", "signed-message-uncompressed", "detached-signature-only",
                   "literal-only", "compressed-literal-only"]


def pgp_signed_only(gpg, kind: str) -> bytes:
    text = b"Signed, not encrypted.\n"
    if kind == "signed-message-compressed":
        return gpg("--armor", "--sign", "-u", SIGRID, stdin=text)
    if kind == "signed-message-uncompressed":
        return gpg("--armor", "--sign", "--compress-algo", "none", "-u", SIGRID, stdin=text)
    if kind == "literal-only":
        return gpg("--armor", "--store", "--compress-algo", "none", stdin=text)
    if kind == "compressed-literal-only":
        return gpg("--armor", "--store", "--compress-algo", "zlib", stdin=text)
    sig = gpg("--armor", "--detach-sign", "-u", SIGRID, stdin=text)
    return sig.replace(b"PGP SIGNATURE", b"PGP MESSAGE")


def pgp_labelled(block: bytes, binary: bytes, how: str) -> bytes:
    block = crlf(block.decode())
    return {
        "application-pgp-encrypted": b"Content-Type: application/pgp-encrypted\r\n\r\n" + block,
        "octet-stream-pgp-name": (b'Content-Type: application/octet-stream; name="secret.txt.pgp"\r\n'
                                  b"Content-Transfer-Encoding: base64\r\n\r\n" + b64_lines(binary)),
        "pgpmime-encrypted": pgpmime_encrypted_entity(block),
        "pgpmime-encrypted-binary": multipart("encrypted", [
            b"Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n",
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + b64_lines(binary)], "e1", '; protocol="application/pgp-encrypted"'),
        "text-plain-inline": b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + block,
    }[how]


PGP_LABELS = ["application-pgp-encrypted", "octet-stream-pgp-name", "pgpmime-encrypted", "pgpmime-encrypted-binary",
              "text-plain-inline"]


@pytest.mark.parametrize("how", PGP_LABELS)
@pytest.mark.parametrize("kind", PGP_SIGNED_ONLY)
def test_5_pgp_signed_only_labelled_encrypted(through, gpg, kind, how):
    block = pgp_signed_only(gpg, kind)
    binary = gpg("--dearmor", stdin=block.replace(b"PGP MESSAGE", b"PGP SIGNATURE")
                 if kind == "detached-signature-only" else block)
    result = through(message(pgp_labelled(block, binary, how), from_lines=(f"From: <{SIGRID}>",)), BOB)
    no_encryption_claim(result)
    if kind.startswith("signed-message") and result.info.get("pgp-signed"):
        assert result.info.get("pgp-signature-valid") == "True", result
