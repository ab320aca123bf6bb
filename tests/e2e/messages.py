"""Test messages made with the real openssl, shared by the protocol tests and the end-to-end tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import CORPUS

OPENSSL = "/usr/bin/openssl"
SENDER = "alice@sender-pub.example"
INTERNAL_RECIPIENT = "bob@corp-pub.example"
BOB_CERT = CORPUS / "keys" / "smime" / "pub-bob.cert.pem"


def plain_entity(text: bytes) -> bytes:
    """A text/plain MIME entity (CRLF) to encrypt."""
    return b"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" + text


def smime_encrypt(content: bytes, workdir: Path) -> bytes:
    """An S/MIME (AES-256-CBC) message to bob@corp-pub.example, whose key the corpus store holds."""
    source = workdir / "content.eml"
    source.write_bytes(content)
    result = subprocess.run(
        [OPENSSL, "cms", "-encrypt", "-aes256", "-in", str(source), "-binary",
         "-from", SENDER, "-to", INTERNAL_RECIPIENT, "-subject", "test", str(BOB_CERT)],
        check=True, capture_output=True)
    return result.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
