"""Shared fixtures: the corpus of real messages in shared/corpus (found by bench/shared.py)."""

from __future__ import annotations

import email.utils
import json
import os
import re
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

from ciphermilter import mime

from ciphermilter.core import pipeline as core

from ciphermilter.core import harvest

from ciphermilter.formats import keyfiles as keyimport
from ciphermilter.core.settings import Settings
from ciphermilter.core.info import INFO_PREFIX
from ciphermilter.store import admin
from ciphermilter.store.keystore import KeyStore

from bench.shared import SHARED

ROOT = Path(__file__).resolve().parents[1]
# Fixtures several test modules share live in plugins, never in a test module another one imports.
pytest_plugins = ["support.attack_fixtures", "support.gpg_fixtures", "support.milter_fixtures",
                  "support.pg_fixtures"]

CORPUS = SHARED / "corpus"
# Every property test is derandomized and keeps no example database: CI draws the same examples on
# every run, so a failure is reproducible and never a flake. Tests set only how many examples they need.
settings.register_profile("ciphermilter", derandomize=True, database=None, deadline=None)
settings.load_profile("ciphermilter")


@pytest.fixture(scope="session", autouse=True)
def own_working_directory(tmp_path_factory):
    """Run every test in a directory of its own, not in the clone.

    The defaults name paths relative to the working directory
    (``var/ciphermilter.db``): run from the clone, the tests would find the
    store that ``./bootstrap run`` (the README's first command) left there.
    """
    previous = Path.cwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(previous)


@pytest.fixture(scope="session", autouse=True)
def no_gpg_agent_left(tmp_path_factory):
    """Stop the gpg-agents that gpg started for the tests' throwaway homes (gpg leaves one running per home)."""
    yield
    for home in gpg_agent_homes(tmp_path_factory.getbasetemp()):
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], capture_output=True, timeout=30)


def gpg_agent_homes(under: Path) -> set[str]:
    """The --homedir of every running gpg-agent whose home lies under ``under``."""
    homes = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:  # the process ended meanwhile
            continue
        if argv and argv[0].endswith("gpg-agent") and "--homedir" in argv[:-1]:
            home = argv[argv.index("--homedir") + 1]
            if Path(home).is_relative_to(under):
                homes.add(home)
    return homes


def corpus_index() -> dict:
    with open(CORPUS / "index.json", encoding="utf-8") as fh:
        return json.load(fh)


def corpus_cases(predicate=lambda case: True) -> list[dict]:
    """Every case of index.json that ``predicate`` accepts, with its expect.json merged in."""
    cases = []
    for summary in corpus_index()["cases"]:
        with open(CORPUS / summary["expect_file"], encoding="utf-8") as fh:
            case = {**summary, **json.load(fh)}
        if predicate(case):
            cases.append(case)
    return cases


def dump(path) -> list[str]:
    """Every row of a store (a KeyStore on either backend, or a SQLite file's path), through a separate
    connection: compares the state before and after."""
    if isinstance(path, KeyStore):
        if path.locator.shared:
            from support.pg_fixtures import dump_postgres  # a plugin (pytest_plugins): loaded once pytest rewrote it
            return dump_postgres(path.locator.target)
        path = path.locator.target
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def case_message(case: dict) -> bytes:
    return (CORPUS / case["message_file"]).read_bytes()


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    return CORPUS


# ---------------------------------------------------------------------------- key store

# Recipient domains of the corpus messages that the milter serves (ours and the third-party cases').
CORPUS_INTERNAL_DOMAINS = ("corp-pub.example", "openpgp.example", "example.com")


def corpus_key_files() -> list[Path]:
    """Every key and certificate file of the corpus outside keys/trust."""
    keys = CORPUS / "keys"
    return sorted(p for p in keys.rglob("*") if p.is_file() and p.suffix in (".pem", ".p12", ".asc")
                  and p.parent.name != "trust")


def corpus_secrets() -> tuple[dict[str, bytes], dict[str, str]]:
    """(PKCS#12 password, OpenPGP passphrase) per corpus-relative key path, from index.json and the cases."""
    index = corpus_index()
    passwords: dict[str, bytes] = {}
    for case in corpus_cases(lambda c: c.get("p12_password")):
        for key in case["keys"]:
            if key.endswith(".p12"):
                passwords[key] = case["p12_password"].encode()
    for path in (CORPUS / "keys").rglob("*.p12"):
        passwords.setdefault(str(path.relative_to(CORPUS)), index["p12_password"].encode())
    passphrases = {key: value for key, value in index["pgp_passphrases"].items() if value}
    return passwords, passphrases


