"""What only an admin does to the key store: import, export, backup, restore, list, show, bind and remove.

Functions that take an open :class:`~ciphermilter.store.keystore.KeyStore`,
so that the store a message uses carries only the lookups it needs (the
seams of :mod:`ciphermilter.core.seams`), and the CLI is the one caller of
this module. Every change runs in one store transaction, all or nothing; a
refusal is a :class:`~ciphermilter.store.schema.StoreError` whose text is
the one line the CLI prints.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from typing import Literal, TypedDict

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from ciphermilter.formats import keyfiles
from ciphermilter.store import keyexport, keyfacts, rows, schema
from ciphermilter.store.database import Database, Row, SqliteDatabase
from ciphermilter.store.keystore import KeyStore
from ciphermilter.store.rows import ImportResult, KeyKind
from ciphermilter.store.schema import PathLike, StoreError

ExportFormat = Literal["pem", "p12", "openpgp"]


class CertificateInfo(TypedDict):
    """What ``keys list`` and ``keys show`` print about a certificate (and ``--json`` as it is)."""

    id: str
    type: Literal["x509"]
    subject: str
    issuer: str
    serial: str
    ski: str | None
    emails: list[str]
    not_before: str
    not_after: str
    origin: str
    private_key: bool  # the store holds its private key (the same name for OpenPGP keys)
    readers: list[str]
    bindings: list[str]
    added: str
    algorithm: str  # the facts of keyfacts.KeyFacts, as for OpenPGP keys
    created: str
    expires: str | None
    expired: bool
    revoked: bool


class PgpKeyInfo(TypedDict):
    """What ``keys list`` and ``keys show`` print about an OpenPGP key."""

    id: str
    type: Literal["openpgp"]
    version: int  # 4 or 6 (RFC 9580)
    key_ids: list[str]
    user_ids: list[str]
    emails: list[str]
    private_key: bool  # the store holds its secret key
    secret: bool  # the same under its earlier name, kept for the scripts that read it (ciphermilter(1))
    origin: str
    readers: list[str]
    bindings: list[str]
    added: str
    algorithm: str
    created: str
    expires: str | None
    expired: bool
    revoked: bool


KeyInfo = CertificateInfo | PgpKeyInfo


class TrustAnchorInfo(TypedDict):
    id: str
    subject: str
    not_after: str
    added: str


class StoreInfo(TypedDict):
    path: str
    schema_version: int
    journal_mode: str
    counts: dict[str, int]


@contextlib.contextmanager
def _naming(filename: str) -> Iterator[None]:
    """Prefix a StoreError with the file it concerns."""
    try:
        yield
    except StoreError as exc:
        raise StoreError(f"{filename}: {exc}" if filename else str(exc)) from None


# ---------------------------------------------------------------------------- import


def import_file(store: KeyStore, data: bytes, *, filename: str = "", password: bytes | None = None,
                passphrase: str | None = None) -> ImportResult:
    """Import every certificate and key of one file, all or nothing."""
    try:
        bundle = keyfiles.parse(data, password=password, passphrase=passphrase)
    except keyfiles.KeyFormatError as exc:
        raise StoreError(f"{filename}: {exc}" if filename else str(exc)) from None
    return import_bundles(store, [(filename, bundle)])


def import_bundles(store: KeyStore, named: list[tuple[str, keyfiles.Bundle]]) -> ImportResult:
    """Import parsed files in one transaction: all certificates first, so that a key finds its
    certificate in any file of the same import."""
    result = ImportResult()
    with store.transaction() as conn:
        for filename, bundle in named:
            with _naming(filename):
                for der in bundle.certificates:
                    rows.insert_certificate(conn, der, "imported", result)
        for filename, bundle in named:
            with _naming(filename):
                for private_key in bundle.private_keys:
                    rows.insert_smime_key(conn, store.sealer, private_key, result)
                for key in bundle.pgp_keys:
                    rows.insert_pgp_key(conn, store.sealer, key, "imported", result)
            result.warnings.extend(bundle.warnings)
    return result


# ---------------------------------------------------------------------------- export / import of everything


def export_all(store: KeyStore, password: str) -> bytes:
    """Every certificate, key, trust anchor, domain and binding as one container (see keyexport)."""
    contents = keyexport.ExportContents(domains=list_domains(store))
    contents.certificates = [(row["der"], row["origin"]) for row in store.rows(
        "SELECT der, origin FROM certificates ORDER BY thumbprint")]
    for row in store.rows("SELECT spki_sha256, sealed FROM smime_keys ORDER BY spki_sha256"):
        key = store.smime_key(row["spki_sha256"], row["sealed"])
        cert = store.rows("SELECT der FROM certificates WHERE spki_sha256 = ? ORDER BY not_after DESC LIMIT 1",
                          (row["spki_sha256"],))
        if key is None:
            raise StoreError(f"S/MIME key {row['spki_sha256']} does not open with the master key")
        contents.smime_keys.append((cert[0]["der"], key))
    for row in store.rows("SELECT * FROM pgp_keys ORDER BY fingerprint"):
        pgp_key = (store.pgp_secret(row["fingerprint"], row["sealed_secret"]) if row["sealed_secret"] is not None
                   else rows.load_pgp(row["public_key"]))
        if pgp_key is None:
            raise StoreError(f"OpenPGP key {row['fingerprint']} does not open with the master key")
        contents.pgp_keys.append((pgp_key, row["origin"]))
    contents.trust_anchors = [row["der"] for row in store.rows("SELECT der FROM trust_anchors ORDER BY thumbprint")]
    contents.bindings = [(row["key_id"], row["address"]) for row in store.rows(
        "SELECT key_id, address FROM bindings ORDER BY key_id, address")]
    try:
        return keyexport.write_export(contents, password, rows.now())
    except keyfiles.KeyFormatError as exc:
        raise StoreError(str(exc)) from None


def import_export(store: KeyStore, data: bytes, password: str | None) -> ImportResult:
    """Read back what :func:`export_all` wrote, all or nothing."""
    try:
        contents = keyexport.read_export(data, password)
    except keyfiles.KeyFormatError as exc:
        raise StoreError(str(exc)) from None
    result = ImportResult(warnings=contents.warnings)
    with store.transaction() as conn:
        for der, origin in contents.certificates:
            rows.insert_certificate(conn, der, rows.origin(origin), result)
        for private_key in contents.private_keys:
            rows.insert_smime_key(conn, store.sealer, private_key, result)
        for key, origin in contents.pgp_keys:
            rows.insert_pgp_key(conn, store.sealer, key, rows.origin(origin), result)
        for der in contents.trust_anchors:
            row, _ = rows.certificate_row(der, "imported")
            target = result.added if _insert_trust_anchor(conn, row) else result.already_present
            target.append(f"trust anchor {row['thumbprint'][:16]} {row['subject']}")
        for pattern in contents.domains:
            pattern = rows.domain_pattern(pattern)
            (result.added if _insert_domain(conn, pattern) else result.already_present).append(f"domain {pattern}")
        for key_id, address in contents.bindings:  # after the keys: a binding needs its key and private key
            label = f"binding {rows.binding_address(address)} to {key_id[:16]}"
            (result.added if _insert_binding(store, conn, key_id, address) else result.already_present).append(label)
    return result


def export_key(store: KeyStore, ident: str, fmt: ExportFormat, *, secret: bool = False,
               password: str | None = None) -> bytes:
    """One key: ``pem`` (certificate, plus the private key with ``secret``), ``p12`` or ``openpgp`` (armored)."""
    resolved = _resolve_key(store, ident)
    if resolved is None:
        raise StoreError(f"no key {ident}")
    kind, key_id = resolved
    if kind == "openpgp":
        if fmt != "openpgp":
            raise StoreError(f"{key_id} is an OpenPGP key: export it with --format openpgp")
        return _export_pgp(store, key_id, secret, password)
    if fmt not in ("pem", "p12"):
        raise StoreError(f"{key_id} is an X.509 certificate: export it with --format pem or p12")
    row = store.rows("SELECT der, spki_sha256 FROM certificates WHERE thumbprint = ?", (key_id,))[0]
    private_key = _private_key_for(store, row["spki_sha256"]) if (secret or fmt == "p12") else None
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


def _private_key_for(store: KeyStore, spki_sha256: str) -> PrivateKeyTypes | None:
    found = store.rows("SELECT sealed FROM smime_keys WHERE spki_sha256 = ?", (spki_sha256,))
    return store.smime_key(spki_sha256, found[0]["sealed"]) if found else None


def _export_pgp(store: KeyStore, fingerprint: str, secret: bool, password: str | None) -> bytes:
    row = store.rows("SELECT public_key, sealed_secret FROM pgp_keys WHERE fingerprint = ?", (fingerprint,))[0]
    if not secret:
        return rows.load_pgp(row["public_key"]).armored().encode("ascii")
    key = store.pgp_secret(fingerprint, row["sealed_secret"]) if row["sealed_secret"] is not None else None
    if key is None:
        raise StoreError(f"no secret key for {fingerprint}")
    return key.armored(password or None).encode("ascii")


# ---------------------------------------------------------------------------- maintenance


def info(store: KeyStore) -> StoreInfo:
    counts = {table: int(store.rows(f"SELECT count(*) FROM {table}")[0][0])
              for table in ("certificates", "smime_keys", "pgp_keys", "trust_anchors", "domains")}
    counts["pgp_secret_keys"] = int(store.rows("SELECT count(*) FROM pgp_keys WHERE sealed_secret IS NOT NULL")[0][0])
    journal = str(store.rows("PRAGMA journal_mode")[0][0]) if isinstance(store.db, SqliteDatabase) else "postgresql"
    return {"path": store.path, "schema_version": int(store.rows("SELECT version FROM schema_version")[0][0]),
            "journal_mode": journal, "counts": counts}


def integrity_check(store: KeyStore) -> list[str]:
    """SQLite's integrity check: an empty list when the file is sound (a PostgreSQL server checks its own)."""
    if not isinstance(store.db, SqliteDatabase):
        return []
    problems = [str(row[0]) for row in store.rows("PRAGMA integrity_check")]
    return [] if problems == ["ok"] else problems


