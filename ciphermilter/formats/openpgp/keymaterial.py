"""Algorithm-specific key material (RFC 9580 sections 5.5.5 and 5.5.5.x) as ``cryptography`` key objects.

The public fields of a key packet become a ``cryptography`` public key once,
when the key is parsed; the secret fields become a private key object on
request (:func:`private_key`), the expensive step (RSA validation, 50 ms for
a 3072-bit key) that the engine's :class:`~.keyring.Keyring` does once per key.
A curve or algorithm we cannot use leaves the material readable (its length
is known, so the fingerprint is right) with ``unusable`` saying why, in words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519

from ciphermilter.formats.openpgp import algorithms as alg
from ciphermilter.formats.openpgp.packets import OpenPGPError


class KeyMaterialError(OpenPGPError):
    """Key material that is cut short or does not make a key: the reason, in words."""


@dataclass(frozen=True)
class Curve:
    """A named curve of ECDH, ECDSA or EdDSA legacy keys (RFC 9580 section 9.2)."""

    name: str
    oid: bytes  # the DER content octets, as the key packet carries them
    ec_curve: type[ec.EllipticCurve] | None = None  # None: a 25519 curve in its legacy encoding


CURVES = {curve.oid: curve for curve in (
    Curve("NIST P-256", bytes.fromhex("2a8648ce3d030107"), ec.SECP256R1),
    Curve("NIST P-384", bytes.fromhex("2b81040022"), ec.SECP384R1),
    Curve("NIST P-521", bytes.fromhex("2b81040023"), ec.SECP521R1),
    Curve("brainpoolP256r1", bytes.fromhex("2b2403030208010107"), ec.BrainpoolP256R1),
    Curve("brainpoolP384r1", bytes.fromhex("2b240303020801010b"), ec.BrainpoolP384R1),
    Curve("brainpoolP512r1", bytes.fromhex("2b240303020801010d"), ec.BrainpoolP512R1),
    Curve("Ed25519", bytes.fromhex("2b06010401da470f01")),
    Curve("Curve25519", bytes.fromhex("2b060104019755010501")),
)}
ED25519_LEGACY, CURVE25519_LEGACY = bytes.fromhex("2b06010401da470f01"), bytes.fromhex("2b060104019755010501")
# Native key sizes (RFC 9580 sections 5.5.5.7 to 5.5.5.10): (public octets, secret octets)
NATIVE_SIZES = {alg.X25519: (32, 32), alg.X448: (56, 56), alg.ED25519: (32, 32), alg.ED448: (57, 57)}

# The largest RSA modulus, DSA or ElGamal prime a key may have (what the S/MIME engine allows a signer): building
# and using a larger one is a cheap way to burn CPU, and no implementation makes them (gpg's limit is 4096).
MAX_KEY_BITS = 16384

PublicKey = (rsa.RSAPublicKey | dsa.DSAPublicKey | ec.EllipticCurvePublicKey | x25519.X25519PublicKey
             | x448.X448PublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
PrivateKey = (rsa.RSAPrivateKey | dsa.DSAPrivateKey | ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey
              | x448.X448PrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey | int)  # int: ElGamal's x


@dataclass
class PublicMaterial:
    """The public fields of one key packet, read."""

    algorithm: int
    key: PublicKey | None = None  # None for ElGamal (no library key) and for unusable material
    curve: Curve | None = None  # ECDH, ECDSA, EdDSA legacy
    kdf: tuple[int, int] | None = None  # ECDH (RFC 6637 section 9): (hash algorithm, key-wrap cipher)
    elgamal: tuple[int, int, int] | None = None  # (p, g, y)
    native: bytes = b""  # the public octets the session-key derivation of ECDH, X25519 and X448 takes
    unusable: str | None = None  # why this material makes no key we can use, in words


class Reader:
    """A cursor over key material; every read past the end is a :class:`KeyMaterialError`."""

    def __init__(self, data: bytes, pos: int, end: int, truncated: str = "truncated key material"):
        self.data, self.pos, self.end, self.truncated = data, pos, end, truncated

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > self.end:
            raise KeyMaterialError(self.truncated)
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def octet(self) -> int:
        return self.take(1)[0]

    def mpi_bytes(self) -> bytes:
        bits = int.from_bytes(self.take(2), "big")
        return self.take((bits + 7) // 8)

    def mpi(self) -> int:
        return int.from_bytes(self.mpi_bytes(), "big")


def read_public(algorithm: int, data: bytes, pos: int, end: int) -> tuple[PublicMaterial, int]:
    """The public material of ``algorithm`` in ``data[pos:end]``: (material, position after it)."""
    reader = Reader(data, pos, end)
    material = PublicMaterial(algorithm)
    if algorithm in (alg.RSA, alg.RSA_ENCRYPT_ONLY, alg.RSA_SIGN_ONLY):
        n, e = reader.mpi(), reader.mpi()
        material.key = _build(material, lambda: rsa.RSAPublicNumbers(e, _bounded(n)).public_key())
    elif algorithm == alg.DSA:
        p, q, g, y = reader.mpi(), reader.mpi(), reader.mpi(), reader.mpi()
        material.key = _build(material, lambda: dsa.DSAPublicNumbers(y, dsa.DSAParameterNumbers(_bounded(p), q, g))
                              .public_key())
    elif algorithm in (alg.ELGAMAL, alg.ELGAMAL_SIGN_ENCRYPT):
        p, g, y = reader.mpi(), reader.mpi(), reader.mpi()
        if p.bit_length() > MAX_KEY_BITS:
            material.unusable = _too_large(p)
        else:
            material.elgamal = (p, g, y)
    elif algorithm in (alg.ECDH, alg.ECDSA, alg.EDDSA_LEGACY):
        _read_curve_key(reader, material)
    elif algorithm in NATIVE_SIZES:
        material.native = reader.take(NATIVE_SIZES[algorithm][0])
        material.key = _build(material, lambda: _native_public(algorithm, material.native))
    else:
        raise KeyMaterialError(f"unsupported public-key algorithm {algorithm}")
    return material, reader.pos


def _read_curve_key(reader: Reader, material: PublicMaterial) -> None:
    size = reader.octet()
    if size in (0, 0xFF):
        raise KeyMaterialError("reserved curve OID length")
    oid = reader.take(size)
    point = reader.mpi_bytes()
    if material.algorithm == alg.ECDH:
        kdf = reader.take(reader.octet())
        if len(kdf) < 3 or kdf[0] != 1:
            raise KeyMaterialError("unsupported ECDH KDF parameters")
        material.kdf = (kdf[1], kdf[2])
    material.native = point
    curve = CURVES.get(oid)
    if curve is None:
        material.unusable = f"unsupported curve (OID {_dotted(oid)})"
        return
    material.curve = curve
    material.key = _build(material, lambda: _curve_public(material.algorithm, curve, point))


def _too_large(number: int) -> str:
    return f"a {number.bit_length()}-bit key, above the {MAX_KEY_BITS} bits this engine uses"


def _bounded(number: int) -> int:
    """``number`` (a modulus or prime), or KeyMaterialError when it is above :data:`MAX_KEY_BITS`."""
    if number.bit_length() > MAX_KEY_BITS:
        raise KeyMaterialError(_too_large(number))
    return number


def _curve_public(algorithm: int, curve: Curve, point: bytes) -> PublicKey:
    if curve.ec_curve is not None:
        if algorithm == alg.EDDSA_LEGACY:
            raise KeyMaterialError(f"EdDSA on {curve.name} is not defined")
        return ec.EllipticCurvePublicKey.from_encoded_point(curve.ec_curve(), point)
    if len(point) != 33 or point[0] != 0x40:  # the 25519 curves: a 0x40 prefix and the native point
        raise KeyMaterialError(f"malformed {curve.name} point")
    if curve.oid == ED25519_LEGACY and algorithm == alg.EDDSA_LEGACY:
        return ed25519.Ed25519PublicKey.from_public_bytes(point[1:])
    if curve.oid == CURVE25519_LEGACY and algorithm == alg.ECDH:
        return x25519.X25519PublicKey.from_public_bytes(point[1:])
    raise KeyMaterialError(f"{alg.ALGORITHM_NAMES[algorithm]} on {curve.name} is not defined")


def _native_public(algorithm: int, octets: bytes) -> PublicKey:
    builders: dict[int, Callable[[bytes], PublicKey]] = {alg.X25519: x25519.X25519PublicKey.from_public_bytes, alg.X448: x448.X448PublicKey.from_public_bytes,
                alg.ED25519: ed25519.Ed25519PublicKey.from_public_bytes,
                alg.ED448: ed448.Ed448PublicKey.from_public_bytes}
    return builders[algorithm](octets)


def _build(material: PublicMaterial, make: Callable[[], PublicKey]) -> PublicKey | None:
    """``make()``, or None with ``material.unusable`` set when the library refuses the numbers or the point."""
    try:
        return make()
    except KeyMaterialError as exc:
        material.unusable = str(exc)
    except (ValueError, UnsupportedAlgorithm) as exc:
        material.unusable = f"invalid {alg.ALGORITHM_NAMES.get(material.algorithm, 'key')} material ({exc})"[:120]
    return None


def _dotted(oid: bytes) -> str:
    """An OID's DER content octets in dotted form, for a reason an admin can look up."""
    if not oid:
        return "?"
    parts, value = [str(min(oid[0] // 40, 2)), str(oid[0] - 40 * min(oid[0] // 40, 2))], 0
    for octet in oid[1:]:
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            parts.append(str(value))
            value = 0
    return ".".join(parts)


# ---------------------------------------------------------------------------- secret material


def secret_length(material: PublicMaterial, data: bytes) -> int:
    """How many octets of ``data`` (cleartext secret fields) the algorithm's secret material takes."""
    reader = Reader(data, 0, len(data))
    count = {alg.RSA: 4, alg.RSA_ENCRYPT_ONLY: 4, alg.RSA_SIGN_ONLY: 4}.get(material.algorithm, 1)
    if material.algorithm in NATIVE_SIZES:
        reader.take(NATIVE_SIZES[material.algorithm][1])
    else:
        for _ in range(count):
            reader.mpi_bytes()
    return reader.pos


def private_key(material: PublicMaterial, data: bytes) -> PrivateKey:
    """The private key object of the cleartext secret fields ``data``; KeyMaterialError when they make none
    or do not match the public key."""
    if material.unusable is not None:
        raise KeyMaterialError(material.unusable)
    reader = Reader(data, 0, len(data))
    try:
        private = _private(material, reader)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyMaterialError(f"invalid secret key material ({exc})"[:120]) from None
    if not isinstance(private, int) and not _matches(private, material):
        raise KeyMaterialError("the secret key material does not match the public key")
    return private


def _private(material: PublicMaterial, reader: Reader) -> PrivateKey:
    algorithm, key = material.algorithm, material.key
    if algorithm in (alg.RSA, alg.RSA_ENCRYPT_ONLY, alg.RSA_SIGN_ONLY) and isinstance(key, rsa.RSAPublicKey):
        return _rsa_private(key, reader.mpi(), reader.mpi(), reader.mpi())
    if algorithm == alg.DSA and isinstance(key, dsa.DSAPublicKey):
        return dsa.DSAPrivateNumbers(reader.mpi(), key.public_numbers()).private_key()
    if algorithm in (alg.ELGAMAL, alg.ELGAMAL_SIGN_ENCRYPT):
        return reader.mpi()
    if algorithm in NATIVE_SIZES:
        return _native_private(algorithm, reader.take(NATIVE_SIZES[algorithm][1]))
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ec.derive_private_key(reader.mpi(), key.curve)
    if isinstance(key, ed25519.Ed25519PublicKey):  # EdDSA legacy: the seed as an MPI
        return ed25519.Ed25519PrivateKey.from_private_bytes(reader.mpi().to_bytes(32, "big"))
    if isinstance(key, x25519.X25519PublicKey):
        # Curve25519 legacy (RFC 9580 section 5.5.5.6): the native little-endian scalar, reversed into an MPI
        return x25519.X25519PrivateKey.from_private_bytes(reader.mpi().to_bytes(32, "big")[::-1])
    raise KeyMaterialError(f"unsupported secret key algorithm {algorithm}")


def _rsa_private(public: rsa.RSAPublicKey, d: int, p: int, q: int) -> rsa.RSAPrivateKey:
    numbers = public.public_numbers()
    if p * q != numbers.n:
        raise KeyMaterialError("the secret key material does not match the public key")
    private = rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                                    rsa.rsa_crt_iqmp(p, q), numbers)
    return private.private_key()  # validates the numbers: the step worth caching


def _native_private(algorithm: int, octets: bytes) -> PrivateKey:
    builders: dict[int, Callable[[bytes], PrivateKey]] = {alg.X25519: x25519.X25519PrivateKey.from_private_bytes,
                alg.X448: x448.X448PrivateKey.from_private_bytes,
                alg.ED25519: ed25519.Ed25519PrivateKey.from_private_bytes,
                alg.ED448: ed448.Ed448PrivateKey.from_private_bytes}
    return builders[algorithm](octets)


def _public_octets(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _matches(private: PrivateKey, material: PublicMaterial) -> bool:
    """True when the private key's public half is the key packet's public key (a swapped secret is refused)."""
    if isinstance(private, int) or material.key is None:
        return False
    return _public_octets(private.public_key()) == _public_octets(material.key)
