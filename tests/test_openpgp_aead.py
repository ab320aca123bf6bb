"""The OpenPGP AEAD layer (issue 16): EAX from CTR and CMAC, RFC 9580 SEIPDv2 and LibrePGP's AEAD packet.

On the published vectors (the EAX paper, RFC 9580 appendix A, draft rfc4880bis), on messages made by rnp
and by Sequoia (tests/vectors/openpgp-aead/make_vectors.sh), through the engine and through
``ciphermilter decrypt``; and under attack: changed, cut, dropped and reordered chunks, chunk sizes past
the limit, unknown algorithms and versions. Every attack ends in a reason and no plaintext at all.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from cryptography.exceptions import InvalidTag

from ciphermilter import mime
from ciphermilter.cli.main import main
from ciphermilter.core import pipeline as core
from ciphermilter.core.settings import Settings
from ciphermilter.formats.openpgp import aead, carried_keys, decrypt, sessionkeys
from ciphermilter.formats.openpgp import engine as openpgp
from ciphermilter.formats.openpgp.eax import EAX
from ciphermilter.store import admin
from ciphermilter.store.keystore import KeyStore
from bench import aead_messages
from conftest import CORPUS
from support.agreement import through_decrypt, through_the_daemon
from support.openpgp_packets import literal, packet

VECTORS = Path(__file__).parent / "vectors" / "openpgp-aead"
PLAIN = (VECTORS / "inner.mime").read_bytes()
MIB = 1 << 20
RECIPIENT = "bob@corp-pub.example"
KEYS = ("rsa", "cv25519", "seq-rsa", "seq-cv25519")
PROTECTED_HEADERS = ["rnp-ocb-protected-headers", "rnp-eax-signed-protected-headers"]  # inner-protected.mime
RNP = sorted(p.name[:-4] for p in VECTORS.glob("rnp-*.asc")
             if p.name not in ("rnp-ocb-camellia.asc", "rnp-ocb-partial.asc") and p.name[:-4] not in PROTECTED_HEADERS)
SEQUOIA = sorted(p.name[:-4] for p in VECTORS.glob("seq-seipdv2-*.asc"))
HELLO = b"Hello, world!"
CORPUS_KEYS = CORPUS / "keys" / "pgp"


def data_of(name: str) -> bytes:
    return openpgp.dearmor((VECTORS / f"{name}.asc").read_bytes()).data


def packets_of(data: bytes) -> list[openpgp.Packet]:
    return list(openpgp.packets(data))


def rebuilt(data: bytes, tag: int, body: bytes) -> bytes:
    """``data`` with the body of its packet ``tag`` replaced (the other packets as they were)."""
    return b"".join(openpgp.frame(p.tag, body if p.tag == tag else p.body) for p in packets_of(data))


def open_(data: bytes, keyring) -> openpgp.Opened:
    return openpgp.open_message(data, keyring, max_output=64 * MIB)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = KeyStore.create(tmp_path_factory.mktemp("aead") / "store.db")
    for name in KEYS:
        admin.import_file(store, (VECTORS / f"{name}.sec.asc").read_bytes(), filename=f"{name}.sec.asc")
    admin.add_domain(store, "corp-pub.example")
    for key in admin.list_keys(store):
        admin.bind(store, key["id"], RECIPIENT)  # the messages go to bob; the keys are the vectors'
    yield store
    store.close()


@pytest.fixture(scope="module")
def keyring(store):
    return openpgp.keyring_for(store)


# --------------------------------------------------------------------------- EAX


# The EAX paper's test vectors (Bellare, Rogaway, Wagner 2004, appendix): key, nonce, header, plaintext,
# ciphertext, tag.
EAX_PAPER = [
    ("233952DEE4D5ED5F9B9C6D6FF80FF478", "62EC67F9C3A4A407FCB2A8C49031A8B3", "6BFB914FD07EAE6B", "", "",
     "E037830E8389F27B025A2D6527E79D01"),
    ("91945D3F4DCBEE0BF45EF52255F095A4", "BECAF043B0A23D843194BA972C66DEBD", "FA3BFD4806EB53FA", "F7FB", "19DD",
     "5C4C9331049D0BDAB0277408F67967E5"),
    ("01F74AD64077F2E704C0F60ADA3DD523", "70C3DB4F0D26368400A10ED05D2BFF5E", "234A3463C1264AC6", "1A47CB4933",
     "D851D5BAE0", "3A59F238A23E39199DC9266626C40F80"),
    ("D07CF6CBB7F313BDDE66B727AFD3C5E8", "8408DFFF3C1A2B1292DC199E46B7D617", "33CCE2EABFF5A79D", "481C9E39B1",
     "632A9D131A", "D4C168A4225D8E1FF755939974A7BEDE"),
    ("8395FCF1E95BEBD697BD010BC766AAC3", "22E7ADD93CFC6393C57EC0B3C17D6B44", "126735FCC320D25A",
     "CA40D7446E545FFAED3BD12A740A659FFBBB3CEAB7", "CB8920F87A6C75CFF39627B56E3ED197C552D295A7",
     "CFC46AFC253B4652B1AF3795B124AB6E"),
]


@pytest.mark.parametrize(("key", "nonce", "header", "plain", "cipher", "tag"), EAX_PAPER)
def test_eax_paper_vectors(key, nonce, header, plain, cipher, tag):
    key, nonce, header, plain, cipher, tag = map(bytes.fromhex, (key, nonce, header, plain, cipher, tag))
    assert EAX(key).decrypt(nonce, cipher + tag, header) == plain


@pytest.mark.parametrize("position", [0, 4, -1])  # in the ciphertext, in the tag's first and last octet
def test_eax_refuses_any_changed_octet_and_another_header(position):
    key, nonce, header, _plain, cipher, tag = map(bytes.fromhex, EAX_PAPER[4])
    sealed = bytearray(cipher + tag)
    sealed[position] ^= 0x01
    with pytest.raises(InvalidTag):
        EAX(key).decrypt(nonce, bytes(sealed), header)
    with pytest.raises(InvalidTag):
        EAX(key).decrypt(nonce, cipher + tag, header + b"x")


# --------------------------------------------------------------------------- published sample packets


# RFC 9580 appendices A.9 to A.11: a v6 SKESK (password "password") and a SEIPDv2 with AES-128; the
# session keys are the RFC's (Sequoia, given the password, opens the three messages to "Hello, world!").
RFC9580_SAMPLES = {
    "rfc9580-a9-eax": ("EAX", "3881bafe985412459b86c36f98cb9a5e"),
    "rfc9580-a10-ocb": ("OCB", "28e79ab82397d3c63de24ac217d7b791"),
    "rfc9580-a11-gcm": ("GCM", "1936fc8568980274bb900d8319360c77"),
}


@pytest.mark.parametrize("name", sorted(RFC9580_SAMPLES))
def test_rfc9580_sample_seipdv2_decrypts_with_its_session_key(name):
    mode, session_key = RFC9580_SAMPLES[name]
    seipd = next(p for p in packets_of(data_of(name)) if p.tag == openpgp.TAG_SEIPD)
    data = aead.read_header(seipd)
    assert data.format == f"SEIPDv2, {mode}" and data.cipher == 7 and data.chunk_octet == 6
    inner = decrypt.decrypt_data(data, (sessionkeys.NAMED_BY_DATA, bytes.fromhex(session_key)))
    assert inner is not None
    literal_packet, padding = packets_of(inner)
    assert literal_packet.tag == openpgp.TAG_LITERAL and literal_packet.body.endswith(HELLO)
    assert padding.tag == 21  # RFC 9580 section 5.14: the sample pads its plaintext


# draft-ietf-openpgp-rfc4880bis, appendix A (sample AEAD-EAX and AEAD-OCB encryption): the AEAD Encrypted
# Data packet as LibrePGP keeps it (tag 20, version 1, AES-128, chunk size octet 14), with its session key.
LIBREPGP_SAMPLES = {
    "EAX": ("86f1efb86952329f24acd3bfd0e5346d",
            "0107010eb732379f73c4928de25facfe6517ec105dc11a81dc0cb8a2f6f3d90016384a56fc821ae11ae8dbcb4986"
            "2655dea88d06a81486801b0ff387bd2eab013de1259586906eab2476"),
    "OCB": ("d1f01ba30e130aa7d2582c16e050ae44",
            "0107020e5ed2bc1e470abe8f1d644c7a6c8a567b0f7701196611a154ba9c2574cd056284a8ef68035c623d93cc70"
            "8a43211bb6eaf2b27f7c18d571bcd83b20add3a08b73af15b9a098"),
}


@pytest.mark.parametrize("mode", sorted(LIBREPGP_SAMPLES))
def test_librepgp_sample_packet_decrypts_with_its_session_key(mode):
    session_key, body = map(bytes.fromhex, LIBREPGP_SAMPLES[mode])
    data = aead.read_header(openpgp.Packet(openpgp.TAG_OCB_AEAD, body))
    assert data.format == f"LibrePGP AEAD packet, {mode}"
    inner = decrypt.decrypt_data(data, (7, session_key))
    assert inner == openpgp.frame(openpgp.TAG_LITERAL, b"b\x00\x00\x00\x00\x00" + HELLO + b"\n")


# --------------------------------------------------------------------------- messages from rnp and Sequoia


# The compression, cipher and signer of each rnp message (make_vectors.sh); rnp compresses with ZIP unless told.
RNP_FACTS = {
    "rnp-eax-chunks": ([], "AES-256"), "rnp-ocb-chunks": ([], "AES-256"),
    "rnp-eax-rsa-none": ([], "AES-256"), "rnp-ocb-rsa-none": ([], "AES-256"),
    "rnp-eax-rsa-zip": (["ZIP"], "AES-256"), "rnp-ocb-rsa-zip": (["ZIP"], "AES-256"),
    "rnp-eax-rsa-zlib": (["ZLIB"], "AES-256"), "rnp-ocb-rsa-zlib": (["ZLIB"], "AES-256"),
    "rnp-eax-rsa-bzip2": (["BZIP2"], "AES-256"), "rnp-ocb-rsa-bzip2": (["BZIP2"], "AES-256"),
    "rnp-ocb-cv25519": (["ZIP"], "AES-256"), "rnp-eax-cv25519-aes128": (["ZIP"], "AES-128"),
    "rnp-ocb-signed": (["ZIP"], "AES-256"), "rnp-eax-signed": (["ZIP"], "AES-256"),
    "rnp-ocb-two": (["ZIP"], "AES-256"), "rnp-eax-two": (["ZIP"], "AES-256"), "rnp-eax-hidden": (["ZIP"], "AES-256"),
}
SIGNERS = {"rnp-ocb-signed": "aead-cv25519@vectors.example", "rnp-eax-signed": "aead-rsa@vectors.example",
           "seq-seipdv2-signed": "aead-seq-cv25519@vectors.example"}


def test_every_rnp_message_has_its_facts():
    assert sorted(RNP_FACTS) == RNP


@pytest.mark.parametrize("name", RNP)
def test_rnp_librepgp_message_decrypts_to_the_exact_plaintext(name, keyring):
    data = data_of(name)
    mode = "EAX" if "-eax-" in name else "OCB"
    assert aead.read_header(packets_of(data)[-1]).format == f"LibrePGP AEAD packet, {mode}"
    opened = open_(data, keyring)
    assert opened.failure is None and opened.plaintext == PLAIN
    assert (opened.compression, opened.cipher) == RNP_FACTS[name]
    assert [(s.valid, s.emails) for s in opened.signatures] == ([(True, [SIGNERS[name]])] if name in SIGNERS else [])


@pytest.mark.parametrize("name", SEQUOIA)
def test_sequoia_seipdv2_message_to_a_v4_key_decrypts_to_the_exact_plaintext(name, keyring):
    data = data_of(name)
    assert aead.read_header(packets_of(data)[-1]).format == "SEIPDv2, OCB"
    opened = open_(data, keyring)
    assert opened.failure is None and opened.plaintext == PLAIN and opened.cipher == "AES-256"
    assert [(s.valid, s.emails) for s in opened.signatures] == ([(True, [SIGNERS[name]])] if name in SIGNERS else [])


def test_hidden_recipients_are_tried_with_every_key(keyring):
    opened = open_(data_of("rnp-eax-hidden"), keyring)
    assert opened.recipients == [openpgp.WILDCARD_KEYID] * 2 and opened.plaintext == PLAIN


@pytest.mark.parametrize("name", ["seq-seipdv2-rsa", "seq-seipdv2-cv25519"])
def test_an_anonymous_v6_pkesk_is_tried_with_every_key(name, keyring):
    """RFC 9580 section 5.1.2: a v6 PKESK with an empty recipient field is Sequoia's hidden recipient."""
    data = data_of(name)
    pkesk = packets_of(data)[0].body
    anonymous = b"\x06\x00" + pkesk[2 + pkesk[1]:]
    opened = open_(rebuilt(data, openpgp.TAG_PKESK, anonymous), keyring)
    assert opened.recipients == [openpgp.WILDCARD_KEYID] and opened.plaintext == PLAIN


