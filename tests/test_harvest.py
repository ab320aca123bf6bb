"""Harvest floods (issue 14): what one message may add to the store, per message and per address, in one
write transaction, and the expiry of what is never used.

The flood is the one of the issue: a partner whose key an administrator imported signs a message that
carries 300 keys of his own address (tests/vectors/harvest-flood, made by gpg with its make.sh). Every one
of them is vouched for by that signature; before the caps, all 300 were kept, one transaction each.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from cryptography import x509

from ciphermilter.core import pipeline as core

from ciphermilter.formats import keyfiles as keyimport
from ciphermilter.store import keystore as store_module
from ciphermilter.cli.main import main
from ciphermilter.core.settings import Limits, Settings
from ciphermilter.store.keystore import KeyStore
from ciphermilter.store import admin
from ciphermilter.store import rows as store_rows
from conftest import BOB, dump, harvested, info_of
from support.forgery import TEXT, Gpg, head, pgp_mime_signed, with_keys
from support import pki

FLOOD = Path(__file__).parent / "vectors" / "harvest-flood"
PARTNER = "partner@sender-pub.example"
FLOOD_KEYS = keyimport.parse((FLOOD / "flood.pub.asc").read_bytes()).pgp_keys
PER_MESSAGE = store_module.per_message_refusal(10)


@pytest.fixture(scope="module")
def partner(tmp_path_factory) -> tuple[Gpg, str]:
    """The partner's gpg with his signing key; its key ID."""
    gpg = Gpg(tmp_path_factory.mktemp("partner") / "gnupg")
    keyid = gpg.import_file(FLOOD / "signer.sec.asc")
    yield gpg, keyid
    subprocess.run(["gpgconf", "--homedir", str(gpg.home), "--kill", "gpg-agent"], capture_output=True)


@pytest.fixture
def store(store_location, partner):
    """The admin imported the partner's public key; corp-pub.example is internal. On SQLite and on
    PostgreSQL in turn (support/pg_fixtures.py)."""
    gpg, keyid = partner
    with KeyStore.create(*store_location) as store:
        admin.import_file(store, gpg.public_key(keyid))
        admin.add_domain(store, "corp-pub.example")
        yield store


def flood_message(partner, keys: bytes) -> bytes:
    gpg, keyid = partner
    return pgp_mime_signed(gpg, keyid, with_keys(TEXT, keys), head(PARTNER))


def armored(keys) -> bytes:
    return b"".join(key.armored().encode() + b"\n" for key in keys)


def harvested_rows(store) -> int:
    return store.rows("SELECT (SELECT count(*) FROM pgp_keys WHERE origin = 'harvested')"
                       " + (SELECT count(*) FROM certificates WHERE origin = 'harvested')")[0][0]


def write_transactions(store) -> list[str]:
    """Every write transaction the store's connection begins from now on: sqlite3's statement trace; on
    PostgreSQL each transaction the store opens (psycopg sends its BEGIN past any trace of ours)."""
    begun: list[str] = []
    if store.locator.shared:
        opened = store.db.transaction
        store.db.transaction = lambda: (begun.append("BEGIN"), opened())[1]
    else:
        store.db.conn.set_trace_callback(
            lambda sql: begun.append("BEGIN") if sql.startswith("BEGIN IMMEDIATE") else None)
    return begun


def apart(store, sql: str, params: tuple = ()) -> None:
    """Run one write on a connection of its own, as another process would (either backend)."""
    if store.locator.shared:
        with psycopg.connect(store.locator.target, autocommit=True) as conn:
            conn.execute(sql.replace("?", "%s"), params)
        return
    conn = sqlite3.connect(store.locator.target)
    with conn:
        conn.execute(sql, params)
    conn.close()


