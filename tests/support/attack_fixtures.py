"""The session fixtures of the attack suites (test_attacks, test_attacks_round2), a pytest plugin registered by
tests/conftest.py (``pytest_plugins``): the senders' and the forger's gpg, the PKI, the store built once
with the CLI (each test gets a copy), and the signed and captured messages the families share."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.attack_suite import (CEO, INNER, KEYS, SIGRID, Gpg, Pki, Store, crlf, p7m_entity, pgp_binary_entity,
                                  pgp_encrypt, pgpmime_encrypted_entity, pgpmime_signed, smime_encrypted, text_part)


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("attacks")


@pytest.fixture(scope="session")
def gpg(work) -> Gpg:
    """The senders' gpg: the recipients' public keys and Sigrid's signing key."""
    g = Gpg(work / "gnupg")
    g("--import", str(KEYS / "pgp/pub-pgp-bob-rsa3072.pub.asc"), str(KEYS / "pgp/pub-pgp-gus-sq-cv25519.pub.asc"))
    g.gen_signing_key(f"Sigrid Signer <{SIGRID}>")
    return g


@pytest.fixture(scope="session")
def forger(work) -> Gpg:
    """The attacker's gpg: a fresh key whose user ID claims the CEO's internal address."""
    g = Gpg(work / "gnupg-forger")
    g.gen_signing_key(f"The CEO <{CEO}>")
    return g


@pytest.fixture(scope="session")
def pki(work) -> Pki:
    return Pki(work)


@pytest.fixture(scope="session")
def base_store(work, gpg, pki) -> Store:
    store = Store(work / "base" / "store.db")
    store.path.parent.mkdir()
    store.cli("store", "init")
    store.cli("keys", "import", str(KEYS / "smime/pub-bob.p12"), "--password", "corpus-public")
    store.cli("keys", "import", str(KEYS / "smime/pub-erin-p256.p12"), "--password", "corpus-public")
    store.cli("keys", "import", str(KEYS / "pgp/pub-pgp-bob-rsa3072.sec.asc"))
    store.cli("keys", "import", str(KEYS / "pgp/pub-pgp-gus-sq-cv25519.sec.asc"))
    sigrid = work / "sigrid.pub.asc"
    sigrid.write_bytes(gpg("--armor", "--export", SIGRID))
    store.cli("keys", "import", str(sigrid))
    store.cli("trust", "add", str(KEYS / "trust/pub-root-ca.cert.pem"))
    store.cli("trust", "add", str(pki.dir / "root.pem"))
    store.cli("domains", "add", "corp-pub.example")
    return store


@pytest.fixture
def store(base_store, tmp_path) -> Store:
    """A private copy per test: what one message may write into the store never reaches another test."""
    return base_store.copy(tmp_path / "store")


@pytest.fixture(scope="session")
def captured(work, gpg) -> dict[str, bytes]:
    """Ciphertexts an attacker captured (encrypted to our readers), as parts he can re-send."""
    inner = crlf(INNER.format(marker="CAPTURED-SECRET-2"))
    return {
        "pgpmime": pgpmime_encrypted_entity(pgp_encrypt(gpg, inner), "captured-enc"),
        "pgpbinary": pgp_binary_entity(pgp_encrypt(gpg, b"CAPTURED-SECRET-2\n", armor=False)),
        "smime": p7m_entity(smime_encrypted(work, inner)),
    }


@pytest.fixture(scope="session")
def sigrid_signed(gpg) -> bytes:
    """A valid PGP/MIME signed entity by the admin-imported key of sigrid@sender-pub.example."""
    return pgpmime_signed(gpg, text_part("Signed by Sigrid: pay invoice 17.\n"), SIGRID)


@pytest.fixture(scope="session")
def clearsigned(gpg) -> str:
    return gpg("--armor", "--clearsign", "-u", SIGRID, stdin=b"Signed by Sigrid: pay invoice 17.\n").decode()
