"""Throughput of OpenPGP decryption: ciphermilter's core vs running ``gpg --decrypt`` once per message.

Not a test: run it by hand on an idle machine and compare the two numbers.

    .venv/bin/python bench/pgp_decrypt.py [--size 20480] [--seconds 5]

It encrypts one text of ``--size`` bytes with real gpg to each corpus key
below (RSA-3072 and Curve25519), wraps it as a PGP/MIME message, then decrypts
that message repeatedly: once through ``core.process`` with a real key store,
once by spawning ``gpg --batch --decrypt`` per message (what a gpg-based
milter does).
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ciphermilter import core  # noqa: E402
from ciphermilter.store import KeyStore  # noqa: E402
from shared import SHARED  # noqa: E402  (this script's own folder is on the path)

KEYS = SHARED / "corpus" / "keys" / "pgp"
RECIPIENTS = {
    "RSA-3072": "pub-pgp-bob-rsa3072",
    "Curve25519": "pub-pgp-gus-sq-cv25519",
}


def gpg(home: str, *args: str, data: bytes | None = None) -> bytes:
    command = ["gpg", "--homedir", home, "--batch", "--quiet", "--trust-model", "always", *args]
    return subprocess.run(command, input=data, capture_output=True, check=True).stdout


def pgp_mime_message(armored: bytes) -> bytes:
    return (
        b"From: alice@sender.example\r\nTo: bob@corp-pub.example\r\nSubject: bench\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\n\r\n" + armored.replace(b"\n", b"\r\n") + b"\r\n--b--\r\n"
    )


def rate(run_once, seconds: float) -> float:
    """Messages per second over about ``seconds`` of repeated runs (after one warm-up run)."""
    run_once()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run_once()
        count += 1
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20 * 1024, help="plaintext bytes per message")
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per contender")
    args = parser.parse_args()
    # Random text, so that compression does not shrink the message below the size asked for.
    text = base64.encodebytes(random.Random(1).randbytes(args.size * 3 // 4)).replace(b"\n", b"\r\n")
    inner = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + text
    with tempfile.TemporaryDirectory() as home:
        os.chmod(home, 0o700)
        store = KeyStore.create(Path(home) / "store.db")
        store.add_domain("corp-pub.example")
        for name in RECIPIENTS.values():
            secret = (KEYS / f"{name}.sec.asc").read_bytes()
            gpg(home, "--import", data=secret)
            store.import_file(secret)
        for label, name in RECIPIENTS.items():
            armored = gpg(home, "--armor", "--encrypt", "--recipient-file", str(KEYS / f"{name}.pub.asc"), data=inner)
            message = pgp_mime_message(armored)
            envelope = core.Envelope(recipients=["bob@corp-pub.example"])
            outcome = core.process(message, envelope, store)
            if outcome.plan.body is None:
                sys.exit(f"{label}: ciphermilter did not decrypt the message: {outcome.info.as_dict()}")
            ours = rate(lambda: core.process(message, envelope, store), args.seconds)
            theirs = rate(lambda: gpg(home, "--decrypt", data=armored), args.seconds)
            print(f"{label}: {len(message)} byte message: ciphermilter core.process {ours:8.1f} msg/s, "
                  f"gpg --decrypt per message {theirs:6.1f} msg/s, ratio {ours / theirs:5.1f}x")
        store.close()
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], check=False)


if __name__ == "__main__":
    main()
