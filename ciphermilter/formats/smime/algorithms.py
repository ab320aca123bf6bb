"""What the CMS engine implements, by OID: content types, content ciphers, digests, key agreement and key wraps.

Tables only, no parsing: the engine's modules look algorithms up here, so
that supporting one more is one line in one place. An OID that is not here is
refused by name (``unsupported ...``) before any key is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from cryptography.hazmat.primitives import hashes

from ciphermilter.formats.smime.errors import UnsupportedAlgorithm

ENVELOPED_DATA = "1.2.840.113549.1.7.3"
SIGNED_DATA = "1.2.840.113549.1.7.2"
AUTH_ENVELOPED_DATA = "1.2.840.113549.1.9.16.1.23"
COMPRESSED_DATA = "1.2.840.113549.1.9.16.1.9"  # RFC 3274
ZLIB = "1.2.840.113549.1.9.16.3.8"  # the one compression algorithm RFC 3274 defines

CipherMode = Literal["cbc", "gcm", "3des"]


@dataclass(frozen=True)
class ContentCipher:
    name: str  # the spec's name, reported in the headers
    key_size: int  # bytes
    mode: CipherMode


# Content ciphers we implement, by OID.
CONTENT_CIPHERS = {
    "2.16.840.1.101.3.4.1.2": ContentCipher("AES-128-CBC", 16, "cbc"),
    "2.16.840.1.101.3.4.1.22": ContentCipher("AES-192-CBC", 24, "cbc"),
    "2.16.840.1.101.3.4.1.42": ContentCipher("AES-256-CBC", 32, "cbc"),
    "2.16.840.1.101.3.4.1.6": ContentCipher("AES-128-GCM", 16, "gcm"),
    "2.16.840.1.101.3.4.1.26": ContentCipher("AES-192-GCM", 24, "gcm"),
    "2.16.840.1.101.3.4.1.46": ContentCipher("AES-256-GCM", 32, "gcm"),
    "1.2.840.113549.3.7": ContentCipher("DES-EDE3-CBC", 24, "3des"),
}
# Content ciphers we name but do not implement.
_NAMED_CIPHERS = {
    "1.2.840.113549.3.2": "RC2-CBC",
    "1.3.14.3.2.7": "DES-CBC",
}


def cipher_name(oid: str) -> str:
    """The spec's name of a content cipher, or its dotted OID."""
    cipher = CONTENT_CIPHERS.get(oid)
    return cipher.name if cipher is not None else _NAMED_CIPHERS.get(oid, oid)


# Digests by asn1crypto's name for their OID; MD5 and the like are refused.
HASH_BY_NAME: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
    "sha384": hashes.SHA384, "sha512": hashes.SHA512}
# id-shake256-len (asn1crypto's name): the digest of Ed448 signers, with its output length as parameter (RFC 8419).
SHAKE256_LEN = "shake256_len"
MICALG = {"sha1": "sha-1", "sha224": "sha-224", "sha256": "sha-256", "sha384": "sha-384", "sha512": "sha-512"}


def hash_named(name: str) -> hashes.HashAlgorithm:
    try:
        return HASH_BY_NAME[name]()
    except KeyError:
        raise UnsupportedAlgorithm(f"unsupported digest {name}") from None


# RFC 5753 / RFC 8418 key agreement schemes: OID -> the hash of their ANSI X9.63 KDF. For the NIST and brainpool
# prime curves the cofactor is 1, so cofactor ECDH equals standard ECDH. X25519 and X448 use the stdDH schemes
# (RFC 8418 section 2); its HKDF schemes are refused, by name (_REFUSED_NAMES).
ECDH_SCHEMES: dict[str, type[hashes.HashAlgorithm]] = {
    "1.3.133.16.840.63.0.2": hashes.SHA1,  # dhSinglePass-stdDH-sha1kdf-scheme
    "1.3.132.1.11.0": hashes.SHA224,
    "1.3.132.1.11.1": hashes.SHA256,
    "1.3.132.1.11.2": hashes.SHA384,
    "1.3.132.1.11.3": hashes.SHA512,
    "1.3.133.16.840.63.0.3": hashes.SHA1,  # dhSinglePass-cofactorDH-sha1kdf-scheme
    "1.3.132.1.14.0": hashes.SHA224,
    "1.3.132.1.14.1": hashes.SHA256,
    "1.3.132.1.14.2": hashes.SHA384,
    "1.3.132.1.14.3": hashes.SHA512,
}

# The originator's public key algorithm a key agreement needs, by the recipient key's type (RFC 5753, RFC 8418).
EC_PUBLIC_KEY = "1.2.840.10045.2.1"
X25519 = "1.3.101.110"
X448 = "1.3.101.111"

WrapScheme = Literal["aes", "aes-pad", "3des"]


class KeyWrap(NamedTuple):
    kek_size: int  # bytes
    scheme: WrapScheme  # AES key wrap (RFC 3394), with padding (RFC 5649), or the CMS 3DES key wrap (RFC 3217)


# Key wraps by OID.
KEY_WRAPS = {
    "2.16.840.1.101.3.4.1.5": KeyWrap(16, "aes"),
    "2.16.840.1.101.3.4.1.25": KeyWrap(24, "aes"),
    "2.16.840.1.101.3.4.1.45": KeyWrap(32, "aes"),
    "2.16.840.1.101.3.4.1.8": KeyWrap(16, "aes-pad"),
    "2.16.840.1.101.3.4.1.28": KeyWrap(24, "aes-pad"),
    "2.16.840.1.101.3.4.1.48": KeyWrap(32, "aes-pad"),
    # id-alg-CMS3DESwrap: OpenSSL 3's default for an EC recipient, whose content cipher defaults to DES-EDE3-CBC.
    "1.2.840.113549.1.9.16.3.6": KeyWrap(24, "3des"),
}
# Key agreement schemes and key wraps we name but do not implement: RFC 8418's HKDF schemes (no tool here
# writes them, Bouncy Castle 1.72 neither, so nothing could test them), the RC2 key wrap (RFC 3217 section 4)
# and Camellia's (RFC 3657).
_REFUSED_NAMES = {
    "1.2.840.113549.1.9.16.3.19": "dhSinglePass-stdDH-hkdf-sha256-scheme",
    "1.2.840.113549.1.9.16.3.20": "dhSinglePass-stdDH-hkdf-sha384-scheme",
    "1.2.840.113549.1.9.16.3.21": "dhSinglePass-stdDH-hkdf-sha512-scheme",
    "1.2.840.113549.1.9.16.3.7": "id-alg-CMSRC2wrap",
    "1.2.392.200011.61.1.1.3.2": "id-camellia128-wrap",
    "1.2.392.200011.61.1.1.3.3": "id-camellia192-wrap",
    "1.2.392.200011.61.1.1.3.4": "id-camellia256-wrap",
}


def refused_name(oid: str) -> str:
    """The spec's name of a key agreement scheme or key wrap we refuse, or its dotted OID."""
    return _REFUSED_NAMES.get(oid, oid)


RSA_PKCS1 = "1.2.840.113549.1.1.1"
RSA_OAEP = "1.2.840.113549.1.1.7"
MGF1 = "1.2.840.113549.1.1.8"
