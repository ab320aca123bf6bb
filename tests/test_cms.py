"""The CMS engine on vectors made by ``openssl cms`` (tests/vectors/smime/make.sh)."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ciphermilter.core.contract import LimitExceeded
from ciphermilter.formats import ids
from ciphermilter.formats.smime import asn1, ber, cms, recipients, signed
from support.cms_vectors import (CONTENT, ENVELOPED_CASES, PemKeys, certificate_der, der, enveloped_ders, matches,
                                  private_key)


# Vector -> content cipher the engine must name.
ENVELOPED = {
    "env-rsa15-aes128": "AES-128-CBC",
    "env-rsa15-aes192": "AES-192-CBC",
    "env-rsa15-des3": "DES-EDE3-CBC",
    "env-rsa15-ski": "AES-256-CBC",
    "env-oaep-sha1": "AES-256-CBC",
    "env-oaep-sha256": "AES-256-CBC",
    "env-oaep-sha384": "AES-256-CBC",
    "env-oaep-sha512": "AES-256-CBC",
    "env-oaep-sha256-mgf1-sha1": "AES-256-CBC",
    "env-ecdh-p256": "AES-128-CBC",
    "env-ecdh-p384": "AES-256-CBC",
    "env-ecdh-p521": "AES-256-CBC",
    "env-ecdh-p256-cofactor": "AES-128-CBC",
    "env-ecdh-p256-wrap256": "AES-128-CBC",
    "env-ecdh-p384-wrap-pad": "AES-256-CBC",
    "env-gcm-aes128": "AES-128-GCM",
    "env-gcm-aes256": "AES-256-GCM",
    "env-two-recipients": "AES-256-CBC",
}
# Vector -> digest algorithm of its SignerInfo. sig-ed25519 is assembled by make_ed25519.py (RFC 8419),
# since OpenSSL 3.0 can neither make nor check Ed25519 CMS signatures.
SIGNED = {
    "sig-rsa-sha256": "sha256",
    "sig-rsa-sha1": "sha1",
    "sig-rsa-sha512": "sha512",
    "sig-rsa-pss": "sha256",
    "sig-ecdsa-p256-sha384": "sha384",
    "sig-ecdsa-p521-sha512": "sha512",
    "sig-ed25519": "sha512",
    "sig-rsa-noattr": "sha256",
    "sig-rsa-opaque": "sha256",
    "sig-rsa-keyid": "sha256",
    "sig-server": "sha256",
    "sig-undernotca": "sha256",
}


def open_layer(data: bytes) -> cms.EnvelopedLayer:
    return cms.open_enveloped(cms.load(data), max_recipients=10)


def with_recipient_change(data: bytes, change) -> bytes:
    """The vector re-encoded after ``change(first RecipientInfo)``: a damaged but well-formed structure."""
    info = asn1_cms.ContentInfo.load(data)
    change(info["content"]["recipient_infos"][0].chosen)
    return info.dump(force=True)


@pytest.mark.parametrize("name", sorted(ENVELOPED), ids=sorted(ENVELOPED))
def test_enveloped_vector_decrypts(name):
    layer = open_layer(der(name))
    content, recipient = cms.decrypt(layer, PemKeys().find)
    assert content == CONTENT
    assert layer.cipher == ENVELOPED[name]
    assert layer.authenticated == ("gcm" in name)
    assert recipient.kind == ("kari" if "ecdh" in name or name == "env-gcm-aes256" else "ktri")


def test_recipient_identifiers_follow_the_spec():
    ski_layer = open_layer(der("env-rsa15-ski"))
    ski = asn1_x509.Certificate.load(certificate_der("rsa")).key_identifier
    assert [r.text for r in ski_layer.recipients] == [f"ski={ski.hex().upper()}"]
    two = open_layer(der("env-two-recipients"))
    serials = [asn1_x509.Certificate.load(certificate_der(n)).serial_number for n in ("other", "rsa")]
    # RecipientInfos is a SET OF: the DER order, not the command line order, is the CMS order.
    assert sorted(r.text for r in two.recipients) == sorted(
        f"issuer=CN=Vector Issuing CA,O=Vector Org; serial={format(s, 'X')}" for s in serials)
    assert [r.index for r in two.recipients] == [0, 1]


def test_identifiers_read_from_the_memo_are_the_parsed_ones_and_each_recipient_gets_its_own():
    name = "env-two-recipients"
    first = open_layer(der(name)).recipients
    hits = asn1.identify_encoded.cache_info().hits
    again = open_layer(der(name)).recipients
    assert asn1.identify_encoded.cache_info().hits >= hits + len(first)
    assert [r.lookup for r in again] == [r.lookup for r in first]
    assert [(r.text, r.algorithm) for r in again] == [(r.text, r.algorithm) for r in first]
    rid = asn1_cms.ContentInfo.load(der(name))["content"]["recipient_infos"][0].chosen["rid"]
    changed = asn1.identify(rid)
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.text = "changed"  # a caller cannot change what the memo holds
    assert asn1.identify(rid).text == first[0].text


def test_an_unreadable_identifier_fails_every_time_it_is_read():
    broken = asn1_cms.IssuerAndSerialNumber({"issuer": asn1_x509.Name.build({"common_name": "x"}),
                                             "serial_number": 1}).dump()[:-1]  # serial cut short
    entries = asn1.identify_encoded.cache_info().currsize
    for _ in range(2):
        with pytest.raises(asn1.PARSE_ERRORS):
            asn1.identify_encoded(asn1_cms.RecipientIdentifier, broken)
    assert asn1.identify_encoded.cache_info().currsize == entries  # nothing kept for it


@pytest.mark.parametrize("name", ["rsa", "p256"])
def test_certificate_identifiers_are_asn1cryptos(name):
    cert_der = certificate_der(name)
    cert = asn1_x509.Certificate.load(cert_der)
    assert signed._certificate_id(cert_der, by_ski=True) == cert.key_identifier
    assert signed._certificate_id(cert_der, by_ski=False) == (cert.serial_number, ids.name_key(cert.issuer))
    assert signed._public_key(cert_der).public_numbers() == x509.load_der_x509_certificate(
        cert_der).public_key().public_numbers()


def test_every_recipient_is_tried_until_one_key_works():
    layer = open_layer(der("env-two-recipients"))
    second = next(n for n in ("other", "rsa") if matches(certificate_der(n), layer.recipients[1]))
    keys = PemKeys(names=(second,))  # the key of the second recipient only
    content, recipient = cms.decrypt(layer, keys.find)
    assert content == CONTENT
    assert recipient.index == 1
    assert [r.index for r in keys.asked] == [0, 1]


def test_no_matching_key_is_key_not_found():
    with pytest.raises(cms.KeyNotFound):
        cms.decrypt(open_layer(der("env-rsa15-aes128")), PemKeys(names=("other",)).find)


@pytest.mark.parametrize("name, cipher", [("env-rc2", "RC2-CBC"), ("env-des", "DES-CBC")], ids=["rc2", "des"])
def test_legacy_cipher_is_refused_before_any_key_is_used(name, cipher):
    keys = PemKeys()
    layer = open_layer(der(name))
    assert layer.cipher == cipher
    with pytest.raises(cms.UnsupportedAlgorithm) as raised:
        cms.decrypt(layer, keys.find)
    assert raised.value.reason == f"unsupported content cipher {cipher}"
    assert keys.asked == []


def _wrong_key_failure(data: bytes) -> cms.CmsError:
    """Decrypt with the certificate of the recipient but the private key of someone else."""
    other = private_key("other")
    with pytest.raises(cms.CmsError) as raised:
        cms.decrypt(open_layer(data), lambda recipient: [(b"", other)])
    return raised.value


def _right_key_failure(data: bytes) -> cms.CmsError:
    with pytest.raises(cms.CmsError) as raised:
        cms.decrypt(open_layer(data), PemKeys().find)
    return raised.value


def _raw_rsa(block: bytes) -> bytes:
    """RSA-encrypt ``block`` for the rsa vector key with no padding of our own."""
    public = private_key("rsa").public_key().public_numbers()
    value = pow(int.from_bytes(block, "big"), public.e, public.n)
    return value.to_bytes(256, "big")


BAD_KEY_TRANSPORT = {
    # Not a PKCS#1 v1.5 block at all.
    "bad-padding": b"\x00\x07" + b"\x55" * 254,
    # Valid PKCS#1 v1.5 padding around a 5-byte key: the AES key size check fails.
    "short-key": b"\x00\x02" + b"\x11" * 244 + b"\x00" + b"\x22" * 9,
}


@pytest.mark.parametrize("damage", sorted(BAD_KEY_TRANSPORT), ids=sorted(BAD_KEY_TRANSPORT))
def test_bad_padding_and_wrong_key_give_one_identical_outcome(damage):
    vector = der("env-rsa15-aes128")
    wrong_key = _wrong_key_failure(vector)

    def replace_key(ktri):
        ktri["encrypted_key"] = _raw_rsa(BAD_KEY_TRANSPORT[damage])

    damaged = _right_key_failure(with_recipient_change(vector, replace_key))
    assert type(damaged) is type(wrong_key) is cms.DecryptionFailed
    assert damaged.reason == wrong_key.reason == "decryption failed"


def test_corrupt_oaep_block_is_the_same_failure():
    def flip(ktri):
        key = bytearray(ktri["encrypted_key"].native)
        key[10] ^= 1
        ktri["encrypted_key"] = bytes(key)

    assert _right_key_failure(with_recipient_change(der("env-oaep-sha256"), flip)).reason == "decryption failed"


def _flip_gcm(data: bytes, field: str) -> bytes:
    info = asn1_cms.ContentInfo.load(data)
    content = info["content"]
    if field == "mac":
        mac = bytearray(content["mac"].native)
        mac[0] ^= 1
        content["mac"] = bytes(mac)
    else:
        encrypted = content["auth_encrypted_content_info"]
        body = bytearray(encrypted["encrypted_content"].native)
        body[0] ^= 1
        encrypted["encrypted_content"] = bytes(body)
    return info.dump(force=True)


@pytest.mark.parametrize("field", ["mac", "ciphertext"])
def test_gcm_tag_failure(field):
    damaged = _flip_gcm(der("env-gcm-aes128"), field)
    failure = _right_key_failure(damaged)
    assert isinstance(failure, cms.DecryptionFailed)
    assert failure.reason == _wrong_key_failure(der("env-gcm-aes128")).reason


def _gcm_tag_cut_to(data: bytes, length: int) -> bytes:
    """The message with its GCM tag cut to ``length`` bytes and icv_len saying so: still valid GCM for that length."""
    info = asn1_cms.ContentInfo.load(data)
    content = info["content"]
    content["mac"] = content["mac"].native[:length]
    algorithm = content["auth_encrypted_content_info"]["content_encryption_algorithm"]
    parameters = asn1.GcmParameters.load(algorithm["parameters"].dump())
    algorithm["parameters"] = asn1.GcmParameters({"nonce": parameters["nonce"].native, "icv_len": length})
    return info.dump(force=True)


def test_a_gcm_tag_of_12_bytes_is_accepted_and_a_shorter_one_refused():
    assert cms.decrypt(open_layer(_gcm_tag_cut_to(der("env-gcm-aes128"), 12)), PemKeys().find)[0] == CONTENT
    failure = _right_key_failure(_gcm_tag_cut_to(der("env-gcm-aes128"), 8))
    assert isinstance(failure, cms.DecryptionFailed)


@pytest.mark.parametrize("name", ["env-ecdh-p256", "env-ecdh-p384", "env-ecdh-p521"])
def test_ecdh_with_another_key_of_the_curve_fails_cleanly(name):
    curve = private_key(name.rsplit("-", 1)[1]).curve
    stranger = ec.generate_private_key(curve)
    with pytest.raises(cms.DecryptionFailed):
        cms.decrypt(open_layer(der(name)), lambda recipient: [(b"", stranger)])


@pytest.mark.parametrize("ukm", [None, b"\x01" * 64], ids=["no-ukm", "ukm"])
def test_shared_info_is_the_rfc_5753_encoding(ukm):
    wrap = bytes.fromhex("300b0609608648016503040105")  # id-aes128-wrap, no parameters
    entity_u_info = b"" if ukm is None else b"\xa0\x42\x04\x40" + ukm  # [0] EXPLICIT OCTET STRING
    supp_pub_info = b"\xa2\x06\x04\x04\x00\x00\x00\x80"  # [2] EXPLICIT OCTET STRING: 128 bits
    body = wrap + entity_u_info + supp_pub_info
    assert recipients.shared_info(wrap, ukm, 16) == b"\x30" + bytes([len(body)]) + body


def test_rsa_key_for_an_ecdh_recipient_is_unsupported_not_failed():
    with pytest.raises(cms.UnsupportedAlgorithm):
        cms.decrypt(open_layer(der("env-ecdh-p256")), lambda recipient: [(b"", private_key("rsa"))])


@pytest.mark.parametrize("cut", [1, 20, 200])
def test_truncated_structure_is_malformed(cut):
    with pytest.raises(cms.MalformedCms):
        cms.load(der("env-rsa15-aes128")[:-cut])


def test_junk_is_malformed():
    with pytest.raises(cms.MalformedCms):
        cms.load(b"\x30\x03\x02\x01")
    with pytest.raises(cms.MalformedCms):
        cms.load(der("env-rsa15-aes128") + b"\x00")


def test_recipient_limit():
    with pytest.raises(LimitExceeded, match="^more than 1 recipients in one layer$"):
        cms.open_enveloped(cms.load(der("env-two-recipients")), max_recipients=1)


# ---------------------------------------------------------------- signatures


def open_signature(name: str) -> cms.SignedLayer:
    return cms.open_signed(cms.load(der(name)), max_signers=5)


def no_store(lookup: dict) -> list:
    return []


@pytest.mark.parametrize("name", sorted(SIGNED), ids=sorted(SIGNED))
def test_signature_vector_verifies(name):
    layer = open_signature(name)
    assert layer.content == (CONTENT if name == "sig-rsa-opaque" else None)
    (signer,) = cms.verify(layer, CONTENT, no_store)
    assert signer.verified, signer.reason
    assert signer.reason is None
    assert signer.certificate in layer.certificates
    assert signer.digest == SIGNED[name]


@pytest.mark.parametrize("name", sorted(SIGNED), ids=sorted(SIGNED))
def test_changed_content_fails_with_a_stable_reason(name):
    (signer,) = cms.verify(open_signature(name), CONTENT + b"x", no_store)
    assert not signer.verified
    assert signer.reason == ("bad signature" if name == "sig-rsa-noattr" else "message digest mismatch")


def test_signer_identifiers_follow_the_spec():
    rita = asn1_x509.Certificate.load(certificate_der("rsa"))
    (by_serial,) = cms.verify(open_signature("sig-rsa-sha256"), CONTENT, no_store)
    (by_ski,) = cms.verify(open_signature("sig-rsa-keyid"), CONTENT, no_store)
    assert by_serial.text == f"issuer=CN=Vector Issuing CA,O=Vector Org; serial={format(rita.serial_number, 'X')}"
    assert by_ski.text == f"ski={rita.key_identifier.hex().upper()}"


def test_signature_algorithms_are_named():
    assert cms.verify(open_signature("sig-rsa-pss"), CONTENT, no_store)[0].signature_algorithm == "rsassa_pss"
    assert cms.verify(open_signature("sig-ecdsa-p256-sha384"), CONTENT, no_store)[0].signature_algorithm.startswith(
        "sha384_ecdsa")
    assert cms.verify(open_signature("sig-ed25519"), CONTENT, no_store)[0].signature_algorithm == "ed25519"


def test_oversized_rsa_key_is_refused_unchecked():
    (signer,) = cms.verify(open_signature("sig-rsa-sha256"), CONTENT, no_store, max_rsa_bits=1024)
    assert (signer.verified, signer.reason) == (False, "RSA key too large")


def test_signer_certificate_comes_from_the_store_when_the_message_lacks_it():
    layer = open_signature("sig-rsa-sha256")
    layer.certificates = []
    (missing,) = cms.verify(layer, CONTENT, no_store)
    assert (missing.verified, missing.reason) == (False, "signer certificate not found")
    rita = certificate_der("rsa")
    lookups = []
    (found,) = cms.verify(layer, CONTENT, lambda lookup: lookups.append(lookup) or [rita])
    assert found.verified and found.certificate == rita
    assert lookups[0]["serial"] == asn1_x509.Certificate.load(rita).serial_number


def test_certificate_of_another_signer_does_not_verify():
    layer = open_signature("sig-rsa-sha256")
    other = certificate_der("other")
    layer.certificates = [other]
    (signer,) = cms.verify(layer, CONTENT, lambda lookup: [other])
    assert signer.reason == "signer certificate not found"


def test_opaque_signature_rebuilt_as_detached_verifies_over_the_same_content():
    opaque = open_signature("sig-rsa-opaque")
    detached = cms.open_signed(cms.load(cms.detached_signature(opaque)), max_signers=5)
    assert detached.content is None
    assert detached.certificates == opaque.certificates
    assert detached.signer_infos.dump() == opaque.signer_infos.dump()
    (signer,) = cms.verify(detached, CONTENT, no_store)
    assert signer.verified
    assert cms.micalg([signer]) == "sha-256"


def test_signer_limit():
    with pytest.raises(LimitExceeded, match="^more than 0 signers in one layer$"):
        cms.open_signed(cms.load(der("sig-rsa-sha256")), max_signers=0)


def test_enveloped_data_is_not_signed_data():
    with pytest.raises(cms.UnsupportedAlgorithm):
        cms.open_signed(cms.load(der("env-rsa15-aes128")), max_signers=5)


def corpus_decryption(data: bytes, store) -> tuple:
    """("plaintext", bytes, lifted?) with the corpus store's keys, or (error type, reason, lifted?)."""
    def find_keys(recipient):
        return store.smime_private_keys(**recipient.lookup) if recipient.lookup else []

    lifted = None
    try:
        info = cms.load(data)
        lifted = info.encrypted_content is not None
        content, _ = cms.decrypt(cms.open_enveloped(info, max_recipients=10), find_keys)
    except cms.CmsError as exc:
        return type(exc).__name__, exc.reason, lifted
    return "plaintext", bytes(content), lifted


