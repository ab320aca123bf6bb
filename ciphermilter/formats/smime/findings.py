"""What the S/MIME handler found, one frozen value per CMS layer, and what is rendered from it.

The layers are the ``smime.layers`` of ``ciphermilter decrypt --explain`` (keys pinned by
tests/test_explain_snapshot.py: a field that was never set is left out, as the report always did) and the
S/MIME counters of ``ciphermilter stats`` (:func:`facts`). A layer is replaced, never changed, as the walk
learns more about it (``core.findings.revised``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from ciphermilter.core.findings import Facts, Failure, Json, Protection


class LayerKind(enum.Enum):
    """The ``type`` of a layer in the report."""

    ENVELOPED = "enveloped"
    AUTH_ENVELOPED = "auth-enveloped"
    DETACHED = "signed (detached)"
    OPAQUE = "signed (opaque)"
    CERTS_ONLY = "certs-only"
    COMPRESSED = "compressed"
    UNSUPPORTED = "unsupported"


ENCRYPTED_KINDS = (LayerKind.ENVELOPED, LayerKind.AUTH_ENVELOPED)


class Problem(enum.Enum):
    """Why a layer stays as received: the info header (``-<LEVEL>``) its reason is written to."""

    DECRYPTION_FAILED = "SMIME-Decryption-Failed"
    DECRYPTION_REFUSED = "SMIME-Decryption-Refused"
    NOT_DECRYPTED = "SMIME-Not-Decrypted"
    SIGNATURE_FAILED = "SMIME-Signature-Failed"
    UNSUPPORTED = "SMIME-Unsupported"
    DECOMPRESSION_FAILED = "SMIME-Decompression-Failed"


# The problems that leave encrypted content encrypted (besides a missing key), for smime_decrypted.
_UNDECRYPTED = (Problem.DECRYPTION_FAILED, Problem.NOT_DECRYPTED)


@dataclass(frozen=True)
class RecipientFinding:
    """One RecipientInfo (or RecipientEncryptedKey) of an enveloped layer."""

    id: str
    type: str  # ktri, kari, kekri, pwri, ori
    algorithm: str  # key encryption algorithm, dotted OID

    def explain(self) -> dict[str, Json]:
        return {"id": self.id, "type": self.type, "algorithm": self.algorithm}


@dataclass(frozen=True)
class SignerFinding:
    """One SignerInfo: its signature and the trust in its certificate."""

    id: str
    digest: str
    signature_algorithm: str
    emails: tuple[str, ...]
    verified: bool
    reason: str | None  # why not verified
    trusted: bool
    trust_reason: str | None  # why not trusted
    chain_sha256: tuple[str, ...]

    def explain(self) -> dict[str, Json]:
        return {"id": self.id, "digest": self.digest, "signature_algorithm": self.signature_algorithm,
                "emails": list(self.emails), "verified": self.verified, "reason": self.reason,
                "trusted": self.trusted, "trust_reason": self.trust_reason, "chain_sha256": list(self.chain_sha256)}

    def failures(self) -> list[Failure]:
        found = [] if self.verified else [Failure.of("Signer-Verification-Info", self.reason or "")]
        return found + ([] if self.trusted else [Failure.of("Signer-Trusted-Info", self.trust_reason or "")])


@dataclass(frozen=True)
class SmimeLayer:
    """One CMS layer, numbered by LEVEL (outermost first)."""

    level: int
    kind: LayerKind | None = None
    reason: str | None = None  # why it stays as received (the value of the problem's header)
    problem: Problem | None = None
    key_not_found: bool = False  # no stored key opens it, or the reader rule refused those that do
    boundary_clash: bool = False  # its plaintext holds its parent's boundary: SMIME-Not-Decrypted, kept as is
    cipher: str | None = None
    recipients: tuple[RecipientFinding, ...] | None = None
    decrypted_with: str | None = None
    content_sha256: str | None = None
    signers: tuple[SignerFinding, ...] | None = None
    converted_to: str | None = None
    not_converted: str | None = None

    def explain(self) -> dict[str, Json]:
        """The layer in the report: the fields set, under their report names."""
        report: dict[str, Json] = {"level": self.level}
        if self.kind is not None:
            report["type"] = self.kind.value
        optional: dict[str, Json] = {
            "reason": self.reason, "cipher": self.cipher, "decrypted_with": self.decrypted_with,
            "content_sha256": self.content_sha256, "converted_to": self.converted_to,
            "not_converted": self.not_converted,
        }
        report.update((name, value) for name, value in optional.items() if value is not None)
        if self.recipients is not None:
            report["recipients"] = [recipient.explain() for recipient in self.recipients]
        if self.signers is not None:
            report["signers"] = [signer.explain() for signer in self.signers]
        return report

    @property
    def encrypted(self) -> bool:
        return self.kind in ENCRYPTED_KINDS

    def failures(self) -> list[Failure]:
        found = [Failure.of(self.problem.value, self.reason or "")] if self.problem else []
        if self.boundary_clash:
            found.append(Failure.of(Problem.NOT_DECRYPTED.value, BOUNDARY_CLASH))
        return found + [failure for signer in self.signers or () for failure in signer.failures()]


BOUNDARY_CLASH = "plaintext contains the boundary of its parent"


def explain(layers: Iterable[SmimeLayer], signer_mismatch: bool, verified_emails: Iterable[str]) -> dict[str, Json]:
    """The ``smime`` part of the report."""
    emails: list[Json] = [*sorted(verified_emails)]
    return {"layers": [layer.explain() for layer in layers], "signer_mismatch": signer_mismatch,
            "verified_signer_emails": emails}


def facts(layers: list[SmimeLayer], signed: bool) -> Facts:
    """The S/MIME counters of one message (``signed``: a signature layer was found, readable or not)."""
    encrypted = any(layer.encrypted for layer in layers)
    key_not_found = any(layer.key_not_found for layer in layers)
    undecrypted = key_not_found or any(layer.problem in _UNDECRYPTED or layer.boundary_clash for layer in layers)
    signers = [signer for layer in layers for signer in layer.signers or ()]
    signature_failed = any(layer.problem is Problem.SIGNATURE_FAILED for layer in layers)
    counted = signed and bool(signers) and not signature_failed
    smime = Protection(
        encrypted=encrypted,
        decrypted=encrypted and not undecrypted,
        key_not_found=encrypted and key_not_found,
        signed=signed,
        verified=counted and all(signer.verified for signer in signers),
        trusted=counted and all(signer.trusted for signer in signers),
    )
    refused = any(layer.problem is Problem.DECRYPTION_REFUSED for layer in layers)
    return Facts(smime=smime, failures=tuple(failure for layer in layers for failure in layer.failures()),
                 refused=refused, ciphers=tuple(layer.cipher for layer in layers if layer.cipher),
                 signers=tuple(dict.fromkeys(name for signer in signers for name in signer.emails or (signer.id,))))
