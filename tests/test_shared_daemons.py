"""Two daemons on one PostgreSQL store (keys changed, one certificate harvested by both at once), and one daemon
through a failover (issue 18).

Real parts only: the daemons are ``ciphermilter run`` processes, the servers are PostgreSQL 15 started
here (support/pg_fixtures.py), the standby is made by ``pg_basebackup -R`` and promoted after its primary
is killed. Every change goes through the CLI, as an admin makes it.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

import miltertest
import psycopg
import pytest
from click.testing import CliRunner

from ciphermilter.cli.main import main
from ciphermilter.formats import keyfiles
from ciphermilter.store import rows
from conftest import CORPUS
from support.milter import one_message, snapshot_counting
from bench.postgres_instance import PG_BIN, own_server, private_directory, start

pytestmark = pytest.mark.usefixtures("bytes_on_the_wire")

BOB_P12 = CORPUS / "keys/smime/pub-bob.p12"
# Signed by alice (issued by the corpus's intermediate CA, which the message carries too), to bob: a verified,
# trusted signer whose certificate the daemon harvests once the root is an anchor (formats/smime/handler.py).
ALICE_SIGNED = (CORPUS / "smime-sig-detached-chain/message.eml").read_bytes()
ALICE_THUMBPRINT = rows.thumbprint(keyfiles.parse((CORPUS / "keys/foreign/pub-alice.cert.pem").read_bytes())
                                   .certificates[0])


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


def alice_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM certificates WHERE thumbprint = %s",
                            (ALICE_THUMBPRINT,)).fetchone()[0]


def waiting_for_a_lock(url: str) -> int:
    """How many sessions of this database wait for a lock (the test's lock, or a harvest's queued behind it)."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                            " AND wait_event_type = 'Lock'").fetchone()[0]


def harvests_released_together(url: str, daemons: list, message: bytes) -> tuple[list[list], int]:
    """Each daemon's end-of-message replies to ``message``, their harvests made to meet; how many met.

    The test holds the certificates table locked against writes (SHARE: reads go on) until every harvest
    has found the certificate new and waits in its write transaction: the first at its INSERT, the others
    behind it at the store's ``SELECT ... FOR UPDATE`` of store_versions (seen in pg_stat_activity), then
    lets them all go at once. Without it, messages sent together reach their harvests milliseconds apart,
    and nothing makes them overlap."""
    replies: list[list] = [[] for _ in daemons]

    def deliver(index: int) -> None:
        _, _, replies[index] = one_message(daemons[index], message)

    with psycopg.connect(url) as holder:
        holder.execute("LOCK TABLE certificates IN SHARE MODE")
        threads = [threading.Thread(target=deliver, args=(index,)) for index in range(len(daemons))]
        for thread in threads:
            thread.start()
        for _ in range(50):  # at most 5 s, half the daemons' statement_timeout: the caller checks how many met
            if (met := waiting_for_a_lock(url)) == len(daemons):
                break
            time.sleep(0.1)
        holder.commit()
    for thread in threads:
        thread.join()
    return replies, met


def verdict(replies: list) -> dict[str, str]:
    """The headers one end of message added, their values unfolded; {} unless it ended in CONTINUE."""
    if replies[-1] != (miltertest.SMFIR_CONTINUE, {}):
        return {}
    return {reply["name"]: " ".join(reply["value"].split()) for code, reply in replies
            if code == miltertest.SMFIR_ADDHEADER}


ALICE_VERDICT = {
    "X-CipherMail-Info-SMIME-Signed": "True",
    "X-CipherMail-Info-Signer-ID-0-0": "issuer=CN=Corpus Public Test Issuing CA,O=Corpus Public Test Org; "
                                       "serial=5A000007",
    "X-CipherMail-Info-Signer-Email-0-0": "alice@sender-pub.example",
    "X-CipherMail-Info-Signer-Verified-0-0": "True",
    "X-CipherMail-Info-Signer-Trusted-0-0": "True",
}
ROUNDS = 10
PER_DAEMON = 2  # messages at once on each daemon: one per worker process, each harvesting on its own connection


def test_two_daemons_harvesting_one_certificate_at_once_keep_one_row_and_both_messages(pg_url, tmp_path, daemons):
    """The issue's "concurrent harvests of one certificate" with the real daemons: alice's signed message,
    twice on each daemon, harvests her certificate four times at the same moment; ten rounds, the certificate
    removed between them. Every message gets its verdict, no daemon logs an error or a lost harvest, and
    each round leaves exactly one row where there was none."""
    key = str(tmp_path / "master.key")
    cli(pg_url, key, "store", "init")
    cli(pg_url, key, "domains", "add", "corp-pub.example")
    cli(pg_url, key, "trust", "add", str(CORPUS / "keys/trust/pub-root-ca.cert.pem"))
    extra = f'master_key = "{key}"\nworkers = {PER_DAEMON}'
    pair = [daemons(name, pg_url, extra, harvest=True) for name in ("harvest-one", "harvest-other")]
    for _ in range(ROUNDS):
        assert alice_rows(pg_url) == 0
        replies, met = harvests_released_together(pg_url, pair * PER_DAEMON, ALICE_SIGNED)
        assert met == len(pair) * PER_DAEMON
        assert [verdict(r) for r in replies] == [ALICE_VERDICT] * len(pair) * PER_DAEMON, replies
        assert alice_rows(pg_url) == 1
        cli(pg_url, key, "keys", "remove", ALICE_THUMBPRINT[:16])
    for daemon in pair:
        counters = snapshot_counting(daemon, ROUNDS * PER_DAEMON)["counters"]
        assert (counters["messages"], counters["errors"], counters["not_processed"]) == (ROUNDS * PER_DAEMON, 0, 0)
        # after its start, a daemon logs one line per message and nothing else: no error, no traceback, no
        # "nothing harvested" warning of a harvest that lost its race
        serving = daemon.log.read_text().partition(" listening on ")[2].splitlines()[1:]
        assert len(serving) == ROUNDS * PER_DAEMON, serving
        assert all(" INFO 4TESTQ1D: " in line and " result=verified " in line for line in serving), serving
