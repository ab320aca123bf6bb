"""The PostgreSQL fixtures, a pytest plugin registered by tests/conftest.py (``pytest_plugins``).

The server (``bench/postgres_instance.py``: PostgreSQL 15, unix socket only,
fsync off, stopped by PID) is started once per session by whoever asks
first. A missing server is a failure, never a skip: a skipped PostgreSQL
test is a failure (issue 18). Each test gets a database of its own
(:func:`pg_url`), dropped afterwards.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bench.postgres_instance import Postgres, own_server
from ciphermilter.store.keystore import KeyStore

BACKENDS = ["sqlite", "postgresql"]
_names = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with own_server() as server:
        yield server


def new_database(server: Postgres) -> str:
    name = f"t{os.getpid()}_{next(_names)}"
    with server.admin() as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return name


def drop_database(server: Postgres, name: str) -> None:
    with server.admin() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_url(postgres) -> Iterator[str]:
    """A URL of an empty database of this test's own."""
    name = new_database(postgres)
    yield postgres.url(name)
    drop_database(postgres, name)


@pytest.fixture(params=BACKENDS)
def store_location(request, tmp_path) -> tuple[str, Path]:
    """(store name, master key path) of a store yet to be made, on each backend in turn."""
    if request.param == "sqlite":
        return str(tmp_path / "s.db"), tmp_path / "s.db.key"
    return request.getfixturevalue("pg_url"), tmp_path / "master.key"


@pytest.fixture
def backend_store(store_location) -> Iterator[KeyStore]:
    """A new, empty store on each backend in turn."""
    with KeyStore.create(*store_location) as store:
        yield store


def dump_postgres(url: str) -> list[str]:
    """Every row of every table of a PostgreSQL store, sorted: compares the state before and after."""
    with psycopg.connect(url) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
        return [f"{table}: {row!r}" for table in tables
                for row in sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)]
