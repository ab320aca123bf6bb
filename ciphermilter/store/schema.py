"""The key store's tables and their migrations, written once for both backends.

Schema version 4 (see :data:`MIGRATIONS`); the tables are described in
:mod:`ciphermilter.store.keystore`. The steps speak to a :class:`Ddl`:
sqlite-utils makes the tables of a SQLite file, as it always did, and
:class:`PostgresDdl` writes the same tables, columns, primary keys, NOT NULL
constraints and index names for PostgreSQL (text compared byte by byte,
``COLLATE "C"``, as SQLite does). A migration runs inside one write
transaction, so a store is never left half migrated; a store newer than this
ciphermilter is refused, never downgraded. A SQLite file is migrated when it
is opened; a PostgreSQL store, which other gateways share, only by
``ciphermilter store migrate`` (an upgraded gateway must not lock out the
others behind their back).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable
from typing import Protocol

import sqlite_utils

from ciphermilter.store import connection, locator, masterkey
from ciphermilter.store.database import Database, SqliteDatabase, StoreError as StoreError
from ciphermilter.store.locator import Locator

PathLike = str | os.PathLike[str]
Columns = dict[str, type]


class Ddl(Protocol):
    """The table and index statements a migration step makes, for one backend."""

    @property
    def db(self) -> Database: ...

    def create_table(self, name: str, columns: Columns, pk: str | tuple[str, ...] | None = None,
                     not_null: Iterable[str] = ()) -> None: ...

    def create_index(self, table: str, columns: list[str]) -> None: ...

    def add_column(self, table: str, column: str, kind: type) -> None: ...


class SqliteDdl:
    """sqlite-utils, as every SQLite store so far was made."""

    def __init__(self, db: SqliteDatabase):
        self.db = db
        self._utils = sqlite_utils.Database(db.conn)

    def create_table(self, name: str, columns: Columns, pk: str | tuple[str, ...] | None = None,
                     not_null: Iterable[str] = ()) -> None:
        self._utils.create_table(name, columns, pk=pk, not_null=set(not_null))

    def create_index(self, table: str, columns: list[str]) -> None:
        self._utils.table(table).create_index(columns)

    def add_column(self, table: str, column: str, kind: type) -> None:
        self._utils.table(table).add_column(column, kind)


_PG_TYPES = {str: 'TEXT COLLATE "C"', bytes: "BYTEA", int: "BIGINT"}


class PostgresDdl:
    """The same tables for PostgreSQL: sqlite-utils' names for indexes, its types mapped one to one."""

    def __init__(self, db: Database):
        self.db = db

    def create_table(self, name: str, columns: Columns, pk: str | tuple[str, ...] | None = None,
                     not_null: Iterable[str] = ()) -> None:
        required = set(not_null)
        keys = () if pk is None else (pk,) if isinstance(pk, str) else pk
        defined = [f"{column} {_PG_TYPES[kind]}{' NOT NULL' if column in required else ''}"
                   for column, kind in columns.items()]
        if keys:
            defined.append(f"PRIMARY KEY ({', '.join(keys)})")
        self.db.execute(f"CREATE TABLE {name} ({', '.join(defined)})")

    def create_index(self, table: str, columns: list[str]) -> None:
        self.db.execute(f"CREATE INDEX idx_{table}_{'_'.join(columns)} ON {table} ({', '.join(columns)})")

    def add_column(self, table: str, column: str, kind: type) -> None:
        self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {_PG_TYPES[kind]}")


def _schema_v1(db: Ddl) -> None:
    db.create_table("meta", {"name": str, "value": bytes}, pk="name")
    db.create_table("certificates", {
        "thumbprint": str, "der": bytes, "subject": str, "issuer": str, "subject_key": str, "issuer_key": str,
        "serial": str, "ski": str, "spki_sha256": str, "not_before": str, "not_after": str, "origin": str,
        "added": str,
    }, pk="thumbprint", not_null={"der", "subject_key", "issuer_key", "serial", "spki_sha256", "origin"})
    db.create_index("certificates", ["issuer_key", "serial"])
    db.create_index("certificates", ["ski"])
    db.create_index("certificates", ["subject_key"])
    db.create_index("certificates", ["spki_sha256"])
    db.create_table("certificate_emails", {"email": str, "thumbprint": str}, pk=("email", "thumbprint"))
    db.create_index("certificate_emails", ["thumbprint"])
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
    db.create_index("pgp_key_ids", ["fingerprint"])
    db.create_table("pgp_emails", {"email": str, "fingerprint": str}, pk=("email", "fingerprint"))
    db.create_index("pgp_emails", ["fingerprint"])
    db.create_table("domains", {"pattern": str, "added": str}, pk="pattern")


