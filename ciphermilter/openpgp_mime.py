"""OpenPGP at the MIME level: PGP/MIME and inline blocks (stub until the engine lands)."""

from __future__ import annotations

from ciphermilter import mime
from ciphermilter.handler import Context, HandlerResult


def handle(message: mime.Entity, ctx: Context) -> HandlerResult | None:
    return None
