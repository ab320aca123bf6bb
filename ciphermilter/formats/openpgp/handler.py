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
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from ciphermilter import mime
from ciphermilter.mime import write

from ciphermilter.formats import ids

from ciphermilter.store import keyimport

from ciphermilter.formats.openpgp import engine as openpgp
from ciphermilter.core.contract import Context, HandlerResult, LimitExceeded, is_whole, is_whole_part, parse_content
from ciphermilter.core.info import InfoHeaders
from ciphermilter.formats.sender import from_names_signer
from ciphermilter.formats.smime.handler import is_pgp_signed, is_smime_signed

PGP_MIME, PGP_INLINE = "PGP/MIME", "PGP/INLINE"
ENCRYPTED_PROTOCOL = "application/pgp-encrypted"
KEY_TYPES = ("application/pgp-keys",)
PGP_FILE_SUFFIXES = (".asc", ".pgp", ".gpg")
WITHHELD = "encrypted content beside unprotected content left encrypted (EFAIL protection)"
NOT_VOUCHED = "not harvested (no signature by a key an administrator imported covers it)"
FOREIGN_ADDRESSES = "not harvested (user IDs other than the verified signer's addresses)"
# A file name in Content-Disposition (_without_pgp_suffixes): its start, the byte that ends it, its suffix.
_FILENAME_PREFIX = re.compile(rb'filename\s*=\s*"?', re.I)
_FILENAME_STOP = re.compile(rb'[";\r\n]')
_PGP_SUFFIX = re.compile(rb'\.(?:asc|pgp|gpg)(?=["\s;]|$)', re.I)
# A line longer than write.MAX_LINE in text whose line ends are all CRLF; anchored at line starts, so that the
# search looks at each byte a bounded number of times (unanchored, every byte of a long line starts a scan).
_LONG_LINE = re.compile(rb"(?:\A|\n)[^\r\n]{%d}" % (write.MAX_LINE + 1))
_AUTOCRYPT_KEYDATA = re.compile(r"(?:^|;)\s*keydata\s*=\s*([A-Za-z0-9+/=\s]+)", re.IGNORECASE)


@dataclass
class _KeyCandidate:
    """A public key found in the message, kept until the signatures are known (see _harvest_keys)."""

    data: bytes
    where: str
    covered_by: tuple[openpgp.SignatureResult, ...]  # the signatures whose content holds it
    keys: list | None = None  # parsed once, when needed (pgpy keys)


