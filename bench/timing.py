"""Do a wrong key and a bad tag take the same time? ``core.process`` on each pair of bench/failure_pairs.py.

    .venv/bin/python bench/timing.py                  # 1,000 samples of each kind per pair, 20 KB content
    .venv/bin/python bench/timing.py --samples 5      # a smoke run (tests/bench runs it)

The two messages of a pair are processed alternately (wrong key, bad tag, bad tag, wrong key, ...), so
that a change in the machine's load hits both alike. For each pair it prints the mean and median time of each
kind, their difference, Welch's z of the means and the Mann-Whitney z of the ranks (normal approximation
with the tie correction). |z| above about 3 is a difference the clock shows; a sender who measures it
over SMTP has a padding oracle. Besides the times it checks each message's outcome: a timing run
whose messages did not fail as intended would measure nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a file (python bench/run.py): the clone's root makes the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import failure_pairs  # noqa: E402
from bench.run import build_store  # noqa: E402
from ciphermilter.core import pipeline as core
from ciphermilter.core.settings import Settings

SETTINGS = Settings(harvest_certificates=False, harvest_pgp_keys=False)  # a run must not change the store


def welch_z(a: list[float], b: list[float]) -> float:
    spread = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    return (statistics.fmean(a) - statistics.fmean(b)) / spread if spread else 0.0


def mann_whitney_z(a: list[float], b: list[float]) -> float:
    """z of the Mann-Whitney U of ``a`` against ``b`` (negative when ``a`` tends to be smaller)."""
    ordered = sorted([(value, 0) for value in a] + [(value, 1) for value in b])
    rank_sum_a, ties, index = 0.0, 0.0, 0
    while index < len(ordered):
        end = index
        while end + 1 < len(ordered) and ordered[end + 1][0] == ordered[index][0]:
            end += 1
        group = end - index + 1
        mean_rank = (index + end) / 2 + 1
        rank_sum_a += mean_rank * sum(1 for _, side in ordered[index:end + 1] if side == 0)
        ties += group ** 3 - group
        index = end + 1
    n1, n2 = len(a), len(b)
    u = rank_sum_a - n1 * (n1 + 1) / 2
    total = n1 + n2
    sigma = math.sqrt(n1 * n2 / 12 * ((total + 1) - ties / (total * (total - 1))))
    return (u - n1 * n2 / 2) / sigma if sigma else 0.0


def failure_reason(outcome) -> str:
    info = outcome.info.as_dict()
    return next((value for name, value in info.items() if "Decryption-Failed" in name), "NOT FAILED")


def measure_pair(pair: failure_pairs.Pair, store, samples: int) -> dict:
    envelope = core.Envelope(recipients=[pair.recipient])
    messages = {"wrong_key": pair.wrong_key, "bad_tag": pair.bad_tag}
    reasons = {kind: failure_reason(core.process(message, envelope, store, SETTINGS))  # also warms the caches
               for kind, message in messages.items()}
    times: dict[str, list[float]] = {kind: [] for kind in messages}
    for round_ in range(samples):
        # ABBA order: whichever kind goes second (warmer caches, a later moment) alternates too.
        for kind in list(messages) if round_ % 2 == 0 else reversed(list(messages)):
            message = messages[kind]
            started = time.perf_counter_ns()
            core.process(message, envelope, store, SETTINGS)
            times[kind].append((time.perf_counter_ns() - started) / 1e6)
    wrong, bad = times["wrong_key"], times["bad_tag"]
    return {
        "pair": pair.name, "samples": samples, "reasons": reasons,
        **{f"{kind}_{stat}_ms": round(fn(values), 4) for kind, values in times.items()
           for stat, fn in (("mean", statistics.fmean), ("median", statistics.median))},
        "mean_difference_ms": round(statistics.fmean(wrong) - statistics.fmean(bad), 4),
        "welch_z": round(welch_z(wrong, bad), 2) if samples > 1 else None,
        "mann_whitney_z": round(mann_whitney_z(wrong, bad), 2) if samples > 1 else None,
    }


def table(rows: list[dict]) -> str:
    lines = ["| pair | wrong key mean / median ms | bad tag mean / median ms | difference ms | Welch z | "
             "Mann-Whitney z |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['pair']} | {row['wrong_key_mean_ms']:.3f} / {row['wrong_key_median_ms']:.3f} | "
                     f"{row['bad_tag_mean_ms']:.3f} / {row['bad_tag_median_ms']:.3f} | "
                     f"{row['mean_difference_ms']:+.3f} | {row['welch_z']} | {row['mann_whitney_z']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000, help="messages of each kind per pair")
    parser.add_argument("--size", type=int, default=20 * 1024, help="bytes of encrypted content")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        store = build_store(Path(work))
        rows = [measure_pair(pair, store, args.samples) for pair in failure_pairs.pairs(Path(work), args.size)]
        store.close()
    print(table(rows))
    for row in rows:
        print(f"{row['pair']}: wrong key -> {row['reasons']['wrong_key']!r}, bad tag -> {row['reasons']['bad_tag']!r}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
