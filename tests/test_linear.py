"""Every search over message text is linear (issue 14): the worst input found for each, at sizes x1, x2, x4, x8.

Work is counted, never timed: :class:`CountingBytes` counts the bytes that
``find``, ``startswith`` and slicing examine, :class:`CountingPattern` the
bytes a regular expression call is given up to where it stopped. A quadratic
search examines ~64 times as much at x8 as at x1, a linear one 8 times; the
bound allows 10. (Checked: the armor flood fails this test with main's
find_armor, and the folded field with main's split_headers.)

A regular expression's own backtracking is out of a counter's reach, so each
search that was one regex (and quadratic) is now a loop of calls whose work is
bounded by what they are given, and a property test holds it to the regex it
replaced on random input.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ciphermilter import mime
from ciphermilter.mime import parser as mime_parser

from ciphermilter.core import pipeline as core

from ciphermilter.core import info as headers

from ciphermilter.formats import keyfiles as keyimport

from ciphermilter.formats.openpgp import engine as openpgp

from ciphermilter.formats.openpgp import handler as openpgp_mime

from ciphermilter.formats import sender

from ciphermilter.formats.smime import handler as smime
from ciphermilter.core.plan import EditPlan
from bench.linear import MARKER_UNIT, armor_flood_message, marker_line

SCALES = (1, 2, 4, 8)
LINEAR_BOUND = 10  # work at x8 over work at x1: 8 when linear, 64 when quadratic


class CountingBytes(bytes):
    """bytes that count how many bytes their searches and slices examine."""

    examined = 0

    def _count(self, start, stop):
        CountingBytes.examined += max(0, stop - start)

    def find(self, sub, start=0, end=None):
        end = len(self) if end is None else end
        found = super().find(sub, start, end)
        self._count(start, end if found < 0 else found + len(sub))
        return found

    def startswith(self, prefix, *args):
        self._count(0, len(prefix))
        return super().startswith(prefix, *args)

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, _ = key.indices(len(self))
            self._count(start, stop)
        return super().__getitem__(key)


class CountingPattern:
    """A compiled pattern whose search, match and finditer count the bytes from where they start to where they
    stopped (the match's end, else the end of the region)."""

    def __init__(self, pattern: re.Pattern):
        self.pattern = pattern

    def _count(self, start, match, endpos):
        CountingBytes.examined += (match.end() if match else endpos) - start

    def search(self, data, pos=0, endpos=None):
        endpos = len(data) if endpos is None else endpos
        match = self.pattern.search(data, pos, endpos)
        self._count(pos, match, endpos)
        return match

    def match(self, data, pos=0, endpos=None):
        endpos = len(data) if endpos is None else endpos
        match = self.pattern.match(data, pos, endpos)
        # A failed match counts nothing: the one pattern matched here (_DELIMITER_LINE_END) fails at the
        # first byte after its run of blanks, which the white-space input below counts on success.
        self._count(pos, match, pos)
        return match

    def finditer(self, data, pos=0, endpos=None):
        endpos = len(data) if endpos is None else endpos
        for match in self.pattern.finditer(data, pos, endpos):
            self._count(pos, match, endpos)
            pos = match.end()
            yield match
        CountingBytes.examined += endpos - pos

    def findall(self, data):
        return [match.group(0) for match in self.finditer(data)]


def counted(run, build) -> list[int]:
    """The bytes ``run`` examines on ``build(scale)`` at each scale."""
    counts = []
    for scale in SCALES:
        data = build(scale)
        CountingBytes.examined = 0
        run(data)
        counts.append(CountingBytes.examined)
    return counts


def assert_linear(counts: list[int]) -> None:
    assert counts[0] > 0
    assert counts[-1] <= LINEAR_BOUND * counts[0], f"work at x1, x2, x4, x8: {counts}"


def count_patterns(monkeypatch, module, *names):
    for name in names:
        monkeypatch.setattr(module, name, CountingPattern(getattr(module, name)))


# --------------------------------------------------------------------------- armor


ARMOR_INPUTS = {
    # The issue's line: markers inside one long line (main's find_armor looked for each one's line end).
    "markers inside a line": lambda n: marker_line(20_000 * n),
    # Armor lines that are no armor header, each followed by a long line.
    "bad armor lines": lambda n: (b"-----BEGIN PGP MESSAGE----- x" + MARKER_UNIT * 20 + b"\n") * (40 * n),
    # BEGIN lines whose END never comes, and END markers inside lines.
    "no END line": lambda n: (b"-----BEGIN PGP MESSAGE-----\nx -----END PGP MESSAGE-----\n") * (400 * n),
    # A cleartext signature whose signature block never comes.
    "cleartext without signature": lambda n: b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"
                                              + b"- -----BEGIN PGP SIGNATURE----- x\n" * (400 * n),
}


@pytest.mark.parametrize("build", ARMOR_INPUTS.values(), ids=ARMOR_INPUTS.keys())
def test_find_armor_is_linear(build):
    assert_linear(counted(lambda data: openpgp.find_armor(CountingBytes(data)), build))


def test_dearmor_is_linear_on_markers_inside_lines():
    assert_linear(counted(lambda data: openpgp.dearmor(CountingBytes(data)),
                          lambda n: marker_line(20_000 * n) + b"\n-----BEGIN PGP MESSAGE-----\n\nwA==\n"))


def test_the_issues_message_finds_no_armor_and_is_left_as_it_is():
    """The issue's message (here 200 KB) gets its verdict: nothing armored in it, nothing to report."""
    message = armor_flood_message(200_000)
    assert openpgp.find_armor(mime.parse(message).decoded_body()) == []
    outcome = core.process(message, core.Envelope(), None)
    assert outcome.plan == EditPlan() and outcome.error is None


# --------------------------------------------------------------------------- MIME


def test_split_headers_is_linear_on_a_field_of_many_folded_lines():
    # main's split_headers sliced the whole field again for each continuation line
    assert_linear(counted(lambda data: mime.split_headers(CountingBytes(data)),
                          lambda n: b"Subject: x\r\n" + b" y\r\n" * (2_000 * n) + b"\r\nbody"))


DELIMITER_INPUTS = {
    "delimiters inside lines": lambda n: b"x--b--b" * (10_000 * n),
    "white space after delimiters": lambda n: (b"\r\n--b" + b" " * 200) * (100 * n),
}


@pytest.mark.parametrize("build", DELIMITER_INPUTS.values(), ids=DELIMITER_INPUTS.keys())
def test_delimiter_line_check_is_linear(build, monkeypatch):
    count_patterns(monkeypatch, mime_parser, "_DELIMITER_LINE_END")
    assert_linear(counted(lambda data: mime.has_uniform_delimiter_lines(CountingBytes(data), "b"), build))


def test_bare_line_end_check_is_linear_on_one_long_line():
    assert_linear(counted(lambda data: smime.has_bare_line_end(CountingBytes(data)),
                          lambda n: b"x" * (100_000 * n) + b"\r\n"))


# --------------------------------------------------------------------------- key import


KEY_BLOCK_INPUTS = {
    "PEM BEGIN lines without END": (keyimport._PEM_BEGIN, keyimport._PEM_END,
                                    lambda n: b"-----BEGIN CERTIFICATE-----\r\nAAAA\r\n" * (500 * n)),
    "PEM labels all different": (keyimport._PEM_BEGIN, keyimport._PEM_END,
                                 lambda n: b"".join(b"-----BEGIN L%d-----\nA\n" % i for i in range(500 * n))),
    "armor BEGIN lines without END": (keyimport._ARMOR_BEGIN, keyimport._ARMOR_END,
                                      lambda n: b"-----BEGIN PGP PUBLIC KEY BLOCK-----\r\nAAAA\r\n" * (500 * n)),
}


@pytest.mark.parametrize("begin, end, build", KEY_BLOCK_INPUTS.values(), ids=KEY_BLOCK_INPUTS.keys())
def test_key_blocks_are_found_in_linear_work(begin, end, build):
    # "(.*?)-----END \1-----" searched to the end of the data for every BEGIN without its END
    assert_linear(counted(lambda data: keyimport.delimited_blocks(data, CountingPattern(begin), CountingPattern(end)),
                          build))


_OLD_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)
_OLD_ARMOR = re.compile(rb"-----BEGIN PGP ([A-Z ,/0-9]+)-----\r?\n(.*?)^-----END PGP \1-----", re.S | re.M)
_BLOCK_PIECES = [b"-----BEGIN ", b"-----END ", b"-----BEGIN PGP ", b"-----END PGP ", b"A", b"B", b"A B", b",",
                 b"-----", b"\n", b"\r\n", b"x", b"-", b" "]