def caps(per_message: int = 10, per_address: int = 10, expiry_days: int = 90, per_signer: int = 10) -> Settings:
    return Settings(harvest_expiry_days=expiry_days,
                    limits=Limits(max_harvest_per_message=per_message, max_harvest_per_address=per_address,
                                  max_harvest_per_signer=per_signer))


# --------------------------------------------------------------------------- the flood


def test_a_message_with_300_vouched_keys_adds_the_cap_in_one_transaction(store, partner):
    message = flood_message(partner, (FLOOD / "flood.pub.asc").read_bytes())
    begun = write_transactions(store)

    outcome = core.process(message, BOB, store)

    assert begun == ["BEGIN"]
    assert harvested_rows(store) == 10
    assert info_of(outcome)["PGP-Signature-Valid"] == "True" and outcome.plan.body is None
    lines = outcome.report["harvest"]
    assert len(lines) == 300
    assert lines[:10] == [f"0.1.2: {key.keyid} added" for key in FLOOD_KEYS[:10]]
    assert lines[10:] == [f"0.1.2: {key.keyid} {PER_MESSAGE}" for key in FLOOD_KEYS[10:]]
    kept = {row[0] for row in store.rows("SELECT fingerprint FROM pgp_keys WHERE origin = 'harvested'")}
    assert kept == {key.fingerprint for key in FLOOD_KEYS[:10]}


def test_the_next_flood_finds_the_address_full_and_evicts_nothing(store, partner):
    core.process(flood_message(partner, armored(FLOOD_KEYS[:10])), BOB, store)
    before = dump(store)

    outcome = core.process(flood_message(partner, armored(FLOOD_KEYS[10:20])), BOB, store)

    full = store_module.per_address_refusal(10, PARTNER)
    assert outcome.report["harvest"] == [f"0.1.2: {key.keyid} {full}" for key in FLOOD_KEYS[10:20]]
    assert dump(store) == before  # the refusals wrote nothing, and the first ten stay


@pytest.fixture(scope="module")
def many_addresses(tmp_path_factory) -> tuple[Gpg, str, list[str]]:
    """A partner's signing key with three user IDs, and six keys per address for it to vouch for (made by gpg)."""
    gpg = Gpg(tmp_path_factory.mktemp("many") / "gnupg")
    addresses = [f"desk{n}@sender-pub.example" for n in range(3)]
    signer = gpg.generate(addresses[0])
    for address in addresses[1:]:
        gpg.run("--quick-add-uid", signer, address)
    carried = [gpg.public_key(gpg.generate(addresses[n % 3])) for n in range(18)]
    yield gpg, signer, carried
    subprocess.run(["gpgconf", "--homedir", str(gpg.home), "--kill", "gpg-agent"], capture_output=True)


def test_a_signer_with_many_addresses_keeps_the_cap_per_signer_not_per_address(tmp_path, many_addresses):
    # 18 keys, 6 per address of one signer, over three messages: the cap per address (10) never bites,
    # so before the cap per signer they were all kept
    gpg, signer, carried = many_addresses
    with KeyStore.create(tmp_path / "store.db") as store:
        admin.import_file(store, gpg.public_key(signer))
        admin.add_domain(store, "corp-pub.example")
        outcomes = [core.process(pgp_mime_signed(gpg, signer, with_keys(TEXT, *carried[n:n + 6]),
                                                 head("desk0@sender-pub.example")), BOB, store)
                    for n in (0, 6, 12)]

        verdicts = [line.split(" ", 2)[2] for outcome in outcomes for line in outcome.report["harvest"]]
        assert verdicts == ["added"] * 10 + [store_module.per_signer_refusal(10)] * 8
        assert harvested_rows(store) == 10


