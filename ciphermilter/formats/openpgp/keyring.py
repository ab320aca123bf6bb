"""The engine's keys: secret subkeys built into ``cryptography`` key objects once, cached across messages.

pgpy rebuilds and re-validates an RSA private key on every call; a
:class:`Keyring` builds each one once and keeps it until the store's
``data_version()`` changes. Keys come from any object with the key store's
lookup methods (``pgp_secret_keys``, ``all_pgp_secret_keys``,
``pgp_public_keys``, ``data_version``): this package never imports the store.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import pgpy
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa, x25519
from pyasn1.codec.der import encoder

from ciphermilter.core.seams import NO_KEYS, PgpKeys
from ciphermilter.formats.openpgp.packets import ECDH_ALGORITHM, ELGAMAL_ALGORITHMS, RSA_ALGORITHMS
from ciphermilter.formats.openpgp.keys import parse_key
from ciphermilter.formats.openpgp.signer_keys import SignerKey, signer_keys

PrivateKey = rsa.RSAPrivateKey | x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey | int  # int: ElGamal's x
# ECDH (RFC 6637 section 8): the KDF's hash algorithm, the key-wrap key length and the KDF "Param"
EcdhKdf = tuple[type[hashes.HashAlgorithm], int, bytes]


@dataclass
class SecretSubkey:
    """One secret (sub)key able to decrypt session keys, with its ready-to-use private key object."""

    keyid: str
    fingerprint: bytes
    algorithm: int
    material: Any  # pgpy key material (for the ECDH curve, the ElGamal group); pgpy is untyped
    private: PrivateKey  # cryptography private key (RSA, X25519, EC) or the ElGamal exponent
    kdf: EcdhKdf | None = None  # ECDH only
    primary: str = ""  # fingerprint of the primary key (upper-case hex): the key whose readers count


def _ecdh_kdf(material: Any, fingerprint: bytes) -> EcdhKdf:
    """The parts of the ECDH key derivation that depend only on the key, computed once per key."""
    kdf = material.kdf
    param = (
        encoder.encode(material.oid.value)[1:]  # the curve OID with its length octet, without the tag
        + bytes([ECDH_ALGORITHM, 3, 1, int(kdf.halg), int(kdf.encalg)])
        + b"Anonymous Sender    "
        + fingerprint
    )
    return getattr(hashes, kdf.halg.name), kdf.encalg.key_size // 8, param


def algorithm_family(algorithm: int) -> int:
    if algorithm in RSA_ALGORITHMS:
        return 1
    if algorithm in ELGAMAL_ALGORITHMS:
        return 16
    return algorithm


def _secret_subkeys(key: pgpy.PGPKey) -> list[SecretSubkey]:
    """The decryption-capable parts of an unlocked secret key, each built into a private key object once."""
    found = []
    for part in [key, *key.subkeys.values()]:
        material = part._key.keymaterial  # pgpy keeps the key material here; there is no public accessor
        algorithm = int(part.key_algorithm)
        if algorithm_family(algorithm) not in (1, 16, ECDH_ALGORITHM) or part.is_public:
            continue
        if algorithm in ELGAMAL_ALGORITHMS:
            private = int(material.x)
        else:
            private = material.__privkey__()  # the expensive step (RSA validation): cached by the Keyring
        fingerprint = bytes.fromhex(str(part.fingerprint).replace(" ", ""))
        kdf = _ecdh_kdf(material, fingerprint) if algorithm == ECDH_ALGORITHM else None
        found.append(SecretSubkey(part.fingerprint.keyid.upper(), fingerprint, algorithm, material, private, kdf,
                                  primary=str(key.fingerprint).replace(" ", "").upper()))
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
        self._signers: dict[str, list[SignerKey]] = {}

    def _refresh(self) -> None:
        version = self.source.data_version()
        if version != self._version:
            self._version, self._by_keyid, self._all, self._signers = version, {}, None, {}

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

    def public_keys(self, keyid: str) -> list[pgpy.PGPKey]:
        """The keys that may verify a signature: only the ones an administrator imported."""
        return self.source.pgp_public_keys(keyid, imported_only=True)

    def signer_keys(self, keyid: str) -> list[SignerKey]:
        """The (sub)keys of ``keyid`` that may verify a signature, of the keys an administrator imported
        (cached: reading them cost 0.4 ms of a 0.5 ms Ed25519 verification)."""
        self._refresh()
        if keyid not in self._signers:
            # the store still hands out pgpy keys: read into the key model here until it hands out that
            self._signers[keyid] = [part for key in self.public_keys(keyid)
                                    for part in signer_keys(parse_key(bytes(key)), keyid)]
        return self._signers[keyid]

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
