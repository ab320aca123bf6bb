"""Two daemons on one PostgreSQL store, and one daemon through a failover (issue 18).

Real parts only: the daemons are ``ciphermilter run`` processes, the servers are PostgreSQL 15 started
here (support/pg_fixtures.py), the standby is made by ``pg_basebackup -R`` and promoted after its primary
is killed. Every change goes through the CLI, as an admin makes it.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import miltertest
import psycopg
import pytest
from click.testing import CliRunner

from ciphermilter.cli.main import main
from conftest import CORPUS
from support.milter import one_message
from bench.postgres_instance import PG_BIN, own_server, private_directory, start

pytestmark = pytest.mark.usefixtures("bytes_on_the_wire")

BOB_P12 = CORPUS / "keys/smime/pub-bob.p12"


def decrypted(daemon, message: bytes) -> bool:
    """Whether the daemon replaced the body: it found bob's key and decrypted."""
    _, _, eom = one_message(daemon, message)
    return miltertest.SMFIR_REPLBODY in {reply[0] for reply in eom}


def cli(store: str, key: str, *args: str) -> str:
    result = CliRunner().invoke(main, ["--store", store, "--master-key", key, *args])
    assert result.exit_code == 0, result.output
    return result.output


def bob_id(store: str, key: str) -> str:
    return next(line.split()[0] for line in cli(store, key, "keys", "list").splitlines() if "bob" in line)


def test_two_daemons_agree_on_every_key_change_at_the_next_message(pg_url, tmp_path, daemons, encrypted):
    key = str(tmp_path / "master.key")
    cli(pg_url, key, "store", "init")
    cli(pg_url, key, "domains", "add", "corp-pub.example")
    extra = f'master_key = "{key}"'
    one, other = daemons("one", pg_url, extra), daemons("other", pg_url, extra)
    assert not decrypted(one, encrypted) and not decrypted(other, encrypted)
    cli(pg_url, key, "keys", "import", "--password", "corpus-public", str(BOB_P12))  # the admin, on "one"
    assert decrypted(other, encrypted) and decrypted(one, encrypted)
    cli(pg_url, key, "keys", "remove", bob_id(pg_url, key))
    assert not decrypted(other, encrypted) and not decrypted(one, encrypted)


def replicated(standby_url: str, thumbprint_prefix: str) -> bool:
    with psycopg.connect(standby_url) as conn:
        return conn.execute("SELECT count(*) FROM certificates WHERE thumbprint LIKE %s",
                            (thumbprint_prefix + "%",)).fetchone()[0] == 1


def test_a_promoted_standby_takes_over_through_the_same_url(tmp_path, daemons, encrypted):
    key = str(tmp_path / "master.key")
    with own_server("wal_level=replica", "max_wal_senders=4", "hot_standby=on") as primary:
        standby_root = private_directory("ciphermilter-pg-standby-")
        standby_data = standby_root / "standby"
        standby = None
        try:
            cli(primary.url(), key, "store", "init")
            cli(primary.url(), key, "domains", "add", "corp-pub.example")
            subprocess.run([str(PG_BIN / "pg_basebackup"), "-D", str(standby_data), "-R", "-X", "stream",
                            "-h", str(primary.socket_dir), "-U", "postgres"],
                           check=True, capture_output=True, user="postgres", group="postgres")
            standby = start(standby_root, standby_data)
            url = (f"postgresql:///postgres?host={primary.socket_dir},{standby.socket_dir}&user=postgres"
                   "&target_session_attrs=read-write&connect_timeout=5")
            daemon = daemons("failover", url, f'master_key = "{key}"')
            cli(url, key, "keys", "import", "--password", "corpus-public", str(BOB_P12))
            assert decrypted(daemon, encrypted)
            bob = bob_id(url, key)
            for _ in range(600):  # streaming replication is asynchronous: wait (at most a minute) for the key
                if replicated(standby.url(), bob[:16]):
                    break
                time.sleep(0.1)
            primary.process.kill()  # SIGKILL: no shutdown, no goodbye to the standby
            primary.process.wait()
            with psycopg.connect(standby.url(), autocommit=True) as conn:
                assert conn.execute("SELECT pg_promote(wait => true)").fetchone()[0] is True
            assert decrypted(daemon, encrypted)  # no restart, no change of configuration, no key lost
            assert "store server " + f"{standby.socket_dir}:5432 (primary, writable)" in CliRunner().invoke(
                main, ["--store", url, "--master-key", key, "check", "--no-postfix", "--json"]).output
            cli(url, key, "keys", "remove", bob)  # the new primary takes the admin's writes
            assert not decrypted(daemon, encrypted)
        finally:
            if standby is not None:
                standby.stop()
            shutil.rmtree(standby_root, ignore_errors=True)
