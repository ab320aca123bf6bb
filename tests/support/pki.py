"""Certificates an attacker (or a CA) makes, built at test time with cryptography, and messages openssl signs with them.

Every certificate has a fresh P-256 key, a subject and authority key
identifier, and the extensions a real S/MIME CA puts in (basicConstraints and
keyUsage critical, extendedKeyUsage emailProtection and an rfc822Name in the
leaf); each test changes the one thing its attack needs.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: F401 (tests name purposes through pki)

NOW = datetime.now(timezone.utc)
DAY = timedelta(days=1)
UNKNOWN_EXTENSION = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.1"), b"\x05\x00")
CA_USAGE = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                         encipher_only=False, decipher_only=False)
SIGNER_USAGE = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                             data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                             encipher_only=False, decipher_only=False)


@dataclass
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def issue(name: str, issuer: Issued | None = None, *, ca: bool = False, path_length: int | None = None,
          email: str | None = None, subject_email: str | None = None, purposes=(ExtendedKeyUsageOID.EMAIL_PROTECTION,),
          extra=(), not_before=NOW - DAY, not_after=NOW + 30 * DAY, key=None) -> Issued:
    """A certificate for ``name``, self-signed when there is no ``issuer``; ``extra`` is [(extension, critical)]."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, name)]
    if subject_email:
        attributes.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, subject_email))
    subject = x509.Name(attributes)
    signer_key = issuer.key if issuer else key
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
               .add_extension(CA_USAGE if ca else SIGNER_USAGE, critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
                              critical=False))
    if not ca and purposes:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(purposes)), critical=False)
    if email:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
    for extension, critical in extra:
        builder = builder.add_extension(extension, critical=critical)
    return Issued(builder.sign(signer_key, hashes.SHA256()), key)


def email_constraint(*permitted: str) -> tuple[x509.NameConstraints, bool]:
    """Name constraints (critical, as RFC 5280 requires) that permit only the given rfc822Name subtrees."""
    return x509.NameConstraints([x509.RFC822Name(p) for p in permitted], None), True


def smime_signed(signer: Issued, chain: list[Issued], headers: bytes, content: bytes, workdir: Path) -> bytes:
    """A multipart/signed message made by ``openssl cms -sign``, carrying ``chain`` as extra certificates."""
    (workdir / "signer.pem").write_bytes(signer.pem)
    (workdir / "signer.key").write_bytes(signer.key_pem)
    (workdir / "chain.pem").write_bytes(b"".join(c.pem for c in chain) or signer.pem)
    (workdir / "content.eml").write_bytes(content)
    signed = subprocess.run(
        ["openssl", "cms", "-sign", "-binary", "-in", str(workdir / "content.eml"), "-signer",
         str(workdir / "signer.pem"), "-inkey", str(workdir / "signer.key"), "-certfile", str(workdir / "chain.pem")],
        check=True, capture_output=True).stdout
    return headers + signed.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
