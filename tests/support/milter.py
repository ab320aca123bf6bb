"""The real daemon on a temp unix socket and the MTA side of a milter connection (``miltertest``): what the
milter-level tests (test_milter, test_agreement, test_flood, test_files_at_rest) share. Their fixtures are in
support/milter_fixtures.py, a plugin that tests/conftest.py registers.
"""

from __future__ import annotations

import functools
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import miltertest
from miltertest import codec

from ciphermilter import mime
from ciphermilter.config import load
from ciphermilter.core import pipeline as core
from ciphermilter.daemon import stats
from conftest import ROOT

SENDER = "<alice@sender-pub.example>"
INTERNAL = "<bob@corp-pub.example>"
EXTERNAL = "<zed@elsewhere-pub.example>"
READER = "<erin@corp-pub.example>"  # the store holds erin's key: of bob's class
NO_KEY = "<carol@corp-pub.example>"  # internal, but reads no key in the store
QUEUE_ID = "4TESTQ1D"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
CONFIG = """\
socket = "unix:{socket}"
store = "{store}"
stats_file = "{stats}"
stats_interval = 0.1
log_level = "debug"
harvest_certificates = {harvest}  # false but where a test harvests: the offline comparison must see the
harvest_pgp_keys = {harvest}  # same store the daemon saw
{extra}
"""

def encode_str(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape") + b"\0"


def decode_str(data: bytes) -> tuple[str, bytes]:
    if b"\0" not in data:
        raise codec.MilterNotEnough("short string")
    value, rest = data.split(b"\0", 1)
    return value.decode("utf-8", "surrogateescape"), rest


# --- the daemon -------------------------------------------------------------------------------------

@dataclass
class Daemon:
    socket: Path
    config: Path
    process: subprocess.Popen
    log: Path
    stats_file: Path

    def settings(self):
        return load(str(self.config)).settings


def is_listening(path: Path) -> bool:
    """Whether a unix socket accepts connections (a bare connect: the milter sees it close at once)."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def start_daemon(directory: Path, store: Path, extra: str = "", max_file_size: int | None = None,
                 harvest: bool = False) -> Daemon:
    """The daemon as ``ciphermilter run`` starts it; ``max_file_size`` caps what it may write (RLIMIT_FSIZE);
    ``harvest`` lets it keep signers' certificates and keys (off: the store stays as the test made it)."""
    directory.mkdir(parents=True, exist_ok=True)
    sock = directory / "milter.sock"
    config = directory / "ciphermilter.toml"
    stats_file = directory / "ciphermilter.stats.json"
    config.write_text(CONFIG.format(socket=sock, store=store, stats=stats_file, extra=extra,
                                   harvest=str(harvest).lower()))
    log = directory / "daemon.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "ciphermilter", "run", "--config", str(config)],
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=directory, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                   preexec_fn=max_file_size and functools.partial(
                                       resource.setrlimit, resource.RLIMIT_FSIZE, (max_file_size, max_file_size)))
    deadline = time.monotonic() + START_TIMEOUT
    while not is_listening(sock):  # the file appears at bind(), a moment before listen(): connect to know
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"daemon did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return Daemon(sock, config, process, log, stats_file)


def stop_daemons(daemons: list[Daemon]) -> None:
    """SIGTERM to all first: libmilter takes seconds to wind down, in parallel that is paid once."""
    for daemon in daemons:
        daemon.process.send_signal(signal.SIGTERM)
    for daemon in daemons:
        try:
            daemon.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            daemon.process.kill()
            daemon.process.wait()


# --- the MTA side ----------------------------------------------------------------------------------

