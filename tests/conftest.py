"""Shared fixtures: the corpus of real messages in ../shared/corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"


def corpus_index() -> dict:
    with open(CORPUS / "index.json", encoding="utf-8") as fh:
        return json.load(fh)


def corpus_cases(predicate=lambda case: True) -> list[dict]:
    """Every case of index.json that ``predicate`` accepts, with its expect.json merged in."""
    cases = []
    for summary in corpus_index()["cases"]:
        with open(CORPUS / summary["expect_file"], encoding="utf-8") as fh:
            case = {**summary, **json.load(fh)}
        if predicate(case):
            cases.append(case)
    return cases


def case_message(case: dict) -> bytes:
    return (CORPUS / case["message_file"]).read_bytes()


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    return CORPUS
