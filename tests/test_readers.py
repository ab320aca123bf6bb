"""Issue 13, item 1: plaintext only for the readers the sender chose.

The attacks are built as an insider would: a colleague's captured
ciphertext sent to oneself, a RecipientInfo of one's own added beside the
colleague's, a sender-supplied certificate that carries the colleague's
public key under the attacker's address, a hidden-recipient OpenPGP packet.
Messages come from the real tools (openssl cms, gpg) for the corpus keys;
where a structure must be edited, asn1crypto re-encodes exactly that field.
"""

from __future__ import annotations

import datetime
import hashlib
import shutil
import subprocess

import pytest
from asn1crypto import cms as asn1_cms
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ciphermilter.formats.smime import cms, recipients

from ciphermilter.core import pipeline as core

from ciphermilter.formats.openpgp import sessionkeys
from ciphermilter.formats.openpgp import engine as openpgp

from ciphermilter.formats import readers

from ciphermilter.daemon import stats
from ciphermilter.cli.check import Report, check_reader_rule
from ciphermilter.cli.main import main
from ciphermilter.core.settings import Settings
from ciphermilter.core.plan import apply_plan
from ciphermilter.store.keystore import KeyStore
from ciphermilter.store.schema import StoreError
from ciphermilter.store import admin
from conftest import CORPUS, NO_HARVEST, corpus_store_file, dump, harvested, info_of
from support.to_bob import BOB_CERT, OUTER, pgp_encrypt, pgp_mime_part, smime_encrypt, smime_part