class Mta:
    """One milter connection, seen from the MTA; honours the negotiated no-reply and skip bits."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(120)
        self.sock.connect(str(path))
        self.conn = miltertest.MilterConnection(self.sock)
        self.actions, self.protocol = self.conn.optneg_mta()

    def close(self):
        self.sock.close()

    def _step(self, no_reply_bit: int, command: str, **args):
        """Send a command; its reply, or None when the milter negotiated not to send one."""
        if self.protocol & no_reply_bit:
            self.conn._send(command, **args)
            return None
        return self.conn.send_get(command, **args)

    def envelope(self, sender: str, recipients: list[str]):
        replies = [self._step(miltertest.SMFIP_NR_MAIL, miltertest.SMFIC_MAIL, args=[sender])]
        replies += [self._step(miltertest.SMFIP_NR_RCPT, miltertest.SMFIC_RCPT, args=[r]) for r in recipients]
        return replies

    def headers(self, header_block: bytes):
        """Each field as name and value, the value with its leading space when HDR_LEADSPC was negotiated."""
        replies = []
        for header in mime.split_headers(header_block + b"\r\n")[0]:
            name, _, value = header.raw.partition(b":")
            if not self.protocol & miltertest.SMFIP_HDR_LEADSPC:
                value = value.lstrip(b" \t")
            value = value.replace(b"\r\n", b"\n").decode("utf-8", "surrogateescape")
            replies.append(self._step(miltertest.SMFIP_NR_HDR, miltertest.SMFIC_HEADER,
                                      name=name.decode("ascii"), value=value))
        return replies

    def eoh(self):
        return self.conn.send_get(miltertest.SMFIC_EOH)

    def body(self, body: bytes) -> list:
        """Body chunks until the milter answers SKIP (or something else than CONTINUE)."""
        replies = []
        for start in range(0, len(body), miltertest.MILTER_CHUNK_SIZE):
            reply = self.conn.send_get(miltertest.SMFIC_BODY, buf=body[start:start + miltertest.MILTER_CHUNK_SIZE])
            replies.append(reply)
            if reply[0] != miltertest.SMFIR_CONTINUE:
                break
        return replies

    def eom(self):
        self.conn.send_macro(miltertest.SMFIC_BODYEOB, i=QUEUE_ID)
        return self.conn.send_eom()

    def message(self, message: bytes, recipients: list[str], sender: str = SENDER):
        """A whole transaction: the replies to end of headers, to the body chunks and to end of message."""
        head, _, body = message.partition(b"\r\n\r\n")
        self.envelope(sender, recipients)
        self.headers(head)
        eoh = self.eoh()
        if eoh[0] != miltertest.SMFIR_CONTINUE:
            return eoh, [], []
        body_replies = self.body(body)
        return eoh, body_replies, self.eom()


def reply_code(code: str, xcode: str, text: str) -> tuple:
    return miltertest.SMFIR_REPLYCODE, {"smtpcode": code, "space": " ", "text": f"{xcode} {text}"}


def limit_reject(reason: str) -> list:
    """on_limit = "reject" (the default): the message is refused, no edit is sent."""
    return [reply_code("554", "5.7.0", f"Encrypted content could not be inspected: {reason}")]


def expected_eom(outcome: core.Outcome) -> list:
    """The end-of-message replies the plan must give, in order, values with their leading space back."""
    if outcome.held_at_limit:
        return limit_reject(outcome.held_at_limit)
    plan = outcome.plan
    replies = [(miltertest.SMFIR_CHGHEADER, {"index": d.index, "name": d.name, "value": ""})
               for d in plan.replay_deletions()]
    replies += [(miltertest.SMFIR_CHGHEADER, {"index": c.index, "name": c.name, "value": " " + c.value})
                for c in plan.changes]
    replies += [(miltertest.SMFIR_ADDHEADER, {"name": a.name, "value": " " + a.value}) for a in plan.additions]
    if plan.body is not None:
        replies += [(miltertest.SMFIR_REPLBODY, {"buf": plan.body[start:start + 65535]})
                    for start in range(0, len(plan.body), 65535)]
    return replies + [(miltertest.SMFIR_CONTINUE, {})]


def one_message(daemon: Daemon, message: bytes):
    """The daemon's replies (end of headers, body chunks, end of message) to ``message`` for an internal recipient,
    on a connection of its own."""
    client = Mta(daemon.socket)
    try:
        return client.message(message, [INTERNAL])
    finally:
        client.close()


def snapshot_counting(daemon: Daemon, messages: int) -> dict:
    """The daemon's stats file once it counts ``messages`` (the exporter writes every 0.1 s here)."""
    deadline = time.monotonic() + 30
    while (snapshot := stats.read_stats_file(str(daemon.stats_file)))["counters"]["messages"] < messages:
        assert time.monotonic() < deadline, f"the stats file never counted {messages} messages"
        time.sleep(0.05)
    return snapshot
