"""The CMS engine's boundary with asn1crypto: its parse errors, typed accessors, memoised parses.

asn1crypto has no type information, so every value it returns is ``Any`` to
mypy. The engine reads what it needs through the functions here, which say
what they return; the few structures asn1crypto lacks are declared here too.
Annotations naming asn1crypto classes elsewhere document the expected value.

The parses here are memoised by the encoding they parse (with the asn1crypto class that parses it),
because the same bytes come back on message after message: a recipient's or a signer's identifier,
a key transport algorithm. Parsing them cost 30-50 us per RecipientInfo, more than decrypting the
content of a 20 KB message. Safe: bounded in entries and in the size of what is kept (memo module);
keys and values are immutable and public (identifiers, OIDs), never key material; a parse error is
raised again each time, never cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict, cast

from asn1crypto import cms, core

from ciphermilter.formats import ids, memo

# asn1crypto parses lazily and reports broken input as one of these.
PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError)


def dotted(oid: core.ObjectIdentifier) -> str:
    return cast(str, oid.dotted)


def content_type(info: cms.ContentInfo) -> str:
    return dotted(info["content_type"])


def encapsulated_content(data: cms.SignedData | cms.CompressedData) -> bytes | None:
    """The encapsulated content of a SignedData or CompressedData; None when detached."""
    encap = data["encap_content_info"]["content"]
    # bytes() joins the chunks of a BER constructed OCTET STRING (NSS writes those).
    return None if isinstance(encap, core.Void) else bytes(encap)


def octets(value: core.Asn1Value) -> bytes:
    """A value asn1crypto reads as bytes: an OCTET STRING, or a BIT STRING of whole octets (a public key)."""
    native = value.native
    if not isinstance(native, bytes):
        raise TypeError("not a string of octets")
    return native


def optional_octets(value: core.Asn1Value) -> bytes | None:
    """An OPTIONAL OCTET STRING: its bytes, or None when absent."""
    return None if value.native is None else octets(value)


class Lookup(TypedDict, total=False):
    """The keyword arguments of the key store's lookups by identifier (``core.seams.SmimeKeys``)."""

    issuer_key: str
    serial: int
    ski: bytes


@dataclass(frozen=True)
class Identifier:
    """An issuerAndSerialNumber or subjectKeyIdentifier, as the spec writes it and as the store finds it."""

    text: str  # the spec's identifier text
    issuer_key: str | None = None
    serial: int | None = None
    ski: bytes | None = None

    @property
    def lookup(self) -> Lookup:
        """Keyword arguments for the key store's lookups; empty when the identifier names no certificate."""
        if self.ski is not None:
            return {"ski": self.ski}
        if self.issuer_key is not None and self.serial is not None:
            return {"issuer_key": self.issuer_key, "serial": self.serial}
        return {}


def identify(rid: cms.RecipientIdentifier | cms.SignerIdentifier) -> Identifier:
    """The identifier of an issuerAndSerialNumber or subjectKeyIdentifier choice."""
    return identify_encoded(type(rid), rid.dump())


@memo.of_small_encodings(maxsize=4096)
def identify_encoded(choice: type[core.Choice], encoded: bytes) -> Identifier:
    rid = choice.load(encoded)
    if rid.name == "issuer_and_serial_number":
        issuer, serial = rid.chosen["issuer"], rid.chosen["serial_number"].native
        return Identifier(ids.issuer_serial_id(issuer, serial), issuer_key=ids.name_key(issuer), serial=serial)
    if rid.name == "r_key_id":
        ski = rid.chosen["subject_key_identifier"].native
    else:
        ski = rid.chosen.native
    return Identifier(ids.ski_id(ski), ski=ski)


def algorithm_oid(algorithm: core.Sequence) -> str:
    """The dotted OID of an AlgorithmIdentifier (parameters are parsed where they are used)."""
    return algorithm_oid_encoded(type(algorithm), algorithm.dump())


@memo.of_small_encodings(maxsize=256)
def algorithm_oid_encoded(spec: type[core.Sequence], encoded: bytes) -> str:
    return dotted(spec.load(encoded)["algorithm"])


# The structures below are asn1crypto classes, which mypy sees as Any: deriving from them is the
# library's way to declare a structure, hence the one ignore each.

class LiftedContentInfo(cms.ContentInfo):  # type: ignore[misc]  # asn1crypto is untyped
    """A ContentInfo that may come with its encrypted content held outside it (see :mod:`ber`)."""

    encrypted_content: list[memoryview] | None = None  # pieces of the ciphertext, views of the decoded message


class GcmParameters(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    """GCMParameters (RFC 5084 section 3.2)."""

    _fields = [("nonce", core.OctetString), ("icv_len", core.Integer, {"default": 12})]


class SharedInfo(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    """ECC-CMS-SharedInfo (RFC 5753 section 7.2)."""

    _fields = [
        ("key_info", core.Any),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]