def server(store: KeyStore) -> tuple[str, bool] | None:
    """(host:port reached, writable) of a PostgreSQL store; None for a SQLite file."""
    if store.db.backend != "postgresql":
        return None
    from ciphermilter.store.postgres import PostgresDatabase  # only a PostgreSQL store loads psycopg

    assert isinstance(store.db, PostgresDatabase)
    return store.db.server()


def _sqlite(store: KeyStore) -> SqliteDatabase:
    """The store's SQLite database; a PostgreSQL store is refused with the way to back it up."""
    if not isinstance(store.db, SqliteDatabase):
        raise StoreError(f"store {store.path} is a PostgreSQL database: back it up with pg_dump or the server's"
                         " point-in-time recovery; 'store export' moves its keys to another store")
    return store.db


def _copy(source: SqliteDatabase, target: sqlite3.Connection, *, checkpoint: bool) -> None:
    """A consistent copy of a whole SQLite store through SQLite's online backup API (safe while the milter
    runs); ``checkpoint`` first folds the WAL in, which a read-only connection cannot do."""
    if checkpoint:
        source.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    source.conn.backup(target)


def backup(store: KeyStore, destination: PathLike, *, replace: bool = False) -> None:
    """A consistent copy through SQLite's online backup API, safe while the milter runs.

    The copy holds private keys sealed as in the store; the master key is a
    separate file and is not copied: keep it (safely, elsewhere) to restore.
    An existing file is refused, or with ``replace`` (cron's nightly run to one
    path) replaced only once the new copy is whole: a copy is written beside it
    and renamed over it, so a failed run leaves the last good backup.
    """
    target_path = os.fspath(destination)
    source = _sqlite(store)
    if not replace:
        schema.create_private_file(target_path)
        _write_backup(source, target_path)
        return
    directory = os.path.dirname(os.path.abspath(target_path))
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        descriptor, partial = tempfile.mkstemp(prefix=".backup-", dir=directory)  # mode 0600
    except OSError as exc:
        raise StoreError(f"cannot create a file in {directory}: {exc.strerror}") from None
    os.close(descriptor)
    try:
        _write_backup(source, partial)
        os.replace(partial, target_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)


