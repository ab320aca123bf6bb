"""What the OpenPGP handler found, as frozen values, and the info headers, facts and report rendered from them.

A :class:`PgpBlock` is one piece of OpenPGP data in the message (a PGP/MIME part, an armored block, an
attachment); :class:`PgpFindings` is the whole message's, from which :func:`info_headers` writes the ``PGP-*``
headers (one set per message, not per block: ciphermilter-headers(7)), :func:`facts` the ``pgp_*``
counters and :meth:`PgpFindings.explain` the ``openpgp`` part of ``ciphermilter decrypt --explain`` (keys
pinned by tests/test_explain_snapshot.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ciphermilter.core.findings import Facts, Failure, Json, Protection
from ciphermilter.core.info import InfoHeaders
from ciphermilter.formats.openpgp import engine as openpgp

WITHHELD = "encrypted content beside unprotected content left encrypted (EFAIL protection)"


class BlockKind(enum.Enum):
    PGP_MIME_ENCRYPTED = "pgp/mime-encrypted"
    PGP_MIME_SIGNED = "pgp/mime-signed"
    INLINE = "inline"
    ATTACHMENT = "attachment"
    CLEARSIGNED = "clearsigned"


class Action(enum.Enum):
    """What became of an opened block's plaintext (the EFAIL rule, formats/openpgp/handler.py)."""

    REPLACED = "replaced"
    WITHHELD = "withheld"


@dataclass(frozen=True)
class SignatureFinding:
    """One signature's verdict, as it stood when found (a later "key only in this message" note is not in it)."""

    keyid: str
    valid: bool
    reason: str | None
    emails: tuple[str, ...]

    @classmethod
    def of(cls, result: openpgp.SignatureResult) -> SignatureFinding:
        return cls(result.keyid, result.valid, result.reason, tuple(result.emails))

    def explain(self) -> dict[str, Json]:
        return {"keyid": self.keyid, "valid": self.valid, "reason": self.reason, "emails": list(self.emails)}


@dataclass(frozen=True)
class Decryption:
    """What opening an OpenPGP message found, beside its signatures."""

    encrypted: bool
    recipients: tuple[str, ...]  # PKESK key IDs in packet order
    cipher: str | None
    decryption_key: str | None
    compression: tuple[str, ...]
    failure: str | None

    @classmethod
    def of(cls, opened: openpgp.Opened) -> Decryption:
        return cls(opened.encrypted, tuple(opened.recipients), opened.cipher, opened.decryption_key,
                   tuple(opened.compression), opened.failure)


@dataclass(frozen=True)
class PgpBlock:
    """One piece of OpenPGP data, where the walk found it (``0.2.1``: the first part of the second part)."""

    where: str
    kind: BlockKind
    sha256: str | None  # of the plaintext, or of the signed text
    signatures: tuple[SignatureFinding, ...]
    decryption: Decryption | None = None  # an OpenPGP message that was opened
    action: Action | None = None  # set once its plaintext was there to put in its place

    def explain(self) -> dict[str, Json]:
        report: dict[str, Json] = {"where": self.where, "kind": self.kind.value}
        if self.decryption is not None:
            opened = self.decryption
            report.update({"encrypted": opened.encrypted, "recipients": list(opened.recipients),
                           "cipher": opened.cipher, "decryption_key": opened.decryption_key,
                           "compression": list(opened.compression), "failure": opened.failure})
        report["sha256"] = self.sha256
        report["signatures"] = [signature.explain() for signature in self.signatures]
        if self.action is not None:
            report["action"] = self.action.value
        return report


@dataclass(frozen=True)
class PgpFindings:
    """Everything the walk over one message found."""

    encodings: tuple[str, ...]  # PGP/MIME, PGP/INLINE, in the order found
    encrypted: bool
    ciphers: tuple[str, ...]
    key_not_found: bool
    refusal: str | None  # the reader rule refused the stored keys: why
    failures: tuple[str, ...]  # why data could not be opened, as found (repeats included)
    signatures: tuple[SignatureFinding, ...]  # every signature, with its final reason
    signer_mismatch: bool  # no From: address is a valid signature's
    mixed: bool  # protected content that is not the whole content
    withheld: bool  # encrypted content left encrypted by the EFAIL rule
    blocks: tuple[PgpBlock, ...]

    def explain(self) -> dict[str, Json]:
        return {"encoding": list(self.encodings), "blocks": [block.explain() for block in self.blocks],
                "signatures": [signature.explain() for signature in self.signatures]}

    @property
    def signatures_valid(self) -> bool:
        return all(signature.valid for signature in self.signatures)

    @property
    def signature_failure(self) -> str:
        return ", ".join(dict.fromkeys(s.reason for s in self.signatures if s.reason))


def info_headers(found: PgpFindings) -> InfoHeaders:
    """The ``PGP-*`` info headers of the message."""
    info = InfoHeaders()
    info.add("PGP-Encoding", found.encodings[0])
    if found.encrypted:
        info.flag("PGP-Encrypted")
    if found.ciphers:
        info.add("PGP-Encryption-Algorithm", ", ".join(found.ciphers))
    if found.key_not_found:
        info.flag("PGP-Decryption-Key-Not-Found")
    if found.refusal is not None:
        info.add("PGP-Decryption-Refused", found.refusal)
    for failure in dict.fromkeys(found.failures):
        info.add("PGP-Decryption-Failed", failure)
    if found.signatures:
        _signature_info(info, found)
    if found.mixed:
        info.flag("PGP-Mixed-Content")
    if found.withheld:
        info.add("PGP-Decryption-Withheld", WITHHELD)
    return info


def _signature_info(info: InfoHeaders, found: PgpFindings) -> None:
    signatures = found.signatures
    info.flag("PGP-Signed")
    info.add("PGP-Signer-KeyID", ", ".join(dict.fromkeys(s.keyid for s in signatures)))
    info.boolean("PGP-Signature-Valid", found.signatures_valid)
    if not found.signatures_valid:
        info.add("PGP-Signature-Failure", found.signature_failure)
    emails = list(dict.fromkeys(e for s in signatures for e in s.emails))
    if emails:
        info.add("PGP-Signer-Email", ", ".join(emails))
    if found.signer_mismatch:
        info.flag("PGP-Signer-Mismatch")


def facts(found: PgpFindings) -> Facts:
    """The ``pgp_*`` counters of the message and its failures (as :func:`info_headers` writes them)."""
    failures = [Failure.of("PGP-Decryption-Refused", found.refusal)] if found.refusal is not None else []
    failures += [Failure.of("PGP-Decryption-Failed", failure) for failure in dict.fromkeys(found.failures)]
    if found.withheld:
        failures.append(Failure.of("PGP-Decryption-Withheld", WITHHELD))
    if found.signatures and not found.signatures_valid:
        failures.append(Failure.of("PGP-Signature-Failure", found.signature_failure))
    undecrypted = found.key_not_found or bool(found.failures) or found.withheld
    pgp = Protection(
        encrypted=found.encrypted,
        decrypted=found.encrypted and not undecrypted,
        key_not_found=found.encrypted and found.key_not_found,
        signed=bool(found.signatures),
        verified=bool(found.signatures) and found.signatures_valid,
    )
    signers = dict.fromkeys(name for signature in found.signatures for name in signature.emails or (signature.keyid,))
    return Facts(pgp=pgp, failures=tuple(failures), refused=found.refusal is not None, ciphers=found.ciphers,
                 signers=tuple(signers))
