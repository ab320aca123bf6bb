"""Hostile input for the searches over message text, and how long the core takes on it (issue 14).

    .venv/bin/python bench/linear.py             # the issue's message at 3, 8 and 16 MB
    .venv/bin/python bench/linear.py --mb 1 2 4  # other sizes

The message: one quoted-printable text part whose decoded text is a single line
of ``-----BEGIN PGP MESSAGE-----`` markers, none at a line start (320,000 in
16 MB). Before the fix, the armor search looked for each marker's line end:
quadratic (offline 3 MB 2.2 s, 8 MB 17.5 s, 16 MB 75 s). Each size is run
through ``core.process`` once, without a store; the growth ratio per doubling
of the size is ~2 for a linear search and ~4 for a quadratic one. The tests
(tests/test_linear.py) build the same input and count the work instead.
"""

from __future__ import annotations

import argparse
import binascii
import time

from ciphermilter.core import pipeline as core

# 50 bytes with a marker inside the line: 320,000 of them make the 16 MB message.
MARKER_UNIT = b"x -----BEGIN PGP MESSAGE----- padding padding pad "
FLOOD_HEADERS = (b"From: attacker@evil.example\r\nTo: bob@corp-pub.example\r\nSubject: armor flood\r\n"
                 b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
                 b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")


def marker_line(size: int) -> bytes:
    """About ``size`` bytes of one line of armor markers, none at the line's start."""
    return MARKER_UNIT * max(1, size // len(MARKER_UNIT))


def armor_flood_message(size: int, after: bytes = b"") -> bytes:
    """The issue's message, about ``size`` bytes: the marker line quoted-printable encoded (soft line breaks
    every 76 characters, CRLF as SMTP carries it), so only the decoded text is one line; ``after`` is text
    on the lines after it."""
    text = marker_line(size - len(FLOOD_HEADERS)) + b"\n" + after
    return FLOOD_HEADERS + binascii.b2a_qp(text).replace(b"\n", b"\r\n")


def time_core(size: int) -> float:
    message = armor_flood_message(size)
    started = time.monotonic()
    core.process(message, core.Envelope(), None)
    return time.monotonic() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, nargs="+", default=[3, 8, 16], help="message sizes in MB (10^6 bytes)")
    args = parser.parse_args(argv)
    previous = None
    for mb in args.mb:
        seconds = time_core(int(mb * 1_000_000))
        growth = "" if previous is None else (f"  x{seconds / previous[1]:.2f} for x{mb / previous[0]:.2f}"
                                              f" the size (linear: x{mb / previous[0]:.2f})")
        print(f"{mb:g} MB: {seconds:.3f} s{growth}")
        previous = (mb, seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
