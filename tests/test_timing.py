"""A wrong key and a bad tag do the same work (implicit rejection, issue 14 section 3).

A sender who can tell by the reply's time whether the key transport step failed (bad RSA padding, a
changed wrapped key) or the content did (a bad GCM tag or MDC) has a padding oracle, even though both
replies are the same (test_security.test_bad_padding_and_a_wrong_key_look_the_same). So a failed unwrap
goes on with a random content key through the same content decryption. No clock here: the tests count
the calls of the engines' content decryption (``enveloped._decrypt_content``, ``pgp_decrypt._decrypt_seipd_v1``),
and bench/timing.py measures the time.

The messages are made by ``openssl cms`` and ``gpg`` for the corpus keys and then changed the way an
attacker changes them (bench/failure_pairs.py).
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest

from bench import failure_pairs
from ciphermilter.formats.smime import cms, enveloped
from ciphermilter.core import pipeline as core
from ciphermilter.formats.openpgp import decrypt as pgp_decrypt
from ciphermilter.formats.openpgp import engine as openpgp
from ciphermilter.formats import readers
from conftest import NO_HARVEST, info_of
from support.cms_vectors import der, private_key

BOB_RECIPIENT = "issuer=CN=Corpus Public Test Root CA,O=Corpus Public Test Org; serial=5A000003"
ERIN_RECIPIENT = "issuer=CN=Corpus Public Test Root CA,O=Corpus Public Test Org; serial=5A000004"


def smime_failed(recipient: str) -> dict:
    return {"SMIME-Encrypted": "True", "Encryption-Algorithm-0": "AES-256-GCM",
            "Encryption-Recipient-0-0": recipient, "SMIME-Decryption-Failed-0": "decryption failed"}


PGP_WRONG_KEY = {"PGP-Encoding": "PGP/MIME", "PGP-Encrypted": "True",
                 "PGP-Decryption-Failed": "no key in the store decrypts the session key"}
# The MDC failure names the cipher and says so (test_efail): the headers differ, the reply and the work do not.
PGP_BAD_MDC = {"PGP-Encoding": "PGP/MIME", "PGP-Encrypted": "True", "PGP-Encryption-Algorithm": "AES-256",
               "PGP-Decryption-Failed": "integrity check failed"}
# Pair index -> (headers of the wrong key, headers of the bad tag); the pairs of failure_pairs.pairs.
EXPECTED = [
    (smime_failed(BOB_RECIPIENT), smime_failed(BOB_RECIPIENT)),  # RSA PKCS#1 v1.5
    (smime_failed(BOB_RECIPIENT), smime_failed(BOB_RECIPIENT)),  # RSA-OAEP
    (smime_failed(ERIN_RECIPIENT), smime_failed(ERIN_RECIPIENT)),  # ECDH P-256 + AES key wrap
    (PGP_WRONG_KEY, PGP_BAD_MDC),  # RSA-3072 PKESK
    (PGP_WRONG_KEY, PGP_BAD_MDC),  # Curve25519 ECDH PKESK
]
PAIR_IDS = ["smime-rsa-pkcs1v15", "smime-rsa-oaep", "smime-ecdh-p256", "pgp-rsa3072", "pgp-curve25519"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> list[failure_pairs.Pair]:
    return failure_pairs.pairs(tmp_path_factory.mktemp("pairs"), 4096)


@pytest.fixture()
def content_decryptions(monkeypatch) -> list[str]:
    """The names of the engines' content decryptions, one per call (each still does its work)."""
    calls: list[str] = []
    for module, name in ((enveloped, "_decrypt_content"), (pgp_decrypt, "_decrypt_seipd_v1")):
        monkeypatch.setattr(module, name, _counting(getattr(module, name), calls))
    return calls


def _counting(function, calls: list[str]):
    def counted(*args):
        calls.append(function.__name__)
        return function(*args)
    return counted


