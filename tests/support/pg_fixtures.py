"""A private PostgreSQL 15 server for the tests (Debian's ``postgresql``), and stores on it.

The server is started once per session by whoever asks first: ``initdb`` as
the ``postgres`` user into a fresh temporary directory, a unix socket only
(``listen_addresses = ''``), ``fsync = off``; it is stopped by its PID. Its
directories come from a fresh ``mkdtemp`` chowned to ``postgres``, never from
the clone: CI runs as root from a clone that may sit under ``/root`` (0700),
where the ``postgres`` user could not reach. A missing server is a failure,
never a skip: the issue says a skipped PostgreSQL test is a failure.

Each test gets a database of its own (:func:`pg_url`), dropped afterwards.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from ciphermilter.store.keystore import KeyStore

PG_BIN = Path("/usr/lib/postgresql/15/bin")
BACKENDS = ["sqlite", "postgresql"]
_names = itertools.count()


@dataclass
class Postgres:
    """One running server: its data directory, socket directory and postmaster PID."""

    root: Path
    data: Path
    socket_dir: Path
    process: subprocess.Popen[bytes]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql:///{database}?host={self.socket_dir}&user=postgres"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url(), autocommit=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)  # "fast" shutdown: sessions are ended, no waiting on them
            self.process.wait(timeout=60)


def _as_postgres() -> dict[str, object]:
    return {"user": "postgres", "group": "postgres"}


def private_directory(prefix: str) -> Path:
    """A new directory the postgres user owns (mode 0700), outside the clone (see the module docstring)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    entry = pwd.getpwnam("postgres")
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def initdb(data: Path) -> None:
    subprocess.run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync",
                    "-E", "UTF8", "--locale=C.UTF-8"], check=True, capture_output=True, **_as_postgres())


def start(root: Path, data: Path, *settings: str) -> Postgres:
    """postgres on a unix socket in ``root``/socket, fsync off; returns once it accepts connections."""
    socket_dir = root / "socket"
    socket_dir.mkdir(exist_ok=True)
    shutil.chown(socket_dir, "postgres", "postgres")
    options = ["-c", "listen_addresses=", "-c", f"unix_socket_directories={socket_dir}", "-c", "fsync=off",
               "-c", "full_page_writes=off", "-c", "synchronous_commit=off", "-c", "max_connections=60"]
    for setting in settings:
        options += ["-c", setting]
    log = open(root / f"{data.name}.log", "ab")
    process = subprocess.Popen([str(PG_BIN / "postgres"), "-D", str(data), *options], stdout=log,
                               stderr=subprocess.STDOUT, **_as_postgres())  # type: ignore[call-overload]
    server = Postgres(root, data, socket_dir, process)
    for _ in range(600):  # at most 60 s; a few hundred ms here
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited: {(root / f'{data.name}.log').read_text()[-2000:]}")
        with contextlib.suppress(psycopg.OperationalError):
            server.admin().close()
            return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError("postgres did not accept connections within 60 s")


@contextlib.contextmanager
def own_server(*settings: str) -> Iterator[Postgres]:
    """A server of its own (one a test may stop or kill), removed with its files afterwards."""
    if not (PG_BIN / "postgres").exists():
        pytest.fail("PostgreSQL 15 is not installed (apt-get install postgresql; bootstrap test does it)")
    root = private_directory("ciphermilter-pg-")
    data = root / "primary"
    data.mkdir(mode=0o700)
    shutil.chown(data, "postgres", "postgres")
    initdb(data)
    server = start(root, data, *settings)
    try:
        yield server
    finally:  # a test that restarted the server stops its new one itself
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


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
