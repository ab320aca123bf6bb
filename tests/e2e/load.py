"""A bounded concurrent SMTP client on loopback, and the bookkeeping that proves no message was lost.

Each message carries a unique ``Message-ID`` (its *marker*). The client
records the reply each attempt got; :func:`send_until_accepted` resends what
was tempfailed, as a sending MTA would; :class:`Tally` counts the markers the
sink received, so that a test can check every accepted message arrived
exactly once.
"""

from __future__ import annotations

import re
import smtplib
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

SMTP_TIMEOUT = 120.0
_QUEUED_AS = re.compile(r"queued as (\w+)")
NO_REPLY = 0  # the connection broke before the server answered: the outcome is unknown to the client
_FIELD = re.compile(rb"\r\n(?![ \t])")
_MESSAGE_ID = re.compile(rb"^message-id:\s*<([^>\s]+)>", re.IGNORECASE)


@dataclass(frozen=True)
class Reply:
    code: int  # NO_REPLY when the connection broke first
    text: str

    @property
    def accepted(self) -> bool:
        return self.code == 250

    @property
    def queue_id(self) -> str | None:
        """Postfix's queue ID when it accepted the message ("250 2.0.0 Ok: queued as ID")."""
        found = _QUEUED_AS.search(self.text)
        return found.group(1) if found else None

    @property
    def tempfailed(self) -> bool:
        return 400 <= self.code < 500 or self.code == NO_REPLY


@dataclass(frozen=True)
class Outgoing:
    marker: str
    message: bytes
    recipients: tuple[str, ...]
    kind: str = ""  # what the test mixed in (encrypted, plain, forged...), for its own checks


def header_fields(head: bytes) -> list[bytes]:
    """Header fields of a header block, each with its folding."""
    return [f for f in _FIELD.split(head) if f]


def tagged(template: bytes, marker: str) -> bytes:
    """``template`` with its Message-ID fields replaced by one that names ``marker``."""
    head, _, body = template.partition(b"\r\n\r\n")
    fields = [f for f in header_fields(head) if not f.lower().startswith(b"message-id:")]
    return b"\r\n".join([b"Message-ID: <" + marker.encode("ascii") + b">", *fields]) + b"\r\n\r\n" + body


def marker_of(data: bytes) -> str | None:
    head = data.partition(b"\r\n\r\n")[0]
    for line in header_fields(head):
        found = _MESSAGE_ID.match(line)
        if found:
            return found.group(1).decode("ascii", "replace")
    return None


def send(port: int, message: bytes, recipients, sender: str) -> Reply:
    """One SMTP transaction; the first reply that is not a success is returned, else DATA's reply."""
    try:
        client = smtplib.SMTP("127.0.0.1", port, timeout=SMTP_TIMEOUT)
    except (OSError, smtplib.SMTPException) as exc:
        return Reply(NO_REPLY, f"connect: {exc}")
    try:
        client.ehlo("load.e2e.test")
        code, text = client.mail(sender)
        for recipient in recipients:
            if code != 250:
                break
            code, text = client.rcpt(recipient)
        if code in (250, 251):
            code, text = client.data(message)
        return Reply(code, text.decode("utf-8", "replace"))
    except smtplib.SMTPResponseException as exc:  # smtplib raises for a refused DATA
        return Reply(exc.smtp_code, exc.smtp_error.decode("utf-8", "replace"))
    except (OSError, smtplib.SMTPException) as exc:
        return Reply(NO_REPLY, f"{type(exc).__name__}: {exc}")
    finally:
        try:  # the reply above is what counts: a failing QUIT changes nothing about the message
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


@dataclass
class Ledger:
    """Every reply each marker got, in order; thread-safe."""

    replies: dict[str, list[Reply]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, marker: str, reply: Reply) -> None:
        with self.lock:
            self.replies.setdefault(marker, []).append(reply)

    @property
    def count(self) -> int:
        with self.lock:
            return sum(len(r) for r in self.replies.values())

    def accepted(self) -> set[str]:
        with self.lock:
            return {m for m, replies in self.replies.items() if any(r.accepted for r in replies)}

    def all_replies(self) -> list[Reply]:
        with self.lock:
            return [r for replies in self.replies.values() for r in replies]


def send_all(port: int, batch: list[Outgoing], concurrency: int, sender: str, ledger: Ledger) -> None:
    """Send ``batch`` over at most ``concurrency`` connections at a time, one message per connection."""
    def one(item: Outgoing) -> None:
        ledger.record(item.marker, send(port, item.message, item.recipients, sender))

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="smtp-load") as pool:
        list(pool.map(one, batch))


def send_until_accepted(port: int, batch: list[Outgoing], concurrency: int, sender: str, ledger: Ledger,
                        rounds: int = 5, pause: float = 1.0) -> list[Outgoing]:
    """Resend the tempfailed messages of ``batch`` (up to ``rounds`` times); returns those never accepted.

    Only 4xx and broken connections are retried, as a sending MTA does; a 5xx is final.
    """
    def pending() -> list[Outgoing]:
        accepted = ledger.accepted()
        return [item for item in batch if item.marker not in accepted
                and ledger.replies.get(item.marker, [Reply(NO_REPLY, "never sent")])[-1].tempfailed]

    for _ in range(rounds):
        retry = pending()
        if not retry:
            break
        time.sleep(pause)
        send_all(port, retry, concurrency, sender, ledger)
    return pending()


class Tally:
    """Counts the markers in the sink's mailbox, reading only the deliveries it has not seen yet."""

    def __init__(self, mailbox):
        self.mailbox = mailbox
        self.seen = 0
        self.markers: Counter[str] = Counter()

    def update(self) -> Counter[str]:
        with self.mailbox.arrived:
            new = self.mailbox.deliveries[self.seen:]
        self.seen += len(new)
        self.markers.update(marker_of(d.data) for d in new)
        return self.markers

    def wait_for(self, markers: set[str], timeout: float) -> set[str]:
        """Wait until each of ``markers`` arrived (or ``timeout``); returns the missing ones."""
        deadline = time.monotonic() + timeout
        while True:
            missing = {m for m in markers if not self.update()[m]}
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.2)
