"""The sending MTA of the split tests (issue 13, items 1 and 2): a second private Postfix that relays to the
gateway, the S/MIME message its user sends to every class of recipient, and the copies the sink gets. Shared by
e2e/test_split and e2e/measure_split_delay (which raises ``DELIVERY_TIMEOUT`` for Postfix's default retries)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.postfix_instance import POSTFIX_SERVICES, accepts, free_port, private_settings, start_private, wait_until
from conftest import CORPUS
from e2e.conftest import START_TIMEOUT
from support.messages import OPENSSL, SENDER, plain_entity

DELIVERY_TIMEOUT = 120.0
READERS = ["bob@corp-pub.example", "erin@corp-pub.example"]  # the store holds their S/MIME keys
NO_KEY = "carol@corp-pub.example"  # internal, reads no key in the store
EXTERNAL = "zed@elsewhere-pub.example"  # the sender encrypted to zed's certificate as well
SMIME_KEYS = CORPUS / "keys" / "smime"
SMIME_RECIPIENT_CERTS = [SMIME_KEYS / "pub-bob.cert.pem", SMIME_KEYS / "pub-erin-p256.cert.pem",
                         CORPUS / "keys" / "foreign" / "pub-zed-foreign.cert.pem"]


@dataclass
class Sender:
    """The sending MTA: an smtpd (no milter) that relays everything to the gateway."""

    port: int
    queue_dir: Path
    maillog: Path


def start_sender(directory: Path, gateway_port: int, extra: dict) -> Sender:
    config_dir, queue_dir = directory / "config", directory / "queue"
    config_dir.mkdir(parents=True)
    queue_dir.mkdir()
    for path in (directory, queue_dir):
        path.chmod(0o755)
    port = free_port()
    settings = {
        **private_settings(directory, queue_dir, directory / "data", "mta.sender.test"),
        "mydestination": "",
        "relayhost": f"[127.0.0.1]:{gateway_port}",
        "disable_mime_output_conversion": "yes",
        "smtputf8_enable": "yes",
        **extra,
    }
    start_private(config_dir, settings, f"{port} inet n - n - - smtpd\n" + POSTFIX_SERVICES)
    wait_until(lambda: accepts(port), START_TIMEOUT, "the sending postfix", settings["maillog_file"])
    return Sender(port, queue_dir, settings["maillog_file"])


def smime_message(marker: str, workdir: Path) -> bytes:
    """An S/MIME message encrypted (openssl cms) to bob, erin and the external zed, as their correspondent sends it."""
    source = workdir / f"{marker}.txt"
    source.write_bytes(plain_entity(f"secret for the readers {marker}\r\n".encode()))
    encrypted = subprocess.run(
        [OPENSSL, "cms", "-encrypt", "-aes256", "-in", str(source), "-binary", "-from", SENDER,
         "-to", ", ".join(READERS + [NO_KEY, EXTERNAL]), "-subject", marker,
         *map(str, SMIME_RECIPIENT_CERTS)], check=True, capture_output=True).stdout
    return encrypted.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def copies(sink, marker: str, recipients: list[str]) -> dict[str, list]:
    """The sink's deliveries of the message with ``marker`` in its Subject, by recipient, once all arrived."""
    tag = f"Subject: {marker}".encode()

    def by_recipient():
        found: dict[str, list] = {r: [] for r in recipients}
        for delivery in sink.mailbox.deliveries:
            if tag in delivery.split()[0]:
                for recipient in delivery.recipients:
                    found.setdefault(recipient.strip("<>"), []).append(delivery)
        return found

    sink.mailbox.wait_for(lambda _: all(by_recipient().values()), DELIVERY_TIMEOUT)
    return by_recipient()
