"""Outsider attack on issue 14, round three, attacker B (offline): forged-header floods, harvest floods,
compression bombs, timing of the failure paths, files at rest.

Each test asserts what issue 14, ciphermilter.conf(5) and ciphermilter-headers(7) promise. A test marked
``# FAILS:`` breaks that promise with the code as merged (the comment says how); the others held.

Promises attacked (quoted or condensed):
- issue 14, "Done when": "no input makes Postfix fail to accept a message"; ciphermilter.conf(5),
  max_forged_headers: each deletion costs Postfix's cleanup a reverse jump record, quadratic, 20,000 of them
  end in "451 4.3.0 queue file write error". So no message may make the milter send thousands of deletions.
- ciphermilter.conf(5), harvest_expiry_days: "What an administrator imported never expires".
- ciphermilter.conf(5), max_decompressed_size: "How large the compressed OpenPGP data of one message may grow
  when decompressed, all its compressed packets together [...] so that a bomb costs time up to this bound,
  never memory"; issue 14: "the bombs stay within 256 MB summed over the processes".
- issue 14, Timing: "Make the failure paths do the same work (an implicit-rejection style: a random key
  through the same decryption)"; readers.DecoyKey: "a failed unwrap [...] then costs the same content
  decryption as a good key on changed content".
- issue 14, "Done when": "no content we can decrypt reaches the scanners still encrypted by default" (the
  CompressedData tests: decrypted, but still packed for the scanners).
- issue 14 / files.py: "every file the daemon writes is 0600"; ``decrypt --explain-file``: "created with mode
  0600".
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bench import failure_pairs
from support.attack_messages import SMIME_ERIN, Tools, message, multipart
from ciphermilter.core import pipeline as core
from ciphermilter.core.outcome import refusal
from ciphermilter.formats.openpgp import decrypt as pgp_decrypt
from ciphermilter.formats.openpgp import engine as openpgp
from ciphermilter.cli.main import main
from ciphermilter.core.settings import Limits, Settings
from ciphermilter.core.info import is_reserved
from ciphermilter.store.keystore import KeyStore
from ciphermilter.store import admin
from ciphermilter.store import rows as store_rows
from conftest import BOB, NO_HARVEST, ROOT, corpus_store_file, harvested, info_of
from support import pki
from support.attacker_b import (FLOOD, LIMIT, MIB, armored, compressed_data_entity, fields, spelled,
                                 under_the_bound_bomb, zlib_literal)

PGP_BOB = core.Envelope(recipients=["bob.pgp@corp-pub.example"])
# What a plan may ask of Postfix's cleanup for one message besides the forged fields it may delete: the
# content headers of the new body, the protected headers restored, a handful of info headers. Far below
# the thousands that make cleanup quadratic; the exact number is not the point.
FEW_EDITS = LIMIT + 50
TOO_MANY_DELETIONS = f"more than {LIMIT} header fields to remove"


@pytest.fixture(scope="module")
def tools(tmp_path_factory) -> Tools:
    return Tools(tmp_path_factory.mktemp("attacker-b"))


def header_edits(outcome) -> int:
    """How many header edits (deletions, changes, additions) the daemon would send Postfix for ``outcome``."""
    plan = outcome.plan
    return len(plan.deletions) + len(plan.changes) + len(plan.additions)


# =========================================================================== forged-header flood


def test_forged_fields_in_every_spelling_are_counted_together_exactly_at_the_limit():
    settings = Settings(internal_domains=["corp-pub.example"])
    plain = b"Content-Type: text/plain\r\n\r\nhello\r\n"
    at_limit = core.process(message(plain, extra=spelled(LIMIT)), BOB, None, settings)
    assert at_limit.reject is None and len(at_limit.plan.deletions) == LIMIT
    assert all(is_reserved(d.name) for d in at_limit.plan.deletions)

    over = core.process(message(plain, extra=spelled(LIMIT + 1)), BOB, None, settings)
    assert over.reject == f"more than {LIMIT} forged X-CipherMail headers"
    assert refusal(over, settings) == ("554", "5.7.0", f"Message rejected: more than {LIMIT} forged X-CipherMail headers")


# FAILS: the flood check counts only reserved names, but the milter also deletes every extra copy of the
# outer content headers when it replaces the body (core._replace_headers, CONTENT_HEADERS, drop_missing).
# A message whose outer header block repeats "Content-Description:" 20,000 times makes the plan hold 20,000
# deletions: exactly the quadratic cleanup of the forged flood (451 4.3.0 in Postfix, see
# tests/e2e/test_attacks_round3b.py), and no key is needed: an opaque S/MIME signature by any self-made
# certificate triggers the rewrite to multipart/signed (opaque_to_detached, on by default).
# Reproduce: openssl cms -sign -nodetach ... | add 20,000 "Content-Description: x" lines to the outer
# header block | ciphermilter decrypt --rcpt bob@corp-pub.example --explain  -> 20,001 deletions.
def test_repeated_content_headers_on_an_opaque_signature_cost_no_deletion_flood(tools, corpus_store):
    # signed by erin, a stranger to the store's trust anchors: no key or trust of the gateway is needed
    flooded = message(tools.smime_opaque(b"Content-Type: text/plain\r\n\r\nhello\r\n", SMIME_ERIN),
                      extra=fields(b"Content-Description", FLOOD))

    outcome = core.process(flooded, BOB, corpus_store)

    assert outcome.reject is not None or header_edits(outcome) <= FEW_EDITS, (
        f"{len(outcome.plan.deletions)} deletions for Postfix's cleanup")
    # Fixed: above max_forged_headers deletions the core stops at a limit and the message passes as received
    # with the reason. Still under on_limit: an application/pkcs7-mime message to a reader of a stored key
    # shows content the gateway may hold a key for, whatever its smime-type says (core.shows_held_content).
    assert info_of(outcome) == {"Not-Processed": TOO_MANY_DELETIONS} and outcome.plan.body is None
    assert outcome.held_at_limit == TOO_MANY_DELETIONS


# FAILS: the same with an S/MIME message encrypted to bob (anyone may encrypt to a public certificate):
# 20,000 outer Content-Description fields become 20,000 deletions when the decrypted body replaces it.
def test_repeated_content_headers_on_an_encrypted_message_cost_no_deletion_flood(tools, corpus_store):
    encrypted = tools.smime_encrypted(b"Content-Type: text/plain\r\n\r\nhello\r\n")
    # Adjusted (fix round): the attack first asserted the flooded message was decrypted; the fix stops it at
    # a limit instead, so that precondition is asserted on the message without the flood.
    assert info_of(core.process(message(encrypted), BOB, corpus_store))["SMIME-Encrypted"] == "True"
    flooded = message(encrypted, extra=fields(b"Content-Description", FLOOD))

    outcome = core.process(flooded, BOB, corpus_store)

    assert outcome.reject is not None or header_edits(outcome) <= FEW_EDITS, (
        f"{len(outcome.plan.deletions)} deletions for Postfix's cleanup")
    assert_held_at_the_deletion_bound(outcome)


# FAILS: header protection (on by default) keeps one copy of each restorable header and deletes the others
# (core._replace_headers: "Extra outer copies are removed so exactly one value stays"). 20,000 outer
# "Comments:" fields and an encrypted part with protected-headers="v1" and one Comments: field give 19,999
# (OpenPGP) or 20,000 (S/MIME) deletions.
@pytest.mark.parametrize("kind", ["smime", "pgp"])
def test_repeated_protected_headers_cost_no_deletion_flood(tools, corpus_store, kind):
    inner = (b'Content-Type: text/plain; charset=us-ascii; protected-headers="v1"\r\n'
             b"Comments: the inner one\r\nSubject: inner\r\n\r\nhello\r\n")
    entity = tools.smime_encrypted(inner) if kind == "smime" else tools.pgp_encrypted(inner)
    envelope = BOB if kind == "smime" else PGP_BOB
    # Adjusted (fix round), as above: decrypted without the flood, held at the limit with it.
    assert core.process(message(entity, extra=fields(b"Comments", 2)), envelope, corpus_store).plan.body is not None
    flooded = message(entity, extra=fields(b"Comments", FLOOD))

    outcome = core.process(flooded, envelope, corpus_store)

    assert outcome.reject is not None or header_edits(outcome) <= FEW_EDITS, (
        f"{len(outcome.plan.deletions)} deletions for Postfix's cleanup")
    assert_held_at_the_deletion_bound(outcome)


def assert_held_at_the_deletion_bound(outcome):
    """Content the gateway can decrypt, stopped at the deletion bound: on_limit applies (554 by default)."""
    assert outcome.held_at_limit == TOO_MANY_DELETIONS and outcome.plan.body is None
    assert refusal(outcome, Settings()) == (
        "554", "5.7.0", f"Encrypted content could not be inspected: {TOO_MANY_DELETIONS}")


def test_forged_fields_in_a_message_rfc822_part_are_neither_counted_nor_edited():
    embedded = b"Subject: inner\r\n" + spelled(FLOOD) + b"\r\ninner text\r\n"
    flooded = message(multipart(b"mixed", [b"Content-Type: text/plain\r\n\r\nouter\r\n",
                                           b"Content-Type: message/rfc822\r\n\r\n" + embedded]))
    outcome = core.process(flooded, BOB, None, Settings(internal_domains=["corp-pub.example"]))
    assert outcome.reject is None and header_edits(outcome) == 0


# =========================================================================== harvest


def backdate_everything(path, days: int) -> None:
    then = store_rows.before_now(days * 24 * 3600)
    conn = sqlite3.connect(path)
    with conn:
        for table in ("certificates", "pgp_keys", "smime_keys"):
            conn.execute(f"UPDATE {table} SET added = ?", (then,))
    conn.close()


# FAILS: an administrator's private key is deleted by the expiry of harvested material. The store accepts a
# private key alone when any certificate of its public key is present ("import the certificate with it
# (same file, or before)"), a harvested one included, and leaves that certificate 'harvested'. Expiry then
# removes the certificate (never "used": no mail was encrypted to it yet) and, with it, the admin-imported
# private key (store._delete_key: DELETE FROM smime_keys WHERE spki_sha256 NOT IN certificates).
# Reproduce: Bob's signed mail to a colleague harvests his certificate; the admin then runs
# `ciphermilter keys import bob.key.pem`; 90 days later (or `keys expire-harvested`) Bob's key is gone and
# every message encrypted to him is delivered still encrypted. (The certificate also stays 'harvested', so
# the reader rule gives Bob no reader: `keys show` lists "readers: []".)
def test_expiry_never_removes_a_private_key_the_admin_imported(tmp_path):
    root = pki.issue("Corp Root", ca=True)
    bob = pki.issue("Bob", root, email="bob@corp-pub.example")
    with KeyStore.create(tmp_path / "store.db") as store:
        admin.add_trust_anchor(store, root.der)
        assert harvested(store, certificates=(bob.der,)) == ["added"]  # from Bob's own signed mail
        result = admin.import_file(store, bob.key_pem)  # the administrator's import
        assert result.added == ["S/MIME private key for CN=Bob"]
        backdate_everything(store.path, 91)

        admin.expire_harvested(store, 90)

        assert store.rows("SELECT count(*) FROM smime_keys")[0][0] == 1, "the admin's private key was expired"


def test_a_flood_of_certificates_from_one_message_adds_the_cap(tmp_path):
    root = pki.issue("Partner Root", ca=True)
    offered = tuple(pki.issue(f"Signer {n}", root, email=f"s{n}@sender-pub.example").der for n in range(300))
    with KeyStore.create(tmp_path / "store.db") as store:
        verdicts = harvested(store, certificates=offered)
        assert verdicts.count("added") == Limits().max_harvest_per_message
        assert store.rows("SELECT count(*) FROM certificates WHERE origin = 'harvested'")[0][0] == 10


def test_a_harvest_never_evicts_nor_expires_what_the_admin_imported(tmp_path):
    root = pki.issue("Partner Root", ca=True)
    real = pki.issue("Partner", root, email="partner@sender-pub.example")
    with KeyStore.create(tmp_path / "store.db") as store:
        admin.import_file(store, real.pem)
        offered = tuple(pki.issue(f"Partner {n}", root, email="partner@sender-pub.example").der for n in range(30))
        harvested(store, certificates=offered[:10])
        harvested(store, certificates=offered[10:20])
        backdate_everything(store.path, 400)
        admin.expire_harvested(store, 90)
        rows = store.rows("SELECT origin FROM certificates")
        assert [row["origin"] for row in rows] == ["imported"]


# =========================================================================== bombs


# FAILS: the budget is per OpenPGP message (openpgp.open_message makes a new _Budget for each), not per mail
# message as documented: three blocks that each unpack to 0.6 of max_decompressed_size pass, 1.8 times the
# bound in all, in one text part or in three parts alike. With the defaults, N blocks of 255 MiB each cost N
# times the bound (bounded only by the deadline).
# Reproduce: a text/plain part holding three armored `gpg --compress-algo zlib --store`-like blocks of 600 KiB
# of zeros each, with max_decompressed_size = 1048576: no "OpenPGP data decompresses to more than" reason.
@pytest.mark.parametrize("layout", ["one-part", "three-parts"])
def test_many_small_bombs_share_the_one_budget_of_the_message(corpus_store, layout):
    block = armored(zlib_literal(600 * 1024))
    if layout == "one-part":
        mail = message(b"Content-Type: text/plain\r\n\r\n" + block + b"text\r\n" + block + block)
    else:
        mail = message(multipart(b"mixed", [b"Content-Type: text/plain\r\n\r\n" + block] * 3))
    settings = Settings(limits=Limits(max_decompressed_size=MIB))

    outcome = core.process(mail, BOB, corpus_store, settings)

    assert info_of(outcome).get("Not-Processed") == f"OpenPGP data decompresses to more than {MIB} bytes"


PEAK_RSS_OF = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""
# FAILS: a bomb that stays under max_decompressed_size is not refused, and then all of it is held, twice
# (pgp_decrypt._inflate keeps every piece of a packet that fits and joins them), and the text built from it
# again: `ciphermilter decrypt` peaks at about 1.3 GB for this 280 KB message (1.56 GB at 250 MiB), five
# times the issue's 256 MB for the daemon and all its workers together. "a bomb costs time up to this
# bound, never memory" holds only for bombs above the bound.
# Reproduce: python -c 'see under_the_bound_bomb()' > bomb.eml; /usr/bin/time -v ciphermilter decrypt
# --rcpt bob@corp-pub.example bomb.eml > /dev/null  -> "Maximum resident set size" ~1.3 GB.
def test_a_bomb_just_under_the_bound_stays_within_256_mb(tmp_path):
    store = corpus_store_file(tmp_path)
    path = tmp_path / "bomb.eml"
    path.write_bytes(under_the_bound_bomb())
    argv = [sys.executable, "-m", "ciphermilter", "--store", str(store), "decrypt", "--rcpt", "bob@corp-pub.example",
            str(path)]
    result = subprocess.run([sys.executable, "-S", "-c", PEAK_RSS_OF, *argv], capture_output=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    peak = int(result.stdout) * 1024
    assert peak < 256 * 1000 * 1000, f"peak RSS {peak / 1e6:.0f} MB for a {path.stat().st_size} byte message"


# FAILS: the same many-small-bombs message with the default bound, through `ciphermilter decrypt`: 60 armored
# blocks in one text part, each inflating to 6 MiB (under the 8 MiB kept while counting), 360 MiB in all,
# above the default 256 MiB: no limit is reached (the budget is per block) and every block's plaintext is
# kept until the part is done: a 500 KB message peaks at about 440 MB (in three parts instead: 72 MB).
# Reproduce: 60 copies of one armored ZLIB block of 6 MiB of zeros in a text/plain body;
# /usr/bin/time -v ciphermilter decrypt --rcpt bob@corp-pub.example m.eml  -> ~440 MB maximum resident set.
def test_many_small_bombs_in_one_part_stay_within_256_mb(tmp_path):
    store = corpus_store_file(tmp_path)
    path, report = tmp_path / "bombs.eml", tmp_path / "report.json"
    path.write_bytes(message(b"Content-Type: text/plain\r\n\r\n" + armored(zlib_literal(6 * MIB)) * 60))
    argv = [sys.executable, "-m", "ciphermilter", "--store", str(store), "decrypt", "--rcpt", "bob@corp-pub.example",
            "--explain-file", str(report), str(path)]
    result = subprocess.run([sys.executable, "-S", "-c", PEAK_RSS_OF, *argv], capture_output=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    peak = int(result.stdout) * 1024
    assert peak < 256 * 1000 * 1000, f"peak RSS {peak / 1e6:.0f} MB for a {path.stat().st_size} byte message"
    # The bound is the message's own (Limits.decompression_budget: 16 MiB for this 500 KB message), not the
    # configured ceiling the test asserted first (256 MiB): a message may unpack in proportion to its size.
    budget = Limits().decompression_budget(path.stat().st_size)
    assert f"OpenPGP data decompresses to more than {budget} bytes" in report.read_text()


PAYLOAD = b"Content-Type: text/plain\r\n\r\nSECRET-PAYLOAD-4b1e\r\n"


# FAILS: CMS CompressedData (RFC 3274) is not unwrapped ("SMIME-Unsupported-1: unsupported CMS content type
# 1.2.840.113549.1.9.16.1.9"), and when it sits inside an EnvelopedData the store holds the key for, the
# milter decrypts the envelope and delivers the compressed layer as is, under the default on_limit = reject:
# what the scanners get is zlib in base64, the payload no plainer than before. Issue 14: "no content we can
# decrypt reaches the scanners still encrypted by default" -- compressed rather than encrypted, but the same
# walk past clamav (tests/e2e/test_attacks_round3b.py sends a virus this way and it is delivered).
# Reproduce: encrypt a compressed-data entity (see compressed_data_entity) to bob with openssl cms -encrypt;
# ciphermilter decrypt --rcpt bob@corp-pub.example: exit 0, body still compressed, no reply refusing it.
def test_compressed_data_inside_encryption_never_reaches_the_scanners_still_packed(tools, corpus_store):
    mail = message(tools.smime_encrypted(compressed_data_entity(PAYLOAD)))

    outcome = core.process(mail, BOB, corpus_store)

    body = outcome.plan.body if outcome.plan.body is None or isinstance(outcome.plan.body, (bytes, bytearray)) \
        else outcome.plan.body.read()
    refused = refusal(outcome, Settings())
    assert refused is not None or (body is not None and b"SECRET-PAYLOAD-4b1e" in body), (
        info_of(outcome), (body or b"")[:120])


# =========================================================================== timing: the same work


def _conforming_pkesk(binary: bytes, algorithm: int) -> bytes:
    """The strongest tampered PKESK a sender can make: a session-key block of his own (the message's cipher,
    a random key, a wrong checksum) RSA-encrypted to bob's public subkey, so the padding is good and only
    the checksum fails."""
    import pgpy
    from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding, rsa

    key, _ = pgpy.PGPKey.from_file(str(failure_pairs.KEYS / "pgp" / "pub-pgp-bob-rsa3072.pub.asc"))
    keyid = next(openpgp.parse_pkesk(p.body).keyid for p in openpgp.packets(binary) if p.tag == openpgp.TAG_PKESK)
    material = key.subkeys[keyid]._key.keymaterial
    session = os.urandom(openpgp.CIPHERS[algorithm][2])
    block = bytes([algorithm]) + session + ((sum(session) + 1) & 0xFFFF).to_bytes(2, "big")
    value = rsa.RSAPublicNumbers(int(material.e), int(material.n)).public_key().encrypt(block, rsa_padding.PKCS1v15())
    number = int.from_bytes(value, "big")
    mpi = number.bit_length().to_bytes(2, "big") + value.lstrip(b"\0")
    return failure_pairs._with_pkesk_body(binary, lambda body: body[:10] + mpi)


@pytest.fixture(scope="module", params=[("AES128", 7), ("3DES", 2)], ids=["AES128", "3DES"])
def cipher_twins(tmp_path_factory, request):
    """An OpenPGP message to bob.pgp encrypted with the sender's choice of cipher (gpg --cipher-algo), and its
    twins: wrong key (a random RSA number as PKESK, as bench/failure_pairs.py), good padding but a bad
    checksum, bad MDC. With the real algorithm number and the SEIPD body's size."""
    name, algorithm = request.param
    home = tmp_path_factory.mktemp("cipher") / "gnupg"
    home.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--quiet", "--import",
                    str(failure_pairs.KEYS / "pgp" / "pub-pgp-bob-rsa3072.pub.asc")],
                   env=env, check=True, capture_output=True)
    binary = subprocess.run(["gpg", "--batch", "--quiet", "--trust-model", "always", "--cipher-algo", name,
                             "--compress-algo", "none", "--encrypt", "-r", "bob.pgp@corp-pub.example"],
                            input=failure_pairs.content_entity(1 << 16), env=env, check=True,
                            capture_output=True).stdout
    recipient = "bob.pgp@corp-pub.example"
    twins = {
        "wrong key": failure_pairs._with_pkesk_body(binary, failure_pairs._random_rsa_pkesk),
        "bad checksum": _conforming_pkesk(binary, algorithm),
        "bad MDC": failure_pairs._flipped(binary, len(binary) - 1),
    }
    seipd = next(p.body for p in openpgp.packets(binary) if p.tag == openpgp.TAG_SEIPD)
    return {kind: failure_pairs._pgp_mime_message(recipient, data) for kind, data in twins.items()}, algorithm, len(seipd)


