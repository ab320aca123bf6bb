"""OpenPGP signatures: one packet, a detached signature, a cleartext-signed block.

pgpy 0.6 verifies, but cannot read non-Latin-1 cleartext, so the cleartext
framework (RFC 4880 section 7.1) is applied here. Only the public keys an
administrator imported verify signatures (``pgp_public_keys(keyid,
imported_only=True)``): a key that arrived in mail carries whatever user IDs
its maker chose.
"""

from __future__ import annotations

import re
import warnings
import weakref
from dataclasses import dataclass, field

import pgpy

from ciphermilter.formats.openpgp.armor import dearmor
from ciphermilter.formats.openpgp.keyring import Keyring
from ciphermilter.formats.openpgp.keys import OpenPGPKey
from ciphermilter.formats.openpgp.packets import (TAG_SIGNATURE, WILDCARD_KEYID, OpenPGPError, frame,
                                                  signature_packets)

KEY_NOT_FOUND = "public key not found"
KEY_NOT_IMPORTED = "signer key not imported by an administrator"
_BARE_ADDRESS = re.compile(r"<?([^\s<>@]+@[^\s<>@]+)>?")
_NAMED_ADDRESS = re.compile(r"<([^\s<>@]+@[^\s<>@]+)>\s*$")
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


def parse_signature(packet_body: bytes) -> pgpy.PGPSignature:
    """A pgpy signature from a signature packet body (re-framed with a new-format header)."""
    return pgpy.PGPSignature.from_blob(frame(TAG_SIGNATURE, packet_body))








def user_id_email(user_id: str) -> str:
    """The address of one user ID, lower case: "Name <addr>", and the bare "addr" or "<addr>" that gpg
    --quick-gen-key and Autocrypt clients write; "" when it names none."""
    named = _NAMED_ADDRESS.search(user_id)
    bare = _BARE_ADDRESS.fullmatch(user_id.strip()) if named is None else None
    return (named.group(1) if named else bare.group(1) if bare else "").strip().lower()


def key_emails(key: OpenPGPKey) -> list[str]:
    """The addresses of the key's user IDs, lower case, each once, primary user ID first."""
    emails = []
    for user_id in key.user_ids:
        email = user_id_email(user_id)
        if email and email not in emails:
            emails.append(email)
    return emails


_PGPY_KEYS: weakref.WeakKeyDictionary[OpenPGPKey, pgpy.PGPKey | None] = weakref.WeakKeyDictionary()


def pgpy_key(key: OpenPGPKey) -> pgpy.PGPKey | None:
    """The key as pgpy reads it, for pgpy's signature verification until the engine verifies itself; None
    where pgpy cannot read it (version 6 keys). Loaded once per key object, when a signature needs it."""
    if key not in _PGPY_KEYS:
        loaded: pgpy.PGPKey | None = pgpy.PGPKey()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loaded.parse(bytearray(key.public_bytes()))  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001  pgpy raises assorted errors on what it cannot read
            loaded = None
        _PGPY_KEYS[key] = loaded
    return _PGPY_KEYS[key]


def verify(data: bytes, packet_body: bytes, keyring: Keyring) -> SignatureResult:
    """Verify one signature packet over ``data`` (pgpy canonicalises line endings for text signatures)."""
    try:
        signature = parse_signature(packet_body)
        keyid = (signature.signer or WILDCARD_KEYID).upper()  # pgpy parses the subpackets lazily
    except Exception as exc:  # pgpy raises assorted errors on what it does not support
        return SignatureResult(WILDCARD_KEYID, False, f"unreadable signature ({type(exc).__name__})")
    keys = keyring.public_keys(keyid)
    if not keys:
        # A key that arrived in mail proves nothing about its user IDs: whoever made the signature made it too.
        return SignatureResult(keyid, False, KEY_NOT_IMPORTED if keyring.has_unvouched_key(keyid) else KEY_NOT_FOUND)
    result = SignatureResult(keyid, False, "bad signature", key_emails(keys[0]), key_found=True)
    for key in keys:
        loaded = pgpy_key(key)
        if loaded is None:
            result.reason = f"cannot verify (version {key.version} key)"
            continue
        try:
            if loaded.verify(data, signature):
                return SignatureResult(keyid, True, None, key_emails(key), key_found=True)
        except Exception as exc:  # pgpy: unsupported algorithm, expired key, ...
            result.reason = f"cannot verify ({exc})"[:120]
    return result


def verify_detached(data: bytes, signature_data: bytes, keyring: Keyring) -> list[SignatureResult]:
    """Verify every signature in a binary detached signature over ``data`` (PGP/MIME: the first part)."""
    try:
        bodies = signature_packets(signature_data)
    except OpenPGPError as exc:
        return [SignatureResult(WILDCARD_KEYID, False, f"unreadable signature ({exc})")]
    if not bodies:
        return [SignatureResult(WILDCARD_KEYID, False, "no signature packet")]
    return [verify(data, body, keyring) for body in bodies]


@dataclass
class Cleartext:
    text: bytes  # as gpg outputs it: dash-unescaped lines without trailing white space, each ending in LF
    canonical: bytes  # what the signature covers (RFC 4880 section 7.1)
    signatures: list[SignatureResult]
    signature_headers: dict[str, str]  # the signature armor's own headers ("Comment:"): signed by nobody


def _cleartext_lines(block: bytes) -> tuple[list[bytes], int]:
    """The dash-unescaped text lines of a cleartext-signed block and where its signature armor starts."""
    lines = block.split(b"\n")
    index = 1
    while index < len(lines) and lines[index].rstrip(b"\r"):
        if not _CLEARTEXT_HASH_HEADER.fullmatch(lines[index].rstrip()):
            raise OpenPGPError(CLEARTEXT_BAD_HEADER)
        index += 1
    text: list[bytes] = []
    for offset, line in enumerate(lines[index + 1:], start=index + 1):
        line = line.rstrip(b"\r")
        if line.startswith(b"-----BEGIN PGP SIGNATURE-----"):
            return text, sum(len(x) + 1 for x in lines[:offset])
        text.append(line[2:] if line.startswith(b"- ") else line)
    raise OpenPGPError("cleartext signature without a signature block")


def read_cleartext(block: bytes, keyring: Keyring) -> Cleartext:
    """Verify a ``-----BEGIN PGP SIGNED MESSAGE-----`` block ourselves.

    pgpy 0.6 cannot read non-Latin-1 cleartext, so we apply RFC 4880
    section 7.1 here: dash-unescape, drop trailing white space per line, join
    with CRLF without the final line break, and verify over those bytes.
    """
    lines, signature_start = _cleartext_lines(block)
    lines = [line.rstrip(b" \t") for line in lines]
    canonical = b"\r\n".join(lines)
    signature = dearmor(block[signature_start:])
    text = b"".join(line + b"\n" for line in lines)
    return Cleartext(text, canonical, verify_detached(canonical, signature.data, keyring), signature.headers)
