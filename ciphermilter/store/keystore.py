"""The key store: one SQLite file of certificates, keys, trust anchors and internal domains.

Layout (schema version 3, see :data:`_MIGRATIONS`):

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
  or ``@domain`` (:mod:`ciphermilter.readers`).
- ``certificates.last_used`` (schema version 3): when a harvested certificate
  was last selected by a lookup (:meth:`KeyStore.harvest`).

Private key material is sealed with AES-256-GCM (:mod:`ciphermilter.masterkey`)
with the row's identity as associated data; the database, its WAL and every
backup hold no private key in the clear.

One :class:`KeyStore` serves all milter threads (a lock around one
connection). Lookups on the hot path are indexed and decrypted keys are
cached in memory until the store changes: at once for its own writes, and at
the next :meth:`KeyStore.refresh` (once per message in the daemon) for any
other process's, so that a running daemon sees keys an admin imports without
a restart.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import pathlib
import sqlite3
import threading
import warnings
from dataclasses import dataclass, field

import pgpy
import sqlite_utils
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from ciphermilter.core import domains

from ciphermilter.formats import ids

from ciphermilter.store import keyexport, keyimport

from ciphermilter.store import masterkey

from ciphermilter.formats.openpgp import engine as openpgp

from ciphermilter.formats.smime import trust

BUSY_TIMEOUT_MS = 10_000

log = logging.getLogger(__name__)


# A key's own readers (readers module): the addresses of a certificate or of an OpenPGP key's user IDs,
# unless it was harvested from mail: a sender-supplied key never speaks for anyone inside. A name of the
# form "@domain" reads for a whole domain (readers.reads): only an admin's binding may say that, never a
# subjectAltName or user ID that its maker wrote so.
_NOT_A_DOMAIN = "email NOT LIKE '@%'"
_OWN_READERS = {
    "x509": f"SELECT email FROM certificate_emails WHERE thumbprint = ? AND {_NOT_A_DOMAIN} AND thumbprint IN"
            " (SELECT thumbprint FROM certificates WHERE origin != 'harvested')",
    "openpgp": f"SELECT email FROM pgp_emails WHERE fingerprint = ? AND {_NOT_A_DOMAIN} AND fingerprint IN"
               " (SELECT fingerprint FROM pgp_keys WHERE origin != 'harvested')",
}

# Lookups list the certificate that expires last first: a renewed certificate before the one it replaces.
_NEWEST_FIRST = " ORDER BY c.not_after DESC, c.thumbprint"


class StoreError(Exception):
    """A store operation was refused; ``str()`` is one clear line for the admin."""


@dataclass
class _Candidate:
    """An offer of a message (:meth:`KeyStore.harvest`) that the store does not hold yet."""

    where: str
    label: str  # its ID in the report: certificate thumbprint or OpenPGP key ID, 16 hex digits
    emails: list[str]
    signer_emails: list[str]  # of the signer that vouched for it (a certificate's own): counted together
    present: tuple[str, tuple]  # the query that finds it in the store
    insert: "callable"  # adds it in the open transaction; False when it is there already


@dataclass
class ImportResult:
    added: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- schema


def _schema_v1(db: sqlite_utils.Database) -> None:
    db.create_table("meta", {"name": str, "value": bytes}, pk="name")
    db.create_table("certificates", {
        "thumbprint": str, "der": bytes, "subject": str, "issuer": str, "subject_key": str, "issuer_key": str,
        "serial": str, "ski": str, "spki_sha256": str, "not_before": str, "not_after": str, "origin": str,
        "added": str,
    }, pk="thumbprint", not_null={"der", "subject_key", "issuer_key", "serial", "spki_sha256", "origin"})
    db["certificates"].create_index(["issuer_key", "serial"])
    db["certificates"].create_index(["ski"])
    db["certificates"].create_index(["subject_key"])
    db["certificates"].create_index(["spki_sha256"])
    db.create_table("certificate_emails", {"email": str, "thumbprint": str}, pk=("email", "thumbprint"))
    db["certificate_emails"].create_index(["thumbprint"])
    db.create_table("smime_keys", {"spki_sha256": str, "sealed": bytes, "added": str}, pk="spki_sha256")
    db.create_table("trust_anchors", {
        "thumbprint": str, "der": bytes, "subject": str, "not_after": str, "added": str,
    }, pk="thumbprint")
    db.create_table("pgp_keys", {
        "fingerprint": str, "public_key": bytes, "sealed_secret": bytes, "user_ids": str, "origin": str,
        "added": str,
    }, pk="fingerprint", not_null={"public_key", "origin"})
    db.create_table("pgp_key_ids", {"keyid": str, "fingerprint": str, "is_primary": int},
                    pk=("keyid", "fingerprint"))
    db["pgp_key_ids"].create_index(["fingerprint"])
    db.create_table("pgp_emails", {"email": str, "fingerprint": str}, pk=("email", "fingerprint"))
    db["pgp_emails"].create_index(["fingerprint"])
    db.create_table("domains", {"pattern": str, "added": str}, pk="pattern")


def _schema_v2(db: sqlite_utils.Database) -> None:
    """Readers an admin binds to a key (issue 13): an address or ``@domain``, lower case, per key ID
    (certificate thumbprint or OpenPGP primary fingerprint)."""
    db.create_table("bindings", {"key_id": str, "address": str, "added": str}, pk=("key_id", "address"))


def _schema_v3(db: sqlite_utils.Database) -> None:
    """When a harvested certificate was last selected by a lookup (issue 14): harvested material never used
    expires (:meth:`KeyStore.harvest`). NULL for every row so far: no use was recorded. OpenPGP keys need
    no such column: a harvested key verifies nothing (only an import makes it count), so it is never used."""
    db["certificates"].add_column("last_used", str)


# Index i brings the schema from version i to i + 1; the current version is their number.
# Append, never edit a released step.
_MIGRATIONS = [_schema_v1, _schema_v2, _schema_v3]

# A harvested row selected again within this many seconds of its recorded use is not written again: a
# frequent correspondent costs one write a day, not one per message.
USE_RECORD_INTERVAL = 24 * 3600
# Expired rows removed by one harvest write, so that a message never waits on a large clean-up.
EXPIRE_PER_HARVEST = 100
NO_ADDRESS = "not harvested (no e-mail address: no reply could find it)"


# ---------------------------------------------------------------------------- certificate facts


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _before_now(seconds: float) -> str:
    """The time ``seconds`` ago, written as :func:`_now` writes times, so that the two compare as text."""
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)
    return past.isoformat(timespec="seconds")


def per_message_refusal(limit: int) -> str:
    return f"not harvested (more than {limit} new certificates and keys in one message)"


def per_address_refusal(limit: int, address: str) -> str:
    return f"not harvested ({limit} harvested certificates and keys for {address} already)"


def per_signer_refusal(limit: int) -> str:
    return f"not harvested ({limit} harvested certificates and keys for the addresses of its signer already)"


def _thumbprint(der: bytes) -> str:
    return ids.sha256_hex(der).upper()


def _spki_sha256_of_key(private_key) -> str:
    spki = private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    return ids.sha256_hex(spki)


def _spki_sha256_of_cert(der: bytes, cert: asn1_x509.Certificate) -> str:
    # cryptography re-encodes the key the same way as _spki_sha256_of_key; asn1crypto's raw bytes are
    # the fallback for certificates cryptography refuses (they then simply match no private key).
    try:
        spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion):
        spki = cert["tbs_certificate"]["subject_public_key_info"].dump()
    return ids.sha256_hex(spki)


def certificate_emails(der: bytes) -> list[str]:
    """The addresses :func:`trust.emails` reads (the rule Signer-Email uses), as the store indexes them: sorted."""
    return sorted({address.strip() for address in trust.emails(der) if address.strip()})


def _certificate_row(der: bytes, origin: str) -> tuple[dict, list[str]]:
    try:
        cert = asn1_x509.Certificate.load(der, strict=True)
        tbs = cert["tbs_certificate"]
        validity = tbs["validity"]
        row = {
            "thumbprint": _thumbprint(der), "der": der,
            "subject": ids.rfc4514(cert.subject), "issuer": ids.rfc4514(cert.issuer),
            "subject_key": ids.name_key(cert.subject), "issuer_key": ids.name_key(cert.issuer),
            "serial": ids.serial_hex(cert.serial_number),
            "ski": cert.key_identifier.hex().upper() if cert.key_identifier else None,
            "spki_sha256": _spki_sha256_of_cert(der, cert),
            "not_before": validity["not_before"].native.isoformat(),
            "not_after": validity["not_after"].native.isoformat(),
            "origin": origin, "added": _now(),
        }
        return row, certificate_emails(der)
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreError(f"certificate not usable: {exc}") from None


def _describe_certificate(row) -> str:
    return f"certificate {row['thumbprint'][:16]} {row['subject']}"


# ---------------------------------------------------------------------------- OpenPGP facts


def _pgp_fingerprint(key: pgpy.PGPKey) -> str:
    return str(key.fingerprint).replace(" ", "").upper()


def _pgp_key_ids(key: pgpy.PGPKey) -> list[tuple[str, int]]:
    return [(key.fingerprint.keyid.upper(), 1)] + [(keyid.upper(), 0) for keyid in key.subkeys]


def _pgp_user_ids(key: pgpy.PGPKey) -> list[str]:
    return [uid.userid for uid in key.userids if uid.is_uid]


def _public_bytes(key: pgpy.PGPKey) -> bytes:
    return bytes(key.pubkey) if not key.is_public else bytes(key)


def _load_pgp(raw: bytes) -> pgpy.PGPKey:
    key = pgpy.PGPKey()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key.parse(bytearray(raw))
    return key


@contextlib.contextmanager
def _naming(filename: str):
    """Prefix a StoreError with the file it concerns."""
    try:
        yield
    except StoreError as exc:
        raise StoreError(f"{filename}: {exc}" if filename else str(exc)) from None


def _paths(path, master_key_path) -> tuple[str, str]:
    path = os.fspath(path)
    return path, os.fspath(master_key_path) if master_key_path else masterkey.default_path(path)


def _domain_pattern(pattern: str) -> str:
    try:
        return domains.normalise(pattern)
    except domains.DomainError as exc:
        raise StoreError(str(exc)) from None


def _binding_address(address: str) -> str:
    """``local@domain`` or ``@domain`` (one domain, no wildcard), lower case; anything else is refused."""
    local, at, domain = address.strip().lower().rpartition("@")
    if not at or domain.startswith("*.") or any(c.isspace() or c in '@<>,;:"\\' for c in local):
        raise StoreError(f"not an address or @domain: {address!r}")
    return f"{local}@{_domain_pattern(domain)}"


def _smime_aad(spki_sha256: str) -> bytes:
    return b"ciphermilter:smime-key:" + spki_sha256.encode("ascii")


def _pgp_aad(fingerprint: str) -> bytes:
    return b"ciphermilter:openpgp-secret:" + fingerprint.encode("ascii")


# ---------------------------------------------------------------------------- the store


class KeyStore:
    """Open with :meth:`create` or :meth:`open`, never the constructor."""

    def __init__(self, path: str, conn: sqlite3.Connection, sealer: masterkey.Sealer, read_only: bool = False):
        self.path = path
        self.read_only = read_only
        self._used: set[str] = set()  # thumbprints of harvested certificates selected since the last harvest()
        self._conn = conn
        self._db = sqlite_utils.Database(conn)
        self._sealer = sealer
        self._lock = threading.RLock()
        self._own_writes = 0
        self._cache: dict = {}
        self._cache_version: int | None = None

    # ------------------------------------------------------------------ open / create

    @staticmethod
    def _connect(path: str, read_only: bool = False) -> sqlite3.Connection:
        # Autocommit mode: every change runs in an explicit BEGIN IMMEDIATE ... COMMIT (see _write)
        target = pathlib.Path(path).absolute().as_uri() + "?mode=ro" if read_only else path
        conn = sqlite3.connect(target, uri=read_only, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not read_only:
            conn.execute("PRAGMA journal_mode = WAL")
        return conn

    @classmethod
    def create(cls, path, master_key_path=None) -> "KeyStore":
        path, key_path = _paths(path, master_key_path)
        if os.path.exists(path):
            raise StoreError(f"store {path} exists already")
        if os.path.exists(key_path):
            raise StoreError(f"master key file {key_path} exists already; move it away or give another path")
        _create_private_file(path)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(key_path)), mode=0o700, exist_ok=True)
            key = masterkey.generate(key_path)
        except (masterkey.MasterKeyError, OSError) as exc:
            os.unlink(path)
            raise StoreError(f"cannot create master key: {exc}") from None
        store = cls(path, cls._connect(path), masterkey.Sealer(key))
        with store._write():
            store._migrate(0)
            store._conn.execute("INSERT INTO meta (name, value) VALUES ('key_check', ?)",
                                (store._sealer.check_value(),))
        return store

    @classmethod
    def open(cls, path, master_key_path=None) -> "KeyStore":
        """Open an existing store, running forward migrations; refuses a missing or wrong master key."""
        store, version = cls._open_checked(*_paths(path, master_key_path), read_only=False)
        if version < len(_MIGRATIONS):
            with store._write():
                store._migrate(version)
        return store

    @classmethod
    def open_read_only(cls, path, master_key_path=None) -> "KeyStore":
        """Open a store (a backup, say) without writing to it, not even a migration."""
        store, _ = cls._open_checked(*_paths(path, master_key_path), read_only=True)
        return store

    @classmethod
    def _open_checked(cls, path: str, key_path: str, read_only: bool) -> tuple["KeyStore", int]:
        if not os.path.isfile(path):
            raise StoreError(f"store {path} not found (create it with 'ciphermilter store init')")
        try:
            sealer = masterkey.Sealer(masterkey.load(key_path))
        except masterkey.MasterKeyError as exc:
            raise StoreError(str(exc)) from None
        conn = None
        try:
            conn = cls._connect(path, read_only)
            version = cls._schema_version(conn)
            if version == 0:
                raise StoreError(f"{path} is not a ciphermilter store")
            if version > len(_MIGRATIONS):
                raise StoreError(f"store {path} has schema version {version}, newer than this ciphermilter"
                                 f" supports ({len(_MIGRATIONS)}); upgrade ciphermilter")
            check = conn.execute("SELECT value FROM meta WHERE name = 'key_check'").fetchone()
            if check is None or not sealer.matches(check[0]):
                raise StoreError(f"master key {key_path} does not belong to store {path}")
        except (StoreError, sqlite3.DatabaseError) as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{path} is not a usable ciphermilter store: {exc}") from None
        return cls(path, conn, sealer, read_only), version

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> int:
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
        if not has_table:
            return 0
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        return row[0] if row else 0

    def _migrate(self, version: int) -> None:
        """Run the migrations after ``version``; the caller holds the write transaction."""
        if version == 0:
            self._conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            self._conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        for step in _MIGRATIONS[version:]:
            step(self._db)
        self._conn.execute("UPDATE schema_version SET version = ?", (len(_MIGRATIONS),))

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
            self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ transactions and caches

    @contextlib.contextmanager
    def _write(self):
        """One all-or-nothing write transaction."""
        with self._lock:
            changes = self._conn.total_changes
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            if self._conn.total_changes != changes:  # a harvest of a known certificate keeps the caches warm
                self._own_writes += 1
                self.refresh()

    def refresh(self) -> int:
        """Drop the caches if any connection committed a change since they were filled; the store's version.

        The daemon calls this once per message (``StoreHolder.current``), so
        a key or domain an admin adds takes effect on the next message, and
        the lookups for one message cost no query each to check it. It is
        also the daemon's health check: a damaged or vanished database
        raises here.
        """
        with self._lock:
            # data_version moves on other connections' commits only; our own are counted apart.
            version = self._conn.execute("PRAGMA data_version").fetchone()[0] + self._own_writes
            if version != self._cache_version:
                self._cache.clear()
                self._cache_version = version
            return version

    def data_version(self) -> int:
        """The version the caches hold: moved by our writes at once, by other processes' at :meth:`refresh`."""
        with self._lock:
            return self.refresh() if self._cache_version is None else self._cache_version

    def _cached(self, key, compute):
        """``compute()`` once until the store changes (other processes' changes show at :meth:`refresh`)."""
        with self._lock:
            if key not in self._cache:
                self._cache[key] = compute()
            return self._cache[key]

    def _rows(self, sql: str, params=()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # ------------------------------------------------------------------ import

    def import_file(self, data: bytes, *, filename: str = "", password: bytes | None = None,
                    passphrase: str | None = None) -> ImportResult:
        """Import every certificate and key of one file, all or nothing."""
        try:
            bundle = keyimport.parse(data, password=password, passphrase=passphrase)
        except keyimport.KeyFormatError as exc:
            raise StoreError(f"{filename}: {exc}" if filename else str(exc)) from None
        return self.import_bundles([(filename, bundle)])

    def import_bundles(self, named: list[tuple[str, keyimport.Bundle]]) -> ImportResult:
        """Import parsed files in one transaction: all certificates first, so that a key finds its
        certificate in any file of the same import."""
        result = ImportResult()
        with self._write():
            for filename, bundle in named:
                with _naming(filename):
                    for der in bundle.certificates:
                        self._import_certificate(der, "imported", result)
            for filename, bundle in named:
                with _naming(filename):
                    for private_key in bundle.private_keys:
                        self._import_smime_key(private_key, result)
                    for key in bundle.pgp_keys:
                        self._import_pgp_key(key, "imported", result)
                result.warnings.extend(bundle.warnings)
        return result

    def _import_certificate(self, der: bytes, origin: str, result: ImportResult | None) -> bool:
        row, emails = _certificate_row(der, origin)
        present = self._conn.execute("SELECT origin FROM certificates WHERE thumbprint = ?",
                                     (row["thumbprint"],)).fetchone()
        if present is not None:
            if present["origin"] == "harvested" and origin == "imported":  # the admin vouches for it now
                self._conn.execute("UPDATE certificates SET origin = 'imported' WHERE thumbprint = ?",
                                   (row["thumbprint"],))
            if result is not None:
                result.already_present.append(_describe_certificate(row))
            return False
        columns = ", ".join(row)
        self._conn.execute(f"INSERT INTO certificates ({columns}) VALUES ({', '.join('?' * len(row))})",
                           tuple(row.values()))
        self._conn.executemany("INSERT INTO certificate_emails (email, thumbprint) VALUES (?, ?)",
                               [(email, row["thumbprint"]) for email in emails])
        if result is not None:
            result.added.append(_describe_certificate(row))
        return True

    def _import_smime_key(self, private_key, result: ImportResult) -> None:
        spki = _spki_sha256_of_key(private_key)
        cert = self._conn.execute("SELECT subject FROM certificates WHERE spki_sha256 = ? LIMIT 1",
                                  (spki,)).fetchone()
        if cert is None:
            raise StoreError("private key without its certificate: import the certificate with it"
                             " (same file, or before)")
        label = f"S/MIME private key for {cert['subject']}"
        # The admin vouches for the key, so for its certificates too, a harvested one included: left
        # 'harvested', it gave the key no readers, refused `keys bind` and expired unused with the key.
        self._conn.execute("UPDATE certificates SET origin = 'imported' WHERE spki_sha256 = ? AND origin = 'harvested'",
                           (spki,))
        if self._conn.execute("SELECT 1 FROM smime_keys WHERE spki_sha256 = ?", (spki,)).fetchone():
            result.already_present.append(label)
            return
        pkcs8 = private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
        self._conn.execute("INSERT INTO smime_keys (spki_sha256, sealed, added) VALUES (?, ?, ?)",
                           (spki, self._sealer.seal(pkcs8, _smime_aad(spki)), _now()))
        result.added.append(label)

    def _import_pgp_key(self, key: pgpy.PGPKey, origin: str, result: ImportResult | None) -> bool:
        """Insert a key, or (admin imports only) bring a known one up to date: the secret half of a key
        we knew as public, or new subkeys, user IDs or signatures. Harvesting never changes a known key."""
        fingerprint = _pgp_fingerprint(key)
        label = f"OpenPGP {'public' if key.is_public else 'secret'} key {fingerprint} {', '.join(_pgp_user_ids(key))}"
        present = self._conn.execute("SELECT public_key, sealed_secret, origin FROM pgp_keys WHERE fingerprint = ?",
                                     (fingerprint,)).fetchone()
        public = _public_bytes(key)
        gains_secret = not key.is_public and (present is None or present["sealed_secret"] is None)
        gains_packets = present is not None and not (
            keyimport.packet_contents(public) <= keyimport.packet_contents(present["public_key"]))
        if present is not None and (origin == "harvested" or not (gains_secret or gains_packets)):
            if present["origin"] == "harvested" and origin == "imported":  # the admin vouches for it now
                self._conn.execute("UPDATE pgp_keys SET origin = 'imported' WHERE fingerprint = ?", (fingerprint,))
            if result is not None:
                result.already_present.append(label)
            return False
        if present is None or gains_packets:
            self._write_pgp_public(key, fingerprint, public, origin)
        if gains_secret:
            self._conn.execute("UPDATE pgp_keys SET sealed_secret = ? WHERE fingerprint = ?",
                               (self._sealer.seal(bytes(key), _pgp_aad(fingerprint)), fingerprint))
        if present is not None:
            self._conn.execute("UPDATE pgp_keys SET origin = 'imported' WHERE fingerprint = ?", (fingerprint,))
        if result is not None:
            result.added.append(label if present is None else f"{label} (updated)")
        return True

    def _write_pgp_public(self, key: pgpy.PGPKey, fingerprint: str, public: bytes, origin: str) -> None:
        """(Re)write the public half of a key and its key ID and e-mail indexes; a held secret stays."""
        for table in ("pgp_key_ids", "pgp_emails"):
            self._conn.execute(f"DELETE FROM {table} WHERE fingerprint = ?", (fingerprint,))
        self._conn.execute(
            "INSERT INTO pgp_keys (fingerprint, public_key, user_ids, origin, added) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (fingerprint) DO UPDATE SET public_key = excluded.public_key, user_ids = excluded.user_ids",
            (fingerprint, public, json.dumps(_pgp_user_ids(key)), origin, _now()))
        self._conn.executemany("INSERT INTO pgp_key_ids (keyid, fingerprint, is_primary) VALUES (?, ?, ?)",
                               [(keyid, fingerprint, primary) for keyid, primary in _pgp_key_ids(key)])
        self._conn.executemany("INSERT INTO pgp_emails (email, fingerprint) VALUES (?, ?)",
                               [(email, fingerprint) for email in sorted(openpgp.key_emails(key))])

    # ------------------------------------------------------------------ harvesting (ciphermilter.harvest)

    def harvest(self, offers: list, *, per_message: int, per_address: int, per_signer: int,
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
        lines, candidates = [], []
        for offer in offers:
            candidate = self._harvest_candidate(offer)
            if isinstance(candidate, str):
                lines.append(candidate)
            elif self._rows(*candidate.present):
                lines.append(f"{offer.where}: {candidate.label} known")
            else:
                candidates.append(candidate)
        stale = self._stale_uses(used)
        if not (candidates or stale):
            return lines
        try:
            with self._write() as conn:
                verdicts = self._harvest_new(candidates, per_message, per_address, per_signer)
                conn.executemany("UPDATE certificates SET last_used = ? WHERE thumbprint = ?",
                                 [(_now(), thumbprint) for thumbprint in stale])
                self._expire(expiry_days, EXPIRE_PER_HARVEST)
        except sqlite3.OperationalError as exc:  # locked beyond the busy timeout
            log.warning("key store %s: nothing harvested: %s", self.path, exc)
            verdicts = ["not harvested (key store busy)"] * len(candidates)
        return lines + [f"{candidate.where}: {candidate.label} {verdict}"
                        for candidate, verdict in zip(candidates, verdicts)]

    def _harvest_candidate(self, offer) -> "_Candidate | str":
        """What an offer would add, or the line that refuses it."""
        if offer.certificate is not None:
            try:
                row, emails = _certificate_row(offer.certificate, "harvested")
            except StoreError as exc:
                return f"{offer.where}: not harvested ({exc})"
            return _Candidate(offer.where, row["thumbprint"][:16], emails, emails,
                              ("SELECT 1 FROM certificates WHERE thumbprint = ?", (row["thumbprint"],)),
                              lambda: self._import_certificate(offer.certificate, "harvested", None))
        key = offer.pgp_key
        emails = openpgp.key_emails(key)
        return _Candidate(offer.where, key.fingerprint.keyid, emails, sorted(offer.signer_emails) or emails,
                          ("SELECT 1 FROM pgp_keys WHERE fingerprint = ?", (_pgp_fingerprint(key),)),
                          lambda: self._import_pgp_key(key if key.is_public else _load_pgp(_public_bytes(key)),
                                                       "harvested", None))  # secret parts are never kept

    def _harvest_new(self, candidates: list["_Candidate"], per_message: int, per_address: int,
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
        named = json.dumps(emails)
        return self._rows(
            "SELECT (SELECT count(DISTINCT c.thumbprint) FROM certificate_emails e"
            " JOIN certificates c ON c.thumbprint = e.thumbprint"
            " WHERE e.email IN (SELECT value FROM json_each(?)) AND c.origin = 'harvested')"
            " + (SELECT count(DISTINCT k.fingerprint) FROM pgp_emails e JOIN pgp_keys k ON k.fingerprint = e.fingerprint"
            " WHERE e.email IN (SELECT value FROM json_each(?)) AND k.origin = 'harvested')", (named, named))[0][0]

    def _note_use(self, rows) -> None:
        """Remember the harvested certificates among ``rows`` (thumbprint, origin): a lookup selected them."""
        with self._lock:
            self._used.update(row["thumbprint"] for row in rows if row["origin"] == "harvested")

    def _stale_uses(self, used: set[str]) -> list[str]:
        """The used certificates whose recorded use is older than :data:`USE_RECORD_INTERVAL` (or missing)."""
        cutoff = _before_now(USE_RECORD_INTERVAL)
        return sorted(thumbprint for thumbprint in used if self._rows(
            "SELECT 1 FROM certificates WHERE thumbprint = ? AND (last_used IS NULL OR last_used < ?)",
            (thumbprint, cutoff)))

    def expire_harvested(self, expiry_days: int, *, dry_run: bool = False) -> list[str]:
        """Remove every harvested certificate and key never used and harvested over ``expiry_days`` ago;
        what was (with ``dry_run``: would be) removed. Admin-imported material never expires."""
        if dry_run:
            return [description for _, _, description in self._expired(expiry_days, None)]
        with self._write():
            return self._expire(expiry_days, None)

    def _expire(self, expiry_days: int, limit: int | None) -> list[str]:
        """Remove expired harvested rows (the caller holds the write transaction); their descriptions."""
        expired = self._expired(expiry_days, limit)
        for kind, key_id, _ in expired:
            self._delete_key(kind, key_id)
        return [description for _, _, description in expired]

    def _expired(self, expiry_days: int, limit: int | None) -> list[tuple[str, str, str]]:
        """(kind, ID, description) of the harvested rows never used and added over ``expiry_days`` ago.

        Never one with a private key: only an admin imports those (a harvest keeps no secret part), and a
        store from before imports promoted the certificate may hold such a key under a harvested one."""
        cutoff = _before_now(expiry_days * 24 * 3600)
        rows = self._rows(
            "SELECT 'x509' AS kind, thumbprint AS id, 'certificate ' || substr(thumbprint, 1, 16) || ' ' || subject"
            " AS description FROM certificates WHERE origin = 'harvested' AND last_used IS NULL AND added < ?"
            " AND spki_sha256 NOT IN (SELECT spki_sha256 FROM smime_keys)"
            " UNION ALL SELECT 'openpgp', fingerprint, 'OpenPGP key ' || fingerprint || ' ' || user_ids"
            " FROM pgp_keys WHERE origin = 'harvested' AND added < ? AND sealed_secret IS NULL"
            " ORDER BY id LIMIT ?", (cutoff, cutoff, -1 if limit is None else limit))
        return [(row["kind"], row["id"], row["description"]) for row in rows]

    # ------------------------------------------------------------------ trust anchors

    def add_trust_anchor(self, der: bytes) -> bool:
        row, _ = _certificate_row(der, "imported")
        with self._write():
            return self._insert_trust_anchor(row)

    def _insert_trust_anchor(self, row: dict) -> bool:
        cursor = self._conn.execute(
            "INSERT OR IGNORE INTO trust_anchors (thumbprint, der, subject, not_after, added) VALUES (?, ?, ?, ?, ?)",
            (row["thumbprint"], row["der"], row["subject"], row["not_after"], row["added"]))
        return cursor.rowcount == 1

    def add_trust_anchors(self, ders: list[bytes]) -> list[tuple[str, bool]]:
        """Add several anchors in one transaction: (subject, newly added) for each."""
        rows = [_certificate_row(der, "imported")[0] for der in ders]
        with self._write():
            return [(row["subject"], self._insert_trust_anchor(row)) for row in rows]

    def remove_trust_anchor(self, ident: str) -> bool:
        thumbprint = self._resolve(ident, "SELECT thumbprint FROM trust_anchors WHERE thumbprint LIKE ?")
        if thumbprint is None:
            return False
        with self._write() as conn:
            conn.execute("DELETE FROM trust_anchors WHERE thumbprint = ?", (thumbprint,))
        return True

    def list_trust_anchors(self) -> list[dict]:
        return [{"id": row["thumbprint"], "subject": row["subject"], "not_after": row["not_after"],
                 "added": row["added"]}
                for row in self._rows("SELECT * FROM trust_anchors ORDER BY subject")]

    def trust_anchors(self) -> list[bytes]:
        return self._cached("trust_anchors", lambda: [row["der"] for row in self._rows("SELECT der FROM trust_anchors")])

    # ------------------------------------------------------------------ internal domains

    def add_domain(self, pattern: str) -> bool:
        pattern = _domain_pattern(pattern)
        with self._write():
            return self._insert_domain(pattern)

    def _insert_domain(self, pattern: str) -> bool:
        return self._conn.execute("INSERT OR IGNORE INTO domains (pattern, added) VALUES (?, ?)",
                                  (pattern, _now())).rowcount == 1

    def remove_domain(self, pattern: str) -> bool:
        pattern = _domain_pattern(pattern)
        with self._write() as conn:
            return conn.execute("DELETE FROM domains WHERE pattern = ?", (pattern,)).rowcount == 1

    def list_domains(self) -> list[str]:
        return [row["pattern"] for row in self._rows("SELECT pattern FROM domains ORDER BY pattern")]

    def is_internal_domain(self, domain: str) -> bool:
        patterns = self._cached("domains", self.list_domains)
        return any(domains.matches(domain, pattern) for pattern in patterns)

    # ------------------------------------------------------------------ readers (ciphermilter.readers)

    def bind(self, ident: str, address: str) -> bool:
        """Make ``address`` (or every address of ``@domain``) a reader of a key we hold the private half of."""
        with self._write():
            return self._insert_binding(ident, address)

    def _insert_binding(self, ident: str, address: str) -> bool:
        key_id = self._bindable_key(ident)
        return self._conn.execute("INSERT OR IGNORE INTO bindings (key_id, address, added) VALUES (?, ?, ?)",
                                  (key_id, _binding_address(address), _now())).rowcount == 1

    def unbind(self, ident: str, address: str) -> bool:
        resolved = self._resolve_key(ident)
        if resolved is None:
            raise StoreError(f"no key {ident}")
        address = _binding_address(address)
        with self._write() as conn:
            return conn.execute("DELETE FROM bindings WHERE key_id = ? AND address = ?",
                                (resolved[1], address)).rowcount == 1

    def _bindable_key(self, ident: str) -> str:
        """The ID of a key an admin may bind readers to: imported (not harvested), with its private key."""
        resolved = self._resolve_key(ident)
        if resolved is None:
            raise StoreError(f"no key {ident}")
        kind, key_id = resolved
        if kind == "x509":
            row = self._rows("SELECT c.origin, k.spki_sha256 IS NOT NULL AS private FROM certificates c"
                             " LEFT JOIN smime_keys k ON k.spki_sha256 = c.spki_sha256 WHERE c.thumbprint = ?",
                             (key_id,))[0]
        else:
            row = self._rows("SELECT origin, sealed_secret IS NOT NULL AS private FROM pgp_keys"
                             " WHERE fingerprint = ?", (key_id,))[0]
        if row["origin"] == "harvested":
            raise StoreError(f"{key_id} was harvested from mail: a key a sender supplied gets no readers")
        if not row["private"]:
            raise StoreError(f"{key_id} has no private key in the store: only keys we decrypt with have readers")
        return key_id

    def certificate_readers(self, der: bytes) -> frozenset[str]:
        """Readers of the certificate a RecipientInfo names: its addresses unless harvested, and its bindings."""
        return self._key_readers("x509", _thumbprint(der))

    def pgp_readers(self, fingerprint: str) -> frozenset[str]:
        """Readers of an OpenPGP key (primary fingerprint): its user IDs' addresses unless harvested, its bindings."""
        return self._key_readers("openpgp", fingerprint)

    def _key_readers(self, kind: str, key_id: str) -> frozenset[str]:
        def compute():
            own = [row[0] for row in self._rows(_OWN_READERS[kind], (key_id,))]
            return frozenset(own + self._bindings(key_id))
        return self._cached(("readers", key_id), compute)

    def _bindings(self, key_id: str) -> list[str]:
        return [row[0] for row in self._rows("SELECT address FROM bindings WHERE key_id = ? ORDER BY address",
                                             (key_id,))]

    def reader_addresses(self) -> frozenset[str]:
        """Every address and ``@domain`` that reads a key we hold the private half of (RCPT-time classes)."""
        return self._cached("reader_addresses", lambda: frozenset(row[0] for row in self._rows(
            "SELECT e.email FROM certificate_emails e JOIN certificates c ON c.thumbprint = e.thumbprint"
            f" JOIN smime_keys k ON k.spki_sha256 = c.spki_sha256 WHERE c.origin != 'harvested' AND e.{_NOT_A_DOMAIN}"
            " UNION SELECT e.email FROM pgp_emails e JOIN pgp_keys k ON k.fingerprint = e.fingerprint"
            f" WHERE k.sealed_secret IS NOT NULL AND k.origin != 'harvested' AND e.{_NOT_A_DOMAIN}"
            " UNION SELECT b.address FROM bindings b WHERE b.key_id IN (SELECT c.thumbprint FROM certificates c"
            " JOIN smime_keys k ON k.spki_sha256 = c.spki_sha256)"
            " OR b.key_id IN (SELECT fingerprint FROM pgp_keys WHERE sealed_secret IS NOT NULL)")))

    def holds_private_keys(self) -> bool:
        """Whether any S/MIME private key or OpenPGP secret key is stored (require_reader off: all read it)."""
        return self._cached("holds_private_keys", lambda: bool(self._rows(
            "SELECT EXISTS(SELECT 1 FROM smime_keys) OR EXISTS(SELECT 1 FROM pgp_keys WHERE sealed_secret IS NOT NULL)"
        )[0][0]))

    # ------------------------------------------------------------------ listing and removal

    def _resolve(self, ident: str, sql: str) -> str | None:
        """The one ID that ``ident`` (a full ID or a unique prefix of 8+ hex digits) names."""
        cleaned = ident.replace(" ", "").replace(":", "").upper()
        if len(cleaned) < 8 or any(c not in "0123456789ABCDEF" for c in cleaned):
            raise StoreError(f"not a key ID: {ident!r} (give 8 or more hex digits of its ID)")
        matches = {row[0] for row in self._rows(sql, (cleaned + "%",))}
        if len(matches) > 1:
            raise StoreError(f"{ident} is ambiguous: give more digits")
        return matches.pop() if matches else None

    def _resolve_key(self, ident: str) -> tuple[str, str] | None:
        """('x509', thumbprint) or ('openpgp', fingerprint) for a certificate or OpenPGP key ID."""
        found = []
        thumbprint = self._resolve(ident, "SELECT thumbprint FROM certificates WHERE thumbprint LIKE ?")
        if thumbprint:
            found.append(("x509", thumbprint))
        fingerprint = self._resolve(ident, "SELECT fingerprint FROM pgp_keys WHERE fingerprint LIKE ?")
        keyid = ident.replace(" ", "").upper()
        if fingerprint is None and len(keyid) == 16:  # a key ID (of the primary or a subkey)
            rows = self._rows("SELECT DISTINCT fingerprint FROM pgp_key_ids WHERE keyid = ?", (keyid,))
            fingerprint = rows[0][0] if len(rows) == 1 else None
        if fingerprint:
            found.append(("openpgp", fingerprint))
        if len(found) > 1:
            raise StoreError(f"{ident} is ambiguous: give more digits")
        return found[0] if found else None

    def list_keys(self) -> list[dict]:
        certs = [self._certificate_info(row) for row in self._rows(
            "SELECT c.*, k.spki_sha256 IS NOT NULL AS private_key FROM certificates c"
            " LEFT JOIN smime_keys k ON k.spki_sha256 = c.spki_sha256 ORDER BY c.subject, c.thumbprint")]
        pgp = [self._pgp_info(row) for row in self._rows("SELECT * FROM pgp_keys ORDER BY fingerprint")]
        return certs + pgp

    def show_key(self, ident: str) -> dict | None:
        resolved = self._resolve_key(ident)
        if resolved is None:
            return None
        kind, key_id = resolved
        if kind == "x509":
            row = self._rows("SELECT c.*, k.spki_sha256 IS NOT NULL AS private_key FROM certificates c"
                             " LEFT JOIN smime_keys k ON k.spki_sha256 = c.spki_sha256 WHERE thumbprint = ?",
                             (key_id,))[0]
            return self._certificate_info(row)
        return self._pgp_info(self._rows("SELECT * FROM pgp_keys WHERE fingerprint = ?", (key_id,))[0])

    def _certificate_info(self, row) -> dict:
        emails = [r["email"] for r in self._rows(
            "SELECT email FROM certificate_emails WHERE thumbprint = ? ORDER BY email", (row["thumbprint"],))]
        return {"id": row["thumbprint"], "type": "x509", "subject": row["subject"], "issuer": row["issuer"],
                "serial": row["serial"], "ski": row["ski"], "emails": emails, "not_before": row["not_before"],
                "not_after": row["not_after"], "origin": row["origin"], "private_key": bool(row["private_key"]),
                "readers": sorted(self._key_readers("x509", row["thumbprint"])),
                "bindings": self._bindings(row["thumbprint"]), "added": row["added"]}

    def _pgp_info(self, row) -> dict:
        fingerprint = row["fingerprint"]
        key_ids = [r["keyid"] for r in self._rows(
            "SELECT keyid FROM pgp_key_ids WHERE fingerprint = ? ORDER BY is_primary DESC, keyid", (fingerprint,))]
        emails = [r["email"] for r in self._rows(
            "SELECT email FROM pgp_emails WHERE fingerprint = ? ORDER BY email", (fingerprint,))]
        return {"id": fingerprint, "type": "openpgp", "key_ids": key_ids, "user_ids": json.loads(row["user_ids"]),
                "emails": emails, "secret": row["sealed_secret"] is not None, "origin": row["origin"],
                "readers": sorted(self._key_readers("openpgp", fingerprint)),
                "bindings": self._bindings(fingerprint), "added": row["added"]}

    def remove_key(self, ident) -> bool:
        """Remove a certificate (and its private key unless another certificate shares it) or an OpenPGP key."""
        resolved = self._resolve_key(str(ident))
        if resolved is None:
            return False
        with self._write():
            self._delete_key(*resolved)
        return True

    def _delete_key(self, kind: str, key_id: str) -> None:
        """Delete a key with its index rows and bindings; the caller holds the write transaction."""
        self._conn.execute("DELETE FROM bindings WHERE key_id = ?", (key_id,))
        if kind == "x509":
            self._conn.execute("DELETE FROM certificate_emails WHERE thumbprint = ?", (key_id,))
            self._conn.execute("DELETE FROM certificates WHERE thumbprint = ?", (key_id,))
            self._conn.execute("DELETE FROM smime_keys WHERE spki_sha256 NOT IN (SELECT spki_sha256 FROM certificates)")
        else:
            for table in ("pgp_key_ids", "pgp_emails", "pgp_keys"):
                self._conn.execute(f"DELETE FROM {table} WHERE fingerprint = ?", (key_id,))

    # ------------------------------------------------------------------ hot-path lookups

    def certificates(self, *, issuer_key=None, serial=None, ski=None, email=None, subject_key=None) -> list[bytes]:
        """DER of every certificate matching all the given criteria (all certificates when none)."""
        where, params = self._certificate_filter(issuer_key, serial, ski, email, subject_key)
        rows = self._rows("SELECT der, thumbprint, origin FROM certificates c" + where + _NEWEST_FIRST, params)
        self._note_use(rows)
        return [row["der"] for row in rows]

    @staticmethod
    def _certificate_filter(issuer_key, serial, ski, email, subject_key) -> tuple[str, list]:
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
                           ski: bytes | None = None) -> list[tuple[bytes, object]]:
        """(certificate DER, private key) for the certificates a RecipientInfo names."""
        if issuer_key is None and serial is None and ski is None:
            raise ValueError("smime_private_keys needs issuer_key and serial, or ski")
        where, params = self._certificate_filter(issuer_key, serial, ski, None, None)
        return self._cached(("smime", where, tuple(params)), lambda: self._smime_pairs(where, params))

    def all_smime_private_keys(self) -> list[tuple[bytes, object]]:
        return self._cached(("smime", "", ()), lambda: self._smime_pairs("", []))

    def _smime_pairs(self, where: str, params: list) -> list[tuple[bytes, object]]:
        rows = self._rows("SELECT c.der, c.thumbprint, c.origin, k.spki_sha256, k.sealed FROM certificates c"
                          " JOIN smime_keys k ON k.spki_sha256 = c.spki_sha256" + where + _NEWEST_FIRST, params)
        self._note_use(rows)
        pairs = [(row["der"], self._private_key(row["spki_sha256"], row["sealed"])) for row in rows]
        return [(der, key) for der, key in pairs if key is not None]

    def _private_key(self, spki_sha256: str, sealed: bytes):
        def unseal():
            pkcs8 = self._unseal(sealed, _smime_aad(spki_sha256), f"S/MIME key {spki_sha256}")
            if pkcs8 is None:
                return None
            # validated when imported, authenticated by AES-GCM since: the slow RSA check can be skipped
            return serialization.load_der_private_key(pkcs8, password=None, unsafe_skip_rsa_key_validation=True)
        return self._cached(("smime-key", spki_sha256), unseal)

    def _unseal(self, sealed: bytes, aad: bytes, label: str) -> bytes | None:
        """The plaintext, or None (logged) when the row was altered: one bad row must not stop the mail."""
        try:
            return self._sealer.open(sealed, aad)
        except masterkey.MasterKeyError:
            log.error("key store %s: %s does not open with the master key (row altered?); skipped", self.path, label)
            return None

    def pgp_secret_keys(self, keyid: str) -> list[pgpy.PGPKey]:
        """Unprotected secret keys whose primary key or a subkey has ``keyid`` (16 hex digits)."""
        rows = self._rows("SELECT k.fingerprint, k.sealed_secret FROM pgp_key_ids i"
                          " JOIN pgp_keys k ON k.fingerprint = i.fingerprint"
                          " WHERE i.keyid = ? AND k.sealed_secret IS NOT NULL", (keyid.upper(),))
        return self._pgp_secrets(rows)

    def all_pgp_secret_keys(self) -> list[pgpy.PGPKey]:
        rows = self._rows("SELECT fingerprint, sealed_secret FROM pgp_keys WHERE sealed_secret IS NOT NULL"
                          " ORDER BY fingerprint")
        return self._pgp_secrets(rows)

    def _pgp_secrets(self, rows) -> list[pgpy.PGPKey]:
        keys = [self._pgp_secret(row["fingerprint"], row["sealed_secret"]) for row in rows]
        return [key for key in keys if key is not None]

    def _pgp_secret(self, fingerprint: str, sealed: bytes) -> pgpy.PGPKey | None:
        def unseal():
            raw = self._unseal(sealed, _pgp_aad(fingerprint), f"OpenPGP secret key {fingerprint}")
            return None if raw is None else _load_pgp(raw)
        return self._cached(("pgp-secret", fingerprint), unseal)

    def pgp_public_keys(self, keyid: str, *, imported_only: bool = False) -> list[pgpy.PGPKey]:
        """Public keys (also of the secret keys we hold) whose primary key or a subkey has ``keyid``.

        ``imported_only``: only the keys an administrator imported, the only ones that verify signatures.
        """
        origin = " AND k.origin = 'imported'" if imported_only else ""
        rows = self._rows("SELECT k.fingerprint, k.public_key FROM pgp_key_ids i"
                          " JOIN pgp_keys k ON k.fingerprint = i.fingerprint WHERE i.keyid = ?" + origin,
                          (keyid.upper(),))
        return [self._cached(("pgp-public", row["fingerprint"]), lambda raw=row["public_key"]: _load_pgp(raw))
                for row in rows]

    # ------------------------------------------------------------------ export / import of everything

    def export_all(self, password: str) -> bytes:
        """Every certificate, key, trust anchor, domain and binding as one container (see keyimport)."""
        contents = keyexport.ExportContents(domains=self.list_domains())
        contents.certificates = [(row["der"], row["origin"]) for row in self._rows(
            "SELECT der, origin FROM certificates ORDER BY thumbprint")]
        for row in self._rows("SELECT spki_sha256, sealed FROM smime_keys ORDER BY spki_sha256"):
            key = self._private_key(row["spki_sha256"], row["sealed"])
            cert = self._rows("SELECT der FROM certificates WHERE spki_sha256 = ? ORDER BY not_after DESC LIMIT 1",
                              (row["spki_sha256"],))
            if key is None:
                raise StoreError(f"S/MIME key {row['spki_sha256']} does not open with the master key")
            contents.smime_keys.append((cert[0]["der"], key))
        for row in self._rows("SELECT * FROM pgp_keys ORDER BY fingerprint"):
            key = (self._pgp_secret(row["fingerprint"], row["sealed_secret"]) if row["sealed_secret"] is not None
                   else _load_pgp(row["public_key"]))
            if key is None:
                raise StoreError(f"OpenPGP key {row['fingerprint']} does not open with the master key")
            contents.pgp_keys.append((key, row["origin"]))
        contents.trust_anchors = [row["der"] for row in self._rows("SELECT der FROM trust_anchors ORDER BY thumbprint")]
        contents.bindings = [(row["key_id"], row["address"]) for row in self._rows(
            "SELECT key_id, address FROM bindings ORDER BY key_id, address")]
        try:
            return keyexport.write_export(contents, password, _now())
        except keyimport.KeyFormatError as exc:
            raise StoreError(str(exc)) from None

    def import_export(self, data: bytes, password: str | None) -> ImportResult:
        """Read back what :meth:`export_all` wrote, all or nothing."""
        try:
            contents = keyexport.read_export(data, password)
        except keyimport.KeyFormatError as exc:
            raise StoreError(str(exc)) from None
        result = ImportResult(warnings=contents.warnings)
        with self._write():
            for der, origin in contents.certificates:
                self._import_certificate(der, origin, result)
            for private_key in contents.private_keys:
                self._import_smime_key(private_key, result)
            for key, origin in contents.pgp_keys:
                self._import_pgp_key(key, origin, result)
            for der in contents.trust_anchors:
                row, _ = _certificate_row(der, "imported")
                target = result.added if self._insert_trust_anchor(row) else result.already_present
                target.append(f"trust anchor {row['thumbprint'][:16]} {row['subject']}")
            for pattern in contents.domains:
                pattern = _domain_pattern(pattern)
                (result.added if self._insert_domain(pattern) else result.already_present).append(f"domain {pattern}")
            for key_id, address in contents.bindings:  # after the keys: a binding needs its key and private key
                label = f"binding {_binding_address(address)} to {key_id[:16]}"
                (result.added if self._insert_binding(key_id, address) else result.already_present).append(label)
        return result

    def export_key(self, ident: str, fmt: str, *, secret: bool = False, password: str | None = None) -> bytes:
        """One key: ``pem`` (certificate, plus the private key with ``secret``), ``p12`` or ``openpgp`` (armored)."""
        resolved = self._resolve_key(ident)
        if resolved is None:
            raise StoreError(f"no key {ident}")
        kind, key_id = resolved
        if kind == "openpgp":
            if fmt != "openpgp":
                raise StoreError(f"{key_id} is an OpenPGP key: export it with --format openpgp")
            return self._export_pgp(key_id, secret, password)
        if fmt not in ("pem", "p12"):
            raise StoreError(f"{key_id} is an X.509 certificate: export it with --format pem or p12")
        row = self._rows("SELECT der, spki_sha256 FROM certificates WHERE thumbprint = ?", (key_id,))[0]
        private_key = self._private_key_for(row["spki_sha256"]) if (secret or fmt == "p12") else None
        if fmt == "p12":
            if private_key is None:
                raise StoreError(f"no private key for {key_id}: PKCS#12 needs one (use --format pem)")
            if not password:
                raise StoreError("a PKCS#12 export needs a password")
            return keyexport.pkcs12_bytes(row["der"], private_key, password.encode("utf-8"))
        pem = keyexport.certificate_pem(row["der"]).encode("ascii")
        if not secret:
            return pem
        if private_key is None:
            raise StoreError(f"no private key for {key_id}")
        encryption = (serialization.BestAvailableEncryption(password.encode("utf-8")) if password
                      else serialization.NoEncryption())
        return pem + private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)

    def _private_key_for(self, spki_sha256: str):
        rows = self._rows("SELECT sealed FROM smime_keys WHERE spki_sha256 = ?", (spki_sha256,))
        return self._private_key(spki_sha256, rows[0]["sealed"]) if rows else None

    def _export_pgp(self, fingerprint: str, secret: bool, password: str | None) -> bytes:
        row = self._rows("SELECT public_key, sealed_secret FROM pgp_keys WHERE fingerprint = ?", (fingerprint,))[0]
        if not secret:
            return str(_load_pgp(row["public_key"])).encode("ascii")
        key = self._pgp_secret(fingerprint, row["sealed_secret"]) if row["sealed_secret"] is not None else None
        if key is None:
            raise StoreError(f"no secret key for {fingerprint}")
        return str(keyexport.protected_pgp_key(key, password) if password else key).encode("ascii")

    # ------------------------------------------------------------------ maintenance

    def info(self) -> dict:
        counts = {table: self._rows(f"SELECT count(*) FROM {table}")[0][0]
                  for table in ("certificates", "smime_keys", "pgp_keys", "trust_anchors", "domains")}
        counts["pgp_secret_keys"] = self._rows("SELECT count(*) FROM pgp_keys WHERE sealed_secret IS NOT NULL")[0][0]
        return {"path": self.path, "schema_version": self._schema_version(self._conn),
                "journal_mode": self._rows("PRAGMA journal_mode")[0][0], "counts": counts}

    def integrity_check(self) -> list[str]:
        """SQLite's integrity check: an empty list when the file is sound."""
        problems = [row[0] for row in self._rows("PRAGMA integrity_check")]
        return [] if problems == ["ok"] else problems

    def backup(self, destination) -> None:
        """A consistent copy through SQLite's online backup API, safe while the milter runs.

        The copy holds private keys sealed as in the store; the master key is a
        separate file and is not copied: keep it (safely, elsewhere) to restore.
        """
        destination = os.fspath(destination)
        _create_private_file(destination)
        target = sqlite3.connect(destination)
        try:
            with self._lock:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self._conn.backup(target)
            target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it
            problems = [row[0] for row in target.execute("PRAGMA integrity_check")]
        finally:
            target.close()
        if problems != ["ok"]:
            os.unlink(destination)
            raise StoreError(f"backup failed its integrity check: {problems[0]}")

    @classmethod
    def restore(cls, source, path, master_key_path=None) -> "KeyStore":
        """Replace the store at ``path`` (created when missing) with the backup ``source``.

        Refused unless the backup is a sound ciphermilter store that the master
        key opens; a running milter sees the restored data at its next message.
        """
        source = os.fspath(source)
        path, key_path = _paths(path, master_key_path)
        backup_store = cls.open_read_only(source, key_path)
        try:
            problems = backup_store.integrity_check()
            if problems:
                raise StoreError(f"backup {source} is damaged: {problems[0]}")
            if not os.path.exists(path):
                _create_private_file(path)
            target = cls._connect(path)
            try:
                with backup_store._lock:
                    backup_store._conn.backup(target)
                target.execute("PRAGMA journal_mode = WAL")
            finally:
                target.close()
        finally:
            backup_store.close()
        return cls.open(path, key_path)


def _create_private_file(path: str) -> None:
    """An empty file only its owner can read; refuses to replace an existing one."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    try:
        masterkey.write_private_file(path)
    except FileExistsError:
        raise StoreError(f"{path} exists already; refusing to overwrite it") from None
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror}") from None
