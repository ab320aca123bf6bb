"""CPU time and the machine's state: what a benchmark figure can be judged by on a shared machine (issue 19).

A rate moves with whatever else the machine runs: three full runs of the same
commit read 0.57, 0.28 and 0.25 for S/MIME through the protocol ÷ ceiling.
The CPU time a message costs each process moves far less, so every rate the
bench records carries it, split by who spent it (the daemon's main process,
its worker processes, the client in this process), and every part records
the load average and the steal time it ran under, read from /proc.
"""

from __future__ import annotations

import os
import resource
import statistics
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU time of one process (all its threads) so far; 0 once it has ended."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # it ended: what it used is no longer ours to count
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """This process's CPU time: the client's threads while a load runs (nothing else of ours runs then)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu_seconds() -> float:
    """CPU time of the child processes that ended so far (the per-message peers: openssl, gpg)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_line() -> list[int]:
    # user nice system idle iowait irq softirq steal guest guest_nice (clock ticks, all CPUs)
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def machine_cpu_seconds() -> float:
    """CPU time all processes of the machine spent busy (not idle, not waiting for I/O) so far."""
    # steal is other machines' time, and guest time is already counted in user and nice.
    fields = _cpu_line()
    return (sum(fields[:3]) + fields[5] + fields[6]) / CLOCK_TICKS


class MachineState:
    """The load average and steal time over one part of the run: taken at its start, read at its end."""

    def __init__(self) -> None:
        self.load_at_start = os.getloadavg()
        self.cpu_at_start = _cpu_line()

    def since(self) -> dict:
        """``load_average`` at start and end (1-minute), ``steal_percent`` and ``busy_percent`` of all CPUs
        over the part: a part whose machine was busy with other work or whose hypervisor stole time reads lower
        rates, not a slower program."""
        now = _cpu_line()
        delta = [b - a for a, b in zip(self.cpu_at_start, now)]
        total = sum(delta[:8]) or 1  # guest time is inside user and nice already
        busy = sum(delta[:3]) + delta[5] + delta[6]
        return {"load_average": f"{self.load_at_start[0]:.2f} → {os.getloadavg()[0]:.2f}",
                "steal_percent": round(100 * delta[7] / total, 1), "busy_percent": round(100 * busy / total, 1)}


def spread(values: list[float]) -> list[float]:
    """[lowest, highest] of the rounds: printed beside each median so that a reader sees what it is worth."""
    return [round(min(values), 3), round(max(values), 3)]


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)
