"""Where the shared test material is: the corpus of real messages and the header spec (``shared/``).

It lives beside the repository, as ``../shared``. A clone made elsewhere from a
local checkout (``git clone /work/main /tmp/ci-check``) finds it beside the
repository it was cloned from; ``CIPHERMILTER_SHARED`` overrides both. The
tests and the benchmark read it through :data:`SHARED`, never through a path
of their own.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _origin_checkout() -> Path | None:
    """The local repository this one was cloned from, if it was cloned from a path."""
    try:
        url = subprocess.run(["git", "-C", str(ROOT), "config", "--get", "remote.origin.url"],
                             capture_output=True, text=True, check=False).stdout.strip()
    except OSError:  # no git: then there is no origin to look beside either
        return None
    path = Path(url.removeprefix("file://"))
    return path.resolve() if url and path.is_absolute() and path.is_dir() else None


def find_shared() -> Path:
    """The first of $CIPHERMILTER_SHARED, ../shared and the origin checkout's ../shared that holds the corpus."""
    candidates = [Path(os.environ["CIPHERMILTER_SHARED"])] if os.environ.get("CIPHERMILTER_SHARED") else []
    candidates.append(ROOT.parent / "shared")
    origin = _origin_checkout()
    if origin is not None:
        candidates.append(origin.parent / "shared")
    for candidate in candidates:
        if (candidate / "corpus" / "index.json").is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise RuntimeError(f"the shared corpus (shared/corpus/index.json) is not in any of: {looked};"
                       " set CIPHERMILTER_SHARED to the directory that holds corpus/ and spec/")


SHARED = find_shared()
