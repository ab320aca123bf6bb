"""OpenPGP at the MIME level: PGP/MIME (RFC 3156), inline blocks, attachments, EFAIL protection.

The engine (:mod:`ciphermilter.openpgp`) opens OpenPGP data; this module
finds it in the message, decides what may be replaced by its plaintext and
rebuilds the MIME structure byte-exactly around the replaced parts.

EFAIL (direct exfiltration) wraps sender-chosen HTML around captured
ciphertext so that the client renders the plaintext into a URL; the reply
attack ("Re: What's up Johnny") puts the attacker's own text beside it so that
the victim quotes the plaintext back. Neither needs any particular type of
sibling. So, by default, encrypted content is replaced by its plaintext only
when it is the whole content (:func:`handler.is_whole_part`: the message, or
the content under other protection layers, and for an armored block a part
holding that block alone with blank text around it). Anything else is still
opened (for the report and the signatures) but left encrypted, flagged with
``PGP-Mixed-Content`` and explained, unless ``Settings.decrypt_embedded``
allows it. Signed content that is not the whole content gets the same flag
beside its verdict: the signature does not cover what sits beside it.

The handler is split by job (it had grown to 694 lines): this module walks the MIME tree (PGP/MIME,
leaves, attachments) and writes what replaces a part; :mod:`.armored` opens armored blocks inside
text; :mod:`.carried_keys` decides which keys the message carries may be kept; :mod:`.state` holds
what the walk found, which :mod:`.findings` freezes and renders (info headers, facts, report).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from ciphermilter import mime
from ciphermilter.core.contract import Context, HandlerResult, is_whole, is_whole_part, parse_content
from ciphermilter.mime import write
from ciphermilter.formats import ids
from ciphermilter.formats.openpgp import engine as openpgp
from ciphermilter.formats.openpgp import findings
from ciphermilter.formats.openpgp.armored import PGP_INLINE, is_alone, open_armored, protected_spans, replace_blocks
from ciphermilter.formats.openpgp.carried_keys import (collect_autocrypt, collect_key, explain_carried_signers,
                                                       harvest_keys)
from ciphermilter.formats.openpgp.findings import BlockKind, PgpBlock
from ciphermilter.formats.openpgp.state import WalkState, count_layer, signature_findings
from ciphermilter.formats.sender import from_names_signer
from ciphermilter.formats.smime.handler import is_pgp_signed, is_smime_signed

PGP_MIME = "PGP/MIME"
ENCRYPTED_PROTOCOL = "application/pgp-encrypted"
KEY_TYPES = ("application/pgp-keys",)
# Words (lower case) in the header block of every entity this handler acts on: its types (application/pgp-*)
# and file names (.pgp, .gpg; an .asc file holds armor, whose "PGP" the body shows), its multiparts and the
# Autocrypt header. The core's is_light is made of the handlers' signs, so it cannot drift from them.
HEADER_SIGNS = (b"pgp", b"multipart/signed", b"multipart/encrypted", b"autocrypt")
PGP_FILE_SUFFIXES = (".asc", ".pgp", ".gpg")
# A file name in Content-Disposition (_without_pgp_suffixes): its start, the byte that ends it, its suffix.
_FILENAME_PREFIX = re.compile(rb'filename\s*=\s*"?', re.I)
_FILENAME_STOP = re.compile(rb'[";\r\n]')
_PGP_SUFFIX = re.compile(rb'\.(?:asc|pgp|gpg)(?=["\s;]|$)', re.I)
# A line longer than write.MAX_LINE in text whose line ends are all CRLF; anchored at line starts, so that the
# search looks at each byte a bounded number of times (unanchored, every byte of a long line starts a scan).
_LONG_LINE = re.compile(rb"(?:\A|\n)[^\r\n]{%d}" % (write.MAX_LINE + 1))


def _filename(entity: mime.Entity) -> str:
    disposition = entity.get("Content-Disposition")
    name = mime.parse_content_type("x/x" + (";" + disposition.partition(";")[2] if disposition else ""))[1]
    return (name.get("filename") or entity.params.get("name") or "").strip()


def is_pgp_mime_encrypted(entity: mime.Entity) -> bool:
    return entity.content_type == "multipart/encrypted" and entity.params.get("protocol", "").lower() == ENCRYPTED_PROTOCOL


def is_pgp_file(entity: mime.Entity) -> bool:
    return entity.content_type == ENCRYPTED_PROTOCOL or _filename(entity).lower().endswith(PGP_FILE_SUFFIXES)


# --------------------------------------------------------------------------- rebuilding


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _strip_pgp_suffix(name: str) -> str:
    return name[:-4] if name.lower().endswith(PGP_FILE_SUFFIXES) else name


def _encode_text(data: bytes) -> tuple[bytes, str, str | None]:
    """(body, Content-Transfer-Encoding, charset) for decrypted text: the lightest encoding that is valid."""
    data = write.to_crlf(data)
    charset = "utf-8" if data.isascii() or _is_utf8(data) else None
    # Counts and one search instead of a copy without CRLF and a list of lines: decompressed text may
    # be hundreds of MB, and a list of short lines costs five times the text (49 bytes per line of 8).
    clean_lines = b"\0" not in data and data.count(b"\r") == data.count(b"\r\n") and not _LONG_LINE.search(data)
    if clean_lines and data.isascii():
        return data, "7bit", charset
    if clean_lines and charset:
        return data, "8bit", charset
    if b"\0" in data:  # no text, whatever its label: quoted-printable would triple it ("=00"), base64 adds a third
        return write.base64_lines(data), "base64", charset
    return binascii.b2a_qp(data), "quoted-printable", charset


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _without_pgp_suffixes(raw: bytes) -> bytes:
    """A Content-Disposition field with ``.asc``/``.pgp``/``.gpg`` cut from the end of each file name: what
    ``re.sub(rb'(filename\\s*=\\s*"?[^";\\r\\n]*?)\\.(?:asc|pgp|gpg)(?=["\\s;]|$)', rb"\\1", raw, flags=re.I)`` does.

    That regex searched the rest of the value again from every "filename=" in it: 20,000 of them (180 KB)
    took 41 s. Here each run of name characters is searched for a suffix once: a run without one has none
    for any "filename=" inside it either, since it ends where they end.
    """
    pieces, pos, search_from = [], 0, 0
    run_end, failed_run_end = -1, -1  # where the run of the last name ends; the last run without a suffix
    while (prefix := _FILENAME_PREFIX.search(raw, search_from)) is not None:
        start = prefix.end()
        if start > run_end:
            stop = _FILENAME_STOP.search(raw, start)
            run_end = stop.start() if stop else len(raw)
        suffix = None if run_end == failed_run_end else _PGP_SUFFIX.search(raw, start, run_end)
        if suffix is None:
            failed_run_end, search_from = run_end, prefix.start() + 1
            continue
        pieces.append(raw[pos:suffix.start()])
        pos = search_from = suffix.end()
    pieces.append(raw[pos:])
    return b"".join(pieces)


def _rewrite_leaf(entity: mime.Entity, data: bytes, *, as_text: bool) -> bytes:
    """``entity`` with ``data`` as its new content and Content-Type / CTE headers that describe it."""
    params = {k: v for k, v in entity.params.items() if k not in ("charset", "protocol")}
    if as_text:
        body, cte, charset = _encode_text(data)
        ctype = entity.content_type if entity.content_type.startswith("text/") else "text/plain"
        charset = charset or entity.params.get("charset")
        if charset:
            params["charset"] = charset
    else:
        body, cte, ctype = write.base64_lines(data), "base64", "application/octet-stream"
    if "name" in params:
        params["name"] = _strip_pgp_suffix(params["name"])
    content_type = "; ".join([ctype] + [f"{k}={_quote(v)}" for k, v in params.items()])
    kept = []
    for header in entity.headers:
        lname = header.name.lower()
        if lname in ("content-type", "content-transfer-encoding"):
            continue
        kept.append(_without_pgp_suffixes(header.raw) if lname == "content-disposition" else header.raw)
    return write.leaf(kept, content_type, body, cte)


# --------------------------------------------------------------------------- PGP/MIME


def _payload(entity: mime.Entity) -> bytes:
    """The binary OpenPGP data of a part: dearmored when armored, else the decoded body as it is.

    Raises :class:`openpgp.OpenPGPError` (or :class:`mime.MimeError`) for data that cannot be decoded.
    """
    body = entity.decoded_body()
    spans = openpgp.find_armor(body)
    if spans:
        return openpgp.dearmor(body[spans[0].start:spans[0].end]).data
    return body


def _pgp_mime_encrypted(entity: mime.Entity, state: WalkState, where: str, whole: bool) -> bytes | None:
    # PGP-Encrypted comes from the packets (record_opened), never from this label: a signed-only
    # message in a multipart/encrypted is not encrypted.
    state.protected(PGP_MIME, whole)
    parts = entity.parts
    if len(parts) < 2:
        state.failures.append("PGP/MIME encrypted message without its data part")
        return None
    try:
        payload = _payload(parts[1])
    except (openpgp.OpenPGPError, mime.MimeError) as exc:
        state.failures.append(str(exc))
        return None
    opened = state.open(payload, whole)
    block = state.record_opened(opened, where, BlockKind.PGP_MIME_ENCRYPTED)
    if opened.plaintext is None:
        return None
    content = write.to_crlf(opened.plaintext)
    count_layer(state)
    inner = state.parsed = parse_content(content, state.ctx.settings.limits)
    content = _walk_covered(inner, opened.signatures, state, where + ".d", whole=whole) or content
    return content if state.replaces(whole, [block]) else None


def _pgp_mime_signed(entity: mime.Entity, state: WalkState, where: str, whole: bool) -> bytes | None:
    parts = entity.parts
    # RFC 3156 section 5: exactly two parts. Clients show a third one beside the signed part (RFC 1847
    # section 2.1), so the signature then covers only part of what the reader sees: Mixed-Content.
    whole = whole and len(parts) <= 2
    state.protected(PGP_MIME, whole)
    if len(parts) < 2:
        state.signatures.append(openpgp.SignatureResult(openpgp.WILDCARD_KEYID, False, "signature part missing"))
        return None
    signed = parts[0].raw  # sliced from the message on each access: once here
    try:
        signature = _payload(parts[1])
        results = openpgp.verify_detached(write.to_crlf(signed), signature, state.keyring)
    except (openpgp.OpenPGPError, mime.MimeError) as exc:
        results = [openpgp.SignatureResult(openpgp.WILDCARD_KEYID, False, f"unreadable signature ({exc})")]
    state.signatures += results
    state.record(PgpBlock(where, BlockKind.PGP_MIME_SIGNED, ids.sha256_hex(signed), signature_findings(results)))
    # Encrypted inside signed: the decrypted content stands for the whole signed entity.
    return _walk_covered(parts[0], results, state, where + ".1", whole=whole)


# --------------------------------------------------------------------------- inline


def _inline_text(entity: mime.Entity, body: bytes, spans: Sequence[openpgp.ArmorSpan], state: WalkState, where: str,
                 whole: bool) -> bytes | None:
    """A text part with armored blocks (``whole``: one block alone in a whole part): replace where allowed."""
    replaced = replace_blocks(body, spans, state, where, whole)
    return None if replaced is None else _rewrite_leaf(entity, replaced, as_text=True)


def _leaf(entity: mime.Entity, state: WalkState, where: str, whole: bool) -> bytes | None:
    key = entity.content_type in KEY_TYPES
    texty = entity.content_type.startswith("text/")
    pgp_file = is_pgp_file(entity)
    if not (key or texty or pgp_file):
        return None
    try:
        body = entity.decoded_body()
    except mime.MimeError:
        return None
    if key:
        collect_key(body, state, where)
        return None
    spans = protected_spans(body, state, where)
    binary = not spans and pgp_file and openpgp.looks_binary_openpgp(body)
    if not (spans or binary):
        return None
    whole = whole and (binary or is_alone(body, spans))
    state.protected(PGP_INLINE, whole)
    if binary:
        return _attachment(entity, state.open(body, whole), state, where, whole)
    if pgp_file and not texty and len(spans) == 1 and spans[0].kind == "MESSAGE":
        plaintext, number = open_armored(body[spans[0].start:spans[0].end], state, where, BlockKind.ATTACHMENT,
                                          whole)
        return _replace_attachment(entity, plaintext, number, state, whole)
    return _inline_text(entity, body, spans, state, where, whole)


def _attachment(entity: mime.Entity, opened: openpgp.Opened, state: WalkState, where: str, whole: bool) -> bytes | None:
    """A binary ``.pgp``/``.gpg`` attachment."""
    number = state.record_opened(opened, where, BlockKind.ATTACHMENT)
    return _replace_attachment(entity, opened.plaintext, number, state, whole)


def _replace_attachment(entity: mime.Entity, plaintext: bytes | None, number: int | None, state: WalkState,
                        whole: bool) -> bytes | None:
    """An encrypted attachment becomes its plaintext as a file of its own, where allowed."""
    if plaintext is None or number is None or not state.replaces(whole, [number]):
        return None
    return _rewrite_leaf(entity, plaintext, as_text=False)


# --------------------------------------------------------------------------- walk


def _walk(entity: mime.Entity, state: WalkState, where: str, *, whole: bool) -> bytes | None:
    """New raw bytes for ``entity`` when something in it was replaced, else None."""
    state.ctx.check_deadline()
    whole = is_whole(entity, whole)
    if is_pgp_mime_encrypted(entity):
        return _pgp_mime_encrypted(entity, state, where, whole)
    if is_pgp_signed(entity):
        return _pgp_mime_signed(entity, state, where, whole)
    if is_smime_signed(entity) and len(entity.parts) == 2:
        # An S/MIME signature (reported by its own handler before this one): its first part is as whole
        # as the signature layer, and the signature part is none of our content. Any other protocol, or
        # a third part, is shown by mail clients as multipart/mixed (RFC 1847 section 2.1): parts
        # side by side, none of them whole.
        return _walk(entity.parts[0], state, where + ".1", whole=whole)
    if entity.is_multipart:
        parts = entity.parts
        walked = (_walk(part, state, f"{where}.{i}", whole=is_whole_part(parts, whole))
                  for i, part in enumerate(parts, start=1))
        replacements = {index: new for index, new in enumerate(walked) if new is not None}
        return write.splice(entity, replacements) if replacements else None
    return _leaf(entity, state, where, whole)


def _walk_covered(entity: mime.Entity, signatures: Sequence[openpgp.SignatureResult], state: WalkState, where: str,
                  *, whole: bool) -> bytes | None:
    """Walk protected content under the signatures that cover it (they decide what may be harvested there)."""
    outer = state.covering
    state.covering = outer + tuple(signatures)
    try:
        return _walk(entity, state, where, whole=whole)
    finally:
        state.covering = outer


# --------------------------------------------------------------------------- results


class _Walker:
    """One message's walk, with the S/MIME handler's skeleton: :meth:`unwrap`, then :meth:`finish`."""

    def __init__(self, ctx: Context):
        self.state = WalkState(ctx=ctx, keyring=openpgp.keyring_for(ctx.store))

    def unwrap(self, message: mime.Entity, *, whole: bool) -> bytes | None:
        """The new bytes of the message when something in it was replaced, else None."""
        collect_autocrypt(message, self.state)
        return _walk(message, self.state, "0", whole=whole)

    def finish(self, entity: bytes | None) -> HandlerResult | None:
        """The handler's result once every signature is known; None when the message holds no OpenPGP."""
        state = self.state
        explain_carried_signers(state)
        harvest_keys(state)
        if not state.encodings:
            return None
        found = self._findings()
        # The whole rewritten message: the core takes only its content headers (and RFC 9788 protected ones).
        return HandlerResult(info=findings.info_headers(found), content=entity, parsed=state.parsed, facts=findings.facts(found),
                             report={"openpgp": found.explain()})

    def _findings(self) -> findings.PgpFindings:
        state = self.state
        valid_emails = [email for s in state.signatures if s.valid for email in s.emails]
        return findings.PgpFindings(
            encodings=tuple(state.encodings), encrypted=state.encrypted, ciphers=tuple(state.ciphers),
            key_not_found=state.key_not_found, refusal=state.ctx.readers.refusal() if state.refused else None,
            failures=tuple(state.failures), signatures=signature_findings(state.signatures),
            signer_mismatch=not from_names_signer(state.ctx.from_fields, valid_emails), mixed=state.mixed,
            withheld=state.withheld, blocks=tuple(state.blocks))


def handle(message: mime.Entity, ctx: Context) -> HandlerResult | None:
    """Find, open and (where safe) replace OpenPGP content; None when the message has none."""
    walker = _Walker(ctx)
    return walker.finish(walker.unwrap(message, whole=True))
