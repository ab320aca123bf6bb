"""The connection a store's name opens: :class:`database.SqliteDatabase`, or for a PostgreSQL URL
:class:`postgres.PostgresDatabase`, imported only then (psycopg and libpq cost every process about 8 MB).

Apart from :mod:`.database`, so that :mod:`.postgres`, which builds on it, makes no import cycle.
"""

from __future__ import annotations

from ciphermilter.store.database import Database, SqliteDatabase
from ciphermilter.store.locator import Locator


def connect(locator: Locator, read_only: bool = False) -> Database:
    if locator.backend == "postgresql":
        from ciphermilter.store.postgres import PostgresDatabase

        return PostgresDatabase(locator, read_only)
    return SqliteDatabase(locator.target, read_only)
