"""What the README walkthrough test needs besides the README: its script, a Debian-like Postfix, and clean-up.

The walkthrough ("Walkthrough: an encrypted test virus rejected in the SMTP
session" in README.rst) is the shell text an admin pastes on a test box. The
test runs that very text, never a copy: :func:`walkthrough_script` extracts
every ``.. code-block:: sh`` that an RST comment ``.. walkthrough`` marks.

What an admin's box already has, the test provides privately: Postfix as
Debian's "Internet Site" leaves it (taking mail for ``localhost`` into
``mail_spool_directory``), here with its own config, queue and spool
directories under a temporary directory, ``chroot = n``, listening on
127.0.0.1 only.
"""

from __future__ import annotations

import grp
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from e2e.conftest import STOP_TIMEOUT
from bench.postfix_instance import POSTFIX_SERVICES, alive, private_settings, queued_files, start_private
from support.readme import MarkerError, marked_blocks

WalkthroughError = MarkerError  # a marker without its sh code block


def walkthrough_script(readme: str) -> str:
    """The blocks marked ``.. walkthrough``, joined in their order: the script the admin pastes."""
    return "\n".join(marked_blocks(readme, "walkthrough"))


@dataclass
class Postfix:
    config_dir: Path
    queue_dir: Path
    mail_spool: Path
    maillog: Path

    def queued(self) -> list[str]:
        return queued_files(self.queue_dir)

    def master_pid(self) -> int | None:
        return pid_from_file(self.queue_dir / "pid" / "master.pid")


def start_postfix(directory: Path, port: int) -> Postfix:
    """Postfix as Debian's "Internet Site" configures it (mail for localhost to the spool), but private."""
    config_dir, queue_dir, mail_spool = directory / "config", directory / "queue", directory / "mail"
    config_dir.mkdir(parents=True)
    queue_dir.mkdir(mode=0o755)
    mail_spool.mkdir()
    # Debian's /var/mail: root:mail, group-writable, setgid.
    os.chown(mail_spool, 0, grp.getgrnam("mail").gr_gid)
    mail_spool.chmod(0o2775)
    settings = {
        **private_settings(directory, queue_dir, directory / "data", "mx.walkthrough.test"),
        "mydestination": "localhost",
        "mail_spool_directory": mail_spool,
        "alias_maps": "",  # root is not aliased: its mail goes to the spool's "root"
        "alias_database": "",
    }
    start_private(config_dir, settings, f"{port} inet n - n - - smtpd\n" + POSTFIX_SERVICES
                  + "local unix - n n - - local\n")
    maillog = settings["maillog_file"]
    return Postfix(config_dir, queue_dir, mail_spool, maillog)


def pid_from_file(path: Path) -> int | None:
    return int(path.read_text().split()[0]) if path.exists() else None


def stop(pids: list[int]) -> None:
    """SIGTERM to each process (by PID); SIGKILL to any still running after STOP_TIMEOUT."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


# Local delivery writes "From <sender> <date>", the message (LF line ends, ">From " quoted), a blank line.
MBOX_MESSAGE = re.compile(rb"^From [^\n]*\n(.*?\n)\n(?=From |\Z)", re.S | re.M)


def mbox_messages(mailbox: bytes) -> list[bytes]:
    """The messages of an mbox file as local(8) writes them, without the separator lines."""
    return MBOX_MESSAGE.findall(mailbox)