@dataclass
class _State:
    """What the walk over one message found, and what it needs to decide."""

    ctx: Context
    keyring: openpgp.Keyring
    encodings: list[str] = field(default_factory=list)
    encrypted: bool = False
    ciphers: list[str] = field(default_factory=list)
    key_not_found: bool = False
    refused: bool = False  # the reader rule refused the stored keys
    failures: list[str] = field(default_factory=list)
    signatures: list[openpgp.SignatureResult] = field(default_factory=list)
    mixed: bool = False  # protected content that is not the whole content was found
    withheld: bool = False
    layers: int = 0
    blocks: list[dict] = field(default_factory=list)
    key_candidates: list[_KeyCandidate] = field(default_factory=list)
    covering: tuple[openpgp.SignatureResult, ...] = ()  # the signatures over the entity being walked

    def found(self, encoding: str) -> None:
        if encoding not in self.encodings:
            self.encodings.append(encoding)

    def record_opened(self, opened: openpgp.Opened, where: str, kind: str) -> dict:
        self.encrypted |= opened.encrypted
        self.key_not_found |= opened.key_not_found
        self.refused |= opened.keys_refused
        if opened.cipher and opened.cipher not in self.ciphers:
            self.ciphers.append(opened.cipher)
        if opened.failure and not opened.key_not_found:
            self.failures.append(opened.failure)
        self.signatures += opened.signatures
        block = {
            "where": where,
            "kind": kind,
            "encrypted": opened.encrypted,
            "recipients": opened.recipients,
            "cipher": opened.cipher,
            "decryption_key": opened.decryption_key,
            "compression": opened.compression,
            "sha256": opened.sha256,
            "failure": opened.failure,
            "signatures": [_signature_report(s) for s in opened.signatures],
        }
        self.blocks.append(block)
        return block

    def protected(self, encoding: str, whole: bool) -> None:
        """Protected content was found; unless it is the whole content it sits beside the sender's own."""
        self.found(encoding)
        self.mixed |= not whole

    def decrypts(self, whole: bool) -> bool:
        """Whether content found where ``whole`` says is decrypted in place (EFAIL rule above)."""
        return whole or self.ctx.settings.decrypt_embedded

    def replaces(self, whole: bool, blocks: list[dict]) -> bool:
        """Whether opened blocks may be replaced by their plaintext (EFAIL rule above), noted in their reports.

        Only encrypted ones count as withheld: a signed-only block left as received hides nothing.
        """
        allowed = self.decrypts(whole)
        for block in blocks:
            block["action"] = "replaced" if allowed else "withheld"
        self.withheld |= not allowed and any(block["encrypted"] for block in blocks)
        return allowed

    def open(self, data: bytes, whole: bool) -> openpgp.Opened:
        limits = self.ctx.settings.limits
        self.ctx.check_deadline()
        return openpgp.open_message(
            data,
            self.keyring,
            max_output=self.ctx.decompression,
            max_nesting=limits.max_pgp_nesting,
            max_recipients=limits.max_recipient_infos,
            check=self.ctx.check_deadline,
            arrange=lambda candidates: self.ctx.note_keys(self.arrange(candidates), self.decrypts(whole)),
        )

    def arrange(self, candidates: list) -> list[list]:
        """The reader rule over (PKESK, secret subkey) pairs: a subkey reads as its primary key.

        Stored keys the rule refuses (:mod:`ciphermilter.readers`) leave the
        content encrypted with ``PGP-Decryption-Key-Not-Found: True`` and
        ``PGP-Decryption-Refused: not encrypted to a key of every recipient
        (reader policy)``.
        """
        return self.ctx.readers.arrange(candidates, lambda candidate: self.ctx.store.pgp_readers(candidate[1].primary))


def _signature_report(result: openpgp.SignatureResult) -> dict:
    return {"keyid": result.keyid, "valid": result.valid, "reason": result.reason, "emails": result.emails}


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


def _pgp_mime_encrypted(entity: mime.Entity, state: _State, where: str, whole: bool) -> bytes | None:
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
    block = state.record_opened(opened, where, "pgp/mime-encrypted")
    if opened.plaintext is None:
        return None
    content = write.to_crlf(opened.plaintext)
    _count_layer(state)
    inner = parse_content(content, state.ctx.settings.limits)
    content = _walk_covered(inner, opened.signatures, state, where + ".d", whole=whole) or content
    return content if state.replaces(whole, [block]) else None


def _pgp_mime_signed(entity: mime.Entity, state: _State, where: str, whole: bool) -> bytes | None:
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
    state.blocks.append({
        "where": where,
        "kind": "pgp/mime-signed",
        "sha256": ids.sha256_hex(signed),
        "signatures": [_signature_report(s) for s in results],
    })
    # Encrypted inside signed: the decrypted content stands for the whole signed entity.
    return _walk_covered(parts[0], results, state, where + ".1", whole=whole)


# --------------------------------------------------------------------------- inline


def _inline_block(body: bytes, span: openpgp.ArmorSpan, state: _State, where: str,
                  whole: bool) -> tuple[bytes | None, dict | None]:
    """Open one armored block of a text part: (plaintext to put in its place or None, report entry)."""
    block = body[span.start:span.end]
    if span.kind == "SIGNED MESSAGE":
        try:
            clear = openpgp.read_cleartext(block, state.keyring)
        except openpgp.OpenPGPError as exc:
            state.signatures.append(openpgp.SignatureResult(openpgp.WILDCARD_KEYID, False, str(exc)))
            return None, None
        state.signatures += clear.signatures
        # "Comment:" or "Version:" in the signature's armor is text the reader sees inside the block and
        # nobody signed (gpg writes none by default): the signature covers less than the block shows.
        state.mixed |= bool(clear.signature_headers)
        state.blocks.append({
            "where": where,
            "kind": "clearsigned",
            "sha256": ids.sha256_hex(clear.text),
            "signatures": [_signature_report(s) for s in clear.signatures],
        })
        return None, None
    if span.kind == "PUBLIC KEY BLOCK":
        _collect_key(block, state, where)
        return None, None
    if span.kind != "MESSAGE":
        return None, None
    return _open_armored(block, state, where, "inline", whole)


