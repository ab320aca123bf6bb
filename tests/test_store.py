"""The key store with the corpus keys: import, lookups the engines make, secrecy at rest, failures."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import pgpy
import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ciphermilter.formats import ids

from ciphermilter.formats import keyfiles as keyimport
from ciphermilter.store.keystore import KeyStore
from ciphermilter.store.schema import StoreError
from ciphermilter.store import admin
from ciphermilter.store import rows, schema
from conftest import (CORPUS, CORPUS_INTERNAL_DOMAINS, ROOT, case_message, corpus_cases, corpus_key_files,
                      corpus_secrets, dump, harvested, import_corpus_keys)

PASSWORDS, PASSPHRASES = corpus_secrets()


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """A store of its own (so that tests may look at its files) and the files the import refused."""
    store = KeyStore.create(tmp_path_factory.mktemp("store") / "keys.db")
    refused = import_corpus_keys(store)
    yield store, refused
    store.close()


@pytest.fixture
def store(backend_store):
    """A new store, on SQLite and on PostgreSQL in turn (support/pg_fixtures.py)."""
    return backend_store


def parse_file(path: Path) -> keyimport.Bundle:
    relative = str(path.relative_to(CORPUS))
    passphrase = PASSPHRASES.get(relative)
    return keyimport.parse(path.read_bytes(), password=PASSWORDS.get(relative), passphrase=passphrase)


def secret_files() -> list[Path]:
    return [p for p in corpus_key_files() if p.name.endswith((".key.pem", ".p12", ".sec.asc", "-secret.asc"))]


# ---------------------------------------------------------------------------- import of the corpus


def test_every_corpus_key_imports_the_v6_keys_too(imported):
    store, refused = imported
    assert refused == {}
    (wes,) = [key for key in admin.list_keys(store) if "wes.v6@corp-pub.example" in key["emails"]]
    assert wes["version"] == 6 and wes["secret"] and len(wes["id"]) == 64


@pytest.mark.parametrize("path", corpus_key_files(), ids=lambda p: str(p.relative_to(CORPUS)))
def test_each_corpus_key_file_is_listed(imported, path):
    store, refused = imported
    if str(path.relative_to(CORPUS)) in refused:
        pytest.raises(keyimport.KeyFormatError, parse_file, path)
        return
    listed = {key["id"]: key for key in admin.list_keys(store)}
    bundle = parse_file(path)
    for der in bundle.certificates:
        assert hashlib.sha256(der).hexdigest().upper() in listed
    for key in bundle.pgp_keys:
        entry = listed[key.fingerprint]
        assert entry["secret"] or key.is_public
        assert entry["key_ids"][0] == key.keyid and entry["version"] == key.version
        assert sorted(entry["key_ids"][1:]) == sorted(part.keyid for part in key.subkeys)
    for private_key in bundle.private_keys:
        held = [pair for pair in store.all_smime_private_keys() if same_key(pair[1], private_key)]
        assert held


def same_key(a, b) -> bool:
    def spki(key):
        return key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    return spki(a) == spki(b)


def test_trust_anchors_and_domains_of_the_corpus(imported):
    store, _ = imported
    anchors = {hashlib.sha256(der).hexdigest().upper() for der in store.trust_anchors()}
    expected = {hashlib.sha256(der).hexdigest().upper()
                for path in (CORPUS / "keys" / "trust").iterdir() for der in parse_file(path).certificates}
    assert anchors == expected and len(anchors) == 2
    assert admin.list_domains(store) == sorted(CORPUS_INTERNAL_DOMAINS)


def test_reimport_is_idempotent(imported, tmp_path):
    store, refused = imported
    before = dump(store)
    for path in corpus_key_files():
        relative = str(path.relative_to(CORPUS))
        if relative in refused:
            continue
        result = admin.import_file(store, path.read_bytes(), filename=relative, password=PASSWORDS.get(relative),
                                   passphrase=PASSPHRASES.get(relative))
        assert result.added == [] and result.already_present
    assert dump(store) == before


def test_certificate_fields_follow_the_spec(imported):
    store, _ = imported
    bob = [key for key in admin.list_keys(store) if key["emails"] == ["bob@corp-pub.example"]]
    assert len(bob) == 1 and bob[0]["private_key"] and bob[0]["serial"] == "5A000003"
    assert bob[0]["issuer"] == "CN=Corpus Public Test Root CA,O=Corpus Public Test Org"
    # The NSS test certificate has no subjectAltName: its address comes from the subject, in lower case.
    assert store.certificates(email="BOB@example.com")


# ---------------------------------------------------------------------------- lookups the engines make

_SHORT = {"C": "country_name", "ST": "state_or_province_name", "L": "locality_name", "O": "organization_name",
          "OU": "organizational_unit_name", "CN": "common_name"}


def issuer_key_of(openssl_dn: str) -> str:
    """name_key of an issuer written as OpenSSL prints it ("C=US, O=..., CN=..."): built independently of the certs."""
    pairs = [part.split("=", 1) for part in openssl_dn.split(", ")]
    return ids.name_key(asn1_x509.Name.build({_SHORT[name]: value for name, value in pairs}))


SMIME_ENCRYPTED = corpus_cases(lambda c: c["smime_or_pgp"] == "smime" and c["encrypted"] and c.get("recipients"))


@pytest.mark.parametrize("case", SMIME_ENCRYPTED, ids=lambda c: c["id"])
def test_smime_recipient_lookup(corpus_store, case):
    found = []
    for recipient in case["recipients"]:
        if recipient["rid"] == "subjectKeyIdentifier":
            pairs = corpus_store.smime_private_keys(ski=bytes.fromhex(recipient["ski"]))
        else:
            pairs = corpus_store.smime_private_keys(issuer_key=issuer_key_of(recipient["issuer"]),
                                                    serial=int(recipient["serial"], 16))
        for der, private_key in pairs:
            assert same_key(x509.load_der_x509_certificate(der), private_key)
        found.extend(pairs)
    assert bool(found) == case["decryptable_with_our_keys"]


PGP_ENCRYPTED = corpus_cases(lambda c: c["smime_or_pgp"] == "pgp" and c["encrypted"] and c.get("recipients"))


def recipient_key_id(recipient: dict) -> str:
    # PKESK v3 names a key ID; v6 names a fingerprint, whose last 16 digits are the key ID of a v4 key and
    # whose first 16 that of a v6 key
    fingerprint = recipient.get("fingerprint", "")
    return recipient.get("keyid") or (fingerprint[:16] if len(fingerprint) == 64 else fingerprint[-16:])


@pytest.mark.parametrize("case", PGP_ENCRYPTED, ids=lambda c: c["id"])
def test_pgp_recipient_lookup(imported, corpus_store, case):
    _, refused = imported
    ours = {key.fingerprint for relative in case["keys"]
            if relative.endswith(("sec.asc", "secret.asc")) and relative not in refused
            for key in parse_file(CORPUS / relative).pgp_keys}
    key_ids = [recipient_key_id(r) for r in case["recipients"] if recipient_key_id(r) != "0" * 16]
    found = {key.fingerprint for kid in key_ids for key in corpus_store.pgp_secret_keys(kid)}
    if not key_ids:  # hidden recipient: the engine tries every secret key
        assert ours <= {k.fingerprint for k in corpus_store.all_pgp_secret_keys()}
    elif case["decryptable_with_our_keys"]:
        assert found == ours
    else:
        assert found == set()
    for key in itertools.chain.from_iterable(corpus_store.pgp_secret_keys(kid) for kid in key_ids):
        assert not key.is_public and not key.is_protected


_ARMORED_MESSAGE = re.compile(rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----", re.S)
PGP_MIME_DECRYPTABLE = corpus_cases(
    lambda c: c["family"] in ("pgp-mime-encrypted", "pgp-mime-signed-encrypted")
    and str(c.get("pgpy_0_6_0_probe", "")).startswith("decrypt OK"))


@pytest.mark.parametrize("case", PGP_MIME_DECRYPTABLE, ids=lambda c: c["id"])
def test_stored_pgp_secret_key_decrypts_the_message(corpus_store, case):
    """The unprotected copy the store keeps (erin's arrived protected) decrypts the real message."""
    message = pgpy.PGPMessage.from_blob(_ARMORED_MESSAGE.search(case_message(case)).group(0).decode("ascii"))
    key_ids = [recipient_key_id(r) for r in case["recipients"]]
    keys = [key for kid in key_ids for key in corpus_store.pgp_secret_keys(kid)]
    assert keys
    stored = pgpy.PGPKey()  # what the store keeps still reads as pgpy read it: stores move both ways
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stored.parse(bytearray(keys[0].to_bytes()))
        content = stored.decrypt(message).message
    data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
    expected = (CORPUS / case["expected_plaintext_file"]).read_bytes()
    # pgpy hands text-mode literal data back with the line endings as sent; gpg writes them as sent too
    assert data == expected


PGP_SIGNERS = corpus_cases(lambda c: c["smime_or_pgp"] == "pgp" and c["signed"] and c.get("signer")
                           and c["signer"].get("fingerprint"))


@pytest.mark.parametrize("case", PGP_SIGNERS, ids=lambda c: c["id"])
def test_pgp_signer_public_key_lookup(corpus_store, case):
    fingerprint = case["signer"]["fingerprint"]
    keys = corpus_store.pgp_public_keys(fingerprint[-16:])
    assert [k.fingerprint for k in keys] == [fingerprint]
    assert keys[0].is_public


def test_chain_lookup_by_subject_key(corpus_store):
    """Every stored certificate's issuer is found by subject name key, or is a trust anchor."""
    anchors = {asn1_x509.Certificate.load(der).subject.hashable for der in corpus_store.trust_anchors()}
    for der in corpus_store.certificates():
        cert = asn1_x509.Certificate.load(der)
        issuers = corpus_store.certificates(subject_key=ids.name_key(cert.issuer))
        assert issuers or cert.issuer.hashable in anchors or cert.self_signed != "no", cert.subject.human_friendly


def test_lookups_by_ski_and_email(corpus_store):
    bob = x509.load_pem_x509_certificate((CORPUS / "keys/smime/pub-bob.cert.pem").read_bytes())
    ski = bob.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    der = bob.public_bytes(serialization.Encoding.DER)
    assert corpus_store.certificates(ski=ski) == [der]
    assert corpus_store.certificates(email="Bob@Corp-Pub.example") == [der]
    assert corpus_store.certificates(email="nobody@corp-pub.example") == []
    assert corpus_store.smime_private_keys(ski=b"\x00" * 20) == []


def test_internal_domains(store):
    assert admin.add_domain(store, "Example.COM.") and not admin.add_domain(store, "example.com")
    assert admin.add_domain(store, "*.corp.example")
    assert store.is_internal_domain("EXAMPLE.com") and store.is_internal_domain("a.b.corp.example")
    assert not store.is_internal_domain("corp.example") and not store.is_internal_domain("example.org")
    with pytest.raises(StoreError, match="not a domain name"):
        admin.add_domain(store, "exa mple.com")
    assert admin.remove_domain(store, "EXAMPLE.com") and not store.is_internal_domain("example.com")
    assert not admin.remove_domain(store, "example.com")


# ---------------------------------------------------------------------------- secrecy at rest


def private_byte_strings() -> list[bytes]:
    """PKCS#8 DER of every S/MIME key and the secret MPIs of every OpenPGP secret key of the corpus."""
    secrets = []
    for path in secret_files():
        bundle = parse_file(path)
        for key in bundle.private_keys:
            secrets.append(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
        for key in bundle.pgp_keys:  # unlocked by the parse: the secret fields in the clear
            secrets.extend(part.secret.data for part in key.parts if part.has_secret)
    return secrets


def test_no_private_key_in_db_wal_or_backup(imported, tmp_path):
    store, _ = imported
    backup = tmp_path / "backup.db"
    admin.backup(store, backup)
    files = [Path(store.path), Path(store.path + "-wal"), backup]
    secrets = private_byte_strings()
    assert len(secrets) > 10
    for path in files:
        data = path.read_bytes()
        assert b"PRIVATE KEY" not in data and b"PGP PRIVATE KEY BLOCK" not in data
        for secret in secrets:
            assert secret not in data, path


def test_file_modes(imported):
    store, _ = imported
    for path in (store.path, store.path + ".key", store.path + "-wal"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


def test_protected_pgp_key_is_stored_unprotected(store):
    path = CORPUS / "keys/pgp/pub-pgp-erin-cv25519.sec.asc"
    original, _ = pgpy.PGPKey.from_file(str(path))
    assert original.is_protected
    admin.import_file(store, path.read_bytes(), passphrase=PASSPHRASES[str(path.relative_to(CORPUS))])
    (key,) = store.all_pgp_secret_keys()
    assert not key.is_protected and all(part.secret.usage == 0 for part in key.parts)
    unlocked, _ = pgpy.PGPKey.from_blob(key.to_bytes())  # the clear secret signs what the original verifies
    signature = unlocked.sign("text")
    assert original.pubkey.verify("text", signature)


def test_rows_cannot_swap_their_secrets(tmp_path, caplog):
    with KeyStore.create(tmp_path / "s.db") as store:
        for name in ("pub-bob", "pub-erin-p256"):
            admin.import_file(store, (CORPUS / f"keys/smime/{name}.p12").read_bytes(), password=b"corpus-public")
    conn = sqlite3.connect(tmp_path / "s.db")
    rows = conn.execute("SELECT spki_sha256, sealed FROM smime_keys").fetchall()
    with conn:
        conn.execute("UPDATE smime_keys SET sealed = ? WHERE spki_sha256 = ?", (rows[1][1], rows[0][0]))
    conn.close()
    with KeyStore.open(tmp_path / "s.db") as store, caplog.at_level(logging.ERROR):
        assert len(store.all_smime_private_keys()) == 1
    assert "does not open with the master key" in caplog.text


# ---------------------------------------------------------------------------- open, create, master key


def test_create_refuses_an_existing_store_or_key(tmp_path):
    KeyStore.create(tmp_path / "s.db").close()
    key = (tmp_path / "s.db.key").read_bytes()
    with pytest.raises(StoreError, match="exists already"):
        KeyStore.create(tmp_path / "s.db")
    with pytest.raises(StoreError, match="master key file .* exists already"):
        KeyStore.create(tmp_path / "other.db", tmp_path / "s.db.key")
    assert (tmp_path / "s.db.key").read_bytes() == key and not (tmp_path / "other.db").exists()


def test_open_refuses_missing_or_wrong_master_key(tmp_path):
    KeyStore.create(tmp_path / "s.db").close()
    before = dump(tmp_path / "s.db")
    with pytest.raises(StoreError, match="master key file .*absent.key not found"):
        KeyStore.open(tmp_path / "s.db", tmp_path / "absent.key")
    (tmp_path / "wrong.key").write_bytes(os.urandom(32))
    with pytest.raises(StoreError, match="does not belong to store"):
        KeyStore.open(tmp_path / "s.db", tmp_path / "wrong.key")
    (tmp_path / "short.key").write_bytes(b"x" * 31)
    with pytest.raises(StoreError, match="not a 32-byte key"):
        KeyStore.open(tmp_path / "s.db", tmp_path / "short.key")
    with pytest.raises(StoreError, match="not found"):
        KeyStore.open(tmp_path / "none.db")
    assert dump(tmp_path / "s.db") == before


def test_open_refuses_other_files_and_newer_schemas(tmp_path):
    (tmp_path / "junk.db").write_bytes(b"this is not sqlite" * 100)
    (tmp_path / "junk.db.key").write_bytes(os.urandom(32))
    with pytest.raises(StoreError, match="not a usable ciphermilter store"):
        KeyStore.open(tmp_path / "junk.db")
    KeyStore.create(tmp_path / "s.db").close()
    conn = sqlite3.connect(tmp_path / "s.db")
    with conn:
        conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99, newer than this ciphermilter supports"):
        KeyStore.open(tmp_path / "s.db")


def test_open_runs_forward_migrations(tmp_path, monkeypatch):
    """A store made by this version gets a later version's migration when that version opens it."""
    with KeyStore.create(tmp_path / "s.db") as made:
        admin.add_domain(made, "kept.example")

    def add_notes_table(db):
        db.create_table("notes", {"text": str})

    later = [*schema.MIGRATIONS, add_notes_table]
    monkeypatch.setattr(schema, "MIGRATIONS", later)
    with KeyStore.open(tmp_path / "s.db") as upgraded:
        assert admin.info(upgraded)["schema_version"] == len(later) and admin.list_domains(upgraded) == ["kept.example"]
    conn = sqlite3.connect(tmp_path / "s.db")
    assert conn.execute("SELECT count(*) FROM notes").fetchone() == (0,)
    conn.close()
    monkeypatch.undo()
    with pytest.raises(StoreError, match=f"schema version {len(later)}, newer than this ciphermilter supports"
                                         f" \\({len(later) - 1}\\)"):
        KeyStore.open(tmp_path / "s.db")


# What each migration step added, undone to make a store of the version before it.
_UNDO = {4: "DROP TABLE store_versions", 3: "ALTER TABLE certificates DROP COLUMN last_used",
         2: "DROP TABLE bindings"}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_an_older_store_is_migrated_on_open(tmp_path, version):
    """Stores made before the reader rule (v1), before harvest expiry (v2) and before shared freshness (v3):
    opening a SQLite file adds the bindings table, the last_used column and store_versions; keys stay, and
    the new parts work."""
    with KeyStore.create(tmp_path / "s.db") as made:
        admin.import_file(made, (CORPUS / "keys" / "smime" / "pub-bob.p12").read_bytes(), password=b"corpus-public")
    conn = sqlite3.connect(tmp_path / "s.db")
    with conn:
        for undone in range(4, version, -1):
            conn.execute(_UNDO[undone])
        conn.execute("UPDATE schema_version SET version = ?", (version,))
    assert ("last_used" in [row[1] for row in conn.execute("PRAGMA table_info(certificates)")]) == (version == 3)
    conn.close()
    with KeyStore.open(tmp_path / "s.db") as upgraded:
        assert admin.info(upgraded)["schema_version"] == 4
        key = admin.list_keys(upgraded)[0]["id"]
        assert admin.bind(upgraded, key, "@corp-pub.example")
        assert admin.show_key(upgraded, key)["readers"] == ["@corp-pub.example", "bob@corp-pub.example"]
        assert upgraded.rows("SELECT last_used FROM certificates")[0][0] is None
        assert admin.expire_harvested(upgraded, 0) == []  # the imported certificate never expires


# ---------------------------------------------------------------------------- failures leave the store as it was

FAILURES = [
    ("key without certificate", "keys/smime/pub-bob.key.pem", None, None, "private key without its certificate"),
    ("wrong p12 password", "keys/smime/pub-bob.p12", b"wrong", None, "wrong PKCS#12 password"),
    ("p12 without password", "keys/smime/pub-bob.p12", None, None, "password protected: give its password"),
    ("wrong passphrase", "keys/pgp/pub-pgp-erin-cv25519.sec.asc", None, "wrong",
     "wrong passphrase for OpenPGP secret key"),
    ("missing passphrase", "keys/pgp/pub-pgp-erin-cv25519.sec.asc", None, None, "passphrase protected"),
]


@pytest.mark.parametrize("name, relative, password, passphrase, message", FAILURES, ids=[f[0] for f in FAILURES])
def test_refused_imports_change_nothing(store, name, relative, password, passphrase, message):
    admin.add_domain(store, "corp-pub.example")
    admin.import_file(store, (CORPUS / "keys/foreign/pub-alice.cert.pem").read_bytes())
    before = dump(store)
    with pytest.raises(StoreError, match=message):
        admin.import_file(store, (CORPUS / relative).read_bytes(), filename=relative, password=password,
                          passphrase=passphrase)
    assert dump(store) == before


def damaged_files() -> list[tuple[str, bytes, str]]:
    p12 = (CORPUS / "keys/smime/pub-bob.p12").read_bytes()
    cert = (CORPUS / "keys/smime/pub-bob.cert.pem").read_bytes()
    armored = (CORPUS / "keys/pgp/pub-pgp-bob-rsa3072.sec.asc").read_bytes()
    der = x509.load_pem_x509_certificate(cert).public_bytes(serialization.Encoding.DER)
    binary = pgpy.PGPKey.from_blob(armored)[0].__bytes__()
    return [
        ("truncated p12", p12[: len(p12) // 2], "truncated or corrupt DER"),
        ("truncated PEM", cert[: len(cert) // 2], "without a complete BEGIN/END block"),
        ("truncated DER", der[:-10], "truncated or corrupt DER"),
        ("truncated armor", armored[: len(armored) // 2], "without a complete BEGIN/END block"),
        ("truncated binary OpenPGP", binary[: len(binary) // 2], "truncated or corrupt OpenPGP data"),
        ("bad base64 in armor", armored.replace(b"\n\n", b"\n\n!!!!", 1), "bad base64"),
        ("text", b"hello, this is not a key\n", "unknown format"),
        ("empty", b"\n", "empty file"),
        ("other PEM", b"-----BEGIN DH PARAMETERS-----\nMAA=\n-----END DH PARAMETERS-----\n", "unsupported PEM block"),
        ("armored message", b"-----BEGIN PGP MESSAGE-----\n\nwA==\n-----END PGP MESSAGE-----\n", "is not a key"),
    ]


@pytest.mark.parametrize("name, data, message", damaged_files(), ids=[d[0] for d in damaged_files()])
def test_damaged_files_are_refused(store, name, data, message):
    before = dump(store)
    with pytest.raises(StoreError, match=message):
        admin.import_file(store, data, filename="f", password=b"corpus-public")
    assert dump(store) == before


def test_one_bad_file_rolls_back_the_whole_import(store):
    good = parse_file(CORPUS / "keys/smime/pub-bob.cert.pem")
    lonely_key = parse_file(CORPUS / "keys/smime/pub-erin-p256.key.pem")
    before = dump(store)
    with pytest.raises(StoreError, match="erin.key: private key without its certificate"):
        admin.import_bundles(store, [("bob.cert", good), ("erin.key", lonely_key)])
    assert dump(store) == before


def test_key_and_certificate_in_separate_files_of_one_import(store):
    result = admin.import_bundles(store, [("key", parse_file(CORPUS / "keys/smime/pub-bob.key.pem")),
                                   ("cert", parse_file(CORPUS / "keys/smime/pub-bob.cert.pem"))])
    assert len(result.added) == 2 and len(store.all_smime_private_keys()) == 1


# ---------------------------------------------------------------------------- harvesting, removal


def test_harvested_certificates_and_keys(store):
    der = parse_file(CORPUS / "keys/foreign/pub-alice.cert.pem").certificates[0]
    assert harvested(store, certificates=(der,)) == ["added"] and harvested(store, certificates=(der,)) == ["known"]
    assert harvested(store, certificates=(b"\x30\x03junk",))[0].startswith("not harvested (certificate not usable: ")
    (entry,) = admin.list_keys(store)
    assert entry["origin"] == "harvested" and store.trust_anchors() == []
    secret = (CORPUS / "keys/pgp/pub-pgp-bob-rsa3072.sec.asc").read_bytes()
    assert harvested(store, pgp=secret) == ["added"] and harvested(store, pgp=secret) == ["known"]
    assert store.all_pgp_secret_keys() == [] and store.pgp_public_keys("8A351CCB200DA75B")
    # an admin import of the same certificate vouches for it
    admin.import_file(store, (CORPUS / "keys/foreign/pub-alice.cert.pem").read_bytes())
    assert admin.list_keys(store)[0]["origin"] == "imported"


def test_remove_keys_and_anchors(store):
    admin.import_file(store, (CORPUS / "keys/smime/pub-bob.p12").read_bytes(), password=b"corpus-public")
    admin.import_file(store, (CORPUS / "keys/pgp/pub-pgp-bob-rsa3072.sec.asc").read_bytes())
    anchor = parse_file(CORPUS / "keys/trust/pub-root-ca.cert.pem").certificates[0]
    assert admin.add_trust_anchor(store, anchor) and not admin.add_trust_anchor(store, anchor)
    (cert,) = [k for k in admin.list_keys(store) if k["type"] == "x509"]
    with pytest.raises(StoreError, match="not a key ID"):
        admin.remove_key(store, "bob")
    assert admin.remove_key(store, cert["id"][:12].lower())
    assert store.all_smime_private_keys() == []
    assert admin.remove_key(store, "8A351CCB200DA75B")  # a subkey ID names its key
    assert admin.list_keys(store) == [] and not admin.remove_key(store, "8A351CCB200DA75B")
    assert admin.remove_trust_anchor(store, hashlib.sha256(anchor).hexdigest()[:8]) and store.trust_anchors() == []


# ---------------------------------------------------------------------------- caches, other processes


def test_changes_by_another_process_reach_the_caches(imported, tmp_path):
    store, _ = imported
    assert not store.is_internal_domain("late.example")
    version = store.data_version()
    script = textwrap.dedent(f"""
        from ciphermilter.store import admin
        from ciphermilter.store.keystore import KeyStore
        with KeyStore.open({store.path!r}) as other:
            admin.add_domain(other, "late.example")
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
    assert store.data_version() == version  # the daemon refreshes once per message, not on every lookup
    assert store.refresh() != version
    assert store.data_version() != version
    assert store.is_internal_domain("late.example")
    admin.remove_domain(store, "late.example")


def test_decrypted_keys_are_cached(corpus_store):
    first = corpus_store.pgp_secret_keys("8A351CCB200DA75B")
    assert corpus_store.pgp_secret_keys("8A351CCB200DA75B")[0] is first[0]
    pairs = corpus_store.all_smime_private_keys()
    assert [key for _, key in corpus_store.all_smime_private_keys()] == [key for _, key in pairs]


# ---------------------------------------------------------------------------- backup, restore, export


def test_backup_while_another_process_writes(imported, tmp_path):
    store, _ = imported
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from ciphermilter.store import admin
        from ciphermilter.store.keystore import KeyStore
        with KeyStore.open({store.path!r}) as other:
            for n in range(150):
                admin.add_domain(other, f"d{{n}}.busy.example")
            for n in range(150):
                admin.remove_domain(other, f"d{{n}}.busy.example")
    """)], cwd=ROOT)
    backups = []
    while writer.poll() is None or not backups:
        target = tmp_path / f"b{len(backups)}.db"
        admin.backup(store, target)
        backups.append(target)
    assert writer.wait() == 0
    for target in backups:
        with KeyStore.open_read_only(target, store.path + ".key") as copy:
            assert admin.integrity_check(copy) == []
            assert len(admin.list_keys(copy)) == len(admin.list_keys(store))


def test_backup_refuses_to_overwrite(store, tmp_path):
    (tmp_path / "exists.db").write_bytes(b"keep")
    with pytest.raises(StoreError, match="back it up with pg_dump" if store.locator.shared else "exists already"):
        admin.backup(store, tmp_path / "exists.db")
    assert (tmp_path / "exists.db").read_bytes() == b"keep"


def test_restore(imported, tmp_path):
    store, _ = imported
    admin.backup(store, tmp_path / "backup.db")
    key = Path(store.path + ".key")
    target, target_key = tmp_path / "new.db", tmp_path / "new.db.key"
    target_key.write_bytes(key.read_bytes())
    with admin.restore(tmp_path / "backup.db", target) as restored:
        assert admin.list_keys(restored) == admin.list_keys(store)
        assert admin.integrity_check(restored) == []
        assert len(restored.all_smime_private_keys()) == len(store.all_smime_private_keys())
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    (tmp_path / "other.key").write_bytes(os.urandom(32))
    before = dump(target)
    with pytest.raises(StoreError, match="does not belong"):
        admin.restore(tmp_path / "backup.db", target, tmp_path / "other.key")
    (tmp_path / "broken.db").write_bytes((tmp_path / "backup.db").read_bytes()[:5000])
    with pytest.raises(StoreError):
        admin.restore(tmp_path / "broken.db", target)
    assert dump(target) == before


def test_export_and_import_into_a_fresh_store(imported, tmp_path):
    store, _ = imported
    data = admin.export_all(store, "moving day")
    document = json.loads(data)
    secrets = [keyimport.read_openpgp_keys(keyimport.dearmor_keys(item["armored"].encode())[0])[0]
               for item in document["openpgp_keys"] if item["secret"]]
    assert len(secrets) == 6 and all(key.is_protected for key in secrets)
    assert {key.version for key in secrets} == {4, 6}
    assert len(document["smime_keys"]) == 4 and b"BEGIN PRIVATE KEY" not in data
    with KeyStore.create(tmp_path / "fresh.db") as fresh:
        with pytest.raises(StoreError, match="wrong export password"):
            admin.import_export(fresh, data, "wrong")
        with pytest.raises(StoreError, match="give its password"):
            admin.import_export(fresh, data, None)
        with pytest.raises(StoreError, match="corrupt or truncated export"):
            admin.import_export(fresh, data[: len(data) // 2], "moving day")
        assert admin.list_keys(fresh) == []
        admin.import_export(fresh, data, "moving day")

        def comparable(keys):
            return [{k: v for k, v in key.items() if k != "added"} for key in keys]
        assert comparable(admin.list_keys(fresh)) == comparable(admin.list_keys(store))
        assert comparable(admin.list_trust_anchors(fresh)) == comparable(admin.list_trust_anchors(store))
        assert admin.list_domains(fresh) == admin.list_domains(store)
        assert [der for der, _ in fresh.all_smime_private_keys()] == [der for der, _ in store.all_smime_private_keys()]
        secrets = [key.to_bytes() for key in fresh.all_pgp_secret_keys()]
        assert secrets == [key.to_bytes() for key in store.all_pgp_secret_keys()]
        assert admin.import_export(fresh, data, "moving day").added == []


@pytest.mark.parametrize("fmt, secret", [("pem", False), ("pem", True), ("p12", True)])
def test_export_one_smime_key(corpus_store, fmt, secret, tmp_path):
    (bob,) = [k for k in admin.list_keys(corpus_store) if k["emails"] == ["bob@corp-pub.example"]]
    data = admin.export_key(corpus_store, bob["id"][:16], fmt, secret=secret, password="pw")
    bundle = keyimport.parse(data, password=b"pw")
    assert hashlib.sha256(bundle.certificates[0]).hexdigest().upper() == bob["id"]
    assert len(bundle.private_keys) == int(secret)


def test_export_one_pgp_key(corpus_store):
    public = admin.export_key(corpus_store, "8A351CCB200DA75B", "openpgp")
    assert public.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    protected = admin.export_key(corpus_store, "8A351CCB200DA75B", "openpgp", secret=True, password="pw")
    with pytest.raises(keyimport.KeyFormatError, match="wrong passphrase"):
        keyimport.parse(protected, passphrase="nope")
    (key,) = keyimport.parse(protected, passphrase="pw").pgp_keys
    assert key.to_bytes() == corpus_store.pgp_secret_keys("8A351CCB200DA75B")[0].to_bytes()
    with pytest.raises(StoreError, match="export it with --format openpgp"):
        admin.export_key(corpus_store, "8A351CCB200DA75B", "pem")


def test_known_pgp_key_is_updated_by_an_admin_import_only(store):
    """A key that gained a user ID is updated by an import, never by harvesting; the secret stays."""
    path = CORPUS / "keys/pgp/pub-pgp-bob-rsa3072.sec.asc"
    admin.import_file(store, (CORPUS / "keys/pgp/pub-pgp-bob-rsa3072.pub.asc").read_bytes())
    extended, _ = pgpy.PGPKey.from_file(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extended.add_uid(pgpy.PGPUID.new("Bob Again", email="bob.again@corp-pub.example"))
    newer = bytes(extended.pubkey)
    assert harvested(store, pgp=newer) == ["known"]
    result = admin.import_file(store, newer)
    (line,) = result.added
    assert line.startswith("OpenPGP public key E97C6CC22ACC850FFBCF941C7135474EBE209041 ")
    assert line.endswith(" (updated)") and "Bob Again <bob.again@corp-pub.example>" in line
    result = admin.import_file(store, path.read_bytes())  # the older secret key: adds the secret, keeps the new user ID
    assert result.added and store.all_pgp_secret_keys()
    (entry,) = admin.list_keys(store)
    assert entry["secret"] and entry["emails"] == ["bob.again@corp-pub.example", "bob.pgp@corp-pub.example"]
    assert admin.import_file(store, newer).added == []


def test_milter_threads_share_one_store(imported):
    """Lookups from many threads while another thread writes: every lookup gets the full answer."""
    store, _ = imported
    expected = len(store.all_smime_private_keys())
    failures = []

    def look_up():
        for _ in range(200):
            if len(store.all_smime_private_keys()) != expected or not store.pgp_secret_keys("8A351CCB200DA75B"):
                failures.append("incomplete answer")

    def write():
        for n in range(50):
            admin.add_domain(store, f"t{n}.threads.example")
            admin.remove_domain(store, f"t{n}.threads.example")

    threads = [threading.Thread(target=look_up) for _ in range(4)] + [threading.Thread(target=write)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and not store.is_internal_domain("t0.threads.example")


def test_harvesting_a_known_certificate_keeps_the_caches(store):
    admin.import_file(store, (CORPUS / "keys/smime/pub-bob.p12").read_bytes(), password=b"corpus-public")
    ((der, key),) = store.all_smime_private_keys()
    version = store.data_version()
    assert harvested(store, certificates=(der,)) == ["known"]
    assert store.data_version() == version and store.all_smime_private_keys()[0][1] is key
    alice = parse_file(CORPUS / "keys/foreign/pub-alice.cert.pem").certificates[0]
    (address,) = rows.certificate_emails(alice)
    assert store.certificates(email=address) == []
    # a new certificate refreshes the lookups, and leaves the decrypted keys (store_versions' "harvest" row)
    assert harvested(store, certificates=(alice,)) == ["added"] and store.data_version() == version
    assert store.certificates(email=address) == [alice]
    assert store.all_smime_private_keys()[0][1] is key
