"""OpenPGP compression bombs: the vectors (tests/vectors/pgp/bombs and the corpus' 1 GiB bzip2 bomb) and the reason
the core gives for each, shared by test_bombs and e2e/test_bombs_chain."""

from __future__ import annotations

from pathlib import Path

from ciphermilter.core.settings import DECOMPRESSED_FLOOR
from conftest import CORPUS

BOMB_DIR = Path(__file__).parents[1] / "vectors" / "pgp" / "bombs"
BOMBS = [*sorted(BOMB_DIR.glob("*.eml")), CORPUS / "malformed-pgp-compression-bomb-bzip2-1GiB" / "message.eml"]
BOMB_IDS = [p.stem if p.parent == BOMB_DIR else p.parent.name for p in BOMBS]


def too_large(bound: int) -> str:
    return f"OpenPGP data decompresses to more than {bound} bytes"


# Every bomb here is a message under 1 MiB, so what it may unpack to is the floor of the per-message budget
# (Limits.decompression_budget), far below the configured ceiling: the reason the core gives for each.
TOO_LARGE = too_large(DECOMPRESSED_FLOOR)
