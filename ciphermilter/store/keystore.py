"""The key store: certificates, keys, trust anchors and internal domains, in a SQLite file (the default: one
gateway, nothing to set up) or a PostgreSQL database that several gateways share (:mod:`.database`).

Layout (schema version 4, see :data:`schema.MIGRATIONS`):

- ``certificates``: X.509 certificates (DER) with the fields CMS recipient and
  signer lookups need: issuer name key + serial, subject key identifier,
  subject name key (chain building), e-mail addresses (``certificate_emails``),
  SHA-256 of the public key (binds private keys), origin ``imported`` or ``harvested``.
- ``smime_keys``: S/MIME private keys (PKCS#8), sealed under the master key,
  keyed by the SHA-256 of their public key, so that every certificate of that
  key (renewals too) finds it.
- ``pgp_keys`` / ``pgp_key_ids`` / ``pgp_emails``: OpenPGP transferable public
  keys, the sealed unprotected secret key when we hold it, and indexes of every
  primary and subkey ID and every user ID e-mail.
- ``trust_anchors``: S/MIME root certificates, kept apart from ``certificates``:
  a certificate becomes an anchor only by an explicit admin action.
- ``domains``: internal domains (``example.com`` or ``*.example.com``).
- ``bindings`` (schema version 2): readers an admin adds to a key, an address
  or ``@domain`` (:mod:`ciphermilter.formats.readers`).
- ``certificates.last_used`` (schema version 3): when a harvested certificate
  was last selected by a lookup (:meth:`KeyStore.harvest`).
- ``store_versions`` (schema version 4): what :meth:`KeyStore.refresh` reads.

Private key material is sealed with AES-256-GCM (:mod:`ciphermilter.store.masterkey`)
with the row's identity as associated data; the database, its WAL and every
backup hold no private key in the clear.

One :class:`KeyStore` serves all milter threads (a lock around one
connection). Lookups on the hot path are indexed and decrypted keys are
cached in memory until the store changes: at once for its own writes, and at
the next :meth:`KeyStore.refresh` (once per message in the daemon) for any
other process's or gateway's, so that every running daemon sees keys an
admin imports without a restart.

This module is the half of the store a message needs: opening (with the
schema of :mod:`ciphermilter.store.schema`), freshness, the lookups of the
seams in :mod:`ciphermilter.core.seams` and the harvest write. What only an
admin does (import, export, backup, restore, listing and removal) is in
:mod:`ciphermilter.store.admin`, functions that take a :class:`KeyStore`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from ciphermilter.core import domains
from ciphermilter.core.harvest import Offer
from ciphermilter.formats import ids
from ciphermilter.formats.openpgp import engine as openpgp
from ciphermilter.formats.openpgp.keys import OpenPGPKey
from ciphermilter.formats.openpgp.packets import OpenPGPError
from ciphermilter.store import connection, masterkey, rows, schema
from ciphermilter.store.database import Database, Row, SqlParams
from ciphermilter.store.locator import Locator
from ciphermilter.store.rows import KeyKind
from ciphermilter.store.schema import PathLike, StoreError

if TYPE_CHECKING:
    from ciphermilter.core.seams import KeyLookup

log = logging.getLogger(__name__)

T = TypeVar("T")
Counter = Literal["keys", "harvest"]  # the rows of store_versions (schema.py, version 4)

# A key's own readers (readers module): the addresses of a certificate or of an OpenPGP key's user IDs,
# unless it was harvested from mail: a sender-supplied key never speaks for anyone inside. A name of the
# form "@domain" reads for a whole domain (readers.reads): only an admin's binding may say that, never a
# subjectAltName or user ID that its maker wrote so.
_NOT_A_DOMAIN = "email NOT LIKE '@%'"
_OWN_READERS: dict[KeyKind, str] = {
    "x509": f"SELECT email FROM certificate_emails WHERE thumbprint = ? AND {_NOT_A_DOMAIN} AND thumbprint IN"
            " (SELECT thumbprint FROM certificates WHERE origin != 'harvested')",
    "openpgp": f"SELECT email FROM pgp_emails WHERE fingerprint = ? AND {_NOT_A_DOMAIN} AND fingerprint IN"
               " (SELECT fingerprint FROM pgp_keys WHERE origin != 'harvested')",
}

# Lookups list the certificate that expires last first: a renewed certificate before the one it replaces.
_NEWEST_FIRST = " ORDER BY c.not_after DESC, c.thumbprint"

# A harvested row selected again within this many seconds of its recorded use is not written again: a
# frequent correspondent costs one write a day, not one per message.
USE_RECORD_INTERVAL = 24 * 3600
# Expired rows removed by one harvest write, so that a message never waits on a large clean-up.
EXPIRE_PER_HARVEST = 100
NO_ADDRESS = "not harvested (no e-mail address: no reply could find it)"


def per_message_refusal(limit: int) -> str:
    return f"not harvested (more than {limit} new certificates and keys in one message)"


def per_address_refusal(limit: int, address: str) -> str:
    return f"not harvested ({limit} harvested certificates and keys for {address} already)"


def per_signer_refusal(limit: int) -> str:
    return f"not harvested ({limit} harvested certificates and keys for the addresses of its signer already)"


@dataclass
class _Candidate:
    """An offer of a message (:meth:`KeyStore.harvest`) that the store does not hold yet."""

    where: str
    label: str  # its ID in the report: certificate thumbprint or OpenPGP key ID, 16 hex digits
    emails: list[str]
    signer_emails: list[str]  # of the signer that vouched for it (a certificate's own): counted together
    present: tuple[str, tuple[str]]  # the query that finds it in the store
    insert: Callable[[], bool]  # adds it in the open transaction; False when it is there already


class KeyStore:
    """Open with :meth:`create` or :meth:`open`, never the constructor."""

    def __init__(self, where: Locator, db: Database, sealer: masterkey.Sealer, read_only: bool = False,
                 schema_version: int = schema.current_version()):
        self.locator = where
        self.path = where.display  # for messages and logs: a URL without its password
        self.read_only = read_only
        self.sealer = sealer  # rows.insert_* seal private keys with it, in this store's transactions
        self.db = db
        self._used: set[str] = set()  # thumbprints of harvested certificates selected since the last harvest()
        self._schema_version = schema_version
        self._lock = threading.RLock()
        self._cache: dict[Hashable, Any] = {}  # lookups: dropped by any change, a harvest's too
        self._key_cache: dict[Hashable, Any] = {}  # decrypted keys: dropped by an admin's change only
        self._versions: tuple[int, int] | None = None  # (keys, harvest) of store_versions the caches hold

    # ------------------------------------------------------------------ open / create

    @classmethod
    def create(cls, path: PathLike, master_key_path: PathLike | None = None) -> KeyStore:
        where, key_path = schema.paths(path, master_key_path)
        if os.path.exists(key_path):
            raise StoreError(f"master key file {key_path} exists already; move it away or give another path")
        db = schema.new_store(where)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(key_path)), mode=0o700, exist_ok=True)
            key = masterkey.generate(key_path)
        except (masterkey.MasterKeyError, OSError) as exc:
            db.close()
            if not where.shared:
                os.unlink(where.target)
            raise StoreError(f"cannot create master key: {exc}") from None
        store = cls(where, db, masterkey.Sealer(key))
        with db.transaction():
            schema.migrate(db, 0)
            db.execute("INSERT INTO meta (name, value) VALUES ('key_check', ?)", (store.sealer.check_value(),))
        return store

    @classmethod
    def open(cls, path: PathLike, master_key_path: PathLike | None = None) -> KeyStore:
        """Open an existing store; a SQLite file gets its forward migrations, a shared store is refused
        until ``ciphermilter store migrate`` (module :mod:`~ciphermilter.store.schema`)."""
        store, version = cls._open_checked(*schema.paths(path, master_key_path), read_only=False)
        if version < schema.current_version():
            if store.locator.shared:
                store.close()
                raise StoreError(f"store {store.path} has schema version {version}, older than this ciphermilter"
                                 f" ({schema.current_version()}): run 'ciphermilter store migrate' once")
            with store.db.transaction():
                schema.migrate(store.db, version)
            store._schema_version = schema.current_version()
        return store

    @classmethod
    def open_read_only(cls, path: PathLike, master_key_path: PathLike | None = None) -> KeyStore:
        """Open a store (a backup, say) without writing to it, not even a migration."""
        store, _ = cls._open_checked(*schema.paths(path, master_key_path), read_only=True)
        return store

    @classmethod
    def migrate(cls, path: PathLike, master_key_path: PathLike | None = None) -> tuple[int, int]:
        """Bring a store to this ciphermilter's schema in one transaction (``store migrate``); (from, to)."""
        store, found = cls._open_checked(*schema.paths(path, master_key_path), read_only=False)
        with store, store.db.transaction():
            if found < schema.current_version():
                schema.migrate(store.db, found)
        return found, schema.current_version()

    @classmethod
    def _open_checked(cls, where: Locator, key_path: str, read_only: bool) -> tuple[KeyStore, int]:
        if not where.shared:
            schema.check_readable(where.target)
        try:
            sealer = masterkey.Sealer(masterkey.load(key_path))
        except masterkey.MasterKeyError as exc:
            raise StoreError(str(exc)) from None
        db = None
        try:
            db = connection.connect(where, read_only)
            version = schema.version(db)
            if version == 0:
                raise StoreError(f"{where.display} is not a ciphermilter store")
            if version > schema.current_version():
                raise StoreError(f"store {where.display} has schema version {version}, newer than this ciphermilter"
                                 f" supports ({schema.current_version()}); upgrade ciphermilter")
            check = db.execute("SELECT value FROM meta WHERE name = 'key_check'").fetchone()
            if check is None or not sealer.matches(bytes(check[0])):
                raise StoreError(f"master key {key_path} does not belong to store {where.display}")
        except (StoreError, sqlite3.DatabaseError) as exc:
            if db is not None:
                db.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{where.display} is not a usable ciphermilter store: {exc}") from None
        return cls(where, db, sealer, read_only, version), version

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
            self._key_cache.clear()
            self.db.close()

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transactions, caches, copies

    @contextlib.contextmanager
    def transaction(self, counter: Counter = "keys") -> Iterator[Database]:
        """One all-or-nothing write transaction; one that changed anything bumps ``counter`` of
        ``store_versions``, which every gateway's next :meth:`refresh` sees. On PostgreSQL the counter's row is
        locked first, which serialises the writers of one kind as SQLite's write lock does: the harvest caps
        count rows no concurrent harvest is adding."""
        with self._lock:
            with self.db.transaction():
                if self.locator.shared:
                    self.db.execute("SELECT version FROM store_versions WHERE name = ? FOR UPDATE", (counter,))
                before = self.db.changes()
                yield self.db
                if self.db.changes() != before:
                    self.db.execute("UPDATE store_versions SET version = version + 1 WHERE name = ?", (counter,))
            self.refresh()

    def refresh(self) -> int:
        """Drop the caches if any gateway or process committed a change since they were filled; the keys'
        version (:meth:`data_version`).

        The daemon calls this once per message (``StoreHolder.current``), so
        a key or domain an admin adds on any gateway takes effect on the next
        message, and the lookups for one message cost no query each to check
        it. A harvest drops the lookups only, never the decrypted keys. It is
        also the daemon's health check: a damaged or vanished database, or
        an unreachable server, raises here.
        """
        with self._lock:
            versions = self._read_versions()
            if self._versions is None or versions[0] != self._versions[0]:
                self._key_cache.clear()
                self._cache.clear()
            elif versions[1] != self._versions[1]:
                self._cache.clear()
            self._versions = versions
            return versions[0]

    def _read_versions(self) -> tuple[int, int]:
        if self._schema_version < 4:  # a file of an older schema opened read-only (a backup): it does not change
            return 0, 0
        found = {str(row[0]): int(row[1]) for row in self.rows("SELECT name, version FROM store_versions")}
        return found["keys"], found["harvest"]

    def data_version(self) -> int:
        """The version of the keys the caches hold: moved by our admin writes at once, by other processes'
        and gateways' at :meth:`refresh`; a harvest leaves it (the keyring keeps its unlocked keys)."""
        with self._lock:
            return self.refresh() if self._versions is None else self._versions[0]

    def _cached(self, key: Hashable, compute: Callable[[], T], cache: dict[Hashable, Any] | None = None) -> T:
        """``compute()`` once until the store changes (other processes' changes show at :meth:`refresh`)."""
        with self._lock:
            held = self._cache if cache is None else cache
            if key not in held:
                held[key] = compute()
            value: T = held[key]
            return value

    def rows(self, sql: str, params: SqlParams = ()) -> list[Row]:
        """The rows of one query, under the store's lock."""
        with self._lock:
            return self.db.execute(sql, params).fetchall()

    # ------------------------------------------------------------------ harvesting (ciphermilter.core.harvest)

    def harvest(self, offers: Sequence[Offer], *, per_message: int, per_address: int, per_signer: int,
                expiry_days: int) -> list[str]:
        """Keep what one message offers (:class:`harvest.Offer`) and record the uses of harvested
        certificates its lookups made, in one write transaction; one line per offer for the report.

        At most ``per_message`` new rows; an offer naming an address that has
        ``per_address`` harvested rows already is refused, and so is one
        whose signer's addresses together have ``per_signer``: evicting an
        older one instead would let anyone who may sign as that address push
        out the certificate a correspondent's mail is verified with. The same
        write removes up to :data:`EXPIRE_PER_HARVEST` rows never used for
        ``expiry_days``. Best effort, called while a message waits: known
        offers and recent uses need no transaction (an Autocrypt header on
        every message of a correspondent costs a lookup, not the write lock),
        and a store another process keeps locked costs the message its
        harvest, never its result.
        """
        with self._lock:
            used, self._used = self._used, set()
        if self.read_only:
            return [f"{offer.where}: not harvested (store opened read-only)" for offer in offers]
        lines: list[str] = []
        candidates: list[_Candidate] = []
        for offer in offers:
            candidate = self._harvest_candidate(offer)
            if isinstance(candidate, str):
                lines.append(candidate)
            elif self.rows(*candidate.present):
                lines.append(f"{offer.where}: {candidate.label} known")
            else:
                candidates.append(candidate)
        stale = self._stale_uses(used)
        if not (candidates or stale):
            return lines
        try:
            with self.transaction("harvest") as conn:
                verdicts = self._harvest_new(candidates, per_message, per_address, per_signer)
                conn.executemany("UPDATE certificates SET last_used = ? WHERE thumbprint = ?",
                                 [(rows.now(), thumbprint) for thumbprint in stale])
                self.expire(expiry_days, EXPIRE_PER_HARVEST)
        except (sqlite3.OperationalError, StoreError) as exc:  # locked beyond the busy timeout, or unreachable
            log.warning("key store %s: nothing harvested: %s", self.path, exc)
            verdicts = ["not harvested (key store busy)"] * len(candidates)
        return lines + [f"{candidate.where}: {candidate.label} {verdict}"
                        for candidate, verdict in zip(candidates, verdicts)]

    def _harvest_candidate(self, offer: Offer) -> _Candidate | str:
        """What an offer would add, or the line that refuses it."""
        certificate = offer.certificate
        if certificate is not None:
            try:
                row, emails = rows.certificate_row(certificate, "harvested")
            except StoreError as exc:
                return f"{offer.where}: not harvested ({exc})"
            thumbprint = row["thumbprint"]
            return _Candidate(offer.where, thumbprint[:16], emails, emails,
                              ("SELECT 1 FROM certificates WHERE thumbprint = ?", (thumbprint,)),
                              lambda: rows.insert_certificate(self.db, certificate, "harvested", None))
        key = offer.pgp_key
        assert key is not None  # an offer carries a certificate or a key (harvest.Batch makes both kinds)
        emails = openpgp.key_emails(key)
        return _Candidate(offer.where, key.keyid, emails, sorted(offer.signer_emails) or emails,
                          ("SELECT 1 FROM pgp_keys WHERE fingerprint = ?", (rows.pgp_fingerprint(key),)),
                          lambda: rows.insert_pgp_key(self.db, self.sealer, key if key.is_public
                                                      else rows.load_pgp(rows.public_bytes(key)),
                                                      "harvested", None))  # secret parts are never kept

    def _harvest_new(self, candidates: list[_Candidate], per_message: int, per_address: int,
                     per_signer: int) -> list[str]:
        """Insert the candidates the caps allow (the caller holds the write transaction); a verdict for each."""
        verdicts, added = [], 0
        for candidate in candidates:
            if not candidate.emails:
                verdict = NO_ADDRESS
            elif added >= per_message:
                verdict = per_message_refusal(per_message)
            elif full := [email for email in candidate.emails if self._harvested_for([email]) >= per_address]:
                verdict = per_address_refusal(per_address, full[0])
            elif self._harvested_for(candidate.signer_emails) >= per_signer:
                verdict = per_signer_refusal(per_signer)
            elif candidate.insert():
                verdict, added = "added", added + 1
            else:  # an earlier offer of the same message added it
                verdict = "known"
            verdicts.append(verdict)
        return verdicts

    def _harvested_for(self, emails: list[str]) -> int:
        """How many harvested certificates and keys name any of ``emails`` (a JSON array: a certificate may
        name more addresses than SQLite takes parameters)."""
        named, values = json.dumps(emails), self.db.json_values
        return int(self.rows(
            "SELECT (SELECT count(DISTINCT c.thumbprint) FROM certificate_emails e"
            " JOIN certificates c ON c.thumbprint = e.thumbprint"
            f" WHERE e.email IN ({values}) AND c.origin = 'harvested')"
            " + (SELECT count(DISTINCT k.fingerprint) FROM pgp_emails e JOIN pgp_keys k ON k.fingerprint = e.fingerprint"
            f" WHERE e.email IN ({values}) AND k.origin = 'harvested')", (named, named))[0][0])

    def _note_use(self, selected: Iterable[Row]) -> None:
        """Remember the harvested certificates among ``selected`` (thumbprint, origin): a lookup selected them."""
        with self._lock:
            self._used.update(row["thumbprint"] for row in selected if row["origin"] == "harvested")

    def _stale_uses(self, used: set[str]) -> list[str]:
        """The used certificates whose recorded use is older than :data:`USE_RECORD_INTERVAL` (or missing)."""
        cutoff = rows.before_now(USE_RECORD_INTERVAL)
        return sorted(thumbprint for thumbprint in used if self.rows(
            "SELECT 1 FROM certificates WHERE thumbprint = ? AND (last_used IS NULL OR last_used < ?)",
            (thumbprint, cutoff)))

    def expire(self, expiry_days: int, limit: int | None) -> list[str]:
        """Remove expired harvested rows (the caller holds the write transaction); their descriptions."""
        expired = self.expired(expiry_days, limit)
        for kind, key_id, _ in expired:
            rows.delete_key(self.db, kind, key_id)
        return [description for _, _, description in expired]

    def expired(self, expiry_days: int, limit: int | None) -> list[tuple[KeyKind, str, str]]:
        """(kind, ID, description) of the harvested rows never used and added over ``expiry_days`` ago.

        Never one with a private key: only an admin imports those (a harvest keeps no secret part), and a
        store from before imports promoted the certificate may hold such a key under a harvested one."""
        cutoff = rows.before_now(expiry_days * 24 * 3600)
        found = self.rows(
            "SELECT 'x509' AS kind, thumbprint AS id, 'certificate ' || substr(thumbprint, 1, 16) || ' ' || subject"
            " AS description FROM certificates WHERE origin = 'harvested' AND last_used IS NULL AND added < ?"
            " AND spki_sha256 NOT IN (SELECT spki_sha256 FROM smime_keys)"
            " UNION ALL SELECT 'openpgp', fingerprint, 'OpenPGP key ' || fingerprint || ' ' || user_ids"
            " FROM pgp_keys WHERE origin = 'harvested' AND added < ? AND sealed_secret IS NULL"
            " ORDER BY id LIMIT ?", (cutoff, cutoff, sys.maxsize if limit is None else limit))
        return [("x509" if row["kind"] == "x509" else "openpgp", row["id"], row["description"]) for row in found]

    # ------------------------------------------------------------------ trust anchors and internal domains

    def trust_anchors(self) -> list[bytes]:
        return self._cached("trust_anchors", lambda: [row["der"] for row in self.rows("SELECT der FROM trust_anchors")])

    def is_internal_domain(self, domain: str) -> bool:
        patterns = self._cached("domains", lambda: [row[0] for row in self.rows("SELECT pattern FROM domains")])
        return any(domains.matches(domain, pattern) for pattern in patterns)

    # ------------------------------------------------------------------ readers (ciphermilter.formats.readers)

    def certificate_readers(self, der: bytes) -> frozenset[str]:
        """Readers of the certificate a RecipientInfo names: its addresses unless harvested, and its bindings."""
        return self.key_readers("x509", rows.thumbprint(der))

    def pgp_readers(self, fingerprint: str) -> frozenset[str]:
        """Readers of an OpenPGP key (primary fingerprint): its user IDs' addresses unless harvested, its bindings."""
        return self.key_readers("openpgp", fingerprint)

    def key_readers(self, kind: KeyKind, key_id: str) -> frozenset[str]:
        def compute() -> frozenset[str]:
            own = [row[0] for row in self.rows(_OWN_READERS[kind], (key_id,))]
            return frozenset(own + self.bindings(key_id))
        return self._cached(("readers", key_id), compute)

    def bindings(self, key_id: str) -> list[str]:
        """The addresses an admin bound to the key (``keys bind``), sorted."""
        return [row[0] for row in self.rows("SELECT address FROM bindings WHERE key_id = ? ORDER BY address",
                                            (key_id,))]

    def reader_addresses(self) -> frozenset[str]:
        """Every address and ``@domain`` that reads a key we hold the private half of (RCPT-time classes)."""
        return self._cached("reader_addresses", lambda: frozenset(row[0] for row in self.rows(
            "SELECT e.email FROM certificate_emails e JOIN certificates c ON c.thumbprint = e.thumbprint"
            f" JOIN smime_keys k ON k.spki_sha256 = c.spki_sha256 WHERE c.origin != 'harvested' AND e.{_NOT_A_DOMAIN}"
            " UNION SELECT e.email FROM pgp_emails e JOIN pgp_keys k ON k.fingerprint = e.fingerprint"
            f" WHERE k.sealed_secret IS NOT NULL AND k.origin != 'harvested' AND e.{_NOT_A_DOMAIN}"
            " UNION SELECT b.address FROM bindings b WHERE b.key_id IN (SELECT c.thumbprint FROM certificates c"
            " JOIN smime_keys k ON k.spki_sha256 = c.spki_sha256)"
            " OR b.key_id IN (SELECT fingerprint FROM pgp_keys WHERE sealed_secret IS NOT NULL)")))

    def holds_private_keys(self) -> bool:
        """Whether any S/MIME private key or OpenPGP secret key is stored (require_reader off: all read it)."""
        return self._cached("holds_private_keys", lambda: bool(self.rows(
            "SELECT EXISTS(SELECT 1 FROM smime_keys) OR EXISTS(SELECT 1 FROM pgp_keys WHERE sealed_secret IS NOT NULL)"
        )[0][0]))

    # ------------------------------------------------------------------ hot-path lookups

    def certificates(self, *, issuer_key: str | None = None, serial: int | None = None, ski: bytes | None = None,
                     email: str | None = None, subject_key: str | None = None) -> list[bytes]:
        """DER of every certificate matching all the given criteria (all certificates when none)."""
        where, params = self._certificate_filter(issuer_key, serial, ski, email, subject_key)
        found = self.rows("SELECT der, thumbprint, origin FROM certificates c" + where + _NEWEST_FIRST, params)
        self._note_use(found)
        return [row["der"] for row in found]

    @staticmethod
    def _certificate_filter(issuer_key: str | None, serial: int | None, ski: bytes | None, email: str | None,
                            subject_key: str | None) -> tuple[str, list[str]]:
        clauses, params = [], []
        if issuer_key is not None:
            clauses.append("c.issuer_key = ?")
            params.append(issuer_key)
        if serial is not None:
            clauses.append("c.serial = ?")
            params.append(ids.serial_hex(serial))
        if ski is not None:
            clauses.append("c.ski = ?")
            params.append(bytes(ski).hex().upper())
        if subject_key is not None:
            clauses.append("c.subject_key = ?")
            params.append(subject_key)
        if email is not None:
            clauses.append("c.thumbprint IN (SELECT thumbprint FROM certificate_emails WHERE email = ?)")
            params.append(email.strip().lower())
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def smime_private_keys(self, *, issuer_key: str | None = None, serial: int | None = None,
                           ski: bytes | None = None) -> list[tuple[bytes, PrivateKeyTypes]]:
        """(certificate DER, private key) for the certificates a RecipientInfo names."""
        if issuer_key is None and serial is None and ski is None:
            raise ValueError("smime_private_keys needs issuer_key and serial, or ski")
        where, params = self._certificate_filter(issuer_key, serial, ski, None, None)
        return self._cached(("smime", where, tuple(params)), lambda: self._smime_pairs(where, params))

    def all_smime_private_keys(self) -> list[tuple[bytes, PrivateKeyTypes]]:
        return self._cached(("smime", "", ()), lambda: self._smime_pairs("", []))

    def _smime_pairs(self, where: str, params: list[str]) -> list[tuple[bytes, PrivateKeyTypes]]:
        found = self.rows("SELECT c.der, c.thumbprint, c.origin, k.spki_sha256, k.sealed FROM certificates c"
                          " JOIN smime_keys k ON k.spki_sha256 = c.spki_sha256" + where + _NEWEST_FIRST, params)
        self._note_use(found)
        pairs = [(row["der"], self.smime_key(row["spki_sha256"], row["sealed"])) for row in found]
        return [(der, key) for der, key in pairs if key is not None]

    def smime_key(self, spki_sha256: str, sealed: bytes) -> PrivateKeyTypes | None:
        """The private key of a smime_keys row, unsealed once until the store changes; None when altered."""
        def unseal() -> PrivateKeyTypes | None:
            pkcs8 = self._unseal(sealed, rows.smime_aad(spki_sha256), f"S/MIME key {spki_sha256}")
            if pkcs8 is None:
                return None
            # validated when imported, authenticated by AES-GCM since: the slow RSA check can be skipped
            return serialization.load_der_private_key(pkcs8, password=None, unsafe_skip_rsa_key_validation=True)
        return self._cached(("smime-key", spki_sha256), unseal, self._key_cache)

    def _unseal(self, sealed: bytes, aad: bytes, label: str) -> bytes | None:
        """The plaintext, or None (logged) when the row was altered: one bad row must not stop the mail."""
        try:
            return self.sealer.open(sealed, aad)
        except masterkey.MasterKeyError:
            log.error("key store %s: %s does not open with the master key (row altered?); skipped", self.path, label)
            return None

    def pgp_secret_keys(self, keyid: str) -> list[OpenPGPKey]:
        """Unprotected secret keys whose primary key or a subkey has ``keyid`` (16 hex digits)."""
        found = self.rows("SELECT k.fingerprint, k.sealed_secret FROM pgp_key_ids i"
                          " JOIN pgp_keys k ON k.fingerprint = i.fingerprint"
                          " WHERE i.keyid = ? AND k.sealed_secret IS NOT NULL", (keyid.upper(),))
        return self._pgp_secrets(found)

    def all_pgp_secret_keys(self) -> list[OpenPGPKey]:
        found = self.rows("SELECT fingerprint, sealed_secret FROM pgp_keys WHERE sealed_secret IS NOT NULL"
                          " ORDER BY fingerprint")
        return self._pgp_secrets(found)

    def _pgp_secrets(self, found: list[Row]) -> list[OpenPGPKey]:
        keys = [self.pgp_secret(row["fingerprint"], row["sealed_secret"]) for row in found]
        return [key for key in keys if key is not None]

    def pgp_secret(self, fingerprint: str, sealed: bytes) -> OpenPGPKey | None:
        """The secret key of a pgp_keys row, unsealed once until the store changes; None when altered or
        unreadable (logged): one bad row must not stop the mail."""
        def unseal() -> OpenPGPKey | None:
            raw = self._unseal(sealed, rows.pgp_aad(fingerprint), f"OpenPGP secret key {fingerprint}")
            return None if raw is None else self._load_pgp(raw, f"OpenPGP secret key {fingerprint}")
        return self._cached(("pgp-secret", fingerprint), unseal, self._key_cache)

    def _load_pgp(self, raw: bytes, label: str) -> OpenPGPKey | None:
        try:
            return rows.load_pgp(raw)
        except OpenPGPError as exc:
            log.error("key store %s: %s cannot be read (%s); skipped", self.path, label, exc)
            return None

    def pgp_public_keys(self, keyid: str, *, imported_only: bool = False) -> list[OpenPGPKey]:
        """Public keys (also of the secret keys we hold) whose primary key or a subkey has ``keyid``.

        ``imported_only``: only the keys an administrator imported, the only ones that verify signatures.
        """
        origin = " AND k.origin = 'imported'" if imported_only else ""
        found = self.rows("SELECT k.fingerprint, k.public_key FROM pgp_key_ids i"
                          " JOIN pgp_keys k ON k.fingerprint = i.fingerprint WHERE i.keyid = ?" + origin,
                          (keyid.upper(),))
        keys = [self._pgp_public(row["fingerprint"], row["public_key"]) for row in found]
        return [key for key in keys if key is not None]

    def _pgp_public(self, fingerprint: str, raw: bytes) -> OpenPGPKey | None:
        return self._cached(("pgp-public", fingerprint), lambda: self._load_pgp(raw, f"OpenPGP key {fingerprint}"),
                            self._key_cache)


if TYPE_CHECKING:
    # mypy checks here that the store fits every seam the core names (ciphermilter.core.seams).
    def _fits_the_seams(store: KeyStore) -> KeyLookup:
        return store