def _schema_v2(db: Ddl) -> None:
    """Readers an admin binds to a key (issue 13): an address or ``@domain``, lower case, per key ID
    (certificate thumbprint or OpenPGP primary fingerprint)."""
    db.create_table("bindings", {"key_id": str, "address": str, "added": str}, pk=("key_id", "address"))


def _schema_v3(db: Ddl) -> None:
    """When a harvested certificate was last selected by a lookup (issue 14): harvested material never used
    expires (:meth:`KeyStore.harvest`). NULL for every row so far: no use was recorded. OpenPGP keys need
    no such column: a harvested key verifies nothing (only an import makes it count), so it is never used."""
    db.add_column("certificates", "last_used", str)


def _schema_v4(db: Ddl) -> None:
    """Freshness that every gateway sharing the store can see (issue 18): one counter per kind of write,
    bumped by each write transaction (:meth:`KeyStore.transaction`). ``keys`` moves when an admin changes
    keys, anchors, domains or readers and drops every cache, decrypted keys included; ``harvest`` moves when
    a message harvests and drops only the lookups' caches: a harvested certificate never flushes every
    gateway's decrypted keys. SQLite's ``data_version`` did this for one host only."""
    db.create_table("store_versions", {"name": str, "version": int}, pk="name", not_null=["version"])
    db.db.executemany("INSERT INTO store_versions (name, version) VALUES (?, 0)", [("keys",), ("harvest",)])


# Index i brings the schema from version i to i + 1; the current version is their number.
# Append, never edit a released step.
MIGRATIONS: list[Callable[[Ddl], None]] = [_schema_v1, _schema_v2, _schema_v3, _schema_v4]


def ddl(db: Database) -> Ddl:
    return SqliteDdl(db) if isinstance(db, SqliteDatabase) else PostgresDdl(db)


def version(db: Database) -> int:
    """The schema version of the store; 0 for a file or database that is no ciphermilter store (yet)."""
    if not db.table_exists("schema_version"):
        return 0
    row = db.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def current_version() -> int:
    return len(MIGRATIONS)


def migrate(db: Database, from_version: int) -> None:
    """Run the migrations after ``from_version``; the caller holds the write transaction."""
    if from_version == 0:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version (version) VALUES (0)")
    steps = ddl(db)
    for step in MIGRATIONS[from_version:]:
        step(steps)
    db.execute("UPDATE schema_version SET version = ?", (current_version(),))


def paths(name: PathLike, master_key_path: PathLike | None) -> tuple[Locator, str]:
    """(store, master key): the key beside a SQLite file unless named; a shared store's must be named (no
    file is beside a database, and every gateway holds a copy of the one key)."""
    try:
        where = locator.parse(os.fspath(name))
    except locator.LocatorError as exc:
        raise StoreError(str(exc)) from None
    if master_key_path:
        return where, os.fspath(master_key_path)
    if where.shared:
        raise StoreError(f"store {where.display}: a PostgreSQL store needs its master key file named"
                         " (master_key in the configuration, or --master-key)")
    return where, masterkey.default_path(where.target)


def new_store(where: Locator) -> Database:
    """A connection to where a new store goes: a new SQLite file (0600), or a database holding no store yet."""
    if not where.shared:
        if os.path.exists(where.target):
            raise StoreError(f"store {where.target} exists already")
        create_private_file(where.target)
        return connection.connect(where)
    db = connection.connect(where)
    if version(db):
        db.close()
        raise StoreError(f"store {where.display} exists already")
    return db


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
