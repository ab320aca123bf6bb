"""Properties (hypothesis): MIME walking, header folding and stripping, CMS parsing, the edit plan, the core.

Runs are derandomized (the same examples every time) and have no deadline:
these are statements about every input, not about speed.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ciphermilter import mime

from ciphermilter.formats.smime import cms

from ciphermilter.core import pipeline as core
from ciphermilter.core.settings import Settings
from ciphermilter.core.info import INFO_PREFIX, InfoHeaders, fold, is_reserved, printable
from ciphermilter.core.plan import EditPlan, HeaderAdd, HeaderChange, HeaderDelete, PlanError, apply_plan
from ciphermilter.store.keystore import KeyStore
from conftest import BOB, case_message, corpus_cases, import_corpus_keys
from fuzz.invariants import check_output

PROPERTY = settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW_PROPERTY = settings(PROPERTY, max_examples=150)
ALL = corpus_cases()
SMIME = corpus_cases(lambda c: c["smime_or_pgp"] == "smime" and not c["malformed"])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store of its own with every corpus key: damaged messages may harvest damaged certificates into it."""
    with KeyStore.create(tmp_path_factory.mktemp("properties") / "store.db") as own:
        import_corpus_keys(own)
        yield own


# ---------------------------------------------------------------------------- strategies


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` after a few byte flips, insertions, deletions, duplications or a truncation."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, max(len(out) - 1, 0)))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate"]))
        if kind == "flip" and out:
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del out[pos:pos + draw(st.integers(1, 64))]
        elif kind == "duplicate":
            out[pos:pos] = out[pos:pos + draw(st.integers(1, 256))]
        else:
            del out[pos:]
    return bytes(out)


corpus_message = st.sampled_from(ALL).map(case_message)
header_name = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", min_size=1, max_size=20)
word = st.text("abcdefghijklmnopqrstuvwxyz0123456789=;,.<>@\"'()", min_size=1, max_size=30)
printable_text = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=300),
    # words of up to 40 characters and runs of spaces (empty words), where folding has choices to make
    st.lists(st.one_of(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1, max_size=40),
                       st.just("")), max_size=60).map(" ".join),
)


@st.composite
def reserved_name(draw) -> str:
    prefix = draw(st.sampled_from(["X-CipherMail-", "X-Djigzo-"]))
    name = prefix + draw(header_name)
    return "".join(c.upper() if draw(st.booleans()) else c.lower() for c in name)


@st.composite
def folded_value(draw) -> str:
    """A value in milter form: words, some joined by a fold (LF and a space or tab)."""
    words = draw(st.lists(word, min_size=1, max_size=6))
    out = words[0]
    for w in words[1:]:
        out += draw(st.sampled_from([" ", "\n ", "\n\t"])) + w
    return out


# ---------------------------------------------------------------------------- MIME walking


def _leaf(body: bytes):
    return ("leaf", body)


mime_tree = st.recursive(
    st.builds(_leaf, st.binary(max_size=60).map(lambda b: b.replace(b"-", b"_"))),
    lambda children: st.lists(children, min_size=1, max_size=4).map(lambda parts: ("multi", parts)),
    max_leaves=15,
)


def serialise(tree, depth: int = 0) -> bytes:
    kind, content = tree
    if kind == "leaf":
        return b"Content-Type: application/octet-stream\r\n\r\n" + content
    boundary = b"b%d" % depth
    body = b"".join(b"--" + boundary + b"\r\n" + serialise(part, depth + 1) + b"\r\n" for part in content)
    return (b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\npreamble\r\n'
            + body + b"--" + boundary + b"--\r\nepilogue\r\n")


def shape(entity: mime.Entity):
    if entity.is_multipart:
        return ("multi", [shape(part) for part in entity.parts])
    return ("leaf", entity.body)


@PROPERTY
@given(mime_tree)
def test_mime_walk_finds_every_part_byte_exact(tree):
    entity = mime.parse(serialise(tree), max_depth=100)
    assert shape(entity) == tree
    for node in entity.walk():
        for part in node.parts:
            assert part.raw in node.body  # a slice of its parent, never re-serialised


@PROPERTY
@given(st.one_of(st.binary(max_size=3000), corpus_message.flatmap(mutated)))
def test_mime_parse_of_anything_gives_slices_or_a_mime_error(data):
    entity = mime.parse(data, max_depth=20)
    try:
        entities = list(entity.walk())
    except mime.DepthLimitExceeded:
        return
    for node in entities:
        assert node.raw == node.header_bytes + node.body
        for start, end in mime.multipart_spans(node.body, node.params["boundary"]) if node.is_multipart else []:
            assert 0 <= start <= end <= len(node.body)


# ---------------------------------------------------------------------------- header folding and stripping


@PROPERTY
@given(header_name, printable_text)
def test_folded_info_value_unfolds_to_the_original(name, value):
    folded = fold(INFO_PREFIX + name, value)
    assert folded.replace("\n", "") == value
    assert all(line.strip() for line in folded.split("\n")[1:])  # RFC 5322 3.2.2: no line of white space only
    for number, line in enumerate(folded.split("\n")):
        room = 78 - (len(INFO_PREFIX + name) + 2 if number == 0 else 0)
        # only a word longer than the line, or spaces that have no word after them to fold before, run over
        assert len(line.rstrip(" ")) <= room or " " not in line.strip(" ")


@PROPERTY
@given(header_name, st.text(max_size=200))
def test_info_header_written_and_read_back_gives_the_printable_value(name, value):
    info = InfoHeaders()
    info.add(name, value)
    ((full, folded),) = info
    out = apply_plan(b"Subject: x\r\n\r\nbody\r\n", EditPlan(additions=[HeaderAdd(full, folded)]))
    (header,) = [h for h in mime.split_headers(out)[0] if h.name == full]
    assert header.value == printable(value).strip(" ")
    assert all(" " <= chr(b) <= "~" for b in header.raw.replace(b"\r\n", b""))


@st.composite
def header_block(draw) -> list[bytes]:
    """Header fields, some of them forged reserved ones in any spelling, folded or not."""
    fields = []
    for _ in range(draw(st.integers(0, 12))):
        name = draw(st.one_of(reserved_name(), header_name.filter(lambda n: not is_reserved(n))))
        colon = draw(st.sampled_from([":", " :", "\t:"]))
        value = draw(folded_value()).replace("\n", "\r\n")
        fields.append(f"{name}{colon} {value}".encode())
    return fields


@PROPERTY
@given(header_block(), st.booleans())
def test_stripping_removes_every_reserved_header_and_keeps_the_rest(fields, internal):
    message = b"".join(f + b"\r\n" for f in fields) + b"\r\nplain body\r\n"
    envelope = BOB if internal else core.Envelope(recipients=["someone@elsewhere.example"])
    outcome = core.process(message, envelope, None, Settings(internal_domains=["corp-pub.example"]))
    out = apply_plan(message, outcome.plan)
    kept = [f for f in fields if not is_reserved(f.split(b":")[0].decode())]
    assert out == b"".join(f + b"\r\n" for f in kept) + b"\r\nplain body\r\n"


# ---------------------------------------------------------------------------- the edit plan


@st.composite
def edit_plans(draw, names: list[str]) -> EditPlan:
    pool = st.sampled_from(names) if names else header_name
    return EditPlan(
        deletions=draw(st.lists(st.builds(HeaderDelete, pool, st.integers(1, 3)), max_size=4)),
        # one change per name: a second one may rewrite the first (libmilter appends past the last index)
        changes=draw(st.lists(st.builds(HeaderChange, pool, st.integers(1, 3), folded_value()), max_size=4,
                              unique_by=lambda change: change.name.lower())),
        additions=draw(st.lists(st.builds(HeaderAdd, st.one_of(pool, header_name), folded_value()), max_size=4)),
        body=draw(st.one_of(st.none(), st.binary(max_size=50))),
    )


@PROPERTY
@given(header_block().filter(bool), st.data())
def test_applied_plan_writes_no_line_break_and_keeps_untouched_headers(fields, data):
    message = b"".join(f + b"\r\n" for f in fields) + b"\r\nbody\r\n"
    received = mime.split_headers(message)[0]
    plan = data.draw(edit_plans([h.name for h in received]))
    out = apply_plan(message, plan)
    headers, offset = mime.split_headers(out)
    block = out[:offset]
    assert b"\r\n".join(line for line in block.split(b"\r\n")).count(b"\n") == block.count(b"\r\n")
    assert block.count(b"\r") == block.count(b"\r\n")
    named = {e.name.lower() for e in (*plan.deletions, *plan.changes, *plan.additions)}
    assert [h for h in headers if h.name.lower() not in named] == [h for h in received if h.name.lower() not in named]
    for edit in (*plan.changes, *plan.additions):
        assert edit.value.replace("\n", "") in [h.raw.partition(b":")[2][1:].replace(b"\r\n", b"").decode()
                                                for h in headers if h.name.lower() == edit.name.lower()]


@PROPERTY
@given(header_name, st.text(max_size=80))
def test_a_value_is_either_refused_or_written_as_exactly_one_field(name, value):
    try:
        addition = HeaderAdd(name, value)
    except PlanError:
        return
    out = apply_plan(b"A: 1\r\n\r\n", EditPlan(additions=[addition]))
    headers, offset = mime.split_headers(out)
    assert [h.name for h in headers] == ["A", name] and out[offset:] == b""


# ---------------------------------------------------------------------------- CMS parsing


def _pkcs7_bodies() -> list[bytes]:
    """The DER of every pkcs7 part of every S/MIME corpus case."""
    ders = []
    for case in SMIME:
        for part in mime.parse(case_message(case)).walk():
            if part.content_type.endswith(("pkcs7-mime", "pkcs7-signature")):
                ders.append(part.decoded_body())
    return ders


PKCS7 = _pkcs7_bodies()


@SLOW_PROPERTY
@given(st.sampled_from(PKCS7).flatmap(mutated))
def test_cms_parsing_of_damaged_der_fails_only_with_a_reason(der):
    try:
        info = cms.load(der)
        kind = cms.content_type(info)
        if kind in (cms.ENVELOPED_DATA, cms.AUTH_ENVELOPED_DATA):
            cms.open_enveloped(info, max_recipients=100)
        elif kind == cms.SIGNED_DATA:
            layer = cms.open_signed(info, max_signers=20)
            cms.verify(layer, layer.content or b"", lambda lookup: [])
    except cms.CmsError as exc:
        assert exc.reason and "\n" not in exc.reason


@SLOW_PROPERTY
@given(st.sampled_from(PKCS7).flatmap(mutated))
def test_core_survives_damaged_cms_in_a_message(store, der):
    message = (b"From: alice@sender-pub.example\r\nX-CipherMail-Info-SMIME-Signed: True\r\n"
               b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(der).replace(b"\n", b"\r\n"))
    check_output(message, core.process(message, BOB, store, Settings()))


# ---------------------------------------------------------------------------- the core on anything


@SLOW_PROPERTY
@given(st.binary(max_size=4000))
def test_core_never_raises_on_arbitrary_bytes(store, data):
    check_output(data, core.process(data, BOB, store, Settings()))


@SLOW_PROPERTY
@given(corpus_message.flatmap(mutated))
def test_core_never_raises_on_mutated_corpus_messages(store, message):
    check_output(message, core.process(message, BOB, store, Settings()))
