"""The harvest flood of issue 14 through the daemon behind a real Postfix.

A partner whose key the admin imported signs a message carrying 300 public keys of his own address
(tests/vectors/harvest-flood, made by gpg). Every one is vouched for by his valid signature; before the
caps the daemon kept all 300. Now it keeps limits.max_harvest_per_message (10), and the message itself
is delivered as any signed message: its body untouched, its signature valid.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ciphermilter.formats import keyfiles as keyimport
from support.messages import INTERNAL_RECIPIENT
from support.chain import PREFIX, as_daemon_user, delivered, ours, submit
from support.forgery import TEXT, Gpg, head, pgp_mime_signed, with_keys

FLOOD = Path(__file__).parent.parent / "vectors" / "harvest-flood"
PARTNER = "partner@sender-pub.example"
CAP = 10  # limits.max_harvest_per_message, default


def partner_keys(key_store_file) -> list[dict]:
    """The store's keys for the partner's address, listed as the daemon's user."""
    listed = json.loads(as_daemon_user(key_store_file, "keys", "list", "--json"))
    return [key for key in listed if PARTNER in key.get("emails", [])]


@pytest.fixture
def partner(key_store_file, tmp_path):
    """The partner's gpg with his key, whose public half the admin imports; removed again afterwards
    with whatever was harvested for his address, so the session's store is as it was."""
    gpg = Gpg(tmp_path / "partner")
    keyid = gpg.import_file(FLOOD / "signer.sec.asc")
    as_daemon_user(key_store_file, "keys", "import", "-", data=gpg.public_key(keyid))
    yield gpg, keyid
    for key in partner_keys(key_store_file):
        as_daemon_user(key_store_file, "keys", "remove", key["id"])
    subprocess.run(["gpgconf", "--homedir", str(gpg.home), "--kill", "gpg-agent"], capture_output=True)


def test_a_message_with_300_vouched_keys_adds_only_the_cap(postfix, sink, key_store_file, partner):
    gpg, keyid = partner
    flood = (FLOOD / "flood.pub.asc").read_bytes()
    message = pgp_mime_signed(gpg, keyid, with_keys(TEXT, flood), head(PARTNER))
    assert len(message) > 90_000 and [key["origin"] for key in partner_keys(key_store_file)] == ["imported"]

    received, body = delivered(sink, submit(postfix.port, message, [INTERNAL_RECIPIENT], sender=PARTNER)).split()

    assert body == message.partition(b"\r\n\r\n")[2]
    assert PREFIX + b"PGP-Signature-Valid: True" in ours(received)
    harvested = [key for key in partner_keys(key_store_file) if key["origin"] == "harvested"]
    assert len(harvested) == CAP
    first = [str(key.fingerprint).replace(" ", "") for key in keyimport.parse(flood).pgp_keys[:CAP]]
    assert {key["id"] for key in harvested} == set(first)  # the first ten in the message; the other 290 refused
