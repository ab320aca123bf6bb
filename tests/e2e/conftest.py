"""A private mail chain on loopback: Postfix -> ciphermilter -> clamav-milter (+clamd) -> rspamd -> SMTP sink.

Everything runs from one temporary directory, listens on 127.0.0.1 or unix
sockets, and is stopped by PID at the end of the session. Binaries are the
Debian packages' (``postfix``, ``clamav-daemon``, ``clamav-milter``,
``rspamd``); :data:`BINARIES` names the paths the fixtures use.

The tests run as root (Postfix's master must), so the services drop to their
own users: Postfix to ``postfix``, rspamd to ``_rspamd``, clamd and
clamav-milter to ``clamav``, and ciphermilter to ``nobody`` with the group
``postfix`` (so that Postfix can reach its socket through the group, as in
the documented setup).
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import corpus_store_file
from e2e.sink import Sink
from support.messages import EICAR
from support.installation import readable_python
from support.milter import is_listening
from bench.postfix_instance import (POSTFIX_SERVICES, accepts, free_port, private_settings, queued_files, start_private,
                              stop_master, stop_process, wait_until)

BINARIES = {
    "postfix": "/usr/sbin/postfix",
    "clamd": "/usr/sbin/clamd",
    "clamav-milter": "/usr/sbin/clamav-milter",
    "rspamd": "/usr/bin/rspamd",
}
RSPAMD_CONFIG = "/etc/rspamd/rspamd.conf"
# The string our private ClamAV signature matches: a stand-in for a virus, written only in tests.
VIRUS_MARKER = b"CIPHERMILTER-E2E-TEST-VIRUS-4f1d2c9a-SIGNATURE"
# The name our private ClamAV database gives the EICAR test file (support.messages.EICAR).
EICAR_NAME = "CipherMilter.E2E.EICAR"
# rspamd's built-in test pattern (GTUBE): any message carrying it gets the reject action.
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
# rspamd keeps its compiled regexp cache here between runs: the first start takes ~7 s, later ones <0.5 s.
RSPAMD_CACHE = Path(tempfile.gettempdir()) / "ciphermilter-e2e-rspamd-cache"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def chown(path: Path, user: str, group: str | None = None) -> None:
    os.chown(path, pwd.getpwnam(user).pw_uid, grp.getgrnam(group or user).gr_gid)


@dataclass
class Service:
    """A process we started; stopped by its PID, never by name."""

    name: str
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        stop_process(self.process, STOP_TIMEOUT)


def start(name: str, argv: list[str], workdir: Path, env: dict | None = None) -> Service:
    log = workdir / f"{name}.out"
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=workdir, env=env)
    return Service(name, process, log)


@pytest.fixture(scope="session")
def e2e_dir():
    """World-traversable (0755) so that the services' users reach their sockets; removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="ciphermilter-e2e-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def sink():
    server = Sink()
    yield server
    server.stop()


# --- ciphermilter ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def key_store_file(e2e_dir):
    """A store on disk with every corpus key, the trust anchors and the internal domains.

    Owned by the user the daemon drops to (0600 files), as the documented setup has it.
    """
    directory = e2e_dir / "store"
    directory.mkdir(mode=0o700)
    path = corpus_store_file(directory)
    for item in [directory, *directory.iterdir()]:
        chown(item, "nobody", "postfix")
    return path


@pytest.fixture(scope="session")
def queue_dir(e2e_dir):
    """Postfix's queue directory, made first: ciphermilter's socket lives in it, as documented."""
    path = e2e_dir / "postfix-queue"
    path.mkdir(mode=0o755)
    return path


def ciphermilter_config(path: Path, socket_path: Path, store: Path, pid_file: Path, extra: str = "") -> Path:
    """The documented daemon setup (user nobody, group postfix, umask 0007), plus ``extra`` TOML lines."""
    path.write_text(
        f'socket = "unix:{socket_path}"\n'
        f'store = "{store}"\n'
        'user = "nobody"\n'
        'group = "postfix"\n'
        'umask = "0007"\n'
        f'pid_file = "{pid_file}"\n'
        'log_level = "debug"\n' + extra
    )
    return path


def start_ciphermilter(name: str, config: Path, socket_path: Path, workdir: Path, env: dict | None = None) -> Service:
    """``ciphermilter run`` (this checkout, from a copy its user can read wherever the clone is), returned once
    its socket exists; it creates the socket's directory."""
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    service = start(name, [str(readable_python()), "-m", "ciphermilter", "run", "--config", str(config)],
                    workdir, env={**environment, **(env or {})})
    wait_until(lambda: is_listening(socket_path) or service.process.poll() is not None, START_TIMEOUT,
               name, service.log)
    if service.process.poll() is not None:
        raise RuntimeError(f"{name} exited:\n{service.log.read_text()}")
    return service


