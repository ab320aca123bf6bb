"""The engine's own OpenPGP key model: transferable public and secret keys (RFC 9580 sections 5.5 and 10.1).

pgpy 0.6 reads version 4 keys only, and its brainpool classes break under
cryptography 50 (a brainpool key imported, then failed every decryption that
tried it with a TypeError). This parser reads version 4 and version 6 keys of
every algorithm :mod:`.keymaterial` knows, with ``cryptography`` objects for
the keys. What it cannot use (an unknown curve, a broken point) it keeps with
a reason, so that a key's problem is told at import and by ``ciphermilter
check``, never discovered by a message.

Parsing checks no signature: key flags and expiry are read from the newest
self-signature of each key part (by its issuer). The checks are made at import
(:mod:`ciphermilter.formats.keyfiles` with :mod:`.certifications`, which this
module cannot import): a self-signature the primary key did not make is
dropped there, as are user IDs it did not certify or revoked; a subkey left
without any self-signature is offered no session key. Which parts may sign is
decided when a signature is verified (:func:`.certifications.signing_parts`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from ciphermilter.formats.openpgp import algorithms as alg
from ciphermilter.formats.openpgp import keymaterial, secretkeys
from ciphermilter.formats.openpgp.keymaterial import KeyMaterialError, PrivateKey, PublicKey, PublicMaterial
from ciphermilter.formats.openpgp.armor import enarmor
from ciphermilter.formats.openpgp.packets import OpenPGPError, frame, packets

TAG_SECRET_KEY, TAG_PUBLIC_KEY, TAG_SECRET_SUBKEY, TAG_PUBLIC_SUBKEY = 5, 6, 7, 14
TAG_SIGNATURE, TAG_USER_ID, TAG_USER_ATTRIBUTE = 2, 13, 17
KEY_TAGS = (TAG_SECRET_KEY, TAG_PUBLIC_KEY)
SUBKEY_TAGS = (TAG_SECRET_SUBKEY, TAG_PUBLIC_SUBKEY)
_PUBLIC_TAG = {TAG_SECRET_KEY: TAG_PUBLIC_KEY, TAG_SECRET_SUBKEY: TAG_PUBLIC_SUBKEY}
# Signature types (RFC 9580 section 5.2.1) and subpackets (section 5.2.3.7) the key model reads
CERTIFICATIONS = range(0x10, 0x14)
SUBKEY_BINDING, DIRECT_KEY = 0x18, 0x1F
SUB_CREATED, SUB_KEY_EXPIRES, SUB_ISSUER, SUB_PRIMARY_UID, SUB_KEY_FLAGS, SUB_ISSUER_FINGERPRINT = 2, 9, 16, 25, 27, 33
FLAGS_ENCRYPT = 0x04 | 0x08  # communications, storage


class KeyError_(OpenPGPError):
    """A key that cannot be read at all; ``str()`` says why in words."""


@dataclass
class Subpackets:
    """What a self-signature says of its key (RFC 9580 section 5.2.3.7): only the fields the key model uses."""

    version: int
    type: int
    created: int = 0
    key_expires: int | None = None  # seconds after the key's creation
    key_flags: int | None = None
    primary_uid: bool = False
    issuer: bytes = b""  # issuer key ID (8 octets) or fingerprint, as the signature names it


@dataclass
class KeyPart:
    """One primary key or subkey: its public facts, its key object, and for a secret key its secret fields."""

    version: int
    algorithm: int
    created: int  # seconds since the epoch
    fingerprint: bytes
    public_body: bytes  # the public-key packet body: what fingerprints and signatures hash
    material: PublicMaterial
    primary: bool
    secret: secretkeys.SecretFields | None = None
    flags: int | None = None  # key flags of its newest self-signature; None: none said
    expires: int | None = None  # seconds after ``created``; None: never
    signed_at: int = -1  # creation time of the self-signature that set ``flags`` and ``expires``
    _private: PrivateKey | None = field(default=None, repr=False)

    @property
    def keyid(self) -> str:
        """16 upper-case hex digits: the first 8 octets of a v6 fingerprint, the last 8 of a v4 one."""
        octets = self.fingerprint[:8] if self.version == 6 else self.fingerprint[-8:]
        return octets.hex().upper()

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex().upper()

    @property
    def public_key(self) -> PublicKey | None:
        return self.material.key

    @property
    def unusable(self) -> str | None:
        """Why this part's public material makes no usable key, in words; None when it does."""
        return self.material.unusable

    @property
    def can_encrypt(self) -> bool:
        """Its algorithm encrypts, a subkey is bound (a self-signature applied: at import only verified ones stay,
        certifications.unproven_self_signatures), and the key flags (if any) allow it (RFC 9580 5.2.3.29)."""
        if self.algorithm not in alg.ENCRYPTING or (not self.primary and self.signed_at < 0):
            return False
        return self.flags is None or bool(self.flags & FLAGS_ENCRYPT)

    @property
    def has_secret(self) -> bool:
        return self.secret is not None and self.secret.present

    def private_key(self) -> PrivateKey:
        """The private key object, built once (RSA validation is the expensive step); KeyMaterialError when
        the secret is protected, absent or does not make a key."""
        if self._private is None:
            if self.secret is None or not self.secret.present:
                raise KeyMaterialError("no secret key material")
            if self.secret.usage != 0:
                raise KeyMaterialError("the secret key is passphrase protected")
            self._private = keymaterial.private_key(self.material, self.secret.data)
        return self._private

    def unlock(self, passphrase: str) -> None:
        """Decrypt a protected secret in place (S2K, RFC 9580 section 3.7); KeyMaterialError on a wrong
        passphrase. Afterwards the part is an unprotected one (:meth:`clear_body` writes it)."""
        if self.secret is None or not self.secret.present or self.secret.usage == 0:
            return
        clear = secretkeys.unlock(self.secret, passphrase, self.version, self.public_body, self.primary,
                                  lambda data: keymaterial.secret_length(self.material, data))
        self.secret = secretkeys.SecretFields(usage=0, data=clear)
        if self.unusable is None:
            self.private_key()  # a wrong key that passed the checksum by chance is refused here

    def clear_body(self) -> bytes:
        """The secret-key packet body with the secret in the clear (S2K usage 0): what the store seals."""
        assert self.secret is not None and self.secret.usage == 0
        return secretkeys.clear_body(self.version, self.public_body, self.secret.data)


