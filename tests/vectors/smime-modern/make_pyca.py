"""Write pyca-default-rsa.eml: pyca/cryptography's PKCS7EnvelopeBuilder with its defaults (RSA only).

Run by make.sh after it has made rsa.cert.pem and content.txt.
"""

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

here = Path(__file__).parent
certificate = x509.load_pem_x509_certificate((here / "rsa.cert.pem").read_bytes())
envelope = (pkcs7.PKCS7EnvelopeBuilder().set_data((here / "content.txt").read_bytes()).add_recipient(certificate)
            .encrypt(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.Binary]))
headers = b"From: Sam Sender <sam@sender.example>\nTo: rsa@modern.example\nSubject: pyca default\n"
(here / "pyca-default-rsa.eml").write_bytes(headers + envelope)
