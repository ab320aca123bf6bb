"""S/MIME at the MIME level (RFC 8551): find CMS layers, unwrap them, report them.

The walk starts at the message and follows the layers outermost first, so
LEVELs are numbered in the order the spec asks. Encrypted layers are removed;
a detached signature stays in place as long as the content it signs is left
unchanged, so mail clients can still show it. A signature around content that
had to change (a layer below it was decrypted) is dropped, since it could no
longer verify; its verdict is in the headers.

EFAIL protection (CVE-2017-17689): an encrypted part is only decrypted when it
is the whole content (:func:`handler.is_whole_part`: the message, or the
content under other protection layers). One sitting beside sender-chosen
parts stays encrypted unless ``decrypt_embedded`` is on. A signed part there
is verified and reported but left as it is. Either way ``SMIME-Mixed-Content``
says that the message holds content the protection does not cover.

Headers of our own (all under ``X-CipherMail-Info-``):

* ``SMIME-Decryption-Failed-<LEVEL>``: why an encrypted layer stays
  encrypted although it was found (``malformed CMS``, ``decryption failed``,
  ``unsupported content cipher <name>``, ...).
* ``SMIME-Not-Decrypted-<LEVEL>``: ``encrypted part beside other parts``
  (EFAIL protection left it encrypted) or ``plaintext contains the boundary
  of its parent`` (decrypted in place it would break the message structure).
* ``SMIME-Signature-Failed-<LEVEL>``: a signature layer that could not be
  read at all (``malformed CMS``, ``malformed multipart/signed``).
* ``SMIME-Unsupported-<LEVEL>``: a CMS content type this handler does not
  unwrap (``unsupported CMS content type <OID>``), or a compression algorithm
  other than zlib (``unsupported compression algorithm <OID>``).
* ``SMIME-Compressed``: a CompressedData layer (RFC 3274) was found; it is
  decompressed wherever it is (it protects nothing), within the message's
  ``max_decompressed_size`` budget. ``SMIME-Decompression-Failed-<LEVEL>``:
  why one stays as received (``corrupt compressed data``, ``malformed CMS``).
* ``SMIME-Decryption-Refused-<LEVEL>``: keys for the layer are stored, but
  the reader rule refused them (:mod:`ciphermilter.readers`): ``not
  encrypted to a key of every recipient (reader policy)``; with
  ``SMIME-Decryption-Key-Not-Found: True``.
"""

from __future__ import annotations

from typing import Any

from ciphermilter import mime
from ciphermilter.mime import write

from ciphermilter.formats.smime import cms

from ciphermilter.formats import ids

from ciphermilter.formats import inflate

from ciphermilter.formats.smime import trust
from ciphermilter.core.contract import Context, HandlerResult, LimitExceeded, is_whole, is_whole_part, parse_content
from ciphermilter.core.findings import revised
from ciphermilter.core.info import InfoHeaders
from ciphermilter.formats.sender import from_names_signer
from ciphermilter.formats.smime import findings
from ciphermilter.formats.smime.findings import (BOUNDARY_CLASH, LayerKind, Problem, RecipientFinding,
                                                 SignerFinding, SmimeLayer)

PKCS7_MIME = ("application/pkcs7-mime", "application/x-pkcs7-mime")
# Words (lower case) in the header block of every entity this handler acts on: its CMS types (both tuples
# here hold "pkcs7"), the file names clients give them, and multipart/signed. The core's is_light (which
# messages are too plain to be worth a worker) is made of the handlers' signs, so it cannot drift from them.
HEADER_SIGNS = (b"pkcs7", b".p7m", b".p7c", b".p7s", b"multipart/signed")
PKCS7_SIGNATURE = ("application/pkcs7-signature", "application/x-pkcs7-signature")
PGP_SIGNATURE = "application/pgp-signature"  # RFC 3156
EMBEDDED = "encrypted part beside other parts"
UNDER_PGP_SIGNATURE = "encrypted part inside an OpenPGP signature"
_LINE_WINDOW = 1 << 20  # bytes of a body checked for bare line ends at a time
COMPRESSED_TYPE = "compressed-data"  # RFC 3274 smime-type
CORRUPT_COMPRESSED = "corrupt compressed data"


def handle(message: mime.Entity, ctx: Context) -> HandlerResult | None:
    walker = _Walker(ctx)
    entity = walker.unwrap(message, whole=True)
    if not walker.layers:
        return None
    return walker.finish(entity)


