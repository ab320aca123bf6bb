"""The ciphermilter daemon as ``ciphermilter run`` starts it, for the benchmark: optionally pinned to CPUs.

Started by PID and stopped by PID. Its peak resident set (``VmHWM`` of
/proc/PID/status, summed over the daemon and its worker processes) is what
the memory measurement reads.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.cpu import process_cpu_seconds
from bench.postfix_instance import descendants, free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def _listening(spec: str) -> bool:
    kind, _, rest = spec.partition(":")
    probe = socket.socket(socket.AF_UNIX) if kind == "unix" else socket.socket()
    try:
        probe.connect(rest if kind == "unix" else ("127.0.0.1", int(rest.partition("@")[0])))
    except OSError:
        return False
    finally:
        probe.close()
    return True


@dataclass
class Daemon:
    socket: str  # as the client connects: unix:/path or inet:PORT@127.0.0.1
    process: subprocess.Popen
    log: Path

    def peak_rss(self) -> int:
        """Bytes: the sum of the highest resident set each process of the daemon has had (VmHWM).

        The daemon and its worker processes: each peaks on its own, so the
        sum is an upper bound of what the daemon held at any one moment.
        """
        return sum(_status_kb(pid, "VmHWM") for pid in self.pids()) * 1024

    def cpu_seconds(self) -> float:
        """User and system CPU time used so far by the daemon and its worker processes."""
        return sum(process_cpu_seconds(pid) for pid in self.pids())

    def main_cpu_seconds(self) -> float:
        """The daemon's own process (libmilter's threads, the glue, the hand-off), without its workers."""
        return process_cpu_seconds(self.process.pid)

    def rss(self) -> int:
        return sum(_status_kb(pid, "VmRSS") for pid in self.pids()) * 1024

    def pids(self) -> list[int]:
        """The daemon's process and all its descendants (worker processes, multiprocessing's helpers)."""
        return descendants(self.process.pid)

    def stop(self) -> None:
        stop_process(self.process, STOP_TIMEOUT)


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def start(work: Path, name: str, store: Path | str, inet: bool = False, cpus: str | None = None,
          max_message_size: int | None = None, master_key: Path | None = None,
          under: list[str] | None = None) -> Daemon:
    """A daemon on a unix socket (mode 0666: Postfix's user must reach it) or on an inet port on loopback.

    ``cpus`` pins it with taskset (e.g. "0" for one core); ``max_message_size``
    raises the limit for the memory measurement's 50 MB attachment; ``master_key``
    names the key of a store that has none beside it (a PostgreSQL URL); ``under``
    runs it under a tool (valgrind, for bench/instructions.py), which then has its PID.
    """
    directory = work / name
    directory.mkdir()
    directory.chmod(0o755)
    spec = f"inet:{free_port()}@127.0.0.1" if inet else f"unix:{directory / 'milter.sock'}"
    limits = f"\n[limits]\nmax_message_size = {max_message_size}\n" if max_message_size else ""
    config = directory / "ciphermilter.toml"
    config.write_text(
        f'socket = "{spec}"\nstore = "{store}"\numask = "0000"\nlog_level = "warning"\n'
        f'stats_file = "{directory / "stats.json"}"\n' + (f'master_key = "{master_key}"\n' if master_key else "")
        + limits
    )
    return serve(directory, spec, ["-m", "ciphermilter", "run", "--config", str(config)], cpus, under)


def serve(directory: Path, spec: str, python_args: list[str], cpus: str | None = None,
          under: list[str] | None = None) -> Daemon:
    """``python *python_args`` in ``directory`` (this interpreter, the clone on its path), pinned to ``cpus``
    and under a tool if asked; returns once it accepts connections on ``spec``."""
    log = directory / "daemon.log"
    argv = [sys.executable, *python_args]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    argv = [*(under or []), *argv]
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=directory, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + START_TIMEOUT
    while not _listening(spec):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"{' '.join(python_args)} did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    return Daemon(spec, process, log)
