"""Forged signers through the daemon behind a real Postfix: the headers the recipient gets, and the store after.

The daemon runs as nobody on the session's store; the store is read and
changed here only through the CLI as that user, so that no file of it ever
belongs to root.
"""

from __future__ import annotations

import json

import pytest

from support import pki
from ciphermilter.formats import ids
from support.messages import INTERNAL_RECIPIENT
from support.chain import PREFIX, as_daemon_user, delivered, ours, submit
from support.forgery import CEO, TEXT, Gpg, autocrypt, head, pgp_mime_signed

def test_autocrypt_key_signing_for_an_internal_address_is_delivered_as_not_valid(postfix, sink, key_store_file,
                                                                                 tmp_path):
    forger = Gpg(tmp_path / "forger")
    keyid = forger.generate(CEO)
    message = pgp_mime_signed(forger, keyid, TEXT, head(CEO, autocrypt(CEO, forger.public_key(keyid, False))))

    received, body = delivered(sink, submit(postfix.port, message, [INTERNAL_RECIPIENT], sender=CEO)).split()

    assert body == message.partition(b"\r\n\r\n")[2]
    assert [f for f in ours(received) if not f.startswith(PREFIX + b"PGP-Signer-Mismatch:")] == [
        PREFIX + b"PGP-Encoding: PGP/MIME",
        PREFIX + b"PGP-Signed: True",
        PREFIX + b"PGP-Signer-KeyID: " + keyid.encode(),
        PREFIX + b"PGP-Signature-Valid: False",
        PREFIX + b"PGP-Signature-Failure: signer key not imported by an administrator",
    ]
    listed = json.loads(as_daemon_user(key_store_file, "keys", "list", "--json"))
    assert not [k for k in listed if keyid.lower() in json.dumps(k).lower()], "the forger's key was harvested"


@pytest.fixture
def anchored_root(key_store_file, tmp_path):
    """A new root the admin trusts (added with the CLI as the daemon's user): the attacker's CA sits below it."""
    root = pki.issue("E2E Partner Root CA", ca=True)
    as_daemon_user(key_store_file, "trust", "add", "-", data=root.pem)
    return root


def test_name_constrained_intermediate_issuing_for_an_internal_address_is_delivered_as_not_trusted(
        postfix, sink, key_store_file, anchored_root, tmp_path):
    ca = pki.issue("Partner Issuing CA", anchored_root, ca=True, extra=[pki.email_constraint("partner.example")])
    signer = pki.issue("CEO", ca, email=CEO)
    message = pki.smime_signed(signer, [ca], b"From: " + CEO.encode() + b"\r\nTo: " + INTERNAL_RECIPIENT.encode()
                               + b"\r\n", TEXT, tmp_path)

    received, body = delivered(sink, submit(postfix.port, message, [INTERNAL_RECIPIENT], sender=CEO)).split()

    assert body == message.partition(b"\r\n\r\n")[2]
    serial = ids.serial_hex(signer.cert.serial_number)
    assert ours(received) == [
        PREFIX + b"SMIME-Signed: True",
        PREFIX + b"Signer-ID-0-0: issuer=CN=Partner Issuing CA; serial=" + serial.encode(),
        PREFIX + b"Signer-Email-0-0: " + CEO.encode(),
        PREFIX + b"Signer-Verified-0-0: True",
        PREFIX + b"Signer-Trusted-0-0: False",
        PREFIX + b"Signer-Trusted-Info-0-0: name constraints violated",
    ]
    listed = json.loads(as_daemon_user(key_store_file, "keys", "list", "--json"))
    assert not [k for k in listed if CEO in json.dumps(k)], "the signer certificate was harvested"
