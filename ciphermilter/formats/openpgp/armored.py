"""Armored OpenPGP blocks inside text: opened, and replaced by their plaintext where the EFAIL rule allows.

An inline block is whole content only when it is alone in a whole part, blank text around it
(:func:`is_alone`); a decrypted armored message may hold armored blocks of its own, opened as one more
layer (:func:`_armor_inside`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ciphermilter.formats import ids
from ciphermilter.formats.openpgp import engine as openpgp
from ciphermilter.formats.openpgp.carried_keys import collect_key
from ciphermilter.formats.openpgp.findings import BlockKind, PgpBlock
from ciphermilter.formats.openpgp.state import WalkState, count_layer, signature_findings

PGP_INLINE = "PGP/INLINE"


def _inline_block(body: bytes, span: openpgp.ArmorSpan, state: WalkState, where: str,
                  whole: bool) -> tuple[bytes | None, int | None]:
    """Open one armored block of a text part: (plaintext to put in its place or None, its block number)."""
    block = body[span.start:span.end]
    if span.kind == "SIGNED MESSAGE":
        try:
            clear = openpgp.read_cleartext(block, state.keyring)
        except openpgp.OpenPGPError as exc:
            state.signatures.append(openpgp.SignatureResult(openpgp.WILDCARD_KEYID, False, str(exc)))
            return None, None
        state.signatures += clear.signatures
        # "Comment:" or "Version:" in the signature's armor (gpg writes none by default), or a line the base64
        # decoder skipped, is text the reader sees inside the block and nobody signed: the signature covers
        # less than the block shows.
        state.mixed |= clear.unsigned_armor_text
        state.record(PgpBlock(where, BlockKind.CLEARSIGNED, ids.sha256_hex(clear.text),
                              signature_findings(clear.signatures)))
        return None, None
    if span.kind == "PUBLIC KEY BLOCK":
        collect_key(block, state, where)
        return None, None
    if span.kind != "MESSAGE":
        return None, None
    return open_armored(block, state, where, BlockKind.INLINE, whole)


def open_armored(block: bytes, state: WalkState, where: str, kind: BlockKind,
                  whole: bool) -> tuple[bytes | None, int | None]:
    """Open an armored PGP MESSAGE: (its plaintext or None, its block number)."""
    try:
        armor = openpgp.dearmor(block)
    except openpgp.OpenPGPError as exc:
        state.failures.append(str(exc))
        return None, None
    opened = state.open(armor.data, whole)
    if opened.failure and not opened.key_not_found and openpgp.checksum_mismatch(armor):
        opened.failure = "armor checksum mismatch (corrupted in transit)"
    number = state.record_opened(opened, where, kind)
    if opened.plaintext is None:
        return None, number
    return _armor_inside(opened.plaintext, opened.signatures, state, where + ".d", whole), number


def _armor_inside(plaintext: bytes, signatures: Sequence[openpgp.SignatureResult], state: WalkState, where: str,
                  whole: bool) -> bytes:
    """The plaintext of an armored message, its own armored blocks opened as one more layer.

    ``gpg -a -e | gpg -a -e`` hid the inner message from the scanners after
    us: it was written out still encrypted, as PGP/MIME in PGP/MIME and S/MIME
    in S/MIME never are. The layers count against max_pgp_nesting like
    PGP/MIME ones, and the EFAIL rule holds inside too: the inner block is
    whole only when it is all of the plaintext (blank text around it).
    """
    spans = protected_spans(plaintext, state, where)
    if not spans:
        return plaintext
    count_layer(state)
    whole = whole and is_alone(plaintext, spans)
    state.protected(PGP_INLINE, whole)
    outer = state.covering
    state.covering = outer + tuple(signatures)
    try:
        replaced = replace_blocks(plaintext, spans, state, where, whole)
    finally:
        state.covering = outer
    return plaintext if replaced is None else replaced


def is_alone(body: bytes, spans: Sequence[openpgp.ArmorSpan]) -> bool:
    """One armored block with nothing but blank text around it: blank text is no sender-chosen content."""
    return len(spans) == 1 and not (body[:spans[0].start].strip() or body[spans[0].end:].strip())


def replace_blocks(body: bytes, spans: Sequence[openpgp.ArmorSpan], state: WalkState, where: str,
                   whole: bool) -> bytes | None:
    """``body`` with its armored blocks opened and replaced by their plaintext where allowed, else None."""
    pieces: list[bytes] = []
    pos, changed = 0, False
    opened: list[int] = []
    for span in spans:
        plaintext, number = _inline_block(body, span, state, where, whole)
        pieces.append(body[pos:span.start])
        if plaintext is not None:
            # The END line's line break went with the block: keep text after it on a line of its own.
            pieces += [plaintext] if plaintext.endswith(b"\n") else [plaintext, b"\n"]
            assert number is not None  # a plaintext comes from an opened block
            opened.append(number)
            changed = True
        else:
            pieces.append(body[span.start:span.end])
        pos = span.end
    pieces.append(body[pos:])
    if not changed or not state.replaces(whole, opened):
        return None
    return b"".join(pieces)


def protected_spans(body: bytes, state: WalkState, where: str) -> list[openpgp.ArmorSpan]:
    """The armored blocks of ``body`` but public keys, which are collected (a key is not protected content)."""
    spans = openpgp.find_armor(body)
    for span in spans:
        if span.kind == "PUBLIC KEY BLOCK":
            collect_key(body[span.start:span.end], state, where)
    return [span for span in spans if span.kind != "PUBLIC KEY BLOCK"]