@pytest.fixture(scope="session")
def ciphermilter_socket(queue_dir, e2e_dir, key_store_file):
    """The daemon creates its socket directory (0750 nobody:postfix) inside the queue directory."""
    socket_path = queue_dir / "ciphermilter" / "ciphermilter.sock"
    config = ciphermilter_config(e2e_dir / "ciphermilter.toml", socket_path, key_store_file,
                                 e2e_dir / "run" / "ciphermilter.pid")
    service = start_ciphermilter("ciphermilter", config, socket_path, e2e_dir)
    yield socket_path
    service.stop()


# --- ClamAV -----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def clamd_socket(e2e_dir):
    """clamd with a private database (no download, no freshclam): our marker, and EICAR as real databases have it."""
    work = e2e_dir / "clamav"
    (work / "db").mkdir(parents=True)
    (work / "tmp").mkdir()
    # .ndb: Name:TargetType:Offset:HexSignature; target 0 = any file, offset * = anywhere.
    (work / "db" / "ciphermilter-e2e.ndb").write_text(f"CipherMilter.E2E.TestVirus:0:*:{VIRUS_MARKER.hex()}\n")
    # .hdb: MD5:Size:Name of a whole file, the form of ClamAV's own EICAR signature (Win.Test.EICAR_HDB-1).
    # The README walkthrough attaches the EICAR file and relies on the admin's clamd to know it.
    (work / "db" / "ciphermilter-e2e.hdb").write_text(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:{EICAR_NAME}\n")
    clamd_socket = work / "clamd.sock"
    (work / "clamd.conf").write_text(
        f"LocalSocket {clamd_socket}\nLocalSocketMode 660\nDatabaseDirectory {work / 'db'}\n"
        f"TemporaryDirectory {work / 'tmp'}\nLogFile {work / 'clamd.log'}\nForeground yes\nUser clamav\n"
    )
    for path in [work, *work.rglob("*")]:
        chown(path, "clamav")
    clamd = start("clamd", [BINARIES["clamd"], "--config-file", str(work / "clamd.conf")], work)
    wait_until(lambda: is_listening(clamd_socket), START_TIMEOUT, "clamd", clamd.log)
    yield clamd_socket
    clamd.stop()


@pytest.fixture(scope="session")
def clamav_milter_socket(clamd_socket):
    """clamav-milter in front of the private clamd."""
    work = clamd_socket.parent
    milter_socket = work / "clamav-milter.sock"
    config = work / "clamav-milter.conf"
    config.write_text(
        f"MilterSocket unix:{milter_socket}\nMilterSocketMode 666\nClamdSocket unix:{clamd_socket}\n"
        f"LogFile {work / 'clamav-milter.log'}\nForeground yes\nUser clamav\n"
        "OnInfected Reject\nOnFail Defer\nAddHeader No\nRejectMsg Virus found: %v\n"
    )
    chown(config, "clamav")
    clamav_milter = start("clamav-milter", [BINARIES["clamav-milter"], "--config-file", str(config)], work)
    wait_until(lambda: is_listening(milter_socket), START_TIMEOUT, "clamav-milter", clamav_milter.log)
    yield milter_socket
    clamav_milter.stop()


# --- rspamd -----------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def rspamd_socket(e2e_dir):
    """rspamd as a milter (proxy worker scanning itself), DNS pointed at a dead loopback port."""
    work = e2e_dir / "rspamd"
    local = work / "local.d"
    local.mkdir(parents=True)
    RSPAMD_CACHE.mkdir(mode=0o700, exist_ok=True)
    milter_socket = work / "rspamd-milter.sock"
    (local / "worker-proxy.inc").write_text(
        f'bind_socket = "{milter_socket} mode=0666";\nmilter = yes;\ntimeout = 120s;\n'
        "upstream \"local\" {\n  default = yes;\n  self_scan = yes;\n}\n"
    )
    (local / "worker-normal.inc").write_text("enabled = false;\n")
    (local / "worker-controller.inc").write_text(f'bind_socket = "{work / "controller.sock"} mode=0600";\n')
    (local / "worker-fuzzy.inc").write_text("enabled = false;\n")
    (local / "options.inc").write_text(
        'dns {\n  nameserver = ["127.0.0.1:9"];\n  timeout = 0.1s;\n  retransmits = 1;\n}\n'
        f'hs_cache_dir = "{RSPAMD_CACHE}";\n'
    )
    (local / "logging.inc").write_text(f'type = "file";\nfilename = "{work / "rspamd.log"}";\nlevel = "info";\n')
    # Only GTUBE may reject: a loopback test message scores high (no DNS, no DKIM), which must not add
    # headers or greylist, so that the other cases can compare delivered messages byte for byte.
    (local / "actions.conf").write_text("reject = 10000;\nadd_header = null;\nrewrite_subject = null;\n"
                                        "greylist = null;\n")
    for path in [work, *work.rglob("*"), RSPAMD_CACHE]:
        chown(path, "_rspamd")
    argv = [BINARIES["rspamd"], "-f", "-u", "_rspamd", "-g", "_rspamd", "-c", RSPAMD_CONFIG,
            "--var", f"LOCAL_CONFDIR={work}", "--var", f"DBDIR={work}", "--var", f"RUNDIR={work}",
            "--var", f"LOGDIR={work}"]
    service = start("rspamd", argv, work)
    wait_until(lambda: is_listening(milter_socket), START_TIMEOUT, "rspamd", work / "rspamd.log")
    yield milter_socket
    service.stop()


# --- Postfix ------------------------------------------------------------------------------------------

@dataclass
class Postfix:
    config_dir: Path
    queue_dir: Path
    port: int  # the chain with every milter
    dead_milter_port: int  # the same chain, but ciphermilter's socket has no daemon behind it
    fault_port: int  # ciphermilter alone, at FAULT_SOCKET: the fault tests start, kill and restart that daemon
    # The same daemon, but Postfix waits at most VERDICT_TIMEOUT for its verdict and then tempfails: a test of
    # when the verdict comes asserts what an MTA does with a late one, not a number of seconds of its own.
    deadline_port: int
    maillog: Path

    def queued(self) -> list[str]:
        return queued_files(self.queue_dir)


# Relative to Postfix's queue directory, like the session daemon's socket.
FAULT_SOCKET = "ciphermilter-faults/ciphermilter.sock"


def milter_entry(spec: str, *settings: str) -> str:
    """One smtpd_milters entry with its own failure policy and ``settings`` (Postfix 3.x syntax: no spaces
    around "=", which Postfix 3.7 refuses there)."""
    return f"{{ {', '.join((spec, 'default_action=tempfail', *settings))} }}"


MASTER_CF = """\
{port} inet n - n - - smtpd
{dead_port} inet n - n - - smtpd
  -o {{smtpd_milters={dead_milters}}}
{fault_port} inet n - n - - smtpd
  -o {{smtpd_milters={fault_milter}}}
{deadline_port} inet n - n - - smtpd
  -o {{smtpd_milters={deadline_milter}}}
""" + POSTFIX_SERVICES
# Seconds Postfix waits for the verdict at deadline_port (content_timeout): ciphermilter.conf(5) promises it at
# most deadline_seconds + 1 s after the final dot (+0.5 s for a worker still starting), so with deadline_seconds
# = 1 a verdict later than 2.5 s past the promise is a tempfail; the busy-workers case took 5.1 s before its fix.
VERDICT_TIMEOUT = 4


@pytest.fixture(scope="session")
def postfix(e2e_dir, queue_dir, sink, ciphermilter_socket, clamav_milter_socket, rspamd_socket):
    config_dir = e2e_dir / "postfix"
    data_dir = e2e_dir / "postfix-data"
    config_dir.mkdir()
    port, dead_port, fault_port, deadline_port = free_port(), free_port(), free_port(), free_port()
    # ciphermilter's socket relative to the queue directory, as in postfix/main.cf.snippet: the same
    # path works for a chrooted and a plain smtpd/cleanup.
    ciphermilter = f"unix:{ciphermilter_socket.relative_to(queue_dir)}"
    milters = [ciphermilter, f"unix:{clamav_milter_socket}", f"unix:{rspamd_socket}"]
    dead = ["unix:not-running/ciphermilter.sock", *milters[1:]]
    settings = {
        **private_settings(e2e_dir, queue_dir, data_dir, "mx.e2e.test"),
        "mydestination": "",
        "relayhost": f"[127.0.0.1]:{sink.port}",
        "local_header_rewrite_clients": "",  # deliver headers as sent: no rewriting for any client
        "disable_mime_output_conversion": "yes",
        "smtputf8_enable": "yes",
        "milter_protocol": "6",
        "milter_default_action": "tempfail",
        "smtpd_milters": ", ".join(milter_entry(p) for p in milters),
        "non_smtpd_milters": "",
        "message_size_limit": str(100 * 1024 * 1024),
    }
    start_private(config_dir, settings, MASTER_CF.format(
        port=port, dead_port=dead_port, dead_milters=", ".join(milter_entry(p) for p in dead),
        fault_port=fault_port, fault_milter=milter_entry(f"unix:{FAULT_SOCKET}"), deadline_port=deadline_port,
        deadline_milter=milter_entry(f"unix:{FAULT_SOCKET}", f"content_timeout={VERDICT_TIMEOUT}s")))
    maillog = settings["maillog_file"]
    instance = Postfix(config_dir, queue_dir, port, dead_port, fault_port, deadline_port, maillog)
    for listening_port in (port, dead_port, fault_port, deadline_port):
        wait_until(lambda: accepts(listening_port), START_TIMEOUT, "postfix smtpd", maillog)
    yield instance
    stop_master(queue_dir, STOP_TIMEOUT)


# The fault and soak tests' daemon fixtures; imported last because e2e.faulty builds on this module.
from e2e.faulty import milter_under_test, template_store  # noqa: E402,F401
