"""Format detection of key files, with files written by openssl and gpg, and damaged input."""

from __future__ import annotations

import base64
import hashlib
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ciphermilter.formats import keyfiles as keyimport
from ciphermilter.store.keystore import KeyStore
from ciphermilter.store.schema import StoreError
from ciphermilter.store import admin
from conftest import CORPUS

SMIME = CORPUS / "keys" / "smime"
BOB_CERT, BOB_KEY = SMIME / "pub-bob.cert.pem", SMIME / "pub-bob.key.pem"
ERIN_KEY = SMIME / "pub-erin-p256.key.pem"


def openssl(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=data, check=True, capture_output=True).stdout


def public_der(private_key) -> bytes:
    return private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


def reference_key():
    return serialization.load_pem_private_key(BOB_KEY.read_bytes(), None)


# (name, openssl arguments producing the file from pub-bob's key or certificate, password for parse)
OPENSSL_FORMATS = [
    ("PKCS#8 encrypted PEM", ["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "pass:s3cret", "-in", str(BOB_KEY)],
     b"s3cret"),
    ("PKCS#8 encrypted DER", ["pkcs8", "-topk8", "-v2", "aes-128-cbc", "-passout", "pass:s3cret", "-outform", "DER",
                              "-in", str(BOB_KEY)], b"s3cret"),
    ("PKCS#8 DER", ["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in", str(BOB_KEY)], None),
    ("traditional RSA PEM", ["rsa", "-traditional", "-in", str(BOB_KEY)], None),
    ("traditional RSA DER", ["rsa", "-traditional", "-outform", "DER", "-in", str(BOB_KEY)], None),
]


@pytest.mark.parametrize("name, args, password", OPENSSL_FORMATS, ids=[f[0] for f in OPENSSL_FORMATS])
def test_private_key_formats(name, args, password):
    bundle = keyimport.parse(openssl(*args), password=password)
    (key,) = bundle.private_keys
    assert public_der(key) == public_der(reference_key()) and bundle.certificates == []


def test_traditional_ec_key():
    bundle = keyimport.parse(openssl("ec", "-in", str(ERIN_KEY)))
    erin = serialization.load_pem_private_key(ERIN_KEY.read_bytes(), None)
    assert public_der(bundle.private_keys[0]) == public_der(erin)


def test_encrypted_key_needs_its_password():
    data = openssl(*OPENSSL_FORMATS[0][1])
    with pytest.raises(keyimport.SecretNeeded, match="give its password") as raised:
        keyimport.parse(data)
    assert raised.value.kind == "password"
    with pytest.raises(keyimport.KeyFormatError, match="wrong password"):
        keyimport.parse(data, password=b"wrong")


def test_certificate_chain_der_and_pkcs7():
    chain = BOB_CERT.read_bytes() + (SMIME / "pub-intermediate-ca.cert.pem").read_bytes()
    expected = [x509.load_pem_x509_certificate(block).public_bytes(serialization.Encoding.DER)
                for block in (BOB_CERT.read_bytes(), (SMIME / "pub-intermediate-ca.cert.pem").read_bytes())]
    assert keyimport.parse(chain).certificates == expected
    assert keyimport.parse(openssl("x509", "-outform", "DER", "-in", str(BOB_CERT))).certificates == expected[:1]
    p7 = openssl("crl2pkcs7", "-nocrl", "-certfile", str(BOB_CERT), "-certfile",
                 str(SMIME / "pub-intermediate-ca.cert.pem"))
    assert sorted(keyimport.parse(p7).certificates) == sorted(expected)
    p7_der = openssl("pkcs7", "-outform", "DER", data=p7)
    assert sorted(keyimport.parse(p7_der).certificates) == sorted(expected)


def test_pkcs12_written_by_openssl_without_password():
    p12 = openssl("pkcs12", "-export", "-inkey", str(BOB_KEY), "-in", str(BOB_CERT), "-passout", "pass:")
    bundle = keyimport.parse(p12)
    assert len(bundle.certificates) == 1 and len(bundle.private_keys) == 1


def test_a_streamed_packet_length_in_a_key_is_refused():
    binary = subprocess.run(["gpg", "--dearmor"], input=(CORPUS / "keys/pgp/pub-pgp-bob-rsa3072.pub.asc").read_bytes(),
                            check=True, capture_output=True).stdout
    assert binary[0] & 0x03 != 3  # an old-format header with a definite length: make it indeterminate
    streamed = bytes([binary[0] | 0x03]) + binary[1 + (1 << (binary[0] & 0x03)):]
    with pytest.raises(keyimport.KeyFormatError, match="partial or indeterminate length in a key"):
        keyimport.parse(streamed)


def test_binary_openpgp_keyring(tmp_path):
    """Two keys dearmored by gpg into one binary keyring: both are found."""
    armored = [CORPUS / "keys/pgp/pub-pgp-bob-rsa3072.pub.asc", CORPUS / "keys/pgp/pub-pgp-alice-ed25519.pub.asc"]
    binary = b"".join(subprocess.run(["gpg", "--dearmor"], input=path.read_bytes(), check=True,
                                     capture_output=True).stdout for path in armored)
    keys = keyimport.parse(binary).pgp_keys
    assert [k.keyid for k in keys] == ["7135474EBE209041", "7D04AB6FAAA290C6"]
    # the same two as one armored text of two blocks
    both = b"".join(path.read_bytes() for path in armored)
    assert [k.keyid for k in keyimport.parse(both).pgp_keys] == ["7135474EBE209041", "7D04AB6FAAA290C6"]


def test_unprotected_copy_is_accepted_by_gpg(tmp_path):
    """The unprotected secret key built for the store is a valid OpenPGP key for GnuPG too."""
    path = CORPUS / "keys/pgp/pub-pgp-erin-cv25519.sec.asc"
    (key,) = keyimport.parse(path.read_bytes(), passphrase="correct horse battery staple").pgp_keys
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    done = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
                           "--passphrase", "", "--import"], input=key.to_bytes(), capture_output=True)
    assert done.returncode == 0, done.stderr
    listing = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--with-colons", "--list-secret-keys"],
                             check=True, capture_output=True, text=True).stdout
    assert "D6A4B878E48E7C9C2433D03BEF6ED1366E98B114" in listing


