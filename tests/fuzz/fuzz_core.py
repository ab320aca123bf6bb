"""Coverage-guided fuzzing of the core with atheris (libFuzzer), seeded with every corpus message.

Each input goes through ``core.process`` with a key store holding every
corpus key (so mutated messages still reach real decryption and signature
checks) and the plan is replayed with ``apply_plan``. A finding is anything
that escapes ``process``, an ``Outcome.error`` (the core caught a bug of
ours; the logged exception is raised again so libFuzzer shows its
traceback) or an output message that breaks an invariant of
:func:`fuzz.invariants.check_output`.

Run from the repository root::

    .venv/bin/python tests/fuzz/fuzz_core.py -runs=20000            # or -max_total_time=900
    .venv/bin/python tests/fuzz/fuzz_core.py crash-<sha1>            # replay one finding

The seeds are read from ../shared/corpus at start-up (index.json) and copied
into a temporary directory, never into the repository; libFuzzer writes the
inputs it finds into a second temporary directory. Options after the script
name are libFuzzer's; ``-only_ascii``, ``-seed`` and ``-timeout`` work as
documented there.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

import atheris

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent))

with atheris.instrument_imports(include=["ciphermilter"]):
    from ciphermilter.core import pipeline as core
    from ciphermilter.core.settings import Settings

from conftest import CORPUS, case_message, corpus_cases, import_corpus_keys
from fuzz.invariants import check_output

warnings.filterwarnings("ignore", module="pgpy")  # pgpy's TODO notes on every key use drown libFuzzer's output
ENVELOPE = core.Envelope(mail_from="sender@sender-pub.example", recipients=["bob@corp-pub.example"])
SETTINGS = Settings()


class _KeepException(logging.Handler):
    """Remembers the exception the core logged when it caught a bug of its own."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.exc_info = None

    def emit(self, record):
        self.exc_info = record.exc_info


def make_target(store):
    keeper = _KeepException()
    logging.getLogger("ciphermilter").addHandler(keeper)
    logging.getLogger("ciphermilter").propagate = False  # the traceback is raised below, not printed twice

    def test_one_input(data: bytes) -> None:
        keeper.exc_info = None
        outcome = core.process(data, ENVELOPE, store, SETTINGS)
        if keeper.exc_info:  # the core caught a bug of ours: show its traceback
            raise keeper.exc_info[1]
        # An error without a logged exception is a decision, not a bug: a decrypted header libmilter cannot carry
        # (not UTF-8) passes the message on with its reason under on_error, as the daemon would.
        check_output(data, outcome)

    return test_one_input


def seed_directory(root: str) -> str:
    """Every corpus message.eml (all cases of index.json) copied into a fresh directory under ``root``."""
    seeds = os.path.join(root, "seeds")
    os.mkdir(seeds)
    for case in corpus_cases():
        with open(os.path.join(seeds, case["id"] + ".eml"), "wb") as fh:
            fh.write(case_message(case))
    return seeds


def main(argv: list[str]) -> None:
    from ciphermilter.store.keystore import KeyStore

    with tempfile.TemporaryDirectory(prefix="ciphermilter-fuzz-") as root:
        store = KeyStore.create(os.path.join(root, "store.db"))
        import_corpus_keys(store)
        options = [arg for arg in argv[1:] if arg.startswith("-")]
        inputs = [arg for arg in argv[1:] if not arg.startswith("-")]
        if not inputs:  # libFuzzer writes what it finds into the first directory, reads seeds from the rest
            found = os.path.join(root, "found")
            os.mkdir(found)
            inputs = [found, seed_directory(root)]
        print(f"seeds: {CORPUS}", file=sys.stderr)
        atheris.Setup([argv[0], *options, *inputs], make_target(store))
        atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