@pytest.mark.parametrize("name", ["rnp-ocb-two", "seq-seipdv2-two"])
def test_either_recipient_key_alone_opens_a_message_to_two(name, tmp_path):
    for key in ("rsa", "cv25519") if name.startswith("rnp") else ("seq-rsa", "seq-cv25519"):
        with KeyStore.create(tmp_path / f"{key}.db") as one:
            admin.import_file(one, (VECTORS / f"{key}.sec.asc").read_bytes())
            opened = open_(data_of(name), openpgp.keyring_for(one))
        assert len(opened.recipients) == 2 and opened.plaintext == PLAIN


def test_a_packet_streamed_in_partial_lengths_decrypts(keyring, store, tmp_path):
    """rnp streams larger data (here four times the plaintext) in partial body lengths, over 4 KiB chunks."""
    data = data_of("rnp-ocb-partial")
    assert packets_of(data)[-1].streamed and aead.read_header(packets_of(data)[-1]).chunk_size == 4096
    assert open_(data, keyring).plaintext == PLAIN * 4
    armored = re.sub(rb"\r?\n", b"\r\n", (VECTORS / "rnp-ocb-partial.asc").read_bytes())
    assert mime.parse(decrypted(store, inline(armored), tmp_path)).decoded_body() == PLAIN * 4


