"""Messages encrypted to bob (the corpus keys) by the real tools, ``openssl cms`` and ``gpg``, as the hostile-sender
tests (test_security, test_readers) build them. The gpg home with bob's public key is the fixture ``gpg_home``
(support/gpg_fixtures.py)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

from conftest import CORPUS

KEYS = CORPUS / "keys"
BOB_CERT = KEYS / "smime" / "pub-bob.cert.pem"
PGP_BOB = KEYS / "pgp" / "pub-pgp-bob-rsa3072.pub.asc"
PGP_BOB_UID = "bob.pgp@corp-pub.example"
OUTER = b"From: alice@sender-pub.example\r\nTo: bob@corp-pub.example\r\nSubject: outer subject\r\n"


def smime_encrypt(content: bytes, cert: Path = BOB_CERT, cipher: str = "-aes256") -> bytes:
    """EnvelopedData (DER) of ``content`` exactly as given (``-binary``) for the certificate's key."""
    return subprocess.run(["openssl", "cms", "-encrypt", "-binary", cipher, "-outform", "DER", "-recip", str(cert)],
                          input=content, check=True, capture_output=True).stdout


def smime_part(der: bytes) -> bytes:
    """An application/pkcs7-mime entity (headers, blank line, base64 body) carrying ``der``."""
    return (b'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(der).replace(b"\n", b"\r\n"))


def pgp_encrypt(home: Path, content: bytes) -> bytes:
    """ASCII-armored OpenPGP message of ``content`` for bob's RSA-3072 key, made by gpg."""
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--trust-model", "always", "--armor",
                           "--recipient", PGP_BOB_UID, "--encrypt"],
                          input=content, check=True, capture_output=True).stdout.replace(b"\n", b"\r\n")


def pgp_mime_part(armored: bytes) -> bytes:
    """A multipart/encrypted entity (RFC 3156) carrying ``armored``."""
    return (b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="pgp-b"\r\n\r\n'
            b"--pgp-b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
            b'--pgp-b\r\nContent-Type: application/octet-stream; name="encrypted.asc"\r\n\r\n'
            + armored + b"--pgp-b--\r\n")
