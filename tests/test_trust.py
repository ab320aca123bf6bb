"""Chain building and certificate facts, on the certificates made by tests/vectors/smime/make.sh."""

from __future__ import annotations

import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support import pki
from ciphermilter.formats.smime import trust

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


def _self_issued_cas(count: int, issuer: x509.Name | None = None) -> list[bytes]:
    """``count`` CA certificates named "Loop CA", each issued by "Loop CA" (or ``issuer``) with one key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Loop CA")])
    certificates = []
    for serial in range(1, count + 1):
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
                   .serial_number(serial).not_valid_before(NOW - timedelta(days=1))
                   .not_valid_after(NOW + timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))
        certificates.append(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    return certificates


def test_a_crowd_of_cross_issuing_cas_is_searched_in_bounded_work():
    # One of them names the anchor as its issuer (its signature is no anchor's): a path seems possible.
    root_name = x509.load_der_x509_certificate(cert("root")).subject
    loop = _self_issued_cas(40) + _self_issued_cas(1, issuer=root_name)
    for max_chain_length in (10, 100):  # cryptography's own signature-check budget ends the search either way
        verdict = trust.evaluate(loop[0], message_certificates=loop[1:], find_issuers=no_store,
                                 anchors=[cert("root")], now=NOW, max_chain_length=max_chain_length)
        assert (verdict.trusted, verdict.reason) == (False, "chain search limit reached")


def test_a_thousand_certificates_in_a_message_are_not_all_handed_to_path_building():
    loop = _self_issued_cas(1000)
    asked = []
    candidates = trust._issuer_candidates(trust.parse(loop[0]), [trust.parse(d) for d in loop[1:]],
                                          lambda name: asked.append(name) or [], 10 * trust.CANDIDATES_PER_LEVEL)
    assert len(candidates) == 10 * trust.CANDIDATES_PER_LEVEL and len(asked) == 1


def test_unreadable_certificate():
    verdict = trust.evaluate(b"\x30\x00", message_certificates=[], find_issuers=no_store, anchors=[cert("root")],
                             now=NOW, max_chain_length=10)
    assert (verdict.trusted, verdict.reason) == (False, "unreadable certificate")


def test_emails_come_from_the_subject_when_there_is_no_alt_name():
    assert trust.emails(cert("rsa")) == ["rita@vector.example"]
    assert trust.emails(cert("root")) == []
    assert trust.emails(b"junk") == []


# --------------------------------------------------------------------------- attacks on the path (RFC 5280)

def attack_chain(*, leaf=None, intermediate=None):
    """root (the anchor) -> intermediate -> leaf, each as pki.issue makes it unless given."""
    root = pki.issue("Attack Root CA", ca=True)
    intermediate = (intermediate or (lambda issuer: pki.issue("Attack Issuing CA", issuer, ca=True)))(root)
    leaf = (leaf or (lambda issuer: pki.issue("CEO", issuer, email="ceo@corp-pub.example")))(intermediate)
    return root, intermediate, leaf


def path_verdict(root, leaf, *message, now=NOW, max_chain_length=10):
    return trust.evaluate(leaf.der, message_certificates=[c.der for c in message], find_issuers=no_store,
                          anchors=[root.der], now=now, max_chain_length=max_chain_length)


def test_a_chain_as_a_ca_makes_it_is_trusted():
    """The control for every attack below: the same building blocks, nothing broken."""
    root, intermediate, leaf = attack_chain()
    verdict = path_verdict(root, leaf, intermediate)
    assert (verdict.trusted, verdict.reason) == (True, None)
    assert verdict.chain == [leaf.der, intermediate.der, root.der]


def _constrained(root):
    return pki.issue("Other Org CA", root, ca=True, extra=[pki.email_constraint("other.example")])


# (id, intermediate maker or None, leaf maker or None, reason)
ATTACKS = [
    ("name-constraints-alt-name", _constrained, None, "name constraints violated"),
    ("name-constraints-subject-email", _constrained,
     lambda issuer: pki.issue("CEO", issuer, subject_email="ceo@corp-pub.example"), "name constraints violated"),
    ("name-constraints-excluded", lambda root: pki.issue(
        "Not Corp CA", root, ca=True,
        extra=[(x509.NameConstraints(None, [x509.RFC822Name("corp-pub.example")]), True)]),
     None, "name constraints violated"),
    ("unknown-critical-extension-in-leaf", None,
     lambda issuer: pki.issue("CEO", issuer, email="ceo@corp-pub.example", extra=[(pki.UNKNOWN_EXTENSION, True)]),
     "unknown critical extension"),
    ("unknown-critical-extension-in-intermediate",
     lambda root: pki.issue("Attack Issuing CA", root, ca=True, extra=[(pki.UNKNOWN_EXTENSION, True)]), None,
     "unknown critical extension"),
    ("server-auth-only", None,
     lambda issuer: pki.issue("CEO", issuer, email="ceo@corp-pub.example",
                              purposes=[x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
     "extended key usage does not allow e-mail protection"),
    ("expired-intermediate",
     lambda root: pki.issue("Attack Issuing CA", root, ca=True, not_before=NOW - 30 * pki.DAY,
                            not_after=NOW - pki.DAY), None, "issuer certificate expired"),
    ("intermediate-not-yet-valid",
     lambda root: pki.issue("Attack Issuing CA", root, ca=True, not_before=NOW + pki.DAY), None,
     "issuer certificate not yet valid"),
    ("intermediate-is-no-ca", lambda root: pki.issue("Attack Issuing CA", root, email="ca@corp-pub.example"), None,
     "issuer is not a CA"),
]


@pytest.mark.parametrize("make_intermediate, make_leaf, reason", [a[1:] for a in ATTACKS], ids=[a[0] for a in ATTACKS])
def test_an_attack_on_the_path_is_refused_with_its_reason(make_intermediate, make_leaf, reason):
    root, intermediate, leaf = attack_chain(leaf=make_leaf, intermediate=make_intermediate)
    verdict = path_verdict(root, leaf, intermediate)
    assert (verdict.trusted, verdict.reason) == (False, reason)


def test_a_name_constrained_intermediate_may_issue_inside_its_names():
    root, intermediate, leaf = attack_chain(
        intermediate=_constrained, leaf=lambda issuer: pki.issue("Otto", issuer, email="otto@other.example"))
    assert path_verdict(root, leaf, intermediate).trusted


def test_a_ca_with_path_length_zero_cannot_have_a_ca_below_it():
    root = pki.issue("Attack Root CA", ca=True)
    zero = pki.issue("Zero CA", root, ca=True, path_length=0)
    sub = pki.issue("Sub CA", zero, ca=True)
    leaf = pki.issue("CEO", sub, email="ceo@corp-pub.example")
    verdict = path_verdict(root, leaf, zero, sub)
    assert (verdict.trusted, verdict.reason) == (False, "path length exceeded")
    assert path_verdict(root, pki.issue("Eve", zero, email="eve@corp-pub.example"), zero).trusted  # one level is fine


def test_a_cross_signed_loop_never_reaches_an_anchor():
    root = pki.issue("Attack Root CA", ca=True)
    x_key, y_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    y_self = pki.issue("Loop Y", ca=True, key=y_key)
    x_by_y = pki.issue("Loop X", y_self, ca=True, key=x_key)
    y_by_x = pki.issue("Loop Y", x_by_y, ca=True, key=y_key)
    leaf = pki.issue("CEO", x_by_y, email="ceo@corp-pub.example")
    verdict = path_verdict(root, leaf, x_by_y, y_by_x, y_self)
    assert (verdict.trusted, verdict.reason) == (False, "no trust anchor")


def test_a_cross_signed_loop_under_an_anchor_name_ends_in_bounded_work():
    """The loop names the anchor as an issuer (forged: another key), so path building has to walk it."""
    root = pki.issue("Attack Root CA", ca=True)
    forged_root = pki.issue("Attack Root CA", ca=True)
    x_key, y_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    x_by_root = pki.issue("Loop X", forged_root, ca=True, key=x_key)
    y_by_x = pki.issue("Loop Y", x_by_root, ca=True, key=y_key)
    x_by_y = pki.issue("Loop X", y_by_x, ca=True, key=x_key)
    leaf = pki.issue("CEO", x_by_y, email="ceo@corp-pub.example")
    verdict = path_verdict(root, leaf, x_by_root, y_by_x, x_by_y)
    assert (verdict.trusted, verdict.reason) == (False, "chain too long")


def _openssl(tmp_path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)


def _openssl_leaf(tmp_path, *digest: str) -> tuple[bytes, bytes]:
    """(leaf, root) DER: openssl issues a leaf (``digest`` options) from the root.pem and root.key in ``tmp_path``."""
    _openssl(tmp_path, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
             "-subj", "/CN=Old Leaf/emailAddress=old@vector.example")
    (tmp_path / "leaf.ext").write_text("basicConstraints=CA:FALSE\n")
    _openssl(tmp_path, "x509", "-req", "-in", "leaf.csr", "-CA", "root.pem", "-CAkey", "root.key", "-set_serial", "7",
             "-days", "5", *digest, "-extfile", "leaf.ext", "-out", "leaf.pem")
    der = [x509.load_pem_x509_certificate((tmp_path / f"{n}.pem").read_bytes()).public_bytes(serialization.Encoding.DER)
           for n in ("leaf", "root")]
    return der[0], der[1]


def _fresh_verdict(leaf: bytes, root: bytes) -> trust.Verdict:
    return trust.evaluate(leaf, message_certificates=[], find_issuers=no_store, anchors=[root],
                          now=datetime.now(timezone.utc), max_chain_length=10)  # openssl's notBefore is after NOW


@pytest.mark.parametrize("root_key, digest, reason", [
    ("rsa:2048", ["-sha1"], "signature algorithm not allowed"),  # SHA-1 collisions forge certificates
    ("rsa:1024", [], "key too weak"),
    ("rsa:2048", [], None),  # the control
], ids=["sha1-signature", "rsa-1024-issuer", "sound"])
def test_weak_signatures_on_the_path_are_refused(tmp_path, root_key, digest, reason):
    _openssl(tmp_path, "req", "-x509", "-newkey", root_key, "-nodes", "-keyout", "root.key", "-out", "root.pem",
             "-days", "10", "-subj", "/CN=Old Root", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=keyCertSign")
    verdict = _fresh_verdict(*_openssl_leaf(tmp_path, *digest))
    assert (verdict.trusted, verdict.reason) == (reason is None, reason)


def test_a_version_1_root_is_refused_by_the_path_validation(tmp_path):
    """An old root made without extensions (openssl x509 -signkey): pyca/cryptography accepts X.509 v3 only."""
    _openssl(tmp_path, "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "root.key", "-subj", "/CN=V1 Root",
             "-out", "root.csr")
    _openssl(tmp_path, "x509", "-req", "-in", "root.csr", "-signkey", "root.key", "-days", "10", "-out", "root.pem")
    leaf, root = _openssl_leaf(tmp_path)
    assert x509.load_der_x509_certificate(root).version == x509.Version.v1
    verdict = _fresh_verdict(leaf, root)
    assert (verdict.trusted, verdict.reason) == (False, "certificate not X.509 version 3")


def test_a_chain_length_below_two_leaves_only_an_anchor_itself_trusted():
    root = pki.issue("Attack Root CA", ca=True)
    leaf = pki.issue("CEO", root, email="ceo@corp-pub.example")
    assert path_verdict(root, leaf, max_chain_length=2).trusted
    verdict = path_verdict(root, leaf, max_chain_length=1)
    assert (verdict.trusted, verdict.reason) == (False, "chain too long")
    assert path_verdict(leaf, leaf, max_chain_length=1).trusted  # the admin made the signer itself an anchor