# Replaced (fix-timing). The attacker's test asked the wrong-key twin to run the sender's cipher (AES-128, 3DES)
# instead of the decoy AES-256. That cannot be done soundly: the algorithm of a SEIPDv1 session key is inside
# the encrypted PKESK (RFC 4880 section 5.1), so after a failed unwrap nobody knows it. Nor does it leak: a
# tampered PKESK -- the only kind an oracle attack sends, be its padding good (made here with bob's public
# key) or not -- unwraps to a block whose checksum fails, so every tampered PKESK runs the decoy, AES-256,
# whatever cipher the sender named. Only an untampered PKESK reaches the real cipher, and its sender chose
# that cipher: the clock tells him nothing he did not know. The rule asserted: every failed unwrap decrypts the
# whole data once with AES-256 and a 32-byte key; a bad MDC runs the sender's cipher (pgp_decrypt._DECOY_ALGORITHM,
# bench/README.md "Timing of decryption failures").
def test_every_failed_unwrap_runs_the_decoy_aes256_over_the_whole_data(cipher_twins, corpus_store, monkeypatch):
    twins, algorithm, data_size = cipher_twins
    calls: list[tuple[int, int, int]] = []
    real = pgp_decrypt._decrypt_seipd_v1

    def recording(body, cipher, key):
        calls.append((cipher, len(key), len(body)))
        return real(body, cipher, key)

    monkeypatch.setattr(pgp_decrypt, "_decrypt_seipd_v1", recording)
    work = {}
    for kind, mail in twins.items():
        calls.clear()
        outcome = core.process(mail, PGP_BOB, corpus_store, NO_HARVEST)
        assert outcome.plan.body is None
        work[kind] = list(calls)
    decoy = [(9, 32, data_size)]
    assert work == {"wrong key": decoy, "bad checksum": decoy,
                    "bad MDC": [(algorithm, openpgp.CIPHERS[algorithm][2], data_size)]}


