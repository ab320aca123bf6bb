"""Smoke run of bench/timing.py (a few samples per pair) so that it cannot rot. No time is asserted."""

import json
import subprocess
import sys

from conftest import ROOT


def test_timing_bench_measures_every_pair_on_messages_that_fail_as_intended(tmp_path):
    out = tmp_path / "timing.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "timing.py"), "--samples", "3", "--size", "2048",
                    "--json", str(out)], check=True, capture_output=True, cwd=ROOT)
    rows = json.loads(out.read_text())
    assert [row["pair"].split()[0] for row in rows] == ["S/MIME"] * 3 + ["OpenPGP"] * 2
    for row in rows:
        assert row["samples"] == 3 and row["welch_z"] is not None and row["mann_whitney_z"] is not None
        expected = (("decryption failed",) * 2 if row["pair"].startswith("S/MIME")
                    else ("no key in the store decrypts the session key", "integrity check failed"))
        assert (row["reasons"]["wrong_key"], row["reasons"]["bad_tag"]) == expected
