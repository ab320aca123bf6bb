"""What one row of the key store holds, and the writes that add or remove a key with its index rows.

Both halves of the store write keys: an admin's import
(:mod:`ciphermilter.store.admin`) and a message's harvest
(:meth:`KeyStore.harvest`), so the row writes live here, once, as functions
of the connection whose transaction the caller holds. Private key material
is sealed with AES-256-GCM (:mod:`ciphermilter.store.masterkey`) with the
row's identity as associated data: a sealed key copied into another row
does not open.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Literal, TypedDict

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from ciphermilter.core import domains
from ciphermilter.formats import ids
from ciphermilter.formats.openpgp import engine as openpgp
from ciphermilter.formats.openpgp import keys as openpgp_keys
from ciphermilter.formats.openpgp.keys import OpenPGPKey
from ciphermilter.formats.smime import trust
from ciphermilter.formats import keyfiles
from ciphermilter.store import masterkey
from ciphermilter.store.database import Database
from ciphermilter.store.schema import StoreError

KeyKind = Literal["x509", "openpgp"]
Origin = Literal["imported", "harvested"]


class CertificateRow(TypedDict):
    """A row of the certificates table (schema v1), as :func:`certificate_row` reads it off a certificate."""

    thumbprint: str
    der: bytes
    subject: str
    issuer: str
    subject_key: str
    issuer_key: str
    serial: str
    ski: str | None
    spki_sha256: str
    not_before: str
    not_after: str
    origin: Origin
    added: str


@dataclass
class ImportResult:
    added: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def origin(value: str) -> Origin:
    """The origin an export file names, refused unless it is one this store writes."""
    if value == "imported":
        return "imported"
    if value == "harvested":
        return "harvested"
    raise StoreError(f"unknown origin {value!r}")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def before_now(seconds: float) -> str:
    """The time ``seconds`` ago, written as :func:`now` writes times, so that the two compare as text."""
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)
    return past.isoformat(timespec="seconds")


# ---------------------------------------------------------------------------- certificate facts


def thumbprint(der: bytes) -> str:
    return ids.sha256_hex(der).upper()


def spki_sha256_of_key(private_key: PrivateKeyTypes) -> str:
    spki = private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
    return ids.sha256_hex(spki)


def _spki_sha256_of_cert(der: bytes, cert: asn1_x509.Certificate) -> str:
    # cryptography re-encodes the key the same way as spki_sha256_of_key; asn1crypto's raw bytes are
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


def certificate_row(der: bytes, origin: Origin) -> tuple[CertificateRow, list[str]]:
    """The certificates row of ``der`` and the addresses it names; StoreError when it does not parse."""
    try:
        cert = asn1_x509.Certificate.load(der, strict=True)
        tbs = cert["tbs_certificate"]
        validity = tbs["validity"]
        row: CertificateRow = {
            "thumbprint": thumbprint(der), "der": der,
            "subject": ids.rfc4514(cert.subject), "issuer": ids.rfc4514(cert.issuer),
            "subject_key": ids.name_key(cert.subject), "issuer_key": ids.name_key(cert.issuer),
            "serial": ids.serial_hex(cert.serial_number),
            "ski": cert.key_identifier.hex().upper() if cert.key_identifier else None,
            "spki_sha256": _spki_sha256_of_cert(der, cert),
            "not_before": validity["not_before"].native.isoformat(),
            "not_after": validity["not_after"].native.isoformat(),
            "origin": origin, "added": now(),
        }
        return row, certificate_emails(der)
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreError(f"certificate not usable: {exc}") from None


def describe_certificate(row: CertificateRow) -> str:
    return f"certificate {row['thumbprint'][:16]} {row['subject']}"


# ---------------------------------------------------------------------------- OpenPGP facts


def pgp_fingerprint(key: OpenPGPKey) -> str:
    return key.fingerprint


def _pgp_key_ids(key: OpenPGPKey) -> list[tuple[str, int]]:
    return [(part.keyid, int(part.primary)) for part in key.parts]


def public_bytes(key: OpenPGPKey) -> bytes:
    return key.public_bytes()


def load_pgp(raw: bytes) -> OpenPGPKey:
    """A stored key (public, or secret in the clear), as the engine's key model reads it. Stores written
    before the key model hold pgpy's serialisation of the same packets: it reads the same."""
    return openpgp_keys.parse_key(raw)


# ---------------------------------------------------------------------------- names an admin types


def domain_pattern(pattern: str) -> str:
    try:
        return domains.normalise(pattern)
    except domains.DomainError as exc:
        raise StoreError(str(exc)) from None


def binding_address(address: str) -> str:
    """``local@domain`` or ``@domain`` (one domain, no wildcard), lower case; anything else is refused."""
    local, at, domain = address.strip().lower().rpartition("@")
    if not at or domain.startswith("*.") or any(c.isspace() or c in '@<>,;:"\\' for c in local):
        raise StoreError(f"not an address or @domain: {address!r}")
    return f"{local}@{domain_pattern(domain)}"


