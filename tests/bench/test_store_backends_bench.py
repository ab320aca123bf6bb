"""Smoke run of the store benchmark (bench/store_backends.py): every part on both backends, so that it
cannot rot. No timing is asserted; what is asserted is that each part ran and the daemons decrypted."""

from bench import store_backends


def test_every_part_runs_on_both_backends(tmp_path):
    results = store_backends.main(["--seconds", "0", "--min-runs", "1", "--out", str(tmp_path)])
    assert set(results) == {"SQLite", "PostgreSQL, unix socket"}
    for backend, parts in results.items():
        assert set(parts) == {"freshness", "message, warm", "message, after a harvest", "S/MIME milter protocol"}
        assert all(figures["runs" if "runs" in figures else "messages"] >= 1 for figures in parts.values())
        assert parts["S/MIME milter protocol"]["body_replaced_bytes"] > 0, backend  # bob's key decrypted it
    assert (tmp_path / "store_backends.json").exists()
