"""The engine's keys: secret subkeys built into ``cryptography`` key objects once, cached across messages.

Building a private key object is the expensive step (RSA validation); a
:class:`Keyring` builds each one once and keeps it until the store's
``data_version()`` changes. Keys come from any object with the key store's
lookup methods (``pgp_secret_keys``, ``all_pgp_secret_keys``,
``pgp_public_keys``, ``data_version``): this package never imports the store.
A key that does not build (an unknown curve, corrupt material, a library
error) is left out with a log line: it costs the other keys nothing, and
``ciphermilter check`` names it.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes

from ciphermilter.core.seams import NO_KEYS, PgpKeys
from ciphermilter.formats.openpgp import algorithms as alg
from ciphermilter.formats.openpgp.keymaterial import PrivateKey, PublicMaterial
from ciphermilter.formats.openpgp.keys import KeyPart, OpenPGPKey
from ciphermilter.formats.openpgp.signer_keys import SignerKey, signer_keys

log = logging.getLogger(__name__)

# ECDH (RFC 6637 section 8): the KDF's hash algorithm, the key-wrap key length and the KDF "Param"
EcdhKdf = tuple[type[hashes.HashAlgorithm], int, bytes]
_KEY_WRAP_CIPHERS = (7, 8, 9)  # AES-128, -192, -256: the only key-wrap ciphers RFC 9580 section 11.5 keeps


@dataclass
class SecretSubkey:
    """One secret (sub)key able to decrypt session keys, with its ready-to-use private key object."""

    keyid: str
    fingerprint: bytes
    algorithm: int
    material: PublicMaterial  # the public half: the ECDH curve and point, the ElGamal group, X25519/X448's point
    private: PrivateKey  # cryptography private key (RSA, EC, X25519, X448) or the ElGamal exponent
    kdf: EcdhKdf | None = None  # ECDH only
    primary: str = ""  # fingerprint of the primary key (upper-case hex): the key whose readers count


def _ecdh_kdf(material: PublicMaterial, fingerprint: bytes) -> EcdhKdf | None:
    """The parts of the ECDH key derivation that depend only on the key, computed once per key."""
    if material.kdf is None or material.curve is None:
        return None
    hash_id, cipher = material.kdf
    if hash_id not in alg.HASHES or cipher not in _KEY_WRAP_CIPHERS:
        return None
    param = (bytes([len(material.curve.oid)]) + material.curve.oid
             + bytes([alg.ECDH, 3, 1, hash_id, cipher]) + b"Anonymous Sender    " + fingerprint)
    return alg.HASHES[hash_id], alg.CIPHERS[cipher][2], param


def algorithm_family(algorithm: int) -> int:
    if algorithm in (alg.RSA, alg.RSA_ENCRYPT_ONLY):
        return alg.RSA
    if algorithm in (alg.ELGAMAL, alg.ELGAMAL_SIGN_ENCRYPT):
        return alg.ELGAMAL
    return algorithm


def _secret_subkey(key: OpenPGPKey, part: KeyPart) -> SecretSubkey | None:
    """The decryption-ready form of one part of a secret key; None (logged) when it cannot serve."""
    try:
        private = part.private_key()  # the expensive step (RSA validation): cached by the Keyring
    except Exception as exc:  # noqa: BLE001  one broken key must not stop the others (issue 16)
        log.error("OpenPGP key %s: subkey %s not usable (%s); skipped", key.fingerprint, part.keyid, exc)
        return None
    kdf = _ecdh_kdf(part.material, part.fingerprint) if part.algorithm == alg.ECDH else None
    if part.algorithm == alg.ECDH and kdf is None:
        log.error("OpenPGP key %s: subkey %s has unsupported ECDH parameters; skipped", key.fingerprint, part.keyid)
        return None
    return SecretSubkey(part.keyid, part.fingerprint, part.algorithm, part.material, private, kdf,
                        primary=key.fingerprint)


def _secret_subkeys(key: OpenPGPKey) -> list[SecretSubkey]:
    """The parts of a secret key that may decrypt (algorithm and key flags), each built once."""
    found = []
    for part in key.parts:
        if part.has_secret and part.can_encrypt:
            subkey = _secret_subkey(key, part)
            if subkey is not None:
                found.append(subkey)
    return found


class Keyring:
    """The engine's view of a key store, caching unlocked key material across messages.

    ``source`` is the key store seen as :class:`PgpKeys`. Everything cached is dropped when
    ``source.data_version()`` changes, so an added or deleted key takes effect
    on the next message.
    """

    def __init__(self, source: PgpKeys):
        self.source = source
        self._version: int | None = None
        self._by_keyid: dict[str, list[SecretSubkey]] = {}
        self._all: list[SecretSubkey] | None = None

    def _refresh(self) -> None:
        version = self.source.data_version()
        if version != self._version:
            self._version, self._by_keyid, self._all = version, {}, None

    def secret_subkeys(self, keyid: str) -> list[SecretSubkey]:
        self._refresh()
        if keyid not in self._by_keyid:
            subkeys = []
            for key in self.source.pgp_secret_keys(keyid):
                subkeys += [s for s in _secret_subkeys(key) if s.keyid == keyid]
            self._by_keyid[keyid] = subkeys
        return self._by_keyid[keyid]

    def all_secret_subkeys(self) -> list[SecretSubkey]:
        self._refresh()
        if self._all is None:
            self._all = [s for key in self.source.all_pgp_secret_keys() for s in _secret_subkeys(key)]
        return self._all

    def public_keys(self, keyid: str) -> list[OpenPGPKey]:
        """The keys that may verify a signature: only the ones an administrator imported."""
        return self.source.pgp_public_keys(keyid, imported_only=True)

    def signer_keys(self, keyid: str) -> list[SignerKey]:
        """The (sub)keys of ``keyid`` that may verify a signature, of the keys an administrator imported."""
        return [part for key in self.public_keys(keyid) for part in signer_keys(key, keyid)]

    def has_unvouched_key(self, keyid: str) -> bool:
        """True when the store holds a key of ``keyid`` at all; asked only once :meth:`public_keys` (the
        admin-imported ones) found none, so such a key arrived in mail (harvested)."""
        return bool(self.source.pgp_public_keys(keyid))


_KEYRINGS: weakref.WeakKeyDictionary[PgpKeys, Keyring] = weakref.WeakKeyDictionary()


def keyring_for(source: PgpKeys | None) -> Keyring:
    """The long-lived :class:`Keyring` of a key store (or of no store), so its cache outlives one message."""
    keys = NO_KEYS if source is None else source
    keyring = _KEYRINGS.get(keys)
    if keyring is None:
        keyring = _KEYRINGS[keys] = Keyring(keys)
    return keyring
