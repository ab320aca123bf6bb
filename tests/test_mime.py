import base64
import re
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ciphermilter import mime
from ciphermilter.mime import parser, write
from conftest import case_message, corpus_cases, ids, spooled


def test_split_headers_keeps_raw_folding_and_non_ascii():
    data = b"Subject: caf\xc3\xa9\r\n  folded\r\nX-A: 1\r\n\r\nbody"
    headers, offset = mime.split_headers(data)
    assert [h.name for h in headers] == ["Subject", "X-A"]
    assert headers[0].raw == b"Subject: caf\xc3\xa9\r\n  folded"
    assert headers[0].value == "café  folded"
    assert data[offset:] == b"body"


def test_message_without_body_separator():
    headers, offset = mime.split_headers(b"A: 1\r\nB: 2\r\n")
    assert [h.name for h in headers] == ["A", "B"] and offset == len(b"A: 1\r\nB: 2\r\n")


def test_line_without_colon_starts_the_body():
    data = b"A: 1\r\nnot a header\r\n"
    headers, offset = mime.split_headers(data)
    assert [h.name for h in headers] == ["A"] and data[offset:] == b"not a header\r\n"


def test_space_before_colon_is_part_of_no_name():
    headers, _ = mime.split_headers(b"X-CipherMail-Info-X : forged\r\n\r\n")
    assert headers[0].name == "X-CipherMail-Info-X"


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, ("text/plain", {})),
        ('Multipart/Signed; Protocol="application/pkcs7-signature"; micalg=sha-256; boundary="a b;c"',
         ("multipart/signed", {"protocol": "application/pkcs7-signature", "micalg": "sha-256", "boundary": "a b;c"})),
        ('text/plain; name="a\\"b"', ("text/plain", {"name": 'a"b'})),
        ("garbage", ("text/plain", {})),
    ],
)
def test_parse_content_type(value, expected):
    assert mime.parse_content_type(value) == expected


