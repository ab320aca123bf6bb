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

MAX_MEMO_BYTES = 16 * 1024


def of_small_encodings(maxsize: int):
    """``functools.lru_cache(maxsize)`` for calls whose bytes (or str) arguments total at most MAX_MEMO_BYTES.

    Larger calls run the function itself. Exceptions are never kept (as with
    lru_cache); ``cache_info`` and ``cache_clear`` are the memo's.
    """
    def decorate(function):
        cached = functools.lru_cache(maxsize=maxsize)(function)

        @functools.wraps(function)
        def call(*args, **kwargs):
            size = sum(len(arg) for arg in (*args, *kwargs.values()) if isinstance(arg, (bytes, bytearray, str)))
            return function(*args, **kwargs) if size > MAX_MEMO_BYTES else cached(*args, **kwargs)

        call.cache_info, call.cache_clear = cached.cache_info, cached.cache_clear
        return call
    return decorate
