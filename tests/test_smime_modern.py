"""What today's S/MIME senders write by default, decrypted and verified through ``ciphermilter decrypt``.

The vectors of tests/vectors/smime-modern (make.sh, README.md there): OpenSSL 3.0 ``cms`` and ``smime``
with their defaults (DES-EDE3-CBC; to an EC certificate ECDH with the RFC 3217 3DES key wrap) and chosen
ciphers, to RSA, P-256, P-384, brainpoolP256r1 and brainpoolP384r1 certificates; gpgsm 2.2 and pyca's
PKCS7 builder (RSA: neither can encrypt to EC here); Bouncy Castle 1.72 for X25519/X448 key agreement
(RFC 8418) and Ed25519/Ed448 signatures (RFC 8419); sign-then-encrypt over bare-LF content (openssl).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec

from ciphermilter import mime
from ciphermilter.cli.main import main
from ciphermilter.core import pipeline as core
from ciphermilter.formats import keyfiles
from ciphermilter.formats.smime import cms, keywrap
from ciphermilter.store import admin
from ciphermilter.store.keystore import KeyStore
from conftest import info_of
from support.attack_messages import Tools
from support.agreement import through_decrypt, through_the_daemon

VECTORS = Path(__file__).parent / "vectors" / "smime-modern"
CONTENT = (VECTORS / "content.txt").read_bytes()
DOMAIN = "modern.example"
KEY_PAIRS = ("p256", "p384", "bp256", "bp384", "x25519", "x448", "ed25519", "ed448")  # rsa: from rsa.pem12

# Vector -> (its recipient, the content cipher the headers must name).
ENCRYPTED = {
    **{f"cms-default-{key}.eml": (key, "DES-EDE3-CBC") for key in ("rsa", "p256", "p384", "bp256", "bp384")},
    **{f"cms-aes256-{key}.eml": (key, "AES-256-CBC") for key in ("rsa", "p256", "p384", "bp256", "bp384")},
    **{f"cms-aes-128-gcm-{key}.eml": (key, "AES-128-GCM") for key in ("rsa", "p256", "p384", "bp256", "bp384")},
    "smime-default-rsa.eml": ("rsa", "DES-EDE3-CBC"),
    "smime-aes256-rsa.eml": ("rsa", "AES-256-CBC"),
    "pyca-default-rsa.eml": ("rsa", "AES-128-CBC"),
    "gpgsm-default-rsa.der": ("rsa", "AES-128-CBC"),
    "bc-x25519-sha256kdf-aes128.der": ("x25519", "AES-128-CBC"),
    "bc-x25519-sha256kdf-aes128gcm.der": ("x25519", "AES-128-GCM"),
    "bc-x448-sha512kdf-aes256.der": ("x448", "AES-256-CBC"),
}
# The key wrap OpenSSL 3 picks by default for an EC recipient (RFC 3217), and AES-192's, of the same KEK size.
DES3_WRAP, AES192_WRAP = "1.2.840.113549.1.9.16.3.6", "2.16.840.1.101.3.4.1.25"


def der_message(der: bytes, smime_type: str, recipient: str, sender: str = "sam@sender.example") -> bytes:
    """A CMS structure as the mail a client sends it in (gpgsm and Bouncy Castle write bare CMS)."""
    return (f"From: {sender}\r\nTo: {recipient}\r\nSubject: vector\r\nMIME-Version: 1.0\r\n".encode()
            + Tools.smime_entity(der, smime_type))


def vector_message(name: str) -> bytes:
    """The vector as Postfix hands it over: CRLF line ends (openssl writes LF)."""
    data = (VECTORS / name).read_bytes()
    if name.endswith(".der"):
        return der_message(data, "enveloped-data", f"{ENCRYPTED[name][0]}@{DOMAIN}")
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def envelope_of(message: bytes) -> core.Envelope:
    return core.Envelope(recipients=[mime.parse(message).get("To").strip()])


def store_cli(path: Path, *args: str):
    return CliRunner().invoke(main, ["--store", str(path), *args])


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> Path:
    """A closed store with every vector key, imported with ``keys import`` (RSA's from the PEM-armoured PKCS#12)."""
    path = tmp_path_factory.mktemp("modern") / "ciphermilter.db"
    with KeyStore.create(str(path)) as store:
        admin.add_domain(store, DOMAIN)
        admin.add_trust_anchor(store, keyfiles.parse((VECTORS / "ca.cert.pem").read_bytes()).certificates[0])
    pairs = [str(VECTORS / f"{key}.{part}.pem") for key in KEY_PAIRS for part in ("cert", "key")]
    result = store_cli(path, "keys", "import", str(VECTORS / "rsa.pem12"), "--password", "vector", *pairs)
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def store(store_path):
    with KeyStore.open(str(store_path)) as opened:
        yield opened


def decrypted(store_path: Path, message: bytes, tmp_path: Path) -> bytes:
    """What ``ciphermilter decrypt`` writes for the message to its To: address."""
    path = tmp_path / "message.eml"
    path.write_bytes(message)
    result = store_cli(store_path, "decrypt", "--rcpt", envelope_of(message).recipients[0], str(path))
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def headers_of(output: bytes) -> dict[str, str]:
    return {h.name: " ".join(h.value.split()) for h in mime.split_headers(output)[0]}


# ---------------------------------------------------------------------------- decryption


@pytest.mark.parametrize("name", sorted(ENCRYPTED))
def test_each_senders_default_decrypts_to_the_exact_plaintext(store_path, name, tmp_path):
    output = decrypted(store_path, vector_message(name), tmp_path)

    headers = headers_of(output)
    assert headers["X-CipherMail-Info-SMIME-Encrypted"] == "True"
    assert headers["X-CipherMail-Info-Encryption-Algorithm-0"] == ENCRYPTED[name][1]
    assert headers["Content-Type"] == "text/plain; charset=us-ascii"
    assert output.partition(b"\r\n\r\n")[2] == CONTENT.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("name", sorted(ENCRYPTED))
def test_the_decrypted_layer_is_the_plaintext_byte_for_byte(store, name):
    message = vector_message(name)
    outcome = core.process(message, envelope_of(message), store)

    assert outcome.error is None
    layer = outcome.report["smime"]["layers"][0]
    assert layer["content_sha256"] == hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture(scope="module")
def daemon(daemons, store_path):
    return daemons("modern", store_path)


@pytest.mark.usefixtures("bytes_on_the_wire")
@pytest.mark.parametrize("name", [*sorted(ENCRYPTED), "signed-lf-env-rsa.eml"])
def test_the_daemon_and_decrypt_agree(daemon, name, tmp_path):
    """Every tool's message, through the real daemon as Postfix drives it and through ``ciphermilter decrypt``."""
    message = vector_message(name)
    by_daemon, accepted = through_the_daemon(daemon, message, envelope_of(message).recipients)

    assert accepted == envelope_of(message).recipients
    assert by_daemon[0] == "delivered" and b"X-CipherMail-Info-SMIME-Encrypted: True" in by_daemon[1]
    assert through_decrypt(daemon, message, accepted, tmp_path) == by_daemon


# ---------------------------------------------------------------------------- the 3DES key wrap (RFC 3217)


def kari_of(info: asn1_cms.ContentInfo):
    return info["content"]["recipient_infos"][0].chosen


def default_p256() -> asn1_cms.ContentInfo:
    return asn1_cms.ContentInfo.load(mime.parse(vector_message("cms-default-p256.eml")).decoded_body())


def vector_key(name: str):
    return keyfiles.parse((VECTORS / f"{name}.key.pem").read_bytes()).private_keys[0]


def decrypt_engine(info: asn1_cms.ContentInfo, key_name: str) -> bytes:
    """The engine alone, with one private key for every recipient."""
    key = vector_key(key_name)
    layer = cms.open_enveloped(cms.load(info.dump(force=True)), max_recipients=4)
    content, _recipient = cms.decrypt(layer, lambda recipient: [(b"", key)])
    return bytes(content)


def test_openssls_default_to_an_ec_certificate_is_ecdh_with_the_3des_wrap():
    kari = kari_of(default_p256())
    assert kari["key_encryption_algorithm"]["algorithm"].dotted == "1.3.133.16.840.63.0.2"  # sha1kdf, stdDH
    assert asn1_cms.KeyEncryptionAlgorithm.load(kari["key_encryption_algorithm"]["parameters"].dump())[
        "algorithm"].dotted == DES3_WRAP
    assert decrypt_engine(default_p256(), "p256") == CONTENT


@pytest.mark.parametrize("position", [0, 7, 8, 20, 39])
def test_a_tampered_3des_wrapped_key_fails_closed(position):
    info = default_p256()
    encrypted_key = kari_of(info)["recipient_encrypted_keys"][0]["encrypted_key"]
    wrapped = bytearray(encrypted_key.native)
    assert len(wrapped) == 40
    wrapped[position] ^= 0x01
    encrypted_key.set(bytes(wrapped))
    with pytest.raises(cms.DecryptionFailed):
        decrypt_engine(info, "p256")


def test_the_checksum_is_what_refuses_a_tampered_wrapped_key():
    # The wrapped key is checked before any content is decrypted: every single-bit change of it fails.
    kek = bytes(range(24))
    with pytest.raises(ValueError, match="checksum"):
        keywrap.des3_key_unwrap(kek, bytes(40))
    for size in (0, 32, 39, 41, 48):
        with pytest.raises(ValueError, match="length"):
            keywrap.des3_key_unwrap(kek, bytes(size))


def test_the_cms_key_checksum_is_the_first_eight_bytes_of_sha1():
    key = bytes.fromhex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")  # any 24 bytes
    assert keywrap.cms_key_checksum(key) == hashlib.sha1(key).digest()[:8]


@pytest.mark.parametrize("other", ["another-p256", "p384", "bp256"])
def test_another_key_fails_without_a_claim(other):
    key = ec.generate_private_key(ec.SECP256R1()) if other == "another-p256" else vector_key(other)
    layer = cms.open_enveloped(cms.load(default_p256().dump()), max_recipients=4)
    with pytest.raises(cms.DecryptionFailed):
        cms.decrypt(layer, lambda recipient: [(b"", key)])


def with_wrap(info: asn1_cms.ContentInfo, wrap_oid: str) -> asn1_cms.ContentInfo:
    kari = kari_of(info)
    algorithm = kari["key_encryption_algorithm"]
    kari["key_encryption_algorithm"] = {
        "algorithm": algorithm["algorithm"].dotted,
        "parameters": asn1_cms.KeyEncryptionAlgorithm({"algorithm": wrap_oid})}
    return asn1_cms.ContentInfo.load(info.dump(force=True))


def test_a_3des_wrap_relabelled_as_aes_wrap_fails_closed():
    with pytest.raises(cms.DecryptionFailed):
        decrypt_engine(with_wrap(default_p256(), AES192_WRAP), "p256")


def test_an_aes_wrap_relabelled_as_3des_wrap_fails_closed():
    info = asn1_cms.ContentInfo.load(mime.parse(vector_message("cms-aes256-p256.eml")).decoded_body())
    with pytest.raises(cms.DecryptionFailed):
        decrypt_engine(with_wrap(info, DES3_WRAP), "p256")


def with_scheme(name: str, scheme: str) -> asn1_cms.ContentInfo:
    info = asn1_cms.ContentInfo.load(mime.parse(vector_message(name)).decoded_body())
    kari = kari_of(info)
    kari["key_encryption_algorithm"] = {"algorithm": scheme,
                                        "parameters": kari["key_encryption_algorithm"]["parameters"]}
    return asn1_cms.ContentInfo.load(info.dump(force=True))


@pytest.mark.parametrize(("name", "key", "scheme"), [
    ("cms-default-p256.eml", "p256", "1.3.132.1.11.1"),  # the sha1kdf scheme relabelled sha256kdf
    ("bc-x25519-sha256kdf-aes128.der", "x25519", "1.3.132.1.11.2"),  # sha256kdf relabelled sha384kdf
])
def test_a_relabelled_kdf_scheme_fails_closed(name, key, scheme):
    with pytest.raises(cms.DecryptionFailed):
        decrypt_engine(with_scheme(name, scheme), key)


def test_stddh_relabelled_cofactordh_is_the_same_agreement_on_a_cofactor_1_curve():
    # P-256's cofactor is 1: both schemes give the same secret, the same KEK, the same content (no claim gained)
    assert decrypt_engine(with_scheme("cms-default-p256.eml", "1.3.133.16.840.63.0.3"), "p256") == CONTENT


def test_a_key_wrap_we_do_not_implement_is_named_in_the_reason(store):
    info = with_wrap(default_p256(), "1.2.840.113549.1.9.16.3.7")
    message = der_message(info.dump(), "enveloped-data", f"p256@{DOMAIN}")

    found = info_of(core.process(message, envelope_of(message), store))
    assert found["SMIME-Decryption-Failed-0"] == "unsupported key wrap id-alg-CMSRC2wrap"


def test_a_3des_content_relabelled_as_aes192_fails_closed():
    info = default_p256()
    info["content"]["encrypted_content_info"]["content_encryption_algorithm"] = {
        "algorithm": "aes192_cbc",
        "parameters": asn1_core.OctetString(bytes(16))}
    with pytest.raises(cms.DecryptionFailed):
        decrypt_engine(asn1_cms.ContentInfo.load(info.dump(force=True)), "p256")


@pytest.mark.parametrize("keep", [0.5, -1], ids=["half", "all-but-one-byte"])
@pytest.mark.parametrize("name", ["cms-default-p256.eml", "cms-default-bp384.eml", "bc-x448-sha512kdf-aes256.der"])
def test_a_truncated_message_gets_a_reason_never_a_crash(store, name, keep):
    message = vector_message(name)
    der = mime.parse(message).decoded_body()
    cut = der[:int(len(der) * keep)] if keep > 0 else der[:keep]
    outcome = core.process(der_message(cut, "enveloped-data", envelope_of(message).recipients[0]),
                           envelope_of(message), store)

    assert outcome.error is None
    assert info_of(outcome) == {"SMIME-Encrypted": "True", "SMIME-Decryption-Failed-0": "malformed CMS"}


# ---------------------------------------------------------------------------- X25519 and X448 (RFC 8418)


def bc_info(name: str) -> asn1_cms.ContentInfo:
    return asn1_cms.ContentInfo.load((VECTORS / name).read_bytes())


def test_bouncy_castles_x25519_message_is_rfc_8418():
    kari = kari_of(bc_info("bc-x25519-sha256kdf-aes128.der"))
    assert kari["originator"].chosen["algorithm"]["algorithm"].dotted == "1.3.101.110"
    assert kari["key_encryption_algorithm"]["algorithm"].dotted == "1.3.132.1.11.1"  # stdDH, sha256kdf
    assert decrypt_engine(bc_info("bc-x25519-sha256kdf-aes128.der"), "x25519") == CONTENT


def test_an_x25519_point_of_small_order_fails_closed():
    info = bc_info("bc-x25519-sha256kdf-aes128.der")
    kari_of(info)["originator"].chosen["public_key"] = bytes(32)  # the all-zero shared secret (RFC 7748 6.1)
    with pytest.raises(cms.DecryptionFailed):
        decrypt_engine(asn1_cms.ContentInfo.load(info.dump(force=True)), "x25519")


def test_an_originator_key_of_another_curve_is_refused_before_the_key_is_used():
    info = bc_info("bc-x25519-sha256kdf-aes128.der")
    kari_of(info)["originator"].chosen["algorithm"] = {"algorithm": "1.3.101.111"}  # X448
    with pytest.raises(cms.UnsupportedAlgorithm, match="originator key 1.3.101.111"):
        decrypt_engine(asn1_cms.ContentInfo.load(info.dump(force=True)), "x25519")


def test_the_x448_key_does_not_open_the_x25519_message():
    with pytest.raises(cms.UnsupportedAlgorithm):
        decrypt_engine(bc_info("bc-x25519-sha256kdf-aes128.der"), "x448")


def test_the_hkdf_schemes_no_tool_here_writes_are_refused_by_name(store):
    info = bc_info("bc-x25519-sha256kdf-aes128.der")
    kari = kari_of(info)
    kari["key_encryption_algorithm"] = {"algorithm": "1.2.840.113549.1.9.16.3.19",
                                        "parameters": kari["key_encryption_algorithm"]["parameters"]}
    message = der_message(info.dump(force=True), "enveloped-data", f"x25519@{DOMAIN}")
    outcome = core.process(message, envelope_of(message), store)

    assert info_of(outcome)["SMIME-Decryption-Failed-0"] == (
        "unsupported key agreement dhSinglePass-stdDH-hkdf-sha256-scheme")


# ---------------------------------------------------------------------------- Ed25519 and Ed448 (RFC 8419)


@pytest.mark.parametrize("signer", ["ed25519", "ed448"])
def test_bouncy_castles_eddsa_signature_verifies(store, signer):
    der = (VECTORS / f"bc-sig-{signer}.der").read_bytes()
    message = der_message(der, "signed-data", f"rsa@{DOMAIN}", sender=f"{signer}@{DOMAIN}")
    outcome = core.process(message, envelope_of(message), store)

    info = info_of(outcome)
    assert info["Signer-Verified-0-0"] == "True", info
    assert info["Signer-Email-0-0"] == f"{signer}@{DOMAIN}"
    assert info["Signer-Trusted-0-0"] == "True"
    assert "Signer-Mismatch" not in info


@pytest.mark.parametrize("signer", ["ed25519", "ed448"])
def test_an_eddsa_signature_over_other_bytes_is_not_verified(store, signer):
    info = asn1_cms.ContentInfo.load((VECTORS / f"bc-sig-{signer}.der").read_bytes())
    info["content"]["encap_content_info"]["content"] = CONTENT.replace(b"two", b"2wo")
    message = der_message(info.dump(force=True), "signed-data", f"rsa@{DOMAIN}", sender=f"{signer}@{DOMAIN}")
    found = info_of(core.process(message, envelope_of(message), store))

    assert found["Signer-Verified-0-0"] == "False"
    assert found["Signer-Verification-Info-0-0"] == "message digest mismatch"


def test_ed448s_digest_must_be_shake256_of_512_bits():
    info = asn1_cms.ContentInfo.load((VECTORS / "bc-sig-ed448.der").read_bytes())
    signer_info = info["content"]["signer_infos"][0]
    signer_info["digest_algorithm"] = {"algorithm": "shake256_len", "parameters": asn1_core.Integer(256)}
    layer = cms.open_signed(cms.load(info.dump(force=True)), max_signers=2)
    [signer] = cms.verify(layer, CONTENT, lambda lookup: [])

    assert not signer.verified
    assert signer.reason == "unsupported digest shake256_len"


def test_signed_with_ed25519_then_encrypted_to_x25519(store_path, tmp_path):
    der = (VECTORS / "bc-sig-ed25519-env-x25519.der").read_bytes()
    output = decrypted(store_path, der_message(der, "enveloped-data", f"x25519@{DOMAIN}",
                                               sender=f"ed25519@{DOMAIN}"), tmp_path)
    headers = headers_of(output)

    assert headers["X-CipherMail-Info-Encryption-Algorithm-0"] == "AES-128-CBC"
    assert headers["X-CipherMail-Info-Signer-Verified-0-1"] == "True"
    # the opaque signature comes out detached (opaque_to_detached): the signed entity is its first part
    assert mime.parse(output).parts[0].raw == CONTENT


# ---------------------------------------------------------------------------- sign, then encrypt, bare LF


def test_openssl_verifies_the_lf_signature_only_over_the_lf_bytes():
    """The evidence, recorded by make.sh: OpenSSL checks the exact bytes (-binary) or their CRLF form (text)."""
    verdicts = dict(line.rsplit(": ", 1) for line in (VECTORS / "openssl-verify.txt").read_text().splitlines())
    assert verdicts == {
        "lf-signed -binary": "ok", "lf-signed text": "fails",
        "crlf-signed-sent-lf -binary": "fails", "crlf-signed-sent-lf text": "ok",
        "lf-signed-made-crlf -binary": "fails", "lf-signed-made-crlf text": "fails"}


# vector -> Signer-Verified: LF signed and sent; CRLF signed, sent LF (NSS); LF signed, made CRLF (an attacker)
SIGNED_THEN_ENCRYPTED = {
    "signed-lf-env-rsa.eml": "True",
    "signed-lf-env-p256.eml": "True",
    "opaque-lf-env-p256.eml": "True",
    "signed-crlf-env-lf-rsa.eml": "True",
    "signed-lf-made-crlf-env-rsa.eml": "False",
}


@pytest.mark.parametrize("name", sorted(SIGNED_THEN_ENCRYPTED))
def test_a_signature_is_verified_over_exactly_the_bytes_signed(store_path, name, tmp_path):
    headers = headers_of(decrypted(store_path, vector_message(name), tmp_path))

    assert headers["X-CipherMail-Info-SMIME-Encrypted"] == "True"
    assert headers["X-CipherMail-Info-Signer-Verified-0-1"] == SIGNED_THEN_ENCRYPTED[name]
    if SIGNED_THEN_ENCRYPTED[name] == "False":
        assert headers["X-CipherMail-Info-Signer-Verification-Info-0-1"] == "message digest mismatch"
        assert headers["X-CipherMail-Info-Signer-Mismatch"] == "True"  # no verified signer is the sender
    else:
        assert "X-CipherMail-Info-Signer-Mismatch" not in headers


def test_lf_bytes_are_delivered_in_crlf_and_the_lf_signature_still_holds(store, tmp_path):
    message = vector_message("signed-lf-env-rsa.eml")
    outcome = core.process(message, envelope_of(message), store)
    body = outcome.plan.body if isinstance(outcome.plan.body, bytes) else outcome.plan.body.read()

    assert b"Signed with LF line ends.\r\nSecond line.\r\n" in body
    assert b"\n" not in body.replace(b"\r\n", b"")


# ---------------------------------------------------------------------------- PEM-armoured PKCS#12


def test_keys_import_reads_a_pem_armoured_pkcs12(store):
    listed = {email for key in admin.list_keys(store) if key.get("private_key") for email in key["emails"]}
    assert f"rsa@{DOMAIN}" in listed


@pytest.mark.parametrize(("password", "error"), [(None, "password protected"), (b"wrong", "wrong PKCS#12 password")])
def test_a_pem_armoured_pkcs12_needs_its_password(password, error):
    with pytest.raises(keyfiles.KeyFormatError, match=error):
        keyfiles.parse((VECTORS / "rsa.pem12").read_bytes(), password=password)


def test_a_damaged_pem_armoured_pkcs12_is_refused_in_words():
    text = (VECTORS / "rsa.pem12").read_bytes()
    lines = text.splitlines(keepends=True)
    damaged = b"".join(lines[:3] + lines[5:])  # two lines of the DER gone
    with pytest.raises(keyfiles.KeyFormatError, match="PKCS#12|base64"):
        keyfiles.parse(damaged, password=b"vector")
