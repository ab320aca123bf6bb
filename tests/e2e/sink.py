"""A loopback SMTP sink: accepts every message and keeps it, byte for byte, for the tests to inspect.

Postfix relays to it as it would to the next hop. It advertises 8BITMIME (and
SMTPUTF8) so that Postfix hands on 8-bit bodies as they are instead of
converting them to quoted-printable, which would hide whether the milter
changed a byte.
"""

from __future__ import annotations

import socketserver
import threading
from dataclasses import dataclass, field

MAX_LINE = 1_000_000


@dataclass
class Delivery:
    mail_from: str
    recipients: list[str]
    data: bytes  # the message as received, CRLF line ends, dot-stuffing removed

    def split(self) -> tuple[bytes, bytes]:
        """(header block without the blank line, body)."""
        head, _, body = self.data.partition(b"\r\n\r\n")
        return head, body


@dataclass
class Mailbox:
    deliveries: list[Delivery] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def add(self, delivery: Delivery) -> None:
        with self.arrived:
            self.deliveries.append(delivery)
            self.arrived.notify_all()

    def wait_for(self, predicate, timeout: float) -> Delivery | None:
        """The first delivery ``predicate`` accepts, waiting up to ``timeout`` seconds for it."""
        def first_match():
            return next((d for d in self.deliveries if predicate(d)), None)

        with self.arrived:
            return self.arrived.wait_for(first_match, timeout)


class _Session(socketserver.StreamRequestHandler):
    def reply(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")

    def handle(self) -> None:
        self.reply("220 sink.test ESMTP test sink")
        mail_from, recipients = "", []
        while True:
            line = self.rfile.readline(MAX_LINE)
            if not line:
                return
            command = line.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            verb = command[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.wfile.write(b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
            elif verb == "MAIL":
                mail_from, recipients = command.partition(":")[2].split(" ")[0], []
                self.reply("250 2.1.0 ok")
            elif verb == "RCPT":
                recipients.append(command.partition(":")[2].split(" ")[0])
                self.reply("250 2.1.5 ok")
            elif verb == "DATA":
                self.reply("354 go ahead")
                self.server.mailbox.add(Delivery(mail_from, recipients, self._read_data()))
                self.reply("250 2.0.0 queued")
            elif verb == "QUIT":
                self.reply("221 2.0.0 bye")
                return
            else:  # RSET, NOOP and anything else
                self.reply("250 2.0.0 ok")

    def _read_data(self) -> bytes:
        lines = []
        while True:
            line = self.rfile.readline(MAX_LINE)
            if line in (b".\r\n", b""):
                return b"".join(lines)
            lines.append(line[1:] if line.startswith(b".") else line)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class Sink:
    """Listen on 127.0.0.1 (a free port) in background threads until :meth:`stop`."""

    def __init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), _Session)
        self.server.mailbox = Mailbox()
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="smtp-sink", daemon=True)
        self.thread.start()

    @property
    def mailbox(self) -> Mailbox:
        return self.server.mailbox

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
