"""The master key that encrypts private key material at rest.

The key store's SQLite file never holds a private key in the clear: each one
is sealed with AES-256-GCM under a 32-byte master key kept in a separate file
(default: the store path plus ``.key``, mode 0600). Whoever copies the
database or a backup of it without that file learns public data only.

The associated data binds every ciphertext to the row it belongs to (its
fingerprint), so that nobody with write access to the database can swap two
rows' secrets around or move a key to another identity unnoticed.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_SIZE = 32
NONCE_SIZE = 12
# Sealed under the master key in the store, so that a wrong key file is refused at open time
# instead of failing later, message by message.
CHECK_PLAINTEXT = b"ciphermilter master key check v1"
CHECK_AAD = b"ciphermilter:key-check"


class MasterKeyError(Exception):
    """The master key file is missing, unreadable or malformed, or a ciphertext does not open."""


def default_path(store_path: str | os.PathLike[str]) -> str:
    return os.fspath(store_path) + ".key"


def write_private_file(path: str | os.PathLike[str], data: bytes = b"") -> None:
    """Create ``path`` with mode 0600 holding ``data``; FileExistsError rather than replace a file.

    The one way ciphermilter writes secrets to disk: the master key, a new
    store, a backup, an exported private key.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def generate(path: str | os.PathLike[str]) -> bytes:
    """Write a new random key to ``path`` (mode 0600); refuses to replace an existing file."""
    key = os.urandom(KEY_SIZE)
    try:
        write_private_file(path, key)
    except FileExistsError:
        raise MasterKeyError(f"master key file {os.fspath(path)} exists already; refusing to overwrite it") from None
    return key


def load(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as fh:
            key = fh.read(KEY_SIZE + 1)
    except FileNotFoundError:
        raise MasterKeyError(f"master key file {os.fspath(path)} not found") from None
    except OSError as exc:
        raise MasterKeyError(f"cannot read master key file {os.fspath(path)}: {exc.strerror}") from None
    if len(key) != KEY_SIZE:
        raise MasterKeyError(f"master key file {os.fspath(path)} is not a {KEY_SIZE}-byte key")
    return key


class Sealer:
    """AES-256-GCM with a fresh random nonce per ciphertext: ``nonce || ciphertext || tag``."""

    def __init__(self, key: bytes):
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], aad)
        except InvalidTag:
            raise MasterKeyError("sealed data does not open with this master key (wrong key, or the row was altered)") from None

    def check_value(self) -> bytes:
        return self.seal(CHECK_PLAINTEXT, CHECK_AAD)

    def matches(self, check_value: bytes) -> bool:
        try:
            return self.open(check_value, CHECK_AAD) == CHECK_PLAINTEXT
        except MasterKeyError:
            return False
