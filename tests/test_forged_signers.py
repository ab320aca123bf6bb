"""Only keys the admin trusts make a signature valid: forged signers in both formats, as an attacker builds them.

OpenPGP: the forger's key (real gpg, throwaway GNUPGHOME) claims an internal
address or a partner's, travels in the message (Autocrypt header, attached
key) or was harvested before, and signs; the headers must never say valid,
and the key must not land in the store. S/MIME: a chain that breaks RFC 5280
(tests/pki.py) signed by openssl; never trusted, never harvested. Both
through the core and through ``ciphermilter decrypt``, which must leave the
store as it was.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from support import pki
from ciphermilter import mime
from ciphermilter.core import pipeline as core
from ciphermilter.formats import ids
from ciphermilter.formats.openpgp import handler as openpgp_mime
from ciphermilter.formats.openpgp import carried_keys
from ciphermilter.cli.main import main
from ciphermilter.core.settings import Settings
from ciphermilter.core.info import INFO_PREFIX
from ciphermilter.core.plan import apply_plan
from ciphermilter.store.keystore import KeyStore
from ciphermilter.store import admin
from conftest import BOB, dump, harvested, info_of
from support.forgery import ALICE_PGP, BOB_PGP, CEO, PGP_KEYS, TEXT, Gpg, autocrypt, head, pgp_mime_signed, with_keys

NOT_IMPORTED = "signer key not imported by an administrator"


@pytest.fixture
def store(tmp_path):
    """bob's OpenPGP key (secret too) and alice's public key, imported by the admin; corp-pub.example internal."""
    with KeyStore.create(tmp_path / "store.db") as store:
        admin.import_file(store, (PGP_KEYS / "pub-pgp-bob-rsa3072.sec.asc").read_bytes())
        admin.import_file(store, (PGP_KEYS / "pub-pgp-alice-ed25519.pub.asc").read_bytes())
        admin.add_domain(store, "corp-pub.example")
        yield store


@pytest.fixture
def forger(tmp_path) -> Gpg:
    return Gpg(tmp_path / "forger")


@pytest.fixture
def bob(tmp_path) -> tuple[Gpg, str]:
    """bob's own gpg, holding his imported key (a signer the store vouches for), and that key's ID."""
    gpg = Gpg(tmp_path / "bob")
    return gpg, gpg.import_file(PGP_KEYS / "pub-pgp-bob-rsa3072.sec.asc")


def process(message: bytes, store, settings: Settings | None = None):
    outcome = core.process(message, BOB, store, settings)
    assert outcome.error is None
    return outcome, info_of(outcome)


def forged_pgp_mime(keyid: str) -> dict:
    return {"PGP-Encoding": "PGP/MIME", "PGP-Signed": "True", "PGP-Signer-KeyID": keyid,
            "PGP-Signature-Valid": "False", "PGP-Signature-Failure": NOT_IMPORTED,
            "PGP-Signer-Mismatch": "True"}  # From: names no signer whose signature is valid


def assert_body_untouched(message: bytes, outcome) -> None:
    assert outcome.plan.body is None and not outcome.plan.changes
    assert apply_plan(message, outcome.plan).endswith(message.partition(b"\r\n\r\n")[2])


# --------------------------------------------------------------------------- OpenPGP


@pytest.mark.parametrize("claimed", [CEO, ALICE_PGP], ids=["internal-address", "partner-with-imported-key"])
def test_autocrypt_key_signing_its_own_message_is_not_valid(store, forger, claimed):
    keyid = forger.generate(claimed)
    message = pgp_mime_signed(forger, keyid, TEXT, head(claimed, autocrypt(claimed, forger.public_key(keyid, False))))
    rows = dump(store.path)

    outcome, info = process(message, store)

    assert info == forged_pgp_mime(keyid)
    assert_body_untouched(message, outcome)
    assert store.pgp_public_keys(keyid) == [] and dump(store.path) == rows
    assert outcome.report["harvest"] == [f"Autocrypt: {carried_keys.NOT_VOUCHED}"]


def test_attached_key_and_inline_clearsigned_text_is_not_valid(store, forger):
    keyid = forger.generate(CEO)
    text = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + forger.clearsigned(keyid, b"Pay invoice 4711 now.\n")
    message = head(CEO) + with_keys(text, forger.public_key(keyid))

    outcome, info = process(message, store)

    # The clearsigned text sits beside the key attachment: not the whole content.
    assert info == {**forged_pgp_mime(keyid), "PGP-Encoding": "PGP/INLINE", "PGP-Mixed-Content": "True"}
    assert_body_untouched(message, outcome)
    assert store.pgp_public_keys(keyid) == []


def test_a_key_harvested_before_never_makes_a_later_signature_valid(store, forger):
    keyid = forger.generate(CEO)
    assert harvested(store, pgp=forger.public_key(keyid)) == ["added"]  # as an older version harvested it
    message = pgp_mime_signed(forger, keyid, TEXT, head(CEO))

    outcome, info = process(message, store)
    assert info == forged_pgp_mime(keyid)
    assert_body_untouched(message, outcome)

    admin.import_file(store, forger.public_key(keyid))  # the admin vouches for it now: the same message verifies
    assert info_of(core.process(message, BOB, store))["PGP-Signature-Valid"] == "True"


def test_a_signer_the_admin_imported_announces_a_new_key_of_his_own(store, bob):
    gpg, old_keyid = bob
    new_keyid = gpg.generate(BOB_PGP)
    ceo_keyid = gpg.generate(CEO)
    content = with_keys(TEXT, gpg.public_key(new_keyid), gpg.public_key(ceo_keyid))
    autocrypt_keyid = gpg.generate(BOB_PGP)  # in the header, which the signature does not cover
    header = head(BOB_PGP, autocrypt(BOB_PGP, gpg.public_key(autocrypt_keyid, False)))
    message = pgp_mime_signed(gpg, old_keyid, content, header)

    outcome, info = process(message, store)

    assert info["PGP-Signature-Valid"] == "True" and info["PGP-Signer-Email"] == BOB_PGP
    assert outcome.report["harvest"] == [
        f"Autocrypt: {carried_keys.NOT_VOUCHED}", f"0.1.3: {ceo_keyid} {carried_keys.FOREIGN_ADDRESSES}",
        f"0.1.2: {new_keyid} added"]
    assert admin.show_key(store, new_keyid)["origin"] == "harvested"
    assert store.pgp_public_keys(ceo_keyid) == store.pgp_public_keys(autocrypt_keyid) == []
    # Harvested, the new key still makes no signature valid until the admin imports it.
    later = pgp_mime_signed(gpg, new_keyid, TEXT, head(BOB_PGP))
    assert info_of(core.process(later, BOB, store))["PGP-Signature-Failure"] == NOT_IMPORTED


# --------------------------------------------------------------------------- S/MIME


@pytest.fixture
def smime_store(tmp_path):
    """An admin's store: the root of the test PKI as its only trust anchor; corp-pub.example internal."""
    root = pki.issue("Attack Root CA", ca=True)
    with KeyStore.create(tmp_path / "smime.db") as store:
        admin.add_trust_anchor(store, root.der)
        admin.add_domain(store, "corp-pub.example")
        yield store, root