def _open_armored(block: bytes, state: _State, where: str, kind: str,
                  whole: bool) -> tuple[bytes | None, dict | None]:
    """Open an armored PGP MESSAGE: (its plaintext or None, its report entry)."""
    try:
        armor = openpgp.dearmor(block)
    except openpgp.OpenPGPError as exc:
        state.failures.append(str(exc))
        return None, None
    opened = state.open(armor.data, whole)
    if opened.failure and not opened.key_not_found and openpgp.checksum_mismatch(armor):
        opened.failure = "armor checksum mismatch (corrupted in transit)"
    report = state.record_opened(opened, where, kind)
    if opened.plaintext is None:
        return None, report
    return _armor_inside(opened.plaintext, opened.signatures, state, where + ".d", whole), report


def _armor_inside(plaintext: bytes, signatures, state: _State, where: str, whole: bool) -> bytes:
    """The plaintext of an armored message, its own armored blocks opened as one more layer.

    ``gpg -a -e | gpg -a -e`` hid the inner message from the scanners after
    us: it was written out still encrypted, as PGP/MIME in PGP/MIME and S/MIME
    in S/MIME never are. The layers count against max_pgp_nesting like
    PGP/MIME ones, and the EFAIL rule holds inside too: the inner block is
    whole only when it is all of the plaintext (blank text around it).
    """
    spans = _protected_spans(plaintext, state, where)
    if not spans:
        return plaintext
    _count_layer(state)
    whole = whole and _is_alone(plaintext, spans)
    state.protected(PGP_INLINE, whole)
    outer = state.covering
    state.covering = outer + tuple(signatures)
    try:
        replaced = _replace_blocks(plaintext, spans, state, where, whole)
    finally:
        state.covering = outer
    return plaintext if replaced is None else replaced


def _count_layer(state: _State) -> None:
    """Each decrypted layer may hold another: bound the total, which bounds the depth."""
    state.layers += 1
    if state.layers > state.ctx.settings.limits.max_pgp_nesting:
        raise LimitExceeded(f"more than {state.ctx.settings.limits.max_pgp_nesting} encrypted OpenPGP layers")


def _is_alone(body: bytes, spans) -> bool:
    """One armored block with nothing but blank text around it: blank text is no sender-chosen content."""
    return len(spans) == 1 and not (body[:spans[0].start].strip() or body[spans[0].end:].strip())


def _inline_text(entity: mime.Entity, body: bytes, spans, state: _State, where: str, whole: bool) -> bytes | None:
    """A text part with armored blocks (``whole``: one block alone in a whole part): replace where allowed."""
    replaced = _replace_blocks(body, spans, state, where, whole)
    return None if replaced is None else _rewrite_leaf(entity, replaced, as_text=True)


def _replace_blocks(body: bytes, spans, state: _State, where: str, whole: bool) -> bytes | None:
    """``body`` with its armored blocks opened and replaced by their plaintext where allowed, else None."""
    pieces, pos, changed = [], 0, False
    reports = []
    for span in spans:
        plaintext, report = _inline_block(body, span, state, where, whole)
        pieces.append(body[pos:span.start])
        if plaintext is not None:
            # The END line's line break went with the block: keep text after it on a line of its own.
            pieces += [plaintext] if plaintext.endswith(b"\n") else [plaintext, b"\n"]
            reports.append(report)
            changed = True
        else:
            pieces.append(body[span.start:span.end])
        pos = span.end
    pieces.append(body[pos:])
    if not changed or not state.replaces(whole, reports):
        return None
    return b"".join(pieces)