def test_the_per_signer_cap_counts_the_addresses_of_one_certificate_together(store):
    root = pki.issue("Harvest Root", ca=True)
    one = tuple(pki.issue(f"One {n}", root, email="one@sender-pub.example").der for n in range(3))
    other = tuple(pki.issue(f"Other {n}", root, email="other@sender-pub.example").der for n in range(3))
    both_names = x509.SubjectAlternativeName([x509.RFC822Name("one@sender-pub.example"),
                                              x509.RFC822Name("other@sender-pub.example")])
    both = pki.issue("Both", root, extra=[(both_names, False)]).der
    assert harvested(store, certificates=one + other, settings=caps(per_address=4, per_signer=5)) == ["added"] * 6
    # 3 rows for each of its addresses, under the cap per address (4); 6 for the two together, over 5
    assert harvested(store, certificates=(both,), settings=caps(per_address=4, per_signer=5)) == [
        store_module.per_signer_refusal(5)]


def test_known_keys_need_no_transaction(store, partner):
    message = flood_message(partner, armored(FLOOD_KEYS[:3]))
    core.process(message, BOB, store)
    begun = write_transactions(store)

    outcome = core.process(message, BOB, store)

    assert begun == [] and outcome.report["harvest"] == [f"0.1.2: {k.keyid} known" for k in FLOOD_KEYS[:3]]


# --------------------------------------------------------------------------- the caps, exactly


@pytest.mark.parametrize("per_message", [1, 3, 7])
def test_the_per_message_cap_is_exact_and_known_keys_do_not_count(store, per_message):
    assert harvested(store, pgp=armored(FLOOD_KEYS[:2])) == ["added", "added"]
    offered = armored(FLOOD_KEYS[:2] + FLOOD_KEYS[2:12])
    refusal = store_module.per_message_refusal(per_message)
    assert harvested(store, pgp=offered, settings=caps(per_message=per_message)) == (
        ["known", "known"] + ["added"] * per_message + [refusal] * (10 - per_message))
    assert harvested_rows(store) == 2 + per_message


@pytest.mark.parametrize("per_address", [1, 4, 10])
def test_the_per_address_cap_is_exact(store, per_address):
    full = store_module.per_address_refusal(per_address, PARTNER)
    assert harvested(store, pgp=armored(FLOOD_KEYS[:12]), settings=caps(per_message=12, per_address=per_address)) == (
        ["added"] * per_address + [full] * (12 - per_address))
    assert harvested_rows(store) == per_address


def test_the_per_address_cap_counts_certificates_and_keys_together(store):
    root = pki.issue("Harvest Root", ca=True)
    certificates = tuple(pki.issue(f"Partner {n}", root, email=PARTNER).der for n in range(3))
    assert harvested(store, certificates=certificates, settings=caps(per_address=4)) == ["added"] * 3
    full = store_module.per_address_refusal(4, PARTNER)
    assert harvested(store, pgp=armored(FLOOD_KEYS[:2]), settings=caps(per_address=4)) == ["added", full]


def test_one_cap_for_certificates_and_keys_of_one_message(store):
    root = pki.issue("Harvest Root", ca=True)
    certificates = tuple(pki.issue(f"Signer {n}", root, email=f"s{n}@sender-pub.example").der for n in range(2))
    batch_lines = harvested(store, certificates=certificates, pgp=armored(FLOOD_KEYS[:1]), settings=caps(per_message=2))
    assert batch_lines == ["added", "added", store_module.per_message_refusal(2)]


def test_an_address_is_counted_without_regard_to_case(store):
    root = pki.issue("Harvest Root", ca=True)
    upper = pki.issue("Partner", root, email=PARTNER.upper()).der
    assert harvested(store, certificates=(upper,), settings=caps(per_address=1)) == ["added"]
    assert harvested(store, pgp=armored(FLOOD_KEYS[:1]), settings=caps(per_address=1)) == [
        store_module.per_address_refusal(1, PARTNER)]


def test_a_certificate_without_an_address_is_not_kept(store):
    root = pki.issue("Harvest Root", ca=True)
    anonymous = pki.issue("Nobody", root).der
    assert harvested(store, certificates=(anonymous,)) == [store_module.NO_ADDRESS]
    assert harvested_rows(store) == 0