def _plain_intermediate(root):
    return pki.issue("Attack Issuing CA", root, ca=True)


# (id, intermediate, signer under it, reason): what a CA (or whoever holds an intermediate) issues for ceo@.
SMIME_ATTACKS = [
    ("name-constraints",
     lambda root: pki.issue("Other Org CA", root, ca=True, extra=[pki.email_constraint("other.example")]),
     lambda ca: pki.issue("CEO", ca, email=CEO), "name constraints violated"),
    ("unknown-critical-extension", lambda root: pki.issue("Attack Issuing CA", root, ca=True,
                                                          extra=[(pki.UNKNOWN_EXTENSION, True)]),
     lambda ca: pki.issue("CEO", ca, email=CEO), "unknown critical extension"),
    ("server-auth-only", _plain_intermediate,
     lambda ca: pki.issue("CEO", ca, email=CEO, purposes=[pki.ExtendedKeyUsageOID.SERVER_AUTH]),
     "extended key usage does not allow e-mail protection"),
]


def smime_message(signer, chain, tmp_path) -> bytes:
    return pki.smime_signed(signer, chain, b"From: " + CEO.encode() + b"\r\nTo: bob@corp-pub.example\r\n", TEXT,
                            tmp_path)


def signer_headers(signer, trusted_info: str | None) -> dict:
    expected = {"SMIME-Signed": "True",
                "Signer-ID-0-0": f"issuer={signer.cert.issuer.rfc4514_string()}; "
                                 f"serial={ids.serial_hex(signer.cert.serial_number)}",
                "Signer-Email-0-0": CEO, "Signer-Verified-0-0": "True",
                "Signer-Trusted-0-0": "False" if trusted_info else "True"}
    return {**expected, "Signer-Trusted-Info-0-0": trusted_info} if trusted_info else expected


