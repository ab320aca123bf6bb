"""The CMS engine (RFC 5652): open, decrypt and verify S/MIME structures. No MIME here.

Parsing is asn1crypto's; every primitive is the ``cryptography`` package's.
Keys and certificates come in through callables, so the engine never knows
where they are stored.

This module is the engine's entry: :func:`load` a ContentInfo, then by its
:func:`content_type` open it. The jobs live one module each:

* :mod:`enveloped`: open an (Auth)EnvelopedData and decrypt its content,
  :mod:`recipients`: its RecipientInfos and unwrapping a content key;
* :mod:`signed`: SignedData and its signatures;
* :func:`compressed_content` here: CompressedData (RFC 3274);
* :mod:`algorithms`: what is implemented, by OID; :mod:`errors`: the
  failures and their stable reasons (one for every key failure: no padding
  oracle); :mod:`asn1`: the typed boundary with asn1crypto; :mod:`ber`:
  the ciphertext lifted out before asn1crypto parses.

A configured limit reached (RecipientInfos, SignerInfos) raises the handler
contract's ``LimitExceeded``, like every engine.
"""

from __future__ import annotations

from asn1crypto import cms, core

from ciphermilter.formats.smime import asn1, ber
from ciphermilter.formats.smime.algorithms import AUTH_ENVELOPED_DATA, COMPRESSED_DATA, ENVELOPED_DATA, SIGNED_DATA, ZLIB
from ciphermilter.formats.smime.asn1 import content_type
from ciphermilter.formats.smime.enveloped import Candidate, EnvelopedLayer, decrypt, open_enveloped
from ciphermilter.formats.smime.errors import (CmsError, DecryptionFailed, KeyNotFound, KeysRefused, MalformedCms,
                                               UnsupportedAlgorithm)
from ciphermilter.formats.smime.recipients import Recipient, all_recipients
from ciphermilter.formats.smime.signed import (SignedLayer, Signer, detached_signature, micalg, open_signed, verify,
                                            verify_either)

# What the S/MIME handler and the tools use; the rest is the job modules' own.
__all__ = [
    "AUTH_ENVELOPED_DATA", "COMPRESSED_DATA", "ENVELOPED_DATA", "SIGNED_DATA",
    "CmsError", "DecryptionFailed", "KeyNotFound", "KeysRefused", "MalformedCms", "UnsupportedAlgorithm",
    "load", "content_type", "compressed_content",
    "Candidate", "EnvelopedLayer", "Recipient", "all_recipients", "decrypt", "open_enveloped",
    "SignedLayer", "Signer", "detached_signature", "micalg", "open_signed", "verify",
    "verify_either",
]

# The contents octets of the OIDs whose encrypted content is lifted out before asn1crypto parses.
_LIFTED_TYPES = tuple(core.ObjectIdentifier(oid).contents for oid in (ENVELOPED_DATA, AUTH_ENVELOPED_DATA))


def load(der: bytes) -> cms.ContentInfo:
    """Parse the outer ContentInfo; truncation or trailing junk shows here.

    The inside is parsed lazily, field by field, by whoever reads it: a full
    parse would refuse real signatures for an attribute asn1crypto does not
    know (Thunderbird's encryption key preference). An enveloped structure's
    ciphertext is lifted out first, so it is never copied.
    """
    lifted = ber.lift_encrypted_content(der, _LIFTED_TYPES)
    try:
        info = asn1.LiftedContentInfo.load(der if lifted is None else lifted[0], strict=True)
        info["content"]  # noqa: B018  parses the content's outer structure
    except asn1.PARSE_ERRORS:
        raise MalformedCms() from None
    if lifted is not None:
        info.encrypted_content = lifted[1]
    return info


def compressed_content(info: cms.ContentInfo) -> bytes:
    """The zlib stream of a CompressedData layer (RFC 3274), still compressed: inflating it is the
    caller's, within its budget (asn1crypto's ``decompressed`` would inflate a bomb whole)."""
    if content_type(info) != COMPRESSED_DATA:
        raise UnsupportedAlgorithm(f"not compressed data: {content_type(info)}")
    try:
        data = info["content"]
        algorithm = asn1.dotted(data["compression_algorithm"]["algorithm"])
        content = asn1.encapsulated_content(data)
    except asn1.PARSE_ERRORS:
        raise MalformedCms() from None
    if algorithm != ZLIB:
        raise UnsupportedAlgorithm(f"unsupported compression algorithm {algorithm}")
    if content is None:
        raise MalformedCms("no compressed content")
    return content
