"""The (sub)keys that may have made a signature, as ``cryptography`` public keys with their facts.

The key store hands out pgpy keys; pgpy's own public key objects cannot be
used as they are (its brainpool keys fail under cryptography 50), so each
key part is rebuilt here from its numbers, once per verification.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pgpy
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from ciphermilter.formats.openpgp.signing import DSA, ECDSA, EDDSA_LEGACY, RSA_SIGNING, PublicKey

# RFC 9580 section 9.2, the curves cryptography has; an ECDSA key on another curve cannot verify
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "1.2.840.10045.3.1.7": ec.SECP256R1, "1.3.132.0.34": ec.SECP384R1, "1.3.132.0.35": ec.SECP521R1,
    "1.3.36.3.3.2.8.1.1.7": ec.BrainpoolP256R1, "1.3.36.3.3.2.8.1.1.11": ec.BrainpoolP384R1,
    "1.3.36.3.3.2.8.1.1.13": ec.BrainpoolP512R1, "1.3.132.0.10": ec.SECP256K1,
}
_ED25519_LEGACY = "1.3.6.1.4.1.11591.15.1"
_BARE_ADDRESS = re.compile(r"<?([^\s<>@]+@[^\s<>@]+)>?")


@dataclass
class SignerKey:
    """One (sub)key that a signature's issuer names."""

    keyid: str
    fingerprint: bytes
    version: int
    algorithm: int
    created: int  # seconds since the epoch
    expired: bool
    public: PublicKey | None  # None: a key of an algorithm or curve we cannot verify with
    emails: list[str] = field(default_factory=list)  # of the whole key's user IDs


def _public_key(algorithm: int, material: Any) -> PublicKey | None:
    """The ``cryptography`` key of pgpy's key material (pgpy is untyped), or None when we have none."""
    if algorithm in RSA_SIGNING:
        return rsa.RSAPublicNumbers(int(material.e), int(material.n)).public_key()
    if algorithm == DSA:
        group = dsa.DSAParameterNumbers(int(material.p), int(material.q), int(material.g))
        return dsa.DSAPublicNumbers(int(material.y), group).public_key()
    curve = _CURVES.get(str(material.oid.value)) if algorithm == ECDSA else None
    if curve is not None:
        return ec.EllipticCurvePublicNumbers(int(material.p.x), int(material.p.y), curve()).public_key()
    if algorithm == EDDSA_LEGACY and str(material.oid.value) == _ED25519_LEGACY:
        return ed25519.Ed25519PublicKey.from_public_bytes(bytes(material.p.x))
    return None


def key_emails(key: pgpy.PGPKey) -> list[str]:
    """The addresses of the key's user IDs, lower case: "Name <addr>", and the bare "addr" or "<addr>" that
    gpg --quick-gen-key and Autocrypt clients write (pgpy 0.6 reads no address out of those)."""
    emails = []
    for uid in key.userids:
        bare = _BARE_ADDRESS.fullmatch((uid.userid or "").strip()) if not uid.email else None
        email = (bare.group(1) if bare else uid.email or "").strip().lower()
        if email and email not in emails:
            emails.append(email)
    return emails


def signer_keys(key: pgpy.PGPKey, keyid: str) -> list[SignerKey]:
    """The parts of ``key`` (primary and subkeys) whose key ID is ``keyid``."""
    emails = key_emails(key)
    found = []
    for part in [key, *key.subkeys.values()]:
        if part.fingerprint.keyid.upper() != keyid:
            continue
        algorithm = int(part.key_algorithm)
        try:
            public = _public_key(algorithm, part._key.keymaterial)  # pgpy has no public accessor for it
        except (ValueError, AttributeError):  # numbers that are no key (a point off its curve, ...)
            public = None
        found.append(SignerKey(keyid, bytes.fromhex(str(part.fingerprint).replace(" ", "")), 4, algorithm,
                               int(part.created.timestamp()), bool(part.is_expired or key.is_expired), public,
                               emails))
    return found
