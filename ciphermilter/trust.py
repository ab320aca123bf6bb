"""Certificate facts and chain building for S/MIME signers (RFC 5280 subset, RFC 8550).

A signer is trusted when a chain of correctly signed certificates leads from
its certificate to a trust anchor of the store, every certificate of the
chain is within its validity period at the time of checking, every issuer is
a CA allowed to sign certificates, and the signer certificate allows e-mail
protection. Chain candidates come from the message and from the store
(through a callable), never from the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from asn1crypto import x509 as asn1_x509
from cryptography import exceptions as crypto_exceptions
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from ciphermilter import ids, memo

_EMAIL_ADDRESS_OID = "1.2.840.113549.1.9.1"
_ANY_EKU = x509.ObjectIdentifier("2.5.29.37.0")
SIGNATURE_CHECKS_PER_LEVEL = 16  # issuer candidates tried per allowed chain level


class Certificate:
    """One certificate, parsed both ways: asn1crypto for names, cryptography for signatures."""

    def __init__(self, der: bytes):
        self.der = der
        self.asn1 = asn1_x509.Certificate.load(der)
        self.x509 = x509.load_der_x509_certificate(der)

    @property
    def subject_key(self) -> str:
        return ids.name_key(self.asn1.subject)

    @property
    def issuer_key(self) -> str:
        return ids.name_key(self.asn1.issuer)

    def same_key_and_subject(self, other: "Certificate") -> bool:
        return self.subject_key == other.subject_key and self.asn1.public_key.dump() == other.asn1.public_key.dump()

    def is_ca(self) -> bool:
        try:
            return self.x509.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            return False


@memo.of_small_encodings(maxsize=512)  # anchors and issuers recur on every signed message; a Certificate never changes
def parse(der: bytes) -> Certificate | None:
    """A :class:`Certificate`, or None for bytes that are no valid certificate."""
    try:
        return Certificate(der)
    except (ValueError, TypeError, x509.InvalidVersion):
        return None


def emails(der: bytes) -> list[str]:
    """The certificate's e-mail addresses, lower case: subjectAltName rfc822Name, else subject emailAddress."""
    cert = parse(der)
    if cert is None:
        return []
    try:
        names = cert.x509.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        found = [address.lower() for address in names.get_values_for_type(x509.RFC822Name)]
    except (x509.ExtensionNotFound, x509.DuplicateExtension, x509.UnsupportedGeneralNameType, ValueError):
        found = []
    if not found:
        found = _subject_emails(cert)
    return list(dict.fromkeys(found))


def _subject_emails(cert: Certificate) -> list[str]:
    found = []
    for rdn in cert.asn1.subject.chosen:
        for atv in rdn:
            if atv["type"].dotted != _EMAIL_ADDRESS_OID:
                continue
            try:
                found.append(str(atv["value"].native).lower())
            except ValueError:  # asn1crypto IDNA-decodes the domain; a broken one is no address
                continue
    return found


@dataclass
class Verdict:
    trusted: bool
    reason: str | None  # short stable text when not trusted
    chain: list[bytes]  # DER, signer first, as far as it was built


IssuerFinder = Callable[[str], list]  # subject name key -> [certificate DER] from the store


def evaluate(
    signer_der: bytes,
    *,
    message_certificates: list[bytes],
    find_issuers: IssuerFinder,
    anchors: list[bytes],
    now: datetime,
    max_chain_length: int,
) -> Verdict:
    """Decide whether ``signer_der`` is trusted at ``now``."""
    signer = parse(signer_der)
    if signer is None:
        return Verdict(False, "unreadable certificate", [])
    anchor_certs = [c for c in map(parse, anchors) if c is not None]
    pool = [c for c in map(parse, message_certificates) if c is not None]
    try:
        chain, reason = _build_chain(signer, anchor_certs, pool, find_issuers, max_chain_length)
        if chain is None:
            return Verdict(False, reason, [signer_der])
        problem = _validity_problem(chain, now) or _usage_problem(signer)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        # cryptography parses extensions lazily and refuses broken ones here (not all as ValueError)
        return Verdict(False, "unreadable certificate", [signer_der])
    return Verdict(problem is None, problem, [c.der for c in chain])