def _leaf(entity: mime.Entity, state: _State, where: str, whole: bool) -> bytes | None:
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
        _collect_key(body, state, where)
        return None
    spans = _protected_spans(body, state, where)
    binary = not spans and pgp_file and openpgp.looks_binary_openpgp(body)
    if not (spans or binary):
        return None
    whole = whole and (binary or _is_alone(body, spans))
    state.protected(PGP_INLINE, whole)
    if binary:
        return _attachment(entity, state.open(body, whole), state, where, whole)
    if pgp_file and not texty and len(spans) == 1 and spans[0].kind == "MESSAGE":
        plaintext, report = _open_armored(body[spans[0].start:spans[0].end], state, where, "attachment", whole)
        return _replace_attachment(entity, plaintext, report, state, whole)
    return _inline_text(entity, body, spans, state, where, whole)


def _protected_spans(body: bytes, state: _State, where: str) -> list[openpgp.ArmorSpan]:
    """The armored blocks of ``body`` but public keys, which are collected (a key is not protected content)."""
    spans = openpgp.find_armor(body)
    for span in spans:
        if span.kind == "PUBLIC KEY BLOCK":
            _collect_key(body[span.start:span.end], state, where)
    return [span for span in spans if span.kind != "PUBLIC KEY BLOCK"]


def _attachment(entity: mime.Entity, opened: openpgp.Opened, state: _State, where: str, whole: bool) -> bytes | None:
    """A binary ``.pgp``/``.gpg`` attachment."""
    report = state.record_opened(opened, where, "attachment")
    return _replace_attachment(entity, opened.plaintext, report, state, whole)


def _replace_attachment(entity, plaintext: bytes | None, report: dict | None, state: _State, whole: bool):
    """An encrypted attachment becomes its plaintext as a file of its own, where allowed."""
    if plaintext is None or not state.replaces(whole, [report]):
        return None
    return _rewrite_leaf(entity, plaintext, as_text=False)


# --------------------------------------------------------------------------- walk


def _walk(entity: mime.Entity, state: _State, where: str, *, whole: bool) -> bytes | None:
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


def _walk_covered(entity: mime.Entity, signatures, state: _State, where: str, *, whole: bool) -> bytes | None:
    """Walk protected content under the signatures that cover it (they decide what may be harvested there)."""
    outer = state.covering
    state.covering = outer + tuple(signatures)
    try:
        return _walk(entity, state, where, whole=whole)
    finally:
        state.covering = outer


# --------------------------------------------------------------------------- harvesting


def _collect_key(data: bytes, state: _State, where: str) -> None:
    """Note a public key the message carries; whether it may be kept is decided once the signatures are known."""
    state.key_candidates.append(_KeyCandidate(data, where, state.covering))


def _harvest_keys(state: _State) -> None:
    """Store the carried keys that a verified signature vouches for (never trusted for verification by that).

    A key arrives in mail with whatever user IDs its maker chose, so one is
    kept only when it lies in content signed by a key an administrator
    imported (a partner announcing a new key) and every address of its user
    IDs is an address of that signer: a signed message cannot plant a key for
    anyone else, and an Autocrypt header, which no signature covers (it can be
    added to a replayed signed message), plants none.
    """
    if not (state.ctx.settings.harvest_pgp_keys and state.ctx.store is not None):
        return
    for candidate in state.key_candidates:
        vouched = {email for s in candidate.covered_by if s.valid for email in s.emails}
        if not vouched:
            state.ctx.harvest.note(f"{candidate.where}: {NOT_VOUCHED}")
            continue
        for key in _carried_keys(candidate, state):
            emails = set(openpgp.key_emails(key))
            if emails and emails <= vouched:
                state.ctx.harvest.pgp_key(key, candidate.where, frozenset(vouched))
            else:
                state.ctx.harvest.note(f"{candidate.where}: {key.fingerprint.keyid} {FOREIGN_ADDRESSES}")


def _carried_keys(candidate: _KeyCandidate, state: _State) -> list:
    if candidate.keys is None:
        try:
            candidate.keys = keyimport.parse(candidate.data).pgp_keys
        except Exception as exc:  # whatever the sender sent: pgpy raises assorted errors on what it cannot read
            state.ctx.harvest.note(f"{candidate.where}: refused ({type(exc).__name__})")
            candidate.keys = []
    return candidate.keys


