"""The engine's own OpenPGP key model (formats/openpgp/keys.py): v4 and v6 keys of every algorithm we read,
fingerprints and key IDs as gpg and Sequoia compute them, key flags, secret-key protection, and keys that lie."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519

from conftest import CORPUS
from ciphermilter.formats.openpgp import armor, keymaterial, keys, secretkeys
from ciphermilter.formats.openpgp.packets import frame

PGP_KEYS = CORPUS / "keys" / "pgp"
VECTORS = Path(__file__).parent / "vectors" / "openpgp-keys"


def _key(path: Path) -> keys.OpenPGPKey:
    return keys.parse_key(armor.dearmor(path.read_bytes()).data)


# fingerprints as `gpg --show-keys --with-colons` prints them (v4) and as the corpus's expect.json has them (v6)
@pytest.mark.parametrize("name, version, fingerprint, subkey_fingerprints", [
    ("pub-pgp-erin-cv25519.pub.asc", 4, "D6A4B878E48E7C9C2433D03BEF6ED1366E98B114",
     ["6D92A3F8F95D464D55919E73C287A27D8261B85A"]),
    ("pub-pgp-wes-v6.pub.asc", 6, "B800F948B749D6FBDCFCE07475E07E93F184F0AF309F1356C06250A901DA8194",
     ["62F2016F2DC53FBD452E1EE13DB1A0F429DC3517FAF972FB4D4BD4CB27B329CF"]),
])
def test_fingerprints_and_key_ids_of_v4_and_v6_keys(name, version, fingerprint, subkey_fingerprints):
    key = _key(PGP_KEYS / name)
    assert key.version == version and key.fingerprint == fingerprint
    assert key.keyid == (fingerprint[:16] if version == 6 else fingerprint[-16:])
    assert [p.fingerprint_hex for p in key.subkeys][:len(subkey_fingerprints)] == subkey_fingerprints
    assert key.user_ids and key.unusable_parts() == []


def test_the_v6_fingerprints_are_the_ones_sequoia_reports_in_the_corpus():
    expect = json.loads((CORPUS / "pgpmime-enc-seipdv2-v6-key" / "expect.json").read_text())
    named = {v for v in _walk(expect) if isinstance(v, str) and len(v) == 64 and v.isupper()}  # not the sha256s
    key = _key(PGP_KEYS / "pub-pgp-wes-v6.pub.asc")
    assert {p.fingerprint_hex for p in key.parts} & named == named


def _walk(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)
    else:
        yield value


def test_key_objects_and_the_subkeys_that_may_encrypt():
    wes = _key(PGP_KEYS / "pub-pgp-wes-v6.pub.asc")
    assert [p.algorithm for p in wes.parts] == [27, 25, 27]
    assert [p.can_encrypt for p in wes.parts] == [False, True, False]
    assert isinstance(wes.primary.public_key, ed25519.Ed25519PublicKey)
    assert isinstance(wes.subkeys[0].public_key, x25519.X25519PublicKey)
    bob = _key(PGP_KEYS / "pub-pgp-bob-rsa3072.pub.asc")
    assert isinstance(bob.primary.public_key, rsa.RSAPublicKey) and bob.primary.public_key.key_size == 3072
    assert [p.can_encrypt for p in bob.parts] == [False, True]
    assert bob.user_ids == ["Bob Pgp <bob.pgp@corp-pub.example>"]


def test_a_protected_key_unlocks_with_its_passphrase_and_is_stored_clear():
    erin = _key(PGP_KEYS / "pub-pgp-erin-cv25519.sec.asc")
    assert erin.is_protected
    with pytest.raises(keymaterial.KeyMaterialError, match="wrong passphrase"):
        erin.unlock("correct horse battery stable")
    erin.unlock("correct horse battery staple")
    again = keys.parse_key(erin.to_bytes())
    assert not again.is_protected and again.fingerprint == erin.fingerprint
    assert isinstance(again.subkeys[0].private_key(), x25519.X25519PrivateKey)
    assert keys.parse_key(again.public_bytes()).is_public


def test_public_bytes_of_a_secret_key_equal_its_public_key():
    secret = _key(PGP_KEYS / "pub-pgp-wes-v6.sec.asc")
    public = _key(PGP_KEYS / "pub-pgp-wes-v6.pub.asc")
    assert {p.fingerprint for p in keys.parse_key(secret.public_bytes()).parts} == {p.fingerprint for p in public.parts}


# ---------------------------------------------------------------------------- keys that lie


def _v4_ecdsa(oid: bytes, point: bytes) -> bytes:
    return b"\x04" + (1_700_000_000).to_bytes(4, "big") + bytes([19, len(oid)]) + oid + \
        (len(point) * 8).to_bytes(2, "big") + point


def _p256_point() -> bytes:
    from cryptography.hazmat.primitives import serialization
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    return public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def test_an_unsupported_curve_is_a_reason_not_a_crash():
    body = _v4_ecdsa(bytes.fromhex("2b8104000a"), _p256_point())  # secp256k1
    key = keys.parse_key(frame(6, body))
    assert key.primary.public_key is None
    assert key.unusable_parts() == [f"primary key {key.keyid}: unsupported curve (OID 1.3.132.0.10)"]


def test_a_point_off_the_curve_is_a_reason():
    point = bytearray(_p256_point())
    point[-1] ^= 1
    key = keys.parse_key(frame(6, _v4_ecdsa(bytes.fromhex("2a8648ce3d030107"), bytes(point))))
    assert key.primary.unusable and "invalid ECDSA material" in key.primary.unusable


@pytest.mark.parametrize("body, reason", [
    (b"\x06" + bytes(4) + b"\x1b" + (40).to_bytes(4, "big") + bytes(32), "longer than its packet"),
    (b"\x06" + bytes(4) + b"\x1b" + (33).to_bytes(4, "big") + bytes(33), "does not match its fields"),
    (b"\x06" + bytes(4) + b"\x1b" + (32).to_bytes(4, "big") + bytes(31), "longer than its packet"),
    (b"\x04" + bytes(4) + b"\x01" + b"\x10\x00" + bytes(10), "truncated key material"),  # an MPI that lies
    (b"\x05" + bytes(4) + b"\x01", "unsupported key version 5"),
    (b"\x04\x00", "truncated key packet"),
])
def test_key_packets_with_lying_lengths_are_refused_with_a_reason(body, reason):
    with pytest.raises(keys.KeyError_, match=reason):
        keys.parse_key(frame(6, body))


def test_a_packet_length_past_the_data_is_refused():
    with pytest.raises(keys.KeyError_, match="truncated"):
        keys.parse_keys(frame(6, _v4_ecdsa(bytes.fromhex("2a8648ce3d030107"), _p256_point()))[:-5])


def test_a_truncated_s2k_specifier_is_refused():
    public = _v4_ecdsa(bytes.fromhex("2a8648ce3d030107"), _p256_point())
    for cut in (b"\xfe", b"\xfe\x09", b"\xfe\x09\x03\x08" + bytes(3)):
        with pytest.raises(keys.KeyError_, match="truncated secret key packet"):
            keys.parse_key(frame(5, public + cut))


def test_a_clear_secret_with_a_bad_checksum_is_refused():
    public = _v4_ecdsa(bytes.fromhex("2a8648ce3d030107"), _p256_point())
    with pytest.raises(keys.KeyError_, match="checksum"):
        keys.parse_key(frame(5, public + b"\x00" + b"\x00\x08\x01" + b"\x00\x00"))


def test_a_secret_that_does_not_match_its_public_key_is_unusable():
    private = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value.to_bytes(32, "big")
    from cryptography.hazmat.primitives import serialization
    point = private.public_key().public_bytes(serialization.Encoding.X962,
                                              serialization.PublicFormat.UncompressedPoint)
    public = _v4_ecdsa(bytes.fromhex("2a8648ce3d030107"), point)
    clear = (256).to_bytes(2, "big") + other
    key = keys.parse_key(frame(5, secretkeys.clear_body(4, public, clear)))
    assert key.unusable_parts() == [f"primary key {key.keyid}: the secret key material does not match the public key"]


def test_a_gnupg_stub_primary_key_keeps_its_subkeys_secrets():
    """gpg --export-secret-subkeys: the primary's secret is a GNU-dummy S2K (mode 1001), the subkeys' are there."""
    key = keys.parse_key(armor.dearmor((VECTORS / "gpg-p256.sec.asc").read_bytes()).data)
    stub = key.primary.public_body + bytes([0xFF, 0, 101, 0]) + b"GNU" + bytes([1])
    raw = b"".join(frame(tag, stub if index == 0 else body) for index, (tag, body) in enumerate(key.packets))
    again = keys.parse_key(raw)
    assert not again.primary.has_secret and again.subkeys[0].has_secret and not again.is_public
    assert again.unusable_parts() == [] and keys.parse_key(again.to_bytes()).to_bytes() == raw


def test_an_rsa_modulus_above_16384_bits_makes_no_key():
    """A huge modulus in a key a message carries would cost seconds of CPU to validate: a reason instead."""
    n = (1 << 20000) + 1
    body = b"\x04" + bytes(4) + b"\x01" + (20001).to_bytes(2, "big") + n.to_bytes(2501, "big") + b"\x00\x11\x01\x00\x01"
    key = keys.parse_key(frame(6, body))
    assert key.primary.public_key is None
    assert key.unusable_parts() == [f"primary key {key.keyid}: a 20001-bit key, above the 16384 bits this engine uses"]


def test_a_v6_subkey_of_an_unknown_algorithm_stays_in_the_key_unusable():
    """A post-quantum subkey (say) of a v6 key: its length is known, so the key imports with a warning."""
    from ciphermilter.formats import keyfiles

    sample = keys.parse_key(armor.dearmor((VECTORS / "rfc9580-a4.sec.asc").read_bytes()).data)
    unknown = b"\x06" + bytes(4) + bytes([35]) + (40).to_bytes(4, "big") + bytes(40) + b"\x00" + bytes(64)
    data = sample.to_bytes() + frame(keys.TAG_SECRET_SUBKEY, unknown)
    bundle = keyfiles.parse(data)
    (key,) = bundle.pgp_keys
    assert key.subkeys[-1].unusable == "unsupported public-key algorithm 35" and not key.subkeys[-1].can_encrypt
    assert any("unsupported public-key algorithm 35: it will not be used" in w for w in bundle.warnings)
    assert key.subkeys[0].private_key() is not None