def is_pkcs7_mime(entity: mime.Entity) -> bool:
    """application/pkcs7-mime, its x- twin, or the octet-stream some clients label a .p7m with."""
    if entity.content_type in PKCS7_MIME:
        return True
    name = entity.params.get("name", "").lower()
    return entity.content_type == "application/octet-stream" and name.endswith(".p7m")


def is_pgp_signed(entity: mime.Entity) -> bool:
    return entity.content_type == "multipart/signed" and entity.params.get("protocol", "").lower() == PGP_SIGNATURE


def is_smime_signed(entity: mime.Entity) -> bool:
    return entity.content_type == "multipart/signed" and entity.params.get("protocol", "").lower() in PKCS7_SIGNATURE


class _Walker:
    """State of one message's unwrapping: levels handed out, headers, the layers found, verified signers.

    The info headers are written as the walk finds each thing, from the layer finding it records (see
    :meth:`_problem`): their order (flags where first met, a boundary clash after the layers inside the
    part) is that of the message edits, which this change of representation keeps byte for byte.
    """

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.limits = ctx.settings.limits
        self.parsed: mime.Entity | None = None  # the last plaintext parsed and kept whole: parsed once (new_content)
        self.info = InfoHeaders()
        self.layers: list[SmimeLayer] = []
        self.signed = False
        self.verified_emails: set[str] = set()
        self.frozen = False  # walking content another handler verifies after us: report, never change
        self.from_lf = False  # walking decrypted content that came with bare LF line ends (see _decrypted)

    # ------------------------------------------------------------ walking

    def unwrap(self, entity: mime.Entity, *, whole: bool) -> bytes | None:
        """The new bytes of ``entity`` after unwrapping what is below it, or None when it stays as received."""
        whole = is_whole(entity, whole)
        if is_pkcs7_mime(entity):
            return self._pkcs7_mime(entity, whole)
        if is_smime_signed(entity):
            return self._detached(entity, whole)
        if is_pgp_signed(entity) and entity.parts:  # no delimiter at all: no parts, nothing signed to report
            # RFC 3156: two parts; a part after the signature sits beside the signed one
            self._under_pgp_signature(entity.parts[0], whole and len(entity.parts) <= 2)
            return None
        if entity.is_multipart:
            return self._multipart(entity, whole=whole)
        return None

    def _under_pgp_signature(self, content: mime.Entity, whole: bool) -> None:
        """Report what an OpenPGP signature covers, and change none of it.

        The OpenPGP handler runs after this one and verifies the signature over
        these very bytes; decrypted in place, they would no longer verify.
        """
        frozen, self.frozen = self.frozen, True
        try:
            self.unwrap(content, whole=whole)
        finally:
            self.frozen = frozen

    def _multipart(self, entity: mime.Entity, *, whole: bool) -> bytes | None:
        """Walk the parts in order; a lone part is as whole as its parent, parts side by side are not."""
        parts = entity.parts
        delimiter = b"--" + entity.params["boundary"].encode("utf-8", "surrogateescape")
        replacements: dict[int, bytes] = {}
        for index, part in enumerate(parts):
            first_level = len(self.layers)
            new = self.unwrap(part, whole=is_whole_part(parts, whole))
            if new is None:
                continue
            if delimiter in new:  # the plaintext would break its parent's structure: keep the part as it was
                self._update(first_level, boundary_clash=True)
                self.info.add(Problem.NOT_DECRYPTED.value, BOUNDARY_CLASH, level=first_level)
                continue
            replacements[index] = new
        if not replacements:
            return None
        return write.splice(entity, replacements)

    def _next_level(self) -> int:
        level = len(self.layers)
        if level >= self.limits.max_cms_layers:
            raise LimitExceeded(f"more than {self.limits.max_cms_layers} S/MIME layers")
        self.ctx.check_deadline()
        self.layers.append(SmimeLayer(level))
        return level

    def _update(self, level: int, **changes: Any) -> None:
        """What the walk learnt about a layer: its finding is replaced by one with ``changes``."""
        self.layers[level] = revised(self.layers[level], **changes)

    def _problem(self, level: int, problem: Problem, reason: str, **changes: Any) -> None:
        """A layer stays as received for ``reason``: noted on its finding and written to the problem's header."""
        self._update(level, problem=problem, reason=reason, **changes)
        self.info.add(problem.value, reason, level=level)

    def _load(self, entity: mime.Entity, level: int) -> Any:
        """The ContentInfo of a pkcs7 body, or None after reporting why it is unreadable."""
        try:
            return cms.load(entity.decoded_body())
        except mime.MimeError:
            self._update(level, reason="corrupt transfer encoding")
        except cms.CmsError as exc:
            self._update(level, reason=exc.reason)
        return None

    def _beside(self, whole: bool) -> None:
        """A signed or encrypted entity was found; unless it is the whole content, the sender's own is beside it."""
        if not whole:
            self.info.flag("SMIME-Mixed-Content")

    def _pkcs7_mime(self, entity: mime.Entity, whole: bool) -> bytes | None:
        level = self._next_level()
        info = self._load(entity, level)
        if info is None:
            self._unreadable(entity, level, whole)
            return None
        kind = cms.content_type(info)
        if kind in (cms.ENVELOPED_DATA, cms.AUTH_ENVELOPED_DATA):
            self._beside(whole)
            if not (whole or self.ctx.settings.decrypt_embedded):
                self._left_encrypted(level, EMBEDDED)
                return None
            if self.frozen:
                self._left_encrypted(level, UNDER_PGP_SIGNATURE)
                return None
            content = self._enveloped(info, level)
            del info  # the ciphertext goes with it, before the plaintext is copied into bytes
            if content is None:
                return None
            plaintext = bytes(content)
            del content  # one copy of the plaintext, not two, while it is parsed and walked
            return self._decrypted(plaintext, whole)
        if kind == cms.SIGNED_DATA:
            return self._opaque(info, level, whole)
        if kind == cms.COMPRESSED_DATA:
            return self._compressed(info, level, whole)
        self._problem(level, Problem.UNSUPPORTED, f"unsupported CMS content type {kind}", kind=LayerKind.UNSUPPORTED)
        return None

    def _unreadable(self, entity: mime.Entity, level: int, whole: bool) -> None:
        """A pkcs7 body that does not parse: the smime-type label is all there is to tell what it was."""
        self._beside(whole)
        reason = self._reason(level)
        smime_type = entity.params.get("smime-type", "").lower()
        if smime_type == "signed-data":
            self._update(level, kind=LayerKind.OPAQUE)
            self._signature_failed(level, reason)
        elif smime_type == COMPRESSED_TYPE:
            self._decompression_failed(level, reason)
        else:
            self.info.flag("SMIME-Encrypted")
            self._problem(level, Problem.DECRYPTION_FAILED, reason, kind=LayerKind.ENVELOPED)

    def _reason(self, level: int) -> str:
        """Why :meth:`_load` found a layer unreadable."""
        reason = self.layers[level].reason
        assert reason is not None  # _load returned None, so it set one
        return reason

    def _left_encrypted(self, level: int, reason: str) -> None:
        """Report an encrypted part left encrypted on purpose (it is not the whole content, or must not change)."""
        self.info.flag("SMIME-Encrypted")
        self._problem(level, Problem.NOT_DECRYPTED, reason, kind=LayerKind.ENVELOPED)

    # ------------------------------------------------------------ encryption

    def _enveloped(self, info: Any, level: int) -> bytearray | None:
        """Decrypt one (Auth)EnvelopedData layer: its content, or None after reporting why not."""
        authenticated = cms.content_type(info) == cms.AUTH_ENVELOPED_DATA
        self._update(level, kind=LayerKind.AUTH_ENVELOPED if authenticated else LayerKind.ENVELOPED)
        self.info.flag("SMIME-Encrypted")
        try:
            layer = cms.open_enveloped(info, max_recipients=self.limits.max_recipient_infos, seen=self._seen)
        except LimitExceeded:
            self._note_named_keys(info)
            raise
        except cms.CmsError as exc:
            self._problem(level, Problem.DECRYPTION_FAILED, exc.reason)
            return None
        self._update(level, cipher=layer.cipher,
                     recipients=tuple(RecipientFinding(r.text, r.kind, r.algorithm) for r in layer.recipients))
        self.info.add("Encryption-Algorithm", layer.cipher, level=level)
        for recipient in layer.recipients:
            self.info.add("Encryption-Recipient", recipient.text, index=recipient.index, level=level)
        try:
            content, used = cms.decrypt(layer, self._private_keys, self._arrange)
        except cms.KeysRefused:
            self.info.flag("SMIME-Decryption-Key-Not-Found")
            self._problem(level, Problem.DECRYPTION_REFUSED, self.ctx.readers.refusal(), key_not_found=True)
            return None
        except cms.KeyNotFound as exc:
            self._update(level, reason=exc.reason, key_not_found=True)
            self.info.flag("SMIME-Decryption-Key-Not-Found")
            return None
        except cms.CmsError as exc:
            self._problem(level, Problem.DECRYPTION_FAILED, exc.reason)
            return None
        self._update(level, decrypted_with=used.text, content_sha256=ids.sha256_hex(content))
        return content

    # ------------------------------------------------------------ compression

    def _compressed(self, info: Any, level: int, whole: bool) -> bytes | None:
        """Unwrap a CompressedData layer (RFC 3274): inflated within the message's budget and walked on.

        Compression protects nothing, so it is unwrapped wherever it is (beside other parts too): left
        packed, its content would pass the scanners after us unread, a virus in it included (inside an
        encrypted layer we decrypt, issue 14). A bomb is a limit (LimitExceeded, the on_limit policy).
        Under an OpenPGP signature it is reported, never changed, like every layer there.
        """
        self._update(level, kind=LayerKind.COMPRESSED)
        self.info.flag("SMIME-Compressed")
        try:
            packed = cms.compressed_content(info)
        except cms.UnsupportedAlgorithm as exc:
            self._problem(level, Problem.UNSUPPORTED, exc.reason)
            return None
        except cms.CmsError as exc:
            self._decompression_failed(level, exc.reason)
            return None
        del info
        try:
            content = inflate.inflate(inflate.ZLIB, packed, self.ctx.budget, self.ctx.check_deadline,
                                      "S/MIME compressed data")
        except inflate.CorruptData:
            self._decompression_failed(level, CORRUPT_COMPRESSED)
            return None
        del packed
        self._update(level, content_sha256=ids.sha256_hex(content))
        inner = self._decrypted(content, whole)
        return None if self.frozen else inner

    def _decompression_failed(self, level: int, reason: str) -> None:
        self.info.flag("SMIME-Compressed")
        self._problem(level, Problem.DECOMPRESSION_FAILED, reason, kind=LayerKind.COMPRESSED)

    def _decrypted(self, content: bytes, whole: bool) -> bytes:
        """Decrypted or decompressed content (in its canonical line ends), or what its own S/MIME layers
        unwrap to."""
        plaintext = parse_content(content, self.limits)
        from_lf = is_lf_text(content, plaintext)
        if from_lf:
            content = content.replace(b"\n", b"\r\n")
            plaintext = parse_content(content, self.limits)
        if has_illegal_chars(plaintext):
            self.info.flag("SMIME-Illegal-Chars-Found")
        inner = self._walk_content(plaintext, whole, from_lf=from_lf)
        if inner is None:
            self.parsed = plaintext
            return content
        return inner

    def _walk_content(self, content: mime.Entity, whole: bool, *, from_lf: bool) -> bytes | None:
        """Unwrap content whose bytes are (``from_lf``) or are not the CRLF form of bare-LF bytes received."""
        outer, self.from_lf = self.from_lf, from_lf
        try:
            return self.unwrap(content, whole=whole)
        finally:
            self.from_lf = outer

    def _seen(self, recipient: cms.Recipient) -> None:
        """Each recipient as the layer is parsed: its stored keys, if the reader rule lets us use one alone,
        make the content ours (Context.key_held) at once, not after the parse: a worker killed at the
        deadline while it parsed 40,000 RecipientInfos (2.5 s) knew nothing. The lookups are cached:
        cms.decrypt makes the same ones afterwards."""
        if self.ctx.key_held:
            return
        candidates = [(recipient, der, key) for der, key in self._private_keys(recipient)]
        if candidates:
            self._arrange(candidates)

    def _note_named_keys(self, info: Any) -> None:
        """Past max_recipient_infos, whether any RecipientInfo names a stored key the reader rule lets us
        use for this layer: then the limit hides content we could decrypt (Context.key_held, on_limit) in
        whatever shape it came. Identifiers and store lookups only, no private-key operation."""
        if self.ctx.key_held:  # one of those parsed before the limit named one already (_seen)
            return
        candidates = [(recipient, der, key) for recipient in cms.all_recipients(info)
                      for der, key in self._private_keys(recipient)]
        if candidates:
            self._arrange(candidates)

    def _private_keys(self, recipient: cms.Recipient) -> list[tuple[bytes, Any]]:
        lookup = recipient.lookup
        return self.ctx.keys.smime_private_keys(**lookup) if lookup else []

    def _arrange(self, candidates: list[cms.Candidate]) -> list[list[cms.Candidate]]:
        """The reader rule: the readers of a key are those of the certificate the RecipientInfo names."""
        groups = self.ctx.readers.arrange(candidates, lambda candidate: self.ctx.keys.certificate_readers(candidate[1]))
        return self.ctx.note_keys(groups, decrypts=True)  # only whole (or embedded, if allowed) layers get here

    # ------------------------------------------------------------ signatures

    def _signature_failed(self, level: int, reason: str) -> None:
        self.signed = True
        self.info.flag("SMIME-Signed")
        self._problem(level, Problem.SIGNATURE_FAILED, reason)

    def _open_signed(self, info: Any, level: int) -> cms.SignedLayer | None:
        try:
            return cms.open_signed(info, max_signers=self.limits.max_signer_infos)
        except cms.CmsError as exc:
            self._signature_failed(level, exc.reason)
            return None

    def _detached(self, entity: mime.Entity, whole: bool) -> bytes | None:
        level = self._next_level()
        self._update(level, kind=LayerKind.DETACHED)
        self._beside(whole)
        parts = entity.parts
        if len(parts) != 2:  # shown as multipart/mixed by clients (RFC 1847): parts side by side, none whole
            self._signature_failed(level, "malformed multipart/signed")
            return self._multipart(entity, whole=False) if entity.is_multipart else None
        info = self._load(parts[1], level)
        if info is None:
            self._signature_failed(level, self._reason(level))
            return None
        layer = self._open_signed(info, level)
        if layer is None:
            return None
        content = parts[0].raw
        # Content decrypted with bare LF was made CRLF (_decrypted): a signer who signed those LF bytes as
        # they were (openssl cms -sign -binary) is checked over them too, never over any other bytes.
        self._verify(layer, content, level, received=content.replace(b"\r\n", b"\n") if self.from_lf else None)
        return self.unwrap(parts[0], whole=whole)

    def _opaque(self, info: Any, level: int, whole: bool) -> bytes | None:
        self._update(level, kind=LayerKind.OPAQUE)
        layer = self._open_signed(info, level)
        if layer is None:
            return None
        if not len(layer.signer_infos):  # certs-only: a certificate transport, not a signature
            self._update(level, kind=LayerKind.CERTS_ONLY)
            return None
        self._beside(whole)
        if layer.content is None:
            self._signature_failed(level, "no signed content")
            return None
        signers = self._verify(layer, layer.content, level)
        inner = self._walk_content(parse_content(layer.content, self.limits), whole, from_lf=False)
        if inner is not None:
            return inner
        if signers is None or not whole or self.frozen or not self.ctx.settings.opaque_to_detached:
            return None  # beside other parts (or under an OpenPGP signature) it stays as received
        try:
            signature = cms.detached_signature(layer)
        except cms.CmsError as exc:
            self._update(level, not_converted=exc.reason)
            return None
        self._update(level, converted_to="multipart/signed")
        return write.multipart_signed(layer.content, signature, cms.micalg(signers))

    def _verify(self, layer: cms.SignedLayer, content: bytes, level: int,
                received: bytes | None = None) -> list[cms.Signer] | None:
        """Report every signer of the layer; None (and a reason header) when the SignedData is unreadable.

        ``received``: the signed part's bytes as decrypted, when ``content`` is their CRLF form.
        """
        self.signed = True
        self.info.flag("SMIME-Signed")
        self._update(level, content_sha256=ids.sha256_hex(content))
        try:
            signers = cms.verify_either(layer, content, received, lambda lookup: self.ctx.keys.certificates(**lookup),
                                        max_rsa_bits=self.limits.max_rsa_bits)
        except cms.CmsError as exc:
            self._signature_failed(level, exc.reason)
            return None
        self._update(level, signers=tuple(self._report_signer(signer, layer, level) for signer in signers))
        return signers

    def _report_signer(self, signer: cms.Signer, layer: cms.SignedLayer, level: int) -> SignerFinding:
        self.ctx.check_deadline()
        index = signer.index
        emails = trust.emails(signer.certificate) if signer.certificate else []
        self.info.add("Signer-ID", signer.text, index=index, level=level)
        if emails:
            self.info.add("Signer-Email", ", ".join(emails), index=index, level=level)
        self.info.boolean("Signer-Verified", signer.verified, index=index, level=level)
        if not signer.verified:
            self.info.add("Signer-Verification-Info", signer.reason or "", index=index, level=level)
        verdict = self._trust(signer, layer)
        self.info.boolean("Signer-Trusted", verdict.trusted, index=index, level=level)
        if not verdict.trusted:
            self.info.add("Signer-Trusted-Info", verdict.reason or "", index=index, level=level)
        if signer.verified:
            self.verified_emails.update(emails)
        if signer.verified and verdict.trusted:
            self._harvest(signer.certificate, f"Signer-{index}-{level}")
        return SignerFinding(
            id=signer.text, digest=signer.digest, signature_algorithm=signer.signature_algorithm,
            emails=tuple(emails), verified=signer.verified, reason=signer.reason, trusted=verdict.trusted,
            trust_reason=verdict.reason, chain_sha256=tuple(ids.sha256_hex(der) for der in verdict.chain))

    def _trust(self, signer: cms.Signer, layer: cms.SignedLayer) -> trust.Verdict:
        if signer.certificate is None:
            return trust.Verdict(False, "signer certificate not found", [])
        store = self.ctx.keys
        return trust.evaluate(
            signer.certificate,
            message_certificates=layer.certificates,
            find_issuers=lambda subject_key: store.certificates(subject_key=subject_key),
            anchors=store.trust_anchors(),
            now=self.ctx.now,
            max_chain_length=self.limits.max_chain_length,
        )

    def _harvest(self, certificate: bytes | None, where: str) -> None:
        """Remember a verified and trusted signer's certificate for replies.

        Only a certificate with a path to an anchor: any other is whatever
        the sender made, and would pile up in the store (a harvested
        certificate is never an anchor, nor does it gain trust by being kept).
        """
        if certificate and self.ctx.settings.harvest_certificates:
            self.ctx.harvest.certificate(certificate, where)

    # ------------------------------------------------------------ end

    def finish(self, entity: bytes | None) -> HandlerResult:
        """The handler's result once the walk is done: ``entity`` is what :meth:`unwrap` gave for the message."""
        mismatch = self.signed and not from_names_signer(self.ctx.from_fields, self.verified_emails)
        if mismatch:
            self.info.flag("Signer-Mismatch")
        return HandlerResult(info=self.info, content=entity, parsed=self.parsed, facts=findings.facts(self.layers, self.signed),
                             report={"smime": findings.explain(self.layers, mismatch, self.verified_emails)})


