"""The (sub)keys that may have made a signature, with the facts verification needs, from the key model.

:func:`signer_keys` takes them from an :class:`OpenPGPKey` (formats/openpgp/keys.py); the addresses of the
key's user IDs go with them (:func:`key_emails`): the From: check (formats/sender.py) compares them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pgpy

from ciphermilter.formats.openpgp.keymaterial import PublicKey
from ciphermilter.formats.openpgp.keys import OpenPGPKey

# "Name (comment) <addr>" (RFC 9580 section 5.11 by convention); the bare "addr" or "<addr>" that
# gpg --quick-gen-key and Autocrypt clients write
_NAMED_ADDRESS = re.compile(r"(?:^|\s)<([^<>]+)>")
_BARE_ADDRESS = re.compile(r"<?([^\s<>@]+@[^\s<>@]+)>?")


@dataclass
class SignerKey:
    """One (sub)key that a signature's issuer names."""

    keyid: str
    fingerprint: bytes
    version: int
    algorithm: int
    created: int  # seconds since the epoch
    expires: int | None  # seconds since the epoch; None: never
    public: PublicKey | None  # None: material we cannot verify with
    emails: list[str] = field(default_factory=list)  # of the whole key's user IDs


def user_id_email(user_id: str) -> str:
    """The address of one user ID, lower case, or "" when it names none."""
    text = user_id.strip()
    found = _NAMED_ADDRESS.search(text) if text.endswith(">") else None
    address = found.group(1) if found else ""
    if not address and (bare := _BARE_ADDRESS.fullmatch(text)):
        address = bare.group(1)
    return address.strip().lower()


def key_emails(key: OpenPGPKey | pgpy.PGPKey) -> list[str]:
    """The addresses of the key's user IDs, lower case, each once (pgpy keys until the store hands out the
    key model's)."""
    user_ids = key.user_ids if isinstance(key, OpenPGPKey) else [uid.userid or "" for uid in key.userids]
    return [email for email in dict.fromkeys(map(user_id_email, user_ids)) if email]


def signer_keys(key: OpenPGPKey, keyid: str) -> list[SignerKey]:
    """The parts of ``key`` (primary and subkeys) whose key ID is ``keyid``."""
    emails = key_emails(key)
    found = []
    for part in key.parts:
        if part.keyid == keyid:
            ends = [end for end in (key.expires, None if part.expires is None else part.created + part.expires)
                    if end is not None]  # a subkey ends with its primary key at the latest
            found.append(SignerKey(keyid, part.fingerprint, part.version, part.algorithm, part.created,
                                   min(ends, default=None), part.public_key, emails))
    return found
