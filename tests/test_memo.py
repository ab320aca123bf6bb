"""Memos of sender-chosen encodings keep small ones only."""

from __future__ import annotations

import pytest

from ciphermilter.formats import memo


def counted():
    calls = []

    @memo.of_small_encodings(maxsize=8)
    def length(data: bytes, *, twice: bool = False) -> int:
        calls.append(data)
        if not data:
            raise ValueError("empty")
        return len(data) * (2 if twice else 1)

    return length, calls


def test_a_small_encoding_is_parsed_once():
    length, calls = counted()
    small = b"x" * memo.MAX_MEMO_BYTES
    assert length(small) == length(small) == memo.MAX_MEMO_BYTES
    assert len(calls) == 1 and length.cache_info().currsize == 1


@pytest.mark.parametrize("large", [b"x" * (memo.MAX_MEMO_BYTES + 1), "x" * (memo.MAX_MEMO_BYTES + 1)],
                         ids=["bytes", "str"])
def test_a_large_encoding_is_parsed_every_time_and_never_kept(large):
    """Bytes and text (a From: field) alike."""
    length, calls = counted()
    assert length(large) == length(large, twice=False) == memo.MAX_MEMO_BYTES + 1
    assert len(calls) == 2 and length.cache_info().currsize == 0


def test_a_failure_is_raised_again_and_never_kept():
    length, calls = counted()
    for _ in range(2):
        with pytest.raises(ValueError):
            length(b"")
    assert len(calls) == 2 and length.cache_info().currsize == 0


def test_keyword_arguments_count_in_the_key():
    length, _ = counted()
    assert (length(b"ab"), length(b"ab", twice=True)) == (2, 4)