def smime_aad(spki_sha256: str) -> bytes:
    return b"ciphermilter:smime-key:" + spki_sha256.encode("ascii")


def pgp_aad(fingerprint: str) -> bytes:
    return b"ciphermilter:openpgp-secret:" + fingerprint.encode("ascii")


# ---------------------------------------------------------------------------- writes (in the caller's transaction)


def insert_certificate(conn: Database, der: bytes, origin: Origin, result: ImportResult | None) -> bool:
    """Add a certificate with its address index; an admin's import promotes a harvested one it meets."""
    row, emails = certificate_row(der, origin)
    present = conn.execute("SELECT origin FROM certificates WHERE thumbprint = ?", (row["thumbprint"],)).fetchone()
    if present is not None:
        if present["origin"] == "harvested" and origin == "imported":  # the admin vouches for it now
            conn.execute("UPDATE certificates SET origin = 'imported' WHERE thumbprint = ?", (row["thumbprint"],))
        if result is not None:
            result.already_present.append(describe_certificate(row))
        return False
    columns = ", ".join(row)
    # ON CONFLICT: another gateway may add the same certificate at the same moment (both harvesting it)
    added = conn.execute(f"INSERT INTO certificates ({columns}) VALUES ({', '.join('?' * len(row))})"
                         " ON CONFLICT DO NOTHING", tuple(row.values())).rowcount == 1
    if not added:
        if result is not None:
            result.already_present.append(describe_certificate(row))
        return False
    conn.executemany("INSERT INTO certificate_emails (email, thumbprint) VALUES (?, ?) ON CONFLICT DO NOTHING",
                     [(email, row["thumbprint"]) for email in emails])
    if result is not None:
        result.added.append(describe_certificate(row))
    return True


def insert_smime_key(conn: Database, sealer: masterkey.Sealer, private_key: PrivateKeyTypes,
                     result: ImportResult) -> None:
    """Seal and add an S/MIME private key; its certificate must be in the store already."""
    spki = spki_sha256_of_key(private_key)
    cert = conn.execute("SELECT subject FROM certificates WHERE spki_sha256 = ? LIMIT 1", (spki,)).fetchone()
    if cert is None:
        raise StoreError("private key without its certificate: import the certificate with it"
                         " (same file, or before)")
    label = f"S/MIME private key for {cert['subject']}"
    # The admin vouches for the key, so for its certificates too, a harvested one included: left
    # 'harvested', it gave the key no readers, refused `keys bind` and expired unused with the key.
    conn.execute("UPDATE certificates SET origin = 'imported' WHERE spki_sha256 = ? AND origin = 'harvested'", (spki,))
    if conn.execute("SELECT 1 FROM smime_keys WHERE spki_sha256 = ?", (spki,)).fetchone():
        result.already_present.append(label)
        return
    pkcs8 = private_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    conn.execute("INSERT INTO smime_keys (spki_sha256, sealed, added) VALUES (?, ?, ?)",
                 (spki, sealer.seal(pkcs8, smime_aad(spki)), now()))
    result.added.append(label)


def insert_pgp_key(conn: Database, sealer: masterkey.Sealer, key: OpenPGPKey, origin: Origin,
                   result: ImportResult | None) -> bool:
    """Insert a key, or (admin imports only) bring a known one up to date: the secret half of a key
    we knew as public, or new subkeys, user IDs or signatures. Harvesting never changes a known key.

    A secret key imported again with new packets (a new encryption subkey, a later expiry) replaces the
    sealed one, whose own subkeys and self-signatures are what decryption reads: kept, mail to the new
    subkey found no key and ``check`` warned of the old expiry while the import said "(updated)". Only
    a copy that holds every subkey and every secret the stored one holds replaces it
    (:func:`_holds_every_part`, :func:`_renews_secret`).
    """
    fingerprint = pgp_fingerprint(key)
    label = f"OpenPGP {'public' if key.is_public else 'secret'} key {fingerprint} {', '.join(key.user_ids)}"
    present = conn.execute("SELECT public_key, sealed_secret, origin FROM pgp_keys WHERE fingerprint = ?",
                           (fingerprint,)).fetchone()
    public = public_bytes(key)
    gains_secret = not key.is_public and (present is None or present["sealed_secret"] is None)
    gains_packets = present is not None and not (
        keyfiles.packet_contents(public) <= keyfiles.packet_contents(present["public_key"]))
    if present is not None and gains_packets and origin == "imported":
        gains_packets = _holds_every_part(conn, key, fingerprint, label, result)
    renews_secret = (present is not None and not key.is_public and present["sealed_secret"] is not None
                     and origin == "imported"
                     and _renews_secret(key, sealer, fingerprint, present["sealed_secret"], gains_packets, label,
                                        result))
    if present is not None and (origin == "harvested" or not (gains_secret or gains_packets or renews_secret)):
        if present["origin"] == "harvested" and origin == "imported":  # the admin vouches for it now
            conn.execute("UPDATE pgp_keys SET origin = 'imported' WHERE fingerprint = ?", (fingerprint,))
        if result is not None:
            result.already_present.append(label)
        return False
    if present is None or gains_packets:
        _write_pgp_public(conn, key, fingerprint, public, origin)
    if gains_secret or renews_secret:
        conn.execute("UPDATE pgp_keys SET sealed_secret = ? WHERE fingerprint = ?",
                     (sealer.seal(key.to_bytes(), pgp_aad(fingerprint)), fingerprint))
    if present is not None:
        conn.execute("UPDATE pgp_keys SET origin = 'imported' WHERE fingerprint = ?", (fingerprint,))
    if result is not None:
        result.added.append(label if present is None else f"{label} (updated)")
    return True


