"""Bounded decompression, shared by the OpenPGP compressed packet and the CMS CompressedData layer.

A compressed body is sender-chosen and tiny beside what it may unpack to (a 2 KB OpenPGP packet can
expand to 1 GiB): output is produced in steps, counted against the one budget of the whole message
(:class:`core.contract.DecompressionBudget`, shared by both formats), and held only up to KEEP_WHILE_COUNTING
bytes until it is known to fit. No MIME, no format here: callers name the compression (RAW_DEFLATE,
ZLIB, BZIP2) and turn :class:`CorruptData` into their own reason.
"""

from __future__ import annotations

import bz2
import zlib
from collections.abc import Callable, Iterator
from typing import Literal

from ciphermilter.core.contract import DecompressionBudget

Compression = Literal["deflate", "zlib", "bzip2"]
RAW_DEFLATE: Compression = "deflate"  # RFC 1951
ZLIB: Compression = "zlib"  # RFC 1950
BZIP2: Compression = "bzip2"

# Decompressed output kept while a body is first inflated. Past it the output is only counted against
# the budget, and a body that fits the budget all the same is inflated a second time to keep it: a
# bomb is refused having held at most this much (it held all 256 MiB of the budget before: 325 MB peak
# RSS for `ciphermilter decrypt`), at the price of inflating twice the rare body larger than this.
KEEP_WHILE_COUNTING = 8 << 20
INFLATE_STEP = 1 << 20  # output per call: the unit in which the budget and the deadline are checked


class CorruptData(ValueError):
    """The compressed data does not decompress; ``str()`` is a short reason."""



def _decompressor(kind: Compression) -> bz2.BZ2Decompressor | zlib._Decompress:
    if kind == BZIP2:
        return bz2.BZ2Decompressor()
    return zlib.decompressobj(-15 if kind == RAW_DEFLATE else 15)


def _inflated_pieces(kind: Compression, data: bytes, limit: int, check: Callable[[], None]) -> Iterator[bytes]:
    """Yield the decompressed output of ``data`` in pieces of at most INFLATE_STEP bytes; stop once more
    than ``limit`` bytes came out (the caller's budget is exceeded then: no need to inflate further)."""
    decompressor = _decompressor(kind)
    pending, produced = data, 0
    try:
        while produced <= limit:
            piece = decompressor.decompress(pending, min(INFLATE_STEP, limit - produced + 1))
            produced += len(piece)
            yield piece
            check()
            if decompressor.eof:
                return
            if isinstance(decompressor, bz2.BZ2Decompressor):
                pending = b""
                if decompressor.needs_input:
                    return
            else:
                pending = decompressor.unconsumed_tail
                if not pending and not piece:
                    return
    except (zlib.error, OSError, EOFError) as exc:
        raise CorruptData(f"corrupt compressed data: {exc}") from None


def inflate(kind: Compression, data: bytes, budget: DecompressionBudget, check: Callable[[], None],
            what: str) -> bytes:
    """Decompress ``data``, stopping as soon as it exceeds the budget, and holding no more than
    KEEP_WHILE_COUNTING bytes of output until it is known to fit. ``check`` runs after every step
    (the handler's deadline check); ``what`` names the data in the limit's reason."""
    kept: list[bytes] | None = []
    size = 0
    for piece in _inflated_pieces(kind, data, budget.remaining, check):
        budget.take(len(piece), what)
        size += len(piece)
        if kept is not None:
            kept.append(piece)
            if size > KEEP_WHILE_COUNTING:
                kept = None  # from here on only counted
    if kept is None:  # it fits: the budget was taken, inflate it again to keep it
        kept = list(_inflated_pieces(kind, data, size, check))
    return b"".join(kept)