@settings(max_examples=1000)
@given(st.lists(st.sampled_from(_BLOCK_PIECES), max_size=30).map(b"".join))
def test_key_blocks_are_what_the_regexes_found(data):
    pem = keyimport.delimited_blocks(data, keyimport._PEM_BEGIN, keyimport._PEM_END)
    assert [(b.label, b.start, b.end) for b in pem] == [(m.group(1), m.start(), m.end())
                                                       for m in _OLD_PEM_BLOCK.finditer(data)]
    armor = keyimport.delimited_blocks(data, keyimport._ARMOR_BEGIN, keyimport._ARMOR_END)
    assert [(b.label, data[b.body_start:b.body_end], b.start, b.end) for b in armor] == [
        (m.group(1), m.group(2), m.start(), m.end()) for m in _OLD_ARMOR.finditer(data)]


def test_a_key_part_of_armor_lines_without_end_is_refused_in_linear_work(monkeypatch):
    """The whole path a carried key takes (keyimport.parse), as a message's application/pgp-keys part."""
    count_patterns(monkeypatch, keyimport, "_ARMOR_BEGIN", "_ARMOR_END")

    def parse(data):
        with pytest.raises(keyimport.KeyFormatError):
            keyimport.parse(data)

    assert_linear(counted(parse, lambda n: b"-----BEGIN PGP PUBLIC KEY BLOCK-----\r\nAAAA\r\n" * (500 * n)))


