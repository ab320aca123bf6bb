"""The floor: a pymilter milter that does nothing, to judge the daemon against what libmilter itself costs here.

    .venv/bin/python -m bench.floor unix:/path/to/socket     # serve until SIGTERM

It negotiates what ciphermilter negotiates by default (the same skipped
steps, no replies for MAIL and headers), keeps the header values and the body
as they come, and accepts each message at its end. Every message through
it costs libmilter's threads, pymilter's callbacks and the client what they
cost ciphermilter, and nothing else: no store, no parse, no worker.

Measured beside the daemon it tells what a figure of ours is worth on this
machine (issue 19). On 2 virtual CPUs with no other load it ran a 20 KB
S/MIME message at 4,400–5,300 msg/s pinned to one core with its client
(0.12–0.15 ms of its own CPU per message) and at 3,100–4,200 msg/s on two
(0.27–0.31 ms): a wake-up that crosses CPUs costs more than one that stays,
and every hand-off between threads and processes pays it. A daemon's "two
cores ÷ one" is bounded by that, not only by its own code, so the bench
prints the floor's ratio beside ours (bench/README.md, item 23).
"""

from __future__ import annotations

import sys
from pathlib import Path

import Milter

from bench import milter_daemon

# What ciphermilter negotiates by default (daemon/milter.py SKIPPED_STEPS, NO_REPLY_STEPS and FEATURES; RCPT
# is answered, as mixed_recipients = "split" needs): tests/bench/test_floor.py compares the two.
STEPS = (Milter.P_NOCONNECT | Milter.P_NOHELO | Milter.P_NOUNKNOWN | Milter.P_NODATA
         | Milter.P_NR_MAIL | Milter.P_NR_HDR | Milter.P_HDR_LEADSPC | Milter.P_SKIP)


class NullMilter(Milter.Base):
    """Keeps what the MTA sends and accepts it unchanged."""

    def __init__(self) -> None:
        self.kept: list[bytes] = []

    def negotiate(self, opts: list[int]) -> int:
        # opts is [actions, protocol steps, reserved, reserved] (pymilter's Base.negotiate)
        self._protocol = opts[1] & STEPS  # @Milter.noreply reads it
        opts[0], opts[1], opts[2], opts[3] = 0, self._protocol, 0, 0  # no actions: it changes nothing
        return Milter.CONTINUE

    @Milter.noreply
    def envfrom(self, sender: str, *params: str) -> int:
        self.kept = []
        return Milter.CONTINUE

    def envrcpt(self, recipient: str, *params: str) -> int:
        return Milter.CONTINUE

    @Milter.noreply
    def header(self, name: str, value: bytes) -> int:
        self.kept.append(value)
        return Milter.CONTINUE

    def body(self, chunk: bytes) -> int:
        self.kept.append(chunk)
        return Milter.CONTINUE

    def eom(self) -> int:
        return Milter.ACCEPT


def start(work: Path, name: str, cpus: str | None = None) -> milter_daemon.Daemon:
    """The floor milter on a unix socket in ``work/name``, pinned to ``cpus`` if given; stopped by PID."""
    directory = work / name
    directory.mkdir()
    directory.chmod(0o755)
    return milter_daemon.serve(directory, f"unix:{directory / 'milter.sock'}", ["-m", "bench.floor",
                               f"unix:{directory / 'milter.sock'}"], cpus)


def main(argv: list[str]) -> int:
    Milter.factory = NullMilter
    Milter.runmilter("ciphermilter-bench-floor", argv[0], timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
