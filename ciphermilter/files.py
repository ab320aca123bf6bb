"""Files the daemon and the CLI write, created with their final mode whatever the process umask is.

Every file ciphermilter writes is 0600 (the statistics, the pid file, a
report) unless another process must read it: the Prometheus textfile is
0640, for node_exporter through the group. Secrets (the master key, a new
store, a backup, an export) go through :func:`masterkey.write_private_file`,
which also refuses to replace a file.
"""

from __future__ import annotations

import os
import stat
import tempfile

PRIVATE_MODE = 0o600
STATS_FILE_NAME = "ciphermilter.stats.json"


def default_stats_file(store_path: str) -> str:
    """Beside the store: ``var/ciphermilter.db`` -> ``var/ciphermilter.stats.json``."""
    return os.path.join(os.path.dirname(store_path), STATS_FILE_NAME)


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
    """An ``opener`` for :func:`open` whose regular file is 0600, new or existing, before a byte is written.

    An existing file keeps its mode through open(2): a report left 0644 by a
    shell's umask would otherwise show its recipients to every local user.
    Only a regular file is changed: ``/dev/null`` or a terminal named as the
    file keeps its mode (made 0600 by root, /dev/null would break others).
    """
    fd = os.open(path, flags, PRIVATE_MODE)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, PRIVATE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd
