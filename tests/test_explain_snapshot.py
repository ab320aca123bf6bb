"""``ciphermilter decrypt --explain``: its JSON is user-visible, so it is pinned, key for key, for every corpus
case and a handful of attack messages (issue 15 section 3: the findings became typed, the JSON did not change).

The snapshots are in tests/vectors/explain/: ``<case id>.json`` for the corpus, and ``attack-<id>.eml`` beside
its ``attack-<id>.json`` for the attacks (built once with gpg and openssl, whose random session keys would
change the ciphertext digests on every build). ``elapsed_ms`` is left out: it is a time.

Regenerate after an intended change with ``CIPHERMILTER_WRITE_SNAPSHOTS=1`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from ciphermilter.cli.main import main
from conftest import CORPUS, case_envelope, corpus_cases, message_envelope

SNAPSHOTS = Path(__file__).parent / "vectors" / "explain"
WRITE = os.environ.get("CIPHERMILTER_WRITE_SNAPSHOTS") == "1"
CASES = corpus_cases()
ATTACKS = sorted(path.stem for path in SNAPSHOTS.glob("attack-*.eml"))


def explained(store, message_file: Path, recipients: list[str], tmp_path: Path) -> dict:
    """The --explain report of ``message_file`` as the CLI writes it, without its timing."""
    options = [option for recipient in recipients for option in ("--rcpt", recipient)]
    report_file = tmp_path / "explain.json"
    result = CliRunner().invoke(main, ["--store", str(store.path), "decrypt", *options,
                                       "--explain-file", str(report_file), str(message_file)])
    assert result.exit_code in (0, 3), result.output
    report = json.loads(report_file.read_text(encoding="utf-8"))
    report.pop("elapsed_ms", None)
    return report


def check(name: str, report: dict) -> None:
    snapshot = SNAPSHOTS / f"{name}.json"
    text = json.dumps(report, indent=2, sort_keys=True) + "\n"
    if WRITE:
        snapshot.write_text(text, encoding="utf-8")
    assert json.loads(snapshot.read_text(encoding="utf-8")) == report


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_corpus_explain_is_unchanged(corpus_store, case, tmp_path):
    recipients = case_envelope(case).recipients
    check(case["id"], explained(corpus_store, CORPUS / case["message_file"], recipients, tmp_path))


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_explain_is_unchanged(corpus_store, name, tmp_path):
    message_file = SNAPSHOTS / f"{name}.eml"
    recipients = message_envelope(message_file.read_bytes()).recipients or ["bob@corp-pub.example"]
    check(name, explained(corpus_store, message_file, recipients, tmp_path))


def test_every_attack_has_its_snapshot():
    assert len(ATTACKS) >= 5
    assert all((SNAPSHOTS / f"{name}.json").exists() for name in ATTACKS)
