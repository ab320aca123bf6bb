"""Signed CMS layers (RFC 5652 section 5): open one, check every SignerInfo, re-encode it detached.

Certificates come from the message or, through a callable
(:data:`CertFinder`), from the store: the handler passes the store's
``certificates`` lookup (``core.seams.SmimeKeys``). Whether a verified
signer is trusted is :mod:`trust`'s question, not this module's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import exceptions as crypto_exceptions
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import load_der_public_key

from ciphermilter.core.contract import LimitExceeded
from ciphermilter.formats import ids, memo
from ciphermilter.formats.smime import asn1
from ciphermilter.formats.smime.algorithms import HASH_BY_NAME, MICALG, SHAKE256_LEN, SIGNED_DATA, hash_named
from ciphermilter.formats.smime.errors import MALFORMED, CmsError, MalformedCms, UnsupportedAlgorithm

HashFactory = Callable[[], hashes.HashAlgorithm]  # a hash class, or SHAKE256 with its output length


@dataclass
class Signer:
    """The outcome for one SignerInfo."""

    index: int
    text: str  # the spec's signer identifier
    digest: str  # digest algorithm name (sha256, ...)
    signature_algorithm: str
    certificate: bytes | None  # DER of the signer certificate, when found in the message or the store
    verified: bool
    reason: str | None  # why not verified


@dataclass
class SignedLayer:
    content: bytes | None  # the encapsulated content (opaque signing), None when detached
    certificates: list[bytes]  # DER of the certificates the message carries
    _info: cms.ContentInfo = field(repr=False)

    @property
    def signer_infos(self) -> cms.SignerInfos:
        return self._info["content"]["signer_infos"]


def open_signed(info: cms.ContentInfo, *, max_signers: int) -> SignedLayer:
    """The layer's content and certificates; more than ``max_signers`` raise the contract's ``LimitExceeded``."""
    if asn1.content_type(info) != SIGNED_DATA:
        raise UnsupportedAlgorithm(f"not signed data: {asn1.content_type(info)}")
    try:
        data = info["content"]
        if len(data["signer_infos"]) > max_signers:
            raise LimitExceeded(f"more than {max_signers} signers in one layer")
        content = asn1.encapsulated_content(data)
        certificates = [c.chosen.dump() for c in data["certificates"] if c.name == "certificate"]
    except asn1.PARSE_ERRORS:
        raise MalformedCms() from None
    return SignedLayer(content, certificates, info)


CertFinder = Callable[[asn1.Lookup], list[bytes]]  # store lookup kwargs -> [certificate DER]


def verify(layer: SignedLayer, content: bytes, find_certificates: CertFinder, *,
           max_rsa_bits: int = 16384) -> list[Signer]:
    """Check every SignerInfo over ``content`` (the exact signed bytes).

    An RSA key above ``max_rsa_bits`` is refused unchecked: the sender picks
    the certificate, and a huge modulus is a cheap way to burn our CPU.
    """
    try:
        econtent_type = asn1.dotted(layer._info["content"]["encap_content_info"]["content_type"])
        signer_infos = list(layer.signer_infos)
    except asn1.PARSE_ERRORS:
        raise MalformedCms() from None
    return [_verify_signer(index, signer_info, content, econtent_type, layer.certificates, find_certificates,
                           max_rsa_bits) for index, signer_info in enumerate(signer_infos)]


def verify_either(layer: SignedLayer, canonical: bytes, received: bytes | None, find_certificates: CertFinder, *,
                  max_rsa_bits: int = 16384) -> list[Signer]:
    """Each signer over the canonical CRLF form; one that fails there, over the bytes ``received`` too.

    RFC 8551 section 3.1.1 signs the canonical form, and NSS (Thunderbird)
    signs it but may encrypt its content with bare LF line ends; OpenSSL's
    ``cms -sign -binary`` signs the LF bytes as they are. Both are the bytes
    the signer signed; any other bytes (LF signed, CRLF received) fail.
    """
    signers = verify(layer, canonical, find_certificates, max_rsa_bits=max_rsa_bits)
    if received is None or all(signer.verified for signer in signers):
        return signers
    as_received = verify(layer, received, find_certificates, max_rsa_bits=max_rsa_bits)
    return [second if second.verified else first for first, second in zip(signers, as_received, strict=True)]


def _verify_signer(index: int, signer_info: cms.SignerInfo, content: bytes, econtent_type: str,
                   message_certs: list[bytes], find_certificates: CertFinder, max_rsa_bits: int) -> Signer:
    try:
        sid = asn1.identify(signer_info["sid"])
        digest_name: str = signer_info["digest_algorithm"]["algorithm"].native
        sig_name: str = signer_info["signature_algorithm"]["algorithm"].native
        hash_cls = _digest(signer_info["digest_algorithm"])
    except asn1.PARSE_ERRORS:
        return Signer(index, "unknown", "unknown", "unknown", None, False, MALFORMED)
    certificate = _find_signer_certificate(sid, message_certs, find_certificates)
    signer = Signer(index, sid.text, digest_name, sig_name, certificate, False, None)
    if hash_cls is None:
        signer.reason = f"unsupported digest {digest_name}"
        return signer
    if certificate is None:
        signer.reason = "signer certificate not found"
        return signer
    try:
        public_key = _public_key(certificate)
        if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size > max_rsa_bits:
            raise CmsError("RSA key too large")
        signed_bytes = _signed_bytes(signer_info, content, econtent_type, hash_cls)
        _check_signature(public_key, signer_info, signed_bytes, hash_cls)
    except CmsError as exc:
        signer.reason = exc.reason
        return signer
    except crypto_exceptions.InvalidSignature:
        signer.reason = "bad signature"
        return signer
    except crypto_exceptions.UnsupportedAlgorithm:
        signer.reason = "unsupported public key"
        return signer
    except asn1.PARSE_ERRORS:
        signer.reason = MALFORMED
        return signer
    signer.verified = True
    return signer


def _digest(algorithm: cms.DigestAlgorithm) -> HashFactory | None:
    """The digest a SignerInfo names; None when we do not implement it."""
    name: str = algorithm["algorithm"].native
    if name == SHAKE256_LEN:  # only the 512-bit output RFC 8419 section 2.3 gives Ed448 signers
        return _shake256_512 if algorithm["parameters"].native == 512 else None
    return HASH_BY_NAME.get(name)


def _shake256_512() -> hashes.HashAlgorithm:
    return hashes.SHAKE256(64)


def _find_signer_certificate(sid: asn1.Identifier, message_certs: list[bytes],
                             find_certificates: CertFinder) -> bytes | None:
    for der in message_certs:
        if _certificate_matches(der, sid):
            return der
    for der in find_certificates(sid.lookup):
        if _certificate_matches(der, sid):
            return der
    return None


def _certificate_matches(der: bytes, sid: asn1.Identifier) -> bool:
    try:
        if sid.ski is not None:
            return _certificate_id(der, by_ski=True) == sid.ski
        return _certificate_id(der, by_ski=False) == (sid.serial, sid.issuer_key)
    except asn1.PARSE_ERRORS:
        return False


# Memoised by the certificate's DER: a signer's certificate (and the chain beside it) comes back on
# every message it signs, and asn1crypto's parse of it took longer than the RSA signature check.
# Safe: bounded (512 certificates of at most memo.MAX_MEMO_BYTES); keys are immutable public
# certificates, values their public identifiers and key; a parse error is raised again each time.
@memo.of_small_encodings(maxsize=512)
def _certificate_id(der: bytes, *, by_ski: bool) -> bytes | tuple[int, str] | None:
    """The certificate's subject key identifier, or its (serial, issuer lookup key)."""
    cert = asn1_x509.Certificate.load(der)
    if by_ski:
        ski: bytes | None = cert.key_identifier
        return ski
    serial: int = cert.serial_number
    return serial, ids.name_key(cert.issuer)


