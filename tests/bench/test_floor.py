"""The bench's floor (bench/floor.py) costs what ciphermilter's protocol costs and nothing more: it must ask
for the same protocol steps and replies as the daemon does by default, or every figure judged against it
is off (a first version asked for a reply to MAIL, RCPT and each header: 20 round trips a message, not 3)."""

from __future__ import annotations

from bench import floor, milter_client, milter_daemon
from conftest import corpus_store_file

PLAIN = b"From: a@b.example\r\nTo: bob@corp-pub.example\r\nSubject: floor\r\n\r\nhello\r\n"


def test_the_floor_negotiates_what_the_daemon_negotiates_and_accepts_unchanged(tmp_path):
    tmp_path.chmod(0o755)
    ours = milter_daemon.start(tmp_path, "daemon", corpus_store_file(tmp_path))
    least = floor.start(tmp_path, "floor")
    daemon_side, floor_side = milter_client.Connection(ours.socket), milter_client.Connection(least.socket)
    try:
        assert floor_side.protocol == daemon_side.protocol != 0
        assert floor_side.actions == 0 and daemon_side.actions != 0  # the floor changes nothing
        reply = floor_side.send(milter_client.EncodedMessage.of(PLAIN, "a@b.example", ["bob@corp-pub.example"]))
        assert reply == b"a" and floor_side.body_replaced == 0
    finally:
        daemon_side.close()
        floor_side.close()
        ours.stop()
        least.stop()
