"""Which user IDs of a key its own primary key certified (RFC 9580 sections 5.2.1 and 5.2.4), checked at import.

Anyone can append a user ID packet to a key on a keyserver (keyserver
pollution); only the key's own certification says its owner claims the
address. The certification is read and checked by the engine that verifies
message signatures (:mod:`.signature`, :mod:`.signing`): v4 and v6, with the
key model's ``cryptography`` public keys -- RSA, DSA, ECDSA on every curve
:mod:`.keymaterial` reads (brainpool too, which pgpy could not verify), EdDSA
legacy, Ed25519 and Ed448 -- over the packets as received. Expiry and
revocation are the key's, judged when its signatures are verified.
"""

from __future__ import annotations

from ciphermilter.formats.openpgp.keys import CERTIFICATIONS, TAG_SIGNATURE, TAG_USER_ID, KeyPart, OpenPGPKey
from ciphermilter.formats.openpgp.signature import UnreadableSignature, parse_signature
from ciphermilter.formats.openpgp.signing import key_fits, verifies


def _certified_data(key: KeyPart, user_id: bytes) -> bytes:
    """What a certification of ``user_id`` hashes before its trailer (RFC 9580 section 5.2.4)."""
    body = key.public_body
    prefix = (b"\x9b" + len(body).to_bytes(4, "big") if key.version == 6 else b"\x99" + len(body).to_bytes(2, "big"))
    return prefix + body + b"\xb4" + len(user_id).to_bytes(4, "big") + user_id


def _certifies(primary: KeyPart, user_id: bytes, body: bytes) -> bool:
    """True when the signature packet ``body`` is the primary key's valid certification of ``user_id``."""
    public = primary.public_key
    try:
        signature = parse_signature(body)
        if (signature.signature_type not in CERTIFICATIONS or signature.version != primary.version
                or signature.critical_unknown or public is None or not key_fits(signature.algorithm, public)):
            return False
        return verifies(signature, signature.digest(_certified_data(primary, user_id)), public)
    except UnreadableSignature:  # MD5, malformed fields, ...: certifies nothing
        return False


def certified_user_ids(key: OpenPGPKey) -> set[bytes]:
    """The user ID packet bodies that a certification by the primary key verifies over."""
    certified: set[bytes] = set()
    user_id: bytes | None = None
    for tag, body in key.packets[1:]:
        if tag != TAG_SIGNATURE:
            user_id = body if tag == TAG_USER_ID else None
        elif user_id is not None and user_id not in certified and _certifies(key.primary, user_id, body):
            certified.add(user_id)
    return certified


def user_id_packets(key: OpenPGPKey) -> list[bytes]:
    return [body for tag, body in key.packets if tag == TAG_USER_ID]
