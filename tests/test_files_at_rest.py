"""Every file the daemon and the CLI write is 0600, whatever the umask they run with (issue 14, section 3).

The one exception is the Prometheus textfile, 0640: node_exporter reads it through the group. The daemon's
socket is not a file here: its mode comes from the ``umask`` setting (0660 by default, for Postfix's group).
Both run with umask 0022, the usual one, under which a plain ``open()`` would create files 0644.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from ciphermilter.daemon import stats
from ciphermilter.cli.main import main
from conftest import CORPUS, corpus_store_file
from support.flood import flooded
from support.milter import one_message, snapshot_counting, start_daemon, stop_daemons

# The daemon is driven through miltertest, which must carry bytes (support/milter_fixtures.py).
pytestmark = pytest.mark.usefixtures("bytes_on_the_wire")

USUAL_UMASK = 0o022
PRIVATE = 0o600
TEXTFILE = stats.TEXTFILE_MODE


@pytest.fixture
def usual_umask():
    """The process umask 0022 for the test (the CLI runs in it, the daemon inherits it), restored after."""
    previous = os.umask(USUAL_UMASK)
    yield
    os.umask(previous)


def modes(directory: Path, ignored: set[Path] = frozenset()) -> dict[str, int]:
    """Permission bits of every regular file under ``directory`` (sockets and directories left out), by path."""
    return {str(path.relative_to(directory)): stat.S_IMODE(path.stat().st_mode)
            for path in sorted(directory.rglob("*")) if path.is_file() and path not in ignored}


def assert_private(found: dict[str, int], exceptions: dict[str, int] = {}) -> None:  # noqa: B006 (never changed)
    assert {name: mode for name, mode in found.items()} == {name: exceptions.get(name, PRIVATE) for name in found}


# --- the daemon -------------------------------------------------------------------------------------

def test_every_file_the_daemon_writes_is_private(tmp_path, usual_umask, encrypted):
    store = corpus_store_file(tmp_path / "store")
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    directory = tmp_path / "daemon"
    extra = (f'umask = "0022"\npid_file = "{tmp_path}/run/ciphermilter.pid"\n'
             f'prometheus_textfile = "{metrics}/ciphermilter.prom"\n')
    daemon = start_daemon(directory, store, extra)
    ours = {daemon.config, daemon.log}  # the test wrote these
    try:
        one_message(daemon, encrypted)  # decrypted in a worker, which opens the store too
        one_message(daemon, flooded(200))  # rejected at end of headers
        snapshot_counting(daemon, 2)
        running = modes(tmp_path, ours)
    finally:
        stop_daemons([daemon])
    stopped = modes(tmp_path, ours)

    assert set(running) >= {"store/ciphermilter.db", "store/ciphermilter.db.key", "store/ciphermilter.db-wal",
                            "store/ciphermilter.db-shm", "daemon/ciphermilter.stats.json", "run/ciphermilter.pid",
                            "metrics/ciphermilter.prom"}, running
    assert_private(running, {"metrics/ciphermilter.prom": TEXTFILE})
    assert "run/ciphermilter.pid" not in stopped and not daemon.socket.exists()  # a clean exit on SIGTERM
    assert_private(stopped, {"metrics/ciphermilter.prom": TEXTFILE})
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o750  # the pid file's directory, made by the daemon


def test_a_pid_file_left_behind_is_replaced_with_a_private_one(tmp_path, usual_umask):
    from ciphermilter.daemon.serve import write_pid_file

    pid_file = tmp_path / "ciphermilter.pid"
    pid_file.write_text("12345\n")
    pid_file.chmod(0o644)

    write_pid_file(str(pid_file), None)

    assert (pid_file.read_text(), stat.S_IMODE(pid_file.stat().st_mode)) == (f"{os.getpid()}\n", PRIVATE)


# --- the command line -------------------------------------------------------------------------------

def test_every_file_the_cli_writes_is_private(tmp_path, usual_umask):
    work = tmp_path / "work"
    work.mkdir()
    password = tmp_path / "password"
    password.write_text("moving\n")
    store, key = work / "var" / "ciphermilter.db", work / "var" / "ciphermilter.db.key"

    def cli(*args):
        result = CliRunner().invoke(main, ["--store", str(store), *map(str, args)])
        assert result.exit_code == 0, result.output
        return result

    cli("store", "init")
    cli("keys", "import", CORPUS / "keys/smime/pub-bob.p12", "--password", "corpus-public")
    cli("domains", "add", "corp-pub.example")
    cli("trust", "add", CORPUS / "keys/trust/pub-root-ca.cert.pem")
    cli("store", "backup", work / "backup.db")
    cli("store", "export", work / "export.json", "--password-file", password)
    (bob,) = json.loads(cli("keys", "list", "--json").stdout)
    cli("keys", "export", bob["id"][:16], "--format", "p12", "--password-file", password,
        "-o", work / "bob.p12")
    cli("decrypt", "--rcpt", "bob@corp-pub.example", "--explain-file", work / "report.json",
        CORPUS / "smime-env-rsa15-aes128-cbc" / "message.eml")
    result = CliRunner().invoke(main, ["--store", str(work / "restored" / "ciphermilter.db"), "--master-key", str(key),
                                       "store", "restore", str(work / "backup.db")])
    assert result.exit_code == 0, result.output

    found = modes(work)
    assert set(found) >= {"var/ciphermilter.db", "var/ciphermilter.db.key", "backup.db", "export.json", "bob.p12",
                          "report.json", "restored/ciphermilter.db"}, found
    assert_private(found)
    assert stat.S_IMODE((work / "var").stat().st_mode) == 0o700


def test_a_report_into_a_device_leaves_the_device_mode_alone(tmp_path, usual_umask):
    """--explain-file makes a regular file 0600 even when it exists; a device named instead (here a private
    twin of /dev/null, never the real one) keeps its mode: root making /dev/null 0600 breaks every other user."""
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(null, 0o666)
    result = CliRunner().invoke(main, ["--store", str(corpus_store_file(tmp_path / "s")), "decrypt",
                                       "--explain-file", str(null), "-"], input=b"From: a@b.example\r\n\r\nhi\r\n")
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(null.stat().st_mode) == 0o666
