"""A bounded run of the coverage-guided harness (tests/fuzz/fuzz_core.py) over the core.

The run is deterministic (fixed libFuzzer seed) and short; the long runs and
their numbers are in tests/fuzz/README.rst.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import corpus_cases

HARNESS = Path(__file__).resolve().parent / "fuzz" / "fuzz_core.py"
RUNS = 2000


def in_tmp(tmp_path: Path) -> dict:
    """The harness's environment with its temporary directories under ``tmp_path``.

    libFuzzer ends the process with exit(), so the harness's TemporaryDirectory
    (seeds, key store, findings) is never removed; pytest removes tmp_path.
    """
    return {**os.environ, "TMPDIR": str(tmp_path)}


def test_bounded_fuzz_run_finds_nothing(tmp_path):
    done = subprocess.run(
        [sys.executable, str(HARNESS), f"-runs={RUNS}", "-seed=1", "-timeout=30",
         f"-artifact_prefix={tmp_path}/", "-print_final_stats=1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=in_tmp(tmp_path), check=False,
    )
    output = done.stderr
    assert done.returncode == 0, output[-3000:]
    assert re.search(r"seed corpus: files: (\d+)", output).group(1) == str(len(corpus_cases()))
    executed = int(re.search(r"stat::number_of_executed_units:\s+(\d+)", output).group(1))
    assert executed >= RUNS
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*"))



def test_every_finding_so_far_now_passes(tmp_path):
    """The inputs behind the crashes the fuzzer found (tests/fuzz/README.rst), replayed once each."""
    findings = sorted((HARNESS.parent / "regressions").glob("*.eml"))
    done = subprocess.run([sys.executable, str(HARNESS), *map(str, findings)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=in_tmp(tmp_path), check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(re.findall(r"^Executed .* in \d+ ms$", done.stderr, re.MULTILINE)) == len(findings) == 6
