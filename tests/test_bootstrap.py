"""``./bootstrap`` on a freshly booted machine: another apt or dpkg (unattended-upgrades) holds the package
lists' lock, and the set-up waits for it instead of failing at once (issue 17).

The real ``apt-get update`` runs, against the real lock (a POSIX record lock on /var/lib/apt/lists/lock, which
this process takes as apt does), with a configuration that names no package source, so nothing is fetched.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
from pathlib import Path

BOOTSTRAP = Path(__file__).resolve().parent.parent / "bootstrap"
LISTS_LOCK = "/var/lib/apt/lists/lock"


def _function(name: str) -> str:
    """The shell function ``name`` as bootstrap defines it."""
    match = re.search(rf"^{name}\(\) {{\n.*?^}}\n", BOOTSTRAP.read_text(), re.MULTILINE | re.DOTALL)
    assert match, f"bootstrap defines no {name}"
    return match.group(0)


def test_the_package_lists_update_waits_for_another_apt(tmp_path):
    (tmp_path / "sources.list").write_text("")
    (tmp_path / "sources.list.d").mkdir()
    config = tmp_path / "apt.conf"
    config.write_text(f'Dir::Etc::sourcelist "{tmp_path / "sources.list"}";\n'
                      f'Dir::Etc::sourceparts "{tmp_path / "sources.list.d"}";\n')
    script = "set -eu\n" + _function("update_package_lists") + "update_package_lists\necho updated\n"
    lock = os.open(LISTS_LOCK, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.lockf(lock, fcntl.LOCK_EX)  # what another apt-get holds while it runs
        update = subprocess.Popen(["sh", "-c", script], env={**os.environ, "APT_CONFIG": str(config)},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert update.stderr is not None
        waiting = update.stderr.readline()  # bootstrap says so before its first retry
        assert waiting == "bootstrap: waiting for another apt or dpkg to finish\n", waiting
        assert update.poll() is None  # still waiting, not failed
    finally:
        fcntl.lockf(lock, fcntl.LOCK_UN)
        os.close(lock)
    out, err = update.communicate(timeout=120)
    assert update.returncode == 0, err
    assert out == "updated\n"
