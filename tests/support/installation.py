"""This checkout's Python installation where the daemon's user can run it, and where it cannot.

The e2e daemons drop root to ``nobody`` and then start their worker processes,
and some tests run the CLI as ``nobody``. Cloned where only root may enter
(``/root`` is mode 0700 on Debian) nobody cannot execute ``.venv/bin/python``
and every message failed (issue 17). So the processes that drop root run a
copy nobody can read: a virtual environment in a world-traversable temporary
directory whose ``site-packages`` and package are hard links to the clone's
files (0.24 s for 6,500 files; a plain copy where the clone is on another file
system), made once per test session and removed at its end. Hard links share
their file's mode, and pip and git write 0644 under Debian's umask.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "ciphermilter"


@functools.cache
def readable_python() -> Path:
    """A Python every user may run, with this checkout's packages and its ``ciphermilter`` script beside it."""
    directory = Path(tempfile.mkdtemp(prefix="ciphermilter-installation-"))
    atexit.register(shutil.rmtree, directory, True)
    directory.chmod(0o755)
    return virtual_environment(directory / "venv")


def virtual_environment(venv: Path, packages: Path | None = None) -> Path:
    """A virtual environment at ``venv`` with this one's libraries and this checkout's package; its python.

    ``packages``: link its site-packages to that directory instead of copying (a private installation's).
    """
    site = venv / Path(sysconfig.get_paths()["purelib"]).relative_to(sys.prefix)
    (venv / "bin").mkdir(parents=True)
    shutil.copy(Path(sys.prefix) / "pyvenv.cfg", venv / "pyvenv.cfg")
    python = venv / "bin" / "python"
    python.symlink_to(os.path.realpath(sys.executable))
    if packages is not None:
        site.parent.mkdir(parents=True)
        site.symlink_to(packages)
        return python
    _link_tree(Path(sysconfig.get_paths()["purelib"]), site, ignore=shutil.ignore_patterns("__editable__*"))
    _link_tree(ROOT / PACKAGE, site / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    script = venv / "bin" / PACKAGE
    # As pip writes it: a spawned worker imports this script again, as __mp_main__, and must not start a daemon.
    script.write_text(f"#!{python}\nimport sys\nfrom ciphermilter.cli.main import main\n"
                      "if __name__ == '__main__':\n    sys.exit(main())\n")
    script.chmod(0o755)
    return python


def _link_tree(source: Path, target: Path, ignore) -> None:
    try:
        shutil.copytree(source, target, ignore=ignore, copy_function=os.link)
    except shutil.Error:  # another file system: copies
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, ignore=ignore)


def private_python(directory: Path) -> Path:
    """A Python only root may run: a virtual environment in ``directory``, which is made mode 0700 (the
    installation of a clone under /root)."""
    directory.mkdir(mode=0o700, exist_ok=True)
    directory.chmod(0o700)
    return virtual_environment(directory / "venv", packages=Path(sysconfig.get_paths()["purelib"]))