# ---------------------------------------------------------------------------- damaged input never crashes


def _samples() -> list[bytes]:
    samples = [path.read_bytes() for path in sorted((CORPUS / "keys").rglob("*"))
               if path.suffix in (".pem", ".p12", ".asc")]
    samples += keyimport.dearmor_keys((CORPUS / "keys/pgp/pub-pgp-gus-sq-cv25519.sec.asc").read_bytes())
    return samples


SAMPLES = _samples()


@st.composite
def damaged(draw) -> bytes:
    data = bytearray(SAMPLES[draw(st.integers(0, len(SAMPLES) - 1))])
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["cut", "flip", "drop"]))
        if action == "cut":
            data = data[:position]
        elif action == "flip":
            data[position] = draw(st.integers(0, 255))
        else:
            del data[position:position + draw(st.integers(1, 40))]
        if not data:
            break
    return bytes(data)


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory):
    with KeyStore.create(tmp_path_factory.mktemp("fuzz") / "f.db") as store:
        yield store


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=damaged())
def test_damaged_files_give_a_clear_error_or_a_key(fuzz_store, data):
    try:
        result = admin.import_file(fuzz_store, data, filename="x", password=b"corpus-public",
                                        passphrase="correct horse battery staple")
    except StoreError as exc:
        assert str(exc).startswith("x: ") and "\n" not in str(exc)
    else:
        assert result.added or result.already_present
    assert admin.integrity_check(fuzz_store) == []


