
import pytest
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509

from ciphermilter.formats.ids import issuer_serial_id, name_key, rfc4514, serial_hex, ski_id
from conftest import CORPUS


def _certificates():
    for path in sorted(CORPUS.glob("keys/**/*.pem")):
        data = path.read_bytes()
        if b"CERTIFICATE" in data:
            for _, _, der in pem.unarmor(data, multiple=True):
                yield path.name, der


CERTS = list(_certificates())


@pytest.mark.parametrize("name, der", CERTS, ids=[n for n, _ in CERTS])
def test_rfc4514_matches_cryptography_for_ascii_names(name, der):
    ours = asn1_x509.Certificate.load(der)
    theirs = x509.load_der_x509_certificate(der)
    for our_name, their_name in ((ours.subject, theirs.subject), (ours.issuer, theirs.issuer)):
        expected = their_name.rfc4514_string()
        if expected.isascii():
            assert rfc4514(our_name) == expected


def test_non_ascii_and_special_characters_are_escaped():
    name = asn1_x509.Name.build({"common_name": "Jürgen, \"Admin\"", "organization_name": "#Org "})
    assert rfc4514(name) == 'CN=J\\C3\\BCrgen\\, \\"Admin\\",O=\\#Org\\ '


def test_name_key_ignores_string_type_and_case():
    printable = asn1_x509.Name.build({"common_name": "Root CA"}, use_printable=True)
    utf8 = asn1_x509.Name.build({"common_name": "root  ca"})
    assert name_key(printable) == name_key(utf8)


def test_identifier_forms():
    name = asn1_x509.Name.build({"common_name": "CA"})
    assert issuer_serial_id(name, 0x5A000003) == "issuer=CN=CA; serial=5A000003"
    assert serial_hex(-255) == "-FF"
    assert ski_id(bytes.fromhex("0a1b")) == "ski=0A1B"
