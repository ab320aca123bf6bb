"""Test messages made with the real openssl, shared by the protocol tests and the end-to-end tests."""

from __future__ import annotations

import base64
import random
import subprocess
from pathlib import Path

from conftest import CORPUS

OPENSSL = "/usr/bin/openssl"
SENDER = "alice@sender-pub.example"
INTERNAL_RECIPIENT = "bob@corp-pub.example"
BOB_CERT = CORPUS / "keys" / "smime" / "pub-bob.cert.pem"
# The EICAR anti-virus test file (the e2e tests' private ClamAV database knows it, as real databases do).
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


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


def large_plaintext(size: int) -> bytes:
    """A text/plain entity of about ``size`` bytes: base64 lines of seeded random bytes, so 7bit text."""
    lines = base64.encodebytes(random.Random(size).randbytes(size * 3 // 4)).replace(b"\n", b"\r\n")
    return plain_entity(lines)


def large_smime_message(workdir, size: int = 1536 * 1024) -> bytes:
    """An S/MIME message to bob (openssl, AES-256-CBC) whose decrypted body is ``size`` bytes (~1.4x on the wire)."""
    return smime_encrypt(large_plaintext(size), workdir)