def test_multipart_parts_are_byte_exact_slices():
    body = (
        b"preamble\r\n--XX\r\nContent-Type: text/plain\r\n\r\nfirst\r\n\r\n"
        b"--XX\r\n\r\nsecond--XX-not-a-delimiter\r\n--XX--\r\nepilogue\r\n"
    )
    entity = mime.parse(b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n' + body)
    assert [p.raw for p in entity.parts] == [
        b"Content-Type: text/plain\r\n\r\nfirst\r\n",
        b"\r\nsecond--XX-not-a-delimiter",
    ]
    assert entity.parts[0].body == b"first\r\n"


def test_unterminated_multipart_keeps_last_part():
    entity = mime.parse(b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\nx\r\n')
    assert [p.body for p in entity.parts] == [b"x\r\n"]


def test_depth_limit():
    data = b"x"
    for level in range(5):
        data = (b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)) + data + (
            b"\r\n--b%d--\r\n" % level
        )
    assert len(list(mime.parse(data, max_depth=5).walk())) == 6
    with pytest.raises(mime.DepthLimitExceeded):
        list(mime.parse(data, max_depth=4).walk())


@pytest.mark.parametrize(
    "body, cte, expected",
    [
        (b"aGVs\r\nbG8=\r\n", "base64", b"hello"),
        (b"aGVsbG8", "base64", b"hello"),
        (b"caf=C3=A9=\r\nx", "quoted-printable", b"caf\xc3\xa9x"),
        (b"raw", "x-unknown", b"raw"),
    ],
)
def test_decode_transfer_encoding(body, cte, expected):
    assert mime.decode_transfer_encoding(body, cte) == expected


# --- one shared buffer, a spooled message, base64 in chunks --------------------------------------

CASES = corpus_cases()


def outcome_of(call):
    """What ``call()`` returns, or the type of the MimeError it raises: both parsers must agree on either."""
    try:
        return call()
    except mime.MimeError as exc:
        return type(exc)


def described(entity: mime.Entity) -> dict:
    return {"headers": [(h.name, h.raw) for h in entity.headers], "header_bytes": entity.header_bytes,
            "body": entity.body, "raw": entity.raw, "size": entity.size,
            "decoded": outcome_of(entity.decoded_body),
            "parts": outcome_of(lambda: [(p.content_type, p.raw, p.depth) for p in entity.walk()])}


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_a_spooled_message_parses_as_its_bytes_do(case):
    message = case_message(case)
    with spooled(message) as file:
        from_file = mime.parse(file)
        assert isinstance(from_file, mime.SpooledEntity)
        decoded_first = outcome_of(from_file.decoded_body)  # from the file, before anything loads it whole
        assert described(from_file) == described(mime.parse(message))
        assert decoded_first == outcome_of(mime.parse(message).decoded_body)
    assert from_file.size == len(message)


@pytest.mark.parametrize("line_end", [b"\r\n", b"\n"], ids=["crlf", "lf"])
@pytest.mark.parametrize("offset", range(-2, 4))
def test_headers_ending_at_a_read_boundary_are_found(line_end, offset):
    """The header block (its blank line included) is HEADER_CHUNK + ``offset`` long: the blank line straddles reads."""
    length = mime.HEADER_CHUNK + offset
    filler = length - len(b"Subject: ") - len(b"Content-Transfer-Encoding: base64") - 3 * len(line_end)
    head = (b"Content-Transfer-Encoding: base64" + line_end + b"Subject: " + b"s" * filler + line_end + line_end)
    assert len(head) == length
    data = bytes(range(256)) * 1024  # a body of several reads
    message = head + base64.encodebytes(data).replace(b"\n", line_end)
    with spooled(message) as file:
        entity = mime.parse(file)
        assert file.tell() <= length + mime.HEADER_CHUNK  # the reads stopped at the blank line, not at the end
        assert entity.header_bytes == head
        assert [h.name for h in entity.headers] == ["Content-Transfer-Encoding", "Subject"]
        assert entity.decoded_body() == data
        assert described(entity) == described(mime.parse(message))


@pytest.mark.parametrize("size", [10, mime.HEADER_CHUNK, 3 * mime.HEADER_CHUNK + 5])
def test_a_spooled_message_without_a_blank_line_is_all_headers(size):
    message = b"Subject: " + b"x" * (size - len(b"Subject: \r\nA: 1\r\n")) + b"\r\nA: 1\r\n"
    with spooled(message) as file:
        entity = mime.parse(file)
        assert entity.header_bytes == message and entity.body == b""
        assert described(entity) == described(mime.parse(message))


def lenient_reference(text: bytes) -> bytes:
    """What mail readers make of base64 text: alphabet only, up to the first ``=``, padding added."""
    cleaned = re.sub(rb"[^A-Za-z0-9+/=]", b"", text).split(b"=")[0]
    return base64.b64decode(cleaned + b"=" * (-len(cleaned) % 4))


@st.composite
def base64_text(draw, corrupt=False):
    """(text, data): ``data`` in base64, wrapped at random widths, with stray bytes and line breaks sown in."""
    data = draw(st.binary(max_size=600))
    encoded = base64.b64encode(data)
    if corrupt:  # one character more than whole groups: no padding can make that decode
        encoded = encoded.rstrip(b"=")
        encoded += b"A" * ((1 - len(encoded)) % 4)
    stray = st.sampled_from([b"\r\n", b"\n", b" ", b"\t", b"*", b"\x00", b"\xff", b"-", b"."])
    out, pos = [], 0
    while pos < len(encoded):
        width = draw(st.integers(1, 80))
        out.append(encoded[pos:pos + width])
        out.append(draw(stray))
        pos += width
    return b"".join(out), data


def chunked(draw, text: bytes) -> list:
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    return [memoryview(text)[start:end] for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True)]


@settings(max_examples=300)
@given(st.data())
def test_base64_in_any_chunks_decodes_as_the_whole_text_does(data):
    text, original = data.draw(base64_text())
    chunks = chunked(data.draw, text)
    assert mime.decode_base64_chunks(chunks) == mime.decode_transfer_encoding(text, "base64") == original
    assert lenient_reference(text) == original


@settings(max_examples=100)
@given(st.data())
def test_base64_with_an_impossible_length_fails_in_any_chunks(data):
    text, _ = data.draw(base64_text(corrupt=True))
    chunks = chunked(data.draw, text)
    with pytest.raises(mime.MimeError):
        mime.decode_base64_chunks(chunks)
    with pytest.raises(mime.MimeError):
        mime.decode_transfer_encoding(text, "base64")


