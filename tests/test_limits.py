"""Every limit of ``core.settings.Limits`` at its edge, on the corpus messages.

For each limit the edge is what the message actually holds (its size, its
deepest part, its number of parts, layers, RecipientInfos, SignerInfos, chain
length, decompressed bytes, RSA modulus): at the edge the outcome equals the
default one; one below, the message passes unchanged apart from forged
headers, with the reason in ``X-CipherMail-Info-Not-Processed``. Two limits
answer in the verdict instead, because the message itself is fine: a chain
longer than allowed makes the signer untrusted, an RSA key above the bound
makes the signature unverified.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import pytest

from ciphermilter import mime

from ciphermilter.core import pipeline as core
from ciphermilter.core.settings import Limits, Settings
from ciphermilter.core.info import INFO_PREFIX
from ciphermilter.core.plan import apply_plan
from conftest import case_envelope, case_message, corpus_cases, ids

NOT_PROCESSED = INFO_PREFIX + "Not-Processed"
# Far above anything in the corpus but its two malformed cases (200 nested parts, a 1 GiB bzip2 bomb).
UNLIMITED = Limits(max_mime_depth=10_000, max_decompressed_size=16 * 1024 * 1024)
ALL = corpus_cases()
SMIME = corpus_cases(lambda c: c["smime_or_pgp"] == "smime")
PGP_COMPRESSED = corpus_cases(lambda c: c["smime_or_pgp"] == "pgp" and c.get("compression") not in (None, "uncompressed")
                              and c["decryptable_with_our_keys"] and not c["family"].startswith("malformed"))


def process(case, store, **limits):
    return core.process(case_message(case), case_envelope(case), store, Settings(limits=replace(UNLIMITED, **limits)))


@cache
def _baseline(case_id: str, store):
    (case,) = [c for c in ALL if c["id"] == case_id]
    return process(case, store)


def baseline(case, store):
    """The outcome with limits far above anything in the corpus (computed once per case)."""
    return _baseline(case["id"], store)


def assert_same(outcome, expected) -> None:
    assert outcome.error is None
    assert outcome.info.items == expected.info.items
    assert (outcome.plan.changes, outcome.plan.additions, outcome.plan.body) == (
        expected.plan.changes, expected.plan.additions, expected.plan.body)


def assert_edge(case, store, limit: str, edge: int, reason: str) -> None:
    """At ``edge`` the message is processed as without limits; one below, it passes with ``reason``."""
    assert_same(process(case, store, **{limit: edge}), baseline(case, store))
    assert_not_processed(case, process(case, store, **{limit: edge - 1}), reason)


def assert_not_processed(case, outcome, reason: str) -> None:
    """The message passes as it came, with one reason header and no error for the on_error policy."""
    message = case_message(case)
    assert outcome.error is None
    assert outcome.info.as_dict() == {NOT_PROCESSED: reason}
    assert outcome.plan.body is None and not outcome.plan.changes
    assert apply_plan(message, outcome.plan).endswith(message[mime.split_headers(message)[1]:])


# ---------------------------------------------------------------------------- message size


@pytest.mark.parametrize("case", ALL, ids=ids(ALL))
def test_message_size(corpus_store, case):
    size = len(case_message(case))
    assert_edge(case, corpus_store, "max_message_size", size, f"message larger than {size - 1} bytes")


# ---------------------------------------------------------------------------- MIME depth and parts


def _depth(entity: mime.Entity) -> int:
    return max((1 + _depth(part) for part in entity.parts), default=0)


MULTIPART = [c for c in ALL if mime.parse(case_message(c), 10_000).is_multipart]


@pytest.mark.parametrize("case", MULTIPART, ids=ids(MULTIPART))
def test_mime_depth(corpus_store, case):
    """The edge is the deepest part of the message as received or as decrypted (each is parsed on its own)."""
    output = apply_plan(case_message(case), baseline(case, corpus_store).plan)
    depth = max(_depth(mime.parse(case_message(case), 10_000)), _depth(mime.parse(output, 10_000)))
    assert_edge(case, corpus_store, "max_mime_depth", depth, f"MIME nesting deeper than {depth - 1}")


def test_default_depth_refuses_the_deep_nesting_case(corpus_store):
    for case in corpus_cases(lambda c: c["family"] == "malformed-deep-mime-nesting"):
        outcome = core.process(case_message(case), case_envelope(case), corpus_store, Settings())
        assert_not_processed(case, outcome, f"MIME nesting deeper than {Limits().max_mime_depth}")


def _parts(message: bytes) -> int:
    return sum(1 for _ in mime.parse(message, 10_000).walk()) - 1


@pytest.mark.parametrize("case", ALL, ids=ids(ALL))
def test_mime_parts(corpus_store, case):
    """The edge is the part count of the message as received or as decrypted, whichever is larger.

    Every case: a single-part S/MIME message can decrypt to a multipart. One
    that has no parts either way goes through with the limit at zero.
    """
    output = apply_plan(case_message(case), baseline(case, corpus_store).plan)
    parts = max(_parts(case_message(case)), _parts(output))
    if parts == 0:
        assert_same(process(case, corpus_store, max_mime_parts=0), baseline(case, corpus_store))
        return
    assert_edge(case, corpus_store, "max_mime_parts", parts, f"more than {parts - 1} MIME parts")


# ---------------------------------------------------------------------------- CMS structure


def _smime_layers(case, store) -> list[dict]:
    return baseline(case, store).report.get("smime", {}).get("layers", [])


@pytest.mark.parametrize("case", SMIME, ids=ids(SMIME))
def test_cms_layers(corpus_store, case):
    layers = len(_smime_layers(case, corpus_store))
    assert layers >= 1
    assert_edge(case, corpus_store, "max_cms_layers", layers, f"more than {layers - 1} S/MIME layers")


ENVELOPED = [c for c in SMIME if c["encrypted"] and not c["malformed"]]  # the malformed ones have no RecipientInfos


@pytest.mark.parametrize("case", ENVELOPED, ids=ids(ENVELOPED))
def test_recipient_infos(corpus_store, case):
    count = max(len(layer.get("recipients", [])) for layer in _smime_layers(case, corpus_store))
    assert count == len(case["recipients"])
    assert_edge(case, corpus_store, "max_recipient_infos", count, f"more than {count - 1} recipients in one layer")


PGP_ENCRYPTED = corpus_cases(lambda c: c["smime_or_pgp"] == "pgp" and c["encrypted"] and not c["malformed"])


@pytest.mark.parametrize("case", PGP_ENCRYPTED, ids=ids(PGP_ENCRYPTED))
def test_pgp_recipients(corpus_store, case):
    """Each PKESK may cost a private-key operation per secret key (hidden recipients): bounded like RecipientInfos."""
    count = len(case["recipients"])
    assert count >= 1
    assert_edge(case, corpus_store, "max_recipient_infos", count, f"more than {count - 1} recipients in one layer")


SIGNED = [c for c in SMIME if c["signed"]]


@pytest.mark.parametrize("case", SIGNED, ids=ids(SIGNED))
def test_signer_infos(corpus_store, case):
    count = max(len(layer.get("signers", [])) for layer in _smime_layers(case, corpus_store))
    assert count >= 1
    assert_edge(case, corpus_store, "max_signer_infos", count, f"more than {count - 1} signers in one layer")


def _signers(outcome) -> list[dict]:
    return [s for layer in outcome.report.get("smime", {}).get("layers", []) for s in layer.get("signers", [])]


TRUSTED = [c for c in SIGNED if c.get("signature_should_verify")]


@pytest.mark.parametrize("case", TRUSTED, ids=ids(TRUSTED))
def test_chain_length(corpus_store, case):
    """A chain longer than allowed leaves the signature verified but the signer untrusted."""
    chains = [len(s["chain_sha256"]) for s in _signers(baseline(case, corpus_store)) if s["trusted"]]
    if not chains:  # no trusted signer (self-signed, expired, third-party root): nothing to cut
        assert all(s["trust_reason"] != "chain too long" for s in _signers(baseline(case, corpus_store)))
        return
    longest = max(chains)
    assert_same(process(case, corpus_store, max_chain_length=longest), baseline(case, corpus_store))
    cut = _signers(process(case, corpus_store, max_chain_length=longest - 1))
    assert any(not s["trusted"] and s["trust_reason"] == "chain too long" for s in cut)
    assert all(s["verified"] == b["verified"] for s, b in zip(cut, _signers(baseline(case, corpus_store))))


RSA_SIZES = (1024, 2048, 3072, 4096, 8192, 16384)


@pytest.mark.parametrize("case", SIGNED, ids=ids(SIGNED))
def test_rsa_modulus(corpus_store, case):
    """A signer key above max_rsa_bits is refused unchecked: verification fails with a reason, nothing more."""
    expected = baseline(case, corpus_store)
    checked = [s for s in _signers(expected) if "rsa" in (s["signature_algorithm"] or "")
               and s["reason"] not in ("signer certificate not found",) and not (s["reason"] or "").startswith("unsupported")]
    if not checked:  # no RSA key was ever used: the limit changes nothing
        assert_same(process(case, corpus_store, max_rsa_bits=1), expected)
        return
    size = next(bits for bits in RSA_SIZES if process(case, corpus_store, max_rsa_bits=bits).info.items
                == expected.info.items)
    assert_same(process(case, corpus_store, max_rsa_bits=size), expected)
    refused = _signers(process(case, corpus_store, max_rsa_bits=size - 1))
    assert any(s["reason"] == "RSA key too large" and not s["verified"] for s in refused)


# ---------------------------------------------------------------------------- OpenPGP


def _smallest(case, store, name: str, low: int, high: int) -> int:
    """The smallest value of limit ``name`` in [low, high] that gives the baseline outcome (it is monotonic)."""
    expected = baseline(case, store).info.items
    while low < high:
        middle = (low + high) // 2
        if process(case, store, **{name: middle}).info.items == expected:
            high = middle
        else:
            low = middle + 1
    return low


@pytest.mark.parametrize("case", PGP_COMPRESSED, ids=ids(PGP_COMPRESSED))
def test_decompressed_size(corpus_store, case):
    edge = _smallest(case, corpus_store, "max_decompressed_size", 0, 64 * len(case_message(case)))
    assert edge > 0
    assert_edge(case, corpus_store, "max_decompressed_size", edge,
                f"OpenPGP data decompresses to more than {edge - 1} bytes")


def test_default_refuses_the_compression_bomb(corpus_store):
    for case in corpus_cases(lambda c: c["family"] == "malformed-pgp-compression-bomb"):
        outcome = core.process(case_message(case), case_envelope(case), corpus_store, Settings())
        # refused at the message's own budget (16 MiB here), long before the configured ceiling (256 MiB)
        budget = Limits().decompression_budget(len(case_message(case)))
        assert_not_processed(case, outcome, f"OpenPGP data decompresses to more than {budget} bytes")


PGP_ENCRYPTED = corpus_cases(lambda c: c["smime_or_pgp"] == "pgp" and c["encrypted"] and c["decryptable_with_our_keys"]
                             and c.get("expect_pgpy_supported", True) and not c["malformed"])


@pytest.mark.parametrize("case", PGP_ENCRYPTED, ids=ids(PGP_ENCRYPTED))
def test_pgp_nesting(corpus_store, case):
    """Compressed packets and PGP/MIME layers nest; an uncompressed inline block has nothing to bound."""
    edge = _smallest(case, corpus_store, "max_pgp_nesting", 0, 8)
    if edge == 0:
        assert case["compression"] == "uncompressed" and "inline" in case["family"]
        return
    assert_same(process(case, corpus_store, max_pgp_nesting=edge), baseline(case, corpus_store))
    outcome = process(case, corpus_store, max_pgp_nesting=edge - 1)
    assert_not_processed(case, outcome, outcome.report["skipped"])
    assert "OpenPGP" in outcome.report["skipped"] and str(edge - 1) in outcome.report["skipped"]


# ---------------------------------------------------------------------------- deadline


@pytest.mark.parametrize("case", ALL, ids=ids(ALL))
def test_deadline(corpus_store, case):
    """A deadline that has passed stops the work at the first check; a generous one changes nothing."""
    calls = []
    settings = Settings(limits=replace(UNLIMITED, deadline_seconds=1e-9))
    outcome = core.process(case_message(case), case_envelope(case), corpus_store, settings,
                           progress=lambda: calls.append(1))
    assert_not_processed(case, outcome, "processing deadline exceeded")
    assert calls == []
    generous = Settings(limits=replace(UNLIMITED, deadline_seconds=3600.0))
    outcome = core.process(case_message(case), case_envelope(case), corpus_store, generous,
                           progress=lambda: calls.append(1))
    assert_same(outcome, baseline(case, corpus_store))
    assert calls  # the MTA hears from us during the work