@memo.of_small_encodings(maxsize=512)
def _public_key(der: bytes) -> PublicKeyTypes:
    return load_der_public_key(asn1_x509.Certificate.load(der).public_key.dump())


def _signed_bytes(signer_info: cms.SignerInfo, content: bytes, econtent_type: str, hash_cls: HashFactory) -> bytes:
    """What the signature covers: the signed attributes (after checking them) or the content itself."""
    attrs = signer_info["signed_attrs"]
    if not attrs.contents:
        return content
    values = {asn1.dotted(attr["type"]): attr["values"] for attr in attrs}
    message_digest = values.get("1.2.840.113549.1.9.4")
    content_type_attr = values.get("1.2.840.113549.1.9.3")
    if message_digest is None or len(message_digest) != 1:
        raise CmsError("message digest attribute missing")
    if content_type_attr is None or len(content_type_attr) != 1:
        raise CmsError("content type attribute missing")
    if asn1.dotted(content_type_attr[0]) != econtent_type:
        raise CmsError("content type mismatch")
    digest = hashes.Hash(hash_cls())
    digest.update(content)
    if digest.finalize() != message_digest[0].native:
        raise CmsError("message digest mismatch")
    # RFC 5652 section 5.4: the signature is over the attributes as an explicit SET OF.
    encoded: bytes = attrs.dump()
    return b"\x31" + encoded[1:]