ERIN_CERT = CORPUS / "keys" / "smime" / "pub-erin-p256.cert.pem"
SECRET = b"Content-Type: text/plain\r\n\r\nthe merger closes on friday\r\n"
BOB, ERIN, CAROL = "bob@corp-pub.example", "erin@corp-pub.example", "carol@corp-pub.example"
BOB_PGP, ERIN_PGP = "bob.pgp@corp-pub.example", "erin.pgp@corp-pub.example"
REFUSED = readers.NOT_EVERY_READER


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A corpus store file (with its master key) that each test copies, since tests bind and harvest."""
    return corpus_store_file(tmp_path_factory.mktemp("readers-template"))


@pytest.fixture
def store(template, tmp_path):
    for path in (template, template.with_name(template.name + ".key")):
        shutil.copy(path, tmp_path / path.name)
    opened = KeyStore.open(tmp_path / template.name)
    yield opened
    opened.close()


def process(message: bytes, recipients: list[str], store, settings: Settings = NO_HARVEST):
    outcome = core.process(message, core.Envelope(recipients=recipients), store, settings)
    assert outcome.error is None
    return outcome, apply_plan(message, outcome.plan)


def smime_message(der: bytes) -> bytes:
    return OUTER + b"MIME-Version: 1.0\r\n" + smime_part(der)


def assert_left_as_received(message: bytes, out: bytes) -> None:
    assert out.partition(b"\r\n\r\n")[2] == message.partition(b"\r\n\r\n")[2]


# ---------------------------------------------------------------------------- addresses and the rule


@pytest.mark.parametrize("address, delimiters, base", [
    ("<Bob@Corp-Pub.EXAMPLE>", "", "bob@corp-pub.example"),
    ("bob+lists@corp-pub.example", "", "bob+lists@corp-pub.example"),
    ("bob+lists@corp-pub.example", "+", "bob@corp-pub.example"),
    ("bob-lists+x@corp-pub.example", "+-", "bob@corp-pub.example"),  # the first delimiter of any kind
    ("+bob@corp-pub.example", "+", "+bob@corp-pub.example"),  # as Postfix: a leading delimiter is no extension
    ("postmaster", "+", "postmaster"),
])
def test_base_address_compares_as_postfix_does(address, delimiters, base):
    assert readers.base_address(address, delimiters) == base


def test_a_domain_binding_reads_for_every_address_of_the_domain():
    assert readers.reads(frozenset({"@corp-pub.example"}), CAROL)
    assert not readers.reads(frozenset({"@corp-pub.example"}), "carol@sub.corp-pub.example")
    assert not readers.reads(frozenset({BOB}), CAROL)


def test_arrange_gives_a_group_per_recipient_and_refuses_a_recipient_without_a_key():
    keys = {"k-bob": frozenset({BOB}), "k-erin": frozenset({ERIN}), "k-team": frozenset({"@corp-pub.example"})}
    rule = readers.ReaderRule((BOB, ERIN))
    assert rule.arrange(["k-bob", "k-erin"], keys.get) == [["k-bob"], ["k-erin"]]
    assert rule.arrange(["k-team"], keys.get) == [["k-team"]]  # one key read by both: one group, one unwrap
    assert rule.arrange(["k-bob"], keys.get) == []
    assert readers.ReaderRule(()).arrange(["k-bob"], keys.get) == []
    assert readers.ReaderRule((CAROL,), required=False).arrange(["k-bob", "k-erin"], keys.get) == [["k-bob", "k-erin"]]


def test_open_agreeing_needs_every_group_to_yield_the_content_key():
    unwrapped = {"a": b"K", "b": b"K", "c": b"other"}
    opened = readers.open_agreeing([["a"], ["b"]], unwrapped.get, lambda key: b"plain" if key == b"K" else None)
    assert opened == (b"plain", "a")
    with pytest.raises(readers.Disagreement):
        readers.open_agreeing([["a"], ["c"]], unwrapped.get, lambda key: b"plain" if key == b"K" else None)
    calls = []
    readers.open_agreeing([["a"], ["a", "b"]], lambda c: calls.append(c) or unwrapped[c], lambda key: b"plain")
    assert calls == ["a"]  # a candidate in several groups is unwrapped once


# ---------------------------------------------------------------------------- captured ciphertext


def test_colleagues_captured_smime_ciphertext_is_not_decrypted_for_oneself(store):
    message = smime_message(smime_encrypt(SECRET))  # bob's correspondent encrypted it to bob only
    outcome, out = process(message, [ERIN], store)
    assert info_of(outcome) == {
        "SMIME-Encrypted": "True",
        "Encryption-Algorithm-0": "AES-256-CBC",
        "Encryption-Recipient-0-0": info_of(outcome)["Encryption-Recipient-0-0"],
        "SMIME-Decryption-Key-Not-Found": "True",
        "SMIME-Decryption-Refused-0": REFUSED,
    }
    assert_left_as_received(message, out)
    assert outcome.report["readers"] == {"required": True, "recipients": [ERIN], "refused": REFUSED}
    # the test can fail: for bob, and with the rule off, the same message opens
    assert b"the merger closes" in process(message, [BOB], store)[1]
    assert b"the merger closes" in process(message, [ERIN], store, Settings(require_reader=False))[1]


def test_one_colleague_without_a_key_keeps_it_encrypted_for_the_whole_transaction(store):
    message = smime_message(smime_encrypt(SECRET))
    outcome, out = process(message, [BOB, CAROL], store)
    assert info_of(outcome)["SMIME-Decryption-Refused-0"] == REFUSED
    assert CAROL not in " ".join(info_of(outcome).values())  # the header never names a (Bcc) recipient
    assert_left_as_received(message, out)


def test_every_reader_of_a_named_key_gets_it_in_one_transaction(store):
    message = smime_message(_to_bob_and_erin())
    outcome, out = process(message, [BOB, ERIN], store)
    assert b"the merger closes" in out and "SMIME-Decryption-Refused-0" not in info_of(outcome)


def _to_bob_and_erin() -> bytes:
    return subprocess.run(["openssl", "cms", "-encrypt", "-binary", "-aes256", "-outform", "DER", str(BOB_CERT),
                           str(ERIN_CERT)], input=SECRET, check=True, capture_output=True).stdout


def test_a_recipient_info_added_for_ones_own_key_opens_nothing(store):
    """Erin splices a RecipientInfo for her own key (wrapping a content key of her own) into bob's ciphertext."""
    captured = asn1_cms.ContentInfo.load(smime_encrypt(SECRET))
    own = asn1_cms.ContentInfo.load(smime_encrypt(b"decoy", ERIN_CERT))
    captured["content"]["recipient_infos"] = [*captured["content"]["recipient_infos"],
                                              *own["content"]["recipient_infos"]]
    message = smime_message(captured.dump(force=True))
    outcome, out = process(message, [BOB, ERIN], store)
    info = info_of(outcome)
    assert info["SMIME-Decryption-Failed-0"] == "decryption failed" and "SMIME-Decryption-Refused-0" not in info
    assert_left_as_received(message, out)
    assert b"the merger closes" not in out
    # bob alone still reads what was sent to him: the test can fail
    assert b"the merger closes" in process(message, [BOB], store)[1]


