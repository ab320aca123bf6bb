"""The daemon drops root before it handles mail, and only Postfix's group may use its socket."""

import grp
import os
import pwd
import stat
from pathlib import Path

from support.messages import INTERNAL_RECIPIENT, SENDER
from support.chain import delivered, submit
from bench.postfix_instance import descendants


def _ids(pid: int) -> tuple[list[int], list[int]]:
    """Real, effective, saved and filesystem uid and gid of a process."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return [int(x) for x in fields["Uid"].split()], [int(x) for x in fields["Gid"].split()]


def test_daemon_and_its_workers_run_unprivileged_after_handling_mail(postfix, sink, e2e_dir):
    reply = submit(postfix.port, b"Subject: hello\r\n\r\nplain text\r\n", [INTERNAL_RECIPIENT], SENDER)
    delivered(sink, reply)
    pid = int((e2e_dir / "run" / "ciphermilter.pid").read_text())
    nobody, postfix_gid = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("postfix").gr_gid
    workers = descendants(pid)[1:]
    assert workers, "the message went through a worker process"
    for process in [pid, *workers]:
        uids, gids = _ids(process)
        assert uids == [nobody] * 4, process
        assert gids == [postfix_gid] * 4, process


def test_socket_is_for_the_milter_user_and_postfix_group_only(ciphermilter_socket):
    info = os.stat(ciphermilter_socket)
    assert stat.S_ISSOCK(info.st_mode)
    assert (pwd.getpwuid(info.st_uid).pw_name, grp.getgrgid(info.st_gid).gr_name) == ("nobody", "postfix")
    assert info.st_mode & 0o060 == 0o060  # Postfix (group) can connect
    assert info.st_mode & 0o007 == 0  # nobody else can
