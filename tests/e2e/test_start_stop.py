"""Start and stop as an admin meets them (issue 17): a second daemon, workers that cannot start, SIGTERM and
SIGINT with the daemon started as the systemd unit starts it and as ``./bootstrap run`` does."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.conftest import FAULT_SOCKET, START_TIMEOUT, STOP_TIMEOUT, chown, ciphermilter_config, wait_until
from support.chain import delivered, submit
from support.installation import private_python, readable_python
from support.messages import INTERNAL_RECIPIENT, SENDER
from support.milter import is_listening
from bench.postfix_instance import alive, descendants

PLAIN = b"Subject: start and stop\r\n\r\nplain text\r\n"


def environment() -> dict[str, str]:
    """The test's environment without PYTHONPATH: each daemon runs the installation it is given."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


def run_to_the_end(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=environment(), capture_output=True, text=True, timeout=START_TIMEOUT,
                          stdin=subprocess.DEVNULL, check=False)


def test_a_second_daemon_is_refused_and_the_first_keeps_serving(postfix, sink, e2e_dir, ciphermilter_socket):
    config, pid_file = e2e_dir / "ciphermilter.toml", e2e_dir / "run" / "ciphermilter.pid"
    first = pid_file.read_text()
    second = run_to_the_end([str(readable_python()), "-m", "ciphermilter", "run", "--config", str(config)], e2e_dir)
    assert second.returncode == 1
    assert second.stderr.splitlines() == [
        f"ciphermilter: unix:{ciphermilter_socket} is served by another daemon (pid {first.strip()}): stop it"
        " first, or give this one another socket"]
    assert pid_file.read_text() == first
    assert is_listening(ciphermilter_socket)
    delivered(sink, submit(postfix.port, PLAIN, [INTERNAL_RECIPIENT]))  # through Postfix to the first daemon


def test_a_daemon_whose_workers_cannot_start_refuses_to_start(e2e_dir, key_store_file):
    """Installed where its user cannot enter (a clone under /root, mode 0700): one line, nothing left behind."""
    private = e2e_dir / "private-installation"
    python = private_python(private)
    work = e2e_dir / "refused"
    work.mkdir(mode=0o755)
    socket_path, pid_file = work / "milter" / "ciphermilter.sock", work / "run" / "ciphermilter.pid"
    config = ciphermilter_config(work / "ciphermilter.toml", socket_path, key_store_file, pid_file)
    result = run_to_the_end([str(python), "-m", "ciphermilter", "run", "--config", str(config)], work)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"ciphermilter: worker processes cannot start: uid {pwd.getpwnam('nobody').pw_uid} may not enter {private}, on the way to"
        f" {python}: the daemon's user must be able to read the installation and enter its directories")
    assert not pid_file.exists() and not socket_path.exists()
    assert "listening" not in result.stderr


def systemd_service(work: Path, store: Path, socket_path: Path) -> subprocess.Popen:
    """As systemd/ciphermilter.service starts it: as its user from the first instruction (User=, Group=, no
    root at all), UMask=0007, the socket directory made by tmpfiles, the pid file in the RuntimeDirectory."""
    config = work / "ciphermilter.toml"
    config.write_text(f'socket = "unix:{socket_path}"\nstore = "{store}"\npid_file = "{work / "run" / "pid"}"\n')
    for directory in (socket_path.parent, work / "run"):
        directory.mkdir(mode=0o750, exist_ok=True)
        chown(directory, "nobody", "postfix")
    with open(work / "journal", "wb") as journal:
        return subprocess.Popen([str(readable_python()), "-m", "ciphermilter", "--config", str(config), "run",
                                 "--no-stderr"], cwd="/", env=environment(), stdin=subprocess.DEVNULL,
                                stdout=journal, stderr=subprocess.STDOUT, user="nobody", group="postfix",
                                extra_groups=[], umask=0o007)


def private_store_copy(template_store: Path, work: Path) -> Path:
    store = work / "ciphermilter.db"
    shutil.copyfile(template_store, store)
    shutil.copyfile(f"{template_store}.key", f"{store}.key")
    for item in (work, store, Path(f"{store}.key")):
        chown(item, "nobody", "postfix")
    return store


def test_sigterm_stops_the_daemon_started_as_systemd_starts_it(postfix, sink, e2e_dir, queue_dir, template_store):
    work = e2e_dir / "systemd-service"
    work.mkdir(mode=0o755)
    socket_path = queue_dir / FAULT_SOCKET  # Postfix's fault port sends to this daemon alone
    daemon = systemd_service(work, private_store_copy(template_store, work), socket_path)
    try:
        wait_until(lambda: is_listening(socket_path) or daemon.poll() is not None, START_TIMEOUT, "daemon",
                   work / "journal")
        delivered(sink, submit(postfix.fault_port, PLAIN, [INTERNAL_RECIPIENT]))
        processes = descendants(daemon.pid)
        assert len(processes) > 1, "the daemon has started its workers"
        in_flight = smtplib.SMTP("127.0.0.1", postfix.fault_port, timeout=120)
        in_flight.ehlo("in-flight.e2e.test")
        assert in_flight.mail(SENDER)[0] == 250 and in_flight.rcpt(INTERNAL_RECIPIENT)[0] == 250  # the milter saw both
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(STOP_TIMEOUT) == 0
        code, _ = in_flight.data(PLAIN)  # the transaction the daemon had when it stopped
        in_flight.close()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert 400 <= code < 500, code  # Postfix's default_action=tempfail: the sender tries again, nothing passed
    journal = (work / "journal").read_text()
    assert journal.rstrip().endswith("INFO stopped"), journal
    assert not socket_path.exists() and not (work / "run" / "pid").exists()
    # Its workers (and multiprocessing's resource tracker) go with it: each ends once it reads the end of its
    # pipe, a moment after the daemon, so they are waited for rather than looked at once.
    wait_until(lambda: not [pid for pid in processes if alive(pid)], STOP_TIMEOUT, "the daemon's workers to end")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_quick_start_daemon_stops_cleanly_and_warns_about_an_empty_store(e2e_dir, stop):
    """What ``./bootstrap run`` execs, as root in the clone: SIGTERM (a supervisor) or SIGINT (Ctrl-C)."""
    clone = e2e_dir / f"quick-start-{stop.name}"
    clone.mkdir(mode=0o700)
    command = str(Path(sys.executable).parent / "ciphermilter")
    assert run_to_the_end([command, "--store", "var/ciphermilter.db", "store", "init"], clone).returncode == 0
    output = clone / "output"
    with open(output, "wb") as out:
        daemon = subprocess.Popen([command, "--store", "var/ciphermilter.db", "run"], cwd=clone, env=environment(),
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "listening on" in output.read_text() or daemon.poll() is not None, START_TIMEOUT,
                   "listening", output)
        assert is_listening(clone / "var" / "ciphermilter.sock")
        daemon.send_signal(stop)
        assert daemon.wait(STOP_TIMEOUT) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    lines = output.read_text().splitlines()
    assert any(line.endswith("WARNING no internal domain: no message will be decrypted; add yours with"
                             " 'ciphermilter domains add example.com'") for line in lines), lines
    assert any(line.endswith("WARNING no private key in the store: no message will be decrypted; import yours"
                             " with 'ciphermilter keys import FILE'") for line in lines), lines
    assert lines[-1].endswith("INFO stopped") and not (clone / "var" / "ciphermilter.sock").exists()