# ---------------------------------------------------------------------------- harvested keys


def _impostor_certificate(serial: int, ski: bytes) -> bytes:
    """A certificate a sender hands us: the attacker's address, bob's public key, the attacker's own CA."""
    bob = x509.load_pem_x509_certificate(BOB_CERT.read_bytes())
    attacker_ca = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Carol")]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Attacker CA")]))
            .public_key(bob.public_key()).serial_number(serial)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(CAROL)]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier(ski), critical=False)
            .sign(attacker_ca, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


def test_a_certificate_naming_a_whole_domain_reads_only_its_own_addresses(store):
    """A subjectAltName of "@corp-pub.example" in an imported certificate is no domain binding: only
    ``keys bind`` makes a key read for a whole domain."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Everyone")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("@corp-pub.example")]), critical=False)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    admin.import_file(store, pem, filename="everyone.pem")
    der = cert.public_bytes(serialization.Encoding.DER)
    assert "@corp-pub.example" in admin.show_key(store, ids_of(der))["emails"]  # the vector: the name is stored
    assert store.certificate_readers(der) == frozenset()
    assert "@corp-pub.example" not in store.reader_addresses()
    assert core.recipient_class(CAROL, store, Settings()) == readers.NO_KEY


def ids_of(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest().upper()


@pytest.mark.parametrize("by", ["issuer-serial", "ski"])
def test_harvested_certificate_with_a_colleagues_key_gains_no_readers(store, by):
    impostor = _impostor_certificate(0x1337, b"\xa7" * 20)
    assert harvested(store, certificates=(impostor,)) == ["added"]  # as a verified signature of carol's would
    captured = asn1_cms.ContentInfo.load(smime_encrypt(SECRET))
    ktri = captured["content"]["recipient_infos"][0].chosen
    if by == "ski":
        ktri["version"] = "v2"
        ktri["rid"] = asn1_cms.RecipientIdentifier({"subject_key_identifier": b"\xa7" * 20})
    else:
        cert = x509.load_der_x509_certificate(impostor)
        ktri["rid"] = asn1_cms.RecipientIdentifier({"issuer_and_serial_number": {
            "issuer": asn1_cms.Name.load(cert.issuer.public_bytes()), "serial_number": 0x1337}})
    message = smime_message(captured.dump(force=True))
    outcome, out = process(message, [CAROL], store)
    assert info_of(outcome)["SMIME-Decryption-Refused-0"] == REFUSED
    assert_left_as_received(message, out)
    # the store does join the impostor to bob's private key: without the rule it would decrypt
    assert b"the merger closes" in process(message, [CAROL], store, Settings(require_reader=False))[1]
    assert core.recipient_class(CAROL, store, Settings()) == readers.NO_KEY
    thumbprint = next(k["id"] for k in admin.list_keys(store) if k["origin"] == "harvested")
    before = dump(store.path)
    with pytest.raises(StoreError, match="harvested from mail: a key a sender supplied gets no readers"):
        admin.bind(store, thumbprint, CAROL)
    assert dump(store.path) == before


def test_harvested_openpgp_key_with_the_attackers_user_id_gains_no_readers(store, gpg_home):
    """Carol (internal, no key) sends her own public key with her address, in an Autocrypt header or attached."""
    home = gpg_home.parent / "carol-gnupg"
    home.mkdir(mode=0o700)
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
                    "--quick-gen-key", CAROL, "future-default", "default", "never"], check=True, capture_output=True)
    public = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--armor", "--export", CAROL], check=True,
                            capture_output=True).stdout
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True)
    assert harvested(store, pgp=public) == ["added"]
    fingerprint = next(k["id"] for k in admin.list_keys(store) if k["type"] == "openpgp" and k["origin"] == "harvested")
    assert store.pgp_readers(fingerprint) == frozenset()
    before = dump(store.path)
    with pytest.raises(StoreError, match="harvested from mail"):
        admin.bind(store, fingerprint, CAROL)
    assert dump(store.path) == before
    assert core.recipient_class(CAROL, store, Settings()) == readers.NO_KEY


# ---------------------------------------------------------------------------- OpenPGP


def pgp_mime_message(gpg_home) -> bytes:
    return OUTER + b"MIME-Version: 1.0\r\n" + pgp_mime_part(pgp_encrypt(gpg_home, SECRET))


def inline_pgp_message(gpg_home) -> bytes:
    return OUTER + b"Content-Type: text/plain\r\n\r\n" + pgp_encrypt(gpg_home, b"the merger closes\r\n")


@pytest.mark.parametrize("build, encoding", [(pgp_mime_message, "PGP/MIME"), (inline_pgp_message, "PGP/INLINE")],
                         ids=["pgp-mime", "inline"])
def test_colleagues_captured_pgp_ciphertext_is_not_decrypted_for_oneself(store, gpg_home, build, encoding):
    message = build(gpg_home)  # bob.pgp's correspondent encrypted it to his key only
    outcome, out = process(message, [ERIN_PGP], store)
    assert info_of(outcome) == {
        "PGP-Encoding": encoding,
        "PGP-Encrypted": "True",
        "PGP-Decryption-Key-Not-Found": "True",
        "PGP-Decryption-Refused": REFUSED,
    }
    assert_left_as_received(message, out)
    assert b"the merger closes" in process(message, [BOB_PGP], store)[1]


def test_hidden_recipient_is_tried_only_with_the_recipients_keys(store, gpg_home, monkeypatch):
    armored = subprocess.run(["gpg", "--homedir", str(gpg_home), "--batch", "--trust-model", "always", "--armor",
                              "--throw-keyids", "--recipient", BOB_PGP, "--encrypt"], input=SECRET, check=True,
                             capture_output=True).stdout.replace(b"\n", b"\r\n")
    message = OUTER + b"MIME-Version: 1.0\r\n" + pgp_mime_part(armored)
    tried = []
    real = sessionkeys.fits  # asked first for every (PKESK, subkey) pair that is considered
    monkeypatch.setattr(sessionkeys, "fits", lambda esk, subkey: tried.append(subkey.primary) or real(esk, subkey))
    outcome, out = process(message, [ERIN_PGP], store)
    assert b"the merger closes" not in out
    erin = {k["id"] for k in admin.list_keys(store) if ERIN_PGP in k["emails"]}
    assert tried and set(tried) <= erin  # trial decryption never reaches bob's key for erin
    assert info_of(outcome)["PGP-Decryption-Failed"] == "no key in the store decrypts the session key"
    tried.clear()
    assert b"the merger closes" in process(message, [BOB_PGP], store)[1]


# ---------------------------------------------------------------------------- bindings and settings


def test_bindings_add_readers_and_unbind_takes_them_away(store):
    message = smime_message(smime_encrypt(SECRET))
    bob_key = next(k["id"] for k in admin.list_keys(store) if k["type"] == "x509" and BOB in k["emails"])
    assert admin.bind(store, bob_key, "@Corp-Pub.example")  # a domain key, as a partner's one organisation key
    assert admin.show_key(store, bob_key)["readers"] == ["@corp-pub.example", BOB]
    assert core.recipient_class(CAROL, store, Settings()) == readers.READER
    assert b"the merger closes" in process(message, [CAROL], store)[1]
    assert admin.unbind(store, bob_key, "@corp-pub.example")
    assert process(message, [CAROL], store)[0].info.has("SMIME-Decryption-Key-Not-Found")


def test_recipient_delimiter_maps_a_sub_address_to_its_reader(store):
    message = smime_message(smime_encrypt(SECRET))
    assert process(message, ["bob+lists@corp-pub.example"], store)[0].info.has("SMIME-Decryption-Key-Not-Found")
    assert b"the merger closes" in process(message, ["Bob+Lists@corp-pub.example"], store,
                                           Settings(recipient_delimiter="+", harvest_certificates=False))[1]


def test_no_recipient_at_all_decrypts_for_nobody(store):
    outcome, out = process(smime_message(smime_encrypt(SECRET)), [], store)
    assert info_of(outcome)["SMIME-Decryption-Refused-0"] == readers.NO_RECIPIENT


@pytest.mark.parametrize("settings", [Settings(require_reader=False), Settings(mixed_recipients="decrypt-for-all")],
                         ids=["rule-off", "decrypt-for-all"])
def test_check_warns_when_others_than_the_readers_may_get_plaintext(settings):
    report = Report()
    check_reader_rule(settings, report)
    assert [(f.severity, f.area) for f in report.findings] == [("warning", "readers")]
    report = Report()
    check_reader_rule(Settings(), report)
    assert report.findings == []


def cli(store, *args):
    return CliRunner().invoke(main, ["--store", str(store.path), *args])


def test_keys_bind_and_unbind_from_the_command_line(store):
    bob_key = next(k["id"] for k in admin.list_keys(store) if k["type"] == "x509" and BOB in k["emails"])
    result = cli(store, "keys", "bind", bob_key[:16], "Team@Corp-Pub.example")
    assert result.exit_code == 0 and result.output == f"bound: team@corp-pub.example to {bob_key[:16]}\n"
    listing = cli(store, "keys", "list").output
    assert f"  {BOB}, team@corp-pub.example" in listing
    assert cli(store, "keys", "unbind", bob_key[:16], "team@corp-pub.example").exit_code == 0
    assert cli(store, "keys", "unbind", bob_key[:16], "team@corp-pub.example").exit_code == 1


@pytest.mark.parametrize("target, address, error", [
    ("zed", "zed@corp-pub.example", "has no private key in the store"),
    ("bob", "not an address", "not an address or @domain"),
    ("bob", "@*.corp-pub.example", "not an address or @domain"),
])
def test_a_refused_bind_is_one_line_and_leaves_the_store_as_it_was(store, target, address, error):
    key = next(k["id"] for k in admin.list_keys(store) if k["type"] == "x509" and f"{target}@" in " ".join(k["emails"]))
    before = dump(store.path)
    result = cli(store, "keys", "bind", key[:16], address)
    assert result.exit_code == 1 and error in result.stderr and result.stderr.count("\n") == 1
    assert dump(store.path) == before


def test_bindings_move_with_store_export_and_import(store, tmp_path):
    bob_key = next(k["id"] for k in admin.list_keys(store) if k["type"] == "x509" and BOB in k["emails"])
    pgp_key = next(k["id"] for k in admin.list_keys(store) if k["type"] == "openpgp" and BOB_PGP in k["emails"])
    admin.bind(store, bob_key, "@corp-pub.example")
    admin.bind(store, pgp_key, "team@corp-pub.example")
    data = admin.export_all(store, "moving day")
    with KeyStore.create(tmp_path / "fresh.db") as fresh:
        result = admin.import_export(fresh, data, "moving day")
        assert f"binding @corp-pub.example to {bob_key[:16]}" in result.added
        assert admin.show_key(fresh, bob_key)["bindings"] == ["@corp-pub.example"]
        assert admin.show_key(fresh, pgp_key)["readers"] == [BOB_PGP, BOB, "team@corp-pub.example"]  # bob: conftest
        assert f"binding @corp-pub.example to {bob_key[:16]}" in admin.import_export(fresh, data, "moving day").already_present


def test_refusals_are_counted_by_reason_for_the_stats_command(store):
    outcome, _ = process(smime_message(smime_encrypt(SECRET)), [ERIN], store)
    found, failures = stats.counted(outcome)
    assert {"smime_encrypted", "smime_key_not_found"} <= found and "smime_decrypted" not in found
    assert failures == [("SMIME-Decryption-Refused", REFUSED)]


def test_offline_decrypt_applies_the_rule_to_the_recipients_it_is_given(store, tmp_path):
    message = smime_message(smime_encrypt(SECRET))
    path = tmp_path / "captured.eml"
    path.write_bytes(message)
    refused = cli(store, "decrypt", "--rcpt", ERIN, str(path))
    assert refused.exit_code == 0
    assert refused.stdout_bytes == process(message, [ERIN], store)[1]
    assert b"X-CipherMail-Info-SMIME-Decryption-Refused-0: not encrypted to a key of every" in refused.stdout_bytes
    assert b"the merger closes" in cli(store, "decrypt", "--rcpt", BOB, str(path)).stdout_bytes


def test_private_key_operations_stay_one_per_recipient_key(store, monkeypatch):
    """Bob and erin: one unwrap each (the agreement check), bob alone: one, erin on bob's message: none."""
    unwraps = []
    real = recipients.unwrap_content_key
    monkeypatch.setattr(recipients, "unwrap_content_key", lambda recipient, key, size: unwraps.append(recipient.kind) or real(
        recipient, key, size))
    both = smime_message(_to_bob_and_erin())
    assert b"the merger closes" in process(both, [BOB, ERIN], store)[1] and unwraps == ["ktri", "kari"]
    unwraps.clear()
    assert b"the merger closes" in process(both, [BOB], store)[1] and unwraps == ["ktri"]
    unwraps.clear()
    process(smime_message(smime_encrypt(SECRET)), [ERIN], store)
    assert unwraps == []
