"""Instructions the daemon's own process executes per message, counted by callgrind: a figure no other load moves.

    .venv/bin/python bench/instructions.py [--messages 40]

On a machine shared with other work, rates moved ±30 % between runs of the
same commit and even CPU time per message 20–40 % (shared caches, frequency);
the instruction count under ``valgrind --tool=callgrind`` repeats to within
0.3 %. The daemon runs under callgrind (its worker processes, started with
``spawn``, run natively and are not counted); after a warm-up the counters are
zeroed, ``--messages`` messages are sent on one connection and the counters
dumped, then zeroed again and dumped after as long idle, which is subtracted
(libmilter's threads poll while idle). Per scenario: plain mail to an external
recipient (accepted at end of headers, issue 15's last row), plain mail to an
internal one (read in the connection's thread) and S/MIME (handed to a worker).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a file: the clone's root makes the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import milter_client, milter_daemon, run  # noqa: E402

EXTERNAL = "zed@elsewhere-pub.example"


def scenarios(work: Path) -> dict[str, milter_client.EncodedMessage]:
    entity = run.plaintext_entity(20 * 1024)
    plain = run.crlf(b"From: a@b.example\nTo: " + run.RECIPIENT.encode() + b"\nSubject: bench\nMIME-Version: 1.0\n") + entity
    smime = run.openssl_message(entity, work, ["-encrypt", "-aes256", "-recip",
                                               str(run.KEYS / "smime" / "pub-bob.cert.pem")])
    return {"plain, external recipient": milter_client.EncodedMessage.of(plain, run.SENDER, [EXTERNAL]),
            "plain": milter_client.EncodedMessage.of(plain, run.SENDER, [run.RECIPIENT]),
            "S/MIME RSA-2048 AES-256-CBC": milter_client.EncodedMessage.of(smime, run.SENDER, [run.RECIPIENT])}


def send(socket: str, message: milter_client.EncodedMessage, count: int) -> None:
    connection = milter_client.Connection(socket)
    try:
        for _ in range(count):
            connection.send(message)
    finally:
        connection.close()


def counted(pid: int, out: Path, label: str) -> int:
    """Dump callgrind's counters (``callgrind_control -d``) and read the instructions since they were zeroed."""
    before = set(out.glob(f"cg.{pid}.*"))
    subprocess.run(["callgrind_control", "-d", label, str(pid)], check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while not (dumped := set(out.glob(f"cg.{pid}.*")) - before):
        if time.monotonic() > deadline:
            raise RuntimeError("callgrind wrote no dump")
        time.sleep(0.1)
    time.sleep(0.5)  # the dump is written in one go; let it finish
    for line in dumped.pop().read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError("no totals in the callgrind dump")


def per_message(work: Path, store: Path, name: str, message: milter_client.EncodedMessage, count: int) -> int:
    out = work / f"callgrind-{name.replace('/', '').replace(' ', '-').replace(',', '')}"
    out.mkdir()
    served = milter_daemon.start(work, out.name + "-daemon", store,
                                 under=["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p"])
    pid = served.process.pid
    try:
        send(served.socket, message, 5)  # caches filled, the worker started
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
        started = time.monotonic()
        send(served.socket, message, count)
        elapsed = time.monotonic() - started
        busy = counted(pid, out, "messages")
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
        time.sleep(elapsed)
        idle = counted(pid, out, "idle")
    finally:
        served.stop()
    return (busy - idle) // count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=40)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ciphermilter-instructions-"))
    work.chmod(0o755)
    try:
        run.build_store(work)
        print("| scenario | daemon process, instructions per message |\n|---|---:|")
        for name, message in scenarios(work).items():
            print(f"| {name} | {per_message(work, work / 'bench.db', name, message, args.messages):,} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
