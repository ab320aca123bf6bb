"""OpenPGP signatures: one packet, a detached signature, a cleartext-signed block.

The packet is read by :mod:`.signature` and checked by :mod:`.signing`
(pgpy read version 4 only). Only the public keys an administrator imported
verify signatures (``pgp_public_keys(keyid, imported_only=True)``): a key
that arrived in mail carries whatever user IDs its maker chose. Every
failure is a reason in words for the ``PGP-Signature-Failure`` header.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from ciphermilter.formats.openpgp.armor import checksum_mismatch, dearmor
from ciphermilter.formats.openpgp.keyring import Keyring
from ciphermilter.formats.openpgp.packets import WILDCARD_KEYID, OpenPGPError, signature_packets
from ciphermilter.formats.openpgp.signature import (SIGNATURE_BINARY, SIGNATURE_TEXT, Signature, UnreadableSignature,
                                                    parse_signature)
from ciphermilter.formats.openpgp.signer_keys import SignerKey
from ciphermilter.formats.openpgp.signing import key_fits, verifies

KEY_NOT_FOUND = "public key not found"
KEY_NOT_IMPORTED = "signer key not imported by an administrator"
BAD_SIGNATURE = "bad signature"
FLAG_SIGN = 0x02  # key flag "may sign data" (RFC 9580 section 5.2.3.29)
CLOCK_SKEW = 600  # seconds a signature may be dated ahead of our clock (a sender's clock running fast)
# RFC 9580 section 7 (RFC 4880 section 7): between the BEGIN line of a cleartext-signed message and its
# blank line stand only "Hash:" armor headers naming hash algorithms. Anything else there (a "Comment:",
# any text) is shown by some readers, covered by no signature, and refused by gpg ("signature digest
# conflict in message"): we refuse it too rather than report text nobody signed as signed.
_HASH_NAME = rb"(?:MD5|SHA1|RIPEMD160|SHA224|SHA256|SHA384|SHA512|SHA3-256|SHA3-512)"  # RFC 9580 9.5
_CLEARTEXT_HASH_HEADER = re.compile(rb"Hash: *" + _HASH_NAME + rb"(?: *, *" + _HASH_NAME + rb")*")
CLEARTEXT_BAD_HEADER = "cleartext signature with an armor header other than Hash"


@dataclass
class SignatureResult:
    keyid: str  # issuer key ID, 16 upper-case hex digits
    valid: bool
    reason: str | None = None  # why not valid
    emails: list[str] = field(default_factory=list)  # of the signing key's user IDs, lower case
    key_found: bool = False


def _signature_problem(signature: Signature, declared: frozenset[bytes]) -> str | None:
    """Why a readable signature cannot be valid whatever key made it, or None.

    ``declared``: the hashes a cleartext block's "Hash:" headers name; RFC
    9580 section 7 has a signature by another hash fail (empty: no header).
    """
    if signature.signature_type not in (SIGNATURE_BINARY, SIGNATURE_TEXT):
        return f"not a signature over data (type 0x{signature.signature_type:02X})"
    if signature.critical_unknown:
        return f"unknown critical subpacket {signature.critical_unknown[0]}"
    if declared and signature.hash_name.replace("SHA-", "SHA").encode() not in declared:
        return f"{signature.hash_name} signature under a Hash header naming another hash"
    return None


def _key_problem(signature: Signature, key: SignerKey, now: float) -> str | None:
    """Why ``key`` (the one the signature names) cannot have made it validly, or None (RFC 9580 sections named).

    A signature dated ahead of our clock by more than :data:`CLOCK_SKEW` is
    refused, as gpg refuses it: nothing proves it was made before a key's
    revocation or expiry. Key expiry is judged now, as pgpy did.
    """
    if (signature.version == 6) != (key.version == 6):
        return f"version {signature.version} signature by a version {key.version} key"  # 5.2.3
    if key.public is None or not key_fits(signature.algorithm, key.public):
        return f"signature algorithm {signature.algorithm} does not match the key (algorithm {key.algorithm})"
    if key.flags is not None and not key.flags & FLAG_SIGN:
        return "signer key not for signing"  # its own key flags say so (5.2.3.29)
    if signature.created > now + CLOCK_SKEW:
        return "signature made in the future"
    if signature.created < key.created:
        return "signature older than its key"
    if signature.expires_after and signature.created + signature.expires_after <= now:
        return "signature expired"
    if key.expires is not None and key.expires <= now:
        return "signer key expired"
    return None


def _verify_with(signature: Signature, digest: bytes, keys: list[SignerKey],
                 now: float) -> tuple[SignerKey | None, str]:
    """(the key that made the signature, "") or (the key it names, why not valid); the key is None when no
    candidate is the one its issuer fingerprint names."""
    fingerprint = signature.issuer_fingerprint
    named = [key for key in keys if not fingerprint or fingerprint == key.fingerprint]
    reasons = []
    for key in named:
        problem = _key_problem(signature, key, now)
        if problem is None and key.public is not None:
            if digest[:2] == signature.left16 and verifies(signature, digest, key.public):
                return key, ""
            problem = BAD_SIGNATURE
        reasons.append(problem or BAD_SIGNATURE)
    return (named[0], reasons[0]) if named else (None, KEY_NOT_FOUND)


def verify(data: bytes, packet_body: bytes, keyring: Keyring, now: float | None = None,
           declared: frozenset[bytes] = frozenset()) -> SignatureResult:
    """Verify one signature packet over ``data`` (line ends made CRLF first for a text signature).

    The e-mail addresses reported are those of the key that made the
    signature, or when none did, of the key it names (never of another key
    that merely shares its 64-bit key ID).
    """
    try:
        signature = parse_signature(packet_body)
        keyid = signature.keyid or WILDCARD_KEYID
        if problem := _signature_problem(signature, declared):
            return SignatureResult(keyid, False, problem)
        candidates = keyring.signer_keys(keyid)
        if not candidates:
            # A key that arrived in mail proves nothing about its user IDs: whoever made the signature made it too.
            return SignatureResult(keyid, False,
                                   KEY_NOT_IMPORTED if keyring.has_unvouched_key(keyid) else KEY_NOT_FOUND)
        key, reason = _verify_with(signature, signature.digest(data), candidates, time.time() if now is None else now)
    except UnreadableSignature as exc:
        return SignatureResult(WILDCARD_KEYID, False, str(exc))
    if key is None:
        return SignatureResult(keyid, False, reason)
    return SignatureResult(keyid, not reason, reason or None, list(key.emails), key_found=True)


def verify_detached(data: bytes, signature_data: bytes, keyring: Keyring,
                    declared: frozenset[bytes] = frozenset()) -> list[SignatureResult]:
    """Verify every signature in a binary detached signature over ``data`` (PGP/MIME: the first part)."""
    try:
        bodies = signature_packets(signature_data)
    except OpenPGPError as exc:
        return [SignatureResult(WILDCARD_KEYID, False, f"unreadable signature ({exc})")]
    if not bodies:
        return [SignatureResult(WILDCARD_KEYID, False, "no signature packet")]
    return [verify(data, body, keyring, declared=declared) for body in bodies]


@dataclass
class Cleartext:
    text: bytes  # as gpg outputs it: dash-unescaped lines without trailing white space, each ending in LF
    canonical: bytes  # what the signature covers (RFC 4880 section 7.1)
    signatures: list[SignatureResult]
    # Text inside the signature's armor that the reader sees and nobody signed: armor headers ("Comment:"),
    # lines the base64 decoder skipped (after the checksum, non-base64 words between base64 lines), or base64
    # that is not what the checksum was made over.
    unsigned_armor_text: bool


def _cleartext_lines(block: bytes) -> tuple[list[bytes], int, frozenset[bytes]]:
    """The dash-unescaped text lines of a cleartext-signed block, where its signature armor starts and the
    hashes its "Hash:" headers name."""
    lines = block.split(b"\n")
    index = 1
    declared: set[bytes] = set()
    while index < len(lines) and lines[index].rstrip(b"\r"):
        if not _CLEARTEXT_HASH_HEADER.fullmatch(lines[index].rstrip()):
            raise OpenPGPError(CLEARTEXT_BAD_HEADER)
        declared.update(name.strip() for name in lines[index].split(b":", 1)[1].split(b","))
        index += 1
    text: list[bytes] = []
    for offset, line in enumerate(lines[index + 1:], start=index + 1):
        line = line.rstrip(b"\r")
        if line.startswith(b"-----BEGIN PGP SIGNATURE-----"):
            return text, sum(len(x) + 1 for x in lines[:offset]), frozenset(declared)
        text.append(line[2:] if line.startswith(b"- ") else line)
    raise OpenPGPError("cleartext signature without a signature block")


def read_cleartext(block: bytes, keyring: Keyring) -> Cleartext:
    """Verify a ``-----BEGIN PGP SIGNED MESSAGE-----`` block ourselves.

    RFC 9580 section 7.2 (RFC 4880 section 7.1): dash-unescape, drop
    trailing white space per line, join with CRLF without the final line
    break, and verify over those bytes.
    """
    lines, signature_start, declared = _cleartext_lines(block)
    lines = [line.rstrip(b" \t") for line in lines]
    canonical = b"\r\n".join(lines)
    signature = dearmor(block[signature_start:])
    text = b"".join(line + b"\n" for line in lines)
    return Cleartext(text, canonical, verify_detached(canonical, signature.data, keyring, declared),
                     bool(signature.headers) or not signature.clean or checksum_mismatch(signature))
