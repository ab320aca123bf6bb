"""Smoke run of the benchmark suite (tiny sizes, one run each) so that it cannot rot.

No timing is asserted: speed is judged by the benchmark itself, not by tests.
"""

import json
import subprocess
import sys

from conftest import ROOT


def test_benchmark_smoke_run_measures_every_scenario(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(tmp_path)],
                   check=True, capture_output=True, cwd=ROOT)
    results = json.loads((tmp_path / "latest.json").read_text())
    by_name = {row["scenario"]: row for row in results["rows"]}
    assert set(by_name) == {
        "S/MIME RSA-2048 AES-256-CBC", "S/MIME RSA-2048 AES-256-GCM", "S/MIME ECDH P-256 AES-128-CBC",
        "OpenPGP RSA-3072", "OpenPGP Curve25519", "S/MIME signed (detached)", "plain",
    }
    for name, row in by_name.items():
        assert row["core"]["runs"] >= 1
        encrypted = "signed" not in name and name != "plain"
        assert row["core"]["decrypted"] is encrypted, name
    assert set(by_name["OpenPGP RSA-3072"]["peers"]) == {"gpg --decrypt per message"}
    assert "cryptography pkcs7_decrypt_der (ceiling)" in by_name["S/MIME RSA-2048 AES-256-CBC"]["peers"]
    assert "| S/MIME RSA-2048 AES-256-CBC | 2KB |" in (tmp_path / "latest.md").read_text()
