"""Second-round attacks on the merged fixes for issue 13: what tests/test_attacks.py did not try.

Same black box and same builders as tests/test_attacks.py (tests/support/attack_suite.py, the session fixtures
in tests/support/attack_fixtures.py): every message goes through
`ciphermilter --store S decrypt --rcpt ADDR --explain` as a subprocess, on a store built with the CLI from
the corpus keys; signatures are made with gpg in a throwaway GNUPGHOME (sigrid@sender-pub.example, imported
into the store by the administrator) and the corpus S/MIME signed message (alice, valid and trusted).

Commands that build the vectors (besides those documented in tests/test_attacks.py):

  PGP/MIME signed, three parts
           gpg --armor --detach-sign --digest-algo SHA256 -u sigrid@sender-pub.example entity.mime
           then the multipart/signed body gets a third body part (text/plain, the attacker's) after the
           signature part; the signature still verifies over the first part.
  From:    the From: field of a valid signed message is rewritten (the signature covers only the body part).
  clearsigned
           gpg --armor --clearsign -u sigrid@sender-pub.example; a line is added after the BEGIN line, or text
           after the END line (gpg --verify refuses the first two: "signature digest conflict in message").
  polluted key
           gpg --export sigrid@sender-pub.example, plus a User ID packet (tag 13) "The CEO
           <ceo@corp-pub.example>" without any signature, imported with `ciphermilter keys import`.
  captured ciphertexts (R4, R7, R8): the `captured` fixture (tests/support/attack_fixtures.py; gpg --encrypt -r bob.pgp,
           openssl cms -encrypt to pub-bob), wrapped in multiparts that two MIME parsers read differently.

Families: R1 From: comment hidden by an undecodable encoded word; R2 third part in a PGP/MIME
multipart/signed; R3 unsigned text inside a clearsigned block; R4 RFC 2231 boundary* differential;
R5 forged info field in an embedded message/rfc822 of decrypted content; R6 user ID without a
self-signature; R7 bare CR line ends in a multipart body; R8 a boundary ending in white space (its
control is R4's: the plain boundary, one part, decrypted). Each family has a control that passes.
"""

from __future__ import annotations

import email
import email.policy

import pytest

from support.attack_suite import (ALICE, BOB, BOB_PGP, CAPTURED_READER, EXFIL_HTML, MIXED, SIGRID, Store,
                                  corpus_smime_signed_entity, crlf, message, pgp_encrypt, pgpmime_encrypted_entity,
                                  split, text_part)

CEO = "ceo@corp-pub.example"
SHOWN_CEO = "=?utf-8?q?" + CEO.replace("@", "=40") + "?="  # the comment shows "ceo@corp-pub.example"
BOGUS_WORD = "=?x-unknown?q?a?="  # an encoded word in a charset no decoder knows


# ============================================================================ R1. From: comment tricks

def from_comment(signer: str, bogus: bool) -> tuple[str, ...]:
    """``signer (ceo@corp-pub.example)``, the comment as an RFC 2047 encoded word (RFC 2047 section 5 (2)
    allows them in comments; an addr-spec's comment is what clients show as the sender's name)."""
    comment = SHOWN_CEO + (" " + BOGUS_WORD if bogus else "")
    return (f"From: {signer} ({comment})",)


@pytest.mark.parametrize("fmt", ["pgp", "smime"])
@pytest.mark.parametrize("bogus", [False, True], ids=["control-decodable", "beside-undecodable-word"])
def test_r1_undecodable_word_beside_encoded_address_hides_it(store, sigrid_signed, fmt, bogus):
    """One encoded word in an unknown charset made the whole field undecodable to
    ciphermilter.sender._decoded (email.header.make_header raises, the raw text is used), so the other,
    valid word, which every reader decodes to ceo@corp-pub.example, was never looked at. Control: the
    comment alone, decodable, is seen and gives the mismatch flag."""
    entity, signer = (sigrid_signed, SIGRID) if fmt == "pgp" else (corpus_smime_signed_entity(), ALICE)
    result = store.decrypt(message(entity, from_lines=from_comment(signer, bogus=bogus)), BOB)
    valid, mismatch = ("PGP-Signature-Valid", "PGP-Signer-Mismatch") if fmt == "pgp" else \
        ("Signer-Verified-0-0", "Signer-Mismatch")
    assert result.flag(valid) == "True", result
    assert result.flag(mismatch) == "True", result


# ============================================================================ R2. PGP/MIME multipart/signed, 3 parts