@settings(max_examples=200)
@given(st.binary(max_size=300), st.data())
def test_arbitrary_bytes_decode_alike_in_chunks_and_whole(text, data):
    chunks = chunked(data.draw, text)
    assert outcome_of(lambda: mime.decode_base64_chunks(chunks)) == outcome_of(
        lambda: mime.decode_transfer_encoding(text, "base64"))


def test_an_unfinished_group_followed_by_megabytes_of_line_breaks_decodes():
    """Stray bytes after an unfinished group must not pile up between pieces (once quadratic: 9.5 s for 16 MB)."""
    text = b"QUJD" * 3 + b"QQ" + b"\r\n" * (3 << 20)
    assert mime.decode_base64_chunks(text[i:i + mime.DECODE_CHUNK] for i in range(0, len(text), mime.DECODE_CHUNK)) \
        == b"ABC" * 3 + b"A"


@settings(max_examples=300)
@given(st.binary(max_size=40).map(lambda b: bytes(b"\r\na:"[x % 4] for x in b)), st.data())
def test_line_bounds_end_lines_where_a_crlf_or_lf_match_starts(data, draw):
    end = draw.draw(st.integers(0, len(data)))
    pos = draw.draw(st.integers(0, end))
    match = re.compile(rb"\r?\n").search(data, pos, end)
    assert parser._line_bounds(data, pos, end) == ((match.start(), match.end()) if match else (end, end))


def nested(depth: int, leaf: bytes) -> tuple[bytes, list[bytes]]:
    """A multipart ``depth`` levels deep, each level with a preamble, a text sibling and an epilogue;
    and the raw bytes of the innermost entity at each level, outermost first, built by hand."""
    entity = leaf
    raws = [leaf]
    for level in reversed(range(depth)):
        boundary = b"level%d" % level
        entity = (b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\npreamble ' + boundary
                  + b"\r\n--" + boundary + b"\r\nContent-Type: text/plain\r\n\r\nsibling " + boundary
                  + b"\r\n--" + boundary + b"\r\n" + entity + b"\r\n--" + boundary + b"--\r\nepilogue\r\n")
        raws.insert(0, entity)
    return entity, raws


def test_parts_deep_down_are_the_bytes_they_were_built_from():
    message, raws = nested(5, b"Content-Type: text/plain\r\n\r\nthe leaf\r\n")
    entity = mime.parse(message)
    for level, expected in enumerate(raws):
        assert entity.raw == expected
        assert entity.depth == level
        assert message[entity._start:entity._end] == expected  # offsets into the one shared buffer
        if level < len(raws) - 1:
            sibling, entity = entity.parts
            assert sibling.body == b"sibling level%d" % level
    assert entity.body == b"the leaf\r\n"


def test_multipart_spans_inside_a_larger_buffer_match_the_body_alone():
    message, raws = nested(4, b"\r\nleaf")
    entity = mime.parse(message)
    for level in range(3):
        entity = entity.parts[1]
        body = entity.body
        boundary = entity.params["boundary"]
        inside = mime.multipart_spans(message, boundary, entity._body_start, entity._end)
        assert inside == mime.multipart_spans(body, boundary) == entity.part_spans
        assert [body[start:end] for start, end in inside][1] == raws[level + 2]


def test_parse_takes_any_bytes_like_value_and_a_file():
    message = b"Subject: s\r\n\r\nbody\r\n"
    for data in (message, bytearray(message), memoryview(message)):
        entity = mime.parse(data)
        assert type(entity) is mime.Entity and entity.raw == message and entity.body == b"body\r\n"
    with tempfile.TemporaryFile() as file:
        file.write(message)
        assert isinstance(mime.parse(file), mime.SpooledEntity) and mime.parse(file).body == b"body\r\n"


