"""Round-5 outsider attacks on the header claims after issue 16 (the engine's own OpenPGP key model and signatures).

Every test here failed on b3feb6a with a PGP-Signature-Valid: True (and a PGP-Signer-Email) that no proof
backed: the key model (formats/openpgp/keys.py) checks no signature of a key's own and reads no revocation,
and verify.py trusted what it read. Now a signature counts only from the primary key or a subkey the primary
bound (a signing subkey signing the binding back), none revoked (certifications.signing_parts), and a user ID
the primary key revoked names no signer (certified_user_ids), and a "self-signature" the primary key did not
make is dropped at import (unproven_self_signatures), so it cannot lift an expiry or change key flags. Text
written inside a cleartext signature's armor (after the checksum, or non-base64 words between its lines) makes
the block mixed content (armor.Armor.clean). Anyone can append packets to a key on a keyserver (keyserver pollution, which certifications.py already guards against for user IDs only),
and an admin importing such a key must not hand an attacker the key owner's signing identity.

Vectors (tests/vectors/attack5, made with gpg 2.2 on Debian 12; commands in README):
  alice-polluted.pub.gpg          alice's key (Ed25519, admin-imported) + Mallory's Ed25519 public key appended
                                  as a *public subkey packet* (tag 14) with NO binding signature at all
  mallory.clear.asc               cleartext-signed by Mallory's own key
  alice-revoked.pub.gpg           alice's key with her key revocation signature (0x20) after the revocation cert
                                  gpg wrote was imported
  alice.clear.asc                 cleartext-signed by alice before revocation (the key was compromised)
  mallory-adopts-alice.pub.gpg    Mallory's key + alice's key as a subkey, validly bound by Mallory (0x18),
                                  no back-signature (0x19)
  erin-subkey-revoked.pub.gpg     erin's key, its signing subkey revoked (0x28); erin.clear.asc by that subkey
  dave-uid-revoked.pub.gpg        dave's key, one of its two user IDs revoked (0x30); dave.clear.asc by dave
  carol-expired.pub.gpg           carol's key, expired 2021-01-01; carol.clear.asc by carol in 2020
  carol-unexpired-forged.pub.gpg  the same + a direct-key "self-signature" (0x1F) with garbage signature fields,
                                  newer creation time and no key-expiry subpacket (anyone can write it)
  alice.pub.gpg                   alice's key as gpg exported it (the signature-armor test)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ciphermilter.store import admin
from ciphermilter.store.keystore import KeyStore
from conftest import CORPUS, corpus_store_file
from ciphermilter.store.schema import StoreError
from support.offline import decrypt_output, info_headers

VECTORS = Path(__file__).parent / "vectors" / "attack5"
RCPT = "bob@corp-pub.example"


def _message(sender: str, clear: str) -> bytes:
    head = (f"From: {sender}\r\nTo: {RCPT}\r\nSubject: signed\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n").encode()
    return head + (VECTORS / clear).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _headers(tmp_path, key_file: str, message: bytes) -> dict[str, str]:
    """Import ``key_file`` as the admin, then run ``ciphermilter decrypt`` on ``message``: the Info headers."""
    path = tmp_path / "store.db"
    with KeyStore.create(path) as store:
        admin.add_domain(store, "corp-pub.example")
        try:  # refusing the whole key at import is fail-closed too: its signatures then find no key
            admin.import_file(store, (VECTORS / key_file).read_bytes())
        except StoreError:
            pass
    return info_headers(decrypt_output(path, message, RCPT, tmp_path))


def test_unbound_subkey_appended_to_imported_key_does_not_sign_for_its_owner(tmp_path):
    """Attack: Mallory appends her own public key, as a subkey packet WITHOUT any subkey binding signature
    (type 0x18 by alice's primary key, plus the 0x19 back-signature RFC 9580 section 5.2.1 requires of a
    signing subkey), to alice's key on a keyserver; the admin imports alice's key. Mallory then signs any text
    with her own key.

    Was (b3feb6a): PGP-Signature-Valid: True, PGP-Signer-Email: alice@sig.example -- a forged signature for alice. The
    key model (keys.py _assemble) adds every subkey packet as a key part whether or not a binding signature
    verifies, and verify.py / signer_keys.py accept any part whose key ID the signature names (flags None: may
    sign). gpg drops such a subkey ("no valid binding"). Fail closed: the signature is not valid (an unbound
    subkey is no part of alice's key: key not found), and alice's address is never claimed.
    """
    info = _headers(tmp_path, "alice-polluted.pub.gpg", _message("alice@sig.example", "mallory.clear.asc"))
    assert info.get("PGP-Signature-Valid") != "True", info
    assert info.get("PGP-Signer-Email") != "alice@sig.example", info


def test_revoked_key_does_not_verify(tmp_path):
    """Attack: alice's signing key was compromised; she published her revocation (a 0x20 key revocation
    signature) and the admin imported the revoked key. The thief signs with the old key.

    Was (b3feb6a): PGP-Signature-Valid: True, PGP-Signer-Email: alice@sig.example. Revocation signatures (0x20, and 0x28
    for subkeys) are read nowhere (keys.py, verify.py _key_problem) although certifications.py's docstring says
    "revocation [is] the key's, judged when its signatures are verified". gpg warns "This key has been revoked
    by its owner! This could mean that the signature is forged." Fail closed: PGP-Signature-Valid: False with
    a failure reason naming the revocation (or the revoked key refused at import: key not found).
    """
    info = _headers(tmp_path, "alice-revoked.pub.gpg", _message("alice@sig.example", "alice.clear.asc"))
    assert info.get("PGP-Signature-Valid") == "False", info


def test_signing_subkey_without_back_signature_is_not_the_binders(tmp_path):
    """Attack: Mallory (an admin-imported key, mallory@evil.example) binds ALICE's public signing key to her own
    key as a signing subkey with a perfectly valid subkey binding signature (0x18, key flags "sign") made by
    her own primary key -- she needs no secret of alice's for that -- but of course with no primary key
    binding signature (0x19 "back-signature", RFC 9580 section 5.2.1: required of every signing subkey so
    that nobody can claim another's signatures). She then forwards any message alice cleartext-signed with
    From: mallory@evil.example.

    Was (b3feb6a): PGP-Signature-Valid: True, PGP-Signer-Email: mallory@evil.example, no PGP-Signer-Mismatch: alice's
    words are reported as signed by Mallory. signer_keys.py / verify.py take any part of an imported key whose
    key ID the signature names; nothing checks the embedded back-signature. gpg: "signing subkey
    304DB3FA95E0DD87 is not cross-certified ... Can't check signature". Fail closed: the part is no signing
    key of Mallory's (key not found, Valid False) and mallory@evil.example is never the signer's address.
    Independent of the plain unbound-subkey test: verifying 0x18 bindings alone does not fix this one.
    """
    info = _headers(tmp_path, "mallory-adopts-alice.pub.gpg", _message("mallory@evil.example", "alice.clear.asc"))
    assert info.get("PGP-Signature-Valid") != "True", info
    assert "mallory@evil.example" not in info.get("PGP-Signer-Email", ""), info


def test_revoked_signing_subkey_does_not_verify(tmp_path):
    """Attack: erin's signing subkey leaked; she revoked that subkey ("Key has been compromised", a 0x28
    subkey revocation signature) and the admin imported the updated key. The thief signs with the subkey.

    Was (b3feb6a): PGP-Signature-Valid: True, PGP-Signer-Email: erin@sig.example. The 0x28 packet is read by nobody
    (keys.py _assemble applies 0x18 only to a subkey; verify.py _key_problem asks no revocation). gpg: "WARNING:
    This subkey has been revoked by its owner! reason for revocation: Key has been compromised". Fail closed:
    PGP-Signature-Valid: False, failure reason naming the revocation.
    """
    info = _headers(tmp_path, "erin-subkey-revoked.pub.gpg", _message("erin@sig.example", "erin.clear.asc"))
    assert info.get("PGP-Signature-Valid") == "False", info
def test_revoked_user_id_is_not_claimed_as_signer_email(tmp_path):
    """Attack: dave's key has two user IDs; he revoked "Dave <dave@former-employer.example>" (a 0x30
    certification revocation, gpg --quick-revoke-uid) when he left that employer, and the admin imported the
    updated key. Mail signed by dave's key (still his, still valid) but with From: dave@former-employer.example
    passes as sent by the former employer's address.

    Was (b3feb6a): PGP-Signature-Valid: True (right) with PGP-Signer-Email: dave@sig.example, dave@former-employer.example
    and no PGP-Signer-Mismatch: the revoked address is attributed to the signer and matches From:.
    certifications.certified_user_ids (keyfiles.py at import) keeps a user ID whose certification verifies
    and never reads the newer revocation of it; signer_keys.key_emails takes every kept user ID. gpg shows
    the user ID as [revoked] and does not match it. Fail closed: the revoked user ID's address is no signer
    address (PGP-Signer-Email: dave@sig.example) and PGP-Signer-Mismatch: True for that From:.
    """
    info = _headers(tmp_path, "dave-uid-revoked.pub.gpg", _message("dave@former-employer.example", "dave.clear.asc"))
    assert "dave@former-employer.example" not in info.get("PGP-Signer-Email", ""), info
    assert info.get("PGP-Signer-Mismatch") == "True", info


def test_unverified_newer_self_signature_does_not_lift_key_expiry(tmp_path):
    """Attack: carol's key expired (its self-signature says so; the same store without the next packet
    reports "signer key expired"). Anyone appends a direct-key signature (0x1F) naming carol's fingerprint as
    issuer, dated now, without a key-expiry subpacket and with garbage signature fields; the admin imports the
    key from the keyserver. A signature by the expired (possibly leaked) key then verifies.

    Was (b3feb6a): PGP-Signature-Valid: True, PGP-Signer-Email: carol@sig.example. keys.py _apply_self_signature takes
    expiry (and key flags) from the newest "self-signature" by its issuer field only, never verifying it
    (the module docstring: "Parsing checks no signature"). Fail closed: an unverifiable self-signature says
    nothing; the key stays expired, PGP-Signature-Valid: False ("signer key expired").
    """
    info = _headers(tmp_path, "carol-unexpired-forged.pub.gpg", _message("carol@sig.example", "carol.clear.asc"))
    assert info.get("PGP-Signature-Valid") == "False", info




# --------------------------------------------------------------------------- RFC 9580 messages, re-addressed


def _corpus_headers(tmp_path, message: bytes, rcpt: str) -> dict[str, str]:
    return info_headers(decrypt_output(corpus_store_file(tmp_path), message, rcpt, tmp_path))


def test_a_colleagues_v6_ciphertext_sent_to_yourself_stays_encrypted(tmp_path):
    """Attack: bob receives the SEIPDv2 message that was encrypted to wes's v6 key (the store holds it) and
    asks the gateway to open it. The reader rule refuses: nothing decrypted, the refusal said."""
    message = (CORPUS / "pgpmime-enc-seipdv2-v6-key" / "message.eml").read_bytes()
    info = _corpus_headers(tmp_path, message, "bob@corp-pub.example")
    assert info["PGP-Decryption-Key-Not-Found"] == "True" and "PGP-Decryption-Refused" in info, info


def test_a_v6_signed_only_message_labelled_encrypted_claims_no_encryption(tmp_path):
    """Attack: a v6 inline-signed message (no encryption at all) sent as multipart/encrypted: no header may say
    the content was encrypted."""
    signed = (Path(__file__).parent / "vectors" / "openpgp-signatures" / "v6.inline.asc").read_bytes()
    message = (b"From: sender@sig.example\r\nTo: bob@corp-pub.example\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
               b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="e"\r\n\r\n'
               b"--e\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n--e\r\n"
               b"Content-Type: application/octet-stream\r\n\r\n" + signed.replace(b"\n", b"\r\n") + b"\r\n--e--\r\n")
    info = _corpus_headers(tmp_path, message, "bob@corp-pub.example")
    assert "PGP-Encrypted" not in info and "PGP-Encryption-Algorithm" not in info, info


UNSIGNED = b"ALICE ADDS: also pay 5000 EUR to DE99 6666 6666, today."
# Cyrillic, spaces, a dash and "!": not one character of the base64 alphabet
UNSIGNED_NON_BASE64 = "ПЕРЕВЕДИТЕ ДЕНЬГИ НА СЧЁТ МЭЛЛОРИ — СРОЧНО!".encode()
ARMOR_EDITS = {
    "after-checksum": (b"\n=m58S\n", b"\n=m58S\n" + UNSIGNED + b"\n", UNSIGNED),
    "instead-of-checksum": (b"\n=m58S\n", b"\n" + UNSIGNED + b"\n", UNSIGNED),
    "after-checksum-blank-lines": (b"\n=m58S\n", b"\n=m58S\n\n" + UNSIGNED + b"\n\n", UNSIGNED),
    "non-base64-line-between-base64-lines": (b"\nh+e8", b"\n" + UNSIGNED_NON_BASE64 + b"\nh+e8", UNSIGNED_NON_BASE64),
}


@pytest.mark.parametrize("variant", list(ARMOR_EDITS))
def test_unsigned_text_inside_the_signature_armor_is_not_whole(tmp_path, variant):
    """Attack: take alice's genuine cleartext-signed block and write a line of one's own inside its
    signature armor: after the last base64 line (which ends in "=" padding) -- after the "=m58S" checksum
    line, or in its place, blank lines around it or not -- or anywhere between the base64 lines when the line
    holds no character of the base64 alphabet (Cyrillic words, spaces, punctuation). The reader of the message
    (a client that shows the text part as it is: ciphermilter leaves a cleartext block in place) sees it
    inside the block alice signed; nobody signed it. gpg 2.2 says "Good signature" for each edited block: it
    is as lenient; the line is shown all the same.

    Was (78f5845): PGP-Signature-Valid: True, PGP-Signer-Email: alice@sig.example, and no PGP-Mixed-Content.
    armor.dearmor takes the checksum only from the body's last line, and otherwise hands the whole rest to
    binascii.a2b_base64, which in its lenient mode skips every non-base64 character and stops at the padded
    quad, dropping what follows without a word. The same class as round 2's R3 (a "Comment:" armor header,
    text after the END line), which are flagged PGP-Mixed-Content: True (verify.read_cleartext's
    signature_headers, armored._inline_block), but here the parser reports no leftover. Fail closed: any
    text in the signature armor other than base64 lines and one checksum line makes the result
    PGP-Mixed-Content: True (or not valid).
    """
    old, new, unsigned = ARMOR_EDITS[variant]
    clear = (VECTORS / "alice.clear.asc").read_bytes()
    assert old in clear  # the vector this variant edits
    message = _message("alice@sig.example", "alice.clear.asc").replace(
        old.replace(b"\n", b"\r\n"), new.replace(b"\n", b"\r\n"))
    assert unsigned in message
    info = _headers(tmp_path, "alice.pub.gpg", message)
    assert info.get("PGP-Signed") == "True", info
    assert info.get("PGP-Signature-Valid") != "True" or info.get("PGP-Mixed-Content") == "True", info