def _carried_key_ids(state: _State) -> set[str]:
    """Key IDs (primary and subkeys) of every key the message carries."""
    found = set()
    for candidate in state.key_candidates:
        for key in _carried_keys(candidate, state):
            found |= {key.fingerprint.keyid.upper(), *(keyid.upper() for keyid in key.subkeys)}
    return found


def _explain_carried_signers(state: _State) -> None:
    """A signature by a key that only the message itself carries: say so rather than "public key not found"."""
    unknown = [s for s in state.signatures if s.reason == openpgp.KEY_NOT_FOUND]
    if not (unknown and state.key_candidates):
        return
    carried = _carried_key_ids(state)
    for signature in unknown:
        if signature.keyid in carried:
            signature.reason = openpgp.KEY_NOT_IMPORTED


def _collect_autocrypt(message: mime.Entity, state: _State) -> None:
    """Autocrypt headers (Autocrypt 1.1 section 2.1) carry the sender's key as base64 ``keydata``."""
    for header in message.headers:
        if header.name.lower() != "autocrypt":
            continue
        match = _AUTOCRYPT_KEYDATA.search(header.value)
        if not match:
            continue
        try:
            data = base64.b64decode(re.sub(r"\s", "", match.group(1)), validate=True)
        except binascii.Error:
            state.ctx.harvest.note("Autocrypt: corrupt keydata")
            continue
        _collect_key(data, state, "Autocrypt")


# --------------------------------------------------------------------------- results


def _info(state: _State) -> InfoHeaders:
    info = InfoHeaders()
    info.add("PGP-Encoding", state.encodings[0])
    if state.encrypted:
        info.flag("PGP-Encrypted")
    if state.ciphers:
        info.add("PGP-Encryption-Algorithm", ", ".join(state.ciphers))
    if state.key_not_found:
        info.flag("PGP-Decryption-Key-Not-Found")
    if state.refused:
        info.add("PGP-Decryption-Refused", state.ctx.readers.refusal())
    for failure in dict.fromkeys(state.failures):
        info.add("PGP-Decryption-Failed", failure)
    if state.signatures:
        _signature_info(info, state)
    if state.mixed:
        info.flag("PGP-Mixed-Content")
    if state.withheld:
        info.add("PGP-Decryption-Withheld", WITHHELD)
    return info


def _signature_info(info: InfoHeaders, state: _State) -> None:
    signatures = state.signatures
    info.flag("PGP-Signed")
    info.add("PGP-Signer-KeyID", ", ".join(dict.fromkeys(s.keyid for s in signatures)))
    valid = all(s.valid for s in signatures)
    info.boolean("PGP-Signature-Valid", valid)
    if not valid:
        info.add("PGP-Signature-Failure", ", ".join(dict.fromkeys(s.reason for s in signatures if s.reason)))
    emails = list(dict.fromkeys(e for s in signatures for e in s.emails))
    if emails:
        info.add("PGP-Signer-Email", ", ".join(emails))
    if not from_names_signer(state.ctx.from_fields, [e for s in signatures if s.valid for e in s.emails]):
        info.flag("PGP-Signer-Mismatch")


def handle(message: mime.Entity, ctx: Context) -> HandlerResult | None:
    """Find, open and (where safe) replace OpenPGP content; None when the message has none."""
    state = _State(ctx=ctx, keyring=openpgp.keyring_for(ctx.store))
    _collect_autocrypt(message, state)
    new_raw = _walk(message, state, "0", whole=True)
    _explain_carried_signers(state)
    _harvest_keys(state)
    report = {
        "encoding": state.encodings,
        "blocks": state.blocks,
        "signatures": [_signature_report(s) for s in state.signatures],
    }
    if not state.encodings:
        return None
    # The whole rewritten message: the core takes only its content headers (and RFC 9788 protected ones).
    return HandlerResult(info=_info(state), entity=new_raw, report={"openpgp": report})