def test_fields_are_removed_from_part_headers_only_byte_for_byte():
    """LF and CRLF lines, a folded field, the top entity's own field kept (the core copies out only some)."""
    message = (b'Content-Type: multipart/mixed; boundary="b"\nX-Drop: top\n\n'
               b"--b\nX-Drop: one\r\nContent-Type: text/plain\r\nx-drop: two,\r\n\tfolded\r\n\r\nbody X-Drop: not a field\r\n--b--\n")
    entity = mime.parse(message)
    stripped = mime.body_without_part_fields(entity, lambda name: name.lower() == "x-drop")
    assert stripped == b"--b\nContent-Type: text/plain\r\n\r\nbody X-Drop: not a field\r\n--b--\n"
    assert mime.body_without_part_fields(entity, lambda name: name == "Nothing") is None


def multipart_body(content_type: str, body: bytes) -> mime.Entity:
    return mime.parse(f"Content-Type: {content_type}\r\n\r\n".encode() + body)


PLAIN = 'multipart/mixed; boundary="b"'
TWO_PARTS_CRLF = b"--b\r\nA: 1\r\n\r\none\r\n--b\r\n\r\ntwo\r\n--b--\r\n"


@pytest.mark.parametrize("content_type, body", [
    (PLAIN, TWO_PARTS_CRLF),
    (PLAIN, TWO_PARTS_CRLF.replace(b"\r\n", b"\n")),  # LF only, as Thunderbird encrypts it (smime.is_lf_text)
    (PLAIN, b"preamble\r\n--b \t\r\n\r\none\r\n--b-- \r\nepilogue\n\r"),  # transport padding, epilogue's own breaks
    (PLAIN, b"--b\r\n\r\nx\rline\nmore\r\n--bc\r\n--b\r\n\r\ntwo\r\n--b--"),  # bare breaks inside parts, "--bc" is text
    ("multipart/mixed; boundary=" + "x" * 70, b""),  # RFC 2046: up to 70 characters
    ("multipart/mixed; boundary=\"a b'()+_,-./:=?\"", b""),  # every bchar, spaces inside
    ('text/plain; boundary*=x; boundary="a"; boundary="b"', b""),  # only a multipart has a structure
], ids=["crlf", "lf", "padding", "bare-in-parts", "70-chars", "bchars", "not-multipart"])
def test_a_structure_every_reader_sees_alike_is_not_ambiguous(content_type, body):
    assert not multipart_body(content_type, body).structure_is_ambiguous


@pytest.mark.parametrize("content_type, body", [
    ("multipart/mixed; boundary*=utf-8''b; boundary=\"b\"", TWO_PARTS_CRLF),  # RFC 2231 readers take boundary*
    ("multipart/mixed; boundary*0=b; boundary=b", TWO_PARTS_CRLF),
    ("multipart/mixed; boundary*=utf-8''b", TWO_PARTS_CRLF),  # a leaf to us, a multipart to RFC 2231 readers
    ('multipart/mixed; boundary="b"; boundary="c"', TWO_PARTS_CRLF),  # first or last?
    ('multipart/mixed; boundary="b "', TWO_PARTS_CRLF),  # trailing space: Python's email strips it
    ("multipart/mixed; boundary=" + "x" * 71, b""),
    ('multipart/mixed; boundary="b#"', b""),  # not a bchar
    ('multipart/mixed; boundary=""', b""),
    ("multipart/mixed", b""),
    (PLAIN, TWO_PARTS_CRLF.replace(b"\r\n--b\r\n", b"\r\n--b\r")),  # bare CR ends a delimiter line
    (PLAIN, TWO_PARTS_CRLF.replace(b"one\r\n--b", b"one\r--b")),  # bare CR before a delimiter
    (PLAIN, TWO_PARTS_CRLF.replace(b"one\r\n--b", b"one\n--b")),  # LF among CRLF delimiters
    (PLAIN, b"--b\r" + TWO_PARTS_CRLF[5:]),  # the first delimiter, at the start of the body
], ids=["rfc2231-and-plain", "rfc2231-continuation", "rfc2231-alone", "twice", "trailing-space", "71-chars",
        "not-bchar", "empty", "none", "bare-cr-after", "bare-cr-before", "mixed-lf", "bare-cr-first"])
def test_a_structure_readers_may_see_otherwise_is_ambiguous(content_type, body):
    assert multipart_body(content_type, body).structure_is_ambiguous