@pytest.mark.parametrize("make_ca, make_signer, reason", [a[1:] for a in SMIME_ATTACKS],
                         ids=[a[0] for a in SMIME_ATTACKS])
def test_a_signer_under_a_broken_path_is_not_trusted_nor_harvested(smime_store, tmp_path, make_ca, make_signer,
                                                                    reason):
    store, root = smime_store
    ca = make_ca(root)
    signer = make_signer(ca)
    message = smime_message(signer, [ca], tmp_path)

    outcome, info = process(message, store)

    assert info == signer_headers(signer, reason)
    assert_body_untouched(message, outcome)
    assert store.certificates(email=CEO) == []


def test_a_signer_under_a_sound_path_is_trusted_and_harvested(smime_store, tmp_path):
    """The control: the same message from a sound chain (so the attacks above fail for their one flaw)."""
    store, root = smime_store
    ca = _plain_intermediate(root)
    signer = pki.issue("CEO", ca, email=CEO)

    outcome, info = process(smime_message(signer, [ca], tmp_path), store)

    assert info == signer_headers(signer, None)
    assert store.certificates(email=CEO) == [signer.der]


# --------------------------------------------------------------------------- ciphermilter decrypt


def decrypt(store_path, message: bytes, *options: str):
    result = CliRunner().invoke(main, ["--store", str(store_path), "decrypt", "--rcpt", "bob@corp-pub.example",
                                       *options, "-"], input=message)
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def test_decrypt_reports_a_forged_signer_and_leaves_the_store_as_it_was(store, forger):
    keyid = forger.generate(CEO)
    message = pgp_mime_signed(forger, keyid, TEXT, head(CEO, autocrypt(CEO, forger.public_key(keyid, False))))
    before = dump(store.path)

    out = decrypt(store.path, message)

    assert dump(store.path) == before
    ours = {h.name[len(INFO_PREFIX):]: h.value for h in mime.split_headers(out)[0] if h.name.startswith(INFO_PREFIX)}
    assert ours == forged_pgp_mime(keyid)
    assert out.endswith(message.partition(b"\r\n\r\n")[2])


def test_decrypt_harvests_only_when_asked(smime_store, forger, tmp_path):
    """A trusted signer certificate and an Autocrypt key: nothing saved, then with --harvest what the daemon saves."""
    store, root = smime_store
    ca = _plain_intermediate(root)
    signer = pki.issue("CEO", ca, email=CEO)
    keyid = forger.generate(CEO)
    message = autocrypt(CEO, forger.public_key(keyid, False)) + smime_message(signer, [ca], tmp_path)
    before = dump(store.path)

    plain = decrypt(store.path, message)
    assert dump(store.path) == before
    assert b"X-CipherMail-Info-Signer-Trusted-0-0: True" in plain

    assert decrypt(store.path, message, "--harvest") == plain
    assert store.certificates(email=CEO) == [signer.der] and store.pgp_public_keys(keyid) == []