def _write_backup(source: SqliteDatabase, target_path: str) -> None:
    target = sqlite3.connect(target_path)
    try:
        _copy(source, target, checkpoint=True)
        target.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it
        problems = [row[0] for row in target.execute("PRAGMA integrity_check")]
    finally:
        target.close()
    if problems != ["ok"]:
        os.unlink(target_path)
        raise StoreError(f"backup failed its integrity check: {problems[0]}")


def restore(source: PathLike, path: PathLike, master_key_path: PathLike | None = None) -> KeyStore:
    """Replace the store at ``path`` (created when missing) with the backup ``source``.

    Refused unless the backup is a sound ciphermilter store that the master
    key opens; a running milter sees the restored data at its next message.
    """
    source_path = os.fspath(source)
    where, key_path = schema.paths(path, master_key_path)
    if where.shared:
        raise StoreError(f"store {where.display} is a PostgreSQL database: restore it with pg_restore or the"
                         " server's point-in-time recovery; 'store import' reads a 'store export' file into it")
    store_path = where.target
    backup_store = KeyStore.open_read_only(source_path, key_path)
    try:
        problems = integrity_check(backup_store)
        if problems:
            raise StoreError(f"backup {source_path} is damaged: {problems[0]}")
        if not os.path.exists(store_path):
            schema.create_private_file(store_path)
        target = SqliteDatabase(store_path)
        try:
            _copy(_sqlite(backup_store), target.conn, checkpoint=False)
            target.execute("PRAGMA journal_mode = WAL")
        finally:
            target.close()
    finally:
        backup_store.close()
    return KeyStore.open(store_path, key_path)


