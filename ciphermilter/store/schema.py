"""The key store's file: its tables, their migrations, and how a connection to it is made.

Schema version 3 (see :data:`MIGRATIONS`); the tables are described in
:mod:`ciphermilter.store.keystore`. A migration runs inside the write
transaction of the open that finds the file older than this ciphermilter, so
a store is never left half migrated; a file newer than this ciphermilter is
refused, never downgraded.
"""

from __future__ import annotations

import errno
import os
import pathlib
import sqlite3
import stat
from collections.abc import Callable

import sqlite_utils

from ciphermilter.store import masterkey

# A writer waits this long for another process's transaction (the CLI beside the daemon) before giving up.
BUSY_TIMEOUT_MS = 10_000

PathLike = str | os.PathLike[str]


class StoreError(Exception):
    """A store operation was refused; ``str()`` is one clear line for the admin."""


def _schema_v1(db: sqlite_utils.Database) -> None:
    db.create_table("meta", {"name": str, "value": bytes}, pk="name")
    db.create_table("certificates", {
        "thumbprint": str, "der": bytes, "subject": str, "issuer": str, "subject_key": str, "issuer_key": str,
        "serial": str, "ski": str, "spki_sha256": str, "not_before": str, "not_after": str, "origin": str,
        "added": str,
    }, pk="thumbprint", not_null={"der", "subject_key", "issuer_key", "serial", "spki_sha256", "origin"})
    db.table("certificates").create_index(["issuer_key", "serial"])
    db.table("certificates").create_index(["ski"])
    db.table("certificates").create_index(["subject_key"])
    db.table("certificates").create_index(["spki_sha256"])
    db.create_table("certificate_emails", {"email": str, "thumbprint": str}, pk=("email", "thumbprint"))
    db.table("certificate_emails").create_index(["thumbprint"])
    db.create_table("smime_keys", {"spki_sha256": str, "sealed": bytes, "added": str}, pk="spki_sha256")
    db.create_table("trust_anchors", {
        "thumbprint": str, "der": bytes, "subject": str, "not_after": str, "added": str,
    }, pk="thumbprint")
    db.create_table("pgp_keys", {
        "fingerprint": str, "public_key": bytes, "sealed_secret": bytes, "user_ids": str, "origin": str,
        "added": str,
    }, pk="fingerprint", not_null={"public_key", "origin"})
    db.create_table("pgp_key_ids", {"keyid": str, "fingerprint": str, "is_primary": int},
                    pk=("keyid", "fingerprint"))
    db.table("pgp_key_ids").create_index(["fingerprint"])
    db.create_table("pgp_emails", {"email": str, "fingerprint": str}, pk=("email", "fingerprint"))
    db.table("pgp_emails").create_index(["fingerprint"])
    db.create_table("domains", {"pattern": str, "added": str}, pk="pattern")


def _schema_v2(db: sqlite_utils.Database) -> None:
    """Readers an admin binds to a key (issue 13): an address or ``@domain``, lower case, per key ID
    (certificate thumbprint or OpenPGP primary fingerprint)."""
    db.create_table("bindings", {"key_id": str, "address": str, "added": str}, pk=("key_id", "address"))


def _schema_v3(db: sqlite_utils.Database) -> None:
    """When a harvested certificate was last selected by a lookup (issue 14): harvested material never used
    expires (:meth:`KeyStore.harvest`). NULL for every row so far: no use was recorded. OpenPGP keys need
    no such column: a harvested key verifies nothing (only an import makes it count), so it is never used."""
    db.table("certificates").add_column("last_used", str)


# Index i brings the schema from version i to i + 1; the current version is their number.
# Append, never edit a released step.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_schema_v1, _schema_v2, _schema_v3]


def connect(path: str, read_only: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode: every change runs in an explicit BEGIN IMMEDIATE ... COMMIT
    (:meth:`KeyStore.transaction`); rows come back as :class:`sqlite3.Row`."""
    target = pathlib.Path(path).absolute().as_uri() + "?mode=ro" if read_only else path
    conn = sqlite3.connect(target, uri=read_only, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if not read_only:
        conn.execute("PRAGMA journal_mode = WAL")
    return conn


def version(conn: sqlite3.Connection) -> int:
    """The schema version of the file; 0 for a file that is no ciphermilter store (yet)."""
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if not has_table:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def current_version() -> int:
    return len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, from_version: int) -> None:
    """Run the migrations after ``from_version``; the caller holds the write transaction."""
    if from_version == 0:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version (version) VALUES (0)")
    db = sqlite_utils.Database(conn)
    for step in MIGRATIONS[from_version:]:
        step(db)
    conn.execute("UPDATE schema_version SET version = ?", (current_version(),))


def paths(path: PathLike, master_key_path: PathLike | None) -> tuple[str, str]:
    """(store, master key): the key beside the store unless named."""
    store_path = os.fspath(path)
    return store_path, os.fspath(master_key_path) if master_key_path else masterkey.default_path(store_path)


def create_private_file(path: str) -> None:
    """An empty file only its owner can read; refuses to replace an existing one."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    try:
        masterkey.write_private_file(path)
    except FileExistsError:
        raise StoreError(f"{path} exists already; refusing to overwrite it") from None
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror}") from None

def check_readable(path: str) -> None:
    """A store that is there but cannot be read says so ("Permission denied"), not "not found": a directory
    the user cannot enter hides the file from a plain existence test."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise StoreError(f"store {path} is not a file")
    except FileNotFoundError:
        raise StoreError(f"store {path} not found (create it with 'ciphermilter store init')") from None
    except OSError as exc:
        raise StoreError(f"cannot open store {path}: {exc.strerror}") from None
    if not os.access(path, os.R_OK):
        raise StoreError(f"cannot open store {path}: {os.strerror(errno.EACCES)}")
