"""Sending through the e2e chain (Postfix -> ciphermilter -> clamav-milter -> rspamd -> sink) and reading what
reached the sink, shared by every e2e module that submits a message (``timed_submit`` also times the reply),
and the CLI run as the daemon's user on the session's store."""

from __future__ import annotations

import re
import shutil
import smtplib
import subprocess
import time

from support.installation import readable_python
from e2e.load import Reply, header_fields, send
from support.messages import SENDER

DELIVERY_TIMEOUT = 60.0
EXTERNAL_RECIPIENT = "zed@elsewhere-pub.example"
RESERVED = re.compile(rb"^(x-ciphermail-|x-djigzo-)", re.IGNORECASE)
OURS = re.compile(rb"^x-ciphermail-info-", re.IGNORECASE)
PREFIX = b"X-CipherMail-Info-"
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"


def submit(port: int, message: bytes, recipients: list[str], sender: str = SENDER) -> Reply:
    """One message, from the e2e sender unless told otherwise (see ``load.send`` for the reply)."""
    return send(port, message, recipients, sender)


def delivered(sink, reply: Reply):
    """What the sink received for the message Postfix accepted with ``reply`` (its Received: names the queue ID)."""
    assert reply.code == 250, reply
    marker = f"id {reply.queue_id}".encode()
    delivery = sink.mailbox.wait_for(lambda d: marker in d.split()[0], DELIVERY_TIMEOUT)
    assert delivery is not None, f"queue ID {reply.queue_id} never reached the sink"
    return delivery


def without_trace(fields: list[bytes]) -> list[bytes]:
    """Drop the Received: field Postfix prepends, which is not part of what we sent."""
    return [f for f in fields if not f.lower().startswith(b"received:")]


def assert_nothing_queued(postfix):
    assert postfix.queued() == []


def timed_submit(port: int, msg: bytes, recipients: list[str]) -> tuple[Reply, float]:
    """One transaction; the seconds from the final dot (the whole message sent) to the reply."""
    client = smtplib.SMTP("127.0.0.1", port, timeout=120)
    try:
        client.ehlo("attack.e2e.test")
        client.mail(SENDER)
        for rcpt in recipients:
            client.rcpt(rcpt)
        client.putcmd("data")
        code, text = client.getreply()
        assert code == 354, (code, text)
        data = smtplib.quotedata(msg.decode("latin-1")).encode("latin-1")
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        client.send(data + b".\r\n")
        started = time.monotonic()
        code, text = client.getreply()
        return Reply(code, text.decode("utf-8", "replace")), time.monotonic() - started
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


def unfolded(field: bytes) -> tuple[str, str]:
    name, _, value = field.decode("ascii").partition(":")
    return name, re.sub(r"\r\n(?=[ \t])", "", value).strip()  # RFC 5322 unfolding: the CRLF goes


def ours(head: bytes) -> list[bytes]:
    """Our header fields as delivered, unfolded."""
    return [b" ".join(f.split()) for f in header_fields(head) if f.startswith(PREFIX)]


def as_daemon_user(key_store_file, *args: str, data: bytes = b"") -> bytes:
    """``ciphermilter --store STORE ARGS`` as the daemon's user (nobody, group postfix)."""
    return subprocess.run([RUNUSER, "-u", "nobody", "-g", "postfix", "--", str(readable_python()), "-m",
                           "ciphermilter", "--store", str(key_store_file), *args], input=data, check=True,
                          capture_output=True, cwd="/", env={"PATH": "/usr/bin:/bin"}).stdout
