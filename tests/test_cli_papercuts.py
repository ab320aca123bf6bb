"""The command line as an admin meets it on a bad day: a damaged file in a batch, a nightly backup to the same
path, statistics of a stopped daemon, a store they may not read, Ctrl-C, a wildcard too wide, a leaf as an
anchor, a removal at the terminal, an unprotected export. Real processes on a pseudo-terminal where a terminal
is the point."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from ciphermilter.cli.main import INTERRUPTED, main
from ciphermilter.daemon import stats
from conftest import CORPUS, dump
from support.installation import readable_python

KEYS = CORPUS / "keys"
BOB_P12, BOB_CERT, BOB_KEY = KEYS / "smime/pub-bob.p12", KEYS / "smime/pub-bob.cert.pem", KEYS / "smime/pub-bob.key.pem"
ROOT_CA = KEYS / "trust/pub-root-ca.cert.pem"
P12_PASSWORD = json.loads((CORPUS / "index.json").read_text())["p12_password"]
# What a library's debug text looks like; an admin's error line has none of it.
DEBUG_TEXT = re.compile(r"ParseError|kind:|Details:|https?://|InvalidData|\{|Traceback|bytes requested|0x[0-9a-f]{4}")


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "store.db"
    cli(path, "store", "init")
    return path


def cli(store, *args, expect: int = 0, env: dict | None = None, **kwargs):
    result = CliRunner(env=env).invoke(main, ["--store", str(store), *map(str, args)], **kwargs)
    assert result.exit_code == expect, (result.output, result.stderr)
    return result


def terminal(store, *args) -> tuple[subprocess.Popen, int]:
    """``ciphermilter`` as a person runs it: standard input, output and error on a pseudo-terminal."""
    controller, tty = pty.openpty()
    # A person's shell leaves SIGINT to its default; a test run started in the background by a script inherits
    # it ignored (POSIX: background jobs of a non-interactive shell), and Python then keeps ignoring it.
    process = subprocess.Popen([sys.executable, "-m", "ciphermilter", "--store", str(store), *map(str, args)],
                               stdin=tty, stdout=tty, stderr=tty, close_fds=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(tty)
    return process, controller


def read_until(controller: int, text: bytes, process: subprocess.Popen) -> bytes:
    """What the terminal shows up to ``text``; the process's whole output when it ends first."""
    seen = b""
    while text not in seen:
        ready, _, _ = select.select([controller], [], [], 60)
        assert ready, f"no {text!r} on the terminal: {seen!r}"
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    return seen


def finish(process: subprocess.Popen, controller: int) -> tuple[int, bytes]:
    rest = read_until(controller, b"\0never\0", process)
    os.close(controller)
    return process.wait(), rest


# --------------------------------------------------------------------------- keys import of many files


