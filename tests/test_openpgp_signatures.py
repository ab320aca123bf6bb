"""OpenPGP signatures read and verified by our own engine (issue 16): v3, v4 and v6 (RFC 9580), by the real tools.

Vectors: tests/vectors/openpgp-signatures (gpg 2.2, sq 0.27, pysequoia; RFC 9580 Appendix A), made by its
make_vectors.sh, each through ``ciphermilter decrypt`` with its key imported by the admin, and through the
engine for what the headers do not show (version, salt). The attacks are in test_openpgp_signature_attacks.py.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ciphermilter.cli.main import main
from ciphermilter.formats.openpgp import engine as openpgp
from ciphermilter.formats.openpgp.keys import parse_key
from ciphermilter.formats.openpgp.signature import parse_signature
from ciphermilter.mime import split_headers
from ciphermilter.store import admin
from ciphermilter.store.keystore import KeyStore
from support.agreement import through_decrypt, through_the_daemon
from support.pgp_signatures import PART, VECTORS, key_ids, signature_body, vector
from support.to_bob import KEYS, PGP_BOB_UID

HEAD = b"From: sender@sig.example\r\nTo: bob@corp-pub.example\r\nSubject: signed\r\nMIME-Version: 1.0\r\n"
GPG = ["rsa", "dsa", "p256", "p384", "bp256", "bp384", "ed25519"]
V4_DETACHED = [f"gpg-{name}" for name in GPG] + ["sq"]
V4_SHAPES = [(f"gpg-{name}", shape) for name in ("rsa", "ed25519") for shape in ("inline", "clear", "signenc")]
V4_SHAPES += [("sq", shape) for shape in ("inline", "clear", "signenc")]
V6_DETACHED = ["v6", "v6-ed448", "v6-p384"]
V6_SHAPES = [("v6", shape) for shape in ("inline", "clear", "signenc")] + [("rfc9580-a6", "clear"),
                                                                          ("rfc9580-a7", "inline")]


def pgp_mime_signed(signature: bytes, part: bytes = PART) -> bytes:
    return (HEAD + b'Content-Type: multipart/signed; micalg=pgp-sha256; protocol="application/pgp-signature";'
            b' boundary="sig"\r\n\r\n--sig\r\n' + part + b"\r\n--sig\r\nContent-Type: application/pgp-signature\r\n\r\n"
            + signature.replace(b"\n", b"\r\n") + b"\r\n--sig--\r\n")


def text_message(body: bytes) -> bytes:
    return HEAD + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body.replace(b"\n", b"\r\n")


def message_for(name: str, shape: str) -> bytes:
    data = vector(f"{name}.{shape}.asc")
    return pgp_mime_signed(data) if shape == "detached" else text_message(data)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Every v4 signer's public key and bob's secret key, imported by the admin; corp-pub.example internal."""
    with KeyStore.create(tmp_path_factory.mktemp("signatures") / "store.db") as store:
        for path in [*VECTORS.glob("*.pub.asc"), KEYS / "pgp" / "pub-pgp-bob-rsa3072.sec.asc"]:
            admin.import_file(store, path.read_bytes())
        admin.add_domain(store, "corp-pub.example")
        yield store


@pytest.fixture(scope="module")
def keyring(store):
    return openpgp.keyring_for(store)


def decrypt_headers(store, message: bytes, tmp_path) -> dict[str, str]:
    path = tmp_path / "message.eml"
    path.write_bytes(message)
    result = CliRunner().invoke(main, ["--store", str(store.path), "decrypt", "--rcpt", PGP_BOB_UID,
                                       str(path)])
    assert result.exit_code == 0, result.output
    prefix = "X-CipherMail-Info-"
    return {h.name[len(prefix):]: h.value.strip() for h in split_headers(result.stdout_bytes)[0]
            if h.name.startswith(prefix)}


SHAPES = [(n, "detached") for n in V4_DETACHED + V6_DETACHED] + V4_SHAPES + V6_SHAPES


@pytest.mark.parametrize(("name", "shape"), SHAPES, ids=[f"{name}-{shape}" for name, shape in SHAPES])
def test_real_signature_verifies_through_decrypt(store, tmp_path, name, shape):
    info = decrypt_headers(store, message_for(name, shape), tmp_path)
    assert info["PGP-Signature-Valid"] == "True", info
    key = "rfc9580-a3" if name.startswith("rfc") else name
    assert info["PGP-Signer-KeyID"] in key_ids(key)
    assert "PGP-Signature-Failure" not in info
    # the RFC's sample key has no user ID; every other signer's certified user ID is read (brainpool too)
    assert info.get("PGP-Signer-Email") == (None if key == "rfc9580-a3" else f"{name}@sig.example")