@pytest.mark.parametrize("case", ENVELOPED_CASES, ids=[case["id"] for case in ENVELOPED_CASES])
def test_corpus_plaintext_is_the_same_with_the_ciphertext_lifted_or_parsed(case, corpus_store, monkeypatch):
    structures = enveloped_ders(case)
    lifted = [corpus_decryption(data, corpus_store) for data in structures]
    # asn1crypto's full parse alone: the path taken when the BER reader gives up.
    monkeypatch.setattr(ber, "lift_encrypted_content", lambda data, content_types: None)
    parsed = [corpus_decryption(data, corpus_store) for data in structures]

    assert [result[:2] for result in lifted] == [result[:2] for result in parsed]
    assert all(result[2] is not False for result in lifted)  # every structure that loads was lifted
    if case["decryptable_with_our_keys"]:
        plaintexts = [result[1] for result in lifted if result[0] == "plaintext"]
        assert hashlib.sha256(plaintexts[0]).hexdigest() == case["expected_plaintext_sha256"]


@pytest.mark.parametrize("name", sorted(ENVELOPED), ids=sorted(ENVELOPED))
def test_vector_plaintext_is_the_same_with_the_ciphertext_lifted_or_parsed(name, monkeypatch):
    lifted_layer = open_layer(der(name))
    monkeypatch.setattr(ber, "lift_encrypted_content", lambda data, content_types: None)
    parsed_layer = open_layer(der(name))

    assert len(lifted_layer._ciphertext) == 1 and isinstance(lifted_layer._ciphertext[0], memoryview)
    assert parsed_layer._ciphertext == [bytes(lifted_layer._ciphertext[0])]
    lifted, _ = cms.decrypt(lifted_layer, PemKeys().find)
    parsed, _ = cms.decrypt(parsed_layer, PemKeys().find)
    assert isinstance(lifted, bytearray) and lifted == parsed == CONTENT
