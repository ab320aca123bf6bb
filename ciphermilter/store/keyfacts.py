"""What an admin reads about a stored key before trusting it with mail, as ``gpg --list-keys`` shows it:
algorithm and size, creation and expiry, expired and revoked; and the earliest expiry of the keys that
decrypt (the metric ``ciphermilter_key_earliest_expiry_timestamp_seconds``).

Read from the stored certificate or public key when asked, not kept in columns: a listing parses each key once
(0.1 ms an X.509 certificate, under 1 ms an OpenPGP key), and nothing needs migrating when a fact is added.
An X.509 certificate is never marked revoked: the store holds no CRL and does no OCSP.
"""

from __future__ import annotations

import datetime
from typing import TypedDict

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519

from ciphermilter.formats.openpgp import keys as pgp_keys
from ciphermilter.formats.openpgp.algorithms import ALGORITHM_NAMES
from ciphermilter.formats.openpgp.certifications import signing_parts
from ciphermilter.formats.openpgp.keymaterial import PublicKey
from ciphermilter.store.keystore import KeyStore

UTC = datetime.timezone.utc
# gpg's names for the curves (``gpg --list-keys`` shows nistp256, cv25519...).
_CURVES = {"secp256r1": "nistp256", "secp384r1": "nistp384", "secp521r1": "nistp521"}
_NAMED = ((ed25519.Ed25519PublicKey, "ed25519"), (ed448.Ed448PublicKey, "ed448"),
          (x25519.X25519PublicKey, "cv25519"), (x448.X448PublicKey, "cv448"))


class KeyFacts(TypedDict):
    algorithm: str  # rsa3072, nistp256, ed25519, ... as gpg writes them
    created: str  # ISO 8601 date and time, UTC
    expires: str | None  # None: never
    expired: bool
    revoked: bool


def algorithm(key: PublicKey | None, fallback: str) -> str:
    """A public key's algorithm and size as gpg names it (``rsa3072``, ``nistp256``, ``ed25519``)."""
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa{key.key_size}"
    if isinstance(key, dsa.DSAPublicKey):
        return f"dsa{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _CURVES.get(key.curve.name, key.curve.name)
    return next((name for kind, name in _NAMED if isinstance(key, kind)), fallback)


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def certificate_facts(der: bytes, now: datetime.datetime) -> KeyFacts:
    certificate = x509.load_der_x509_certificate(der)
    try:
        public: PublicKey | None = certificate.public_key()  # type: ignore[assignment]  # X.509 keys we read
    except (ValueError, x509.UnsupportedGeneralNameType):  # an algorithm cryptography does not load
        public = None
    expires = certificate.not_valid_after_utc
    return {"algorithm": algorithm(public, certificate.public_key_algorithm_oid.dotted_string
                                   if public is None else "unknown"),
            "created": _iso(certificate.not_valid_before_utc), "expires": _iso(expires),
            "expired": expires < now, "revoked": False}


def pgp_facts(public_key: bytes, now: datetime.datetime) -> KeyFacts:
    key = pgp_keys.parse_key(public_key)
    primary = key.primary
    expires = None if key.expires is None else datetime.datetime.fromtimestamp(key.expires, UTC)
    return {"algorithm": algorithm(primary.public_key, ALGORITHM_NAMES.get(primary.algorithm, "unknown").lower()),
            "created": _iso(datetime.datetime.fromtimestamp(primary.created, UTC)),
            "expires": None if expires is None else _iso(expires),
            "expired": expires is not None and expires < now, "revoked": not signing_parts(key)}


def earliest_expiry(store: KeyStore, now: datetime.datetime) -> datetime.datetime | None:
    """When the first private key that still decrypts expires: certificates we hold the private key of and
    OpenPGP secret keys, the expired ones left out (an old key stays for old mail and must not hold the alarm
    on forever); None when none expires."""
    moments = [datetime.datetime.fromisoformat(row["not_after"]) for row in store.rows(
        "SELECT c.not_after FROM certificates c JOIN smime_keys k ON k.spki_sha256 = c.spki_sha256")]
    for row in store.rows("SELECT public_key FROM pgp_keys WHERE sealed_secret IS NOT NULL"):
        expires = pgp_keys.parse_key(row["public_key"]).expires
        if expires is not None:
            moments.append(datetime.datetime.fromtimestamp(expires, UTC))
    future = [moment if moment.tzinfo else moment.replace(tzinfo=UTC) for moment in moments]
    return min((moment for moment in future if moment > now), default=None)
