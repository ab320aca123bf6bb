"""Memos for values parsed from encodings a sender chooses: names, identifiers, certificates.

The same issuers, recipients and signer certificates come back on message
after message, and parsing them again (asn1crypto, stringprep, cryptography)
can cost more than the RSA operation of a small message. But the bytes are
the sender's: a memo bounded only by its number of entries would keep up to
that many of the largest encodings he cares to send, between messages. So an
encoding larger than :data:`MAX_MEMO_BYTES` is parsed every time and never
kept; legitimate ones (a certificate is 1-2 KB, a name or identifier far
less) always fit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Generic, ParamSpec, TypeVar, cast

MAX_MEMO_BYTES = 16 * 1024

P = ParamSpec("P")
R = TypeVar("R")


class Memo(Generic[P, R]):
    """A function memoised while its bytes (or str) arguments total at most MAX_MEMO_BYTES.

    Larger calls run the function itself. Exceptions are never kept (as with
    lru_cache); ``cache_info`` and ``cache_clear`` are the memo's.
    """

    def __init__(self, function: Callable[P, R], maxsize: int):
        self._function = function
        cached = functools.lru_cache(maxsize=maxsize)(function)
        self.cache_info = cached.cache_info
        self.cache_clear = cached.cache_clear
        # lru_cache's typing asks for Hashable arguments; every memoised function takes bytes, str,
        # ints, bools or classes, which are.
        self._cached = cast(Callable[P, R], cached)
        functools.update_wrapper(self, function)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        size = sum(len(arg) for arg in (*args, *kwargs.values()) if isinstance(arg, (bytes, bytearray, str)))
        if size > MAX_MEMO_BYTES:
            return self._function(*args, **kwargs)
        return self._cached(*args, **kwargs)


def of_small_encodings(maxsize: int) -> Callable[[Callable[P, R]], Memo[P, R]]:
    """``functools.lru_cache(maxsize)`` for calls whose bytes (or str) arguments total at most MAX_MEMO_BYTES."""
    def decorate(function: Callable[P, R]) -> Memo[P, R]:
        return Memo(function, maxsize)
    return decorate