def test_fingerprint_of_what_was_read_is_the_file_s():
    """Parsing does not alter certificates: the DER read from a PEM is byte for byte the file's."""
    der = keyimport.parse(BOB_CERT.read_bytes()).certificates[0]
    expected = x509.load_pem_x509_certificate(BOB_CERT.read_bytes()).fingerprint(hashes.SHA256())
    assert hashlib.sha256(der).digest() == expected


def test_certificate_with_a_damaged_version_field_is_a_clear_error(fuzz_store):
    """Found by the test above: cryptography raises InvalidVersion, which is no ValueError."""
    der = x509.load_pem_x509_certificate((CORPUS / "keys" / "foreign" / "pub-alice.cert.pem").read_bytes()).public_bytes(
        serialization.Encoding.DER)
    damaged = der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x06", 1)
    assert damaged != der
    pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(damaged) + b"-----END CERTIFICATE-----\n"
    for data, reason in ((damaged, "unknown DER structure"), (pem, "corrupt PEM block 'CERTIFICATE': .*version")):
        with pytest.raises(StoreError, match=f"^x: {reason}"):
            admin.import_file(fuzz_store, data, filename="x")


# ---------------------------------------------------------------------------- user IDs without a self-signature

PGP_KEYS = CORPUS / "keys" / "pgp"


def binary_key(name: str) -> bytes:
    return subprocess.run(["gpg", "--dearmor"], input=(PGP_KEYS / name).read_bytes(), check=True,
                          capture_output=True).stdout


def uid_packet(uid: bytes) -> bytes:
    return bytes([0xC0 | 13, len(uid)]) + uid


def signature_after_first_uid(key: bytes) -> bytes:
    """The self-signature packet (header included) that follows the key's first user ID."""
    packets = [(tag, start) for tag, _, start in keyimport._packets(key)] + [(None, len(key))]
    at = next(i for i, (tag, _) in enumerate(packets) if tag == 13) + 1
    return key[packets[at][1]:packets[at + 1][1]]


@pytest.mark.parametrize("signature", ["none", "replayed"])
def test_user_id_without_a_self_signature_is_dropped(signature):
    """Keyserver pollution: a user ID appended to bob's key, unsigned or with bob's self-signature of his own
    user ID replayed under it, names nobody (gpg: "no valid self-signature")."""
    bob = binary_key("pub-pgp-bob-rsa3072.pub.asc")
    extra = signature_after_first_uid(bob) if signature == "replayed" else b""
    bundle = keyimport.parse(bob + uid_packet(b"The CEO <ceo@corp-pub.example>") + extra)
    (key,) = bundle.pgp_keys
    assert key.user_ids == ["Bob Pgp <bob.pgp@corp-pub.example>"]
    replayed = [f"OpenPGP key {key.fingerprint}: 1 self-signature(s) dropped that do not verify (or cannot be"
                " checked)"] if signature == "replayed" else []
    assert bundle.warnings == [*replayed, f"OpenPGP key {key.fingerprint}: user ID 'The CEO <ceo@corp-pub.example>'"
                               " dropped: no valid self-signature"]
    assert b"ceo@corp-pub.example" not in key.to_bytes()


@pytest.mark.parametrize("name, passphrase", [
    ("pub-pgp-vic-v4-seq2.pub.asc", None), ("pub-pgp-vic-v4-seq2.sec.asc", None),  # Sequoia: pgpy's hashdata fails
    ("pub-pgp-gus-sq-cv25519.sec.asc", None), ("pub-pgp-bob-rsa3072.sec.asc", None),
    ("pub-pgp-erin-cv25519.sec.asc", "correct horse battery staple"), ("pub-pgp-alice-ed25519.pub.asc", None),
])
def test_self_signed_user_ids_are_kept(name, passphrase):
    bundle = keyimport.parse((PGP_KEYS / name).read_bytes(), passphrase=passphrase)
    (key,) = bundle.pgp_keys
    assert len(key.user_ids) == 1 and not [w for w in bundle.warnings if "dropped" in w]
