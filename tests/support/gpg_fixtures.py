"""The gpg home holding bob's public OpenPGP key, a pytest plugin registered by tests/conftest.py
(``pytest_plugins``) for the tests that encrypt to bob with gpg (test_security, test_readers)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from support.to_bob import PGP_BOB


@pytest.fixture(scope="module")
def gpg_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--import", str(PGP_BOB)], check=True, capture_output=True)
    return home
