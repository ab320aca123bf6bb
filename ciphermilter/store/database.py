"""One connection to the store's database, SQLite or PostgreSQL, behind the few calls the store makes.

The store writes its SQL once, with ``?`` placeholders and what both engines
share (``INSERT … ON CONFLICT DO NOTHING``, ``EXISTS``, ``||``); a
:class:`Database` runs it on its engine. What differs lives here: the
placeholder style, how a write transaction starts (SQLite's ``BEGIN
IMMEDIATE`` takes the write lock at once; PostgreSQL's row locks come with
the statements), how a list is passed as one parameter, and what a broken
connection raises. A PostgreSQL failure becomes a :class:`StoreError` of one
line (the CLI prints it, the milter applies ``on_error``), never a traceback.
The PostgreSQL side, with the bounds its connections get, is
:mod:`ciphermilter.store.postgres`.
"""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from ciphermilter.store.locator import Backend

# A SQLite writer waits this long for another process's transaction (the CLI beside the daemon) before giving up.
BUSY_TIMEOUT_MS = 10_000

SqlParams = Sequence[object]


class StoreError(Exception):
    """A store operation was refused; ``str()`` is one clear line for the admin."""


class Row(Protocol):
    """A result row, by column name or position (sqlite3.Row, :class:`postgres.PgRow`)."""

    def __getitem__(self, key: Any, /) -> Any: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Database(Protocol):
    """What the store asks of its connection; ``execute`` takes ``?`` placeholders on every backend."""

    backend: Backend
    json_values: str  # a subquery of the text values of one parameter holding a JSON array

    def execute(self, sql: str, params: SqlParams = ()) -> Cursor: ...

    def executemany(self, sql: str, params: Sequence[SqlParams]) -> None: ...

    def transaction(self) -> contextlib.AbstractContextManager[None]: ...

    def table_exists(self, name: str) -> bool: ...

    def changes(self) -> int:
        """Rows inserted, updated or deleted through this connection so far (a no-op write is no change)."""

    def close(self) -> None: ...


class SqliteDatabase:
    """A SQLite file in autocommit mode: every change runs in an explicit BEGIN IMMEDIATE ... COMMIT."""

    backend: Backend = "sqlite"
    json_values = "SELECT value FROM json_each(?)"

    def __init__(self, path: str, read_only: bool = False):
        target = pathlib.Path(path).absolute().as_uri() + "?mode=ro" if read_only else path
        self.conn = sqlite3.connect(target, uri=read_only, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not read_only:
            self.conn.execute("PRAGMA journal_mode = WAL")

    def execute(self, sql: str, params: SqlParams = ()) -> Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, params: Sequence[SqlParams]) -> None:
        self.conn.executemany(sql, params)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def changes(self) -> int:
        return self.conn.total_changes

    def table_exists(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                 (name,)).fetchone() is not None

    def close(self) -> None:
        self.conn.close()