ATTACKER_PART = text_part("ATTACKER TEXT: the signed invoice above is void, pay account 666 instead.\n")


def with_third_part(signed: bytes, boundary: str = "sig-boundary-1") -> bytes:
    """The multipart/signed entity with an attacker's body part after the signature part."""
    close = f"--{boundary}--".encode()
    at = signed.rindex(close)
    return signed[:at] + f"--{boundary}\r\n".encode() + ATTACKER_PART + b"\r\n" + signed[at:]


def test_r2_control_two_part_pgpmime_signed_is_whole(store, sigrid_signed):
    result = store.decrypt(message(sigrid_signed, from_lines=(f"From: Sigrid <{SIGRID}>",)), BOB)
    assert result.flag("PGP-Signature-Valid") == "True", result
    assert result.flag("PGP-Mixed-Content") is None, result


def test_r2_control_three_part_smime_signed_is_not_reported_valid(store):
    """Control, the S/MIME twin: smime.py refuses a three-part multipart/signed (malformed, RFC 1847), so no
    signature over the whole message is claimed."""
    result = store.decrypt(message(with_third_part(corpus_smime_signed_entity(), _boundary(
        corpus_smime_signed_entity())), from_lines=(f"From: <{ALICE}>",)), BOB)
    assert result.flag("SMIME-Signed") == "True", result
    assert result.flag("Signer-Verified-0-0") != "True", result
    assert result.untouched


def test_r2_third_part_beside_pgpmime_signature_gets_mixed_content(store, sigrid_signed):
    """openpgp_mime._pgp_mime_signed verifies parts[0] against parts[1] and never looks at len(parts):
    the attacker's third part (shown by clients as a multipart/mixed sibling, RFC 1847 section 2.1) sits
    beside the signed content, yet the signature is reported as covering the whole message."""
    result = store.decrypt(message(with_third_part(sigrid_signed), from_lines=(f"From: Sigrid <{SIGRID}>",)), BOB)
    assert result.flag("PGP-Signature-Valid") == "True", result
    assert result.flag("PGP-Mixed-Content") == "True", result
    assert result.untouched


def _boundary(entity: bytes) -> str:
    head = split(entity)[0].decode()
    return head.split('boundary="', 1)[1].split('"', 1)[0]


# ============================================================================ R3. cleartext signature framework

UNSIGNED = "NOTE FROM SIGRID: the invoice below is void, pay account 666 instead."


def clearsigned_variants(clearsigned: str) -> dict[str, str]:
    """Unsigned text that a reader sees as part of the clearsigned block, placed where the block's parser
    skips it (RFC 9580 section 7: only "Hash" armor headers may stand between the BEGIN line and the
    blank line; the signature covers neither them nor the END line)."""
    begin, _, rest = clearsigned.partition("\n")
    end_line = "-----END PGP SIGNATURE-----"
    return {
        "header-section-line": f"{begin}\n{UNSIGNED}\n{rest}",
        "comment-armor-header": f"{begin}\nComment: {UNSIGNED}\n{rest}",
        "after-end-line": clearsigned.replace(end_line, f"{end_line} {UNSIGNED}"),
    }


# The control (the block alone: valid, not mixed) is test_attacks.test_wrapping_control_clearsigned_alone,
# on the same gpg-made block (its fixture "clearsigned").


@pytest.mark.parametrize("variant", ["header-section-line", "comment-armor-header", "after-end-line"])
def test_r3_unsigned_text_inside_the_clearsigned_block_is_not_whole(store, clearsigned, variant):
    """openpgp._cleartext_lines skips every line up to the first blank one as if it were a "Hash:" header,
    and openpgp.find_armor ends the block after the whole END line: text there is shown to the reader but
    signed by nobody, so a valid result must carry PGP-Mixed-Content (or not be valid at all). gpg 2.2 refuses
    the first two ("signature digest conflict in message")."""
    text = clearsigned_variants(clearsigned)[variant]
    result = store.decrypt(message(text_part(text), from_lines=(f"From: <{SIGRID}>",)), BOB)
    assert result.flag("PGP-Signed") == "True", result
    assert result.flag("PGP-Signature-Valid") != "True" or result.flag("PGP-Mixed-Content") == "True", result
    assert result.untouched


# ============================================================================ R4. boundary parameter differential


