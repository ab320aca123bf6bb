"""Sending through the e2e chain (Postfix -> ciphermilter -> clamav-milter -> rspamd -> sink) and reading what
reached the sink, shared by every e2e module that submits a message."""

from __future__ import annotations

import re

from e2e.load import Reply, send
from support.messages import SENDER

DELIVERY_TIMEOUT = 60.0
EXTERNAL_RECIPIENT = "zed@elsewhere-pub.example"
RESERVED = re.compile(rb"^(x-ciphermail-|x-djigzo-)", re.IGNORECASE)


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
