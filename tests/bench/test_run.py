"""Smoke run of the benchmark suite (tiny sizes, one run each, every part) so that it cannot rot.

No timing is asserted: speed is judged by the benchmark itself, not by tests.
What is asserted is that each part really ran: the core and the daemon
decrypted, the daemon answered, Postfix relayed, the memory figure exists.
"""

import json
import subprocess
import sys

import pytest

from conftest import ROOT

CORE_SCENARIOS = {
    "S/MIME RSA-2048 AES-256-CBC", "S/MIME RSA-2048 AES-256-GCM", "S/MIME ECDH P-256 AES-128-CBC",
    "OpenPGP RSA-3072", "OpenPGP Curve25519", "OpenPGP RSA-3072 SEIPDv2 OCB", "OpenPGP RSA-3072 LibrePGP OCB",
    "S/MIME signed (detached)", "plain",
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(out)],
                   check=True, capture_output=True, cwd=ROOT)
    return json.loads((out / "latest.json").read_text()), (out / "latest.md").read_text()


def test_core_part_measures_every_scenario_and_its_peers(smoke):
    results, table = smoke
    by_name = {row["scenario"]: row for row in results["rows"]}
    assert set(by_name) == CORE_SCENARIOS
    for name, row in by_name.items():
        assert row["core"]["runs"] >= 1
        encrypted = "signed" not in name and name != "plain"
        assert row["core"]["decrypted"] is encrypted, name
    assert set(by_name["OpenPGP RSA-3072"]["peers"]) == {"gpg --decrypt per message"}
    assert by_name["OpenPGP RSA-3072 SEIPDv2 OCB"]["peers"] == {}  # gpg 2.2 reads no AEAD packet
    assert "cryptography pkcs7_decrypt_der (ceiling)" in by_name["S/MIME RSA-2048 AES-256-CBC"]["peers"]
    assert "| S/MIME RSA-2048 AES-256-CBC | 2KB |" in table


def test_milter_part_runs_both_sockets_every_concurrency_and_decrypts(smoke):
    results, _ = smoke
    rows = results["milter"]["rows"]
    assert {(r["socket"], r["connections"]) for r in rows} == {(s, c) for s in ("unix", "inet") for c in (1, 4, 16)}
    for row in rows:
        assert row["messages"] >= 1 and "daemon_cpu_ms" in row  # one smoke message may use less than a clock tick
        assert set(row["cpu_split_ms"]) == {"daemon", "workers", "client"}, row  # who spent it, from /proc
        if row["scenario"] == "plain, external recipient":
            assert set(row["replies"]) == {"a"}, row  # accepted at end of headers, no body sent
        else:
            assert set(row["replies"]) == {"c"}, row
        assert (row["body_replaced_bytes"] > 0) is (row["scenario"] in ("S/MIME RSA-2048 AES-256-CBC",
                                                                         "OpenPGP RSA-3072")), row
    # ours and the floor (bench/floor.py: a pymilter milter that does nothing), each on one core and on two
    assert set(results["milter"]["cores"]) == {"1 core", "2 cores", "floor, 1 core", "floor, 2 cores"}
    for label in ("floor, 1 core", "floor, 2 cores"):
        floor = results["milter"]["cores"][label]
        assert set(floor["replies"]) == {"a"} and floor["body_replaced_bytes"] == 0  # accepted, unchanged
    paired = results["milter"]["paired"]  # each target's reference and the daemon, measured in turn
    assert {name: pair["peer"] for name, pair in paired.items()} == {
        "S/MIME RSA-2048 AES-256-CBC": "cryptography pkcs7_decrypt_der (ceiling)",
        "OpenPGP RSA-3072": "gpg --decrypt per message"}
    for pair in paired.values():
        assert pair["ratio"] > 0 and pair["reference"]["msgs_per_s"] > 0
        low, high = pair["ratio_spread"]  # each round's own ratio, printed beside the median
        assert 0 < low <= high and "cpu_ms" in pair["reference"] and "cpu_ratio" in pair
        assert len(pair["daemon"]["rates"]) == pair["daemon"]["rounds"]
        assert set(pair["daemon"]["replies"]) == {"c"} and pair["daemon"]["body_replaced_bytes"] > 0
        assert set(pair["floor"]["replies"]) == {"a"} and "cpu_ratio_with_floor" in pair  # the floor ran beside
    assert results["milter"]["cores_ratio"]["spread"][0] > 0 and "floor_cores_ratio" in results["milter"]


def test_postfix_part_compares_with_and_without_the_milter(smoke):
    results, table = smoke
    rows = {r["scenario"]: r for r in results["postfix"]["rows"]}
    assert set(rows) == {"S/MIME RSA-2048 AES-256-CBC", "plain"}
    for row in rows.values():
        assert row["postfix_alone"]["messages"] == row["postfix_with_ciphermilter"]["messages"] >= 1
        assert row["ratio"] > 0
        for run in (row["postfix_alone"], row["postfix_with_ciphermilter"]):
            assert set(run["cpu_ms_per_message"]) == {"machine", "Postfix and the rest", "ciphermilter", "smtp-source"}
    assert "Postfix relaying to smtp-sink" in table


def test_memory_part_decrypts_the_large_message_and_reads_the_peak(smoke):
    results, _ = smoke
    memory = results["memory"]
    assert memory["reply"] == "c"
    assert memory["decrypted_mib"] > 0.5  # the 1 MiB smoke message was decrypted, not passed as it is
    assert memory["peak_rss_mib"] >= memory["idle_rss_mib"] > 0


def test_every_target_is_reported_with_its_verdict(smoke):
    results, table = smoke
    assert len(results["targets"]) == 9
    for target in results["targets"]:
        assert isinstance(target["met"], bool) and target["measured"] >= 0
        assert f"| {target['target']} |" in table


def test_every_part_records_the_load_and_steal_time_it_ran_under(smoke):
    results, table = smoke
    assert set(results["conditions"]) == {"core and peers", "milter", "postfix", "memory"}
    for state in results["conditions"].values():
        assert 0 <= state["steal_percent"] <= 100 and 0 <= state["busy_percent"] <= 100 and "→" in state["load_average"]
    assert "| part | load average | steal % | busy % |" in table