@dataclass(eq=False)  # compared and hashed by identity: verify.py memoises per key object
class OpenPGPKey:
    """A transferable public or secret key: its primary key, subkeys and user IDs, and its packets."""

    primary: KeyPart
    subkeys: list[KeyPart]
    user_ids: list[str]  # primary user ID first, then in packet order
    packets: list[tuple[int, bytes]]  # (tag, body) as read, secret packets included
    part_at: dict[int, KeyPart] = field(default_factory=dict)  # index in ``packets`` -> the part it holds

    @property
    def version(self) -> int:
        return self.primary.version

    @property
    def fingerprint(self) -> str:
        return self.primary.fingerprint_hex

    @property
    def keyid(self) -> str:
        return self.primary.keyid

    @property
    def is_public(self) -> bool:
        return not any(tag in (TAG_SECRET_KEY, TAG_SECRET_SUBKEY) for tag, _ in self.packets)

    @property
    def parts(self) -> list[KeyPart]:
        return [self.primary, *self.subkeys]

    @property
    def key_ids(self) -> list[str]:
        return [part.keyid for part in self.parts]

    @property
    def is_protected(self) -> bool:
        return any(part.secret is not None and part.secret.present and part.secret.usage != 0 for part in self.parts)

    @property
    def expires(self) -> int | None:
        """When the primary key expires, seconds since the epoch; None: never."""
        return None if self.primary.expires is None else self.primary.created + self.primary.expires

    def unusable_parts(self) -> list[str]:
        """One line for each part that cannot serve: unusable public material, or a secret that does not
        make a private key (building it here is what a message would otherwise find out)."""
        problems = []
        for part in self.parts:
            label = f"{'primary key' if part.primary else 'subkey'} {part.keyid}"
            if part.unusable is not None:
                problems.append(f"{label}: {part.unusable}")
            elif part.has_secret and part.secret is not None and part.secret.usage == 0:
                try:
                    part.private_key()
                except KeyMaterialError as exc:
                    problems.append(f"{label}: {exc}")
        return problems

    def unlock(self, passphrase: str) -> None:
        for part in self.parts:
            part.unlock(passphrase)

    def to_bytes(self, passphrase: str | None = None) -> bytes:
        """The key's packets, secret ones as they stand (cleared by :meth:`unlock`), or protected anew with
        ``passphrase`` (:func:`secretkeys.protect`: what an export writes)."""
        out = []
        for index, (tag, body) in enumerate(self.packets):
            part = self.part_at.get(index)
            if part is not None and part.secret is not None and part.secret.present and part.secret.usage == 0:
                body = part.clear_body() if passphrase is None else secretkeys.protect(
                    part.version, part.public_body, part.primary, part.secret.data, passphrase)
            out.append(frame(tag, body))
        return b"".join(out)

    def armored(self, passphrase: str | None = None) -> str:
        """The key in ASCII armor (secret keys under ``passphrase`` when one is given)."""
        kind = "PUBLIC KEY BLOCK" if self.is_public else "PRIVATE KEY BLOCK"
        return enarmor(kind, self.to_bytes(passphrase))

    def public_bytes(self) -> bytes:
        """The transferable public key: secret-key packets written as the public-key packets they hold."""
        out = []
        for index, (tag, body) in enumerate(self.packets):
            part = self.part_at.get(index)
            out.append(frame(_PUBLIC_TAG[tag], part.public_body) if part is not None and tag in _PUBLIC_TAG
                       else frame(tag, body))
        return b"".join(out)

    def without_packets(self, dropped: set[int]) -> OpenPGPKey:
        """The same key without the packets at the indexes ``dropped`` (of :attr:`packets`)."""
        return _assemble([packet for index, packet in enumerate(self.packets) if index not in dropped])

    def without_user_ids(self, dropped: set[bytes]) -> OpenPGPKey:
        """The same key without the user ID packets ``dropped`` (their bodies) and the signatures over them."""
        kept: list[tuple[int, bytes]] = []
        skipping = False
        for tag, body in self.packets:
            if tag != TAG_SIGNATURE:
                skipping = tag == TAG_USER_ID and body in dropped
            if not skipping:
                kept.append((tag, body))
        return _assemble(kept)


