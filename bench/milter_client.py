"""The MTA side of the milter protocol (version 6), lean enough to load the daemon from a thread per connection.

``miltertest`` re-encodes every packet as text and cannot carry a binary
body; a benchmark client must cost next to nothing, so each message is
encoded into its packets once (:class:`EncodedMessage`) and replayed as it
is on every connection. Like Postfix, the client honours what the milter
negotiated (as Postfix 3.x, it offers every action and protocol step): no reply is awaited for MAIL, RCPT and headers when it asked for
that, an ACCEPT at end of headers ends the message, and SKIP ends the body.
"""

from __future__ import annotations

import socket
import statistics
import struct
import threading
import time
from dataclasses import dataclass

from miltertest.constants import (MILTER_CHUNK_SIZE, SMFI_V6_ACTS, SMFI_V6_PROT, SMFIP_HDR_LEADSPC, SMFIP_NR_HDR,
                                  SMFIP_NR_MAIL, SMFIP_NR_RCPT)

from ciphermilter import mime

MILTER_VERSION = 6
# Replies that end a command (progress and modifications do not).
FINAL_REPLIES = frozenset(b"acrtsdy")


def packet(command: bytes, data: bytes = b"") -> bytes:
    return struct.pack("!I", len(data) + 1) + command + data


def strings(*values: bytes) -> bytes:
    return b"".join(value + b"\0" for value in values)


def connect(spec: str) -> socket.socket:
    """``unix:/path`` or ``inet:PORT@HOST``, as the daemon's configuration spells its socket."""
    kind, _, rest = spec.partition(":")
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(rest)
    else:
        port, _, host = rest.partition("@")
        sock = socket.create_connection((host or "127.0.0.1", int(port)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(300)
    return sock


@dataclass
class EncodedMessage:
    """One transaction's packets, built once: envelope, headers (values as the MTA sends them) and body chunks."""

    sender: bytes
    recipients: list[bytes]
    fields: list[tuple[bytes, bytes]]  # name, value without the white space after the colon
    leading_space: list[bytes]  # that white space, sent only when HDR_LEADSPC was negotiated
    chunks: list[bytes]

    @classmethod
    def of(cls, message: bytes, sender: str, recipients: list[str]) -> "EncodedMessage":
        headers, offset = mime.split_headers(message)
        fields, spaces = [], []
        for header in headers:
            name, _, value = header.raw.rstrip(b"\r\n").partition(b":")
            stripped = value.lstrip(b" \t")
            fields.append((name, stripped.replace(b"\r\n", b"\n")))
            spaces.append(value[:len(value) - len(stripped)])
        body = message[offset:]
        chunks = [packet(b"B", body[start:start + MILTER_CHUNK_SIZE])
                  for start in range(0, len(body), MILTER_CHUNK_SIZE)]
        return cls(sender.encode(), [r.encode() for r in recipients], fields, spaces, chunks)

class Connection:
    """One milter connection; :meth:`send` runs one transaction and returns the final reply code."""

    def __init__(self, spec: str):
        self.sock = connect(spec)
        self.buffer = bytearray()
        self.sock.sendall(packet(b"O", struct.pack("!III", MILTER_VERSION, SMFI_V6_ACTS, SMFI_V6_PROT)))
        command, data = self._read()
        if command != b"O":
            raise ConnectionError(f"milter answered {command!r} to option negotiation")
        _, self.actions, self.protocol = struct.unpack("!III", data[:12])
        self.body_replaced = 0  # bytes of replacement body received, over all transactions
        self.pending: list[bytes] = []  # packets that need no reply, sent with the next one that does

    def close(self) -> None:
        try:
            self.sock.sendall(packet(b"Q"))
        finally:
            self.sock.close()

    def send(self, message: EncodedMessage) -> bytes:
        """Run one transaction; the reply that ended it (``c`` continue, ``a`` accept, ``t`` tempfail ...)."""
        self._step(SMFIP_NR_MAIL, packet(b"M", strings(b"<" + message.sender + b">")))
        for recipient in message.recipients:
            self._step(SMFIP_NR_RCPT, packet(b"R", strings(b"<" + recipient + b">")))
        leading = self.protocol & SMFIP_HDR_LEADSPC
        headers = [packet(b"L", strings(name, (space if leading else b"") + value))
                   for (name, value), space in zip(message.fields, message.leading_space)]
        if self.protocol & SMFIP_NR_HDR:
            self.pending += headers
        else:
            for header in headers:
                self._ask(header)
        reply = self._ask(packet(b"N"))
        if reply != b"c":
            return reply
        for chunk in message.chunks:
            reply = self._ask(chunk)
            if reply == b"s":
                break
            if reply != b"c":
                return reply
        self.pending.append(packet(b"D", b"E" + strings(b"i", b"BENCH0001")))
        return self._ask(packet(b"E"))

    def _step(self, no_reply_bit: int, data: bytes) -> None:
        if self.protocol & no_reply_bit:
            self.pending.append(data)
        else:
            self._ask(data)

    def _ask(self, data: bytes) -> bytes:
        """Send a packet (after those that need no reply) and read replies up to the final one.

        Packets that need no reply go out with the next one that does, in one
        write: the client shares the CPUs with the daemon it measures, so its
        own system calls are kept few (modifications before the final reply
        are counted).
        """
        self.pending.append(data)
        self.sock.sendall(b"".join(self.pending))
        self.pending.clear()
        while True:
            command, payload = self._read()
            if command == b"b":
                self.body_replaced += len(payload)
            elif command[0] in FINAL_REPLIES:
                return command

    def _read(self) -> tuple[bytes, bytes]:
        while True:
            if len(self.buffer) >= 4:
                length = struct.unpack_from("!I", self.buffer)[0]
                if len(self.buffer) >= 4 + length:
                    command = bytes(self.buffer[4:5])
                    payload = bytes(self.buffer[5:4 + length])
                    del self.buffer[:4 + length]
                    return command, payload
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("milter closed the connection")
            self.buffer += data


def percentiles(latencies: list[float]) -> dict:
    """p50 and p99 in milliseconds of per-message latencies in seconds."""
    ordered = sorted(latencies)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3)}


def load(spec: str, message: EncodedMessage, connections: int, seconds: float, min_messages: int) -> dict:
    """``connections`` threads, each on its own connection, sending ``message`` over and over.

    Runs for ``seconds`` and at least ``min_messages`` transactions in all;
    returns the aggregate rate and the per-transaction latency percentiles.
    """
    warm = Connection(spec)  # a running daemon has its keys unlocked and its caches filled: so do we
    warm.send(message)
    warm.close()
    latencies: list[float] = []
    replies: dict[str, int] = {}
    replaced = [0]
    lock = threading.Lock()
    errors: list[BaseException] = []
    started = time.perf_counter()

    def worker():
        try:
            conn = Connection(spec)
            try:
                while True:
                    with lock:
                        if len(latencies) >= min_messages and time.perf_counter() - started >= seconds:
                            return
                    t0 = time.perf_counter()
                    reply = conn.send(message)
                    elapsed = time.perf_counter() - t0
                    with lock:
                        latencies.append(elapsed)
                        replies[reply.decode()] = replies.get(reply.decode(), 0) + 1
            finally:
                conn.close()
                with lock:
                    replaced[0] += conn.body_replaced
        except BaseException as exc:  # reported below: a failed load must not look like a slow one
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    return {
        "connections": connections,
        "messages": len(latencies),
        "msgs_per_s": round(len(latencies) / wall, 1),
        **percentiles(latencies),
        "replies": replies,
        "body_replaced_bytes": replaced[0],
    }
