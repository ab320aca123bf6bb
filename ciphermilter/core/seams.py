"""What the core and the format engines need from a key store, as Protocols.

The core never imports the store's implementation (``ciphermilter.store``):
it names these seams, and :class:`ciphermilter.store.keystore.KeyStore`
fits them structurally. A test double, a read-only replica or another
backend fits them the same way, and ``mypy --strict`` checks every fit.
The seams are split by who uses them: the OpenPGP engine needs only
:class:`PgpKeys`, the CMS engine only :class:`SmimeKeys`; the pipeline
needs the whole :class:`KeyLookup` and, at the end of a message,
:class:`~ciphermilter.core.harvest.Harvester` (declared beside the offers it takes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from ciphermilter.core.harvest import Harvester, Offer
from ciphermilter.formats.openpgp.keys import OpenPGPKey


class PgpKeys(Protocol):
    """OpenPGP keys by key ID: secret keys to decrypt with, public keys to verify with."""

    def pgp_secret_keys(self, keyid: str) -> list[OpenPGPKey]: ...

    def all_pgp_secret_keys(self) -> list[OpenPGPKey]: ...

    def pgp_public_keys(self, keyid: str, *, imported_only: bool = False) -> list[OpenPGPKey]: ...

    def data_version(self) -> int: ...


class SmimeKeys(Protocol):
    """S/MIME private keys and certificates by the identifiers a CMS structure names."""

    def smime_private_keys(self, *, issuer_key: str | None = None, serial: int | None = None,
                           ski: bytes | None = None) -> list[tuple[bytes, PrivateKeyTypes]]: ...

    def certificates(self, *, issuer_key: str | None = None, serial: int | None = None, ski: bytes | None = None,
                     email: str | None = None, subject_key: str | None = None) -> list[bytes]: ...

    def trust_anchors(self) -> list[bytes]: ...


class Readers(Protocol):
    """Who may read what: internal domains and the addresses bound to the keys we hold (the reader rule)."""

    def is_internal_domain(self, domain: str) -> bool: ...

    def reader_addresses(self) -> frozenset[str]: ...

    def certificate_readers(self, der: bytes) -> frozenset[str]: ...

    def pgp_readers(self, fingerprint: str) -> frozenset[str]: ...

    def holds_private_keys(self) -> bool: ...


class KeyLookup(PgpKeys, SmimeKeys, Readers, Harvester, Protocol):
    """Everything the pipeline asks of a key store while it processes one message."""


class NoKeys:
    """The key store of a run without one (handler tests, tools): it holds nothing and keeps nothing.

    Handlers and the OpenPGP keyring ask this instead of checking for a
    missing store at every lookup.
    """

    def pgp_secret_keys(self, keyid: str) -> list[OpenPGPKey]:
        return []

    def all_pgp_secret_keys(self) -> list[OpenPGPKey]:
        return []

    def pgp_public_keys(self, keyid: str, *, imported_only: bool = False) -> list[OpenPGPKey]:
        return []

    def data_version(self) -> int:
        return 0

    def smime_private_keys(self, *, issuer_key: str | None = None, serial: int | None = None,
                           ski: bytes | None = None) -> list[tuple[bytes, PrivateKeyTypes]]:
        return []

    def certificates(self, *, issuer_key: str | None = None, serial: int | None = None, ski: bytes | None = None,
                     email: str | None = None, subject_key: str | None = None) -> list[bytes]:
        return []

    def trust_anchors(self) -> list[bytes]:
        return []

    def is_internal_domain(self, domain: str) -> bool:
        return False

    def reader_addresses(self) -> frozenset[str]:
        return frozenset()

    def certificate_readers(self, der: bytes) -> frozenset[str]:
        return frozenset()

    def pgp_readers(self, fingerprint: str) -> frozenset[str]:
        return frozenset()

    def holds_private_keys(self) -> bool:
        return False

    def harvest(self, offers: Sequence[Offer], *, per_message: int, per_address: int, per_signer: int,
                expiry_days: int) -> list[str]:
        return []


NO_KEYS: KeyLookup = NoKeys()
