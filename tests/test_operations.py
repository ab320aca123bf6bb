"""README.rst's operations chapter, done as it says: the restore drill's own commands, key rotation, and
what an upgrade migrates. The commands run as an admin runs them: the installed ``ciphermilter``, openssl
and gpg in subprocesses, on stores in temporary directories."""

from __future__ import annotations

import datetime
import json
import re
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
import sqlite_utils

from ciphermilter.store import schema
from ciphermilter.store.database import SqliteDatabase
from conftest import ROOT
from support.readme import README, chapter, marked_blocks, section

CIPHERMILTER = ROOT / ".venv" / "bin" / "ciphermilter"
SHELL = "/bin/sh"  # the blocks are POSIX sh, as the walkthrough's
PLAINTEXT = "The restored store decrypts."  # the line the drill's message carries


def operations() -> str:
    return chapter(README.read_text(), "Operations")


def cli(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(CIPHERMILTER), *map(str, args)], capture_output=True, text=True, check=check)


def self_signed(directory: Path, name: str, address: str, key: Path | None = None) -> tuple[Path, Path]:
    """A certificate for ``address`` (with a new RSA key, or ``key``'s: a renewal); (certificate, key)."""
    certificate = directory / f"{name}.crt"
    key_path = key or directory / f"{name}.key"
    key_args = ["-key", str(key_path)] if key else ["-newkey", "rsa:2048", "-nodes", "-keyout", str(key_path)]
    subprocess.run(["openssl", "req", "-x509", *key_args, "-days", "30", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=email:{address}", "-out", str(certificate)],
                   check=True, capture_output=True)
    return certificate, key_path


def smime_message(directory: Path, certificate: Path, text: str) -> Path:
    plain, message = directory / f"{text}.txt", directory / f"{text}.eml"
    plain.write_text(f"Content-Type: text/plain\n\n{text}\n")
    subprocess.run(["openssl", "cms", "-encrypt", "-aes256", "-in", str(plain), "-out", str(message),
                    "-subject", "operations", str(certificate)], check=True, capture_output=True)
    return message


def decrypts(store: Path, message: Path, text: str, rcpt: str = "bob@example.com") -> bool:
    """Whether the milter's pipeline on ``store`` delivers ``message`` with ``text`` in the clear."""
    return text in cli("--store", store, "decrypt", "--rcpt", rcpt, message).stdout


def key_ids(store: Path) -> list[str]:
    return [key["id"] for key in json.loads(cli("--store", store, "keys", "list", "--json").stdout)]


@pytest.fixture
def store(tmp_path) -> Path:
    """A store with the internal domain example.com and no key yet."""
    path = tmp_path / "lib" / "ciphermilter.db"
    cli("--store", path, "store", "init")
    cli("--store", path, "domains", "add", "example.com")
    return path


# --------------------------------------------------------------------------- the restore drill


def drill_blocks() -> list[str]:
    """locations, the once-only set-up, the nightly backup, the drill itself."""
    blocks = marked_blocks(README.read_text(), "restore-drill")
    assert len(blocks) == 4, blocks
    return blocks


def run_blocks(blocks: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([SHELL, "-eu", "-c", "\n".join(blocks)], capture_output=True, text=True, env=env)


@pytest.fixture
def installation(tmp_path, store) -> dict[str, str]:
    """The drill's location variables pointed at a store holding bob's certificate and key; root plays the
    milter's user (the test runs as root, and ``runuser -u root`` is the README's ``cm`` unchanged)."""
    certificate, key = self_signed(tmp_path, "bob", "bob@example.com")
    cli("--store", store, "keys", "import", certificate, key)
    config = tmp_path / "ciphermilter.toml"
    config.write_text(f'store = "{store}"\n')
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    return {**os.environ, "CIPHERMILTER": str(CIPHERMILTER), "CM_CONFIG": str(config), "CM_LIB": str(store.parent),
            "CM_USER": "root", "BACKUPS": str(tmp_path / "backups"), "KEY_COPY": str(tmp_path / "master.key"),
            "DRILL_KEY": key_ids(store)[0], "DRILL_RCPT": "bob@example.com", "TMPDIR": str(scratch)}


def test_the_restore_drill_as_written_restores_a_store_that_decrypts(installation):
    result = run_blocks(drill_blocks(), installation)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(PLAINTEXT), result.stdout  # grep's line: the plaintext, decrypted
    backups = list(Path(installation["BACKUPS"]).glob("ciphermilter-*.db"))
    assert len(backups) == 1 and oct(backups[0].stat().st_mode & 0o777) == "0o600"
    assert os.listdir(installation["TMPDIR"]) == []  # the scratch store and its key are gone


def test_the_drill_fails_loudly_with_a_master_key_that_is_not_the_stores(installation, tmp_path):
    locations, once, nightly, drill = drill_blocks()
    assert run_blocks([locations, once, nightly], installation).returncode == 0
    cli("--store", tmp_path / "other.db", "store", "init")
    Path(installation["KEY_COPY"]).write_bytes((tmp_path / "other.db.key").read_bytes())

    result = run_blocks([locations, drill], installation)

    assert result.returncode != 0
    assert "does not belong to store" in result.stderr and PLAINTEXT not in result.stdout


def test_the_drill_needs_its_key_and_recipient_named(installation):
    del installation["DRILL_KEY"]

    result = run_blocks(drill_blocks(), installation)

    assert result.returncode != 0 and "DRILL_KEY" in result.stderr


# --------------------------------------------------------------------------- renewal and rotation


def test_a_new_key_pair_leaves_the_old_one_decrypting_until_it_is_removed(tmp_path, store):
    old_certificate, old_key = self_signed(tmp_path, "bob-2026", "bob@example.com")
    cli("--store", store, "keys", "import", old_certificate, old_key)
    old_id = key_ids(store)[0]
    old_mail = smime_message(tmp_path, old_certificate, "to-the-old-key")

    new_certificate, new_key = self_signed(tmp_path, "bob-2027", "bob@example.com")
    cli("--store", store, "keys", "import", new_certificate, new_key)
    new_mail = smime_message(tmp_path, new_certificate, "to-the-new-key")

    assert decrypts(store, old_mail, "to-the-old-key") and decrypts(store, new_mail, "to-the-new-key")
    cli("--store", store, "keys", "remove", old_id)  # the README: only once its mail is gone
    assert not decrypts(store, old_mail, "to-the-old-key")
    assert decrypts(store, new_mail, "to-the-new-key")


def test_a_renewed_certificate_shares_the_private_key_but_old_mail_names_the_old_certificate(tmp_path, store):
    old_certificate, key = self_signed(tmp_path, "bob-2026", "bob@example.com")
    cli("--store", store, "keys", "import", old_certificate, key)
    old_id = key_ids(store)[0]
    new_certificate, _ = self_signed(tmp_path, "bob-2027", "bob@example.com", key=key)
    cli("--store", store, "keys", "import", new_certificate)  # the certificate alone: the key is stored
    old_mail = smime_message(tmp_path, old_certificate, "to-the-old-certificate")
    new_mail = smime_message(tmp_path, new_certificate, "to-the-new-certificate")
    assert decrypts(store, old_mail, "to-the-old-certificate") and decrypts(store, new_mail, "to-the-new-certificate")

    cli("--store", store, "keys", "remove", old_id)

    assert decrypts(store, new_mail, "to-the-new-certificate")  # the private key stayed with the new certificate
    assert not decrypts(store, old_mail, "to-the-old-certificate")  # named by the old one's issuer and serial


@pytest.fixture
def gpg(tmp_path):
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)

    def run(*args: str, stdin: bytes = b"") -> bytes:
        return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
                               "--passphrase", "", "--trust-model", "always", *args],
                              input=stdin, capture_output=True, check=True).stdout
    yield run
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=True)