def boundary_differential(part: bytes, content_type: str) -> bytes:
    """A multipart whose body reads as one part (the captured ciphertext) with boundary "a" and as one
    text/html part wrapping that ciphertext in an <img> URL with boundary "b" (EFAIL direct exfiltration)."""
    body = (b"--b\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n" + EXFIL_HTML.encode() + b"\r\n"
            b"--a\r\n" + part + b"\r\n--a--\r\n"
            b'"></body></html>\r\n--b--\r\n')
    return f"Content-Type: {content_type}\r\n\r\n".encode() + body


@pytest.mark.parametrize("payload", ["pgpmime", "pgpbinary", "smime"])
def test_r4_control_plain_boundary_one_part_is_decrypted(store, captured, payload):
    """Control: with boundary "a" alone the captured part is the multipart's only part, the whole content."""
    reader = CAPTURED_READER[payload]
    msg = message(boundary_differential(captured[payload], 'multipart/mixed; boundary="a"'), to=reader)
    assert store.decrypt(msg, reader).shows("CAPTURED-SECRET-2")


@pytest.mark.parametrize("payload", ["pgpmime", "pgpbinary", "smime"])
def test_r4_rfc2231_boundary_differential_is_not_decrypted(store, captured, payload):
    """mime.parse_content_type knows no RFC 2231 parameters: of ``boundary*=utf-8''b; boundary="a"`` it reads
    "a" and finds the captured part alone (whole: decrypted in place), where RFC 2231 readers (Python's
    email with the default policy, Thunderbird) read "b": one HTML part whose <img> URL holds the
    ciphertext, then the plaintext. The body must stay as received."""
    reader = CAPTURED_READER[payload]
    ctype = "multipart/mixed; boundary*=utf-8''b; boundary=\"a\""
    msg = message(boundary_differential(captured[payload], ctype), to=reader)
    result = store.decrypt(msg, reader)
    assert result.untouched, result
    assert not result.shows("CAPTURED-SECRET-2")


# ============================================================================ R5. forged fields in an embedded message

FORGED = "X-CipherMail-Info-PGP-Signature-Valid: True"


def plaintext_with_forgery(where: str) -> bytes:
    """Decrypted content: a multipart/mixed whose second part carries the forged field in its own header
    block ("part") or in the header block of the message it embeds ("rfc822")."""
    if where == "part":
        second = f"Content-Type: text/plain\r\n{FORGED}\r\n\r\nsecond part\r\n"
    else:
        second = f"Content-Type: message/rfc822\r\n\r\n{FORGED}\r\nFrom: <ceo@corp-pub.example>\r\n" \
                 "Subject: forwarded\r\n\r\nforwarded body\r\n"
    return crlf('Content-Type: multipart/mixed; boundary="in"\r\n\r\n--in\r\nContent-Type: text/plain\r\n\r\n'
                f"FORGERY-SECRET-5\r\n--in\r\n{second}--in--\r\n")


@pytest.mark.parametrize("where", ["part", "rfc822"])
def test_r5_forged_field_in_decrypted_content_is_removed(store, gpg, where):
    """"part" is the control (removed by mime.body_without_part_fields). "rfc822": Entity.walk() does not
    descend into message/rfc822, so the embedded message's forged field reaches the reader, who opens the
    attached message as a message of its own with our verdict in its header."""
    msg = message(pgpmime_encrypted_entity(pgp_encrypt(gpg, plaintext_with_forgery(where))), to=BOB_PGP)
    result = store.decrypt(msg, BOB_PGP)
    assert result.shows("FORGERY-SECRET-5"), result
    assert b"x-ciphermail-info-pgp-signature-valid" not in result.body.lower()


# ============================================================================ R6. user IDs without a self-signature


def unsigned_uid_packet(uid: str) -> bytes:
    """An OpenPGP User ID packet (RFC 9580 section 5.11, new format, tag 13) that nobody signed."""
    data = uid.encode()
    assert len(data) < 192
    return bytes([0xC0 | 13, len(data)]) + data


@pytest.fixture
def polluted_store(store: Store, gpg, tmp_path) -> Store:
    """The admin refreshes sigrid's key from a keyserver copy someone appended an unsigned user ID to
    (keyserver pollution): `gpg --export sigrid` + the packet, then `ciphermilter keys import` (gpg itself
    drops such a user ID on import: "no valid self-signature")."""
    polluted = tmp_path / "sigrid-polluted.pub"
    polluted.write_bytes(gpg("--export", SIGRID) + unsigned_uid_packet(f"The CEO <{CEO}>"))
    store.cli("keys", "import", str(polluted))
    return store


