"""The CMS vectors of tests/vectors/smime (made by ``openssl cms``, make.sh) and the CMS structures of the corpus:
a tiny key store of the vector files and the (Auth)EnvelopedData of every corpus message, shared by the CMS,
BER and timing tests."""

from __future__ import annotations

from pathlib import Path

from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ciphermilter import mime
from ciphermilter.formats import ids
from ciphermilter.formats.smime import cms
from ciphermilter.formats.smime import handler as smime
from conftest import case_message, corpus_cases

ENVELOPED_OID_TLVS = tuple(asn1_core.ObjectIdentifier(oid).dump() for oid in (cms.ENVELOPED_DATA,
                                                                               cms.AUTH_ENVELOPED_DATA))
VECTORS = Path(__file__).parents[1] / "vectors" / "smime"
CONTENT = (VECTORS / "content.txt").read_bytes()
KEY_NAMES = ("rsa", "other", "p256", "p384", "p521")


def der(name: str) -> bytes:
    return (VECTORS / f"{name}.der").read_bytes()


def certificate_der(name: str) -> bytes:
    return x509.load_pem_x509_certificate((VECTORS / f"{name}.cert.pem").read_bytes()).public_bytes(
        serialization.Encoding.DER)


def private_key(name: str):
    return serialization.load_pem_private_key((VECTORS / f"{name}.key.pem").read_bytes(), None)


class PemKeys:
    """A tiny key store of the vector files: the engine only sees its callables."""

    def __init__(self, names=KEY_NAMES):
        self.pairs = [(certificate_der(n), private_key(n)) for n in names]
        self.asked: list[cms.Recipient] = []

    def find(self, recipient: cms.Recipient) -> list:
        self.asked.append(recipient)
        return [(cert, key) for cert, key in self.pairs if matches(cert, recipient)]


def matches(cert_der: bytes, recipient: cms.Recipient) -> bool:
    cert = asn1_x509.Certificate.load(cert_der)
    if recipient.ski is not None:
        return cert.key_identifier == recipient.ski
    return ids.name_key(cert.issuer) == recipient.issuer_key and cert.serial_number == recipient.serial


# --- the CMS structures of a message, found as the S/MIME handler finds them -----------------------

def pkcs7_ders(message: bytes) -> list[bytes]:
    """The decoded body of every pkcs7-mime part, also inside opaque signed data; a message too deep has none."""
    found = []
    try:
        for part in mime.parse(message).walk():
            if not smime.is_pkcs7_mime(part):
                continue
            try:
                data = part.decoded_body()
            except mime.MimeError:  # the handler reports "corrupt transfer encoding": no CMS to read
                continue
            found.append(data)
            found += pkcs7_ders(_opaque_content(data))
    except mime.DepthLimitExceeded:
        return []
    return found


def _opaque_content(data: bytes) -> bytes:
    """The content an opaque SignedData carries, or nothing."""
    try:
        info = asn1_cms.ContentInfo.load(data, strict=True)
        if info["content_type"].native == "signed_data":
            return info["content"]["encap_content_info"]["content"].native or b""
    except (ValueError, TypeError, KeyError):
        pass
    return b""


def is_enveloped(data: bytes) -> bool:
    """The ContentInfo's contentType (the first OID, a few bytes in) is (Auth)EnvelopedData: read by hand,
    since a truncated structure must count too."""
    return any(tlv in data[:24] for tlv in ENVELOPED_OID_TLVS)


def enveloped_ders(case: dict) -> list[bytes]:
    return [data for data in pkcs7_ders(case_message(case)) if is_enveloped(data)]


# Every corpus case with an (Auth)EnvelopedData somewhere, broken ones included.
ENVELOPED_CASES = corpus_cases(lambda case: bool(enveloped_ders(case)))