# ---------------------------------------------------------------------------- parsing


def _key_packets(data: bytes) -> Iterator[tuple[int, bytes]]:
    try:
        for packet in packets(data):
            if packet.streamed:
                raise KeyError_("a partial or indeterminate length in a key")
            yield packet.tag, packet.body
    except KeyError_:
        raise
    except OpenPGPError as exc:
        raise KeyError_(f"truncated or corrupt OpenPGP data ({exc})") from None


def parse_keys(data: bytes) -> list[OpenPGPKey]:
    """Every transferable key of a (binary) keyring; KeyError_ when the data is not one."""
    keys: list[list[tuple[int, bytes]]] = []
    for tag, body in _key_packets(data):
        if tag in KEY_TAGS:
            keys.append([])
        elif not keys:
            raise KeyError_("OpenPGP data does not start with a key packet")
        keys[-1].append((tag, body))
    return [_assemble(key) for key in keys]


def parse_key(data: bytes) -> OpenPGPKey:
    """Exactly one transferable key."""
    keys = parse_keys(data)
    if len(keys) != 1:
        raise KeyError_(f"expected one OpenPGP key, found {len(keys)}")
    return keys[0]


def _assemble(key_packets: list[tuple[int, bytes]]) -> OpenPGPKey:
    tag, body = key_packets[0]
    primary = read_key_packet(body, secret=tag == TAG_SECRET_KEY, primary=True)
    subkeys: list[KeyPart] = []
    user_ids: list[tuple[bool, str]] = []
    owner: KeyPart | None = primary  # the part whose self-signatures follow
    part_at = {0: primary}
    uid_primary = False
    for index, (tag, body) in enumerate(key_packets[1:], start=1):
        if tag in SUBKEY_TAGS:
            owner = part_at[index] = read_key_packet(body, secret=tag == TAG_SECRET_SUBKEY, primary=False)
            subkeys.append(owner)
        elif tag == TAG_USER_ID:
            owner, uid_primary = primary, False
            user_ids.append((False, user_id_text(body)))
        elif tag == TAG_USER_ATTRIBUTE:
            owner = primary
        elif tag == TAG_SIGNATURE and owner is not None:
            sub = signature_subpackets(body)
            if sub is not None and is_self_signature(sub, owner, primary):
                _apply_self_signature(owner, sub)
                if sub.primary_uid and user_ids and not uid_primary:
                    uid_primary, user_ids[-1] = True, (True, user_ids[-1][1])
    ordered = [uid for is_primary, uid in user_ids if is_primary] + [uid for is_primary, uid in user_ids
                                                                     if not is_primary]
    return OpenPGPKey(primary, subkeys, ordered, key_packets, part_at)


def is_self_signature(sub: Subpackets, owner: KeyPart, primary: KeyPart) -> bool:
    """A signature by the primary key on ``owner`` of the kind that says what ``owner`` may do."""
    if sub.issuer and not (primary.fingerprint.endswith(sub.issuer) or primary.fingerprint.startswith(sub.issuer)
                           or sub.issuer == primary.fingerprint):
        return False
    kinds = (SUBKEY_BINDING,) if not owner.primary else (DIRECT_KEY, *CERTIFICATIONS)
    return sub.type in kinds


def _apply_self_signature(part: KeyPart, sub: Subpackets) -> None:
    """The newest self-signature speaks for the part (RFC 9580 section 5.2.3.10)."""
    if part.signed_at > sub.created:
        return
    part.signed_at = sub.created
    if sub.key_flags is not None:
        part.flags = sub.key_flags
    part.expires = sub.key_expires


