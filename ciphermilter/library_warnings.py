"""The one warnings filter ciphermilter installs, called by each entry point, never on import.

pgpy warns (``UserWarning``) on every verification that it does not check
self-signatures, revocations or key flags, and cryptography's deprecation
warnings for the ciphers pgpy still offers are raised at pgpy's call sites
(``CryptographyDeprecationWarning`` is a ``UserWarning`` too). We know (the
store decides which keys count), and an admin cannot act on them: they are kept
out of the CLI's stderr and the mail log. Importing the package changes no
global state, so a program that embeds it (the tests, the benchmark) keeps its
own filters; the CLI (``cli/main.py``) and each worker process (a fresh
``spawn`` interpreter, ``daemon/workers.py``) call :func:`ignore_pgpy_warnings`.
"""

from __future__ import annotations

import warnings


def ignore_pgpy_warnings() -> None:
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pgpy(\.|$)")
