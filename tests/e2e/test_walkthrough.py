"""The README walkthrough, run as written: an encrypted EICAR rejected in the SMTP session, clean mail decrypted.

Issue #8: a person following only the README on a fresh Debian 12 machine
puts ciphermilter in front of clamav-milter and sees an encrypted test virus
rejected; this test runs exactly those documented steps (the README's marked
blocks, extracted from README.rst at run time).

The test does only what the admin's box already has, outside the README text:
it makes private directories and sets the walkthrough's location variables to
them (never /etc, /var or /run), runs a private Postfix configured as Debian's
"Internet Site" (loopback, chroot n), and provides clamd. The walkthrough uses
the admin's running clamd with freshclam's signatures; no signature download
is possible here, so ``CLAMD_SOCKET`` points at the session's private clamd
(tests/e2e/conftest.py), whose database knows the EICAR file as ClamAV's own
does (a whole-file MD5 signature). The milter's user is ``nobody`` with the
group ``postfix``, as in the other end-to-end tests, so that the walkthrough's
``adduser`` lines find their work done and change nothing. Everything the
walkthrough starts is stopped by the PIDs in its pid files.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT
from e2e.conftest import EICAR_NAME
from e2e.walkthrough import (WalkthroughError, mbox_messages, pid_from_file, start_postfix, stop,
                             walkthrough_script)
from bench.postfix_instance import alive, descendants, free_port
from support.installation import readable_python
from support.messages import EICAR

SCRIPT_TIMEOUT = 120
# Debian's PATH for root (/etc/profile).
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHELL = "/bin/sh"  # Debian's dash: the walkthrough is plain POSIX sh, as an admin's bash runs it too


def test_the_script_is_the_readme_walkthrough_from_its_locations_to_the_delivered_mail():
    script = walkthrough_script((ROOT / "README.rst").read_text())

    assert script.startswith(': "${MAIL_CONFIG:=/etc/postfix}"'), script[:200]
    assert script.rstrip().endswith('tail -n 20 "$MAILBOX"'), script[-200:]
    assert EICAR.decode() in script  # what the private clamd's EICAR signature matches
    assert subprocess.run([SHELL, "-n"], input=script, text=True).returncode == 0


def test_a_marker_without_its_code_block_is_refused():
    readme = (ROOT / "README.rst").read_text().replace(".. walkthrough\n.. code-block:: sh", ".. walkthrough\n\n::", 1)

    with pytest.raises(WalkthroughError, match="markers"):
        walkthrough_script(readme)


def walkthrough_environment(directory: Path, clamd_socket: Path, smtp_port: int, postfix) -> dict[str, str]:
    """The walkthrough's location variables, pointed at private directories; the rest of the environment as is.

    Makes the directories a Debian box has before the walkthrough starts (/etc/clamav, /run).
    """
    variables = {
        "MAIL_CONFIG": postfix.config_dir,
        "SMTP_PORT": smtp_port,
        "CIPHERMILTER": readable_python().parent / "ciphermilter",  # its user reaches it from any clone
        "CM_ETC": directory / "etc" / "ciphermilter",
        "CM_LIB": directory / "lib" / "ciphermilter",
        "CM_RUN": directory / "run" / "ciphermilter",
        "CM_USER": "nobody",
        "CM_GROUP": "postfix",
        "CLAMD_SOCKET": clamd_socket,
        "CLAMAV_MILTER_CONF": directory / "etc" / "clamav" / "clamav-milter.conf",
        "CLAMAV_RUN": directory / "run" / "clamav",
        "WORK": directory / "work",
    }
    (directory / "etc" / "clamav").mkdir(parents=True)  # the clamav-daemon package's /etc/clamav
    (directory / "run").mkdir(mode=0o755)
    root_shell = {"PATH": ROOT_PATH}  # the walkthrough runs postconf, postfix and clamav-milter from a root shell
    return {**os.environ, **root_shell, **{name: str(value) for name, value in variables.items()}}


def run_walkthrough(directory: Path, env: dict[str, str]) -> tuple[int | None, str]:
    """Run the README's marked blocks with ``sh -eu``; the exit status (None on a timeout) and what it printed."""
    transcript = directory / "walkthrough.out"
    # A file, not a pipe: the milters started in the background keep it open after the shell exits.
    with open(transcript, "wb") as out:
        try:
            returncode = subprocess.run([SHELL, "-eu", "-c", walkthrough_script((ROOT / "README.rst").read_text())],
                                        cwd=directory, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, timeout=SCRIPT_TIMEOUT).returncode
        except subprocess.TimeoutExpired:
            returncode = None
    return returncode, transcript.read_text(errors="replace")


