"""OpenPGP messages as a forger makes them, with the real gpg in a throwaway GNUPGHOME.

The forger generates a key with whatever user ID he likes (an internal
address, a partner's whose real key the store holds), hands it over in the
same message (an ``Autocrypt:`` header, an attached key) and signs with it.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

from conftest import CORPUS

PGP_KEYS = CORPUS / "keys" / "pgp"
BOB_PGP = "bob.pgp@corp-pub.example"  # a corpus key whose secret half the store holds: an imported signer
ALICE_PGP = "alice.pgp@sender-pub.example"  # a partner whose real public key the store holds
CEO = "ceo@corp-pub.example"  # an internal address nobody imported a key for
TEXT = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nWire the money to the new account today.\r\n"


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


class Gpg:
    """gpg on its own home directory (0700, in the test's temporary directory)."""

    def __init__(self, home: Path):
        home.mkdir(mode=0o700, exist_ok=True)
        self.home = home

    def run(self, *args: str, data: bytes = b"") -> bytes:
        return subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--yes", "--pinentry-mode", "loopback",
                               "--passphrase", "", *args], input=data, check=True, capture_output=True).stdout

    def generate(self, uid: str) -> str:
        """A new Ed25519 signing key for ``uid``; its key ID (16 upper-case hex digits), which names it below."""
        known = set(self.keyids())
        self.run("--quick-gen-key", uid, "ed25519", "sign", "never")
        return next(keyid for keyid in self.keyids() if keyid not in known)

    def keyids(self) -> list[str]:
        listing = self.run("--with-colons", "--list-keys").decode()
        return [line.split(":")[4].upper() for line in listing.splitlines() if line.startswith("pub:")]

    def import_file(self, path: Path) -> str:
        """Import a key file; the key ID of the key it added."""
        known = set(self.keyids())
        self.run("--import", str(path))
        return next(keyid for keyid in self.keyids() if keyid not in known)

    def public_key(self, keyid: str, armor: bool = True) -> bytes:
        return self.run(*(["--armor"] if armor else []), "--export", keyid)

    def detached_signature(self, keyid: str, data: bytes) -> bytes:
        return crlf(self.run("--armor", "--local-user", keyid + "!", "--detach-sign", data=data))

    def clearsigned(self, keyid: str, text: bytes) -> bytes:
        return crlf(self.run("--local-user", keyid + "!", "--clearsign", data=text))


def autocrypt(addr: str, keydata: bytes) -> bytes:
    """An Autocrypt header field (Autocrypt 1.1 section 2.1), folded as clients fold it, with its CRLF."""
    encoded = base64.b64encode(keydata)
    folded = b"\r\n ".join(encoded[i:i + 72] for i in range(0, len(encoded), 72))
    return b"Autocrypt: addr=" + addr.encode() + b"; keydata=\r\n " + folded + b"\r\n"


def head(sender: str, extra: bytes = b"") -> bytes:
    return (b"From: " + sender.encode() + b"\r\nTo: bob@corp-pub.example\r\nSubject: urgent\r\n" + extra
            + b"MIME-Version: 1.0\r\n")


def pgp_mime_signed(gpg: Gpg, keyid: str, content: bytes, header_block: bytes) -> bytes:
    """A multipart/signed message (RFC 3156 section 5) whose first part is ``content``, signed by ``keyid``."""
    signature = gpg.detached_signature(keyid, content)
    return (header_block + b'Content-Type: multipart/signed; micalg=pgp-sha512;'
            b' protocol="application/pgp-signature"; boundary="signed"\r\n\r\n'
            b"--signed\r\n" + content + b"\r\n--signed\r\nContent-Type: application/pgp-signature\r\n\r\n"
            + signature + b"--signed--\r\n")


def with_keys(text: bytes, *keys: bytes) -> bytes:
    """A multipart/mixed entity: ``text``, then each armored key as an application/pgp-keys part."""
    parts = [text] + [b"Content-Type: application/pgp-keys\r\n\r\n" + crlf(key) for key in keys]
    return (b'Content-Type: multipart/mixed; boundary="keys"\r\n\r\n'
            + b"".join(b"--keys\r\n" + part + b"\r\n" for part in parts) + b"--keys--\r\n")
