"""A private PostgreSQL 15 server (Debian's ``postgresql``) for the tests and the benchmark.

``initdb`` as the ``postgres`` user into a fresh temporary directory, a unix
socket only (``listen_addresses = ''``), ``fsync = off``; stopped by its PID.
Its directories come from a fresh ``mkdtemp`` chowned to ``postgres``, never
from the clone: CI runs as root from a clone that may sit under ``/root``
(0700), where the ``postgres`` user could not reach.
"""

from __future__ import annotations

import contextlib
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

PG_BIN = Path("/usr/lib/postgresql/15/bin")


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
        raise RuntimeError("PostgreSQL 15 is not installed (apt-get install postgresql; bootstrap test does it)")
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