def test_nothing_is_kept_in_a_read_only_store(store, store_location):
    read_only = KeyStore.open_read_only(*store_location)
    try:
        assert harvested(read_only, pgp=armored(FLOOD_KEYS[:1])) == ["not harvested (store opened read-only)"]
    finally:
        read_only.close()


def test_a_locked_store_costs_the_message_its_harvest_not_its_result(store, partner):
    message = flood_message(partner, armored(FLOOD_KEYS[:2]))
    expected = info_of(core.process(message, BOB, store, Settings(harvest_pgp_keys=False)))
    release = hold_the_write_lock(store)
    try:
        outcome = core.process(message, BOB, store)
    finally:
        release()
    assert info_of(outcome) == expected and outcome.error is None
    assert outcome.report["harvest"] == [f"0.1.2: {k.keyid} not harvested (key store busy)"
                                         for k in FLOOD_KEYS[:2]]
    assert harvested_rows(store) == 0


def hold_the_write_lock(store):
    """Another process holds the harvest's write lock, and the store waits for it no time; the release."""
    if store.locator.shared:
        other = psycopg.connect(store.locator.target)  # a transaction left open on the harvest counter's row
        other.execute("SELECT version FROM store_versions WHERE name = 'harvest' FOR UPDATE")
        store.db.execute("SET statement_timeout = 100")
    else:
        other = sqlite3.connect(store.locator.target, timeout=0)
        other.execute("BEGIN IMMEDIATE")
        store.db.conn.execute("PRAGMA busy_timeout = 0")

    def release() -> None:
        other.rollback()
        other.close()
    return release


# --------------------------------------------------------------------------- use and expiry


def backdate(store, days: int) -> None:
    """Every row was added ``days`` ago (as a store that old would hold them)."""
    then = store_rows.before_now(days * 24 * 3600)
    for table in ("certificates", "pgp_keys"):
        apart(store, f"UPDATE {table} SET added = ?", (then,))


@pytest.fixture
def smime_store(store):
    """The partner's store with a trust anchor and, harvested, two trusted signers' certificates."""
    root = pki.issue("Harvest Root", ca=True)
    admin.add_trust_anchor(store, root.der)
    used, unused = (pki.issue(name, root, email=f"{name}@sender-pub.example") for name in ("used", "unused"))
    assert harvested(store, certificates=(used.der, unused.der)) == ["added", "added"]
    return store, root, used, unused


def signed_without_certificates(signer, tmp_path) -> bytes:
    """A message signed by ``signer`` that carries no certificate: only the store can verify it."""
    (tmp_path / "signer.pem").write_bytes(signer.pem)
    (tmp_path / "signer.key").write_bytes(signer.key_pem)
    (tmp_path / "content.eml").write_bytes(TEXT)
    signed = subprocess.run(["openssl", "cms", "-sign", "-binary", "-nocerts", "-in", str(tmp_path / "content.eml"),
                             "-signer", str(tmp_path / "signer.pem"), "-inkey", str(tmp_path / "signer.key")],
                            check=True, capture_output=True).stdout
    return b"From: used@sender-pub.example\r\nTo: bob@corp-pub.example\r\n" + signed.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_expiry_removes_only_harvested_rows_never_used_past_the_age(smime_store, tmp_path):
    store, _, used, unused = smime_store
    admin.import_file(store, armored(FLOOD_KEYS[20:21]))  # an administrator's import: never expires
    assert harvested(store, pgp=armored(FLOOD_KEYS[:1])) == ["added"]  # a harvested OpenPGP key is never used
    message = signed_without_certificates(used, tmp_path)
    begun = write_transactions(store)

    assert info_of(core.process(message, BOB, store))["Signer-Verified-0-0"] == "True"  # by the harvested one
    assert begun == ["BEGIN"]  # its use recorded
    core.process(message, BOB, store)
    assert begun == ["BEGIN"]  # at most once a day: no write for the second message

    backdate(store, 89)
    assert admin.expire_harvested(store, 90) == []
    backdate(store, 91)
    expected = sorted([f"certificate {thumbprint(unused)[:16]} CN=unused",
                       f'OpenPGP key {fingerprint(FLOOD_KEYS[0])} ["{PARTNER}"]'])
    before = dump(store)
    assert sorted(admin.expire_harvested(store, 90, dry_run=True)) == expected and dump(store) == before
    assert sorted(admin.expire_harvested(store, 90)) == expected
    assert {(key["id"], key["origin"]) for key in admin.list_keys(store)} == {
        (fingerprint(SIGNER), "imported"), (fingerprint(FLOOD_KEYS[20]), "imported"), (thumbprint(used), "harvested")}


