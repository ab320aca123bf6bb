"""What one message offers the key store: signer certificates and OpenPGP keys, kept within bounds.

The handlers decide what may be kept at all (smime: a verified and trusted
signer's certificate; openpgp_mime: a key vouched for by a signature of a
key an administrator imported) and offer it here; the core hands the whole
batch to :meth:`KeyStore.harvest` once the handlers are done, so a message
costs at most one write transaction, however many keys it carries (one
117 KB message with 300 keys took 300 before, issue 14). The store keeps at
most ``limits.max_harvest_per_message`` new rows of one message and
``limits.max_harvest_per_address`` harvested rows per address and
``limits.max_harvest_per_signer`` for all addresses of the signer that
vouched for them, and forgets what was never used after
``harvest_expiry_days``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


from ciphermilter.core.settings import Settings
from ciphermilter.formats.openpgp.keys import OpenPGPKey


@dataclass
class Offer:
    """One certificate (DER) or one OpenPGP public key (parsed), and where in the message it was found.

    ``signer_emails``: the addresses of the signatures that vouched for a key; a certificate is its own
    signer (empty: its own addresses)."""

    where: str
    certificate: bytes | None = None
    pgp_key: OpenPGPKey | None = None
    signer_emails: frozenset[str] = frozenset()


@dataclass
class Batch:
    """The offers of one message and the notes on what was not offered (``report["harvest"]``)."""

    offers: list[Offer] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def certificate(self, der: bytes, where: str) -> None:
        self.offers.append(Offer(where, certificate=der))

    def pgp_key(self, key: OpenPGPKey, where: str, signer_emails: frozenset[str] = frozenset()) -> None:
        self.offers.append(Offer(where, pgp_key=key, signer_emails=signer_emails))

    def note(self, line: str) -> None:
        self.notes.append(line)


class Harvester(Protocol):
    """Where one message's offers go, once, at its end (the key store: :meth:`KeyStore.harvest`)."""

    def harvest(self, offers: Sequence[Offer], *, per_message: int, per_address: int, per_signer: int,
                expiry_days: int) -> list[str]: ...


def keep(store: Harvester | None, batch: Batch, settings: Settings) -> list[str]:
    """Write the batch (and the uses of harvested rows the message's lookups made) in one transaction:
    one line per note and per offer, saying what became of it."""
    if store is None:
        return batch.notes
    limits = settings.limits
    return batch.notes + store.harvest(batch.offers, per_message=limits.max_harvest_per_message,
                                       per_address=limits.max_harvest_per_address,
                                       per_signer=limits.max_harvest_per_signer,
                                       expiry_days=settings.harvest_expiry_days)