def pgp_message(gpg, directory: Path, text: str) -> Path:
    message = directory / f"{text}.eml"
    armored = gpg("--armor", "--encrypt", "-r", "bob@example.com", stdin=f"Content-Type: text/plain\n\n{text}\n".encode())
    message.write_bytes(b"From: alice@example.org\nTo: bob@example.com\nSubject: operations\n\n" + armored)
    return message


def export_secret(gpg, path: Path) -> Path:
    path.write_bytes(gpg("--armor", "--export-secret-keys", "bob@example.com"))
    return path


def test_a_new_openpgp_subkey_is_taken_by_importing_the_key_again(tmp_path, store, gpg):
    """What the README says of a new encryption subkey: the secret key imported again decrypts mail to the
    old and to the new subkey (the sealed copy is replaced, rows.insert_pgp_key). A copy that lacks a subkey
    or a secret the store holds (one subkey exported, or the subkeys without the primary key's secret) leaves
    the stored one, and says so."""
    a_year_ago = "--faked-system-time=20251201T000000"  # the first subkey older than the second, to the second
    gpg(a_year_ago, "--quick-gen-key", "Bob <bob@example.com>", "ed25519", "sign", "3y")
    fingerprint = gpg("--with-colons", "--list-keys", "bob@example.com").decode().split("\nfpr:")[1].split(":")[8]
    gpg(a_year_ago, "--quick-add-key", fingerprint, "cv25519", "encr", "3y")
    cli("--store", store, "keys", "import", export_secret(gpg, tmp_path / "first.sec.asc"))
    old_mail = pgp_message(gpg, tmp_path, "to-the-old-subkey")
    gpg("--quick-add-key", fingerprint, "cv25519", "encr", "3y")  # gpg encrypts to the newest one from now on
    new_mail = pgp_message(gpg, tmp_path, "to-the-new-subkey")
    secret = export_secret(gpg, tmp_path / "second.sec.asc")

    newest = gpg("--with-colons", "--list-keys", "bob@example.com").decode().split("\nsub:")[-1].split(":")[3]
    only_new = tmp_path / "only-new.sec.asc"
    only_new.write_bytes(gpg("--armor", "--export-secret-subkeys", newest + "!"))

    kept = cli("--store", store, "keys", "import", only_new)
    assert "the stored key is kept: this copy lacks its subkeys" in kept.stdout + kept.stderr
    assert decrypts(store, old_mail, "to-the-old-subkey")
    assert not decrypts(store, new_mail, "to-the-new-subkey")

    without_primary = tmp_path / "subkeys.sec.asc"  # every subkey's secret, the primary key's left out
    without_primary.write_bytes(gpg("--armor", "--export-secret-subkeys", fingerprint))
    kept = cli("--store", store, "keys", "import", without_primary)
    assert "the stored secret key is kept: this copy lacks the secret of" in kept.stdout + kept.stderr
    assert not decrypts(store, new_mail, "to-the-new-subkey")

    cli("--store", store, "keys", "import", secret)
    assert decrypts(store, old_mail, "to-the-old-subkey") and decrypts(store, new_mail, "to-the-new-subkey")