def test_one_unusable_file_stops_the_import_unless_skipped(store, tmp_path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIBzzCCAXWgAwIBAgIU\n-----END CERTIFICATE-----\n")
    before = dump(store)
    refused = cli(store, "keys", "import", BOB_CERT, garbage, tmp_path / "missing.pem", ROOT_CA, expect=1)
    assert refused.stderr == f"ciphermilter: {garbage}: corrupt PEM block 'CERTIFICATE': not a readable X.509" \
                             " certificate\n"
    assert dump(store) == before  # all or nothing stays the default
    result = cli(store, "keys", "import", "--skip-unusable", BOB_CERT, garbage, tmp_path / "missing.pem", ROOT_CA)
    assert result.stdout.count("added: certificate ") == 2
    assert result.stderr.splitlines() == [
        f"skipped: {garbage}: corrupt PEM block 'CERTIFICATE': not a readable X.509 certificate",
        f"skipped: {tmp_path / 'missing.pem'}: cannot read it: No such file or directory"]
    assert cli(store, "keys", "import", "--skip-unusable", garbage, expect=1).stderr == \
        "ciphermilter: nothing imported: none of the 1 files could be used\n"


def damaged_key_files(tmp_path) -> list:
    der = BOB_P12.read_bytes()
    files = {
        "cert.pem": b"-----BEGIN CERTIFICATE-----\nMIIBzzCCAXWgAwIBAgIUXXXX\n-----END CERTIFICATE-----\n",
        "key.pem": b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n",
        "rsa.pem": b"-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----\n",
        "cut.p12": der[:300], "cut.der": b"\x30\x82\x01\x00\x02\x01", "noise": b"garbage",
        "pgp.asc": b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGXXXX\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n",
        "cut.asc": (KEYS / "pgp/pub-pgp-bob-rsa3072.pub.asc").read_bytes()[:200],
        "cert-bits.pem": BOB_CERT.read_bytes()[:400] + b"\n-----END CERTIFICATE-----\n",
        "key-bits.pem": BOB_KEY.read_bytes()[:300] + b"\n-----END PRIVATE KEY-----\n",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return [tmp_path / name for name in files]


def test_key_parse_errors_are_words_not_a_librarys_debug_text(store, tmp_path):
    for path in damaged_key_files(tmp_path):
        error = cli(store, "keys", "import", path, "--password", "x", expect=1).stderr
        assert error.startswith(f"ciphermilter: {path}: ") and error.count("\n") == 1, error
        assert not DEBUG_TEXT.search(error), error


# --------------------------------------------------------------------------- backups from cron


def test_a_nightly_backup_to_the_same_path_needs_force_and_keeps_the_last_good_one(store, tmp_path):
    cli(store, "keys", "import", BOB_P12, "--password", P12_PASSWORD)
    backup = tmp_path / "backups" / "ciphermilter.db"
    cli(store, "store", "backup", backup)
    first = backup.read_bytes()
    refused = cli(store, "store", "backup", backup, expect=1)
    assert refused.stderr == f"ciphermilter: {backup} exists already; refusing to overwrite it\n"
    cli(store, "domains", "add", "corp-pub.example")
    cli(store, "store", "backup", "--force", backup)
    assert backup.read_bytes() != first and oct(backup.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in backup.parent.iterdir()) == ["ciphermilter.db"]  # no partial copy left
    restored = tmp_path / "restored.db"
    shutil.copy(str(store) + ".key", str(restored) + ".key")
    cli(restored, "store", "restore", backup)
    assert cli(restored, "domains", "list").stdout == "corp-pub.example\n"


# --------------------------------------------------------------------------- stats


def test_stats_of_a_daemon_that_stopped_says_so_after_its_counters(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    snapshot = stats.Counters().snapshot()
    snapshot["pid"] = gone.pid
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(snapshot))
    result = CliRunner().invoke(main, ["stats", "--file", str(path), "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["counters"]["messages"] == 0
    assert result.stderr == (f"ciphermilter: the daemon that wrote these counters (pid {gone.pid}) is not running:"
                             f" they are its last, written at {snapshot['updated']}\n")


def test_stats_of_a_garbage_file_says_what_it_is_in_words(tmp_path):
    path = tmp_path / "stats.json"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not statistics")
    result = CliRunner().invoke(main, ["stats", "--file", str(path)])
    assert result.exit_code == 1
    assert result.stderr == f"ciphermilter: {path} is not a statistics file: it does not hold the JSON the daemon" \
                            " writes\n"


# --------------------------------------------------------------------------- a store the user may not read


def as_nobody(*args) -> subprocess.CompletedProcess:
    """The CLI as ``nobody``, from the copy of the installation nobody can read (the clone may be under /root)."""
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", str(readable_python()),
                           "-m", "ciphermilter", *map(str, args)], capture_output=True, text=True, cwd="/")


@pytest.mark.parametrize("file_mode, directory_mode", [(0o600, 0o755), (0o644, 0o700)],
                         ids=["file-unreadable", "directory-closed"])
def test_a_store_that_exists_but_cannot_be_read_is_permission_denied(tmp_path, file_mode, directory_mode):
    directory = tmp_path / "var"
    directory.mkdir()
    cli(directory / "store.db", "store", "init")
    tmp_path.chmod(0o755)
    (directory / "store.db").chmod(file_mode)
    directory.chmod(directory_mode)
    result = as_nobody("--store", directory / "store.db", "keys", "list")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"ciphermilter: cannot open store {directory / 'store.db'}: Permission denied\n"


# --------------------------------------------------------------------------- colour and Ctrl-C


def test_no_color_turns_colour_off(tmp_path, store):
    args = ["--store", str(store), "check", "--no-postfix"]
    coloured = CliRunner().invoke(main, args, color=True)
    assert "\x1b[" in coloured.output
    plain = CliRunner(env={"NO_COLOR": "1"}).invoke(main, args, color=True)
    assert plain.exit_code == coloured.exit_code == 1 and "\x1b[" not in plain.output
    assert plain.output == re.sub(r"\x1b\[[0-9;]*m", "", coloured.output)


def test_ctrl_c_at_a_prompt_exits_130(store):
    process, controller = terminal(store, "keys", "import", BOB_P12)
    read_until(controller, b"password", process)
    process.send_signal(signal.SIGINT)
    status, shown = finish(process, controller)
    assert status == INTERRUPTED == 130
    assert b"ciphermilter: interrupted" in shown and b"Traceback" not in shown and b"Aborted" not in shown
    assert cli(store, "keys", "list").stdout == ""


# --------------------------------------------------------------------------- warnings


@pytest.mark.parametrize("domain, warned", [("*.com", ".com"), ("com", ".com"), ("*.co.uk", ".co.uk"),
                                            ("*.example.com", None), ("example.co.uk", None)])
def test_a_domain_as_wide_as_a_registry_warns(store, domain, warned):
    result = cli(store, "domains", "add", domain)
    assert result.stdout == f"added: {domain}\n"
    if warned is None:
        assert result.stderr == ""
    else:
        assert result.stderr.startswith(f"warning: {domain} makes every domain under {warned} internal")
        assert result.stderr.count("\n") == 1


def test_a_leaf_certificate_as_trust_anchor_warns(store):
    leaf = cli(store, "trust", "add", BOB_CERT)
    assert "warning: " in leaf.stderr and "is not a CA certificate" in leaf.stderr
    assert cli(store, "trust", "add", ROOT_CA).stderr == ""


def test_exporting_an_unprotected_private_key_warns(store, tmp_path):
    cli(store, "keys", "import", BOB_P12, "--password", P12_PASSWORD)
    bob = json.loads(cli(store, "keys", "list", "--json").stdout)[0]["id"][:16]
    unprotected = cli(store, "keys", "export", bob, "--format", "pem", "--secret", "-o", tmp_path / "bob.pem")
    assert unprotected.stderr.startswith("warning: the private key is exported without a password")
    protected = cli(store, "keys", "export", bob, "--format", "pem", "--secret", "--password", "pw",
                    "-o", tmp_path / "bob-protected.pem")
    assert protected.stderr == ""
    assert cli(store, "keys", "export", bob, "--format", "pem").stderr == ""


# --------------------------------------------------------------------------- removal at the terminal


@pytest.fixture
def bob(store):
    cli(store, "keys", "import", BOB_P12, "--password", P12_PASSWORD)
    return json.loads(cli(store, "keys", "list", "--json").stdout)[0]["id"][:16]


@pytest.mark.parametrize("answer, removed", [(b"n", False), (b"y", True)])
def test_keys_remove_asks_on_a_terminal(store, bob, answer, removed):
    process, controller = terminal(store, "keys", "remove", bob)
    prompt = read_until(controller, b"[y/N]", process)
    assert f"remove x509 {bob} (bob@corp-pub.example) and its private key?".encode() in prompt
    os.write(controller, answer + b"\n")
    status, shown = finish(process, controller)
    assert status == (0 if removed else 1)
    assert (f"removed {bob}".encode() in shown) is removed
    assert (cli(store, "keys", "list").stdout == "") is removed


def test_keys_remove_yes_and_scripts_are_not_asked(store, bob):
    process, controller = terminal(store, "keys", "remove", "--yes", bob)
    status, shown = finish(process, controller)
    assert status == 0 and shown.strip() == f"removed {bob}".encode()
    cli(store, "keys", "import", BOB_P12, "--password", P12_PASSWORD)
    assert cli(store, "keys", "remove", bob).stdout == f"removed {bob}\n"  # no terminal: as scripts always did
    assert cli(store, "keys", "list").stdout == ""
