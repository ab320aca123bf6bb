"""What a key's own primary key signed (RFC 9580 sections 5.2.1, 5.2.4): user IDs, subkey bindings, revocations.

Anyone can append a user ID packet to a key on a keyserver (keyserver
pollution); only the key's own certification says its owner claims the
address. The certification is read and checked by the engine that verifies
message signatures (:mod:`.signature`, :mod:`.signing`): v4 and v6, with the
key model's ``cryptography`` public keys -- RSA, DSA, ECDSA on every curve
:mod:`.keymaterial` reads (brainpool too, which pgpy could not verify), EdDSA
legacy, Ed25519 and Ed448 -- over the packets as received. The same holds for
subkey bindings (and a signing subkey's back-signature), revocations and the
self-signatures that set key flags and expiry: what the primary key did not
sign says nothing of the key. Expiry is judged when a signature is verified.
"""

from __future__ import annotations

from ciphermilter.formats.openpgp.keys import (CERTIFICATIONS, DIRECT_KEY, TAG_PUBLIC_SUBKEY, TAG_SECRET_SUBKEY,
                                               TAG_SIGNATURE, TAG_USER_ID, KeyPart, OpenPGPKey, is_self_signature,
                                               signature_subpackets)
from ciphermilter.formats.openpgp.signature import UnreadableSignature, parse_signature
from ciphermilter.formats.openpgp.signing import key_fits, verifies


KEY_REVOCATION, SUBKEY_BINDING, PRIMARY_BINDING, SUBKEY_REVOCATION, UID_REVOCATION = 0x20, 0x18, 0x19, 0x28, 0x30
_SUBKEY_TAGS = (TAG_PUBLIC_SUBKEY, TAG_SECRET_SUBKEY)
_MAY_SIGN = 0x02  # key flags (RFC 9580 section 5.2.3.29)
SIGNING_ALGORITHMS = frozenset({1, 3, 17, 19, 22, 27, 28})  # RSA, RSA sign-only, DSA, ECDSA, EdDSA, Ed25519, Ed448


def _key_data(key: KeyPart) -> bytes:
    """A key as signatures over it hash it (RFC 9580 section 5.2.4)."""
    body = key.public_body
    prefix = (b"\x9b" + len(body).to_bytes(4, "big") if key.version == 6 else b"\x99" + len(body).to_bytes(2, "big"))
    return prefix + body


def _certified_data(key: KeyPart, user_id: bytes) -> bytes:
    """What a certification of ``user_id`` hashes before its trailer (RFC 9580 section 5.2.4)."""
    return _key_data(key) + b"\xb4" + len(user_id).to_bytes(4, "big") + user_id


def _made_by(signer: KeyPart, kinds: range | tuple[int, ...], data: bytes, body: bytes) -> bool:
    """True when the signature packet ``body`` is of one of ``kinds``, by ``signer``, and verifies over ``data``."""
    public = signer.public_key
    try:
        signature = parse_signature(body)
        if (signature.signature_type not in kinds or signature.version != signer.version
                or signature.critical_unknown or public is None or not key_fits(signature.algorithm, public)):
            return False
        return verifies(signature, signature.digest(data), public)
    except UnreadableSignature:  # MD5, malformed fields, ...: proves nothing
        return False


def _certifies(primary: KeyPart, user_id: bytes, body: bytes) -> bool:
    """True when the signature packet ``body`` is the primary key's valid certification of ``user_id``."""
    return _made_by(primary, CERTIFICATIONS, _certified_data(primary, user_id), body)


def _binds(primary: KeyPart, subkey: KeyPart, body: bytes) -> bool:
    """True when ``body`` is the primary's valid binding of ``subkey``; a subkey that may sign must also have
    signed it back (an embedded primary-key binding), or anyone could claim someone else's signing key."""
    data = _key_data(primary) + _key_data(subkey)
    if not _made_by(primary, (SUBKEY_BINDING,), data, body):
        return False
    if subkey.algorithm not in SIGNING_ALGORITHMS or (subkey.flags is not None and not subkey.flags & _MAY_SIGN):
        return True  # cannot sign, or its flags say it does not: nothing to claim
    embedded = parse_signature(body).embedded
    return any(_made_by(subkey, (PRIMARY_BINDING,), data, back) for back in embedded)