def test_smime_wrong_key_and_bad_padding_run_the_same_cipher(tools, corpus_store, monkeypatch, tmp_path):
    """AES-128-CBC: the cipher is public (in the clear), the decoy has its size; the work is the same."""
    from ciphermilter.formats.smime import enveloped
    from asn1crypto import cms as asn1_cms

    der = subprocess.run(["openssl", "cms", "-encrypt", "-binary", "-aes128", "-outform", "DER",
                          str(failure_pairs.KEYS / "smime" / "pub-bob.cert.pem")],
                         input=failure_pairs.content_entity(1 << 16), check=True, capture_output=True).stdout
    info = asn1_cms.ContentInfo.load(der)
    ktri = info["content"]["recipient_infos"][0].chosen
    ktri["encrypted_key"] = b"\0" + os.urandom(len(ktri["encrypted_key"].native) - 1)
    wrong_key = info.dump(force=True)
    info = asn1_cms.ContentInfo.load(der)
    content = info["content"]["encrypted_content_info"]["encrypted_content"]
    data = bytearray(content.native)
    data[-1] ^= 0x55
    info["content"]["encrypted_content_info"]["encrypted_content"] = bytes(data)
    bad_padding = info.dump(force=True)

    calls: list[tuple[str, int]] = []
    real = enveloped._decrypt_content
    monkeypatch.setattr(enveloped, "_decrypt_content", lambda layer, mode, cek: (calls.append((mode, len(cek))),
                                                                             real(layer, mode, cek))[1])
    work = []
    for der_message in (wrong_key, bad_padding):
        calls.clear()
        core.process(failure_pairs._smime_message("bob@corp-pub.example", der_message), BOB, corpus_store, NO_HARVEST)
        work.append(list(calls))
    assert work[0] == work[1] and len(work[0]) == 1