def user_id_text(body: bytes) -> str:
    """A user ID packet's text: UTF-8, else byte for byte (what pgpy's ``PGPUID.userid`` gave)."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("latin-1")


def read_key_packet(body: bytes, *, secret: bool, primary: bool) -> KeyPart:
    """A public-key or secret-key packet (RFC 9580 sections 5.5.2 and 5.5.3)."""
    if len(body) < 6:
        raise KeyError_("truncated key packet")
    version = body[0]
    if version not in (4, 6):
        raise KeyError_(f"unsupported key version {version}")
    created, algorithm = int.from_bytes(body[1:5], "big"), body[5]
    try:
        if version == 6:
            if len(body) < 10:
                raise KeyError_("truncated key packet")
            length = int.from_bytes(body[6:10], "big")
            if 10 + length > len(body):
                raise KeyError_("key material longer than its packet")
            material, end = keymaterial.read_public(algorithm, body, 10, 10 + length)
            if end != 10 + length:
                raise KeyError_("key material length does not match its fields")
        else:
            material, end = keymaterial.read_public(algorithm, body, 6, len(body))
    except KeyMaterialError as exc:
        if algorithm in alg.ALGORITHM_NAMES or (secret and version != 6):
            raise KeyError_(f"{exc} in key packet") from None
        # An algorithm we do not know (a post-quantum one, say): a public key's packet is its material, a v6
        # key says its length, so the part still has a fingerprint and stays in the key, unusable
        material = PublicMaterial(algorithm, unusable=str(exc))
        end = 10 + int.from_bytes(body[6:10], "big") if version == 6 else len(body)
    if not secret and end != len(body):
        raise KeyError_("trailing data in public key packet")
    public_body = body[:end]
    part = KeyPart(version, algorithm, created, fingerprint(version, public_body), public_body, material, primary)
    if secret:
        try:
            part.secret = secretkeys.parse(version, body, end)
        except KeyMaterialError as exc:
            raise KeyError_(str(exc)) from None
    return part


def fingerprint(version: int, public_body: bytes) -> bytes:
    """v4: SHA-1 over 0x99, a 2-octet length and the body; v6: SHA-256 over 0x9B, a 4-octet length and the body."""
    if version == 6:
        return hashlib.sha256(b"\x9b" + len(public_body).to_bytes(4, "big") + public_body).digest()
    return hashlib.sha1(b"\x99" + len(public_body).to_bytes(2, "big") + public_body).digest()


def signature_subpackets(body: bytes) -> Subpackets | None:
    """The hashed subpackets of a v4 or v6 signature (the unhashed area only for the issuer); None for
    other versions or a malformed area."""
    if len(body) < 4 or body[0] not in (4, 6):
        return None
    width = 2 if body[0] == 4 else 4
    pos = 4
    hashed_end = pos + width + int.from_bytes(body[pos:pos + width], "big")
    if hashed_end + width > len(body):
        return None
    unhashed_end = hashed_end + width + int.from_bytes(body[hashed_end:hashed_end + width], "big")
    if unhashed_end > len(body):
        return None
    sub = Subpackets(body[0], body[1])
    for subtype, value in _subpacket_area(body[pos + width:hashed_end]):
        _read_subpacket(sub, subtype, value)
    for subtype, value in _subpacket_area(body[hashed_end + width:unhashed_end]):
        if subtype in (SUB_ISSUER, SUB_ISSUER_FINGERPRINT) and not sub.issuer:
            _read_subpacket(sub, subtype, value)
    return sub


def _read_subpacket(sub: Subpackets, subtype: int, value: bytes) -> None:
    if subtype == SUB_CREATED and len(value) == 4:
        sub.created = int.from_bytes(value, "big")
    elif subtype == SUB_KEY_EXPIRES and len(value) == 4:
        sub.key_expires = int.from_bytes(value, "big") or None
    elif subtype == SUB_KEY_FLAGS and value:
        sub.key_flags = value[0]
    elif subtype == SUB_PRIMARY_UID and value:
        sub.primary_uid = value[0] != 0
    elif subtype == SUB_ISSUER and len(value) == 8:
        sub.issuer = value
    elif subtype == SUB_ISSUER_FINGERPRINT and len(value) > 1:
        sub.issuer = value[1:]


def _subpacket_area(area: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, value) of each subpacket (RFC 9580 section 5.2.3.7); stops at a malformed length."""
    pos = 0
    while pos < len(area):
        first = area[pos]
        if first < 192:
            size, pos = first, pos + 1
        elif first < 255:
            if pos + 1 >= len(area):
                return
            size, pos = ((first - 192) << 8) + area[pos + 1] + 192, pos + 2
        else:
            size, pos = int.from_bytes(area[pos + 1:pos + 5], "big"), pos + 5
        if size == 0 or pos + size > len(area):
            return
        yield area[pos] & 0x7F, area[pos + 1:pos + size]
        pos += size
