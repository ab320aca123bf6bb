"""A private Postfix on loopback relaying to Postfix's own ``smtp-sink``, loaded by ``smtp-source``.

Two smtpd listeners share one instance: one without milters, one with
ciphermilter in ``smtpd_milters``, so that both throughputs come from the
same queue, the same cleanup and the same delivery agents. Everything lives
in one work directory and is stopped by PID. ``smtp-source -F`` sends a
file's header and body as they are (it adds CRLF to each line and stuffs
leading dots), so the benchmark's real encrypted messages go through it
unchanged; no SMTP client of our own is needed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

POSTFIX = "/usr/sbin/postfix"
SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
DAEMON_DIRECTORY = "/usr/lib/postfix/sbin"
START_TIMEOUT = 60.0
DRAIN_TIMEOUT = 300.0
QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")

# The services every private Postfix instance here needs (chroot "n" throughout); the tests
# (tests/e2e/conftest.py) use the same list with their own smtpd lines in front.
POSTFIX_SERVICES = """\
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""

MASTER_CF = """\
{plain_port} inet n - n - - smtpd
{milter_port} inet n - n - - smtpd
  -o {{smtpd_milters={milter}}}
""" + POSTFIX_SERVICES


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def accepts(port: int) -> bool:
    """Something accepts TCP connections on 127.0.0.1:port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def stop_process(process: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM to the process we started (by its PID), SIGKILL if it has not exited within ``timeout``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def queued_files(queue_dir: Path) -> list[str]:
    """Files in the queue (maildrop, incoming, active, deferred, hold): empty when nothing is pending."""
    return [str(p.relative_to(queue_dir)) for name in QUEUES for p in (queue_dir / name).rglob("*") if p.is_file()]


def stop_master(queue_dir: Path, timeout: float) -> None:
    """What "postfix stop" does, by the PID in master.pid: SIGTERM, then wait until the master is gone."""
    pid_file = queue_dir / "pid" / "master.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout, "postfix to stop")


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, read from /proc (libmilter threads start children, so per thread)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                pending.extend(int(child) for child in children.read_text().split())
            except OSError:  # the thread or the process ended meanwhile
                pass
    return found


def wait_until(condition, timeout: float, what: str, log: Path | None = None) -> None:
    """Poll ``condition`` until it is true; RuntimeError naming ``what`` (and the log's tail) otherwise."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"waited {timeout} s in vain for: {what}\n{tail}")
        time.sleep(0.05)


@dataclass
class Postfix:
    directory: Path
    plain_port: int  # no milter
    milter_port: int  # ciphermilter in smtpd_milters
    sink: subprocess.Popen

    @property
    def queue_dir(self) -> Path:
        return self.directory / "queue"

    def queued(self) -> int:
        return len(queued_files(self.queue_dir))

    def drain(self) -> None:
        """Wait until every message was relayed: a backlog would slow down the next measurement."""
        wait_until(lambda: self.queued() == 0, DRAIN_TIMEOUT, "the Postfix queue to drain")

    def send(self, port: int, message_file: Path, sender: str, recipient: str, sessions: int, count: int) -> dict:
        """``count`` messages over ``sessions`` parallel SMTP sessions (each reused, -d); the rate.

        The queue drains after the timed part, inside the call: whoever
        measures the CPU time around it counts the relaying of these
        messages, and no other run's.
        """
        argv = [SMTP_SOURCE, "-d", "-s", str(sessions), "-m", str(count), "-f", sender, "-t", recipient,
                "-M", "bench.test", "-F", str(message_file), f"127.0.0.1:{port}"]
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, timeout=DRAIN_TIMEOUT)
        wall = time.perf_counter() - started
        self.drain()
        return {"sessions": sessions, "messages": count, "msgs_per_s": round(count / wall, 1)}

    def stop(self) -> None:
        stop_master(self.queue_dir, START_TIMEOUT)
        stop_process(self.sink)


def private_settings(directory: Path, queue_dir: Path, data_dir: Path, hostname: str) -> dict:
    """main.cf settings every private Postfix here shares: its own directories and log, loopback only, no DNS.

    The log comes first: without it, errors of "postfix check" go to syslog
    and are lost to whoever started the instance.
    """
    return {
        "maillog_file": directory / "postfix.log",
        "maillog_file_prefixes": directory,
        "compatibility_level": "3.6",
        "queue_directory": queue_dir,
        "data_directory": data_dir,
        "daemon_directory": DAEMON_DIRECTORY,
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "myhostname": hostname,
        "mynetworks": "127.0.0.0/8",
        "smtpd_relay_restrictions": "permit_mynetworks, reject",
        "smtp_dns_support_level": "disabled",
        "biff": "no",
    }


def start_private(config_dir: Path, settings: dict, master_cf: str) -> None:
    """Write main.cf and master.cf to ``config_dir`` and start Postfix; RuntimeError with its log if it fails."""
    (config_dir / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    (config_dir / "master.cf").write_text(master_cf)
    started = subprocess.run([POSTFIX, "-c", str(config_dir), "start"], capture_output=True, text=True)
    if started.returncode:
        log = settings["maillog_file"]
        raise RuntimeError(f"postfix start failed: {started.stdout}{started.stderr}"
                           f"{log.read_text(errors='replace') if log.exists() else ''}")


def start(work: Path, milter_socket: str) -> Postfix:
    """Postfix with both listeners, relaying everything to a fresh smtp-sink."""
    directory = work / "postfix"
    (directory / "config").mkdir(parents=True)
    (directory / "queue").mkdir()
    for path in (directory, directory / "queue"):
        path.chmod(0o755)
    sink_port, plain_port, milter_port = free_port(), free_port(), free_port()
    sink = subprocess.Popen([SMTP_SINK, "-u", "postfix", f"127.0.0.1:{sink_port}", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    settings = {
        **private_settings(directory, directory / "queue", directory / "data", "mx.bench.test"),
        "mydestination": "",
        "relayhost": f"[127.0.0.1]:{sink_port}",
        "disable_mime_output_conversion": "yes",
        "milter_protocol": "6",
        "milter_default_action": "tempfail",
        "non_smtpd_milters": "",
        "message_size_limit": str(200 * 1024 * 1024),
        "default_process_limit": "200",
    }
    instance = Postfix(directory, plain_port, milter_port, sink)
    try:
        start_private(directory / "config", settings,
                      MASTER_CF.format(plain_port=plain_port, milter_port=milter_port, milter=milter_socket))
    except RuntimeError:
        instance.stop()
        raise
    for port in (plain_port, milter_port, sink_port):
        wait_until(lambda: accepts(port), START_TIMEOUT, f"a listener on port {port}")
    return instance