def is_lf_text(content: bytes, entity: mime.Entity) -> bool:
    """Decrypted content written with LF line ends throughout, and no binary part that a CR would change.

    Thunderbird (NSS) encrypts its signed entity with the platform's LF line
    ends, while the signature covers the canonical CRLF form (RFC 8551 section
    3.1.1), as OpenSSL's verification assumes. That form is also what SMTP
    delivers, so such content is decrypted into it: the signature is checked
    over exactly the bytes it signed (not "message digest mismatch"), and
    SMIME-Illegal-Chars-Found is left for bytes that do break the encoding.
    """
    return b"\r" not in content and b"\n" in content and not any(part.cte == "binary" for part in entity.walk())


def has_illegal_chars(entity: mime.Entity) -> bool:
    """Bytes the declared transfer encodings do not allow (RFC 2045 section 2.7-2.9, RFC 5322 section 2.3)."""
    for part in entity.walk():
        if part.is_multipart or part.cte == "binary":
            checked = part.header_bytes
        else:
            # A leaf's headers and body in one pass: the header block ends with its LF (or the body
            # is empty), so joining the two neither makes nor breaks a CRLF pair.
            checked = part.raw
            if part.cte != "8bit" and not checked.isascii() and not part.body.isascii():
                return True
        if b"\x00" in checked or has_bare_line_end(checked):
            return True
    return False


def has_bare_line_end(data: bytes) -> bool:
    """A CR or LF outside a CRLF pair: one left once the pairs are removed, a window of lines at a time.

    A look-around regex over a multi-megabyte body cost more than the RSA
    operation, and counting single bytes is no memchr in CPython (three
    counts: 10 ms per 2 MB); removing the pairs and searching what is left
    takes 2.2 ms. Windows of whole lines keep that copy small beside a
    large body (profiles in bench/README.md).
    """
    start = 0
    while start < len(data):
        end = data.find(b"\n", start + _LINE_WINDOW)
        end = len(data) if end < 0 else end + 1  # a window ends after a LF, so no pair is cut in two
        rest = data[start:end].replace(b"\r\n", b"")
        if b"\r" in rest or b"\n" in rest:
            return True
        start = end
    return False
