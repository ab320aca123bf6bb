"""Session keys from the engine's own keys (issue 16): gpg 2.2, sq 0.27, rnp 0.16 and pysequoia keys and messages, RSA,
NIST and brainpool ECDH, Curve25519, native X25519/X448 with PKESKv6; and one bad key costs the others nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESOCB3
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ciphermilter.formats import keyfiles
from ciphermilter.formats.openpgp import armor, decrypt, engine as openpgp, keys, sessionkeys
from ciphermilter.formats.openpgp.keyring import Keyring
from ciphermilter.formats.openpgp.packets import TAG_PKESK, TAG_SEIPD, packets, parse_pkesk
from ciphermilter.store import admin, rows
from ciphermilter.store.keystore import KeyStore
from support.agreement import through_decrypt, through_the_daemon

VECTORS = Path(__file__).parent / "vectors" / "openpgp-keys"
PASSPHRASE = "vector passphrase"
GPG = ["rsa2048", "p256", "p384", "bp256", "bp384", "bp512", "cv25519"]
SQ = ["cv25519", "rsa3k"]
V6 = ["pysequoia-v6-cv25519", "pysequoia-v6-cv448"]


class Keys:
    """The PgpKeys seam over a list of parsed secret keys (the store's part, without the store)."""

    def __init__(self, secret: list[keys.OpenPGPKey]):
        self.secret = secret

    def pgp_secret_keys(self, keyid: str) -> list[keys.OpenPGPKey]:
        return [key for key in self.secret if keyid in key.key_ids]

    def all_pgp_secret_keys(self) -> list[keys.OpenPGPKey]:
        return list(self.secret)

    def pgp_public_keys(self, keyid: str, *, imported_only: bool = False) -> list[keys.OpenPGPKey]:
        return []

    def data_version(self) -> int:
        return 1


def secret_key(name: str) -> keys.OpenPGPKey:
    (key,) = keyfiles.parse((VECTORS / f"{name}.sec.asc").read_bytes(), passphrase=PASSPHRASE).pgp_keys
    return key


def message(name: str) -> bytes:
    return armor.dearmor((VECTORS / name).read_bytes()).data


def pkesks(data: bytes) -> list:
    return [parse_pkesk(p.body) for p in packets(data) if p.tag == TAG_PKESK]


def recovered_session_key(key: keys.OpenPGPKey, data: bytes) -> tuple[int, bytes]:
    keyring = Keyring(Keys([key]))
    found = [sessionkeys.session_key(esk, subkey) for esk in pkesks(data) for subkey in keyring.all_secret_subkeys()]
    (session,) = [s for s in found if s is not None]
    return session


# --------------------------------------------------------------------------- gpg 2.2 and sq 0.27: end to end


@pytest.mark.parametrize("name", GPG)
def test_gpg_keys_decrypt_their_messages_and_the_session_key_is_gpgs(name):
    key = secret_key(f"gpg-{name}")
    algorithm, session = recovered_session_key(key, message(f"gpg-{name}.msg.asc"))
    assert f"{algorithm}:{session.hex().upper()}" == (VECTORS / f"gpg-{name}.sessionkey").read_text().strip()
    for kind in ("msg", "hidden"):
        opened = openpgp.open_message(message(f"gpg-{name}.{kind}.asc"), Keyring(Keys([key])), max_output=1 << 20)
        assert opened.failure is None and opened.plaintext == f"Hello from the key vectors ({name})\n".encode()


@pytest.mark.parametrize("name", SQ)
def test_sq_keys_decrypt_their_messages_and_the_session_key_is_sqs(name):
    key = secret_key(f"sq-{name}")
    _, session = recovered_session_key(key, message(f"sq-{name}.msg.asc"))
    assert session.hex().upper() == (VECTORS / f"sq-{name}.sessionkey").read_text().strip()
    opened = openpgp.open_message(message(f"sq-{name}.msg.asc"), Keyring(Keys([key])), max_output=1 << 20)
    assert opened.plaintext == f"Hello from the key vectors (sq-{name})\n".encode()


def test_rnp_default_key_decrypts_its_default_message():
    key = secret_key("rnp-rsa2048")
    assert key.is_public is False and [part.can_encrypt for part in key.parts] == [False, True]
    opened = openpgp.open_message(message("rnp-rsa2048.msg.asc"), Keyring(Keys([key])), max_output=1 << 20)
    assert opened.plaintext == b"Hello from the key vectors (rnp-rsa2048)\n" and opened.cipher == "AES-256"


# --------------------------------------------------------------------------- v6: PKESKv6 with X25519 and X448


def seipd_v2_first_chunk(data: bytes, session: bytes) -> bytes:
    """The first chunk of a SEIPDv2 OCB packet (RFC 9580 section 5.13.2), opened here only to prove that the
    session key we recovered is the sender's: the symmetric layer itself is not this module's."""
    (body,) = [p.body for p in packets(data) if p.tag == TAG_SEIPD]
    version, cipher, mode, chunk_octet, salt = body[0], body[1], body[2], body[3], body[4:36]
    assert (version, mode) == (2, 2)  # OCB
    info = bytes([0xD2, version, cipher, mode, chunk_octet])
    derived = HKDF(hashes.SHA256(), len(session) + 15 - 8, salt, info).derive(session)
    key, iv = derived[:len(session)], derived[len(session):]
    chunk = body[36:36 + min(len(body) - 36 - 16, (1 << (chunk_octet + 6)) + 16)]
    return AESOCB3(key).decrypt(iv + bytes(8), chunk, info)


@pytest.mark.parametrize("name", V6)
def test_pysequoia_v6_messages_give_the_session_key_that_opens_their_seipdv2(name):
    key = secret_key(name)
    data = message(f"{name}.msg.asc")
    (esk,) = pkesks(data)
    assert esk.version == 6 and esk.fingerprint == key.subkeys[0].fingerprint
    algorithm, session = recovered_session_key(key, data)
    assert algorithm == sessionkeys.NAMED_BY_DATA
    literal = seipd_v2_first_chunk(data, session)
    assert f"Hello from the key vectors ({name})\n".encode() in literal


def test_rfc9580_sample_message_opens_with_the_sample_key():
    """RFC 9580 Appendix A.8: the X25519 PKESKv6 to the A.4 key, "Hello, world!" in the OCB chunk."""
    key = keyfiles.parse((VECTORS / "rfc9580-a4.sec.asc").read_bytes()).pgp_keys[0]
    data = message("rfc9580-a8-x25519-ocb.msg.asc")
    _, session = recovered_session_key(key, data)
    assert b"Hello, world!" in seipd_v2_first_chunk(data, session)


def test_rfc9580_argon2_locked_key_unlocks_to_the_unlocked_sample():
    """RFC 9580 Appendix A.5: Argon2 (t=1, p=4, 2 GiB: 13 s here) and AEAD OCB protect the A.4 key."""
    locked = keyfiles.parse((VECTORS / "rfc9580-a5-argon2-ocb.sec.asc").read_bytes(),
                            passphrase="correct horse battery staple").pgp_keys[0]
    unlocked = keyfiles.parse((VECTORS / "rfc9580-a4.sec.asc").read_bytes()).pgp_keys[0]
    assert [p.secret.data for p in locked.parts] == [p.secret.data for p in unlocked.parts]


def test_an_argon2_protected_v6_key_imports_with_its_passphrase(tmp_path):
    """Our own export protection of a v6 key (Argon2, 64 MiB, OCB) reads back; a wrong passphrase is refused."""
    original = secret_key("pysequoia-v6-cv25519")
    protected = original.armored("s3cret").encode()
    with pytest.raises(keyfiles.KeyFormatError, match="wrong passphrase"):
        keyfiles.parse(protected, passphrase="secret")
    (again,) = keyfiles.parse(protected, passphrase="s3cret").pgp_keys
    assert again.to_bytes() == original.to_bytes()


def test_a_v6_pkesk_naming_a_fingerprint_we_do_not_hold_finds_no_key():
    key = secret_key("pysequoia-v6-cv25519")
    data = bytearray(message("pysequoia-v6-cv25519.msg.asc"))
    (pkesk,) = [p for p in packets(bytes(data)) if p.tag == TAG_PKESK]
    fingerprint = key.subkeys[0].fingerprint
    at = bytes(data).index(fingerprint)
    data[at + 31] ^= 1  # the same key ID (its first 8 octets), another fingerprint
    esks = pkesks(bytes(data))
    assert esks[0].keyid == key.subkeys[0].keyid
    assert decrypt._session_key_candidates(esks, Keyring(Keys([key]))) == []
    assert pkesk.tag == TAG_PKESK


# --------------------------------------------------------------------------- isolation: one key breaks nothing


def broken_copy(key: keys.OpenPGPKey) -> keys.OpenPGPKey:
    """The key with its encryption subkey's secret scalar replaced: it no longer matches its public key."""
    raw = bytearray(key.to_bytes())
    part = key.subkeys[0]
    at = bytes(raw).index(part.secret.data)
    raw[at + len(part.secret.data) - 1] ^= 1
    tail = at + len(part.secret.data)  # the v4 checksum after the clear secret
    raw[tail:tail + 2] = (sum(raw[at:tail]) & 0xFFFF).to_bytes(2, "big")
    return keys.parse_key(bytes(raw))


def test_a_brainpool_key_and_a_broken_key_cost_hidden_recipient_mail_nothing(tmp_path, caplog):
    """Issue 16: one key in the store that fails made every hidden-recipient message fail with TypeError."""
    broken = broken_copy(secret_key("gpg-p384"))
    assert broken.unusable_parts()
    with KeyStore.create(tmp_path / "s.db") as store:
        admin.import_file(store, (VECTORS / "gpg-bp256.sec.asc").read_bytes(), passphrase=PASSPHRASE)
        warned = admin.import_file(store, broken.armored().encode()).warnings
        admin.import_file(store, (VECTORS / "gpg-p256.sec.asc").read_bytes())
        assert any("does not match the public key: it will not be used" in warning for warning in warned)
        with caplog.at_level(logging.ERROR):
            opened = openpgp.open_message(message("gpg-p256.hidden.asc"), openpgp.keyring_for(store),
                                          max_output=1 << 20)
    assert opened.failure is None and opened.plaintext == b"Hello from the key vectors (p256)\n"
    assert "not usable" in caplog.text


def test_a_library_error_in_one_key_is_that_key_failing(monkeypatch):
    """Whatever a library raises for one key (the TypeError of pgpy's brainpool classes), the next is tried."""
    real = sessionkeys._unwrap_ecdh

    def failing(subkey, point, wrapped):
        if subkey.material.curve.name.startswith("brainpool"):
            raise TypeError("a library error")
        return real(subkey, point, wrapped)
    monkeypatch.setattr(sessionkeys, "_unwrap_ecdh", failing)
    keyring = Keyring(Keys([secret_key("gpg-bp384"), secret_key("gpg-bp512"), secret_key("gpg-p384")]))
    opened = openpgp.open_message(message("gpg-p384.hidden.asc"), keyring, max_output=1 << 20)
    assert opened.plaintext == b"Hello from the key vectors (p384)\n"


def test_a_subkey_without_the_encryption_flag_is_not_offered_a_session_key():
    """The gpg P-256 key with its subkey's binding signature changed to say "sign only" (flags 0x02): the binding
    no longer verifies, so it is dropped at import and the subkey, bound by nothing, is offered nothing."""
    key = secret_key("gpg-p256")
    raw = bytearray(key.to_bytes())
    binding = next(body for tag, body in key.packets[key.packets.index(next(
        (t, b) for t, b in key.packets if t == keys.TAG_SECRET_SUBKEY)):] if tag == keys.TAG_SIGNATURE)
    flags_at = bytes(raw).index(binding) + binding.index(b"\x02\x1b\x0c") + 2  # subpacket 27, key flags 0x0C
    raw[flags_at] = 0x02
    bundle = keyfiles.parse(bytes(raw))
    (signing_only,) = bundle.pgp_keys
    assert not signing_only.subkeys[0].can_encrypt
    assert any("no secret subkey may decrypt" in warning for warning in bundle.warnings)
    opened = openpgp.open_message(message("gpg-p256.msg.asc"), Keyring(Keys([signing_only])), max_output=1 << 20)
    assert opened.plaintext is None and opened.failure == "decryption key not found"


# --------------------------------------------------------------------------- the store: v6 keys, old stores, check


def test_a_store_holds_v6_and_brainpool_keys_and_decrypts_with_them(tmp_path):
    with KeyStore.create(tmp_path / "s.db") as store:
        for name in ("gpg-bp512", "pysequoia-v6-cv448"):
            admin.import_file(store, (VECTORS / f"{name}.sec.asc").read_bytes(), passphrase=PASSPHRASE)
        listed = {key["emails"][0]: key["version"] for key in admin.list_keys(store)}
        assert listed == {"bp512@corp-pub.example": 4, "pysequoia-v6-cv448@corp-pub.example": 6}
        keyring = openpgp.keyring_for(store)
        opened = openpgp.open_message(message("gpg-bp512.hidden.asc"), keyring, max_output=1 << 20)
        assert opened.plaintext == b"Hello from the key vectors (bp512)\n"
        data = message("pysequoia-v6-cv448.msg.asc")
        (esk,) = pkesks(data)
        (subkey,) = keyring.secret_subkeys(esk.keyid)
        session = sessionkeys.session_key(esk, subkey)
        assert session is not None and b"(pysequoia-v6-cv448)" in seipd_v2_first_chunk(data, session[1])


def test_a_store_written_with_pgpy_serialisation_still_decrypts(tmp_path):
    """Stores made before the key model sealed pgpy's serialisation of the unprotected key: it reads the same."""
    import pgpy
    pgpy_key, _ = pgpy.PGPKey.from_file(str(VECTORS / "gpg-cv25519.sec.asc"))
    with pgpy_key.unlock(PASSPHRASE):  # what the old import stored: pgpy's bytes of the unprotected key
        unprotected = keyfiles.parse(bytes(pgpy_key), passphrase=PASSPHRASE).pgp_keys[0].to_bytes()
    with KeyStore.create(tmp_path / "s.db") as store:
        admin.import_file(store, (VECTORS / "gpg-cv25519.pub.asc").read_bytes())
        fingerprint = keys.parse_key(unprotected).fingerprint
        with store.transaction() as conn:
            conn.execute("UPDATE pgp_keys SET sealed_secret = ? WHERE fingerprint = ?",
                         (store.sealer.seal(unprotected, rows.pgp_aad(fingerprint)), fingerprint))
        opened = openpgp.open_message(message("gpg-cv25519.msg.asc"), openpgp.keyring_for(store), max_output=1 << 20)
        assert opened.plaintext == b"Hello from the key vectors (cv25519)\n"


# --------------------------------------------------------------------------- PKESKs that lie


@pytest.mark.parametrize("body, reason", [
    (bytes([6, 21, 4]) + bytes(20) + bytes([25]) + bytes(32) + bytes([40]) + bytes(24), "truncated or malformed"),
    (bytes([6, 21, 6]) + bytes(20) + bytes([25]) + bytes(32) + bytes([24]) + bytes(24), "version 6 key with a 20"),
    (bytes([6, 33, 6]) + bytes(20), "truncated PKESK"),
    (bytes([3]) + bytes(8) + bytes([25]) + bytes(32) + bytes([0]), "truncated PKESK"),
    (bytes([5]) + bytes(12), "unknown PKESK version 5"),
])
def test_pkesks_with_lying_lengths_are_refused_with_a_reason(body, reason):
    with pytest.raises(openpgp.OpenPGPError, match=reason):
        parse_pkesk(body)


def test_a_v3_x25519_session_key_must_fit_the_cipher_it_names():
    esk = parse_pkesk(bytes([3]) + bytes(8) + bytes([25]) + bytes(32) + bytes([25, 7]) + bytes(24))
    assert esk.cipher == 7 and esk.fields == (bytes(32), bytes(24))
    assert sessionkeys.parse_session_key(esk, bytes(16)) == (7, bytes(16))
    assert sessionkeys.parse_session_key(esk, bytes(32)) is None  # AES-128 named, 32 octets unwrapped


def test_a_key_protected_by_the_pgpy_era_export_reads_back():
    """``store export`` files written before the key model hold keys pgpy protected (AES-256, iterated SHA-256)."""
    import warnings

    import pgpy
    from pgpy.constants import HashAlgorithm, SymmetricKeyAlgorithm
    original = secret_key("gpg-p384")
    old, _ = pgpy.PGPKey.from_blob(original.to_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old.protect("moving day", SymmetricKeyAlgorithm.AES256, HashAlgorithm.SHA256)
    with pytest.raises(keyfiles.KeyFormatError, match="wrong passphrase"):
        keyfiles.parse(str(old).encode(), passphrase="moving night")
    (again,) = keyfiles.parse(str(old).encode(), passphrase="moving day").pgp_keys
    assert [part.secret.data for part in again.parts] == [part.secret.data for part in original.parts]


# --------------------------------------------------------------------------- every tool's message, end to end

# Each key's message, and gpg's with hidden recipients (--throw-keyids): the sender's tool, its default output.
END_TO_END = ([f"gpg-{name}.{kind}" for name in GPG for kind in ("msg", "hidden")]
              + [f"sq-{name}.msg" for name in SQ] + ["rnp-rsa2048.msg"] + [f"{name}.msg" for name in V6])


def key_name(vector_name: str) -> str:
    return vector_name.rsplit(".", 1)[0]


@pytest.fixture(scope="module")
def every_key_store(tmp_path_factory):
    """Every tool's secret key imported by the admin, each bound to its own address (the reader rule)."""
    path = tmp_path_factory.mktemp("every-key") / "store.db"
    with KeyStore.create(path) as store:
        for name in {key_name(vector) for vector in END_TO_END}:
            admin.import_file(store, (VECTORS / f"{name}.sec.asc").read_bytes(), passphrase=PASSPHRASE)
        admin.add_domain(store, "corp-pub.example")
        emails = {key["id"]: key["emails"][0] for key in admin.list_keys(store) if key["type"] == "openpgp"}
    return path, emails


def recipient_of(name: str, emails: dict[str, str]) -> str:
    (key,) = keyfiles.parse((VECTORS / f"{key_name(name)}.sec.asc").read_bytes(), passphrase=PASSPHRASE).pgp_keys
    return emails[key.fingerprint]


def pgp_mime_to(recipient: str, armored: bytes) -> bytes:
    return (b"From: Key Vectors <vectors@sender.example>\r\nTo: " + recipient.encode() + b"\r\nSubject: keys\r\n"
            b'MIME-Version: 1.0\r\nContent-Type: multipart/encrypted; protocol="application/pgp-encrypted";'
            b' boundary="enc"\r\n\r\n--enc\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n'
            b"--enc\r\nContent-Type: application/octet-stream\r\n\r\n" + armored.replace(b"\n", b"\r\n")
            + b"\r\n--enc--\r\n")


@pytest.fixture(scope="module")
def key_daemon(daemons, every_key_store):
    return daemons("every-key", every_key_store[0])


@pytest.mark.usefixtures("bytes_on_the_wire")
@pytest.mark.parametrize("name", END_TO_END)
def test_every_tools_message_decrypts_in_the_daemon_as_in_decrypt(key_daemon, every_key_store, name, tmp_path):
    """v4 keys of gpg (RSA, NIST, brainpool, Curve25519), sq and rnp, and Sequoia 2's v6 X25519 and X448 keys
    (PKESKv6 + SEIPDv2), each in a store with all the others: through the real daemon as Postfix drives it and
    through ``ciphermilter decrypt``, to the exact plaintext."""
    recipient = recipient_of(name, every_key_store[1])
    message = pgp_mime_to(recipient, (VECTORS / f"{name}.asc").read_bytes())
    by_daemon, accepted = through_the_daemon(key_daemon, message, [recipient])
    assert accepted == [recipient]
    kind, delivered = by_daemon
    assert kind == "delivered" and isinstance(delivered, bytes)
    assert b"X-CipherMail-Info-PGP-Decryption-Key-Not-Found" not in delivered
    expected = f"Hello from the key vectors ({key_name(name).removeprefix('gpg-')})\r\n".encode()  # delivered in CRLF
    assert expected in delivered
    assert through_decrypt(key_daemon, message, accepted, tmp_path) == by_daemon