def expire_harvested(store: KeyStore, expiry_days: int, *, dry_run: bool = False) -> list[str]:
    """Remove every harvested certificate and key never used and harvested over ``expiry_days`` ago;
    what was (with ``dry_run``: would be) removed. Admin-imported material never expires."""
    if dry_run:
        return [description for _, _, description in store.expired(expiry_days, None)]
    with store.transaction():
        return store.expire(expiry_days, None)


# ---------------------------------------------------------------------------- trust anchors


def add_trust_anchor(store: KeyStore, der: bytes) -> bool:
    row, _ = rows.certificate_row(der, "imported")
    with store.transaction() as conn:
        return _insert_trust_anchor(conn, row)


def _insert_trust_anchor(conn: Database, row: rows.CertificateRow) -> bool:
    cursor = conn.execute(
        "INSERT INTO trust_anchors (thumbprint, der, subject, not_after, added) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (row["thumbprint"], row["der"], row["subject"], row["not_after"], row["added"]))
    return cursor.rowcount == 1


def add_trust_anchors(store: KeyStore, ders: list[bytes]) -> list[tuple[str, bool]]:
    """Add several anchors in one transaction: (subject, newly added) for each."""
    anchors = [rows.certificate_row(der, "imported")[0] for der in ders]
    with store.transaction() as conn:
        return [(row["subject"], _insert_trust_anchor(conn, row)) for row in anchors]


def remove_trust_anchor(store: KeyStore, ident: str) -> bool:
    thumbprint = _resolve(store, ident, "SELECT thumbprint FROM trust_anchors WHERE thumbprint LIKE ?")
    if thumbprint is None:
        return False
    with store.transaction() as conn:
        conn.execute("DELETE FROM trust_anchors WHERE thumbprint = ?", (thumbprint,))
    return True


def list_trust_anchors(store: KeyStore) -> list[TrustAnchorInfo]:
    return [{"id": row["thumbprint"], "subject": row["subject"], "not_after": row["not_after"], "added": row["added"]}
            for row in store.rows("SELECT * FROM trust_anchors ORDER BY subject")]


# ---------------------------------------------------------------------------- internal domains


def add_domain(store: KeyStore, pattern: str) -> bool:
    pattern = rows.domain_pattern(pattern)
    with store.transaction() as conn:
        return _insert_domain(conn, pattern)


def _insert_domain(conn: Database, pattern: str) -> bool:
    return conn.execute("INSERT INTO domains (pattern, added) VALUES (?, ?) ON CONFLICT DO NOTHING",
                        (pattern, rows.now())).rowcount == 1


def remove_domain(store: KeyStore, pattern: str) -> bool:
    pattern = rows.domain_pattern(pattern)
    with store.transaction() as conn:
        return conn.execute("DELETE FROM domains WHERE pattern = ?", (pattern,)).rowcount == 1


def list_domains(store: KeyStore) -> list[str]:
    return [row["pattern"] for row in store.rows("SELECT pattern FROM domains ORDER BY pattern")]


# ---------------------------------------------------------------------------- readers (ciphermilter.formats.readers)


def bind(store: KeyStore, ident: str, address: str) -> bool:
    """Make ``address`` (or every address of ``@domain``) a reader of a key we hold the private half of."""
    with store.transaction() as conn:
        return _insert_binding(store, conn, ident, address)


def _insert_binding(store: KeyStore, conn: Database, ident: str, address: str) -> bool:
    key_id = _bindable_key(store, ident)
    return conn.execute("INSERT INTO bindings (key_id, address, added) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                        (key_id, rows.binding_address(address), rows.now())).rowcount == 1


def unbind(store: KeyStore, ident: str, address: str) -> bool:
    resolved = _resolve_key(store, ident)
    if resolved is None:
        raise StoreError(f"no key {ident}")
    address = rows.binding_address(address)
    with store.transaction() as conn:
        return conn.execute("DELETE FROM bindings WHERE key_id = ? AND address = ?",
                            (resolved[1], address)).rowcount == 1


def _bindable_key(store: KeyStore, ident: str) -> str:
    """The ID of a key an admin may bind readers to: imported (not harvested), with its private key."""
    resolved = _resolve_key(store, ident)
    if resolved is None:
        raise StoreError(f"no key {ident}")
    kind, key_id = resolved
    if kind == "x509":
        row = store.rows("SELECT c.origin, k.spki_sha256 IS NOT NULL AS private FROM certificates c"
                         " LEFT JOIN smime_keys k ON k.spki_sha256 = c.spki_sha256 WHERE c.thumbprint = ?",
                         (key_id,))[0]
    else:
        row = store.rows("SELECT origin, sealed_secret IS NOT NULL AS private FROM pgp_keys WHERE fingerprint = ?",
                         (key_id,))[0]
    if row["origin"] == "harvested":
        raise StoreError(f"{key_id} was harvested from mail: a key a sender supplied gets no readers")
    if not row["private"]:
        raise StoreError(f"{key_id} has no private key in the store: only keys we decrypt with have readers")
    return key_id


# ---------------------------------------------------------------------------- listing and removal


def _resolve(store: KeyStore, ident: str, sql: str) -> str | None:
    """The one ID that ``ident`` (a full ID or a unique prefix of 8+ hex digits) names."""
    cleaned = ident.replace(" ", "").replace(":", "").upper()
    if len(cleaned) < 8 or any(c not in "0123456789ABCDEF" for c in cleaned):
        raise StoreError(f"not a key ID: {ident!r} (give 8 or more hex digits of its ID)")
    matches = {str(row[0]) for row in store.rows(sql, (cleaned + "%",))}
    if len(matches) > 1:
        raise StoreError(f"{ident} is ambiguous: give more digits")
    return matches.pop() if matches else None


def _resolve_key(store: KeyStore, ident: str) -> tuple[KeyKind, str] | None:
    """('x509', thumbprint) or ('openpgp', fingerprint) for a certificate or OpenPGP key ID."""
    found: list[tuple[KeyKind, str]] = []
    thumbprint = _resolve(store, ident, "SELECT thumbprint FROM certificates WHERE thumbprint LIKE ?")
    if thumbprint:
        found.append(("x509", thumbprint))
    fingerprint = _resolve(store, ident, "SELECT fingerprint FROM pgp_keys WHERE fingerprint LIKE ?")
    keyid = ident.replace(" ", "").upper()
    if fingerprint is None and len(keyid) == 16:  # a key ID (of the primary or a subkey)
        key_rows = store.rows("SELECT DISTINCT fingerprint FROM pgp_key_ids WHERE keyid = ?", (keyid,))
        fingerprint = key_rows[0][0] if len(key_rows) == 1 else None
    if fingerprint:
        found.append(("openpgp", fingerprint))
    if len(found) > 1:
        raise StoreError(f"{ident} is ambiguous: give more digits")
    return found[0] if found else None


def list_keys(store: KeyStore) -> list[KeyInfo]:
    certs = [_certificate_info(store, row) for row in store.rows(
        "SELECT c.*, k.spki_sha256 IS NOT NULL AS private_key FROM certificates c"
        " LEFT JOIN smime_keys k ON k.spki_sha256 = c.spki_sha256 ORDER BY c.subject, c.thumbprint")]
    pgp = [_pgp_info(store, row) for row in store.rows("SELECT * FROM pgp_keys ORDER BY fingerprint")]
    return certs + pgp


def show_key(store: KeyStore, ident: str) -> KeyInfo | None:
    resolved = _resolve_key(store, ident)
    if resolved is None:
        return None
    kind, key_id = resolved
    if kind == "x509":
        row = store.rows("SELECT c.*, k.spki_sha256 IS NOT NULL AS private_key FROM certificates c"
                         " LEFT JOIN smime_keys k ON k.spki_sha256 = c.spki_sha256 WHERE thumbprint = ?",
                         (key_id,))[0]
        return _certificate_info(store, row)
    return _pgp_info(store, store.rows("SELECT * FROM pgp_keys WHERE fingerprint = ?", (key_id,))[0])


def keys_of_address(store: KeyStore, address: str) -> list[KeyInfo]:
    """Every certificate and OpenPGP key whose own addresses include ``address`` (case-insensitive), as listed."""
    email = address.strip().strip("<>").lower()
    certs = [_certificate_info(store, row) for row in store.rows(
        "SELECT c.*, k.spki_sha256 IS NOT NULL AS private_key FROM certificates c"
        " LEFT JOIN smime_keys k ON k.spki_sha256 = c.spki_sha256 JOIN certificate_emails e"
        " ON e.thumbprint = c.thumbprint WHERE e.email = ? ORDER BY c.subject, c.thumbprint", (email,))]
    pgp = [_pgp_info(store, row) for row in store.rows(
        "SELECT p.* FROM pgp_keys p JOIN pgp_emails e ON e.fingerprint = p.fingerprint WHERE e.email = ?"
        " ORDER BY p.fingerprint", (email,))]
    return certs + pgp


def _certificate_info(store: KeyStore, row: Row) -> CertificateInfo:
    emails = [r["email"] for r in store.rows(
        "SELECT email FROM certificate_emails WHERE thumbprint = ? ORDER BY email", (row["thumbprint"],))]
    return {"id": row["thumbprint"], "type": "x509", "subject": row["subject"], "issuer": row["issuer"],
            "serial": row["serial"], "ski": row["ski"], "emails": emails, "not_before": row["not_before"],
            "not_after": row["not_after"], "origin": row["origin"], "private_key": bool(row["private_key"]),
            "readers": sorted(store.key_readers("x509", row["thumbprint"])),
            "bindings": store.bindings(row["thumbprint"]), "added": row["added"],
            **keyfacts.certificate_facts(row["der"], _now())}


def _pgp_info(store: KeyStore, row: Row) -> PgpKeyInfo:
    fingerprint = row["fingerprint"]
    key_ids = [r["keyid"] for r in store.rows(
        "SELECT keyid FROM pgp_key_ids WHERE fingerprint = ? ORDER BY is_primary DESC, keyid", (fingerprint,))]
    emails = [r["email"] for r in store.rows(
        "SELECT email FROM pgp_emails WHERE fingerprint = ? ORDER BY email", (fingerprint,))]
    version = 6 if len(fingerprint) == 64 else 4  # a v6 fingerprint is SHA-256, a v4 one SHA-1
    secret = row["sealed_secret"] is not None
    return {"id": fingerprint, "type": "openpgp", "version": version, "key_ids": key_ids,
            "user_ids": json.loads(row["user_ids"]), "emails": emails, "private_key": secret, "secret": secret,
            "origin": row["origin"], "readers": sorted(store.key_readers("openpgp", fingerprint)),
            "bindings": store.bindings(fingerprint), "added": row["added"],
            **keyfacts.pgp_facts(row["public_key"], _now())}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def remove_key(store: KeyStore, ident: object) -> bool:
    """Remove a certificate (and its private key unless another certificate shares it) or an OpenPGP key."""
    resolved = _resolve_key(store, str(ident))
    if resolved is None:
        return False
    with store.transaction() as conn:
        rows.delete_key(conn, *resolved)
    return True