def test_camellia_with_ocb_is_named_not_decrypted(keyring):
    opened = open_(data_of("rnp-ocb-camellia"), keyring)
    assert opened.plaintext is None and opened.cipher == "Camellia-256"
    assert opened.failure == "unsupported cipher Camellia-256 (LibrePGP AEAD packet, OCB)"


# --------------------------------------------------------------------------- through `ciphermilter decrypt`


def pgp_mime(armored: bytes) -> bytes:
    return (b"From: AEAD Sender <aead-rsa@vectors.example>\r\nTo: " + RECIPIENT.encode() + b"\r\nSubject: aead\r\n"
            b'MIME-Version: 1.0\r\nContent-Type: multipart/encrypted; protocol="application/pgp-encrypted";'
            b' boundary="enc"\r\n\r\n--enc\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n'
            b"--enc\r\nContent-Type: application/octet-stream\r\n\r\n" + armored + b"\r\n--enc--\r\n")


def inline(armored: bytes) -> bytes:
    return (b"From: AEAD Sender <aead-rsa@vectors.example>\r\nTo: " + RECIPIENT.encode() + b"\r\nSubject: aead\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + armored)


def decrypted(store, message: bytes, tmp_path) -> bytes:
    path = tmp_path / "message.eml"
    path.write_bytes(message)
    result = CliRunner().invoke(main, ["--store", str(store.path), "decrypt", "--rcpt", RECIPIENT, str(path)])
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def info(message: bytes) -> dict[str, str]:
    return {h.name[len("X-CipherMail-Info-"):]: h.value for h in mime.split_headers(message)[0]
            if h.name.startswith("X-CipherMail-Info-")}


@pytest.mark.parametrize("name", RNP + SEQUOIA)
def test_ciphermilter_decrypt_opens_pgp_mime_and_inline(name, store, tmp_path):
    armored = re.sub(rb"\r?\n", b"\r\n", (VECTORS / f"{name}.asc").read_bytes())
    expected = mime.parse(PLAIN)
    as_mime = decrypted(store, pgp_mime(armored), tmp_path)
    final = mime.parse(as_mime)
    assert final.body == expected.body and final.get("Content-Type") == expected.get("Content-Type")
    assert mime.parse(decrypted(store, inline(armored), tmp_path)).decoded_body() == PLAIN
    headers = info(as_mime)
    assert headers["PGP-Encrypted"] == "True" and "PGP-Decryption-Failed" not in headers
    if name in SIGNERS:
        assert headers["PGP-Signature-Valid"] == "True" and headers["PGP-Signer-Email"] == SIGNERS[name]


@pytest.fixture(scope="module")
def daemon(daemons, store):
    return daemons("aead", store.path)


@pytest.mark.usefixtures("bytes_on_the_wire")
@pytest.mark.parametrize("name", RNP + SEQUOIA)
def test_the_daemon_decrypts_as_ciphermilter_decrypt_does(daemon, name, tmp_path):
    """Every rnp (LibrePGP AEAD) and Sequoia (SEIPDv2) message, through the real daemon and ``ciphermilter decrypt``."""
    message = pgp_mime(re.sub(rb"\r?\n", b"\r\n", (VECTORS / f"{name}.asc").read_bytes()))
    by_daemon, accepted = through_the_daemon(daemon, message, [RECIPIENT])
    assert accepted == [RECIPIENT]
    kind, delivered = by_daemon
    assert kind == "delivered" and isinstance(delivered, bytes)
    assert mime.parse(delivered).body == mime.parse(PLAIN).body
    assert through_decrypt(daemon, message, accepted, tmp_path) == by_daemon


# --------------------------------------------------------------------------- attacks


def chunked(name: str) -> tuple[bytes, aead.AeadData]:
    """A message of many 64-octet chunks (rnp, chunk size octet 0) and its AEAD packet's header."""
    data = data_of(name)
    return data, aead.read_header(packets_of(data)[-1])


def with_sealed(data: bytes, header: aead.AeadData, sealed: bytes) -> bytes:
    body = packets_of(data)[-1].body
    return rebuilt(data, openpgp.TAG_OCB_AEAD, body[:len(body) - len(header.sealed)] + sealed)


def chunks_of(header: aead.AeadData) -> tuple[list[bytes], bytes]:
    sealed, step = bytes(header.sealed), header.chunk_size + aead.TAG_LENGTH
    body = sealed[:-aead.TAG_LENGTH]
    return [body[i:i + step] for i in range(0, len(body), step)], sealed[-aead.TAG_LENGTH:]


def assert_refused(opened: openpgp.Opened, failure: str = openpgp.INTEGRITY_FAILED) -> None:
    assert opened.plaintext is None and opened.signatures == []
    assert opened.failure == failure


@pytest.mark.parametrize("name", ["rnp-ocb-chunks", "rnp-eax-chunks"])
def test_a_flipped_bit_in_any_chunk_or_in_the_final_tag_releases_nothing(name, keyring):
    data, header = chunked(name)
    chunks, final = chunks_of(header)
    assert len(chunks) == 34  # 2,117 octets of literal data in 64-octet chunks
    for index in range(len(chunks) + 1):
        changed = [bytearray(c) for c in chunks + [final]]
        changed[index][len(changed[index]) // 2] ^= 0x80
        assert_refused(open_(with_sealed(data, header, b"".join(changed)), keyring))


CHUNK_ATTACKS = {
    "last chunk cut short": lambda chunks, final: b"".join(chunks[:-1]) + chunks[-1][:-5] + final,
    "last chunk dropped": lambda chunks, final: b"".join(chunks[:-1]) + final,
    "final tag dropped": lambda chunks, final: b"".join(chunks),
    "two chunks swapped": lambda chunks, final: b"".join([chunks[1], chunks[0], *chunks[2:]]) + final,
    "a chunk repeated": lambda chunks, final: b"".join([chunks[0], *chunks]) + final,
    "nothing but the final tag": lambda chunks, final: final,
    "less than a tag": lambda chunks, final: final[:7],
}


@pytest.mark.parametrize("attack", sorted(CHUNK_ATTACKS))
@pytest.mark.parametrize("name", ["rnp-ocb-chunks", "rnp-eax-chunks"])
def test_cut_dropped_or_reordered_chunks_release_nothing(name, attack, keyring):
    data, header = chunked(name)
    sealed = CHUNK_ATTACKS[attack](*chunks_of(header))
    assert_refused(open_(with_sealed(data, header, sealed), keyring))


@pytest.mark.parametrize("attack", ["flipped bits", *sorted(CHUNK_ATTACKS)])
@pytest.mark.parametrize("mode", [aead_messages.OCB, aead_messages.GCM])
def test_seipdv2_chunk_attacks_raise_before_any_plaintext(mode, attack):
    """The same attacks on SEIPDv2 with many chunks (no tool here writes small SEIPDv2 chunks: Sequoia's are 4 KiB)."""
    session_key = bytes(range(32))
    body = aead_messages.seipd_v2(PLAIN, session_key, mode=mode)
    header = aead.read_header(openpgp.Packet(openpgp.TAG_SEIPD, body))
    chunks, final = chunks_of(header)
    prefix = body[:len(body) - len(header.sealed)]
    if attack == "flipped bits":
        variants = []
        for index in range(len(chunks) + 1):
            changed = [bytearray(c) for c in chunks + [final]]
            changed[index][-1] ^= 0x01
            variants.append(b"".join(changed))
    else:
        variants = [CHUNK_ATTACKS[attack](chunks, final)]
    for sealed in variants:
        with pytest.raises(openpgp.IntegrityError):
            aead.decrypt(aead.read_header(openpgp.Packet(openpgp.TAG_SEIPD, prefix + sealed)), session_key)


def test_a_changed_header_octet_fails_its_tags(keyring):
    """The chunk size octet and the cipher are authenticated: a smaller chunk size does not parse the data anew."""
    data, _header = chunked("rnp-ocb-chunks")
    body = bytearray(packets_of(data)[-1].body)
    body[3] = 1  # chunk size octet 0 -> 1
    assert_refused(open_(rebuilt(data, openpgp.TAG_OCB_AEAD, bytes(body)), keyring))


@pytest.mark.parametrize(("tag", "body", "failure"), [
    (openpgp.TAG_SEIPD, b"\x02\x09\x02\x11" + bytes(80), "chunk size octet 17 above 16 (SEIPDv2, OCB)"),
    (openpgp.TAG_OCB_AEAD, b"\x01\x09\x01\xff" + bytes(80), "chunk size octet 255 above 16 (LibrePGP AEAD packet, EAX)"),
    (openpgp.TAG_SEIPD, b"\x02\x09\x04\x06" + bytes(80), "unknown AEAD algorithm 4 (SEIPDv2)"),
    (openpgp.TAG_OCB_AEAD, b"\x01\x09\x03\x06" + bytes(80), "unknown AEAD algorithm 3 (LibrePGP AEAD packet)"),
    (openpgp.TAG_OCB_AEAD, b"\x02\x09\x02\x06" + bytes(80), "unknown LibrePGP AEAD packet version 2"),
    (openpgp.TAG_SEIPD, b"\x03\x09\x02\x06" + bytes(80), "unknown encrypted data version"),
    (openpgp.TAG_SEIPD, b"\x02\x0a\x01\x06" + bytes(80), "unsupported cipher Twofish (SEIPDv2, EAX)"),
    (openpgp.TAG_SEIPD, b"\x02\x09\x02\x06" + bytes(20), "truncated SEIPDv2"),
    (openpgp.TAG_OCB_AEAD, b"\x01\x09", "truncated LibrePGP AEAD packet"),
])
def test_unreadable_headers_are_named_before_any_key_is_tried(tag, body, failure, keyring):
    opened = open_(packet(tag, body), keyring)
    assert opened.encrypted and opened.plaintext is None and opened.failure == failure


def test_an_eax_packet_is_never_called_ocb(keyring):
    data, header = chunked("rnp-eax-chunks")
    chunks, final = chunks_of(header)
    body = bytearray(packets_of(data)[-1].body)
    body[3] = 17
    opened = open_(rebuilt(data, openpgp.TAG_OCB_AEAD, bytes(body)), keyring)
    assert opened.failure == "chunk size octet 17 above 16 (LibrePGP AEAD packet, EAX)" and "OCB" not in opened.failure


def test_sequoia_seipdv2_with_a_flipped_bit_releases_nothing(keyring):
    data = data_of("seq-seipdv2-rsa")
    body = bytearray(packets_of(data)[-1].body)
    body[-40] ^= 0x01  # in the last chunk, ahead of its tag
    assert_refused(open_(rebuilt(data, openpgp.TAG_SEIPD, bytes(body)), keyring))


def test_seipdv2_retyped_as_version_1_opens_nothing(keyring):
    """A downgrade: the v6 PKESK's session key names no cipher, so SEIPDv1's CFB never runs with it."""
    data = data_of("seq-seipdv2-rsa")
    body = b"\x01" + packets_of(data)[-1].body[1:]
    assert_refused(open_(rebuilt(data, openpgp.TAG_SEIPD, body), keyring), decrypt.NO_KEY_DECRYPTS)


def test_librepgp_packet_retyped_as_seipdv2_opens_nothing(keyring):
    """Another key derivation (HKDF) and nonce: every tag fails."""
    data = data_of("rnp-ocb-rsa-none")
    body = packets_of(data)[-1].body
    retyped = b"".join(openpgp.frame(openpgp.TAG_SEIPD, b"\x02" + body[1:4] + body[4:4 + 32] + body[36:])
                       if p.tag == openpgp.TAG_OCB_AEAD else openpgp.frame(p.tag, p.body) for p in packets_of(data))
    assert_refused(open_(retyped, keyring))


def test_padding_packets_anywhere_are_skipped(keyring):
    data = data_of("rnp-ocb-rsa-none")
    pkesk, encrypted = packets_of(data)
    padding = openpgp.frame(21, b"\x00" * 32)
    padded = padding + openpgp.frame(pkesk.tag, pkesk.body) + padding + openpgp.frame(encrypted.tag, encrypted.body)
    assert open_(padded, keyring).plaintext == PLAIN


def test_deadline_is_checked_while_many_chunks_decrypt():
    session_key = bytes(range(32))
    plain = literal(bytes(64 * 3000))  # 3,000 chunks of 64 octets
    data = aead.read_header(openpgp.Packet(openpgp.TAG_SEIPD, aead_messages.seipd_v2(plain, session_key)))
    calls = []
    assert aead.decrypt(data, session_key, lambda: calls.append(1)) == plain
    assert len(calls) == 3001 // aead.CHECK_EVERY  # 3,001 tags: the chunks and the final one

    def deadline() -> None:
        raise TimeoutError("deadline")

    with pytest.raises(TimeoutError):
        aead.decrypt(data, session_key, deadline)


@pytest.mark.parametrize("mode", [aead_messages.OCB, aead_messages.GCM])
@pytest.mark.parametrize("chunk_octet", [0, 16])
def test_independently_sealed_packets_open(mode, chunk_octet):
    """The engine reads what a second writer (tests/support/aead_messages.py) seals, at both chunk size bounds."""
    session_key = bytes(range(32))
    plain = bytes(range(256)) * 5
    body = aead_messages.seipd_v2(plain, session_key, mode=mode, chunk_octet=chunk_octet)
    data = aead.read_header(openpgp.Packet(openpgp.TAG_SEIPD, body))
    assert aead.decrypt(data, session_key) == plain
    body = aead_messages.librepgp(plain, session_key, chunk_octet=chunk_octet)
    assert aead.decrypt(aead.read_header(openpgp.Packet(openpgp.TAG_OCB_AEAD, body)), session_key) == plain


def test_a_session_key_for_another_cipher_never_opens_the_data():
    """A v3 PKESK naming AES-128 before AES-256 data: a decoy of the right size runs, and fails."""
    session_key = bytes(range(32))
    data = aead.read_header(openpgp.Packet(openpgp.TAG_SEIPD, aead_messages.seipd_v2(b"x" * 100, session_key)))
    assert decrypt.decrypt_data(data, (9, session_key)) == b"x" * 100
    with pytest.raises(openpgp.IntegrityError):
        decrypt.decrypt_data(data, (7, session_key[:16]))
    with pytest.raises(openpgp.IntegrityError):
        decrypt.decrypt_data(data, (7, session_key))  # the right octets, named for another cipher


def test_a_tampered_message_leaves_the_mail_as_received(store, tmp_path):
    """Through the handler: no decrypted octet in the output, the integrity failure in the headers."""
    data, header = chunked("rnp-ocb-chunks")
    chunks, final = chunks_of(header)
    changed = bytearray(chunks[-1])
    changed[3] ^= 0x01  # the last chunk only: the 33 before it would open
    armored = openpgp_armor(with_sealed(data, header, b"".join(chunks[:-1]) + bytes(changed) + final))
    message = pgp_mime(armored)
    out = decrypted(store, message, tmp_path)
    assert out.endswith(mime.parse(message).body) and b"line 01" not in out
    assert info(out)["PGP-Decryption-Failed"] == openpgp.INTEGRITY_FAILED


def openpgp_armor(data: bytes) -> bytes:
    lines = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return b"-----BEGIN PGP MESSAGE-----\r\n\r\n" + lines + b"-----END PGP MESSAGE-----\r\n"


@pytest.fixture()
def aead_decryptions(monkeypatch) -> list[bytes]:
    """The session keys aead.decrypt ran with, one per call (each still does its work)."""
    calls: list[bytes] = []
    real = aead.decrypt

    def counted(data, session_key, check=lambda: None):
        calls.append(session_key)
        return real(data, session_key, check)

    monkeypatch.setattr(aead, "decrypt", counted)
    return calls


@pytest.mark.parametrize("name", ["rnp-ocb-rsa-none", "seq-seipdv2-rsa"])
def test_a_changed_pkesk_and_a_changed_chunk_decrypt_the_data_once_each(name, keyring, aead_decryptions):
    """Implicit rejection (issue 14): a session key that fails to unwrap still runs the AEAD data, with a decoy."""
    data = data_of(name)
    pkesk, encrypted = packets_of(data)
    changed_pkesk = bytearray(pkesk.body)
    changed_pkesk[-20] ^= 0x01  # inside the RSA ciphertext
    changed_data = bytearray(encrypted.body)
    changed_data[-40] ^= 0x01
    for body, tag, failure in ((changed_pkesk, pkesk.tag, decrypt.NO_KEY_DECRYPTS),
                               (changed_data, encrypted.tag, openpgp.INTEGRITY_FAILED)):
        aead_decryptions.clear()
        assert_refused(open_(rebuilt(data, tag, bytes(body)), keyring), failure)
        assert len(aead_decryptions) == 1 and len(aead_decryptions[0]) == 32


@pytest.mark.parametrize("packet_format", ["SEIPDv2", "LibrePGP"])
def test_the_bench_messages_open_with_the_corpus_key(packet_format, corpus_store):
    """bench/run.py's AEAD rows: a PKESK (v6 or v3) to bob's RSA-3072 key of the corpus, then the AEAD packet."""
    bob = aead_messages.rsa_recipient(CORPUS_KEYS / "pub-pgp-bob-rsa3072.sec.asc")
    data = aead_messages.message(PLAIN, bob, packet_format)
    opened = open_(data, openpgp.keyring_for(corpus_store))
    assert opened.failure is None and opened.plaintext == PLAIN and opened.cipher == "AES-256"
    assert aead.read_header(packets_of(data)[-1]).format.startswith("SEIPDv2" if packet_format == "SEIPDv2"
                                                                     else "LibrePGP AEAD packet")


MUTATED = ["rnp-eax-chunks", "rnp-ocb-chunks", "seq-seipdv2-cv25519"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(MUTATED), position=st.integers(min_value=0), value=st.integers(0, 255),
       cut=st.booleans())
def test_any_changed_or_cut_octet_gives_the_plaintext_or_a_reason_never_an_error(name, position, value, cut, keyring):
    data = bytearray(data_of(name))
    position %= len(data)
    if cut:
        del data[position:]
    else:
        data[position] = value
    opened = open_(bytes(data), keyring)
    assert opened.plaintext in (None, PLAIN)
    assert (opened.plaintext is None) == isinstance(opened.failure, str)


# --------------------------------------------------------------------------- protected headers and Autocrypt


def autocrypt_pgp_mime(armored: bytes) -> bytes:
    """rnp's AEAD message to bob as PGP/MIME under a placeholder Subject, with the sender's Autocrypt header
    (its real public key), as Autocrypt-capable clients send protected headers (RFC 9788)."""
    keydata = base64.b64encode(openpgp.dearmor((VECTORS / "cv25519.pub.asc").read_bytes()).data)
    folded = b"\r\n ".join(keydata[i:i + 70] for i in range(0, len(keydata), 70))
    message = pgp_mime(armored).replace(b"Subject: aead\r\n", b"Subject: ...\r\n")
    return b"Autocrypt: addr=aead-cv25519@vectors.example; keydata=" + folded + b"\r\n" + message


@pytest.mark.usefixtures("bytes_on_the_wire")
@pytest.mark.parametrize("name", PROTECTED_HEADERS)
def test_protected_headers_in_aead_come_out_and_autocrypt_keys_stay_unvouched(daemon, store, name, tmp_path):
    message = autocrypt_pgp_mime(re.sub(rb"\r?\n", b"\r\n", (VECTORS / f"{name}.asc").read_bytes()))
    by_daemon, accepted = through_the_daemon(daemon, message, [RECIPIENT])
    assert by_daemon[0] == "delivered" and through_decrypt(daemon, message, accepted, tmp_path) == by_daemon
    delivered = mime.parse(by_daemon[1])
    assert delivered.get("Subject") == "The real subject, protected" and delivered.get("Cc") == "carol@corp-pub.example"
    headers = info(by_daemon[1])
    assert headers["PGP-Encrypted"] == "True" and "PGP-Decryption-Failed" not in headers
    if "signed" in name:
        assert headers["PGP-Signature-Valid"] == "True" and headers["PGP-Signer-Email"] == "aead-cv25519@vectors.example"
    outcome = core.process(message, core.Envelope(mail_from="a@vectors.example", recipients=[RECIPIENT]), store,
                           Settings())
    assert outcome.report["harvest"] == [f"Autocrypt: {carried_keys.NOT_VOUCHED}"]