def expiry_warnings(store: Path) -> list[str]:
    report = cli("--store", store, "check", "--no-postfix", check=False).stdout
    return [line for line in report.splitlines() if "expires on" in line]


def test_a_new_openpgp_expiry_date_is_taken_by_importing_the_key_again(tmp_path, store, gpg):
    """The README's renewal of an OpenPGP key (a new self-signature with a later expiry): imported again,
    `check` sees the new expiry."""
    yesterday = "--faked-system-time=" + (datetime.datetime.now(datetime.timezone.utc)
                                          - datetime.timedelta(days=1)).strftime("%Y%m%dT%H%M%S")
    gpg(yesterday, "--quick-gen-key", "Bob <bob@example.com>", "ed25519", "sign", "10d")
    fingerprint = gpg("--with-colons", "--list-keys", "bob@example.com").decode().split("\nfpr:")[1].split(":")[8]
    gpg(yesterday, "--quick-add-key", fingerprint, "cv25519", "encr", "10d")
    cli("--store", store, "keys", "import", export_secret(gpg, tmp_path / "first.sec.asc"))
    assert len(expiry_warnings(store)) == 2  # the primary key and its subkey, within 30 days
    gpg("--quick-set-expire", fingerprint, "2y")
    gpg("--quick-set-expire", fingerprint, "2y", "*")
    renewed = export_secret(gpg, tmp_path / "renewed.sec.asc")

    cli("--store", store, "keys", "import", renewed)
    assert expiry_warnings(store) == []


# --------------------------------------------------------------------------- upgrades


def schema_after(steps: int) -> set[str]:
    """Every table and ``table.column`` of a store after the first ``steps`` migrations."""
    database = SqliteDatabase(":memory:")
    for step in schema.MIGRATIONS[:steps]:
        step(schema.SqliteDdl(database))
    db = sqlite_utils.Database(database.conn)
    return {name for table in db.tables for name in (table.name, *(f"{table.name}.{c}" for c in table.columns_dict))}


def test_the_upgrade_section_names_every_migration_and_what_it_adds():
    upgrading = " ".join(section(operations(), "Upgrading").split())
    versions = [int(v) for v in re.findall(r"- schema version (\d+):", upgrading)]
    assert versions == list(range(1, schema.current_version() + 1))
    for version in versions[1:]:
        added = schema_after(version) - schema_after(version - 1)
        new_tables = {name for name in added if "." not in name}
        named = new_tables or added  # a new table is named by itself, a new column as table.column
        entry = upgrading.partition(f"- schema version {version}:")[2].partition("- schema version")[0]
        assert all(f"``{name}``" in entry for name in named), (version, named, entry)


def older_store(store: Path, version: int) -> None:
    """Take ``store`` back to schema ``version`` (3: before the table store_versions), as a release of then left
    it."""
    assert version == 3 == schema.current_version() - 1
    with sqlite3.connect(store) as conn:
        conn.execute("DROP TABLE store_versions")
        conn.execute("UPDATE schema_version SET version = 3")
    conn.close()


def stored_version(store: Path) -> int:
    database = SqliteDatabase(str(store), read_only=True)
    try:
        return schema.version(database)
    finally:
        database.conn.close()


def test_check_and_decrypt_never_migrate_and_the_first_writer_does(tmp_path, store):
    older_store(store, 3)
    message = tmp_path / "plain.eml"
    message.write_text("From: a@example.org\nTo: bob@example.com\nSubject: x\n\nplain\n")

    cli("--store", store, "check", "--no-postfix", check=False)
    cli("--store", store, "decrypt", "--rcpt", "bob@example.com", message)
    assert stored_version(store) == 3

    info = json.loads(cli("--store", store, "store", "info", "--json").stdout)
    assert info["schema_version"] == stored_version(store) == schema.current_version()


def test_an_older_ciphermilter_refuses_a_migrated_store_as_the_readme_quotes(store):
    with sqlite3.connect(store) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (schema.current_version() + 1,))
    conn.close()

    refused = cli("--store", store, "keys", "list", check=False)

    assert refused.returncode == 1
    current = schema.current_version()  # the README quotes the release before this one meeting this one's store
    quoted = f"has schema version {current}, newer than this ciphermilter supports ({current - 1}); upgrade ciphermilter"
    assert quoted in " ".join(section(operations(), "Upgrading").split())
    assert "newer than this ciphermilter supports" in refused.stderr