def started_processes(env: dict[str, str]) -> list[int]:
    """The milters the walkthrough started, by their pid files, with their children (ciphermilter's workers)."""
    pid_files = [Path(env["CM_RUN"]) / "ciphermilter.pid", Path(env["CLAMAV_RUN"]) / "clamav-milter.pid"]
    return [p for pid in filter(None, map(pid_from_file, pid_files)) for p in descendants(pid)]


def diagnosis(transcript: str, postfix, work: Path) -> str:
    """What a failed or hung walkthrough leaves to read: its output, the logs, and its processes' states.

    A hang shows only as the timeout; the wait channel of each process still
    running names the step (clamav-milter's forking start once sat in wait4).
    """
    logs = "".join(f"\n--- {log.name}\n{log.read_text(errors='replace')}" for log in sorted(work.glob("*.log")))
    processes = subprocess.run(["ps", "-e", "-o", "pid,ppid,stat,wchan:24,args"], capture_output=True, text=True).stdout
    ours = "\n".join(line for line in processes.splitlines() if "walkthrough" in line or "swaks" in line)
    return f"{transcript}\n--- postfix.log\n{postfix.maillog.read_text(errors='replace')}{logs}\n--- processes\n{ours}"


def test_the_readme_walkthrough_rejects_the_encrypted_virus_and_delivers_the_clean_message(e2e_dir, clamd_socket):
    directory = e2e_dir / "walkthrough"
    directory.mkdir(mode=0o755)
    port = free_port()
    postfix = start_postfix(directory / "postfix", port)
    env = walkthrough_environment(directory, clamd_socket, port, postfix)
    work = Path(env["WORK"])
    processes = []
    try:
        returncode, transcript = run_walkthrough(directory, env)
        processes = started_processes(env)
        assert returncode == 0, diagnosis(transcript, postfix, work)

        # The virus: clamav-milter's reject, in the SMTP session, after ciphermilter decrypted it.
        virus_session = (work / "virus.swaks").read_text()
        # clamd names a signature from a database of its own "<name>.UNOFFICIAL".
        assert f"<** 550 5.7.1 Virus found: {EICAR_NAME}.UNOFFICIAL" in virus_session.splitlines(), virus_session
        assert "queued as" not in virus_session
        assert EICAR not in (work / "virus.p7m.eml").read_bytes()  # ClamAV could not have seen it encrypted
        assert "milter-reject: END-OF-MESSAGE" in postfix.maillog.read_text()  # Postfix dropped its queue file

        # The clean message: accepted, then delivered decrypted with ciphermilter's headers.
        assert "queued as" in (work / "clean.swaks").read_text()
        [delivered] = mbox_messages((postfix.mail_spool / "root").read_bytes())
        head, _, body = delivered.partition(b"\n\n")
        plaintext_head, _, plaintext_body = (work / "clean.eml").read_bytes().partition(b"\n\n")
        assert body == plaintext_body
        assert plaintext_head + b"\n" in head + b"\n"
        assert b"\nSubject: ciphermilter walkthrough: clean\n" in head
        assert b"\nX-CipherMail-Info-SMIME-Encrypted: True\n" in head
        assert b"\nX-CipherMail-Info-Encryption-Algorithm-0: AES-256-CBC\n" in head
        assert b"pkcs7-mime" not in delivered
        assert postfix.queued() == []
    finally:
        processes = processes or started_processes(env)
        stop(processes)
        master = postfix.master_pid()
        postfix_processes = descendants(master) if master else []
        stop(postfix_processes)

    assert processes and not [pid for pid in processes + postfix_processes if alive(pid)]
