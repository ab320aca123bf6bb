"""Write sig-ed25519.der: an RFC 8419 Ed25519 SignedData over content.txt (OpenSSL 3.0 cannot sign CMS with Ed25519).

Run by make.sh after it has made ed25519.key.pem and ed25519.cert.pem.
"""

import hashlib
from pathlib import Path

from asn1crypto import cms, pem, x509
from cryptography.hazmat.primitives import serialization

here = Path(__file__).parent
content = (here / "content.txt").read_bytes()
key = serialization.load_pem_private_key((here / "ed25519.key.pem").read_bytes(), None)
certificate = x509.Certificate.load(pem.unarmor((here / "ed25519.cert.pem").read_bytes())[2])
signed_attrs = cms.CMSAttributes([
    cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
    cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha512(content).digest()]}),
])
signer = cms.SignerInfo({
    "version": "v1",
    "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
        "issuer": certificate.issuer, "serial_number": certificate.serial_number})}),
    "digest_algorithm": {"algorithm": "sha512"},
    "signed_attrs": signed_attrs,
    "signature_algorithm": {"algorithm": "ed25519"},
    "signature": key.sign(signed_attrs.dump()),  # RFC 8419 section 3.2: pure EdDSA over the DER SET OF
})
signed_data = cms.SignedData({
    "version": "v1",
    "digest_algorithms": [{"algorithm": "sha512"}],
    "encap_content_info": {"content_type": "data"},
    "certificates": [certificate],
    "signer_infos": [signer],
})
(here / "sig-ed25519.der").write_bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump())
