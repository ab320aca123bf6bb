"""Key unwrapping for key agreement recipients: the AES key wraps and the CMS Triple-DES key wrap (RFC 3217).

OpenSSL 3's ``cms -encrypt`` still defaults to DES-EDE3-CBC, and to an EC
certificate it then wraps the content key with ``id-alg-CMS3DESwrap``: mail
from a default installation needs this wrap. cryptography has the AES wraps
and, in its decrepit module, the Triple-DES cipher the RFC 3217 wrap is made of.

Every failure raises ``ValueError`` (or the primitive's own error): the
caller turns any of them into the one reason ``decryption failed``.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import keywrap
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from ciphermilter.formats.smime.algorithms import WrapScheme

# RFC 3217 section 3.1 step 7: the fixed IV of the wrap's second encryption pass.
_RFC3217_IV = bytes.fromhex("4adda22c79e82105")
_DES3_KEY = 24  # a Triple-DES content key, parity bits included
_ICV = 8  # the CMS key checksum
_WRAPPED_DES3 = 8 + _DES3_KEY + _ICV  # IV, key, checksum: 40 bytes


def unwrap(scheme: WrapScheme, kek: bytes, wrapped: bytes) -> bytes:
    if scheme == "aes":
        return keywrap.aes_key_unwrap(kek, wrapped)
    if scheme == "aes-pad":
        return keywrap.aes_key_unwrap_with_padding(kek, wrapped)
    return des3_key_unwrap(kek, wrapped)


def des3_key_unwrap(kek: bytes, wrapped: bytes) -> bytes:
    """RFC 3217 section 3.2: two Triple-DES-CBC passes around a byte reversal, then the CMS key checksum.

    Only a Triple-DES content key is wrapped this way (section 3): the result is 24 bytes or an error.
    """
    if len(wrapped) != _WRAPPED_DES3:
        raise ValueError("wrapped key length")
    temp1 = _des3_cbc_decrypt(kek, _RFC3217_IV, wrapped)[::-1]
    iv, inner = temp1[:8], temp1[8:]
    key_and_icv = _des3_cbc_decrypt(kek, iv, inner)
    key, icv = key_and_icv[:_DES3_KEY], key_and_icv[_DES3_KEY:]
    if not hmac.compare_digest(cms_key_checksum(key), icv):
        raise ValueError("key checksum")
    return key


def cms_key_checksum(key: bytes) -> bytes:
    """RFC 3217 section 2: the first eight bytes of the SHA-1 of the key."""
    return hashlib.sha1(key).digest()[:_ICV]  # noqa: S324  the checksum RFC 3217 defines, not a signature


def _des3_cbc_decrypt(kek: bytes, iv: bytes, data: bytes) -> bytes:
    decryptor = Cipher(TripleDES(kek), modes.CBC(iv)).decryptor()
    return decryptor.update(data) + decryptor.finalize()