def test_sha1_in_a_v4_signature_is_accepted_as_before(keyring):
    """pgpy accepted SHA-1 in data signatures (it only warned): the policy is kept for v4."""
    assert parse_signature(signature_body("gpg-rsa.sha1.asc")).hash_name == "SHA-1"
    (result,) = openpgp.verify_detached(PART, openpgp.dearmor(vector("gpg-rsa.sha1.asc")).data, keyring)
    assert result.valid and result.keyid in key_ids("gpg-rsa")


@pytest.mark.parametrize("name", V6_DETACHED)
def test_v6_detached_signature_verifies(keyring, name):
    signature = parse_signature(signature_body(f"{name}.detached.asc"))
    assert signature.version == 6 and len(signature.salt) in (16, 32)
    (result,) = openpgp.verify_detached(PART, openpgp.dearmor(vector(f"{name}.detached.asc")).data, keyring)
    assert result.valid, result.reason
    assert result.keyid == signature.issuer_fingerprint[:8].hex().upper()
    assert result.emails == [f"{name}@sig.example"]


@pytest.mark.parametrize("name", ["v6.inline.asc", "v6.signenc.asc", "rfc9580-a7.inline.asc"])
def test_v6_one_pass_signed_message_verifies(keyring, name):
    opened = openpgp.open_message(openpgp.dearmor(vector(name)).data, keyring, max_output=1 << 20)
    assert opened.failure is None
    [result] = opened.signatures
    assert result.valid, result.reason
    assert result.keyid in key_ids("rfc9580-a3" if name.startswith("rfc") else "v6")


@pytest.mark.parametrize("name", ["v6.clear.asc", "rfc9580-a6.clear.asc"])
def test_v6_cleartext_signature_verifies(keyring, name):
    cleartext = openpgp.read_cleartext(vector(name), keyring)
    [result] = cleartext.signatures
    assert result.valid, result.reason


def test_rfc9580_sample_key_and_signature_are_the_rfc_s():
    """Appendix A.3's fingerprint and A.7's signature: a v6 Ed25519 (27) SHA-512 text signature, 32-octet salt."""
    primary = parse_key(openpgp.dearmor(vector("rfc9580-a3.pub.asc")).data).primary
    assert primary.version == 6 and primary.fingerprint.hex().upper() == "CB186C4F0609A697E4D52DFA6C722B0C1F1E27C18A56708F6525EC27BAD9ACC9"
    body = [p.body for p in openpgp.packets(openpgp.dearmor(vector("rfc9580-a7.inline.asc")).data) if p.tag == 2][0]
    signature = parse_signature(body)
    assert (signature.version, signature.signature_type, signature.algorithm) == (6, 1, 27)
    assert signature.hash_name == "SHA-512" and len(signature.salt) == 32


def test_signature_by_an_expired_key_is_not_valid(store, tmp_path):
    """Decided: a key expired when the message arrives makes no valid signature, however good the signature
    was when made (pgpy's rule, kept): the headers say so in words."""
    info = decrypt_headers(store, message_for("gpg-expired", "detached"), tmp_path)
    assert info["PGP-Signature-Valid"] == "False"
    assert info["PGP-Signature-Failure"] == "signer key expired"
    assert info["PGP-Signer-KeyID"] in key_ids("gpg-expired")


@pytest.fixture(scope="module")
def daemon(daemons, store):
    return daemons("signatures", store.path)


@pytest.mark.usefixtures("bytes_on_the_wire")
@pytest.mark.parametrize(("name", "shape"), SHAPES, ids=[f"{name}-{shape}" for name, shape in SHAPES])
def test_the_daemon_verifies_as_ciphermilter_decrypt_does(daemon, tmp_path, name, shape):
    """Every signature, through the real daemon as Postfix drives it and through ``ciphermilter decrypt``."""
    message = message_for(name, shape)
    by_daemon, accepted = through_the_daemon(daemon, message, [PGP_BOB_UID])
    assert accepted == [PGP_BOB_UID]
    assert by_daemon[0] == "delivered" and b"X-CipherMail-Info-PGP-Signature-Valid: True\r\n" in by_daemon[1]
    assert through_decrypt(daemon, message, accepted, tmp_path) == by_daemon