def _subkey_of(key: OpenPGPKey, packet_body: bytes) -> KeyPart | None:
    """The subkey a (public or secret) subkey packet holds: a secret packet's body starts with the public one."""
    return next((part for part in key.subkeys if packet_body.startswith(part.public_body)), None)


def signing_parts(key: OpenPGPKey) -> set[bytes]:
    """Fingerprints of the parts that may have made a signature for ``key``: the primary key and the subkeys it
    bound (a subkey packet anyone appended binds nothing), none revoked by the primary; nothing when the
    primary key revoked itself. Revocations take effect whatever their reason (a hard revocation)."""
    primary = key.primary
    primary_data = _key_data(primary)
    usable = {primary.fingerprint}
    revoked: set[bytes] = set()
    current: KeyPart | None = None
    for tag, body in key.packets[1:]:
        if tag in _SUBKEY_TAGS:
            current = _subkey_of(key, body)
        elif tag != TAG_SIGNATURE:
            current = None  # a user ID or attribute: its signatures are certifications
        elif current is None and _made_by(primary, (KEY_REVOCATION,), primary_data, body):
            return set()
        elif current is not None and _made_by(primary, (SUBKEY_REVOCATION,), primary_data + _key_data(current), body):
            revoked.add(current.fingerprint)
        elif current is not None and _binds(primary, current, body):
            usable.add(current.fingerprint)
    return usable - revoked


def certified_user_ids(key: OpenPGPKey) -> set[bytes]:
    """The user ID packet bodies that a certification by the primary key verifies over and that the primary key
    did not revoke (a certification revocation, 0x30: the owner no longer claims that address; whatever its
    date, fail closed)."""
    certified: set[bytes] = set()
    revoked: set[bytes] = set()
    user_id: bytes | None = None
    for tag, body in key.packets[1:]:
        if tag != TAG_SIGNATURE:
            user_id = body if tag == TAG_USER_ID else None
        elif user_id is None or user_id in revoked:
            continue
        elif _made_by(key.primary, (UID_REVOCATION,), _certified_data(key.primary, user_id), body):
            revoked.add(user_id)
        elif user_id not in certified and _certifies(key.primary, user_id, body):
            certified.add(user_id)
    return certified - revoked


def user_id_packets(key: OpenPGPKey) -> list[bytes]:
    return [body for tag, body in key.packets if tag == TAG_USER_ID]


def unproven_self_signatures(key: OpenPGPKey) -> set[int]:
    """Indexes (in ``key.packets``) of the signatures the key model reads as self-signatures -- the newest of
    them sets a part's key flags and expiry -- that do not verify by the primary key. Anyone can append one
    with a newer date (an expired key made valid again, a subkey given other flags); dropped at import."""
    primary = key.primary
    owner: KeyPart | None = primary
    signed = _key_data(primary)  # what a signature at this point is over, before its trailer
    unproven: set[int] = set()
    for index, (tag, body) in enumerate(key.packets[1:], start=1):
        if tag in _SUBKEY_TAGS:
            owner = _subkey_of(key, body)
            signed = b"" if owner is None else _key_data(primary) + _key_data(owner)
        elif tag != TAG_SIGNATURE:
            owner = primary
            signed = _certified_data(primary, body) if tag == TAG_USER_ID else b""
        else:
            sub = signature_subpackets(body)
            if sub is None or owner is None or not is_self_signature(sub, owner, primary):
                continue
            data = _key_data(primary) if sub.type == DIRECT_KEY else signed
            if not data or not _made_by(primary, (sub.type,), data, body):
                unproven.add(index)
    return unproven

