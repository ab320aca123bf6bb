"""The (sub)keys that may have made a signature, with the facts verification needs, from the key model.

:func:`signer_keys` takes them from an :class:`OpenPGPKey` (formats/openpgp/keys.py); the addresses of the
key's user IDs go with them (:func:`key_emails`): the From: check (formats/sender.py) compares them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ciphermilter.formats.openpgp.certifications import signing_parts
from ciphermilter.formats.openpgp.keymaterial import PublicKey
from ciphermilter.formats.openpgp.keys import OpenPGPKey

# "Name <addr>", and the bare "addr" or "<addr>" that gpg --quick-gen-key and Autocrypt clients write
_NAMED_ADDRESS = re.compile(r"<([^\s<>@]+@[^\s<>@]+)>\s*$")
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
    flags: int | None = None  # key flags of its self-signature (RFC 9580 5.2.3.29); None: none said


def user_id_email(user_id: str) -> str:
    """The address of one user ID, lower case; "" when it names none."""
    named = _NAMED_ADDRESS.search(user_id)
    bare = _BARE_ADDRESS.fullmatch(user_id.strip()) if named is None else None
    return (named.group(1) if named else bare.group(1) if bare else "").strip().lower()


def key_emails(key: OpenPGPKey) -> list[str]:
    """The addresses of the key's user IDs, lower case, each once, primary user ID first."""
    return [email for email in dict.fromkeys(map(user_id_email, key.user_ids)) if email]


def signer_keys(key: OpenPGPKey, keyid: str) -> list[SignerKey]:
    """The parts of ``key`` (primary and subkeys) whose key ID is ``keyid`` and that may sign for it
    (:func:`~.certifications.signing_parts`: bound, backed, not revoked)."""
    emails = key_emails(key)
    found = []
    parts = [part for part in key.parts if part.keyid == keyid]
    usable = signing_parts(key) if parts else set()  # checked only for a key the signature names
    for part in parts:
        if part.fingerprint in usable:
            ends = [end for end in (key.expires, None if part.expires is None else part.created + part.expires)
                    if end is not None]  # a subkey ends with its primary key at the latest
            found.append(SignerKey(keyid, part.fingerprint, part.version, part.algorithm, part.created,
                                   min(ends, default=None), part.public_key, emails, part.flags))
    return found
