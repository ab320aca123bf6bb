"""Public keys a message carries (attached, inline, in an Autocrypt header): which may be kept for replies.

A key is only noted during the walk (:func:`collect_key`), with the signatures whose content holds it;
whether it is harvested is decided once every signature is known (:func:`harvest_keys`).
"""

from __future__ import annotations

import base64
import binascii
import re

from ciphermilter import mime
from ciphermilter.formats.openpgp import engine as openpgp
from ciphermilter.formats.openpgp.keys import OpenPGPKey
from ciphermilter.formats.openpgp.state import KeyCandidate, WalkState
from ciphermilter.formats import keyfiles

NOT_VOUCHED = "not harvested (no signature by a key an administrator imported covers it)"
FOREIGN_ADDRESSES = "not harvested (user IDs other than the verified signer's addresses)"
_AUTOCRYPT_KEYDATA = re.compile(r"(?:^|;)\s*keydata\s*=\s*([A-Za-z0-9+/=\s]+)", re.IGNORECASE)


def collect_key(data: bytes, state: WalkState, where: str) -> None:
    """Note a public key the message carries; whether it may be kept is decided once the signatures are known."""
    state.key_candidates.append(KeyCandidate(data, where, state.covering))


def harvest_keys(state: WalkState) -> None:
    """Store the carried keys that a verified signature vouches for (never trusted for verification by that).

    A key arrives in mail with whatever user IDs its maker chose, so one is
    kept only when it lies in content signed by a key an administrator
    imported (a partner announcing a new key) and every address of its user
    IDs is an address of that signer: a signed message cannot plant a key for
    anyone else, and an Autocrypt header, which no signature covers (it can be
    added to a replayed signed message), plants none.
    """
    if not (state.ctx.settings.harvest_pgp_keys and state.ctx.store is not None):
        return
    for candidate in state.key_candidates:
        vouched = {email for s in candidate.covered_by if s.valid for email in s.emails}
        if not vouched:
            state.ctx.harvest.note(f"{candidate.where}: {NOT_VOUCHED}")
            continue
        for key in _carried_keys(candidate, state):
            emails = set(openpgp.key_emails(key))
            if emails and emails <= vouched:
                state.ctx.harvest.pgp_key(key, candidate.where, frozenset(vouched))
            else:
                state.ctx.harvest.note(f"{candidate.where}: {key.keyid} {FOREIGN_ADDRESSES}")


def _carried_keys(candidate: KeyCandidate, state: WalkState) -> list[OpenPGPKey]:
    if candidate.keys is None:
        try:
            candidate.keys = keyfiles.parse(candidate.data).pgp_keys
        except keyfiles.SecretNeeded:  # a protected secret key: whatever it carries, we keep no secret of mail
            state.ctx.harvest.note(f"{candidate.where}: refused (passphrase-protected secret key)")
            candidate.keys = []
        except keyfiles.KeyFormatError as exc:
            state.ctx.harvest.note(f"{candidate.where}: refused ({exc})")
            candidate.keys = []
        except Exception:  # noqa: BLE001  whatever the sender sent must not end the message's walk
            state.ctx.harvest.note(f"{candidate.where}: refused (unreadable key)")
            candidate.keys = []
    return candidate.keys


def _carried_key_ids(state: WalkState) -> set[str]:
    """Key IDs (primary and subkeys) of every key the message carries."""
    found = set()
    for candidate in state.key_candidates:
        for key in _carried_keys(candidate, state):
            found |= set(key.key_ids)
    return found


def explain_carried_signers(state: WalkState) -> None:
    """A signature by a key that only the message itself carries: say so rather than "public key not found"."""
    unknown = [s for s in state.signatures if s.reason == openpgp.KEY_NOT_FOUND]
    if not (unknown and state.key_candidates):
        return
    carried = _carried_key_ids(state)
    for signature in unknown:
        if signature.keyid in carried:
            signature.reason = openpgp.KEY_NOT_IMPORTED


def collect_autocrypt(message: mime.Entity, state: WalkState) -> None:
    """Autocrypt headers (Autocrypt 1.1 section 2.1) carry the sender's key as base64 ``keydata``."""
    for header in message.headers:
        if header.name.lower() != "autocrypt":
            continue
        match = _AUTOCRYPT_KEYDATA.search(header.value)
        if not match:
            continue
        try:
            data = base64.b64decode(re.sub(r"\s", "", match.group(1)), validate=True)
        except binascii.Error:
            state.ctx.harvest.note("Autocrypt: corrupt keydata")
            continue
        collect_key(data, state, "Autocrypt")