def test_an_admin_import_of_the_private_key_of_a_harvested_certificate_makes_it_imported(smime_store):
    # Bob's signed mail harvested his certificate before the admin imported his private key alone
    store, _, used, _ = smime_store
    assert admin.import_file(store, used.key_pem).added == ["S/MIME private key for CN=used"]
    assert admin.bind(store, thumbprint(used), "team@corp-pub.example")  # refused while 'harvested'
    shown = admin.show_key(store, thumbprint(used))
    assert (shown["origin"], shown["private_key"]) == ("imported", True)
    assert shown["readers"] == ["team@corp-pub.example", "used@sender-pub.example"]
    backdate(store, 400)
    assert [line.split()[2] for line in admin.expire_harvested(store, 90)] == ["CN=unused"]


def test_expiry_spares_a_private_key_under_a_harvested_certificate(smime_store):
    # as a store may hold it from before imports promoted the certificate: only an admin imports a private key
    store, _, used, _ = smime_store
    admin.import_file(store, used.key_pem)
    apart(store, "UPDATE certificates SET origin = 'harvested'")
    backdate(store, 400)
    assert [line.split()[2] for line in admin.expire_harvested(store, 90)] == ["CN=unused"]
    assert admin.show_key(store, thumbprint(used))["private_key"]


def test_a_harvest_write_expires_a_bounded_number(store, monkeypatch):
    monkeypatch.setattr(store_module, "EXPIRE_PER_HARVEST", 2)
    assert harvested(store, pgp=armored(FLOOD_KEYS[:5])) == ["added"] * 5
    backdate(store, 91)
    assert harvested(store, pgp=armored(FLOOD_KEYS[5:6])) == ["added"]
    assert harvested_rows(store) == 5 - 2 + 1
    assert admin.expire_harvested(store, 90) and harvested_rows(store) == 1  # the new one stays
    assert admin.show_key(store, fingerprint(SIGNER))["origin"] == "imported"


def test_keys_expire_harvested_command(store, store_location):
    assert harvested(store, pgp=armored(FLOOD_KEYS[:2])) == ["added"] * 2
    backdate(store, 31)
    name, key = store_location
    run = lambda *args: CliRunner().invoke(  # noqa: E731
        main, ["--store", name, "--master-key", str(key), "keys", "expire-harvested", *args])
    dry = run("--days", "30", "--dry-run")
    assert dry.exit_code == 0 and dry.output.count("would remove: OpenPGP key ") == 2 and harvested_rows(store) == 2
    assert run().output.endswith("0 harvested certificates and keys (never used, harvested over 90 days ago)"
                                 " were removed\n")
    done = run("--days", "30")
    assert done.exit_code == 0 and done.output.count("removed: OpenPGP key ") == 2 and harvested_rows(store) == 0


SIGNER = keyimport.parse((FLOOD / "signer.sec.asc").read_bytes()).pgp_keys[0]


def thumbprint(issued) -> str:
    return store_rows.thumbprint(issued.der)


def fingerprint(key) -> str:
    return key.fingerprint
