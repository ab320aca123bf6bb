"""Compression bombs cost time up to max_decompressed_size, never the memory (issue 14, section 3).

The bombs are real GnuPG output (``tests/vectors/pgp/bombs/make_bombs.sh``): 256 MiB of zeros
deflated (zip, about 450 KB of mail) and 1 GiB bzip2-compressed (3 KB), each signed only and
encrypted to bob, plus the corpus's own 1 GiB bzip2 bomb. Before, the inflated output was kept up to
the bound: ``ciphermilter decrypt`` peaked at 325 MB RSS on every one of them (65 MB now).
"""

from __future__ import annotations

import bz2
import os
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import binascii

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.attack_messages import Tools, message
from ciphermilter import mime
from ciphermilter.mime import write
from ciphermilter.formats import inflate
from ciphermilter.formats.openpgp import engine as openpgp
from ciphermilter.formats.openpgp import handler as openpgp_mime
from ciphermilter.core.settings import DECOMPRESSED_FLOOR, Limits, Settings
from ciphermilter.core.contract import LimitExceeded
from conftest import ROOT, corpus_store_file, info_of
from support.openpgp_packets import literal, packet
from support.bombs import BOMB_IDS, BOMBS, TOO_LARGE, too_large
from support.pipeline import run

MIB = 1 << 20
DEFAULT_BOUND = Limits().decompressed_limit
# What ciphermilter decrypt may hold for a bomb: the interpreter with everything imported (48 MB on
# a plain message), the 8 MiB kept while counting, the decompressor's state and the message. Half
# the bound for the daemon and its workers together (256 MB); it was 310 MB.
DECRYPT_PEAK_RSS = 128 * 1000 * 1000
COMPRESS = {
    1: lambda data: (lambda c: c.compress(data) + c.flush())(zlib.compressobj(9, zlib.DEFLATED, -15)),
    2: zlib.compress,
    3: bz2.compress,
}
# About 600 KB of text that compresses 10 to 1: small to build, large against a lowered keep bound.
TEXT = b"".join(b"line %d of a text that compresses well\n" % n for n in range(15000))


def bomb_data(path: Path) -> bytes:
    """The binary OpenPGP message in a bomb's mail (its one armored block)."""
    for entity in mime.parse(path.read_bytes()).walk():
        body = b"" if entity.is_multipart else entity.decoded_body()
        for span in openpgp.find_armor(body):
            return openpgp.dearmor(body[span.start:span.end]).data
    raise AssertionError(f"no armored block in {path}")


def compressed(algorithm: int, data: bytes) -> bytes:
    return packet(openpgp.TAG_COMPRESSED, bytes([algorithm]) + COMPRESS[algorithm](data))


@pytest.fixture(scope="module")
def keyring(corpus_store):
    return openpgp.keyring_for(corpus_store)


@pytest.fixture(scope="module")
def tools(tmp_path_factory) -> Tools:
    return Tools(tmp_path_factory.mktemp("bomb-maker"))


# --------------------------------------------------------------------------- the engine


@pytest.mark.parametrize("path", BOMBS, ids=BOMB_IDS)
def test_a_bomb_is_refused_holding_no_more_than_the_kept_output(path, keyring):
    data = bomb_data(path)
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceeded, match=f"^{too_large(DEFAULT_BOUND)}$"):
            openpgp.open_message(data, keyring, max_output=DEFAULT_BOUND)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Everything Python allocated on the way (it was the whole bound, 256 MiB): the kept output, the piece
    # past it, the decompressor's output buffers (a piece's blocks, then the piece) and copies of the data.
    assert peak < inflate.KEEP_WHILE_COUNTING + 8 * MIB


@pytest.mark.parametrize("algorithm", sorted(COMPRESS), ids=["ZIP", "ZLIB", "BZIP2"])
@pytest.mark.parametrize("keep", [inflate.KEEP_WHILE_COUNTING, 4096], ids=["kept", "counted-then-inflated-again"])
def test_compressed_data_of_exactly_the_bound_is_read(algorithm, keep, keyring, monkeypatch):
    monkeypatch.setattr(inflate, "KEEP_WHILE_COUNTING", keep)
    inner = literal(TEXT)
    data = compressed(algorithm, inner)
    opened = openpgp.open_message(data, keyring, max_output=len(inner))
    assert opened.plaintext == TEXT and opened.failure is None
    with pytest.raises(LimitExceeded, match=f"more than {len(inner) - 1} bytes"):
        openpgp.open_message(data, keyring, max_output=len(inner) - 1)


@pytest.mark.parametrize("keep", [inflate.KEEP_WHILE_COUNTING, 4096], ids=["kept", "counted-then-inflated-again"])
def test_nested_compressed_packets_share_one_budget(keep, keyring, monkeypatch):
    """bzip2 around zlib around the literal data: what both produce counts against one bound."""
    monkeypatch.setattr(inflate, "KEEP_WHILE_COUNTING", keep)
    inner = literal(TEXT)
    middle = compressed(2, inner)
    data = compressed(3, middle)
    both = len(middle) + len(inner)
    assert openpgp.open_message(data, keyring, max_output=both).plaintext == TEXT
    with pytest.raises(LimitExceeded, match=f"more than {both - 1} bytes"):
        openpgp.open_message(data, keyring, max_output=both - 1)


