"""The OpenPGP engine's public surface: armor, packets, keys, decryption, signatures. No MIME here.

The engine is split by job, each module with the reasons for its own
implementation: :mod:`.armor` (ASCII armor, also read by the key import),
:mod:`.packets` (framing and the engine's errors), :mod:`.keyring` (secret keys
built once and cached per store version), :mod:`.decrypt` (session keys,
SEIPDv1, bounded decompression), :mod:`.aead` (SEIPDv2 and LibrePGP's AEAD
packet; EAX from :mod:`.eax`) and :mod:`.verify` (signatures, cleartext).
Callers outside the package use these names; a test that replaces an
internal does so on the module that owns it.
"""

from ciphermilter.formats.openpgp.armor import (ARMOR_BEGIN, ARMOR_MESSAGE, Armor, ArmorSpan, checksum_mismatch, crc24,
                                                dearmor, find_armor, find_at_line_start)
from ciphermilter.formats.openpgp.algorithms import CIPHERS
from ciphermilter.formats.openpgp.decrypt import COMPRESSION, Opened, open_message
from ciphermilter.formats.openpgp.keyring import Keyring, SecretSubkey, keyring_for
from ciphermilter.formats.openpgp.packets import (INTEGRITY_FAILED, TAG_COMPRESSED, TAG_LITERAL, TAG_OCB_AEAD,
                                                  TAG_PKESK, TAG_SEIPD, TAG_SIGNATURE, WILDCARD_KEYID,
                                                  IntegrityError, OpenPGPError, Packet, UnsupportedFormat, frame,
                                                  looks_binary_openpgp, packets, parse_pkesk, signature_packets)
from ciphermilter.formats.openpgp.signer_keys import key_emails
from ciphermilter.formats.openpgp.verify import (CLEARTEXT_BAD_HEADER, KEY_NOT_FOUND, KEY_NOT_IMPORTED, Cleartext,
                                                 SignatureResult, read_cleartext, verify,
                                                 verify_detached)

__all__ = [
    "ARMOR_BEGIN", "ARMOR_MESSAGE", "CIPHERS", "CLEARTEXT_BAD_HEADER", "COMPRESSION", "INTEGRITY_FAILED",
    "KEY_NOT_FOUND", "KEY_NOT_IMPORTED", "TAG_COMPRESSED", "TAG_LITERAL", "TAG_OCB_AEAD", "TAG_PKESK", "TAG_SEIPD",
    "TAG_SIGNATURE", "WILDCARD_KEYID", "Armor", "ArmorSpan", "Cleartext", "IntegrityError", "Keyring", "OpenPGPError",
    "Opened", "Packet", "SecretSubkey", "SignatureResult", "UnsupportedFormat", "checksum_mismatch", "crc24",
    "dearmor", "find_armor", "find_at_line_start", "frame", "key_emails", "keyring_for", "looks_binary_openpgp",
    "open_message", "packets", "parse_pkesk", "read_cleartext", "signature_packets", "verify",
    "verify_detached",
]
