"""Files the daemon and the CLI write, created with their final mode whatever the process umask is.

Every file ciphermilter writes is 0600 (the statistics, the pid file, a
report) unless another process must read it: the Prometheus textfile is
0640, for node_exporter through the group. Secrets (the master key, a new
store, a backup, an export) go through :func:`masterkey.write_private_file`,
which also refuses to replace a file.
"""

from __future__ import annotations

import os
import tempfile

PRIVATE_MODE = 0o600


def write_atomically(path: str, data: str, mode: int = PRIVATE_MODE) -> None:
    """Replace ``path`` with ``data``, mode ``mode``: readers see the old file or the new one, never half of one.

    mkstemp creates the temporary file 0600 whatever the umask, and chmod
    (which the umask does not touch) sets the final mode before the rename.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".ciphermilter-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def private_opener(path: str, flags: int) -> int:
    """An ``opener`` for :func:`open` that creates a missing file 0600 (an existing one keeps its mode)."""
    return os.open(path, flags, PRIVATE_MODE)
