import pytest

from ciphermilter import mime


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