def _check_signature(public_key: PublicKeyTypes, signer_info: cms.SignerInfo, data: bytes,
                     hash_cls: HashFactory) -> None:
    algorithm = signer_info["signature_algorithm"]
    signature = signer_info["signature"].native
    kind = algorithm.signature_algo
    if isinstance(public_key, rsa.RSAPublicKey) and kind == "rsassa_pkcs1v15":
        public_key.verify(signature, data, asym_padding.PKCS1v15(), _signature_hash(algorithm, hash_cls))
    elif isinstance(public_key, rsa.RSAPublicKey) and kind == "rsassa_pss":
        params = algorithm["parameters"]
        pss_hash = hash_named(params["hash_algorithm"]["algorithm"].native)
        mgf_hash = hash_named(params["mask_gen_algorithm"]["parameters"]["algorithm"].native)
        pss = asym_padding.PSS(asym_padding.MGF1(mgf_hash), params["salt_length"].native)
        public_key.verify(signature, data, pss, pss_hash)
    elif isinstance(public_key, ec.EllipticCurvePublicKey) and kind == "ecdsa":
        public_key.verify(signature, data, ec.ECDSA(_signature_hash(algorithm, hash_cls)))
    elif isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)) and kind in ("ed25519", "ed448"):
        public_key.verify(signature, data)
    else:
        raise UnsupportedAlgorithm(f"unsupported signature algorithm {algorithm['algorithm'].native}")


def _signature_hash(algorithm: cms.SignedDigestAlgorithm, hash_cls: HashFactory) -> hashes.HashAlgorithm:
    """The hash named by sha256WithRSAEncryption and friends, else the SignerInfo's digest algorithm."""
    try:
        return hash_named(algorithm.hash_algo)
    except (ValueError, UnsupportedAlgorithm):
        return hash_cls()


def detached_signature(layer: SignedLayer) -> bytes:
    """The same SignedData without its eContent: a detached signature with the very same SignerInfos.

    Only the changed field is re-encoded; the SignerInfos and certificates
    keep their received bytes, so a BER-encoded signature (NSS) stays valid.
    """
    try:
        data = layer._info["content"].copy()
        encap = data["encap_content_info"]
        # PKCS#7 v1 SignedData holds a ContentInfo here, CMS an EncapsulatedContentInfo: keep the class.
        data["encap_content_info"] = type(encap)({"content_type": asn1.dotted(encap["content_type"])})
        encoded: bytes = cms.ContentInfo({"content_type": SIGNED_DATA, "content": data}).dump()
        return encoded
    except asn1.PARSE_ERRORS:
        raise MalformedCms() from None


def micalg(signers: list[Signer]) -> str:
    """The multipart/signed micalg parameter (RFC 8551 section 3.5.3) for these signers' digests."""
    names = sorted({MICALG.get(s.digest, "unknown") for s in signers})
    return ",".join(names) or "sha-256"
