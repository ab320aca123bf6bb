"""CMS CompressedData (RFC 3274) as an S/MIME layer: unwrapped within the decompression budget, never left
packed for the scanners after us, reported as ``SMIME-Compressed``.

The vectors are built here with asn1crypto: the Debian 12 OpenSSL has no zlib (``openssl cms -compress``
answers "unsupported compression algorithm"), and no other tool at hand writes CompressedData. The
structure is RFC 3274's: ContentInfo(id-ct-compressedData) holding CompressedData v0, the zlib algorithm
(1.2.840.113549.1.9.16.3.8) and the zlib stream (RFC 1950) of the content as id-data.
"""

from __future__ import annotations

import zlib

import pytest
from asn1crypto import cms as asn1_cms

from support.attack_messages import Tools, message, multipart
from ciphermilter.core import pipeline as core
from ciphermilter.core.outcome import refusal
from ciphermilter.core.settings import Limits, Settings
from conftest import BOB, info_of

PAYLOAD = b"Content-Type: text/plain\r\n\r\nthe packed words 7c2e\r\n"
MIB = 1 << 20


def compressed_der(content: bytes, *, algorithm: str = "zlib", stream: bytes | None = None) -> bytes:
    return asn1_cms.ContentInfo({"content_type": "compressed_data", "content": asn1_cms.CompressedData({
        "version": "v0", "compression_algorithm": {"algorithm": algorithm},
        "encap_content_info": {"content_type": "data",
                               "content": zlib.compress(content) if stream is None else stream}})}).dump()


def compressed_entity(content: bytes, **kwargs) -> bytes:
    return Tools.smime_entity(compressed_der(content, **kwargs), "compressed-data")


def body_of(outcome) -> bytes | None:
    body = outcome.plan.body
    return body if body is None or isinstance(body, (bytes, bytearray)) else body.read()


@pytest.fixture(scope="module")
def tools(tmp_path_factory) -> Tools:
    return Tools(tmp_path_factory.mktemp("compressed"))


def test_the_vector_is_what_rfc_3274_describes():
    info = asn1_cms.ContentInfo.load(compressed_der(PAYLOAD))
    assert info["content_type"].dotted == "1.2.840.113549.1.9.16.1.9"
    assert info["content"]["compression_algorithm"]["algorithm"].dotted == "1.2.840.113549.1.9.16.3.8"
    assert info["content"].decompressed == PAYLOAD  # asn1crypto's own (unbounded) reading agrees


def test_a_compressed_message_is_unwrapped_for_the_scanners(corpus_store):
    outcome = core.process(message(compressed_entity(PAYLOAD)), BOB, corpus_store)

    assert info_of(outcome) == {"SMIME-Compressed": "True"}
    assert body_of(outcome) == b"the packed words 7c2e\r\n"
    assert outcome.report["smime"]["layers"][0]["type"] == "compressed"


def test_compressed_inside_encryption_is_decrypted_and_unpacked(tools, corpus_store):
    outcome = core.process(message(tools.smime_encrypted(compressed_entity(PAYLOAD))), BOB, corpus_store)

    info = info_of(outcome)
    assert info["SMIME-Encrypted"] == "True" and info["SMIME-Compressed"] == "True"
    assert "Not-Processed" not in info and "SMIME-Unsupported-1" not in info
    assert body_of(outcome) == b"the packed words 7c2e\r\n"
    assert refusal(outcome, Settings()) is None


def test_a_compressed_part_beside_others_is_unpacked_too(corpus_store):
    """Compression protects nothing (no EFAIL rule applies): beside the sender's text it is opened as well."""
    mail = message(multipart(b"mixed", [b"Content-Type: text/plain\r\n\r\nhi\r\n", compressed_entity(PAYLOAD)]))

    outcome = core.process(mail, BOB, corpus_store)

    assert info_of(outcome) == {"SMIME-Compressed": "True"}
    assert b"the packed words 7c2e" in body_of(outcome)


def test_a_bomb_inside_encryption_is_held_at_the_limit(tools, corpus_store):
    bomb = compressed_entity(b"\0" * (2 * MIB))
    settings = Settings(limits=Limits(max_decompressed_size=MIB))

    outcome = core.process(message(tools.smime_encrypted(bomb)), BOB, corpus_store, settings)

    reason = f"S/MIME compressed data decompresses to more than {MIB} bytes"
    assert outcome.held_at_limit == reason
    assert info_of(outcome)["Not-Processed"] == reason
    assert refusal(outcome, settings) == ("554", "5.7.0", f"Encrypted content could not be inspected: {reason}")


def test_the_budget_is_shared_by_every_compressed_layer_of_the_message(corpus_store):
    """Two parts each under the bound, together above it: one budget per message, not per layer."""
    settings = Settings(limits=Limits(max_decompressed_size=MIB))
    part = compressed_entity(b"Content-Type: text/plain\r\n\r\n" + b"a" * (MIB * 6 // 10))
    mail = message(multipart(b"mixed", [part, part]))

    outcome = core.process(mail, BOB, corpus_store, settings)

    assert info_of(outcome) == {"Not-Processed": f"S/MIME compressed data decompresses to more than {MIB} bytes"}
    assert outcome.plan.body is None


def test_compressed_layers_count_against_max_cms_layers(corpus_store):
    entity = PAYLOAD
    for _ in range(Limits().max_cms_layers + 1):
        entity = compressed_entity(entity)

    outcome = core.process(message(entity), BOB, corpus_store)

    assert info_of(outcome) == {"Not-Processed": f"more than {Limits().max_cms_layers} S/MIME layers"}
    assert outcome.plan.body is None


def test_corrupt_compressed_data_is_reported_and_left_as_received(corpus_store):
    outcome = core.process(message(compressed_entity(b"", stream=b"\x78\x9c not zlib at all")), BOB, corpus_store)

    assert info_of(outcome) == {"SMIME-Compressed": "True", "SMIME-Decompression-Failed-0": "corrupt compressed data"}
    assert outcome.plan.body is None


def test_an_unreadable_body_labelled_compressed_is_not_called_encrypted(corpus_store):
    entity = Tools.smime_entity(b"\x30\x03\x02\x01", "compressed-data")

    outcome = core.process(message(entity), BOB, corpus_store)

    assert info_of(outcome) == {"SMIME-Compressed": "True", "SMIME-Decompression-Failed-0": "malformed CMS"}


def test_another_compression_algorithm_is_unsupported(corpus_store):
    outcome = core.process(message(compressed_entity(PAYLOAD, algorithm="1.2.3.4")), BOB, corpus_store)

    assert info_of(outcome) == {"SMIME-Compressed": "True",
                                "SMIME-Unsupported-0": "unsupported compression algorithm 1.2.3.4"}
    assert outcome.plan.body is None

