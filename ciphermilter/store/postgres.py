"""The PostgreSQL side of :mod:`database`: imported only for a store whose URL names PostgreSQL.

PostgreSQL connections get bounds an outage cannot stretch: a connect timeout
per host, TCP keepalives and a user timeout (a peer that vanished is noticed
in about 15 s, not the kernel's two hours), a statement timeout, each a
default the URL may override, and a watchdog of our own for a server that
hangs (:class:`_Watchdog`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg.rows import RowMaker

from ciphermilter.store.database import Cursor, SqlParams, StoreError
from ciphermilter.store.locator import Backend, Locator

# libpq parameters a PostgreSQL store gets unless its URL sets them. Measured against a stopped server and a
# blackholed one: a message waits at most about connect_timeout per host, then on_error applies.
PG_DEFAULTS = {
    "connect_timeout": "5",  # seconds per host tried
    "keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5", "keepalives_count": "3",
    "tcp_user_timeout": "15000",  # ms: unacknowledged data on a dead link fails the query after 15 s
    "application_name": "ciphermilter",
}
# Milliseconds one statement may run: the milter's lookups take well under one (bench/), a lock held by a
# hung session must not hold a message for the whole milter timeout.
STATEMENT_TIMEOUT_MS = 10_000
# Seconds after which the client gives up on a statement (or a COMMIT) itself and cuts the connection: a hung
# server (a stopped process, a stuck disk) enforces no statement_timeout, and its kernel still acknowledges
# every packet, so neither keepalives nor the TCP user timeout notice anything.
CLIENT_TIMEOUT_S = STATEMENT_TIMEOUT_MS / 1000 + 5
WATCH_INTERVAL_S = 0.5


class PgRow(tuple[Any, ...]):
    """A PostgreSQL row read like a :class:`sqlite3.Row`: by position or by column name."""

    names: dict[str, int]

    def __getitem__(self, key: Any, /) -> Any:
        return super().__getitem__(self.names[key] if isinstance(key, str) else key)


@functools.lru_cache(maxsize=256)
def _row_class(names: tuple[str, ...]) -> type[PgRow]:
    """One row class per column list (a query's): made once, not once per query."""
    return type("PgRow", (PgRow,), {"names": {name: index for index, name in enumerate(names)}})


def _pg_rows(cursor: psycopg.Cursor[Any]) -> RowMaker[PgRow]:
    return _row_class(tuple(column.name for column in cursor.description or ()))


@functools.lru_cache(maxsize=512)
def pg_sql(sql: str) -> str:
    """The store's SQL with psycopg's placeholders: ``?`` becomes ``%s``, a literal ``%`` doubles."""
    return sql.replace("%", "%%").replace("?", "%s")


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class _Watchdog:
    """Cuts the connection (shutdown of its socket) when a statement outlives :data:`CLIENT_TIMEOUT_S`; the
    blocked call then fails like any lost connection. One thread per connection, polling twice a second,
    gone with the connection (it holds only a weak reference)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.deadline: float | None = None
        self.closed = False
        threading.Thread(target=_watch, args=(weakref.ref(self),), name="store-watchdog", daemon=True).start()

    @contextlib.contextmanager
    def bounded(self) -> Iterator[None]:
        self.deadline = time.monotonic() + CLIENT_TIMEOUT_S
        try:
            yield
        finally:
            self.deadline = None

    def cut(self) -> None:
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(self.fd)) as cut:
            cut.shutdown(socket.SHUT_RDWR)


def _watch(ref: weakref.ref[_Watchdog]) -> None:
    while (dog := ref()) is not None and not dog.closed:
        deadline = dog.deadline
        if deadline is not None and time.monotonic() > deadline:
            dog.deadline = None
            dog.cut()
        del dog
        time.sleep(WATCH_INTERVAL_S)


class PostgresDatabase:
    """A PostgreSQL database in autocommit mode (no session left idle in a transaction); writes run in
    :meth:`transaction`. Every driver error comes out as a one-line :class:`StoreError`."""

    backend: Backend = "postgresql"
    json_values = "SELECT json_array_elements_text(CAST(? AS json))"

    def __init__(self, locator: Locator, read_only: bool = False):
        self.display = locator.display
        self._changes = 0
        try:
            given = conninfo.conninfo_to_dict(locator.target)
            options = {name: value for name, value in PG_DEFAULTS.items() if name not in given}
            self.conn: psycopg.Connection[PgRow] = psycopg.connect(
                conninfo.make_conninfo(locator.target, **options), autocommit=True, row_factory=_pg_rows)
            self._watchdog = _Watchdog(self.conn.pgconn.socket)
            self.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            if read_only:
                self.execute("SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL store {self.display}: {_one_line(exc)}") from None

    def execute(self, sql: str, params: SqlParams = ()) -> Cursor:
        try:
            with self._watchdog.bounded():
                cursor = self.conn.execute(pg_sql(sql), params)
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL store {self.display}: {_one_line(exc)}") from None
        self._count(sql, cursor.rowcount)
        return cursor

    def executemany(self, sql: str, params: Sequence[SqlParams]) -> None:
        try:
            with self.conn.cursor() as cursor, self._watchdog.bounded():
                cursor.executemany(pg_sql(sql), params)
                self._count(sql, cursor.rowcount)
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL store {self.display}: {_one_line(exc)}") from None

    def _count(self, sql: str, rowcount: int) -> None:
        """What SQLite's total_changes counts: rows a write statement touched (a SELECT's rows are no change)."""
        if rowcount > 0 and sql.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            self._changes += rowcount

    def changes(self) -> int:
        return self._changes

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            with self.conn.transaction():
                yield
                self._watchdog.deadline = time.monotonic() + CLIENT_TIMEOUT_S  # the COMMIT, at the block's end
        except psycopg.Error as exc:  # the COMMIT itself, or a failed rollback on a broken connection
            raise StoreError(f"PostgreSQL store {self.display}: {_one_line(exc)}") from None
        finally:
            self._watchdog.deadline = None

    def table_exists(self, name: str) -> bool:
        return self.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0] is True

    def server(self) -> tuple[str, bool]:
        """(host:port the connection reached, whether it takes writes): a primary, not a standby."""
        info = self.conn.info
        in_recovery = self.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        return f"{info.host}:{info.port}", not in_recovery

    def close(self) -> None:
        self._watchdog.closed = True
        self.conn.close()
