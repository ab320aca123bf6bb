"""The public-key half of a signature check: a digest, the signature's fields, a ``cryptography`` key.

RFC 9580 section 5.2.3.x gives each algorithm's fields: RSA one MPI, DSA
and ECDSA two (r, s), legacy EdDSA two (r, s as MPIs of the 64 native
octets), Ed25519 and Ed448 their native 64 and 114 octets. Every algorithm
signs the digest, never the data: the hash was computed by
:meth:`Signature.digest`, so ``Prehashed`` tells ``cryptography`` not to hash
again (EdDSA takes the digest as its message).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from ciphermilter.formats.openpgp.algorithms import DSA, ECDSA, ED448, ED25519, EDDSA_LEGACY, RSA, RSA_SIGN_ONLY
from ciphermilter.formats.openpgp.keymaterial import PublicKey
from ciphermilter.formats.openpgp.packets import OpenPGPError, _mpi_bytes
from ciphermilter.formats.openpgp.signature import Signature, UnreadableSignature

_PREHASHED: dict[str, hashes.HashAlgorithm] = {
    "SHA-1": hashes.SHA1(), "SHA-256": hashes.SHA256(), "SHA-384": hashes.SHA384(), "SHA-512": hashes.SHA512(),
    "SHA-224": hashes.SHA224(), "SHA3-256": hashes.SHA3_256(), "SHA3-512": hashes.SHA3_512()}
_NATIVE_SIZE = {ED25519: 64, ED448: 114}
# the key object each signature algorithm needs; RSA 2 is encrypt-only, ElGamal and ECDH do not sign
_KEY_TYPES: dict[int, type] = {RSA: rsa.RSAPublicKey, RSA_SIGN_ONLY: rsa.RSAPublicKey, DSA: dsa.DSAPublicKey,
                               ECDSA: ec.EllipticCurvePublicKey, EDDSA_LEGACY: ed25519.Ed25519PublicKey,
                               ED25519: ed25519.Ed25519PublicKey, ED448: ed448.Ed448PublicKey}


def _mpis(material: bytes, count: int) -> list[bytes]:
    """The signature's MPIs, which must fill its fields exactly (nothing unsigned may ride along)."""
    found, pos = [], 0
    try:
        for _ in range(count):
            value, pos = _mpi_bytes(material, pos)
            found.append(value)
    except OpenPGPError:
        raise UnreadableSignature("truncated signature packet (signature fields)") from None
    if pos != len(material):
        raise UnreadableSignature("signature packet with data after its signature fields")
    return found


def _two_mpis(material: bytes) -> tuple[bytes, bytes]:
    first, second = _mpis(material, 2)
    return first, second


def _dss(material: bytes) -> bytes:
    r, s = _two_mpis(material)
    return encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))


def _native(signature: Signature) -> bytes:
    size = _NATIVE_SIZE[signature.algorithm]
    if len(signature.material) != size:
        raise UnreadableSignature(f"signature of {len(signature.material)} octets, not {size}, "
                                  f"for algorithm {signature.algorithm}")
    return signature.material


def _legacy_eddsa(material: bytes) -> bytes:
    """RFC 9580 section 5.2.3.3: r and s are MPIs, so their leading zero octets were dropped."""
    r, s = _two_mpis(material)
    if len(r) > 32 or len(s) > 32:
        raise UnreadableSignature("malformed EdDSA signature")
    return r.rjust(32, b"\0") + s.rjust(32, b"\0")


def _rsa(material: bytes, public: rsa.RSAPublicKey) -> bytes:
    """The signature padded to the modulus length (an MPI drops leading zeros; OpenSSL wants them)."""
    (value,) = _mpis(material, 1)
    return value.rjust((public.key_size + 7) // 8, b"\0")


def key_fits(algorithm: int, public: PublicKey) -> bool:
    """True when ``public`` is the kind of key a signature of ``algorithm`` needs."""
    kind = _KEY_TYPES.get(algorithm)
    return kind is not None and isinstance(public, kind)


def verifies(signature: Signature, digest: bytes, public: PublicKey) -> bool:
    """True when the signature's fields verify over ``digest`` with ``public`` (which :func:`key_fits`).

    :class:`UnreadableSignature` when the fields are malformed; False for a
    signature made by another key or over other data.
    """
    prehashed = Prehashed(_PREHASHED[signature.hash_name])
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(_rsa(signature.material, public), digest, padding.PKCS1v15(), prehashed)
        elif isinstance(public, dsa.DSAPublicKey):
            public.verify(_dss(signature.material), digest, prehashed)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(_dss(signature.material), digest, ec.ECDSA(prehashed))
        elif isinstance(public, ed25519.Ed25519PublicKey) and signature.algorithm == EDDSA_LEGACY:
            public.verify(_legacy_eddsa(signature.material), digest)
        elif isinstance(public, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            public.verify(_native(signature), digest)
        else:
            return False  # X25519, X448: encryption keys (:func:`key_fits` said so first)
    except InvalidSignature:
        return False
    return True
