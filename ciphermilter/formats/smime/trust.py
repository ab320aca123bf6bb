"""Certificate facts and certification paths of S/MIME signers (RFC 5280 section 6, RFC 8550).

A signer is trusted when pyca/cryptography's path validation
(:mod:`cryptography.x509.verification`: path building, signatures, validity
periods, basic constraints and path length, name constraints, unknown
critical extensions refused) finds a path from its certificate to a trust
anchor of the store, and the certificates allow what the path uses them for:
every issuer certificate signing, the signer e-mail protection (RFC 8550
section 4.4). Chain candidates come from the message and from the store
(through a callable), never from the network, and only as many as a path of
the allowed length may use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, NoReturn

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from ciphermilter.formats import ids

from ciphermilter.formats import memo

log = logging.getLogger(__name__)

_EMAIL_ADDRESS_OID = "1.2.840.113549.1.9.1"
_ANY_EKU = x509.ObjectIdentifier("2.5.29.37.0")
# Issuer candidates handed to path building per allowed chain level: the certificates come from the
# sender, and a crowd of CA certificates under one name would otherwise all be tried.
CANDIDATES_PER_LEVEL = 16
NO_ANCHOR = "no trust anchor"
NAME_CONSTRAINTS = "name constraints violated"
CHAIN_TOO_LONG = "chain too long"
# cryptography's path validation errors (their texts, as of cryptography 50) -> our reasons. The
# first match wins; an error none of them matches is logged and reported as INVALID_PATH.
_ERROR_REASONS = (
    ("path length constraint", "path length exceeded"),
    ("name constraint", NAME_CONSTRAINTS),
    ("unaccounted-for critical extension", "unknown critical extension"),
    ("basicConstraints.cA must be asserted", "issuer is not a CA"),
    ("CA certificate has no basicConstraints", "issuer is not a CA"),
    ("exceeds max depth", CHAIN_TOO_LONG),
    ("signature check limit", "chain search limit reached"),
    ("signature algorithm", "signature algorithm not allowed"),
    ("RSA key", "key too weak"),
    ("must be an X509v3 certificate", "certificate not X.509 version 3"),  # v1 roots too: RFC 5280 allows them
    ("no interior errors", NO_ANCHOR),
)
INVALID_PATH = "invalid certification path"
# What our extension policies refuse (RFC 5280 section 6.1.4 (n), RFC 8550 section 4.4).
ISSUER_USAGE = "issuer key usage does not allow certificate signing"
SIGNING_USAGE = "key usage does not allow signing"
EMAIL_PURPOSE = "extended key usage does not allow e-mail protection"


class Certificate:
    """One certificate, parsed both ways: asn1crypto for names, cryptography for path validation."""

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
    found: list[str] = []
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
    chain: list[bytes]  # DER, signer first, up to the anchor when trusted


IssuerFinder = Callable[[str], list[bytes]]  # subject name key -> [certificate DER] from the store


def evaluate(
    signer_der: bytes,
    *,
    message_certificates: list[bytes],
    find_issuers: IssuerFinder,
    anchors: list[bytes],
    now: datetime,
    max_chain_length: int,
) -> Verdict:
    """Decide whether ``signer_der`` is trusted at ``now``; a chain holds at most ``max_chain_length`` certificates."""
    signer = parse(signer_der)
    if signer is None:
        return Verdict(False, "unreadable certificate", [])
    anchor_certs = [c for c in map(parse, anchors) if c is not None]
    try:
        problem = _validity_problem(signer.x509, now, "certificate")
        if problem is not None:
            return Verdict(False, problem, [signer_der])
        pool = [c for c in map(parse, message_certificates) if c is not None]
        candidates = _issuer_candidates(signer, pool, find_issuers, CANDIDATES_PER_LEVEL * max_chain_length)
        if not _names_an_anchor([signer, *candidates], anchor_certs):
            return Verdict(False, NO_ANCHOR, [signer_der])
        return _validate(signer, candidates, [c.x509 for c in anchor_certs], now, max_chain_length)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        # cryptography parses extensions lazily and refuses broken ones here (not all as ValueError)
        return Verdict(False, "unreadable certificate", [signer_der])


def _validate(signer: Certificate, candidates: list[Certificate], anchors: list[x509.Certificate], now: datetime,
              max_chain_length: int) -> Verdict:
    refusals: list[str] = []  # what our extension validators refused, latest last
    verifier = _verifier(anchors, now, max_chain_length, refusals)
    try:
        chain = verifier.verify(signer.x509, [c.x509 for c in candidates]).chain
    except verification.VerificationError as exc:
        return Verdict(False, _reason(str(exc), refusals, candidates, now), [signer.der])
    # cryptography counts intermediates only: a limit below 2 (signer and anchor) is ours to keep.
    problem = CHAIN_TOO_LONG if len(chain) > max_chain_length else _email_constraints_problem(
        chain, emails(signer.der))
    return Verdict(problem is None, problem, [c.public_bytes(Encoding.DER) for c in chain])


def _names_an_anchor(certificates: list[Certificate], anchors: list[Certificate]) -> bool:
    """Whether a path can end at an anchor at all: some certificate in reach is one, or names one as its issuer.

    Without one, "no trust anchor" is the answer, whatever the path
    validation would say about the certificates it tried (a cross-signed
    loop that never reaches an anchor exceeds any depth).
    """
    names = {anchor.subject_key for anchor in anchors}
    return any(cert.issuer_key in names or cert.subject_key in names for cert in certificates)


def _issuer_candidates(signer: Certificate, pool: list[Certificate], find_issuers: IssuerFinder,
                       limit: int) -> list[Certificate]:
    """Certificates that may issue the signer or its issuers, by name: the message's, then the store's.

    At most ``limit``, so that a message of a thousand certificates costs
    no more than a path of the allowed length can use.
    """
    found: dict[bytes, Certificate] = {}
    wanted, asked = [signer.issuer_key], set[str]()
    while wanted and len(found) < limit:
        name = wanted.pop(0)
        if name in asked:
            continue
        asked.add(name)
        stored = (parse(der) for der in find_issuers(name))
        for cert in [c for c in pool if c.subject_key == name] + [c for c in stored if c is not None]:
            if cert.der in found or cert.der == signer.der or len(found) >= limit:
                continue
            found[cert.der] = cert
            wanted.append(cert.issuer_key)
    return list(found.values())


def _verifier(anchors: list[x509.Certificate], now: datetime, max_chain_length: int,
              refusals: list[str]) -> verification.ClientVerifier:
    """cryptography's client verifier with the e-mail protection policy of RFC 8550 section 4.4.

    The extension policies start from ``permit_all`` rather than the Web PKI
    defaults, which would refuse most S/MIME CAs (they demand an
    authorityKeyIdentifier in every certificate and a subjectAltName in the
    leaf, and check clientAuth as the extended key usage). RFC 5280's
    checks stay: basicConstraints on every issuer (cA, pathLenConstraint),
    name constraints, and refusal of unknown critical extensions.
    """
    def refuse(reason: str) -> NoReturn:
        refusals.append(reason)
        raise ValueError(reason)

    def issuer_usage(policy: verification.Policy, cert: x509.Certificate, usage: x509.KeyUsage | None) -> None:
        if usage is not None and not usage.key_cert_sign:
            refuse(ISSUER_USAGE)

    def signer_usage(policy: verification.Policy, cert: x509.Certificate, usage: x509.KeyUsage | None) -> None:
        if usage is not None and not (usage.digital_signature or usage.content_commitment):
            refuse(SIGNING_USAGE)

    def signer_purposes(policy: verification.Policy, cert: x509.Certificate,
                        purposes: x509.ExtendedKeyUsage | None) -> None:
        if purposes is not None and ExtendedKeyUsageOID.EMAIL_PROTECTION not in purposes and _ANY_EKU not in purposes:
            refuse(EMAIL_PURPOSE)

    agnostic = verification.Criticality.AGNOSTIC
    ca_policy = (verification.ExtensionPolicy.permit_all()
                 .require_present(x509.BasicConstraints, agnostic, None)
                 .may_be_present(x509.KeyUsage, agnostic, issuer_usage))
    ee_policy = (verification.ExtensionPolicy.permit_all()
                 .may_be_present(x509.KeyUsage, agnostic, signer_usage)
                 .may_be_present(x509.ExtendedKeyUsage, agnostic, signer_purposes))
    return (verification.PolicyBuilder().store(verification.Store(anchors)).time(now)
            .max_chain_depth(max(0, min(max_chain_length - 2, 255)))  # intermediates: the signer and anchor aside
            .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
            .build_client_verifier())


def _reason(error: str, refusals: list[str], candidates: list[Certificate], now: datetime) -> str:
    """Our words for a path validation failure."""
    if "validator failed" in error and refusals:
        return refusals[-1]
    if "not valid at validation time" in error:
        return _issuer_validity_problem(candidates, now)
    for fragment, reason in _ERROR_REASONS:
        if fragment in error:
            return reason
    log.info("certification path refused: %s", error)
    return INVALID_PATH


def _validity_problem(cert: x509.Certificate, now: datetime, what: str) -> str | None:
    if now > cert.not_valid_after_utc:
        return f"{what} expired"
    if now < cert.not_valid_before_utc:
        return f"{what} not yet valid"
    return None


def _issuer_validity_problem(candidates: list[Certificate], now: datetime) -> str:
    """cryptography does not say which issuer was out of its validity period: the first candidate that is."""
    problems = (_validity_problem(c.x509, now, "issuer certificate") for c in candidates)
    return next((p for p in problems if p), "issuer certificate expired")


def _email_constraints_problem(chain: list[x509.Certificate], addresses: list[str]) -> str | None:
    """RFC 5280 section 4.2.1.10 for the addresses we report, the subject's emailAddress ones included.

    cryptography applies rfc822Name constraints to the subjectAltName; a
    certificate without one is named by its subject's emailAddress, which
    the constraints MUST cover as well.
    """
    for issuer in chain[1:]:
        try:
            constraints = issuer.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            continue
        permitted = [n.value for n in constraints.permitted_subtrees or () if isinstance(n, x509.RFC822Name)]
        excluded = [n.value for n in constraints.excluded_subtrees or () if isinstance(n, x509.RFC822Name)]
        for address in addresses:
            if (permitted and not any(_within(address, c) for c in permitted)) or any(
                    _within(address, c) for c in excluded):
                return NAME_CONSTRAINTS
    return None


def _within(address: str, constraint: str) -> bool:
    """An address within an rfc822Name constraint: a mailbox, a host, or a domain (``.example.com``)."""
    constraint = constraint.lower()
    if "@" in constraint:
        return address == constraint
    host = address.rpartition("@")[2]
    return host.endswith(constraint) if constraint.startswith(".") else host == constraint