def test_several_content_type_fields_make_a_multipart_ambiguous():
    entity = mime.parse(b'Content-Type: multipart/mixed; boundary="b"\r\nContent-Type: text/html\r\n\r\n' + TWO_PARTS_CRLF)
    assert entity.structure_is_ambiguous


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_no_corpus_multipart_is_ambiguous(case):
    """Real mail from real clients: none of its multiparts may lose its whole content to this rule."""
    entity = mime.parse(case_message(case))
    try:
        multiparts = [part for part in entity.walk() if part.content_type.startswith("multipart/")]
    except mime.DepthLimitExceeded:  # the corpus's own nesting bomb
        return
    assert not [part.get("Content-Type") for part in multiparts if part.structure_is_ambiguous]


FORWARDED = (b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n'
             b"X-Drop: forged\r\nSubject: fwd\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n"
             b"--c\r\nX-Drop: deeper\r\n\r\nX-Drop: body text\r\n--c--\r\n--b--\r\n")


def test_fields_are_removed_from_embedded_messages_too():
    """A message/rfc822 part is opened by clients as a message of its own: its header block, and those of
    its parts, are header blocks like any other part's."""
    stripped = mime.body_without_part_fields(mime.parse(FORWARDED), lambda name: name == "X-Drop")
    assert stripped == (b"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: fwd\r\n"
                        b"Content-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\nX-Drop: body text\r\n--c--\r\n--b--\r\n")


def test_an_encoded_embedded_message_is_not_entered():
    """RFC 2046 section 5.2.1 forbids encoding a message/rfc822; its base64 text has no header block to strip."""
    entity = mime.parse(FORWARDED.replace(b"message/rfc822\r\n", b"message/rfc822\r\nContent-Transfer-Encoding: base64\r\n"))
    assert [part.content_type for part in entity.walk_with_embedded()] == ["multipart/mixed", "message/rfc822"]


def test_embedded_messages_count_towards_the_depth_limit():
    with pytest.raises(mime.DepthLimitExceeded):
        list(mime.parse(FORWARDED, max_depth=2).walk_with_embedded())


# --------------------------------------------------------------------------- the writer and the header list


def test_header_list_counts_and_numbers_names_case_insensitively():
    headers, _ = mime.split_headers(b"Received: a\r\nX-A: 1\r\nreceived: b\r\nRECEIVED: c\r\n\r\n")
    assert headers.count("Received") == 3 and headers.count("x-a") == 1 and headers.count("Subject") == 0
    assert [index for _, index in headers.numbered()] == [1, 1, 2, 3]
    assert headers.occurrence("received", 2) == 2 and headers.occurrence("Received", 4) is None
    assert [h.raw for h in headers.without(0).replacing(0, mime.Header.from_raw(b"X-A: 2"))] == \
        [b"X-A: 2", b"received: b", b"RECEIVED: c"]


def test_splice_replaces_only_the_given_parts_byte_for_byte():
    message = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\npreamble\r\n--b\r\n\r\none\r\n--b\r\n\r\ntwo"
               b"\r\n--b--\r\nepilogue\r\n")
    entity = mime.parse(message)
    assert write.splice(entity, {}) == message
    assert write.splice(entity, {1: b"\r\n2"}) == message.replace(b"\r\ntwo", b"\r\n2")


def test_leaf_writes_fields_then_content_headers():
    assert write.leaf([b"Subject: x"], "text/plain; charset=\"utf-8\"", b"body", "7bit") == (
        b"Subject: x\r\nContent-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\nbody")


@pytest.mark.parametrize("data, expected", [
    (b"", b""), (b"a\r\nb", b"a\r\nb"), (b"a\nb\r\nc\n", b"a\r\nb\r\nc\r\n"), (b"\r\r\n", b"\r\r\n"),
])
def test_to_crlf_ends_every_line_with_crlf(data, expected):
    assert write.to_crlf(data) == expected


def test_field_and_milter_value_are_inverse():
    raw = write.field("Subject", "caf\udcc3 folded\n\tline")
    assert raw == b"Subject: caf\xc3 folded\r\n\tline"
    assert write.milter_value(mime.Header.from_raw(raw)) == "caf\udcc3 folded\n\tline"