def test_r6_control_signer_address_no_mismatch(polluted_store, sigrid_signed):
    result = polluted_store.decrypt(message(sigrid_signed, from_lines=(f"From: Sigrid <{SIGRID}>",)), BOB)
    assert result.flag("PGP-Signature-Valid") == "True", result
    assert result.flag("PGP-Signer-Mismatch") is None, result


def test_r6_unsigned_user_id_is_no_signer_address(polluted_store, sigrid_signed):
    """openpgp.key_emails takes every user ID packet of the key (store.py keeps them as its e-mails and
    readers), self-signed or not: sigrid's valid signature then "names" ceo@corp-pub.example, and
    From: ceo@corp-pub.example gets no mismatch flag."""
    result = polluted_store.decrypt(message(sigrid_signed, from_lines=(f"From: The CEO <{CEO}>",)), BOB)
    assert result.flag("PGP-Signature-Valid") == "True", result
    assert CEO not in (result.flag("PGP-Signer-Email") or ""), result
    assert result.flag("PGP-Signer-Mismatch") == "True", result


# ============================================================================ R7. bare CR line ends in a multipart body

def bare_cr_siblings(part: bytes, line_end: bytes = b"\r") -> bytes:
    """multipart/mixed; boundary="b": the attacker's HTML parts are written with bare CR line ends, so
    mime.multipart_spans (delimiter lines end in LF) sees only the CRLF delimiters around the captured part
    (the rest is preamble and epilogue), where parsers that end lines at CR, LF or CRLF (Python's email
    feedparser; RFC 5322 obsolete text allows bare CR) see <img ... ?> HTML, the captured part, HTML: the
    EFAIL direct exfiltration layout."""
    html = b"--b" + line_end + b"Content-Type: text/html" + line_end * 2
    return (b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + html + EXFIL_HTML.encode() + b'\r\n'
            b'--b\r\n' + part + b'\r\n' + html + b'"></body></html>\r\n--b--\r\n')


@pytest.mark.parametrize("payload", ["pgpmime", "pgpbinary", "smime"])
def test_r7_control_crlf_siblings_are_siblings(store, captured, payload):
    """Control: the same layout with CRLF line ends is three parts side by side: left as received."""
    reader = CAPTURED_READER[payload]
    result = store.decrypt(message(bare_cr_siblings(captured[payload], b"\r\n"), to=reader), reader)
    assert result.untouched, result
    assert result.flag(MIXED[payload]) == "True", result


# ============================================================================ R8. a boundary ending in white space

def trailing_space_boundary(part: bytes) -> bytes:
    """boundary="b " (RFC 2046 section 5.1.1: a boundary cannot end in white space). mime.multipart_spans
    takes "--b " for the delimiter, so "--b" lines are text and "--b --" closes: one part, the captured
    one. Python's email strips the value (Message.get_boundary) and reads "--b" lines as delimiters and
    "--b --" as text: <img ...? HTML beside the captured part."""
    return (b'Content-Type: multipart/mixed; boundary="b "\r\n\r\n'
            b"--b\r\nContent-Type: text/html\r\n\r\n" + EXFIL_HTML.encode() + b"\r\n"
            b"--b \r\n" + part + b"\r\n--b --\r\n"
            b'"></body></html>\r\n--b--\r\n')


def assert_python_sees_html_first_and_nothing_is_decrypted(store, msg: bytes, reader: str) -> None:
    """The parser differential: Python's email (as mail clients) sees the attacker's HTML first; we decrypt nothing."""
    seen = [p.get_content_type() for p in email.message_from_bytes(msg, policy=email.policy.default).walk()]
    assert seen[:2] == ["multipart/mixed", "text/html"], seen  # the vector works
    result = store.decrypt(msg, reader)
    assert result.untouched, result
    assert not result.shows("CAPTURED-SECRET-2")


@pytest.mark.parametrize("payload", ["pgpmime", "pgpbinary", "smime"])
def test_r7_bare_cr_siblings_are_siblings(store, captured, payload):
    reader = CAPTURED_READER[payload]
    assert_python_sees_html_first_and_nothing_is_decrypted(
        store, message(bare_cr_siblings(captured[payload]), to=reader), reader)


@pytest.mark.parametrize("payload", ["pgpmime", "pgpbinary", "smime"])
def test_r8_trailing_space_boundary_differential_is_not_decrypted(store, captured, payload):
    reader = CAPTURED_READER[payload]
    assert_python_sees_html_first_and_nothing_is_decrypted(
        store, message(trailing_space_boundary(captured[payload]), to=reader), reader)