def _holds_every_part(conn: Database, key: OpenPGPKey, fingerprint: str, label: str,
                      result: ImportResult | None) -> bool:
    """Whether ``key`` holds every subkey the stored copy holds: a copy of one subkey (``gpg
    --export-secret-subkeys ID!``) would otherwise replace the key and drop the others' key IDs, and mail
    to them would find no key. If not, the stored key stays and the import says why."""
    lacking = sorted({row["keyid"] for row in conn.execute("SELECT keyid FROM pgp_key_ids WHERE fingerprint = ?",
                                                            (fingerprint,)).fetchall()} - set(key.key_ids))
    if lacking and result is not None:
        result.warnings.append(f"{label}: the stored key is kept: this copy lacks its subkeys {', '.join(lacking)}")
    return not lacking


def _renews_secret(key: OpenPGPKey, sealer: masterkey.Sealer, fingerprint: str, sealed: bytes,
                   gains_packets: bool, label: str, result: ImportResult | None) -> bool:
    """Whether secret ``key`` replaces the sealed copy: it brings new packets or the secret of a part the
    sealed copy lacks, and holds the secret of every part the sealed copy holds one of. A copy that would
    lose a secret (``gpg --export-secret-subkeys``: the primary key's left out) leaves the sealed copy, and
    the import says why."""
    held = {part.keyid for part in key.parts if part.has_secret}
    stored = {part.keyid for part in load_pgp(sealer.open(sealed, pgp_aad(fingerprint))).parts if part.has_secret}
    if not (gains_packets or held - stored):
        return False
    lacking = sorted(stored - held)
    if lacking and result is not None:
        result.warnings.append(f"{label}: the stored secret key is kept: this copy lacks the secret of"
                               f" {', '.join(lacking)}")
    return not lacking


def _write_pgp_public(conn: Database, key: OpenPGPKey, fingerprint: str, public: bytes,
                      origin: Origin) -> None:
    """(Re)write the public half of a key and its key ID and e-mail indexes; a held secret stays."""
    for table in ("pgp_key_ids", "pgp_emails"):
        conn.execute(f"DELETE FROM {table} WHERE fingerprint = ?", (fingerprint,))
    conn.execute(
        "INSERT INTO pgp_keys (fingerprint, public_key, user_ids, origin, added) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (fingerprint) DO UPDATE SET public_key = excluded.public_key, user_ids = excluded.user_ids",
        (fingerprint, public, json.dumps(key.user_ids), origin, now()))
    conn.executemany("INSERT INTO pgp_key_ids (keyid, fingerprint, is_primary) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                     [(keyid, fingerprint, primary) for keyid, primary in _pgp_key_ids(key)])
    conn.executemany("INSERT INTO pgp_emails (email, fingerprint) VALUES (?, ?) ON CONFLICT DO NOTHING",
                     [(email, fingerprint) for email in sorted(openpgp.key_emails(key))])


def delete_key(conn: Database, kind: KeyKind, key_id: str) -> None:
    """Delete a key with its index rows and bindings; the caller holds the write transaction."""
    conn.execute("DELETE FROM bindings WHERE key_id = ?", (key_id,))
    if kind == "x509":
        conn.execute("DELETE FROM certificate_emails WHERE thumbprint = ?", (key_id,))
        conn.execute("DELETE FROM certificates WHERE thumbprint = ?", (key_id,))
        conn.execute("DELETE FROM smime_keys WHERE spki_sha256 NOT IN (SELECT spki_sha256 FROM certificates)")
    else:
        for table in ("pgp_key_ids", "pgp_emails", "pgp_keys"):
            conn.execute(f"DELETE FROM {table} WHERE fingerprint = ?", (key_id,))