def import_corpus_keys(store) -> dict[str, str]:
    """Import every corpus key file and trust anchor into ``store``; returns {file: error} of refused files."""
    from ciphermilter.formats.keyfiles import parse
    from ciphermilter.store.schema import StoreError

    passwords, passphrases = corpus_secrets()
    refused = {}
    for path in corpus_key_files():
        relative = str(path.relative_to(CORPUS))
        try:
            admin.import_file(store, path.read_bytes(), filename=relative, password=passwords.get(relative),
                              passphrase=passphrases.get(relative))
        except StoreError as exc:
            refused[relative] = str(exc)
    for path in sorted((CORPUS / "keys" / "trust").iterdir()):
        for der in parse(path.read_bytes()).certificates:
            admin.add_trust_anchor(store, der)
    for domain in CORPUS_INTERNAL_DOMAINS:
        admin.add_domain(store, domain)
    # One person, two addresses: bob reads his OpenPGP key (bob.pgp@) at his main address too, as an admin
    # binds it ("keys bind"), so that tests may send bob's PGP mail to bob@corp-pub.example.
    admin.bind(store, next(k["id"] for k in admin.list_keys(store) if "bob.pgp@corp-pub.example" in k["emails"]
                    and k.get("secret")), "bob@corp-pub.example")
    return refused


def corpus_store_file(directory: Path) -> Path:
    """A closed store file in ``directory`` with every corpus key, for a daemon (or a copy) to open."""
    from ciphermilter.store.keystore import KeyStore

    path = directory / "ciphermilter.db"
    with KeyStore.create(str(path)) as store:
        import_corpus_keys(store)
    return path


@pytest.fixture(scope="session")
def corpus_store(tmp_path_factory):
    """A KeyStore holding every corpus key, the trust anchors of keys/trust and the internal domains.

    Every key file imports, the RFC 9580 (v6) OpenPGP keys too.
    """
    from ciphermilter.store.keystore import KeyStore

    store = KeyStore.create(tmp_path_factory.mktemp("corpus-store") / "ciphermilter.db")
    refused = import_corpus_keys(store)
    assert refused == {}, refused
    yield store
    store.close()


# --- what the decryption tests share ------------------------------------------------------------------

# A message to the corpus's internal recipient, as the tests of the handlers and the core send it.
BOB = core.Envelope(recipients=["bob@corp-pub.example"])


def case_envelope(case: dict) -> core.Envelope:
    return message_envelope(case_message(case))


def message_envelope(raw: bytes) -> core.Envelope:
    """The envelope a corpus message travels with: the internal addresses its sender put in To: and Cc:.

    Under the reader rule a message is decrypted only for the readers of the
    keys it is encrypted to, so each case goes to the recipient its sender
    chose (bob, erin, bob.pgp, alice@openpgp.example...), not to one fixed address.
    """
    message = mime.parse(raw)
    addresses = [address.lower() for _, address in email.utils.getaddresses(
        [message.get(name) or "" for name in ("To", "Cc")])]
    internal = [a for a in addresses if a.rpartition("@")[2] in CORPUS_INTERNAL_DOMAINS]
    return core.Envelope(recipients=internal) if internal else BOB


# Harvesting would let one run change the store the next one reads.
NO_HARVEST = Settings(harvest_certificates=False, harvest_pgp_keys=False)


def harvested(store, *, certificates: tuple[bytes, ...] = (), pgp: bytes = b"", settings: Settings = Settings()):
    """The verdicts ("added", "known", "not harvested (...)") of the store on what one message offers:
    certificates (DER) and the OpenPGP keys of ``pgp`` (armored or binary), written as the core writes them."""
    batch = harvest.Batch()
    for der in certificates:
        batch.certificate(der, "test")
    for key in keyimport.parse(pgp).pgp_keys if pgp else ():
        batch.pgp_key(key, "test")
    return [re.sub(r"^test: (?:[0-9A-F]{16} )?", "", line) for line in harvest.keep(store, batch, settings)]


def spooled(message: bytes):
    """``message`` in an anonymous temporary file, as the daemon's spool holds it."""
    file = tempfile.TemporaryFile()
    file.write(message)
    file.flush()
    return file


def ids(cases: list[dict]) -> list[str]:
    """pytest IDs for parametrized corpus cases."""
    return [case["id"] for case in cases]


def info_of(outcome) -> dict[str, str]:
    """An outcome's info headers by their names without the X-CipherMail-Info- prefix, values unfolded."""
    return {name[len(INFO_PREFIX):]: value for name, value in outcome.info.as_dict().items()}
