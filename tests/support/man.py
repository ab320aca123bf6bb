"""The man pages as man(1) shows them (mandoc), for the tests that check the documentation says what the
code does (test_docs, test_flood)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import ROOT

MAN = ROOT / "man"
MAN_PAGES = sorted(MAN.glob("man?/*.?"))


def rendered(page: Path) -> str:
    """The page as man(1) shows it, wide enough that no name is broken across lines, without overstrikes."""
    text = subprocess.run(["mandoc", "-Tascii", "-O", "width=200", str(page)], capture_output=True, check=True,
                          text=True).stdout
    return re.sub(".\b", "", text)


def page(name: str) -> Path:
    return next(p for p in MAN_PAGES if p.name == name)
