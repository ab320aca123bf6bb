"""Chain building and certificate facts, on the certificates made by tests/vectors/smime/make.sh."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ciphermilter import trust

VECTORS = Path(__file__).parent / "vectors" / "smime"
NOW = datetime.now(timezone.utc)


def cert(name: str) -> bytes:
    pem = (VECTORS / f"{name}.cert.pem").read_bytes()
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def no_store(subject_key: str) -> list:
    return []


def evaluate(signer: str, *, message=("inter",), store=no_store, anchors=("root",), now=NOW, max_chain_length=10):
    return trust.evaluate(
        cert(signer),
        message_certificates=[cert(n) for n in message],
        find_issuers=store,
        anchors=[cert(n) for n in anchors],
        now=now,
        max_chain_length=max_chain_length,
    )


def test_leaf_chains_through_the_intermediate_to_the_anchor():
    verdict = evaluate("rsa")
    assert (verdict.trusted, verdict.reason) == (True, None)
    assert verdict.chain == [cert("rsa"), cert("inter"), cert("root")]


def test_intermediate_from_the_store_when_the_message_lacks_it():
    asked = []
    inter = trust.parse(cert("inter"))

    def store(subject_key):
        asked.append(subject_key)
        return [cert("inter")] if subject_key == inter.subject_key else []

    assert evaluate("p256", message=(), store=store).trusted
    assert asked[0] == inter.subject_key


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"anchors": ()}, "no trust anchor"),
        ({"message": ()}, "no trust anchor"),
        ({"now": datetime(2200, 1, 1, tzinfo=timezone.utc)}, "certificate expired"),
        ({"now": datetime(2000, 1, 1, tzinfo=timezone.utc)}, "certificate not yet valid"),
        ({"max_chain_length": 2}, "chain too long"),
    ],
    ids=["no-anchor", "no-intermediate", "expired", "not-yet-valid", "too-long"],
)
def test_untrusted_with_a_stable_reason(kwargs, reason):
    verdict = evaluate("rsa", **kwargs)
    assert (verdict.trusted, verdict.reason) == (False, reason)


def test_server_certificate_may_not_sign_mail():
    verdict = evaluate("server")
    assert (verdict.trusted, verdict.reason) == (False, "extended key usage does not allow e-mail protection")


def test_certificate_issued_by_a_non_ca_is_not_trusted():
    verdict = evaluate("undernotca", message=("notca", "inter"))
    assert (verdict.trusted, verdict.reason) == (False, "issuer is not a CA")


def test_anchor_itself_needs_no_issuer():
    assert evaluate("rsa", message=(), anchors=("rsa",)).trusted


def test_ca_certificate_may_not_sign_mail():
    verdict = evaluate("inter", message=(), anchors=("inter",))
    assert (verdict.trusted, verdict.reason) == (False, "key usage does not allow signing")


def test_certificate_signed_by_another_key_is_no_issuer():
    # "other" has the same issuer name as "rsa" but is no CA certificate of it: it cannot stand in for "inter".
    assert evaluate("rsa", message=("other",)).reason == "no trust anchor"


def _self_issued_cas(count: int) -> list[bytes]:
    """``count`` CA certificates named "Loop CA", each issued by "Loop CA" with one key: all issue each other."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Loop CA")])
    certificates = []
    for serial in range(1, count + 1):
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(serial).not_valid_before(NOW - timedelta(days=1))
                   .not_valid_after(NOW + timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))
        certificates.append(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    return certificates


def test_a_crowd_of_cross_issuing_cas_is_searched_in_bounded_work():
    loop = _self_issued_cas(40)
    for max_chain_length in (10, 100):  # cryptography's own signature-check budget ends the search either way
        verdict = trust.evaluate(loop[0], message_certificates=loop[1:], find_issuers=no_store,
                                 anchors=[cert("root")], now=NOW, max_chain_length=max_chain_length)
        assert (verdict.trusted, verdict.reason) == (False, "chain search limit reached")


def test_unreadable_certificate():
    verdict = trust.evaluate(b"\x30\x00", message_certificates=[], find_issuers=no_store, anchors=[cert("root")],
                             now=NOW, max_chain_length=10)
    assert (verdict.trusted, verdict.reason) == (False, "unreadable certificate")


def test_emails_come_from_the_subject_when_there_is_no_alt_name():
    assert trust.emails(cert("rsa")) == ["rita@vector.example"]
    assert trust.emails(cert("root")) == []
    assert trust.emails(b"junk") == []
