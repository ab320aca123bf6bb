"""What every handler shares: the limits on content it has decrypted or unwrapped."""

from __future__ import annotations

import pytest

from ciphermilter import mime

from ciphermilter.core import contract as handler
from ciphermilter.core.settings import Limits


def multipart(parts: int, depth: int = 1) -> bytes:
    """``parts`` text parts in a multipart/mixed, wrapped in ``depth - 1`` more multiparts of one part each."""
    inner = b"Content-Type: text/plain\r\n\r\nhello\r\n"
    for level in range(depth):
        boundary = f"b{level}".encode()
        count = parts if level == 0 else 1
        body = b"".join(b"--" + boundary + b"\r\n" + inner for _ in range(count))
        inner = b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n" + body + b"--" + boundary + b"--\r\n"
    return inner


@pytest.mark.parametrize("parts", [1, 5])
def test_content_at_the_part_limit_is_parsed_and_one_part_more_is_refused(parts):
    content = multipart(parts)
    entity = handler.parse_content(content, Limits(max_mime_parts=parts))
    assert len(entity.parts) == parts
    with pytest.raises(handler.LimitExceeded, match=f"more than {parts - 1} MIME parts"):
        handler.parse_content(content, Limits(max_mime_parts=parts - 1))


def test_parts_are_counted_at_every_depth():
    content = multipart(3, depth=3)  # 2 nested multiparts, then 3 text parts: 5 parts below the top
    assert sum(1 for _ in mime.parse(content).walk()) - 1 == 5
    handler.check_part_count(mime.parse(content), 5)
    with pytest.raises(handler.LimitExceeded):
        handler.check_part_count(mime.parse(content), 4)


def test_content_nested_past_the_depth_limit_is_refused():
    with pytest.raises(mime.DepthLimitExceeded):
        handler.parse_content(multipart(1, depth=4), Limits(max_mime_depth=3))
    assert handler.parse_content(multipart(1, depth=4), Limits(max_mime_depth=4)).is_multipart


AMBIGUOUS = b'Content-Type: multipart/mixed; boundary="b "\r\n\r\n--b \r\nContent-Type: text/plain\r\n\r\nx\r\n--b --\r\n'


@pytest.mark.parametrize("content, whole", [
    (multipart(1), True),  # a lone part: as whole as its parent
    (AMBIGUOUS, False),  # also alone for us, but Python's email reads other delimiters (mime test vectors)
])
def test_a_lone_part_is_whole_unless_its_multipart_may_be_read_otherwise(content, whole):
    entity = mime.parse(content)
    assert len(entity.parts) == 1
    lone = handler.is_whole(entity, True) and handler.is_whole_part(entity.parts, True)
    assert lone is whole
    assert handler.is_whole(entity.parts[0], lone) is whole  # and so is everything below it
    assert handler.is_whole(entity, False) is False