def test_a_bomb_inside_a_compressed_packet_stops_at_the_same_bound(keyring):
    """The inner bomb (64 MiB of zeros, 64 KB deflated) inside bzip2: the outer output counts too."""
    inner = compressed(2, literal(bytes(64 * MIB)))
    data = compressed(3, inner)
    with pytest.raises(LimitExceeded, match=f"more than {32 * MIB} bytes"):
        openpgp.open_message(data, keyring, max_output=32 * MIB)


# --------------------------------------------------------------------------- the core


def test_derived_bound_follows_the_message_size():
    assert Limits().decompressed_limit == 4 * Limits().max_message_size == 40_960_000
    assert Limits(max_message_size=10 * MIB).decompressed_limit == 40 * MIB
    assert Limits(max_message_size=10 * MIB, max_decompressed_size=MIB).decompressed_limit == MIB


def test_each_message_may_unpack_in_proportion_to_its_own_size():
    assert DECOMPRESSED_FLOOR == 16 * MIB
    assert [Limits().decompression_budget(size) for size in (0, MIB, 2 * MIB, 16 * MIB, 64 * MIB)] == [
        16 * MIB, 16 * MIB, 32 * MIB, 40_960_000, 40_960_000]  # the ceiling: 4 x max_message_size
    assert Limits(max_decompressed_size=MIB).decompression_budget(10 * MIB) == MIB
    assert all(Limits().decompression_budget(path.stat().st_size) == DECOMPRESSED_FLOOR for path in BOMBS)


def test_signed_text_of_exactly_the_bound_is_verified_after_counting(tools, corpus_store):
    """gpg --sign of 11 MB of text (ZLIB, beyond the 8 MiB kept while counting): inflated twice, and the
    signature still verifies at the bound; one byte less and it is a limit."""
    text = b"".join(b"%d\n" % n for n in range(1_500_000))
    armored = tools.pgp_signed_only(text, "--compress-algo", "zlib")
    first = next(openpgp.packets(openpgp.dearmor(armored).data))
    assert first.tag == openpgp.TAG_COMPRESSED and first.body[0] == 2
    size = len(zlib.decompress(first.body[1:]))
    assert size > inflate.KEEP_WHILE_COUNTING
    mail = message(b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + armored)

    big = 64 * MIB  # the new body (11 MB) must not be above max_message_size, whose default is 10,240,000
    fits = info_of(run(mail, corpus_store, Settings(limits=Limits(max_message_size=big, max_decompressed_size=size))))
    assert [fits.get(name) for name in ("PGP-Signed", "PGP-Signature-Valid", "Not-Processed")] == ["True", "True", None]
    refused = info_of(run(mail, corpus_store, Settings(limits=Limits(max_message_size=big,
                                                                     max_decompressed_size=size - 1))))
    assert refused["Not-Processed"] == f"OpenPGP data decompresses to more than {size - 1} bytes"


# --------------------------------------------------------------------------- the new body


def encode_text_by_splitting(data: bytes):
    """_encode_text as it was, with a copy without CRLF and a list of lines: the oracle."""
    data = write.to_crlf(data)
    try:
        data.decode("utf-8")
        charset = "utf-8"
    except UnicodeDecodeError:
        charset = None
    clean_lines = b"\0" not in data and b"\r" not in data.replace(b"\r\n", b"") and all(
        len(line) <= write.MAX_LINE for line in data.split(b"\r\n"))
    if clean_lines and data.isascii():
        return data, "7bit", charset
    if clean_lines and charset:
        return data, "8bit", charset
    if b"\0" in data:
        return write.base64_lines(data), "base64", charset
    return binascii.b2a_qp(data), "quoted-printable", charset


PIECES = [b"a", b"\r", b"\n", b"\r\n", b"\0", b"\xc3\xa9", b"\xff", b"x" * 997, b"x" * 998]


@given(st.lists(st.sampled_from(PIECES), max_size=12))
def test_clean_lines_by_counting_and_searching_agree_with_splitting(pieces):
    data = b"".join(pieces)
    assert openpgp_mime._encode_text(data) == encode_text_by_splitting(data)


def test_text_of_zeros_becomes_base64_not_three_times_its_size():
    body, cte, charset = openpgp_mime._encode_text(bytes(57 * 1000))
    assert (cte, charset, len(body)) == ("base64", "utf-8", 78 * 1000)


# --------------------------------------------------------------------------- ciphermilter decrypt


@pytest.fixture(scope="module")
def store_file(tmp_path_factory) -> Path:
    return corpus_store_file(tmp_path_factory.mktemp("bomb-store"))


# Runs a command and prints its peak RSS in KiB. A child of pytest would not do: a forked child's peak
# counts the parent's resident pages from before its exec (hundreds of MB of pytest), this one's only
# the few MB of this small interpreter.
PEAK_RSS_OF = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss_of(argv: list[str]) -> int:
    """The peak resident set size of ``argv`` run to its end, in bytes."""
    result = subprocess.run([sys.executable, "-S", "-c", PEAK_RSS_OF, *argv], capture_output=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    return int(result.stdout) * 1024  # Linux: kilobytes


@pytest.mark.parametrize("path", BOMBS, ids=BOMB_IDS)
def test_decrypt_refuses_a_bomb_in_little_memory(path, store_file, tmp_path):
    report = tmp_path / "report.json"
    peak = peak_rss_of([sys.executable, "-m", "ciphermilter", "--store", str(store_file), "decrypt",
                        "--rcpt", "bob.pgp@corp-pub.example", "--explain-file", str(report), str(path)])
    assert TOO_LARGE in report.read_text()
    assert peak < DECRYPT_PEAK_RSS, f"peak RSS {peak / 1e6:.0f} MB"
