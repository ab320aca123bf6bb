"""The OpenPGP engine on corpus blocks and on vectors made by real GnuPG (tests/vectors/pgp/make_vectors.sh)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from ciphermilter import mime

from ciphermilter.formats.openpgp import engine as openpgp
from ciphermilter.core.contract import LimitExceeded
from ciphermilter.store.keystore import KeyStore
from ciphermilter.store import admin
from conftest import CORPUS, case_message, corpus_cases, ids
from support.openpgp_packets import literal, packet

VECTORS = Path(__file__).parent / "vectors" / "pgp"
PLAIN = (VECTORS / "plain.txt").read_bytes()
MIB = 1 << 20

# Every armored PGP MESSAGE / SIGNED MESSAGE in the corpus, by case.
PGP_CASES = corpus_cases(lambda c: c["smime_or_pgp"] == "pgp")
HIDDEN = [c for c in PGP_CASES if any(r.get("keyid") == openpgp.WILDCARD_KEYID for r in c.get("recipients") or [])]
CLEARSIGNED = corpus_cases(lambda c: c["family"] == "pgp-inline-clearsigned")
BOMBS = corpus_cases(lambda c: c["family"] == "malformed-pgp-compression-bomb")
NOT_OURS = [c for c in PGP_CASES if c["encrypted"] and c["decryptable_with_our_keys"] is False]
RFC9580 = [c for c in PGP_CASES if c.get("expect_pgpy_supported") is False]
# SEIPDv2 to a v6 key: the store holds no v6 key yet (the key model of issue 16 imports them).
SIGNED_MIME = corpus_cases(lambda c: c["family"] == "pgp-mime-signed")


def armored_blocks(case) -> list[bytes]:
    """Each armored block of a corpus message, from the decoded bodies of its leaf parts."""
    blocks = []
    for entity in mime.parse(case_message(case)).walk():
        if not entity.is_multipart:
            body = entity.decoded_body()
            blocks += [body[s.start:s.end] for s in openpgp.find_armor(body)]
    return blocks


def message_data(case) -> bytes:
    return openpgp.dearmor(next(b for b in armored_blocks(case) if b"PGP MESSAGE" in b[:40])).data


def open_(data: bytes, keyring, max_output=64 * MIB) -> openpgp.Opened:
    return openpgp.open_message(data, keyring, max_output=max_output)


@pytest.fixture(scope="module")
def corpus_keyring(corpus_store):
    return openpgp.keyring_for(corpus_store)


@pytest.fixture(scope="module")
def vector_keyring(tmp_path_factory):
    store = KeyStore.create(tmp_path_factory.mktemp("vectors") / "store.db")
    for name in ("rsa", "elg", "p256"):
        admin.import_file(store, (VECTORS / f"{name}.sec.asc").read_bytes(), filename=f"{name}.sec.asc")
    yield openpgp.keyring_for(store)
    store.close()


# --------------------------------------------------------------------------- armor and packets


@pytest.mark.parametrize("path", sorted(VECTORS.glob("*.asc")), ids=lambda p: p.name)
def test_armor_checksum_of_gpg_output_matches(path):
    text = path.read_bytes()
    span = openpgp.find_armor(text)[-1]  # a cleartext signature's own armor is its last block
    block = text[span.start:span.end]
    if span.kind == "SIGNED MESSAGE":
        block = block[block.rfind(b"-----BEGIN PGP SIGNATURE"):]
    armor = openpgp.dearmor(block)
    assert armor.checksum is not None
    assert armor.checksum == openpgp.crc24(armor.data).to_bytes(3, "big")
    assert not openpgp.checksum_mismatch(armor)


def test_armor_corruption_is_explained_by_the_checksum():
    text = (VECTORS / "cipher-AES192.asc").read_bytes()
    lines = text.split(b"\n")
    body_line = next(i for i, line in enumerate(lines) if len(line) == 64)
    lines[body_line] = bytes([lines[body_line][0] ^ 0x01]) + lines[body_line][1:]
    armor = openpgp.dearmor(b"\n".join(lines))
    assert openpgp.checksum_mismatch(armor)


def test_crc24_known_value():
    # RFC 4880 section 6.1 initial value: the CRC of no data is the init constant.
    assert openpgp.crc24(b"") == 0xB704CE
    assert openpgp.crc24(b"123456789") == 0x21CF02  # CRC-24/OPENPGP check value


def test_dearmor_with_crlf_headers_and_without_checksum():
    data = bytes(range(200))
    body = base64.b64encode(data)
    block = (b"-----BEGIN PGP MESSAGE-----\r\nVersion: X\r\nComment: two: colons\r\n\r\n"
             + body[:64] + b"\r\n" + body[64:] + b"\r\n-----END PGP MESSAGE-----\r\n")
    armor = openpgp.dearmor(block)
    assert armor.kind == "MESSAGE"
    assert armor.headers == {"Version": "X", "Comment": "two: colons"}
    assert armor.data == data and armor.checksum is None


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_find_armor_spans_cleartext_up_to_its_signature_end(eol):
    signed = (VECTORS / "clearsigned.asc").read_bytes().replace(b"\n", eol)
    text = b"hello" + eol + signed + b"bye" + eol
    (span,) = openpgp.find_armor(text)
    assert span.kind == "SIGNED MESSAGE"
    assert text[span.start:span.end] == signed
    assert text[span.end:] == b"bye" + eol


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_text_after_an_end_line_is_outside_the_block(eol):
    """A reader sees the text after "-----END PGP SIGNATURE-----" on its line; nothing signs it."""
    signed = (VECTORS / "clearsigned.asc").read_bytes().replace(b"\n", eol)
    text = signed.rstrip() + b" pay account 666" + eol
    (span,) = openpgp.find_armor(text)
    assert text[span.end:] == b" pay account 666" + eol
    assert text[span.start:span.end] == signed.rstrip()


@pytest.mark.parametrize("line", [b"Comment: pay account 666", b"NOTE: pay account 666", b"pay account 666",
                                  b"Hash: SHA256 pay account 666", b"Hash: SHA256", b"Hash: SHA1, SHA256"])
def test_cleartext_armor_headers_are_hash_headers_only(line, vector_keyring):
    """RFC 9580 section 7: only "Hash:" headers stand before the blank line (gpg: "signature digest
    conflict in message"); whatever else stands there is shown by some readers and signed by nobody."""
    begin, _, rest = (VECTORS / "clearsigned.asc").read_bytes().partition(b"\n")
    block = begin + b"\n" + line + b"\n" + rest
    if line.startswith(b"Hash: SHA") and line.endswith(b"SHA256"):
        assert [s.valid for s in openpgp.read_cleartext(block, vector_keyring).signatures] == [True]
    else:
        with pytest.raises(openpgp.OpenPGPError, match=openpgp.CLEARTEXT_BAD_HEADER):
            openpgp.read_cleartext(block, vector_keyring)


def test_partial_body_lengths_are_joined():
    body = bytes(range(256)) * 3  # 768 bytes: a 512-byte partial chunk, then 256 more
    packet = b"\xcb" + b"\xe9" + body[:512] + bytes([((256 - 192) >> 8) + 192, (256 - 192) & 0xFF]) + body[512:]
    (parsed,) = list(openpgp.packets(packet))
    assert parsed.tag == openpgp.TAG_LITERAL and parsed.body == body and parsed.streamed


def test_packets_report_where_they_start_and_whether_their_length_was_streamed():
    fixed, indeterminate = b"\xac\x02hi", b"\xaf" + b"to the end"  # old format: 1-byte length, then length type 3
    parsed = list(openpgp.packets(fixed + indeterminate))
    assert [(p.tag, p.body, p.start, p.streamed) for p in parsed] == [
        (openpgp.TAG_LITERAL, b"hi", 0, False), (openpgp.TAG_LITERAL, b"to the end", 4, True)]


@pytest.mark.parametrize("cut", [b"\xad\x01", b"\xae\x00\x00\x01", b"\xcb"], ids=["2-byte", "4-byte", "new format"])
def test_a_packet_header_cut_short_is_an_error(cut):
    with pytest.raises(openpgp.OpenPGPError, match="truncated packet header"):
        list(openpgp.packets(cut))


def test_truncated_packet_is_an_error_not_a_crash():
    data = message_data(HIDDEN[0])
    with pytest.raises(openpgp.OpenPGPError):
        list(openpgp.packets(data[: len(data) // 2]))


def test_truncated_message_gives_a_failure(corpus_keyring):
    data = message_data(HIDDEN[0])
    opened = open_(data[: len(data) - 40], corpus_keyring)
    assert opened.plaintext is None and opened.failure


# --------------------------------------------------------------------------- corpus blocks


@pytest.mark.parametrize("case", HIDDEN, ids=ids(HIDDEN))
def test_hidden_recipient_tries_every_secret_key(case, corpus_keyring):
    opened = open_(message_data(case), corpus_keyring)
    assert opened.recipients == [openpgp.WILDCARD_KEYID]
    assert opened.decryption_key and opened.decryption_key != openpgp.WILDCARD_KEYID
    assert opened.sha256 == case["expected_plaintext_sha256"]


@pytest.mark.parametrize("case", CLEARSIGNED, ids=ids(CLEARSIGNED))
def test_utf8_cleartext_signature_verifies(case, corpus_keyring):
    (block,) = armored_blocks(case)
    clear = openpgp.read_cleartext(block, corpus_keyring)
    assert hashlib.sha256(clear.text).hexdigest() == case["expected_plaintext_sha256"]
    assert [s.valid for s in clear.signatures] == [case["signature_should_verify"]]
    assert clear.signatures[0].keyid == case["signer"]["keyid"]


@pytest.mark.parametrize("case", CLEARSIGNED, ids=ids(CLEARSIGNED))
def test_altered_cleartext_is_a_bad_signature(case, corpus_keyring):
    (block,) = armored_blocks(case)
    altered = block.replace(b"Ref 9", b"Ref 8")
    (signature,) = openpgp.read_cleartext(altered, corpus_keyring).signatures
    assert not signature.valid and signature.reason == "bad signature"


@pytest.mark.parametrize("case", SIGNED_MIME, ids=ids(SIGNED_MIME))
def test_detached_signature_over_the_first_part(case, corpus_keyring):
    message = mime.parse(case_message(case))
    signed, signature = message.parts
    results = openpgp.verify_detached(signed.raw, openpgp.dearmor(signature.decoded_body()).data, corpus_keyring)
    assert [r.valid for r in results] == [case["signature_should_verify"]]
    assert results[0].emails == [case["signer"]["email"]]


def test_signature_without_public_key(corpus_keyring, tmp_path):
    case = SIGNED_MIME[0]
    signed, signature = mime.parse(case_message(case)).parts
    empty = KeyStore.create(tmp_path / "empty.db")
    (result,) = openpgp.verify_detached(signed.raw, openpgp.dearmor(signature.decoded_body()).data,
                                        openpgp.keyring_for(empty))
    assert not result.valid and result.reason == "public key not found" and not result.key_found
    empty.close()


@pytest.mark.parametrize("case", NOT_OURS, ids=ids(NOT_OURS))
def test_missing_secret_key(case, corpus_keyring):
    opened = open_(message_data(case), corpus_keyring)
    assert opened.key_not_found and opened.plaintext is None
    assert opened.recipients == [r["keyid"] for r in case["recipients"]]


@pytest.mark.parametrize("case", RFC9580, ids=ids(RFC9580))
def test_rfc9580_seipdv2_decrypts(case, corpus_keyring):
    """SEIPDv2 to a v4 key (PKESKv6 naming a v4 fingerprint) and to a v6 X25519 key, as Sequoia 2 sends them."""
    opened = open_(message_data(case), corpus_keyring)
    assert opened.failure is None
    assert opened.plaintext == (CORPUS / case["expected_plaintext_file"]).read_bytes()
    assert opened.cipher == case["content_cipher"]
    recipient = case["recipients"][0]
    fingerprint = recipient["fingerprint"]  # a v4 key ID ends its fingerprint, a v6 one starts it (RFC 9580 5.5.4)
    assert opened.decryption_key == (fingerprint[:16] if recipient["key_version"] == 6 else fingerprint[-16:])


@pytest.mark.parametrize("case", BOMBS, ids=ids(BOMBS))
def test_compression_bomb_stops_at_the_bound(case, corpus_keyring):
    with pytest.raises(LimitExceeded, match="more than 1048576 bytes"):
        open_(message_data(case), corpus_keyring, max_output=MIB)


def test_new_key_takes_effect_on_the_next_message(tmp_path):
    store = KeyStore.create(tmp_path / "store.db")
    keyring = openpgp.keyring_for(store)
    data = openpgp.dearmor((VECTORS / "cipher-AES192.asc").read_bytes()).data
    assert open_(data, keyring).key_not_found
    admin.import_file(store, (VECTORS / "rsa.sec.asc").read_bytes())
    assert open_(data, keyring).plaintext == PLAIN
    store.close()


# --------------------------------------------------------------------------- gpg vectors


@pytest.mark.parametrize(
    ("name", "cipher"),
    [("elgamal", "AES-256"), ("nistp256", "AES-256"), ("cipher-3DES", "3DES"), ("cipher-BLOWFISH", "Blowfish"),
     ("cipher-CAMELLIA256", "Camellia-256"), ("cipher-AES192", "AES-192"), ("bzip2", "AES-256")],
)
def test_gpg_vectors_decrypt(name, cipher, vector_keyring):
    opened = open_(openpgp.dearmor((VECTORS / f"{name}.asc").read_bytes()).data, vector_keyring)
    assert opened.failure is None
    assert opened.plaintext == PLAIN
    assert opened.cipher == cipher
    assert opened.literal_format == "b" and opened.filename == "plain.txt"


def test_bzip2_compression_is_read(vector_keyring):
    opened = open_(openpgp.dearmor((VECTORS / "bzip2.asc").read_bytes()).data, vector_keyring)
    assert opened.compression == ["BZIP2"]


def test_twofish_is_named_but_not_decrypted(vector_keyring):
    opened = open_(openpgp.dearmor((VECTORS / "cipher-TWOFISH.asc").read_bytes()).data, vector_keyring)
    assert opened.plaintext is None
    assert opened.failure == "unsupported cipher Twofish"


def test_data_without_mdc_is_refused(vector_keyring):
    opened = open_(openpgp.dearmor((VECTORS / "no-mdc.asc").read_bytes()).data, vector_keyring)
    assert opened.plaintext is None and opened.encrypted
    assert opened.failure == "no integrity protection (SED packet)"


def test_signed_only_message_is_unwrapped_and_verified(vector_keyring):
    opened = open_(openpgp.dearmor((VECTORS / "signed-only.asc").read_bytes()).data, vector_keyring)
    assert not opened.encrypted and opened.plaintext == PLAIN
    assert [(s.valid, s.emails) for s in opened.signatures] == [(True, ["rsa@vectors.example"])]


def test_cleartext_dash_escaping_and_trailing_whitespace(vector_keyring):
    clear = openpgp.read_cleartext((VECTORS / "clearsigned.asc").read_bytes(), vector_keyring)
    assert clear.text == (VECTORS / "clearsigned.out").read_bytes()
    assert [s.valid for s in clear.signatures] == [True]


def test_modified_ciphertext_fails_the_integrity_check(vector_keyring):
    data = bytearray(openpgp.dearmor((VECTORS / "cipher-AES192.asc").read_bytes()).data)
    data[-5] ^= 0x01  # inside the encrypted MDC
    opened = open_(bytes(data), vector_keyring)
    assert opened.plaintext is None
    assert opened.failure == openpgp.INTEGRITY_FAILED == "integrity check failed"


@pytest.mark.parametrize(("depth", "allowed"), [(3, True), (9, False)])
def test_compressed_packets_nest_only_so_deep(depth, allowed, corpus_keyring):
    data = literal(b"inner")
    for _ in range(depth):
        data = packet(openpgp.TAG_COMPRESSED, b"\x00" + data)  # algorithm 0: uncompressed
    if allowed:
        assert open_(data, corpus_keyring).plaintext == b"inner"
    else:
        with pytest.raises(LimitExceeded, match="nested deeper than 8"):
            openpgp.open_message(data, corpus_keyring, max_output=MIB, max_nesting=8)


def test_librepgp_aead_packet_without_a_recipient_names_its_cipher(corpus_keyring):
    """Decrypted since issue 16 (tests/test_openpgp_aead.py); without a PKESK no key is found."""
    opened = open_(packet(openpgp.TAG_OCB_AEAD, b"\x01\x09\x02\x06" + bytes(40)), corpus_keyring)
    assert opened.encrypted and opened.key_not_found and opened.plaintext is None
    assert opened.cipher == "AES-256" and opened.failure == "decryption key not found"


def test_two_literal_packets_are_refused(corpus_keyring):
    opened = open_(literal(b"a") + literal(b"b"), corpus_keyring)
    assert opened.plaintext is None
    assert opened.failure == "more than one literal data packet"


def test_strict_armor_takes_only_key_value_headers_and_clean_base64():
    """The key import reads armor strictly (one reader, two rules): what a mail reader skips is an error there."""
    block = b"-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: x\n\nAAEC\n=AAAA\n-----END PGP PUBLIC KEY BLOCK-----\n"
    assert openpgp.dearmor(block, strict=True).data == openpgp.dearmor(block).data == b"\x00\x01\x02"
    damaged = block.replace(b"AAEC", b"AA*EC")
    assert openpgp.dearmor(damaged).data == b"\x00\x01\x02"  # a2b_base64 skips the stray byte
    with pytest.raises(openpgp.OpenPGPError):
        openpgp.dearmor(damaged, strict=True)
    no_space = block.replace(b"Comment: x", b"Comment:x")
    assert openpgp.dearmor(no_space).headers == {"Comment": "x"}
    with pytest.raises(openpgp.OpenPGPError):  # not "Key: Value": the body, and not base64
        openpgp.dearmor(no_space, strict=True)
