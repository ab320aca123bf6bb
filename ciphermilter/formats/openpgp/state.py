"""The state of the OpenPGP handler's walk over one message: what it found so far, and what decides.

The walk (:mod:`ciphermilter.formats.openpgp.handler`), the armored blocks inside text
(:mod:`.armored`) and the keys a message carries (:mod:`.carried_keys`) all record into one
:class:`WalkState`; at the end the handler freezes it into :class:`~.findings.PgpFindings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ciphermilter import mime
from ciphermilter.core.contract import Context, LimitExceeded
from ciphermilter.core.findings import revised
from ciphermilter.formats.openpgp import engine as openpgp
from ciphermilter.formats.openpgp.keys import OpenPGPKey
from ciphermilter.formats.openpgp.findings import Action, BlockKind, Decryption, PgpBlock, SignatureFinding


@dataclass
class KeyCandidate:
    """A public key found in the message, kept until the signatures are known (see harvest_keys)."""

    data: bytes
    where: str
    covered_by: tuple[openpgp.SignatureResult, ...]  # the signatures whose content holds it
    keys: list[OpenPGPKey] | None = None  # parsed once, when needed


@dataclass
class WalkState:
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
    blocks: list[PgpBlock] = field(default_factory=list)
    key_candidates: list[KeyCandidate] = field(default_factory=list)
    covering: tuple[openpgp.SignatureResult, ...] = ()  # the signatures over the entity being walked
    parsed: mime.Entity | None = None  # the last plaintext parsed, kept for the result if whole (new_content)

    def found(self, encoding: str) -> None:
        if encoding not in self.encodings:
            self.encodings.append(encoding)

    def record_opened(self, opened: openpgp.Opened, where: str, kind: BlockKind) -> int:
        """Note what opening one block found; its number among the blocks, for :meth:`replaces`."""
        self.encrypted |= opened.encrypted
        self.key_not_found |= opened.key_not_found
        self.refused |= opened.keys_refused
        if opened.cipher and opened.cipher not in self.ciphers:
            self.ciphers.append(opened.cipher)
        if opened.failure and not opened.key_not_found:
            self.failures.append(opened.failure)
        self.signatures += opened.signatures
        return self.record(PgpBlock(where, kind, opened.sha256, signature_findings(opened.signatures),
                                    Decryption.of(opened)))

    def record(self, block: PgpBlock) -> int:
        self.blocks.append(block)
        return len(self.blocks) - 1

    def protected(self, encoding: str, whole: bool) -> None:
        """Protected content was found; unless it is the whole content it sits beside the sender's own."""
        self.found(encoding)
        self.mixed |= not whole

    def decrypts(self, whole: bool) -> bool:
        """Whether content found where ``whole`` says is decrypted in place (EFAIL rule above)."""
        return whole or self.ctx.settings.decrypt_embedded

    def replaces(self, whole: bool, blocks: list[int]) -> bool:
        """Whether opened blocks (by number) may be replaced by their plaintext (EFAIL rule above), noted on
        their findings.

        Only encrypted ones count as withheld: a signed-only block left as received hides nothing.
        """
        allowed = self.decrypts(whole)
        action = Action.REPLACED if allowed else Action.WITHHELD
        for number in blocks:
            self.blocks[number] = revised(self.blocks[number], action=action)
        self.withheld |= not allowed and any(self._encrypted(number) for number in blocks)
        return allowed

    def _encrypted(self, number: int) -> bool:
        decryption = self.blocks[number].decryption
        return decryption is not None and decryption.encrypted

    def open(self, data: bytes, whole: bool) -> openpgp.Opened:
        limits = self.ctx.settings.limits
        self.ctx.check_deadline()
        return openpgp.open_message(
            data,
            self.keyring,
            max_output=self.ctx.budget,
            max_nesting=limits.max_pgp_nesting,
            max_recipients=limits.max_recipient_infos,
            check=self.ctx.check_deadline,
            arrange=lambda candidates: self.ctx.note_keys(self.arrange(candidates), self.decrypts(whole)),
        )

    def arrange(self, candidates: list[Any]) -> list[list[Any]]:
        """The reader rule over (PKESK, secret subkey) pairs: a subkey reads as its primary key.

        Stored keys the rule refuses (:mod:`ciphermilter.readers`) leave the
        content encrypted with ``PGP-Decryption-Key-Not-Found: True`` and
        ``PGP-Decryption-Refused: not encrypted to a key of every recipient
        (reader policy)``.
        """
        return self.ctx.readers.arrange(candidates, lambda candidate: self.ctx.keys.pgp_readers(candidate[1].primary))


def signature_findings(results: list[openpgp.SignatureResult]) -> tuple[SignatureFinding, ...]:
    return tuple(SignatureFinding.of(result) for result in results)


def count_layer(state: WalkState) -> None:
    """Each decrypted layer may hold another: bound the total, which bounds the depth."""
    state.layers += 1
    if state.layers > state.ctx.settings.limits.max_pgp_nesting:
        raise LimitExceeded(f"more than {state.ctx.settings.limits.max_pgp_nesting} encrypted OpenPGP layers")