# --------------------------------------------------------------------------- file names, addresses, folding


def test_pgp_suffixes_are_cut_in_linear_work(monkeypatch):
    # the regex searched the rest of the field again from every "filename="
    count_patterns(monkeypatch, openpgp_mime, "_FILENAME_PREFIX", "_FILENAME_STOP", "_PGP_SUFFIX")
    assert_linear(counted(openpgp_mime._without_pgp_suffixes,
                          lambda n: b"Content-Disposition: attachment; " + b"filename=" * (1_000 * n)))


_OLD_SUFFIX = rb'(filename\s*=\s*"?[^";\r\n]*?)\.(?:asc|pgp|gpg)(?=["\s;]|$)'
_SUFFIX_PIECES = [b"filename", b"FileName", b"=", b" ", b'"', b";", b"\r\n", b"\n", b".pgp", b".ASC", b".gpg", b".",
                  b"x", b"asc", b"\t"]


@settings(max_examples=1000)
@given(st.lists(st.sampled_from(_SUFFIX_PIECES), max_size=20).map(b"".join))
def test_pgp_suffixes_are_cut_as_the_regex_cut_them(raw):
    assert openpgp_mime._without_pgp_suffixes(raw) == re.sub(_OLD_SUFFIX, rb"\1", raw, flags=re.I)


def test_address_like_search_is_linear_on_a_display_name_without_at(monkeypatch):
    count_patterns(monkeypatch, sender, "_ADDRESS_LIKE")
    assert_linear(counted(lambda text: sender._ADDRESS_LIKE.findall(text), lambda n: "a" * (2_000 * n) + " b@c"))


_OLD_ADDRESS_LIKE = re.compile(r"[^\s<>()\[\]\"',;:@\\]+@[^\s<>()\[\]\"',;:@\\]+")


@settings(max_examples=1000)
@given(st.text(alphabet="ab@ <>,;:.\"\\é\t", max_size=25))
def test_address_like_search_finds_what_it_found(text):
    assert sender._ADDRESS_LIKE.findall(text) == _OLD_ADDRESS_LIKE.findall(text)


def _old_fold(name: str, value: str, width: int) -> str:
    room = width - len(name) - 2
    if len(value) <= room:
        return value
    lines, line = [], None
    for word in value.split(" "):
        if line is None:
            line = word
        elif len(line) + 1 + len(word) > room and line and word:
            lines.append(line)
            line, room = word, width - 1
        else:
            line = f"{line} {word}"
    lines.append(line or "")
    return "\n ".join(lines)


@settings(max_examples=1000)
@given(st.lists(st.sampled_from(["a", "bb", " ", "  ", "x" * 30, "y" * 80]), max_size=20).map("".join),
       st.sampled_from([10, 20, 78]))
def test_fold_folds_as_it_did(value, width):
    """headers.fold joins each line's words once (adding them to a string one by one was quadratic on a value
    of spaces: 800,000 took 9.6 s)."""
    assert headers.fold("X-Name", value, width) == _old_fold("X-Name", value, width)


def test_a_from_field_too_long_to_parse_quickly_is_a_mismatch():
    """The stdlib's RFC 5322 parser is quadratic on long fields (20,000 encoded words: 55 s): past
    MAX_FROM_LENGTH a From: is read as one that does not parse."""
    signer = {"alice@example.org"}
    name = "=?utf-8?q?a?= " * 20
    assert sender.from_names_signer([name + "<alice@example.org>"], signer)
    too_long = name * (sender.MAX_FROM_LENGTH // len(name) + 1) + "<alice@example.org>"
    assert len(too_long) > sender.MAX_FROM_LENGTH and not sender.from_names_signer([too_long], signer)
