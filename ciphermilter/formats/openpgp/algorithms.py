"""OpenPGP algorithm numbers the engine reads (RFC 9580 sections 9.1 to 9.5), shared by keys and messages.

Apart from :mod:`.decrypt` because the key parser unlocks protected secret keys
with the same symmetric ciphers and hashes, and :mod:`.decrypt` imports the keys.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.decrepit.ciphers import algorithms as decrepit
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm, algorithms

# Symmetric algorithm number -> (header name, cipher class, key bytes).
# Twofish has no implementation in cryptography: it is named in reports but not decrypted.
CipherFactory = Callable[[bytes], BlockCipherAlgorithm]
CIPHERS: dict[int, tuple[str, CipherFactory | None, int]] = {
    1: ("IDEA", decrepit.IDEA, 16),
    2: ("3DES", decrepit.TripleDES, 24),
    3: ("CAST5", decrepit.CAST5, 16),
    4: ("Blowfish", decrepit.Blowfish, 16),
    7: ("AES-128", algorithms.AES, 16),
    8: ("AES-192", algorithms.AES, 24),
    9: ("AES-256", algorithms.AES, 32),
    10: ("Twofish", None, 32),
    11: ("Camellia-128", decrepit.Camellia, 16),
    12: ("Camellia-192", decrepit.Camellia, 24),
    13: ("Camellia-256", decrepit.Camellia, 32),
}

# Hash algorithm number -> cryptography hash class (RFC 9580 section 9.5; MD5 and RIPEMD-160 for old keys).
HASHES: dict[int, type[hashes.HashAlgorithm]] = {
    1: hashes.MD5, 2: hashes.SHA1, 8: hashes.SHA256, 9: hashes.SHA384, 10: hashes.SHA512, 11: hashes.SHA224,
    12: hashes.SHA3_256, 14: hashes.SHA3_512,
}

# Public-key algorithms (RFC 9580 section 9.1)
RSA, RSA_ENCRYPT_ONLY, RSA_SIGN_ONLY = 1, 2, 3
ELGAMAL, DSA, ECDH, ECDSA, ELGAMAL_SIGN_ENCRYPT, EDDSA_LEGACY = 16, 17, 18, 19, 20, 22
X25519, X448, ED25519, ED448 = 25, 26, 27, 28
ALGORITHM_NAMES = {
    RSA: "RSA", RSA_ENCRYPT_ONLY: "RSA", RSA_SIGN_ONLY: "RSA", ELGAMAL: "ElGamal", DSA: "DSA", ECDH: "ECDH",
    ECDSA: "ECDSA", ELGAMAL_SIGN_ENCRYPT: "ElGamal", EDDSA_LEGACY: "EdDSA", X25519: "X25519", X448: "X448",
    ED25519: "Ed25519", ED448: "Ed448",
}
# The algorithms that can encrypt (decrypt a session key) at all; a key without key flags is judged by these.
ENCRYPTING = frozenset({RSA, RSA_ENCRYPT_ONLY, ELGAMAL, ELGAMAL_SIGN_ENCRYPT, ECDH, X25519, X448})