@pytest.fixture()
def process(corpus_store):
    def run(pair: failure_pairs.Pair, message: bytes):
        return core.process(message, core.Envelope(recipients=[pair.recipient]), corpus_store, NO_HARVEST)
    return run


@pytest.mark.parametrize("index", range(len(PAIR_IDS)), ids=PAIR_IDS)
def test_a_wrong_key_and_a_bad_tag_decrypt_the_content_once_each(pairs, process, content_decryptions, index):
    pair = pairs[index]
    expected_wrong, expected_bad = EXPECTED[index]
    for message, expected in ((pair.wrong_key, expected_wrong), (pair.bad_tag, expected_bad)):
        content_decryptions.clear()
        outcome = process(pair, message)
        assert len(content_decryptions) == 1, (pair.name, content_decryptions)
        assert info_of(outcome) == expected
        assert outcome.error is None and outcome.plan.body is None  # delivered as received


@pytest.mark.parametrize("index", [3, 4], ids=PAIR_IDS[3:])
def test_openpgp_hashes_the_data_for_the_mdc_whether_or_not_the_quick_check_passes(pairs, process, monkeypatch,
                                                                                  index):
    """The decoy fails the quick check, the bad MDC passes it: both hash the data once (SHA-1 of the MDC)."""
    hashed: list[int] = []
    monkeypatch.setattr(pgp_decrypt, "hashlib", SimpleNamespace(  # the engine's own view of hashlib only
        sha1=lambda data: (hashed.append(len(data)), hashlib.sha1(data))[1]))
    for message in (pairs[index].wrong_key, pairs[index].bad_tag):
        hashed.clear()
        process(pairs[index], message)
        assert len(hashed) == 1


# A decoy key is random: with CBC it unpads by chance about once in 256, with OpenPGP it passes the quick
# check about once in 65,536. Made certain here by a content decryption that "succeeds" or fails the MDC
# whatever the key: what a decoy opens must never become content, nor change the reason.

def _opening_anything(function):
    def opening(*args):
        function(*args)  # the real work, failing or not
        return bytearray(b"Content-Type: text/plain\r\n\r\ngarbage a decoy unpadded by chance\r\n")
    return opening


def test_what_a_decoy_key_opens_is_never_cms_content(monkeypatch):
    monkeypatch.setattr(enveloped, "_decrypt_content", _opening_anything(lambda *args: None))
    layer = cms.open_enveloped(cms.load(der("env-rsa15-aes128")), max_recipients=10)
    wrong_key = private_key("other")
    with pytest.raises(cms.DecryptionFailed):
        cms.decrypt(layer, lambda recipient: [(b"", wrong_key)])


@pytest.mark.parametrize("outcome_of_the_decoy", ["opens", "fails the MDC"])
def test_what_a_decoy_session_key_opens_is_never_openpgp_content(pairs, process, monkeypatch, outcome_of_the_decoy):
    real = pgp_decrypt._decrypt_seipd_v1

    def decrypt(body, algorithm, key):
        if not isinstance(key, readers.DecoyKey):
            return real(body, algorithm, key)
        if outcome_of_the_decoy == "opens":
            return _opening_anything(real)(body, algorithm, key)
        raise openpgp.IntegrityError()

    monkeypatch.setattr(pgp_decrypt, "_decrypt_seipd_v1", decrypt)
    outcome = process(pairs[3], pairs[3].wrong_key)
    assert info_of(outcome) == PGP_WRONG_KEY and outcome.plan.body is None


def test_a_key_that_does_not_fit_the_scheme_costs_no_decoy(content_decryptions):
    """No private-key operation was made (the recipient's algorithm is public): nothing to equalise."""
    layer = cms.open_enveloped(cms.load(der("env-rsa15-aes128")), max_recipients=10)
    with pytest.raises(cms.UnsupportedAlgorithm):
        cms.decrypt(layer, lambda recipient: [(b"", private_key("p256"))])
    assert content_decryptions == []
