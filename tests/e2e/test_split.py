"""Issue 13, items 1 and 2 end to end (S/MIME, PGP/MIME, inline PGP): a real sending Postfix in front of the gateway's.

The sending MTA (a second private Postfix on loopback, relayhost = the
gateway's smtpd) gets one message for two internal readers, one internal
user without a key and one external recipient. The gateway's ciphermilter
answers the recipients of another class than the first with 452 4.5.3
(``mixed_recipients = "split"``); the sending Postfix delivers them in
transactions of their own, and the gateway relays every copy to the sink,
the external domain's too, so that every copy can be counted.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import CORPUS
from e2e.conftest import STOP_TIMEOUT
from e2e.load import send
from support.messages import SENDER, plain_entity
from bench.postfix_instance import queued_files, stop_master, wait_until
from support.split import (DELIVERY_TIMEOUT, EXTERNAL, NO_KEY, READERS, Sender, copies, smime_message,
                           start_sender)

PGP_READER = "bob.pgp@corp-pub.example"  # the store holds his OpenPGP key
PGP_KEYS = [CORPUS / "keys" / "pgp" / "pub-pgp-bob-rsa3072.pub.asc",
            CORPUS / "keys" / "foreign" / "pub-pgp-stranger-rsa2048.pub.asc"]
REFUSED = "not encrypted to a key of every recipient (reader policy)"
# Shortened retry settings of the sending Postfix for the test runs (the README's figure was measured with
# Postfix's defaults: measure_split_delay.py). The backoff outlasts a delivery (about 1 s here): with a 1 s
# backoff the queue manager met the message still locked by the delivery agent ("skipped, still being
# delivered") and did not come back to it within a minute.
QUICK_RETRY = {"queue_run_delay": "2s", "minimal_backoff_time": "4s", "maximal_backoff_time": "8s"}


@pytest.fixture(scope="module")
def sending_mta(e2e_dir, postfix):
    sender = start_sender(e2e_dir / "sender-postfix", postfix.port, QUICK_RETRY)
    yield sender
    stop_master(sender.queue_dir, STOP_TIMEOUT)


def pgp_armored(marker: str) -> bytes:
    """An armored OpenPGP message (gpg) to bob.pgp and the external stranger."""
    home = Path(tempfile.mkdtemp(prefix="gpg-"))  # short: gpg-agent's socket path must fit in sun_path
    try:
        for key in PGP_KEYS:
            subprocess.run(["gpg", "--homedir", str(home), "--batch", "--import", str(key)], check=True,
                           capture_output=True)
        return subprocess.run(
            ["gpg", "--homedir", str(home), "--batch", "--trust-model", "always", "--armor",
             "--recipient", PGP_READER, "--recipient", "stranger@elsewhere-pub.example", "--encrypt"],
            input=plain_entity(f"secret for the readers {marker}\r\n".encode()), check=True,
            capture_output=True).stdout.replace(b"\n", b"\r\n")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def pgp_mime_message(marker: str) -> bytes:
    return (f"From: {SENDER}\r\nTo: {PGP_READER}, {NO_KEY}, {EXTERNAL}\r\nSubject: {marker}\r\n"
            "MIME-Version: 1.0\r\n".encode()
            + b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="pgp-b"\r\n\r\n'
            b"--pgp-b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
            b'--pgp-b\r\nContent-Type: application/octet-stream; name="encrypted.asc"\r\n\r\n'
            + pgp_armored(marker) + b"--pgp-b--\r\n")


def inline_pgp_message(marker: str) -> bytes:
    return (f"From: {SENDER}\r\nTo: {PGP_READER}, {NO_KEY}, {EXTERNAL}\r\nSubject: {marker}\r\n"
            "Content-Type: text/plain\r\n\r\n".encode() + pgp_armored(marker))


def info_headers(head: bytes) -> dict[str, str]:
    fields = re.findall(rb"^(X-CipherMail-Info-[^:]+):[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.M)
    return {name.decode(): re.sub(rb"\r\n[ \t]+", b" ", value).decode() for name, value in fields}


def body_of(message: bytes) -> bytes:
    return message.partition(b"\r\n\r\n")[2]


def assert_each_copy_once(sink, marker: str, readers: list[str], sender: Sender) -> dict:
    recipients = readers + [NO_KEY, EXTERNAL]
    found = copies(sink, marker, recipients)
    wait_until(lambda: not queued_files(sender.queue_dir), DELIVERY_TIMEOUT, "the sending queue to drain",
               sender.maillog)
    assert {r: len(found[r]) for r in recipients} == {r: 1 for r in recipients}
    # one transaction per class: the readers together, the colleague without a key alone, the external alone
    transactions = {id(d): sorted(r.strip("<>") for r in d.recipients) for v in found.values() for d in v}
    assert sorted(transactions.values()) == sorted([sorted(readers), [NO_KEY], [EXTERNAL]])
    return {recipient: found[recipient][0] for recipient in recipients}


def test_smime_reader_copy_is_decrypted_and_the_others_stay_encrypted(sink, sending_mta, tmp_path):
    marker = f"split-smime-{time.monotonic_ns()}"
    message = smime_message(marker, tmp_path)
    reply = send(sending_mta.port, message, READERS + [NO_KEY, EXTERNAL], SENDER)
    assert reply.code == 250, reply
    delivered = assert_each_copy_once(sink, marker, READERS, sending_mta)

    for reader in READERS:
        head, body = delivered[reader].split()
        assert b"secret for the readers " + marker.encode() in body
        assert info_headers(head)["X-CipherMail-Info-SMIME-Encrypted"] == "True"
        assert "X-CipherMail-Info-SMIME-Decryption-Key-Not-Found" not in info_headers(head)
    head, body = delivered[NO_KEY].split()
    assert body == body_of(message)  # byte for byte as the sender encrypted it
    info = info_headers(head)
    assert info["X-CipherMail-Info-SMIME-Decryption-Key-Not-Found"] == "True"
    assert info["X-CipherMail-Info-SMIME-Decryption-Refused-0"] == REFUSED
    assert NO_KEY.encode() not in b"".join(value.encode() for value in info.values())  # no envelope address
    head, body = delivered[EXTERNAL].split()
    assert body == body_of(message) and info_headers(head) == {}  # outside mail: not even looked at


@pytest.mark.parametrize("build, encoding", [(pgp_mime_message, "PGP/MIME"), (inline_pgp_message, "PGP/INLINE")],
                         ids=["pgp-mime", "inline"])
def test_pgp_reader_copy_is_decrypted_and_the_others_stay_encrypted(sink, sending_mta, build, encoding):
    marker = f"split-pgp-{time.monotonic_ns()}"
    message = build(marker)
    reply = send(sending_mta.port, message, [PGP_READER, NO_KEY, EXTERNAL], SENDER)
    assert reply.code == 250, reply
    delivered = assert_each_copy_once(sink, marker, [PGP_READER], sending_mta)

    head, body = delivered[PGP_READER].split()
    assert b"secret for the readers " + marker.encode() in body
    assert "X-CipherMail-Info-PGP-Decryption-Key-Not-Found" not in info_headers(head)
    head, body = delivered[NO_KEY].split()
    assert body == body_of(message)
    assert info_headers(head) == {
        "X-CipherMail-Info-PGP-Encoding": encoding,
        "X-CipherMail-Info-PGP-Encrypted": "True",
        "X-CipherMail-Info-PGP-Decryption-Key-Not-Found": "True",
        "X-CipherMail-Info-PGP-Decryption-Refused": REFUSED,
    }
    head, body = delivered[EXTERNAL].split()
    assert body == body_of(message) and info_headers(head) == {}