# =========================================================================== files


def test_every_cli_file_is_private_under_umask_022(tmp_path):
    previous = os.umask(0o022)
    try:
        store = corpus_store_file(tmp_path / "s")
        written = tmp_path / "out"
        written.mkdir()
        password = tmp_path / "pw"
        password.write_text("x\n")
        run = lambda *args: CliRunner().invoke(main, ["--store", str(store), *map(str, args)])  # noqa: E731
        assert run("store", "backup", written / "backup.db").exit_code == 0
        assert run("store", "export", written / "export.json", "--password-file", password).exit_code == 0
        assert run("decrypt", "--rcpt", "bob@corp-pub.example", "--explain-file", written / "r.json",
                   failure_pairs.KEYS.parent / "smime-env-rsa15-aes128-cbc" / "message.eml").exit_code in (0, 1, 3)
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in written.iterdir()}
        assert modes and set(modes.values()) == {0o600}, modes
    finally:
        os.umask(previous)


# FAILS (minor, by design in files.private_opener: "an existing one keeps its mode"): `decrypt --explain-file`
# writes the report (envelope recipients, Bcc included; what was decrypted, signer addresses) into a file that
# already exists with its old mode, 0644 here, although --help says "created with mode 0600" and issue 14 asks
# that every file written be 0600. The pid file left behind is replaced with a private one; this is not.
# Reproduce: touch r.json (umask 022); ciphermilter decrypt --explain-file r.json m.eml; ls -l r.json -> 0644.
def test_an_existing_explain_file_does_not_stay_world_readable(tmp_path):
    previous = os.umask(0o022)
    try:
        store = corpus_store_file(tmp_path / "s")
        report = tmp_path / "report.json"
        report.write_text("")  # left by an earlier run, or created by a shell: 0644
        assert stat.S_IMODE(report.stat().st_mode) == 0o644
        result = CliRunner().invoke(main, ["--store", str(store), "decrypt", "--rcpt", "bob@corp-pub.example",
                                           "--explain-file", str(report), "-"],
                                    input=b"From: a@b.example\r\nTo: bob@corp-pub.example\r\n\r\nhi\r\n")
        assert result.exit_code == 0, result.output
        assert "bob@corp-pub.example" in report.read_text()
        assert stat.S_IMODE(report.stat().st_mode) == 0o600
    finally:
        os.umask(previous)
