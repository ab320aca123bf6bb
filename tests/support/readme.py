"""README.rst as the tests read it: its sections and the shell blocks an RST comment marks.

Tests that run the README's own commands (the walkthrough, the restore
drill) run that very text, never a copy: a block marked ``.. NAME`` right
before its ``.. code-block:: sh`` is a step of script NAME.
"""

from __future__ import annotations

import re

from conftest import ROOT

README = ROOT / "README.rst"


class MarkerError(ValueError):
    """A marker not directly followed by a sh code block: a step would be dropped without a trace."""


def marked_blocks(readme: str, marker: str) -> list[str]:
    """The sh code blocks marked ``.. marker``, dedented, in their order."""
    line = f".. {marker}\n"
    # The marker, then a sh code block whose lines are indented by three spaces (blank lines included).
    blocks = re.findall(rf"^{re.escape(line)}\.\. code-block:: sh\n\n((?:(?:   .*)?\n)+)", readme, re.M)
    markers = len(re.findall(rf"^{re.escape(line)}", readme, re.M))
    if not blocks or len(blocks) != markers:
        raise MarkerError(f"{markers} '.. {marker}' markers, but {len(blocks)} sh code blocks right after one")
    return [re.sub(r"^   ", "", block, flags=re.M).strip("\n") + "\n" for block in blocks]


def chapter(readme: str, title: str) -> str:
    """A top-level section (title underlined with ``=``) up to the next one."""
    match = re.search(rf"^{re.escape(title)}\n=+\n(.*?)(?=^[^\n]+\n=+\n|\Z)", readme, re.S | re.M)
    assert match, f"no chapter {title!r} in README.rst"
    return match.group(1)


def section(text: str, title: str) -> str:
    """A second-level section (underlined with ``-``) of a chapter, up to the next one."""
    match = re.search(rf"^{re.escape(title)}\n-+\n(.*?)(?=^[^\n]+\n-+\n|\Z)", text, re.S | re.M)
    assert match, f"no section {title!r}"
    return match.group(1)