def _build_chain(signer, anchors, pool, find_issuers, max_length):
    """Search a path signer -> ... -> anchor; returns (chain, None) or (None, reason)."""
    search = _ChainSearch(anchors, pool, find_issuers, max_length)
    chain = search.extend([signer])
    return (chain, None) if chain is not None else (None, search.reason)


class _ChainSearch:
    """Depth-first path building that expands each certificate once and checks a bounded number of signatures.

    The certificates come from the sender: many self-issued CA certificates
    under one name would otherwise make the search exponential.
    """

    def __init__(self, anchors, pool, find_issuers, max_length: int):
        self.anchors, self.pool, self.find_issuers, self.max_length = anchors, pool, find_issuers, max_length
        self.reason = "no trust anchor"
        self.expanded: set[bytes] = set()
        self.checks_left = SIGNATURE_CHECKS_PER_LEVEL * max_length

    def extend(self, path: list[Certificate]) -> list[Certificate] | None:
        current = path[-1]
        if any(current.same_key_and_subject(anchor) for anchor in self.anchors):
            return path
        if len(path) >= self.max_length:
            self.reason = "chain too long"
            return None
        if current.der in self.expanded:  # a loop, or a dead end met before
            return None
        self.expanded.add(current.der)
        for issuer in _issuer_candidates(current, self.anchors, self.pool, self.find_issuers):
            if self.checks_left == 0:
                self.reason = "chain search limit reached"
                return None
            self.checks_left -= 1
            if not _issued_by(current, issuer):
                continue
            if not _may_sign_certificates(issuer, self.anchors):
                self.reason = "issuer is not a CA"
                continue
            found = self.extend(path + [issuer])
            if found is not None:
                return found
        return None


def _issuer_candidates(cert: Certificate, anchors, pool, find_issuers) -> list[Certificate]:
    """Certificates whose subject is ``cert``'s issuer: anchors first, then the message's, then the store's."""
    wanted = cert.issuer_key
    candidates = [c for c in anchors + pool if c.subject_key == wanted]
    for der in find_issuers(wanted):
        stored = parse(der)
        if stored is not None and not any(stored.der == c.der for c in candidates):
            candidates.append(stored)
    return candidates


def _issued_by(cert: Certificate, issuer: Certificate) -> bool:
    try:
        cert.x509.verify_directly_issued_by(issuer.x509)
        return True
    except (ValueError, TypeError, crypto_exceptions.InvalidSignature, crypto_exceptions.UnsupportedAlgorithm):
        return False


def _may_sign_certificates(issuer: Certificate, anchors) -> bool:
    """basicConstraints cA and keyUsage keyCertSign (when present); an anchor is trusted as configured."""
    if any(issuer.same_key_and_subject(anchor) for anchor in anchors):
        return True
    if not issuer.is_ca():
        return False
    try:
        return issuer.x509.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    except x509.ExtensionNotFound:
        return True


def _validity_problem(chain: list[Certificate], now: datetime) -> str | None:
    for cert in chain:
        if now > cert.x509.not_valid_after_utc:
            return "certificate expired"
        if now < cert.x509.not_valid_before_utc:
            return "certificate not yet valid"
    return None


def _usage_problem(signer: Certificate) -> str | None:
    """RFC 8550 section 4.4: key usage and extended key usage of the signer certificate, when present."""
    extensions = signer.x509.extensions
    try:
        usage = extensions.get_extension_for_class(x509.KeyUsage).value
        if not (usage.digital_signature or usage.content_commitment):
            return "key usage does not allow signing"
    except x509.ExtensionNotFound:
        pass
    try:
        purposes = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.EMAIL_PROTECTION not in purposes and _ANY_EKU not in purposes:
            return "extended key usage does not allow e-mail protection"
    except x509.ExtensionNotFound:
        pass
    return None
