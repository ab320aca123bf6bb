"""A ciphermilter daemon the fault and soak tests own: its own store copy and configuration, at FAULT_SOCKET.

Postfix's fault port (``postfix.fault_port``) sends every message through this
daemon alone, with ``default_action=tempfail``. The tests kill, restart and
break it; the fixture stops whatever is still running, by PID, even when a
test fails.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import pytest

from conftest import corpus_store_file
from e2e.conftest import (
    FAULT_SOCKET,
    Service,
    chown,
    ciphermilter_config,
    start_ciphermilter,
    wait_until,
)
from bench.postfix_instance import alive, descendants



def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone meanwhile
        return b""


def _status_kib(pids: list[int], field: str) -> int:
    """A /proc/PID/status field in kB (VmRSS, VmHWM), summed over ``pids``."""
    pattern = re.compile(rf"^{field}:\s+(\d+) kB$", re.MULTILINE)
    total = 0
    for pid in pids:
        try:
            total += int(pattern.search(Path(f"/proc/{pid}/status").read_text()).group(1))
        except (OSError, AttributeError):  # it exited since it was listed
            pass
    return total


def is_running_python(pid: int) -> bool:
    """True while ``pid`` is a live process of this interpreter (not a zombie, not a reused PID)."""
    try:
        return alive(pid) and os.readlink(f"/proc/{pid}/exe") == os.path.realpath(sys.executable)
    except OSError:
        return False


class MilterUnderTest:
    """One daemon configuration; :meth:`start` and :meth:`kill` may be called any number of times."""

    def __init__(self, name: str, workdir: Path, socket_path: Path, store: Path, extra_config: str = "",
                 env: dict | None = None):
        self.name = name
        self.workdir = workdir
        self.socket_path = socket_path
        self.store = store
        self.env = env
        self.config = ciphermilter_config(workdir / f"{name}.toml", socket_path, store, workdir / f"{name}.pid",
                                          extra_config)
        self.service: Service | None = None
        self.orphans: list[int] = []
        self.log = workdir / f"{name}.out"

    @property
    def pid(self) -> int:
        return self.service.process.pid

    def start(self) -> None:
        self.service = start_ciphermilter(self.name, self.config, self.socket_path, self.workdir, self.env)

    def kill(self) -> list[int]:
        """SIGKILL the daemon alone (``kill -9 PID``, the OOM killer): no clean-up of any kind.

        Returns the processes it had started: they are orphans now, and must go by themselves.
        """
        children = self.processes()[1:]
        self.orphans.extend(children)
        self.service.process.send_signal(signal.SIGKILL)
        self.service.process.wait()
        assert self.service.process.returncode == -signal.SIGKILL
        return children

    def kill_a_worker(self) -> None:
        """SIGKILL one of the daemon's decryption worker processes."""
        os.kill(self.worker_pids()[0], signal.SIGKILL)

    def worker_pids(self) -> list[int]:
        """The daemon's decryption worker processes (not multiprocessing's resource tracker)."""
        workers = [pid for pid in self.processes()[1:] if b"multiprocessing.spawn" in _cmdline(pid)]
        assert workers, "the daemon runs no worker process"
        return workers

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
        for pid in self.orphans:  # only if a test failed before they went: never leave a process behind
            if is_running_python(pid):
                os.kill(pid, signal.SIGKILL)

    def processes(self) -> list[int]:
        """The daemon and every process under it (its decryption workers, multiprocessing's tracker)."""
        return descendants(self.pid)

    def rss_kib(self) -> int:
        """Resident set size of the daemon and its workers together."""
        return _status_kib(self.processes(), "VmRSS")

    def peak_rss_kib(self) -> int:
        """The highest resident set each process of the daemon has had (VmHWM), summed: an upper bound of
        what the daemon and its workers held at any one moment."""
        return _status_kib(self.processes(), "VmHWM")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 30.0) -> None:
        wait_until(lambda: re.search(pattern, self.log_text()), timeout, f"log line /{pattern}/", self.log)


@pytest.fixture(scope="session")
def template_store(tmp_path_factory) -> Path:
    """A closed store with every corpus key (checkpointed: one file plus its master key), to copy from."""
    return corpus_store_file(tmp_path_factory.mktemp("template-store"))


_numbers = itertools.count()


@pytest.fixture
def milter_under_test(template_store, e2e_dir, queue_dir, postfix):
    """A factory: ``milter_under_test(extra_config="", env=None)`` returns a started daemon with a fresh store copy."""
    started: list[MilterUnderTest] = []

    def make(extra_config: str = "", env: dict | None = None) -> MilterUnderTest:
        name = f"ciphermilter-fault-{next(_numbers)}"
        directory = e2e_dir / name
        directory.mkdir(mode=0o700)
        store = directory / "ciphermilter.db"
        shutil.copyfile(template_store, store)
        shutil.copyfile(f"{template_store}.key", f"{store}.key")
        for item in (directory, store, Path(f"{store}.key")):
            chown(item, "nobody", "postfix")
            item.chmod(0o700 if item.is_dir() else 0o600)
        daemon = MilterUnderTest(name, e2e_dir, queue_dir / FAULT_SOCKET, store, extra_config, env)
        started.append(daemon)
        daemon.start()
        return daemon

    yield make
    for daemon in started:
        daemon.stop()
