"""Whether a milter answers on a socket: the daemon's refusal to start twice, and ``check``'s outage test.

A socket file proves nothing: a daemon killed with SIGKILL leaves its socket
behind, and Postfix then answers 451 for every message while ``ls`` shows the
socket. Only a connection tells: the daemon asks it before taking the socket
over (issue 17: a second daemon unlinked a live socket and left the first one
serving nothing), and ``check`` goes on to the milter negotiation, the first
thing Postfix says, so that a port held by something else is not taken for us.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

# Long enough for a daemon busy with a burst of connections (libmilter accepts in its own thread), short
# enough for a monitoring probe: a daemon that answers at all answers in milliseconds.
PROBE_TIMEOUT_S = 5.0
# SMFIC_OPTNEG with what Postfix 3 offers: milter protocol version 6, every action, every protocol step.
OPTNEG = b"O"
QUIT = b"Q"
MILTER_VERSION = 6
ALL_ACTIONS = 0x1FF
ALL_STEPS = 0x1FFFFF
HEADER = struct.Struct("!I")


@dataclass(frozen=True)
class Address:
    """Where a socket spec connects: a unix path, or the addresses a host name resolves to, and a port."""

    spec: str
    path: str | None = None
    host: str = ""
    port: int = 0

    def describe(self) -> str:
        return self.path if self.path is not None else f"{self.host} port {self.port}"


def address(spec: str) -> Address:
    """Our ``unix:PATH`` / ``local:PATH`` / ``inet:PORT[@HOST]`` and Postfix's ``inet:HOST:PORT`` alike.

    libmilter binds ``inet:PORT`` without a host to every address: the loopback one reaches it.
    """
    kind, _, rest = spec.partition(":")
    if kind in ("unix", "local"):
        return Address(spec, path=rest)
    if "@" in rest:
        port, _, host = rest.partition("@")
    elif ":" in rest:
        host, _, port = rest.rpartition(":")
    else:
        port, host = rest, ""
    host = host.strip("[]") or ("::1" if kind == "inet6" else "127.0.0.1")
    return Address(spec, host=host, port=int(port))


def resolved(target: Address) -> set[tuple[str, int]]:
    """The (address, port) pairs of an inet target, names resolved (``localhost`` is 127.0.0.1 and ::1);
    empty for a name that does not resolve."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return set()
    return {(str(info[4][0]), target.port) for info in infos}


def _connect(target: Address, timeout: float) -> socket.socket:
    """A connected socket, or OSError with the reason (refused, no such file, permission denied, timeout)."""
    if target.path is not None:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(timeout)
        try:
            conn.connect(target.path)
        except OSError:
            conn.close()
            raise
        return conn
    return socket.create_connection((target.host, target.port), timeout=timeout)


def accepts(spec: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether something accepts connections on the socket (a bare connect; the milter sees it close)."""
    try:
        _connect(address(spec), timeout).close()
    except OSError:
        return False
    return True


def negotiate(spec: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when a milter answers the option negotiation on ``spec``, else why not, in words."""
    target = address(spec)
    try:
        conn = _connect(target, timeout)
    except OSError as exc:
        return f"nothing answers on {target.describe()} ({exc.strerror or exc})"
    with conn:
        try:
            conn.sendall(_packet(OPTNEG, struct.pack("!III", MILTER_VERSION, ALL_ACTIONS, ALL_STEPS)))
            reply = _read_packet(conn)
            conn.sendall(_packet(QUIT, b""))
        except OSError as exc:
            return f"{target.describe()} accepts connections but did not negotiate ({exc.strerror or exc})"
    if not reply.startswith(OPTNEG):
        return f"{target.describe()} accepts connections but does not speak the milter protocol"
    return None


def _packet(command: bytes, data: bytes) -> bytes:
    return HEADER.pack(len(command) + len(data)) + command + data


def _read_packet(conn: socket.socket) -> bytes:
    (length,) = HEADER.unpack(_read_exactly(conn, HEADER.size))
    return _read_exactly(conn, min(length, 1 << 16))


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("connection closed")
        data += chunk
    return data
